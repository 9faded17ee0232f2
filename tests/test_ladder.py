"""studies/ladder.py: the human-move agreement it reports, its report, and that a changed model or search starts
the ladder afresh (no games are played here)."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

from study_scripts import load_script  # noqa: E402

from xiangqi_gpt.rules.board import Board  # noqa: E402
from xiangqi_gpt.records.pgn import read_games  # noqa: E402

PGN = """[Event "a"]
[Result "*"]

1. h2e2 h9g7 2. h0g2 i9h9 3. i0h0 b9c7 *

[Event "b"]
[FEN "rnbakabnr/9/1c5c1/p3p1p1p/2p6/2P6/P3P1P1P/1C5C1/9/RNBAKABNR w - - 0 2"]
[Result "*"]

1. b2c2 b9c7 2. b0a2 *
"""


def load_ladder():
    return load_script("ladder")


class Oracle:
    """Plays the move the game record played in this position (``wrong``: any other legal move)."""

    def __init__(self, pgn: Path, wrong: bool = False):
        self.book = {}
        for game in read_games(str(pgn)):
            board = Board(game.root_fen)
            for move in game.moves:
                self.book[board.fen()] = move
                board.push(move)
        self.wrong = wrong

    def choose(self, board):
        human = self.book[board.fen()]
        if self.wrong:
            return next(m for m in board.legal_moves() if m != human)
        return human


def test_human_agreement_counts_every_nth_position(tmp_path):
    ladder = load_ladder()
    pgn = tmp_path / "games.pgn"
    pgn.write_text(PGN)
    right, wrong = Oracle(pgn), Oracle(pgn, wrong=True)
    r = ladder.human_agreement(right, wrong, pgn, n_games=2, stride=2)
    # game a: 6 plies -> plies 0, 2, 4; game b (from a FEN): 3 plies -> plies 0, 2
    assert r["positions"] == 5
    assert r["match"] == 1.0 and r["gpt_top1"] == 0.0
    # no captures in these openings: every sampled position has level material
    assert r["level_material_positions"] == 5 and r["match_level_material"] == 1.0
    one = ladder.human_agreement(wrong, right, pgn, n_games=1, stride=1)
    assert one["positions"] == 6 and one["match"] == 0.0 and one["gpt_top1"] == 1.0


def test_report_and_fresh_start_on_a_changed_search(tmp_path):
    ladder = load_ladder()
    out = tmp_path / "ladder.json"
    model = ladder.model_path(None)
    pairing = {"level": 2, "opponent": "random", "opponent_name": "random", "games": 2, "wins": 2, "draws": 0,
               "losses": 0, "score": 1.0, "elo": {"diff": 636, "low": 454, "high": 636, "clamped": True},
               "ms_per_move": 30.0, "cpu_ms_per_move": 29.0, "nodes_per_move": 600.0, "average_length": 40.0,
               "terminations": {"checkmate": 2}}
    data = {"model": {"path": "m.pt", "sha256": ladder.sha256(model), "search_sha256": "0" * 64},
            "pairings": {"2|random": pairing}, "human": {}}
    out.write_text(json.dumps(data))
    assert ladder.main(["--report-only", "--json", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "| 2 | random mover | 2 | 2 / 0 / 0 | 100.0% |" in md
    assert out.with_suffix(".png").stat().st_size > 0
    # a real run with another search.py keeps the old file and starts afresh (no levels: nothing is played)
    assert ladder.main(["--levels", "", "--human-games", "0", "--json", str(out)]) == 0
    kept = tmp_path / f"ladder-{ladder.sha256(model)[:16]}-oldsearch.json"
    assert json.loads(kept.read_text())["pairings"] == {"2|random": pairing}
    fresh = json.loads(out.read_text())
    assert fresh["pairings"] == {}
    assert fresh["model"]["search_sha256"] == ladder.sha256(ROOT / "xiangqi_gpt" / "play" / "search.py")


def test_unknown_level_is_a_usage_error(tmp_path):
    ladder = load_ladder()
    with pytest.raises(SystemExit) as e:
        ladder.main(["--levels", "9", "--json", str(tmp_path / "l.json")])
    assert e.value.code == 2
