"""Time management: how long to think on a clock (:func:`allot`), and when to stop (:class:`Timer`).

Main names: :func:`allot`, :class:`Allotment`, :class:`Timer`, :class:`GameClock`.
Design notes: docs/design.md#play-timeman
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

MOVE_OVERHEAD_MS = 100     # kept back from every clock: pipes, GUI latency, the model call before the first node
HORIZON = 30               # a clock without movestogo is spread over this many more moves
INCREMENT_SHARE = 0.8      # the share of the increment spent on each move
HARD_FACTOR = 2            # the hard limit, in soft limits (when the clock allows)
LEAN_BELOW_MS = 250        # a hard limit below this: the search runs without the model's policy (its calls take
                           # tens of ms on a CPU, more on a busy one; the increment must pay for every move)
GROWTH = 3.0               # the next iteration is expected to take this many times the last one (measured:
                           # 2-5 times in middlegames)


@dataclass(frozen=True)
class Allotment:
    """The time for one move: ``soft_ms`` (no new iteration after it) and ``hard_ms`` (the search stops)."""

    soft_ms: int
    hard_ms: int


def allot(remaining_ms: int, increment_ms: int = 0, movestogo: int | None = None,
          overhead_ms: int = MOVE_OVERHEAD_MS) -> Allotment:
    """The allotment for a move with ``remaining_ms`` on the clock (see the module docs for the formula). Both
    limits are at least 1 ms (a search always answers: with no time it plays its first candidate)."""
    remaining, increment = max(0, int(remaining_ms)), max(0, int(increment_ms))
    usable = max(0, remaining - max(0, overhead_ms))
    moves = min(movestogo, HORIZON) if movestogo and movestogo > 0 else HORIZON
    soft = min(usable / moves + INCREMENT_SHARE * increment, usable / 3)
    hard = min(HARD_FACTOR * soft, usable / 2)
    soft_ms = max(1, int(soft))
    return Allotment(soft_ms=soft_ms, hard_ms=max(soft_ms, int(hard)))


class Timer:
    """The soft and hard limits of one search, measured from :meth:`start` (at once, or at ``ponderhit`` for a
    search that began as a ponder). Before :meth:`start` nothing expires. ``clock`` returns seconds (a fake clock
    in tests). Thread-safe enough for one search thread and one thread calling :meth:`start`."""

    def __init__(self, allotment: Allotment, start: bool = True, clock: Callable[[], float] = time.perf_counter):
        self.allotment = allotment
        self.clock = clock
        self.t0: float | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Start the allotment now (a second call does nothing)."""
        if self.t0 is None:
            self.t0 = self.clock()

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def elapsed_ms(self) -> float:
        return 0.0 if self.t0 is None else 1000 * (self.clock() - self.t0)

    def expired(self) -> bool:
        """The hard limit has passed: stop now."""
        return self.t0 is not None and self.elapsed_ms() >= self.allotment.hard_ms

    def next_iteration_fits(self, last_iteration_ms: float) -> bool:
        """At the end of an iteration that took ``last_iteration_ms``: may the next one start? No once the soft limit
        has passed, or when the next (:data:`GROWTH` times the last) is not expected to finish before the midpoint
        of the soft and hard limits (the hard limit is for the iterations that take longer than expected). Always
        yes before :meth:`start` (pondering)."""
        if self.t0 is None:
            return True
        elapsed = self.elapsed_ms()
        soft, hard = self.allotment.soft_ms, self.allotment.hard_ms
        if elapsed >= soft:
            return False
        return elapsed + GROWTH * max(0.0, last_iteration_ms) <= (soft + hard) / 2


def parse_clock(text: str) -> tuple[int, int]:
    """A time control ``MINUTES+SECONDS`` (``10+5``: 10 minutes each, 5 s added per move; ``1``: no increment) as
    (base, increment) in ms; a one-line ConfigError for anything else."""
    from ..errors import ConfigError

    base, _, inc = text.strip().partition("+")
    try:
        minutes, seconds = float(base), float(inc or 0)
    except ValueError:
        minutes = seconds = -1.0
    if not (0 < minutes <= 24 * 60 and 0 <= seconds <= 3600):
        raise ConfigError(f"a clock is MINUTES+SECONDS, like 10+5 (minutes > 0), got {text.strip()!r}")
    return round(minutes * 60_000), round(seconds * 1000)


def format_clock(ms: float) -> str:
    """``12:05`` (minutes:seconds), or ``9.4`` seconds under 20 s; ``0.0`` once flagged."""
    ms = max(0.0, ms)
    if ms < 20_000:
        return f"{int(ms / 100) / 10:.1f}"
    seconds = int(ms // 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


class GameClock:
    """A chess clock for two sides (0 and 1): ``base_ms`` each, ``increment_ms`` added after each move.
    :meth:`start` a side's clock, :meth:`stop` it (charging the time), :meth:`moved` adds the increment."""

    def __init__(self, base_ms: int, increment_ms: int = 0, clock: Callable[[], float] = time.monotonic):
        self.base_ms, self.increment_ms, self.clock = base_ms, increment_ms, clock
        self.reset()

    def reset(self) -> None:
        self.left = [float(self.base_ms), float(self.base_ms)]
        self.running: int | None = None
        self.since = 0.0

    def start(self, side: int) -> None:
        self.stop()
        self.running, self.since = side, self.clock()

    def stop(self) -> None:
        if self.running is not None:
            self.left[self.running] -= 1000 * (self.clock() - self.since)
            self.running = None

    def moved(self, side: int) -> None:
        """``side`` made a move in time: its increment."""
        if self.left[side] > 0:
            self.left[side] += self.increment_ms

    def remaining_ms(self, side: int) -> float:
        left = self.left[side]
        if self.running == side:
            left -= 1000 * (self.clock() - self.since)
        return left

    def flagged(self) -> int | None:
        """The side whose time has run out, if any."""
        return next((side for side in (0, 1) if self.remaining_ms(side) <= 0), None)

    def allotment(self, side: int) -> Allotment:
        """The time ``side`` may think on its move (:func:`allot` on its remaining time and the increment)."""
        return allot(int(self.remaining_ms(side)), self.increment_ms)
