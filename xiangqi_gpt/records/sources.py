"""Reading game sources as bounded streams: PGN files (any name), folders of them (walked in sorted order; compressed
``*.pgn.xz``/``.gz``/``.bz2`` files in them are read too), single compressed PGN files, and tar/zip archives (read
member by member, never unpacked to disk, each member bounded by :data:`MAX_MEMBER_BYTES`). Only regular files are
read. :func:`parsed_files` parses the files into games, in worker processes."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..console import ignore_sigint, pool_context, start_pool
from ..errors import DatasetError, PgnError, XiangqiError
from .archive import is_archive_name, iter_game_file
from .pgn import decode_bytes, is_standard_fen

ARCHIVE_SUFFIXES = (".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar", ".zip")
COMPRESSED_PGN_SUFFIXES = (".pgn.xz", ".pgn.gz", ".pgn.bz2")
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
#: the most bytes one compressed file or archive member may decompress to (``prepare --max-member-mb`` raises it);
#: a member past it is skipped with a warning, never read whole into memory
MAX_MEMBER_BYTES = 256 << 20


# --------------------------------------------------------------------------------------------------------------
# Reading sources
# --------------------------------------------------------------------------------------------------------------

@dataclass
class SourceInfo:
    """What was read of one source: its label, kind (dir, archive, compressed, file, missing, other), sha256 of its
    bytes, decompressed bytes and PGN files read, the error that stopped it (if any), and whether it is CCPD."""
    path: str
    kind: str = ""                # dir | archive | file | missing
    sha256: str = ""
    bytes: int = 0
    files: int = 0
    error: str | None = None
    ccpd: bool = False


class _HashingReader(io.RawIOBase):
    """A read-only file wrapper that hashes and counts the bytes read through it (for archives)."""

    def __init__(self, f, on_read: Callable[[int], None] | None = None):
        self.f, self.sha, self.n, self.on_read = f, hashlib.sha256(), 0, on_read

    def readable(self):
        return True

    def readinto(self, b):
        n = self.f.readinto(b)
        if n:
            self.sha.update(memoryview(b)[:n])
            self.n += n
            if self.on_read:
                self.on_read(n)
        return n

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _is_pgn_name(name: str) -> bool:
    return name.lower().endswith(".pgn") or is_archive_name(name)     # also .xqf/.cbf/.cbr/.cbl/.dhtmlxq/.ubb


def _is_compressed_pgn_name(name: str) -> bool:
    return name.lower().endswith(COMPRESSED_PGN_SUFFIXES)


def _compression(head: bytes) -> str | None:
    """The compression of a file from its first bytes: "xz", "gz", "bz2" or None."""
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"BZh"):
        return "bz2"
    return None


def _decompressor(f, kind: str):
    return {"xz": lzma.open, "gz": gzip.open, "bz2": bz2.open}[kind](f, "rb")


def _stream_decompressor(kind: str):
    """An incremental decompressor of one stream (``decompress``, ``eof``, ``unused_data``)."""
    if kind == "gz":
        return zlib.decompressobj(wbits=31)
    if kind == "xz":
        return lzma.LZMADecompressor()
    return bz2.BZ2Decompressor()


# what a damaged compressed stream raises
_DECOMPRESSION_ERRORS = (lzma.LZMAError, zlib.error, gzip.BadGzipFile, EOFError, OSError, ValueError)


class _Inflater(io.RawIOBase):
    """The decompressed bytes of a compressed stream (gz, xz, bz2; concatenated streams too) as a file, made block
    by block: a read never holds more than it asked for (tarfile's own stream mode inflates a whole input block at
    once, which a bz2 bomb turns into gigabytes). A stream cut short raises EOFError; bytes after the last stream
    that do not start another are ignored."""

    def __init__(self, f, kind: str):
        self.f, self.kind = f, kind
        self.d = _stream_decompressor(kind)
        self.input = b""            # compressed bytes not yet given to the decompressor
        self.finished = False

    def readable(self):
        return True

    def readinto(self, b):
        want = len(b)
        while not self.finished and want:
            d = self.d
            if d.eof:
                rest = d.unused_data + self.input
                if len(rest) < 6:
                    rest += self.f.read(1 << 16)
                if _compression(rest) != self.kind:
                    self.finished = True        # the end, or junk after it
                    break
                self.d, self.input = _stream_decompressor(self.kind), rest
                continue
            if self.kind == "gz" and d.unconsumed_tail:
                data = d.unconsumed_tail
            elif self.kind != "gz" and not d.needs_input:
                data = b""
            else:
                data, self.input = self.input or self.f.read(1 << 16), b""
                if not data:
                    raise EOFError("the compressed data ends before its end (truncated)")
            out = d.decompress(data, want)
            if out:
                b[:len(out)] = out
                return len(out)
        return 0


class _TooLarge(Exception):
    """A compressed file or archive member decompresses to more than the limit."""

    def __init__(self, limit: int):
        size = f"{limit >> 20} MB" if limit >= 1 << 20 else f"{limit} bytes"
        super().__init__(f"decompresses to more than {size} (the limit per file; prepare --max-member-mb raises it)")


def last_game_start(data: bytes) -> int:
    """Where the last game of PGN bytes starts: the offset of the ``[`` of the last tag line that follows a blank
    line (any line ends: ``\n``, ``\r\n``, ``\r``); 0 if there is none. What comes before it is whole games."""
    best = 0
    for sep in (b"\n\n[", b"\r\n\r\n[", b"\r\r["):
        at = data.rfind(sep)
        if at >= 0:
            best = max(best, at + len(sep) - 1)
    return best


def _read_bounded(f, limit: int) -> bytes:
    """All of a member's stream, read in blocks; raises :class:`_TooLarge` past ``limit`` bytes."""
    out = bytearray()
    while True:
        block = f.read(min(1 << 20, limit + 1 - len(out)))
        if not block:
            return bytes(out)
        out += block
        if len(out) > limit:
            raise _TooLarge(limit)


def _archive_kind(path: Path) -> str | None:
    """``"zip"``, ``"tar"`` (also compressed), ``"compressed"`` (one compressed PGN file, e.g. ``games.pgn.xz``) or
    None (a plain file). By the name first, else by the first bytes; a compressed file without a telling name is a
    tar if its first block says so."""
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if any(name.endswith(s) for s in ARCHIVE_SUFFIXES):
        return "tar"
    if _is_compressed_pgn_name(name):
        return "compressed"
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    kind = _compression(head)
    if kind is None:
        return None
    try:
        with open(path, "rb") as f, _decompressor(f, kind) as z:
            block = z.read(512)
    except _DECOMPRESSION_ERRORS:
        return "tar"            # reported as a corrupt archive when read
    return "tar" if block[257:262] == b"ustar" else "compressed"


_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f\x80-\x9f\u2028\u2029]")


def display_name(name: str) -> str:
    """A file name as text that can be printed and written as UTF-8. Python keeps the bytes of a name that is not
    valid UTF-8 (a Big5 or GBK name, say) as lone surrogates, which cannot be encoded; such a name is decoded the way
    record text is (GB18030 or Big5, detected), else its bad bytes are written as ``\\xNN``. Control characters (a
    newline, a terminal escape) are written as ``\\xNN`` too, so a label is always one printable line."""
    if _CONTROL_CHARS.search(name):
        name = _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", name)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    raw = name.encode("utf-8", "surrogateescape") if _only_escapes(name) else name.encode("utf-8", "replace")
    try:
        text = decode_bytes(raw)
        text.encode("utf-8")
        return text
    except (PgnError, UnicodeError):
        return raw.decode("utf-8", "backslashreplace")


def _only_escapes(name: str) -> bool:
    try:
        name.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """Zip names without the UTF-8 flag are cp437 to Python; Chinese tools write them in GBK or Big5."""
    if info.flag_bits & 0x800:
        return display_name(info.filename)
    try:
        return display_name(decode_bytes(info.filename.encode("cp437")))
    except (UnicodeEncodeError, PgnError):
        return display_name(info.filename)


def check_source(path: str | os.PathLike) -> None:
    """Raise :class:`DatasetError` for a source that exists but is neither a regular file nor a folder (a FIFO
    would block reading forever, a device might never end). A missing source is only warned about later."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise DatasetError(f"{display_name(os.fspath(path))}: not a regular file or folder ({_file_type(st.st_mode)}); "
                           "give PGN files, folders or archives")


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


class SourceReader:
    """Yields ``(label, bytes)`` for every PGN file of the sources; problems are warned about, never fatal.

    Labels are :func:`display_name` text (``path`` or ``archive:member``). In folders, ``*.pgn`` files and
    compressed ``*.pgn.xz`` / ``.pgn.gz`` / ``.pgn.bz2`` files are read, and only regular files (a FIFO or device is
    skipped with a warning)."""

    def __init__(self, sources: list[str], warn: Callable[[str], None], advance: Callable[[int], None],
                 max_member_bytes: int = MAX_MEMBER_BYTES):
        self.max_member_bytes = max_member_bytes
        self.paths = [Path(s) for s in sources]
        self.sources = [SourceInfo(display_name(str(s))) for s in sources]
        self.warn, self.advance = warn, advance
        self.unreadable = 0
        self.skipped = 0
        self.not_regular = 0

    def total_bytes(self) -> int:
        total = 0
        for p in self.paths:
            try:
                if p.is_dir():
                    for root, _, files in os.walk(p):
                        for f in files:
                            if _is_pgn_name(f) or _is_compressed_pgn_name(f):
                                try:
                                    total += os.path.getsize(os.path.join(root, f))
                                except OSError:
                                    pass
                elif p.is_file():
                    total += p.stat().st_size
            except OSError:
                pass
        return total

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for p, info in zip(self.paths, self.sources):
            try:
                st = os.stat(p)
            except FileNotFoundError:
                info.kind, info.error = "missing", "no such file or directory"
                self.warn(f"{info.path}: no such file or directory")
                continue
            except OSError as e:
                info.kind, info.error = "missing", f"cannot read ({e.strerror or e})"
                self.unreadable += 1
                self.warn(f"{info.path}: {info.error}")
                continue
            if stat.S_ISDIR(st.st_mode):
                info.kind = "dir"
                yield from self._directory(p, info)
            elif not stat.S_ISREG(st.st_mode):
                info.kind, info.error = "other", f"not a regular file ({_file_type(st.st_mode)})"
                self.not_regular += 1
                self.warn(f"{info.path}: {info.error}; skipped")
            elif (kind := _archive_kind(p)) == "compressed":
                info.kind = "compressed"
                data = self._read_compressed(p, info.path, info)
                if data is not None:
                    info.files = 1
                    yield info.path, data
            elif kind:
                info.kind = "archive"
                yield from self._archive(p, info, kind)
            else:
                info.kind = "file"
                data = self._read_file(p, info.path)
                if data is not None:
                    info.sha256, info.bytes, info.files = hashlib.sha256(data).hexdigest(), len(data), 1
                    self.advance(len(data))
                    yield info.path, data

    def _read_file(self, p: Path, label: str) -> bytes | None:
        try:
            return p.read_bytes()
        except OSError as e:
            self.unreadable += 1
            self.warn(f"{label}: cannot read ({e.strerror or e})")
            return None

    def _read_compressed(self, p: Path, label: str, info: SourceInfo | None = None) -> bytes | None:
        """The decompressed bytes of one compressed PGN file (concatenated streams too). On a damaged or truncated
        stream, the games before the last one that started are kept (the unfinished last one is dropped, never
        shortened) and a warning says so."""
        try:
            f = open(p, "rb")
        except OSError as e:
            self.unreadable += 1
            self.warn(f"{label}: cannot read ({e.strerror or e})")
            return None
        sha, chunks, error = hashlib.sha256(), io.BytesIO(), None    # (getvalue() hands its buffer over: no copy)
        limit = self.max_member_bytes
        with f:
            kind = _compression(f.read(6))
            f.seek(0)
            d = _stream_decompressor(kind) if kind else None
            pending, trailing = b"", False
            try:
                while True:
                    block = pending or f.read(1 << 16)
                    if not pending:
                        sha.update(block)
                        self.advance(len(block))
                    pending = b""
                    if not block:
                        break
                    if d is None:               # named like a compressed file, but plain text
                        chunks.write(block)
                        continue
                    if d.eof:                   # something follows the stream that ended
                        if len(block) < 6:
                            more = f.read(6)
                            sha.update(more)
                            self.advance(len(more))
                            block += more
                        if _compression(block) != kind:
                            trailing = True     # not another stream: padding or junk after the end, ignored
                            rest = f.read()
                            sha.update(rest)
                            self.advance(len(rest))
                            if (block + rest).strip(b"\0"):        # (zeros are xz's stream padding)
                                self.warn(f"{label}: {len(block) + len(rest)} bytes after the end of the "
                                          "compressed data are ignored")
                            break
                        d = _stream_decompressor(kind)
                    chunks.write(d.decompress(block, limit + 1 - chunks.tell()))   # never more than limit + 1
                    if chunks.tell() > limit:
                        raise _TooLarge(limit)
                    if d.eof:
                        pending = d.unused_data
                if d is not None and not d.eof and not trailing:
                    error = "it ends before the end of the compressed data (truncated)"
            except _TooLarge as e:
                self.unreadable += 1
                if info is not None:
                    info.error = str(e)
                self.warn(f"{label}: {e}; skipped")
                return None
            except _DECOMPRESSION_ERRORS as e:
                error = f"{type(e).__name__}: {e}"
        data = chunks.getvalue()
        del chunks
        if info is not None:
            info.sha256, info.bytes = sha.hexdigest(), len(data)
        if error is not None:
            cut = last_game_start(data)
            data = data[:cut] if cut > 0 else b""
            message = (f"corrupt compressed file ({error}); the "
                       f"{'games before the unfinished last one are kept' if data else 'file is skipped'}")
            if info is not None:
                info.error = message
            self.warn(f"{label}: {message}")
            if not data:
                self.unreadable += 1
                return None
        return data

    def _directory(self, root: Path, info: SourceInfo) -> Iterator[tuple[str, bytes]]:
        sha = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                compressed = _is_compressed_pgn_name(name)
                if not (_is_pgn_name(name) or compressed):
                    self.skipped += 1
                    continue
                label = display_name(str(path))
                try:
                    st = os.stat(path)
                except OSError as e:
                    self.unreadable += 1
                    self.warn(f"{label}: cannot read ({e.strerror or e})")
                    continue
                if not stat.S_ISREG(st.st_mode):
                    self.not_regular += 1
                    self.warn(f"{label}: not a regular file ({_file_type(st.st_mode)}); skipped")
                    continue
                data = self._read_compressed(path, label) if compressed else self._read_file(path, label)
                if data is None:
                    continue
                rel = path.relative_to(root).as_posix()
                sha.update(rel.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(data).digest())
                info.bytes += len(data)
                info.files += 1
                info.ccpd = info.ccpd or display_name(rel).startswith(("對局/", "Dataset/對局/"))
                if not compressed:
                    self.advance(len(data))
                yield label, data
        info.sha256 = sha.hexdigest()

    def _archive(self, path: Path, info: SourceInfo, kind: str) -> Iterator[tuple[str, bytes]]:
        try:
            f = open(path, "rb")
        except OSError as e:
            self.unreadable += 1
            info.error = f"cannot read ({e.strerror or e})"
            self.warn(f"{info.path}: {info.error}")
            return
        with f:
            reader = _HashingReader(f, self.advance)
            buffered = io.BufferedReader(reader, 1 << 20)
            try:
                if kind != "zip" and (compression := _compression(buffered.peek(6)[:6])) is not None:
                    buffered = io.BufferedReader(_Inflater(buffered, compression), 1 << 16)
                members = self._zip_members(f, info.path) if kind == "zip" else \
                    self._tar_members(buffered, info.path)
                for name, data in members:
                    info.files += 1
                    info.bytes += len(data)
                    info.ccpd = info.ccpd or "對局/" in name
                    yield f"{info.path}:{name}", data
            except (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error, EOFError, OSError,
                    ValueError, NotImplementedError, IndexError, TypeError, KeyError, struct.error) as e:
                info.error = f"corrupt archive ({type(e).__name__}: {e}) after {info.files} PGN files"
                self.warn(f"{info.path}: {info.error}; the files read before the error are kept")
            if kind == "zip":
                f.seek(0)
                info.sha256 = hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") \
                    else hashlib.sha256(f.read()).hexdigest()
            else:
                try:
                    reader.drain()
                except OSError:
                    pass
                info.sha256 = reader.sha.hexdigest()

    def _tar_members(self, stream, label: str = "") -> Iterator[tuple[str, bytes]]:
        with tarfile.open(fileobj=stream, mode="r|") as tar:         # decompressed by _Inflater, bounded
            for member in tar:
                if not member.isfile():
                    continue
                if not _is_pgn_name(member.name):
                    self.skipped += 1
                    continue
                name = display_name(member.name)
                if member.size > self.max_member_bytes:
                    self.unreadable += 1
                    self.warn(f"{label}:{name}: {_TooLarge(self.max_member_bytes)}; skipped")
                    continue
                fobj = tar.extractfile(member)
                yield name, _read_bounded(fobj, self.max_member_bytes) if fobj else b""

    def _zip_members(self, f, label: str) -> Iterator[tuple[str, bytes]]:
        with zipfile.ZipFile(f) as z:
            overlapping = _overlapping_zip_entries(z.infolist())
            for zinfo in sorted(z.infolist(), key=lambda i: i.filename):
                if not zinfo.filename or zinfo.is_dir():
                    continue
                name = _zip_member_name(zinfo)
                if not _is_pgn_name(name):
                    self.skipped += 1
                    continue
                problem = None
                if id(zinfo) in overlapping:
                    problem = overlapping[id(zinfo)]
                elif zinfo.file_size > self.max_member_bytes:
                    problem = str(_TooLarge(self.max_member_bytes))
                elif zinfo.flag_bits & 0x1:
                    problem = "encrypted"
                elif zinfo.compress_type not in ZIP_METHODS:
                    problem = f"unsupported compression method {zinfo.compress_type}"
                else:
                    try:
                        with z.open(zinfo) as member:
                            data = _read_bounded(member, self.max_member_bytes)
                    except _TooLarge as e:
                        problem = str(e)
                    except (NotImplementedError, RuntimeError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
                            EOFError, OSError, ValueError, struct.error) as e:
                        problem = f"cannot unpack ({type(e).__name__}: {e})"
                if problem is not None:
                    self.unreadable += 1
                    self.warn(f"{label}:{name}: {problem}; skipped")
                    continue
                self.advance(zinfo.compress_size)
                yield name, data


def _overlapping_zip_entries(infos: list[zipfile.ZipInfo]) -> dict[int, str]:
    """Entries (by ``id``) whose data is that of an earlier entry or overlaps it, with the reason: a zip whose
    central directory points many names at one member would otherwise be unpacked once per name."""
    problems: dict[int, str] = {}
    end, owner = -1, None
    for info in sorted(infos, key=lambda i: (i.header_offset, i.filename)):
        if owner is not None and info.header_offset < end:
            what = "is the same member as" if info.header_offset == owner.header_offset else "overlaps"
            problems[id(info)] = f"{what} {display_name(owner.filename)!r} in the archive; read once only"
            continue
        end, owner = info.header_offset + 30 + info.compress_size, info     # (a lower bound of its end)
    return problems


# --------------------------------------------------------------------------------------------------------------
# Parsing (in worker processes)
# --------------------------------------------------------------------------------------------------------------

# A parsed game travelling from a worker: (index, moves as concatenated 4-char ICCS, root FEN or "" for the
# standard start, result, headers). A rejection: (index, ply, kind, message).
GameTuple = tuple[int, str, str, str, dict]
ErrorTuple = tuple[int | None, int | None, str, str]


def _parse_file(label: str, data: bytes) -> tuple[str, list[GameTuple], list[ErrorTuple]]:
    games: list[GameTuple] = []
    errors: list[ErrorTuple] = []
    try:
        for item in iter_game_file(data, name=label):      # PGN, or an archive format (xiangqi_gpt.records.archive)
            if isinstance(item, PgnError):
                errors.append((item.game, item.ply, getattr(item, "kind", "other"), str(item)))
            else:
                root = "" if is_standard_fen(item.root_fen) else item.root_fen
                games.append((item.index, "".join(m.iccs() for m in item.moves), root, item.result, item.headers))
    except XiangqiError as e:          # the whole file (e.g. unreadable)
        errors.append((None, None, getattr(e, "kind", "read"), str(e)))
    return label, games, errors


def _parse_batch(batch: list[tuple[str, bytes]]):
    return [_parse_file(label, data) for label, data in batch]


def parsed_files(items: Iterator[tuple[str, bytes]], workers: int, batch_bytes: int = 1 << 20):
    """Parse ``(label, bytes)`` files (as :class:`SourceReader` yields them) into games, in ``workers`` processes
    (0 or 1: in this process), batched by about ``batch_bytes``. Yields ``(label, games, errors)`` per file, in input
    order: games as :data:`GameTuple`, rejections as :data:`ErrorTuple` (index None: the whole file failed).
    Worker processes ignore Ctrl-C; the calling process stops the pool."""
    def batches():
        batch, size = [], 0
        for label, data in items:
            batch.append((label, data))
            size += len(data) + 256
            if size >= batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    if workers <= 1:
        for batch in batches():
            yield from _parse_batch(batch)
        return
    with start_pool(pool_context(), workers, ignore_sigint) as pool:     # Ctrl-C: the main process stops the pool
        pending: deque = deque()
        for batch in batches():
            pending.append(pool.apply_async(_parse_batch, (batch,)))
            while len(pending) > 2 * workers + 1:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()
