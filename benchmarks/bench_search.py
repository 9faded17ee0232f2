"""Speed and strength of the search, design against design, side by side in one process.

    .venv/bin/python benchmarks/bench_search.py [--variants gpt,nogpt,material] [--nodes 3000 | --movetime MS]
        [--games 4] [--depth 1] [--h2h gpt:nogpt] [--h2h-games 10] [--h2h-b-style S] [--seed 0] [--positions 20]
        [--human 0] [--json OUT]

Variants (``Searcher`` options; ``gpt`` is the shipped design):

  gpt       the shipped design for the condition asked (``--style``; ``search.DESIGNS``): in the human style
            (the default) the GPT as the policy at plies 0-1: root and replies ordered by it, replies pruned to
            90 % of its probability (at least 4 moves) plus every capture and check; root style bonus (at most
            100 cp, 30 cp per nat); material + PST. In the strong style the same as ``order``
  human     the human style's design whatever the condition (pruning and the style bonus)
  nogpt     no model at all: MVV-LVA / killer / history ordering everywhere, no policy pruning, no style bonus
  gpt3      the policy also at ply 2 (one batched call per reply searched)
  noprune   the policy orders but never prunes
  nostyle   no root style bonus
  style20   a smaller root style bonus: at most 20 cp, 8 cp per nat (the default: 100 cp, 30 cp per nat)
  style40   at most 40 cp, 15 cp per nat
  order     the policy only orders moves at plies 0-1: no pruning, no style bonus
  orderlmr  order, with late-move reductions also after the policy's first three moves
  order3    order, with the policy also at ply 2
  value     order, plus the value head's root bonus (value_cp 100: up to 200 cp between the root moves that the
            value head rates best and worst; a model file with a value head, studies/value_probe.py --export);
            value50 and value200 the same at value_cp 50 and 200
  material  leaf evaluation = material only (+100 for a soldier across the river), no piece-square tables

1. **Speed**: every variant searches the same positions (plies 10, 20, 30, 40 of the shipped model's recorded
   games against Fairy-Stockfish, ``docs/default/arena_fsf_depth1.pgn``) with the same budget: nodes/s (wall and
   CPU), GPT calls per CPU second, CPU ms per call and their share of the CPU time, depth reached. (CPU time of
   this process, one torch thread: on a machine shared with other jobs, wall time only says how busy it was.)
2. **Against Fairy-Stockfish** at ``--depth`` (default 1): ``--games`` games per variant, the arena's rules
   (alternating colours, book openings, the model samples its first 8 plies; seed 0, so every variant gets the
   same openings), our median ms and nodes per move.
3. **Human moves** (``--human N``, default 0): how often each variant's move is the master's on every 4th position
   of the first N games of the **val** split (``data/ccpd/val.pgn``), overall and where material is level, against
   the pure GPT's top-1. Design choices such as the style bonus are made here, on val; the ladder reports the same
   measure on the test split.
4. **Head to head** (``--h2h A:B``): A plays B for ``--h2h-games`` games, both greedy from the book openings (no
   sampled plies, so neither side is handicapped; each opening is played once with each colour).

Run it alone (one process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch  # noqa: E402

from xiangqi_gpt.play.arena import run_match, summarize  # noqa: E402
from xiangqi_gpt.rules.board import Board  # noqa: E402
from xiangqi_gpt.play.match import FairyPlayer  # noqa: E402
from xiangqi_gpt.records.pgn import read_games  # noqa: E402
from xiangqi_gpt.play.player import GPTPlayer  # noqa: E402
from xiangqi_gpt.play.search import Limits, Searcher, SearchPlayer, level_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "gpt": {},
    "human": {"prune": True, "style_cp": 100},
    "nogpt": {"use_gpt": False},
    "gpt3": {"gpt_plies": 3},
    "noprune": {"prune": False},
    "nostyle": {"style_cp": 0},
    "style20": {"style_cp": 20, "style_per_nat": 8},
    "style40": {"style_cp": 40, "style_per_nat": 15},
    "material": {"pst": False},
    "nofutility": {"futility": False},
    "order": {"prune": False, "style_cp": 0},
    "orderlmr": {"prune": False, "style_cp": 0, "policy_lmr": True},
    "order3": {"prune": False, "style_cp": 0, "gpt_plies": 3},
    "value": {"prune": False, "style_cp": 0, "value_cp": 100},
    "value50": {"prune": False, "style_cp": 0, "value_cp": 50},
    "value200": {"prune": False, "style_cp": 0, "value_cp": 200},
}


def positions(n: int) -> list[Board]:
    out = []
    for game in read_games(str(ROOT / "docs/default/arena_fsf_depth1.pgn")):
        if isinstance(game, Exception):
            continue
        moves = game.moves
        for ply in (10, 20, 30, 40):
            if ply < len(moves) - 1:
                board = Board(game.root_fen)
                for m in moves[:ply]:
                    board.push(m)
                if board.outcome() is None:
                    out.append(board)
        if len(out) >= n:
            break
    return out[:n]


def make_player(gpt: GPTPlayer, variant: str, limits: Limits) -> SearchPlayer:
    player = SearchPlayer(gpt, 1, searcher=Searcher(gpt, **VARIANTS[variant]))
    player.limits = limits
    return player


def speed(gpt: GPTPlayer, variant: str, boards: list[Board], limits: Limits) -> dict:
    searcher = Searcher(gpt, **VARIANTS[variant])
    nodes = calls = 0
    wall = cpu = gpt_s = 0.0
    depths = []
    for board in boards:
        searcher.clear()
        g0 = searcher.policy.seconds if searcher.policy else 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        result = searcher.search(board, limits)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        gpt_s += (searcher.policy.seconds - g0) if searcher.policy else 0.0
        nodes += result.info.nodes
        calls += result.info.gpt_calls
        depths.append(result.info.depth)
    return {"variant": variant, "positions": len(boards), "nodes": nodes, "nps_wall": round(nodes / wall),
            "nps_cpu": round(nodes / cpu), "gpt_calls": calls, "gpt_calls_per_cpu_s": round(calls / cpu, 1),
            "gpt_cpu_ms_per_call": round(1000 * gpt_s / calls, 2) if calls else None,
            "gpt_cpu_share": round(gpt_s / cpu, 3), "cpu_ms_per_search": round(1000 * cpu / len(boards), 1),
            "median_depth": statistics.median(depths)}


class SearchOpponent:
    """A searching player as the arena's opponent."""

    def __init__(self, player: SearchPlayer, name: str):
        self.player, self.name = player, name

    def new_game(self) -> None:
        self.player.searcher.clear()

    def choose(self, board: Board):
        return self.player.choose(board, temperature=0)

    def close(self) -> None:
        pass


def match(player, opponent, games: int, sample_plies: int = 8, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    records = run_match(player, opponent, games, seed=seed, sample_plies=sample_plies)
    s = summarize(records)
    return {"games": s["games"], "wins": s["wins"], "draws": s["draws"], "losses": s["losses"],
            "score": s["score"], "elo": s["elo"]["diff"], "elo_low": s["elo"]["low"], "elo_high": s["elo"]["high"],
            "ms_per_move": s["model_ms_per_move"], "cpu_ms_per_move": s["model_cpu_ms_per_move"],
            "nodes_per_move": s["model_nodes_per_move"],
            "average_length": s["average_length"], "terminations": s["terminations"],
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="gpt,nogpt,material")
    ap.add_argument("--nodes", type=int, default=3000)
    ap.add_argument("--movetime", type=int, default=None, help="budget in ms instead of nodes")
    ap.add_argument("--level", type=int, default=None, help="the budget of this level instead of --nodes")
    ap.add_argument("--positions", type=int, default=20)
    ap.add_argument("--games", type=int, default=4, help="games per variant against Fairy-Stockfish (0: none)")
    ap.add_argument("--depth", type=int, default=1, help="Fairy-Stockfish depth")
    ap.add_argument("--style", default=None, help="the condition the GPT is asked in: human (default) or strong")
    ap.add_argument("--h2h", default=None, metavar="A:B")
    ap.add_argument("--h2h-games", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="seed of the openings (and samples) of every match")
    ap.add_argument("--h2h-b-nodes", type=int, default=None,
                    help="B's node budget (default: the same as A's), e.g. to give both the same CPU time")
    ap.add_argument("--h2h-b-style", default=None, metavar="STYLE",
                    help="the condition B's GPT is asked in (default: --style), e.g. to match the two styles' "
                         "designs: --style strong --h2h gpt:gpt --h2h-b-style human")
    ap.add_argument("--human", type=int, default=0, metavar="N",
                    help="human-move agreement of each variant on the first N val games (0: skip)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    variants = args.variants.split(",") if args.variants else []
    for v in variants + (args.h2h.split(":") if args.h2h else []):
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    val = ROOT / "data" / "ccpd" / "val.pgn"
    if args.human and not val.is_file():     # checked before the speed and match sections spend minutes
        ap.error(f"--human needs {val} (python -m xiangqi_gpt prepare ../shared/data/ccpd.tar.xz --out data/ccpd)")
    limits = Limits(movetime_ms=args.movetime) if args.movetime else Limits(nodes=args.nodes)
    budget = f"{args.movetime} ms" if args.movetime else f"{args.nodes} nodes"
    if args.level is not None:
        limits, budget = level_limits(args.level), f"level {args.level}"
    gpt = GPTPlayer.load(args.checkpoint, seed=0, style=args.style)
    report = {"budget": budget, "speed": [], "vs_fairy": [], "human": [], "h2h": None}
    boards = positions(args.positions)
    print(f"## Speed: {len(boards)} positions, {budget} per search\n")
    print("| variant | nodes/s (wall) | nodes/s (CPU) | GPT calls per CPU s | CPU ms per GPT call | GPT share of CPU "
          "| CPU ms per search | median depth |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        r = speed(gpt, v, boards, limits)
        report["speed"].append(r)
        print(f"| {v} | {r['nps_wall']:,} | {r['nps_cpu']:,} | {r['gpt_calls_per_cpu_s']} | "
              f"{r['gpt_cpu_ms_per_call'] or '-'} | {100 * r['gpt_cpu_share']:.1f}% | {r['cpu_ms_per_search']} | "
              f"{r['median_depth']} |", flush=True)
    if args.games:
        print(f"\n## Against Fairy-Stockfish depth {args.depth}: {args.games} games each, {budget} per move\n")
        print("| variant | W / D / L | score | Elo [95%] | CPU ms/move | nodes/move | avg plies |")
        print("|---|---|---:|---|---:|---:|---:|")
        for v in variants:
            opponent = FairyPlayer.start(depth=args.depth)
            try:
                r = match(make_player(gpt, v, limits), opponent, args.games, seed=args.seed)
            finally:
                opponent.close()
            report["vs_fairy"].append({"variant": v, "depth": args.depth, **r})
            print(f"| {v} | {r['wins']} / {r['draws']} / {r['losses']} | {100 * r['score']:.0f}% | "
                  f"{r['elo']:+.0f} [{r['elo_low']:+.0f}, {r['elo_high']:+.0f}] | {r['cpu_ms_per_move']:.0f} | "
                  f"{r['nodes_per_move']:.0f} | {r['average_length']:.0f} |", flush=True)
    if args.human:
        from ladder import human_agreement

        print(f"\n## Human moves: first {args.human} val games, every 4th position, {budget} per move\n")
        print("| variant | positions | same as human | GPT top-1 same | level-material positions "
              "| same (level material) | GPT top-1 (level material) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for v in variants:
            r = human_agreement(make_player(gpt, v, limits), gpt, val, args.human, 4)
            report["human"].append({"variant": v, **r})
            print(f"| {v} | {r['positions']} | {100 * r['match']:.1f}% | {100 * r['gpt_top1']:.1f}% | "
                  f"{r['level_material_positions']} | {100 * r['match_level_material']:.1f}% | "
                  f"{100 * r['gpt_top1_level_material']:.1f}% |", flush=True)
    if args.h2h:
        a, b = args.h2h.split(":")
        b_limits = Limits(nodes=args.h2h_b_nodes) if args.h2h_b_nodes else limits
        b_style = args.h2h_b_style or args.style
        opp = SearchOpponent(make_player(GPTPlayer.load(args.checkpoint, seed=1, style=b_style), b, b_limits), b)
        r = match(make_player(gpt, a, limits), opp, args.h2h_games, sample_plies=0, seed=args.seed)
        report["h2h"] = {"a": a, "b": b, "b_nodes": args.h2h_b_nodes, "a_style": args.style or "human",
                         "b_style": b_style or "human", **r}
        b_budget = f"{args.h2h_b_nodes} nodes" if args.h2h_b_nodes else budget
        a_name, b_name = a, b
        if args.h2h_b_style and args.h2h_b_style != args.style:
            a_name, b_name = f"{a} ({args.style or 'human'} style)", f"{b} ({args.h2h_b_style} style)"
        print(f"\n## Head to head: {a_name} ({budget}) vs {b_name} ({b_budget}), {args.h2h_games} games\n")
        print(f"{a}: {r['wins']} W / {r['draws']} D / {r['losses']} L, score {100 * r['score']:.0f}%, "
              f"Elo {r['elo']:+.0f} [{r['elo_low']:+.0f}, {r['elo_high']:+.0f}]; terminations {r['terminations']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
