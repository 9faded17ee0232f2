"""play.py's clock: the time control, both clocks in the panel, a flag fall ends the game, and the model thinks on
its own clock through timeman's allotment (a fake clock, in process)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from xiangqi_gpt.rules.board import BLACK, RED
from xiangqi_gpt.errors import ConfigError
from xiangqi_gpt.play.terminal import PlayerLoader, Quit, Session, default_player_factory
from xiangqi_gpt.play.timeman import GameClock, allot, format_clock, parse_clock

from test_play import MATE_IN_ONE, play, write_tiny_checkpoint


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def test_parse_and_format_clocks():
    assert parse_clock("10+5") == (600_000, 5000) and parse_clock("1") == (60_000, 0)
    assert parse_clock("0.5+0.1") == (30_000, 100)
    for bad in ("", "0+5", "x", "10+-1", "10+5+5", "-3"):
        with pytest.raises(ConfigError, match="MINUTES\\+SECONDS"):
            parse_clock(bad)
    assert format_clock(600_000) == "10:00" and format_clock(65_000) == "1:05" and format_clock(9_450) == "9.4"
    assert format_clock(-50) == "0.0"


def test_game_clock_charges_the_side_to_move_and_adds_the_increment():
    fake = FakeClock()
    clock = GameClock(60_000, 2000, clock=fake)
    clock.start(RED)
    fake.t += 5
    assert clock.remaining_ms(RED) == 55_000 and clock.remaining_ms(BLACK) == 60_000
    clock.stop()
    clock.moved(RED)
    assert clock.remaining_ms(RED) == 57_000 and clock.flagged() is None
    clock.start(BLACK)
    fake.t += 61
    assert clock.flagged() == BLACK
    clock.stop()
    clock.moved(BLACK)                                                # no increment after the flag fell
    assert clock.remaining_ms(BLACK) == -1000 and clock.flagged() == BLACK
    assert clock.allotment(RED) == allot(57_000, 2000)


def scripted(lines: list[str], fake: FakeClock, seconds_per_line: float):
    """An input function: each line takes ``seconds_per_line`` of the (fake) clock to type."""
    feed = iter(lines)

    def read(prompt: str) -> str:
        fake.t += seconds_per_line
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return read


def no_model():
    raise AssertionError("the model is not needed")


def test_a_flag_fall_ends_the_game():
    fake = FakeClock()
    out = io.StringIO()
    session = Session(Console(file=out, width=100), PlayerLoader(no_model), clock=GameClock(60_000, 0, clock=fake),
                      input_fn=scripted(["h2e2", ""], fake, seconds_per_line=61))
    with pytest.raises(Quit):
        session.run()
    text = out.getvalue()
    assert "Red runs out of time" in text and "(Black wins, 0-1)" in text
    assert session.outcome_result() == ("0-1", "Red runs out of time")
    assert session.board.ply == 0                                     # the late move was refused


def test_the_model_s_budget_follows_its_clock(checkpoint):
    fake = FakeClock()
    clock = GameClock(3000, 500, clock=fake)
    loader = PlayerLoader(default_player_factory(str(checkpoint), 0.0, None, 1)).start()
    out = io.StringIO()
    session = Session(Console(file=out, width=100), loader, clock=clock,
                      input_fn=scripted(["h2e2"], fake, seconds_per_line=1))
    session.play_move("h2e2")                                        # Red moves; Black (the model) answers
    assert session.board.ply == 2
    assert session.model_allotment == allot(3000, 500)               # Black's own clock, not Red's
    assert clock.remaining_ms(BLACK) == 3500                          # no fake time passed: + the increment
    clock.left[BLACK] = 800                                           # low on time: a smaller budget
    session.play_move("h0g2")
    assert session.model_allotment == allot(800, 500) and session.model_allotment.hard_ms < 400
    session.show()
    assert "Clock  Red 4.0  Black 1.3" in out.getvalue()             # both clocks, increments added


def test_clock_option_on_the_command_line(tmp_path):
    r = play(["--clock", "0+5"], "")
    assert r.returncode == 2 and r.stderr.startswith("error: --clock: a clock is MINUTES+SECONDS")
    (tmp_path / "unused.pt").write_bytes(b"not loaded unless the model must move")
    r = play(["--fen", MATE_IN_ONE, "--checkpoint", str(tmp_path / "unused.pt"), "--clock", "10+5"], "a0a9\n\n")
    assert r.returncode == 0, r.stderr
    assert "Clock  Red 10:00  Black 10:00" in r.stdout and "Black is checkmated" in r.stdout
