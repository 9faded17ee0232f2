"""The xiangqi rule engine: positions, FEN, fully legal moves, check, game end, Zobrist keys and perft.

Pure Python, no dependencies: the referee for everything else. Main names: :class:`Board`, :class:`Move`,
:class:`Outcome`, the fast int-move API (:func:`encode_move`, :meth:`Board.make_int`, ...; see docs/board_api.md).
Design notes: docs/design.md#rules-board
"""

from __future__ import annotations

import random
import re
from typing import NamedTuple

from ..errors import FenError, IllegalMoveError, InvalidMoveError

RED, BLACK = 0, 1
COLOR_NAMES = ("Red", "Black")
#: what :meth:`Board.illegal_kind` answers for an illegal move
ILLEGAL_KINDS = ("no_piece", "opponents_piece", "own_piece", "piece_rules", "general_safety")
FILES = "abcdefghi"
DIGITS = "0123456789"
STARTING_FEN = "rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w - - 0 1"
MOVE_LIMIT_PLIES = 120

# Internal piece codes: type in the low 3 bits, colour in bit 3 (0 red, 8 black).
KING, ADVISOR, ELEPHANT, HORSE, ROOK, CANNON, PAWN = 1, 2, 3, 4, 5, 6, 7
_LETTERS = "?KABNRCP"
_CODE = {letter: code for code, letter in enumerate(_LETTERS) if code}
_CODE.update({"H": HORSE, "E": ELEPHANT})
PIECE_NAMES = {KING: "general", ADVISOR: "advisor", ELEPHANT: "elephant", HORSE: "horse", ROOK: "chariot",
               CANNON: "cannon", PAWN: "soldier"}


def square(file: int, rank: int) -> int:
    """The square number of ``file`` (0..8, a..i) and ``rank`` (0..9): ``rank * 9 + file``."""
    return rank * 9 + file


def square_file(sq: int) -> int:
    """The file (0..8, a..i) of square ``sq``."""
    return sq % 9


def square_rank(sq: int) -> int:
    """The rank (0..9, from Red's side) of square ``sq``."""
    return sq // 9


def square_name(sq: int) -> str:
    """The ICCS name of square ``sq`` (``0`` -> ``"a0"``)."""
    return FILES[sq % 9] + str(sq // 9)


def parse_square(name: str) -> int:
    """The square named ``name`` (``"e2"``, either case); :class:`InvalidMoveError` if it is not one."""
    if len(name) != 2 or name[0].lower() not in FILES or name[1] not in DIGITS:
        raise InvalidMoveError(f"not a square: {name!r}")
    return int(name[1]) * 9 + FILES.index(name[0].lower())


def encode_move(from_square: int, to_square: int) -> int:
    """The int form of a move, ``from_square << 7 | to_square``: what the fast :class:`Board` methods take and
    return. Hot loops decode it inline as ``m >> 7`` and ``m & 127``."""
    return from_square << 7 | to_square


def decode_move(m: int) -> tuple[int, int]:
    """``(from_square, to_square)`` of the int move ``m``."""
    return m >> 7, m & 127


def _letter(code: int) -> str:
    letter = _LETTERS[code & 7]
    return letter.lower() if code & 8 else letter


def _code(letter: str) -> int:
    code = _CODE[letter.upper()]
    return code | 8 if letter.islower() else code


# --------------------------------------------------------------------------------------------------------------
# Pre-computed geometry
# --------------------------------------------------------------------------------------------------------------

def _on_board(f: int, r: int) -> bool:
    return 0 <= f < 9 and 0 <= r < 10


def _in_palace(color: int, f: int, r: int) -> bool:
    return 3 <= f <= 5 and (0 <= r <= 2 if color == RED else 7 <= r <= 9)


def _own_half(color: int, r: int) -> bool:
    return r <= 4 if color == RED else r >= 5


_ORTHO = ((0, 1), (0, -1), (1, 0), (-1, 0))
_DIAG = ((1, 1), (1, -1), (-1, 1), (-1, -1))

RAYS: list[tuple[tuple[int, ...], ...]] = []
HORSE_MOVES: list[tuple[tuple[int, int], ...]] = []   # (to, leg)
HORSE_ATTACKERS: list[list[tuple[int, int]]] = [[] for _ in range(90)]  # (from, leg) of a horse attacking sq
ELEPHANT_MOVES = ([], [])   # per colour: (to, eye)
ADVISOR_MOVES = ([], [])
KING_MOVES = ([], [])
PAWN_MOVES = ([], [])
PAWN_ATTACKERS = ([[] for _ in range(90)], [[] for _ in range(90)])

for _s in range(90):
    _f, _r = _s % 9, _s // 9
    rays = []
    for df, dr in _ORTHO:
        ray, f, r = [], _f + df, _r + dr
        while _on_board(f, r):
            ray.append(square(f, r))
            f, r = f + df, r + dr
        if ray:
            rays.append(tuple(ray))
    RAYS.append(tuple(rays))
    horse = []
    for df, dr in _ORTHO:
        for sf, sr in ((dr, df), (-dr, -df)):   # the two sideways steps
            tf, tr = _f + 2 * df + sf, _r + 2 * dr + sr
            if _on_board(tf, tr):
                leg = square(_f + df, _r + dr)
                horse.append((square(tf, tr), leg))
                HORSE_ATTACKERS[square(tf, tr)].append((_s, leg))
    HORSE_MOVES.append(tuple(horse))
    for c in (RED, BLACK):
        ELEPHANT_MOVES[c].append(tuple(
            (square(_f + 2 * df, _r + 2 * dr), square(_f + df, _r + dr)) for df, dr in _DIAG
            if _on_board(_f + 2 * df, _r + 2 * dr) and _own_half(c, _r + 2 * dr) and _own_half(c, _r)))
        ADVISOR_MOVES[c].append(tuple(
            square(_f + df, _r + dr) for df, dr in _DIAG
            if _in_palace(c, _f, _r) and _in_palace(c, _f + df, _r + dr)))
        KING_MOVES[c].append(tuple(
            square(_f + df, _r + dr) for df, dr in _ORTHO
            if _in_palace(c, _f, _r) and _in_palace(c, _f + df, _r + dr)))
        forward = 1 if c == RED else -1
        steps = [(0, forward)] + ([(1, 0), (-1, 0)] if not _own_half(c, _r) else [])
        targets = tuple(square(_f + df, _r + dr) for df, dr in steps if _on_board(_f + df, _r + dr))
        PAWN_MOVES[c].append(targets)
        for t in targets:
            PAWN_ATTACKERS[c][t].append(_s)

HORSE_ATTACKERS = [tuple(a) for a in HORSE_ATTACKERS]
PAWN_ATTACKERS = tuple([tuple(a) for a in per] for per in PAWN_ATTACKERS)
ELEPHANT_MOVES = tuple(ELEPHANT_MOVES)
ADVISOR_MOVES = tuple(ADVISOR_MOVES)
KING_MOVES = tuple(KING_MOVES)
PAWN_MOVES = tuple(PAWN_MOVES)

# For the quick legality filter: moving a non-general piece when not in check can only expose the own general if
# it leaves a square on the general's rank or file or a horse-leg square next to it (diagonal neighbour), or lands
# on the general's rank or file (a new cannon screen).
_ALIGNED = [[(a % 9 == b % 9) or (a // 9 == b // 9) for b in range(90)] for a in range(90)]
_EXPOSES = [[_ALIGNED[a][b] or (abs(a % 9 - b % 9) == 1 and abs(a // 9 - b // 9) == 1) for b in range(90)]
            for a in range(90)]

# Piece code -> may a move of side c end there: generating all moves (empty or enemy) or captures only (enemy).
_TARGETS = tuple(tuple(not q or q >> 3 != c for q in range(16)) for c in (RED, BLACK))
_CAPTURE_TARGETS = tuple(tuple(bool(q) and q >> 3 != c for q in range(16)) for c in (RED, BLACK))

_rng = random.Random(0x5EED_C0DE)
ZOBRIST = [[_rng.getrandbits(64) for _ in range(90)] for _ in range(16)]
ZOBRIST_BLACK_TO_MOVE = _rng.getrandbits(64)


# --------------------------------------------------------------------------------------------------------------
# Moves and outcomes
# --------------------------------------------------------------------------------------------------------------

class Move:
    """A move from one square to another. Immutable and hashable; ``str(move)`` is its ICCS text."""

    __slots__ = ("from_square", "to_square")

    def __init__(self, from_square: int, to_square: int):
        object.__setattr__(self, "from_square", from_square)
        object.__setattr__(self, "to_square", to_square)

    def __setattr__(self, name, value):
        raise AttributeError("Move is immutable")

    @classmethod
    def from_iccs(cls, text: str) -> "Move":
        t = text.strip().lower().replace("-", "")
        if len(t) != 4 or t[0] not in FILES or t[2] not in FILES or t[1] not in DIGITS or t[3] not in DIGITS:
            raise InvalidMoveError(f"not an ICCS move: {text!r}")
        move = cls(parse_square(t[:2]), parse_square(t[2:]))
        if move.from_square == move.to_square:
            raise InvalidMoveError(f"not a move: {text!r} (same square)")
        return move

    @classmethod
    def from_int(cls, m: int) -> "Move":
        """The move of the int ``m`` (see :func:`encode_move`)."""
        return cls(m >> 7, m & 127)

    def to_int(self) -> int:
        """This move as an int, ``from_square << 7 | to_square`` (see :func:`encode_move`)."""
        return self.from_square << 7 | self.to_square


    def iccs(self) -> str:
        return square_name(self.from_square) + square_name(self.to_square)

    def mirror(self) -> "Move":
        f, t = self.from_square, self.to_square
        return Move(f - f % 9 + 8 - f % 9, t - t % 9 + 8 - t % 9)

    def __eq__(self, other):
        return isinstance(other, Move) and self.from_square == other.from_square and self.to_square == other.to_square

    def __hash__(self):
        return self.from_square * 90 + self.to_square

    def __str__(self):
        return self.iccs()

    def __repr__(self):
        return f"Move.from_iccs({self.iccs()!r})"


class Outcome(NamedTuple):
    winner: int | None          # RED, BLACK, or None for a draw
    termination: str            # checkmate | stalemate | repetition | perpetual_check | move_limit
    reason: str                 # one human sentence

    def result(self) -> str:
        return "1/2-1/2" if self.winner is None else ("1-0" if self.winner == RED else "0-1")


# --------------------------------------------------------------------------------------------------------------
# The board
# --------------------------------------------------------------------------------------------------------------

class Board:
    """A xiangqi position with its move history. ``Board()`` is the starting position."""

    def __init__(self, fen: str = STARTING_FEN, strict: bool = True):
        """``strict`` (the default) also rejects positions that no game can reach: more than 5 soldiers or more
        than 2 advisors, elephants, horses, chariots or cannons of one side, an advisor or elephant off its
        points, a soldier behind its start rank or off its file before the river (see :func:`impossible_reason`).
        ``strict=False`` accepts them, e.g. for composed puzzles."""
        self.strict = strict
        self._set_fen(fen)

    # ---- FEN ---------------------------------------------------------------------------------------------------

    def _set_fen(self, fen: str) -> None:
        if not isinstance(fen, str) or not fen.strip():
            raise FenError("empty FEN")
        parts = fen.split()
        rows = parts[0].split("/")
        if len(rows) != 10:
            raise FenError(f"bad FEN {fen!r}: expected 10 ranks separated by '/', got {len(rows)}")
        board = [0] * 90
        kings = [-1, -1]
        for i, row in enumerate(rows):
            rank = 9 - i
            f = 0
            for ch in row:
                if f >= 9:
                    raise FenError(f"bad FEN {fen!r}: rank {rank} ({row!r}) has more than 9 files")
                if ch in "123456789":
                    f += int(ch)
                elif ch.upper() in _CODE:
                    code = _code(ch)
                    board[square(f, rank)] = code
                    if code & 7 == KING:
                        color = code >> 3
                        if kings[color] >= 0:
                            raise FenError(f"bad FEN {fen!r}: two {COLOR_NAMES[color]} generals")
                        if not _in_palace(color, f, rank):
                            raise FenError(f"bad FEN {fen!r}: {COLOR_NAMES[color]} general outside its palace "
                                           f"on {square_name(square(f, rank))}")
                        kings[color] = square(f, rank)
                    f += 1
                else:
                    raise FenError(f"bad FEN {fen!r}: unknown piece letter {ch!r}")
            if f != 9:
                raise FenError(f"bad FEN {fen!r}: rank {rank} ({row!r}) does not have 9 files")
        for color in (RED, BLACK):
            if kings[color] < 0:
                raise FenError(f"bad FEN {fen!r}: no {COLOR_NAMES[color]} general")
        if len(parts) > 6:
            raise FenError(f"bad FEN {fen!r}: unexpected text {' '.join(parts[6:])[:40]!r} after the six fields")
        side = parts[1].lower() if len(parts) > 1 else "w"
        if side not in ("w", "r", "b"):
            raise FenError(f"bad FEN {fen!r}: side to move must be 'w' or 'b', got {parts[1]!r}")
        for i in (2, 3):
            if len(parts) > i and parts[i] != "-":
                raise FenError(f"bad FEN {fen!r}: field {i + 1} must be '-' (xiangqi has no castling or en passant), "
                               f"got {parts[i]!r}")
        for i in (4, 5):
            if len(parts) > i and not _COUNTER_RE.fullmatch(parts[i]):
                what = "out of range" if re.fullmatch(r"[+-]?[0-9]+", parts[i]) else "must be integers"
                raise FenError(f"bad FEN {fen!r}: move counters {what}, got {parts[i]!r}")
        halfmove = int(parts[4]) if len(parts) > 4 else 0
        fullmove = int(parts[5]) if len(parts) > 5 else 1
        if fullmove < 1:
            raise FenError(f"bad FEN {fen!r}: move counters out of range (the move number starts at 1)")
        if self.strict:
            reason = impossible_reason(board)
            if reason:
                error = FenError(f"bad FEN {fen!r}: {reason}, which no game can reach")
                error.impossible = True      # front ends name their opt-out (strict=False, --allow-impossible)
                raise error
        self._sq = board
        self._kings = kings
        self.turn = BLACK if side == "b" else RED
        if self._attacked(kings[self.turn ^ 1], self.turn):
            raise FenError(f"bad FEN {fen!r}: {COLOR_NAMES[self.turn ^ 1]}'s general is in check (or faces the other "
                           f"general) but it is {COLOR_NAMES[self.turn]} to move")
        self.halfmove_clock = halfmove
        self.fullmove_number = fullmove
        self._stack: list[tuple[int, int, int]] = []   # (move, captured, halfmove clock before)
        self.move_stack: list[Move] = []
        self.key = self._compute_key()
        self._keys = [self.key]          # key of every position from the root, index = ply
        self._checks = [self._attacked(kings[self.turn], self.turn ^ 1)]   # side to move in check, per ply
        self._null_clocks: list[int] = []   # halfmove clock before each null move on the board
        self._root_fen = self.fen()

    def fen(self) -> str:
        rows = []
        for rank in range(9, -1, -1):
            row, empty = "", 0
            for f in range(9):
                code = self._sq[square(f, rank)]
                if code:
                    if empty:
                        row += str(empty)
                        empty = 0
                    row += _letter(code)
                else:
                    empty += 1
            rows.append(row + (str(empty) if empty else ""))
        side = "b" if self.turn == BLACK else "w"
        return f"{'/'.join(rows)} {side} - - {self.halfmove_clock} {self.fullmove_number}"

    def root_fen(self) -> str:
        return self._root_fen

    def _compute_key(self) -> int:
        key = ZOBRIST_BLACK_TO_MOVE if self.turn == BLACK else 0
        for s, code in enumerate(self._sq):
            if code:
                key ^= ZOBRIST[code][s]
        return key

    # ---- simple queries ----------------------------------------------------------------------------------------

    def piece_at(self, sq: int) -> str | None:
        code = self._sq[sq]
        return _letter(code) if code else None

    def pieces(self) -> dict[int, str]:
        return {s: _letter(c) for s, c in enumerate(self._sq) if c}

    def king_square(self, color: int) -> int:
        """The square of ``color``'s general."""
        return self._kings[color]

    @property
    def ply(self) -> int:
        """The number of moves made on this board since its FEN (null moves not counted)."""
        return len(self._stack)

    # ---- fast integer API: read-only views of the position's internals -----------------------------------------

    @property
    def squares(self) -> list[int]:
        """The 90 piece codes, indexed by square (0 = empty; type = ``code & 7`` as in :data:`KING` ..
        :data:`PAWN`, colour = ``code >> 3``). The board's live list, for fast reading: never modify it."""
        return self._sq

    @property
    def key_history(self) -> list[int]:
        """The Zobrist key of every position since the FEN, index = ply (null moves included), the current one
        last. The board's live list: never modify it."""
        return self._keys

    @property
    def check_history(self) -> list[bool]:
        """Per entry of :attr:`key_history`: was the side to move in check there (``False`` after a null move).
        The board's live list: never modify it."""
        return self._checks

    def played_ints(self, start: int = 0) -> list[int]:
        """The int moves made from ply ``start`` on (by :meth:`push` or :meth:`make_int`), oldest first."""
        return [entry[0] for entry in self._stack[start:]]

    def copy(self) -> "Board":
        other = Board.__new__(Board)
        other.__dict__.update(self.__dict__)
        other._sq = self._sq[:]
        other._kings = self._kings[:]
        other._stack = self._stack[:]
        other.move_stack = self.move_stack[:]
        other._keys = self._keys[:]
        other._checks = self._checks[:]
        other._null_clocks = self._null_clocks[:]
        return other

    def mirror(self) -> "Board":
        """The left-right mirror image (files a<->i), an exact symmetry of the rules. The history is not kept."""
        parts = self.fen().split()
        parts[0] = "/".join(row_expand[::-1] for row_expand in (_expand_row(r) for r in parts[0].split("/")))
        return Board(" ".join(parts), strict=self.strict)

    def __str__(self) -> str:
        lines = []
        for rank in range(9, -1, -1):
            lines.append(f"{rank} " + " ".join(self.piece_at(square(f, rank)) or "." for f in range(9)))
        lines.append("  " + " ".join(FILES))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Board({self.fen()!r})"

    # ---- attack detection --------------------------------------------------------------------------------------

    def _attacked(self, s: int, by: int) -> bool:
        """Is square ``s`` attacked by side ``by``? Only used for general squares, so the opposing general counts
        as a chariot along the file (the flying-general rule)."""
        b = self._sq
        base = by << 3
        rook, cannon, king = base | ROOK, base | CANNON, base | KING
        for ray in RAYS[s]:
            screened = False
            for t in ray:
                p = b[t]
                if p:
                    if screened:
                        if p == cannon:
                            return True
                        break
                    if p == rook or p == king:
                        return True
                    screened = True
        horse = base | HORSE
        for frm, leg in HORSE_ATTACKERS[s]:
            if b[frm] == horse and not b[leg]:
                return True
        pawn = base | PAWN
        for frm in PAWN_ATTACKERS[by][s]:
            if b[frm] == pawn:
                return True
        return False

    def is_check(self) -> bool:
        """Is the side to move in check? (``False`` right after :meth:`make_null`.)"""
        return self._checks[-1]

    # ---- move generation ---------------------------------------------------------------------------------------

    def _pseudo(self, quiet: bool = True) -> list[int]:
        """The pseudo-legal int moves of the side to move (the general's safety not checked); ``quiet=False``:
        the captures only. In generation order (by from-square, then per piece), the same order either way."""
        c = self.turn
        b = self._sq
        ok = (_TARGETS if quiet else _CAPTURE_TARGETS)[c]
        out: list[int] = []
        add = out.append
        for fr in range(90):
            p = b[fr]
            if not p or p >> 3 != c:
                continue
            t = p & 7
            base = fr << 7
            if t == ROOK:
                for ray in RAYS[fr]:
                    for to in ray:
                        q = b[to]
                        if q:
                            if q >> 3 != c:
                                add(base | to)
                            break
                        if quiet:
                            add(base | to)
            elif t == CANNON:
                for ray in RAYS[fr]:
                    points = iter(ray)
                    for to in points:          # up to the screen
                        if b[to]:
                            break
                        if quiet:
                            add(base | to)
                    for to in points:          # past the screen: the first piece, if an enemy
                        q = b[to]
                        if q:
                            if q >> 3 != c:
                                add(base | to)
                            break
            elif t == HORSE:
                for to, leg in HORSE_MOVES[fr]:
                    if not b[leg] and ok[b[to]]:
                        add(base | to)
            elif t == PAWN:
                for to in PAWN_MOVES[c][fr]:
                    if ok[b[to]]:
                        add(base | to)
            elif t == ELEPHANT:
                for to, eye in ELEPHANT_MOVES[c][fr]:
                    if not b[eye] and ok[b[to]]:
                        add(base | to)
            else:
                for to in (ADVISOR_MOVES if t == ADVISOR else KING_MOVES)[c][fr]:
                    if ok[b[to]]:
                        add(base | to)
        return out

    def legal_move_ints(self, quiet: bool = True) -> list[int]:
        """The legal moves of the side to move as ints (see :func:`encode_move`), in generation order;
        ``quiet=False``: the legal captures only (cheaper). The fast form of :meth:`legal_moves`."""
        c = self.turn
        opp = c ^ 1
        b = self._sq
        ks = self._kings[c]
        in_check = self._checks[-1] if len(self._checks) == len(self._stack) + 1 else self._attacked(ks, opp)
        exposes = _EXPOSES[ks]
        aligned = _ALIGNED[ks]
        attacked = self._attacked
        out = []
        for m in self._pseudo(quiet):
            fr = m >> 7
            to = m & 127
            if not in_check and fr != ks and not exposes[fr] and not aligned[to]:
                out.append(m)
                continue
            p = b[fr]
            cap = b[to]
            b[to] = p
            b[fr] = 0
            if not attacked(to if fr == ks else ks, opp):
                out.append(m)
            b[fr] = p
            b[to] = cap
        return out


    def legal_capture_ints(self) -> list[int]:
        """The legal captures of the side to move as ints, in generation order: ``legal_move_ints(quiet=False)``."""
        return self.legal_move_ints(False)

    def legal_moves(self) -> list[Move]:
        """The legal moves of the side to move."""
        return [Move(m >> 7, m & 127) for m in self.legal_move_ints()]

    def is_legal(self, move: Move) -> bool:
        """Is ``move`` legal for the side to move?"""
        fr, to = move.from_square, move.to_square
        return 0 <= fr < 90 and 0 <= to < 90 and self.is_legal_int(fr << 7 | to)

    def is_legal_int(self, m: int) -> bool:
        """Is the int move ``m`` legal? Tests that one move without generating every legal move: it must be
        pseudo-legal and must not leave the mover's general attacked (which covers the two generals facing each
        other too)."""
        b = self._sq
        fr, to = m >> 7, m & 127
        p = b[fr]
        if not p or p >> 3 != self.turn or m not in self._pseudo():
            return False
        cap = b[to]
        b[to] = p
        b[fr] = 0
        try:
            return not self._attacked(to if p & 7 == KING else self._kings[self.turn], self.turn ^ 1)
        finally:
            b[fr] = p
            b[to] = cap


    # ---- making moves ------------------------------------------------------------------------------------------

    def make_int(self, m: int) -> None:
        """Make the int move ``m``, known to be legal (from :meth:`legal_move_ints` or :meth:`is_legal_int`;
        an illegal one corrupts the board), updating the key, the clocks and the histories, but not
        :attr:`move_stack`. Undo it with :meth:`unmake_int`."""
        fr, to = m >> 7, m & 127
        b = self._sq
        p = b[fr]
        cap = b[to]
        self._stack.append((m, cap, self.halfmove_clock))
        b[to] = p
        b[fr] = 0
        key = self.key ^ ZOBRIST[p][fr] ^ ZOBRIST[p][to] ^ ZOBRIST_BLACK_TO_MOVE
        if cap:
            key ^= ZOBRIST[cap][to]
            self.halfmove_clock = 0
        else:
            self.halfmove_clock += 1
        if p & 7 == KING:
            self._kings[p >> 3] = to
        if self.turn == BLACK:
            self.fullmove_number += 1
        self.turn ^= 1
        self.key = key
        self._keys.append(key)
        self._checks.append(self._attacked(self._kings[self.turn], self.turn ^ 1))

    def unmake_int(self) -> int:
        """Undo the last :meth:`make_int` (not a :meth:`push`, which :meth:`pop` undoes); returns its move."""
        m, cap, clock = self._stack.pop()
        fr, to = m >> 7, m & 127
        b = self._sq
        p = b[to]
        b[fr] = p
        b[to] = cap
        if p & 7 == KING:
            self._kings[p >> 3] = fr
        self.turn ^= 1
        if self.turn == BLACK:
            self.fullmove_number -= 1
        self.halfmove_clock = clock
        self._keys.pop()
        self._checks.pop()
        self.key = self._keys[-1]
        return m


    def make_null(self) -> None:
        """Pass the turn (a null move, for null-move pruning; never in check): the side to move and the key change,
        the new position is recorded in :attr:`key_history` as not in check, and the halfmove clock restarts at 0.
        :attr:`ply` and the full-move number do not change. Undo it with :meth:`unmake_null`."""
        self._null_clocks.append(self.halfmove_clock)
        self.turn ^= 1
        self.key ^= ZOBRIST_BLACK_TO_MOVE
        self._keys.append(self.key)
        self._checks.append(False)
        self.halfmove_clock = 0

    def unmake_null(self) -> None:
        """Undo the last :meth:`make_null`."""
        self._keys.pop()
        self._checks.pop()
        self.key = self._keys[-1]
        self.turn ^= 1
        self.halfmove_clock = self._null_clocks.pop()

    def push(self, move: Move, *, validate: bool = True) -> None:
        """Play a legal move. Raises :class:`IllegalMoveError` (with the reason) if it is not legal.

        ``validate=False`` skips the test, for a move already known to be legal (one from :meth:`legal_moves` or
        a parser that checked it); an illegal move then corrupts the board."""
        if validate and not self.is_legal(move):
            raise IllegalMoveError(f"illegal move {move.iccs()}: {self.why_illegal(move)}")
        self.make_int(move.to_int())
        self.move_stack.append(move)

    def push_iccs(self, text: str) -> Move:
        move = Move.from_iccs(text)
        self.push(move)
        return move

    def pop(self) -> Move:
        if not self._stack:
            raise IndexError("pop from a board with no moves played")
        self.unmake_int()
        return self.move_stack.pop()

    def is_capture(self, move: Move) -> bool:
        return bool(self._sq[move.to_square])

    def gives_check(self, move: Move) -> bool:
        self.make_int(move.to_int())
        try:
            return self._checks[-1]
        finally:
            self.unmake_int()

    # ---- explanations ------------------------------------------------------------------------------------------

    def illegal_kind(self, move: Move) -> str | None:
        """``None`` if ``move`` is legal, else which rule it breaks, one of :data:`ILLEGAL_KINDS`: ``no_piece``
        (its from-square is empty), ``opponents_piece`` (the piece there is the other side's), ``own_piece``
        (its to-square holds one of the mover's own pieces), ``piece_rules`` (the piece cannot move so: its
        geometry, a blocked path, leg or eye, the palace, the river) or ``general_safety`` (it would leave or keep
        the mover's general in check, or face the two generals). :meth:`why_illegal` says the same in words."""
        fr, to = move.from_square, move.to_square
        if not (0 <= fr < 90 and 0 <= to < 90) or fr == to:
            return "piece_rules"
        b = self._sq
        p = b[fr]
        if not p:
            return "no_piece"
        if p >> 3 != self.turn:
            return "opponents_piece"
        if b[to] and b[to] >> 3 == p >> 3:
            return "own_piece"
        m = fr << 7 | to
        if self.is_legal_int(m):
            return None
        return "piece_rules" if m not in self._pseudo() else "general_safety"

    def why_illegal(self, move: Move) -> str | None:
        """``None`` if ``move`` is legal, else a short human reason ("a cannon moves in straight lines")."""
        kind = self.illegal_kind(move)
        if kind is None:
            return None
        fr, to = move.from_square, move.to_square
        if not (0 <= fr < 90 and 0 <= to < 90) or fr == to:
            return "not a move between two board points"
        b = self._sq
        p = b[fr]
        src, dst = square_name(fr), square_name(to)
        if kind == "no_piece":
            return f"there is no piece on {src}"
        c = p >> 3
        if kind == "opponents_piece":
            return f"the piece on {src} is {COLOR_NAMES[c]}'s and it is {COLOR_NAMES[self.turn]} to move"
        if kind == "own_piece":
            return f"{dst} is occupied by your own {PIECE_NAMES[b[to] & 7]}"
        if kind == "piece_rules":
            return self._geometry_reason(p, fr, to)
        m = fr << 7 | to
        self.make_int(m)
        try:
            king, other = self._kings[c], self._kings[c ^ 1]
            facing = king % 9 == other % 9 and not any(
                b[s] for s in range(min(king, other) + 9, max(king, other), 9))
        finally:
            self.unmake_int()
        if facing:
            return "the two generals would face each other on an open file"
        return "it leaves your general in check" if not self.is_check() else "your general is in check and stays in check"

    def _geometry_reason(self, p: int, fr: int, to: int) -> str:
        t, c = p & 7, p >> 3
        ff, fr_r, tf, tr = fr % 9, fr // 9, to % 9, to // 9
        df, dr = tf - ff, tr - fr_r
        b = self._sq
        straight = df == 0 or dr == 0
        between = []
        if straight:
            step = (1 if df > 0 else -1) if dr == 0 else (9 if dr > 0 else -9)
            between = [s for s in range(fr + step, to, step) if b[s]]
        if t == ROOK:
            if not straight:
                return "a chariot moves in straight lines"
            return f"the chariot's path is blocked at {square_name(between[0])}"
        if t == CANNON:
            if not straight:
                return "a cannon moves in straight lines"
            if not b[to]:
                return f"a cannon needs a clear path to move without capturing (blocked at {square_name(between[0])})"
            return "a cannon captures by jumping over exactly one piece"
        if t == HORSE:
            for target, leg in HORSE_MOVES[fr]:
                if target == to:
                    return f"the horse's leg is blocked at {square_name(leg)}"
            return "a horse moves one point straight then one point diagonally outward"
        if t == ELEPHANT:
            if abs(df) == 2 and abs(dr) == 2:
                if not _own_half(c, tr):
                    return "an elephant cannot cross the river"
                return f"the elephant's eye is blocked at {square_name((fr + to) // 2)}"
            return "an elephant moves exactly two points diagonally"
        if t == ADVISOR:
            if abs(df) == 1 and abs(dr) == 1:
                return "an advisor cannot leave the palace"
            return "an advisor moves one point diagonally inside the palace"
        if t == KING:
            if abs(df) + abs(dr) == 1:
                return "the general cannot leave the palace"
            return "the general moves one point straight inside the palace"
        forward = 1 if c == RED else -1
        if dr == -forward or (dr == 0 and df == 0):
            return "a soldier never moves backward"
        if dr == 0 and abs(df) == 1:
            return "a soldier moves sideways only after crossing the river"
        return "a soldier moves one point forward (or sideways after crossing the river)"

    # ---- game end ----------------------------------------------------------------------------------------------

    def repetition_count(self) -> int:
        """How many times the current position has occurred since the last capture (including now)."""
        keys, key = self._keys, self.key
        n = len(keys)
        return sum(1 for i in range(n - 1 - min(self.halfmove_clock, n - 1), n) if keys[i] == key)

    def outcome(self) -> Outcome | None:
        """The result if the game is over by the rules, else ``None``. See the module docstring for the rules."""
        side = COLOR_NAMES[self.turn]
        if not self.legal_move_ints():
            winner = self.turn ^ 1
            if self.is_check():
                return Outcome(winner, "checkmate", f"{side} is checkmated")
            return Outcome(winner, "stalemate", f"{side} has no legal move (stalemate loses)")
        if self.repetition_count() >= 3:
            return self._repetition_outcome()
        if self.halfmove_clock >= MOVE_LIMIT_PLIES:
            return Outcome(None, "move_limit", f"{MOVE_LIMIT_PLIES // 2} moves without a capture (natural move limit)")
        return None

    def _repetition_outcome(self) -> Outcome:
        keys, key, n = self._keys, self.key, len(self._keys)
        first = min(i for i in range(n - 1 - min(self.halfmove_clock, n - 1), n) if keys[i] == key)
        # the move played at ply i (from position i to i+1) gave check iff self._checks[i + 1]
        checking = [True, True]
        mover_at_first = self.turn  # positions first and last have the same side to move
        for i in range(first, n - 1):
            mover = mover_at_first if (i - first) % 2 == 0 else mover_at_first ^ 1
            if not self._checks[i + 1]:
                checking[mover] = False
        if checking[RED] != checking[BLACK]:
            loser = RED if checking[RED] else BLACK
            return Outcome(loser ^ 1, "perpetual_check", f"{COLOR_NAMES[loser]} gives perpetual check and loses")
        return Outcome(None, "repetition", "the same position occurred three times")

    def is_game_over(self) -> bool:
        return self.outcome() is not None

    # ---- perft -------------------------------------------------------------------------------------------------

    def perft(self, depth: int) -> int:
        """Count the leaf nodes of the legal move tree to ``depth`` plies (bulk-counted at the last ply)."""
        if depth <= 0:
            return 1
        return _perft(self, depth)

    def perft_divide(self, depth: int) -> dict[str, int]:
        out = {}
        for m in self.legal_move_ints():
            self._make_fast(m)
            out[square_name(m >> 7) + square_name(m & 127)] = _perft(self, depth - 1) if depth > 1 else 1
            self._unmake_fast(m)
        return out

    # Lean make/unmake for search: no keys, checks or clocks. Must be paired exactly.
    def _make_fast(self, m: int) -> None:
        fr, to = m >> 7, m & 127
        b = self._sq
        p = b[fr]
        self._stack.append((m, b[to], 0))
        b[to] = p
        b[fr] = 0
        if p & 7 == KING:
            self._kings[p >> 3] = to
        self.turn ^= 1

    def _unmake_fast(self, m: int) -> None:
        _, cap, _ = self._stack.pop()
        fr, to = m >> 7, m & 127
        b = self._sq
        p = b[to]
        b[fr] = p
        b[to] = cap
        if p & 7 == KING:
            self._kings[p >> 3] = fr
        self.turn ^= 1


def _perft(board: Board, depth: int) -> int:
    moves = board.legal_move_ints()
    if depth == 1:
        return len(moves)
    total = 0
    make, unmake = board._make_fast, board._unmake_fast
    for m in moves:
        make(m)
        total += _perft(board, depth - 1)
        unmake(m)
    return total


_COUNTER_RE = re.compile(r"[0-9]{1,9}")
_MAX_COUNT = {ADVISOR: 2, ELEPHANT: 2, HORSE: 2, ROOK: 2, CANNON: 2, PAWN: 5}
_ADVISOR_POINTS = tuple(frozenset(square(f, r if c == RED else 9 - r) for f, r in ((3, 0), (5, 0), (4, 1), (3, 2), (5, 2)))
                        for c in (RED, BLACK))
_ELEPHANT_POINTS = tuple(frozenset(square(f, r if c == RED else 9 - r)
                                   for f, r in ((2, 0), (6, 0), (0, 2), (4, 2), (8, 2), (2, 4), (6, 4)))
                         for c in (RED, BLACK))


def _point_names(points) -> str:
    return ", ".join(square_name(s) for s in sorted(points))


def impossible_reason(squares: list[int]) -> str | None:
    """Why a placement (90 piece codes) cannot arise in a game, or None. Checks, for each side: at most 5 soldiers
    and 2 of each other piece; advisors and elephants on their points; soldiers not behind their start rank and,
    before the river, on their own starting file, one per file."""
    counts = [[0] * 8, [0] * 8]
    for s, code in enumerate(squares):
        if not code:
            continue
        color, ptype = code >> 3, code & 7
        counts[color][ptype] += 1
        name = f"{COLOR_NAMES[color]} {PIECE_NAMES[ptype]}"
        if ptype == ADVISOR and s not in _ADVISOR_POINTS[color]:
            return f"{name} on {square_name(s)} (advisors stand only on {_point_names(_ADVISOR_POINTS[color])})"
        if ptype == ELEPHANT and s not in _ELEPHANT_POINTS[color]:
            return f"{name} on {square_name(s)} (elephants stand only on {_point_names(_ELEPHANT_POINTS[color])})"
        if ptype == PAWN:
            f, r = s % 9, s // 9
            steps = r - 3 if color == RED else 6 - r     # ranks advanced from the start rank
            if steps < 0:
                return f"{name} on {square_name(s)}, behind its start rank"
            if steps < 2:                                   # not across the river yet: still on its starting file
                if f % 2:
                    return f"{name} on {square_name(s)}, off the files a soldier starts on, before the river"
                if steps == 0 and squares[s + (9 if color == RED else -9)] == code:
                    return f"two {COLOR_NAMES[color]} soldiers on the {FILES[f]}-file before the river"
    for color in (RED, BLACK):
        for ptype, most in _MAX_COUNT.items():
            if counts[color][ptype] > most:
                return (f"{COLOR_NAMES[color]} has {counts[color][ptype]} {PIECE_NAMES[ptype]}s "
                        f"(at most {most})")
    return None


def _expand_row(row: str) -> str:
    return "".join("1" * int(ch) if ch in DIGITS else ch for ch in row)
