"""play.py / xiangqi_gpt.play.terminal: the board drawing, and whole sessions driven through piped stdin."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from xiangqi_gpt.rules.board import Board, Move
from xiangqi_gpt.play.terminal import (COMPACT_BOARD_WIDTH, FULL_BOARD_WIDTH, MIN_WIDTH, SearchLine, View, render_board,
                                  render_panel, render_screen)

ROOT = Path(__file__).resolve().parents[1]
MATE_IN_ONE = "4k4/7R1/9/9/9/9/9/9/9/R2K5 w - - 0 1"      # a0a9 mates
RED_PIECES = "帥仕相傌俥炮兵"
BLACK_PIECES = "將士象馬車砲卒"


def write_tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised one-layer GPT in the exported .pt format (legal moves come from the player)."""
    import torch

    from xiangqi_gpt.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    config = GPTConfig(block_size=64, n_layer=1, n_head=2, n_embd=32)
    torch.save({"format": "xiangqi-gpt-model", "version": 1, "config": asdict(config),
                "state_dict": GPT(config).state_dict(), "info": {"note": "random weights for tests"}}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def play(args: list[str], stdin: str, columns: int = 100, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS=str(columns), LINES="50", PYTHONIOENCODING="utf-8")
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, str(ROOT / "play.py"), *args], input=stdin, capture_output=True,
                          text=True, encoding="utf-8", env=env, cwd=tempfile.gettempdir(), timeout=timeout)


# --------------------------------------------------------------------------------------------------------------------
# Drawing (in process)

def board_lines(board: Board, **kwargs) -> list[str]:
    return render_board(board, **kwargs).plain.splitlines()


def test_board_has_every_piece_river_and_labels():
    text = render_board(Board()).plain
    for glyph in RED_PIECES + BLACK_PIECES:
        assert glyph in text
    assert "楚 河" in text and "漢 界" in text
    lines = text.splitlines()
    assert lines[0].split() == list("１２３４５６７８９")            # Black's numbers on top, from its right
    assert lines[-2].split() == list("九八七六五四三二一")          # Red's numbers below, from its right
    assert lines[-1].split() == list("abcdefghi")
    assert lines[1].startswith("9 車") and lines[-3].startswith("0 俥")
    assert "╲" in lines[2] and "╱" in lines[2]                     # palace diagonals


def test_flipped_board_puts_black_at_the_bottom():
    lines = board_lines(Board(), flipped=True)
    assert lines[0].split() == list("一二三四五六七八九")
    assert lines[-2].split() == list("９８７６５４３２１")
    assert lines[-1].split() == list("ihgfedcba")
    assert lines[1].startswith("0 俥") and lines[-3].startswith("9 車")


def test_columns_align_in_terminal_cells():
    """Every point row is the same number of cells wide, and each piece sits in its file's column."""
    board = Board("4k4/9/9/9/9/9/9/9/9/R2K4R w - - 0 1")
    for compact, width in ((False, FULL_BOARD_WIDTH), (True, COMPACT_BOARD_WIDTH)):
        lines = board_lines(board, compact=compact)
        point_rows = [line for line in lines if line[:1].isdigit()]
        assert len(point_rows) == 10
        assert {cell_len(line) for line in point_rows} == {width}
        step = 3 if compact else 4
        bottom = point_rows[-1]                      # rank 0: 俥 on a and i, 帥 on d
        for glyph, file in (("俥", 0), ("帥", 3)):
            cells = cell_len(bottom[:bottom.index(glyph)])
            assert cells == 2 + step * file
        assert cell_len(bottom[:bottom.rindex("俥")]) == 2 + step * 8


def test_last_move_and_check_are_highlighted():
    board = Board(MATE_IN_ONE)
    board.push_iccs("a0a9")
    text = render_board(board, last_move=board.move_stack[-1])
    styled = [(text.plain[span.start:span.end], str(span.style)) for span in text.spans]
    assert [s for g, s in styled if g == "將"] == ["bold #111111 on #efd39b on #ff7b7b"]     # in check
    assert sorted("#9fd18b" in s for g, s in styled if g == "俥") == [False, True]         # the rook that moved
    assert any(g.startswith("└") and "#9fd18b" in s for g, s in styled)                    # a0, where it came from


@pytest.mark.parametrize("width", [100, 60, 34, 20])
def test_layouts_by_width(width):
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    board = Board()
    console.print(render_screen(board, View(human=0, flipped=False), width))
    text = console.export_text()
    if width < MIN_WIDTH:
        assert "needs at least" in text and "車" not in text
        return
    assert "車" in text and "楚" in text
    assert max(cell_len(line) for line in text.splitlines()) <= width
    board_beside_panel = any("車" in line and "to move" in line for line in text.splitlines())
    assert board_beside_panel == (width >= 79)


# --------------------------------------------------------------------------------------------------------------------
# Whole sessions through piped stdin

def test_scripted_session(checkpoint, tmp_path):
    pgn_path = tmp_path / "game.pgn"
    script = "\n".join(["h2f3", "zz", "h2e2", "hint", "undo", "C2.5", "flip", "help",
                        f"save {pgn_path}", ""])
    r = play(["--checkpoint", str(checkpoint)], script)
    out = r.stdout
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + out
    for glyph in RED_PIECES + BLACK_PIECES:
        assert glyph in out
    assert "楚 河" in out and "漢 界" in out and "九  八  七" in out and "a   b   c" in out
    assert "h2f3: a cannon moves in straight lines" in out
    assert "cannot read move 'zz'" in out
    assert "炮二平五 h2e2" in out                          # the legal move, in the move list
    assert "The model plays" in out
    assert "The model would consider" in out                # hint
    assert "Took back h2e2" in out                          # undo took back the pair
    assert "undo" in out and "resign" in out                # help
    assert f"to {pgn_path}" in out

    from xiangqi_gpt.records.pgn import read_games

    games = list(read_games(str(pgn_path)))
    assert len(games) == 1 and not isinstance(games[0], Exception)
    game = games[0]
    assert len(game.moves) == 2 and game.moves[0] == Move.from_iccs("h2e2")   # C2.5 == h2e2
    assert Board().copy().is_legal(game.moves[0])
    assert game.headers["Red"] == "human" and game.headers["Black"] == "xiangqi-gpt"


def test_playing_black_flips_the_board_and_the_model_opens(checkpoint):
    r = play(["--checkpoint", str(checkpoint), "--side", "black"], "")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    first_board = lines[:24]
    assert first_board[0].split()[:9] == list("一二三四五六七八九")     # Red's numbers on top
    assert any(line.startswith("0 俥") for line in first_board)
    assert "The model plays" in r.stdout and "Black (you)>" in r.stdout


def test_mate_ends_the_game_and_offers_to_save(tmp_path):
    """No model is needed when the human mates at once: the game ends by the rules and the PGN says 1-0."""
    pgn_path = tmp_path / "mate.pgn"
    r = play(["--fen", MATE_IN_ONE, "--checkpoint", str(tmp_path / "unused.pt")], "a0a9\n", columns=90)
    assert r.returncode == 2 and "checkpoint not found" in r.stderr    # the checkpoint is checked up front
    (tmp_path / "unused.pt").write_bytes(b"not loaded unless the model must move")
    r = play(["--fen", MATE_IN_ONE, "--checkpoint", str(tmp_path / "unused.pt")], f"a0a9\n{pgn_path}\nh2e2\n",
             columns=90)
    assert r.returncode == 0, r.stderr
    assert "Game over: Black is checkmated (Red wins, 1-0)" in r.stdout
    assert "Save the game as PGN?" in r.stdout
    assert "The game is over" in r.stdout                           # moves after the end are refused
    from xiangqi_gpt.records.pgn import read_games

    game = next(iter(read_games(str(pgn_path))))
    assert game.result == "1-0" and game.root_fen.split()[0] == MATE_IN_ONE.split()[0]
    assert [m.iccs() for m in game.moves] == ["a0a9"]


def test_bad_options_give_one_line_errors():
    r = play(["--fen", "not a fen"], "")
    assert r.returncode == 2 and r.stderr.startswith("error: bad FEN") and "Traceback" not in r.stderr
    r = play(["--temperature", "-1"], "")
    assert r.returncode == 2 and "--temperature" in r.stderr


def test_narrow_terminal_says_so_and_still_plays(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x")
    r = play(["--fen", MATE_IN_ONE, "--checkpoint", str(tmp_path / "m.pt")], "a0a9\n\n", columns=24)
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    assert "needs at least 30" in flat and "車" not in flat
    assert "Black is checkmated" in flat


def test_ctrl_c_exits_without_traceback(checkpoint):
    env = dict(os.environ, COLUMNS="90", PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen([sys.executable, str(ROOT / "play.py"), "--checkpoint", str(checkpoint)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while "(you)>".encode() not in seen and time.monotonic() < deadline:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert "楚 河".encode() in seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert b"Traceback" not in err and b"bye" in out


def test_commands_that_need_no_model(tmp_path):
    """resign / save at game end / undo / load (FEN and PGN) / new, with Red to move so the model is never asked."""
    (tmp_path / "m.pt").write_bytes(b"never loaded")
    first, second = tmp_path / "resigned.pgn", tmp_path / "mate.pgn"
    script = [
        "resign", str(first),                     # game over by resignation, saved from the prompt
        "h2e2",                                   # refused: the game is over
        "undo",                                   # takes back the resignation
        f"load {MATE_IN_ONE}", "a0a9", str(second),
        "load /nonexistent/x.pgn", "load not-a-fen",
        f"load {second}",                         # the record's final position: Black is mated
        "new", "resign", "quit",                  # a command typed at the save prompt is run as a command
    ]
    r = play(["--checkpoint", str(tmp_path / "m.pt")], "\n".join(script) + "\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Game over: Red resigns (Black wins, 0-1)" in out
    assert "The game is over: type new, undo, save or quit." in out
    assert "cannot load: no such file: /nonexistent/x.pgn" in out and "cannot load: bad FEN 'not-a-fen'" in out
    assert out.count("Save the game as PGN?") == 3                   # resign, a0a9, resign; not after the load
    assert "Saved 0 plies" in out and "Saved 1 ply " in out
    assert out.count("Black is checkmated") >= 2                      # after a0a9 and after loading the record
    assert not (tmp_path / "quit").exists() and out.rstrip().endswith("bye")
    from xiangqi_gpt.records.pgn import read_games

    resigned = next(iter(read_games(str(first))))
    assert resigned.result == "0-1" and resigned.moves == [] and resigned.headers["Termination"] == "Red resigns"
    mate = next(iter(read_games(str(second))))
    assert mate.result == "1-0" and [m.iccs() for m in mate.moves] == ["a0a9"]


def test_broken_checkpoint_is_one_line_error(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a model")
    r = play(["--checkpoint", str(broken), "--side", "black"], "")
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "broken.pt" in r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------------------------------------------------
# The search: --level, the panel's evaluation and principal variation, hint, the level command

def test_panel_shows_the_search_evaluation_and_line():
    from xiangqi_gpt.play.search import SearchInfo

    board = Board()
    pv = [Move.from_iccs(t) for t in ("h2e2", "h9g7", "h0g2", "i9h9", "i0h0")]
    view = View(human=1, flipped=True)
    view.level = 4
    view.candidates = [("炮二平五", "h2e2", 0.6), ("傌二進三", "h0g2", 0.3)]
    view.candidates_for = "move 1 (Red)"
    info = SearchInfo(depth=5, seldepth=9, score_cp=35, mate=None, nodes=12345, time_ms=1500, nps=8230, gpt_calls=4,
                      pv=pv)
    view.search = SearchLine(board, info, "model")
    text = render_panel(board, view, width=60).plain
    assert "level 4" in text.splitlines()[0]
    assert "Model's search, move 1 (Red)" in text and "depth 5, 12,345 nodes, 1.5 s" in text
    assert "+35 cp for Red (model)" in text
    assert "PV 炮二平五 馬８進７ 傌二進三 車９平８ 俥一平二" in text and "h2e2 h9g7 h0g2 i9h9 i0h0" in text
    assert "炮二平五 h2e2  60.0%" in text and text.splitlines()[-2].endswith(" <")     # the searched move
    mated = SearchInfo(depth=3, seldepth=3, score_cp=-29997, mate=-2, nodes=10, time_ms=1, nps=10, gpt_calls=1,
                       pv=pv[:2])
    assert SearchLine(board, mated, "you").evaluation() == "Red (you) is mated in 2"
    compact = render_panel(board, view, width=30, compact=True).plain
    assert max(cell_len(line) for line in compact.splitlines()) <= 30
    assert "Search, level 4" in compact and "PV 炮二平五" in compact


def test_level_plays_with_search_and_shows_it(checkpoint):
    script = ["h2e2", "hint", "level", "level x", "level 0", "h0g2", "level 1", "quit"]
    r = play(["--checkpoint", str(checkpoint), "--level", "2"], "\n".join(script) + "\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Traceback" not in r.stderr + out
    assert "you play Red · level 2" in out
    assert "Model's search, move 1 (Black)" in out and "PV " in out
    assert "Black (model)" in out                                                 # the evaluation, in words
    assert "The search (level 2) suggests" in out and "Red (you)" in out          # hint at the level
    assert "The model would consider" in out
    from xiangqi_gpt.play.search import LEVELS
    from xiangqi_gpt.play.terminal import describe_limits

    assert f"Levels 0: the model alone; 1: {describe_limits(LEVELS[1])}" in out
    assert "the level must be a whole number from 0 to" in out
    assert "Level 0: the model alone, no search." in out
    assert f"Level 1: the search budget is {describe_limits(LEVELS[1])}." in out
    plays = [line for line in out.splitlines() if line.startswith("The model plays")]
    assert len(plays) == 2 and "Searched depth" in plays[0] and "Searched" not in plays[1]   # level 0: no search


def test_bad_level_is_a_one_line_error():
    for bad in ("99", "x", "-1"):
        r = play(["--level", bad], "")
        assert r.returncode == 2 and r.stderr.startswith("error: --level") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------------------------------------------------
# Positions in and out (fen, setup, pgn), hint N, review

def test_fen_setup_and_pgn_commands(tmp_path):
    """Red is to move throughout, so the model is never asked."""
    (tmp_path / "m.pt").write_bytes(b"never loaded")
    impossible = "4k4/9/9/9/9/9/9/9/9/3KK4 w - - 0 1"
    script = ["fen", "setup", "setup not-a-fen", f"setup {impossible}", f"setup {MATE_IN_ONE}", "fen", "pgn wrong",
              "a0a9", "", "pgn iccs", "pgn", "quit"]
    r = play(["--checkpoint", str(tmp_path / "m.pt")], "\n".join(script) + "\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    lines = out.splitlines()
    assert "rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w - - 0 1" in lines   # fen, on a line
    assert MATE_IN_ONE in lines                                                            # after setup
    assert "usage: setup FEN" in out
    assert "cannot set up this position: bad FEN 'not-a-fen'" in out
    assert f"cannot set up this position: bad FEN '{impossible}': two Red generals" in out
    assert "usage: pgn [chinese|iccs|wxf], got 'wrong'" in out
    assert "Black is checkmated" in out and "review to see where it went wrong" in out
    assert f'[FEN "{MATE_IN_ONE}"]' in out and "1. a0a9 1-0" in lines and '[Format "ICCS"]' in out
    chinese = out[out.rindex('[Event "'):]                                # the last pgn: Chinese notation
    from xiangqi_gpt.records.pgn import read_games

    record = chinese[:chinese.index("1-0", chinese.index("\n1. ")) + 3]
    game = next(iter(read_games(record.encode("utf-8"))))
    assert [m.iccs() for m in game.moves] == ["a0a9"] and game.result == "1-0"
    assert game.headers["Format"] == "Chinese" and game.root_fen == MATE_IN_ONE


def test_hint_n_shows_lines_in_the_panel():
    from xiangqi_gpt.play.search import SearchInfo
    from xiangqi_gpt.play.terminal import position_key

    board = Board()
    view = View(human=0, flipped=False)
    lines = []
    for first, score in (("h2e2", 30), ("h0g2", 20), ("b2e2", -5)):
        pv = [Move.from_iccs(first), Move.from_iccs("h9g7")]
        lines.append(SearchLine(board, SearchInfo(depth=3, seldepth=3, score_cp=score, mate=None, nodes=1, time_ms=1,
                                                  nps=1, gpt_calls=0, pv=pv), "you"))
    view.hints, view.hints_for = lines, position_key(board)
    text = render_panel(board, view, width=60).plain
    assert "Hint, 3 lines for Red" in text
    assert " 1.   +30 cp 炮二平五 馬８進７" in text and " 2.   +20 cp 傌二進三" in text
    assert " 3.    -5 cp" in text
    assert "h2e2 h9g7" in text
    compact = render_panel(board, view, width=30, compact=True).plain
    assert "Hint, 3 lines" in compact and max(cell_len(line) for line in compact.splitlines()) <= 30
    board.push_iccs("h2e2")                                     # another position: the old lines are not shown
    assert "Hint" not in render_panel(board, view, width=60).plain


def test_search_lines_gives_distinct_legal_lines(checkpoint):
    import torch

    from xiangqi_gpt.model.checkpoint import load_model
    from xiangqi_gpt.play.player import GPTPlayer
    from xiangqi_gpt.play.search import LEVELS, SearchPlayer
    from xiangqi_gpt.play.terminal import search_lines

    torch.set_num_threads(1)
    sp = SearchPlayer(GPTPlayer(load_model(str(checkpoint))), 2)
    board = Board()
    board.push_iccs("h2e2")
    results = search_lines(sp, board, 3, LEVELS[2])
    moves = [r.move for r in results]
    assert len(moves) == 3 and len(set(moves)) == 3 and all(board.is_legal(m) for m in moves)
    scores = [r.info.score_cp for r in results]
    assert scores == sorted(scores, reverse=True)                            # best first, plain evaluations
    assert all(r.info.pv[0] == r.move for r in results)
    two = Board("3k5/9/9/9/9/9/9/9/9/4K4 w - - 0 1")                          # e0e1 and e0f0 only
    results = search_lines(sp, two, 3, LEVELS[2])
    assert sorted(r.move.iccs() for r in results) == ["e0e1", "e0f0"]


def test_hint_n_and_review_in_a_game(checkpoint):
    script = ["h2e2", "hint 3", "hint 9", "review x", "review", "quit"]
    r = play(["--checkpoint", str(checkpoint)], "\n".join(script) + "\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Traceback" not in r.stderr + out
    assert "Hint, 3 lines for Red" in out and "shows 3 lines in the panel" in out
    panel = out[out.index("Hint, 3 lines"):]
    assert all(f" {k}. " in panel for k in (1, 2, 3))
    assert "usage: hint [N], N from 1 to 5 lines" in out
    assert "the level must be a whole number" in out                      # review x
    assert "Per side" in out and "accuracy" in out and "Reviewed 2 plies at level 3" in out
    assert "炮二平五 h2e2" in out
