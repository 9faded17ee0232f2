"""match: the one game loop (refereeing, turn order, ply cap, outcome recording) and its players."""

import pytest

from xiangqi_gpt.rules.board import BLACK, RED, Board, Move
from xiangqi_gpt.play.fairy import EngineError, FairyStockfish, find_fairy_stockfish
from xiangqi_gpt.play.match import (DEFAULT_FAIRY_DEPTH, OPENINGS, PLY_CAP, FairyPlayer, GameError, RandomPlayer,
                               play_game)


class ScriptedPlayer:
    """Plays the given ICCS moves in order; running out of moves is a test failure (the loop asked after the game
    should have ended)."""

    def __init__(self, moves, name="scripted"):
        self.moves, self.name = list(moves), name

    def choose(self, board: Board) -> Move:
        assert self.moves, "asked for a move after the script ended"
        return Move.from_iccs(self.moves.pop(0))


class Asked:
    """A player that notes the colour it was asked to move for, then lets ``inner`` choose."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.asked: list[int] = []

    def choose(self, board: Board) -> Move:
        self.asked.append(board.turn)
        return self.inner.choose(board)


def replay(moves) -> Board:
    board = Board()
    for m in moves:
        board.push_iccs(m)      # raises on an illegal move
    return board


def finished_random_game() -> list[str]:
    """The moves of the first seeded random game that ends by the rules (not by a ply cap)."""
    for seed in range(100):
        rng = RandomPlayer(seed)
        board = Board()
        while board.outcome() is None and board.ply < 400:
            board.push(rng.choose(board))
        if board.outcome() is not None:
            return [m.iccs() for m in board.move_stack]
    raise AssertionError("no random game ended within 400 plies in 100 seeds")


def test_the_outcome_is_recorded_and_the_loop_stops_there():
    moves = finished_random_game()
    red, black = Asked(ScriptedPlayer(moves[0::2], "R")), Asked(ScriptedPlayer(moves[1::2], "B"))
    seen = []
    record = play_game(red, black, max_plies=1000, on_move=lambda b: seen.append(b.ply))
    outcome = replay(moves).outcome()
    assert record.moves == moves and record.plies == len(moves) and record.opening == []
    assert (record.result, record.termination, record.reason) == (outcome.result(), outcome.termination,
                                                                   outcome.reason)
    assert record.winner == {"1-0": RED, "0-1": BLACK}.get(outcome.result())
    assert red.inner.moves == black.inner.moves == []           # every scripted move was asked for, no more
    assert set(red.asked) == {RED} and set(black.asked) == {BLACK}
    assert seen == list(range(1, len(moves) + 1))               # on_move after every move


def test_opening_then_turns_then_the_ply_cap():
    opening = OPENINGS[0]
    red, black = Asked(RandomPlayer(4)), RandomPlayer(5)
    record = play_game(red, black, opening, max_plies=11)
    assert record.moves[:2] == list(opening) == record.opening
    assert record.plies == 11 and replay(record.moves).outcome() is None
    assert (record.result, record.termination, record.winner) == ("1/2-1/2", PLY_CAP, None)
    assert record.reason == "stopped after 11 plies (scored as a draw)"
    assert red.asked == [RED] * 5                               # plies 3, 5, 7, 9, 11: the opening is not asked
    # a cap already reached by the opening: no player is asked
    assert play_game(ScriptedPlayer([]), ScriptedPlayer([]), opening, max_plies=2).moves == list(opening)


def test_an_illegal_move_stops_the_game_with_one_clear_error():
    with pytest.raises(GameError, match=r"^cheat played the illegal move a0a9 in .*: "):
        play_game(ScriptedPlayer(["h2e2", "a0a9"], "fair"), ScriptedPlayer(["a0a9"], "cheat"))


def test_random_player_is_seeded():
    a = play_game(RandomPlayer(1), RandomPlayer(2), max_plies=40)
    b = play_game(RandomPlayer(1), RandomPlayer(2), max_plies=40)
    c = play_game(RandomPlayer(1), RandomPlayer(3), max_plies=40)
    assert a == b and a.moves != c.moves
    replay(a.moves)


class AnsweringEngine:
    """Answers every bestmove with ``answer``, and notes the call's limits (to test FairyPlayer's checks without
    a Fairy-Stockfish binary)."""

    name = "Fake-Fish 1"

    def __init__(self, answer):
        self.answer, self.calls, self.closed = answer, [], False

    def bestmove(self, fen, moves, **limits):
        self.calls.append((fen, list(moves), limits))
        return self.answer

    def close(self):
        self.closed = True


def test_fairy_player_checks_the_engine_answer():
    engine = AnsweringEngine("h2e2")
    player = FairyPlayer(engine)
    assert player.name == f"Fake-Fish 1 (depth {DEFAULT_FAIRY_DEPTH})"
    board = Board()
    assert player.choose(board) == Move.from_iccs("h2e2")
    assert engine.calls[-1][2] == {"depth": DEFAULT_FAIRY_DEPTH, "movetime": None, "skill": None, "elo": None}
    board.push_iccs("h2e2")
    assert FairyPlayer(engine, movetime=50, skill=3, name="x").depth is None
    for answer, match in ((None, "found no move"), ("zz", "not a move"), ("h2e2", "illegal move h2e2")):
        engine.answer = answer
        with pytest.raises(EngineError, match=match):
            player.choose(board)
    player.close()
    assert not engine.closed                                     # a shared engine is its owner's to close


@pytest.mark.fairy
@pytest.mark.skipif(find_fairy_stockfish() is None, reason="Fairy-Stockfish not installed")
def test_fairy_player_plays_refereed_games():
    player = FairyPlayer.start(depth=1, skill=5)
    try:
        assert player.name.startswith("Fairy-Stockfish") and player.name.endswith("(depth 1, skill 5)")
        player.new_game()
        record = play_game(player, RandomPlayer(0), OPENINGS[3], max_plies=30)
        replay(record.moves)
        with FairyStockfish() as shared:                     # both sides on one engine, as selfplay does
            side = FairyPlayer(shared, depth=1, name="FSF depth 1")
            record = play_game(side, side, max_plies=12)
            assert record.plies == 12 or replay(record.moves).outcome() is not None
            side.close()
            assert not shared.closed
    finally:
        player.close()
    assert player.engine.closed
