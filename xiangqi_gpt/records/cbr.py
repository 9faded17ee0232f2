"""象棋桥 (CCBridge) files: CBR (one binary game), CBL (a library of CBR games) and CBF (one game as XML).

CBR: a 2214-byte header (``CCBridge Record``, UTF-16 tags, result, side to move, the 90 points) and the move tree
in pre-order, 4 bytes per node (flags, 0, from, to) plus an optional comment. CBL: a header
(``CCBridgeLibrary``, game count, name) and CBR records each starting on a 4096-byte block. CBF: XML with a
``Head`` (tags, ``FEN``) and a ``MoveList`` of ``<Move value="77-47"/>``. The main line is kept; variations are
counted (``VariationsDropped`` tag); comments are skipped.
"""

from __future__ import annotations

from typing import Iterator
from xml.etree import ElementTree

from .archive import build_game, error, mover_color, placement_fen
from ..rules.board import STARTING_FEN, square
from ..errors import PgnError
from .pgn import Game

CBR_MAGIC = b"CCBridge Record\x00"
CBL_MAGIC = b"CCBridgeLibrary\x00"
CBR_HEADER = 2214
CBL_BLOCK = 4096
_RESULTS = {0: "*", 1: "1-0", 2: "0-1", 3: "1/2-1/2", 4: "1/2-1/2"}
# UTF-16 tags of a CBR header: offset, size in bytes, PGN tag.
_TAGS = ((180, 128, "Title"), (692, 64, "Event"), (1076, 64, "Red"), (1300, 64, "Black"))
_PIECES = {0x11: "R", 0x12: "N", 0x13: "B", 0x14: "A", 0x15: "K", 0x16: "C", 0x17: "P",
           0x21: "r", 0x22: "n", 0x23: "b", 0x24: "a", 0x25: "k", 0x26: "c", 0x27: "p"}
_MAX_COMMENT = 1 << 24


def _point(p: int) -> int:
    """A CBR point (row from Black's side * 9 + file) as an ICCS square."""
    return square(p % 9, 9 - p // 9)


def _utf16(data: bytes, at: int, size: int) -> str:
    raw = data[at:at + size]
    for i in range(0, len(raw) - 1, 2):
        if raw[i] == 0 and raw[i + 1] == 0:
            raw = raw[:i]
            break
    return raw.decode("utf-16-le", errors="replace").strip()


def read_cbr(data: bytes, label: str, index: int = 1, strict: bool = True,
             where: str = "CBR file") -> Game | PgnError:
    """The main line and tags of one CBR record's bytes, or a :class:`PgnError` naming ``label`` (and ``index``)."""
    game_no = index if where != "CBR file" else None     # header errors in a single file concern the file
    if not data.startswith(CBR_MAGIC):
        return error(f"not a {where} (no 'CCBridge Record' signature)", label, game_no)
    if len(data) < CBR_HEADER:
        return error(f"truncated {where}: {len(data)} bytes, the header alone is {CBR_HEADER}", label, game_no)
    pieces: dict[int, str] = {}
    for p, code in enumerate(data[2120:2210]):
        if code in _PIECES:
            pieces[_point(p)] = _PIECES[code]
        elif code:
            return error(f"unknown piece code 0x{code:02x} on the board", label, index)
    if not pieces:
        return error("no pieces on the board (an empty or title-only record)", label, index)
    parsed = _walk(data, CBR_HEADER)
    if isinstance(parsed, str):
        return error(parsed, label, index)
    squares, variations = parsed
    headers = {tag: _utf16(data, at, size) for at, size, tag in _TAGS}
    side = int.from_bytes(data[2116:2118], "little")
    red = mover_color(pieces, squares[0] if squares else None, default_red=side == 1)
    return build_game(label, index, placement_fen(pieces, red), squares, headers, _RESULTS.get(data[2076], "*"),
                      variations, strict,
                      drop_last_illegal=True)


def _walk(data: bytes, pos: int) -> tuple[list[tuple[int, int]], int] | str:
    """``(main line, variations)`` of a CBR move tree starting at ``pos``, or a reason it cannot be read.

    A root record (a comment flag, then the comment) comes first. Nodes come in pre-order: flag 1 ends a line, flag
    2 says a variation (the next sibling) follows the node's subtree, flag 4 says a comment follows the node."""
    n = len(data)
    if pos + 4 > n:
        return [], 0
    if int.from_bytes(data[pos:pos + 4], "little"):
        if pos + 8 > n:
            return "truncated in the game's opening comment"
        size = int.from_bytes(data[pos + 4:pos + 8], "little", signed=True)
        if size < 0 or size > _MAX_COMMENT or pos + 8 + size > n:
            return f"bad length {size} of the game's opening comment"
        pos += 8 + size
    else:
        pos += 4
    main: list[tuple[int, int]] = []
    in_main = True
    variations = 0
    pending = 1
    while pending:
        if pos + 4 > n or data[pos:pos + 4] == b"\0\0\0\0":
            if in_main and main:
                return f"truncated after ply {len(main)}: the main line goes on past the end of the record"
            break
        flags, _, fr, to = data[pos:pos + 4]
        pos += 4
        pending -= 1
        has_next, has_var = not flags & 1, bool(flags & 2)
        if flags & 4:
            size = int.from_bytes(data[pos:pos + 4], "little", signed=True) if pos + 4 <= n else -1
            if size < 0 or size > _MAX_COMMENT or pos + 4 + size > n:
                if in_main:
                    return f"bad or truncated comment of ply {len(main) + 1}"
                break
            pos += 4 + size
        if in_main:
            if fr > 89 or to > 89:
                return f"ply {len(main) + 1}: move bytes do not name board points ({fr}, {to})"
            main.append((_point(fr), _point(to)))
            in_main = has_next
        if has_var:
            variations += 1
            pending += 1
        if has_next:
            pending += 1
    return main, variations


def read_cbl(data: bytes, label: str, strict: bool = True) -> Iterator[Game | PgnError]:
    """Every game of a CBL library's bytes, each a :class:`Game` or a :class:`PgnError` naming the game number."""
    if not data.startswith(CBL_MAGIC):
        yield error("not a CBL library (no 'CCBridgeLibrary' signature)", label)
        return
    if len(data) < 576:
        yield error(f"truncated CBL library: {len(data)} bytes, the header alone is 576", label)
        return
    start = data.find(CBR_MAGIC, 576)
    if start < 0:
        return
    offsets = [at for at in range(start, len(data), CBL_BLOCK) if data.startswith(CBR_MAGIC, at)]
    offsets.append(len(data))
    name = _utf16(data, 64, 512)
    for i, (at, end) in enumerate(zip(offsets, offsets[1:]), start=1):
        game = read_cbr(data[at:end], label, i, strict, where="CBL game record")
        if isinstance(game, Game) and name:
            game.headers.setdefault("Library", name)
        yield game


_CBF_TAGS = (("Name", "Title"), ("Contest", "Event"), ("Round", "Round"), ("Date", "Date"), ("Site", "Site"),
             ("Red", "Red"), ("RedTeam", "RedTeam"), ("Black", "Black"), ("BlackTeam", "BlackTeam"),
             ("ECCO", "ECCO"), ("Commentator", "Annotator"))


def read_cbf(data: bytes, label: str, index: int = 1, strict: bool = True) -> Game | PgnError:
    """The main line and tags of a CBF (XML) file's bytes, or a :class:`PgnError` naming ``label``.

    The main line runs from the second ``Move`` (the first is the root, ``00-00``) to the first one marked
    ``end="1"``; the moves after it are variations, counted by their ``end`` marks."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        return error(f"not a readable CBF (XML) file: {e}", label)
    head, move_list = root.find("Head"), root.find("MoveList")
    if root.tag != "ChineseChessRecord" or head is None or move_list is None:
        return error("not a CBF file (no ChineseChessRecord with a Head and a MoveList)", label)
    headers = {}
    for node, tag in _CBF_TAGS:
        text = (head.findtext(node) or "").strip()
        if text:
            headers[tag] = text
    fen = (head.findtext("FEN") or "").strip() or STARTING_FEN
    try:
        result = _RESULTS.get(int((head.findtext("RecordResult") or "0").strip() or 0), "*")
    except ValueError:
        result = "*"
    nodes = move_list.findall("Move")
    squares: list[tuple[int, int]] = []
    variations = 0
    in_main = True
    for ply, node in enumerate(nodes[1:], start=1):
        if in_main:
            value = node.get("value", "")
            if len(value) != 5 or value[2] != "-" or not (value[:2] + value[3:]).isdigit() \
                    or value[0] == "9" or value[3] == "9":
                return error(f"move {value!r} is not a CBF move (file, row - file, row)", label, index, ply)
            squares.append((square(int(value[0]), 9 - int(value[1])), square(int(value[3]), 9 - int(value[4]))))
            in_main = node.get("end") != "1"
        elif node.get("end") == "1":
            variations += 1
    return build_game(label, index, fen, squares, headers, result, variations, strict)
