"""Time ``prepare`` on the full CCPD archive (or any sources).

    .venv/bin/python benchmarks/bench_prepare.py [SOURCE...] [--workers 2] [--out DIR]

Runs :func:`xiangqi_gpt.data.prepare.prepare` on ``../shared/data/ccpd.tar.xz`` by default, writing to a temporary
directory (removed afterwards unless ``--out`` is given), and prints wall seconds, CPU seconds (this process and its
workers), files/s, games/s and plies/s, with the summary counts.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from xiangqi_gpt.data.prepare import prepare  # noqa: E402

CCPD = ROOT.parent / "shared" / "data" / "ccpd.tar.xz"


def cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="*", default=[str(CCPD)])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="keep the dataset here (default: a temporary directory)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N PGN files")
    args = ap.parse_args()
    tmp = None
    if args.out is None:
        tmp = tempfile.mkdtemp(prefix="bench_prepare-")
        out = Path(tmp) / "ds"
    else:
        out = Path(args.out)
    try:
        c0, t0 = cpu_seconds(), time.perf_counter()
        result = prepare(args.sources, out, workers=args.workers, force=args.out is not None, progress=False,
                         limit=args.limit)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    s = result.summary
    print(f"sources: {' '.join(args.sources)}  workers: {args.workers}")
    print(f"wall {wall:.1f} s, cpu {cpu:.1f} s")
    print(f"{s['files']['read']} files ({s['files']['read'] / wall:.0f}/s), {s['games_read']} games "
          f"({s['games_read'] / wall:.0f} games/s), {s['games_accepted']} accepted, {s['games_rejected']} rejected, "
          f"{s['empty_games']} empty, {s['duplicates']} duplicates, {s['unique_games']} unique, {s['plies']} plies")
    for split, c in s["splits"].items():
        print(f"  {split}: {c['games']} games, {c['plies']} plies, +{c['custom_fen_games']} custom-FEN games")
    print(f"  computer: {s['computer']['games']} games, {s['computer']['plies']} plies")


if __name__ == "__main__":
    main()
