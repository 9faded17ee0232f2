"""``python -m xiangqi_gpt uci`` (or ``ucci``): the GPT as an engine for xiangqi GUIs, over UCI or UCCI.

The engine plays the model's move (one forward pass, restricted to legal moves by the player); there is no search,
so every ``go`` is answered at once, whatever its limits say (``go infinite`` and ``go ponder`` keep the answer
until ``stop`` or ``ponderhit``, as the protocols require).

Protocols. The handshake picks the dialect: ``uci`` -> ``uciok`` and ``bestmove (none)`` when there is no legal
move; ``ucci`` -> ``ucciok``, ``nobestmove``, ``bye`` on ``quit``, and ``banmoves`` (honoured: banned moves are not
played). Both understand::

    uci | ucci, isready, ucinewgame, setoption, position startpos|fen FEN [moves M...], banmoves M...,
    go [depth N | movetime MS | wtime/btime/winc/binc/movestogo | time/increment/opptime | nodes N | infinite | ponder],
    stop, ponderhit, d (prints the position as ``info string``), quit

Moves are ICCS coordinates. Ranks count 0-9 from Red's side (as Pikafish and most xiangqi GUIs use: ``h2e2``);
``setoption name Ranks value 1-10`` switches to the 1-10 convention of Fairy-Stockfish (``h3e3``).
Options: ``Temperature`` (0 = the model's best move, higher = weaker and more varied), ``Checkpoint`` (a model
file; empty = the shipped default), ``Ranks``, ``UCI_Variant`` (``xiangqi`` only).

A line that cannot be understood, an unknown option or an illegal move in ``position`` gets one
``info string error: ...`` line; the engine never exits on bad input. Every line is flushed as it is written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from typing import IO, Any, Callable, Protocol

from .board import STARTING_FEN, Board, Move, parse_square, square_name
from .errors import InvalidMoveError, XiangqiError

ENGINE_NAME = "xiangqi-gpt"
ENGINE_AUTHOR = "the xiangqi-gpt authors"
RANK_CONVENTIONS = ("0-9", "1-10")
MAX_THREADS = 256
UCCI_HOUSEKEEPING_OPTIONS = {"usemillisec", "batch", "debug", "ponder", "hashsize", "threads", "idle", "promotion",
                             "newgame", "bookfiles", "egtbpaths", "evalapi", "loadbook", "dualtime", "style",
                             "knowledge", "pruning", "randomness", "repetition", "drawmoves"}
_MOVE_RE = re.compile(r"^([a-iA-I])(10|[0-9])([a-iA-I])(10|[0-9])$")


class Player(Protocol):
    def move_probs(self, board: Board) -> list[tuple[Move, float]]: ...

    def choose(self, board: Board) -> Move: ...


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if isinstance(e, XiangqiError) else f"{type(e).__name__}: {text}"


def parse_engine_move(text: str, ranks_from_one: bool = False) -> Move:
    """An ICCS coordinate move with ranks 0-9 (``h2e2``) or, if ``ranks_from_one``, 1-10 (``h3e3``, ``a10a9``)."""
    m = _MOVE_RE.match(text.strip())
    if not m:
        raise InvalidMoveError(f"not a coordinate move: {text!r}")
    f1, r1, f2, r2 = m.groups()
    r1, r2 = int(r1) - ranks_from_one, int(r2) - ranks_from_one
    if not (0 <= r1 <= 9 and 0 <= r2 <= 9):
        raise InvalidMoveError(f"rank out of range in {text!r} (ranks are {'1-10' if ranks_from_one else '0-9'})")
    move = Move(parse_square(f1 + str(r1)), parse_square(f2 + str(r2)))
    if move.from_square == move.to_square:
        raise InvalidMoveError(f"not a move: {text!r} (same square)")
    return move


def format_engine_move(move: Move, ranks_from_one: bool = False) -> str:
    if not ranks_from_one:
        return move.iccs()
    a, b = square_name(move.from_square), square_name(move.to_square)
    return f"{a[0]}{int(a[1]) + 1}{b[0]}{int(b[1]) + 1}"


class _ModelSource:
    """Loads the checkpoint on demand (torch is imported in a background thread from the start) and builds the
    player for the current temperature."""

    def __init__(self, checkpoint: str | None, temperature: float, seed: int | None, threads: int = 1,
                 load: Callable[[str | None], Any] | None = None,
                 make_player: Callable[[Any, float, int | None], Player] | None = None):
        self.checkpoint = checkpoint
        self.threads = threads
        self.temperature = temperature
        self.seed = seed
        self._load = load
        self._real = load is None
        self._make_player = make_player
        self._loaded: Any = None
        self._player: Player | None = None
        if load is None:
            threading.Thread(target=self._warm_up, name="import-torch", daemon=True).start()

    @staticmethod
    def _warm_up() -> None:
        try:
            from . import checkpoint, player  # noqa: F401  (imports torch)
        except Exception:   # reported properly when the model is loaded
            pass

    def set_checkpoint(self, path: str | None) -> None:
        self.checkpoint = path
        self._loaded = None
        self._player = None

    def set_temperature(self, value: float) -> None:
        self.temperature = value
        self._player = None

    def set_threads(self, n: int) -> None:
        self.threads = n
        if self._real and self._loaded is not None:   # torch is fully imported; else applied at load time
            sys.modules["torch"].set_num_threads(n)

    def player(self) -> Player:
        if self._loaded is None:
            if self._real:
                import torch

                from .checkpoint import load_model

                torch.set_num_threads(self.threads)   # one thread: fastest for one position at a time
                self._load = load_model
            self._loaded = self._load(self.checkpoint)
        if self._player is None:
            if self._make_player is None:
                from .player import GPTPlayer

                self._make_player = lambda loaded, t, seed: GPTPlayer(loaded, temperature=t, seed=seed)
            self._player = self._make_player(self._loaded, self.temperature, self.seed)
        return self._player


class Engine:
    """The protocol state machine. Feed it lines with :meth:`handle`; it writes answers to ``out``."""

    def __init__(self, out: IO[str] = sys.stdout, protocol: str = "uci", checkpoint: str | None = None,
                 temperature: float = 0.0, seed: int | None = None, ranks_from_one: bool = False, threads: int = 1,
                 load: Callable[[str | None], Any] | None = None,
                 make_player: Callable[[Any, float, int | None], Player] | None = None):
        self.out = out
        self.protocol = protocol
        self.ranks_from_one = ranks_from_one
        self.model = _ModelSource(checkpoint, temperature, seed, threads, load, make_player)
        self.board = Board()
        self.banned: set[Move] = set()
        self.pending: str | None = None    # the answer held during `go infinite` / `go ponder`

    # ---- output ------------------------------------------------------------------------------------------------

    def send(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def error(self, message: str) -> None:
        self.send(f"info string error: {message}")

    # ---- dispatch ----------------------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Process one input line. Returns False when the engine should exit."""
        tokens = line.split()
        if not tokens:
            return True
        command, args = tokens[0], tokens[1:]
        handler = getattr(self, "cmd_" + command.lower(), None) if command.isidentifier() else None
        if handler is None:
            self.error(f"unknown command {line.strip()[:80]!r}")
            return True
        try:
            return handler(args) is not False
        except XiangqiError as e:
            self.error(str(e))
        except Exception as e:   # never crash on a GUI's input
            self.error(_one_line(e))
        return True

    def cmd_uci(self, args) -> None:
        self.protocol = "uci"
        self.send(f"id name {ENGINE_NAME}")
        self.send(f"id author {ENGINE_AUTHOR}")
        self.send(f"option name Temperature type string default {self.model.temperature:g}")
        self.send(f"option name Checkpoint type string default {self.model.checkpoint or '<empty>'}")
        self.send(f"option name Ranks type combo default {self._ranks()} var 0-9 var 1-10")
        self.send(f"option name Threads type spin default {self.model.threads} min 1 max {MAX_THREADS}")
        self.send("option name UCI_Variant type combo default xiangqi var xiangqi")
        self.send("uciok")

    def cmd_ucci(self, args) -> None:
        self.protocol = "ucci"
        self.send(f"id name {ENGINE_NAME}")
        self.send(f"id author {ENGINE_AUTHOR}")
        self.send(f"option Temperature type string default {self.model.temperature:g}")
        self.send(f"option Checkpoint type string default {self.model.checkpoint or '<empty>'}")
        self.send(f"option Ranks type combo var 0-9 var 1-10 default {self._ranks()}")
        self.send(f"option Threads type spin min 1 max {MAX_THREADS} default {self.model.threads}")
        self.send("ucciok")

    def _ranks(self) -> str:
        return RANK_CONVENTIONS[self.ranks_from_one]

    def cmd_isready(self, args) -> None:
        try:
            self.model.player()
        except Exception as e:   # a missing or broken checkpoint: say so, stay up
            self.error(f"cannot load the model: {_one_line(e)}")
        self.send("readyok")

    def cmd_ucinewgame(self, args) -> None:
        self.board = Board()
        self.banned = set()
        self.cmd_stop([])   # every go gets its bestmove, even if the GUI skipped stop

    def cmd_debug(self, args) -> None:
        pass

    def cmd_register(self, args) -> None:
        pass

    def cmd_probe(self, args) -> None:
        self.send("info string probe is not supported (no search)")

    def cmd_d(self, args) -> None:
        self.send(f"info string fen {self.board.fen()}")
        for row in str(self.board).splitlines():
            self.send(f"info string {row}")

    # ---- options -----------------------------------------------------------------------------------------------

    def cmd_setoption(self, args) -> None:
        if args and args[0].lower() == "name":   # UCI: setoption name NAME [value VALUE]
            lowered = [a.lower() for a in args]
            at = lowered.index("value") if "value" in lowered[1:] else len(args)
            name, value = " ".join(args[1:at]), " ".join(args[at + 1:])
        elif args:   # UCCI: setoption NAME [VALUE]
            name, value = args[0], " ".join(args[1:])
        else:
            name = value = ""
        if not name:
            self.error("setoption needs an option name")
            return
        key = name.lower()
        if key == "temperature":
            try:
                t = float(value)
            except ValueError:
                t = -1.0
            if not t >= 0 or t == float("inf"):
                self.error(f"Temperature must be a number >= 0, got {value!r}")
                return
            self.model.set_temperature(t)
        elif key == "checkpoint":
            self.model.set_checkpoint(None if value in ("", "<empty>", "default") else value)
        elif key == "ranks":
            if value not in RANK_CONVENTIONS:
                self.error(f"Ranks must be 0-9 or 1-10, got {value!r}")
                return
            self.ranks_from_one = value == "1-10"
        elif key == "threads":
            if not value.isdigit() or not 1 <= int(value) <= MAX_THREADS:
                self.error(f"Threads must be an integer from 1 to {MAX_THREADS}, got {value!r}")
                return
            self.model.set_threads(int(value))
        elif key == "uci_variant":
            if value.lower() != "xiangqi":
                self.error(f"only the xiangqi variant is supported, got {value!r}")
        elif self.protocol == "ucci" and key in UCCI_HOUSEKEEPING_OPTIONS:
            pass
        else:
            self.error(f"unknown option {name!r}")

    # ---- position ----------------------------------------------------------------------------------------------

    def cmd_position(self, args) -> None:
        if not args:
            self.error("position needs startpos or fen")
            return
        moves_at = next((i for i, a in enumerate(args) if a.lower() == "moves"), len(args))
        head, moves = args[:moves_at], args[moves_at + 1:]
        kind = head[0].lower()
        if kind == "startpos" and len(head) == 1:
            fen = STARTING_FEN
        elif kind == "fen" and len(head) > 1:
            fen = " ".join(head[1:])
        else:
            self.error(f"bad position command: {' '.join(args)[:80]!r}")
            return
        board = Board(fen)   # FenError -> info string error; the previous position stays
        self.board = board
        self.banned = set()
        self.cmd_stop([])
        for i, text in enumerate(moves):
            try:
                move = parse_engine_move(text, self.ranks_from_one)
            except InvalidMoveError as e:
                self.error(f"{e} (move {i + 1} of the position command); it and the later moves are ignored")
                return
            reason = board.why_illegal(move)
            if reason is not None:
                self.error(f"illegal move {text} (move {i + 1} of the position command): {reason}; "
                           f"it and the later moves are ignored")
                return
            board.push(move)

    def cmd_banmoves(self, args) -> None:
        banned = set()
        for text in args:
            try:
                banned.add(parse_engine_move(text, self.ranks_from_one))
            except InvalidMoveError as e:
                self.error(str(e))
        self.banned = banned

    # ---- search ------------------------------------------------------------------------------------------------

    def cmd_go(self, args) -> None:
        self.cmd_stop([])
        words = [a.lower() for a in args]
        hold = "infinite" in words or "ponder" in words
        known = {"depth", "movetime", "wtime", "btime", "winc", "binc", "movestogo", "nodes", "mate", "infinite",
                 "ponder", "time", "increment", "opptime", "oppincrement", "draw", "searchmoves"}
        unknown = [w for w in words if not w.isdigit() and w not in known and not _MOVE_RE.match(w)]
        if unknown:
            self.send(f"info string ignoring go parameters {' '.join(unknown)}")
        answer = self.best_move_line()
        if hold:
            self.pending = answer
        else:
            self.send(answer)

    def best_move_line(self) -> str:
        none = "bestmove (none)" if self.protocol == "uci" else "nobestmove"
        board = self.board
        legal = [m for m in board.legal_moves() if m not in self.banned]
        if not legal:
            return none
        try:
            player = self.model.player()
        except Exception as e:
            self.error(f"cannot load the model: {_one_line(e)}")
            return none
        t0 = time.perf_counter()
        probs = [(m, p) for m, p in player.move_probs(board) if m not in self.banned]
        move = player.choose(board)
        if move in self.banned or move not in legal:
            move = probs[0][0]
        ms = round(1000 * (time.perf_counter() - t0))
        text = format_engine_move(move, self.ranks_from_one)
        self.send(f"info depth 1 time {ms} nodes 1 pv {text}")
        top = " ".join(f"{format_engine_move(m, self.ranks_from_one)}:{p:.3f}" for m, p in probs[:5])
        self.send(f"info string policy {top}")
        return f"bestmove {text}"

    def cmd_stop(self, args) -> None:
        if self.pending is not None:
            self.send(self.pending)
            self.pending = None

    def cmd_ponderhit(self, args) -> None:
        self.cmd_stop(args)

    def cmd_quit(self, args) -> bool:
        if self.pending is not None:
            self.cmd_stop(args)
        if self.protocol == "ucci":
            self.send("bye")
        return False


def run(inp: IO[str] = sys.stdin, out: IO[str] = sys.stdout, **kwargs) -> int:
    """Serve the protocol until ``quit`` or end of input."""
    engine = Engine(out=out, **kwargs)
    try:
        while True:
            line = inp.readline()
            if not line:
                break
            if not engine.handle(line):
                break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        pass
    return 0


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="model file (default: the shipped default.pt)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = best move)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling at temperature > 0")
    p.add_argument("--ranks", choices=RANK_CONVENTIONS, default="0-9",
                   help="rank numbering of the coordinate moves (default 0-9; Fairy-Stockfish uses 1-10)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the model (default: 1)")


def _runner(protocol: str):
    def go(args: argparse.Namespace) -> None:
        if args.temperature < 0:
            raise XiangqiError(f"--temperature must be >= 0, got {args.temperature}")
        if not 1 <= args.threads <= MAX_THREADS:
            raise XiangqiError(f"--threads must be from 1 to {MAX_THREADS}, got {args.threads}")
        for stream in (sys.stdin, sys.stdout):   # bytes that are not UTF-8 must not kill the engine
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="replace")
        code = run(protocol=protocol, checkpoint=args.checkpoint, temperature=args.temperature, seed=args.seed,
                   ranks_from_one=args.ranks == "1-10", threads=args.threads)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        os._exit(code)   # do not let interpreter shutdown wait on the daemon thread importing torch

    return go


def add_uci_command(p: argparse.ArgumentParser):
    """``python -m xiangqi_gpt uci``: serve UCI (a ``ucci`` handshake switches to UCCI)."""
    _add_arguments(p)
    return _runner("uci")


def add_ucci_command(p: argparse.ArgumentParser):
    """``python -m xiangqi_gpt ucci``: serve UCCI (a ``uci`` handshake switches to UCI)."""
    _add_arguments(p)
    return _runner("ucci")
