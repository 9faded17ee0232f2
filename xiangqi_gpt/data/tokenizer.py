"""Tokenizers: ICCS move strings <-> integer ids.

Main names: :func:`get_tokenizer`, :class:`MoveTokenizer` (one token per move), :class:`CharTokenizer` (four per
move). Imports neither torch nor the board.
Design notes: docs/design.md#data-tokenizer
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

from ..errors import ConfigError, InvalidMoveError, XiangqiError

BOS, RED_WIN, BLACK_WIN, DRAW, END = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ["<bos>", "<red_win>", "<black_win>", "<draw>", "<end>"]
N_SPECIAL = len(SPECIAL_TOKENS)
RESULT_TOKENS = {"1-0": RED_WIN, "0-1": BLACK_WIN, "1/2-1/2": DRAW, "*": END}
TOKEN_RESULTS = {RED_WIN: "1-0", BLACK_WIN: "0-1", DRAW: "1/2-1/2", END: "*"}

FILES = "abcdefghi"
RANKS = "0123456789"
CHARS = RANKS + FILES  # char tokenizer alphabet, ids 5..23 in this order

TOKENIZER_NAMES = ("move", "char")

#: Start tokens that name where a game comes from: master games, engine games, games of our own search, and the
#: left-right mirrored view of a master game. They are not in a tokenizer's vocabulary: a model that has them
#: (``GPTConfig.sources``) embeds source ``i`` of its list at id ``tokenizer.vocab_size + i``, in place of
#: ``<bos>``. They are inputs only (a model never predicts them). See :meth:`xiangqi_gpt.model.gpt.GPT.start_id`.
SOURCES = ("master", "engine", "search", "mirror")
#: Play-time names for the conditions a player may ask the model in (``--style``): ``human`` plays like the
#: masters, ``strong`` like the engine games.
#: The condition players and ``evaluate`` ask the model in unless told otherwise.
DEFAULT_SOURCE = "master"
STYLES = {"human": "master", "master": "master", "strong": "engine", "engine": "engine", "search": "search"}


def resolve_style(style: str | None) -> str | None:
    """A style name (``human``, ``strong``, or a source name) -> the source it conditions on; None stays None.
    ConfigError for an unknown name."""
    if style is None:
        return None
    key = str(style).strip().lower()
    if key not in STYLES:
        raise ConfigError(f"unknown style {style!r} (choose one of: {', '.join(sorted(STYLES))})")
    return STYLES[key]


# --------------------------------------------------------------------------------------------------------------------
# Move geometry


def square(file: int, rank: int) -> int:
    return rank * 9 + file


def square_name(sq: int) -> str:
    return FILES[sq % 9] + RANKS[sq // 9]


def mirror_square(sq: int) -> int:
    """Left-right mirror: file a <-> i, rank unchanged."""
    return square(8 - sq % 9, sq // 9)


def _on_board(file: int, rank: int) -> bool:
    return 0 <= file < 9 and 0 <= rank < 10


def _line_moves() -> set[tuple[int, int]]:
    """Rook and cannon: any other square on the same rank or file. Covers king and pawn steps (and flying kings)."""
    moves = set()
    for a in range(90):
        for b in range(90):
            if a != b and (a // 9 == b // 9 or a % 9 == b % 9):
                moves.add((a, b))
    return moves


def _horse_moves() -> set[tuple[int, int]]:
    moves = set()
    for a in range(90):
        f, r = a % 9, a // 9
        for df, dr in ((1, 2), (2, 1), (2, -1), (1, -2), (-1, -2), (-2, -1), (-2, 1), (-1, 2)):
            if _on_board(f + df, r + dr):
                moves.add((a, square(f + df, r + dr)))
    return moves


def _diagonal_moves(squares: set[int], step: int) -> set[tuple[int, int]]:
    """Diagonal moves of exactly ``step`` squares between members of ``squares``."""
    moves = set()
    for a in squares:
        f, r = a % 9, a // 9
        for df in (-step, step):
            for dr in (-step, step):
                if _on_board(f + df, r + dr) and square(f + df, r + dr) in squares:
                    moves.add((a, square(f + df, r + dr)))
    return moves


def _elephant_squares(red: bool) -> set[int]:
    squares = {(2, 0), (6, 0), (0, 2), (4, 2), (8, 2), (2, 4), (6, 4)}
    return {square(f, r if red else 9 - r) for f, r in squares}


def _advisor_squares(red: bool) -> set[int]:
    squares = {(3, 0), (5, 0), (4, 1), (3, 2), (5, 2)}
    return {square(f, r if red else 9 - r) for f, r in squares}


@lru_cache(maxsize=None)
def geometric_moves() -> tuple[tuple[int, int], ...]:
    """Every geometrically possible move as (from_square, to_square), sorted. Both colours, all piece kinds."""
    moves = _line_moves() | _horse_moves()
    for red in (True, False):
        moves |= _diagonal_moves(_elephant_squares(red), 2)
        moves |= _diagonal_moves(_advisor_squares(red), 1)
    return tuple(sorted(moves))


def normalize_iccs(text: str) -> str:
    """``"H2-E2"`` / ``" h2e2 "`` -> ``"h2e2"``. Raises InvalidMoveError if it is not four ICCS characters."""
    if not isinstance(text, str):
        raise InvalidMoveError(f"move must be an ICCS string like 'h2e2', got {type(text).__name__} {text!r}")
    s = text.strip().lower().replace("-", "")
    if len(s) != 4 or s[0] not in FILES or s[2] not in FILES or s[1] not in RANKS or s[3] not in RANKS:
        raise InvalidMoveError(f"not an ICCS move: {text!r} (expected like 'h2e2': file a-i, rank 0-9, twice)")
    return s


def _iccs_of(move: tuple[int, int]) -> str:
    return square_name(move[0]) + square_name(move[1])


@lru_cache(maxsize=None)
def _move_set() -> frozenset[str]:
    return frozenset(_iccs_of(m) for m in geometric_moves())


def check_move(text: str) -> str:
    """Normalised ICCS of ``text`` if it is a geometrically possible move, else InvalidMoveError."""
    s = normalize_iccs(text)
    if s not in _move_set():
        raise InvalidMoveError(f"impossible move {text!r}: no xiangqi piece moves from {s[:2]} to {s[2:]}")
    return s


def mirror_iccs(text: str) -> str:
    s = normalize_iccs(text)
    return "".join(FILES[8 - FILES.index(c)] if c in FILES else c for c in s)


# --------------------------------------------------------------------------------------------------------------------
# Tokenizers


def result_token(result: str | None) -> int:
    """Token id ending a game with this PGN result; ``None`` (unknown) -> ``<end>``."""
    if result is None:
        return END
    key = result.strip().replace("½", "1/2")
    if key == "1/2":
        key = "1/2-1/2"
    if key not in RESULT_TOKENS:
        raise XiangqiError(f"unknown game result {result!r} (expected one of 1-0, 0-1, 1/2-1/2, *)")
    return RESULT_TOKENS[key]


class Tokenizer:
    """Shared interface. ``tokens[i]`` is the string of id ``i``; specials are ids 0..4."""

    name: str
    tokens: list[str]
    tokens_per_move: int

    def __init__(self) -> None:
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}
        self.mirror_table = self._mirror_table()

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"

    # -- to implement
    def move_ids(self, iccs: str) -> list[int]:
        raise NotImplementedError

    def decode_moves(self, ids: Iterable[int]) -> list[str]:
        raise NotImplementedError

    def _mirror_table(self) -> list[int]:
        raise NotImplementedError

    # -- shared
    def encode_moves(self, moves: Iterable[str]) -> list[int]:
        """ICCS strings -> ids (``tokens_per_move`` per move). Raises InvalidMoveError naming the move and its index."""
        out: list[int] = []
        for i, m in enumerate(moves):
            try:
                out.extend(self.move_ids(m))
            except InvalidMoveError as e:
                raise InvalidMoveError(f"move {i + 1}: {e}") from None
        return out

    def encode_game(self, moves: Iterable[str], result: str | None = None) -> list[int]:
        """``[<bos>, ...moves..., result token]``; ``result`` None or ``"*"`` gives ``<end>``."""
        return [BOS, *self.encode_moves(moves), result_token(result)]

    def decode_game(self, ids: Sequence[int]) -> tuple[list[str], str | None]:
        """Inverse of :meth:`encode_game`: ``(moves, result)``. The ``<bos>`` and result tokens are optional;
        result is ``None`` when there is no result token. Raises InvalidMoveError on a misplaced special."""
        ids = list(ids)
        if ids and ids[0] == BOS:
            ids = ids[1:]
        result = None
        if ids and ids[-1] in TOKEN_RESULTS:
            result = TOKEN_RESULTS[ids[-1]]
            ids = ids[:-1]
        return self.decode_moves(ids), result

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> token strings, specials included (for display and debugging)."""
        return [self.tokens[self._check_id(i)] for i in ids]

    def mirror_ids(self, ids: Iterable[int]) -> list[int]:
        """Left-right mirror (files a <-> i) of a token sequence."""
        return [self.mirror_table[self._check_id(i)] for i in ids]

    def _check_id(self, i: int) -> int:
        if not isinstance(i, int):
            try:
                i = int(i)  # numpy / torch integer scalars
            except (TypeError, ValueError):
                raise InvalidMoveError(f"token id must be an integer, got {i!r}") from None
        if not 0 <= i < self.vocab_size:
            raise InvalidMoveError(f"token id {i} out of range for the {self.name} tokenizer (0..{self.vocab_size - 1})")
        return i


class MoveTokenizer(Tokenizer):
    """One token per move; ids 5.. are the geometrically possible moves sorted by (from_square, to_square)."""

    name = "move"
    tokens_per_move = 1

    def __init__(self) -> None:
        self.moves = [_iccs_of(m) for m in geometric_moves()]
        self.tokens = SPECIAL_TOKENS + self.moves
        super().__init__()

    def move_ids(self, iccs: str) -> list[int]:
        return [self.move_id(iccs)]

    def move_id(self, iccs: str) -> int:
        i = self.token_to_id.get(iccs)  # fast path for clean input
        if i is None or i < N_SPECIAL:
            i = self.token_to_id[check_move(iccs)]
        return i

    def decode_moves(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            i = self._check_id(i)
            if i < N_SPECIAL:
                raise InvalidMoveError(f"token id {i} is the special token {SPECIAL_TOKENS[i]}, not a move")
            out.append(self.tokens[i])
        return out

    def _mirror_table(self) -> list[int]:
        return list(range(N_SPECIAL)) + [self.token_to_id[mirror_iccs(m)] for m in self.moves]


class CharTokenizer(Tokenizer):
    """Four tokens per move, one per ICCS character; ids 5..23 are ``0123456789abcdefghi``."""

    name = "char"
    tokens_per_move = 4

    def __init__(self) -> None:
        self.tokens = SPECIAL_TOKENS + list(CHARS)
        super().__init__()

    def move_ids(self, iccs: str) -> list[int]:
        s = check_move(iccs)
        return [self.token_to_id[c] for c in s]

    def decode_moves(self, ids: Iterable[int]) -> list[str]:
        ids = [self._check_id(i) for i in ids]
        if len(ids) % 4:
            raise InvalidMoveError(f"{len(ids)} char tokens is not a whole number of moves (4 tokens per move)")
        out = []
        for k in range(0, len(ids), 4):
            group = ids[k:k + 4]
            specials = [SPECIAL_TOKENS[i] for i in group if i < N_SPECIAL]
            if specials:
                raise InvalidMoveError(f"move {k // 4 + 1}: special token {specials[0]} inside a move")
            out.append(check_move("".join(self.tokens[i] for i in group)))
        return out

    def _mirror_table(self) -> list[int]:
        table = list(range(N_SPECIAL))
        for c in CHARS:
            m = FILES[8 - FILES.index(c)] if c in FILES else c
            table.append(self.token_to_id[m])
        return table


@lru_cache(maxsize=None)
def get_tokenizer(name: str) -> Tokenizer:
    """``"move"`` or ``"char"``. Tokenizers are immutable; the same instance is returned each time."""
    if name == "move":
        return MoveTokenizer()
    if name == "char":
        return CharTokenizer()
    raise ConfigError(f"unknown tokenizer {name!r} (choose from {', '.join(TOKENIZER_NAMES)})")
