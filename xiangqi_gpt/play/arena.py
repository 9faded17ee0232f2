"""``python -m xiangqi_gpt arena``: full games of the model against a random mover or Fairy-Stockfish.

Main names: :func:`run_match`, :func:`elo_from_score`, :func:`elo_interval`, :func:`add_arena_command`.
Design notes: docs/design.md#play-arena
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import time
from collections import Counter
from pathlib import Path
from dataclasses import asdict, dataclass, field

from . import match
from ..rules.board import BLACK, RED, STARTING_FEN, Board, Move
from ..errors import ConfigError, XiangqiError
from .match import DEFAULT_FAIRY_DEPTH, DEFAULT_MAX_PLIES, OPENINGS, FairyPlayer, GameRecord, RandomPlayer
from ..rules.notation import parse_raw_move
from ..data.tokenizer import STYLES

DEFAULT_SAMPLE_PLIES = 8

# --------------------------------------------------------------------------------------------------------------------
# Games


@dataclass
class ArenaRecord(GameRecord):
    """A game of the model against an opponent: the :class:`~xiangqi_gpt.play.match.GameRecord` and the model's side of
    it (its colour and score, its illegal raw moves, the time and search nodes of each of its moves)."""

    round: int = 1
    model_color: str = "red"      # "red" / "black"
    model_score: float = 0.5      # 1 win, 0.5 draw, 0 loss
    model_moves: int = 0
    illegal_attempts: int = 0
    illegal_examples: list[str] = field(default_factory=list)
    illegal_kinds: dict[str, int] = field(default_factory=dict)   # illegal_kind() -> count; not_a_move for text
    move_ms: list[int] = field(default_factory=list)        # wall ms of each of the model's moves
    move_cpu_ms: list[int] = field(default_factory=list)    # CPU ms of this process for each (a shared machine)
    move_nodes: list[int] = field(default_factory=list)     # search nodes of each (a searching player only)

    def to_dict(self) -> dict:
        """The record as the JSON report writes it (``per_game``)."""
        d = asdict(self)
        order = ("round", "model_color", "opening", "moves", "result", "model_score", "termination", "reason",
                 "model_moves", "illegal_attempts", "illegal_examples", "illegal_kinds", "move_ms", "move_cpu_ms",
                 "move_nodes")
        return {**{k: d[k] for k in order}, "plies": self.plies}


class ModelSide:
    """The model (a ``GPTPlayer`` or a ``search.SearchPlayer``) as a :class:`~xiangqi_gpt.play.match.Player`: it samples
    at ``opening_temperature`` during the first ``sample_plies`` plies, and records for each of its moves the wall
    and CPU time, the search nodes (a player with ``last``, a SearchResult) and whether its unconstrained greedy
    move (``raw_move``) would have been illegal."""

    def __init__(self, player, sample_plies: int = DEFAULT_SAMPLE_PLIES, opening_temperature: float = 1.0,
                 name: str = "xiangqi-gpt"):
        self.player, self.name = player, name
        self.sample_plies, self.opening_temperature = sample_plies, opening_temperature
        self.moves = self.illegal = 0
        self.examples: list[str] = []
        self.kinds: Counter = Counter()
        self.move_ms: list[int] = []
        self.move_cpu_ms: list[int] = []
        self.move_nodes: list[int] = []

    def choose(self, board: Board) -> Move:
        t0, c0 = time.perf_counter(), time.process_time()
        move = self.player.choose(board, temperature=self.opening_temperature if board.ply < self.sample_plies
                                  else None)
        self.move_ms.append(round((time.perf_counter() - t0) * 1000))
        self.move_cpu_ms.append(round((time.process_time() - c0) * 1000))
        last = getattr(self.player, "last", None)    # a SearchPlayer's last search (None for a pure GPT)
        if last is not None:
            self.move_nodes.append(last.info.nodes)
        raw = self.player.raw_move(board)   # after choose: for char it reuses the history cache just built
        self.moves += 1
        kind = illegal_kind(board, raw)
        if kind is not None:
            self.illegal += 1
            self.kinds[kind] += 1
            if len(self.examples) < 5:
                self.examples.append(f"ply {board.ply + 1}: {raw}")
        return move


def illegal_kind(board: Board, text: str) -> str | None:
    """``None`` if ``text`` (a raw model move) is a legal move on ``board``, else ``not_a_move`` (text that names no
    move, e.g. a result token) or the rule it breaks (:meth:`~xiangqi_gpt.rules.board.Board.illegal_kind`)."""
    move = parse_raw_move(text)
    return "not_a_move" if move is None else board.illegal_kind(move)


def play_game(player, opponent, model_color: int, opening=(), max_plies: int = DEFAULT_MAX_PLIES,
              sample_plies: int = DEFAULT_SAMPLE_PLIES, opening_temperature: float = 1.0, round_: int = 1,
              on_move=None) -> ArenaRecord:
    """One game of ``player`` (a GPTPlayer or a search.SearchPlayer) against ``opponent`` (a
    :class:`~xiangqi_gpt.play.match.Player` with ``new_game()``), played by :func:`xiangqi_gpt.play.match.play_game`."""
    side = ModelSide(player, sample_plies, opening_temperature)
    opponent.new_game()
    red, black = (side, opponent) if model_color == RED else (opponent, side)
    game = match.play_game(red, black, opening, max_plies, on_move)
    score = 0.5 if game.winner is None else float(game.winner == model_color)
    return ArenaRecord(**asdict(game), round=round_, model_color="red" if model_color == RED else "black",
                       model_score=score, model_moves=side.moves, illegal_attempts=side.illegal,
                       illegal_examples=side.examples, illegal_kinds=dict(side.kinds), move_ms=side.move_ms,
                       move_cpu_ms=side.move_cpu_ms, move_nodes=side.move_nodes)


def opening_schedule(n_games: int, seed: int, book_plies: int = 2) -> list[tuple[str, ...]]:
    """The opening of each game: pairs of games share a book line, in a seeded shuffled order."""
    rng = random.Random(seed)
    lines: list[tuple[str, ...]] = []
    while len(lines) < (n_games + 1) // 2:
        batch = list(OPENINGS)
        rng.shuffle(batch)
        lines.extend(batch)
    return [tuple(lines[i // 2][:book_plies]) for i in range(n_games)]


# --------------------------------------------------------------------------------------------------------------------
# Statistics


def elo_from_score(score: float) -> float:
    return -400.0 * math.log10(1.0 / score - 1.0)


def elo_interval(wins: int, draws: int, losses: int, z: float = 1.96) -> dict:
    """Elo difference and its 95 % interval from a W/D/L record (see the module docs for the clamping)."""
    n = wins + draws + losses
    if n == 0:
        return {"diff": None, "low": None, "high": None, "score": None, "clamped": False}
    s = (wins + 0.5 * draws) / n
    var = (wins * (1 - s) ** 2 + draws * (0.5 - s) ** 2 + losses * s ** 2) / n
    eps = 0.5 / n
    lo_clamp, hi_clamp = eps, 1 - eps
    s_c = min(max(s, lo_clamp), hi_clamp)
    if var == 0:
        var = s_c * (1 - s_c)
    se = math.sqrt(var / n)
    low, high = s - z * se, s + z * se
    clamped = not (lo_clamp <= s <= hi_clamp and lo_clamp <= low and high <= hi_clamp)

    def elo(x):
        return round(elo_from_score(min(max(x, lo_clamp), hi_clamp)), 1)

    return {"diff": elo(s), "low": elo(low), "high": elo(high), "score": s, "se": se, "clamped": clamped}


def summarize(records: list[ArenaRecord]) -> dict:
    wins = sum(r.model_score == 1.0 for r in records)
    draws = sum(r.model_score == 0.5 for r in records)
    losses = sum(r.model_score == 0.0 for r in records)
    n = len(records)
    model_moves = sum(r.model_moves for r in records)
    illegal = sum(r.illegal_attempts for r in records)
    by_color = {}
    for color in ("red", "black"):
        rs = [r for r in records if r.model_color == color]
        by_color[color] = {"games": len(rs), "wins": sum(r.model_score == 1.0 for r in rs),
                           "draws": sum(r.model_score == 0.5 for r in rs),
                           "losses": sum(r.model_score == 0.0 for r in rs)}
    all_ms = [x for r in records for x in r.move_ms]
    all_cpu = [x for r in records for x in r.move_cpu_ms]
    all_nodes = [x for r in records for x in r.move_nodes]
    return {
        "games": n, "wins": wins, "draws": draws, "losses": losses,
        "score": (wins + 0.5 * draws) / n if n else None,
        "elo": elo_interval(wins, draws, losses),
        "average_length": sum(r.plies for r in records) / n if n else None,
        "illegal_attempts": {"count": illegal, "model_moves": model_moves,
                             "rate": illegal / model_moves if model_moves else None,
                             "kinds": dict(sum((Counter(r.illegal_kinds) for r in records), Counter()).most_common())},
        "terminations": dict(sorted(Counter(r.termination for r in records).items())),
        "by_color": by_color,
        "model_ms_per_move": _median(all_ms),
        "model_cpu_ms_per_move": _median(all_cpu),
        "model_nodes_per_move": _median(all_nodes),
    }


def _median(values: list) -> float | None:
    """The median, or None for no values."""
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def to_pgn_games(records: list[ArenaRecord], model_name: str, opponent_name: str, event: str):
    from ..records.pgn import Game

    today = datetime.date.today().strftime("%Y.%m.%d")
    games = []
    for r in records:
        red, black = (model_name, opponent_name) if r.model_color == "red" else (opponent_name, model_name)
        headers = {"Event": event, "Site": "xiangqi-gpt arena", "Date": today, "Round": str(r.round), "Red": red,
                   "Black": black, "Result": r.result, "Termination": r.termination,
                   "Opening": " ".join(r.opening) or "-", "PlyCount": str(r.plies),
                   "IllegalAttempts": f"{r.illegal_attempts}/{r.model_moves}"}
        games.append(Game(headers=headers, moves=[Move.from_iccs(m) for m in r.moves], root_fen=STARTING_FEN,
                          result=r.result, source="arena", index=r.round))
    return games


def run_match(player, opponent, n_games: int, seed: int = 0, max_plies: int = DEFAULT_MAX_PLIES,
              book_plies: int = 2, sample_plies: int = DEFAULT_SAMPLE_PLIES, opening_temperature: float = 1.0,
              on_game=None, on_move=None) -> list[ArenaRecord]:
    """``n_games`` games, the model Red in odd-numbered games (1, 3, ...). ``on_game(record)`` after each game."""
    openings = opening_schedule(n_games, seed, book_plies)
    records = []
    for i in range(n_games):
        record = play_game(player, opponent, RED if i % 2 == 0 else BLACK, openings[i], max_plies, sample_plies,
                           opening_temperature, round_=i + 1, on_move=on_move)
        records.append(record)
        if on_game is not None:
            on_game(record)
    return records


# --------------------------------------------------------------------------------------------------------------------
# CLI


def add_arena_command(p: argparse.ArgumentParser):
    p.add_argument("--checkpoint", default=None, help="model file (.pt or .ckpt; default: the shipped default.pt)")
    p.add_argument("--opponent", choices=("random", "fairy-stockfish"), default="random")
    p.add_argument("--games", type=int, default=10, metavar="N", help="number of games (default 10)")
    p.add_argument("--depth", type=int, default=None, metavar="D",
                   help=f"Fairy-Stockfish search depth (default {DEFAULT_FAIRY_DEPTH} unless --movetime is given)")
    p.add_argument("--movetime", type=int, default=None, metavar="MS", help="Fairy-Stockfish time per move in ms")
    p.add_argument("--skill", type=int, default=None, metavar="S", help="Fairy-Stockfish Skill Level (-20..20)")
    p.add_argument("--elo", type=int, default=None, metavar="E", help="Fairy-Stockfish UCI_Elo (1350..2850)")
    p.add_argument("--engine-path", default=None, help="Fairy-Stockfish binary (default: found automatically)")
    p.add_argument("--seed", type=int, default=0, help="seed of the openings, the model's sampling and the random "
                                                       "opponent (default 0)")
    p.add_argument("--max-plies", type=int, default=DEFAULT_MAX_PLIES,
                   help=f"stop a game after this many plies and score it a draw (default {DEFAULT_MAX_PLIES})")
    p.add_argument("--book-plies", type=int, choices=(0, 1, 2), default=2,
                   help="plies taken from the opening book (default 2)")
    p.add_argument("--sample-plies", type=int, default=DEFAULT_SAMPLE_PLIES,
                   help=f"the model samples its moves during the first N plies (default {DEFAULT_SAMPLE_PLIES})")
    p.add_argument("--opening-temperature", type=float, default=1.0, help="temperature of those samples (1.0)")
    p.add_argument("--temperature", type=float, default=0.0, help="the model's temperature after that (0: greedy)")
    p.add_argument("--safety", action="store_true",
                   help="the rules' one-move safety net on the model's choice: take a win by the rules at once, "
                        "never lose by the rules at once, avoid moves that allow mate in one (see player.py)")
    p.add_argument("--level", type=int, default=0, metavar="N",
                   help="our side's strength level: 0 = the pure GPT (default), higher levels search more "
                        "(see xiangqi_gpt/play/search.py LEVELS)")
    p.add_argument("--style", default=None, choices=sorted(STYLES),
                   help="the condition the model is asked in: human (master games, the default) or strong "
                        "(engine games); a model without source tokens ignores it")
    p.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON to OUT")
    p.add_argument("--pgn", default=None, metavar="OUT", help="write all games as PGN (ICCS, UTF-8) to OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default 1: fastest on a shared or small machine)")

    def run(args):
        _check_args(args)
        from rich.console import Console

        out, err = Console(), Console(stderr=True)
        import torch

        from ..model.checkpoint import load_model
        from .player import GPTPlayer

        torch.set_num_threads(args.threads)
        loaded = load_model(args.checkpoint)
        player = GPTPlayer(loaded, temperature=args.temperature, seed=args.seed, safety=args.safety,
                           style=args.style)
        source = player.source            # the condition the model is asked in (before a search wraps the player)
        if args.level:
            from .search import SearchPlayer

            player = SearchPlayer(player, args.level)
        if args.opponent == "random":
            opponent = RandomPlayer(args.seed)
        else:
            opponent = FairyPlayer.start(depth=args.depth, movetime=args.movetime, skill=args.skill, elo=args.elo,
                                         path=args.engine_path)
        model_name = f"xiangqi-gpt ({os.path.basename(args.checkpoint) if args.checkpoint else 'default'})"
        if args.level:
            model_name += f" level {args.level}"
        t0 = time.perf_counter()
        try:
            records = _run_with_progress(player, opponent, args, err)
        finally:
            opponent.close()
        report = {"checkpoint": args.checkpoint or "default", "tokenizer": loaded.tokenizer.name,
                  "opponent": {"kind": args.opponent, "name": opponent.name, "depth": getattr(opponent, "depth", None),
                               "movetime": args.movetime, "skill": args.skill, "elo": args.elo},
                  **summarize(records),
                  "settings": {"seed": args.seed, "max_plies": args.max_plies, "book_plies": args.book_plies,
                               "sample_plies": args.sample_plies, "opening_temperature": args.opening_temperature,
                               "temperature": args.temperature, "safety": args.safety, "level": args.level,
                               "style": source},
                  "seconds": round(time.perf_counter() - t0, 2),
                  "per_game": [r.to_dict() for r in records]}
        print_summary(report, out)
        if args.pgn:
            from ..records.pgn import write_games

            try:
                Path(args.pgn).parent.mkdir(parents=True, exist_ok=True)
                write_games(to_pgn_games(records, model_name, opponent.name, "xiangqi-gpt arena"), args.pgn)
            except OSError as e:
                raise XiangqiError(f"cannot write {args.pgn}: {e.strerror or e}") from None
            out.print(f"games written to {args.pgn}")
        if args.json:
            try:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(report, f, indent=2)
                    f.write("\n")
            except OSError as e:
                raise XiangqiError(f"cannot write {args.json}: {e.strerror or e}") from None
            out.print(f"report written to {args.json}")

    return run


def _check_args(args) -> None:
    from .search import level_limits

    level_limits(args.level)
    if args.games < 1:
        raise ConfigError(f"--games must be >= 1, got {args.games}")
    if args.max_plies < 1:
        raise ConfigError(f"--max-plies must be >= 1, got {args.max_plies}")
    for name in ("depth", "movetime"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {value}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.sample_plies < 0:
        raise ConfigError(f"--sample-plies must be >= 0, got {args.sample_plies}")
    if not args.opening_temperature >= 0 or not args.temperature >= 0:
        raise ConfigError("temperatures must be >= 0")
    if args.opponent == "random" and any(getattr(args, k) is not None for k in ("depth", "movetime", "skill", "elo")):
        raise ConfigError("--depth/--movetime/--skill/--elo only apply to --opponent fairy-stockfish")
    from ..outpaths import check_output_file

    for option, path in (("--pgn", args.pgn), ("--json", args.json)):
        if path:
            check_output_file(path, option)     # before the games: a bad output path fails at once


def _run_with_progress(player, opponent, args, console) -> list[ArenaRecord]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("[bold]arena"), BarColumn(), MofNCompleteColumn(), TextColumn("games"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}")]
    done: list[ArenaRecord] = []
    plain = not args.quiet and not console.is_terminal
    with Progress(*columns, console=console, disable=args.quiet) as progress:
        task = progress.add_task("arena", total=args.games, stats=f"vs {opponent.name}")

        def on_move(board):
            progress.update(task, stats=f"{_wdl(done)}  game {len(done) + 1}: ply {board.ply}")

        def on_game(record):
            done.append(record)
            progress.update(task, advance=1, stats=f"{_wdl(done)}  last: {record.result} {record.termination}")
            if plain:           # a log, not a terminal: the bar would show nothing until the end
                console.print(f"arena: game {len(done)}/{args.games}: {record.result} {record.termination}  "
                              f"{_wdl(done)}", highlight=False, soft_wrap=True)

        return run_match(player, opponent, args.games, args.seed, args.max_plies, args.book_plies,
                         args.sample_plies, args.opening_temperature, on_game=on_game, on_move=on_move)


def _wdl(records: list[ArenaRecord]) -> str:
    w = sum(r.model_score == 1.0 for r in records)
    d = sum(r.model_score == 0.5 for r in records)
    l_ = sum(r.model_score == 0.0 for r in records)
    illegal = sum(r.illegal_attempts for r in records)
    return f"+{w} ={d} -{l_}  illegal {illegal}"


def print_summary(report: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"xiangqi-gpt vs {report['opponent']['name']}: {report['games']} games", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    e = report["elo"]
    t.add_row("wins / draws / losses", f"{report['wins']} / {report['draws']} / {report['losses']}")
    t.add_row("score", f"{100 * report['score']:.1f}%")
    t.add_row("Elo difference", f"{e['diff']:+.0f}  (95% {e['low']:+.0f} .. {e['high']:+.0f})"
              + ("  clamped" if e["clamped"] else ""))
    t.add_row("average length", f"{report['average_length']:.1f} plies")
    ia = report["illegal_attempts"]
    rate = "-" if ia["rate"] is None else f"{100 * ia['rate']:.1f}%"
    t.add_row("illegal attempts", f"{ia['count']} of {ia['model_moves']} model moves ({rate})")
    if ia.get("kinds"):
        t.add_row("illegal, by rule", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ia["kinds"].items()))
    if report.get("model_ms_per_move") is not None:
        nodes = report.get("model_nodes_per_move")
        t.add_row("model per move (median)", f"{report['model_ms_per_move']:.0f} ms"
                  + (f", {nodes:.0f} nodes" if nodes is not None else ""))
    t.add_row("terminations", ", ".join(f"{k} {v}" for k, v in report["terminations"].items()))
    for color, c in report["by_color"].items():
        t.add_row(f"as {color}", f"+{c['wins']} ={c['draws']} -{c['losses']}")
    console.print(t)
