"""Board-state targets: the piece on each of the 90 squares after every token of a tokenized split.

The rule engine as a dense teacher (issue 16, item 3): an auxiliary head of the training module predicts, from a
middle layer's vectors, what stands on every square after each move, so that the model is taught to keep the board.
The targets are made on the fly for each training window by replaying its game from its ``<bos>`` (a xiangqi move
only moves one piece: no castling, promotion or en passant), so no file is written.

Main names: :data:`N_SQUARES`, :data:`N_CLASSES`, :func:`piece_class`, :func:`start_classes`, :func:`move_squares`,
:func:`window_boards`, :data:`MIRROR_SQUARES`. No torch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..rules.board import Board, parse_square
from .tokenizer import BOS, N_SPECIAL, get_tokenizer

#: squares of the board, ``rank * 9 + file`` as in :func:`xiangqi_gpt.rules.board.square`
N_SQUARES = 90
#: classes of a square: 0 empty, 1..7 a Red general .. soldier, 8..14 a Black general .. soldier
N_CLASSES = 15
#: square -> its left-right mirror (file ``f`` -> ``8 - f``), to mirror a target with its window
MIRROR_SQUARES = np.array([(s // 9) * 9 + 8 - s % 9 for s in range(N_SQUARES)], dtype=np.int64)


def piece_class(code: int) -> int:
    """The class (0..14) of a piece code of :attr:`Board.squares <xiangqi_gpt.rules.board.Board.squares>`."""
    return 0 if not code else (code & 7) + 7 * (code >> 3)


def start_classes() -> list[int]:
    """The 90 classes of the starting position (a new list)."""
    return list(_start_classes())


@lru_cache(maxsize=1)
def _start_classes() -> tuple[int, ...]:
    return tuple(piece_class(c) for c in Board().squares)


def move_squares(tokenizer: str = "move") -> tuple[np.ndarray, np.ndarray]:
    """``(from_square, to_square)``, each indexed by token id: the squares of each move token, -1 for the others
    (special and source tokens). Only the ``move`` tokenizer has one token per move."""
    tok = get_tokenizer(tokenizer)
    if tok.tokens_per_move != 1:
        raise ValueError(f"board targets need one token per move; the {tok.name} tokenizer has "
                         f"{tok.tokens_per_move}")
    frm = np.full(tok.vocab_size, -1, dtype=np.int64)
    to = np.full(tok.vocab_size, -1, dtype=np.int64)
    for i in range(N_SPECIAL, tok.vocab_size):
        iccs = tok.tokens[i]
        frm[i], to[i] = parse_square(iccs[:2]), parse_square(iccs[2:])
    return frm, to


def window_boards(tokens: np.ndarray, game_starts: np.ndarray, start: int, length: int,
                  squares: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Targets for the ``length`` input positions ``start .. start + length - 1`` of a split's token array.

    ``game_starts``: the split's sorted game start offsets (each a ``<bos>``); ``squares``: :func:`move_squares`
    (computed if None). Returns ``(classes, valid)``: ``classes`` (length, 90) uint8, the board after the token at
    each position (after ``<bos>``: the starting position), and ``valid`` (length,) booleans, False where there is no
    board to teach (a result token, or a move whose from-square is empty, which a well-formed split never has)."""
    frm, to = squares if squares is not None else move_squares()
    i = int(np.searchsorted(game_starts, start, side="right")) - 1
    first = int(game_starts[i]) if i >= 0 else start
    start_board = _start_classes()
    board: list[int] | None = None
    classes = np.zeros((length, N_SQUARES), dtype=np.uint8)
    valid = np.zeros(length, dtype=bool)
    frm_l, to_l = frm.tolist(), to.tolist()
    for t, v in enumerate(np.asarray(tokens[first:start + length]).tolist(), start=first):
        if v == BOS:
            board = list(start_board)
        elif v < N_SPECIAL or board is None:
            board = None
        else:
            a, b = frm_l[v], to_l[v]
            if a < 0 or not board[a]:
                board = None
            else:
                board[b], board[a] = board[a], 0
        if t >= start and board is not None:
            classes[t - start] = board
            valid[t - start] = True
    return classes, valid
