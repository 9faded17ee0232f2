"""Does the GPT know who is winning? A linear value probe on its frozen final vectors, against material.

Issue 16 asks whether the GPT can add strength through a value output (the game's result from each position). This
study answers the cheap half first: for every position of the first ``--games`` games of each source's train
split, it reads the model's final vector (after the position's last move, in the source's own condition) and the
material balance (``search.material``, the search's own evaluation without square terms), and fits three
multinomial logistic regressions to the result for the side to move (loss / draw / win):

- ``prior``: no features (the class frequencies);
- ``material``: the material balance (for the side to move, in pawns) and whose turn it is;
- ``gpt``: the model's final vector;
- ``gpt+material``: both.

It reports the log loss (nats) and accuracy of each on the val split of each source. A value output is worth
wiring into the search only if ``gpt+material`` beats ``material`` clearly.

    .venv/bin/python studies/value_probe.py --checkpoint runs/eval/leg7_plain.pt --games 3000 --json out.json

``--export OUT`` writes the model file again with a value head (``config.value_head``; the model's other weights
and its mirror-ensemble weight unchanged): what the search's ``value_cp`` option reads. ``--head residual`` (the
default) takes the model-vector part of the ``gpt+material`` fit, i.e. what the model knows of the result beyond
the material the search already counts; ``--head plain`` the ``gpt`` fit.

Needs the prepared splits (``data/ccpd`` with its ``engine`` subset; ``data/search`` if present, ``--search``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULT_TOKENS = {"<red_win>": 1, "<black_win>": -1, "<draw>": 0}


def source_games(data_dir: Path, split: str, limit: int):
    """(move ids, red's result +1/0/-1) of the first ``limit`` games of a prepared split."""
    import numpy as np

    from xiangqi_gpt.model.datamodule import load_game_offsets, load_tokens
    from xiangqi_gpt.data.tokenizer import get_tokenizer

    tok = get_tokenizer("move")
    names = tok.decode_tokens(range(5))
    results = {i: RESULT_TOKENS[n] for i, n in enumerate(names) if n in RESULT_TOKENS}
    tokens = load_tokens(data_dir, "move", split)
    starts = load_game_offsets(data_dir, "move", split, len(tokens))
    ends = list(starts[1:]) + [len(tokens)]
    out = []
    for s, e in zip(starts[:limit], ends[:limit]):
        game = np.asarray(tokens[s:e], dtype=np.int64)
        if len(game) < 3 or int(game[-1]) not in results:
            continue
        out.append((game[1:-1].tolist(), results[int(game[-1])]))
    return out


def features(model, games, source: str, block: int):
    """Per position (after 0..n-1 moves, within the first window): final vector, material for the side to move
    (pawns), side-to-move sign, target class (0 loss, 1 draw, 2 win for the side to move)."""
    import torch

    from xiangqi_gpt.data.tokenizer import get_tokenizer
    from xiangqi_gpt.play.search import material
    from xiangqi_gpt.rules.board import Board, Move

    tok = get_tokenizer("move")
    start = model.start_id(source)
    H, M, S, Y = [], [], [], []
    for moves, red_result in games:
        ids = [start] + moves[:block - 1]
        with torch.inference_mode():
            h, _ = model.forward_tokens(torch.tensor([ids]))
        h = h[0].float()
        board = Board()
        mats = []
        for t in range(len(ids)):
            if t:
                board.push(Move.from_iccs(tok.decode_moves([ids[t]])[0]), validate=False)
            mats.append(material(board))
        for t, mat in enumerate(mats):
            red_to_move = t % 2 == 0
            sign = 1 if red_to_move else -1
            M.append(sign * mat / 100.0)
            S.append(sign)
            Y.append(1 + sign * red_result)
        H.append(h)
    return torch.cat(H), torch.tensor(M), torch.tensor(S, dtype=torch.float32), torch.tensor(Y)


def fit(x, y, steps: int = 300):
    """Multinomial logistic regression by L-BFGS (a small L2 penalty); returns the fitted linear layer."""
    import torch

    lin = torch.nn.Linear(x.size(1), 3) if x.size(1) else None
    if lin is None:
        return None
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x), y) + 1e-4 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def design(kind: str, h, m, s):
    import torch

    n = m.size(0)
    parts = {"prior": [], "material": [m[:, None], torch.tanh(m[:, None] / 4), s[:, None]],
             "gpt": [h], "gpt+material": [h, m[:, None], torch.tanh(m[:, None] / 4), s[:, None]]}[kind]
    return torch.cat(parts, 1) if parts else torch.zeros(n, 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data", default="data/ccpd")
    ap.add_argument("--games", type=int, default=2000, help="train games per source (val: a quarter of it)")
    ap.add_argument("--search", default="data/search", help="the search's own games, prepared (used if present)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--export", default=None, metavar="OUT", help="write the model with a value head")
    ap.add_argument("--head", choices=("residual", "plain"), default="residual",
                    help="the value head written by --export (default residual: beyond material)")
    args = ap.parse_args(argv)

    import torch

    from xiangqi_gpt.model.checkpoint import load_model

    torch.set_num_threads(1)
    model = load_model(args.checkpoint).model
    model.mirror_weight = 0.0
    data = Path(args.data)
    sources = {"master": data, "engine": data / "engine"}
    if (Path(args.search) / "move/train.bin").is_file():
        sources["search"] = Path(args.search)
    block = model.config.block_size
    t0 = time.perf_counter()
    train, val = {}, {}
    for name, d in sources.items():
        train[name] = features(model, source_games(d, "train", args.games), name, block)
        val[name] = features(model, source_games(d, "val", max(50, args.games // 4)), name, block)
        print(f"{name}: {train[name][0].size(0):,} train and {val[name][0].size(0):,} val positions "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    h = torch.cat([train[k][0] for k in train])
    m = torch.cat([train[k][1] for k in train])
    s = torch.cat([train[k][2] for k in train])
    y = torch.cat([train[k][3] for k in train])
    report = {"checkpoint": args.checkpoint or "default", "games": args.games, "results": {}}
    heads = {}
    print(f"\n| probe | " + " | ".join(f"{k} val log loss / acc" for k in val) + " |")
    print("|---|" + "---:|" * len(val))
    for kind in ("prior", "material", "gpt", "gpt+material"):
        x = design(kind, h, m, s)
        lin = heads[kind] = fit(x, y)
        row = {}
        for k, (vh, vm, vs, vy) in val.items():
            vx = design(kind, vh, vm, vs)
            if lin is None:
                counts = torch.bincount(y, minlength=3).float()
                logits = (counts / counts.sum()).log().expand(vy.size(0), 3)
            else:
                with torch.no_grad():
                    logits = lin(vx)
            loss = torch.nn.functional.cross_entropy(logits, vy).item()
            acc = (logits.argmax(1) == vy).float().mean().item()
            row[k] = {"log_loss": round(loss, 4), "acc": round(acc, 4), "positions": int(vy.size(0))}
        report["results"][kind] = row
        print(f"| {kind} | " + " | ".join(f"{r['log_loss']:.4f} / {100 * r['acc']:.1f}%" for r in row.values())
              + " |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.export:
        if args.head == "plain":
            head = heads["gpt"]
        else:                           # the model-vector columns of the joint fit (the material ones are last)
            joint = heads["gpt+material"]
            head = torch.nn.Linear(h.size(1), 3)
            with torch.no_grad():
                head.weight.copy_(joint.weight[:, :h.size(1)])
                head.bias.copy_(joint.bias)
        export(args.checkpoint, head, args.export, report, args.head)
        print(f"model with its value head written to {args.export}")
    return 0


def export(checkpoint, head, out: str, report: dict, kind: str) -> None:
    """The model file of ``checkpoint`` again, with ``head`` (final vector -> loss/draw/win) as its value head."""
    import dataclasses

    import torch

    from xiangqi_gpt.model.checkpoint import load_model, model_payload
    from xiangqi_gpt.model.gpt import GPT

    loaded = load_model(checkpoint)
    src = loaded.model
    model = GPT(dataclasses.replace(src.config, value_head=True))
    state = {k: v for k, v in src.state_dict().items()}
    state["value_head.weight"] = head.weight.detach().clone()
    state["value_head.bias"] = head.bias.detach().clone()
    model.load_state_dict(state, strict=True)
    info = {k: v for k, v in loaded.info.items() if k != "dtype"}
    info["value_probe"] = {"games_per_source": report["games"], "head": kind,
                           "val": report["results"]["gpt" if kind == "plain" else "gpt+material"]}
    torch.save(model_payload(model, info=info), out)


if __name__ == "__main__":
    raise SystemExit(main())
