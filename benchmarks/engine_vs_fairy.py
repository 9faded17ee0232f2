"""A match between our UCI engine (``python -m xiangqi_gpt uci``, a subprocess) and Fairy-Stockfish (another),
both spoken to through UCI only, refereed by our rule engine (xiangqi_gpt.rules.board).

    python benchmarks/engine_vs_fairy.py --games 4 --fsf-depth 1 [--checkpoint FILE.pt] [--style strong] [--pgn out.pgn]
        [--book-plies 2 --seed 0]

Colours alternate. With ``--book-plies N`` (1 or 2) each pair of games, one with each colour, starts from a book
line of the arena (``arena.opening_schedule``, ``--seed``): full-strength Fairy-Stockfish and our engine at
temperature 0 are deterministic, so without it the games repeat. A game ends by the rules (checkmate, stalemate,
repetition, perpetual check, 60-move limit: ``Board.outcome()``), by an illegal move or a missing answer (that side
loses), or is adjudicated a draw after ``--max-plies``. Our engine gets ``go movetime``; Fairy-Stockfish gets
``--fsf-depth`` / ``--fsf-movetime`` and ``--fsf-skill`` (-20..20). With ``--clock M+S`` our engine plays on a clock
instead (``go wtime/btime/winc/binc``, its time measured here from ``go`` to ``bestmove``; running out loses on
time) and the share of its remaining time that each move used is reported. Prints one line per game, the score and
its Elo interval.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from xiangqi_gpt.rules.board import BLACK, RED, STARTING_FEN, Board, Move  # noqa: E402
from xiangqi_gpt.errors import XiangqiError  # noqa: E402
from xiangqi_gpt.play.arena import elo_interval, opening_schedule  # noqa: E402
from xiangqi_gpt.play.fairy import FairyStockfish  # noqa: E402


class UciProcess:
    """A minimal UCI driver for our engine: send lines, wait for answers."""

    def __init__(self, argv: list[str], timeout: float = 120.0):
        self.timeout = timeout
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", bufsize=1, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        self.reply_ms: list[float] = []
        self.shares: list[float] = []          # --clock: the share of the remaining time each move used
        self.left_ms = 0.0
        threading.Thread(target=self._read, daemon=True).start()
        self.send("uci")
        self.until("uciok")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def until(self, prefix: str) -> list[str]:
        got = []
        while True:
            line = self.lines.get(timeout=self.timeout)
            if line is None:
                raise XiangqiError(f"engine exited: {self.proc.stderr.read()[-500:]}")
            got.append(line)
            if line.startswith(prefix):
                return got

    def isready(self) -> list[str]:
        self.send("isready")
        return self.until("readyok")

    def bestmove(self, fen: str, moves: list[str], movetime: int, increment_ms: int | None = None) -> str | None:
        """The engine's move: ``go movetime``, or on the clock (``self.left_ms``) when ``increment_ms`` is given."""
        base = "startpos" if fen == STARTING_FEN else f"fen {fen}"
        self.send(f"position {base}" + (" moves " + " ".join(moves) if moves else ""))
        t0 = time.perf_counter()
        if increment_ms is None:
            self.send(f"go movetime {movetime}")
        else:
            left = max(0, int(self.left_ms))
            self.send(f"go wtime {left} btime {left} winc {increment_ms} binc {increment_ms}")
        words = self.until("bestmove")[-1].split()
        ms = 1000 * (time.perf_counter() - t0)
        self.reply_ms.append(ms)
        if increment_ms is not None:
            self.shares.append(ms / max(1.0, self.left_ms))
            self.last_moves = (getattr(self, "last_moves", []) + [f"{ms:.0f}/{self.left_ms:.0f}"])[-4:]
            self.left_ms -= ms
            if self.left_ms > 0:
                self.left_ms += increment_ms
        return None if len(words) < 2 or words[1] == "(none)" else words[1]

    def close(self) -> None:
        try:
            self.send("quit")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


def play_game(ours: UciProcess, fairy: FairyStockfish, our_color: int, args,
              opening: tuple[str, ...] = ()) -> tuple[str, str, Board]:
    """One game from ``args.fen`` after the ``opening`` moves (ICCS); returns (result, reason, final board)."""
    board = Board(args.fen)
    for text in opening:
        board.push_iccs(text)
    ours.send("ucinewgame")
    fairy.new_game()
    clock = None
    if args.clock:
        from xiangqi_gpt.play.timeman import parse_clock

        clock = parse_clock(args.clock)
        ours.left_ms = clock[0]
    while True:
        outcome = board.outcome()
        if outcome is not None:
            return outcome.result(), outcome.reason, board
        if board.ply >= args.max_plies:
            return "1/2-1/2", f"adjudicated a draw after {args.max_plies} plies", board
        moves = [m.iccs() for m in board.move_stack]
        mover = board.turn
        if mover == our_color:
            name, text = "xiangqi-gpt", ours.bestmove(args.fen, moves, args.movetime, clock and clock[1])
            if clock is not None and ours.left_ms <= 0:
                return (("0-1" if mover == RED else "1-0"), "xiangqi-gpt lost on time (ms used/left, last moves: "
                        + " ".join(ours.last_moves) + ")", board)
        else:
            name = "Fairy-Stockfish"
            text = fairy.bestmove(None if args.fen == STARTING_FEN else args.fen, moves,
                                  depth=args.fsf_depth, movetime=args.fsf_movetime)
        loss = "0-1" if mover == RED else "1-0"
        if text is None:
            return loss, f"{name} gave no move in a position with legal moves", board
        try:
            move = Move.from_iccs(text)
        except XiangqiError:
            return loss, f"{name} answered {text!r}, not a move", board
        reason = board.why_illegal(move)
        if reason is not None:
            return loss, f"{name} played the illegal move {text}: {reason}", board
        board.push(move)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--games", type=int, default=2)
    p.add_argument("--checkpoint", default=None, help="our model (default: the shipped default.pt)")
    p.add_argument("--temperature", type=float, default=0.0, help="our engine's temperature")
    p.add_argument("--style", choices=("human", "strong"), default=None,
                   help="our engine's Style (default: the engine's own default)")
    p.add_argument("--movetime", type=int, default=100, help="ms per move for our engine")
    p.add_argument("--fsf-depth", type=int, default=1, help="Fairy-Stockfish search depth (default 1)")
    p.add_argument("--fsf-movetime", type=int, default=None, help="Fairy-Stockfish ms per move (instead of depth)")
    p.add_argument("--fsf-skill", type=int, default=-20, help="Fairy-Stockfish Skill Level -20..20 (default -20)")
    p.add_argument("--max-plies", type=int, default=300, help="adjudicate a draw after this many plies")
    p.add_argument("--fen", default=STARTING_FEN, help="start position")
    p.add_argument("--book-plies", type=int, choices=(0, 1, 2), default=0,
                   help="start each pair of games (one with each colour) from a book line of this many plies, as "
                        "the arena does (default 0: every game from --fen); with full-strength Fairy-Stockfish, "
                        "which is deterministic, this is what makes the games differ")
    p.add_argument("--seed", type=int, default=0, help="seed of the book lines' order (default 0)")
    p.add_argument("--pgn", default=None, help="write the games here (ICCS PGN)")
    p.add_argument("--clock", default=None, metavar="M+S",
                   help="our engine plays on this clock (minutes + seconds per move, e.g. 0.1667+0.1) instead of "
                        "--movetime")
    args = p.parse_args()
    if args.book_plies and args.fen != STARTING_FEN:
        p.error("--book-plies needs the standard start position (the book lines start there)")
    if args.fsf_movetime is not None:
        args.fsf_depth = None

    argv = [sys.executable, "-m", "xiangqi_gpt", "uci", "--temperature", str(args.temperature)]
    if args.checkpoint:
        argv += ["--checkpoint", args.checkpoint]
    if args.style:
        argv += ["--style", args.style]
    ours = UciProcess(argv)
    errors = [line for line in ours.isready() if line.startswith("info string error")]
    if errors:
        ours.close()
        raise SystemExit(f"our engine cannot play: {errors[0]}")
    fairy = FairyStockfish(skill=args.fsf_skill, options={"Threads": 1, "Hash": 16})
    points, records = [], []            # our points per game (1, 0.5, 0)
    t0 = time.perf_counter()
    try:
        openings = opening_schedule(args.games, args.seed, args.book_plies)
        for g in range(args.games):
            our_color = RED if g % 2 == 0 else BLACK
            result, reason, board = play_game(ours, fairy, our_color, args, openings[g])
            points.append({"1-0": (1.0, 0.0), "0-1": (0.0, 1.0)}.get(result, (0.5, 0.5))[our_color])
            side = "Red" if our_color == RED else "Black"
            book = f" (book {' '.join(openings[g])})" if openings[g] else ""
            print(f"game {g + 1}: xiangqi-gpt as {side}{book}: {result} in {board.ply} plies, {reason}",
                  flush=True)
            records.append((our_color, result, reason, board))
    finally:
        ours.close()
        fairy.close()
    score = sum(points)
    depth = f"depth {args.fsf_depth}" if args.fsf_depth is not None else f"movetime {args.fsf_movetime} ms"
    print(f"xiangqi-gpt {score:g} - {len(records) - score:g} Fairy-Stockfish (skill {args.fsf_skill}, {depth}) "
          f"over {len(records)} games in {time.perf_counter() - t0:.0f} s")
    if points:
        w, d = points.count(1.0), points.count(0.5)
        elo = elo_interval(w, d, len(points) - w - d)
        print(f"xiangqi-gpt: {w} W / {d} D / {len(points) - w - d} L, Elo {elo['diff']:+.0f} "
              f"[{elo['low']:+.0f}, {elo['high']:+.0f}]")
    if ours.reply_ms:
        print(f"our engine: median {statistics.median(ours.reply_ms):.1f} ms from `go` to `bestmove` "
              f"over {len(ours.reply_ms)} moves")
    if ours.shares:
        on_time = sum("lost on time" in reason for _, _, reason, _ in records)
        print(f"clock {args.clock}: {on_time} games lost on time; median move used "
              f"{100 * statistics.median(ours.shares):.1f}% of the remaining time (max "
              f"{100 * max(ours.shares):.1f}%)")
    if args.pgn:
        from xiangqi_gpt.records.pgn import Game, write_game

        with open(args.pgn, "w", encoding="utf-8") as f:
            for i, (our_color, result, reason, board) in enumerate(records, 1):
                names = ("xiangqi-gpt", "Fairy-Stockfish") if our_color == RED else ("Fairy-Stockfish", "xiangqi-gpt")
                game = Game(headers={"Event": "engine_vs_fairy", "Round": str(i), "Red": names[0],
                                     "Black": names[1], "Termination": reason},
                            moves=list(board.move_stack), root_fen=board.root_fen(), result=result)
                f.write(write_game(game))
        print(f"wrote {args.pgn}")


if __name__ == "__main__":
    main()
