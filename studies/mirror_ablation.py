"""Mirror augmentation ablation: ``--mirror 0`` vs ``--mirror 0.5`` (probability that a training window is mirrored
left-right, files a <-> i), in three data regimes, with the TeaForN study's model and recipe (teacher forcing).

    .venv/bin/python studies/mirror_ablation.py [--seeds 1,2] [--small-data data/ccpd_small] [--small-steps 500]
    .venv/bin/python studies/mirror_ablation.py --report-only      # rebuild docs/mirror.* from finished runs
    .venv/bin/python studies/mirror_ablation.py --dry-run          # print every command, run nothing

Regimes (rows ``REGIME-mP``):

``small``  multi-epoch: a small dataset (``prepare ... --limit 6000``: about 250k train move tokens) trained
           ``--small-steps`` steps, i.e. several passes over its train split (the data repeats)
``long``   the small dataset again, ``--long-steps`` steps (about 12 passes), seeds ``--long-seeds``
``full``   sub-epoch: the full dataset ``--data`` trained ``--full-steps`` (the study's S=300: a third of an epoch)

Every regime is evaluated on the same positions: the first ``--eval-games`` games of ``--data``/test.pgn (the full
dataset's test split; the split is a seeded hash of each game, so the small dataset's train games are, up to prefix
duplicates, not in it: see docs/mirror.md). Diagnostic: the same games mirrored left-right (``OUT/test-mirrored.pgn``,
written by this script), to see how much of the symmetry each model has learnt. Within a seed, the mirror 0 and 0.5 runs draw the same windows (the
mirror coin is drawn after the window starts), so a pair differs only in which windows are flipped.

Every run goes through the project's own command lines, one process at a time (train, export, evaluate); a step
whose output exists is skipped, so an interrupted ablation resumes. Writes ``--docs``/mirror.md and mirror.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

from study_runs import ROOT, read_metrics, run_grid, run_steps, show
from teaforn_study import EVAL_METRICS, FREE_RUN_KS

MIRRORS = ("0", "0.5")


REGIMES = ("small", "long", "full")


def row_specs(args) -> list[dict]:
    rows = []
    for regime, data, steps, seeds in (("small", args.small_data, args.small_steps, args.seed_list),
                                       ("long", args.small_data, args.long_steps, args.long_seed_list),
                                       ("full", args.data, args.full_steps, args.seed_list)):
        for m in MIRRORS:
            rows.append({"name": f"{regime}-m{m}", "regime": regime, "data": data, "steps": steps, "mirror": m,
                         "seeds": seeds})
    return rows


def train_command(args, row: dict, seed: int, run_dir: str) -> list[str]:
    """The study's ``tf`` command line (studies/teaforn_study.py), with this row's data, steps and mirror."""
    return ["python", "train.py", "--data", row["data"], "--out", run_dir, "--tokenizer", "move",
            "--n-layer", str(args.n_layer), "--n-head", str(args.n_head), "--n-embd", str(args.n_embd),
            "--block-size", str(args.block), "--batch-size", str(args.batch), "--dropout", "0.0",
            "--lr", str(args.lr), "--warmup-steps", str(args.warmup), "--min-lr-ratio", "0.1",
            "--mirror", row["mirror"], "--game-start-p", "0.5", "--val-windows", str(args.val_windows),
            "--max-steps", str(row["steps"]), "--val-every", str(max(1, row["steps"] // 4)),
            "--precision", "32-true", "--objective", "tf", "--seed", str(seed), "--threads", str(args.threads),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def mirrored_pgn_path(args) -> str:
    return f"{args.out}/test-mirrored.pgn"


def write_mirrored_pgn(src: Path, dst: Path, limit: int) -> int:
    """The first ``limit`` games of ``src``, each mirrored left-right (moves and start position), as ICCS PGN."""
    from xiangqi_gpt.rules.board import Board
    from xiangqi_gpt.errors import PgnError
    from xiangqi_gpt.records.pgn import Game, read_games, write_games

    games = []
    for g in read_games(str(src)):
        if isinstance(g, PgnError):
            raise g
        root = Board(g.root_fen).mirror().fen()
        games.append(Game(headers=dict(g.headers), moves=[m.mirror() for m in g.moves], root_fen=root,
                          result=g.result))
        if len(games) == limit:
            break
    dst.parent.mkdir(parents=True, exist_ok=True)
    return write_games(games, dst)


def eval_commands(args, run_dir: str) -> dict[str, list[str]]:
    model = f"{run_dir}/model.pt"
    return {
        "export": ["python", "-m", "xiangqi_gpt", "export", f"{run_dir}/checkpoints/last.ckpt", "--out", model,
                   "--fp32"],
        "evaluate": ["python", "-m", "xiangqi_gpt", "evaluate", "--checkpoint", model, "--pgn",
                     f"{args.data}/test.pgn", "--limit", str(args.eval_games), "--json", f"{run_dir}/eval.json",
                     "--threads", str(args.threads), "--quiet"],
        "evaluate_mirrored": ["python", "-m", "xiangqi_gpt", "evaluate", "--checkpoint", model, "--pgn",
                              mirrored_pgn_path(args), "--limit", str(args.eval_games), "--json",
                              f"{run_dir}/eval-mirrored.json", "--threads", str(args.threads), "--quiet"],
    }


def train_tokens(data: str) -> int:
    meta = json.loads((ROOT / data / "meta.json").read_text())
    return meta["splits"]["train"]["tokens"]["move"]


def run_one(args, row: dict, seed: int) -> dict:
    run_dir = f"{args.out}/{row['name']}-s{seed}"
    path, log_path = ROOT / run_dir, ROOT / args.out / f"{row['name']}-s{seed}.log"
    cmd, evals = train_command(args, row, seed, run_dir), eval_commands(args, run_dir)
    steps = {"export": f"{run_dir}/model.pt", "evaluate": f"{run_dir}/eval.json"}
    if args.mirrored_test:
        steps["evaluate_mirrored"] = f"{run_dir}/eval-mirrored.json"
    record = run_steps(args, run_dir, log_path, cmd, evals, steps,
                       lambda seconds: {"row": row["name"], "seed": seed, "train_seconds": round(seconds, 1)})
    if record is None:
        return {}
    ev = json.loads((path / "eval.json").read_text())
    series = read_metrics(path / "metrics.csv")
    metrics = {k: ev[k] for k in EVAL_METRICS}
    metrics |= {f"free_legal@{k}": ev["free_run"]["legal"][k] for k in FREE_RUN_KS}
    metrics |= {f"free_match@{k}": ev["free_run"]["match"][k] for k in FREE_RUN_KS}
    metrics["val_acc"] = series["val/acc"][-1][1]
    metrics["val_loss"] = series["val/loss"][-1][1]
    metrics["train_seconds"] = record["train_seconds"]
    for phase in ("opening", "middlegame", "endgame"):
        metrics[f"{phase}_top1"] = ev["phases"][phase]["top1"]
    metrics["opening_free_match@1"] = ev["phases"]["opening"]["free_run"]["match"]["1"]
    metrics |= start_probe(path / "model.pt", args.threads)
    mirrored = path / "eval-mirrored.json"
    if mirrored.is_file():
        evm = json.loads(mirrored.read_text())
        metrics |= {f"mirrored_{k}": evm[k] for k in EVAL_METRICS}
        metrics["mirrored_free_legal@4"] = evm["free_run"]["legal"]["4"]
    return {"row": row["name"], "seed": seed, "metrics": metrics, "seconds": record,
            "eval_info": {k: ev[k] for k in ("games", "positions")} | {"prefixes": ev["free_run"]["prefixes"]},
            "commands": {"train": show(cmd), **{k: show(v) for k, v in evals.items()}}}


START_MOVES = ("h2e2", "b2e2")   # the central cannon, played from the right (human custom) or from the left


def start_probe(model: Path, threads: int) -> dict[str, float]:
    """The model's probabilities (over legal moves) of the two central-cannon openings at the start position: a
    mirror image of each other, so a model that has learnt the symmetry puts the same weight on both."""
    import torch

    from xiangqi_gpt.rules.board import Board, Move
    from xiangqi_gpt.play.player import GPTPlayer

    torch.set_num_threads(threads)
    probs = {m.iccs(): p for m, p in GPTPlayer.load(str(model)).move_probs(Board())}
    assert Move.from_iccs(START_MOVES[0]).mirror() == Move.from_iccs(START_MOVES[1])
    return {f"start_p_{m}": probs[m] for m in START_MOVES}


def first_move_shares(pgn: Path, limit: int) -> dict[str, float]:
    """Share of the first ``limit`` games of ``pgn`` (standard start) that open with each of START_MOVES."""
    from xiangqi_gpt.records.pgn import read_games

    firsts = [g.iccs()[0] for _, g in zip(range(limit), read_games(str(pgn))) if g.standard_start and g.moves]
    return {m: firsts.count(m) / len(firsts) for m in START_MOVES}


def overlap_note(args) -> str:
    o = train_test_overlap(ROOT / args.small_data / "train.pgn", ROOT / args.data / "test.pgn", args.eval_games)
    return (f"Overlap check (computed by the script): {o['train_games']} games of `{args.small_data}/train.pgn` "
            f"are equal to, or a prefix of, or extend one of {o['test_games']} evaluated games "
            f"({o['test_positions']} of the {o['all_test_positions']} evaluated positions, "
            f"{100 * o['test_positions'] / max(1, o['all_test_positions']):.1f}%; the same for every row of a "
            "regime, so it cannot favour either mirror setting). The full dataset's train split has none by "
            "construction.")


def train_test_overlap(train_pgn: Path, test_pgn: Path, limit: int) -> dict:
    """Games of ``train_pgn`` equal to, a prefix of, or extended by one of the first ``limit`` games of ``test_pgn``
    (same start position). ``prepare`` splits by a seeded hash of each game and keeps only the longest of games that
    are prefixes of one another, so a smaller read of the same source can keep in train a prefix of a game that the
    full dataset has in test. Returns the counts and the evaluated positions in the test games concerned."""
    from xiangqi_gpt.records.pgn import read_games

    def load(path, n=None):
        games = ((g.root_fen, " ".join(g.iccs())) for g in read_games(str(path)))
        return list(games) if n is None else [g for _, g in zip(range(n), games)]

    test = load(test_pgn, limit)
    hit_test = set()
    n_train = 0
    for root, moves in load(train_pgn):
        hits = [i for i, (r, m) in enumerate(test)
                if r == root and (m == moves or m.startswith(moves + " ") or moves.startswith(m + " "))]
        n_train += bool(hits)
        hit_test.update(hits)
    return {"train_games": n_train, "test_games": len(hit_test),
            "test_positions": sum(len(test[i][1].split()) for i in hit_test),
            "all_test_positions": sum(len(m.split()) for _, m in test)}


def cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    """mean (v1 / v2 ...), scaled."""
    mean = statistics.fmean(values) * scale
    each = " / ".join(f"{v * scale:.{digits}f}" for v in values)
    return f"{mean:.{digits}f} ({each})" if len(values) > 1 else f"{mean:.{digits}f}"


MIRRORED_COLUMNS = (("mirrored_top1", 100, 1), ("mirrored_top5", 100, 1), ("mirrored_top1_raw", 100, 1),
                    ("mirrored_legal_rate", 100, 1), ("mirrored_nll", 1, 3), ("mirrored_free_legal@4", 100, 1))
PHASE_COLUMNS = (("opening_top1", 100, 1), ("middlegame_top1", 100, 1), ("endgame_top1", 100, 1),
                 ("opening_free_match@1", 100, 1), ("start_p_h2e2", 100, 1), ("start_p_b2e2", 100, 1))
COLUMNS = (("top1", 100, 1), ("top5", 100, 1), ("top1_raw", 100, 1), ("legal_rate", 100, 1), ("nll", 1, 3),
           ("free_legal@4", 100, 1), ("free_match@4", 100, 1), ("val_acc", 100, 1), ("train_seconds", 1, 0))


def table(rows: list[dict], runs: dict, args, columns=COLUMNS) -> str:
    lines = ["| row | data | steps | epochs | seeds | " + " | ".join(c[0] for c in columns) + " |",
             "|---|---|---:|---:|---|" + "---:|" * len(columns)]
    for row in rows:
        done = [runs[(row["name"], s)] for s in row["seeds"] if runs.get((row["name"], s))]
        done = [d for d in done if all(k in d["metrics"] for k, _, _ in columns)]
        if not done:
            continue
        epochs = row["steps"] * args.batch * args.block / train_tokens(row["data"])
        cells = [cell([d["metrics"][k] for d in done], scale, digits) for k, scale, digits in columns]
        lines.append(f"| `{row['name']}` | `{row['data']}` | {row['steps']} | {epochs:.2f} | "
                     f"{','.join(str(d['seed']) for d in done)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def deltas(rows: list[dict], runs: dict, args, columns=COLUMNS[:-2]) -> str:
    """Per regime and seed: mirror 0.5 minus mirror 0 (paired: same seed, same windows)."""
    lines = ["| regime | seed | " + " | ".join(f"Δ{c[0]}" for c in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for regime in REGIMES:
        for s in sorted({s for r in rows if r["regime"] == regime for s in r["seeds"]}):
            a, b = runs.get((f"{regime}-m0", s)), runs.get((f"{regime}-m0.5", s))
            if not (a and b) or not all(k in a["metrics"] and k in b["metrics"] for k, _, _ in columns):
                continue
            cells = [f"{(b['metrics'][k] - a['metrics'][k]) * scale:+.{digits}f}" for k, scale, digits in columns]
            lines.append(f"| {regime} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/ccpd", help="full dataset (its test split is the evaluation set)")
    p.add_argument("--small-data", default="data/ccpd_small",
                   help="small dataset for the multi-epoch regime (prepare ../shared/data/ccpd.tar.xz --limit 6000)")
    p.add_argument("--small-steps", type=int, default=500)
    p.add_argument("--long-steps", type=int, default=1500)
    p.add_argument("--long-seeds", default="1,2", help="seeds of the long regime")
    p.add_argument("--full-steps", type=int, default=300)
    p.add_argument("--regimes", default="small,full,long", help="which regimes to run (comma-separated)")
    p.add_argument("--out", default="runs/mirror")
    p.add_argument("--docs", default="docs")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--val-windows", type=int, default=64)
    p.add_argument("--eval-games", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-mirrored-test", dest="mirrored_test", action="store_false",
                   help="skip the diagnostic evaluation on the mirrored test games")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",") if s]
    args.long_seed_list = [int(s) for s in args.long_seeds.split(",") if s]
    rows = row_specs(args)
    regimes = set(args.regimes.split(","))
    (ROOT / args.out).mkdir(parents=True, exist_ok=True)
    if args.mirrored_test and not args.dry_run and not (ROOT / mirrored_pgn_path(args)).is_file():
        write_mirrored_pgn(ROOT / args.data / "test.pgn", ROOT / mirrored_pgn_path(args), args.eval_games)
    # seed-major within a regime: a complete first pair (mirror 0, 0.5), then the second; small, full, then long
    order = [(row, s) for regime in ("small", "full", "long") for s in sorted({s for r in rows for s in r["seeds"]})
             for row in rows if row["regime"] == regime and s in row["seeds"]
             and (regime in regimes or args.report_only)]
    runs = run_grid(args, order, run_one)
    if not runs:
        return 0 if args.dry_run else 1
    info = next(iter(runs.values()))["eval_info"]
    reproduce = shlex.join(["python", "studies/mirror_ablation.py",
                            *[a for a in argv if a not in ("--report-only", "--dry-run")]])
    md = ["# Mirror augmentation ablation", "",
          f"Reproduce: `python -m xiangqi_gpt prepare ../shared/data/ccpd.tar.xz --out {args.small_data} --limit 6000` "
          f"then `{reproduce}`.", "",
          f"Model and recipe: the TeaForN study's `tf` row ({args.n_layer} layers x {args.n_embd}, block {args.block}, "
          f"batch {args.batch}, lr {args.lr}, warmup {args.warmup}, cosine to 0.1x, fp32, game_start_p 0.5, "
          f"1 thread); only `--mirror` (data.mirror_p), the data and the steps vary. Evaluation for every row: the "
          f"first {info['games']} games of `{args.data}/test.pgn` ({info['positions']} positions, {info['prefixes']} "
          "free-run prefixes). Cells: mean over seeds (per-seed values); percentages except nll (nats/move) and "
          "train_seconds. epochs = steps x batch x block / train move tokens of the row's dataset. val_acc is on "
          "each dataset's own val split (64 windows), so it is comparable within a regime only.", "",
          overlap_note(args), "",
          table(rows, runs, args), "", "Paired differences, mirror 0.5 minus mirror 0 (same seed, same windows):", "",
          deltas(rows, runs, args), "",
          "Where the difference is: top1 by phase (opening = the first 20 plies; endgame = from ply 20 with at most 6 "
          "chariots, horses and cannons left; middlegame = the rest), opening_free_match@1 (the greedy unconstrained "
          "move equals the game's, free-run prefixes before ply 20, every 10th ply: ply 0 and 10 of each game), and "
          "the model's probabilities of the two mirror-image central-cannon openings at the start position "
          f"(`start_p_h2e2` from the right, `start_p_b2e2` from the left). In the evaluated games, "
          + ", ".join(f"{100 * v:.1f}% open with {m}" for m, v in
                      first_move_shares(ROOT / args.data / "test.pgn", args.eval_games).items()) + ".", "",
          table(rows, runs, args, PHASE_COLUMNS), "", deltas(rows, runs, args, PHASE_COLUMNS), "",
          f"Diagnostic: the same {info['games']} games mirrored left-right (`{mirrored_pgn_path(args)}`, written by "
          "the script: every move and start position mirrored). A model that has learnt the symmetry scores the same "
          "on both; human openings are not symmetric, so a model trained on unmirrored games only may not.", "",
          table(rows, runs, args, MIRRORED_COLUMNS), "", deltas(rows, runs, args, MIRRORED_COLUMNS), "",
          "Reading: [docs/studies.md](studies.md#mirror-augmentation), section *Mirror augmentation*.", "",
          "## Commands", "",
          "Run from the repository root (`python` = `.venv/bin/python`):", ""]
    for row, s in order:
        r = runs.get((row["name"], s))
        if r:
            md += [f"### `{row['name']}` seed {s}", "", "```bash", *r["commands"].values(), "```", ""]
    docs = ROOT / args.docs
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "mirror.md").write_text("\n".join(md))
    (docs / "mirror.json").write_text(json.dumps(
        {"settings": {k: v for k, v in vars(args).items()},
         "train_tokens": {args.data: train_tokens(args.data), args.small_data: train_tokens(args.small_data)},
         "runs": list(runs.values())}, indent=1) + "\n")
    print(table(rows, runs, args))
    print(deltas(rows, runs, args))
    print(f"wrote {docs / 'mirror.md'}, {docs / 'mirror.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
