"""Move-notation speed: ``parse_move`` and the writers on real records.

    .venv/bin/python benchmarks/bench_notation.py [--games 1000] [--reps 3]

Reads the first ``--games`` Big5 records of ``../shared/data/ccpd.tar.xz`` (traditional Chinese moves; without the
archive it plays random games and writes them in Chinese itself), replays them once to collect (position, text)
pairs, then times, per notation, a call of ``parse_move`` on every ply with the notation auto-detected (the way a
PGN reader calls it), and a call of each writer. Prints moves per second, best of ``--reps`` runs; the text cache is
warm after the first run, as it is over a long corpus. Each run replays the game with the engine's internal
make/unmake, which is not counted.
"""

from __future__ import annotations

import argparse
import random
import re
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from xiangqi_gpt.rules.board import Board  # noqa: E402
from xiangqi_gpt.errors import XiangqiError  # noqa: E402
from xiangqi_gpt.rules.notation import format_move, move_to_chinese, move_to_wxf, parse_move  # noqa: E402

CCPD = ROOT.parent / "shared" / "data" / "ccpd.tar.xz"
SKIP = re.compile(r"\d+\.|1-0|0-1|1/2-1/2|\*")


def ccpd_games(n: int):
    """(root fen, [chinese texts]) of the first ``n`` records that replay without error."""
    out = []
    with tarfile.open(CCPD, "r:xz") as tar:
        for member in tar:
            if not member.name.endswith(".pgn"):
                continue
            text = tar.extractfile(member).read().decode("big5", "replace")
            fen = re.search(r'\[FEN "([^"]*)"\]', text)
            tokens = [t for line in text.splitlines() if not line.startswith("[") for t in line.split()
                      if not SKIP.fullmatch(t)]
            try:
                board = Board(fen.group(1)) if fen else Board()
                for t in tokens:
                    board.push(parse_move(board, t))
            except XiangqiError:
                continue
            out.append((board.root_fen(), tokens))
            if len(out) == n:
                break
    return out


def random_games(n: int, plies: int = 80):
    rng = random.Random(0)
    out = []
    for _ in range(n):
        board = Board()
        texts = []
        for _ in range(plies):
            moves = board.legal_moves()
            if not moves:
                break
            move = rng.choice(moves)
            texts.append(move_to_chinese(board, move, traditional=True))
            board.push(move)
        out.append((board.root_fen(), texts))
    return out


def run(games, notation: str, reps: int) -> tuple[int, float, float]:
    """(plies, parse moves/s, write moves/s) for ``notation``; texts are re-written from the Chinese record."""
    # (root, [(move int, text)]) with the texts in the wanted notation
    prepared = []
    for fen, texts in games:
        board = Board(fen)
        plies = []
        for t in texts:
            move = parse_move(board, t)
            plies.append((move, t if notation == "chinese" else format_move(board, move, notation)))
            board.make_int(move.to_int())
        prepared.append((fen, plies))
    n = sum(len(p) for _, p in prepared)
    writer = {"chinese": lambda b, m: move_to_chinese(b, m, traditional=True), "wxf": move_to_wxf,
              "iccs": lambda b, m: format_move(b, m, "iccs")}[notation]
    best_parse = best_write = float("inf")
    for _ in range(reps):
        spent_parse = spent_write = 0.0
        for fen, plies in prepared:
            board = Board(fen)
            for move, text in plies:
                t0 = time.perf_counter()
                parsed = parse_move(board, text)
                t1 = time.perf_counter()
                writer(board, move)
                t2 = time.perf_counter()
                spent_parse += t1 - t0
                spent_write += t2 - t1
                assert parsed == move
                board.make_int(move.to_int())
        best_parse, best_write = min(best_parse, spent_parse), min(best_write, spent_write)
    return n, n / best_parse, n / best_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if CCPD.exists():
        games, source = ccpd_games(args.games), f"first {args.games} replayable CCPD records"
    else:
        games, source = random_games(args.games), f"{args.games} random games (no {CCPD})"
    print(f"source: {source}")
    print("| notation | plies | parse_move moves/s | write moves/s |")
    print("|---|---:|---:|---:|")
    for notation in ("chinese", "wxf", "iccs"):
        n, parse_rate, write_rate = run(games, notation, args.reps)
        print(f"| {notation} | {n} | {parse_rate:,.0f} | {write_rate:,.0f} |")


if __name__ == "__main__":
    main()
