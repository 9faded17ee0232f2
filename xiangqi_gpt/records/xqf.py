"""XQF (象棋演播室 / XQStudio) game files, every version: plain (up to 10) and encrypted (11 and later).

Layout: a 1024-byte header (``XQ``, version, key bytes, the 32 men's squares, result, tags as length-prefixed
GB18030 strings), then the move tree in pre-order: 4 bytes per node (from, to, flags, reserved) and its comment.
The main line is kept; variations are counted (``VariationsDropped`` tag); comments are skipped.
"""

from __future__ import annotations

from .archive import build_game, error, mover_color, pieces_from_men, placement_fen
from ..rules.board import Board, square
from ..errors import PgnError
from .pgn import Game

HEADER_SIZE = 0x400
_RESULTS = {0: "*", 1: "1-0", 2: "0-1", 3: "1/2-1/2", 4: "1/2-1/2"}
# Header tags: offset of the length byte, field size, PGN tag.
_TAGS = ((0x50, 63, "Title"), (0xD0, 63, "Event"), (0x110, 15, "Date"), (0x120, 15, "Site"),
         (0x130, 15, "Red"), (0x140, 15, "Black"), (0x150, 63, "TimeControl"), (0x1D0, 15, "Annotator"),
         (0x1E0, 15, "Creator"))
_COPYRIGHT = b"[(C) Copyright Mr. Dong Shiwei.]"
_MAX_COMMENT = 1 << 24


def _key(seed: int, factor: int) -> int:
    return (((((seed * seed) * 3 + 9) * 3 + 8) * 2 + 1) * 3 + 8) * factor & 0xFF


class _Keys:
    """The decryption keys of a version 11+ file, from header bytes 3..15."""

    def __init__(self, head: bytes):
        mask, ora, orb, orc, ord_, keys_sum, xy, xyf, xyt = head[3], *head[8:16]
        self.xy = _key(xy, xy)
        self.xyf = _key(xyf, self.xy)
        self.xyt = _key(xyt, self.xyf)
        self.comment = ((keys_sum * 256 + xy) % 32000 + 767) & 0xFFFF
        pad = ((keys_sum & mask) | ora, (xy & mask) | orb, (xyf & mask) | orc, (xyt & mask) | ord_)
        self.stream = bytes(c & pad[i % 4] for i, c in enumerate(_COPYRIGHT))

    def decrypt(self, data: bytes) -> bytes:
        """Subtract the 32-byte key stream (it starts at file offset 0x400, a multiple of 32)."""
        out = bytearray(data)
        for k in range(32):
            shift = self.stream[k]
            if shift:
                table = bytes((b - shift) & 0xFF for b in range(256))
                out[k::32] = data[k::32].translate(table)
        return bytes(out)


def _text(data: bytes, at: int, size: int) -> str:
    n = min(data[at], size)
    raw = data[at + 1:at + 1 + n].split(b"\x00", 1)[0]
    return raw.decode("gb18030", errors="replace").strip()


def read_xqf(data: bytes, label: str, index: int = 1, strict: bool = True) -> Game | PgnError:
    """The main line and tags of an XQF file's bytes as a :class:`Game`, or a :class:`PgnError` naming ``label``."""
    if not data.startswith(b"XQ"):
        return error("not an XQF file (no 'XQ' signature)", label)
    if len(data) < HEADER_SIZE:
        return error(f"truncated XQF file: {len(data)} bytes, the header alone is {HEADER_SIZE}", label)
    version = data[2]
    keys = None
    if version > 10:
        if sum(data[12:16]) & 0xFF:
            return error(f"bad key checksum in the header of this encrypted (version {version}) file: "
                         "the keys are corrupt", label)
        keys = _Keys(data)
    men = data[0x10:0x30]
    positions: list[int | None] = []
    for i in range(32):
        if keys is None:
            v = men[i]
        else:
            v = (men[(i - keys.xy - 1) % 32] - keys.xy) & 0xFF if version >= 12 else (men[i] - keys.xy) & 0xFF
        positions.append(None if v > 89 else square(v // 10, v % 10))     # 0xFF (or any value > 89): captured
    pieces = pieces_from_men(positions, label, index)
    if isinstance(pieces, PgnError):
        if keys is not None:
            return error(f"{pieces.reason} (a wrong key: the file is corrupt)", label, index)
        return pieces
    body = data[HEADER_SIZE:]
    if keys is not None:
        body = keys.decrypt(body)
    parsed = _walk(body, version, keys)
    if isinstance(parsed, str):
        return error(parsed, label, index)
    squares, variations = parsed
    headers = {tag: _text(data, at, size) for at, size, tag in _TAGS}
    result = _RESULTS.get(data[0x33], "*")
    red = mover_color(pieces, squares[0] if squares else None, default_red=data[0x32] != 1)
    fen = placement_fen(pieces, red)
    return build_game(label, index, fen, squares, headers, result, variations, strict,
                      drop_last_illegal=True)


def _walk(body: bytes, version: int, keys: _Keys | None) -> tuple[list[tuple[int, int]], int] | str:
    """``(main line as ICCS (from, to) squares, variations)`` of the move tree, or a reason it cannot be read.

    Nodes come in pre-order: a node, then its first child's subtree (flag "has next"), then its next sibling's
    subtree (flag "has variation"). So the main line is the run of nodes up to the first without a next move.
    A tree cut short inside its variations keeps the main line (the variations are not kept anyway)."""
    pos, n = 0, len(body)
    main: list[tuple[int, int]] = []
    in_main = True
    variations = 0
    pending = 1            # nodes still due: the root record, then the first move if it has one
    first = True
    while pending:
        if pos + 4 > n:
            if first or not in_main:
                break          # no moves at all (a file that ends after the header), or inside the variations
            return f"truncated after ply {len(main)}: the main line goes on past the end of the file"
        b0, b1, flags = body[pos], body[pos + 1], body[pos + 2]
        pos += 4
        pending -= 1
        if version <= 10:
            has_next, has_var, has_comment = bool(flags & 0xF0), bool(flags & 0x0F), True
        else:
            has_next, has_var, has_comment = bool(flags & 0x80), bool(flags & 0x40), bool(flags & 0x20)
        if has_comment:
            if pos + 4 > n:
                if in_main and not first:
                    return f"truncated in the comment of ply {len(main) + 1}"
                break
            size = int.from_bytes(body[pos:pos + 4], "little")
            pos += 4
            if keys is not None:
                size -= keys.comment
            if size < 0 or size > _MAX_COMMENT:
                where = "the game's opening comment" if first else f"the comment of ply {len(main) + 1}"
                if in_main:
                    return f"bad length {size} of {where} (a corrupt file or a wrong key)"
                break
            pos += size
        if first:
            first = False
            if pos + 4 <= n:         # the root record's flags are not used: moves follow if bytes do
                pending += 1
            continue
        fr, to = (b0 - 0x18 - (keys.xyf if keys else 0)) & 0xFF, (b1 - 0x20 - (keys.xyt if keys else 0)) & 0xFF
        if in_main:
            if fr > 89 or to > 89:
                return f"ply {len(main) + 1}: move bytes do not name board points ({fr}, {to}): corrupt or a wrong key"
            main.append((square(fr // 10, fr % 10), square(to // 10, to % 10)))
            if not has_next:
                in_main = False
        if has_var:
            variations += 1
            pending += 1
        if has_next:
            pending += 1
    return main, variations


_SLOTS = {letter: [i for i, c in enumerate("RNBAKABNRCCPPPPP") if c == letter] for letter in "RNBAKCP"}


def encode_xqf(game: Game, version: int = 18, seed: int = 1) -> bytes:
    """The bytes of an XQF file holding ``game``'s start position, main line, result and tags (``Title``,
    ``Event``, ``Date``, ``Site``, ``Red``, ``Black``): version 10 plain, or 11+ encrypted with keys drawn from
    ``seed``. For tests and benchmarks of the reader; raises :class:`ValueError` for a position with more men of a
    kind than XQF has slots for."""
    import random

    head = bytearray(HEADER_SIZE)
    head[0:3] = b"XQ" + bytes([version])
    keys = None
    if version > 10:
        rng = random.Random(seed)
        head[3] = rng.randrange(256)
        head[8:12] = bytes(rng.randrange(256) for _ in range(4))
        xy, xyf, xyt = (rng.randrange(256) for _ in range(3))
        head[12:16] = bytes([(-(xy + xyf + xyt)) & 0xFF, xy, xyf, xyt])      # the 4 key bytes sum to 0 mod 256
        keys = _Keys(bytes(head))
    values = [0xFF] * 32
    used: set[int] = set()
    for sq, letter in sorted(Board(game.root_fen, strict=False).pieces().items()):
        side = 16 if letter.islower() else 0
        slot = next((side + i for i in _SLOTS[letter.upper()] if side + i not in used), None)
        if slot is None:
            raise ValueError(f"XQF has no slot for another {letter!r}")
        used.add(slot)
        values[slot] = (sq % 9) * 10 + sq // 9
    for j, v in enumerate(values):
        if keys is None:
            head[0x10 + j] = v
        elif version >= 12:
            head[0x10 + (j - keys.xy - 1) % 32] = (v + keys.xy) & 0xFF
        else:
            head[0x10 + j] = (v + keys.xy) & 0xFF
    head[0x32] = 1 if game.root_fen.split()[1] == "b" else 0
    head[0x33] = {"1-0": 1, "0-1": 2, "1/2-1/2": 3}.get(game.result, 0)
    for at, size, tag in _TAGS:
        raw = game.headers.get(tag, "").encode("gb18030")[:size]
        head[at] = len(raw)
        head[at + 1:at + 1 + len(raw)] = raw
    body = bytearray()
    body += bytes(8) if keys is None else bytes(4)      # the root record (and, in old files, its comment length)
    for ply, move in enumerate(game.moves, start=1):
        fr, to = move.from_square, move.to_square
        fr, to = (fr % 9) * 10 + fr // 9, (to % 9) * 10 + to // 9
        last = ply == len(game.moves)
        if keys is None:
            body += bytes([fr + 0x18, to + 0x20, 0 if last else 0xF0, 0]) + bytes(4)
        else:
            body += bytes([(fr + 0x18 + keys.xyf) & 0xFF, (to + 0x20 + keys.xyt) & 0xFF, 0 if last else 0x80, 0])
    if keys is not None:
        stream = keys.stream
        body = bytearray((b + stream[i % 32]) & 0xFF for i, b in enumerate(body))
    return bytes(head) + bytes(body)
