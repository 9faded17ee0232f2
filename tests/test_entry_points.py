"""The console entry points of pyproject.toml: ``xiangqi-gpt`` (the CLI) and ``xiangqi-gpt-engine`` (UCI/UCCI)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def call(target: str, args: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    """Run the entry point ``module:function`` the way a console script does: ``sys.exit(function())``."""
    module, func = target.split(":")
    code = (f"import sys; sys.argv = ['x', *sys.argv[1:]]; from {module} import {func}; "
            f"sys.exit({func}())")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_both_entry_points_are_declared_and_resolve():
    declared = scripts()
    assert set(declared) >= {"xiangqi-gpt", "xiangqi-gpt-engine"}
    for target in declared.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_cli_entry_point_help_and_a_command():
    target = scripts()["xiangqi-gpt"]
    r = call(target, ["--help"])
    assert r.returncode == 0 and r.stdout.startswith("usage: xiangqi-gpt")
    for command in ("perft", "uci", "review", "arena"):
        assert command in r.stdout
    r = call(target, ["perft", "--depth", "2"])
    assert r.returncode == 0 and r.stdout.strip() == "1920"
    r = call(target, ["perft", "--depth", "-1"])
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_engine_entry_point_answers_uci_and_ucci():
    target = scripts()["xiangqi-gpt-engine"]
    r = call(target, ["--help"])
    assert r.returncode == 0 and r.stdout.startswith("usage: xiangqi-gpt-engine") and "--checkpoint" in r.stdout
    r = call(target, [], "uci\nisready\nquit\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "uciok" in lines and "readyok" in lines and any(line.startswith("id name") for line in lines)
    r = call(target, ["--level", "1"], "ucci\nquit\n")
    assert r.returncode == 0 and "ucciok" in r.stdout.splitlines()
    r = call(target, ["--level", "99"])
    assert r.returncode == 2 and r.stderr.startswith("error: --level")
