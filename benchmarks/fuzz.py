"""Fuzz every reader for a chosen time with the properties of ``tests/test_fuzz.py``, and count what it finds.

    .venv/bin/python benchmarks/fuzz.py --minutes 30                     # all targets, round robin
    .venv/bin/python benchmarks/fuzz.py --seconds 60 --targets pgn,engine --failures fuzz-failures.txt

Targets (strategies and properties in ``tests/fuzz_targets.py``): ``move`` (parse_move, detect_notation), ``fen``
(Board(fen), strict and not, and the notation writers on any board), ``pgn`` (the PGN reader on generated and
mutated records), ``engine`` (the UCI/UCCI command loop), ``archive`` (mutated zip/tar/gz/xz/bz2 archives and
bombs, read under a member limit and a memory cap), ``model`` (crafted model files) and ``transform`` (line ends,
byte-order marks, mixed encodings and concatenation must not change the games read). Hypothesis draws new random inputs in short rounds
(no example database) until the time is up; an input that runs longer than ``--hang`` seconds counts as a failure.
Prints one line per round with ``--verbose``, then a table: inputs tried and failures found per target (distinct
failures by exception and first line), and the failing inputs as Hypothesis shrank them. Exits with status 1 if
anything failed. One process, one core: run it under ``nice`` next to other work.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "xiangqi-gpt-hypothesis"))

from hypothesis import HealthCheck, Phase, Verbosity, given, settings  # noqa: E402
from hypothesis.reporting import with_reporter  # noqa: E402


def _load_test_module(name: str):
    """``tests/<name>.py`` as the module ``name`` (the tests are not a package, so load the file itself)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_targets() -> dict:
    """``tests/fuzz_targets.py``'s targets, with the test helper module they import."""
    _load_test_module("random_games")
    return _load_test_module("fuzz_targets").TARGETS


TARGETS = _load_targets()

ROUND_SECONDS = 5.0         # each round draws as many inputs as its target tried in about this much time before


class Hang(BaseException):
    """An input ran longer than --hang seconds of CPU (or ten times that of wall time: a deadlock).

    A ``BaseException``, so that neither the code under test (which turns ``Exception`` into clear errors) nor
    Hypothesis (which would shrink it, re-running the slow input many times) can swallow it."""


_current: list = [None]     # the input being checked, kept for the report when it hangs


def _alarm(signum, frame):
    raise Hang("an input ran past the --hang limit")


HANG_REPEAT = 0.5           # after the limit the alarm fires again every this many seconds until the input ends


def run_round(name: str, examples: int, hang: float, stats: dict) -> None:
    strategy, check = TARGETS[name]
    counts = stats[name]

    def checked(args):
        counts["inputs"] += 1
        _current[0] = args
        callbacks = gc.callbacks[:]     # Hypothesis times gc in a callback, where an exception is only printed:
        gc.callbacks.clear()            # the alarm must land in the code under test
        signal.setitimer(signal.ITIMER_PROF, hang, HANG_REPEAT)
        signal.setitimer(signal.ITIMER_REAL, 10 * hang, HANG_REPEAT)
        try:
            check(args)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            gc.callbacks[:] = callbacks

    test = settings(max_examples=examples, deadline=None, database=None, derandomize=False, print_blob=False,
                    verbosity=Verbosity.normal, phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))(given(strategy)(checked))
    report: list[str] = []
    try:
        with with_reporter(report.append):
            test()
    except Hang as e:           # not shrunk: keep the input as drawn
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        report.append(f"input that hung: {_current[0]!r}"[:4000])
        _record(counts, e, report)
    except Exception as e:      # a property failed (Hypothesis re-raises it after shrinking)
        _record(counts, e, report)


def _record(counts: dict, e: BaseException, report: list[str]) -> None:
    for inner in getattr(e, "exceptions", ()):     # a FlakyFailure (an exception group): what each call raised
        lines = traceback.format_exception(type(inner), inner, inner.__traceback__)
        report.append(f"-- raised inside: {''.join(lines)[-3000:]}")
    first = (str(e).strip().splitlines() or [""])[0][:200]
    signature = f"{type(e).__name__}: {first}"
    counts["failures"] += 1
    if signature not in counts["distinct"]:
        counts["distinct"][signature] = "\n".join(report)[-4000:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=None, help="how long to fuzz (default 1 minute)")
    ap.add_argument("--seconds", type=float, default=None, help="how long to fuzz, in seconds")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {', '.join(TARGETS)}")
    ap.add_argument("--hang", type=float, default=20.0,
                    help="CPU seconds one input may take (default 20; ten times that in wall time)")
    ap.add_argument("--failures", default=None, help="also write the failing inputs to this file")
    ap.add_argument("--verbose", action="store_true", help="one line per round")
    args = ap.parse_args()
    if args.minutes is not None and args.seconds is not None:
        ap.error("give --minutes or --seconds, not both")
    budget = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 1)
    if not budget > 0:
        ap.error("the time must be positive")
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        ap.error(f"unknown target(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}")
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGPROF, _alarm)

    stats = {n: {"inputs": 0, "failures": 0, "rounds": 0, "seconds": 0.0, "cpu": 0.0, "distinct": {}} for n in names}
    t0, c0 = time.monotonic(), time.process_time()
    deadline = t0 + budget
    i = 0
    try:
        while time.monotonic() < deadline:
            name = names[i % len(names)]
            i += 1
            s = stats[name]
            rate = s["inputs"] / s["seconds"] if s["seconds"] else 2.0
            left = deadline - time.monotonic()
            examples = max(2, min(2000, round(rate * min(ROUND_SECONDS, left))))
            start, cpu = time.monotonic(), time.process_time()
            before = s["inputs"]
            run_round(name, examples, args.hang, stats)
            s["rounds"] += 1
            s["seconds"] += time.monotonic() - start
            s["cpu"] += time.process_time() - cpu
            if args.verbose:
                print(f"{time.monotonic() - t0:8.1f}s  {name:7s} +{s['inputs'] - before} inputs, "
                      f"{s['failures']} failures so far", flush=True)
    except KeyboardInterrupt:
        print("interrupted: counts so far", flush=True)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0

    print(f"\nfuzzed for {elapsed / 60:.1f} minutes ({elapsed:.0f} s wall, {cpu:.0f} s CPU), one process")
    print("| target | inputs tried | inputs per CPU second | rounds | failures | distinct failures |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        s = stats[name]
        rate = s["inputs"] / s["cpu"] if s["cpu"] else 0.0
        print(f"| {name} | {s['inputs']:,} | {rate:,.0f} | {s['rounds']} | {s['failures']} | {len(s['distinct'])} |")
    total_inputs = sum(s["inputs"] for s in stats.values())
    total_failures = sum(s["failures"] for s in stats.values())
    print(f"| **all** | {total_inputs:,} | {total_inputs / cpu if cpu else 0:,.0f} | "
          f"{sum(s['rounds'] for s in stats.values())} | {total_failures} | "
          f"{sum(len(s['distinct']) for s in stats.values())} |")
    lines = []
    for name in names:
        for signature, report in stats[name]["distinct"].items():
            lines += [f"== {name}: {signature}", report, ""]
    if lines:
        print("\nfailures:\n" + "\n".join(lines))
        if args.failures:
            Path(args.failures).write_text("\n".join(lines), encoding="utf-8")
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
