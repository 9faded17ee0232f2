"""How fast is play.py? Prints (1) the time from starting ``python play.py`` to the first board on screen, and
(2) the model's reply time per move in a game (the terminal's own code path: move_probs + choose), as medians.

    python benchmarks/bench_play.py [--checkpoint FILE.pt] [--starts 5] [--replies 40]

Targets: first board < 2 s, median reply < 100 ms (CPU).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_to_first_board(args: list[str], marker: str = "楚 河") -> float:
    """Seconds from spawning play.py to the moment its first board (the river line; or ``marker``) is on stdout."""
    env = dict(os.environ, COLUMNS="100", PYTHONIOENCODING="utf-8")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "play.py"), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    seen = b""
    try:
        while marker.encode() not in seen:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise SystemExit(f"play.py exited before drawing a board: {seen.decode(errors='replace')[-300:]}")
            seen += chunk
        return time.perf_counter() - t0
    finally:
        proc.kill()
        proc.wait()


def reply_times(checkpoint: str | None, replies: int, seed: int = 0) -> tuple[list[float], float]:
    """Milliseconds per model reply over games where the human side plays random legal moves."""
    from rich.console import Console

    from xiangqi_gpt.rules.board import Board
    from xiangqi_gpt.play.terminal import PlayerLoader, Session, default_player_factory

    rng = random.Random(seed)
    t0 = time.perf_counter()
    loader = PlayerLoader(default_player_factory(checkpoint, 0.0, None)).start()
    loader.get()
    load_s = time.perf_counter() - t0
    console = Console(file=open(os.devnull, "w", encoding="utf-8"), width=100)
    session = Session(console, loader, input_fn=lambda prompt: "")   # "" declines the save offer at game end
    while len(session.reply_ms) < replies:
        board: Board = session.board
        if session.outcome_result() is not None:
            session.cmd_new("")
            continue
        session.play_move(rng.choice(board.legal_moves()).iccs())
    return session.reply_ms[:replies], load_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="model file (default: the shipped default.pt)")
    p.add_argument("--starts", type=int, default=5, help="play.py starts to time")
    p.add_argument("--replies", type=int, default=40, help="model replies to time")
    args = p.parse_args()
    extra = ["--checkpoint", args.checkpoint] if args.checkpoint else []

    starts = [time_to_first_board(extra) for _ in range(args.starts)]
    print(f"first board: median {statistics.median(starts):.3f} s, max {max(starts):.3f} s "
          f"over {len(starts)} starts of play.py (target < 2 s)")
    starts_black = [time_to_first_board(extra + ["--side", "black"]) for _ in range(args.starts)]
    print(f"first board as Black (model to move first): median {statistics.median(starts_black):.3f} s")
    first_reply = [time_to_first_board(extra + ["--side", "black"], "The model plays") for _ in range(args.starts)]
    print(f"first model move as Black (includes importing torch and loading the model): median "
          f"{statistics.median(first_reply):.3f} s")

    times, load_s = reply_times(args.checkpoint, args.replies)
    times.sort()
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    print(f"model load (torch import + checkpoint, in the background): {load_s:.2f} s")
    print(f"model reply: median {statistics.median(times):.1f} ms, p90 {p90:.1f} ms, max {times[-1]:.1f} ms "
          f"over {len(times)} replies (target median < 100 ms)")


if __name__ == "__main__":
    main()
