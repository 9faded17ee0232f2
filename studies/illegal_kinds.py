"""Where the model's illegal first choices come from: the arena's examples, replayed and sorted by the rule broken.

    .venv/bin/python studies/illegal_kinds.py runs/eval/leg8b_l0_human.json runs/eval/leg8b_l0_strong.json \
        [--json OUT]

An arena report (``arena --json``) keeps, for each game, the first five illegal raw choices of the model with the
ply they were made at (``illegal_examples``). This study replays each game to that ply and sorts every example by
``Board.illegal_kind``; the moves that break the general's safety are split further by what the position was:

- ``in check``: the side to move was in check and the move did not answer it;
- ``general steps into attack``: not in check, and the general itself moved onto an attacked square;
- ``exposes the general``: not in check, and another piece moved away (a pin), or the move left the two generals
  facing on an open file.

It prints one table per report (the examples are a sample: at most five a game, so the counts do not add up to the
report's ``illegal_attempts`` when a game had more).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xiangqi_gpt.errors import XiangqiError  # noqa: E402
from xiangqi_gpt.rules.board import BLACK, ILLEGAL_KINDS, RED, Board, Move, square_file  # noqa: E402

SAFETY = ("in check", "general steps into attack", "exposes the general")


def generals_face(board: Board) -> bool:
    """Do the two generals stand on one file with nothing between them?"""
    red, black = board.king_square(RED), board.king_square(BLACK)
    if square_file(red) != square_file(black):
        return False
    lo, hi = sorted((red, black))
    return all(board.piece_at(s) is None for s in range(lo + 9, hi, 9))


def classify(board: Board, text: str) -> tuple[str, str | None]:
    """(kind, general's-safety case or None) of the raw choice ``text`` in ``board``."""
    try:
        move = Move.from_iccs(text)
    except XiangqiError:
        return "not_a_move", None
    kind = board.illegal_kind(move)
    if kind != "general_safety":
        return kind or "legal", None
    if board.is_check():
        return kind, "in check"
    if board.piece_at(move.from_square) in ("K", "k"):
        return kind, "general steps into attack"
    return kind, "exposes the general"


def study(report: dict) -> dict:
    kinds: collections.Counter = collections.Counter()
    safety: collections.Counter = collections.Counter()
    flying = 0
    for game in report["per_game"]:
        for example in game["illegal_examples"]:
            where, text = example.split(": ", 1)
            ply = int(where.split()[1])
            board = Board()
            for m in game["moves"][:ply - 1]:
                board.push_iccs(m)
            kind, case = classify(board, text)
            kinds[kind] += 1
            if case:
                safety[case] += 1
                if case == "exposes the general":
                    after = board.copy()
                    after.push(Move.from_iccs(text), validate=False)
                    flying += generals_face(after)
    return {"examples": sum(kinds.values()), "illegal_attempts": report["illegal_attempts"]["count"],
            "kinds": dict(kinds), "general_safety": dict(safety), "exposes_by_facing_generals": flying}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="arena --json reports")
    ap.add_argument("--json", default=None, help="write the tables as JSON here")
    args = ap.parse_args(argv)
    out = {}
    for path in args.reports:
        try:
            report = json.loads(Path(path).read_text())
            out[path] = r = study(report)
        except (OSError, ValueError, KeyError, XiangqiError) as e:
            print(f"error: {path}: not an arena report ({e})", file=sys.stderr)
            return 2
        print(f"\n{path}: {r['examples']} examples of {r['illegal_attempts']} illegal first choices\n")
        print("| kind | examples |\n|---|---:|")
        for kind in (*ILLEGAL_KINDS, "not_a_move"):
            print(f"| {kind} | {r['kinds'].get(kind, 0)} |")
        for case in SAFETY:
            extra = f" (generals facing: {r['exposes_by_facing_generals']})" if case == SAFETY[2] else ""
            print(f"| general_safety: {case}{extra} | {r['general_safety'].get(case, 0)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
