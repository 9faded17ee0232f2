"""Move notation, both ways: ICCS (``h2e2``), WXF (``C2.5``) and Chinese (``炮二平五``, ``馬８進７``).

Main names: :func:`parse_move`, :func:`detect_notation`, :func:`format_move`, :func:`move_to_wxf`,
:func:`move_to_chinese` (parsers take the board *before* the move and return a legal :class:`Move`).
Design notes: docs/design.md#rules-notation
"""

from __future__ import annotations

import re
from functools import lru_cache

from .board import (ADVISOR, BLACK, CANNON, COLOR_NAMES, ELEPHANT, FILES, HORSE, KING, PAWN, PIECE_NAMES, RED,
                    ROOK, Board, Move)
from ..errors import AmbiguousMoveError, ConfigError, IllegalMoveError, InvalidMoveError, MoveError

__all__ = ["detect_notation", "parse_move", "parse_iccs", "parse_wxf", "parse_chinese", "move_to_wxf",
           "move_to_chinese", "format_move", "chinese_digit_sides", "clear_caches", "NOTATIONS"]

NOTATIONS = ("iccs", "wxf", "chinese", "chinese-traditional")

# Directions
ADVANCE, TRAVERSE, RETREAT = 1, 0, -1

# Tandem position labels. A label picks one piece out of the n pieces of a kind on one file, front to back.
FRONT, MIDDLE, REAR = "front", "middle", "rear"
WXF_PLUS, WXF_MINUS = "wxf+", "wxf-"          # P+ / P-: second foremost / rearmost when 4 or 5 share a file
# An ordinal label is an int k >= 1: the k-th piece, counted over all files that hold two or more of the kind.


def _label_index(label, n: int) -> int | None:
    if label == FRONT:
        return 0
    if label == REAR:
        return n - 1
    if label == MIDDLE:
        return n // 2 if n % 2 else None
    if label == WXF_PLUS:
        return 1 if n >= 4 else 0
    if label == WXF_MINUS:
        return n - 2 if n >= 4 else n - 1
    return label - 1 if label <= n else None


# --------------------------------------------------------------------------------------------------------------
# Geometry from the mover's point of view
# --------------------------------------------------------------------------------------------------------------

def _file_number(color: int, file: int) -> int:
    """ICCS file 0..8 -> the mover's file number 1..9 (counted from the mover's right)."""
    return 9 - file if color == RED else file + 1


def _file_index(color: int, number: int) -> int:
    return 9 - number if color == RED else number - 1


# _FILE_ORDER[color]: (file number, squares of that file front to back) for file numbers 1..9
_FILE_ORDER = tuple(
    tuple((n, tuple(range(_file_index(c, n) + 81, -1, -9) if c == RED else range(_file_index(c, n), 90, 9)))
          for n in range(1, 10))
    for c in (RED, BLACK))

_STRAIGHT = frozenset((KING, ROOK, CANNON, PAWN))


def _destination(ptype: int, color: int, frm: int, direction: int, number: int) -> int | None:
    """The square a file-notation move lands on, or None if the notation describes no move of this piece."""
    f, r = frm % 9, frm // 9
    forward = 1 if color == RED else -1
    if ptype in _STRAIGHT:
        if direction == TRAVERSE:
            tf = _file_index(color, number)
            return r * 9 + tf if tf != f else None
        tr = r + direction * forward * number
        return tr * 9 + f if 0 <= tr <= 9 else None
    if direction == TRAVERSE:
        return None
    tf = _file_index(color, number)
    df = abs(tf - f)
    if ptype == HORSE:
        dr = 3 - df if df in (1, 2) else 0
    elif ptype == ELEPHANT:
        dr = 2 if df == 2 else 0
    else:
        dr = 1 if df == 1 else 0
    if not dr:
        return None
    tr = r + direction * forward * dr
    return tr * 9 + tf if 0 <= tr <= 9 else None


def _groups(b: list, code: int, color: int) -> list[tuple[int, list[int]]]:
    """Files holding two or more of the piece ``code``: (file number, squares front to back), mover's right first."""
    out = []
    for n, squares in _FILE_ORDER[color]:
        found = [s for s in squares if b[s] == code]
        if len(found) >= 2:
            out.append((n, found))
    return out


def _on_file(b: list, code: int, color: int, number: int) -> list[int]:
    return [s for s in _FILE_ORDER[color][number - 1][1] if b[s] == code]


# --------------------------------------------------------------------------------------------------------------
# Character tables
# --------------------------------------------------------------------------------------------------------------

_PIECE_CHARS = {
    KING: "帅帥将將", ADVISOR: "仕士", ELEPHANT: "相象", HORSE: "马馬傌", ROOK: "车車俥硨", CANNON: "炮砲包",
    PAWN: "兵卒",
}
_DIGIT_STYLES = ("一二三四五六七八九", "123456789", "１２３４５６７８９")
_DIRECTION_CHARS = {"进": ADVANCE, "進": ADVANCE, "退": RETREAT, "平": TRAVERSE}
_POSITION_CHARS = {"前": FRONT, "中": MIDDLE, "后": REAR, "後": REAR}

# one table: char -> (class, value)
_CHINESE = {}
for _t, _chars in _PIECE_CHARS.items():
    for _ch in _chars:
        _CHINESE[_ch] = ("piece", _t)
for _style in _DIGIT_STYLES:
    for _i, _ch in enumerate(_style):
        _CHINESE[_ch] = ("digit", _i + 1)
for _ch, _d in _DIRECTION_CHARS.items():
    _CHINESE[_ch] = ("direction", _d)
for _ch, _p in _POSITION_CHARS.items():
    _CHINESE[_ch] = ("position", _p)

_OUT_PIECES = {  # (traditional, color) -> type -> char
    (False, RED): {KING: "帅", ADVISOR: "仕", ELEPHANT: "相", HORSE: "马", ROOK: "车", CANNON: "炮", PAWN: "兵"},
    (False, BLACK): {KING: "将", ADVISOR: "士", ELEPHANT: "象", HORSE: "马", ROOK: "车", CANNON: "炮", PAWN: "卒"},
    (True, RED): {KING: "帥", ADVISOR: "仕", ELEPHANT: "相", HORSE: "傌", ROOK: "俥", CANNON: "炮", PAWN: "兵"},
    (True, BLACK): {KING: "將", ADVISOR: "士", ELEPHANT: "象", HORSE: "馬", ROOK: "車", CANNON: "砲", PAWN: "卒"},
}
_OUT_DIRECTIONS = {False: {ADVANCE: "进", RETREAT: "退", TRAVERSE: "平"},
                   True: {ADVANCE: "進", RETREAT: "退", TRAVERSE: "平"}}
_OUT_POSITIONS = {False: {FRONT: "前", MIDDLE: "中", REAR: "后"}, True: {FRONT: "前", MIDDLE: "中", REAR: "後"}}
_ORDINALS = "一二三四五六七八九"    # 6+ only in composed positions with extra soldiers

_WXF_PIECES = {"K": KING, "G": KING, "A": ADVISOR, "E": ELEPHANT, "B": ELEPHANT, "H": HORSE, "N": HORSE,
               "R": ROOK, "C": CANNON, "P": PAWN}
_WXF_OUT = {KING: "K", ADVISOR: "A", ELEPHANT: "E", HORSE: "H", ROOK: "R", CANNON: "C", PAWN: "P"}
_WXF_DIRECTIONS = {"+": ADVANCE, "-": RETREAT, ".": TRAVERSE, "=": TRAVERSE}
_WXF_OUT_DIRECTIONS = {ADVANCE: "+", RETREAT: "-", TRAVERSE: "."}

_ANNOTATION = "+#!?！？＋＃"
# Letter cases are spelled out: with re.IGNORECASE, Unicode case folding would also match 'ı', 'İ' (for i) and the
# Kelvin sign (for K), which no table below knows.
_ICCS_RE = re.compile(r"([a-iA-I])([0-9])-?([a-iA-I])([0-9])[+#!?]*")
_WXF_RE = re.compile(r"([KAEBHNRCPGkaebhnrcpg+\-1-9])([+\-1-9KAEBHNRCPGkaebhnrcpg])([+\-.=])([1-9])[+#!?]*")
_WXF3_RE = re.compile(r"([KAEBHNRCPGkaebhnrcpg])([1-9])([1-9])[+#!?]*")   # "C25": traverse, no sign
_SPACES = re.compile(r"[\s\u3000]+")


# --------------------------------------------------------------------------------------------------------------
# Reading text into a spec (cached: the same few thousand strings recur in every record)
# --------------------------------------------------------------------------------------------------------------
# A spec is (ptype, label, file_number, direction, number, wxf): ``label`` None means "the piece(s) on file
# ``file_number``"; otherwise ``file_number`` is 0 (any tandem file) or restricts the label to that file. ``wxf``
# turns on WXF's rule that a bare file digit names the middle soldier of three or five.

class _Unreadable(Exception):
    pass


def _chinese_spec(text: str):
    t = _SPACES.sub("", text).rstrip(_ANNOTATION)
    try:
        tokens = [_CHINESE[ch] for ch in t]
    except KeyError:
        raise _Unreadable from None
    kinds = tuple(k for k, _ in tokens)
    values = [v for _, v in tokens]
    if kinds == ("piece", "digit", "direction", "digit"):                 # 炮二平五
        return values[0], None, values[1], values[2], values[3], False
    if kinds == ("position", "piece", "direction", "digit"):              # 前车进一
        return values[1], values[0], 0, values[2], values[3], False
    if kinds == ("digit", "piece", "direction", "digit"):                 # 二兵平四
        return values[1], values[0], 0, values[2], values[3], False
    if kinds == ("position", "digit", "direction", "digit"):              # 前三进一: soldier on file 三
        return PAWN, values[0], values[1], values[2], values[3], False
    if kinds in (("position", "piece", "digit", "direction", "digit"),    # 前兵三进一
                 ("digit", "piece", "digit", "direction", "digit")):
        return values[1], values[0], values[2], values[3], values[4], False
    raise _Unreadable


def _wxf_spec(text: str):
    t = text.strip()
    m = _WXF_RE.fullmatch(t)
    if m is None:
        m3 = _WXF3_RE.fullmatch(t)
        if m3 is None:
            raise _Unreadable
        return (_WXF_PIECES[m3.group(1).upper()], None, int(m3.group(2)), TRAVERSE, int(m3.group(3)), True)
    a, b, d, num = m.group(1).upper(), m.group(2).upper(), _WXF_DIRECTIONS[m.group(3)], int(m.group(4))
    if a in _WXF_PIECES:
        ptype = _WXF_PIECES[a]
        if b.isdigit():                                   # C2.5
            return ptype, None, int(b), d, num, True
        if b in "+-":                                     # R+.3, P-.4
            if ptype == PAWN:
                return ptype, WXF_PLUS if b == "+" else WXF_MINUS, 0, d, num, True
            return ptype, FRONT if b == "+" else REAR, 0, d, num, True
        raise _Unreadable
    if a in "+-":
        if b in _WXF_PIECES:                              # +C.5: the prefix form
            ptype = _WXF_PIECES[b]
            if ptype == PAWN:
                return ptype, WXF_PLUS if a == "+" else WXF_MINUS, 0, d, num, True
            return ptype, FRONT if a == "+" else REAR, 0, d, num, True
        if b == a:                                        # ++.4 / --.4: foremost / rearmost of 4 or 5 soldiers
            return PAWN, FRONT if a == "+" else REAR, 0, d, num, True
        raise _Unreadable
    # a is a digit: soldiers on two files, the digit names the file: 3+.4, 33.4, 3-.4
    if b in "+-":
        return PAWN, FRONT if b == "+" else REAR, int(a), d, num, True
    if b == a:
        return PAWN, MIDDLE, int(a), d, num, True
    raise _Unreadable


def clear_caches() -> None:
    """Empty the notation reader's caches (bounded: 65,536 move texts and 4,096 Chinese digit styles). Only for
    measuring memory or timing from a known state; reading never needs it."""
    _read_cached.cache_clear()
    chinese_digit_sides.cache_clear()


def _read(text, notation: str | None):
    """(notation, spec) for ``text``, or None if it does not read; ``notation`` None tries ICCS, WXF, Chinese."""
    return _read_cached(text, notation) if isinstance(text, str) else None


@lru_cache(maxsize=1 << 16)
def _read_cached(text: str, notation: str | None):
    if notation in (None, "iccs"):
        m = _ICCS_RE.fullmatch(text.strip())
        if m is not None:
            frm = int(m.group(2)) * 9 + FILES.index(m.group(1).lower())
            to = int(m.group(4)) * 9 + FILES.index(m.group(3).lower())
            if frm != to:
                return "iccs", (frm, to)
        if notation:
            return None
    if notation in (None, "wxf"):
        try:
            return "wxf", _wxf_spec(text)
        except _Unreadable:
            if notation:
                return None
    if notation in (None, "chinese", "chinese-traditional"):
        try:
            return "chinese", _chinese_spec(text)
        except _Unreadable:
            return None
    return None


def detect_notation(text: str) -> str | None:
    """The notation a single move token is written in: ``"iccs"``, ``"wxf"``, ``"chinese"``, or None if none reads."""
    read = _read(text, None)
    return read[0] if read else None


_DIGIT_SIDE = {ch: RED if style == _DIGIT_STYLES[0] else BLACK for style in _DIGIT_STYLES for ch in style}


@lru_cache(maxsize=1 << 12)
def chinese_digit_sides(text: str) -> frozenset:
    """The sides whose digit style a Chinese move's file and step digits use: ``{RED}`` for 一…九, ``{BLACK}`` for
    1…9 or １…９, both when it mixes them, empty when ``text`` is not Chinese notation. A leading ordinal (the
    一二三四五 of 二兵平四) is the same for both sides and does not count."""
    if not isinstance(text, str) or _read(text, "chinese") is None:
        return frozenset()
    t = _SPACES.sub("", text).rstrip(_ANNOTATION)
    if t[0] in _DIGIT_SIDE and _CHINESE[t[1]][0] == "piece":
        t = t[1:]
    return frozenset(_DIGIT_SIDE[ch] for ch in t if ch in _DIGIT_SIDE)


# --------------------------------------------------------------------------------------------------------------
# Resolving a spec on a board
# --------------------------------------------------------------------------------------------------------------

def _file_text(color: int, number: int) -> str:
    return (_DIGIT_STYLES[0] if color == RED else _DIGIT_STYLES[1])[number - 1]


def _resolve(board: Board, spec, text: str) -> Move:
    ptype, label, file_number, direction, number, wxf = spec
    color = board.turn
    code = ptype | color << 3
    b = board.squares
    piece = f"{COLOR_NAMES[color]} {PIECE_NAMES[ptype]}"
    if label is None:
        froms = _on_file(b, code, color, file_number)
        if not froms:
            raise IllegalMoveError(f"illegal move {text!r}: there is no {piece} on file {_file_text(color, file_number)}"
                                   f" ({FILES[_file_index(color, file_number)]}-file)")
        if wxf and ptype == PAWN and len(froms) >= 3 and len(froms) % 2:
            froms = [froms[len(froms) // 2]]             # WXF: the bare file names the middle soldier
    else:
        groups = _groups(b, code, color)
        if file_number:
            groups = [g for g in groups if g[0] == file_number]
        if not groups:
            where = f"file {_file_text(color, file_number)}" if file_number else "one file"
            raise IllegalMoveError(f"illegal move {text!r}: there are no two {piece}s on {where}")
        if isinstance(label, int) and len(groups) > 1:  # ordinals count over all tandem files
            flat = [s for _, squares in groups for s in squares]
            froms = [flat[label - 1]] if label <= len(flat) else []
        else:
            froms = []
            for _, squares in groups:
                i = _label_index(label, len(squares))
                if i is not None:
                    froms.append(squares[i])
        if not froms:
            raise IllegalMoveError(f"illegal move {text!r}: no {piece} stands at that place in the tandem")
    candidates = []
    for frm in froms:
        to = _destination(ptype, color, frm, direction, number)
        if to is not None:
            candidates.append((frm, to))
    if not candidates:
        raise IllegalMoveError(f"illegal move {text!r}: a {PIECE_NAMES[ptype]} cannot move like that")
    found = [(frm, to) for frm, to in candidates if board.is_legal_int(frm << 7 | to)]
    if len(found) == 1:
        return Move(*found[0])
    if not found:
        if len(candidates) == 1:
            move = Move(*candidates[0])
            raise IllegalMoveError(f"illegal move {text!r} ({move.iccs()}): {board.why_illegal(move)}")
        tried = ", ".join(Move(*c).iccs() for c in candidates)
        raise IllegalMoveError(f"illegal move {text!r}: none of its readings ({tried}) is legal")
    readings = ", ".join(Move(*c).iccs() for c in found)
    raise AmbiguousMoveError(f"ambiguous move {text!r}: it can mean {readings}")


def _unreadable(text) -> InvalidMoveError:
    return InvalidMoveError(f"cannot read move {text!r}")


def _checked_iccs(board: Board, squares: tuple[int, int], text: str) -> Move:
    frm, to = squares
    move = Move(frm, to)
    if not board.is_legal_int(frm << 7 | to):
        raise IllegalMoveError(f"illegal move {text!r}: {board.why_illegal(move)}")
    return move


def parse_iccs(board: Board, text: str) -> Move:
    """Parse ``h2e2`` / ``H2-E2`` (trailing ``+ # ! ?`` marks ignored) into a legal move."""
    read = _read(text, "iccs")
    if read is None:
        raise _unreadable(text)
    return _checked_iccs(board, read[1], text)


def parse_wxf(board: Board, text: str) -> Move:
    """Parse WXF notation (``C2.5``, ``H8+7``, ``R1=2``, ``C+.5``, ``+C.5``, ``P3.4``, ``++.4``, ``3-.4``)."""
    read = _read(text, "wxf")
    if read is None:
        raise _unreadable(text)
    return _resolve(board, read[1], text)


def parse_chinese(board: Board, text: str) -> Move:
    """Parse Chinese notation, simplified or traditional (``炮二平五``, ``馬８進７``, ``前车进一``, ``二兵平四``)."""
    read = _read(text, "chinese")
    if read is None:
        raise _unreadable(text)
    return _resolve(board, read[1], text)


def parse_move(board: Board, text: str, notation: str | None = None) -> Move:
    """Parse a move in any notation (detected when ``notation`` is None) into a legal move on ``board``."""
    if notation is not None and notation not in NOTATIONS:
        raise ConfigError(f"unknown notation {notation!r}; expected one of {', '.join(NOTATIONS)}")
    read = _read(text, notation)
    if read is None:
        raise _unreadable(text)
    kind, spec = read
    if kind == "iccs":
        return _checked_iccs(board, spec, text)
    return _resolve(board, spec, text)


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------

def _describe(board: Board, move: Move):
    """(ptype, color, label, file_number, direction, number, groups) of a legal move, mover's point of view."""
    frm, to = move.from_square, move.to_square
    if not board.is_legal_int(frm << 7 | to):
        raise IllegalMoveError(f"illegal move {move.iccs()}: {board.why_illegal(move)}")
    b = board.squares
    code = b[frm]
    ptype, color = code & 7, code >> 3
    ff, tf = frm % 9, to % 9
    forward = 1 if color == RED else -1
    dr = (to // 9 - frm // 9) * forward
    direction = ADVANCE if dr > 0 else RETREAT if dr < 0 else TRAVERSE
    if ptype in _STRAIGHT and direction != TRAVERSE:
        number = abs(dr)
    else:
        number = _file_number(color, tf)
    groups = [] if ptype in (KING, ADVISOR, ELEPHANT) else _groups(b, code, color)
    return ptype, color, _file_number(color, ff), direction, number, groups


def _checked_text(board: Board, move: Move, text: str, notation: str) -> str:
    """``text`` if it reads back as ``move``. Only boards built with ``strict=False`` need this: with more pieces of
    a kind than a game allows, the tandem forms of WXF and Chinese notation can name another piece."""
    if getattr(board, "strict", True):
        return text
    try:
        back = parse_move(board, text, "chinese" if notation.startswith("chinese") else notation)
    except MoveError:
        back = None
    if back != move:
        raise MoveError(f"cannot write {move.iccs()} in {notation} notation unambiguously: this position has more "
                        f"pieces of a kind than a game allows")
    return text


def move_to_wxf(board: Board, move: Move) -> str:
    """WXF text of a legal ``move`` on ``board`` (the position before it), e.g. ``C2.5``, ``R+.3``, ``3-.4``.

    On a board built with ``strict=False`` a move that no WXF text names unambiguously raises :class:`MoveError`."""
    return _checked_text(board, move, _wxf_text(board, move), "wxf")


def _wxf_text(board: Board, move: Move) -> str:
    ptype, color, file_number, direction, number, groups = _describe(board, move)
    head = _WXF_OUT[ptype] + str(file_number)
    mine = [squares for n, squares in groups if n == file_number]
    if mine:
        squares = mine[0]
        i, n = squares.index(move.from_square), len(squares)
        if ptype != PAWN or len(groups) == 1:
            if n <= 3:
                mark = "+" if i == 0 else "-" if i == n - 1 else str(file_number)
                head = _WXF_OUT[ptype] + mark
            else:                          # 4 or 5 soldiers: ++ P+ (P3) P- --
                head = "++" if i == 0 else "--" if i == n - 1 else \
                    "P+" if i == 1 else "P-" if i == n - 2 else "P" + str(file_number)
        else:                              # soldiers on two files: the file digit replaces the letter
            mark = "+" if i == 0 else "-" if i == n - 1 else str(file_number)
            head = str(file_number) + mark
    return head + _WXF_OUT_DIRECTIONS[direction] + str(number)


def move_to_chinese(board: Board, move: Move, traditional: bool = False, fullwidth: bool | None = None) -> str:
    """Chinese text of a legal ``move`` on ``board`` (the position before it).

    Simplified by default with ASCII digits for Black (``炮二平五``, ``马8进7``); ``traditional=True`` gives the
    characters of Big5 records with full-width digits for Black (``炮二平五``, ``馬８進７``). ``fullwidth`` overrides
    the digit style for Black. On a board built with ``strict=False`` a move that no Chinese text names
    unambiguously raises :class:`MoveError`.
    """
    text = _chinese_text(board, move, traditional, fullwidth)
    return _checked_text(board, move, text, "chinese")


def _chinese_text(board: Board, move: Move, traditional: bool, fullwidth: bool | None) -> str:
    ptype, color, file_number, direction, number, groups = _describe(board, move)
    if fullwidth is None:
        fullwidth = traditional
    digits = _DIGIT_STYLES[0] if color == RED else _DIGIT_STYLES[2 if fullwidth else 1]
    name = _OUT_PIECES[traditional, color][ptype]
    head = name + digits[file_number - 1]
    mine = [squares for n, squares in groups if n == file_number]
    if mine:
        squares = mine[0]
        i, n = squares.index(move.from_square), len(squares)
        flat = [s for _, sq in groups for s in sq]
        if len(flat) > len(_ORDINALS):                 # only with strict=False: count on the piece's own file
            label = _OUT_POSITIONS[traditional][FRONT] if i == 0 else \
                _OUT_POSITIONS[traditional][REAR] if i == n - 1 else _ORDINALS[i]
            head = label + name + digits[file_number - 1]
        elif len(groups) > 1 or n > 3:                 # 一二三四五 over every tandem file, mover's right first
            head = _ORDINALS[flat.index(move.from_square)] + name
        else:
            label = FRONT if i == 0 else REAR if i == n - 1 else MIDDLE
            head = _OUT_POSITIONS[traditional][label] + name
    return head + _OUT_DIRECTIONS[traditional][direction] + digits[number - 1]


def format_move(board: Board, move: Move, notation: str) -> str:
    """Text of ``move`` in ``notation``: ``"iccs"``, ``"wxf"``, ``"chinese"`` or ``"chinese-traditional"``."""
    if notation == "iccs":
        if not board.is_legal_int(move.from_square << 7 | move.to_square):
            raise IllegalMoveError(f"illegal move {move.iccs()}: {board.why_illegal(move)}")
        return move.iccs()
    if notation == "wxf":
        return move_to_wxf(board, move)
    if notation == "chinese":
        return move_to_chinese(board, move)
    if notation == "chinese-traditional":
        return move_to_chinese(board, move, traditional=True)
    raise ConfigError(f"unknown notation {notation!r}; expected one of {', '.join(NOTATIONS)}")


def parse_raw_move(text: str) -> Move | None:
    """The :class:`Move` written by ``text`` (ICCS) or ``None`` if it does not name a move at all."""
    try:
        return Move.from_iccs(text)
    except InvalidMoveError:
        return None


def is_legal_text(board: Board, text: str) -> bool:
    """Does ``text`` (e.g. a raw model move) name a legal move on ``board``?"""
    move = parse_raw_move(text)
    return move is not None and board.is_legal(move)
