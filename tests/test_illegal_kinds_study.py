"""studies/illegal_kinds.py: the general's-safety cases are told apart, and a report's examples are replayed at
the ply they name."""

import json

from study_scripts import load_script
from xiangqi_gpt.rules.board import Board, Move

study = load_script("illegal_kinds")


def test_classify_cases():
    # Red general on e0, a black rook on d9 attacks the d-file: stepping onto d0 walks into it.
    b = Board("3r5/4k4/9/9/9/9/9/9/4A4/4K4 w - - 0 1")
    assert study.classify(b, "e0d0") == ("general_safety", "general steps into attack")
    # a pinned advisor: the black rook on e9 would see the general once it moves
    b = Board("4r4/3k5/9/9/9/9/9/9/4A4/4K4 w - - 0 1")
    assert study.classify(b, "e1d2") == ("general_safety", "exposes the general")
    # in check from the rook on e9, an advisor move elsewhere does not answer it
    b = Board("4r4/3k5/9/9/9/9/9/9/9/3AK4 w - - 0 1")
    assert b.is_check()
    assert study.classify(b, "d0e1") == ("legal", None)           # blocking answers it
    assert study.classify(b, "d0c1")[0] == "piece_rules"          # an advisor leaves the palace
    b = Board("4r4/3k5/9/9/9/6P2/9/9/9/4K4 w - - 0 1")
    assert study.classify(b, "g4g5") == ("general_safety", "in check")
    assert study.classify(b, "e1e2")[0] == "no_piece"
    assert study.classify(b, "<draw>") == ("not_a_move", None)


def test_facing_generals():
    b = Board("4k4/9/9/9/9/9/9/9/4A4/4K4 w - - 0 1")
    assert not study.generals_face(b)
    assert study.classify(b, "e1d2") == ("general_safety", "exposes the general")
    after = b.copy()
    after.push(Move.from_iccs("e1d2"), validate=False)
    assert study.generals_face(after)


def test_study_replays_examples(tmp_path):
    report = {"illegal_attempts": {"count": 3}, "per_game": [
        {"moves": ["h2e2", "h9g7", "h0g2"], "illegal_examples": ["ply 2: a9a8", "ply 3: a3a2", "ply 3: e3e5"]}]}
    r = study.study(report)
    assert r["examples"] == 3
    # ply 2 is Black's move after h2e2: a9a8 is a legal rook move; a3a2 backwards is against a soldier's rules,
    # e3e5 two steps likewise
    assert r["kinds"] == {"legal": 1, "piece_rules": 2}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "o.json"
    assert study.main([str(path), "--json", str(out)]) == 0
    assert json.loads(out.read_text())[str(path)]["examples"] == 3
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert study.main([str(bad)]) == 2
