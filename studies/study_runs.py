"""What the training studies share: running the project's command lines for one run, step by step, so that an
interrupted study resumes where it stopped, and reading a run's metrics."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


def show(cmd: list[str]) -> str:
    """``cmd`` as one shell line."""
    return shlex.join(cmd)


def execute(cmd: list[str], log_path: Path) -> float:
    """Run ``cmd`` (``python`` = this interpreter) from the repository root; returns wall seconds."""
    real = [sys.executable if c == "python" and i == 0 else c for i, c in enumerate(cmd)]
    t0 = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ {show(cmd)}\n")
        log.flush()
        rc = subprocess.call(real, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"error: command failed (exit {rc}), see {log_path}: {show(cmd)}")
    return seconds


def read_metrics(csv_path: Path) -> dict[str, list[tuple[int, float]]]:
    """A run's ``metrics.csv``: each logged name's (step, value) pairs, in order."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("step"):
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                series.setdefault(key, []).append((int(float(row["step"])), float(value)))
    return series


def run_steps(args, run_dir: str, log_path: Path, train: list[str], commands: dict[str, list[str]],
              outputs: dict[str, str], train_record: Callable[[float], dict], indent: int | None = None) -> dict | None:
    """One run of a study (paths relative to the repository root): ``train`` unless ``run_dir``/train.json exists
    (a run directory without it is an interrupted run: removed and trained again), then ``commands[step]`` for each
    ``step`` of ``outputs`` whose output file is missing, in order. train.json holds ``train_record(seconds)`` plus
    ``STEP_seconds`` per step run (written as JSON with ``indent``); it is returned. None: with ``args.dry_run``
    (every command printed, none run) or with ``args.report_only`` when something is missing (nothing run)."""
    if args.dry_run:
        print("\n".join(show(c) for c in [train, *commands.values()]))
        return None
    path = ROOT / run_dir
    record_path = path / "train.json"
    if not record_path.is_file():
        if args.report_only:
            return None
        if path.exists():  # an interrupted run: start it again
            shutil.rmtree(path)
        print(f"[{time.strftime('%H:%M:%S')}] train {run_dir}", flush=True)
        seconds = execute(train, log_path)
        record_path.write_text(json.dumps(train_record(seconds), indent=indent))
    record = json.loads(record_path.read_text())
    for step, out in outputs.items():
        if not (ROOT / out).is_file():
            if args.report_only:
                return None
            print(f"[{time.strftime('%H:%M:%S')}] {step} {run_dir}", flush=True)
            record[f"{step}_seconds"] = round(execute(commands[step], log_path), 1)
            record_path.write_text(json.dumps(record, indent=indent))
    return record


def run_grid(args, order: list[tuple[dict, int]], run_one: Callable[..., dict]) -> dict[tuple[str, int], dict]:
    """``run_one(args, row, seed)`` for each (row, seed) of ``order``, in turn; returns the finished runs' records
    (those not empty) by (row name, seed). With ``args.dry_run`` it returns none; otherwise, when none has finished,
    it says so."""
    records = {(row["name"], seed): run_one(args, row, seed) for row, seed in order}
    if args.dry_run:
        return {}
    records = {k: v for k, v in records.items() if v}
    if not records:
        print("no finished runs")
    return records
