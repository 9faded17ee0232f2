"""Time management: the allotment from a clock, the soft and hard limits (a fake clock), and the search's stop."""

from __future__ import annotations

import pytest

from xiangqi_gpt.rules.board import Board
from xiangqi_gpt.play.search import Limits, Searcher
from xiangqi_gpt.play.timeman import GROWTH, MOVE_OVERHEAD_MS, Allotment, Timer, allot


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_allotment_from_given_clocks():
    a = allot(60_000, 0)
    assert a.soft_ms == (60_000 - MOVE_OVERHEAD_MS) // 30 and a.hard_ms == int(2 * (60_000 - MOVE_OVERHEAD_MS) / 30)
    assert 0.02 <= a.soft_ms / 60_000 <= 0.08                        # a few percent of the clock
    with_inc = allot(60_000, 1000)
    assert with_inc.soft_ms == int((60_000 - MOVE_OVERHEAD_MS) / 30 + 800)   # + most of the increment
    last = allot(10_000, 0, movestogo=1)                             # the last move before the time control
    assert last.hard_ms <= (10_000 - MOVE_OVERHEAD_MS) / 2 and last.soft_ms <= (10_000 - MOVE_OVERHEAD_MS) / 3
    assert allot(60_000, 0, movestogo=10).soft_ms == int((60_000 - MOVE_OVERHEAD_MS) / 10)
    assert allot(60_000, 0, movestogo=100) == allot(60_000, 0)       # spread over at most 30 moves
    assert allot(0) == allot(-500) == Allotment(1, 1)                # flagged: think as little as possible
    assert allot(MOVE_OVERHEAD_MS, 100) == Allotment(1, 1)


@pytest.mark.parametrize("increment", [0, 100, 1000, 5000])
@pytest.mark.parametrize("remaining", [1, 50, 150, 300, 1000, 10_000, 600_000])
def test_the_hard_limit_always_leaves_the_overhead_and_half_the_rest(remaining, increment):
    a = allot(remaining, increment)
    assert 1 <= a.soft_ms <= a.hard_ms
    if remaining > MOVE_OVERHEAD_MS + 2:
        assert a.hard_ms <= (remaining - MOVE_OVERHEAD_MS) / 2


def test_a_game_on_a_tiny_increment_never_flags():
    """10 s + 0.1 s, 300 moves, each move using its whole hard limit plus 30 ms of latency: the clock never runs
    out, and it settles where the increment pays for the moves."""
    remaining = 10_000
    for _ in range(300):
        a = allot(remaining, 100)
        remaining -= a.hard_ms + 30
        assert remaining > 0
        remaining += 100
    assert remaining > MOVE_OVERHEAD_MS


def test_timer_soft_and_hard_limits_with_a_fake_clock():
    clock = FakeClock()
    timer = Timer(Allotment(soft_ms=1000, hard_ms=2500), clock=clock)
    assert timer.next_iteration_fits(100) and not timer.expired()
    clock.t += 0.5                                                    # 500 ms in
    assert timer.next_iteration_fits(1250 / GROWTH)                  # 500 + 1250 <= (1000 + 2500) / 2
    assert not timer.next_iteration_fits(1251 / GROWTH)              # would end too close to the hard limit
    clock.t += 0.5                                                    # 1000 ms: the soft limit
    assert not timer.next_iteration_fits(1) and not timer.expired()
    clock.t += 1.5
    assert timer.expired()


def test_a_ponder_timer_starts_at_ponderhit():
    clock = FakeClock()
    timer = Timer(Allotment(soft_ms=100, hard_ms=200), start=False, clock=clock)
    clock.t += 60                                                     # a long ponder: no limit applies
    assert not timer.started and not timer.expired() and timer.next_iteration_fits(10 ** 6)
    timer.start()
    assert timer.elapsed_ms() == 0 and timer.next_iteration_fits(10)
    clock.t += 0.3
    assert timer.expired()
    timer.start()                                                     # a second start changes nothing
    assert timer.expired()


MIDDLEGAME = "r1bakab1r/9/1cn3nc1/p1p1p1p1p/9/2P6/P3P1P1P/1CN3NC1/9/R1BAKAB1R w - - 4 5"


def plain_searcher() -> Searcher:
    return Searcher(None, use_gpt=False)   # no model: the timing logic does not depend on it


def test_the_search_stops_at_the_iteration_end_past_the_soft_limit():
    clock = FakeClock()
    board = Board(MIDDLEGAME)
    timer = Timer(Allotment(soft_ms=1000, hard_ms=10 ** 9), clock=clock)
    infos = []

    def on_info(info):
        infos.append(info)
        if info.depth == 2:
            clock.t += 1.0                                            # the soft limit passes during depth 2

    result = plain_searcher().search(board, Limits(depth=8), on_info, timer=timer)
    assert [i.depth for i in infos][:2] == [1, 2] and result.info.depth == 2   # no depth 3 started


def test_the_search_does_not_start_an_iteration_that_cannot_finish():
    clock = FakeClock()
    timer = Timer(Allotment(soft_ms=10 ** 6, hard_ms=10 ** 6), clock=clock)

    def on_info(info):
        if info.depth == 3:
            clock.t += 1000 - 0.001                                   # 1 ms short of the hard limit

    result = plain_searcher().search(Board(MIDDLEGAME), Limits(depth=8), on_info, timer=timer)
    assert result.info.depth == 3


def test_the_hard_limit_stops_inside_an_iteration_with_a_move():
    clock = FakeClock()
    timer = Timer(Allotment(soft_ms=1, hard_ms=1), clock=clock)
    clock.t += 1                                                      # already past: the first check stops it
    board = Board(MIDDLEGAME)
    result = plain_searcher().search(board, Limits(), timer=timer)
    assert result.move in board.legal_moves() and result.info.depth <= 1


def test_a_tiny_clock_searches_without_the_model_s_policy():
    from xiangqi_gpt.play.player import GPTPlayer
    from xiangqi_gpt.play.timeman import LEAN_BELOW_MS

    import torch

    torch.set_num_threads(1)
    searcher = Searcher(GPTPlayer.load())
    board = Board(MIDDLEGAME)
    searcher.search(board, Limits(depth=1), timer=Timer(Allotment(LEAN_BELOW_MS, LEAN_BELOW_MS)))
    calls = searcher.policy.calls
    assert calls >= 1                                                 # enough time: the model is asked
    searcher.clear()
    result = searcher.search(board, Limits(depth=1), timer=Timer(Allotment(1, LEAN_BELOW_MS - 1)))
    assert searcher.policy.calls == calls and result.move in board.legal_moves()   # not asked, still a move
    assert searcher.policy is not None                                # and back for the next search
