"""``python -m xiangqi_gpt prepare [SOURCE...] [--engine SOURCE]... --out DIR``: game records -> a training dataset
(dedup, split, token files, meta.json), read through :mod:`xiangqi_gpt.records.sources`. :func:`prepare` lists the
steps; :func:`load_meta` validates a finished dataset. The user guide is docs/data.md."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..console import CtrlCGuard, ProgressBar, restore_ctrl_c
from ..errors import DatasetError
from ..records.pgn import pgn_text
from ..records.sources import MAX_MEMBER_BYTES, SourceInfo, SourceReader, check_source, display_name, parsed_files
from ..rules.board import STARTING_FEN
from .tokenizer import BOS, RESULT_TOKENS, TOKENIZER_NAMES, get_tokenizer

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SUBSETS = ("main", "computer")
COMPUTER_FOLDERS = ("電腦對局", "电脑对局")
CCPD_ATTRIBUTION = ("Chinese Chess Practical Dataset (CCPD), Yu-Han Tseng and Bo-Nian Chen, CC BY 4.0, "
                    "https://github.com/Yvonne761/Chinese-Chess-Practical-Dataset")


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
    """What :func:`prepare` wrote: the dataset folder, its summary.json and meta.json, the seconds taken and the
    warnings given."""
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
    """Build the dataset directory ``out`` from game sources (read by :class:`SourceReader`).

    Steps:

    1. Every game is read and validated with the rule engine (:func:`xiangqi_gpt.records.pgn.read_games`); a game with
       an illegal or unreadable move is rejected and counted per reason, with the first examples kept in the summary.
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
    5. Token files (nanoGPT style) for both tokenizers: ``DIR/{move,char}/{split}.bin`` (uint16, games back to back,
       each ``<bos> moves... <result>``) and ``DIR/{move,char}/{split}.idx.npy`` (int64 start offset of every game).
       Only games from the standard start position are tokenized (a model plays from the start; a game from a custom FEN
       cannot be conditioned on its position): ``DIR/{split}.pgn`` holds exactly the tokenized games, in the same order,
       and the custom-FEN games are written apart to ``DIR/custom_fen/{split}.pgn`` (same split rule). PGN output is
       ICCS, UTF-8, with the original tags plus ``SourceFile``.
    6. ``DIR/summary.json`` (counts, rejection reasons and examples, duplicates, per-split games/plies/tokens; the
       engine subset's under ``"engine"``) and ``DIR/meta.json`` (format version, both vocabularies, counts, source
       sha256, attribution, the arguments).
    7. With ``--legal-sets``, ``xiangqi_gpt.data.legal.write_legal_sets`` then stores the legal move sets of ``DIR``
       (and of ``DIR/engine``) after the dataset is complete.

    Options and the output path are checked before anything is read (a bad ``--limit``, an ``--out`` under a file or in
    a folder that cannot be written gives one line at once). The dataset is built in ``DIR.tmp-XXXX`` (made at the
    start) and renamed to ``DIR`` at the end (meta.json is written last and the rename is the commit point), so an
    interrupted run leaves nothing that :func:`load_meta` accepts; Ctrl-C stops the run, worker processes included,
    removes the temporary folder and prints one line.

    ``sources`` are human games (the main subset, and ``computer/`` for CCPD's computer-games folder);
    ``engine_sources`` are engine self-play games, kept apart in ``out/engine/`` (deduplicated and split on their
    own). ``limit`` reads only the first ``limit`` PGN files of each kind (for quick trials; the source hashes are
    then partial). ``legal_sets`` calls ``xiangqi_gpt.data.legal.write_legal_sets(out)`` after writing.
    ``warn`` receives one-line warnings (default: printed on stderr). ``max_member_bytes``: the most a
    compressed file or archive member may decompress to (:data:`MAX_MEMBER_BYTES`); one past it is skipped."""
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
            read[kind] = _collect(parsed_files(items, workers), examples, _warn,
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
