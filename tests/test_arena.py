import json

import pytest

from eval_fixtures import one_thread  # noqa: F401  (the fixture of pytestmark)
from eval_fixtures import forced_move_model, load, save_pt, tiny_checkpoint
from xiangqi_gpt.rules.board import Board
from xiangqi_gpt.cli import main
from xiangqi_gpt.play.arena import elo_interval, opening_schedule, play_game, run_match, summarize
from xiangqi_gpt.play.fairy import find_fairy_stockfish
from xiangqi_gpt.play.match import OPENINGS, RandomPlayer
from xiangqi_gpt.records.pgn import read_games
from xiangqi_gpt.rules.notation import is_legal_text
from xiangqi_gpt.play.player import GPTPlayer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_elo_interval():
    even = elo_interval(5, 0, 5)
    assert even["diff"] == 0 and even["low"] < 0 < even["high"] and not even["clamped"]
    assert elo_interval(3, 2, 1)["diff"] == pytest.approx(-400 * __import__("math").log10(1 / (4 / 6) - 1), abs=0.1)
    assert elo_interval(30, 10, 10)["diff"] > elo_interval(20, 10, 20)["diff"] > elo_interval(10, 10, 30)["diff"]
    wide, narrow = elo_interval(6, 0, 4), elo_interval(60, 0, 40)
    assert wide["high"] - wide["low"] > narrow["high"] - narrow["low"] > 0
    for e in (elo_interval(0, 0, 10), elo_interval(10, 0, 0), elo_interval(0, 10, 0), elo_interval(3, 4, 5)):
        assert e["low"] <= e["diff"] <= e["high"]
    zero, full = elo_interval(0, 0, 10), elo_interval(10, 0, 0)
    assert zero["clamped"] and full["clamped"]
    assert zero["diff"] == pytest.approx(-full["diff"]) and -1000 < zero["diff"] < -300   # finite, a bound
    assert zero["high"] > zero["diff"]


def test_openings_are_legal_and_paired():
    for line in OPENINGS:
        board = Board()
        for m in line:
            board.push_iccs(m)
    sched = opening_schedule(30, seed=4)
    assert len(sched) == 30 and all(sched[2 * i] == sched[2 * i + 1] for i in range(15))
    assert len(set(sched)) == len(OPENINGS)            # 15 pairs use every line of the book
    assert sched == opening_schedule(30, seed=4) != opening_schedule(30, seed=5)


def replay(moves):
    board = Board()
    for m in moves:
        board.push_iccs(m)   # raises on an illegal move
    return board


def test_match_against_random_completes_with_legal_moves(tmp_path):
    player = GPTPlayer(load(tiny_checkpoint(tmp_path, "move", 32)), seed=1)
    records = run_match(player, RandomPlayer(seed=2), 4, seed=3, max_plies=40)
    assert [r.model_color for r in records] == ["red", "black", "red", "black"]
    for r in records:
        board = replay(r.moves)
        assert r.moves[:2] == r.opening
        assert 0 < r.plies <= 40
        outcome = board.outcome()
        if r.termination == "ply_cap":
            assert outcome is None and r.plies == 40 and r.result == "1/2-1/2"
        else:
            assert outcome.termination == r.termination and outcome.result() == r.result
        assert 0 <= r.illegal_attempts <= r.model_moves
        assert r.model_moves == sum(1 for i in range(2, r.plies) if (i % 2 == 0) == (r.model_color == "red"))
    s = summarize(records)
    assert s["wins"] + s["draws"] + s["losses"] == 4
    assert s["average_length"] == sum(r.plies for r in records) / 4


def test_illegal_attempts_are_counted(tmp_path):
    """A model whose raw move is always h2e2: its raw move is illegal at every one of its moves except where the
    rule engine says h2e2 is legal."""
    player = GPTPlayer(load(save_pt(forced_move_model("h2e2", 32), tmp_path / "forced.pt")))
    record = play_game(player, RandomPlayer(seed=0), model_color=1, opening=(), max_plies=30, sample_plies=0)
    board, expected = Board(), 0
    for i, m in enumerate(record.moves):
        if i % 2 == 1:
            expected += not is_legal_text(board, "h2e2")
        board.push_iccs(m)
    assert record.illegal_attempts == expected == record.model_moves == 15     # never legal for Black
    assert sum(record.illegal_kinds.values()) == 15                         # each attempt has its rule
    assert set(record.illegal_kinds) <= {"opponents_piece", "no_piece", "own_piece", "piece_rules"}
    assert record.illegal_kinds.get("opponents_piece", 0) >= 1              # Red's cannon on h2, at first
    record = play_game(player, RandomPlayer(seed=0), model_color=0, opening=(), max_plies=2, sample_plies=0)
    assert record.moves[0] == "h2e2" and record.illegal_attempts == 0


def test_cli_arena_prints_a_line_per_game_into_a_log(tmp_path, capsys):
    """Not a terminal (a log, as under nohup): the bar shows nothing until the end, so each game is one line."""
    ckpt = tiny_checkpoint(tmp_path, "char", 64)
    assert main(["arena", "--checkpoint", ckpt, "--opponent", "random", "--games", "2", "--max-plies", "12"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("arena: game ")]
    assert [ln.split(":")[1].strip() for ln in lines] == ["game 1/2", "game 2/2"]
    assert main(["arena", "--checkpoint", ckpt, "--opponent", "random", "--games", "1", "--max-plies", "12",
                 "--quiet"]) == 0
    assert "arena: game" not in capsys.readouterr().err


def test_cli_arena_random_writes_pgn_and_json(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "char", 64)
    pgn, out = tmp_path / "new" / "games.pgn", tmp_path / "new2" / "arena.json"      # folders made as needed
    assert main(["arena", "--checkpoint", ckpt, "--opponent", "random", "--games", "3", "--max-plies", "30",
                 "--pgn", str(pgn), "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["games"] == 3 and report["wins"] + report["draws"] + report["losses"] == 3
    assert list(report["per_game"][0]) == ["round", "model_color", "opening", "moves", "result", "model_score",
                                           "termination", "reason", "model_moves", "illegal_attempts",
                                           "illegal_examples", "illegal_kinds", "move_ms", "move_cpu_ms",
                                           "move_nodes", "plies"]
    assert 0 <= report["score"] <= 1 and report["elo"]["low"] <= report["elo"]["diff"] <= report["elo"]["high"]
    assert sum(report["terminations"].values()) == 3
    assert 0 <= report["illegal_attempts"]["rate"] <= 1
    assert sum(report["illegal_attempts"]["kinds"].values()) == report["illegal_attempts"]["count"]
    games = list(read_games(str(pgn)))
    assert len(games) == 3 and all(not isinstance(g, Exception) for g in games)
    for g, r in zip(games, report["per_game"]):
        assert g.iccs() == r["moves"] and g.result == r["result"]
        assert (g.headers["Red"].startswith("xiangqi-gpt")) == (r["model_color"] == "red")


def test_cli_errors(tmp_path, capsys):
    for argv in (["arena", "--checkpoint", str(tmp_path / "missing.pt"), "--games", "1"],
                 ["arena", "--checkpoint", tiny_checkpoint(tmp_path), "--games", "0"],
                 ["arena", "--checkpoint", tiny_checkpoint(tmp_path), "--depth", "2"]):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--quiet"])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


@pytest.mark.fairy
@pytest.mark.skipif(find_fairy_stockfish() is None, reason="Fairy-Stockfish not installed")
def test_cli_arena_against_fairy_stockfish(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "move", 32)
    out, pgn = tmp_path / "fairy.json", tmp_path / "fairy.pgn"
    assert main(["arena", "--checkpoint", ckpt, "--opponent", "fairy-stockfish", "--depth", "1", "--games", "2",
                 "--max-plies", "40", "--json", str(out), "--pgn", str(pgn), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["games"] == 2 and "Fairy-Stockfish" in report["opponent"]["name"]
    for g in report["per_game"]:
        replay(g["moves"])
    assert len([g for g in read_games(str(pgn)) if not isinstance(g, Exception)]) == 2


def test_cli_arena_level_reports_time_and_nodes(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, "move", 64)
    out = tmp_path / "level.json"
    assert main(["arena", "--checkpoint", ckpt, "--opponent", "random", "--games", "2", "--max-plies", "24",
                 "--level", "2", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["level"] == 2 and report["games"] == 2
    # (the node budget's exactness is tested in test_search; level 2's minimum depth may run past it)
    assert report["model_ms_per_move"] >= 0 and report["model_nodes_per_move"] > 0
    for g in report["per_game"]:
        replay(g["moves"])
        assert len(g["move_ms"]) == len(g["move_nodes"]) == g["model_moves"]
    plain = tmp_path / "plain.json"
    assert main(["arena", "--checkpoint", ckpt, "--games", "1", "--max-plies", "10", "--json", str(plain),
                 "--quiet"]) == 0
    report = json.loads(plain.read_text())
    assert report["model_nodes_per_move"] is None and report["model_ms_per_move"] >= 0
    assert report["model_cpu_ms_per_move"] >= 0


def test_cli_arena_bad_level(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["arena", "--checkpoint", tiny_checkpoint(tmp_path), "--level", "99", "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "level" in err and "\n" not in err


def test_cli_arena_checks_its_output_paths_before_the_games(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path, "char", 64)
    (tmp_path / "afile").write_text("x")
    for option in ("--pgn", "--json"):
        with pytest.raises(SystemExit) as e:
            main(["arena", "--checkpoint", ckpt, "--opponent", "random", "--games", "1", option,
                  str(tmp_path / "afile" / "out"), "--quiet"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {option} ") and err.count("\n") == 1 and "is a file" in err, err
