"""xiangqi_gpt.play.review: labels, accuracy, the review of a game with a hung chariot, and the review command's outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_play import write_tiny_checkpoint
from xiangqi_gpt.rules.board import BLACK, RED, Move
from xiangqi_gpt.records.pgn import Game, read_games, write_game
from xiangqi_gpt.play.review import (EVAL_CAP, THRESHOLDS, annotated_pgn, format_score, label_for, move_accuracy,
                                review_game, review_limits, review_tables, win_percent)
from xiangqi_gpt.play.search import MATE

ROOT = Path(__file__).resolve().parents[1]
# Red's chariot h4 stands on the h-file facing Black's chariot; 5. a3a4?? leaves it to h9h4 for nothing.
HUNG_CHARIOT = "h2e2 h9g7 h0g2 i9h9 i0h0 b9c7 h0h4 h7i7 a3a4 h9h4 e2e6".split()
BLUNDER_PLY = 9


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def player(checkpoint):
    import torch

    from xiangqi_gpt.model.checkpoint import load_model
    from xiangqi_gpt.play.player import GPTPlayer

    torch.set_num_threads(1)
    return GPTPlayer(load_model(str(checkpoint)))


@pytest.fixture(scope="module")
def hung_review(player):
    game = Game(moves=[Move.from_iccs(m) for m in HUNG_CHARIOT])
    return review_game(player, game.root_fen, game.moves, review_limits(), headers={"Red": "R", "Black": "B"})


def game_text(notation: str) -> str:
    game = Game(headers={"Event": "hung chariot", "Red": "R", "Black": "B"},
                moves=[Move.from_iccs(m) for m in HUNG_CHARIOT])
    return write_game(game, notation=notation)


def review_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120", PYTHONIOENCODING="utf-8",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "xiangqi_gpt", "review", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, cwd=cwd, timeout=300)


# --------------------------------------------------------------------------------------------------------------------
# Scores, labels, accuracy


def test_labels_follow_the_thresholds():
    (blunder, b), (mistake, m), (inaccuracy, i) = THRESHOLDS
    assert (blunder, mistake, inaccuracy) == ("blunder", "mistake", "inaccuracy") and b > m > i > 0
    assert label_for(b) == label_for(10 * b) == "blunder"
    assert label_for(b - 1) == label_for(m) == "mistake"
    assert label_for(m - 1) == label_for(i) == "inaccuracy"
    assert label_for(i - 1) is None and label_for(0) is None


def test_accuracy_and_win_chances():
    assert win_percent(0) == pytest.approx(50)
    assert win_percent(MATE - 3) == win_percent(EVAL_CAP) > 97 and win_percent(-MATE + 3) < 3
    assert move_accuracy(100, 100) == move_accuracy(-50, 200) == 100.0       # no loss of winning chances
    assert 75 < move_accuracy(0, -50) < 90                                     # half a soldier: 81
    assert move_accuracy(0, -50) > move_accuracy(0, -300) > move_accuracy(0, -900) >= 0
    assert move_accuracy(2000, 1200) == 100.0                                  # still won: both are capped
    assert format_score(35) == "+35" and format_score(-120) == "-120"
    assert format_score(MATE - 5) == "M3" and format_score(-MATE + 2) == "-M1"


# --------------------------------------------------------------------------------------------------------------------
# A game where Red hangs a chariot


def test_hung_chariot_is_a_blunder_and_the_best_move_is_shown(hung_review):
    review = hung_review
    assert len(review.moves) == len(HUNG_CHARIOT)
    hung = review.moves[BLUNDER_PLY - 1]
    assert hung.move.iccs() == "a3a4" and hung.side == RED
    assert hung.label == "blunder" and hung.loss >= 700
    assert hung.best is not None and hung.best != hung.move and hung.best_line[0] == hung.best
    assert hung.after <= -700 and hung.before > -200                   # the mover's view, before and after
    taken = review.moves[BLUNDER_PLY]
    assert taken.move.iccs() == "h9h4" and taken.side == BLACK and taken.label is None and taken.before >= 700
    assert review.summary(RED).counts["blunder"] >= 1
    assert review.summary(BLACK).counts["blunder"] == 0
    assert review.summary(RED).accuracy < review.summary(BLACK).accuracy
    for m in review.moves:
        assert 0 <= m.gpt_prob <= 1 and m.gpt_rank >= 1 and 0 <= m.accuracy <= 100 and m.loss >= 0
        assert m.after <= m.before                                     # one horizon: the best is at least as good
        assert (m.label is None) == (m.loss < THRESHOLDS[-1][1])


def test_tables_show_the_label_and_the_best_line(hung_review):
    from rich.console import Console

    console = Console(width=140, record=True, file=open(os.devnull, "w"))
    moves, sides = review_tables(hung_review)
    console.print(moves)
    console.print(sides)
    text = console.export_text()
    row = next(line for line in text.splitlines() if "a3a4" in line)
    hung = hung_review.moves[BLUNDER_PLY - 1]
    assert "blunder" in row and hung.best.iccs() in row and "兵九進一" in row
    assert "blunders" in text and "inaccuracies" in text and "accuracy" in text


def test_annotated_pgn_reads_back_with_marks_and_comments(hung_review):
    for notation in ("iccs", "wxf", "chinese"):
        text = annotated_pgn(hung_review, notation)
        assert "??" in text and "[%eval" in text and "Blunder" in text
        games = list(read_games(text.encode("utf-8")))
        assert len(games) == 1 and not isinstance(games[0], Exception), games
        assert [m.iccs() for m in games[0].moves] == HUNG_CHARIOT
        assert games[0].headers["Annotator"].startswith("xiangqi-gpt review")
    iccs = annotated_pgn(hung_review, "iccs")
    assert "a3a4??" in iccs and f"best {hung_review.moves[BLUNDER_PLY - 1].best.iccs()}" in iccs


def test_a_mating_move_and_a_game_from_a_position(player):
    fen = "4k4/7R1/9/9/9/9/9/9/9/R2K5 w - - 0 1"                     # a0a9 mates; h8h9+ is only a check
    review = review_game(player, fen, [Move.from_iccs("h8h9"), Move.from_iccs("e9e8"), Move.from_iccs("a0a8")],
                         review_limits(1), result="*")
    first = review.moves[0]
    assert first.before == MATE - 1 and format_score(first.before) == "M1" and first.best.iccs() == "a0a9"
    assert first.after > EVAL_CAP and first.after < MATE - 1000                 # a mate in one missed, but
    assert first.loss == 0 and first.label is None                              # two chariots up: still won
    mate = review_game(player, fen, [Move.from_iccs("a0a9")], review_limits(1), result="1-0")
    assert mate.moves[0].label is None and mate.moves[0].loss == 0 and mate.moves[0].accuracy == 100
    text = annotated_pgn(mate)
    assert "a0a9 {GPT" in text and "[%eval" not in text                       # no evaluation once mated
    game = next(iter(read_games(text.encode("utf-8"))))
    assert game.root_fen == fen and game.result == "1-0" and [m.iccs() for m in game.moves] == ["a0a9"]


# --------------------------------------------------------------------------------------------------------------------
# The command


def test_review_command_writes_pgn_json_and_png(checkpoint, tmp_path):
    """A WXF record in, the annotated game out in Chinese notation."""
    notation = "chinese"
    record = tmp_path / "game.pgn"
    record.write_text(game_text("wxf"), encoding="utf-8")
    out, report, graph = tmp_path / "out.pgn", tmp_path / "review.json", tmp_path / "eval.png"
    r = review_cli([str(record), "--checkpoint", str(checkpoint), "--out", str(out), "--json", str(report),
                    "--plot", str(graph), "--notation", notation], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "blunder" in r.stdout and "Per side" in r.stdout and "11 plies reviewed" in r.stdout
    data = json.loads(report.read_text(encoding="utf-8"))
    assert [e["move"] for e in data["moves"]] == HUNG_CHARIOT
    entry = data["moves"][BLUNDER_PLY - 1]
    assert entry["label"] == "blunder" and entry["best"] != "a3a4" and entry["best_line"][0] == entry["best"]
    assert set(entry["eval_before"]) == {"cp", "mate"} and entry["eval_after"]["cp"] < entry["eval_before"]["cp"]
    assert data["sides"]["red"]["blunders"] >= 1 and data["thresholds_cp"]["blunder"] == 300
    assert graph.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    game = next(iter(read_games(str(out))))
    assert [m.iccs() for m in game.moves] == HUNG_CHARIOT and game.headers["Format"].lower() == notation


def test_review_command_errors_are_one_line(checkpoint, tmp_path):
    record = tmp_path / "game.pgn"
    record.write_text(game_text("iccs"), encoding="utf-8")
    cases = [([str(tmp_path / "missing.pgn")], "no such file"),
             ([str(record), "--level", "0"], "needs a search"),
             ([str(record), "--level", "9"], "--level"),
             ([str(record), "--game", "2"], "only 1 game"),
             ([str(record), "--movetime", "0"], "--movetime"),
             ([str(record), "--out", str(tmp_path / "no" / "x.pgn")], "no such folder")]
    for args, message in cases:
        r = review_cli([*args, "--checkpoint", str(checkpoint)], tmp_path)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
