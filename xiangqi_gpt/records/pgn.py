"""PGN game records: reading (lazy, any encoding, any move notation) and writing.

Main names: :func:`read_games` (yields :class:`Game` or :class:`~xiangqi_gpt.errors.PgnError`), :func:`write_game`,
:func:`write_games`, :func:`detect_encoding`.
Design notes: docs/design.md#records-pgn
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator

from ..rules.board import STARTING_FEN, Board, Move
from ..errors import (AmbiguousMoveError, FenError, IllegalMoveError, InvalidMoveError, MoveError, PgnError,
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
KIND_MOVETEXT = "bad_movetext"    # comments or variations that do not close, moves after the result
KIND_SIDE_DIGITS = "wrong_side_digits"   # a Chinese move written in the other side's digits (一二三 vs １２３)
KIND_TAG = "bad_tag"              # a tag line that is not [Name "value"] (smart quotes, a missing quote or ']')
KIND_RESULT = "bad_result"        # a result that the final position contradicts (the winner is checkmated)

# Results that end a game when they end a line (more movetext then starts a game without tags). "1/2" and "和"
# also occur inside records (a draw offer, a comment's word), so they end a game only at its true end: a move
# after them rejects the game instead of splitting it.
_AMBIGUOUS_ENDS = frozenset({"1/2", "和"})

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
        board = Board(self.root_fen, strict=False)     # a game read with strict=False may start anywhere
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


def _score_parts(text: str) -> tuple[float, int]:
    """(score, non-ASCII characters) of a reading. Per character: +2 for a xiangqi character, +1 for another common
    one (:data:`_COMMON_CHARS`), +2 for a frequent character of either script (GB2312 level 1 or Big5's frequent
    range), -1 for one that neither GB2312 nor Big5 holds (GBK's rare extensions, where misread Big5 bytes land),
    -4 for a replacement character; and -2 for each simplified-only character that is matched by a
    traditional-only one (Big5 bytes read as GBK give a mixture of both scripts)."""
    frequent, known, simplified, traditional = _charsets()
    total = simple = tradition = 0
    score = 0.0
    for ch in text:
        if ch < "\x80":
            continue
        total += 1
        if ch in _XIANGQI_CHARS:
            score += 2
        elif ch in _COMMON_CHARS:
            score += 1
        if ch in frequent:
            score += 2
        elif ch == "\ufffd":
            score -= 4
        elif ch not in known:
            score -= 1
        if ch in simplified:
            simple += 1
        elif ch in traditional:
            tradition += 1
    return score - 2 * min(simple, tradition), total     # one text rarely mixes the two scripts


def _score(text: str) -> float:
    """Average :func:`_score_parts` per non-ASCII character."""
    score, total = _score_parts(text)
    return score / total if total else 0.0


_CHARSETS: tuple[frozenset, frozenset, frozenset, frozenset] | None = None
_PUNCTUATION = "，。、：；？！（）「」『』《》〈〉“”‘’…—·　"


def _charsets() -> tuple[frozenset, frozenset, frozenset, frozenset]:
    """(frequent, known, simplified, traditional): the frequent characters of both scripts (GB2312's level 1,
    Big5's frequent characters A440-C67E, common full-width punctuation, digits and letters), every character of
    GB2312 and Big5, and the Chinese characters only GB2312 has and only Big5 has. Built once, from the codecs."""
    global _CHARSETS
    if _CHARSETS is None:
        frequent = set(_PUNCTUATION) | {chr(c) for c in range(0xFF01, 0xFF5F)}
        known, gb, big5 = set(), set(), set()
        for lead in range(0x81, 0xFF):
            for trail in range(0x40, 0xFF):
                pair = bytes((lead, trail))
                for codec in ("gb2312", "cp950"):
                    try:
                        ch = pair.decode(codec)
                    except UnicodeDecodeError:
                        continue
                    known.add(ch)
                    if "\u4e00" <= ch <= "\u9fff":
                        (gb if codec == "gb2312" else big5).add(ch)
                    if codec == "gb2312":
                        if 0xB0 <= lead <= 0xD7:
                            frequent.add(ch)
                    elif 0xA4 <= lead <= 0xC5 or (lead == 0xC6 and trail <= 0x7E):
                        frequent.add(ch)
        _CHARSETS = frozenset(frequent), frozenset(known), frozenset(gb - big5), frozenset(big5 - gb)
    return _CHARSETS


# Decoders tried, per family, in order: the first that decodes strictly is used.
_FAMILIES = {"utf-8": ("utf-8",), "gb18030": ("gb18030",), "big5": ("big5", "cp950", "big5hkscs")}


def _strict_decode(data: bytes, family: str) -> str | None:
    for codec in _FAMILIES[family]:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return None


_EVIDENCE = 1 << 21     # bytes of non-ASCII lines scored at most; strictness is checked over the whole file


class _EncodingGuess:
    """Evidence for a file's encoding, fed with blocks of whole non-ASCII lines from anywhere in the file.

    UTF-8 wins if every block decodes as UTF-8. Otherwise the families (GB18030, Big5) that decode every block
    strictly are compared by their readings' scores (:func:`_score_parts`, summed over the blocks); if none does,
    the lenient readings of all three are."""

    def __init__(self):
        self.utf8 = True
        self.strict = {"gb18030": True, "big5": True}
        self.scores = {family: [0.0, 0] for family in _FAMILIES}
        self.budget = _EVIDENCE

    def feed(self, block: bytes) -> None:
        if self.utf8:
            try:
                block.decode("utf-8")
                return                       # scores are needed only once UTF-8 has failed
            except UnicodeDecodeError:
                self.utf8 = False
        score = self.budget > 0
        self.budget -= len(block)
        for family in _FAMILIES:
            text = _strict_decode(block, family) if family != "utf-8" else None
            if text is None and family != "utf-8":
                self.strict[family] = False
            if score:
                if text is None:
                    text = block.decode(_FAMILIES[family][0], errors="replace")
                s, n = _score_parts(text)
                self.scores[family][0] += s
                self.scores[family][1] += n

    def result(self) -> str:
        if self.utf8:
            return "utf-8"
        families = [f for f in ("gb18030", "big5") if self.strict[f]] or list(_FAMILIES)
        share = {f: self.scores[f][0] / self.scores[f][1] if self.scores[f][1] else 0.0 for f in families}
        return max(families, key=lambda f: (share[f], f == "gb18030"))


_LINE_END = re.compile(rb"[\n\r]")


def _non_ascii_lines(data: bytes) -> bytes:
    """The lines of ``data`` that hold a non-ASCII byte, joined by ``\n`` (linear in the length of ``data``)."""
    return b"\n".join(line for line in _LINE_END.split(data) if not line.isascii())


def detect_encoding(data: bytes) -> str:
    """``"utf-8"`` (also for pure ASCII and a UTF-8 BOM), ``"gb18030"`` or ``"big5"`` for these bytes.

    Strict UTF-8 wins. Otherwise every family that decodes strictly is scored by the share of frequent Chinese and
    xiangqi characters in its reading (Big5 text also decodes as GBK, into rare characters); if none decodes
    strictly, the lenient readings are scored with a penalty per replacement character. All the non-ASCII lines
    count, the tags as much as the moves.
    """
    if data.startswith(b"\xef\xbb\xbf") or data.isascii():
        return "utf-8"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as e:
        if e.start >= len(data) - 3 and e.reason == "unexpected end of data":   # a sample cut inside a character
            return "utf-8"
    guess = _EncodingGuess()
    guess.feed(_non_ascii_lines(data))
    return guess.result()


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

_CHUNK = 1 << 18


def read_games(source: str | os.PathLike | bytes | IO[bytes], name: str | None = None,
               notation: str | None = None, strict: bool = True) -> Iterator[Game | PgnError]:
    """Games of a PGN file (a path, its bytes or a binary file object), lazily, one at a time.

    Each item is a :class:`Game` or, for a game that cannot be read, a :class:`PgnError` naming the file, the game
    (1-based) and the ply where known; reading goes on with the next game. ``notation`` forces the move notation
    (default: the ``Format`` tag, else detected per game). ``strict=False`` accepts a ``FEN`` tag with material or
    squares that no game can reach (see :class:`~xiangqi_gpt.rules.board.Board`). A file that cannot be opened raises
    :class:`PgnError`.
    """
    if notation is not None and notation not in NOTATIONS:
        raise XiangqiError(f"unknown notation {notation!r} (choose from {', '.join(NOTATIONS)})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source if type(source) is bytes else bytes(source)     # BytesIO shares a bytes object: no copy
        yield from _read_stream(io.BytesIO(data), name or "<bytes>", notation, strict)
    elif hasattr(source, "read"):
        yield from _read_stream(source, name or getattr(source, "name", "<stream>"), notation, strict)
    else:
        path = os.fspath(source)
        label = name or path
        try:
            f = open(path, "rb")
        except OSError as e:
            raise _error(f"cannot read: {e.strerror or e}", KIND_READ, label) from None
        with f:
            yield from _read_stream(f, label, notation, strict)


def _detect_stream_encoding(stream: IO[bytes]) -> str:
    """The encoding family of a whole seekable stream (or ``"binary"`` if it holds NUL bytes); rewinds it."""
    start = stream.tell()
    guess = _EncodingGuess()
    family = "utf-8"
    carry: list[bytes] = []       # the pieces of an unfinished line (joined once it ends: linear in its length)
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        if b"\x00" in chunk:
            family = "binary"
            break
        if chunk.isascii() and not carry:
            continue
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1    # whole lines only: no character is cut
        if not cut:
            carry.append(chunk)
            continue
        data = b"".join(carry + [chunk[:cut]])
        carry = [chunk[cut:]] if cut < len(chunk) else []
        if not data.isascii():      # (a UTF-8 byte-order mark proves nothing about files concatenated after it)
            guess.feed(_non_ascii_lines(data))
    if family != "binary":
        rest = b"".join(carry)
        if rest and not rest.isascii():
            guess.feed(rest)
        family = guess.result()
    stream.seek(start)
    return family


def _read_stream(stream: IO[bytes], label: str, notation: str | None, strict: bool) -> Iterator[Game | PgnError]:
    try:
        stream = _utf16_as_utf8(stream, label)
        try:
            stream.seek(stream.tell())
        except (OSError, AttributeError, io.UnsupportedOperation):
            stream = io.BytesIO(stream.read())          # unseekable: read it all, the encoding needs two passes
        family = _detect_stream_encoding(stream)
        if family == "binary":
            raise _error("not a PGN text file (it holds NUL bytes: binary, or UTF-16 without a byte-order mark)",
                         KIND_DECODE, label)
        lines = _decoded_lines(_raw_lines(stream), family)
        index = 0
        for raw in _split_games(lines, keep=True):
            for game in _per_game_encoding(raw, family):
                item = _build_game(game, label, index + 1, notation, strict)
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


def _raw_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream's lines without their ends; ``\\n``, ``\\r\\n`` and a lone ``\\r`` (old Mac files) all end one."""
    for raw in stream:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        for line in raw.split(b"\r") if b"\r" in raw else (raw,):
            # a UTF-8 byte-order mark: a file's, or that of a file concatenated after another
            yield line[3:] if line.startswith(b"\xef\xbb\xbf") else line


class _Decoded(str):
    """A non-ASCII line as decoded in the file's encoding, with its bytes (``raw``), for :func:`_per_game_encoding`."""

    raw: bytes = b""


class _Undecodable(_Decoded):
    """A line that could not be decoded (its text is the lenient reading); the game holding it is rejected."""


def _decoded_lines(raw_lines: Iterable[bytes], family: str) -> Iterator[str]:
    codecs = _FAMILIES[family]
    for raw in raw_lines:
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
            else:
                line = _Decoded(line.lstrip("\ufeff"))   # a file's byte-order mark, also one concatenated after another
            line.raw = raw
        yield line


@dataclass
class _RawGame:
    headers: dict[str, str]
    movetext: list[str]
    line: int                      # line number of the game's first line
    undecodable: int | None = None  # first undecodable line number
    lines: list[int] = field(default_factory=list)   # the line number of each movetext line
    unclosed_comment: int | None = None              # line of a '{' that no '}' closes before the next game
    bad_tag: tuple[int, str] | None = None           # (line, text) of the first malformed tag
    all_lines: list[str] | None = None              # every line of the game, when kept (non-UTF-8 files)
    start: int = 1                                  # the number of its first line in all_lines


_TAG_RE = re.compile(r'\[\s*([A-Za-z0-9_]+)\s*"((?:[^"\\]|\\.)*)"\s*\]')


# The last tag of a line whose value holds unescaped quotes ([Event "the "X" cup"]): the value runs to the '"]' that
# ends the line.
_LAST_TAG_RE = re.compile(r'\[\s*([A-Za-z0-9_]+)\s*"(.*)"\s*\]\s*$')


# A line that holds nothing but tags. Inside an open comment it means the comment lost its '}': a new game starts.
_TAG_LINE_RE = re.compile(r'\s*(?:\[\s*[A-Za-z0-9_]+\s*"(?:[^"\\]|\\.)*"\s*\]\s*)+')


def _is_tag_line(stripped: str) -> bool:
    """Does a line (outside a comment) start with a tag? ``[%...]`` is a command comment of the movetext."""
    return stripped.startswith("[") and not stripped.startswith("[%")


def _parse_tags(text: str) -> tuple[list[tuple[str, str]], str, str | None]:
    """(tags, the rest of the line, the malformed tag's text or None) of a line that starts with a tag. The rest,
    after the last tag, is movetext on the same line. The last tag of a line may hold unescaped quotes. A tag that
    is not ``[Name "value"]`` with straight quotes (a smart quote, a missing quote or ``]``) ends the parse as
    malformed."""
    tags: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "[" or text.startswith("[%", i):
            return tags, text[i:], None
        m = _TAG_RE.match(text, i) or _LAST_TAG_RE.match(text, i)
        if m is None:
            return tags, "", text[i:i + 60]
        tags.append((m.group(1), m.group(2).replace('\\"', '"').replace("\\\\", "\\")))
        i = m.end()


def _split_games(lines: Iterable[str], keep: bool = False, first: int = 1) -> Iterator[_RawGame]:
    """Group lines into games: a tag line after movetext starts a new game. A ``{`` comment runs to the first
    ``}``, across lines, so a ``[`` inside one does not split a game. A comment still open at the end of the file,
    or at a line of nothing but tags (the next game's), has lost its ``}``: its game is marked as broken. Movetext
    after the tags on a tag line is read as movetext; a malformed tag marks its game. ``keep``: keep every line of
    a game in ``all_lines``; ``first``: the number of the first line."""
    game = _RawGame({}, [], first, all_lines=[] if keep else None, start=first)
    has_moves = False
    ended = False         # the last movetext line ended with a result: more movetext starts a game without tags
    comment_at = None     # line of the '{' of a comment still open
    for number, line in enumerate(lines, start=first):
        stripped = line.strip()
        undecodable = isinstance(line, _Undecodable)
        original = line
        if comment_at is not None and stripped.startswith("[") and _TAG_LINE_RE.fullmatch(stripped):
            game.unclosed_comment, comment_at = comment_at, None
        if comment_at is None and _is_tag_line(stripped):
            if has_moves or game.unclosed_comment is not None:
                yield game
                game = _RawGame({}, [], number, all_lines=[] if keep else None, start=number)
                has_moves = False
            elif not game.headers and not game.movetext:
                game.line = number
            ended = False
            if undecodable and game.undecodable is None:
                game.undecodable = number
            if keep:
                game.all_lines.append(original)
            tags, rest, bad = _parse_tags(stripped)
            for key, value in tags:
                game.headers[key] = value
            if bad is not None and game.bad_tag is None:
                game.bad_tag = (number, bad)
            if not rest:
                continue
            line = stripped = rest            # movetext on the tag line
        elif comment_at is None and (not stripped or stripped.startswith("%")):
            if undecodable and game.undecodable is None:
                game.undecodable = number
            if keep:
                game.all_lines.append(original)
            continue
        elif ended and comment_at is None:
            yield game
            game = _RawGame({}, [], number, all_lines=[] if keep else None, start=number)
        if undecodable and game.undecodable is None:
            game.undecodable = number
        if keep and line is original:
            game.all_lines.append(original)
        game.movetext.append(line)
        game.lines.append(number)
        if comment_at is not None or "{" in line:
            if _comment_open(line, comment_at is not None):
                if comment_at is None or "}" in line:
                    comment_at = number          # (re)opened on this line
            else:
                comment_at = None
        has_moves = True
        last = stripped.rsplit(None, 1)[-1] if stripped else ""
        ended = comment_at is None and last not in _AMBIGUOUS_ENDS and normalize_result(last) is not None
    if comment_at is not None:
        game.unclosed_comment = comment_at
    if game.headers or has_moves:
        yield game


def _per_game_encoding(game: _RawGame, family: str) -> list[_RawGame]:
    """A file that mixes encodings (one GBK game among Big5 ones, a UTF-8 file appended to a GBK one) is decoded
    game by game: the game's non-ASCII lines decide among the encodings that decode them strictly (UTF-8 first,
    else the better :func:`_score` of GB18030 and Big5; the file's own on a tie). A game that no encoding decodes
    keeps the file's reading and is rejected for its undecodable line. Returns the game, re-read if need be."""
    if game.all_lines is None or (family == "utf-8" and game.undecodable is None):
        return [game]                   # (strict UTF-8 is never a misreading)
    raws = [line.raw for line in game.all_lines if isinstance(line, _Decoded)]
    if not raws:
        return [game]
    block = b"\n".join(raws)
    readings = {f: text for f in ("utf-8", family, *(f for f in ("gb18030", "big5") if f != family))
                if (text := _strict_decode(block, f)) is not None}
    if not readings:
        return [game]
    if "utf-8" in readings:
        best = "utf-8"
    elif len(readings) == 1:
        best = next(iter(readings))
    else:
        scores = {f: _score(text) for f, text in readings.items()}
        best = max(readings, key=lambda f: (scores[f], f == family))
    if best == family:
        return [game]
    lines = []
    for line in game.all_lines:
        if isinstance(line, _Decoded):
            text = _strict_decode(line.raw, best)
            line = _Undecodable(line) if text is None else text.lstrip("\ufeff")
        lines.append(line)
    return list(_split_games(lines, first=game.start))


def _comment_open(line: str, open_: bool) -> bool:
    """Is a ``{`` comment open at the end of ``line``, given whether one was open at its start? Comments do not
    nest: the first ``}`` ends one. A ``;`` outside a comment comments out the rest of the line."""
    for ch in line:
        if open_:
            if ch == "}":
                open_ = False
        elif ch == "{":
            open_ = True
        elif ch == ";":
            break
    return open_


class _Malformed(Exception):
    """Movetext whose comments or variations do not close; the message says where."""


def _strip_comments(text: str, lines: list[int] | None = None) -> str:
    """Remove ``{...}`` (a comment ends at the first ``}``; a ``{`` inside is text), ``;`` to the end of the line
    and ``(...)`` variations (nested). A variation that is never closed, or a ``)`` that closes none, raises
    :class:`_Malformed`: cutting the game there would shorten it silently. ``lines`` maps the movetext's
    lines to file line numbers, for the message."""
    if "{" not in text and ";" not in text and "(" not in text and "（" not in text and ")" not in text \
            and "）" not in text and "[%" not in text:
        return text
    out = []
    brace = False
    opened: list[int] = []      # line index of each open '('
    row = 0
    i, n = 0, len(text)

    def where(k: int) -> str:
        return f"line {lines[k]}" if lines and k < len(lines) else f"movetext line {k + 1}"

    while i < n:
        ch = text[i]
        if ch == "\n":
            row += 1
        if brace:
            if ch == "}":
                brace = False
                if not opened:
                    out.append(" ")           # a comment separates tokens
        elif ch == "{":
            brace = True
        elif ch == "[" and text.startswith("[%", i):      # a command comment such as [%clk 0:10:00]
            j = text.find("]", i)
            if j < 0:
                raise _Malformed(f"the command '[%' on {where(row)} is never closed")
            row += text.count("\n", i, j)
            i = j + 1
            if not opened:
                out.append(" ")
            continue
        elif ch == ";":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "(（":
            opened.append(row)
        elif ch in ")）":
            if not opened:
                raise _Malformed(f"{ch!r} on {where(row)} closes no variation")
            opened.pop()
            if not opened:
                out.append(" ")
        elif not opened:
            out.append(ch)
        i += 1
    if opened:
        raise _Malformed(f"the variation '(' opened on {where(opened[-1])} is never closed")
    return "".join(out)


_MOVE_NUMBER_RE = re.compile(r"^[0-9０-９]+\s*(?:\.|．|。|…|、)+")
_CJK_MOVE_RUN_RE = re.compile(r"^[\u4e00-\u9fff０-９0-9]{8,}$")


def _movetext_tokens(movetext: list[str], lines: list[int] | None = None) -> Iterator[str]:
    """Move and result tokens of a game's movetext (comments, variations, numbers, NAGs removed)."""
    from ..rules.notation import detect_notation

    text = _strip_comments("\n".join(movetext), lines)
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


def clear_caches() -> None:
    """Empty the reader's caches: the move cache (at most 2**20 entries, emptied whenever it is full) and the
    notation caches (:func:`xiangqi_gpt.rules.notation.clear_caches`). Only for measuring the memory or time of one
    read from a known state (a cache that grows during a read counts towards it); reading never needs it."""
    from ..rules.notation import clear_caches as clear_notation_caches

    _MOVE_CACHE.clear()
    clear_notation_caches()


def _parse(board: Board, token: str, notation: str | None, retry: bool) -> Move:
    from ..rules.notation import parse_move

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


_SIDE_NAMES = ("Red", "Black")


def _digit_style_error(styles: list[tuple[frozenset, int, str]]) -> tuple[str, int] | None:
    """(message, ply) for the first Chinese move whose digits name the wrong side, in a game whose moves use both
    styles (一…九 for Red, 1…9 or １…９ for Black, as records do); None if they all agree. A game written in one
    style throughout carries no side information and passes."""
    if not any(sides == {0} for sides, _, _ in styles) or not any(sides == {1} for sides, _, _ in styles):
        return None
    for ply, (sides, mover, token) in enumerate(styles, start=1):
        if sides and sides != {mover}:
            if len(sides) > 1:
                what = "mixes Red's digits (一…九) and Black's (1…9)"
            else:
                what = f"is written in {_SIDE_NAMES[mover ^ 1]}'s digits but it is {_SIDE_NAMES[mover]}'s move"
            return f"move {token!r} {what}: a move is missing or out of order", ply
    return None


def _build_game(raw: _RawGame, label: str, index: int, notation: str | None,
                strict: bool = True) -> Game | PgnError | None:
    from ..rules.notation import chinese_digit_sides, detect_notation

    if raw.undecodable is not None:
        return _error(f"line {raw.undecodable} cannot be decoded in the file's encoding", KIND_DECODE, label, index)
    if raw.unclosed_comment is not None:
        return _error(f"the comment '{{' opened on line {raw.unclosed_comment} is never closed", KIND_MOVETEXT,
                      label, index)
    if raw.bad_tag is not None:
        return _error(f"line {raw.bad_tag[0]}: malformed tag {raw.bad_tag[1]!r} (a tag is [Name \"value\"] with "
                      "straight quotes)", KIND_TAG, label, index)
    headers = raw.headers
    if headers.get("SetUp", "").strip() == "1" and not headers.get("FEN", "").strip():
        return _error('the SetUp tag is "1" but the FEN tag is missing or empty: the start position is unknown',
                      KIND_FEN, label, index)
    fen = headers.get("FEN", "").strip() or STARTING_FEN
    try:
        board = Board(fen, strict=strict)
    except FenError as e:
        return _error(str(e), KIND_FEN, label, index)
    root_fen = board.root_fen()
    declared = notation or _format_notation(headers.get("Format"))
    game_notation = declared
    result = None
    moves: list[Move] = []
    styles: list[tuple[frozenset, int, str]] = []
    try:
        tokens = list(_movetext_tokens(raw.movetext, raw.lines))
    except _Malformed as e:
        return _error(str(e), KIND_MOVETEXT, label, index)
    for at, token in enumerate(tokens):
        r = normalize_result(token)
        if r is not None:
            result = r
            extra = next((t for t in tokens[at + 1:] if normalize_result(t) is None and detect_notation(t)), None)
            if extra is not None:      # moves after the terminator: a lost line end or a spliced record
                return _error(f"move {extra!r} after the result {token!r}", KIND_MOVETEXT, label, index,
                              len(moves) + 1)
            break
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
        styles.append((chinese_digit_sides(token), board.turn, token))
        _push_legal(board, move)
        moves.append(move)
    bad_style = _digit_style_error(styles)
    if bad_style is not None:
        return _error(bad_style[0], KIND_SIDE_DIGITS, label, index, bad_style[1])
    if not headers and not moves and result is None:
        return None            # only a comment after the previous game's result: not a game
    if result is None or result == "*":
        result = normalize_result(headers.get("Result")) or result or "*"
    if result != "*" and not board.legal_moves():
        winner = "0-1" if board.turn == 0 else "1-0"      # no legal move: the side to move has lost
        if result != winner:
            side = "Red" if board.turn == 0 else "Black"
            how = "is checkmated" if board.is_check() else "has no legal move"
            return _error(f"the result {result} contradicts the final position ({side} {how}, so {winner})",
                          KIND_RESULT, label, index, len(moves) or None)
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _escape(value: str) -> str:
    """A tag value as PGN text: backslashes and quotes escaped, control characters (a newline in a file name would
    end the tag line) written as ``\\xNN``."""
    value = value.replace("\\", "\\\\").replace('"', '\\"')
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if m.group() < "\x80" else f"\\u{ord(m.group()):04x}",
                        value)


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
    from ..rules.notation import format_move

    if notation == "chinese" and family == "big5":
        notation = "chinese-traditional"
    board = Board(game.root_fen, strict=False)
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
