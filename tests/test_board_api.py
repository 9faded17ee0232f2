"""The board's public fast integer API (make/unmake, null move, legal and capture ints, keys, squares), and the
rule that no other module reaches into the board's private members."""

from __future__ import annotations

import ast
import random
import re
from pathlib import Path

import pytest
from fuzz_targets import random_board

from xiangqi_gpt.rules.board import (BLACK, KING, RED, ROOK, STARTING_FEN, Board, Move, decode_move, encode_move,
                               parse_square, square, square_file, square_name, square_rank)

ROOT = Path(__file__).resolve().parents[1]


def boards(n: int = 40, seed: int = 11) -> list[Board]:
    rng = random.Random(seed)
    return [random_board(rng, rng.randrange(0, 90)) for _ in range(n)]


def test_square_helpers_and_move_ints():
    for sq in range(90):
        assert square(square_file(sq), square_rank(sq)) == sq
        assert parse_square(square_name(sq)) == sq
    assert (square_file(parse_square("h2")), square_rank(parse_square("h2"))) == (7, 2)
    m = encode_move(parse_square("h2"), parse_square("e2"))
    assert m == Move.from_iccs("h2e2").to_int()
    assert decode_move(m) == (parse_square("h2"), parse_square("e2"))
    assert Move.from_int(m) == Move.from_iccs("h2e2")


def test_legal_move_ints_match_legal_moves_and_is_legal_int():
    for board in boards():
        ints = board.legal_move_ints()
        assert [Move.from_int(m) for m in ints] == board.legal_moves()
        assert all(board.is_legal_int(m) for m in ints)
        legal = set(ints)
        for fr in range(90):
            for to in range(90):
                if fr != to and board.squares[fr] and board.squares[fr] >> 3 == board.turn:
                    assert board.is_legal_int(encode_move(fr, to)) == (encode_move(fr, to) in legal)


def test_legal_capture_ints_are_the_legal_captures_in_order():
    seen_check = 0
    for board in boards(80):
        sq = board.squares
        expected = [m for m in board.legal_move_ints() if sq[m & 127]]
        assert board.legal_capture_ints() == expected
        assert board.legal_move_ints(quiet=False) == expected
        seen_check += board.is_check()
    assert seen_check            # the in-check case is covered too


def test_capture_ints_respect_pins_and_the_flying_general():
    # the e-file chariot is pinned by the black chariot behind it: it may take along the file only
    board = Board("4k4/9/9/9/4r4/9/9/p3R3p/9/4K4 w - - 0 1", strict=False)
    caps = {Move.from_int(m).iccs() for m in board.legal_capture_ints()}
    assert caps == {"e2e5"}
    # in check from the chariot on e1: taking it ends the check, taking the soldier on a3 does not
    board = Board("3k5/9/9/9/9/9/p8/9/4r4/R3K4 w - - 0 1", strict=False)
    assert board.is_check()
    assert [Move.from_int(m).iccs() for m in board.legal_capture_ints()] == ["e0e1"]
    assert Move.from_iccs("a0a3") in [Move.from_int(m) for m in board._pseudo(quiet=False)]


def test_make_int_and_unmake_int_restore_everything():
    for board in boards(20):
        before = (board.fen(), board.key, list(board.key_history), list(board.check_history), board.ply)
        for m in board.legal_move_ints():
            board.make_int(m)
            assert board.key == board.key_history[-1] == Board(board.fen()).key
            assert board.check_history[-1] == board.is_check()
            assert board.played_ints()[-1] == m
            assert board.unmake_int() == m
        assert (board.fen(), board.key, board.key_history, board.check_history, board.ply) == before


def test_played_ints_cover_push_and_make_int():
    board = Board()
    board.push_iccs("h2e2")
    board.make_int(Move.from_iccs("h9g7").to_int())
    assert [Move.from_int(m).iccs() for m in board.played_ints()] == ["h2e2", "h9g7"]
    assert [Move.from_int(m).iccs() for m in board.played_ints(1)] == ["h9g7"]
    assert board.ply == 2 and [m.iccs() for m in board.move_stack] == ["h2e2"]


def test_null_move():
    board = Board("4k4/9/9/9/9/9/9/9/R8/3K5 w - - 7 12", strict=False)
    key, fen = board.key, board.fen()
    board.make_null()
    assert board.turn == BLACK and board.halfmove_clock == 0 and board.ply == 0 and board.fullmove_number == 12
    assert board.key == Board("4k4/9/9/9/9/9/9/9/R8/3K5 b - - 0 12", strict=False).key
    assert board.key != key and board.key_history[-2:] == [key, board.key]
    assert board.check_history[-1] is False
    copy = board.copy()                  # a copy carries the null move and undoes it on its own
    board.make_null()
    board.unmake_null()
    board.unmake_null()
    assert board.fen() == fen and board.key == key and board.key_history == [key]
    assert board.check_history == [False]
    copy.unmake_null()
    assert copy.fen() == fen and copy.key == key


def test_king_square_and_squares_view():
    board = Board()
    assert board.king_square(RED) == parse_square("e0")
    assert board.king_square(BLACK) == parse_square("e9")
    assert board.squares[parse_square("a0")] == ROOK
    assert board.squares[parse_square("e9")] == KING | 8
    assert len(board.squares) == 90 and Board(STARTING_FEN).squares == board.squares


# ---- the boundary: no other module uses Board's (or Move's) private members ----------------------------------

def _private_names() -> set[str]:
    names = set()
    for obj in (Board, Board(), Move, Move(0, 1)):
        names |= {n for n in dir(obj) if n.startswith("_") and not n.startswith("__")}
    names |= {n for n in vars(Board()) if n.startswith("_")}
    return names


def _private_use(names: set[str]):
    """``.name`` for a private board name, not on ``self`` (a class's own member of the same name)."""
    return re.compile(r"(?<!\bself)\.(" + "|".join(sorted(map(re.escape, names))) + r")\b")


def _sources() -> list[Path]:
    files = [p for folder in ("xiangqi_gpt", "teaforn", "benchmarks", "scripts") for p in (ROOT / folder).rglob("*.py")]
    files += list(ROOT.glob("*.py"))
    return [p for p in files if p != ROOT / "xiangqi_gpt" / "rules" / "board.py"]


def test_the_private_check_can_fail():
    names = _private_names()
    assert {"_sq", "_keys", "_checks", "_kings", "_stack", "_attacked", "_pseudo"} <= names
    pattern = _private_use(names)
    assert pattern.search("sq = board._sq")
    assert pattern.search("self.board._pseudo(True)")
    assert pattern.search("k = board._kings[0]")
    assert not pattern.search("self._pseudo(m)")        # a module's own method
    assert not pattern.search("board.squares; b.make_int(m)")


def test_no_module_uses_board_private_members():
    pattern = _private_use(_private_names())
    sources = _sources()
    assert any(p.name == "search.py" for p in sources)
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
             for p in sources for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert not found, "private Board/Move members used outside board.py:\n" + "\n".join(found)


@pytest.mark.parametrize("fen", [STARTING_FEN, "4k4/9/9/9/9/9/9/9/R8/3K5 w - - 0 1"])
def test_perft_unchanged_by_the_int_api(fen):
    board = Board(fen, strict=False)
    assert board.perft(2) == sum(board.perft_divide(2).values())


def test_no_module_imports_board_private_names():
    found = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "board":
                found += [f"{p.relative_to(ROOT)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not found, "private board names imported outside board.py:\n" + "\n".join(found)
