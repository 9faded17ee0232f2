"""The UCI/UCCI engine: driven like a GUI drives it (a subprocess and its pipes), plus protocol details in process."""

from __future__ import annotations

import io
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xiangqi_gpt.rules.board import Board, Move
from xiangqi_gpt.play.engine import Engine, format_engine_move, info_line, parse_engine_move
from xiangqi_gpt.errors import InvalidMoveError

from test_play import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NO_MOVE = "R3k4/7R1/9/9/9/9/9/9/9/3K5 b - - 0 1"     # Black is checkmated: no legal move


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


class EngineProcess:
    """Talk to ``python -m xiangqi_gpt uci`` as a GUI does: write lines, read answers with a timeout."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "xiangqi_gpt", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                     cwd=ROOT, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def until(self, prefix: str, timeout: float = 300) -> list[str]:
        """Lines up to and including the first starting with ``prefix``."""
        got = []
        while True:
            line = self.lines.get(timeout=timeout)
            assert line is not None, f"engine exited; got {got}; stderr: {self.proc.stderr.read()}"
            got.append(line)
            if line.startswith(prefix):
                return got

    def lines_for(self, seconds: float) -> list[str]:
        """Whatever the engine says within ``seconds``."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.lines.get(timeout=left))
            except queue.Empty:
                break
        return got

    def close(self) -> int:
        try:
            self.send("quit")
        except BrokenPipeError:
            pass
        code = self.proc.wait(timeout=120)
        self.stderr = self.proc.stderr.read()
        return code


def test_uci_session_like_a_gui(checkpoint):
    e = EngineProcess("uci", "--checkpoint", str(checkpoint))
    e.send("uci")
    hello = e.until("uciok")
    assert hello[0] == "id name xiangqi-gpt" and any(line.startswith("id author") for line in hello)
    options = {line.split()[2] for line in hello if line.startswith("option name")}
    assert {"Temperature", "Checkpoint", "Ranks", "UCI_Variant"} <= options
    e.send("isready")
    assert e.until("readyok")[-1] == "readyok"

    e.send("ucinewgame")
    e.send("position startpos moves h2e2 h9g7")
    e.send("go movetime 50")
    answer = e.until("bestmove")
    board = Board()
    for text in ("h2e2", "h9g7"):
        board.push_iccs(text)
    move = Move.from_iccs(answer[-1].split()[1])
    assert board.is_legal(move)
    assert any(line.startswith("info depth 1") for line in answer)

    e.send("this is not uci")
    assert e.until("info string")[-1].startswith("info string error: unknown command")
    e.proc.stdin.buffer.write(b"\xff\xfe\x00 binary junk\n")
    e.proc.stdin.flush()
    assert e.until("info string")[-1].startswith("info string error: unknown command")
    e.send("position startpos moves h2e2 h2e3")
    error = e.until("info string")[-1]
    assert "illegal move h2e3" in error and "move 2" in error

    e.send(f"position fen {NO_MOVE}")
    e.send("go wtime 1000 btime 1000 winc 10 binc 10")
    assert e.until("bestmove")[-1] == "bestmove (none)"

    e.send("position startpos")
    e.send("go infinite")
    assert not any(line.startswith("bestmove") for line in e.lines_for(1.0))     # held until stop
    e.send("stop")
    assert Board().is_legal(Move.from_iccs(e.until("bestmove")[-1].split()[1]))

    e.send("setoption name Ranks value 1-10")
    e.send("position startpos moves h3e3")   # h2e2 in Fairy-Stockfish's ranks
    e.send("go depth 1")
    text = e.until("bestmove")[-1].split()[1]
    board = Board()
    board.push_iccs("h2e2")
    assert board.is_legal(parse_engine_move(text, ranks_from_one=True))
    assert e.close() == 0 and "Traceback" not in e.stderr


def test_real_search_through_the_protocol(checkpoint):
    """The real search behind the pipes: info lines, exact node budgets, go infinite held until stop, Level."""
    e = EngineProcess("uci", "--checkpoint", str(checkpoint))
    e.send("uci")
    assert any(line.startswith("option name Level type combo default full") for line in e.until("uciok"))
    e.send("position startpos moves h2e2")
    e.send("go depth 2")
    answer = e.until("bestmove")
    infos = [line.split() for line in answer if line.startswith("info depth")]
    assert infos and all({"seldepth", "score", "nodes", "nps", "time", "pv"} <= set(words) for words in infos)
    assert infos[-1][:2] == ["info", "depth"] and infos[-1][2] == "2"
    words = answer[-1].split()
    board = Board()
    board.push_iccs("h2e2")
    pv = infos[-1][infos[-1].index("pv") + 1:]
    assert board.is_legal(Move.from_iccs(words[1])) and words[1] == pv[0]
    if len(pv) >= 2:
        assert words[2:] == ["ponder", pv[1]]
    e.send("go nodes 150")
    nodes = [line.split() for line in e.until("bestmove") if line.startswith("info depth")]
    assert int(nodes[-1][nodes[-1].index("nodes") + 1]) <= 150
    e.send("go infinite")
    assert not any(line.startswith("bestmove") for line in e.lines_for(1.0))     # held until stop
    e.send("isready")
    assert e.until("readyok")[-1] == "readyok"                                   # answered while searching
    e.send("stop")
    assert board.is_legal(Move.from_iccs(e.until("bestmove")[-1].split()[1]))
    e.send("setoption name Level value 99")
    assert e.until("info string")[-1].startswith("info string error: Level must be full or a whole number from 0")
    e.send("setoption name Level value 1")
    e.send("go")
    assert board.is_legal(Move.from_iccs(e.until("bestmove")[-1].split()[1]))
    assert e.close() == 0 and "Traceback" not in e.stderr


def test_ucci_handshake_and_nobestmove(checkpoint):
    e = EngineProcess("ucci", "--checkpoint", str(checkpoint))
    e.send("ucci")
    hello = e.until("ucciok")
    assert hello[0] == "id name xiangqi-gpt" and any(line.startswith("option Temperature") for line in hello)
    e.send("setoption usemillisec true")
    e.send("isready")
    e.until("readyok")
    e.send(f"position fen {NO_MOVE}")
    e.send("go time 1000 increment 0")
    assert e.until("nobestmove")[-1] == "nobestmove"
    e.send("position fen rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w - - 0 1 moves b2e2")
    e.send("go depth 2")
    reply = e.until("bestmove")[-1]
    board = Board()
    board.push_iccs("b2e2")
    assert board.is_legal(Move.from_iccs(reply.split()[1]))
    e.send("quit")
    assert e.until("bye")[-1] == "bye"
    assert e.proc.wait(timeout=120) == 0


def test_missing_checkpoint_is_reported_not_fatal():
    e = EngineProcess("uci", "--checkpoint", "/nonexistent/model.pt")
    e.send("uci")
    e.until("uciok")
    e.send("isready")
    lines = e.until("readyok")
    assert any(line.startswith("info string error: cannot load the model") for line in lines)
    e.send("go movetime 10")
    assert e.until("bestmove")[-1] == "bestmove (none)"
    assert e.close() == 0


# --------------------------------------------------------------------------------------------------------------------
# In process, with a stand-in player (the protocol does not depend on the model)

class FirstMovePlayer:
    """Prefers moves in ICCS order, with made-up decreasing probabilities."""

    def move_probs(self, board):
        moves = sorted(board.legal_moves(), key=Move.iccs)
        weights = [1 / (i + 1) for i in range(len(moves))]
        return [(m, w / sum(weights)) for m, w in zip(moves, weights)]

    def choose(self, board):
        return self.move_probs(board)[0][0]


class FakeSearcher:
    """Stands in for search.Searcher: the player's favourite move, one info line per depth until its depth or node
    limit or ``stop`` (a movetime or a started clock counts as depth 3), and a record of the limits it was given."""

    def __init__(self, player, pv_tail: bool = False):
        self.player = player
        self.pv_tail = pv_tail
        self.limits: list = []
        self.timers: list = []
        self.multipvs: list = []
        self.cleared = 0

    def clear(self) -> None:
        self.cleared += 1

    def search(self, board, limits, on_info=None, stop=None, multipv=1, timer=None):
        from xiangqi_gpt.play.search import SearchInfo, SearchResult

        self.limits.append(limits)
        self.timers.append(timer)
        self.multipvs.append(multipv)
        probs = self.player.move_probs(board)
        move = probs[0][0] if probs else None
        pv = [move] if move else []
        if move and self.pv_tail:
            after = board.copy()
            after.push(move)
            pv += [FirstMovePlayer().choose(after)]
        depth, info = 0, None
        timed = limits.movetime_ms or (timer is not None and timer.started)
        cap = limits.depth or (3 if timed and not limits.nodes else None)
        while move is not None:
            depth += 1
            info = SearchInfo(depth=depth, seldepth=depth + 1, score_cp=10 * depth, mate=None, nodes=100 * depth,
                              time_ms=depth, nps=100_000, gpt_calls=depth, pv=pv)
            if on_info:
                on_info(info)
            if (cap and depth >= cap) or (limits.nodes and 100 * depth >= limits.nodes):
                break
            if stop is not None and stop.wait(0.01):
                break
        return SearchResult(move, info or SearchInfo(0, 0, 0, None, 0, 0, 0, 0, []))


def make_engine(out=None, searchers: list | None = None, pv_tail: bool = False, **kwargs) -> Engine:
    def make_searcher(player):
        searcher = FakeSearcher(player, pv_tail=pv_tail)
        if searchers is not None:
            searchers.append(searcher)
        return searcher

    return Engine(out=out if out is not None else io.StringIO(), load=lambda path: None,
                  make_player=lambda loaded, t, seed: FirstMovePlayer(), make_searcher=make_searcher, **kwargs)


def talk(*lines: str, searchers: list | None = None, **kwargs) -> list[str]:
    """The engine's answers to ``lines``; the last search is let finish (as at end of input)."""
    out = io.StringIO()
    engine = make_engine(out, searchers, **kwargs)
    for line in lines:
        if not engine.handle(line):
            break
    else:
        engine.settle()
    return out.getvalue().splitlines()


def test_banmoves_are_honoured_in_ucci():
    first = talk("ucci", "position startpos", "go depth 1")[-1]
    assert first == "bestmove a0a1"
    out = talk("ucci", "position startpos", "banmoves a0a1 a0a2", "go depth 1")
    assert out[-1] == "bestmove a3a4"
    out = talk("ucci", "position startpos", "banmoves a0a1", "position startpos", "go depth 1")
    assert out[-1] == "bestmove a0a1"          # a new position clears the bans


def test_setoption_forms_and_errors():
    out = talk("setoption name Temperature value 0.7", "setoption name Temperature value hot",
               "setoption name Ranks value 2-11", "setoption name UCI_Variant value chess",
               "setoption name No Such Option value 1", "setoption", "position sideways", "position fen 9/9 w",
               "go nonsense 5")
    errors = [line for line in out if line.startswith("info string") and "policy" not in line]
    assert len(errors) == 8
    assert "Temperature must be a number" in errors[0]
    assert "Ranks must be 0-9 or 1-10" in errors[1]
    assert "only the xiangqi variant" in errors[2]
    assert "unknown option 'No Such Option'" in errors[3]
    assert "bad FEN" in errors[6]
    assert "ignoring go parameters nonsense" in errors[7]
    assert out[-1].startswith("bestmove ")


def test_bad_moves_in_position_keep_the_legal_prefix():
    out = talk("position startpos moves h2e2 h9g7 zz99 b0c2", "d")
    assert "zz99" in out[0] and "move 3" in out[0]
    fen_line = next(line for line in out if line.startswith("info string fen"))
    board = Board()
    board.push_iccs("h2e2")
    board.push_iccs("h9g7")
    assert fen_line == f"info string fen {board.fen()}"


def test_go_ponder_waits_for_ponderhit_and_quit_flushes():
    out = talk("position startpos", "go ponder", "ponderhit")
    assert out[-1] == "bestmove a0a1"
    out = talk("position startpos", "go infinite", "quit", "go depth 1")
    assert out[-1] == "bestmove a0a1" and sum(line.startswith("bestmove") for line in out) == 1


def test_rank_conventions_round_trip():
    for text in ("a0a9", "h2e2", "i9i8"):
        move = Move.from_iccs(text)
        assert parse_engine_move(text) == move
        wide = format_engine_move(move, ranks_from_one=True)
        assert parse_engine_move(wide, ranks_from_one=True) == move
    assert format_engine_move(Move.from_iccs("a0a9"), ranks_from_one=True) == "a1a10"
    with pytest.raises(InvalidMoveError):
        parse_engine_move("a0a1", ranks_from_one=True)
    with pytest.raises(InvalidMoveError):
        parse_engine_move("a10a9")


@pytest.mark.fairy
def test_short_match_against_fairy_stockfish(checkpoint, tmp_path):
    """benchmarks/engine_vs_fairy.py: both engines through UCI subprocesses, refereed by our Board."""
    from xiangqi_gpt.play.fairy import find_fairy_stockfish
    from xiangqi_gpt.records.pgn import read_games

    if find_fairy_stockfish() is None:
        pytest.skip("Fairy-Stockfish is not installed")
    pgn_path = tmp_path / "match.pgn"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engine_vs_fairy.py"), "--games", "2",
                        "--max-plies", "16", "--movetime", "20", "--fsf-depth", "1", "--checkpoint", str(checkpoint),
                        "--pgn", str(pgn_path), "--book-plies", "2", "--seed", "3"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "game 1: xiangqi-gpt as Red (book " in r.stdout and "game 2: xiangqi-gpt as Black (book " in r.stdout
    assert "illegal" not in r.stdout and "no move" not in r.stdout
    assert "Fairy-Stockfish (skill -20, depth 1) over 2 games" in r.stdout
    assert re.search(r"xiangqi-gpt: \d W / \d D / \d L, Elo [+-]\d+ \[[+-]\d+, [+-]\d+\]", r.stdout)
    games = list(read_games(str(pgn_path)))
    assert len(games) == 2 and all(not isinstance(g, Exception) for g in games)
    book = [line for line in r.stdout.splitlines() if line.startswith("game ")]
    first, second = (line.split("(book ")[1].split(")")[0].split() for line in book)
    assert first == second and len(first) == 2           # a pair of games shares its book line
    for game in games:   # every move was legal: the referee pushed them all, and they replay
        assert 3 <= len(game.moves) <= 16
        assert [m.iccs() for m in game.moves[:2]] == first
        game.board()


def test_threads_option():
    out = talk("uci", "setoption name Threads value 0", "setoption name Threads value 2")
    assert any(line.startswith("option name Threads type spin default 1 min 1") for line in out)
    assert [line for line in out if line.startswith("info string")] == [
        "info string error: Threads must be an integer from 1 to 256, got '0'"]


def test_every_go_gets_one_bestmove_even_without_stop():
    out = talk("position startpos", "go infinite", "position startpos moves h2e2", "go depth 1")
    bestmoves = [line for line in out if line.startswith("bestmove")]
    assert bestmoves == ["bestmove a0a1", "bestmove a6a5"]     # the held answer comes out before the new position


def test_checkpoint_option_reloads_and_temperature_rebuilds_the_player():
    loads, players = [], []

    def load(path):
        loads.append(path)
        return f"model from {path}"

    def make_player(loaded, temperature, seed):
        players.append((loaded, temperature))
        return FirstMovePlayer()

    engine = Engine(out=io.StringIO(), checkpoint="a.pt", load=load, make_player=make_player)
    for line in ("isready", "go depth 1", "setoption name Temperature value 0.5", "go depth 1",
                 "setoption name Checkpoint value b.pt", "isready", "setoption name Checkpoint value <empty>",
                 "go depth 1"):
        engine.handle(line)
    assert loads == ["a.pt", "b.pt", None]                        # loaded once per checkpoint; <empty> = default
    assert players == [("model from a.pt", 0.0), ("model from a.pt", 0.5), ("model from b.pt", 0.5),
                       ("model from None", 0.5)]


# --------------------------------------------------------------------------------------------------------------------
# Search: go limits, info lines, stop, infinite, Level (in process, with FakeSearcher standing in for the search)

def wait_for(out: io.StringIO, prefix: str, timeout: float = 120) -> list[str]:
    """The output so far, once a line starting with ``prefix`` is there (the search thread writes it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = out.getvalue().splitlines()
        if any(line.startswith(prefix) for line in lines):
            return lines
        time.sleep(0.01)
    raise AssertionError(f"no {prefix!r} line in {out.getvalue()!r}")


def test_go_depth_and_nodes_give_info_lines_then_bestmove_with_ponder():
    searchers: list = []
    out = talk("position startpos", "go depth 3", "go nodes 200", searchers=searchers, pv_tail=True)
    infos = [line for line in out if line.startswith("info depth")]
    assert infos[:3] == [f"info depth {d} seldepth {d + 1} score cp {10 * d} nodes {100 * d} nps 100000 time {d} "
                         f"pv a0a1 a6a5" for d in (1, 2, 3)]
    assert len(infos) == 5                                          # depth 3, then 200 nodes = 2 depths
    assert [line for line in out if line.startswith("bestmove")] == ["bestmove a0a1 ponder a6a5"] * 2
    limits = searchers[0].limits
    assert (limits[0].depth, limits[0].nodes, limits[0].movetime_ms) == (3, None, None)
    assert (limits[1].depth, limits[1].nodes, limits[1].movetime_ms) == (None, 200, None)


def test_info_line_formats():
    from xiangqi_gpt.play.search import SearchInfo

    pv = [Move.from_iccs("h2e2"), Move.from_iccs("h9g7")]
    info = SearchInfo(depth=4, seldepth=7, score_cp=-35, mate=None, nodes=1234, time_ms=56, nps=22035, gpt_calls=9,
                      pv=pv)
    assert info_line(info) == "info depth 4 seldepth 7 score cp -35 nodes 1234 nps 22035 time 56 pv h2e2 h9g7"
    assert info_line(info, ranks_from_one=True).endswith("pv h3e3 h10g8")
    mated = SearchInfo(depth=3, seldepth=3, score_cp=0, mate=-2, nodes=10, time_ms=1, nps=10, gpt_calls=1, pv=pv)
    assert " score mate -2 " in info_line(mated)
    assert " score -9996 " in info_line(mated, protocol="ucci")      # mated in 2 moves = 4 plies
    mating = SearchInfo(depth=1, seldepth=1, score_cp=0, mate=1, nodes=1, time_ms=1, nps=1, gpt_calls=1, pv=pv[:1])
    assert info_line(mating, protocol="ucci") == "info depth 1 score 9999 nodes 1 nps 1 time 1 pv h2e2"


def test_go_movetime_answers():
    out = talk("position startpos", "go movetime 30")
    assert out[-1].startswith("bestmove a0a1") and any(line.startswith("info depth") for line in out)


def test_stop_answers_at_once_and_infinite_waits_for_it():
    out = io.StringIO()
    engine = make_engine(out)
    engine.handle("position startpos")
    engine.handle("go infinite")
    wait_for(out, "info depth 3")                                   # searching, well past its first depths
    engine.handle("isready")                                        # answered during the search
    lines = out.getvalue().splitlines()
    assert "readyok" in lines and not any(line.startswith("bestmove") for line in lines)
    engine.handle("stop")                                           # returns once the answer is written
    lines = out.getvalue().splitlines()
    assert lines[-1] == "bestmove a0a1" and sum(line.startswith("bestmove") for line in lines) == 1
    engine.handle("stop")                                           # a second stop says nothing
    assert out.getvalue().splitlines() == lines


def test_infinite_search_that_ends_still_waits_for_stop():
    out = io.StringIO()
    engine = make_engine(out)
    engine.handle("position startpos")
    engine.handle("go infinite depth 2")                            # the search ends by itself...
    wait_for(out, "info depth 2")
    assert engine.job.searched.wait(timeout=120)
    assert not any(line.startswith("bestmove") for line in out.getvalue().splitlines())   # ...the answer waits
    engine.handle("stop")
    assert out.getvalue().splitlines()[-1] == "bestmove a0a1"


def test_level_option_caps_the_budget_and_its_default_is_no_limit():
    from xiangqi_gpt.play.engine import PLAIN_GO_LEVEL
    from xiangqi_gpt.play.search import LEVELS, level_limits

    searchers: list = []
    top = max(LEVELS)
    out = talk("uci", "go", "setoption name Level value 1", "go", f"setoption name Level value {top + 1}",
               "setoption name Level value x", "setoption name Level value 0", "go", "setoption name Level value full",
               "go depth 7", searchers=searchers)
    assert "option name Level type combo default full var full " + " ".join(f"var {n}" for n in sorted(LEVELS)) in out
    errors = [line for line in out if line.startswith("info string error")]
    assert errors == [f"info string error: Level must be full or a whole number from 0 to {top}, got '{top + 1}'",
                      f"info string error: Level must be full or a whole number from 0 to {top}, got 'x'"]
    limits = searchers[0].limits
    assert limits[0] == level_limits(PLAIN_GO_LEVEL)                # a plain go, no Level
    assert limits[1] == level_limits(1)                             # level 1's budget; level 0 did not search
    assert (limits[2].depth, limits[2].nodes, limits[2].min_depth) == (7, None, None)   # full: the go's own limit
    assert any(line.startswith("info string policy") for line in out)    # level 0: the model alone
    assert [line for line in out if line.startswith("bestmove")] == ["bestmove a0a1"] * 4


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_level_caps_every_kind_of_go(level):
    from xiangqi_gpt.play.search import LEVELS

    budget = LEVELS[level]
    searchers: list = []
    out = io.StringIO()
    engine = make_engine(out, searchers)
    for line in (f"setoption name Level value {level}", "position startpos", "go wtime 60000 btime 60000",
                 "go movetime 1000", "go depth 6", "go nodes 100000", "go infinite"):
        engine.handle(line)
    wait_for(out, "info depth")
    engine.handle("stop")
    limits = searchers[0].limits
    assert len(limits) == 5
    for got in limits:
        assert got.depth is not None or got.nodes is not None       # never unbounded
        if budget.depth is not None:
            assert got.depth is not None and got.depth <= budget.depth
        if budget.nodes is not None:
            assert got.nodes is not None and got.nodes <= budget.nodes
        if budget.min_depth is not None:
            assert got.min_depth == min(budget.min_depth, got.depth or budget.min_depth)
    assert limits[1].movetime_ms == 1000 and limits[2].depth == min(6, budget.depth or 6)
    assert searchers[0].timers[0] is not None and searchers[0].timers[1] is None   # the clock still applies
    assert sum(line.startswith("bestmove") for line in out.getvalue().splitlines()) == 5


def test_level_1_answers_every_go_from_a_depth_1_search():
    searchers: list = []
    out = talk("setoption name Level value 1", "position startpos", "go wtime 60000 btime 60000 winc 0 binc 0",
               "go movetime 1000", "go depth 6", "go nodes 100000", searchers=searchers)
    assert [limits.depth for limits in searchers[0].limits] == [1, 1, 1, 1]
    depths = [line.split()[2] for line in out if line.startswith("info depth")]
    assert set(depths) == {"1"} and len(depths) == 4


def test_clock_go_gets_the_timeman_allotment():
    from xiangqi_gpt.play.timeman import allot

    searchers: list = []
    talk("position startpos moves h2e2", "go wtime 600000 btime 3000 winc 0 binc 200 movestogo 5",
         "go movetime 500", searchers=searchers)
    timer = searchers[0].timers[0]
    assert timer.allotment == allot(3000, 200, 5)                   # Black to move: btime and binc
    assert timer.started and searchers[0].timers[1] is None
    limits = searchers[0].limits[0]
    assert (limits.depth, limits.nodes, limits.movetime_ms) == (None, None, None)   # full strength: the clock rules


def test_ucci_clock_in_seconds_or_milliseconds():
    from xiangqi_gpt.play.timeman import allot

    searchers: list = []
    talk("ucci", "position startpos", "go time 60 increment 1", "setoption usemillisec true",
         "go time 60000 increment 1000", searchers=searchers)
    assert [t.allotment for t in searchers[0].timers] == [allot(60_000, 1000)] * 2


def test_ponderhit_starts_the_clock_of_a_ponder_search():
    out = io.StringIO()
    searchers: list = []
    engine = make_engine(out, searchers)
    engine.handle("position startpos")
    engine.handle("go ponder wtime 60000 btime 60000")
    wait_for(out, "info depth 2")
    timer = searchers[0].timers[0]
    assert not timer.started and not timer.expired()                # pondering: the clock is the opponent's
    engine.handle("ponderhit")
    assert timer.started                                            # the same allotment, from now
    engine.handle("stop")
    assert out.getvalue().splitlines()[-1] == "bestmove a0a1"


def test_multipv_and_hash_options():
    from xiangqi_gpt.play.engine import MAX_HASH_MB, MAX_MULTIPV
    from xiangqi_gpt.play.search import tt_entries_for_mb

    searchers: list = []
    out = talk("uci", "setoption name MultiPV value 3", "setoption name Hash value 16", "position startpos",
               "go depth 1", "setoption name MultiPV value 0", f"setoption name MultiPV value {MAX_MULTIPV + 1}",
               f"setoption name Hash value {MAX_HASH_MB + 1}", "setoption name Hash value 2", searchers=searchers)
    assert f"option name MultiPV type spin default 1 min 1 max {MAX_MULTIPV}" in out
    assert f"option name Hash type spin default 256 min 1 max {MAX_HASH_MB}" in out
    errors = [line for line in out if line.startswith("info string error")]
    assert len(errors) == 3 and all("MultiPV must be" in e for e in errors[:2]) and "Hash must be" in errors[2]
    assert searchers[0].multipvs == [3]
    assert searchers[0].tt_size == tt_entries_for_mb(2)             # resized after the search was made
    assert tt_entries_for_mb(16) == 16 * 4096


def test_multipv_info_lines():
    from xiangqi_gpt.play.search import SearchInfo

    pv = [Move.from_iccs("h2e2")]
    info = SearchInfo(depth=2, seldepth=3, score_cp=5, mate=None, nodes=9, time_ms=1, nps=9, gpt_calls=1, pv=pv,
                      multipv=2)
    assert info_line(info, multipv=True) == "info multipv 2 depth 2 seldepth 3 score cp 5 nodes 9 nps 9 time 1 pv h2e2"
    assert info_line(info, "ucci", multipv=True).startswith("info multipv 2 depth 2 score 5 ")
    assert info_line(info).startswith("info depth 2 ")


def test_bad_go_values_are_reported_and_the_go_still_answers():
    searchers: list = []
    out = talk("position startpos", "go depth x", "go movetime -5 nodes 0", "go depth", searchers=searchers)
    errors = [line for line in out if line.startswith("info string")]
    assert errors == ["info string error: go depth needs a whole number >= 1, got 'x'; ignored",
                      "info string error: go movetime needs a whole number >= 1, got '-5'; ignored",
                      "info string error: go nodes needs a whole number >= 1, got '0'; ignored",
                      "info string error: go depth needs a whole number >= 1, got nothing; ignored"]
    assert sum(line.startswith("bestmove") for line in out) == 3


def test_ponderhit_lets_the_search_finish_and_a_banned_search_move_is_replaced():
    out = talk("position startpos", "go ponder depth 2", "ponderhit")
    assert out[-1] == "bestmove a0a1"
    out = talk("ucci", "position startpos", "banmoves a0a1", "go depth 2")
    assert out[-1] == "bestmove a0a2"                                # the search's a0a1 is banned


def test_ucinewgame_clears_the_search_tables():
    searchers: list = []
    talk("go depth 1", "ucinewgame", searchers=searchers)
    assert searchers[0].cleared == 1


def test_bad_level_on_the_command_line_is_one_line():
    r = subprocess.run([sys.executable, "-m", "xiangqi_gpt", "uci", "--level", "99"], input="", capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: --level") and r.stderr.count("\n") == 1, r.stderr


# --------------------------------------------------------------------------------------------------------------------
# Every command is read while a search runs; the end of input ends the process (issue 19, item 11)

ENDLESS = "go nodes 100000000000"


def start_searching(e: EngineProcess, go: str = ENDLESS) -> None:
    e.send("uci")
    e.until("uciok")
    e.send("position startpos moves h2e2")
    e.send(go)
    e.until("info depth")                                            # the search is running


@pytest.mark.parametrize("go", [ENDLESS, "go infinite", "go ponder"])
def test_end_of_input_ends_a_running_search_and_the_process(checkpoint, go):
    e = EngineProcess("uci", "--checkpoint", str(checkpoint))
    start_searching(e, go)
    e.proc.stdin.close()
    assert e.proc.wait(timeout=60) == 0                              # (a hang fails here; before: never ended)
    assert "Traceback" not in e.proc.stderr.read()


def test_position_isready_stop_and_quit_are_read_during_a_bounded_search(checkpoint):
    e = EngineProcess("uci", "--checkpoint", str(checkpoint))
    start_searching(e)
    e.send("position startpos moves h2e2 h9g7")                     # waits for the search...
    e.send("isready")
    got = e.until("readyok")                                         # ...but the reader answers at once
    assert not any(line.startswith("bestmove") for line in got)
    e.send("stop")                                                   # stops the search the position waits for
    board = Board()
    board.push_iccs("h2e2")
    assert board.is_legal(Move.from_iccs(e.until("bestmove")[-1].split()[1]))
    e.send("go depth 1")                                             # the new position is in place
    board.push_iccs("h9g7")
    assert board.is_legal(Move.from_iccs(e.until("bestmove")[-1].split()[1]))
    assert e.close() == 0 and "Traceback" not in e.stderr


def test_go_and_quit_during_a_bounded_search(checkpoint):
    e = EngineProcess("uci", "--checkpoint", str(checkpoint))
    start_searching(e)
    e.send("go depth 1")                                             # a new go waits for the running one...
    e.send("stop")                                                   # ...which a stop ends: both answer
    first = e.until("bestmove")
    second = e.until("bestmove")
    assert first[-1].startswith("bestmove ") and second[-1].startswith("bestmove ")
    e.send(ENDLESS)
    e.until("info depth")
    e.send("quit")                                                   # quit ends a bounded search too
    assert e.proc.wait(timeout=60) == 0
