"""``python -m xiangqi_gpt prepare [SOURCE...] [--engine SOURCE]... --out DIR``: PGN records -> a training dataset.

Sources: directories of ``*.pgn`` files (walked in sorted order; compressed ``*.pgn.xz``/``.gz``/``.bz2`` files in them
are read too), archives of them (``.tar.xz``, ``.tar.gz``, ``.tar.bz2``, ``.tar``, ``.zip``; read member by member,
never unpacked to disk), single PGN files (any name) and single compressed PGN files (``games.pgn.xz``, ``.pgn.gz``,
``.pgn.bz2``, or any name whose content is a compressed PGN rather than a tar). Only regular files are read: a FIFO
or device in a folder is skipped with a warning, and one given as a source is refused at once.

Positional sources hold human games; ``--engine SOURCE`` (repeatable) marks engine self-play games, which form
their own subset ``DIR/engine/`` (see step 2).

Steps:

1. Every game is read and validated with the rule engine (:func:`xiangqi_gpt.records.pgn.read_games`); a game with an
   illegal or unreadable move is rejected and counted per reason, with the first examples kept in the summary.
2. Empty games (no moves) are dropped. Games under a computer-games folder (CCPD ``電腦對局``) form their own subset,
   written under ``DIR/computer/`` with the same layout and never mixed into the main splits. Engine games
   (``--engine``) form the subset ``DIR/engine/``, again with the same layout; they are deduplicated and split on
   their own (steps 3-4), and recorded in meta.json under ``"engine"`` (split table and counts) as ``"computer"``
   is. :func:`load_meta` with ``subset="engine"`` validates them.
3. Duplicates are removed by (start position, move sequence). A game that is an exact prefix of another from the
   same start (a truncated copy) is a duplicate too and goes with the longer game; of exact copies the first read
   with a known result is kept. The start position compared is the FEN's placement and side to move. Only the
   maximal games remain, so no game or copy of it can sit on two sides of the split.
4. Each remaining game is assigned to train/val/test by a seeded hash of its start position and moves
   (``--val-frac``, ``--test-frac``, ``--seed``): deterministic, and a game keeps its split when other sources are
   added.
5. Token files (nanoGPT style) for both tokenizers: ``DIR/{move,char}/{split}.bin`` (uint16, games back to back, each
   ``<bos> moves... <result>``) and ``DIR/{move,char}/{split}.idx.npy`` (int64 start offset of every game). Only games
   from the standard start position are tokenized (a model plays from the start; a game from a custom FEN cannot be
   conditioned on its position): ``DIR/{split}.pgn`` holds exactly the tokenized games, in the same order, and the
   custom-FEN games are written apart to ``DIR/custom_fen/{split}.pgn`` (same split rule). PGN output is ICCS,
   UTF-8, with the original tags plus ``SourceFile``.
6. ``DIR/summary.json`` (counts, rejection reasons and examples, duplicates, per-split games/plies/tokens; the engine
   subset's under ``"engine"``) and ``DIR/meta.json`` (format version, both vocabularies, counts, source sha256,
   attribution, the arguments).
7. With ``--legal-sets``, ``xiangqi_gpt.data.legal.write_legal_sets`` then stores the legal move sets of ``DIR`` (and of
   ``DIR/engine``) after the dataset is complete.

Options and the output path are checked before anything is read (a bad ``--limit``, an ``--out`` under a file or
in a folder that cannot be written gives one line at once). The dataset is built in ``DIR.tmp-XXXX`` (made at the
start) and renamed to ``DIR`` at the end (meta.json is written last and the rename is the commit point), so an
interrupted run leaves nothing that :func:`load_meta` accepts; Ctrl-C stops the run, worker processes included,
removes the temporary folder and prints one line.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import gzip
import hashlib
import io
import itertools
import json
import lzma
import os
import re
import shutil
import stat
import struct
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..rules.board import STARTING_FEN
from ..console import CtrlCGuard, ProgressBar, ignore_sigint, pool_context, restore_ctrl_c, start_pool
from ..errors import DatasetError, PgnError, XiangqiError
from ..records.archive import is_archive_name, iter_game_file
from ..records.pgn import is_standard_fen, pgn_text
from .tokenizer import BOS, RESULT_TOKENS, TOKENIZER_NAMES, get_tokenizer

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SUBSETS = ("main", "computer")
COMPUTER_FOLDERS = ("電腦對局", "电脑对局")
CCPD_ATTRIBUTION = ("Chinese Chess Practical Dataset (CCPD), Yu-Han Tseng and Bo-Nian Chen, CC BY 4.0, "
                    "https://github.com/Yvonne761/Chinese-Chess-Practical-Dataset")
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
    from ..records.pgn import decode_bytes
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
    from ..records.pgn import decode_bytes
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


def _parsed_files(items: Iterator[tuple[str, bytes]], workers: int, batch_bytes: int = 1 << 20):
    """Parse files in ``workers`` processes (0 or 1: in this process), yielding results in input order."""
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


# --------------------------------------------------------------------------------------------------------------
# Dedup and split
# --------------------------------------------------------------------------------------------------------------

@dataclass
class _Record:
    order: int
    label: str
    index: int
    moves: str          # concatenated 4-char ICCS moves
    root: str           # "" = standard start
    result: str
    headers: dict
    computer: bool

    @property
    def plies(self) -> int:
        return len(self.moves) // 4

    @property
    def start(self) -> str:
        """The start position for deduplication and the split: placement and side to move ("" = standard)."""
        return " ".join(self.root.split()[:2])


def _dedup(records: list[_Record]) -> tuple[list[_Record], int, int]:
    """Keep the maximal games: drop exact copies (first read kept) and games that are a prefix of another game from
    the same start. Returns (kept in reading order, exact duplicates, prefix duplicates)."""
    by_root: dict[str, list[_Record]] = {}
    for r in records:
        by_root.setdefault(r.start, []).append(r)
    kept: list[_Record] = []
    exact = prefix = 0
    for group in by_root.values():
        group.sort(key=lambda r: (r.moves, r.result == "*", r.order))   # of copies, a known result first
        nxt = None      # the next distinct move string in sorted order
        for i in range(len(group) - 1, -1, -1):
            r = group[i]
            if i > 0 and group[i - 1].moves == r.moves:
                exact += 1              # a later copy of the same game (or one with an unknown result)
                continue
            if nxt is not None and nxt.startswith(r.moves):
                prefix += 1             # a truncated copy of the next (longer) game
            else:
                kept.append(r)
            nxt = r.moves
    kept.sort(key=lambda r: r.order)
    return kept, exact, prefix


def split_of(start: str, moves: str, seed: int, val_frac: float, test_frac: float) -> str:
    """The split of a game: a seeded hash of (start position, moves) mapped to [0, 1). ``start`` is "" for the
    standard start, else the FEN's placement and side to move; ``moves`` the concatenated ICCS moves."""
    digest = hashlib.sha256(f"{seed}\0{start}\0{moves}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2 ** 64
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------

def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """Vectorised encoders built from the tokenizers themselves: move id by from*90+to, char id by byte."""
    move_tok, char_tok = get_tokenizer("move"), get_tokenizer("char")
    move_lut = np.full(90 * 90, -1, dtype=np.int32)
    for token, i in move_tok.token_to_id.items():
        if len(token) == 4 and not token.startswith("<"):
            f = (int(token[1]) * 9 + "abcdefghi".index(token[0]))
            t = (int(token[3]) * 9 + "abcdefghi".index(token[2]))
            move_lut[f * 90 + t] = i
    char_lut = np.full(256, -1, dtype=np.int32)
    for ch in "0123456789abcdefghi":
        char_lut[ord(ch)] = char_tok.token_to_id[ch]
    return move_lut, char_lut


def encode_records(records: list[_Record], tokenizer: str, luts=None) -> tuple[np.ndarray, np.ndarray]:
    """(uint16 tokens, int64 game start offsets) for these games: ``<bos> moves... <result>`` each."""
    move_lut, char_lut = luts or _lookup_tables()
    per_move = 1 if tokenizer == "move" else 4
    lengths = np.array([r.plies * per_move + 2 for r in records], dtype=np.int64)
    starts = np.zeros(len(records), dtype=np.int64)
    if len(records):
        starts[1:] = np.cumsum(lengths)[:-1]
    out = np.empty(int(lengths.sum()), dtype=np.int32)
    raw = np.frombuffer("".join(r.moves for r in records).encode("ascii"), dtype=np.uint8)
    if tokenizer == "move":
        m = raw.reshape(-1, 4).astype(np.int32)
        a = "a".encode()[0]
        z = ord("0")
        frm = (m[:, 1] - z) * 9 + (m[:, 0] - a)
        to = (m[:, 3] - z) * 9 + (m[:, 2] - a)
        ids = move_lut[frm * 90 + to]
    else:
        ids = char_lut[raw]
    if len(ids) and ids.min() < 0:
        raise DatasetError(f"internal error: a move has no {tokenizer} token")
    # positions of move tokens: every slot except each game's first and last
    is_move = np.ones(len(out), dtype=bool)
    is_move[starts] = False
    is_move[starts + lengths - 1] = False
    out[is_move] = ids
    out[starts] = BOS
    out[starts + lengths - 1] = [RESULT_TOKENS.get(r.result, RESULT_TOKENS["*"]) for r in records]
    return out.astype(np.uint16), starts


def _write_pgn(path: Path, records: list[_Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            headers = dict(r.headers)
            headers.setdefault("SourceFile", r.label)
            moves = [r.moves[i:i + 4] for i in range(0, len(r.moves), 4)]
            f.write(pgn_text(headers, moves, r.root or STARTING_FEN, r.result, "iccs"))


def _write_subset(base: Path, by_split: dict[str, list[_Record]], luts) -> dict:
    """Write one subset (main or computer): PGNs, token files, offsets. Returns its per-split counts."""
    counts = {}
    for split in SPLITS:
        records = by_split.get(split, [])
        standard = [r for r in records if not r.root]
        custom = [r for r in records if r.root]
        _write_pgn(base / f"{split}.pgn", standard)
        if custom:
            _write_pgn(base / "custom_fen" / f"{split}.pgn", custom)
        entry = {"games": len(standard), "plies": sum(r.plies for r in standard),
                 "custom_fen_games": len(custom), "custom_fen_plies": sum(r.plies for r in custom), "tokens": {}}
        for name in TOKENIZER_NAMES:
            tokens, starts = encode_records(standard, name, luts)
            (base / name).mkdir(parents=True, exist_ok=True)
            tokens.tofile(base / name / f"{split}.bin")
            np.save(base / name / f"{split}.idx.npy", starts)
            entry["tokens"][name] = int(tokens.size)
        counts[split] = entry
    return counts


# --------------------------------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------------------------------

@dataclass
class PrepareResult:
    out: Path
    summary: dict
    meta: dict
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _is_computer(label: str) -> bool:
    return any(marker in label for marker in COMPUTER_FOLDERS)


def prepare(sources: list[str], out: str | os.PathLike, val_frac: float = 0.05, test_frac: float = 0.05,
            seed: int = 0, workers: int = 2, force: bool = False, progress: bool | None = None,
            examples: int = 20, warn: Callable[[str], None] | None = None, limit: int | None = None,
            engine_sources: list[str] = (), legal_sets: bool = False,
            max_member_bytes: int = MAX_MEMBER_BYTES) -> PrepareResult:
    """Build the dataset directory ``out`` from PGN sources. See the module docstring.

    ``sources`` are human games (the main subset, and ``computer/`` for CCPD's computer-games folder);
    ``engine_sources`` are engine self-play games, kept apart in ``out/engine/`` (deduplicated and split on their
    own). ``limit`` reads only the first ``limit`` PGN files of each kind (for quick trials; the source hashes are
    then partial). ``legal_sets`` calls ``xiangqi_gpt.data.legal.write_legal_sets(out)`` after writing.
    ``warn`` receives one-line warnings (default: printed on stderr). ``max_member_bytes``: the most a
    compressed file or archive member may decompress to (:data:`MAX_MEMBER_BYTES`); one past it is skipped.

    Every option and the output path are checked before anything is read."""
    t0 = time.perf_counter()
    sources, engine_sources = [str(s) for s in sources], [str(s) for s in engine_sources or ()]
    if not sources and not engine_sources:
        raise DatasetError("no sources given")
    for name, frac in (("--val-frac", val_frac), ("--test-frac", test_frac)):
        if not 0 <= frac < 1:
            raise DatasetError(f"{name} must be in [0, 1), got {frac}")
    if val_frac + test_frac >= 1:
        raise DatasetError(f"--val-frac + --test-frac must be < 1, got {val_frac + test_frac}")
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be a positive number of files, got {limit}")
    if max_member_bytes < 1:
        raise DatasetError(f"--max-member-mb must be positive, got {max_member_bytes / (1 << 20):g}")
    for source in sources + engine_sources:
        check_source(source)
    out = Path(out)
    warnings: list[str] = []
    bar = ProgressBar(progress, overflow="more warnings are not shown (see summary.json)")

    def _warn(message: str) -> None:
        warnings.append(message)
        (warn or bar.warn)(message)

    guard = CtrlCGuard()        # the temporary folder is made, and the dataset renamed, without a Ctrl-C between
    tmp: Path | None = None
    try:
        with guard:
            tmp = _output_dir(out, force, sources + engine_sources)   # the output is checked (and its temporary folder made) first
        readers = {"human": SourceReader(sources, _warn, bar.advance, max_member_bytes),
                   "engine": SourceReader(engine_sources, _warn, bar.advance, max_member_bytes)}
        bar.start(sum(r.total_bytes() for r in readers.values()))
        read: dict[str, _Collected] = {}
        done = [0, 0]        # games and rejections of the passes before, for the progress bar
        for kind, reader in readers.items():
            items = iter(reader) if limit is None else itertools.islice(reader, limit)
            read[kind] = _collect(_parsed_files(items, workers), examples, _warn,
                                  lambda g, r: bar.update(done[0] + g, done[1] + r), computer=kind == "human")
            done = [done[0] + read[kind].games_read, done[1] + sum(read[kind].reasons.values())]
        if read["human"].files["read"] + read["engine"].files["read"] == 0:
            raise DatasetError(f"nothing to read: {'; '.join(warnings) or 'no PGN files found'}")
        bar.status("deduplicating and writing")
        subsets = SUBSETS + (("engine",) if engine_sources else ())
        by_subset: dict[str, dict[str, list[_Record]]] = {s: {sp: [] for sp in SPLITS} for s in subsets}
        kept, exact, prefix = _dedup(read["human"].records)
        for r in kept:
            split = split_of(r.start, r.moves, seed, val_frac, test_frac)
            by_subset["computer" if r.computer else "main"][split].append(r)
        summary = read["human"].summary(readers["human"], kept, exact, prefix)
        if engine_sources:
            ekept, eexact, eprefix = _dedup(read["engine"].records)
            for r in ekept:
                by_subset["engine"][split_of(r.start, r.moves, seed, val_frac, test_frac)].append(r)
            summary["engine"] = read["engine"].summary(readers["engine"], ekept, eexact, eprefix)
        args = dict(sources=sources, engine_sources=engine_sources, out=str(out), val_frac=val_frac,
                    test_frac=test_frac, seed=seed, limit=limit)
        source_infos = [(info, "human") for info in readers["human"].sources] + \
                       [(info, "engine") for info in readers["engine"].sources]
        meta = _write_dataset(tmp, out, by_subset, summary, source_infos, args, t0, guard)
    except KeyboardInterrupt:
        if tmp is not None and not guard.committed:
            shutil.rmtree(tmp, ignore_errors=True)
        raise PrepareInterrupted(out, committed=guard.committed) from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        guard.close()
        bar.stop()
    if legal_sets:
        _legal_sets([out] + ([out / "engine"] if engine_sources else []))
    return PrepareResult(out, summary, meta, time.perf_counter() - t0, warnings)


#: the top-level entries of a dataset folder that ``prepare`` (and ``legal-sets``) write; --force replaces a folder
#: only if it holds nothing else
DATASET_ENTRIES = frozenset({"meta.json", "summary.json", "train.pgn", "val.pgn", "test.pgn", "move", "char",
                             "computer", "engine", "custom_fen"})


def replaceable_dataset(out: Path) -> str | None:
    """Why ``--force`` may not replace the existing ``out`` (None if it may): only a folder that ``prepare`` wrote,
    with its meta.json (format version, vocabularies, prepare arguments) and nothing but dataset files in it."""
    if out.is_symlink():
        return "is a symbolic link, not a dataset folder written by prepare"
    if not out.is_dir():
        return "is a file, not a dataset folder"
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "is not a dataset written by prepare (no readable meta.json)"
    if not (isinstance(meta, dict) and meta.get("format_version") == FORMAT_VERSION
            and isinstance(meta.get("tokenizers"), dict) and isinstance(meta.get("prepare_args"), dict)):
        return "is not a dataset written by prepare (its meta.json is not one prepare writes)"
    try:
        others = sorted(name for name in os.listdir(out) if name not in DATASET_ENTRIES)
    except OSError as e:
        return f"cannot be listed ({e.strerror or e})"
    if others:
        shown = ", ".join(display_name(name) for name in others[:3]) + (", ..." if len(others) > 3 else "")
        return f"holds files that prepare did not write ({shown})"
    return None


def _check_out_vs_sources(out: Path, sources: list[str]) -> None:
    """Refuse an ``--out`` that is a source or holds one: replacing it would delete what is being read."""
    try:
        target = out.resolve()
    except (OSError, RuntimeError):
        return
    for source in sources:
        try:
            src = Path(source).resolve()
        except (OSError, RuntimeError):
            continue
        if src == target or target in src.parents:
            raise DatasetError(f"--out {out} {'is' if src == target else 'holds'} the source {display_name(source)}; "
                               "choose an output folder apart from the sources")


def _output_dir(out: Path, force: bool, sources: list[str] = ()) -> Path:
    """Check ``--out`` before any work and make the temporary folder beside it that the dataset is built in (its
    parent folders are created). Raises :class:`DatasetError` with one line when the output cannot be written, is
    (or holds) a source, or exists and is not a dataset that --force may replace (:func:`replaceable_dataset`)."""
    _check_out_vs_sources(out, list(sources))
    if not out.name or out.name in (".", ".."):
        raise DatasetError(f"--out {out}: give a folder name (not . or ..)")
    if out.exists() or out.is_symlink():
        if not force:
            raise DatasetError(f"{out} already exists (use --force to replace it)")
        if not out.is_dir():
            raise DatasetError(f"--out {out} is a file, not a dataset folder")
        why = replaceable_dataset(out)
        if why is not None:
            raise DatasetError(f"--out {out} {why}; --force replaces only a dataset folder that prepare wrote")
    for folder in (out.parent, *out.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise DatasetError(f"--out {out}: {folder} is a file, not a folder")
            break
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"--out {out}: cannot create the folder {out.parent} ({e.strerror or e})") from None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise DatasetError(f"--out {out}: cannot write in {out.parent} ({e.strerror or e})") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)           # mkdtemp makes it private; the dataset is an ordinary directory
    return tmp


def _legal_sets(folders: list[Path]) -> None:
    """``--legal-sets``: the legal move sets of the main (and engine) token files, computed by
    :func:`xiangqi_gpt.data.legal.write_legal_sets` (imported here: only this option needs it)."""
    from .legal import write_legal_sets

    for folder in folders:
        write_legal_sets(folder)


@dataclass
class _Collected:
    """What the parsing pass gathered: accepted non-empty games and the counts for the summary."""
    files: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    examples: list[dict] = field(default_factory=list)
    records: list[_Record] = field(default_factory=list)
    rejected_files: set = field(default_factory=set)
    games_read: int = 0
    empty: int = 0

    def summary(self, reader: SourceReader, kept: list[_Record], exact: int, prefix: int) -> dict:
        f, rejected = self.files, sum(self.reasons.values())
        return {
            "files": {"read": f["read"], "with_moves": f["with_moves"], "without_moves": f["without_moves"],
                      "without_games": f["without_games"], "with_rejected_games": len(self.rejected_files),
                      "unreadable": f["unreadable"] + reader.unreadable, "skipped_not_pgn": reader.skipped,
                      "skipped_not_regular": reader.not_regular},
            "games_read": self.games_read,
            "games_accepted": self.games_read - rejected - self.empty,
            "games_rejected": rejected,
            "rejected": {"by_reason": dict(sorted(self.reasons.items())), "examples": self.examples},
            "empty_games": self.empty,
            "duplicates": exact + prefix,
            "duplicates_detail": {"exact": exact, "prefix": prefix},
            "unique_games": len(kept),
            "plies": sum(r.plies for r in kept),
            "custom_fen_games": sum(1 for r in kept if r.root),
            "source_errors": [f"{s.path}: {s.error}" for s in reader.sources if s.error],
        }


COUNT_KEYS = ("games_read", "games_accepted", "games_rejected", "empty_games", "duplicates", "unique_games", "plies",
              "custom_fen_games")


def _collect(parsed, examples: int, warn: Callable[[str], None], progress: Callable[[int, int], None],
             computer: bool = True) -> _Collected:
    """Gather the parsed files. ``computer``: put games under a computer-games folder in the computer subset."""
    c = _Collected()
    for label, games, errors in parsed:
        c.files["read"] += 1
        c.games_read += len(games) + sum(1 for e in errors if e[0] is not None)
        if not games and not errors:
            c.files["without_games"] += 1
        has_moves = bool(errors) or any(g[1] for g in games)
        c.files["with_moves" if has_moves else "without_moves"] += 1
        for gindex, ply, kind, message in errors:
            if gindex is None:          # the whole file could not be read
                c.files["unreadable"] += 1
                warn(message)
                continue
            c.reasons[kind] += 1
            c.rejected_files.add(label)
            if len(c.examples) < examples:
                c.examples.append({"file": label, "game": gindex, "ply": ply, "reason": kind, "message": message})
        is_computer = computer and _is_computer(label)
        for index, moves, root, result, headers in games:
            if not moves:
                c.empty += 1
                continue
            c.records.append(_Record(len(c.records), label, index, moves, root, result, headers, is_computer))
        progress(c.games_read, sum(c.reasons.values()))
    return c


def _subset_summary(counts: dict) -> dict:
    return {"games": sum(c["games"] + c["custom_fen_games"] for c in counts.values()),
            "plies": sum(c["plies"] + c["custom_fen_plies"] for c in counts.values()),
            "splits": counts}


def _write_dataset(tmp: Path, out: Path, by_subset: dict, summary: dict, sources: list[tuple[SourceInfo, str]],
                   args: dict, t0: float, guard: CtrlCGuard | None = None) -> dict:
    """Write everything into ``tmp`` (``out.tmp-XXXX``), meta.json last, then rename it to ``out`` (the commit
    point). Each subset but the main one goes to its own folder, ``computer/`` and ``engine/``, with the same
    layout."""
    luts = _lookup_tables()
    split_counts = {}
    for subset, by_split in by_subset.items():
        base = tmp if subset == "main" else tmp / subset
        split_counts[subset] = _write_subset(base, by_split, luts)
    summary["splits"] = split_counts["main"]
    summary["computer"] = _subset_summary(split_counts["computer"])
    if "engine" in split_counts:
        summary["engine"].update(_subset_summary(split_counts["engine"]))
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    (tmp / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    meta = _meta(sources, split_counts, summary, args)
    _write_json_synced(tmp / "meta.json", meta)     # last file: the dataset is complete
    with guard or contextlib.nullcontext():     # never half renamed; a Ctrl-C meanwhile comes after
        _commit(tmp, out)
        if guard is not None:
            guard.committed = True
    return meta


def _split_table(counts: dict) -> dict:
    return {split: {"games": c["games"], "plies": c["plies"], "tokens": c["tokens"]} for split, c in counts.items()}


def _meta(sources: list[tuple[SourceInfo, str]], split_counts: dict, summary: dict, args: dict) -> dict:
    tokenizers = {}
    for name in TOKENIZER_NAMES:
        tok = get_tokenizer(name)
        tokenizers[name] = {"vocab_size": tok.vocab_size, "tokens_per_move": tok.tokens_per_move,
                            "tokens": list(tok.tokens)}
    ccpd = any(s.ccpd or "ccpd" in Path(s.path).name.lower() for s, _ in sources)
    meta = {
        "format_version": FORMAT_VERSION,
        "dtype": "uint16",
        "layout": "{tokenizer}/{split}.bin: games back to back, each <bos> moves... <result>; "
                  "{tokenizer}/{split}.idx.npy: int64 start offset of each game; {split}.pgn: the same games. "
                  "Subsets (computer, engine) have the same layout in their own folder.",
        "tokenizers": tokenizers,
        "splits": _split_table(split_counts["main"]),
        "computer": {"path": "computer", "splits": _split_table(split_counts["computer"])},
        "counts": {k: summary[k] for k in COUNT_KEYS},
    }
    if "engine" in split_counts:
        meta["engine"] = {"path": "engine", "splits": _split_table(split_counts["engine"]),
                          "counts": {k: summary["engine"][k] for k in COUNT_KEYS}}
    meta.update({
        "attribution": CCPD_ATTRIBUTION if ccpd else "",
        "sources": [{"path": s.path, "subset": kind, "kind": s.kind, "sha256": s.sha256, "bytes": s.bytes,
                     "pgn_files": s.files, **({"error": s.error} if s.error else {})} for s, kind in sources],
        "prepare_args": args,
    })
    return meta


def _write_json_synced(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _commit(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out`` (replacing an old dataset at ``out``, which --force allowed and
    :func:`_output_dir` checked). An OS error is a one-line :class:`DatasetError`; the finished dataset then stays
    in ``tmp`` and an old ``out`` is put back."""
    old = None
    try:
        if out.exists() or out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
            os.rename(out, old / out.name)
        try:
            os.rename(tmp, out)
        except OSError:
            if old is not None:
                os.rename(old / out.name, out)
                old.rmdir()
                old = None
            raise
    except OSError as e:
        if old is not None and not any(old.iterdir()):
            old.rmdir()
        raise DatasetError(f"--out {out}: cannot move the finished dataset into place ({e.strerror or e})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def subset_names(meta: dict) -> list[str]:
    """The subsets of a dataset from its meta.json: ``"main"`` (the human games, in ``DIR/``), then those written in
    their own folder ``DIR/<name>/`` with the same layout (``"computer"``, and ``"engine"`` when prepared with
    ``--engine``). Load one with ``load_meta(DIR, splits, subset=name)``."""
    return ["main"] + [name for name in ("computer", "engine")
                       if isinstance(meta.get(name), dict) and isinstance(meta[name].get("splits"), dict)]


def load_meta(data_dir: str | os.PathLike, splits=SPLITS, subset: str = "main") -> dict:
    """``DIR/meta.json`` of a complete dataset written by ``prepare``; raises :class:`DatasetError` with a clear
    message when the directory is missing or incomplete, the format version or a vocabulary differs from this
    code's, or a token/offset file does not match the counts recorded in meta.json.

    ``subset`` chooses which token files are checked: ``"main"`` (``DIR/<tokenizer>/<split>.bin``), or a subset
    with the same layout in ``DIR/<subset>/`` (``"computer"``, ``"engine"``; see :func:`subset_names`). Its split
    table is ``meta[subset]["splits"]``, and ``meta[subset]["counts"]`` holds its counts (engine)."""
    path = Path(data_dir)
    if not path.is_dir():
        hint = ""
        if list(path.parent.glob(f"{path.name}.tmp-*")) if path.parent.is_dir() else []:
            hint = " (an unfinished prepare left a .tmp- directory beside it; run prepare again)"
        raise DatasetError(f"{path}: no such dataset directory{hint}")
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing; {path} is not a complete dataset written by `prepare`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise DatasetError(f"{meta_path}: format_version {version!r}, expected {FORMAT_VERSION}; "
                           "rebuild the dataset with this version of `prepare`")
    tokenizers = meta.get("tokenizers")
    if not isinstance(tokenizers, dict):
        raise DatasetError(f"{meta_path}: no 'tokenizers' table")
    for name in TOKENIZER_NAMES:
        tok = get_tokenizer(name)
        entry = tokenizers.get(name)
        if not isinstance(entry, dict) or entry.get("tokens") != tok.tokens:
            raise DatasetError(f"{meta_path}: the {name!r} vocabulary differs from this tokenizer's "
                               f"({tok.vocab_size} tokens); rebuild the dataset")
    if subset == "main":
        table, base = meta.get("splits"), path
    else:
        if subset not in subset_names(meta):
            hint = " (`prepare ... --engine SOURCE` writes one)" if subset == "engine" else ""
            raise DatasetError(f"{path}: the dataset has no {subset!r} subset{hint}")
        table, base = meta[subset].get("splits"), path / subset
    if not isinstance(table, dict):
        raise DatasetError(f"{meta_path}: no split table for subset {subset!r}")
    for split in splits:
        entry = table.get(split)
        if not isinstance(entry, dict):
            raise DatasetError(f"{meta_path}: split {split!r} missing")
        for name in TOKENIZER_NAMES:
            bin_path = base / name / f"{split}.bin"
            idx_path = base / name / f"{split}.idx.npy"
            tokens = entry.get("tokens")
            expected = tokens.get(name) if isinstance(tokens, dict) else None
            if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
                raise DatasetError(f"{meta_path}: split {split!r} has no {name!r} token count")
            if not bin_path.is_file():
                raise DatasetError(f"{bin_path}: missing; the dataset is incomplete")
            size = bin_path.stat().st_size
            if size != 2 * expected:
                raise DatasetError(f"{bin_path}: {size} bytes, but meta.json records {expected} uint16 tokens")
            if not idx_path.is_file():
                raise DatasetError(f"{idx_path}: missing; the dataset is incomplete")
            try:
                starts = np.load(idx_path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise DatasetError(f"{idx_path}: unreadable ({e})") from None
            if starts.shape != (entry.get("games"),):
                raise DatasetError(f"{idx_path}: {starts.shape[0] if starts.ndim else 0} offsets, but meta.json "
                                   f"records {entry.get('games')} games")
    return meta


# --------------------------------------------------------------------------------------------------------------
# Progress and CLI
# --------------------------------------------------------------------------------------------------------------

class PrepareInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`prepare`. ``committed``: the dataset had already been written, complete (the Ctrl-C
    came during the final rename); otherwise nothing was written and an old ``out`` is untouched."""

    def __init__(self, out: Path, committed: bool = False):
        super().__init__()
        self.out, self.committed = out, committed


def add_prepare_command(p: argparse.ArgumentParser):
    p.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="human games: PGN files (also .pgn.xz/.pgn.gz/.pgn.bz2), folders of them, or "
                        ".tar.xz/.tar.gz/.zip archives of them")
    p.add_argument("--engine", action="append", default=[], metavar="SOURCE",
                   help="engine self-play games (same kinds of source; repeat for several): kept apart as the "
                        "subset DIR/engine/, deduplicated and split on their own")
    p.add_argument("--out", required=True, help="dataset directory to create (parent folders are created)")
    p.add_argument("--val-frac", type=float, default=0.05, help="fraction of games in val (default 0.05)")
    p.add_argument("--test-frac", type=float, default=0.05, help="fraction of games in test (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split hash (default 0)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parsing processes (default 2; 0 or 1: none)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--examples", type=int, default=20, help="rejected games kept as examples in summary.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--limit", type=int, default=None,
                   help="read only the first N PGN files of each kind, human and engine (quick trials)")
    p.add_argument("--max-member-mb", type=float, default=MAX_MEMBER_BYTES >> 20, metavar="MB",
                   help=f"the most one compressed file or archive member may decompress to; one past it is skipped "
                        f"with a warning (default {MAX_MEMBER_BYTES >> 20})")
    p.add_argument("--legal-sets", action="store_true",
                   help="also store the legal move set of every training position (xiangqi_gpt.data.legal)")

    def run(args):
        if not args.sources and not args.engine:
            raise DatasetError("give at least one SOURCE or --engine SOURCE")
        restore_ctrl_c()
        try:
            result = prepare(args.sources, args.out, val_frac=args.val_frac, test_frac=args.test_frac,
                             seed=args.seed, workers=args.workers, force=args.force,
                             progress=False if args.no_progress else None, examples=args.examples,
                             limit=args.limit, engine_sources=args.engine,
                             max_member_bytes=int(args.max_member_mb * (1 << 20)))
        except PrepareInterrupted as e:
            if e.committed:
                print(f"prepare interrupted after {args.out} was written (complete)", file=sys.stderr)
            else:
                print(f"prepare interrupted: nothing was written ({args.out} is unchanged)", file=sys.stderr)
            sys.exit(130)
        s = result.summary
        print(f"{s['games_read']} games read from {s['files']['read']} files: {s['games_accepted']} accepted, "
              f"{s['games_rejected']} rejected, {s['empty_games']} empty, {s['duplicates']} duplicates; "
              f"{s['unique_games']} unique games, {s['plies']} plies")
        for split in SPLITS:
            c = s["splits"][split]
            print(f"  {split}: {c['games']} games, {c['plies']} plies, {c['tokens']['move']} move tokens"
                  + (f" (+{c['custom_fen_games']} custom-FEN games)" if c["custom_fen_games"] else ""))
        print(f"  computer: {s['computer']['games']} games, {s['computer']['plies']} plies")
        if "engine" in s:
            e = s["engine"]
            print(f"engine: {e['games_read']} games read from {e['files']['read']} files: {e['games_accepted']} "
                  f"accepted, {e['games_rejected']} rejected, {e['empty_games']} empty, {e['duplicates']} "
                  f"duplicates; {e['unique_games']} unique games, {e['plies']} plies")
            print("  " + ", ".join(f"{split}: {c['games']} games, {c['plies']} plies, {c['tokens']['move']} move "
                                   f"tokens" for split, c in e["splits"].items()))
        print(f"wrote {result.out} in {result.seconds:.1f} s")
        if args.legal_sets:
            try:
                _legal_sets([result.out] + ([result.out / "engine"] if args.engine else []))
            except KeyboardInterrupt:
                print(f"legal sets interrupted: the dataset {result.out} is complete, its legal move sets are not "
                      f"(python -m xiangqi_gpt legal-sets {result.out} makes them)", file=sys.stderr)
                sys.exit(130)

    return run
