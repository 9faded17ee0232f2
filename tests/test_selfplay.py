"""selfplay: openings, settings, refereeing, the PGN it appends, worker processes, Ctrl-C, and the player hook.

Most tests use a seeded random-move source (no engine), so they run everywhere; the Fairy-Stockfish ones carry
the ``fairy`` marker and skip without it.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from random_games import random_board

from xiangqi_gpt import cli
from xiangqi_gpt.rules.board import STARTING_FEN, Move
from xiangqi_gpt.errors import ConfigError, XiangqiError
from xiangqi_gpt.play.fairy import find_fairy_stockfish
from xiangqi_gpt.play.match import GameError
from xiangqi_gpt.records.pgn import Game, read_games, write_games
from xiangqi_gpt.play.selfplay import (OpeningBook, SelfPlayError, Source, _game_texts, game_spec, parse_range,
                                  play_game, selfplay)

ROOT = Path(__file__).resolve().parents[1]
PUZZLE_FEN = "2C1ka3/4a4/9/R8/9/3ppnP2/Pr7/9/4A4/3AK1B2 b - - 0 1"


def random_game(seed: int, plies: int, fen: str = STARTING_FEN) -> Game:
    board = random_board(random.Random(seed), plies, fen)
    return Game({"Event": f"human {seed}"}, list(board.move_stack), board.root_fen(), "*")


@pytest.fixture(scope="module")
def openings(tmp_path_factory) -> Path:
    """Human games to take openings from: 6 usable ones, plus a custom-FEN game and a short one (never drawn)."""
    path = tmp_path_factory.mktemp("openings") / "human.pgn"
    games = [random_game(s, 30) for s in range(6)] + [random_game(50, 30, PUZZLE_FEN), random_game(51, 1)]
    write_games(games, path, "wxf")
    return path


class RandomSource(Source):
    """Seeded random legal moves: the same settings and position give the same move, in any process."""

    event = "random self-play"

    def __init__(self, illegal: bool = False, delay: float = 0.0):
        self.illegal, self.delay = illegal, delay

    def draw(self, rng):
        return {"seed": rng.randrange(1 << 30)}

    def players(self, settings):
        source = self

        class Mover:
            def __init__(self, name):
                self.name = name

            def choose(self, board):
                if source.delay:
                    time.sleep(source.delay)
                if source.illegal:
                    return Move.from_iccs("a0a9")
                rng = random.Random(f"{settings['seed']}:{board.ply}")
                return rng.choice(sorted(board.legal_moves(), key=Move.iccs))

        return Mover(f"random {settings['seed']} red"), Mover(f"random {settings['seed']} black")


def test_parse_range():
    assert parse_range("0..20", "--skill") == (0, 20)
    assert parse_range("3", "--depth") == (3, 3)
    for bad in ("x", "5..2", "1..", "..4"):
        with pytest.raises(ConfigError):
            parse_range(bad, "--depth")


def test_game_texts_split_games():
    text = '[A "1"]\n[B "2"]\n\n1. h2e2 h9g7 *\n\n[A "3"]\n1. c3c4 *\n[A "4"]\n'
    assert [t.splitlines()[0] for t in _game_texts(text)] == ['[A "1"]', '[A "3"]']


def test_openings_are_prefixes_of_usable_human_games_and_depend_on_seed_and_index_only(openings):
    book = OpeningBook.load(openings)
    assert len(book.games) == 8
    sources = {tuple(g.iccs()) for g in read_games(openings) if g.standard_start and len(g.moves) > 12}
    source = RandomSource()
    specs = [game_spec(i, 7, book, source, (2, 12)) for i in range(40)]
    for spec in specs:
        k = len(spec.opening)
        assert 2 <= k <= 12 and spec.opening_tag == f"first {k} plies of a human game"
        assert any(s[:k] == spec.opening for s in sources)
    assert len({len(s.opening) for s in specs}) > 3
    again = OpeningBook.load(openings)
    assert [game_spec(i, 7, again, source, (2, 12)) for i in range(40)] == specs
    assert [game_spec(i, 8, again, source, (2, 12)) for i in range(40)] != specs


def test_no_usable_opening_is_one_clear_error(tmp_path):
    short = tmp_path / "short.pgn"
    write_games([random_game(1, 3)], short)
    with pytest.raises(ConfigError, match="no opening of"):
        game_spec(0, 0, OpeningBook.load(short), RandomSource(), (5, 5))
    with pytest.raises(ConfigError, match="no such file"):
        OpeningBook.load(tmp_path / "missing.pgn")


def test_games_are_refereed_tagged_and_appended(openings, tmp_path):
    out = tmp_path / "new" / "folder" / "games.pgn"          # parent folders are created
    r = selfplay(out, 4, openings=openings, source=RandomSource(), seed=3, max_plies=60, progress=False)
    assert r.games == 4 and r.failed == 0 and not r.interrupted
    games = list(read_games(out))
    assert len(games) == 4 and all(isinstance(g, Game) for g in games)
    for g in games:
        assert list(g.headers)[:7] == ["Game", "Event", "Red", "Black", "Result", "Termination", "Opening"]
        assert g.headers["Format"] == "ICCS" and g.headers["Event"] == "random self-play"
        board = g.board()
        outcome = board.outcome()
        if outcome is None:
            assert len(g.moves) == 60
            assert (g.result, g.headers["Termination"]) == ("1/2-1/2", "ply_cap")
        else:
            assert (g.result, g.headers["Termination"]) == (outcome.result(), outcome.termination)
    assert r.plies == sum(len(g.moves) for g in games)
    assert sum(r.results.values()) == 4 and r.games_per_hour > 0
    # a second run appends; the file stays one valid PGN
    selfplay(out, 2, openings=openings, source=RandomSource(), seed=4, max_plies=60, progress=False)
    assert len([g for g in read_games(out) if isinstance(g, Game)]) == 6


def test_adjudication_at_max_plies(openings, tmp_path):
    out = tmp_path / "g.pgn"
    selfplay(out, 3, openings=openings, source=RandomSource(), seed=1, max_plies=14, progress=False)
    for g in read_games(out):
        assert len(g.moves) == 14 and g.result == "1/2-1/2"
        assert g.headers["Termination"] == "ply_cap"


def test_workers_play_the_same_games(openings, tmp_path):
    a, b = tmp_path / "a.pgn", tmp_path / "b.pgn"
    selfplay(a, 4, workers=1, openings=openings, source=RandomSource(), seed=5, max_plies=40, progress=False)
    selfplay(b, 4, workers=2, openings=openings, source=RandomSource(), seed=5, max_plies=40, progress=False)
    key = lambda g: (g.headers["Red"], tuple(g.iccs()), g.result)     # noqa: E731
    assert sorted(map(key, read_games(a))) == sorted(map(key, read_games(b)))


def test_an_illegal_move_drops_the_game_and_repeated_failures_stop_the_run(openings, tmp_path):
    spec = game_spec(0, 0, OpeningBook.load(openings), RandomSource(), (2, 4))
    with pytest.raises(GameError, match="illegal move a0a9"):
        play_game(spec, RandomSource(illegal=True))
    warnings = []
    out = tmp_path / "g.pgn"
    with pytest.raises(SelfPlayError, match="5 games in a row failed"):
        selfplay(out, 8, openings=openings, source=RandomSource(illegal=True), seed=0, progress=False,
                 warn=warnings.append)
    assert len([w for w in warnings if "dropped" in w]) == 5
    assert out.read_text() == ""


def test_bad_options_fail_at_once(openings, tmp_path):
    (tmp_path / "file").write_text("x")
    for kwargs, match in (({"games": 0}, "--games"), ({"workers": 0}, "--workers"),
                          ({"max_plies": 10}, "--max-plies"), ({"opening_plies": (3, 1)}, "--opening-plies")):
        kwargs = {"games": 1, **kwargs}
        with pytest.raises(ConfigError, match=match):
            selfplay(tmp_path / "g.pgn", openings=openings, source=RandomSource(), progress=False, **kwargs)
    with pytest.raises(ConfigError, match="is a file"):
        selfplay(tmp_path / "file" / "g.pgn", 1, openings=openings, source=RandomSource(), progress=False)
    with pytest.raises(ConfigError, match="is a folder"):
        selfplay(tmp_path, 1, openings=openings, source=RandomSource(), progress=False)


def test_without_openings_file_the_arena_book_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                          # no data/ccpd/train.pgn here
    warnings = []
    selfplay("g.pgn", 2, source=RandomSource(), seed=2, max_plies=20, progress=False, warn=warnings.append)
    assert any("arena" in w for w in warnings)
    for g in read_games(tmp_path / "g.pgn"):
        assert g.headers["Opening"] == "first 2 plies of the arena's opening book"


def _wait_for(predicate, proc, what: str, limit: float = 300.0):
    """Poll until ``predicate()``; a guard against hanging, not a timing assertion."""
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (status {proc.returncode}) before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no {what} after {limit:.0f} s")
        time.sleep(0.05)


def _games_in(path: Path) -> int:
    return path.read_text(encoding="utf-8").count("[Game ") if path.exists() else 0


def _interrupt(proc) -> tuple[int, str]:
    os.killpg(proc.pid, signal.SIGINT)           # as a terminal's Ctrl-C: the whole process group
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("still running 300 s after Ctrl-C")
    return proc.returncode, err


SLOW_SELFPLAY = """
import sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from test_selfplay import RandomSource
from xiangqi_gpt.play.selfplay import SelfPlayInterrupted, selfplay
from xiangqi_gpt.console import restore_ctrl_c
restore_ctrl_c()
try:
    selfplay({out!r}, 1000, workers={workers}, openings={openings!r}, source=RandomSource(delay=0.002), seed=1,
             max_plies=40, progress=False)
except SelfPlayInterrupted as e:
    print(f"interrupted after {{e.result.games}} games", file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_keeps_every_finished_game(openings, tmp_path, workers):
    out = tmp_path / "g.pgn"
    script = SLOW_SELFPLAY.format(root=str(ROOT), tests=str(ROOT / "tests"), out=str(out), workers=workers,
                                  openings=str(openings))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _games_in(out) >= 2, proc, "second game")
    rc, err = _interrupt(proc)
    assert rc == 130 and err.count("\n") == 1 and "Traceback" not in err, err
    written = int(err.split("after ")[1].split()[0])
    games = list(read_games(out))
    assert all(isinstance(g, Game) for g in games) and len(games) == written >= 2


@pytest.mark.fairy
@pytest.mark.skipif(find_fairy_stockfish() is None, reason="Fairy-Stockfish not installed")
@pytest.mark.parametrize("workers", [1, 2])
def test_fairy_stockfish_selfplay_cli(openings, tmp_path, capsys, workers):
    out = tmp_path / "fsf.pgn"
    assert cli.main(["selfplay", "--out", str(out), "--games", "2", "--workers", str(workers), "--openings",
                     str(openings), "--skill", "0..20", "--depth", "1..2", "--seed", "11", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "games/hour per core" in printed and "seed 11" in printed
    games = list(read_games(out))                    # read_games replays every move with our rules
    assert len(games) == 2 and all(isinstance(g, Game) for g in games)
    for g in games:
        assert g.headers["Red"] == g.headers["Black"]
        assert g.headers["Red"].startswith("Fairy-Stockfish Skill ") and g.headers["Red"][-7:] in ("depth 1",
                                                                                                   "depth 2")
        assert g.headers["Opening"].endswith("plies of a human game")
        assert g.headers["Termination"]


@pytest.mark.fairy
@pytest.mark.skipif(find_fairy_stockfish() is None, reason="Fairy-Stockfish not installed")
def test_fairy_stockfish_ctrl_c(openings, tmp_path):
    out = tmp_path / "fsf.pgn"
    proc = subprocess.Popen([sys.executable, "-m", "xiangqi_gpt", "selfplay", "--out", str(out), "--games", "500",
                             "--workers", "2", "--openings", str(openings), "--depth", "1", "--no-progress"],
                            cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(lambda: _games_in(out) >= 1, proc, "first game")
    rc, err = _interrupt(proc)
    assert rc == 130 and err.count("\n") == 1 and err.startswith("selfplay interrupted: "), err
    games = list(read_games(out))
    assert all(isinstance(g, Game) for g in games)
    assert f"{len(games)} finished games" in err


def test_fairy_source_checks_its_ranges():
    from xiangqi_gpt.play.selfplay import FairySelfPlay

    if find_fairy_stockfish() is None:
        with pytest.raises(ConfigError, match="not found"):
            FairySelfPlay()
        return
    with pytest.raises(ConfigError, match="--skill"):
        FairySelfPlay(skill=(0, 30))
    with pytest.raises(ConfigError, match="--depth"):
        FairySelfPlay(depth=(0, 3))
    with pytest.raises(XiangqiError):
        FairySelfPlay(path="/nonexistent/fairy")


def test_search_selfplay_plays_our_search_and_tags_it(openings, tmp_path, capsys):
    """--player search: both sides are our search at the level (the moves after the opening are its choices)."""
    from xiangqi_gpt.model.checkpoint import load_model
    from xiangqi_gpt.play.player import GPTPlayer
    from xiangqi_gpt.play.search import SearchPlayer
    from xiangqi_gpt.rules.board import Board

    out = tmp_path / "search.pgn"
    assert cli.main(["selfplay", "--player", "search", "--level", "1", "--out", str(out), "--games", "1",
                     "--openings", str(openings), "--opening-plies", "2..2", "--max-plies", "12", "--seed", "3",
                     "--no-progress"]) == 0
    assert "seed 3" in capsys.readouterr().out
    (game,) = list(read_games(out))
    assert game.headers["Red"] == game.headers["Black"] == "xiangqi-gpt level 1 (strong style, default)"
    assert game.headers["Event"] == "xiangqi-gpt search self-play" and len(game.moves) == 12
    searcher = SearchPlayer(GPTPlayer(load_model(None), style="strong"), 1)
    board = Board()
    for i, move in enumerate(game.moves):
        if i >= 2:
            assert searcher.choose(board) == move, f"ply {i + 1}"
        board.push(move)


def test_search_selfplay_options_are_checked(openings, tmp_path, capsys):
    from xiangqi_gpt.play.selfplay import SearchSelfPlay

    for kwargs, pattern in ((dict(level=0), "at least 1"), (dict(level=9), "level"), (dict(style="fast"), "style"),
                            (dict(checkpoint=str(tmp_path / "none.pt")), "no such file"),
                            (dict(threads=0), "threads")):
        with pytest.raises(ConfigError, match=pattern):
            SearchSelfPlay(**kwargs)
    out = tmp_path / "x.pgn"
    for extra in (["--player", "search", "--depth", "3..4"], ["--level", "2"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["selfplay", "--out", str(out), "--games", "1", "--openings", str(openings)] + extra)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "are for --player" in err, err
    assert not out.exists()
