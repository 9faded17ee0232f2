"""Look-ahead for the GPT: the model proposes, an alpha-beta search over the rule engine verifies.

Main names: :class:`Searcher`, :class:`Limits`, :class:`SearchResult`, :class:`SearchPlayer`, :data:`LEVELS`.
Design notes: docs/design.md#play-search
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from ..rules.board import (ADVISOR, BLACK, CANNON, ELEPHANT, HORSE, KING, MOVE_LIMIT_PLIES, PAWN, RED, ROOK, ZOBRIST,
                    ZOBRIST_BLACK_TO_MOVE, Board, Move, square_name)
from ..errors import ConfigError, IllegalMoveError

if TYPE_CHECKING:
    from .player import GPTPlayer
    from .timeman import Timer

MATE = 30000
MATE_BOUND = MATE - 1000         # |score| above this: a forced win/loss (mate or a rule win) at MATE - |score| plies
INF = 32000
MAX_DEPTH = 64
MAX_PLY = 100
_EXACT, _LOWER, _UPPER = 0, 1, 2
#: bytes one transposition-table entry takes in CPython (key, 4-tuple, dict slot: 220 measured with tracemalloc,
#: rounded up); :func:`tt_entries_for_mb` sizes the table from megabytes (the engine's ``Hash`` option)
TT_ENTRY_BYTES = 256


def tt_entries_for_mb(mb: int) -> int:
    """The transposition-table entries (``Searcher.tt_size``) that fit in ``mb`` megabytes."""
    return max(1, int(mb) * (1 << 20) // TT_ENTRY_BYTES)


# --------------------------------------------------------------------------------------------------------------------
# The interface


@dataclass
class Limits:
    """A search budget; any combination, ``None`` = unlimited (all ``None``: searches until stopped).

    ``min_depth``: the depth completed before a node budget may stop the search (default 1: the first iteration
    always completes); a ``stop``, ``movetime_ms`` and ``depth`` still apply. The levels use it so that a node budget
    never leaves a shallow search in a complicated position."""

    depth: int | None = None
    nodes: int | None = None
    movetime_ms: int | None = None
    min_depth: int | None = None

    def __post_init__(self) -> None:
        for name, low, high in (("depth", 1, MAX_DEPTH), ("nodes", 1, None), ("movetime_ms", 1, None),
                                ("min_depth", 1, MAX_DEPTH)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                allowed = f"from {low} to {high}" if high else f">= {low}"
                raise ConfigError(f"search {name} must be an integer {allowed}, got {value!r}")


@dataclass
class SearchInfo:
    """One completed iteration (and the final answer). Scores are the side to move's, in centipawns."""

    depth: int
    seldepth: int
    score_cp: int
    mate: int | None              # mate (or a rule win) in N moves: + we win, - we lose; 0 = already mated
    nodes: int
    time_ms: int
    nps: int
    gpt_calls: int
    pv: list[Move] = field(default_factory=list)
    multipv: int = 1              # the line's rank in a multi-line search (1 = the best)


@dataclass
class SearchResult:
    move: Move | None             # None only when there is no legal move
    info: SearchInfo
    lines: list[SearchInfo] = field(default_factory=list)   # a multi-line search's lines, best first (else [info])

    def __post_init__(self) -> None:
        if not self.lines:
            self.lines = [self.info]


# --------------------------------------------------------------------------------------------------------------------
# Evaluation: material + piece-square tables (Red's view; rank 0 is the own back rank)

PIECE_VALUES = {KING: 0, ADVISOR: 200, ELEPHANT: 200, HORSE: 400, CANNON: 450, ROOK: 900, PAWN: 100}

_PST_ROWS = {   # rank 0 first, files a..i; added to the piece's value
    PAWN: [[0] * 9, [0] * 9, [0] * 9,
           [0, 0, 0, 0, 5, 0, 0, 0, 0],
           [0, 0, 5, 0, 10, 0, 5, 0, 0],
           [60, 60, 70, 80, 85, 80, 70, 60, 60],
           [70, 80, 100, 115, 120, 115, 100, 80, 70],
           [70, 90, 110, 130, 140, 130, 110, 90, 70],
           [60, 80, 100, 120, 130, 120, 100, 80, 60],
           [10, 10, 20, 30, 30, 30, 20, 10, 10]],
    HORSE: [[-30, -10, 0, -5, -10, -5, 0, -10, -30],
            [-20, 0, 5, 5, -10, 5, 5, 0, -20],
            [-10, 5, 15, 10, 10, 10, 15, 5, -10],
            [-10, 5, 15, 15, 15, 15, 15, 5, -10],
            [-5, 10, 20, 20, 20, 20, 20, 10, -5],
            [0, 15, 25, 25, 25, 25, 25, 15, 0],
            [0, 20, 30, 35, 30, 35, 30, 20, 0],
            [0, 20, 30, 40, 35, 40, 30, 20, 0],
            [-5, 10, 25, 30, 20, 30, 25, 10, -5],
            [-10, 0, 10, 10, 5, 10, 10, 0, -10]],
    CANNON: [[0, 0, 5, 10, 10, 10, 5, 0, 0],
             [0, 5, 5, 5, 5, 5, 5, 5, 0],
             [5, 5, 10, 5, 15, 5, 10, 5, 5],
             [0, 0, 5, 5, 10, 5, 5, 0, 0],
             [0, 0, 5, 5, 10, 5, 5, 0, 0],
             [0, 5, 5, 5, 10, 5, 5, 5, 0],
             [0, 0, 0, 0, 5, 0, 0, 0, 0],
             [5, 5, 0, -5, 0, -5, 0, 5, 5],
             [5, 5, 0, -5, 5, -5, 0, 5, 5],
             [10, 10, 5, 0, 0, 0, 5, 10, 10]],
    ROOK: [[-10, 5, 0, 10, 0, 10, 0, 5, -10],
           [-5, 5, 5, 10, 0, 10, 5, 5, -5],
           [0, 5, 5, 10, 5, 10, 5, 5, 0],
           [0, 10, 5, 15, 10, 15, 5, 10, 0],
           [5, 15, 10, 15, 15, 15, 10, 15, 5],
           [5, 15, 10, 20, 20, 20, 10, 15, 5],
           [5, 15, 15, 25, 25, 25, 15, 15, 5],
           [5, 15, 15, 25, 25, 25, 15, 15, 5],
           [10, 20, 20, 30, 30, 30, 20, 20, 10],
           [5, 10, 10, 20, 20, 20, 10, 10, 5]],
    ADVISOR: [[0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 10, 0, 0, 0, 0], [0, 0, 0, -5, 0, -5, 0, 0, 0]]
    + [[0] * 9] * 7,
    ELEPHANT: [[0] * 9, [0] * 9, [-5, 0, 0, 0, 10, 0, 0, 0, -5], [0] * 9, [0, 0, -5, 0, 0, 0, -5, 0, 0]]
    + [[0] * 9] * 5,
    KING: [[0, 0, 0, -5, 0, -5, 0, 0, 0], [0, 0, 0, -15, -15, -15, 0, 0, 0], [0, 0, 0, -30, -30, -30, 0, 0, 0]]
    + [[0] * 9] * 7,
}


def _value_tables(pst: bool) -> list[list[int]]:
    """``table[code][square]``: the signed value (positive for Red) of piece ``code`` on ``square``."""
    tables = [[0] * 90 for _ in range(16)]
    for t, value in PIECE_VALUES.items():
        rows = _PST_ROWS[t]
        for s in range(90):
            f, r = s % 9, s // 9
            tables[t][s] = value + (rows[r][f] if pst else (100 if t == PAWN and r >= 5 else 0))
            tables[t | 8][s] = -(value + (rows[9 - r][f] if pst else (100 if t == PAWN and r <= 4 else 0)))
    return tables


def evaluate(board: Board, pst: bool = True) -> int:
    """Static evaluation of ``board`` for the side to move (centipawns)."""
    tables = _value_tables(pst) if not pst else _TABLES
    score = sum(tables[c][s] for s, c in enumerate(board.squares) if c)
    return score if board.turn == RED else -score


def material(board: Board) -> int:
    """Red's material minus Black's (``PIECE_VALUES``, no square terms): 0 where material is level."""
    return sum(PIECE_VALUES[c & 7] if c >> 3 == RED else -PIECE_VALUES[c & 7] for c in board.squares if c)


_TABLES = _value_tables(True)
_MOPUP_FROM = 500
_MVV = [0] * 16
for _t, _v in PIECE_VALUES.items():
    _MVV[_t] = _MVV[_t | 8] = _v if _t != KING else 5000


# --------------------------------------------------------------------------------------------------------------------
# GPT policy: probabilities of the legal moves, batched over the children of a node, cached per position key


class _Policy:
    """The GPT's log-probabilities for search positions. ``rows[key]`` is the full next-token log-probability
    vector (a tensor) of the position with Zobrist key ``key``."""

    def __init__(self, player: "GPTPlayer", gpt_plies: int, max_rows: int = 20000, values: bool = False):
        from ..model.gpt import KVCache

        self.player = player
        self.model = player.model
        #: read the value head too (a model with one): ``values[key]`` = the side to move's expected score there
        self.want_values = values and getattr(self.model, "value_head", None) is not None
        self.values: dict[int, float] = {}
        self.tokenizer = player.tokenizer
        self.enabled = self.tokenizer.tokens_per_move == 1
        self.reserve = max(1, gpt_plies - 1)     # positions kept free after the history window for a search path
        self.cache = KVCache()                   # (with a mirror ensemble, the mirrored game's is cache.mirror)
        self.rows: dict[int, object] = {}
        self.max_rows = max_rows
        self.calls = 0
        self.seconds = 0.0          # CPU time of this process spent in model calls (one torch thread)
        self._ids: dict[int, int] = {}

    def clear(self) -> None:
        self.rows.clear()
        self.values.clear()
        self.cache.clear()

    def token(self, m: int) -> int:
        i = self._ids.get(m)
        if i is None:
            i = self._ids[m] = self.tokenizer.move_id(square_name(m >> 7) + square_name(m & 127))
        return i

    def root(self, board: Board, moves: list[int]) -> list[float]:
        """Log-probabilities of ``moves`` (legal, ints) at the board's current position (the game's history)."""
        if not self.enabled:
            scores = dict(self.player.move_logprobs(board))
            return [scores[Move(m >> 7, m & 127)] for m in moves]
        t0 = time.process_time()
        history = self.player.history_ids(board)
        row = self.model.history_logprobs(history, self.reserve, self.cache)
        self.calls += 1
        self.seconds += time.process_time() - t0
        self.rows[board.key] = row
        return row[[self.token(m) for m in moves]].tolist()

    def expand(self, board: Board, path: list[int], moves: list[int], child_keys: list[int]) -> None:
        """One batched call: the policy of every child (``moves``) of the node reached by ``path`` from the root
        (whose history is in the cache), stored under ``child_keys``. The path and the children form one tree
        (:meth:`GPT.tree_logprobs`): the path a chain after the history, the children its leaves."""
        t0 = time.process_time()
        if len(self.rows) > self.max_rows:
            self.rows.clear()
            self.values.clear()
        P, K = len(path), len(moves)
        tokens = [self.token(m) for m in path] + [self.token(m) for m in moves]
        parents = list(range(-1, P - 1)) + [P - 1] * K
        if self.want_values:
            logp, values = self.model.tree_logprobs(self.cache, tokens, parents, rows=range(P, P + K), values=True)
            self.values.update(zip(child_keys, values.tolist()))
        else:
            logp = self.model.tree_logprobs(self.cache, tokens, parents, rows=range(P, P + K))
        self.calls += 1
        for k, row in zip(child_keys, logp):
            self.rows[k] = row
        self.seconds += time.process_time() - t0

    def probs(self, key: int, moves: list[int]) -> list[float] | None:
        """Probabilities of ``moves`` renormalised over them, or None if the position has no cached policy."""
        row = self.rows.get(key)
        if row is None:
            return None
        scores = row[[self.token(m) for m in moves]].tolist()
        top = max(scores)
        weights = [math.exp(x - top) for x in scores]
        total = sum(weights)
        return [w / total for w in weights]


# --------------------------------------------------------------------------------------------------------------------
# The searcher


class _Abort(Exception):
    pass


#: The search's design per condition the GPT is asked in (the player's ``source``; measured head to head at level 3,
#: docs/search.md#the-design-follows-the-style). Asked as a master (the human style), the policy prunes the replies
#: to its likeliest moves and a root bonus prefers its own choices: the search plays like a master. Asked as an
#: engine (the strong style) or as our own search, the policy only orders the moves at plies 0 and 1, never prunes,
#: and adds no bonus: level 3 then scores at least even with the same search without the GPT (52-59%), where
#: pruning and the bonus lost (36-44%).
DESIGNS: dict[str, dict] = {
    "master": {"prune": True, "style_cp": 100},
    "engine": {"prune": False, "style_cp": 0},
    "search": {"prune": False, "style_cp": 0},
}


def design_for(player) -> dict:
    """The :data:`DESIGNS` entry for ``player``'s condition (its ``source``; the master's for a player without one)."""
    return DESIGNS.get(getattr(player, "source", None), DESIGNS["master"])


class Searcher:
    """Alpha-beta search with the GPT as its policy (see the module docs).

    Options (the defaults are the measured best; the others exist for ``benchmarks/bench_search.py``). ``prune`` and
    ``style_cp`` left at None follow the player's condition (:data:`DESIGNS`):
    ``use_gpt`` (False: no model calls, MVV-LVA/killer/history ordering everywhere, no policy pruning),
    ``gpt_plies`` (plies that get the model's policy), ``prune`` (policy pruning below the root),
    ``policy_mass`` / ``min_moves`` (what pruning keeps), ``style_cp`` / ``style_per_nat`` (root style bonus),
    ``pst`` (False: material only, plus 100 for a soldier across the river), ``null_move``, ``lmr``,
    ``policy_lmr`` (late-move reductions also where the policy orders: the quiet moves after its first three),
    ``value_cp`` (a model with a value head: each root move's bonus is ``2 * value_cp`` x its expected score after
    the move, as the value head reads it, minus the best such score; 0 = off)."""

    def __init__(self, player: "GPTPlayer", tt_size: int = 1 << 20, *, use_gpt: bool = True, gpt_plies: int = 2,
                 prune: bool | None = None, policy_mass: float = 0.9, min_moves: int = 4, style_cp: int | None = None,
                 style_per_nat: float = 30.0, pst: bool = True, null_move: bool = True, lmr: bool = True,
                 futility: bool = True, policy_lmr: bool = False, value_cp: int = 0):
        if isinstance(tt_size, bool) or not isinstance(tt_size, int) or tt_size < 1:
            raise ConfigError(f"tt_size must be a positive integer, got {tt_size!r}")
        if not 1 <= gpt_plies <= 4:
            raise ConfigError(f"gpt_plies must be from 1 to 4, got {gpt_plies!r}")
        self.player = player
        self.tt_size = tt_size
        self.use_gpt = use_gpt
        self.gpt_plies = gpt_plies
        design = design_for(player)
        self.prune = design["prune"] if prune is None else prune
        self.policy_mass = policy_mass
        self.min_moves = min_moves
        self.style_cp = design["style_cp"] if style_cp is None else style_cp
        self.style_per_nat = style_per_nat
        self.pst = pst
        self.null_move = null_move
        self.lmr = lmr
        self.futility = futility
        self.policy_lmr = policy_lmr
        if isinstance(value_cp, bool) or not isinstance(value_cp, int) or value_cp < 0:
            raise ConfigError(f"value_cp must be an integer >= 0, got {value_cp!r}")
        self.value_cp = value_cp
        self.tables = _value_tables(pst)
        self.policy = _Policy(player, gpt_plies, values=value_cp > 0) if use_gpt else None
        self.tt: dict[int, tuple] = {}
        self.history = [0] * (90 << 7)
        self.killers = [[0, 0] for _ in range(MAX_PLY + 2)]
        self.nodes = 0
        self.timer: "Timer | None" = None
        self.multipv = 1

    def clear(self) -> None:
        """Forget everything learnt in this game (transposition table, policies, move-ordering statistics)."""
        self.tt.clear()
        self.history = [0] * (90 << 7)
        self.killers = [[0, 0] for _ in range(MAX_PLY + 2)]
        if self.policy is not None:
            self.policy.clear()

    # ---- public --------------------------------------------------------------------------------------------------

    def search(self, board: Board, limits: Limits | None = None,
               on_info: Callable[[SearchInfo], None] | None = None,
               stop: threading.Event | None = None, *, root_moves=None, multipv: int = 1,
               timer: "Timer | None" = None) -> SearchResult:
        """The best move of ``board`` within ``limits``. ``on_info`` gets one :class:`SearchInfo` per completed
        iteration (with ``multipv`` > 1: one per line, ``info.multipv`` = 1..K, each iteration); setting ``stop``
        ends the search promptly with the best move so far. ``root_moves`` (optional) restricts the moves considered
        at the root (UCI ``searchmoves``, the complement of UCCI ``banmoves``); legal moves outside it are never
        played. ``multipv``: the number of best lines to find (the result's ``lines``, distinct first moves, best
        first; fewer where there are fewer moves). ``timer`` (a :class:`~xiangqi_gpt.play.timeman.Timer`): clock limits
        on top of ``limits``, checked in the search (hard) and at each iteration's end (soft). ``board`` is not
        changed. With a clock of less than :data:`~xiangqi_gpt.play.timeman.LEAN_BELOW_MS` (the hard limit), the search
        runs without the model's policy, whose calls would cost more than the time there is."""
        saved = self.policy
        if timer is not None and saved is not None:
            from .timeman import LEAN_BELOW_MS

            if timer.allotment.hard_ms < LEAN_BELOW_MS:
                self.policy = None
        try:
            return self._search_position(board, limits, on_info, stop, root_moves, multipv, timer)
        finally:
            self.policy = saved

    def _search_position(self, board, limits, on_info, stop, root_moves, multipv, timer) -> SearchResult:
        limits = Limits() if limits is None else limits
        if not isinstance(limits, Limits):
            raise ConfigError(f"limits must be a Limits, got {type(limits).__name__}")
        Limits(limits.depth, limits.nodes, limits.movetime_ms, limits.min_depth)   # validate (fields set later)
        if isinstance(multipv, bool) or not isinstance(multipv, int) or multipv < 1:
            raise ConfigError(f"multipv must be an integer >= 1, got {multipv!r}")
        min_depth = limits.min_depth or 1
        self.multipv = multipv
        b = self._start(board, timer, stop)
        node_limit = limits.nodes if limits.nodes is not None else 1 << 62
        # (self.node_limit stays unlimited until min_depth, at least the first iteration, completes)
        self.deadline = self.t0 + limits.movetime_ms / 1000 if limits.movetime_ms is not None else None
        if len(self.tt) > self.tt_size:
            self.tt.clear()
        for i in range(len(self.history)):
            if self.history[i]:
                self.history[i] >>= 2
        self.killers = [[0, 0] for _ in range(MAX_PLY + 2)]

        moves = b.legal_move_ints()
        if root_moves is not None:
            allowed = {m.to_int() for m in root_moves}
            moves = [m for m in moves if m in allowed]
        if not moves:
            info = self._info(0, -MATE, [])
            info.mate = 0
            return SearchResult(None, info)
        self.nodes = 1
        if len(moves) == 1:
            m = moves[0]
            return self._finish(SearchResult(Move(m >> 7, m & 127), self._info(1, self._eval(), [m])), on_info)

        # the root moves: exact results by the rules, GPT log-probabilities, style bonus
        root = [[m, self._exact(m), 0.0, 0] for m in moves]     # move, exact score, log-probability, style bonus
        if self.policy is not None:
            logps = self.policy.root(b, moves)
            top = max(logps)
            for r, lp in zip(root, logps):
                r[2] = lp
                r[3] = -min(self.style_cp, round(self.style_per_nat * (top - lp)))
        else:
            for r in root:
                r[2] = self._order_key_plain(r[0], 0, 0)
        root.sort(key=lambda r: -r[2])
        wins = [r for r in root if r[1] is not None and r[1] > 0]
        if wins:                                                     # a win by the rules at once
            m = wins[0][0]
            info = self._info(1, MATE - 1, [m])
            return self._finish(SearchResult(Move(m >> 7, m & 127), info), on_info)
        if self.policy is not None and self.gpt_plies >= 2 and self.policy.enabled:
            keys = [self._child_key(r[0]) for r in root if r[1] is None]
            if keys and any(k not in self.policy.rows for k in keys):
                self.policy.expand(b, [], [r[0] for r in root if r[1] is None], keys)
            if self.value_cp and self.policy.want_values:
                self._value_bonus([r for r in root if r[1] is None], keys)
        self.root = root

        best_move, best_score, best_depth = root[0][0], -INF, 0
        max_depth = limits.depth or MAX_DEPTH
        info = None
        lines: list[SearchInfo] = []          # the last complete iteration's lines (multipv > 1)
        iteration_start = time.perf_counter()
        for depth in range(1, max_depth + 1):
            self.iter_best = None
            self.iter_lines = []
            score = self._root_search(depth)
            if self.aborted:
                if self.iter_best is not None and self.iter_best[0] != best_move:
                    best_move, best_score = self.iter_best        # a move fully searched at this depth beat the old
                break
            best_move, best_score, best_depth = self.iter_best[0], score, depth
            if depth >= min_depth:
                self.node_limit = node_limit
            info = self._info(depth, best_score, self._pv(best_move, depth))
            if multipv > 1:
                lines = [info] + [self._info(depth, v, self._pv(m, depth), k)
                                  for k, (v, m) in enumerate(self.iter_lines[1:multipv], start=2)]
            if on_info is not None and depth < max_depth:
                for line in lines or [info]:
                    on_info(line)
            if abs(best_score) > MATE_BOUND and MATE - abs(best_score) <= depth:
                break                                                 # a forced result found within the horizon
            now = time.perf_counter()
            if self.deadline is not None and now - self.t0 > 0.55 * (self.deadline - self.t0):
                break                                                 # the next iteration would not finish
            if timer is not None and not timer.next_iteration_fits(1000 * (now - iteration_start)):
                break                                                 # past the soft limit, or would pass the hard
            iteration_start = now
            if self.nodes >= self.node_limit:
                break
        if info is None:      # stopped inside the first iteration
            info = self._info(0, best_score if best_score > -INF else self._eval(), [best_move])
        elif info.pv[:1] != [Move(best_move >> 7, best_move & 127)]:
            info = self._info(best_depth, best_score, self._pv(best_move, best_depth))
            lines = []        # an unfinished iteration changed the best move: its other lines are not known
        else:
            info = self._info(best_depth, best_score, info.pv)
        result = SearchResult(Move(best_move >> 7, best_move & 127), info,
                              [info] + [replace(line, time_ms=info.time_ms, nodes=info.nodes, nps=info.nps)
                                        for line in lines[1:]])
        return self._finish(result, on_info)

    def best_lines(self, board: Board, n: int, limits: Limits | None = None,
                   stop: threading.Event | None = None) -> list[SearchInfo]:
        """The ``n`` best lines of ``board`` within ``limits`` (a multi-line :meth:`search`): one
        :class:`SearchInfo` per distinct first move, best first, each with its score (side to move's view) and
        principal variation; fewer than ``n`` where there are fewer legal moves, none where there is none."""
        result = self.search(board, limits, stop=stop, multipv=n)
        return [] if result.move is None else result.lines

    def search_subset(self, board: Board, moves: list[Move], depth: int) -> int:
        """The best score (side to move's view) of playing one of ``moves`` on ``board``, each searched ``depth``
        plies deep in total, with the same rules and evaluation as :meth:`search`; reuses the transposition
        table."""
        self._start(board, None, None)
        best = -INF
        for move in moves:
            m = move.to_int()
            score = self._exact(m)
            if score is None:
                self._make(m)
                score = -self._search(depth - 1, -INF, INF, 1, True)
                self._unmake()
            best = max(best, score)
        return best

    # ---- internals -----------------------------------------------------------------------------------------------

    def _start(self, board: Board, timer: "Timer | None", stop: threading.Event | None) -> Board:
        """Set up a search of ``board`` (of :meth:`search` and :meth:`search_subset`): a copy of it, whose live
        lists the search reads at every node, its evaluation, and no node limit or deadline yet; returns the copy."""
        self.timer = timer
        self.stop_event = stop
        self.t0 = time.perf_counter()
        self.board = b = board.copy()
        self.node_limit = 1 << 62
        self.deadline = None
        self.nodes = 0
        self.seldepth = 0
        self.gpt_calls0 = self.policy.calls if self.policy else 0
        self.aborted = False
        self.root_len = b.ply
        self.sq = b.squares
        self.checks = b.check_history
        self.keys = b.key_history
        self.ev = sum(self.tables[c][s] for s, c in enumerate(self.sq) if c)
        self.ev_stack: list[int] = []
        return b

    def _exact(self, m: int) -> int | None:
        """The score of the root move ``m`` by the rules alone (the game ends with it: won, lost or drawn), else
        None."""
        b = self.board
        me = b.turn
        b.make_int(m)
        outcome = b.outcome()
        b.unmake_int()
        if outcome is None:
            return None
        return 0 if outcome.winner is None else (MATE - 1 if outcome.winner == me else -MATE + 1)

    def _finish(self, result: SearchResult, on_info) -> SearchResult:
        if on_info is not None:
            for line in result.lines:
                on_info(line)
        self.board = None
        self.timer = None
        return result

    def _info(self, depth: int, score: int, pv: list, multipv: int = 1) -> SearchInfo:
        ms = max(0, round((time.perf_counter() - self.t0) * 1000))
        mate = None
        if abs(score) > MATE_BOUND:
            plies = MATE - abs(score)
            mate = (plies + 1) // 2 if score > 0 else -((plies + 1) // 2)
        calls = (self.policy.calls - self.gpt_calls0) if self.policy else 0
        pv_moves = [m if isinstance(m, Move) else Move(m >> 7, m & 127) for m in pv]
        return SearchInfo(depth=depth, seldepth=max(self.seldepth, depth), score_cp=int(score), mate=mate,
                          nodes=self.nodes, time_ms=ms, nps=round(self.nodes * 1000 / ms) if ms else self.nodes * 1000,
                          gpt_calls=calls, pv=pv_moves, multipv=multipv)

    def _eval(self) -> int:
        ev = self.ev
        if ev > _MOPUP_FROM or ev < -_MOPUP_FROM:
            ev += self._mopup(RED if ev > 0 else BLACK)
        return ev if self.board.turn == RED else -ev

    def _mopup(self, strong: int) -> int:
        """Far ahead (more than a horse's worth): a bonus for the strong side's attackers near the weak general,
        so that a won game is finished (mated) instead of drifting into the move limit."""
        k = self.board.king_square(strong ^ 1)
        kf, kr = k % 9, k // 9
        bonus = 0
        for s, c in enumerate(self.sq):
            if c and c >> 3 == strong and c & 7 >= HORSE:       # horse, chariot, cannon, soldier
                bonus += 14 - abs(s % 9 - kf) - abs(s // 9 - kr)
        return 3 * bonus if strong == RED else -3 * bonus

    def _child_key(self, m: int) -> int:
        sq = self.sq
        fr, to = m >> 7, m & 127
        p, c = sq[fr], sq[to]
        key = self.board.key ^ ZOBRIST[p][fr] ^ ZOBRIST[p][to] ^ ZOBRIST_BLACK_TO_MOVE
        return key ^ ZOBRIST[c][to] if c else key

    def _make(self, m: int) -> None:
        sq = self.sq
        fr, to = m >> 7, m & 127
        p = sq[fr]
        t = self.tables
        self.ev_stack.append(self.ev)
        self.ev += t[p][to] - t[p][fr] - t[sq[to]][to]
        self.board.make_int(m)

    def _unmake(self) -> None:
        self.board.unmake_int()
        self.ev = self.ev_stack.pop()

    def _tick(self) -> None:
        if len(self.tt) > self.tt_size:   # the Hash bound holds within a search too (to 256 entries)
            self.tt.clear()
        if self.stop_event is not None and self.stop_event.is_set():
            self.aborted = True
        elif self.deadline is not None and time.perf_counter() >= self.deadline:
            self.aborted = True
        elif self.timer is not None and self.timer.expired():
            self.aborted = True

    def _order_key_plain(self, m: int, ply: int, tt_move: int) -> int:
        if m == tt_move:
            return 1 << 30
        sq = self.sq
        cap = sq[m & 127]
        if cap:
            return (1 << 24) + _MVV[cap] * 16 - (_MVV[sq[m >> 7]] >> 6)
        k = self.killers[ply]
        if m == k[0]:
            return 1 << 23
        if m == k[1]:
            return (1 << 23) - 1
        return self.history[m]

    def _repetition(self, ply: int) -> int | None:
        """The score of a repeated position (see the module docs), or None if it is not a repetition."""
        b = self.board
        keys = self.keys
        n = len(keys)
        key = keys[-1]
        lo = n - 1 - b.halfmove_clock
        if lo < 0:
            lo = 0
        if n - 4 <= lo or key not in keys[lo:n - 4]:
            return None
        i = n - 5
        while keys[i] != key:
            i -= 1
        checks = self.checks
        us = all(checks[j + 1] for j in range(n - 3, i - 1, -2))
        them = all(checks[j + 1] for j in range(n - 2, i - 1, -2))
        if them and not us:
            return MATE - ply
        if us and not them:
            return -MATE + ply
        return 0

    def _value_bonus(self, rows: list, keys: list[int]) -> None:
        """Add the value head's view to the bonuses of the root moves ``rows`` (those not decided by the rules, whose
        children have the keys ``keys``): ``2 * value_cp`` x (the mover's expected score after the move - the best
        of them), so at most 0, as the style bonus."""
        values = self.policy.values
        ours = [(r, 1.0 - values[k]) for r, k in zip(rows, keys) if k in values]   # the child's mover: the opponent
        if not ours:
            return
        top = max(v for _, v in ours)
        for r, v in ours:
            r[3] += round(2 * self.value_cp * (v - top))

    def _root_search(self, depth: int) -> int:
        """One iteration over the root moves; sets ``self.iter_best`` = (move, score) as soon as a move is fully
        searched. The root value is max over moves of (score + style bonus). With ``self.multipv`` = K > 1, alpha
        is the K-th best value so far, so the K best moves get exact values: ``self.iter_lines``, best first."""
        alpha, beta = -INF, INF
        best = -INF
        k = self.multipv
        lines = self.iter_lines = []    # (value, move), best first: the moves whose value is exact
        if self.nodes >= self.node_limit:
            self.aborted = True
            return 0
        # previous best first, then the GPT's order
        root = self.root
        for i, (m, exact, _, bonus) in enumerate(root):
            if abs(alpha) > MATE_BOUND or (k > 1 and lines and abs(lines[0][0]) > MATE_BOUND):
                bonus = 0               # a forced result is on the board: no style, plain windows
            if exact is not None:
                score = exact
            else:
                self._make(m)
                if i == 0 or alpha == -INF:
                    score = -self._search(depth - 1, -(beta - bonus), -(alpha - bonus), 1, True)
                else:
                    score = -self._search(depth - 1, -(alpha - bonus) - 1, -(alpha - bonus), 1, False)
                    if not self.aborted and score + bonus > alpha:
                        score = -self._search(depth - 1, -(beta - bonus), -(alpha - bonus), 1, True)
                self._unmake()
                if self.aborted:
                    return best
            value = score + bonus if abs(score) <= MATE_BOUND else score
            if value > best:
                best = value
                self.iter_best = (m, value)
            if k == 1:
                if value > alpha:
                    alpha = value
            elif value > alpha or len(lines) < k:
                lines.append((value, m))
                lines.sort(key=lambda line: -line[0])
                del lines[k:]
                if len(lines) == k:
                    alpha = lines[-1][0]
        # the best (or the K best) to the front for the next iteration (stable for the others)
        front = [m for _, m in lines] if k > 1 else [self.iter_best[0]]
        rank = {m: j for j, m in enumerate(front)}
        root.sort(key=lambda r: rank.get(r[0], len(front)))
        return best

    def _search(self, depth: int, alpha: int, beta: int, ply: int, pv_node: bool, allow_null: bool = True) -> int:
        b = self.board
        in_check = self.checks[-1]
        if in_check and ply < MAX_PLY // 2:
            depth += 1
        if depth <= 0 or ply >= MAX_PLY:
            return self._qsearch(alpha, beta, ply, 0)
        if self.nodes >= self.node_limit:
            self.aborted = True
            return 0
        self.nodes += 1
        if not self.nodes & 255:
            self._tick()
            if self.aborted:
                return 0
        if ply > self.seldepth:
            self.seldepth = ply
        if b.halfmove_clock >= 4:
            r = self._repetition(ply)
            if r is not None:
                return r
        # mate distance pruning
        if alpha < -MATE + ply:
            alpha = -MATE + ply
        if beta > MATE - ply - 1:
            beta = MATE - ply - 1
        if alpha >= beta:
            return alpha
        key = b.key
        entry = self.tt.get(key)
        tt_move = 0
        if entry is not None:
            e_depth, e_flag, e_score, tt_move = entry
            if e_depth >= depth and not pv_node:
                if e_score > MATE_BOUND:
                    e_score -= ply
                elif e_score < -MATE_BOUND:
                    e_score += ply
                if (e_flag == _EXACT or (e_flag == _LOWER and e_score >= beta)
                        or (e_flag == _UPPER and e_score <= alpha)):
                    return e_score
        # null move
        if (self.null_move and allow_null and not pv_node and not in_check and depth >= 3
                and self._eval() >= beta and self._has_pieces(b.turn)):
            r = 3 if depth >= 6 else 2
            b.make_null()
            score = -self._search(depth - 1 - r, -beta, -beta + 1, ply + 1, False, False)
            b.unmake_null()
            if self.aborted:
                return 0
            if score >= beta:
                return beta if score < MATE_BOUND else score

        moves = b.legal_move_ints()
        if not moves:
            return -MATE + ply
        if b.halfmove_clock >= MOVE_LIMIT_PLIES:
            return 0
        sq = self.sq
        probs = None
        policy = self.policy
        if policy is not None and ply < self.gpt_plies:
            probs = policy.probs(key, moves)
            if probs is not None and ply + 1 < self.gpt_plies and b.ply - self.root_len == ply:
                keys = [self._child_key(m) for m in moves]
                if any(k not in policy.rows for k in keys):
                    policy.expand(b, b.played_ints(self.root_len), moves, keys)
        prunable = None
        if probs is not None:
            order = sorted(range(len(moves)), key=lambda i: -probs[i])
            if self.prune and not in_check:
                prunable = set()
                mass = 0.0
                for n_kept, i in enumerate(order):
                    if n_kept >= self.min_moves and mass >= self.policy_mass:
                        prunable.add(moves[i])
                    mass += probs[i]
            # the TT move, then captures of a piece worth at least the capturer (MVV-LVA), then the policy
            keys = []
            for i, m in enumerate(moves):
                k = probs[i]
                if m == tt_move:
                    k = 10.0
                else:
                    victim = _MVV[sq[m & 127]]
                    if victim and victim >= _MVV[sq[m >> 7]]:
                        k += 2.0 + victim / 10000
                keys.append(k)
            ordered = [moves[i] for i in sorted(range(len(moves)), key=lambda i: -keys[i])]
        else:
            ordered = sorted(moves, key=lambda m: -self._order_key_plain(m, ply, tt_move))
        best, best_move, flag = -INF, 0, _UPPER
        searched = 0
        killers = self.killers[ply]
        futile = skipped = False
        if self.futility and depth <= 2 and not pv_node and not in_check and abs(alpha) < MATE_BOUND:
            futile = self._eval() + (200 if depth == 1 else 500) <= alpha
        for m in ordered:
            cap = sq[m & 127]
            self._make(m)
            gives_check = self.checks[-1]
            if searched and not cap and not gives_check:
                if futile:
                    skipped = True
                    self._unmake()
                    continue
                if prunable is not None and m in prunable and best > -MATE_BOUND:
                    self._unmake()          # (never pruned where every move searched so far is mated)
                    continue
            new_depth = depth - 1
            if searched == 0:
                score = -self._search(new_depth, -beta, -alpha, ply + 1, pv_node)
            else:
                reduction = 0
                if (self.lmr and (probs is None or self.policy_lmr) and searched >= 3 and depth >= 3 and not cap
                        and not gives_check and not in_check and m != killers[0] and m != killers[1]):
                    reduction = 2 if searched >= 12 and depth >= 5 else 1
                score = -self._search(new_depth - reduction, -alpha - 1, -alpha, ply + 1, False)
                if reduction and score > alpha and not self.aborted:
                    score = -self._search(new_depth, -alpha - 1, -alpha, ply + 1, False)
                if pv_node and alpha < score < beta and not self.aborted:
                    score = -self._search(new_depth, -beta, -alpha, ply + 1, True)
            self._unmake()
            if self.aborted:
                return 0
            searched += 1
            if score > best:
                best, best_move = score, m
                if score > alpha:
                    alpha, flag = score, _EXACT
                    if score >= beta:
                        flag = _LOWER
                        if not cap:
                            if killers[0] != m:
                                killers[1], killers[0] = killers[0], m
                            self.history[m] += depth * depth
                        break
        if skipped and best < alpha:
            best = alpha            # futility assumed the skipped moves fail low: claim no more than that
        stored = best
        if stored > MATE_BOUND:
            stored += ply
        elif stored < -MATE_BOUND:
            stored -= ply
        self.tt[key] = (depth, flag, stored, best_move)
        return best

    def _has_pieces(self, color: int) -> bool:
        base = 8 if color == BLACK else 0
        sq = self.sq
        big = (base | ROOK, base | HORSE, base | CANNON)
        return any(sq[s] in big for s in range(90))

    def _qsearch(self, alpha: int, beta: int, ply: int, qd: int) -> int:
        if self.nodes >= self.node_limit:
            self.aborted = True
            return 0
        self.nodes += 1
        if not self.nodes & 255:
            self._tick()
            if self.aborted:
                return 0
        if ply > self.seldepth:
            self.seldepth = ply
        b = self.board
        sq = self.sq
        if self.checks[-1]:
            moves = b.legal_move_ints()
            if not moves:
                return -MATE + ply
            if qd >= 6 or ply >= MAX_PLY:
                return self._eval()
            best = -MATE + ply
            moves.sort(key=lambda m: -_MVV[sq[m & 127]])
        else:
            stand = self._eval()
            if stand >= beta or ply >= MAX_PLY:
                return stand
            if stand > alpha:
                alpha = stand
            best = stand
            margin = alpha - stand - 200
            # the legal captures (legal_move_ints(False) is legal_capture_ints without its call)
            caps = [m for m in b.legal_move_ints(False) if _MVV[sq[m & 127]] > margin]
            if not caps:
                return stand
            caps.sort(key=lambda m: -(_MVV[sq[m & 127]] * 16 - (_MVV[sq[m >> 7]] >> 6)))
            moves = caps
        for m in moves:
            self._make(m)
            score = -self._qsearch(-beta, -alpha, ply + 1, qd + 1)
            self._unmake()
            if self.aborted:
                return 0
            if score > best:
                best = score
                if score > alpha:
                    alpha = score
                    if score >= beta:
                        break
        return best

    def _pv(self, first: int, depth: int) -> list[int]:
        """The principal variation: ``first``, then the best moves from the transposition table."""
        b = self.board
        pv = [first]
        b.make_int(first)
        seen = {b.key}
        while len(pv) < max(depth, 1) + 8:
            entry = self.tt.get(b.key)
            if entry is None or not entry[3]:
                break
            m = entry[3]
            if m not in b.legal_move_ints():
                break
            b.make_int(m)
            pv.append(m)
            if b.key in seen:
                break
            seen.add(b.key)
        for _ in pv:
            b.unmake_int()
        return pv


# --------------------------------------------------------------------------------------------------------------------
# Levels and the player

#: level -> budget. Level 0 is the pure GPT (no search); level 1 searches one ply (and the captures after it); then
#: a guaranteed depth plus a node budget that roughly triples per level. Depth and node budgets only, so a level
#: plays the same moves on any machine. Measured strengths: docs/ladder.md.
LEVELS: dict[int, Limits] = {
    0: Limits(),
    1: Limits(depth=1),
    2: Limits(nodes=600, min_depth=2),
    3: Limits(nodes=2000, min_depth=3),
    4: Limits(nodes=6000, min_depth=3),
}
#: the default of play.py: see the README (Search and levels) for why
DEFAULT_LEVEL = 2
#: sampled (temperature > 0) moves are kept when the search scores them at most this far below its best
SAMPLE_MARGIN_CP = 30


def level_limits(level) -> Limits:
    """The budget of ``level``; a bad level raises a one-line ConfigError naming the valid range."""
    if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
        raise ConfigError(f"level must be an integer from {min(LEVELS)} to {max(LEVELS)}, got {level!r}")
    return LEVELS[level]


class SearchPlayer:
    """A :class:`GPTPlayer` that searches: a drop-in wherever a player is used (arena, play, engine).

    Level 0 is exactly the GPT player. At higher levels ``choose`` returns the search's move; at temperature > 0
    (e.g. the arena's sampled opening plies) the GPT samples a move and the search keeps it unless it scores more
    than :data:`SAMPLE_MARGIN_CP` below the search's best."""

    def __init__(self, player: "GPTPlayer", level: int, searcher: Searcher | None = None):
        self.limits = level_limits(level)
        self.level = level
        self.player = player
        self.searcher = searcher if searcher is not None else Searcher(player)
        self.last: SearchResult | None = None
        self._game: tuple | None = None

    def __getattr__(self, name):            # tokenizer, loaded, raw_move, history_ids, ...
        if name == "player":
            raise AttributeError(name)
        return getattr(self.player, name)

    def __repr__(self) -> str:
        return f"SearchPlayer(level={self.level}, {self.player!r})"

    def move_probs(self, board: Board):
        return self.player.move_probs(board)

    def move_logprobs(self, board: Board):
        return self.player.move_logprobs(board)

    def raw_move(self, board: Board) -> str:
        return self.player.raw_move(board)

    def _new_game_check(self, board: Board) -> None:
        game = (board.root_fen(), tuple(board.move_stack[:1]))
        if self._game is None or game != self._game[0] or board.ply < self._game[1]:
            self.searcher.clear()
        self._game = (game, board.ply)

    def search(self, board: Board, limits: Limits | None = None, on_info=None, stop=None, *,
               timer: "Timer | None" = None) -> SearchResult:
        """The search at the level's budget (or ``limits``), within ``timer``'s clock limits if given."""
        self._new_game_check(board)
        extra = {} if timer is None else {"timer": timer}
        self.last = self.searcher.search(board, self.limits if limits is None else limits, on_info, stop, **extra)
        return self.last

    def choose(self, board: Board, temperature: float | None = None, *, timer: "Timer | None" = None) -> Move:
        """The move to play; ``timer`` (a :class:`~xiangqi_gpt.play.timeman.Timer`) keeps the search within a clock."""
        if self.level == 0:
            return self.player.choose(board, temperature)
        t = self.player.temperature if temperature is None else temperature
        result = self.search(board) if timer is None else self.search(board, timer=timer)
        if result.move is None:
            raise IllegalMoveError(f"no legal move in {board.fen()}")
        if t > 0:
            sampled = self.player.choose(board, t)
            if sampled != result.move:
                depth = max(1, result.info.depth)
                score = self.searcher.search_subset(board, [sampled], depth)
                if score >= result.info.score_cp - SAMPLE_MARGIN_CP:
                    return sampled
        return result.move
