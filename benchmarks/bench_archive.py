"""Reading speed of XQF files against the same games as PGN files.

    .venv/bin/python benchmarks/bench_archive.py [--games 1000] [--version 18] [--prepare]

Takes the first N games of ``../shared/data/engine_fsf_selfplay.pgn.xz``, writes each one as an XQF file
(:func:`xiangqi_gpt.records.xqf.encode_xqf`, encrypted unless ``--version 10``) and as a one-game PGN file in ICCS and in
Chinese notation, into a temporary folder. Then reads each folder with :func:`xiangqi_gpt.records.archive.read_game_file`
(the reader ``prepare`` uses) and prints the times side by side, best of ``--repeat`` runs. ``--prepare`` also
times ``prepare`` itself on the XQF and the Chinese PGN folder (one worker).
"""

from __future__ import annotations

import argparse
import io
import lzma
import os
import tempfile
import time
from pathlib import Path

from xiangqi_gpt.records.archive import read_game_file
from xiangqi_gpt.records.pgn import Game, read_games, write_game
from xiangqi_gpt.records.xqf import encode_xqf

ROOT = Path(__file__).resolve().parents[1]

SOURCE = ROOT.parent / "shared" / "data" / "engine_fsf_selfplay.pgn.xz"


def load_games(n: int) -> list[Game]:
    games = []
    with lzma.open(SOURCE, "rb") as f:
        for item in read_games(io.BufferedReader(f), name=str(SOURCE)):
            if isinstance(item, Game):
                games.append(item)
                if len(games) == n:
                    break
    return games


def read_folder(folder: Path) -> tuple[float, int, int]:
    """(seconds, games, plies) to read every file of ``folder``."""
    start = time.perf_counter()
    games = plies = 0
    for name in sorted(os.listdir(folder)):
        found, problems = read_game_file(folder / name)
        assert not problems, problems
        games += len(found)
        plies += sum(len(g.moves) for g in found)
    return time.perf_counter() - start, games, plies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=1000)
    ap.add_argument("--version", type=int, default=18, help="XQF version to write (10: plain, 11+: encrypted)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prepare", action="store_true", help="also time prepare on the XQF and Chinese PGN folders")
    args = ap.parse_args()
    games = load_games(args.games)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {kind: Path(tmp) / kind for kind in ("xqf", "pgn-iccs", "pgn-chinese")}
        for folder in folders.values():
            folder.mkdir()
        for i, game in enumerate(games):
            (folders["xqf"] / f"{i:05d}.xqf").write_bytes(encode_xqf(game, args.version, seed=i))
            (folders["pgn-iccs"] / f"{i:05d}.pgn").write_text(write_game(game, "iccs"), encoding="utf-8")
            (folders["pgn-chinese"] / f"{i:05d}.pgn").write_text(write_game(game, "chinese"), encoding="utf-8")
        size = {k: sum(p.stat().st_size for p in f.iterdir()) for k, f in folders.items()}
        print(f"{len(games)} games, {sum(len(g.moves) for g in games)} plies; XQF version {args.version}")
        times = {}
        for kind, folder in folders.items():
            best = None
            for _ in range(args.repeat):
                seconds, n, plies = read_folder(folder)
                assert n == len(games)
                best = seconds if best is None else min(best, seconds)
            times[kind] = best
        print(f"{'files':<14}{'bytes':>10}{'read s':>9}{'games/s':>10}{'vs PGN (Chinese)':>18}{'vs PGN (ICCS)':>15}")
        for kind, seconds in times.items():
            print(f"{kind:<14}{size[kind]:>10}{seconds:>9.2f}{len(games) / seconds:>10.0f}"
                  f"{seconds / times['pgn-chinese']:>17.2f}x{seconds / times['pgn-iccs']:>14.2f}x")
        if args.prepare:
            from xiangqi_gpt.data.prepare import prepare

            for kind in ("xqf", "pgn-chinese"):
                start = time.perf_counter()
                prepare([str(folders[kind])], Path(tmp) / f"out-{kind}", workers=1, progress=False,
                        warn=lambda _: None)
                print(f"prepare {kind}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
