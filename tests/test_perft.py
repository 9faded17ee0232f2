"""Perft: exact leaf counts of the legal move tree against published numbers.

The published table lives in ``../shared/perft/published.json`` (start position, the chessprogramming.org suite and
Fairy-Stockfish's test positions, each re-counted with Fairy-Stockfish). Entries up to ``MAX_NODES`` leaves run here
(about 5 s in all); the rest are for ``benchmarks/bench_perft.py --deep``. A few counts are hard-coded so the test
still means something where the shared directory is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xiangqi_gpt.rules.board import STARTING_FEN, Board
from xiangqi_gpt.cli import main

PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "perft" / "published.json"
MAX_NODES = 2_000_000

# From the published table (chessprogramming.org "Chinese Chess Perft Results").
HARD_CODED = [
    (STARTING_FEN, 1, 44),
    (STARTING_FEN, 2, 1920),
    (STARTING_FEN, 3, 79666),
    ("r1ba1a3/4kn3/2n1b4/pNp1p1p1p/4c4/6P2/P1P2R2P/1CcC5/9/2BAKAB2 w - - 0 1", 3, 43929),
    ("1cbak4/9/n2a5/2p1p3p/5cp2/2n2N3/6PCP/3AB4/2C6/3A1K1N1 w - - 0 1", 3, 8620),
]


def _published_params():
    if not PUBLISHED.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{PUBLISHED} not found"), id="published-absent")]
    entries = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    return [pytest.param(e, id=f"{e['name']}-d{e['depth']}") for e in entries if e["nodes"] <= MAX_NODES]


@pytest.mark.parametrize("fen, depth, nodes", HARD_CODED)
def test_perft_hard_coded(fen, depth, nodes):
    assert Board(fen).perft(depth) == nodes


@pytest.mark.parametrize("entry", _published_params())
def test_perft_published(entry):
    board = Board(entry["fen"])
    assert board.perft(entry["depth"]) == entry["nodes"], entry["name"]
    assert board.fen() == Board(entry["fen"]).fen()      # perft leaves the board as it found it


def test_perft_divide_matches_children():
    board = Board(HARD_CODED[3][0])
    divide = board.perft_divide(2)
    assert sum(divide.values()) == 1128
    for move in list(divide)[:5]:
        child = board.copy()
        child.push_iccs(move)
        assert child.perft(1) == divide[move]


def test_cli_perft(capsys):
    assert main(["perft", "--depth", "2"]) == 0
    assert capsys.readouterr().out.strip() == "1920"
    main(["perft", "--depth", "2", "--divide", "--fen", HARD_CODED[3][0]])
    lines = capsys.readouterr().out.split()
    assert lines[-1] == "1128" and len(lines) == 38 * 2 + 1 and lines[0].endswith(":")


def test_cli_moves(capsys):
    main(["moves"])
    moves = capsys.readouterr().out.split()
    assert len(moves) == 44 and moves == sorted(moves) and "h2e2" in moves


@pytest.mark.parametrize("argv, message", [
    (["perft", "--depth", "1", "--fen", "not a fen"], "error: bad FEN"),
    (["perft", "--depth", "-1"], "error: --depth must be >= 0"),
    (["moves", "--fen", "4k4/9/9/9/9/9/9/9/9/4K4 w"], "error: bad FEN"),
])
def test_cli_user_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
