"""``python play.py``: play xiangqi against the GPT in a terminal, drawn with rich.

Main names: :class:`Session`, :func:`render_screen`, :func:`main` (what ``play.py`` runs).
Design notes: docs/design.md#play-terminal
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..rules.board import BLACK, COLOR_NAMES, RED, STARTING_FEN, Board, Move, square
from ..errors import CheckpointError, ConfigError, IllegalMoveError, InvalidMoveError, MoveError, XiangqiError
from .match import ModelPlayer as Player  # the player seen by this module
from .search import DEFAULT_LEVEL, LEVELS, SearchPlayer, level_limits
from ..data.tokenizer import STYLES as MODEL_STYLES
from .timeman import Allotment, GameClock, Timer, format_clock, parse_clock

# --------------------------------------------------------------------------------------------------------------------
# Glyphs and styles

GLYPHS = {"K": "帥", "A": "仕", "B": "相", "N": "傌", "R": "俥", "C": "炮", "P": "兵",
          "k": "將", "a": "士", "b": "象", "n": "馬", "r": "車", "c": "砲", "p": "卒"}
RED_NUMERALS = "一二三四五六七八九"      # Red numbers files from its own right: file i is 一, file a is 九
BLACK_NUMERALS = "１２３４５６７８９"    # Black numbers files from its own right: file a is １, file i is ９

BG = "#efd39b"                      # the wooden board
STYLES = {
    "grid": f"#7a4f24 on {BG}",
    "river": f"bold #2f5d8a on {BG}",
    "red": f"bold #c1121f on {BG}",
    "black": f"bold #111111 on {BG}",
    "last_bg": "#9fd18b",           # from/to squares of the last move
    "check_bg": "#ff7b7b",          # the general in check
    "label": "bold",
    "red_label": "bold #c1121f",
    "black_label": "bold",
}

FULL_BOARD_WIDTH = 38     # 2 (rank label) + 34 (9 points, 8 gaps of 2 cells) + 2 (rank label)
COMPACT_BOARD_WIDTH = 30  # 2 + 26 (9 points, 8 one-cell gaps) + 2
PANEL_WIDTH = 38
GAP = 3
WIDE_WIDTH = FULL_BOARD_WIDTH + GAP + PANEL_WIDTH
MIN_WIDTH = COMPACT_BOARD_WIDTH

HELP = """\
Enter a move in ICCS (h2e2), WXF (C2.5) or Chinese (炮二平五 / 馬８進７), or a command:
  undo              take back your last move and the model's reply
  hint              the search's move for you at the current level, and the model's favourites
  hint N            the N best lines for you (1 to 5), with their evaluation, in the panel
  level [N]         show the search level, or set it (0 = the model alone, no search)
  new               start a new game
  flip              turn the board around
  save [file.pgn]   save the game as PGN (default: a dated file name)
  load FILE.pgn|FEN load a game record (its first game) or a position
  setup FEN         start from a pasted position (FEN)
  fen               print the current position as FEN, to copy
  pgn [NOTATION]    print the game so far as PGN (chinese, iccs or wxf; default chinese)
  review [N]        review the game so far: evaluations, best moves, blunders, accuracy (search level N)
  resign            give up this game
  help              this text
  quit              leave (Ctrl-D and Ctrl-C work too)"""


# --------------------------------------------------------------------------------------------------------------------
# Board drawing

def _square_at(row: int, col: int, flipped: bool) -> int:
    """The square shown at display row ``row`` (0 = top) and column ``col`` (0 = left)."""
    return square(8 - col, row) if flipped else square(col, 9 - row)


def _palace_diagonal(a: int, b: int) -> bool:
    """Do points ``a`` and ``b`` lie on one of the palace diagonals (one of them being the palace centre)?"""
    centres = (square(4, 1), square(4, 8))
    for centre in centres:
        if centre in (a, b):
            other = b if a == centre else a
            return abs(other % 9 - 4) == 1 and abs(other // 9 - centre // 9) == 1
    return False


def _grid_glyph(row: int, col: int) -> str:
    """The line crossing drawn on an empty point at a display position (the river breaks the inner files)."""
    top, bottom = row == 0 or row == 5, row == 9 or row == 4
    left, right = col == 0, col == 8
    if top:
        return "┌" if left else "┐" if right else "┬"
    if bottom:
        return "└" if left else "┘" if right else "┴"
    return "├" if left else "┤" if right else "┼"


def _file_labels(flipped: bool, side: int) -> list[str]:
    """Per display column, ``side``'s number for that file (Red 九..一, Black １..９, both counted from the right)."""
    labels = []
    for col in range(9):
        file = 8 - col if flipped else col
        labels.append(RED_NUMERALS[8 - file] if side == RED else BLACK_NUMERALS[file])
    return labels


def render_board(board: Board, *, flipped: bool = False, last_move: Move | None = None,
                 compact: bool = False) -> Text:
    """The board as a rich :class:`Text`: ``FULL_BOARD_WIDTH`` cells wide (``COMPACT_BOARD_WIDTH`` if ``compact``).

    ``flipped`` puts Black at the bottom. The last move's two squares are highlighted, and so is the general of the
    side to move when it is in check.
    """
    gap = 1 if compact else 2
    highlight = {last_move.from_square, last_move.to_square} if last_move else set()
    checked = board.king_square(board.turn) if board.is_check() else None
    top_side, bottom_side = (RED, BLACK) if flipped else (BLACK, RED)
    out = Text(no_wrap=True, overflow="crop")

    def numbers_row(side: int) -> None:
        style = STYLES["red_label"] if side == RED else STYLES["black_label"]
        out.append("  ")
        for col, label in enumerate(_file_labels(flipped, side)):
            out.append(label, style)
            if col < 8:
                out.append(" " * gap)
        out.append("\n")

    def letters_row() -> None:
        out.append("  ")
        for col in range(9):
            file = 8 - col if flipped else col
            out.append("abcdefghi"[file] + (" " if col == 8 else " " * (gap + 1)), STYLES["label"])
        out.append("\n")

    def point(row: int, col: int) -> None:
        sq = _square_at(row, col, flipped)
        piece = board.piece_at(sq)
        bg = STYLES["check_bg"] if sq == checked else STYLES["last_bg"] if sq in highlight else None
        if piece:
            style = STYLES["red"] if piece.isupper() else STYLES["black"]
            out.append(GLYPHS[piece], style if bg is None else f"{style} on {bg}")
        else:
            glyph = _grid_glyph(row, col) + ("─" if col < 8 else " ")
            out.append(glyph, STYLES["grid"] if bg is None else f"{STYLES['grid']} on {bg}")

    def links_row(row: int) -> None:
        """The vertical lines (and palace diagonals) between display rows ``row`` and ``row + 1``."""
        out.append("  ")
        for col in range(9):
            out.append("│", STYLES["grid"])
            if col == 8:
                out.append(" ", STYLES["grid"])
                break
            tl, tr = _square_at(row, col, flipped), _square_at(row, col + 1, flipped)
            bl, br = _square_at(row + 1, col, flipped), _square_at(row + 1, col + 1, flipped)
            mark = "╲" if _palace_diagonal(tl, br) else "╱" if _palace_diagonal(tr, bl) else " "
            out.append(f" {mark} ", STYLES["grid"])
        out.append("\n")

    def river_row() -> None:
        inner = 8 * (gap + 2) - 1
        left, right = ("楚 河", "漢 界") if not compact else ("楚河", "漢界")
        pad = inner - cell_len(left) - cell_len(right) - 2
        out.append("  ")
        out.append("│", STYLES["grid"])
        out.append(" " + left + " " * pad + right + " ", STYLES["river"])
        out.append("│ ", STYLES["grid"])
        out.append("\n")

    numbers_row(top_side)
    for row in range(10):
        rank = _square_at(row, 0, flipped) // 9
        out.append(f"{rank} ", STYLES["label"])
        for col in range(9):
            point(row, col)
            if col < 8:
                out.append("─" * gap, STYLES["grid"])
        out.append(f" {rank}", STYLES["label"])
        out.append("\n")
        if row == 4:
            river_row()
        elif row < 9 and not compact:
            links_row(row)
    numbers_row(bottom_side)
    letters_row()
    out.rstrip()
    return out


# --------------------------------------------------------------------------------------------------------------------
# Side panel and layouts

def chinese(board: Board, move: Move) -> str:
    """A move in Chinese notation as shown on screen: traditional characters like the pieces, full-width digits
    for Black (``馬８進７``), so every move is four glyphs (eight cells) wide."""
    from ..rules.notation import move_to_chinese

    return move_to_chinese(board, move, traditional=True, fullwidth=True)


def move_records(board: Board) -> list[tuple[str, str]]:
    """(Chinese, ICCS) text of every move on ``board``'s stack, replayed from its root position."""
    replay = Board(board.root_fen())
    records = []
    for move in board.move_stack:
        records.append((chinese(replay, move), move.iccs()))
        replay.push(move)
    return records


class View:
    """What the screen shows besides the board: who plays what, the model's last candidates, the game-over line."""

    def __init__(self, human: int, flipped: bool):
        self.human = human
        self.flipped = flipped
        self.candidates: list[tuple[str, str, float]] = []   # (Chinese, ICCS, probability) of the model's last choice
        self.candidates_for = ""
        self.result_line = ""
        self.level: int | None = None
        self.search: SearchLine | None = None   # the search behind the model's last move
        self.hints: list[SearchLine] = []       # the lines of the last ``hint N``
        self.hints_for: tuple | None = None     # the position they were searched in
        self.clock_line = ""                     # both clocks, with --clock


class SearchLine:
    """What the panel shows of one search: who it searched for, its depth, nodes, time, evaluation and line."""

    def __init__(self, board: Board, info: Any, who: str):
        self.side = board.turn
        self.who = who
        self.depth, self.nodes, self.time_ms = info.depth, info.nodes, info.time_ms
        self.score_cp, self.mate = info.score_cp, info.mate
        self.pv: list[tuple[str, str]] = pv_records(board, info.pv)

    def summary(self) -> str:
        """``depth 4, 2,345 nodes, 0.6 s``"""
        return f"depth {self.depth}, {_count(self.nodes)} nodes, {self.time_ms / 1000:.1f} s"

    def evaluation(self) -> str:
        """The score from the searching side's point of view, in words: ``+35 cp for Black (model)``."""
        side = f"{COLOR_NAMES[self.side]} ({self.who})"
        if self.mate is not None:
            return f"mate in {self.mate} for {side}" if self.mate > 0 else f"{side} is mated in {-self.mate}"
        return f"{self.score_cp:+d} cp for {side}"

    def short_evaluation(self) -> str:
        """``+35 cp``, ``mate in 3``, ``mated in 2``."""
        if self.mate is not None:
            return f"mate in {self.mate}" if self.mate > 0 else f"mated in {-self.mate}"
        return f"{self.score_cp:+d} cp"


def pv_records(board: Board, pv: Sequence[Move], limit: int = 8) -> list[tuple[str, str]]:
    """(Chinese, ICCS) of the first ``limit`` moves of a principal variation from ``board``; stops at a bad move."""
    replay = board.copy()
    out = []
    for move in list(pv)[:limit]:
        if not replay.is_legal(move):
            break
        out.append((chinese(replay, move), move.iccs()))
        replay.push(move)
    return out


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 10_000_000 else f"{n / 1e3:.1f}k" if n >= 100_000 else f"{n:,}"


def describe_limits(limits: Any) -> str:
    """``depth 4, 20,000 nodes, 1 s`` (what is set of a search's limits)."""
    parts = []
    if limits.depth is not None:
        parts.append(f"depth {limits.depth}")
    if limits.nodes is not None:
        parts.append(f"{limits.nodes:,} nodes")
    if limits.movetime_ms is not None:
        parts.append(f"{limits.movetime_ms / 1000:g} s")
    return ", ".join(parts) or "no limit"


def render_panel(board: Board, view: View, width: int = PANEL_WIDTH, max_rows: int = 12,
                 compact: bool = False) -> Text:
    who = {view.human: "you", view.human ^ 1: "model"}
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("xiangqi-gpt", "bold")
    text.append(f" · you play {COLOR_NAMES[view.human]}")
    text.append(f" · level {view.level}\n" if view.level is not None and not compact else "\n")
    if view.clock_line:
        text.append(view.clock_line + "\n", "bold")
    if view.result_line:
        text.append(view.result_line + "\n", "bold reverse")
    else:
        turn_style = STYLES["red_label"] if board.turn == RED else STYLES["black_label"]
        text.append(f"{COLOR_NAMES[board.turn]} to move ({who[board.turn]})", turn_style)
        if board.is_check():
            text.append("  CHECK!", "bold white on red")
        text.append("\n")
    text.append("\n")

    records = move_records(board)
    start_turn = Board(board.root_fen())
    first_number, offset = start_turn.fullmove_number, 1 if start_turn.turn == BLACK else 0
    slots = [None] * offset + records
    rows = [slots[i:i + 2] for i in range(0, len(slots), 2)]
    text.append("Moves\n", "bold underline")
    if not rows:
        text.append("  (none yet)\n", "dim")
    shown = rows[-max_rows:]
    if len(shown) < len(rows):
        text.append("  …\n", "dim")
    for i, pair in enumerate(shown, start=first_number + len(rows) - len(shown)):
        text.append(f"{i:>3}. ")
        for j, record in enumerate(pair):
            if record is None:
                cell = "…"
                text.append(cell + " " * (7 if compact else 13 - cell_len(cell)))
                continue
            chinese, iccs = record
            text.append(chinese, STYLES["red_label"] if j == 0 else STYLES["black_label"])
            if not compact:
                text.append(" " + iccs, "dim")
            if j == 0:
                text.append("  " if not compact else " ")
        text.append("\n")

    search = view.search
    if search is not None:
        text.append("\n")
        text.append(f"Search, level {view.level}" if compact else f"Model's search, {view.candidates_for}",
                    "bold underline")
        text.append("\n")
        text.append(f"  {search.summary()}\n")
        text.append(f"  {search.evaluation()}\n", "bold")
        per_line = max(1, (width - 4) // 9)
        for i in range(0, len(search.pv), per_line):
            text.append("  PV " if i == 0 else "     ", "dim")
            for j, (chinese, _) in enumerate(search.pv[i:i + per_line]):
                side = search.side ^ ((i + j) % 2)
                text.append(chinese + " ", STYLES["red_label"] if side == RED else STYLES["black_label"])
            text.append("\n")
        if search.pv and not compact:
            iccs = " ".join(m for _, m in search.pv)
            text.append(f"     {iccs}\n", "dim")
    if view.candidates:
        text.append("\n")
        title = "Candidates" if compact else "Model's candidates"
        text.append(f"{title}, {view.candidates_for}\n", "bold underline")
        played = search.pv[0][1] if search is not None and search.pv else None
        for chinese, iccs, p in view.candidates:
            text.append(f"  {chinese} ")
            text.append(iccs, "dim")
            text.append(f" {100 * p:5.1f}% ")
            bar = max(0, width - 26)
            text.append("█" * round(p * bar), "green")
            if iccs == played:
                text.append(" <", "bold")
            text.append("\n")
    render_hints(text, board, view, width, compact)
    text.rstrip()
    return text


def position_key(board: Board) -> tuple:
    """What identifies a position of a game on screen: the root position and the moves since."""
    return board.root_fen(), tuple(board.move_stack)


def render_hints(text: Text, board: Board, view: View, width: int, compact: bool = False) -> None:
    """Append the lines of the last ``hint N`` to the panel ``text``, if they were searched in this position."""
    if not view.hints or view.hints_for != position_key(board):
        return
    text.append("\n")
    n = len(view.hints)
    text.append(f"Hint, {n} line{'s' if n > 1 else ''}" + ("" if compact else f" for {COLOR_NAMES[board.turn]}"),
                "bold underline")
    text.append("\n")
    per_line = max(1, (width - 14) // 9)
    for k, line in enumerate(view.hints, 1):
        text.append(f"{k:>2}. ")
        text.append(f"{line.short_evaluation():>8} " if not compact else f"{line.short_evaluation()} ", "bold")
        for j, (chinese, _) in enumerate(line.pv[:per_line]):
            side = line.side ^ (j % 2)
            text.append(chinese + " ", STYLES["red_label"] if side == RED else STYLES["black_label"])
        text.append("\n")
        if not compact and line.pv:
            text.append("             " + " ".join(m for _, m in line.pv[:per_line]) + "\n", "dim")


def too_narrow_message(width: int) -> Text:
    return Text(f"The terminal is {width} columns wide; the board needs at least {MIN_WIDTH}. "
                f"Widen the window to see it (moves and commands still work).", style="bold yellow")


def render_screen(board: Board, view: View, width: int) -> RenderableType:
    """The board and the side panel, laid out for a terminal ``width`` columns wide."""
    last = board.move_stack[-1] if board.move_stack else None
    if width < MIN_WIDTH:
        return too_narrow_message(width)
    if width >= WIDE_WIDTH:
        grid = Table.grid(padding=(0, GAP))
        grid.add_column(width=FULL_BOARD_WIDTH, no_wrap=True)
        grid.add_column(width=min(width - FULL_BOARD_WIDTH - GAP, 60), no_wrap=True)
        panel_width = min(width - FULL_BOARD_WIDTH - GAP, 60)
        grid.add_row(render_board(board, flipped=view.flipped, last_move=last),
                     render_panel(board, view, width=panel_width))
        return grid
    compact = width < FULL_BOARD_WIDTH
    return Group(render_board(board, flipped=view.flipped, last_move=last, compact=compact), Text(""),
                 render_panel(board, view, width=width, max_rows=6, compact=compact))


# --------------------------------------------------------------------------------------------------------------------
# Loading the model in the background

class PlayerLoader:
    """Builds the player in a daemon thread (torch import + checkpoint load) while the first board is on screen."""

    def __init__(self, factory: Callable[[], Player]):
        self._factory = factory
        self._player: Player | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self.seconds: float | None = None
        self._thread = threading.Thread(target=self._load, name="load-model", daemon=True)

    def start(self) -> "PlayerLoader":
        self._thread.start()
        return self

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            self._player = self._factory()
        except BaseException as e:   # handed to the main thread by get()
            self._error = e
        finally:
            self.seconds = time.perf_counter() - t0
            self._done.set()

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    @property
    def busy(self) -> bool:
        return self._thread.is_alive()

    def get(self) -> Player:
        while not self._done.wait(0.1):   # short waits keep Ctrl-C responsive
            pass
        if isinstance(self._error, XiangqiError):
            raise self._error
        if isinstance(self._error, Exception):   # e.g. torch failing on a file: still one line, no traceback
            raise CheckpointError(f"cannot load the model: {type(self._error).__name__}: {self._error}")
        if self._error is not None:
            raise self._error
        return self._player


def default_player_factory(checkpoint: str | None, temperature: float, seed: int | None,
                           threads: int = 1, style: str | None = None) -> Callable[[], Player]:
    """The real player. ``threads``: torch CPU threads; one is fastest for a small model answering one position at a
    time, and by far the fastest when other processes keep the cores busy (no OpenMP spin-waiting). ``style``: the
    condition the model is asked in (``human`` or ``strong``, see ``tokenizer.STYLES``)."""
    def make() -> Player:
        import torch

        from ..model.checkpoint import load_model
        from .player import GPTPlayer

        torch.set_num_threads(threads)
        return GPTPlayer(load_model(checkpoint), temperature=temperature, seed=seed, style=style)

    return make


# --------------------------------------------------------------------------------------------------------------------
# The game session

class Quit(Exception):
    """Leave the session (the ``quit`` command or end of input)."""


class Session:
    """One terminal session: a board, the human's side, the model, the view, and the command loop."""

    def __init__(self, console: Console, loader: PlayerLoader, human: int = RED, fen: str = STARTING_FEN,
                 input_fn: Callable[[str], str] = input, echo: bool = False, level: int | None = None,
                 clock: GameClock | None = None):
        self.console = console
        self.loader = loader
        self.start_fen = fen
        self.board = Board(fen)
        self.view = View(human, flipped=human == BLACK)
        self.level = DEFAULT_LEVEL if level is None else level
        level_limits(self.level)            # ConfigError for a bad level
        self.view.level = self.level
        self._search_player: Any = None
        self.resigned: int | None = None
        self.input_fn = input_fn
        self.echo = echo
        self.reply_ms: list[float] = []
        self.clock = clock                  # --clock: both sides' time; a flag fall ends the game
        self.model_allotment: Allotment | None = None   # the clock's allotment of the model's last search

    # ---- screen ----------------------------------------------------------------------------------------------

    def show(self) -> None:
        if self.console.is_terminal:
            self.console.clear()
        self.view.result_line = self.result_line()
        if self.clock is not None:
            self.view.clock_line = "Clock  " + "  ".join(
                f"{COLOR_NAMES[side]} {format_clock(self.clock.remaining_ms(side))}" for side in (RED, BLACK))
        self.console.print(render_screen(self.board, self.view, self.console.width))

    def say(self, message: str, style: str | None = None) -> None:
        """Print a message; control characters in it (a typed escape sequence, say) are shown as ``\\xNN``."""
        self.console.print(Text(printable(message), style=style or ""))

    def read(self, prompt: str) -> str:
        """One line of input; :class:`Quit` at end of input."""
        timed = self.clock is not None and self.board.turn == self.human and self.outcome_result() is None
        if timed:
            self.clock.start(self.human)   # the human's time runs while they type
        try:
            line = self.input_fn(prompt)
        except EOFError:
            self.console.print()   # end the prompt's line
            raise Quit from None
        finally:
            if timed:
                self.clock.stop()
        if self.echo:
            print(printable(line), flush=True)
        return line.strip()

    # ---- game state ------------------------------------------------------------------------------------------

    def outcome_result(self) -> tuple[str, str] | None:
        """(result, reason) if the game is over, by the rules or by resignation."""
        if self.resigned is not None:
            winner = self.resigned ^ 1
            return ("1-0" if winner == RED else "0-1"), f"{COLOR_NAMES[self.resigned]} resigns"
        flagged = self.clock.flagged() if self.clock is not None else None
        if flagged is not None:
            return ("1-0" if flagged == BLACK else "0-1"), f"{COLOR_NAMES[flagged]} runs out of time"
        outcome = self.board.outcome()
        if outcome is None:
            return None
        return outcome.result(), outcome.reason

    def result_line(self) -> str:
        over = self.outcome_result()
        if over is None:
            return ""
        result, reason = over
        winner = {"1-0": "Red wins", "0-1": "Black wins"}.get(result, "draw")
        return f"Game over: {reason} ({winner}, {result})"

    @property
    def human(self) -> int:
        return self.view.human

    def model_to_move(self) -> bool:
        return self.board.turn != self.human and self.outcome_result() is None

    # ---- the model -------------------------------------------------------------------------------------------

    def player(self) -> Player:
        if not self.loader.ready:
            self.say("loading the model…", "dim")
        return self.loader.get()

    def search_player(self) -> Any:
        """The model as a :class:`~xiangqi_gpt.play.search.SearchPlayer` at the session's level (its tables are kept
        while the level changes; it forgets them itself when a new game starts)."""
        player = self.player()
        sp = self._search_player
        if sp is None or sp.player is not player or sp.level != self.level:
            searcher = sp.searcher if sp is not None and sp.player is player else None
            sp = self._search_player = _WatchedSearchPlayer(player, self.level, searcher)
        return sp

    @contextlib.contextmanager
    def thinking(self, sp: Any, doing: str, who: str):
        """While a search runs: a spinner with the depth, nodes, evaluation and best move so far, updated after each
        iteration (on a terminal only; nothing is drawn into a pipe)."""
        if not self.console.is_terminal:
            yield
            return
        board = self.board
        with self.console.status(f"{doing} (level {self.level})…", spinner="dots") as status:
            def on_info(info: Any) -> None:
                line = SearchLine(board, info, who)
                best = f", best {line.pv[0][0]}" if line.pv else ""
                status.update(f"{doing} (level {self.level}): {line.summary()}, {line.short_evaluation()}{best}")

            sp.on_info = on_info
            try:
                yield
            finally:
                sp.on_info = None

    def model_move(self) -> Move:
        player = self.player()
        board = self.board
        side = board.turn
        timer = None
        if self.clock is not None:   # the model's search follows its clock (timeman's allotment)
            self.clock.start(side)
            self.model_allotment = self.clock.allotment(side)
            timer = Timer(self.model_allotment, clock=self.clock.clock)
        t0 = time.perf_counter()
        probs = player.move_probs(board)
        result = None
        if self.level == 0:
            move = player.choose(board)
        else:
            sp = self.search_player()
            with self.thinking(sp, "The model is thinking", "model"):
                move = sp.choose(board) if timer is None else sp.choose(board, timer=timer)
            result = sp.last
        if move is None or not board.is_legal(move):   # never let a bad move reach the board
            move = probs[0][0]
        self.reply_ms.append(1000 * (time.perf_counter() - t0))
        if self.clock is not None:
            self.clock.stop()
            if self.clock.flagged() is None:
                self.clock.moved(side)
        text = chinese(board, move)
        self.view.candidates = [(chinese(board, m), m.iccs(), p) for m, p in probs[:5]]
        self.view.candidates_for = f"move {board.fullmove_number} ({COLOR_NAMES[board.turn]})"
        self.view.search = SearchLine(board, result.info, "model") if result is not None else None
        board.push(move)
        self.last_message = f"The model plays {text} ({move.iccs()})."
        if self.view.search is not None:
            self.last_message += f" Searched {self.view.search.summary()}; {self.view.search.evaluation()}."
        return move

    def reply_if_model_to_move(self) -> None:
        if self.model_to_move():
            self.model_move()

    # ---- commands --------------------------------------------------------------------------------------------

    def run(self) -> None:
        self.last_message = ""
        self.show()
        if self.model_to_move():
            self.model_move()
            self.show()
            self.say(self.last_message)
        while True:
            over = self.outcome_result() is not None
            prompt = "game over> " if over else f"{COLOR_NAMES[self.board.turn]} (you)> "
            line = self.read(prompt)
            if line:
                self.handle(line)

    def handle(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        command = COMMANDS.get(word.lower())
        if command is not None:
            getattr(self, "cmd_" + command)(rest.strip())
        else:
            self.play_move(line)

    def play_move(self, text: str) -> None:
        if self.outcome_result() is not None:
            self.say(f"{self.result_line()}. The game is over: type new, undo, save or quit.", "yellow")
            return
        from ..rules.notation import parse_move

        board = self.board
        try:
            move = parse_move(board, text)
        except IllegalMoveError as e:
            self.say(illegal_reason(board, text, e), "bold red")
            return
        except MoveError as e:
            self.say(f"{e} (type help for the commands)", "bold red")
            return
        self.last_message = ""
        board.push(move)
        if self.clock is not None and self.clock.flagged() is None:
            self.clock.moved(board.turn ^ 1)
        if self.model_to_move():
            self.model_move()
        self.after_moves()

    def after_moves(self, offer_save: bool = True) -> None:
        self.show()
        if self.last_message:
            self.say(self.last_message)
        if self.outcome_result() is not None:
            self.game_over(offer_save)

    def game_over(self, offer_save: bool = True) -> None:
        self.say(self.result_line(), "bold")
        if offer_save:
            answer = self.read("Save the game as PGN? Enter a file name (or press Enter to skip): ")
            if answer.split(" ")[0].lower() in COMMANDS:   # a command typed here is run, not taken as a file name
                self.handle(answer)
                return
            if answer:
                self.cmd_save(answer)
        self.say("Type new for another game, review to see where it went wrong, undo to take back, or quit.")

    def cmd_help(self, _: str) -> None:
        self.say(HELP)

    def cmd_quit(self, _: str) -> None:
        raise Quit

    def cmd_flip(self, _: str) -> None:
        self.view.flipped = not self.view.flipped
        self.show()

    def cmd_new(self, _: str) -> None:
        self.board = Board(self.start_fen)
        self.resigned = None
        if self.clock is not None:
            self.clock.reset()
        self.view.candidates = []
        self.view.search = None
        self.last_message = ""
        self.reply_if_model_to_move()
        self.show()
        if self.last_message:
            self.say(self.last_message)

    def cmd_resign(self, _: str) -> None:
        if self.outcome_result() is not None:
            self.say("The game is already over.", "yellow")
            return
        self.resigned = self.human
        self.show()
        self.game_over()

    def cmd_undo(self, _: str) -> None:
        board = self.board
        root_turn = Board(board.root_fen()).turn
        human_moves = sum(1 for i in range(len(board.move_stack)) if (root_turn ^ (i % 2)) == self.human)
        if self.resigned is not None:
            self.resigned = None
            if not human_moves:
                self.show()
                return
        if not human_moves:
            self.say("Nothing of yours to take back.", "yellow")
            return
        taken = []
        while board.move_stack:
            mover = board.turn ^ 1
            taken.append(board.pop().iccs())
            if mover == self.human:
                break
        self.view.candidates = []
        self.view.search = None
        self.last_message = f"Took back {' '.join(reversed(taken))}."
        self.show()
        self.say(self.last_message)

    def cmd_hint(self, arg: str) -> None:
        if self.outcome_result() is not None:
            self.say("The game is over.", "yellow")
            return
        if arg:
            self.hint_lines(arg)
            return
        if self.level > 0:
            sp = self.search_player()
            with self.thinking(sp, "Searching for a hint", "you"):
                result = sp.search(self.board)
            if result.move is not None:
                line = SearchLine(self.board, result.info, "you")
                pv = " ".join(c for c, _ in line.pv)
                self.say(f"The search (level {self.level}) suggests {chinese(self.board, result.move)} "
                         f"({result.move.iccs()}): {line.evaluation()}; {line.summary()}; line {pv}")
        probs = self.player().move_probs(self.board)
        shown = ", ".join(f"{chinese(self.board, m)} ({m.iccs()}) {100 * p:.1f}%" for m, p in probs[:3])
        self.say(f"The model would consider: {shown}")

    def hint_lines(self, arg: str) -> None:
        """``hint N``: the N best lines for the side to move, searched at the session's level (level 1's budget at
        level 0), shown in the panel."""
        try:
            n = int(arg)
            if not 1 <= n <= MAX_HINT_LINES:
                raise ValueError
        except ValueError:
            self.say(f"usage: hint [N], N from 1 to {MAX_HINT_LINES} lines", "bold red")
            return
        level = max(1, self.level)
        sp = self.search_player()
        board = self.board
        with self.thinking(sp, f"Searching {n} line{'s' if n > 1 else ''} for a hint", "you"):
            results = search_lines(sp, board, n, level_limits(level))
        self.view.hints = [SearchLine(board, r.info, "you") for r in results]
        self.view.hints_for = position_key(board)
        self.show()
        best = results[0].info if results else None
        summary = "" if best is None else f"; the best: {SearchLine(board, best, 'you').evaluation()}"
        self.say(f"The search (level {level}) shows {len(results)} line{'s' if len(results) != 1 else ''} in the "
                 f"panel{summary}.")

    def cmd_fen(self, _: str) -> None:
        self.console.print(self.board.fen(), markup=False, highlight=False, soft_wrap=True)

    def cmd_setup(self, arg: str) -> None:
        if not arg:
            self.say("usage: setup FEN (e.g. setup 4k4/9/9/9/9/9/9/9/9/4K4 w - - 0 1)", "yellow")
            return
        try:
            Board(arg)
        except XiangqiError as e:
            self.say(f"cannot set up this position: {one_line(e)}", "bold red")
            return
        self.cmd_load(arg)

    def cmd_pgn(self, arg: str) -> None:
        from ..records.pgn import write_game

        notation = (arg or "chinese").lower()
        if notation not in ("chinese", "iccs", "wxf"):
            self.say(f"usage: pgn [chinese|iccs|wxf], got {arg!r}", "bold red")
            return
        self.console.print(write_game(self.game_record(), notation=notation).rstrip("\n"), markup=False,
                           highlight=False, soft_wrap=True)

    def cmd_review(self, arg: str) -> None:
        from .review import DEFAULT_REVIEW_LEVEL, review_limits, review_tables, run_with_progress

        board = self.board
        if not board.move_stack:
            self.say("No moves to review yet.", "yellow")
            return
        try:
            level = parse_level(arg) if arg else DEFAULT_REVIEW_LEVEL
            limits = review_limits(level)
        except XiangqiError as e:
            self.say(one_line(e), "bold red")
            return
        player = self.player()
        game = self.game_record()
        review = run_with_progress(self.console, player, game.root_fen, game.moves, limits, headers=game.headers,
                                   result=game.result)
        moves, sides = review_tables(review)
        self.console.print(moves)
        self.console.print(sides)
        self.say(f"Reviewed {len(review.moves)} plies at level {level} in {review.seconds:.1f} s "
                 f"(save the game and run python -m xiangqi_gpt review for PGN, JSON and a graph).")

    def cmd_level(self, arg: str) -> None:
        if not arg:
            table = "; ".join(f"{n}: {'the model alone' if n == 0 else describe_limits(LEVELS[n])}"
                              for n in sorted(LEVELS))
            self.say(f"Level {self.level}. Levels {table}.")
            return
        try:
            level = parse_level(arg)
        except XiangqiError as e:
            self.say(one_line(e), "bold red")
            return
        self.level = self.view.level = level
        limits = level_limits(level)
        self.say(f"Level {level}: " + ("the model alone, no search." if level == 0
                                       else f"the search budget is {describe_limits(limits)}."))

    def game_record(self) -> Any:
        """The game so far as a :class:`~xiangqi_gpt.records.pgn.Game` (tags, moves, result if over)."""
        from ..records.pgn import Game

        over = self.outcome_result()
        model = "xiangqi-gpt"
        headers = {
            "Event": "xiangqi-gpt terminal game",
            "Site": "play.py",
            "Date": _dt.date.today().strftime("%Y.%m.%d"),
            "Red": "human" if self.human == RED else model,
            "Black": "human" if self.human == BLACK else model,
        }
        if over is not None:
            headers["Termination"] = over[1]
        return Game(headers=headers, moves=list(self.board.move_stack), root_fen=self.board.root_fen(),
                    result=over[0] if over else "*")

    def cmd_save(self, arg: str) -> None:
        from ..records.pgn import write_game

        try:
            path = user_path(arg or _dt.datetime.now().strftime("xiangqi-%Y%m%d-%H%M%S.pgn"))
        except XiangqiError as e:
            self.say(f"could not save: {e}", "bold red")
            return
        game = self.game_record()
        try:
            path.write_text(write_game(game, notation="chinese"), encoding="utf-8")
        except (OSError, ValueError) as e:
            self.say(f"could not save {path}: {e.strerror or e}", "bold red")
            return
        plies = len(game.moves)
        self.say(f"Saved {plies} {'ply' if plies == 1 else 'plies'} to {path}")

    def cmd_load(self, arg: str) -> None:
        if not arg:
            self.say("usage: load FILE.pgn | load FEN", "yellow")
            return
        try:
            board = self._load_board(arg)
        except XiangqiError as e:
            self.say(f"cannot load: {e}", "bold red")
            return
        self.board = board
        self.resigned = None
        self.view.candidates = []
        self.view.search = None
        self.last_message = ""
        self.reply_if_model_to_move()
        self.after_moves(offer_save=False)   # a loaded record that is already over is not offered for saving

    def _load_board(self, arg: str) -> Board:
        path = user_path(arg)
        if path.is_file() or arg.lower().endswith(".pgn"):
            from ..records.pgn import read_games

            if not path.is_file():
                raise XiangqiError(f"no such file: {arg}")
            for item in read_games(str(path)):
                if isinstance(item, XiangqiError):
                    raise item
                return item.board()
            raise XiangqiError(f"{arg}: no game in the file")
        return Board(arg)

    def cmd_switch(self, _: str) -> None:
        self.view.human ^= 1
        self.view.flipped = self.view.human == BLACK
        self.say(f"You now play {COLOR_NAMES[self.human]}.")
        self.last_message = ""
        self.reply_if_model_to_move()
        self.after_moves()


_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters but newlines written as ``\\xNN`` (nothing reaches the terminal raw)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def user_path(text: str) -> Path:
    """A typed file name as a path (``~`` and ``~user`` expanded); :class:`XiangqiError` (one line) when it cannot be
    one: an unknown ``~user``, a NUL byte."""
    if "\x00" in text:
        raise XiangqiError(f"{printable(text)}: a file name cannot hold a NUL byte")
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise XiangqiError(f"{printable(text)}: cannot expand the home folder (no such user)") from None


COMMANDS = {name: name for name in ("undo", "hint", "new", "flip", "save", "load", "resign", "help", "quit",
                                    "switch", "level", "fen", "setup", "pgn", "review")}
COMMANDS.update({"exit": "quit", "?": "help", "takeback": "undo"})


class _WatchedSearchPlayer(SearchPlayer):
    """A SearchPlayer whose searches (also the one inside ``choose``) report each iteration to ``on_info``."""

    on_info: Callable[[Any], None] | None = None

    def search(self, board: Board, limits: Any = None, on_info: Any = None, stop: Any = None, **kwargs: Any) -> Any:
        return super().search(board, limits, on_info or self.on_info, stop, **kwargs)


#: the most lines ``hint N`` shows
MAX_HINT_LINES = 5


def search_lines(sp: Any, board: Board, n: int, limits: Any) -> list[Any]:
    """The ``n`` best lines of ``board`` (at most the number of legal moves) within ``limits`` each, best first, as
    :class:`~xiangqi_gpt.play.search.SearchResult`. ``sp`` is a :class:`~xiangqi_gpt.play.search.SearchPlayer`. The lines
    come from a search without the style bonus, so that their
    scores are plain evaluations that compare, found by one multi-line search (:meth:`Searcher.best_lines`)."""
    from .search import SearchResult, Searcher

    searcher = Searcher(sp.player, style_cp=0)
    return [SearchResult(info.pv[0], info) for info in searcher.best_lines(board, n, limits) if info.pv]


def parse_level(text: str) -> int:
    """A search level from text; ConfigError (one line) for anything but a known level."""
    try:
        level = int(text.strip())
    except ValueError:
        raise ConfigError(f"the level must be a whole number from 0 to {max(LEVELS)}, got {text.strip()!r}") \
            from None
    level_limits(level)
    return level


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def illegal_reason(board: Board, text: str, error: IllegalMoveError) -> str:
    """``"h2e3: a cannon moves in straight lines"`` for a move text that parses but is not legal."""
    try:
        move = Move.from_iccs(text)
    except InvalidMoveError:
        return str(error)
    reason = board.why_illegal(move)
    return f"{move.iccs()}: {reason}" if reason else str(error)


# --------------------------------------------------------------------------------------------------------------------
# Entry point

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="play.py", description="Play xiangqi against the GPT in the terminal.",
                                epilog="Type help at the prompt for the commands.")
    p.add_argument("--side", choices=("red", "black"), default="red", help="the side you play (default: red)")
    p.add_argument("--checkpoint", default=None,
                   help="model file (.pt export or Lightning .ckpt; default: the shipped default.pt)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="the model's sampling temperature: 0 plays its best move (strongest), higher is weaker "
                        "and more varied (default: 0)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling at temperature > 0")
    p.add_argument("--fen", default=None, help="start from this position instead of the standard one")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the model (default: 1)")
    p.add_argument("--level", default=None, metavar="N",
                   help=f"search level from 0 to {max(LEVELS)}: 0 is the model alone (one forward pass), higher "
                        f"levels search more (default: {DEFAULT_LEVEL}); the level command changes it in a game")
    p.add_argument("--style", default=None, choices=sorted(MODEL_STYLES),
                   help="how the model plays: human (like the masters, the default) or strong (like the engine "
                        "games it learned from); a model without source tokens ignores it")
    p.add_argument("--clock", default=None, metavar="M+S",
                   help="play on a clock: M minutes each, S seconds added per move (e.g. 10+5); a flag fall loses, "
                        "and the model thinks within its own time")
    return p


def main(argv: Sequence[str] | None = None, player_factory: Callable[[], Player] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        import signal

        # started from a shell that ignores SIGINT (a background job): Ctrl-C must still leave the game
        signal.signal(signal.SIGINT, signal.default_int_handler)
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        if args.temperature < 0:
            raise XiangqiError(f"--temperature must be >= 0, got {args.temperature}")
        if args.threads < 1:
            raise XiangqiError(f"--threads must be >= 1, got {args.threads}")
        try:
            level = None if args.level is None else parse_level(args.level)
        except XiangqiError as e:
            raise XiangqiError(f"--level: {one_line(e)}") from None
        try:
            clock = None if args.clock is None else GameClock(*parse_clock(args.clock))
        except XiangqiError as e:
            raise XiangqiError(f"--clock: {one_line(e)}") from None
        fen = args.fen or STARTING_FEN
        Board(fen)   # a bad FEN fails before anything is drawn
        if player_factory is None:
            from ..model.checkpoint import DEFAULT_PATH   # light: torch is imported only when a model is loaded

            if not Path(args.checkpoint or DEFAULT_PATH).is_file():
                raise CheckpointError(f"checkpoint not found: {args.checkpoint or DEFAULT_PATH}"
                                      + ("" if args.checkpoint else " (pass --checkpoint FILE.pt)"))
            player_factory = default_player_factory(args.checkpoint, args.temperature, args.seed, args.threads,
                                                    args.style)
    except XiangqiError as e:
        err.print(f"error: {one_line(e)}", markup=False, highlight=False, soft_wrap=True)
        return 2
    loader = PlayerLoader(player_factory).start()
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")   # undecodable bytes become an unreadable move, not a crash
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    session = Session(console, loader, human=RED if args.side == "red" else BLACK, fen=fen,
                      echo=not interactive, level=level, clock=clock)
    code = 0
    try:
        session.run()
    except Quit:
        console.print("bye")
    except KeyboardInterrupt:
        console.print("\nbye")
        code = 130
    except XiangqiError as e:
        err.print(f"error: {one_line(e)}", markup=False, highlight=False, soft_wrap=True)
        code = 2
    except BrokenPipeError:
        code = 0
    return code


def run_main(argv: Sequence[str] | None = None) -> None:
    """``play.py``'s entry: :func:`main`, then leave without waiting for a model load still in progress."""
    code = main(argv)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)   # a daemon thread may still be importing torch; do not let interpreter shutdown wait on it
