"""``python -m xiangqi_gpt uci`` (or ``ucci``): the GPT as an engine for xiangqi GUIs, over UCI or UCCI.

Main names: :class:`Engine`, :func:`run`; the ``uci`` / ``ucci`` commands. User guide: docs/engine.md.
Design notes: docs/design.md#play-engine
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import sys
import threading
import time
from typing import IO, Any, Callable, Protocol

from ..rules.board import RED, STARTING_FEN, Board, Move, parse_square, square_name
from ..errors import InvalidMoveError, XiangqiError

ENGINE_NAME = "xiangqi-gpt"
ENGINE_AUTHOR = "the xiangqi-gpt authors"
RANK_CONVENTIONS = ("0-9", "1-10")
MAX_THREADS = 256
#: the Style option: the condition the model is asked in (``tokenizer.STYLES``); a model without source tokens
#: plays the same in both. The engine's default is ``strong``: with the shipped model the strong style's search
#: beat the human style's head to head (docs/search.md), and a GUI's engine is asked for strength; ``play.py``
#: keeps ``human``, the style meant for a human opponent.
ENGINE_STYLES = ("human", "strong")
ENGINE_STYLE = "strong"
UCCI_HOUSEKEEPING_OPTIONS = {"usemillisec", "batch", "debug", "ponder", "hashsize", "threads", "idle", "promotion",
                             "newgame", "bookfiles", "egtbpaths", "evalapi", "loadbook", "dualtime", "style",
                             "knowledge", "pruning", "randomness", "repetition", "drawmoves"}
_MOVE_RE = re.compile(r"^([a-iA-I])(10|[0-9])([a-iA-I])(10|[0-9])$")


class Player(Protocol):
    def move_probs(self, board: Board) -> list[tuple[Move, float]]: ...

    def choose(self, board: Board) -> Move: ...


def _max_level() -> int:
    from .search import LEVELS

    return max(LEVELS)


def _one_line(e: BaseException) -> str:
    """One line a GUI user can read: the project's own message, or an OS error's words. Anything else is a bug:
    its Python details go to stderr, and the GUI gets plain words."""
    text = " ".join(str(e).split())
    if isinstance(e, XiangqiError):
        return text
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    try:
        print(f"{ENGINE_NAME}: internal error: {type(e).__name__}: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return "an internal error in the engine (details on its stderr)"


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
                 make_player: Callable[[Any, float, int | None], Player] | None = None,
                 style: str = ENGINE_STYLE):
        self.checkpoint = checkpoint
        self.style = style
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

    def set_style(self, style: str) -> None:
        self.style = style
        self._player = None

    def set_threads(self, n: int) -> None:
        self.threads = n
        if self._real and self._loaded is not None:   # torch is fully imported; else applied at load time
            sys.modules["torch"].set_num_threads(n)

    def player(self) -> Player:
        if self._loaded is None:
            if self._real:
                import torch

                from ..model.checkpoint import load_model

                torch.set_num_threads(self.threads)   # one thread: fastest for one position at a time
                self._load = load_model
            self._loaded = self._load(self.checkpoint)
        if self._player is None:
            if self._make_player is None:
                from .player import GPTPlayer

                self._make_player = lambda loaded, t, seed: GPTPlayer(loaded, temperature=t, seed=seed,
                                                                      style=self.style)
            self._player = self._make_player(self._loaded, self.temperature, self.seed)
        return self._player


class Engine:
    """The protocol state machine. Feed it lines with :meth:`handle`; it writes answers to ``out``."""

    def __init__(self, out: IO[str] = sys.stdout, protocol: str = "uci", checkpoint: str | None = None,
                 temperature: float = 0.0, seed: int | None = None, ranks_from_one: bool = False, threads: int = 1,
                 load: Callable[[str | None], Any] | None = None,
                 make_player: Callable[[Any, float, int | None], Player] | None = None,
                 level: int | None = None, make_searcher: Callable[[Player], Any] | None = None,
                 style: str = ENGINE_STYLE):
        from .search import level_limits

        self.out = out
        self.protocol = protocol
        self.ranks_from_one = ranks_from_one
        if style not in ENGINE_STYLES:
            raise XiangqiError(f"Style must be one of {', '.join(ENGINE_STYLES)}, got {style!r}")
        self.model = _ModelSource(checkpoint, temperature, seed, threads, load, make_player, style)
        self.board = Board()
        self.banned: set[Move] = set()
        self.level = level                 # None: no limit (full strength); else every go is capped by its budget
        if level is not None:
            level_limits(level)            # ConfigError for a bad level
        self.multipv = 1
        self.hash_mb = DEFAULT_HASH_MB
        self.pending_stops = 0             # stop/quit/end of input read but not yet handled (see run)
        self.waiting = False               # the command being handled waits for a running search (see settle)
        self.millisec = False              # UCCI: clock times in ms (`setoption usemillisec true`), else seconds
        self.job: _Job | None = None       # the running (or held) search of the last `go`
        self._make_searcher = make_searcher
        self._search: Any = None
        self._searcher_for: Player | None = None
        self._out_lock = threading.Lock()  # the search thread writes too

    # ---- output ------------------------------------------------------------------------------------------------

    def send(self, line: str) -> None:
        with self._out_lock:
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
            self.error(f"cannot process {line.strip()[:80]!r}: {_one_line(e)}; the line was ignored")
        return True

    def cmd_uci(self, args) -> None:
        self.protocol = "uci"
        self.send(f"id name {ENGINE_NAME}")
        self.send(f"id author {ENGINE_AUTHOR}")
        self.send(f"option name Temperature type string default {self.model.temperature:g}")
        self.send(f"option name Checkpoint type string default {self.model.checkpoint or '<empty>'}")
        self.send(f"option name Ranks type combo default {self._ranks()} var 0-9 var 1-10")
        self.send(f"option name Threads type spin default {self.model.threads} min 1 max {MAX_THREADS}")
        self.send(f"option name Level type combo default {self._level_name()} "
                  + " ".join(f"var {v}" for v in _level_names()))
        self.send(f"option name Style type combo default {self.model.style} "
                  + " ".join(f"var {name}" for name in ENGINE_STYLES))
        self.send(f"option name MultiPV type spin default {self.multipv} min 1 max {MAX_MULTIPV}")
        self.send(f"option name Hash type spin default {self.hash_mb} min {MIN_HASH_MB} max {MAX_HASH_MB}")
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
        self.send("option Level type combo " + " ".join(f"var {v}" for v in _level_names())
                  + f" default {self._level_name()}")
        self.send(f"option MultiPV type spin min 1 max {MAX_MULTIPV} default {self.multipv}")
        self.send(f"option Hash type spin min {MIN_HASH_MB} max {MAX_HASH_MB} default {self.hash_mb}")
        self.send("ucciok")

    def _ranks(self) -> str:
        return RANK_CONVENTIONS[self.ranks_from_one]

    def _level_name(self) -> str:
        return NO_LEVEL if self.level is None else str(self.level)

    def cmd_isready(self, args) -> None:
        if self.searching:   # the model is in use by the search: ready by definition
            self.send("readyok")
            return
        try:
            self.model.player()
        except Exception as e:   # a missing or broken checkpoint: say so, stay up
            self.error(f"cannot load the model: {_one_line(e)}")
        self.send("readyok")

    def cmd_ucinewgame(self, args) -> None:
        self.board = Board()
        self.banned = set()
        self.settle()   # every go gets its bestmove, even if the GUI skipped stop
        if self._search is not None:
            self._search.clear()

    def cmd_debug(self, args) -> None:
        pass

    def cmd_register(self, args) -> None:
        pass

    def cmd_probe(self, args) -> None:
        self.send("info string probe is not supported")

    def cmd_d(self, args) -> None:
        self.send(f"info string fen {self.board.fen()}")
        for row in str(self.board).splitlines():
            self.send(f"info string {row}")

    # ---- options -----------------------------------------------------------------------------------------------

    def cmd_setoption(self, args) -> None:
        self.settle()   # options change between searches: the running go answers first, with the old settings
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
            if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_THREADS:
                self.error(f"Threads must be an integer from 1 to {MAX_THREADS}, got {value!r}")
                return
            self.model.set_threads(int(value))
        elif key == "level":
            from .search import level_limits

            top = _max_level()
            if value.lower() in (NO_LEVEL, "none", "off", ""):
                self.level = None
                return
            number = _int_or_none(value)
            if number is None or not 0 <= number <= top:
                self.error(f"Level must be {NO_LEVEL} or a whole number from 0 to {top}, got {value!r}")
                return
            level_limits(number)
            self.level = number
        elif key == "style":
            if value.lower() not in ENGINE_STYLES:
                self.error(f"Style must be one of {', '.join(ENGINE_STYLES)}, got {value!r}")
                return
            self.model.set_style(value.lower())
            self._searcher_for = None
        elif key == "multipv":
            number = _int_or_none(value)
            if number is None or not 1 <= number <= MAX_MULTIPV:
                self.error(f"MultiPV must be a whole number from 1 to {MAX_MULTIPV}, got {value!r}")
                return
            self.multipv = number
        elif key in ("hash", "hashsize"):
            number = _int_or_none(value)
            if number is None or not MIN_HASH_MB <= number <= MAX_HASH_MB:
                self.error(f"Hash must be a whole number of MB from {MIN_HASH_MB} to {MAX_HASH_MB}, got {value!r}")
                return
            self.hash_mb = number
            if self._search is not None:
                self._search.tt_size = _tt_entries(number)
        elif key == "usemillisec" and self.protocol == "ucci":
            self.millisec = value.lower() in ("true", "on", "1", "")
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
        if not head:
            self.error("position needs startpos or fen FEN before its moves")
            return
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
        self.settle()
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
        self.settle()   # a go during a search: the old one answers first, so every go gets one bestmove
        go = self._parse_go(args)
        hold = go.infinite or go.ponder
        limits = self._limits_for(go)
        job = _Job(hold)
        allotment = None if go.infinite or limits is None else self._allotment(go)
        if allotment is not None:   # a ponder's clock starts at ponderhit
            from .timeman import Timer

            job.timer = Timer(allotment, start=not go.ponder)
        board, banned = self.board.copy(), set(self.banned)
        job.thread = threading.Thread(target=self._run_job, args=(job, board, banned, limits), name="search",
                                      daemon=True)
        self.job = job
        job.thread.start()

    def _parse_go(self, args) -> "_Go":
        """The words of a ``go`` command. A bad value gets an ``info string error`` and is ignored (the search
        still runs and answers); unknown words get one ``info string ignoring go parameters ...`` line."""
        go = _Go()
        words = [a.lower() for a in args]
        unknown: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("infinite", "ponder", "draw"):
                setattr(go, word, True)
                i += 1
            elif word == "searchmoves":   # accepted, not honoured: the whole position is searched
                i += 1
                while i < len(words) and _MOVE_RE.match(words[i]):
                    i += 1
            elif word in _GO_NUMBERS:
                value = words[i + 1] if i + 1 < len(words) else None
                if word == "depth" and value == "infinite":   # UCCI
                    go.infinite = True
                    i += 2
                    continue
                number = _int_or_none(value)
                smallest = 1 if word in _GO_LIMITS or word == "movestogo" else None
                if number is None or (smallest is not None and number < smallest):
                    need = "a whole number" + (f" >= {smallest}" if smallest is not None else "")
                    got = "nothing" if value is None else repr(args[i + 1])
                    self.error(f"go {word} needs {need}, got {got}; ignored")
                    i += 1 if value is None or value in _GO_WORDS else 2
                    continue
                go.numbers[word] = number
                i += 2
            else:
                unknown.append(word)
                i += 1
        if unknown:
            self.send(f"info string ignoring go parameters {' '.join(unknown)}")
        return go

    def _limits_for(self, go: "_Go"):
        """The search limits of a ``go``, or None for the model's move without search (``Level`` 0).

        ``depth`` / ``nodes`` / ``movetime`` / ``mate`` are used as given (``mate N``: a search of 2N-1 plies);
        ``infinite`` searches until ``stop``; a clock (UCI ``wtime/btime/winc/binc/movestogo``, UCCI
        ``time/increment/movestogo``) adds the allotment of :mod:`xiangqi_gpt.play.timeman` (:meth:`_allotment`); a
        ``go`` with none of these gets :data:`PLAIN_GO_LEVEL`'s budget. When ``Level`` is set, its budget caps every
        kind of ``go`` (depth and nodes at most the level's, its guaranteed depth kept); level 0 is the model alone."""
        from .search import MAX_DEPTH, Limits, level_limits

        if self.level == 0:
            return None
        n = go.numbers
        depth = min(n["depth"], MAX_DEPTH) if "depth" in n else None
        if "mate" in n:
            depth = min(depth or MAX_DEPTH, 2 * n["mate"] - 1)
        limits = Limits(depth=depth, nodes=n.get("nodes"), movetime_ms=n.get("movetime"))
        if (not go.infinite and depth is None and limits.nodes is None and limits.movetime_ms is None
                and self._clock(go) is None):
            limits = level_limits(PLAIN_GO_LEVEL if self.level is None else self.level)
        if self.level is None:
            return limits
        return cap_limits(limits, level_limits(self.level))

    def _clock(self, go: "_Go") -> tuple[int, int] | None:
        """The side to move's remaining time and increment (ms) in ``go``, or None when it gives no clock."""
        n = go.numbers
        red = self.board.turn == RED
        if "time" in n:   # UCCI: the side to move's clock, in seconds unless `setoption usemillisec true`
            unit = 1 if self.millisec else 1000
            return n["time"] * unit, n.get("increment", 0) * unit
        if ("wtime" if red else "btime") in n:
            return n["wtime" if red else "btime"], n.get("winc" if red else "binc", 0)
        return None

    def _allotment(self, go: "_Go"):
        """The time for this move from the clock in ``go`` (:func:`xiangqi_gpt.play.timeman.allot`), or None."""
        from .timeman import allot

        clock = self._clock(go)
        if clock is None:
            return None
        return allot(clock[0], clock[1], go.numbers.get("movestogo"))

    def _run_job(self, job: "_Job", board: Board, banned: set[Move], limits) -> None:
        """The search thread of one ``go``: search, then write ``bestmove`` once the hold is released."""
        protocol, ranks = self.protocol, self.ranks_from_one
        none = "bestmove (none)" if protocol == "uci" else "nobestmove"
        try:
            legal = [m for m in board.legal_moves() if m not in banned]
            if not legal:
                answer = none
            else:
                try:
                    player = self.model.player()
                except Exception as e:
                    self.error(f"cannot load the model: {_one_line(e)}")
                    player = None
                if player is None:
                    answer = none
                elif limits is None:
                    answer = self._model_answer(player, board, banned, legal, ranks)
                else:
                    answer = self._search_answer(player, board, banned, legal, limits, job, protocol, ranks,
                                                 self.multipv)
        except Exception as e:   # never die silently: say why, and still answer
            self.error(_one_line(e))
            answer = none
        job.searched.set()
        job.release.wait()
        self.send(answer)
        job.answered = True

    def _model_answer(self, player: Player, board: Board, banned: set[Move], legal: list[Move], ranks: bool) -> str:
        """Level 0: the model's move, one forward pass, no search."""
        t0 = time.perf_counter()
        probs = [(m, p) for m, p in player.move_probs(board) if m not in banned]
        move = player.choose(board)
        if move not in legal:
            move = probs[0][0]
        ms = round(1000 * (time.perf_counter() - t0))
        text = format_engine_move(move, ranks)
        self.send(f"info depth 1 time {ms} nodes 1 pv {text}")
        top = " ".join(f"{format_engine_move(m, ranks)}:{p:.3f}" for m, p in probs[:5])
        self.send(f"info string policy {top}")
        return f"bestmove {text}"

    def _search_answer(self, player: Player, board: Board, banned: set[Move], legal: list[Move], limits,
                       job: "_Job", protocol: str, ranks: bool, multipv: int = 1) -> str:
        searcher = self._searcher(player)
        sent: list = []

        def on_info(info) -> None:
            sent.append(info)
            self.send(info_line(info, protocol, ranks, multipv > 1))

        options: dict[str, Any] = {}
        if multipv > 1:
            options["multipv"] = multipv
        if job.timer is not None:
            options["timer"] = job.timer
        result = searcher.search(board, limits, on_info=on_info, stop=job.stop, **options)
        if result.info is not None and result.info not in sent and result.info.pv:
            self.send(info_line(result.info, protocol, ranks, multipv > 1))
        move = result.move
        pv = list(result.info.pv) if result.info is not None else []
        if move is None or move not in legal:   # a banned move (UCCI banmoves): the model's best allowed one
            move = next(m for m, _ in player.move_probs(board) if m in legal)
            pv = [move]
        text = f"bestmove {format_engine_move(move, ranks)}"
        if len(pv) >= 2 and pv[0] == move:
            text += f" ponder {format_engine_move(pv[1], ranks)}"
        return text

    def _searcher(self, player: Player):
        """The search over ``player`` (kept, with its tables, until the player changes)."""
        if self._searcher_for is not player:
            if self._make_searcher is None:
                from .search import Searcher

                self._make_searcher = Searcher
            self._search = self._make_searcher(player)
            self._search.tt_size = _tt_entries(self.hash_mb)
            self._searcher_for = player
        return self._search

    @property
    def searching(self) -> bool:
        job = self.job   # read once: the reader thread asks too
        return job is not None and not job.answered

    def settle(self) -> None:
        """Let the last ``go`` answer before the engine moves on: a search with limits runs to them (as Stockfish
        does when a GUI sends the next command early); a held ``go infinite``/``go ponder`` is stopped. While it
        waits, the input is still read (:func:`run`): a ``stop``, ``quit`` or the end of input read meanwhile stops
        the search at once."""
        job = self.job
        if job is not None and not job.release.is_set():
            self.cmd_stop([])
        elif job is not None:
            self.waiting = True
            try:
                while job.thread.is_alive():
                    if self.pending_stops:
                        job.stop.set()
                    job.thread.join(0.02)
            finally:
                self.waiting = False
            self.job = None

    def cmd_stop(self, args) -> None:
        """End the search at once and answer with the best move so far (also a held ``go infinite``/``ponder``)."""
        job, self.job = self.job, None
        if job is not None:
            job.stop.set()
            if job.timer is not None:
                job.timer.start()
            job.release.set()
            job.thread.join()

    def cmd_ponderhit(self, args) -> None:
        """The pondered move was played: the search goes on, now on the clock's allotment of the ``go ponder``
        (which starts now), or to its limits, then answers."""
        if self.job is not None:
            if self.job.timer is not None:
                self.job.timer.start()
            self.job.release.set()

    def cmd_quit(self, args) -> bool:
        self.end()
        if self.protocol == "ucci":
            self.send("bye")
        return False

    def end(self, wait_s: float = 0.5) -> None:
        """``quit`` or the end of input: stop the search and let it answer, waiting at most ``wait_s`` (a model still
        loading is not waited for: the process exits)."""
        job, self.job = self.job, None
        if job is not None:
            job.stop.set()
            job.release.set()
            job.thread.join(wait_s)


NO_LEVEL = "full"          # the Level option's value for no limit
PLAIN_GO_LEVEL = 4         # a go with no limit and no clock (and no Level) gets this level's budget
MAX_MULTIPV = 10
MIN_HASH_MB, DEFAULT_HASH_MB, MAX_HASH_MB = 1, 256, 4096
_GO_LIMITS = {"depth", "nodes", "movetime", "mate"}
_GO_NUMBERS = _GO_LIMITS | {"wtime", "btime", "winc", "binc", "movestogo", "time", "increment", "opptime",
                            "oppincrement", "oppmovestogo"}
_GO_WORDS = _GO_NUMBERS | {"infinite", "ponder", "draw", "searchmoves"}


def _level_names() -> list[str]:
    from .search import LEVELS

    return [NO_LEVEL] + [str(level) for level in sorted(LEVELS)]


def _tt_entries(mb: int) -> int:
    from .search import tt_entries_for_mb

    return tt_entries_for_mb(mb)


def cap_limits(limits, cap):
    """``limits`` within the budget ``cap`` (a level's :class:`~xiangqi_gpt.play.search.Limits`): the smaller depth,
    nodes and movetime of the two; ``cap``'s guaranteed depth (``min_depth``), kept within the depth."""
    from .search import Limits

    def smaller(a, b):
        return b if a is None else a if b is None else min(a, b)

    depth = smaller(limits.depth, cap.depth)
    min_depth = smaller(limits.min_depth, cap.min_depth) if limits.min_depth else cap.min_depth
    if min_depth is not None and depth is not None:
        min_depth = min(min_depth, depth)
    return Limits(depth=depth, nodes=smaller(limits.nodes, cap.nodes),
                  movetime_ms=smaller(limits.movetime_ms, cap.movetime_ms), min_depth=min_depth)


def info_line(info, protocol: str = "uci", ranks_from_one: bool = False, multipv: bool = False) -> str:
    """A search's ``info`` line: ``info depth D seldepth S score cp X|mate M nodes N nps R time T pv ...`` (UCI), or
    UCCI's ``info depth D score X nodes N time T pv ...`` whose mate scores are ``±(MATE_SCORE - plies)``. With
    ``multipv``, the line's rank follows ``info``: ``info multipv K depth D ...``."""
    pv = " ".join(format_engine_move(m, ranks_from_one) for m in info.pv)
    rank = f"multipv {getattr(info, 'multipv', 1)} " if multipv else ""
    if protocol == "ucci":
        score = info.score_cp
        if info.mate is not None:
            plies = 2 * info.mate - 1 if info.mate > 0 else -2 * info.mate
            score = (UCCI_MATE_SCORE - plies) * (1 if info.mate > 0 else -1)
        head = f"info depth {info.depth} score {score} nodes {info.nodes} nps {info.nps} time {info.time_ms}"
    else:
        score = f"mate {info.mate}" if info.mate is not None else f"cp {info.score_cp}"
        head = (f"info depth {info.depth} seldepth {info.seldepth} score {score} nodes {info.nodes} nps {info.nps} "
                f"time {info.time_ms}")
    head = head.replace("info ", "info " + rank, 1)
    return f"{head} pv {pv}" if pv else head


UCCI_MATE_SCORE = 10000    # ElephantEye's convention: a mate in p plies scores ±(10000 - p)


class _Go:
    """The parsed words of one ``go`` command."""

    def __init__(self):
        self.numbers: dict[str, int] = {}
        self.infinite = self.ponder = self.draw = False


class _Job:
    """One ``go``: the search thread, its stop signal, and the hold that ``go infinite``/``go ponder`` put on the
    answer until ``stop``/``ponderhit``."""

    def __init__(self, hold: bool):
        self.stop = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.thread: threading.Thread | None = None
        self.searched = threading.Event()   # the search is over (its answer may still be held)
        self.answered = False
        self.timer = None                   # the clock's timeman.Timer, if the go gave a clock


def _int_or_none(text: str | None) -> int | None:
    if text is None or not re.fullmatch(r"[+-]?\d{1,18}", text):
        return None
    return int(text)


def run(inp: IO[str] = sys.stdin, out: IO[str] = sys.stdout, **kwargs) -> int:
    """Serve the protocol until ``quit`` or end of input.

    A reader thread reads ``inp`` all the time, so every command is read while a search runs: commands are handled
    in order, and one that must wait for a running search (``position``, ``go``, ``setoption`` after a bounded
    ``go``) does not stop the reading. A ``stop`` or ``quit`` read while such a command waits stops that search at
    once; an ``isready`` read meanwhile is answered at once; the end of input stops any search and ends the loop."""
    engine = Engine(out=out, **kwargs)
    lines: queue.Queue = queue.Queue()
    lock = threading.Lock()

    def read() -> None:
        try:
            for line in iter(inp.readline, ""):
                words = line.split()
                word = words[0].lower() if words else ""
                if word == "isready" and (engine.waiting or engine.searching):
                    engine.send("readyok")   # UCI: answered at once during a search, even behind a waiting command
                    continue
                if word in ("stop", "quit"):
                    with lock:
                        engine.pending_stops += 1
                lines.put(line)
        except (OSError, ValueError):   # a closed or broken input ends it like EOF
            pass
        with lock:
            engine.pending_stops += 1
        lines.put(None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    try:
        while True:
            line = lines.get()
            words = line.split() if line is not None else []
            if line is None or (words and words[0].lower() in ("stop", "quit")):
                with lock:
                    engine.pending_stops -= 1
            if line is None:
                engine.end()   # end of input: stop the search, answer if it can, and exit
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
    p.add_argument("--style", choices=ENGINE_STYLES, default=ENGINE_STYLE,
                   help=f"how the model plays (default {ENGINE_STYLE}): human (like the masters) or strong (like "
                        "the engine games it learned from); the Style option changes it")
    p.add_argument("--level", type=int, default=None,
                   help="cap every search at this level's budget (0 = the model alone; default: no limit, full "
                        "strength); the Level option changes it")


def _runner(protocol: str):
    def go(args: argparse.Namespace) -> None:
        if args.temperature < 0:
            raise XiangqiError(f"--temperature must be >= 0, got {args.temperature}")
        if not 1 <= args.threads <= MAX_THREADS:
            raise XiangqiError(f"--threads must be from 1 to {MAX_THREADS}, got {args.threads}")
        if args.level is not None:
            from .search import level_limits

            try:
                level_limits(args.level)
            except XiangqiError as e:   # one line, exit 2
                raise XiangqiError(f"--level: {e}") from None
        for stream in (sys.stdin, sys.stdout):   # bytes that are not UTF-8 must not kill the engine
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="replace")
        code = run(protocol=protocol, checkpoint=args.checkpoint, temperature=args.temperature, seed=args.seed,
                   ranks_from_one=args.ranks == "1-10", threads=args.threads, level=args.level, style=args.style)
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
