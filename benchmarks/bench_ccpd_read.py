"""Read every record of the CCPD archive and check that each file is converted or rejected with a reason.

    .venv/bin/python benchmarks/bench_ccpd_read.py [ARCHIVE] [--workers 2] [--no-replay]

Streams ``../shared/data/ccpd.tar.xz`` (Big5, traditional Chinese moves), reads each PGN file with
:func:`xiangqi_gpt.records.pgn.read_games`, and replays every game it returns with the validating ``Board.push`` (unless
``--no-replay``), so each file ends up either as legal ICCS move sequences or as rejected games with a reason.
Prints the counts (files with moves, files without moves, rejected files per reason, the share rejected), every
rejected file with its message, and the time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tarfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from xiangqi_gpt.errors import PgnError  # noqa: E402
from xiangqi_gpt.records.pgn import read_games  # noqa: E402

CCPD = ROOT.parent / "shared" / "data" / "ccpd.tar.xz"
REPLAY = True


def check(item: tuple[str, bytes]):
    name, data = item
    games = plies = 0
    errors = []
    for g in read_games(data, name=name):
        if isinstance(g, PgnError):
            errors.append((g.kind, str(g)))
            continue
        if REPLAY:
            g.board()                     # Board.push validates every move again
        games += 1
        plies += len(g.moves)
    return name, games, plies, errors


def members(path: Path):
    with tarfile.open(path, "r|xz") as tar:
        for m in tar:
            if m.isfile() and m.name.lower().endswith(".pgn"):
                yield m.name, tar.extractfile(m).read()


def main() -> None:
    global REPLAY
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive", nargs="?", default=str(CCPD))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-replay", action="store_true", help="do not replay the games with validation")
    args = ap.parse_args()
    REPLAY = not args.no_replay
    t0 = time.perf_counter()
    files = Counter()
    reasons = Counter()
    rejected = []
    total_games = total_plies = 0
    with mp.get_context("fork").Pool(args.workers) as pool:
        for name, games, plies, errors in pool.imap(check, members(Path(args.archive)), chunksize=64):
            files["read"] += 1
            total_games += games
            total_plies += plies
            if errors:
                files["with_moves"] += 1
                files["rejected"] += 1
                for kind, message in errors:
                    reasons[kind] += 1
                    rejected.append(message)
            elif plies:
                files["with_moves"] += 1
            else:
                files["without_moves"] += 1
    wall = time.perf_counter() - t0
    print(f"{files['read']} files: {files['with_moves']} with moves, {files['without_moves']} without moves")
    print(f"{total_games} games converted to legal ICCS ({total_plies} plies), replayed with validation: {REPLAY}")
    share = files["rejected"] / max(1, files["with_moves"])
    print(f"{files['rejected']} files rejected ({100 * share:.3f}% of the files with moves): {dict(reasons)}")
    for message in rejected:
        print("  " + message)
    print(f"{wall:.1f} s, {files['read'] / wall:.0f} files/s, {total_plies / wall:.0f} plies/s")


if __name__ == "__main__":
    main()
