"""Mirror ensemble at inference: does averaging the model with its own left-right mirrored view help?

The rules are exactly symmetric under the mirror (files a <-> i), and the default model saw some mirrored games in
training. For every position of the first ``--games`` games of ``--pgn`` (the val split by default: choices are made
there), this script scores the game move with

    P_w(move) = (1 - w) * P(move | history) + w * P(mirror(move) | mirror(history))

for each weight ``w`` in ``--weights`` (``w = 0`` is the plain model, exactly what ``evaluate`` reports), and prints
top-1 over the legal moves, the raw top choice's legality and agreement, and the nll, for all positions and by phase
(``evaluate.phase_of``). Teacher-forced scores only: the mirrored history is one more batched pass per game, so the
cost at inference is two model calls where there was one.

    .venv/bin/python studies/mirror_ensemble.py                       # shipped model, first 150 val games
    .venv/bin/python studies/mirror_ensemble.py --checkpoint runs/leg4/model.pt --games 1287 --json out.json

Move tokenizer only (the default model's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from xiangqi_gpt.model.gpt import mix_logprobs as mix  # noqa: E402  (log((1 - w) P + w P'), for any w in [0, 1])

PHASES = ("opening", "middlegame", "endgame")


def game_logprobs(scorer, history: list[int], n_moves: int):
    """Log-probabilities (n_moves, V) of the token after each prefix ``history[:1 + p]``, as ``evaluate`` computes
    them (same context windows)."""
    import torch

    n_list = [1 + p for p in range(n_moves)]
    starts, windows, which = scorer._windows(n_list, history)
    logp, _ = scorer._forward_windows(windows)
    return torch.stack([logp[which[p], n - 1 - starts[which[p]]] for p, n in enumerate(n_list)])


def measure(checkpoint: str | None, pgn: str, n_games: int, weights: list[float], progress: bool = True) -> dict:
    import torch

    from xiangqi_gpt.rules.board import Board
    from xiangqi_gpt.model.checkpoint import load_model
    from xiangqi_gpt.model.evaluate import GameScorer, phase_of, read_eval_games

    loaded = load_model(checkpoint)
    tok = loaded.tokenizer
    if tok.tokens_per_move != 1:
        raise SystemExit("mirror_ensemble.py: the move tokenizer only")
    model = loaded.model      # load_model built its mirror table (the master <-> mirror start tokens swapped)
    scorer = GameScorer(model, tok)            # scores in the master condition, as evaluate does by default
    mirror = torch.tensor(tok.mirror_table)
    games, _ = read_eval_games(pgn, limit=n_games)
    zero = {"positions": 0, "top1": 0, "top1_raw": 0, "legal": 0, "nll": 0.0}
    sums = {w: {ph: dict(zero) for ph in ("all",) + PHASES} for w in weights}
    t0 = time.perf_counter()
    for gi, game in enumerate(games):
        iccs = [m.iccs() for m in game.moves]
        if not iccs:
            continue
        history = [scorer.start] + tok.encode_moves(iccs)
        board = Board(game.root_fen)
        legal_ids, phases = [], []
        for p, move in enumerate(game.moves):
            legal_ids.append(torch.tensor([tok.move_id(m.iccs()) for m in board.legal_moves()]))
            phases.append(phase_of(board, p))
            board.push(move)
        with torch.inference_mode():
            plain = game_logprobs(scorer, history, len(iccs))
            mirrored = game_logprobs(scorer, model.mirror_ids(history), len(iccs))[:, mirror]
        for w in weights:
            lp = mix(plain, mirrored, w)
            best = lp.argmax(dim=-1).tolist()
            for p in range(len(iccs)):
                human, ids = history[p + 1], legal_ids[p]
                row = lp[p]
                top1 = int(ids[int(row[ids].argmax())]) == human
                for key in ("all", phases[p]):
                    s = sums[w][key]
                    s["positions"] += 1
                    s["top1"] += top1
                    s["top1_raw"] += best[p] == human
                    s["legal"] += bool((ids == best[p]).any())
                    s["nll"] -= float(row[human])
        if progress and (gi + 1) % 50 == 0:
            print(f"  {gi + 1}/{len(games)} games, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = []
    for w in weights:
        row = {"weight": w}
        for key, s in sums[w].items():
            n = s["positions"] or 1
            row[key] = {"positions": s["positions"], "top1": s["top1"] / n, "top1_raw": s["top1_raw"] / n,
                        "legal_rate": s["legal"] / n, "nll": s["nll"] / n}
        rows.append(row)
    return {"checkpoint": checkpoint or "xiangqi_gpt/checkpoints/default.pt", "pgn": pgn,
            "games": len(games), "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def table(result: dict) -> str:
    lines = ["| w | top1 | top1_raw | legal_rate | nll | opening top1 | middlegame top1 | endgame top1 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        a = r["all"]
        lines.append(f"| {r['weight']:g} | {a['top1']:.2%} | {a['top1_raw']:.2%} | {a['legal_rate']:.2%} | "
                     f"{a['nll']:.3f} | " + " | ".join(f"{r[ph]['top1']:.2%}" for ph in PHASES) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--pgn", default=str(ROOT / "data" / "ccpd" / "val.pgn"), help="games (default: the val split)")
    ap.add_argument("--games", type=int, default=150, help="first N games (default 150)")
    ap.add_argument("--weights", default="0,0.15,0.25,0.35,0.5", help="mirror weights w, comma-separated")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    try:
        weights = [float(x) for x in args.weights.split(",")]
    except ValueError:
        ap.error(f"--weights: numbers between 0 and 1, comma-separated, got {args.weights!r}")
    if any(not 0 <= w <= 1 for w in weights):
        ap.error(f"--weights: each weight must lie in [0, 1], got {args.weights!r}")
    if not Path(args.pgn).exists():
        ap.error(f"{args.pgn}: no such file (python -m xiangqi_gpt prepare ... --out data/ccpd makes the val split)")
    import torch

    torch.set_num_threads(1)
    result = measure(args.checkpoint, args.pgn, args.games, weights)
    print(f"{result['games']} games of {args.pgn}, {result['rows'][0]['all']['positions']} positions, "
          f"{result['seconds']} s")
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
