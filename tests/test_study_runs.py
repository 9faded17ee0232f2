"""studies/study_runs.py: one study run, step by step, resumed where it stopped (tiny commands, no training)."""

from __future__ import annotations

import argparse
import json

import pytest

from study_scripts import load_script


def args(**kw):
    return argparse.Namespace(**({"dry_run": False, "report_only": False} | kw))


def touch(path, count):
    """A command that creates ``path`` (and its folder) and appends a line to the file ``count``."""
    code = (f"import pathlib; p = pathlib.Path({str(path)!r}); p.parent.mkdir(parents=True, exist_ok=True); "
            f"p.write_text('x'); open({str(count)!r}, 'a').write('run\\n')")
    return ["python", "-c", code]


def setup(tmp_path):
    run_dir = tmp_path / "run"
    count = tmp_path / "count.txt"
    train = touch(run_dir / "checkpoint", count)
    commands = {"export": touch(run_dir / "model.pt", count), "evaluate": touch(run_dir / "eval.json", count)}
    outputs = {"export": str(run_dir / "model.pt"), "evaluate": str(run_dir / "eval.json")}
    return run_dir, count, train, commands, outputs


def runs(count) -> int:
    return len(count.read_text().splitlines()) if count.is_file() else 0


def test_runs_every_step_once_and_resumes(tmp_path):
    sr = load_script("study_runs")
    run_dir, count, train, commands, outputs = setup(tmp_path)
    log = tmp_path / "run.log"
    record = sr.run_steps(args(), str(run_dir), log, train, commands, outputs, lambda s: {"row": "r", "t": s > 0})
    assert record["row"] == "r" and record["t"] is True and set(record) == {"row", "t", "export_seconds",
                                                                         "evaluate_seconds"}
    assert runs(count) == 3 and json.loads((run_dir / "train.json").read_text()) == record
    assert log.read_text().count("$ python -c") == 3                           # each command logged
    (run_dir / "eval.json").unlink()                                            # a step's output is missing
    again = sr.run_steps(args(), str(run_dir), log, train, commands, outputs, lambda s: {"row": "other"})
    assert runs(count) == 4 and again["row"] == "r"                             # only that step ran again
    assert sr.run_steps(args(), str(run_dir), log, train, commands, outputs, dict) == again and runs(count) == 4


def test_an_interrupted_training_run_starts_again(tmp_path):
    sr = load_script("study_runs")
    run_dir, count, train, commands, outputs = setup(tmp_path)
    run_dir.mkdir()
    (run_dir / "stale.txt").write_text("from the interrupted run")
    record = sr.run_steps(args(), str(run_dir), tmp_path / "log", train, commands, outputs, lambda s: {}, indent=2)
    assert not (run_dir / "stale.txt").exists() and runs(count) == 3
    assert (run_dir / "train.json").read_text() == json.dumps(record, indent=2)


def test_dry_run_and_report_only_run_nothing(tmp_path, capsys):
    sr = load_script("study_runs")
    run_dir, count, train, commands, outputs = setup(tmp_path)
    assert sr.run_steps(args(dry_run=True), str(run_dir), tmp_path / "log", train, commands, outputs, dict) is None
    printed = capsys.readouterr().out.splitlines()
    assert printed == [sr.show(c) for c in (train, *commands.values())]
    assert sr.run_steps(args(report_only=True), str(run_dir), tmp_path / "log", train, commands, outputs,
                        dict) is None
    assert runs(count) == 0 and not run_dir.exists()


def test_a_failing_command_stops_the_study(tmp_path):
    sr = load_script("study_runs")
    run_dir, count, train, commands, outputs = setup(tmp_path)
    with pytest.raises(SystemExit, match=r"command failed \(exit 3\), see .*log"):
        sr.run_steps(args(), str(run_dir), tmp_path / "log", ["python", "-c", "raise SystemExit(3)"], commands,
                     outputs, dict)


def test_read_metrics(tmp_path):
    sr = load_script("study_runs")
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train/loss,val/acc\n0,10,2.5,\n0,20,,0.3\n0,,1.0,\n0,30.0,2.0,0.4\n")
    assert sr.read_metrics(csv) == {"train/loss": [(10, 2.5), (30, 2.0)], "val/acc": [(20, 0.3), (30, 0.4)]}


def test_run_grid_keeps_the_finished_runs_in_order(capsys):
    sr = load_script("study_runs")
    rows = [{"name": "a"}, {"name": "b"}]
    calls = []

    def run_one(a, row, seed):
        calls.append((row["name"], seed))
        return {"seed": seed} if row["name"] == "a" else {}       # b has not finished

    order = [(rows[0], 1), (rows[1], 1), (rows[0], 2)]
    assert sr.run_grid(args(), order, run_one) == {("a", 1): {"seed": 1}, ("a", 2): {"seed": 2}}
    assert calls == [("a", 1), ("b", 1), ("a", 2)]
    assert sr.run_grid(args(dry_run=True), order, run_one) == {}
    assert sr.run_grid(args(), [(rows[1], 1)], run_one) == {}
    assert capsys.readouterr().out == "no finished runs\n"
