"""Game review: ``python -m xiangqi_gpt review GAME.pgn`` (and ``review`` in ``play.py``).

Every position of a game is searched (the policy-guided search of :mod:`xiangqi_gpt.play.search`, without its style
bonus, so its scores are plain evaluation) and the GPT's probability of the move played is read. Each move gets the
evaluation before and after it (the mover's view), the search's best move and line, a label by evaluation loss
(:data:`THRESHOLDS`) and an accuracy; each side gets its mean accuracy and label counts. Thresholds and formulas:
``docs/review.md``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..rules.board import BLACK, COLOR_NAMES, RED, Board, Move
from ..errors import ConfigError, XiangqiError

#: (label, centipawns): a move that loses at least this much evaluation gets the label (first match). The search's
#: scale: a soldier is 100, an advisor or elephant 200, a horse 400, a cannon 450, a chariot 900.
THRESHOLDS: tuple[tuple[str, int], ...] = (("blunder", 300), ("mistake", 150), ("inaccuracy", 80))
#: the PGN suffix of each label (shown by GUIs), and its numeric annotation glyph
MARKS = {"blunder": "??", "mistake": "?", "inaccuracy": "?!"}
NAGS = {"blunder": 4, "mistake": 2, "inaccuracy": 6}
#: evaluations are capped at this many centipawns (a forced mate counts as the cap) before losses are taken
EVAL_CAP = 1000
#: the default budget of a review: a search level of :data:`xiangqi_gpt.play.search.LEVELS`
DEFAULT_REVIEW_LEVEL = 3
#: the win-probability scale of :func:`win_percent` (per centipawn)
WIN_SCALE = 0.00368208

LABELS = tuple(name for name, _ in THRESHOLDS)


# --------------------------------------------------------------------------------------------------------------------
# Scores


def mate_in(score: int) -> int | None:
    """Moves to a forced result in a search score (+ the side wins, - it loses), ``None`` for a plain evaluation."""
    from .search import MATE, MATE_BOUND

    if abs(score) <= MATE_BOUND:
        return None
    plies = MATE - abs(score)
    return (plies + 1) // 2 if score > 0 else -((plies + 1) // 2)


def capped(score: int) -> int:
    """A search score in centipawns capped at +-:data:`EVAL_CAP` (a forced mate is the cap)."""
    return max(-EVAL_CAP, min(EVAL_CAP, score))


def format_score(score: int) -> str:
    """``+35``, ``-120``, ``M3`` (mates in 3), ``-M2`` (is mated in 2), ``M0`` / ``-M0`` (the game is over)."""
    mate = mate_in(score)
    if mate is None:
        return f"{score:+d}"
    return f"M{mate}" if score > 0 else f"-M{-mate}"


def win_percent(score: int) -> float:
    """The mover's winning chances (0..100) for a search score: ``50 + 50 * (2 / (1 + exp(-WIN_SCALE * cp)) - 1)``
    with ``cp`` capped (:func:`capped`)."""
    return 50 + 50 * (2 / (1 + math.exp(-WIN_SCALE * capped(score))) - 1)


def move_accuracy(before: int, after: int) -> float:
    """A move's accuracy (0..100) from the mover's winning chances before and after it:
    ``103.1668 * exp(-0.04354 * (win% before - win% after)) - 3.1669``, clipped to 0..100."""
    drop = win_percent(before) - win_percent(after)
    if drop <= 0:
        return 100.0
    return max(0.0, min(100.0, 103.1668 * math.exp(-0.04354 * drop) - 3.1669))


def label_for(loss: int) -> str | None:
    """The label of a move that loses ``loss`` centipawns (:data:`THRESHOLDS`), ``None`` for a good move."""
    for name, cp in THRESHOLDS:
        if loss >= cp:
            return name
    return None


# --------------------------------------------------------------------------------------------------------------------
# The review


@dataclass
class MoveReview:
    """One move of a reviewed game. Scores are the mover's, in the search's centipawns (mates as search scores)."""

    ply: int                  # 1 = the first move of the record
    side: int                 # RED or BLACK: who played it
    move: Move
    text: str                 # the move in Chinese notation (traditional, full-width digits for Black)
    before: int               # the evaluation of the position before the move (its search)
    after: int                # the evaluation after it (the move searched as deep as the best move)
    best: Move | None         # the search's move in the position before
    best_line: list[Move]     # its principal variation, from the position before
    loss: int                 # capped(before) - capped(after), at least 0; 0 when the move is the best move
    accuracy: float
    label: str | None
    gpt_prob: float           # the GPT's probability of the move played (renormalised over the legal moves)
    gpt_rank: int             # 1 = the GPT's favourite
    depth: int
    nodes: int

    def to_json(self) -> dict:
        return {"ply": self.ply, "side": COLOR_NAMES[self.side].lower(), "move": self.move.iccs(),
                "chinese": self.text,
                "eval_before": _json_score(self.before), "eval_after": _json_score(self.after),
                "loss": self.loss, "label": self.label, "accuracy": round(self.accuracy, 1),
                "best": self.best.iccs() if self.best is not None else None,
                "best_line": [m.iccs() for m in self.best_line],
                "gpt_prob": round(self.gpt_prob, 5), "gpt_rank": self.gpt_rank,
                "depth": self.depth, "nodes": self.nodes}


def _json_score(score: int) -> dict:
    return {"cp": capped(score), "mate": mate_in(score)}


@dataclass
class SideSummary:
    """One side's figures: mean accuracy, mean loss, the number of moves with each label."""

    moves: int = 0
    accuracy: float | None = None
    average_loss: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: {name: 0 for name in LABELS})

    def to_json(self) -> dict:
        return {"moves": self.moves, "accuracy": None if self.accuracy is None else round(self.accuracy, 1),
                "average_loss": None if self.average_loss is None else round(self.average_loss, 1),
                **{_plural(name): self.counts[name] for name in LABELS}}


@dataclass
class GameReview:
    """A reviewed game: its moves (:class:`MoveReview`), the final evaluation and each side's summary."""

    headers: dict[str, str]
    root_fen: str
    result: str
    moves: list[MoveReview]
    final: int                # the evaluation after the last move, Red's view
    budget: str               # the search budget, in words
    seconds: float = 0.0

    def summary(self, side: int) -> SideSummary:
        mine = [m for m in self.moves if m.side == side]
        out = SideSummary(moves=len(mine))
        if mine:
            out.accuracy = sum(m.accuracy for m in mine) / len(mine)
            out.average_loss = sum(m.loss for m in mine) / len(mine)
        for m in mine:
            if m.label:
                out.counts[m.label] += 1
        return out

    def red_view(self) -> list[int]:
        """The evaluation of every position of the game (the start first, the final last), Red's view."""
        out = [m.before if m.side == RED else -m.before for m in self.moves]
        return out + [self.final]

    def to_json(self) -> dict:
        return {"headers": self.headers, "root_fen": self.root_fen, "result": self.result, "budget": self.budget,
                "thresholds_cp": dict(THRESHOLDS), "eval_cap_cp": EVAL_CAP, "seconds": round(self.seconds, 2),
                "sides": {COLOR_NAMES[s].lower(): self.summary(s).to_json() for s in (RED, BLACK)},
                "moves": [m.to_json() for m in self.moves]}


def review_searcher(player: Any):
    """The search used by reviews: the default search without its style bonus, so scores are plain evaluation."""
    from .search import Searcher

    return Searcher(player, style_cp=0)


def review_game(player: Any, root_fen: str, moves: Sequence[Move], limits: Any, *, headers: dict | None = None,
                result: str = "*", searcher: Any = None,
                progress: Callable[[int, int], None] | None = None) -> GameReview:
    """Review the game of ``moves`` from ``root_fen``: one search per position within ``limits`` (a
    :class:`~xiangqi_gpt.play.search.Limits`) and one GPT call per move. The move played is then searched to the depth
    that the best move reached (unless it is the best move), so that both scores share one horizon: ``after`` is
    that score, at most ``before``. ``player`` is a :class:`~xiangqi_gpt.play.player.GPTPlayer`; ``progress(done,
    total)`` is called after each move."""
    import time

    from ..rules.notation import move_to_chinese

    t0 = time.perf_counter()
    searcher = review_searcher(player) if searcher is None else searcher
    searcher.clear()
    board = Board(root_fen, strict=False)
    out = []
    for i, move in enumerate(moves):
        if board.outcome() is not None:
            raise XiangqiError(f"the game is over after ply {i} ({board.outcome().reason}) but the record goes on")
        if not board.is_legal(move):
            raise XiangqiError(f"ply {i + 1}: illegal move {move.iccs()}: {board.why_illegal(move)}")
        r = searcher.search(board, limits)
        before, depth = r.info.score_cp, max(1, r.info.depth)
        # the move played, searched as deep as the best move was: both scores share one horizon
        after = before if move == r.move else min(before, searcher.search_subset(board, [move], depth))
        loss = max(0, capped(before) - capped(after))
        ranked = player.move_probs(board)
        rank, prob = next((k, p) for k, (m, p) in enumerate(ranked, 1) if m == move)
        out.append(MoveReview(ply=i + 1, side=board.turn, move=move,
                              text=move_to_chinese(board, move, traditional=True, fullwidth=True), before=before,
                              after=after, best=r.move, best_line=list(r.info.pv), loss=loss,
                              accuracy=move_accuracy(before, after), label=label_for(loss), gpt_prob=prob,
                              gpt_rank=rank, depth=r.info.depth, nodes=r.info.nodes))
        board.push(move)
        if progress is not None:
            progress(i + 1, len(moves))
    if out:
        final = out[-1].after if out[-1].side == RED else -out[-1].after
    else:
        final = 0
    return GameReview(headers=dict(headers or {}), root_fen=root_fen, result=result, moves=out, final=final,
                      budget=_describe(limits), seconds=time.perf_counter() - t0)


def _describe(limits: Any) -> str:
    parts = []
    if limits.depth is not None:
        parts.append(f"depth {limits.depth}")
    if limits.nodes is not None:
        parts.append(f"{limits.nodes} nodes")
    if limits.min_depth is not None:
        parts.append(f"min depth {limits.min_depth}")
    if limits.movetime_ms is not None:
        parts.append(f"{limits.movetime_ms} ms")
    return ", ".join(parts) or "no limit"


def review_limits(level: int | None = None, movetime_ms: int | None = None):
    """The search budget per position: ``movetime_ms`` if given, else the search level ``level`` (default
    :data:`DEFAULT_REVIEW_LEVEL`). Level 0 (no search) cannot review."""
    from .search import Limits, level_limits

    if movetime_ms is not None:
        if isinstance(movetime_ms, bool) or not isinstance(movetime_ms, int) or movetime_ms < 1:
            raise ConfigError(f"--movetime must be a whole number of milliseconds >= 1, got {movetime_ms!r}")
        return Limits(movetime_ms=movetime_ms)
    level = DEFAULT_REVIEW_LEVEL if level is None else level
    limits = level_limits(level)
    if level == 0:
        raise ConfigError("a review needs a search: choose a level from 1 up")
    return limits


# --------------------------------------------------------------------------------------------------------------------
# Outputs


def _format_line(root: Board, moves: Sequence[Move], notation: str, limit: int = 6) -> str:
    from ..rules.notation import format_move

    board = root.copy()
    out = []
    for move in list(moves)[:limit]:
        if not board.is_legal(move):
            break
        out.append(format_move(board, move, notation))
        board.push(move)
    return " ".join(out)


def _pgn_eval(m: MoveReview) -> str | None:
    """``[%eval]`` of the position after move ``m``: Red's view, in soldiers (pawns, as GUIs expect); ``#N`` / ``#-N``
    for a mate that Red / Black gives in N moves from there; None once the move has mated."""
    sign = 1 if m.side == RED else -1
    mate = mate_in(m.after)
    if mate is None:
        return f"{sign * m.after / 100:.2f}"
    moves_left = mate - 1 if mate > 0 else -mate       # the mover's own moves still to play, or the opponent's
    if moves_left == 0:
        return None
    return f"#{moves_left}" if (mate > 0) == (m.side == RED) else f"#-{moves_left}"


def annotated_pgn(review: GameReview, notation: str = "iccs") -> str:
    """The game as PGN with a comment after every move (``[%eval]`` of the position after it, Red's view, and the
    GPT's probability) and, for a labelled move, its mark (``??``, ``?``, ``?!``), the loss and the best line."""
    from ..rules.notation import format_move
    from ..records.pgn import pgn_text

    fmt = "chinese" if notation == "chinese" else notation
    board = Board(review.root_fen, strict=False)
    texts = []
    for m in review.moves:
        text = format_move(board, m.move, fmt)
        evaluation = _pgn_eval(m)
        comment = (f"[%eval {evaluation}] " if evaluation is not None else "") + f"GPT {100 * m.gpt_prob:.1f}%"
        if m.label:
            text += MARKS[m.label]
            comment += (f". {m.label.capitalize()}: {format_score(m.before)} -> {format_score(m.after)} for "
                        f"{COLOR_NAMES[m.side]}")
            if m.best is not None:
                comment += f"; best {_format_line(board, m.best_line[:1] or [m.best], fmt)}"
                line = _format_line(board, m.best_line or [m.best], fmt)
                if len(m.best_line) > 1:
                    comment += f" ({line})"
        texts.append(f"{text} {{{comment}}}")
        board.push(m.move)
    headers = dict(review.headers)
    headers["Annotator"] = f"xiangqi-gpt review ({review.budget})"
    return pgn_text(headers, texts, review.root_fen, review.result, notation, width=100)


def review_tables(review: GameReview) -> tuple[Any, Any]:
    """Two rich tables: every move (evaluations, loss, label, best line, GPT probability) and the sides' summary."""
    from rich.table import Table
    from rich.text import Text

    styles = {"blunder": "bold red", "mistake": "bold yellow", "inaccuracy": "cyan"}
    moves = Table(title=f"Review ({review.budget} per position)", header_style="bold", pad_edge=False)
    for name, justify in (("#", "right"), ("move", "left"), ("before", "right"), ("after", "right"),
                          ("loss", "right"), ("label", "left"), ("best line", "left"), ("GPT", "right")):
        moves.add_column(name, justify=justify, no_wrap=name != "best line")
    board = Board(review.root_fen, strict=False)
    for m in review.moves:
        best = ""
        if m.best is not None and m.best != m.move:
            best = _format_line(board, m.best_line or [m.best], "iccs", limit=4)
        label = Text(m.label or "", style=styles.get(m.label or "", ""))
        number = f"{board.fullmove_number}" + ("." if m.side == RED else "…")
        moves.add_row(number, f"{m.text} {m.move.iccs()}", format_score(m.before),
                      format_score(m.after), str(m.loss) if m.loss else "", label, best,
                      f"{100 * m.gpt_prob:.0f}%")
        board.push(m.move)
    sides = Table(title="Per side", header_style="bold", pad_edge=False)
    for name in ("side", "moves", "accuracy", "avg loss", *(_plural(n) for n in LABELS)):
        sides.add_column(name, justify="left" if name == "side" else "right")
    names = {RED: review.headers.get("Red"), BLACK: review.headers.get("Black")}
    for side in (RED, BLACK):
        s = review.summary(side)
        who = COLOR_NAMES[side] + (f" ({names[side]})" if names[side] and names[side] != "?" else "")
        sides.add_row(who, str(s.moves), "-" if s.accuracy is None else f"{s.accuracy:.1f}",
                      "-" if s.average_loss is None else f"{s.average_loss:.0f}",
                      *(str(s.counts[n]) for n in LABELS))
    return moves, sides


def plot_review(review: GameReview, path: str | Path) -> None:
    """An evaluation graph (Red's view, capped at +-:data:`EVAL_CAP`) as PNG, with the labelled moves marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [capped(v) for v in review.red_view()]
    xs = list(range(len(values)))
    fig, ax = plt.subplots(figsize=(10, 4), dpi=110)
    ax.fill_between(xs, values, 0, where=[v >= 0 for v in values], color="#c1121f", alpha=0.35, interpolate=True,
                    label="Red better")
    ax.fill_between(xs, values, 0, where=[v <= 0 for v in values], color="#222222", alpha=0.35, interpolate=True,
                    label="Black better")
    ax.plot(xs, values, color="#333333", linewidth=1.2)
    colors = {"blunder": "#d62728", "mistake": "#ff7f0e", "inaccuracy": "#1f77b4"}
    for name in LABELS:
        pts = [(m.ply, values[m.ply]) for m in review.moves if m.label == name]   # the position after the move
        if pts:
            ax.scatter([p for p, _ in pts], [v for _, v in pts], color=colors[name], zorder=3, s=28,
                       label=f"{name} ({len(pts)})")
    ax.axhline(0, color="#888888", linewidth=0.8)
    ax.set_xlim(0, max(1, len(values) - 1))
    ax.set_ylim(-EVAL_CAP * 1.05, EVAL_CAP * 1.05)
    ax.set_xlabel("ply")
    ax.set_ylabel("evaluation, Red's view (cp)")
    cjk = _cjk_font()
    if cjk:
        plt.rcParams["font.family"] = [cjk, "DejaVu Sans"]
    red, black = (_plot_name(review.headers.get(tag), tag, bool(cjk)) for tag in ("Red", "Black"))
    acc = [review.summary(s).accuracy for s in (RED, BLACK)]
    acc_text = ", ".join(f"{COLOR_NAMES[side]} " + ("-" if a is None else f"{a:.0f}") for side, a in enumerate(acc))
    ax.set_title(f"{red} vs {black}, {review.result}. Accuracy: {acc_text} ({review.budget} per position)",
                 fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncol=5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)


_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei",
              "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti TC", "AR PL UMing TW")


def _cjk_font() -> str | None:
    """The name of an installed font with Chinese characters, if matplotlib knows one."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def _plot_name(name: str | None, side: str, cjk: bool) -> str:
    """A player's name for the graph's title: the side's name when there is none, or when it needs Chinese glyphs
    and no font has them."""
    if not name or name == "?" or (not cjk and not name.isascii()):
        return side
    return name


def run_with_progress(console: Any, player: Any, root_fen: str, moves: Sequence[Move], limits: Any, *,
                      headers: dict | None = None, result: str = "*", searcher: Any = None) -> GameReview:
    """:func:`review_game` with a rich progress bar on ``console`` (drawn on a terminal only, then removed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("[bold]reviewing"), BarColumn(), MofNCompleteColumn(), TextColumn("moves"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("review", total=len(moves))
        return review_game(player, root_fen, moves, limits, headers=headers, result=result, searcher=searcher,
                           progress=lambda done, total: bar.update(task, completed=done))


# --------------------------------------------------------------------------------------------------------------------
# The command


def add_review_command(p: argparse.ArgumentParser):
    """``python -m xiangqi_gpt review GAME.pgn``: review one game of a record file."""
    from .search import LEVELS

    p.add_argument("pgn", metavar="GAME.pgn", help="the game record (PGN in ICCS, WXF or Chinese notation)")
    p.add_argument("--game", type=int, default=1, metavar="N", help="which game of the file (default: the first)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--level", type=int, default=None, metavar="N",
                        help=f"search level per position, 1 to {max(LEVELS)} (default {DEFAULT_REVIEW_LEVEL})")
    budget.add_argument("--movetime", type=int, default=None, metavar="MS",
                        help="search time per position in milliseconds (instead of a level)")
    p.add_argument("--out", default=None, metavar="OUT.pgn", help="write the annotated game as PGN")
    p.add_argument("--notation", choices=("iccs", "wxf", "chinese"), default="iccs",
                   help="move notation of --out (default iccs)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the review as JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="write the evaluation graph as PNG")
    p.add_argument("--checkpoint", default=None, help="model file (default: the shipped default.pt)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no table and no progress bar (only the summary)")

    def run(args):
        from rich.console import Console

        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        if args.game < 1:
            raise ConfigError(f"--game must be >= 1, got {args.game}")
        try:
            limits = review_limits(args.level, args.movetime)
        except XiangqiError as e:
            raise ConfigError(f"--level: {e}" if args.movetime is None else str(e)) from None
        game = read_game(args.pgn, args.game)
        for path in (args.out, args.json, args.plot):
            if path is not None and not Path(path).parent.is_dir():
                raise XiangqiError(f"cannot write {path}: no such folder")
        import torch

        from ..model.checkpoint import load_model
        from .player import GPTPlayer

        torch.set_num_threads(args.threads)
        player = GPTPlayer(load_model(args.checkpoint))
        console = Console(highlight=False)
        review = run_with_progress(Console(stderr=True) if args.quiet else console, player, game.root_fen,
                                   game.moves, limits, headers=game.headers, result=game.result)
        moves, sides = review_tables(review)
        if not args.quiet:
            console.print(moves)
        console.print(sides)
        console.print(f"{len(review.moves)} plies reviewed in {review.seconds:.1f} s ({review.budget} per position)")
        _write(args.out, lambda: annotated_pgn(review, args.notation), "annotated game", console)
        _write(args.json, lambda: json.dumps(review.to_json(), ensure_ascii=False, indent=1) + "\n", "review",
               console)
        if args.plot:
            try:
                plot_review(review, args.plot)
            except OSError as e:
                raise XiangqiError(f"cannot write {args.plot}: {e.strerror or e}") from None
            console.print(f"evaluation graph written to {args.plot}")

    return run


def _write(path: str | None, text: Callable[[], str], what: str, console: Any) -> None:
    if path is None:
        return
    try:
        Path(path).write_text(text(), encoding="utf-8")
    except OSError as e:
        raise XiangqiError(f"cannot write {path}: {e.strerror or e}") from None
    console.print(f"{what} written to {path}")


def read_game(path: str, index: int = 1):
    """Game ``index`` (1-based) of a record file; a one-line XiangqiError if the file or that game cannot be read."""
    from ..records.pgn import read_games

    if not Path(path).is_file():
        raise XiangqiError(f"no such file: {path}")
    n = 0
    for item in read_games(path):
        n += 1
        if n == index:
            if isinstance(item, XiangqiError):
                raise item
            return item
    raise XiangqiError(f"{path}: {'no game' if n == 0 else f'only {n} game' + ('s' if n > 1 else '')} in the file"
                       + (f", no game {index}" if n else ""))


def _plural(label: str) -> str:
    return label[:-1] + "ies" if label.endswith("y") else label + "s"
