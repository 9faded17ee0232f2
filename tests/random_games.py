"""Random legal games for the tests: the one helper that plays seeded random moves on a board."""

from __future__ import annotations

import random

from xiangqi_gpt.rules.board import STARTING_FEN, Board, Move


def play_random(board: Board, plies: int, rng: random.Random) -> Board:
    """Push up to ``plies`` random legal moves onto ``board`` and return it; stops early when the game ends.

    Moves are drawn from the legal moves sorted by ICCS, so a seed gives the same game whatever order the move
    generator lists them in."""
    for _ in range(plies):
        if board.outcome() is not None:
            break
        board.push(rng.choice(sorted(board.legal_moves(), key=Move.iccs)))
    return board


def random_board(rng: random.Random, plies: int, fen: str = STARTING_FEN) -> Board:
    """The board after up to ``plies`` random legal moves from ``fen`` (see ``play_random``)."""
    return play_random(Board(fen), plies, rng)
