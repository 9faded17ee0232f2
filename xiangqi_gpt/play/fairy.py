"""A small UCI client for Fairy-Stockfish playing xiangqi: perft for testing the rule engine, best moves for matches.

Main names: :class:`FairyStockfish`, :func:`iccs_to_uci`, :func:`uci_to_iccs`. Pass it legal moves only.
Design notes: docs/design.md#play-fairy
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import weakref
from typing import Iterable

from ..rules.board import STARTING_FEN
from ..errors import ConfigError, InvalidMoveError, XiangqiError

DEFAULT_PATH = "/usr/games/fairy-stockfish"
ENV_VAR = "FAIRY_STOCKFISH"
SKILL_RANGE = (-20, 20)
ELO_RANGE = (1350, 2850)    # Fairy-Stockfish's UCI_Elo limits

_UCI_MOVE = re.compile(r"^([a-i])(10|[1-9])([a-i])(10|[1-9])$")
_ICCS_MOVE = re.compile(r"^([a-i])([0-9])([a-i])([0-9])$")


class EngineError(XiangqiError):
    """The engine is missing, died, timed out or said something unexpected."""


def find_fairy_stockfish(path: str | None = None) -> str | None:
    """The engine binary: ``path`` if given, else ``$FAIRY_STOCKFISH``, ``fairy-stockfish`` on the PATH, or the
    Debian location. ``None`` if none of them is an executable file."""
    candidates = [path] if path else [os.environ.get(ENV_VAR), shutil.which("fairy-stockfish"), DEFAULT_PATH]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def iccs_to_uci(move: str) -> str:
    """``"b0b9"`` -> ``"b1b10"`` (Fairy-Stockfish counts xiangqi ranks from 1)."""
    m = _ICCS_MOVE.match(move.strip().lower())
    if not m:
        raise InvalidMoveError(f"not an ICCS move: {move!r}")
    return f"{m[1]}{int(m[2]) + 1}{m[3]}{int(m[4]) + 1}"


def uci_to_iccs(move: str) -> str:
    """``"b1b10"`` -> ``"b0b9"``."""
    m = _UCI_MOVE.match(move.strip())
    if not m:
        raise InvalidMoveError(f"not a Fairy-Stockfish xiangqi move: {move!r}")
    return f"{m[1]}{int(m[2]) - 1}{m[3]}{int(m[4]) - 1}"


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\r\n"))
    lines.put(None)     # end of output: the process exited


def _shutdown(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            process.stdin.write("quit\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except (OSError, ValueError):
            pass


class FairyStockfish:
    """A Fairy-Stockfish process speaking UCI. Use as a context manager, or call :meth:`close`.

    ``skill`` (Skill Level, -20..20) and ``elo`` (UCI_LimitStrength + UCI_Elo, 1350..2850) weaken the engine; they
    are this instance's defaults and each :meth:`bestmove` call may override them. ``options`` are sent as
    ``setoption`` once at start (e.g. ``{"Hash": 16, "Threads": 1}``). ``timeout`` bounds every wait for output,
    in seconds, on top of any ``movetime``.
    """

    def __init__(self, path: str | None = None, variant: str = "xiangqi", *, skill: int | None = None,
                 elo: int | None = None, options: dict[str, object] | None = None, timeout: float = 60.0):
        found = find_fairy_stockfish(path)
        if found is None:
            where = repr(path) if path else f"${ENV_VAR}, the PATH or {DEFAULT_PATH}"
            raise EngineError(f"Fairy-Stockfish not found at {where} "
                              "(install it with `apt-get install fairy-stockfish` or pass its path)")
        self.path = found
        self.variant = variant
        self.timeout = timeout
        self.skill, self.elo = _check_skill(skill), _check_elo(elo)
        try:
            self._process = subprocess.Popen([found], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError as e:
            raise EngineError(f"cannot start Fairy-Stockfish at {found}: {e}") from None
        self._finalizer = weakref.finalize(self, _shutdown, self._process)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(self._process.stdout, self._lines), daemon=True).start()
        self._sent_options: dict[str, str] = {}
        try:
            self._send("uci")
            self.name = "Fairy-Stockfish"
            self.option_names: set[str] = set()
            for line in self._read_until("uciok"):
                if line.startswith("id name "):
                    self.name = line[len("id name "):]
                elif line.startswith("option name "):
                    self.option_names.add(line[len("option name "):].split(" type ")[0])
            self.set_option("UCI_Variant", variant)
            for name, value in (options or {}).items():
                self.set_option(name, value)
            self._apply_strength(self.skill, self.elo)
            self._sync()
        except BaseException:
            self.close()
            raise

    # ---- process I/O ---------------------------------------------------------------------------------------------

    def _send(self, line: str) -> None:
        if self._process.poll() is not None:
            raise EngineError(f"Fairy-Stockfish ({self.path}) has exited with status {self._process.returncode}")
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise EngineError(f"Fairy-Stockfish ({self.path}) is not accepting input") from None

    def _readline(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise EngineError(f"Fairy-Stockfish did not answer within {timeout:g} s") from None
        if line is None:
            self._lines.put(None)
            raise EngineError(f"Fairy-Stockfish ({self.path}) exited unexpectedly")
        return line

    def _read_until(self, prefix: str, timeout: float | None = None) -> list[str]:
        """Lines up to and including the first that starts with ``prefix``."""
        lines = []
        while True:
            line = self._readline(self.timeout if timeout is None else timeout)
            lines.append(line)
            if line.startswith(prefix):
                return lines

    def _sync(self) -> None:
        self._send("isready")
        self._read_until("readyok")

    # ---- options -------------------------------------------------------------------------------------------------

    def set_option(self, name: str, value: object) -> None:
        """``setoption name NAME value VALUE`` (booleans as ``true``/``false``); not re-sent if unchanged."""
        if name not in self.option_names:
            raise ConfigError(f"Fairy-Stockfish has no option {name!r}")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if self._sent_options.get(name) != text:
            self._send(f"setoption name {name} value {text}")
            self._sent_options[name] = text

    def _apply_strength(self, skill: int | None, elo: int | None) -> None:
        self.set_option("Skill Level", SKILL_RANGE[1] if skill is None else skill)
        self.set_option("UCI_LimitStrength", elo is not None)
        if elo is not None:
            self.set_option("UCI_Elo", elo)

    def new_game(self) -> None:
        """``ucinewgame``: clear the engine's hash before an unrelated game."""
        self._send("ucinewgame")
        self._sync()

    # ---- commands ------------------------------------------------------------------------------------------------

    def _position(self, fen: str | None, moves: Iterable[str]) -> None:
        tail = " ".join(iccs_to_uci(str(m)) for m in moves)
        base = "startpos" if fen is None or fen == STARTING_FEN else f"fen {fen}"
        self._send(f"position {base}" + (f" moves {tail}" if tail else ""))

    def perft(self, fen: str | None, depth: int, moves: Iterable[str] = ()) -> dict[str, int]:
        """Leaf counts below each legal move (ICCS) of the position, like ``Board.perft_divide``. Empty when the
        side to move has no legal move."""
        if depth < 1:
            raise ValueError(f"perft depth must be >= 1, got {depth}")
        self._position(fen, moves)
        self._send(f"go perft {depth}")
        counts: dict[str, int] = {}
        for line in self._read_until("Nodes searched"):
            move, sep, count = line.partition(": ")
            if sep and _UCI_MOVE.match(move):
                counts[uci_to_iccs(move)] = int(count)
            elif line.startswith("Nodes searched"):
                total = int(line.split(":")[1])
                if total != sum(counts.values()):
                    raise EngineError(f"Fairy-Stockfish perft: {total} nodes but the moves sum to "
                                      f"{sum(counts.values())}")
        return counts

    def legal_moves(self, fen: str | None, moves: Iterable[str] = ()) -> set[str]:
        return set(self.perft(fen, 1, moves))

    def bestmove(self, fen: str | None = None, moves: Iterable[str] = (), depth: int | None = None,
                 movetime: int | None = None, skill: int | None = None, elo: int | None = None,
                 nodes: int | None = None) -> str | None:
        """The engine's move (ICCS) in the position ``fen`` (``None``: the start) after ``moves`` (ICCS), or ``None``
        if the side to move has no legal move. Limits: ``depth`` plies, ``movetime`` milliseconds, ``nodes``; with
        none given it thinks for 100 ms. ``skill``/``elo`` override the instance's strength for this call."""
        self._apply_strength(self.skill if skill is None else _check_skill(skill),
                             self.elo if elo is None else _check_elo(elo))
        self._position(fen, moves)
        limits = []
        if depth is not None:
            limits.append(f"depth {int(depth)}")
        if movetime is not None:
            limits.append(f"movetime {int(movetime)}")
        if nodes is not None:
            limits.append(f"nodes {int(nodes)}")
        if not limits:
            movetime = 100
            limits.append("movetime 100")
        self._send("go " + " ".join(limits))
        line = self._read_until("bestmove", timeout=self.timeout + (movetime or 0) / 1000)[-1]
        words = line.split()
        if len(words) < 2 or words[1] in ("(none)", "0000"):
            return None
        return uci_to_iccs(words[1])

    # ---- lifetime ------------------------------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the engine's process so far (from Linux's /proc; 0 elsewhere, or once
        the process has been reaped)."""
        try:
            with open(f"/proc/{self._process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def close(self) -> None:
        """Ask the engine to quit (kill it after 2 s). Safe to call twice."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> "FairyStockfish":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FairyStockfish({self.path!r}, variant={self.variant!r}, skill={self.skill}, elo={self.elo})"


def _check_skill(skill: int | None) -> int | None:
    if skill is not None and not SKILL_RANGE[0] <= skill <= SKILL_RANGE[1]:
        raise ConfigError(f"Fairy-Stockfish skill must be in {SKILL_RANGE[0]}..{SKILL_RANGE[1]}, got {skill}")
    return skill


def _check_elo(elo: int | None) -> int | None:
    if elo is not None and not ELO_RANGE[0] <= elo <= ELO_RANGE[1]:
        raise ConfigError(f"Fairy-Stockfish elo must be in {ELO_RANGE[0]}..{ELO_RANGE[1]}, got {elo}")
    return elo
