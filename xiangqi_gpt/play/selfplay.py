"""``python -m xiangqi_gpt selfplay --out FILE.pgn --games N [--player search]``: self-play games to train on.

Main names: :func:`selfplay`, :class:`Source`, :class:`FairySelfPlay`, :class:`SearchSelfPlay`,
:func:`add_selfplay_command`.
Design notes: docs/design.md#play-selfplay
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from . import match
from ..rules.board import STARTING_FEN, Board
from ..console import CtrlCGuard, ProgressBar, ignore_sigint, pool_context, restore_ctrl_c, start_pool
from ..errors import ConfigError, PgnError, XiangqiError
from .fairy import SKILL_RANGE, FairyStockfish, find_fairy_stockfish
from .match import DEFAULT_MAX_PLIES, OPENINGS, FairyPlayer, Player

DEFAULT_OPENINGS = Path("data") / "ccpd" / "train.pgn"
DEFAULT_SKILL = (0, 20)
DEFAULT_DEPTH = (1, 6)
DEFAULT_OPENING_PLIES = (2, 12)
MAX_FAILURES_IN_A_ROW = 5      # games that end in an engine error, one after the other, before the run stops


class SelfPlayError(XiangqiError):
    """The run stopped: too many games in a row could not be played."""


# --------------------------------------------------------------------------------------------------------------
# Players and sources
# --------------------------------------------------------------------------------------------------------------

class Source:
    """Makes the players of each game. Subclass it (or duck-type it) to add a source of self-play games.

    The object is built in the main process and copied into each worker process (fork), so start heavy resources
    (an engine, a model) lazily in :meth:`players`, not in ``__init__``."""

    event = "self-play"

    def draw(self, rng: random.Random) -> dict:
        """The settings of one game (JSON-like), drawn in the main process from the game's own RNG."""
        return {}

    def players(self, settings: dict) -> tuple[Player, Player]:
        """(red, black) for a new game with these settings (in the worker)."""
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        """CPU seconds used so far outside this process (an engine's), for the games/hour per core figure."""
        return 0.0

    def reset(self) -> None:
        """After a failed game: restart whatever failed (the next :meth:`players` call starts it again)."""
        self.close()

    def close(self) -> None:
        pass


class FairySelfPlay(Source):
    """Fairy-Stockfish against itself: one Skill Level and one depth per game, drawn uniformly from the ranges
    (inclusive), the same for both sides."""

    event = "Fairy-Stockfish self-play"

    def __init__(self, skill: tuple[int, int] = DEFAULT_SKILL, depth: tuple[int, int] = DEFAULT_DEPTH,
                 path: str | None = None):
        for name, (lo, hi), (low, high) in (("--skill", skill, SKILL_RANGE), ("--depth", depth, (1, 64))):
            if not low <= lo <= hi <= high:
                raise ConfigError(f"{name} must be a range within {low}..{high}, got {lo}..{hi}")
        if find_fairy_stockfish(path) is None:
            where = repr(path) if path else "$FAIRY_STOCKFISH, the PATH or /usr/games/fairy-stockfish"
            raise ConfigError(f"Fairy-Stockfish not found at {where} (install it with "
                              "`apt-get install fairy-stockfish` or pass --engine-path)")
        self.skill, self.depth, self.path = tuple(skill), tuple(depth), path
        self.engine = None
        self._cpu_before = 0.0      # CPU of engines already closed

    def draw(self, rng: random.Random) -> dict:
        return {"skill": rng.randint(*self.skill), "depth": rng.randint(*self.depth)}

    def players(self, settings: dict) -> tuple[Player, Player]:
        if self.engine is None:
            self.engine = FairyStockfish(self.path, options={"Threads": 1, "Hash": 16})
        self.engine.new_game()
        skill, depth = settings["skill"], settings["depth"]
        player = FairyPlayer(self.engine, depth=depth, skill=skill,
                             name=f"Fairy-Stockfish Skill {skill} depth {depth}")
        return player, player

    def cpu_seconds(self) -> float:
        return self._cpu_before + (self.engine.cpu_seconds() if self.engine is not None else 0.0)

    def close(self) -> None:
        if self.engine is not None:
            self._cpu_before += self.engine.cpu_seconds()
            self.engine.close()
            self.engine = None


class _NamedPlayer:
    """A player with the ``name`` the PGN tags show."""

    def __init__(self, player, name: str):
        self.player, self.name = player, name

    def choose(self, board: Board):
        return self.player.choose(board)


class SearchSelfPlay(Source):
    """Our own search against itself: the GPT asked in one style, searching at one level of
    :data:`~xiangqi_gpt.play.search.LEVELS` (level 3 by default). Its moves are targets under the ``search`` start
    token (``prepare`` the games into a directory named ``search``, then ``data.mix: {DIR/search: share}``):
    expert iteration, the GPT learns to predict its own search. Each worker process loads the model once, with
    ``threads`` torch threads."""

    event = "xiangqi-gpt search self-play"

    def __init__(self, level: int = 3, checkpoint: str | None = None, style: str | None = "strong",
                 threads: int = 1):
        from ..data.tokenizer import resolve_style
        from .search import level_limits

        level_limits(level)                     # ConfigError naming the range
        if level < 1:
            raise ConfigError("--level must be at least 1 for search self-play (level 0 is the GPT alone)")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"--threads must be a positive integer, got {threads!r}")
        resolve_style(style)                    # ConfigError for an unknown style
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise ConfigError(f"--checkpoint {checkpoint}: no such file")
        self.level, self.checkpoint, self.style, self.threads = level, checkpoint, style, threads
        self.player = None
        label = os.path.basename(checkpoint) if checkpoint else "default"
        self.name = f"xiangqi-gpt level {level} ({style or 'default'} style, {label})"

    def players(self, settings: dict) -> tuple[Player, Player]:
        if self.player is None:
            import torch

            from ..model.checkpoint import load_model
            from .player import GPTPlayer
            from .search import SearchPlayer

            torch.set_num_threads(self.threads)
            self.player = _NamedPlayer(SearchPlayer(GPTPlayer(load_model(self.checkpoint), style=self.style),
                                                    self.level), self.name)
        return self.player, self.player     # one searcher: its tables are cleared at each new game


# --------------------------------------------------------------------------------------------------------------
# Openings
# --------------------------------------------------------------------------------------------------------------

class OpeningBook:
    """Game texts to take openings from; a game is parsed (and checked by the rules) only when it is drawn."""

    def __init__(self, games: list[tuple[str, str]], description: str):
        self.games = games                  # (label, PGN text of one game)
        self.description = description
        self._parsed: dict[int, list[str] | None] = {}
        self.whole_lines = False            # a book of opening lines: each is played whole, K is not drawn

    @classmethod
    def load(cls, source: str | os.PathLike, warn: Callable[[str], None] = lambda m: None) -> "OpeningBook":
        """The games of a PGN file (plain or compressed), a folder or an archive of them."""
        from ..records.sources import SourceReader, check_source
        from ..records.pgn import decode_bytes

        path = Path(source)
        if not path.exists():
            raise ConfigError(f"--openings {source}: no such file or folder")
        try:
            check_source(path)
        except XiangqiError as e:
            raise ConfigError(f"--openings {e}") from None
        games: list[tuple[str, str]] = []
        for label, data in SourceReader([str(path)], warn, lambda n: None):
            try:
                text = decode_bytes(data, label)
            except PgnError as e:
                warn(f"--openings: {e}")
                continue
            games.extend((label, chunk) for chunk in _game_texts(text))
        if not games:
            raise ConfigError(f"--openings {source}: no games found")
        return cls(games, "a human game")

    @classmethod
    def arena_book(cls) -> "OpeningBook":
        book = cls([("arena", " ".join(line)) for line in OPENINGS], "the arena's opening book")
        book._parsed = {i: list(line) for i, line in enumerate(OPENINGS)}
        book.whole_lines = True
        return book

    def moves(self, i: int) -> list[str] | None:
        """The ICCS moves of game ``i`` from the standard start, or None when it cannot be used."""
        if i not in self._parsed:
            from ..records.pgn import is_standard_fen, read_games

            label, text = self.games[i]
            moves = None
            try:
                for item in read_games(text.encode("utf-8"), name=label):
                    if not isinstance(item, PgnError) and is_standard_fen(item.root_fen):
                        moves = item.iccs()
                    break
            except XiangqiError:
                pass
            self._parsed[i] = moves
        return self._parsed[i]

    def draw(self, rng: random.Random, plies: tuple[int, int]) -> tuple[list[str], str]:
        """(the first K plies of a random usable game, the Opening tag), K uniform in ``plies``."""
        k = rng.randint(*plies)
        if self.whole_lines:
            moves = self.moves(rng.randrange(len(self.games)))
            return moves, f"first {len(moves)} plies of {self.description}"
        for _ in range(1000):
            moves = self.moves(rng.randrange(len(self.games)))
            if moves is None or len(moves) <= k:
                continue
            board = Board()
            for text in moves[:k]:
                board.push_iccs(text)
            if board.outcome() is None:
                return moves[:k], f"first {k} plies of {self.description}"
        raise ConfigError(f"no opening of {k} plies found in 1000 draws: the openings file has too few games from "
                          f"the standard start that are longer than {k} plies")


def _game_texts(text: str) -> Iterator[str]:
    """Split PGN text into games: a tag line after movetext starts a new one."""
    lines: list[str] = []
    moves = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and moves:
            yield "\n".join(lines) + "\n"
            lines, moves = [], False
        lines.append(line)
        if stripped and not stripped.startswith("["):
            moves = True
    if moves:
        yield "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Games
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GameSpec:
    """What is decided before a game is played: everything comes from (seed, index)."""

    index: int
    opening: tuple[str, ...]
    opening_tag: str
    settings: dict


@dataclass
class PlayedGame:
    index: int
    pgn: str
    plies: int
    result: str
    termination: str
    cpu_seconds: float          # referee + players (engine) CPU for this game


def game_spec(index: int, seed: int, book: OpeningBook, source: Source,
              opening_plies: tuple[int, int] = DEFAULT_OPENING_PLIES) -> GameSpec:
    rng = random.Random(f"selfplay:{seed}:{index}")
    opening, tag = book.draw(rng, opening_plies)
    return GameSpec(index, tuple(opening), tag, source.draw(rng))


def play_game(spec: GameSpec, source: Source, max_plies: int = DEFAULT_MAX_PLIES) -> PlayedGame:
    """Play the game of ``spec`` with the players of ``source`` (by :func:`xiangqi_gpt.play.match.play_game`); raises
    :class:`XiangqiError` (:class:`~xiangqi_gpt.play.match.GameError`, an engine error) if it fails."""
    from ..records.pgn import pgn_text

    cpu0, engine0 = time.process_time(), source.cpu_seconds()
    red, black = source.players(spec.settings)
    game = match.play_game(red, black, spec.opening, max_plies)
    headers = {"Game": "Chinese Chess", "Event": source.event, "Red": red.name, "Black": black.name,
               "Result": game.result, "Termination": game.termination, "Opening": spec.opening_tag}
    text = pgn_text(headers, game.moves, STARTING_FEN, game.result, "iccs")
    cpu = time.process_time() - cpu0 + source.cpu_seconds() - engine0
    return PlayedGame(spec.index, text, game.plies, game.result, game.termination, cpu)


# --- worker processes ---------------------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(source: Source, max_plies: int) -> None:
    ignore_sigint()             # Ctrl-C is handled by the main process, which stops the workers
    _WORKER.update(source=source, max_plies=max_plies)


def _play_in_worker(spec: GameSpec):
    source = _WORKER["source"]
    try:
        return play_game(spec, source, _WORKER["max_plies"])
    except XiangqiError as e:
        source.reset()
        return spec.index, f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------

@dataclass
class SelfPlayResult:
    out: Path
    games: int = 0
    plies: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    workers: int = 1
    seed: int = 0
    results: Counter = field(default_factory=Counter)
    terminations: Counter = field(default_factory=Counter)
    interrupted: bool = False

    @property
    def games_per_hour(self) -> float:
        return 3600 * self.games / self.seconds if self.seconds else 0.0

    @property
    def games_per_hour_per_core(self) -> float:
        """From CPU time (referee + engine): what one fully used core gives, whatever else the machine runs."""
        return 3600 * self.games / self.cpu_seconds if self.cpu_seconds else 0.0

    def line(self) -> str:
        r = self.results
        ends = ", ".join(f"{n} {t}" for t, n in self.terminations.most_common())
        return (f"{self.games} games, {self.plies} plies ({r['1-0']} red wins, {r['0-1']} black wins, "
                f"{r['1/2-1/2']} draws; {ends or 'none'}) in {self.seconds:.1f} s with {self.workers} "
                f"worker{'s' if self.workers != 1 else ''}: {self.games_per_hour:,.0f} games/hour, "
                f"{self.cpu_seconds / max(self.games, 1):.2f} CPU s per game = "
                f"{self.games_per_hour_per_core:,.0f} games/hour per core")


def selfplay(out: str | os.PathLike, games: int, workers: int = 1, openings: str | os.PathLike | None = None,
             source: Source | None = None, opening_plies: tuple[int, int] = DEFAULT_OPENING_PLIES,
             max_plies: int = DEFAULT_MAX_PLIES, seed: int | None = None, progress: bool | None = None,
             warn: Callable[[str], None] | None = None, on_game: Callable[[PlayedGame], None] | None = None
             ) -> SelfPlayResult:
    """Play ``games`` games and append them to ``out`` (see the module docstring). ``source`` defaults to
    :class:`FairySelfPlay` with the default ranges. ``openings`` defaults to ``data/ccpd/train.pgn`` if present, else
    the arena book. A KeyboardInterrupt stops the workers and propagates, after every finished game is written."""
    if games < 1:
        raise ConfigError(f"--games must be at least 1, got {games}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not 0 <= opening_plies[0] <= opening_plies[1]:
        raise ConfigError(f"--opening-plies must be a range a..b with 0 <= a <= b, got "
                          f"{opening_plies[0]}..{opening_plies[1]}")
    if max_plies <= opening_plies[1]:
        raise ConfigError(f"--max-plies ({max_plies}) must be more than the longest opening ({opening_plies[1]})")
    out = Path(out)
    _check_out(out)
    seed = random.SystemRandom().randrange(2 ** 31) if seed is None else seed
    bar = ProgressBar(progress, label="selfplay", unit="items")
    report = warn or bar.warn
    source = source or FairySelfPlay()
    if openings is None and DEFAULT_OPENINGS.is_file():
        openings = DEFAULT_OPENINGS
    book = OpeningBook.load(openings, report) if openings is not None else OpeningBook.arena_book()
    if openings is None:
        report(f"no --openings and no {DEFAULT_OPENINGS}: the games start from the arena's 12 two-ply lines")
    game_0 = game_spec(0, seed, book, source, opening_plies)      # fails now if the book has no usable opening

    def specs() -> Iterator[GameSpec]:
        yield game_0
        for i in range(1, games):
            yield game_spec(i, seed, book, source, opening_plies)

    result = SelfPlayResult(out, workers=workers, seed=seed)
    t0 = time.perf_counter()
    failures_in_a_row = 0
    guard = CtrlCGuard()        # a Ctrl-C while a game is written waits until it is written and counted
    bar.start(games)
    try:
        with open(out, "a", encoding="utf-8", newline="\n") as f:
            if _needs_separator(out):
                f.write("\n")
            for item in _played(specs(), source, workers, max_plies):
                if isinstance(item, PlayedGame):
                    with guard:
                        f.write(item.pgn)
                        f.flush()
                        result.games += 1
                        result.plies += item.plies
                        result.cpu_seconds += item.cpu_seconds
                        result.results[item.result] += 1
                        result.terminations[item.termination] += 1
                    failures_in_a_row = 0
                    if on_game is not None:
                        on_game(item)
                else:
                    index, message = item
                    result.failed += 1
                    failures_in_a_row += 1
                    report(f"game {index + 1} dropped: {message}")
                    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                        raise SelfPlayError(f"{failures_in_a_row} games in a row failed; the last: {message}")
                bar.advance(1)
                r = result.results
                bar.describe(f"{result.plies:,} plies, +{r['1-0']} ={r['1/2-1/2']} -{r['0-1']}")
    except KeyboardInterrupt as e:
        result.interrupted = True
        raise SelfPlayInterrupted(result) from e
    finally:
        guard.close()
        bar.stop()
        result.seconds = time.perf_counter() - t0
        if workers <= 1:
            source.close()
    return result


class SelfPlayInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`selfplay`; ``result`` counts the games written (all of them complete)."""

    def __init__(self, result: SelfPlayResult):
        super().__init__()
        self.result = result


def _needs_separator(out: Path) -> bool:
    """Does the file not end with a blank line (a file from elsewhere), so that the next game needs one?"""
    try:
        with open(out, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(max(0, f.tell() - 2))
            return not f.read().endswith(b"\n\n")
    except OSError:
        return False


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a .pgn file to append to")
    for folder in (out.parent, *out.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"--out {out}: {folder} is a file, not a folder")
            break
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write ({e.strerror or e})") from None


def _played(specs: Iterator[GameSpec], source: Source, workers: int, max_plies: int):
    """Finished games (:class:`PlayedGame`) and failures (``(index, message)``) as they come."""
    if workers <= 1:
        for spec in specs:
            try:
                yield play_game(spec, source, max_plies)
            except XiangqiError as e:
                source.reset()
                yield spec.index, f"{type(e).__name__}: {e}"
        return
    done: queue.Queue = queue.Queue()
    with start_pool(pool_context(), workers, _init_worker, (source, max_plies)) as pool:
        pending = 0

        def submit() -> int:
            spec = next(specs, None)
            if spec is None:
                return 0
            pool.apply_async(_play_in_worker, (spec,), callback=done.put,
                             error_callback=lambda e: done.put((spec.index, f"{type(e).__name__}: {e}")))
            return 1

        for _ in range(2 * workers):
            pending += submit()
        while pending:
            item = done.get()
            pending -= 1
            pending += submit()
            yield item
        # leaving the with-block terminates the workers; their engines see their input close and quit


def parse_range(text: str, name: str) -> tuple[int, int]:
    """``"a..b"`` or ``"a"`` -> (a, b)."""
    lo, sep, hi = text.partition("..")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise ConfigError(f"{name} must be a number or a range a..b, got {text!r}") from None
    if a > b:
        raise ConfigError(f"{name}: empty range {text!r}")
    return a, b


def add_selfplay_command(p: argparse.ArgumentParser):
    p.add_argument("--out", required=True, help="PGN file to append the games to (created with its folders)")
    p.add_argument("--games", type=int, required=True, help="number of games to play")
    p.add_argument("--workers", type=int, default=1, help="games played at a time, one process and engine each "
                                                         "(default 1)")
    p.add_argument("--openings", default=None, metavar="PGN_OR_DIR",
                   help=f"human games to take openings from (PGN, .pgn.xz, folder or archive; default "
                        f"{DEFAULT_OPENINGS} if present, else the arena's two-ply book)")
    p.add_argument("--opening-plies", default="2..12", metavar="A..B",
                   help="plies taken from the opening game, drawn per game (default 2..12)")
    p.add_argument("--skill", default="0..20", metavar="A..B", help="Skill Level range, drawn per game (default 0..20)")
    p.add_argument("--depth", default="1..6", metavar="A..B", help="search depth range, drawn per game (default 1..6)")
    p.add_argument("--max-plies", type=int, default=DEFAULT_MAX_PLIES,
                   help=f"adjudicate a draw after this many plies (default {DEFAULT_MAX_PLIES})")
    p.add_argument("--seed", type=int, default=None, help="seed of the openings and settings (default: random, "
                                                          "printed at the end)")
    p.add_argument("--engine-path", default=None, help="Fairy-Stockfish binary (default: found automatically)")
    p.add_argument("--player", choices=("fairy", "search"), default="fairy",
                   help="who plays both sides: fairy (Fairy-Stockfish, the default) or search (our own search with "
                        "the GPT, at --level, in --style: games for the `search` start token)")
    p.add_argument("--level", type=int, default=3, help="--player search: the search level, 1 to 4 (default 3)")
    p.add_argument("--checkpoint", default=None, help="--player search: model file (default: the shipped model)")
    p.add_argument("--style", default="strong", help="--player search: the condition the GPT is asked in "
                                                     "(default strong)")
    p.add_argument("--threads", type=int, default=1, help="--player search: torch threads per worker (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args):
        if args.player == "search":
            if args.skill != "0..20" or args.depth != "1..6" or args.engine_path:
                raise ConfigError("--skill, --depth and --engine-path are for --player fairy")
            source = SearchSelfPlay(args.level, args.checkpoint, args.style, args.threads)
        else:
            if args.checkpoint or args.level != 3 or args.style != "strong" or args.threads != 1:
                raise ConfigError("--level, --checkpoint, --style and --threads are for --player search")
            source = FairySelfPlay(parse_range(args.skill, "--skill"), parse_range(args.depth, "--depth"),
                                   args.engine_path)
        restore_ctrl_c()
        try:
            result = selfplay(args.out, args.games, workers=args.workers, openings=args.openings, source=source,
                              opening_plies=parse_range(args.opening_plies, "--opening-plies"),
                              max_plies=args.max_plies, seed=args.seed,
                              progress=False if args.no_progress else None)
        except SelfPlayInterrupted as e:
            print(f"selfplay interrupted: {e.result.games} finished games appended to {args.out}", file=sys.stderr)
            sys.exit(130)
        except KeyboardInterrupt:
            print(f"selfplay interrupted before the first game; {args.out} unchanged", file=sys.stderr)
            sys.exit(130)
        print(f"wrote {result.line()}; seed {result.seed}"
              + (f"; {result.failed} games dropped (see the warnings)" if result.failed else ""))
        print(f"appended to {result.out}")

    return run
