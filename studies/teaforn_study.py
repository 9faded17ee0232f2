"""TeaForN study: teacher forcing vs TeaForN (N = 2, 3; uniform and decay level weights), at equal optimizer steps
and at equal training compute, over several seeds; plus one `move` vs `char` tokenizer comparison.

    .venv/bin/python studies/teaforn_study.py [--steps 300] [--seeds 1,2] [--games 20] [--eval-games 300]
    .venv/bin/python studies/teaforn_study.py --report-only        # rebuild docs/study.* from finished runs
    .venv/bin/python studies/teaforn_study.py --dry-run            # print every command, run nothing

Every run goes through the project's own command lines, one process at a time::

    python train.py --data DIR ... --out runs/study/ROW-sSEED                   (shortcut front of train.py)
    python -m xiangqi_gpt export RUN/checkpoints/last.ckpt --out RUN/model.pt --fp32
    python -m xiangqi_gpt evaluate --checkpoint RUN/model.pt --pgn DIR/test.pgn --limit G --json RUN/eval.json
    python -m xiangqi_gpt arena --checkpoint RUN/model.pt --opponent random --games N --json RUN/arena-random.json
    python -m xiangqi_gpt arena --checkpoint RUN/model.pt --opponent fairy-stockfish --depth 1 --games N ...

The final checkpoint (``last.ckpt``, step = max_steps) is evaluated, so equal-step rows really are equal steps.
A step whose output already exists is skipped, so an interrupted study resumes where it stopped (a training run
without its ``train.json`` record is started again from scratch).

Rows (S = --steps):

``tf``                  teacher forcing, S steps (the equal-steps baseline)
``teaforn-n2-uniform``  TeaForN N=2, lambda = 1, 1, S steps;    ``teaforn-n2-decay``  lambda = 1, 0.5
``teaforn-n3-uniform``  TeaForN N=3, lambda = 1, 1, 1, S steps; ``teaforn-n3-decay``  lambda = 1, 0.5, 0.25
``tf-2x`` / ``tf-3x``   teacher forcing, 2S / 3S steps: the same training compute as N=2 / N=3 (a TeaForN step
                        runs the decoder N times; the measured step-time ratios are in the report)
``char-tf``             teacher forcing with the ``char`` tokenizer, S steps, 4x the block (the same moves per
                        window and per batch as ``tf``), first seed only

Writes ``RUN/train.json`` per run, and ``--docs`` DIR/study.json (every number), DIR/study.md (tables and the
exact commands) and DIR/study.png.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

from study_runs import ROOT, read_metrics, run_grid, run_steps, show

FREE_RUN_KS = ("1", "2", "4", "8", "16")
EVAL_METRICS = ("top1", "top5", "top1_raw", "legal_rate", "nll")


def row_specs(steps: int, seeds: list[int]) -> list[dict]:
    """The study's rows: name, label, steps, train.py flags, seeds, and the nominal cost of one step in teacher-forcing
    steps (a TeaForN step runs the decoder N times; None: measure it, as for the char tokenizer's longer windows)."""
    tf = {"objective": "tf"}

    def teaforn(n, weights):
        return {"objective": "teaforn", "teaforn-n": n, "teaforn-weights": weights}

    return [
        {"name": "tf", "label": "TF", "steps": steps, "flags": tf, "seeds": seeds, "step_cost": 1},
        {"name": "teaforn-n2-uniform", "label": "TeaForN N=2 uniform", "steps": steps,
         "flags": teaforn(2, "uniform"), "seeds": seeds, "step_cost": 2},
        {"name": "teaforn-n2-decay", "label": "TeaForN N=2 decay", "steps": steps,
         "flags": teaforn(2, "decay"), "seeds": seeds, "step_cost": 2},
        {"name": "teaforn-n3-uniform", "label": "TeaForN N=3 uniform", "steps": steps,
         "flags": teaforn(3, "uniform"), "seeds": seeds, "step_cost": 3},
        {"name": "teaforn-n3-decay", "label": "TeaForN N=3 decay", "steps": steps,
         "flags": teaforn(3, "decay"), "seeds": seeds, "step_cost": 3},
        {"name": "tf-2x", "label": "TF, 2x steps", "steps": 2 * steps, "flags": tf, "seeds": seeds, "step_cost": 1},
        {"name": "tf-3x", "label": "TF, 3x steps", "steps": 3 * steps, "flags": tf, "seeds": seeds, "step_cost": 1},
        {"name": "char-tf", "label": "TF, char tokenizer", "steps": steps, "flags": {"objective": "tf", "char": True},
         "seeds": seeds[:1], "step_cost": None},
    ]


# --------------------------------------------------------------------------------------------------------------------
# Commands


def train_command(args, row: dict, seed: int, run_dir: str) -> list[str]:
    flags = row["flags"]
    char = flags.get("char", False)
    block = args.block * (4 if char else 1)
    val_every = max(1, args.steps // args.val_points)
    cmd = ["python", "train.py", "--data", args.data, "--out", run_dir,
           "--tokenizer", "char" if char else "move",
           "--n-layer", str(args.n_layer), "--n-head", str(args.n_head), "--n-embd", str(args.n_embd),
           "--block-size", str(block), "--batch-size", str(args.batch), "--dropout", "0.0",
           "--lr", str(args.lr), "--warmup-steps", str(args.warmup), "--min-lr-ratio", "0.1",
           "--mirror", "0.5", "--game-start-p", "0.5", "--val-windows", str(args.val_windows),
           "--max-steps", str(row["steps"]), "--val-every", str(val_every), "--precision", "32-true",
           "--objective", flags["objective"]]
    if flags["objective"] == "teaforn":
        cmd += ["--teaforn-n", str(flags["teaforn-n"]), "--teaforn-weights", flags["teaforn-weights"]]
    cmd += ["--seed", str(seed), "--threads", str(args.threads),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    return cmd


def eval_commands(args, run_dir: str) -> dict[str, list[str]]:
    model = f"{run_dir}/model.pt"
    pgn = f"{args.data}/test.pgn"
    arena = ["python", "-m", "xiangqi_gpt", "arena", "--checkpoint", model, "--games", str(args.games),
             "--seed", "0", "--threads", str(args.threads), "--quiet"]
    return {
        "export": ["python", "-m", "xiangqi_gpt", "export", f"{run_dir}/checkpoints/last.ckpt", "--out", model,
                   "--fp32"],
        "evaluate": ["python", "-m", "xiangqi_gpt", "evaluate", "--checkpoint", model, "--pgn", pgn,
                     "--limit", str(args.eval_games), "--json", f"{run_dir}/eval.json", "--threads",
                     str(args.threads), "--quiet"],
        "arena_random": arena + ["--opponent", "random", "--json", f"{run_dir}/arena-random.json"],
        "arena_fsf": arena + ["--opponent", "fairy-stockfish", "--depth", str(args.depth),
                              "--json", f"{run_dir}/arena-fsf-d{args.depth}.json"],
    }


def outputs(args, run_dir: str) -> dict[str, str]:
    return {"export": f"{run_dir}/model.pt", "evaluate": f"{run_dir}/eval.json",
            "arena_random": f"{run_dir}/arena-random.json", "arena_fsf": f"{run_dir}/arena-fsf-d{args.depth}.json"}


# --------------------------------------------------------------------------------------------------------------------
# Running one (row, seed)


def run_one(args, row: dict, seed: int) -> dict:
    run_dir = f"{args.out}/{row['name']}-s{seed}"
    path = ROOT / run_dir
    log_path = ROOT / args.out / f"{row['name']}-s{seed}.log"
    cmd = train_command(args, row, seed, run_dir)
    evals = eval_commands(args, run_dir)

    def train_record(seconds: float) -> dict:
        series = read_metrics(path / "metrics.csv")
        tps = [v for _, v in series.get("train/tokens_per_sec", [])]
        tokens_per_step = args.batch * args.block * (4 if row["flags"].get("char") else 1)
        return {"row": row["name"], "seed": seed, "steps": row["steps"], "train_seconds": round(seconds, 1),
                "tokens_per_step": tokens_per_step,
                "ms_per_step": round(1000 * tokens_per_step / statistics.median(tps), 1) if tps else None,
                "tokens_per_sec_median": round(statistics.median(tps), 1) if tps else None,
                "command": show(cmd)}

    record = run_steps(args, run_dir, log_path, cmd, evals, outputs(args, run_dir), train_record, indent=2)
    if record is None:
        return {}
    series = read_metrics(path / "metrics.csv")
    record["commands"] = {"train": show(cmd), **{k: show(v) for k, v in evals.items()}}
    record["val_curve"] = {k: series[k] for k in series if k.startswith("val/")}
    record["eval"] = json.loads((path / "eval.json").read_text())
    record["eval"].pop("by_ply", None)
    for key, name in (("arena_random", "arena-random.json"), ("arena_fsf", f"arena-fsf-d{args.depth}.json")):
        rep = json.loads((path / name).read_text())
        record[key] = {k: rep[k] for k in ("wins", "draws", "losses", "score", "average_length",
                                           "illegal_attempts", "terminations", "opponent")}
    return record


# --------------------------------------------------------------------------------------------------------------------
# Summaries


def flat_metrics(record: dict) -> dict[str, float]:
    """One run's numbers, flat: every evaluate metric, the arena scores, val accuracy, time."""
    ev = record["eval"]
    m = {k: ev[k] for k in EVAL_METRICS}
    for k in FREE_RUN_KS:
        m[f"free_legal@{k}"] = ev["free_run"]["legal"][k]
        m[f"free_match@{k}"] = ev["free_run"]["match"][k]
    m["arena_random"] = record["arena_random"]["score"]
    m["arena_fsf"] = record["arena_fsf"]["score"]
    m["arena_illegal_rate"] = (record["arena_random"]["illegal_attempts"]["rate"]
                               + record["arena_fsf"]["illegal_attempts"]["rate"]) / 2
    val = record["val_curve"]
    m["val_acc"] = val["val/acc"][-1][1]
    m["val_loss"] = val["val/loss"][-1][1]
    m["train_seconds"] = record["train_seconds"]
    m["tokens_per_sec"] = record["tokens_per_sec_median"]
    m["ms_per_step"] = record["ms_per_step"]
    return m


def aggregate(rows: list[dict], records: dict) -> dict:
    """Per row: mean, half-range and the per-seed values of every flat metric."""
    out = {}
    for row in rows:
        runs = [records[(row["name"], s)] for s in row["seeds"] if records.get((row["name"], s))]
        if not runs:
            continue
        flats = [flat_metrics(r) for r in runs]
        agg = {}
        for key in flats[0]:
            vals = [f[key] for f in flats if f[key] is not None]
            if vals:
                agg[key] = {"mean": statistics.fmean(vals), "half_range": (max(vals) - min(vals)) / 2,
                            "values": vals}
        out[row["name"]] = {"label": row["label"], "steps": row["steps"], "seeds": [r["seed"] for r in runs],
                            "metrics": agg}
    return out


def step_time_ratios(agg: dict) -> dict[str, float]:
    """Seconds per step relative to the ``tf`` row (from the median tokens/s of each run's training log)."""
    base = agg.get("tf", {}).get("metrics", {}).get("ms_per_step")
    if not base:
        return {}
    return {name: a["metrics"]["ms_per_step"]["mean"] / base["mean"] for name, a in agg.items()
            if "ms_per_step" in a["metrics"]}


def pct(cell: dict | None, scale=100.0, digits=1) -> str:
    if cell is None:
        return "-"
    mean, half = cell["mean"] * scale, cell["half_range"] * scale
    return f"{mean:.{digits}f} ±{half:.{digits}f}" if len(cell["values"]) > 1 else f"{mean:.{digits}f}"


def tables(agg: dict, rows: list[dict], ratios: dict) -> str:
    names = [r["name"] for r in rows if r["name"] in agg]
    lines = ["| row | steps | seeds | top1 | top5 | top1_raw | legal_rate | nll | val acc | vs random | "
             "vs FSF d1 | train s | ms/step | step time |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        a, m = agg[n], agg[n]["metrics"]
        ratio = f"{ratios[n]:.2f}x" if n in ratios else "-"
        lines.append(f"| `{n}` | {a['steps']} | {','.join(map(str, a['seeds']))} | {pct(m['top1'])} | "
                     f"{pct(m['top5'])} | {pct(m['top1_raw'])} | {pct(m['legal_rate'])} | "
                     f"{pct(m['nll'], 1, 3)} | {pct(m['val_acc'])} | {pct(m['arena_random'])} | "
                     f"{pct(m['arena_fsf'])} | {pct(m['train_seconds'], 1, 0)} | {pct(m['ms_per_step'], 1, 0)} | "
                     f"{ratio} |")
    lines += ["", "| row | legal@1 | legal@2 | legal@4 | legal@8 | legal@16 | match@1 | match@2 | match@4 | "
              "match@8 | match@16 | arena illegal |", "|---|" + "---:|" * 11]
    for n in names:
        m = agg[n]["metrics"]
        cells = [pct(m[f"free_legal@{k}"]) for k in FREE_RUN_KS] + [pct(m[f"free_match@{k}"]) for k in FREE_RUN_KS]
        cells.append(pct(m["arena_illegal_rate"]))
        lines.append(f"| `{n}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_argv(args) -> list[str]:
    """The command-line arguments that reproduce the study (without --report-only / --dry-run)."""
    return [a for a in args.argv if a not in ("--report-only", "--dry-run")]


def total_minutes(records: dict) -> float:
    return sum(v for r in records.values() for k, v in r.items()
               if k.endswith("_seconds") and isinstance(v, (int, float))) / 60


def markdown(args, rows: list[dict], records: dict, agg: dict, ratios: dict, eval_info: dict) -> str:
    md = ["# TeaForN study", "",
          f"Reproduce: `{shlex.join(['python', 'studies/teaforn_study.py', *study_argv(args)])}` (about "
          f"{total_minutes(records):.0f} minutes of train/evaluate/arena commands on one core of the 2-core machine "
          "shared with other jobs).", "",
          f"Model: {args.n_layer} layers x {args.n_embd} wide ({args.n_head} heads), block {args.block} move tokens, "
          f"batch {args.batch}, AdamW lr {args.lr} (warmup {args.warmup}, cosine to 0.1x), fp32, 1 torch thread, "
          f"mirror 0.5. S = {args.steps} steps. Evaluation: the first {eval_info.get('games')} games of "
          f"`{args.data}/test.pgn` ({eval_info.get('positions')} positions, {eval_info.get('prefixes')} free-run "
          f"prefixes); arena: {args.games} games against each opponent (seed 0: the same openings for every row). "
          "Cells: mean over seeds ±half the range (max-min)/2; percentages except nll (nats/move) and train s "
          "(wall seconds of the train.py command). ms/step: from the median training tokens/s; step time: that relative "
          "to `tf` (the machine is shared, so these are noisy). Free run: legal@k = the first k greedy unconstrained "
          "moves are all legal, match@k = the k-th equals the game's; arena illegal = share of the model's moves in "
          "the arena games whose unconstrained greedy move was illegal (mean of both opponents).",
          "", tables(agg, rows, ratios), "", "## Per-seed values", ""]
    for n, a in agg.items():
        m = a["metrics"]
        keys = ("top1", "legal_rate", "free_legal@4", "val_acc", "arena_random", "arena_fsf", "train_seconds")
        md.append(f"- `{n}`: " + "; ".join(f"{k} " + " / ".join(f"{v:.4g}" for v in m[k]["values"])
                                          for k in keys if k in m))
    md += ["", "## Commands", "",
           "Run from the repository root (`python` = `.venv/bin/python`). Each run, in order:", ""]
    for row in rows:
        for seed in row["seeds"]:
            rec = records.get((row["name"], seed))
            if not rec:
                continue
            md += [f"### `{row['name']}` seed {seed}", "", "```bash", rec["commands"]["train"]]
            md += [rec["commands"][k] for k in ("export", "evaluate", "arena_random", "arena_fsf")]
            md += ["```", ""]
    return "\n".join(md)


def plot(rows: list[dict], records: dict, agg: dict, ratios: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows if r["name"] in agg]
    colors = {n: plt.cm.tab10(i) for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    ax = axes[0]
    for row in rows:
        if row["name"] not in agg:
            continue
        for j, seed in enumerate(row["seeds"]):
            rec = records.get((row["name"], seed))
            if not rec:
                continue
            steps, acc = zip(*rec["val_curve"]["val/acc"])
            cost = row["step_cost"] if row["step_cost"] is not None else ratios.get(row["name"], 1.0)
            x = [s * cost for s in steps]
            ax.plot(x, acc, "o-" if j == 0 else "s--", color=colors[row["name"]], markersize=3,
                    label=row["name"] if j == 0 else None)
    ax.set_xlabel("training compute in TF steps (a TeaForN step = N; char: its measured step time / TF's)")
    ax.set_ylabel("val next-move accuracy (level 1)")
    ax.set_title("val accuracy vs compute (each seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes[1]
    for i, n in enumerate(names):
        m = agg[n]["metrics"]
        for j, key in enumerate(("top1", "top1_raw", "legal_rate")):
            cell = m[key]
            ax.bar(i + (j - 1) * 0.27, cell["mean"], 0.27, color=colors[n], alpha=(1.0, 0.65, 0.35)[j],
                   yerr=cell["half_range"], capsize=2, label=None)
            ax.plot([i + (j - 1) * 0.27] * len(cell["values"]), cell["values"], "k.", markersize=3)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_title("test split: top1 | top1_raw | legal_rate (dark to light)")
    ax.grid(alpha=0.3, axis="y")

    ax = axes[2]
    ks = [int(k) for k in FREE_RUN_KS]
    for n in names:
        m = agg[n]["metrics"]
        ax.errorbar(ks, [m[f"free_legal@{k}"]["mean"] for k in FREE_RUN_KS],
                    yerr=[m[f"free_legal@{k}"]["half_range"] for k in FREE_RUN_KS], marker="o", markersize=3,
                    capsize=2, color=colors[n], label=n)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (greedy unconstrained moves)")
    ax.set_title("free run: first k moves all legal (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/ccpd", help="dataset directory written by `prepare` (relative to root)")
    p.add_argument("--out", default="runs/study", help="run directories go here (relative to the repository root)")
    p.add_argument("--docs", default="docs", help="write study.json, study.md, study.png here")
    p.add_argument("--steps", type=int, default=300, help="S: optimizer steps of the equal-steps rows")
    p.add_argument("--seeds", default="1,2", help="comma-separated seeds")
    p.add_argument("--rows", default=None, help="comma-separated row names to run (default: all)")
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block", type=int, default=128, help="block size in move tokens (char: 4x)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--val-windows", type=int, default=64)
    p.add_argument("--val-points", type=int, default=4, help="validations per S steps")
    p.add_argument("--eval-games", type=int, default=300, help="evaluate on the first N test games")
    p.add_argument("--games", type=int, default=20, help="arena games against each opponent")
    p.add_argument("--depth", type=int, default=1, help="Fairy-Stockfish depth")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true", help="only summarise finished runs")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    args.argv = argv
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = row_specs(args.steps, seeds)
    if args.rows:
        wanted = args.rows.split(",")
        unknown = set(wanted) - {r["name"] for r in rows}
        if unknown:
            p.error(f"unknown rows: {', '.join(sorted(unknown))}")
        run_rows = [r for r in rows if r["name"] in wanted]
    else:
        run_rows = rows
    (ROOT / args.out).mkdir(parents=True, exist_ok=True)
    # seed-major order: a complete first seed of every multi-seed row, then the second seed, then one-seed rows
    order = [(row, seed) for seed in seeds for row in run_rows if len(row["seeds"]) > 1 and seed in row["seeds"]]
    order += [(row, seed) for row in run_rows if len(row["seeds"]) == 1 for seed in row["seeds"]]
    if args.report_only:  # summarise every row that has finished runs
        listed = {(row["name"], seed) for row, seed in order}
        order += [(row, seed) for row in rows for seed in row["seeds"] if (row["name"], seed) not in listed]
    records = run_grid(args, order, run_one)
    if not records:
        return 0 if args.dry_run else 1
    agg = aggregate(rows, records)
    ratios = step_time_ratios(agg)
    first = next(iter(records.values()))["eval"]
    eval_info = {"games": first["games"], "positions": first["positions"],
                 "prefixes": first["free_run"]["prefixes"]}
    docs = ROOT / args.docs
    docs.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("argv",)}
    (docs / "study.json").write_text(json.dumps(
        {"settings": settings, "eval": eval_info, "step_time_ratio": ratios, "rows": agg,
         "runs": [{k: v for k, v in r.items() if k not in ("eval", "command")} | {"eval": {k: r["eval"][k] for k in
                  ("games", "positions", *EVAL_METRICS, "perplexity", "free_run", "phases")}}
                  for r in records.values()]}, separators=(",", ":")) + "\n")
    (docs / "study.md").write_text(markdown(args, rows, records, agg, ratios, eval_info))
    plot(rows, records, agg, ratios, docs / "study.png")
    print(tables(agg, rows, ratios))
    print(f"wrote {docs / 'study.md'}, {docs / 'study.json'}, {docs / 'study.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
