"""Time the GPT's move answer at a long history, for a few model sizes and both tokenizers.

    .venv/bin/python benchmarks/bench_model.py [--plies 200] [--candidates 40] [--threads 2] [--reps 30]

For each size and tokenizer it prints the median milliseconds of
  next_logprobs  the next-token distribution after a ``--plies`` history, computed from scratch;
  score cold     ``score_candidates`` for ``--candidates`` moves after that history, from scratch (no cache);
  score warm     the same through consecutive positions of one game (2 plies apart, ending at ``--plies``) with
                 one KVCache for the game, as a player keeping a cache per game pays per move.
Each time is printed as median/min over ``--reps`` calls (the min shows the cost without other load).
Random weights: timing does not depend on what the model learned.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch  # noqa: E402

from xiangqi_gpt.model.gpt import GPT, GPTConfig, KVCache  # noqa: E402
from xiangqi_gpt.data.tokenizer import get_tokenizer  # noqa: E402

SIZES = "4x192,4x256,6x256,8x384"  # n_layer x n_embd, with heads of 64 dims


def timed_ms(fn, reps: int, setup=None) -> str:
    """"median/min" milliseconds over ``reps`` calls after 3 warm-up calls (min shows the uncontended cost)."""
    times = []
    for i in range(reps + 3):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        fn(arg)
        if i >= 3:  # warm-up
            times.append((time.perf_counter() - t0) * 1000)
    return f"{statistics.median(times):.2f}/{min(times):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plies", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--sizes", default=SIZES, help=f"comma-separated LAYERSxEMBD (default {SIZES})")
    ap.add_argument("--tokenizers", default="move,char")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}; history {args.plies} plies, {args.candidates} candidates, "
          f"block_size {args.block_size}, median of {args.reps}")
    print(f"{'tokenizer':9} {'layers':>6} {'embd':>5} {'params':>9} {'hist tok':>8} {'window':>6} "
          f"{'next_logprobs':>14} {'score cold':>14} {'score warm':>14}   (ms, median/min)")
    g = torch.Generator().manual_seed(0)
    moves = get_tokenizer("move").tokens[5:]
    pick = lambda k: [moves[i] for i in torch.randint(0, len(moves), (k,), generator=g).tolist()]
    game = pick(args.plies)
    cands = pick(args.candidates)
    for size in args.sizes.split(","):
        n_layer, n_embd = (int(v) for v in size.lower().split("x"))
        n_head = max(1, n_embd // 64) if n_embd % 64 == 0 else 4
        for name in args.tokenizers.split(","):
            tok = get_tokenizer(name)
            torch.manual_seed(0)
            model = GPT(GPTConfig(block_size=args.block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                  tokenizer=name)).eval()
            history = [0] + tok.encode_moves(game)
            candidates = [tok.move_ids(m) for m in cands]

            nl = timed_ms(lambda _: model.next_logprobs(history), args.reps)
            cold = timed_ms(lambda _: model.score_candidates(history, candidates), args.reps)
            # warm: one cache through consecutive positions of one game (2 plies apart, ending at --plies), as a
            # player keeping one KVCache per game sees them; a window jump (every window_hop tokens) costs a rebuild
            positions = iter(range(args.plies - 2 * (args.reps + 2), args.plies + 1, 2))
            cache = KVCache()
            game_history = lambda: [0] + tok.encode_moves(game[:next(positions)])
            warm = timed_ms(lambda h: model.score_candidates(h, candidates, cache=cache), args.reps, game_history)
            window = len(history) - model.context_start(len(history), tok.tokens_per_move - 1)
            print(f"{name:9} {n_layer:>6} {n_embd:>5} {model.num_params():>9,} {len(history):>8} {window:>6} "
                  f"{nl:>14} {cold:>14} {warm:>14}", flush=True)


if __name__ == "__main__":
    main()
