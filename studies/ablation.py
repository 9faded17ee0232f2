"""Training-signal ablation at the default model size (issue 10 §5, and issue 11's TeaForN-at-full-size check).

Every arm continues the shipped default model (4 x 256, ``--init-from``) for the same number of training tokens
(``--steps`` x 16 x 256; a TeaForN N=2 arm takes half the steps: equal compute, since its step costs about 2 TF
steps), one torch thread, fp32, then is scored by ``evaluate`` on the first ``--eval-games`` games of the
**validation** split (never the test split: it chooses the recipe). Arms:

``base``      the shipped recipe: dropout 0.1 everywhere (attention too), mirror 0.5, step cosine, no EMA
``recipe``    the faster recipe: no attention-probability dropout, time-aware cosine, an EMA of the weights (``--ema``)
``legal``     ``recipe`` + the legality loss, 0.2 x −log P(legal) (``--legal-weight``)
``mix``       ``recipe`` + 30% of windows from the engine self-play games (``--engine``)
``all``       ``recipe`` + legality + engine mix
``teaforn``   ``recipe`` + TeaForN N=2 (decay weights), half the steps
``teaforn_fs`` ``teaforn`` + a learnable FeedbackScale on the fed-back vectors, started at ``--feedback-init``
              (0.04: the token embeddings' RMS 0.072 over the fed-back vectors' 1.84 in the shipped model)

    .venv/bin/python studies/ablation.py [--arms base,recipe,...] [--steps 200] [--eval-games 150]
    .venv/bin/python studies/ablation.py --report-only   # rebuild docs/ablation.* from runs/ablation/
    .venv/bin/python studies/ablation.py --dry-run       # print every command

Needs ``data/ccpd`` and ``data/engine`` with legal sets:
``prepare ../shared/data/ccpd.tar.xz --out data/ccpd --legal-sets`` and
``prepare ../shared/data/engine_fsf_selfplay.pgn.xz --out data/engine --legal-sets``
(or one ``prepare ... --engine ... --legal-sets`` and ``--engine DIR/engine``).
A finished step's output is reused, so an interrupted ablation resumes. Writes docs/ablation.md and .json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

ARMS = ("base", "recipe", "legal", "mix", "all", "teaforn", "teaforn_fs")
METRICS = ("top1", "top5", "top1_raw", "legal_rate", "end_rate", "nll")


def arm_flags(arm: str, args) -> list[str]:
    recipe = ["--attn-dropout", "0", "--lr-schedule", "time", "--ema", str(args.ema)]
    flags = {
        "base": [],
        "recipe": recipe,
        "legal": recipe + ["--legal-sets", "true", "--legal-weight", str(args.legal_weight)],
        "mix": recipe + ["--mix", f"{{{args.engine}: {args.engine_share}}}"],
        "all": recipe + ["--legal-sets", "true", "--legal-weight", str(args.legal_weight),
                         "--mix", f"{{{args.engine}: {args.engine_share}}}"],
        "teaforn": recipe + ["--objective", "teaforn", "--teaforn-n", "2", "--teaforn-weights", "decay"],
        "teaforn_fs": recipe + ["--objective", "teaforn", "--teaforn-n", "2", "--teaforn-weights", "decay",
                                "--teaforn-feedback-scale", "true", "--model.teaforn_feedback_init",
                                str(args.feedback_init)],
    }
    return flags[arm]


def steps_of(arm: str, args) -> int:
    return args.steps // 2 if arm.startswith("teaforn") else args.steps


def train_command(arm: str, args) -> list[str]:
    steps = steps_of(arm, args)
    return [PY, "train.py", "--data", args.data, "--out", f"{args.runs}/{arm}", "--init-from", args.init_from,
            "--n-layer", "4", "--n-head", "4", "--n-embd", "256", "--block-size", "256", "--dropout", "0.1",
            "--batch-size", "16", "--mirror", "0.5", "--game-start-p", "0.5", "--lr", str(args.lr),
            "--min-lr-ratio", "0.1", "--warmup-steps", str(max(1, steps // 10)), "--max-steps", str(steps),
            "--max-time", f"00:00:{args.minutes:02d}:00", "--val-every", str(steps), "--val-windows", "64",
            "--precision", "32-true", "--threads", "1", "--seed", "1", *arm_flags(arm, args)]


def eval_command(arm: str, args) -> list[str]:
    return [PY, "-m", "xiangqi_gpt", "evaluate", "--checkpoint", f"{args.runs}/{arm}.pt", "--pgn", args.eval_pgn,
            "--limit", str(args.eval_games), "--json", f"{args.runs}/{arm}.eval.json", "--quiet", "--threads", "1"]


def run(cmd: list[str], dry: bool) -> float:
    print("$ " + shlex.join(cmd), flush=True)
    if dry:
        return 0.0
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: command failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return time.monotonic() - start


def run_arm(arm: str, args) -> dict:
    runs = ROOT / args.runs
    model = runs / f"{arm}.pt"
    record_path = runs / f"{arm}.run.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if not model.is_file():
        record["train_cmd"] = shlex.join(["python"] + train_command(arm, args)[1:])
        record["train_s"] = round(run(train_command(arm, args), args.dry_run), 1)
        exp = [PY, "-m", "xiangqi_gpt", "export", f"{args.runs}/{arm}/checkpoints/last.ckpt", "--out", str(model)]
        run(exp, args.dry_run)
        if not args.dry_run:
            ck = __import__("torch").load(runs / arm / "checkpoints" / "last.ckpt", map_location="cpu",
                                          weights_only=False)
            record["steps"] = int(ck["global_step"])
            record["tokens"] = int(ck["global_step"]) * 16 * 256
            record_path.write_text(json.dumps(record, indent=1))
    if not (runs / f"{arm}.eval.json").is_file():
        record["eval_cmd"] = shlex.join(["python"] + eval_command(arm, args)[1:])
        record["eval_s"] = round(run(eval_command(arm, args), args.dry_run), 1)
        if not args.dry_run:
            record_path.write_text(json.dumps(record, indent=1))
    return record


def val_metrics(run_dir: Path) -> dict:
    """The last validation row of the run's metrics.csv (val/loss, val/acc, val/legal_rate when logged)."""
    import csv

    path = run_dir / "metrics.csv"
    out = {}
    if path.is_file():
        with path.open() as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k.startswith("val/") and v:
                        out[k] = float(v)
    return out


def report(args, arms: list[str]) -> None:
    runs = ROOT / args.runs
    rows = {}
    for arm in arms:
        ev = runs / f"{arm}.eval.json"
        if not ev.is_file():
            continue
        e = json.loads(ev.read_text())
        rec = json.loads((runs / f"{arm}.run.json").read_text()) if (runs / f"{arm}.run.json").is_file() else {}
        allm = e.get("all", e)
        fr = e.get("free_run", {})
        rows[arm] = {**{m: allm.get(m) for m in METRICS}, "free_run": fr, "phases": e.get("phases", {}),
                     "steps": rec.get("steps"), "tokens": rec.get("tokens"), "train_s": rec.get("train_s"),
                     "train_cmd": rec.get("train_cmd"), "eval_cmd": rec.get("eval_cmd"),
                     "val": val_metrics(runs / arm)}
    if args.baseline_eval and Path(args.baseline_eval).is_file():
        e = json.loads(Path(args.baseline_eval).read_text())
        rows = {"shipped": {**{m: e.get("all", e).get(m) for m in METRICS}, "free_run": e.get("free_run", {}),
                            "phases": e.get("phases", {}), "steps": 0, "tokens": 0}, **rows}
    docs = ROOT / "docs"
    (docs / "ablation.json").write_text(json.dumps({"args": vars(args), "arms": rows}, indent=1))

    def pct(v):
        return "" if v is None else f"{100 * v:.1f}"

    def legal_at(fr, k):
        v = (fr.get("legal") or {}).get(str(k)) if isinstance(fr, dict) else None
        return pct(v) if isinstance(v, (int, float)) else ""

    lines = ["# Training-signal ablation at the default size", "",
             f"Every arm continues the shipped default model (4 x 256, 3.68M parameters) for {args.steps} steps of "
             f"16 x 256 tokens ({args.steps * 4096:,} tokens; TeaForN arms: half the steps, equal compute), one "
             f"thread, fp32, and is scored by `evaluate` on the first {args.eval_games} games of the **validation** "
             f"split (`{args.eval_pgn}`). Cells are % except `nll`. One seed.", "",
             "| arm | steps | top1 | top5 | top1_raw | legal_rate | end_rate | nll | free legal@4 | free legal@8 | "
             "wall min (shared machine) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm, r in rows.items():
        nll = "" if r.get("nll") is None else f"{r['nll']:.3f}"
        mins = "" if not r.get("train_s") else f"{r['train_s'] / 60:.1f}"
        lines.append(f"| `{arm}` | {r.get('steps') or 0} | {pct(r['top1'])} | {pct(r['top5'])} | "
                     f"{pct(r['top1_raw'])} | {pct(r['legal_rate'])} | {pct(r.get('end_rate'))} | {nll} | "
                     f"{legal_at(r['free_run'], 4)} | {legal_at(r['free_run'], 8)} | {mins} |")
    lines += ["", "Free runs (greedy, from true prefixes every 10 plies; each distinct prefix counted once) and top-1 by "
              "phase:", "",
              "| arm | legal@1 | legal@2 | legal@4 | legal@8 | legal@16 | match@1 | opening top1 | middlegame top1 | "
              "endgame top1 | endgame legal_rate |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm, r in rows.items():
        fr, ph = r["free_run"], r.get("phases") or {}
        match1 = (fr.get("match") or {}).get("1") if isinstance(fr, dict) else None
        lines.append(f"| `{arm}` | " + " | ".join(legal_at(fr, k) for k in (1, 2, 4, 8, 16)) + f" | {pct(match1)} | "
                     + " | ".join(pct((ph.get(p) or {}).get("top1")) for p in ("opening", "middlegame", "endgame"))
                     + f" | {pct((ph.get('endgame') or {}).get('legal_rate'))} |")
    lines += ["", "Commands (from the repository root):", ""]
    for arm, r in rows.items():
        if r.get("train_cmd"):
            train_cmd = r["train_cmd"] if r["train_cmd"].startswith("python") else "python " + r["train_cmd"]
            eval_cmd = r["eval_cmd"] if r["eval_cmd"].startswith("python") else "python " + r["eval_cmd"]
            lines += [f"- `{arm}`: `{train_cmd}`, then `python -m xiangqi_gpt export {args.runs}/{arm}/checkpoints/"
                      f"last.ckpt --out {args.runs}/{arm}.pt` and `{eval_cmd}`"]
    (docs / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8 + len(rows)]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--data", default="data/ccpd")
    p.add_argument("--engine", default="data/engine", help="engine games: a dataset dir or a subset name")
    p.add_argument("--engine-share", type=float, default=0.3)
    p.add_argument("--legal-weight", type=float, default=0.2)
    p.add_argument("--init-from", default="xiangqi_gpt/checkpoints/default.pt")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--minutes", type=int, default=30, help="time cap per arm (the time-aware cosine follows it)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.985,
                   help="EMA decay of the recipe arms (0.985: an averaging horizon of about a third of 200 steps, "
                        "as 0.999 is for a 3,000-step leg)")
    p.add_argument("--eval-pgn", default="data/ccpd/val.pgn")
    p.add_argument("--eval-games", type=int, default=150)
    p.add_argument("--baseline-eval", default=None, help="evaluate JSON of the shipped model on the same games")
    p.add_argument("--feedback-init", type=float, default=0.04)
    p.add_argument("--runs", default="runs/ablation")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        print(f"error: unknown arm(s) {', '.join(bad)} (known: {', '.join(ARMS)})", file=sys.stderr)
        return 2
    (ROOT / args.runs).mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for arm in arms:
            print(f"== {arm}", flush=True)
            run_arm(arm, args)
    if not args.dry_run:
        report(args, arms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
