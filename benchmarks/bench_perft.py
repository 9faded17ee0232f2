"""Perft speed of our rule engine, side by side with the PyPI package ``cchess``, as a markdown table.

    .venv/bin/python benchmarks/bench_perft.py            # start position depth 3 + the published positions
    .venv/bin/python benchmarks/bench_perft.py --deep     # deeper published counts, ours only (start depth 4, ...)

Nodes are leaves of the legal move tree; both engines count the last ply without playing it. Our depth per
position is the deepest perft with at most ``--max-nodes`` leaves (the start position is timed at depth 3), repeated
for ``--min-time`` seconds keeping the fastest run. ``cchess`` is about a hundred times slower, so it runs once,
at the start position's depth 3 and elsewhere at the deepest perft with at most ``--cchess-max-nodes`` leaves; the
ratio compares nodes per second. Counts are checked against the published table (``../shared/perft/published.json``)
or, where it has no count, cchess's against ours; see the ``ok`` columns.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from xiangqi_gpt.rules.board import STARTING_FEN, Board  # noqa: E402

PUBLISHED = ROOT.parent / "shared" / "perft" / "published.json"
FALLBACK = [  # used when the shared table is absent
    {"fen": STARTING_FEN, "depth": d, "nodes": n, "name": "start position"}
    for d, n in ((1, 44), (2, 1920), (3, 79666), (4, 3290240))
]


def load_table() -> dict[str, dict]:
    """fen -> {"name": ..., "counts": {depth: nodes}} in file order."""
    entries = json.loads(PUBLISHED.read_text(encoding="utf-8")) if PUBLISHED.is_file() else FALLBACK
    table: dict[str, dict] = {}
    for e in entries:
        if e["fen"] not in table:
            same_name = sum(1 for other in table.values() if other["name"].split(" #")[0] == e["name"])
            name = f"{e['name']} #{same_name + 1}" if same_name else e["name"]
            table[e["fen"]] = {"name": name, "counts": {}}
        table[e["fen"]]["counts"][e["depth"]] = e["nodes"]
    return table


def timed(fn, min_time: float) -> tuple[int, float]:
    """(result, seconds of the fastest call), calling ``fn`` again until ``min_time`` seconds have passed."""
    best, start = float("inf"), time.perf_counter()
    while True:
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start >= min_time:
            return result, best


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cchess_perft(board, depth: int) -> int:
    """Perft with cchess's own API: pseudo-legal ``create_moves()`` filtered by ``is_checked_move``."""
    moves = [m for m in board.create_moves() if not board.is_checked_move(*m)]
    if depth == 1:
        return len(moves)
    total = 0
    for frm, to in moves:
        child = board.copy()          # cchess has no unmake; is_checked_move copies the board the same way
        child._move_piece(frm, to)
        child.next_turn()
        total += cchess_perft(child, depth - 1)
    return total


def pick_depth(board: Board, known: dict[int, int], max_nodes: int) -> tuple[int, int]:
    """(depth, nodes): the deepest perft with at most ``max_nodes`` leaves (at least depth 1). Published counts are
    used where known; otherwise our engine counts, and a depth is tried only if the growth so far predicts it fits."""
    depth, nodes, previous = 1, known.get(1) or board.perft(1), 1
    while True:
        estimate = known.get(depth + 1) or nodes * max(nodes / previous, 1.0)
        if estimate > max_nodes:
            return depth, nodes
        following = known.get(depth + 1) or board.perft(depth + 1)
        if following > max_nodes:
            return depth, nodes
        depth, previous, nodes = depth + 1, nodes, following


def mark(nodes: int, expected: int | None, ours: int | None = None) -> str:
    """``yes``/``NO`` against the published count, else against our own count (``= ours``), else ``-``."""
    if expected is not None:
        return "yes" if nodes == expected else f"NO (published {expected:,})"
    if ours is not None:
        return "= ours" if nodes == ours else f"NO (ours {ours:,})"
    return "-"


def compare(args) -> None:
    try:
        import cchess
    except ImportError:
        cchess = None
        print("cchess is not installed (pip install cchess): timing ours only\n")
    table = load_table()
    print(f"Python {platform.python_version()}, {cpu_name()}\n")
    print("| position | depth | nodes | ok | ours nodes/s | cchess depth | cchess nodes | ok | cchess nodes/s "
          "| ours / cchess |")
    print("|---|---:|---:|---|---:|---:|---:|---|---:|---:|")
    ours_nodes = ours_seconds = cchess_nodes = cchess_seconds = 0
    for fen, entry in table.items():
        name, counts = entry["name"], entry["counts"]
        board = Board(fen)
        depth, _ = (3, 0) if fen == STARTING_FEN else pick_depth(board, counts, args.max_nodes)
        nodes, seconds = timed(lambda: board.perft(depth), args.min_time)
        ours_nps = nodes / seconds
        ours_nodes += nodes
        ours_seconds += seconds
        row = f"| {name} | {depth} | {nodes:,} | {mark(nodes, counts.get(depth))} | {ours_nps:,.0f} "
        if cchess is None:
            print(row + "| | | | | |", flush=True)
            continue
        c_depth, ours_count = (3, nodes) if fen == STARTING_FEN else pick_depth(board, counts, args.cchess_max_nodes)
        c_board = cchess.ChessBoard(fen)
        c_nodes, c_seconds = timed(lambda: cchess_perft(c_board, c_depth), args.cchess_min_time)
        c_nps = c_nodes / c_seconds
        cchess_nodes += c_nodes
        cchess_seconds += c_seconds
        print(row + f"| {c_depth} | {c_nodes:,} | {mark(c_nodes, counts.get(c_depth), ours_count)} | {c_nps:,.0f} "
              f"| {ours_nps / c_nps:,.0f}x |", flush=True)
    ours_nps = ours_nodes / ours_seconds
    line = f"| **all** | | {ours_nodes:,} | | {ours_nps:,.0f} "
    if cchess_seconds:
        c_nps = cchess_nodes / cchess_seconds
        line += f"| | {cchess_nodes:,} | | {c_nps:,.0f} | {ours_nps / c_nps:,.0f}x |"
    else:
        line += "| | | | | |"
    print(line)


def deep(args) -> None:
    table = load_table()
    print("| position | depth | nodes | published | ok | seconds | nodes/s |")
    print("|---|---:|---:|---:|---|---:|---:|")
    all_nodes = all_seconds = 0
    for fen, entry in table.items():
        name = entry["name"]
        board = Board(fen)
        depth, _ = pick_depth(board, entry["counts"], args.deep_max_nodes)
        expected = entry["counts"].get(depth)
        start = time.perf_counter()
        nodes = board.perft(depth)
        seconds = time.perf_counter() - start
        published = f"{expected:,}" if expected is not None else "-"
        print(f"| {name} | {depth} | {nodes:,} | {published} | {mark(nodes, expected)} | {seconds:.1f} "
              f"| {nodes / seconds:,.0f} |", flush=True)
        all_nodes += nodes
        all_seconds += seconds
    print(f"| **all** | | {all_nodes:,} | | | {all_seconds:.1f} | {all_nodes / all_seconds:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deep", action="store_true", help="deeper published counts, ours only")
    parser.add_argument("--max-nodes", type=int, default=1_000_000, help="largest perft per position (ours)")
    parser.add_argument("--cchess-max-nodes", type=int, default=3_000, help="largest perft per position (cchess)")
    parser.add_argument("--deep-max-nodes", type=int, default=5_000_000, help="largest perft per position (--deep)")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="repeat each of our counts for this many seconds and keep the fastest")
    parser.add_argument("--cchess-min-time", type=float, default=0.0, help="the same for cchess (0: one run)")
    args = parser.parse_args()
    deep(args) if args.deep else compare(args)


if __name__ == "__main__":
    main()
