"""DhtmlXQ / UBB game text, as web pages and forums carry it: ``[DhtmlXQ]...[/DhtmlXQ]`` blocks of tags.

``[DhtmlXQ_movelist]`` holds 4 digits per move (from file, from row, to file, to row; files 0-8 from Red's left,
rows 0-9 from Black's side); ``[DhtmlXQ_binit]`` the start position as 32 two-digit points (Red's men then
Black's, chariot, horse, elephant, advisor, general, advisor, elephant, horse, chariot, 2 cannons, 5 soldiers;
``99`` = captured). Tags (title, event, red, black, result, date, place, round) are kept; the variations
(``[DhtmlXQ_move_L_P_N]``) are counted in the ``VariationsDropped`` tag; comments are skipped.
"""

from __future__ import annotations

import html
import re
from typing import Iterator

from .archive import build_game, error, mover_color, pieces_from_men, placement_fen
from ..rules.board import STARTING_FEN, square
from ..errors import PgnError
from .pgn import Game, decode_bytes, normalize_result

_BLOCK_RE = re.compile(r"\[DhtmlXQ\](.*?)\[/DhtmlXQ\]", re.S | re.I)
_TAG_RE = re.compile(r"\[DhtmlXQ_([A-Za-z0-9_]+)\](.*?)\[/DhtmlXQ_\1\]", re.S | re.I)
_VARIATION_RE = re.compile(r"move_\d+_\d+_\d+", re.I)
_SPACE_RE = re.compile(r"\s+|<br\s*/?>|&nbsp;", re.I)
_TAGS = (("title", "Title"), ("event", "Event"), ("round", "Round"), ("date", "Date"), ("place", "Site"),
         ("red", "Red"), ("redteam", "RedTeam"), ("black", "Black"), ("blackteam", "BlackTeam"),
         ("open", "Opening"), ("author", "Annotator"))


def read_dhtmlxq(data: bytes | str, label: str, strict: bool = True) -> Iterator[Game | PgnError]:
    """Every ``[DhtmlXQ]`` game of a text (bytes in UTF-8, GB18030 or Big5, or a str): each a :class:`Game` or a
    :class:`PgnError` naming ``label`` and the game number. A text of bare ``[DhtmlXQ_...]`` tags is one game."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = decode_bytes(bytes(data), label)
        except PgnError as e:
            yield e
            return
    else:
        text = data
    blocks = _BLOCK_RE.findall(text)
    if not blocks and re.search(r"\[DhtmlXQ_(movelist|binit)\]", text, re.I):
        blocks = [text]
    if not blocks:
        yield error("no DhtmlXQ game in the text (no [DhtmlXQ]...[/DhtmlXQ] block with a movelist)", label)
        return
    for index, block in enumerate(blocks, start=1):
        yield read_block(block, label, index, strict)


def read_block(block: str, label: str, index: int = 1, strict: bool = True) -> Game | PgnError:
    """One game from the text inside a ``[DhtmlXQ]`` block."""
    tags: dict[str, str] = {}
    variations = 0
    for name, value in _TAG_RE.findall(block):
        name = name.lower()
        if _VARIATION_RE.fullmatch(name):
            variations += 1
        tags.setdefault(name, value)
    moves_text = _SPACE_RE.sub("", tags.get("movelist", ""))
    if len(moves_text) % 4 or not moves_text.isdigit() and moves_text:
        return error(f"the movelist is not groups of 4 digits ({moves_text[:24]!r}...)", label, index)
    squares = []
    for ply, at in enumerate(range(0, len(moves_text), 4), start=1):
        x1, y1, x2, y2 = (int(c) for c in moves_text[at:at + 4])
        if x1 > 8 or x2 > 8:
            return error(f"move {moves_text[at:at + 4]!r} names a file past 8", label, index, ply)
        squares.append((square(x1, 9 - y1), square(x2, 9 - y2)))
    binit = _SPACE_RE.sub("", tags.get("binit", ""))
    if binit:
        if len(binit) != 64 or not binit.isdigit():
            return error(f"the binit position is not 32 two-digit points ({binit[:24]!r}...)", label, index)
        positions = []
        for i in range(32):
            x, y = int(binit[2 * i]), int(binit[2 * i + 1])
            positions.append(None if x > 8 else square(x, 9 - y))      # 99 (or any file past 8): captured
        pieces = pieces_from_men(positions, label, index)
        if isinstance(pieces, PgnError):
            return pieces
        fen = placement_fen(pieces, mover_color(pieces, squares[0] if squares else None))
    else:
        fen = STARTING_FEN
    headers = {}
    for name, tag in _TAGS:
        value = html.unescape(tags.get(name, "")).strip()
        if value:
            headers[tag] = value
    result = normalize_result(html.unescape(tags.get("result", ""))) or "*"
    return build_game(label, index, fen, squares, headers, result, variations, strict)
