"""Legal move sets for every position of a tokenized split: the rule engine as a teacher.

Main names: :func:`write_legal_sets`, :func:`load_legal_sets`, :func:`window_mask`; the
``legal-sets`` command (:func:`add_legal_sets_command`). No torch.
Design notes: docs/design.md#data-legal
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..rules.board import Board, encode_move, parse_square
from ..errors import DatasetError
from .tokenizer import N_SPECIAL, get_tokenizer

TOKENIZER = "move"


def _paths(data_dir, split: str) -> tuple[Path, Path]:
    base = Path(data_dir) / TOKENIZER
    return base / f"{split}.legal_offsets.npy", base / f"{split}.legal_ids.npy"


def _int_to_id() -> np.ndarray:
    """Board int move (:func:`~xiangqi_gpt.rules.board.encode_move`) -> move token id (0 where the pair is not a move)."""
    tok = get_tokenizer(TOKENIZER)
    table = np.zeros(90 << 7, dtype=np.int64)
    for i in range(N_SPECIAL, tok.vocab_size):
        iccs = tok.tokens[i]
        table[encode_move(parse_square(iccs[:2]), parse_square(iccs[2:]))] = i
    return table


def legal_sets(tokens: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, ids)`` for a token array of whole games (see the module docstring)."""
    tok = get_tokenizer(TOKENIZER)
    int_to_id = _int_to_id()
    id_to_int = np.zeros(tok.vocab_size, dtype=np.int64)
    nz = np.flatnonzero(int_to_id)
    id_to_int[int_to_id[nz]] = nz
    tokens = np.asarray(tokens)
    n = len(tokens)
    counts = [0] * n
    out: list[int] = []
    extend = out.extend
    table = int_to_id.tolist()
    to_int = id_to_int.tolist()
    board: Board | None = None
    tick = time.monotonic()
    for t, v in enumerate(tokens.tolist()):
        if v == 0:  # <bos>
            board = Board()
        elif v < N_SPECIAL:  # result token: game over
            board = None
            continue
        else:
            if board is None:
                raise DatasetError(f"token {t}: a move outside a game (no <bos> before it)")
            m = to_int[v]
            if not board.is_legal_int(m):
                raise DatasetError(f"token {t}: move {tok.tokens[v]} is illegal in its game; rebuild the dataset")
            board.make_int(m)
        legal = board.legal_move_ints()
        counts[t] = len(legal)
        extend([table[m] for m in legal])
        if progress is not None and t % 20000 == 0 and time.monotonic() - tick > 2:
            progress(t, n)
            tick = time.monotonic()
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.asarray(counts, dtype=np.int64), out=offsets[1:])
    ids = np.asarray(out, dtype=np.uint16)
    return offsets, ids


def write_legal_sets(data_dir, splits=("train", "val"), quiet: bool = False) -> dict:
    """Compute and write the legal sets of ``splits`` of the ``move`` token files in ``data_dir``. Returns counts."""
    data_dir = Path(data_dir)
    out = {}
    for split in splits:
        bin_path = data_dir / TOKENIZER / f"{split}.bin"
        if not bin_path.is_file():
            raise DatasetError(f"{bin_path}: missing; run `prepare` first")
        tokens = np.fromfile(bin_path, dtype=np.uint16)
        start = time.monotonic()

        def progress(t, n, split=split):
            if not quiet:
                print(f"\r  {split}: {t:,}/{n:,} positions ({t / n:.0%})", end="", file=sys.stderr, flush=True)

        offsets, ids = legal_sets(tokens, progress)
        off_path, ids_path = _paths(data_dir, split)
        for path, arr in ((off_path, offsets), (ids_path, ids)):
            tmp = path.with_name(path.name + ".tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, path)
        out[split] = {"positions": int(len(tokens)), "legal_ids": int(len(ids)),
                      "mean_legal": round(float(len(ids)) / max(1, int((np.diff(offsets) > 0).sum())), 2),
                      "seconds": round(time.monotonic() - start, 1)}
        if not quiet:
            print(f"\r  {split}: {len(tokens):,} positions, {len(ids):,} legal moves stored "
                  f"({out[split]['seconds']} s)", file=sys.stderr, flush=True)
    return out


def load_legal_sets(data_dir, split: str, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The memory-mapped ``(offsets, ids)`` of a split, checked against its token count (DatasetError if not)."""
    off_path, ids_path = _paths(data_dir, split)
    for p in (off_path, ids_path):
        if not p.is_file():
            raise DatasetError(f"{p}: missing; build the legal move sets with `python -m xiangqi_gpt legal-sets "
                               f"{data_dir}`")
    try:
        offsets = np.load(off_path, mmap_mode="r")
        ids = np.load(ids_path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DatasetError(f"{off_path.parent}: unreadable legal move sets ({e})") from None
    if offsets.ndim != 1 or len(offsets) != n_tokens + 1 or ids.ndim != 1 or int(offsets[-1]) != len(ids):
        raise DatasetError(f"{off_path}: legal move sets do not match the {n_tokens}-token {split} split; rebuild "
                           f"them with `python -m xiangqi_gpt legal-sets {data_dir}`")
    return offsets, ids


def window_mask(offsets: np.ndarray, ids: np.ndarray, start: int, length: int, vocab_size: int) -> np.ndarray:
    """Boolean ``(length, vocab_size)``: row ``i`` marks the legal next tokens at position ``start + i``."""
    lo, hi = int(offsets[start]), int(offsets[start + length])
    counts = np.diff(np.asarray(offsets[start:start + length + 1]))
    mask = np.zeros((length, vocab_size), dtype=bool)
    mask[np.repeat(np.arange(length), counts), np.asarray(ids[lo:hi], dtype=np.int64)] = True
    return mask


def add_legal_sets_command(p: argparse.ArgumentParser):
    p.add_argument("data_dir", help="a dataset directory written by `prepare` (or a subset such as DIR/engine)")
    p.add_argument("--splits", default="train,val", help="comma-separated splits (default: train,val)")

    def run(args):
        if not Path(args.data_dir).is_dir():
            raise DatasetError(f"{args.data_dir}: no such dataset directory")
        splits = [s for s in args.splits.split(",") if s]
        bad = [s for s in splits if s not in ("train", "val", "test")]
        if bad or not splits:
            raise DatasetError(f"--splits: expected some of train,val,test, got {args.splits!r}")
        write_legal_sets(args.data_dir, splits)

    return run
