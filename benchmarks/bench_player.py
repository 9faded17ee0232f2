"""Time GPTPlayer's reply (score every legal move, renormalise, choose) at a long game history.

    .venv/bin/python benchmarks/bench_player.py [--plies 200] [--reps 20] [--threads 1] [--checkpoint FILE]

Without ``--checkpoint`` it builds randomly initialised models of the default GPTConfig size (4 layers, 4 heads,
256 wide) for both tokenizers (block_size 256 for ``move``, 1024 for ``char``); timing does not depend on the
weights. For each it prints median/min milliseconds over ``--reps`` positions of a random legal game, at about
``--plies`` plies of history:

  cold      a new player (empty KV cache) per position, ``choose``: the whole history window is run (an engine
            asked about a position out of the blue)
  cold raw  then ``raw_move`` on the same board (the unconstrained greedy move; reuses the history cache)
  warm      one player following the game, ``move_probs`` + ``choose`` after every second ply (its cache already
            holds the history up to two plies ago: what a game against the model pays per reply)
  warm raw  then ``raw_move`` (char: 4 greedy steps over the cache)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from types import SimpleNamespace

import torch  # noqa: E402

from xiangqi_gpt.rules.board import Board  # noqa: E402
from xiangqi_gpt.model.gpt import GPT, GPTConfig  # noqa: E402
from xiangqi_gpt.play.player import GPTPlayer  # noqa: E402


def random_board(plies: int, seed: int = 0) -> Board:
    rng = random.Random(seed)
    while True:
        board = Board()
        while board.ply < plies and board.outcome() is None:
            board.push(rng.choice(board.legal_moves()))
        if board.ply == plies:
            return board
        seed += 1
        rng = random.Random(seed)


def stats(times: list[float]) -> str:
    return f"{1000 * statistics.median(times):7.1f} / {1000 * min(times):6.1f}"


def bench(loaded, plies: int, reps: int) -> dict[str, str]:
    end = random_board(plies + 2 * reps, seed=plies)
    moves = end.move_stack
    boards = []
    for k in range(reps):
        b = Board()
        for m in moves[:plies + 2 * k]:
            b.push(m)
        boards.append(b)
    cold, cold_raw = [], []
    for b in boards:
        player = GPTPlayer(loaded)
        t = time.perf_counter()
        player.choose(b)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        player.raw_move(b)
        cold_raw.append(time.perf_counter() - t)
    player = GPTPlayer(loaded)
    player.choose(boards[0])
    player.raw_move(boards[0])
    warm, raw = [], []
    for b in boards[1:]:
        t = time.perf_counter()
        player.move_probs(b)
        player.choose(b)
        warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        player.raw_move(b)
        raw.append(time.perf_counter() - t)
    return {"cold": stats(cold), "cold raw": stats(cold_raw), "warm": stats(warm), "warm raw": stats(raw)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plies", type=int, default=200)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from xiangqi_gpt.model.checkpoint import load_model

        models = [load_model(args.checkpoint)]
    else:
        models = []
        for tok, block in (("move", 256), ("char", 1024)):
            torch.manual_seed(0)
            model = GPT(GPTConfig(tokenizer=tok, block_size=block)).eval()
            models.append(SimpleNamespace(model=model, tokenizer=model.tokenizer, info={}))
    print(f"GPTPlayer reply at ~{args.plies} plies, {args.threads} thread(s): median / min ms over {args.reps}")
    cols = ("cold", "cold raw", "warm", "warm raw")
    print(f"{'model':36} " + " ".join(f"{c:>16}" for c in cols))
    for loaded in models:
        c = loaded.model.config
        name = f"{c.tokenizer} L{c.n_layer} H{c.n_head} E{c.n_embd} block {c.block_size}"
        r = bench(loaded, args.plies, args.reps)
        print(f"{name:36} " + " ".join(f"{r[c]:>16}" for c in cols))


if __name__ == "__main__":
    main()
