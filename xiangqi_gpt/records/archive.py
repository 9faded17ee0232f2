"""Xiangqi archive files (XQF, CBF, CBR, CBL, DhtmlXQ/UBB and PGN) read into :class:`~xiangqi_gpt.records.pgn.Game` records.

:func:`read_game_file` picks the reader from the bytes (magic) and the file name. Each reader keeps the main line
and the tags; variations are counted, not kept (the PGN writer has no variations), in the ``VariationsDropped``
tag. A file or game that cannot be read gives a :class:`~xiangqi_gpt.errors.PgnError` naming it, never a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

from ..rules.board import Board, Move, square, square_name
from ..errors import FenError, PgnError
from .pgn import KIND_FEN, KIND_ILLEGAL, KIND_READ, Game, read_games

KIND_FORMAT = "bad_archive"        # a file or record whose bytes do not follow its format (PgnError.kind)
VARIATIONS_TAG = "VariationsDropped"
DROPPED_TAG = "DroppedMove"
ARCHIVE_SUFFIXES = (".xqf", ".cbf", ".cbr", ".cbl", ".dhtmlxq", ".ubb")
FORMATS = ("pgn", "xqf", "cbf", "cbr", "cbl", "dhtmlxq")

# Piece letters of the 16 men of a side, in the order XQF and DhtmlXQ list them.
MEN_ORDER = "RNBAKABNRCCPPPPP"


def error(message: str, path: str | None, game: int | None = None, ply: int | None = None,
          kind: str = KIND_FORMAT) -> PgnError:
    """A :class:`PgnError` with its ``kind`` (as the PGN reader gives them, for the dataset summary)."""
    err = PgnError(message, path=path, game=game, ply=ply)
    err.kind = kind
    return err


def placement_fen(pieces: dict[int, str], red_to_move: bool) -> str:
    """A FEN from ``{square: letter}`` (ICCS squares) and the side to move."""
    rows = []
    for rank in range(9, -1, -1):
        row, empty = "", 0
        for f in range(9):
            letter = pieces.get(square(f, rank))
            if letter:
                row += (str(empty) if empty else "") + letter
                empty = 0
            else:
                empty += 1
        rows.append(row + (str(empty) if empty else ""))
    return f"{'/'.join(rows)} {'w' if red_to_move else 'b'} - - 0 1"


def mover_color(pieces: dict[int, str], first: tuple[int, int] | None, default_red: bool = True) -> bool:
    """Red to move? The colour of the piece that the first move moves, else ``default_red``."""
    if first is not None and first[0] in pieces:
        return pieces[first[0]].isupper()
    return default_red


# (position key, from, to) -> Move, for moves already checked legal. Openings repeat across an archive.
_LEGAL: dict[tuple[int, int, int], Move] = {}
_LEGAL_SIZE = 1 << 20


def build_game(label: str, index: int, fen: str, squares: list[tuple[int, int]], headers: dict[str, str],
               result: str, variations: int = 0, strict: bool = True,
               drop_last_illegal: bool = False) -> Game | PgnError:
    """Replay ``squares`` (ICCS ``(from, to)`` pairs) from ``fen`` with the rule engine into a :class:`Game`, or a
    :class:`PgnError` naming the first illegal move (the game is never shortened). With ``drop_last_illegal``, an
    illegal *last* move (a stray end node that XQStudio leaves in some files) is dropped instead and named in the
    ``DroppedMove`` tag."""
    try:
        board = Board(fen, strict=strict)
    except FenError as e:
        return error(f"bad start position: {e}", label, index, kind=KIND_FEN)
    moves: list[Move] = []
    dropped = ""
    for ply, (fr, to) in enumerate(squares, start=1):
        if not (0 <= fr < 90 and 0 <= to < 90):
            return error(f"move {ply} is off the board (squares {fr}, {to})", label, index, ply)
        key = (board.key, fr, to)
        move = _LEGAL.get(key)
        if move is None:
            move = Move(fr, to)
            if not board.is_legal(move):
                text = f"{square_name(fr)}{square_name(to)}"
                if drop_last_illegal and ply == len(squares) and ply > 1:
                    dropped = f"ply {ply}: {text} ({board.why_illegal(move)})"
                    break
                return error(f"illegal move {text}: {board.why_illegal(move)}", label, index, ply, KIND_ILLEGAL)
            if len(_LEGAL) >= _LEGAL_SIZE:
                _LEGAL.clear()
            _LEGAL[key] = move
        board.push(move, validate=False)
        moves.append(move)
    headers = {k: v for k, v in headers.items() if v}
    if variations:
        headers[VARIATIONS_TAG] = str(variations)
    if dropped:
        headers[DROPPED_TAG] = dropped
    return Game(headers=headers, moves=moves, root_fen=board.root_fen(), result=result, source=label, index=index)


def pieces_from_men(positions: list[int | None], label: str, index: int | None = None) -> dict[int, str] | PgnError:
    """``{square: letter}`` from 32 men (Red's 16 then Black's, in :data:`MEN_ORDER`), each an ICCS square or
    ``None`` (captured). Two men on one square is an error (a corrupt file or a wrong key)."""
    pieces: dict[int, str] = {}
    for i, sq in enumerate(positions):
        if sq is None:
            continue
        letter = MEN_ORDER[i % 16]
        if i >= 16:
            letter = letter.lower()
        if sq in pieces:
            return error(f"two pieces on {square_name(sq)} in the start position", label, index, kind=KIND_FEN)
        pieces[sq] = letter
    return pieces


def sniff(data: bytes, name: str = "") -> str:
    """The format of a file from its first bytes and its name: one of :data:`FORMATS`. Anything not recognised
    is ``"pgn"``, so that the PGN reader gives its own reason (binary data, undecodable text, bad moves)."""
    head = data[:64]
    if head.startswith(b"XQ") and b"\x00" in head:
        return "xqf"
    if head.startswith(b"CCBridge Record\x00"):
        return "cbr"
    if head.startswith(b"CCBridgeLibrary\x00"):
        return "cbl"
    lower = name.lower()
    if lower.endswith(".xqf"):
        return "xqf"
    if lower.endswith(".cbr"):
        return "cbr"
    if lower.endswith(".cbl"):
        return "cbl"
    text_head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if lower.endswith(".cbf") or (text_head.startswith(b"<?xml") and b"<ChineseChessRecord" in data[:4096]):
        return "cbf"
    if lower.endswith((".dhtmlxq", ".ubb")):
        return "dhtmlxq"
    if b"\x00" not in data[:4096] and b"[DhtmlXQ" in data:
        if re.search(rb"\[DhtmlXQ_(movelist|binit)\]", data, re.I):
            return "dhtmlxq"
    return "pgn"


def iter_game_file(source: str | os.PathLike | bytes, name: str | None = None,
                   strict: bool = True) -> Iterator[Game | PgnError]:
    """Games of one file of any supported format (a path, or its bytes with ``name``), one at a time: each a
    :class:`Game` or a :class:`PgnError` for a game (or the whole file) that cannot be read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "<bytes>"
    else:
        label = name or os.fspath(source)
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            yield error(f"cannot read: {e.strerror or e}", label, kind=KIND_READ)
            return
    fmt = sniff(data, label)
    if fmt == "pgn":
        try:
            yield from read_games(data, name=label, strict=strict)
        except PgnError as e:
            yield e
    elif fmt == "xqf":
        from .xqf import read_xqf
        yield read_xqf(data, label, strict=strict)
    elif fmt == "cbr":
        from .cbr import read_cbr
        yield read_cbr(data, label, strict=strict)
    elif fmt == "cbl":
        from .cbr import read_cbl
        yield from read_cbl(data, label, strict=strict)
    elif fmt == "cbf":
        from .cbr import read_cbf
        yield read_cbf(data, label, strict=strict)
    else:
        from .dhtmlxq import read_dhtmlxq
        yield from read_dhtmlxq(data, label, strict=strict)


def read_game_file(source: str | os.PathLike | bytes, name: str | None = None,
                   strict: bool = True) -> tuple[list[Game], list[PgnError]]:
    """``(games, problems)`` of one PGN, XQF, CBF, CBR, CBL or DhtmlXQ file (a path, or bytes with ``name``): the
    format is found from the magic bytes and the name. Each problem is a one-line :class:`PgnError` naming the file
    (and the game and ply where it applies); the other games are kept."""
    games, problems = [], []
    for item in iter_game_file(source, name, strict):
        (problems if isinstance(item, PgnError) else games).append(item)
    return games, problems


def is_archive_name(name: str) -> bool:
    """Is ``name`` a file name that :func:`read_game_file` reads besides PGN (``.xqf``, ``.cbf``, ``.cbr``,
    ``.cbl``, ``.dhtmlxq``, ``.ubb``)?"""
    return name.lower().endswith(ARCHIVE_SUFFIXES)

def game_files(paths: list[str]) -> Iterator[str]:
    """The files to read from ``paths``: a file as given; a folder walked in sorted order for ``*.pgn`` files and
    the archive names of :func:`is_archive_name`."""
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(".pgn") or is_archive_name(f):
                        yield os.path.join(root, f)
        else:
            yield p


def convert(sources: list[str], out: str | os.PathLike, notation: str = "iccs", encoding: str = "utf-8",
            warn=None) -> dict:
    """Write every readable game of ``sources`` (files of any supported format, or folders of them) to one PGN
    file. Returns counts: ``games``, ``rejected``, ``variations`` (dropped) and ``files``. Each rejected game or
    file is passed to ``warn`` as one line. Raises :class:`PgnError` if no game at all can be read (no file is
    written then). The output is written to a temporary name and renamed, so a failure leaves no partial file."""
    from .pgn import write_games

    counts = {"files": 0, "games": 0, "rejected": 0, "variations": 0}
    games: list[Game] = []
    out_real = os.path.realpath(out)
    for path in game_files(sources):
        if not os.path.exists(path):
            raise error("no such file or directory", path, kind=KIND_READ)
        if os.path.realpath(path) == out_real:
            raise error("is also the output file", path, kind=KIND_READ)
        counts["files"] += 1
        for item in iter_game_file(path):
            if isinstance(item, PgnError):
                counts["rejected"] += 1
                if warn is not None:
                    warn(str(item))
            else:
                counts["variations"] += int(item.headers.get(VARIATIONS_TAG, 0))
                games.append(item)
    if not games:
        what = f"{counts['rejected']} rejected" if counts["rejected"] else "no games found"
        raise PgnError(f"no game could be read from {', '.join(map(str, sources))} ({what})")
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        write_games(games, tmp, notation, encoding)
        os.replace(tmp, out)
    except OSError as e:
        raise error(f"cannot write: {e.strerror or e}", os.fspath(out), kind=KIND_READ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    counts["games"] = len(games)
    return counts


def add_convert_command(p):
    """``python -m xiangqi_gpt convert IN... --out OUT.pgn --notation iccs|wxf|chinese``."""
    import sys

    from .pgn import ENCODINGS

    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="game files (PGN, XQF, CBF, CBR, CBL, DhtmlXQ/UBB text) or folders of them")
    p.add_argument("--out", required=True, help="the PGN file to write")
    p.add_argument("--notation", choices=("iccs", "wxf", "chinese"), default="iccs", help="move notation")
    p.add_argument("--encoding", choices=ENCODINGS, default="utf-8", help="encoding of the PGN file")

    def run(args):
        counts = convert(args.inputs, args.out, args.notation, args.encoding,
                         warn=lambda line: print(f"rejected: {line}", file=sys.stderr))
        print(f"wrote {counts['games']} games from {counts['files']} files to {args.out}"
              f" ({counts['rejected']} rejected, {counts['variations']} variations dropped)")
        if counts["rejected"]:
            sys.exit(1)

    return run
