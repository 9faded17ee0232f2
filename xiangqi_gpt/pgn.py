"""PGN game records: reading (lazy, any encoding, any move notation) and writing.

Reading::

    for item in read_games("games.pgn"):
        if isinstance(item, PgnError):   # an unreadable game: names the file, the game and the ply
            print(item)
            continue
        print(item.headers["Red"], [m.iccs() for m in item.moves], item.result)

* Encodings: UTF-8 (with or without BOM), GB18030 (a superset of GBK and GB2312) and Big5 (with the CP950 and
  HKSCS extensions), detected from the bytes (:func:`detect_encoding`): strict decodes first, then, since Big5 text
  also decodes as GBK, a score by the share of common xiangqi and Chinese characters. UTF-16 with a byte-order
  mark is read too; other files holding NUL bytes are refused as binary.
* Move notation: the ``Format`` tag (``ICCS``, ``WXF``, ``Chinese``) when present, else detected from the moves of
  each game. Moves are resolved and validated with the rule engine (:mod:`xiangqi_gpt.notation`,
  :mod:`xiangqi_gpt.board`).
* Skipped on reading: comments ``{...}`` and ``; ...``, variations ``(...)`` (nested), NAGs ``$n``, ``%`` escape
  lines, move numbers ``1.`` / ``1...``, annotation marks ``!?#`` and a check mark ``+`` after a move.
* Results ``1-0``, ``0-1``, ``1/2-1/2``, ``*`` (and Chinese ones such as 红胜 / 黑勝 / 和棋) end a game; a game's result
  is its movetext terminator, else its ``Result`` tag, else ``*``.
* A ``FEN`` tag sets the start position.
* A file holding many games is read lazily, one game at a time. A game with an illegal or unresolvable move, a bad
  FEN or undecodable bytes is *yielded* as a :class:`~xiangqi_gpt.errors.PgnError` (with ``.path``, ``.game``,
  ``.ply`` and ``.kind``) and reading goes on with the next game.

Writing: :func:`write_game` gives the PGN text of one game in ICCS, WXF or Chinese notation; :func:`write_games`
writes many to a file in UTF-8, GB18030 or Big5 (Chinese moves in traditional characters for Big5).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator

from .board import STARTING_FEN, Board, Move
from .errors import (AmbiguousMoveError, FenError, IllegalMoveError, InvalidMoveError, MoveError, PgnError,
                     XiangqiError)

RESULTS = ("1-0", "0-1", "1/2-1/2", "*")
NOTATIONS = ("iccs", "wxf", "chinese")
ENCODINGS = ("utf-8", "gb18030", "big5")

# Result spellings accepted in movetext and in the Result tag.
_RESULT_ALIASES = {
    "1-0": "1-0", "0-1": "0-1", "1/2-1/2": "1/2-1/2", "*": "*",
    "½-½": "1/2-1/2", "1/2": "1/2-1/2", "0.5-0.5": "1/2-1/2", "=-=": "1/2-1/2", "1:0": "1-0", "0:1": "0-1",
    "红胜": "1-0", "紅勝": "1-0", "红方胜": "1-0", "紅方勝": "1-0", "红先胜": "1-0", "紅先勝": "1-0",
    "黑胜": "0-1", "黑勝": "0-1", "黑方胜": "0-1", "黑方勝": "0-1", "红先负": "0-1", "紅先負": "0-1",
    "和棋": "1/2-1/2", "和局": "1/2-1/2", "红先和": "1/2-1/2", "紅先和": "1/2-1/2", "和": "1/2-1/2",
}

# Error kinds (PgnError.kind), used by the dataset summary to count rejections per reason.
KIND_INVALID, KIND_ILLEGAL, KIND_AMBIGUOUS = "invalid_move", "illegal_move", "ambiguous_move"
KIND_FEN, KIND_DECODE, KIND_READ = "bad_fen", "decode", "read"

_START_KEY = " ".join(STARTING_FEN.split()[:2])


def normalize_result(text: str | None) -> str | None:
    """``"1-0"`` / ``"紅勝"`` / ``"½-½"`` -> a PGN result, ``None`` if ``text`` is not a result."""
    if text is None:
        return None
    return _RESULT_ALIASES.get(text.strip())


# --------------------------------------------------------------------------------------------------------------
# Games
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Game:
    """One game record. ``moves`` are legal from ``root_fen``; ``headers`` keep the file's tags in order."""

    headers: dict[str, str] = field(default_factory=dict)
    moves: list[Move] = field(default_factory=list)
    root_fen: str = STARTING_FEN
    result: str = "*"
    source: str = ""
    index: int = 1

    def iccs(self) -> list[str]:
        return [m.iccs() for m in self.moves]

    @property
    def standard_start(self) -> bool:
        """Does the game start from the standard starting position (Red to move)?"""
        return is_standard_fen(self.root_fen)

    def board(self) -> Board:
        """The final position, with the moves on its move stack."""
        board = Board(self.root_fen)
        for move in self.moves:
            board.push(move)
        return board

    def __repr__(self) -> str:
        return (f"Game({self.source!r} #{self.index}: {len(self.moves)} plies, {self.result}, "
                f"{'start' if self.standard_start else self.root_fen!r})")


def is_standard_fen(fen: str) -> bool:
    return " ".join(fen.split()[:2]).replace(" r", " w") == _START_KEY


# --------------------------------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------------------------------

# Characters of xiangqi records in both scripts, and frequent Chinese characters in both scripts. Big5 bytes also
# decode as GBK (and GBK bytes often as Big5), but into rare characters; these sets tell the right reading.
_XIANGQI_CHARS = set(
    "车車俥伡马馬傌炮砲包相象仕士帅帥将將兵卒进進退平前后後中红紅黑胜勝负負和局先一二三四五六七八九"
    "１２３４５６７８９０")
_COMMON_CHARS = set(
    "的一是不了人我在有他这這中大来來上国國个個到说說们們为為子和你地出道也时時年得就那要下以生会會自着著去之过過"
    "家学學对對可她里裡小么麼心多天而能好都然没沒日于於起还還发發成事只作当當想看文无無开開手十用主行方又如所本"
    "见見经經头頭面公同已老从從动動两兩长長知民样樣现現分外但身些与與高意把法此实實回理美点點月明其种種声聲全工"
    "己话話儿兒者向情部正名定女问問力机機给給等几幾很业業最间間新什打便位因重被走电電第门門次东東政海口使教西再"
    "真听聽世气氣信北少关關并內加化由却卻代军軍产產入山太水万萬市眼体體别別处處总總才场場师師书書比住员員笑性通"
    "目华華报報立命张張活难難神数數件安表原白应應路期叫死常提感金何更反合放做系计計或司利受光王果亲親界及今京务"
    "務制解各任至清物台记記边邊共风風战戰干接它许許特觉覺望直服毛林题題赛賽届屆全运運会會杯冠军軍级級大师師"
    "局对對弈棋谱譜象甲乙丙丁省市队隊广廣东東北京上海天津四川江苏蘇浙河南湖黑龙龍吉辽遼宁寧山西陕陝安徽福建"
    "胡荣榮华華吕呂钦欽许許银銀川赵趙国國荣榮杨楊官璘李来來群柳大华華王嘉良蒋蔣汪洋徐天红紅孙孫勇征陶汉漢明")
_XIANGQI_CHARS -= set("０")


def _score(text: str) -> float:
    """Share of the non-ASCII characters that are common xiangqi / Chinese characters (xiangqi ones count more)."""
    total = score = 0.0
    for ch in text:
        if ch < "\x80":
            continue
        total += 1
        if ch in _XIANGQI_CHARS:
            score += 2
        elif ch in _COMMON_CHARS:
            score += 1
        elif ch == "\ufffd":
            score -= 4
    return score / total if total else 0.0


# Decoders tried, per family, in order: the first that decodes strictly is used.
_FAMILIES = {"utf-8": ("utf-8",), "gb18030": ("gb18030",), "big5": ("big5", "cp950", "big5hkscs")}


def _strict_decode(data: bytes, family: str) -> str | None:
    for codec in _FAMILIES[family]:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return None


def detect_encoding(data: bytes) -> str:
    """``"utf-8"`` (also for pure ASCII and a UTF-8 BOM), ``"gb18030"`` or ``"big5"`` for these bytes.

    Strict UTF-8 wins. Otherwise every family that decodes strictly is scored by the share of common xiangqi and
    Chinese characters in its reading (Big5 text also decodes as GBK, into rare characters); if none decodes
    strictly, the lenient readings are scored with a penalty per replacement character.
    """
    if data.startswith(b"\xef\xbb\xbf") or data.isascii():
        return "utf-8"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as e:
        if e.start >= len(data) - 3 and e.reason == "unexpected end of data":   # a sample cut inside a character
            return "utf-8"
    readings = {}
    for family in ("gb18030", "big5"):
        text = _strict_decode(data, family)
        if text is not None:
            readings[family] = _score(text)
    if not readings:
        readings = {family: _score(data.decode(_FAMILIES[family][0], errors="replace"))
                    for family in ("utf-8", "gb18030", "big5")}
    return max(readings, key=lambda family: (readings[family], family == "gb18030"))


def decode_bytes(data: bytes, name: str | None = None) -> str:
    """Decode a record file's bytes (UTF-8 with or without BOM, GB18030/GBK or Big5), detected.

    Raises :class:`PgnError` (``kind="decode"``) when the detected encoding cannot decode them.
    """
    family = detect_encoding(data)
    text = _strict_decode(data, family)
    if text is None:
        err = None
        try:
            data.decode(_FAMILIES[family][0])
        except UnicodeDecodeError as e:
            err = e
        line = data[:err.start].count(b"\n") + 1 if err else None
        raise _error(f"cannot decode the bytes as UTF-8, GB18030 or Big5 (best guess {family} fails at line {line})",
                     KIND_DECODE, name)
    return text[1:] if text.startswith("\ufeff") else text


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------

_SAMPLE = 1 << 18


def read_games(source: str | os.PathLike | bytes | IO[bytes], name: str | None = None,
               notation: str | None = None) -> Iterator[Game | PgnError]:
    """Games of a PGN file (a path, its bytes or a binary file object), lazily, one at a time.

    Each item is a :class:`Game` or, for a game that cannot be read, a :class:`PgnError` naming the file, the game
    (1-based) and the ply where known; reading goes on with the next game. ``notation`` forces the move notation
    (default: the ``Format`` tag, else detected per game). A file that cannot be opened raises :class:`PgnError`.
    """
    if notation is not None and notation not in NOTATIONS:
        raise XiangqiError(f"unknown notation {notation!r} (choose from {', '.join(NOTATIONS)})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield from _read_stream(io.BytesIO(bytes(source)), name or "<bytes>", notation)
    elif hasattr(source, "read"):
        yield from _read_stream(source, name or getattr(source, "name", "<stream>"), notation)
    else:
        path = os.fspath(source)
        label = name or path
        try:
            f = open(path, "rb")
        except OSError as e:
            raise _error(f"cannot read: {e.strerror or e}", KIND_READ, label) from None
        with f:
            yield from _read_stream(f, label, notation)


def _detect_stream_encoding(stream: IO[bytes]) -> str:
    """Detect from the first stretch holding non-ASCII bytes, then rewind (or, unseekable, read it all)."""
    try:
        start = stream.tell()
        stream.seek(start)
    except (OSError, AttributeError, io.UnsupportedOperation):
        return ""   # caller reads everything
    family = "utf-8"
    while True:
        chunk = stream.read(_SAMPLE)
        if not chunk:
            break
        if b"\x00" in chunk:
            family = "binary"
            break
        if not chunk.isascii():
            chunk += stream.readline()          # end on a line boundary so no character is cut
            family = detect_encoding(chunk)
            break
    stream.seek(start)
    return family


def _read_stream(stream: IO[bytes], label: str, notation: str | None) -> Iterator[Game | PgnError]:
    try:
        stream = _utf16_as_utf8(stream, label)
        family = _detect_stream_encoding(stream)
        if not family:
            data = stream.read()
            family = "binary" if b"\x00" in data else detect_encoding(data)
            stream = io.BytesIO(data)
        if family == "binary":
            raise _error("not a PGN text file (it holds NUL bytes: binary, or UTF-16 without a byte-order mark)",
                         KIND_DECODE, label)
        lines = _decoded_lines(stream, family)
        index = 0
        for raw in _split_games(lines):
            item = _build_game(raw, label, index + 1, notation)
            if item is not None:
                index += 1
                yield item
    except OSError as e:
        raise _error(f"cannot read: {e.strerror or e}", KIND_READ, label) from None


def _utf16_as_utf8(stream: IO[bytes], label: str) -> IO[bytes]:
    """A UTF-16 file with a byte-order mark (some Windows tools write them) is re-encoded as UTF-8 in memory."""
    try:
        start = stream.tell()
        head = stream.read(2)
        stream.seek(start)
    except (OSError, AttributeError, io.UnsupportedOperation):
        data = stream.read()
        stream, head = io.BytesIO(data), data[:2]
    if head not in (b"\xff\xfe", b"\xfe\xff"):
        return stream
    try:
        return io.BytesIO(stream.read().decode("utf-16").encode("utf-8"))
    except UnicodeDecodeError as e:
        raise _error(f"cannot decode as UTF-16 ({e.reason})", KIND_DECODE, label) from None


class _Undecodable(str):
    """A line that could not be decoded (its text is the lenient reading); the game holding it is rejected."""


def _decoded_lines(stream: IO[bytes], family: str) -> Iterator[str]:
    codecs = _FAMILIES[family]
    first = True
    for raw in stream:
        if raw.isascii():
            line = raw.decode("ascii")
        else:
            line = None
            for codec in codecs:
                try:
                    line = raw.decode(codec)
                    break
                except UnicodeDecodeError:
                    continue
            if line is None:
                line = _Undecodable(raw.decode(codecs[0], errors="replace"))
            elif first and line.startswith("\ufeff"):
                line = line[1:]
        first = False
        yield line


@dataclass
class _RawGame:
    headers: dict[str, str]
    movetext: list[str]
    line: int                      # line number of the game's first line
    undecodable: int | None = None  # first undecodable line number


_TAG_RE = re.compile(r'\[\s*([A-Za-z0-9_]+)\s*"((?:[^"\\]|\\.)*)"\s*\]')


def _split_games(lines: Iterable[str]) -> Iterator[_RawGame]:
    """Group lines into games: a tag line after movetext starts a new game. Comments spanning lines are tracked
    so that a ``[`` inside one does not split a game."""
    game = _RawGame({}, [], 1)
    has_moves = False
    ended = False  # the last movetext line ended with a result: more movetext starts a game without tags
    depth = 0    # open { comment
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if isinstance(line, _Undecodable) and game.undecodable is None:
            game.undecodable = number
        if depth == 0 and stripped.startswith("["):
            if has_moves:
                yield game
                game = _RawGame({}, [], number, number if isinstance(line, _Undecodable) else None)
                has_moves = False
            elif not game.headers and not game.movetext:
                game.line = number
            ended = False
            for key, value in _TAG_RE.findall(stripped):
                game.headers[key] = value.replace('\\"', '"').replace("\\\\", "\\")
            continue
        if depth == 0 and (not stripped or stripped.startswith("%")):
            continue
        if ended and depth == 0:
            yield game
            game = _RawGame({}, [], number, number if isinstance(line, _Undecodable) else None)
        game.movetext.append(line)
        if "{" in line or "}" in line or depth:
            depth = _brace_depth(line, depth)
        has_moves = True
        ended = depth == 0 and normalize_result(stripped.rsplit(None, 1)[-1]) is not None
    if game.headers or has_moves:
        yield game


def _brace_depth(line: str, depth: int) -> int:
    for ch in line:
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        elif ch == ";" and not depth:
            break
    return depth


def _strip_comments(text: str) -> str:
    """Remove ``{...}`` (nesting tolerated), ``;`` to end of line and ``(...)`` variations (nested)."""
    if "{" not in text and ";" not in text and "(" not in text and "（" not in text:
        return text
    out = []
    brace = paren = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if brace:
            if ch == "{":
                brace += 1
            elif ch == "}":
                brace -= 1
        elif ch == "{":
            brace = 1
        elif ch == ";":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "(（":
            paren += 1
        elif ch in ")）":
            paren = max(0, paren - 1)
        elif not paren:
            out.append(ch)
        i += 1
    return "".join(out)


_MOVE_NUMBER_RE = re.compile(r"^[0-9０-９]+\s*(?:\.|．|。|…|、)+")
_CJK_MOVE_RUN_RE = re.compile(r"^[\u4e00-\u9fff０-９0-9]{8,}$")


def _movetext_tokens(movetext: list[str]) -> Iterator[str]:
    """Move and result tokens of a game's movetext (comments, variations, numbers, NAGs removed)."""
    from .notation import detect_notation

    text = _strip_comments("\n".join(movetext))
    for token in text.split():
        if token[0] in "0123456789０１２３４５６７８９":
            if normalize_result(token) or detect_notation(token):     # WXF tandem moves start with digits: 33.2
                yield token
                continue
            token = _MOVE_NUMBER_RE.sub("", token)
            if not token:
                continue
            if normalize_result(token):
                yield token
                continue
        if token[0] == "$":
            continue
        token = token.rstrip("!?#")
        if len(token) > 2 and token[-1] == "+" and token[-2] not in "+-.=":
            token = token[:-1]           # a check mark after a move
        if not token:
            continue
        if _CJK_MOVE_RUN_RE.match(token) and len(token) % 4 == 0:
            yield from (token[i:i + 4] for i in range(0, len(token), 4))   # Chinese moves written together
            continue
        yield token


def _format_notation(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip().lower()
    if "iccs" in v:
        return "iccs"
    if "wxf" in v:
        return "wxf"
    if "chin" in v or "中" in v:
        return "chinese"
    return None


def _error(message: str, kind: str, path: str | None, game: int | None = None, ply: int | None = None) -> PgnError:
    err = PgnError(message, path=path, game=game, ply=ply)
    err.kind = kind
    return err


def _move_error_kind(e: MoveError) -> str:
    if isinstance(e, IllegalMoveError):
        return KIND_ILLEGAL
    if isinstance(e, AmbiguousMoveError):
        return KIND_AMBIGUOUS
    return KIND_INVALID


# (Zobrist key of the position, move text, declared notation) -> the legal move it names. The same text in the same
# position (placement and side to move) always names the same move, and openings repeat a lot across a corpus.
_MOVE_CACHE: dict[tuple[int, str, str | None], Move] = {}
_MOVE_CACHE_SIZE = 1 << 20


def _parse(board: Board, token: str, notation: str | None, retry: bool) -> Move:
    from .notation import parse_move

    try:
        return parse_move(board, token, notation)
    except InvalidMoveError:
        if not retry or notation is None:
            raise
        return parse_move(board, token, None)   # a wrong Format tag or a detection miss: try every notation


def _push_legal(board: Board, move: Move) -> None:
    """Play a move that :func:`notation.parse_move` returned, hence legal, without generating the legal moves a
    second time (``Board.push`` re-validates; this halves the cost of reading a corpus)."""
    board.push(move, validate=False)


def _build_game(raw: _RawGame, label: str, index: int, notation: str | None) -> Game | PgnError | None:
    from .notation import detect_notation

    if raw.undecodable is not None:
        return _error(f"line {raw.undecodable} cannot be decoded in the file's encoding", KIND_DECODE, label, index)
    headers = raw.headers
    fen = headers.get("FEN", "").strip() or STARTING_FEN
    try:
        board = Board(fen)
    except FenError as e:
        return _error(str(e), KIND_FEN, label, index)
    root_fen = board.root_fen()
    declared = notation or _format_notation(headers.get("Format"))
    game_notation = declared
    result = None
    moves: list[Move] = []
    for token in _movetext_tokens(raw.movetext):
        r = normalize_result(token)
        if r is not None:
            result = r
            break          # text after the terminator belongs to no game (a new game starts with tags)
        cache_key = (board.key, token, declared)
        move = _MOVE_CACHE.get(cache_key)
        if move is None:
            if game_notation is None:
                game_notation = detect_notation(token)
            try:
                move = _parse(board, token, game_notation, retry=notation is None)
            except MoveError as e:
                return _error(f"move {token!r}: {e}", _move_error_kind(e), label, index, len(moves) + 1)
            if len(_MOVE_CACHE) >= _MOVE_CACHE_SIZE:
                _MOVE_CACHE.clear()
            _MOVE_CACHE[cache_key] = move
        _push_legal(board, move)
        moves.append(move)
    if not headers and not moves and result is None:
        return None            # only a comment after the previous game's result: not a game
    if result is None or result == "*":
        result = normalize_result(headers.get("Result")) or result or "*"
    return Game(headers=headers, moves=moves, root_fen=root_fen, result=result, source=label, index=index)


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------

_FORMAT_TAG = {"iccs": "ICCS", "wxf": "WXF", "chinese": "Chinese", "chinese-traditional": "Chinese"}
_ENCODING_NAMES = {"utf-8": "utf-8", "utf8": "utf-8", "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030",
                   "big5": "big5", "cp950": "big5"}


def _encoding_family(encoding: str) -> str:
    family = _ENCODING_NAMES.get(encoding.lower().replace("_", "-"))
    if family is None:
        raise XiangqiError(f"unknown encoding {encoding!r} (choose from {', '.join(ENCODINGS)})")
    return family


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def write_game(game: Game, notation: str = "iccs", encoding: str = "utf-8", width: int = 80) -> str:
    """The PGN text of one game (tags, numbered moves, result, a blank line after).

    ``notation``: ``iccs`` (``h2e2``), ``wxf`` (``C2.5``) or ``chinese`` (``炮二平五``; traditional characters when
    ``encoding`` is Big5, or with ``chinese-traditional``). The text is meant to be encoded in ``encoding``.
    Adds or updates the ``Result``, ``FEN`` (non-standard start only) and ``Format`` tags.
    """
    if notation not in _FORMAT_TAG:
        raise XiangqiError(f"unknown notation {notation!r} (choose from {', '.join(_FORMAT_TAG)})")
    family = _encoding_family(encoding)
    return pgn_text(game.headers, _move_texts(game, notation, family), game.root_fen, game.result, notation, width)


def pgn_text(headers: dict[str, str], move_texts: list[str], root_fen: str = STARTING_FEN, result: str = "*",
             notation: str = "iccs", width: int = 80) -> str:
    """PGN text from already formatted moves (no validation): the tags, then numbered moves and the result."""
    headers = dict(headers)
    headers["Result"] = result
    if not is_standard_fen(root_fen) or "FEN" in headers:
        headers["FEN"] = root_fen
    headers["Format"] = _FORMAT_TAG[notation]
    lines = [f'[{key} "{_escape(str(value))}"]' for key, value in headers.items()]
    lines.append("")
    lines.extend(_wrap(move_texts, root_fen, result, width))
    lines.append("")
    return "\n".join(lines) + "\n"


def _move_texts(game: Game, notation: str, family: str) -> list[str]:
    if notation == "iccs":
        return [m.iccs() for m in game.moves]
    from .notation import format_move

    if notation == "chinese" and family == "big5":
        notation = "chinese-traditional"
    board = Board(game.root_fen)
    out = []
    for move in game.moves:
        text = format_move(board, move, notation)
        if family == "big5":
            text = text.translate(_BIG5_SUBSTITUTES)
        out.append(text)
        board.push(move)
    return out


# Red's traditional 俥 is not in Big5 (only in HKSCS); Big5 records (CCPD) write 車 for both sides.
_BIG5_SUBSTITUTES = str.maketrans({"俥": "車"})


def _wrap(moves: list[str], root_fen: str, result: str, width: int) -> list[str]:
    parts = root_fen.split()
    black_first = len(parts) > 1 and parts[1].lower() == "b"
    number = int(parts[5]) if len(parts) > 5 and parts[5].isdigit() else 1
    items = []
    for i, text in enumerate(moves):
        red_move = (i % 2 == 0) != black_first
        if red_move:
            items.append(f"{number}. {text}")
        elif i == 0:
            items.append(f"{number}... {text}")
        else:
            items.append(text)
        if not red_move:
            number += 1
    items.append(result)
    lines, current = [], ""
    for item in items:
        if current and len(current) + 1 + len(item) > width:
            lines.append(current)
            current = item
        else:
            current = f"{current} {item}" if current else item
    lines.append(current)
    return lines


def write_games(games: Iterable[Game], dest: str | os.PathLike | IO[bytes], notation: str = "iccs",
                encoding: str = "utf-8") -> int:
    """Write games to a path or binary file in ``encoding``; returns how many. Raises :class:`PgnError` naming the
    game when its text cannot be encoded (e.g. simplified characters in a tag, written as Big5)."""
    family = _encoding_family(encoding)
    codec = {"utf-8": "utf-8", "gb18030": "gb18030", "big5": "cp950"}[family]
    own = not hasattr(dest, "write")
    f = open(dest, "wb") if own else dest
    count = 0
    try:
        for game in games:
            text = write_game(game, notation, family)
            try:
                f.write(text.encode(codec))
            except UnicodeEncodeError as e:
                raise PgnError(f"cannot encode {text[e.start:e.end]!r} in {family}", path=game.source or None,
                               game=game.index) from None
            count += 1
    finally:
        if own:
            f.close()
    return count
