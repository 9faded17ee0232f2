"""Time management: how long to think on a clock (:func:`allot`), and when to stop (:class:`Timer`).

The formula (all in milliseconds; ``overhead`` = :data:`MOVE_OVERHEAD_MS`, kept back for the pipes, the GUI and
the model call that starts every search)::

    usable = max(0, remaining - overhead)
    moves  = min(movestogo, HORIZON) if movestogo else HORIZON          # HORIZON = 30
    soft   = min(usable / moves + INCREMENT_SHARE * increment, usable / 3)   # INCREMENT_SHARE = 0.8
    hard   = min(HARD_FACTOR * soft, usable / 2)                          # HARD_FACTOR = 2; hard >= soft

The search starts no new iteration once ``soft`` has passed, nor one that is not expected to finish before ``hard``
(the next iteration is expected to take :data:`GROWTH` times the last); at ``hard`` it stops in the middle of an
iteration with the best move so far. Since both limits are at most a third and a half of what is left after the
overhead, the clock can never run out, whatever the increment: with little time left, the engine thinks for most of
its increment and for a shrinking share of the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

MOVE_OVERHEAD_MS = 100     # kept back from every clock: pipes, GUI latency, the model call before the first node
HORIZON = 30               # a clock without movestogo is spread over this many more moves
INCREMENT_SHARE = 0.8      # the share of the increment spent on each move
HARD_FACTOR = 2            # the hard limit, in soft limits (when the clock allows)
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
        has passed, or when the next (:data:`GROWTH` times the last) is not expected to finish before the hard
        limit. Always yes before :meth:`start` (pondering)."""
        if self.t0 is None:
            return True
        elapsed = self.elapsed_ms()
        if elapsed >= self.allotment.soft_ms:
            return False
        return elapsed + GROWTH * max(0.0, last_iteration_ms) <= self.allotment.hard_ms
