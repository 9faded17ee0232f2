"""The UCI/UCCI engine: driven like a GUI drives it (a subprocess and its pipes), plus protocol details in process."""

from __future__ import annotations

import io
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xiangqi_gpt.board import Board, Move
from xiangqi_gpt.engine import Engine, format_engine_move, parse_engine_move
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
    e.send("go depth 5")
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


def talk(*lines: str, **kwargs) -> list[str]:
    out = io.StringIO()
    engine = Engine(out=out, load=lambda path: None, make_player=lambda loaded, t, seed: FirstMovePlayer(), **kwargs)
    for line in lines:
        if not engine.handle(line):
            break
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
    from xiangqi_gpt.fairy import find_fairy_stockfish
    from xiangqi_gpt.pgn import read_games

    if find_fairy_stockfish() is None:
        pytest.skip("Fairy-Stockfish is not installed")
    pgn_path = tmp_path / "match.pgn"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engine_vs_fairy.py"), "--games", "2",
                        "--max-plies", "16", "--movetime", "20", "--fsf-depth", "1", "--checkpoint", str(checkpoint),
                        "--pgn", str(pgn_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "game 1: xiangqi-gpt as Red" in r.stdout and "game 2: xiangqi-gpt as Black" in r.stdout
    assert "illegal" not in r.stdout and "no move" not in r.stdout
    assert "Fairy-Stockfish (skill -20, depth 1) over 2 games" in r.stdout
    games = list(read_games(str(pgn_path)))
    assert len(games) == 2 and all(not isinstance(g, Exception) for g in games)
    for game in games:   # every move was legal: the referee pushed them all, and they replay
        assert 1 <= len(game.moves) <= 16
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
