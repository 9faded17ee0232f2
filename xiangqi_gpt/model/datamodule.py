"""Training data: a LightningDataModule over the memory-mapped uint16 token files written by ``prepare``.

Main names: :class:`XiangqiDataModule`, :class:`TrainWindows`, :class:`ValWindows`, :func:`check_dataset`.
Design notes: docs/design.md#model-datamodule
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from ..errors import ConfigError, DatasetError
from ..data.tokenizer import BOS, N_SPECIAL, SOURCES, Tokenizer, get_tokenizer

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------------------------------
# Reading and checking a dataset directory


def read_meta(data_dir: str | os.PathLike, splits=("train", "val")) -> dict:
    """``DIR/meta.json``, validated by :func:`xiangqi_gpt.data.prepare.load_meta` (format version, both vocabularies, token
    and offset files of ``splits`` against the recorded counts). DatasetError when anything is off."""
    from ..data.prepare import load_meta

    return load_meta(Path(data_dir), splits=tuple(splits))


def _meta_vocab_size(entry) -> int | None:
    """The vocabulary size a meta.json tokenizer entry records, if any."""
    if isinstance(entry, dict):
        for key in ("vocab_size", "vocab"):
            value = entry.get(key)
            if isinstance(value, int):
                return value
            if isinstance(value, list):
                return len(value)
    return None


def check_dataset(data_dir: str | os.PathLike, tokenizer: str | Tokenizer, splits=("train", "val")) -> dict:
    """Check that ``DIR/<tokenizer>/<split>.bin`` exist and match the tokenizer; returns meta.json.

    Raises DatasetError (one line, naming the file) when the directory is missing or incomplete, the tokenizer is not
    in it, its vocabulary in meta.json differs from ours, or a token file is empty, odd-sized or holds an id outside
    the vocabulary.
    """
    tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    path = Path(data_dir)
    meta = read_meta(path, splits)
    tokenizers = meta.get("tokenizers", {})
    meta_path = path / "meta.json"
    if tok.name not in tokenizers:
        have = ", ".join(sorted(tokenizers)) or "none"
        raise DatasetError(f"{meta_path}: the {tok.name!r} tokenizer is not in this dataset (it has: {have})")
    entry = tokenizers[tok.name]
    vocab = _meta_vocab_size(entry)
    if vocab is not None and vocab != tok.vocab_size:
        raise DatasetError(f"{meta_path}: {tok.name!r} vocabulary has {vocab} tokens but this tokenizer has "
                           f"{tok.vocab_size}; rebuild the dataset with this version of `prepare`")
    if isinstance(entry, dict) and isinstance(entry.get("tokens"), list) and entry["tokens"] != tok.tokens:
        raise DatasetError(f"{meta_path}: {tok.name!r} token list differs from this tokenizer's; rebuild the dataset")
    for split in splits:
        bin_path = path / tok.name / f"{split}.bin"
        if not bin_path.is_file():
            raise DatasetError(f"{bin_path}: missing; the dataset is incomplete")
        size = bin_path.stat().st_size
        if size == 0 or size % 2:
            raise DatasetError(f"{bin_path}: {size} bytes is not a non-empty uint16 token file")
        top = int(np.memmap(bin_path, dtype=np.uint16, mode="r").max())
        if top >= tok.vocab_size:
            raise DatasetError(f"{bin_path}: token id {top} is outside the {tok.name!r} vocabulary "
                               f"(0..{tok.vocab_size - 1}); the file does not belong to this tokenizer")
    return meta


def load_tokens(data_dir, tokenizer: str, split: str) -> np.memmap:
    return np.memmap(Path(data_dir) / tokenizer / f"{split}.bin", dtype=np.uint16, mode="r")


def load_game_offsets(data_dir, tokenizer: str, split: str, n_tokens: int) -> np.ndarray | None:
    """Start offsets (the ``<bos>`` positions) of the split's games from ``<split>.idx.npy``, or None if absent.

    The file may hold the starts only or the starts plus the final end offset; both are accepted."""
    path = Path(data_dir) / tokenizer / f"{split}.idx.npy"
    if not path.is_file():
        return None
    try:
        offsets = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable game offsets ({e})") from None
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
    if offsets.size and offsets[-1] == n_tokens:
        offsets = offsets[:-1]
    if offsets.size == 0 or offsets[0] != 0 or np.any(np.diff(offsets) <= 0) or offsets[-1] >= n_tokens:
        raise DatasetError(f"{path}: game offsets are not increasing starts inside the {n_tokens}-token split")
    return offsets


def move_phase(tokens: np.ndarray, tokens_per_move: int) -> np.ndarray:
    """Per token: -1 for a special token, else its index inside its move (0..tokens_per_move-1), counted from the
    last special token (a game is ``<bos>`` followed by whole moves)."""
    tokens = np.asarray(tokens)
    special = tokens < N_SPECIAL
    index = np.arange(len(tokens), dtype=np.int64)
    last_special = np.maximum.accumulate(np.where(special, index, -1))
    phase = ((index - last_special - 1) % tokens_per_move).astype(np.int8)
    phase[special] = -1
    return phase


# --------------------------------------------------------------------------------------------------------------------
# Datasets


class _Source:
    """One memory-mapped training split: tokens, optional game starts and optional legal move sets."""

    def __init__(self, data_dir, tokenizer: Tokenizer, split: str, block_size: int, game_start_p: float,
                 legal_sets: bool, board_targets: bool = False):
        self.data_dir = str(data_dir)
        self.n_tokens = len(load_tokens(self.data_dir, tokenizer.name, split))
        self.max_start = self.n_tokens - (block_size + 1)
        if self.max_start < 0:
            raise DatasetError(f"{Path(data_dir) / tokenizer.name / (split + '.bin')}: {self.n_tokens} tokens, "
                               f"fewer than one window of block_size + 1 = {block_size + 1}")
        self.game_starts = self.offsets = None
        if game_start_p > 0 or board_targets:
            offsets = load_game_offsets(self.data_dir, tokenizer.name, split, self.n_tokens)
            if offsets is None:
                need = "game_start_p > 0" if game_start_p > 0 else "board_targets"
                raise DatasetError(f"{Path(data_dir) / tokenizer.name / (split + '.idx.npy')}: missing; "
                                   f"{need} needs the game offsets")
            self.offsets = offsets
            if game_start_p > 0:
                self.game_starts = offsets[offsets <= self.max_start]
        self.legal = None
        if legal_sets:
            from ..data.legal import load_legal_sets

            self.legal = load_legal_sets(self.data_dir, split, self.n_tokens)


class TrainWindows(IterableDataset):
    """Endless (but sized, for epochs and progress bars) stream of batches ``(batch_size, block_size + 1)`` int64.

    Batch ``s`` of this rank is drawn from ``np.random.default_rng([seed, rank, s])``; iteration starts at batch
    ``start_step`` (set to the trainer's global step, so a resumed run continues the same stream).

    ``mix`` = ``[(data_dir, probability), ...]`` adds further sources (e.g. engine games): each window comes from
    one of them with its probability, else from ``data_dir``. With ``legal_sets`` a batch is ``(windows, legal)``,
    ``legal`` (batch_size, block_size, vocab) booleans: the legal next tokens at every input position (see
    :mod:`xiangqi_gpt.data.legal`), mirrored with the window. ``legal_only`` names mix directories whose windows
    teach legality only: the batch then has a third element, ``(batch_size,)`` booleans, False on their rows (the
    training step ignores those rows' move targets and keeps their legal-set term). With ``board_targets`` (needs
    ``legal_sets``) the batch is ``(windows, legal, rows, boards, board_valid)``: ``boards`` (batch_size,
    block_size, 90) int64, the piece class on every square after each input token, and ``board_valid``
    (batch_size, block_size) booleans (:func:`xiangqi_gpt.data.boards.window_boards`), mirrored with the window."""

    def __init__(self, data_dir, tokenizer: Tokenizer, block_size: int, batch_size: int, mirror_p: float = 0.0,
                 game_start_p: float = 0.0, seed: int = 0, rank: int = 0, steps_per_epoch: int = 1000,
                 start_step: int = 0, split: str = "train", mix=(), legal_sets: bool = False,
                 start_ids=None, mirror_start_id=None, legal_only=(), board_targets: bool = False):
        self.data_dir, self.tok, self.split = str(data_dir), tokenizer, split
        #: per source (main first, then the mix), the id that replaces ``<bos>`` at its game starts (None: keep)
        self.start_ids = list(start_ids) if start_ids is not None else None
        self.mirror_start_id = mirror_start_id
        self.block_size, self.batch_size = block_size, batch_size
        self.mirror_p, self.game_start_p = mirror_p, game_start_p
        self.seed, self.rank = seed, rank
        self.steps_per_epoch, self.start_step = steps_per_epoch, start_step
        self.legal_sets = legal_sets
        self.board_targets = board_targets
        if board_targets and not legal_sets:
            raise ConfigError("data.board_targets needs data.legal_sets: true")
        self.sources = [_Source(d, tokenizer, split, block_size, game_start_p, legal_sets, board_targets)
                        for d in [self.data_dir] + [d for d, _ in mix]]
        self.move_squares = None
        if board_targets:
            from ..data.boards import move_squares

            self.move_squares = move_squares(tokenizer.name)
        self.mix_p = np.array([p for _, p in mix], dtype=np.float64)
        #: per source (main first, then the mix): its windows teach legality only (their move targets are ignored)
        self.legal_only = np.array([False] + [d in set(legal_only) for d, _ in mix], dtype=bool)
        if self.legal_only.any() and not legal_sets:
            raise ConfigError("data.legal_only needs data.legal_sets: true (its windows teach only the legal sets)")
        main = self.sources[0]
        self.n_tokens, self.max_start, self.game_starts = main.n_tokens, main.max_start, main.game_starts
        self.mirror_table = np.asarray(tokenizer.mirror_table, dtype=np.int64)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _windows(self, rng, src: _Source, n: int, data) -> tuple[np.ndarray, np.ndarray]:
        starts = rng.integers(0, src.max_start + 1, size=n)
        if src.game_starts is not None and len(src.game_starts):
            aligned = rng.random(n) < self.game_start_p
            starts[aligned] = src.game_starts[rng.integers(0, len(src.game_starts), size=int(aligned.sum()))]
        return starts, data[starts[:, None] + np.arange(self.block_size + 1)].astype(np.int64)

    def batch(self, step: int, data: list | np.ndarray | None = None):
        """The batch number ``step`` of this rank (deterministic)."""
        if data is None:
            data = [load_tokens(s.data_dir, self.tok.name, self.split) for s in self.sources]
        elif isinstance(data, np.ndarray):
            data = [data]
        rng = np.random.default_rng([self.seed, self.rank, step])
        if len(self.sources) == 1:  # the original stream, draw for draw
            which = np.zeros(self.batch_size, dtype=np.int64)
            starts, x = self._windows(rng, self.sources[0], self.batch_size, data[0])
        else:
            u = rng.random(self.batch_size)
            which = np.searchsorted(np.cumsum(self.mix_p), u, side="right") + 1
            which[which > len(self.mix_p)] = 0  # u beyond the extra sources' total: the main source
            starts = np.zeros(self.batch_size, dtype=np.int64)
            x = np.zeros((self.batch_size, self.block_size + 1), dtype=np.int64)
            for k in np.unique(which):
                rows = np.flatnonzero(which == k)
                starts[rows], x[rows] = self._windows(rng, self.sources[k], len(rows), data[k])
        flip = None
        if self.mirror_p > 0:
            flip = rng.random(self.batch_size) < self.mirror_p
            x[flip] = self.mirror_table[x[flip]]
        if self.start_ids is not None:
            starts_of = np.asarray(self.start_ids, dtype=np.int64)[which]
            if flip is not None and self.mirror_start_id is not None:
                starts_of = np.where(flip & (which == 0), self.mirror_start_id, starts_of)
            x = np.where(x == BOS, starts_of[:, None], x)
        if not self.legal_sets:
            return torch.from_numpy(x)
        from ..data.legal import window_mask

        legal = np.zeros((self.batch_size, self.block_size, self.tok.vocab_size), dtype=bool)
        for i in range(self.batch_size):
            offsets, ids = self.sources[which[i]].legal
            legal[i] = window_mask(offsets, ids, int(starts[i]), self.block_size, self.tok.vocab_size)
            if flip is not None and flip[i]:
                legal[i] = legal[i][:, self.mirror_table]
        if self.board_targets:
            from ..data.boards import MIRROR_SQUARES, N_SQUARES, window_boards

            boards = np.zeros((self.batch_size, self.block_size, N_SQUARES), dtype=np.int64)
            valid = np.zeros((self.batch_size, self.block_size), dtype=bool)
            for i in range(self.batch_size):
                b, valid[i] = window_boards(data[which[i]], self.sources[which[i]].offsets, int(starts[i]),
                                            self.block_size, self.move_squares)
                boards[i] = b[:, MIRROR_SQUARES] if flip is not None and flip[i] else b
            return (torch.from_numpy(x), torch.from_numpy(legal), torch.from_numpy(~self.legal_only[which]),
                    torch.from_numpy(boards), torch.from_numpy(valid))
        if self.legal_only.any():      # a third element: the rows whose move targets count
            return torch.from_numpy(x), torch.from_numpy(legal), torch.from_numpy(~self.legal_only[which])
        return torch.from_numpy(x), torch.from_numpy(legal)

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        data = [load_tokens(s.data_dir, self.tok.name, self.split) for s in self.sources]
        # the loader takes batches from the workers in turn, so worker w makes batches w, w + n, ...: same order
        for i in range(worker, self.steps_per_epoch, n_workers):
            yield self.batch(self.start_step + i, data)


class ValWindows(Dataset):
    """A fixed, deterministic set of windows ``(block_size + 1)`` tokens, each starting at a game start.

    Item ``i`` is ``(window int64 (T + 1,), phase int64 (T,))``, phase being :func:`move_phase` of the targets."""

    def __init__(self, data_dir, tokenizer: Tokenizer, block_size: int, n_windows: int, split: str = "val",
                 legal_sets: bool = False, start_id: int | None = None):
        data = load_tokens(data_dir, tokenizer.name, split)
        n = len(data)
        path = Path(data_dir) / tokenizer.name / f"{split}.bin"
        if n < block_size + 1:
            raise DatasetError(f"{path}: {n} tokens, fewer than one window of block_size + 1 = {block_size + 1}")
        max_start = n - (block_size + 1)
        offsets = load_game_offsets(data_dir, tokenizer.name, split, n)
        if offsets is None:  # no offsets: find the games from their <bos> tokens
            offsets = np.flatnonzero(np.asarray(data) == 0)
        offsets = offsets[offsets <= max_start]
        if len(offsets) == 0:
            offsets = np.array([0])
        pick = np.unique(np.linspace(0, len(offsets) - 1, min(n_windows, len(offsets))).round().astype(np.int64))
        self.starts = offsets[pick]
        span = self.starts[:, None] + np.arange(block_size + 1)
        self.windows = np.asarray(data[span], dtype=np.int64)
        self.phase = move_phase(np.asarray(data), tokenizer.tokens_per_move)[span[:, 1:]].astype(np.int64)
        if start_id is not None:  # the games' start token names their source
            self.windows[self.windows == BOS] = start_id
        self.legal = None
        if legal_sets:
            from ..data.legal import load_legal_sets

            self.legal = load_legal_sets(data_dir, split, n)
        self.block_size, self.vocab_size = block_size, tokenizer.vocab_size

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i):
        if self.legal is None:
            return torch.from_numpy(self.windows[i]), torch.from_numpy(self.phase[i])
        from ..data.legal import window_mask

        mask = window_mask(*self.legal, int(self.starts[i]), self.block_size, self.vocab_size)
        return torch.from_numpy(self.windows[i]), torch.from_numpy(self.phase[i]), torch.from_numpy(mask)


class StepLoader(DataLoader):
    """A DataLoader over :class:`TrainWindows` that sets the stream's start step each time an epoch begins, from
    ``start_step()`` (the trainer's global step), before any worker is started. Epoch 2 thus continues where epoch 1
    ended, and a resumed run continues where the checkpoint was saved, with any number of workers."""

    def __init__(self, dataset: TrainWindows, start_step=None, **kwargs):
        super().__init__(dataset, **kwargs)
        self.start_step = start_step

    def __iter__(self):
        if self.start_step is not None:
            self.dataset.start_step = int(self.start_step())
        return super().__iter__()

    # Stateful for Lightning: the position in the stream is the trainer's global step, restored with it.
    def state_dict(self) -> dict:
        return {"start_step": int(self.dataset.start_step)}

    def load_state_dict(self, state: dict) -> None:
        pass


def _mix_dir(data_dir: str, tok: Tokenizer, name) -> Path:
    """The directory a ``data.mix`` name stands for: a subset ``data_dir/name`` if it has token files, else ``name``."""
    sub = Path(data_dir) / str(name)
    return sub if (sub / tok.name / "train.bin").is_file() else Path(str(name))


def resolve_mix(data_dir: str, tok: Tokenizer, mix: dict | None) -> list[tuple[str, float]]:
    """``{name or path: share}`` -> ``[(directory, share)]``, each checked; ConfigError / DatasetError on bad input."""
    if not mix:
        return []
    if not isinstance(mix, dict):
        raise ConfigError(f"data.mix must be a mapping of source -> share, e.g. {{engine: 0.3}}, got {mix!r}")
    out = []
    for name, share in mix.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ConfigError(f"data.mix: the share of {name!r} must be a number in [0, 1], got {share!r}")
        path = _mix_dir(data_dir, tok, name)
        bin_path = path / tok.name / "train.bin"
        if not bin_path.is_file():
            raise DatasetError(f"data.mix: {name!r} is neither a subset of {data_dir} nor a dataset directory "
                               f"({bin_path} missing)")
        size = bin_path.stat().st_size
        if size == 0 or size % 2:
            raise DatasetError(f"{bin_path}: {size} bytes is not a non-empty uint16 token file")
        top = int(np.memmap(bin_path, dtype=np.uint16, mode="r").max())
        if top >= tok.vocab_size:
            raise DatasetError(f"{bin_path}: token id {top} is outside the {tok.name!r} vocabulary")
        if share > 0:
            out.append((str(path), float(share)))
    if sum(s for _, s in out) > 1 + 1e-9:
        raise ConfigError(f"data.mix: the shares add up to {sum(s for _, s in out):g}, more than 1")
    return out


def resolve_legal_only(data_dir: str, tok: Tokenizer, mix: dict | None, legal_only) -> list[str]:
    """``data.legal_only`` (names of ``mix`` entries, already checked by :func:`resolve_mix`) -> their directories as
    :func:`resolve_mix` gives them."""
    if not legal_only:
        return []
    if not isinstance(legal_only, (list, tuple)) or not all(isinstance(n, str) for n in legal_only):
        raise ConfigError(f"data.legal_only must be a list of data.mix names, got {legal_only!r}")
    unknown = [n for n in legal_only if n not in (mix or {})]
    if unknown:
        raise ConfigError(f"data.legal_only: {', '.join(map(repr, unknown))} not in data.mix "
                          f"({', '.join(map(repr, mix or {})) or 'empty'}); give each a share there")
    return [str(_mix_dir(data_dir, tok, name)) for name in legal_only if mix[name] > 0]   # a share of 0: not mixed


# --------------------------------------------------------------------------------------------------------------------
# The data module


class XiangqiDataModule(LightningDataModule):
    """Token windows from a ``prepare`` dataset directory.

    Args:
        data_dir: the dataset directory (``DIR/meta.json``, ``DIR/<tokenizer>/{train,val}.bin``).
        tokenizer: ``move`` or ``char``.
        block_size: tokens the model reads per window (linked to the model's block size by the CLI).
        batch_size: windows per batch (per device).
        mirror_p: probability that a training window is mirrored left-right (0 disables augmentation).
        game_start_p: probability that a training window starts at a game start (0 = uniform nanoGPT windows).
        val_windows: number of fixed validation windows.
        val_batch_size: validation batch size (default: batch_size).
        steps_per_epoch: batches per "epoch" (default: about one pass over the train tokens, across all devices).
        num_workers: dataloader workers, 0 or 1 on a small machine.
        seed: data seed (the CLI links it to ``seed_everything``).
        mix: further training sources and the share of windows each gives, e.g. ``{"engine": 0.3}``: a name is a
            subset of ``data_dir`` (``DIR/engine``, as ``prepare --engine`` writes it) or a dataset directory of
            its own. The rest of the windows come from ``data_dir``. Validation always uses ``data_dir`` (human
            games). A schedule (engine-heavy, then human) is two legs with different mixes.
        legal_sets: also load the legal move set of every position (``python -m xiangqi_gpt legal-sets DIR``, for
            every source) and give them with each batch, for ``model.legal_weight`` and the ``val/legal_rate``
            metric.
        legal_only: mix entries (named as in ``mix``) that teach legality only: their moves are not targets, but
            the legal-set term (``model.legal_weight``) applies at each of their positions. For positions where
            the model fails, e.g. its own level-0 games (``arena --pgn``, then ``prepare``), whose moves are no
            one's to imitate. Their games start with the token of the source the directory is named after, or
            ``master`` if it is named after none. Needs ``legal_sets``.
        board_targets: also give, with each training batch, the piece on each of the 90 squares after every
            input token (:mod:`xiangqi_gpt.data.boards`, made on the fly from the game offsets), for
            ``model.board_weight``. Needs ``legal_sets``.
    """

    def __init__(self, data_dir: str, tokenizer: str = "move", block_size: int = 256, batch_size: int = 16,
                 mirror_p: float = 0.5, game_start_p: float = 0.5, val_windows: int = 256,
                 val_batch_size: int | None = None, steps_per_epoch: int | None = None, num_workers: int = 0,
                 seed: int = 0, mix: dict[str, float] | None = None, legal_sets: bool = False,
                 sources: list[str] | None = None, legal_only: list[str] | None = None, board_targets: bool = False):
        super().__init__()
        for name, value in (("block_size", block_size), ("batch_size", batch_size), ("val_windows", val_windows)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{name} must be a positive integer, got {value!r}")
        for name, value in (("mirror_p", mirror_p), ("game_start_p", game_start_p)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"data.{name} is a probability in [0, 1], got {value!r}")
        if num_workers not in (0, 1) and num_workers > (os.cpu_count() or 1):
            raise ConfigError(f"data.num_workers={num_workers} is more than the {os.cpu_count()} CPUs here")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ConfigError(f"data.steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.tok = get_tokenizer(tokenizer)  # ConfigError for an unknown name
        self.data_dir = str(data_dir)
        self.meta = check_dataset(self.data_dir, self.tok, splits=("train", "val"))
        self.mix = resolve_mix(self.data_dir, self.tok, mix)
        self.legal_only = resolve_legal_only(self.data_dir, self.tok, mix, legal_only)
        self.sources = tuple(sources or ())
        self.start_ids = self.mirror_start_id = None
        if self.sources:
            self.start_ids = [self._source_id("master", "data.data_dir")]
            for path, _ in self.mix:
                name = Path(path).name
                if path in self.legal_only and name not in SOURCES:
                    name = "master"
                self.start_ids.append(self._source_id(name, f"data.mix {path!r}"))
            if "mirror" in self.sources:
                self.mirror_start_id = self._source_id("mirror", "data.mirror_p")
        self.legal_sets = bool(legal_sets)
        if self.legal_sets and self.tok.name != "move":
            raise ConfigError("data.legal_sets needs the move tokenizer")
        if not isinstance(board_targets, bool):     # TrainWindows (built below) checks that it has legal_sets
            raise ConfigError(f"data.board_targets must be true or false, got {board_targets!r}")
        self.board_targets = board_targets
        self.block_size, self.batch_size = block_size, batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.mirror_p, self.game_start_p = mirror_p, game_start_p
        self.val_windows, self.num_workers, self.seed = val_windows, num_workers, seed
        self.steps_per_epoch = steps_per_epoch
        self.n_train_tokens = len(load_tokens(self.data_dir, self.tok.name, "train"))
        # fail now (not in a DDP worker later) if a split is too short or game offsets are needed and missing
        self._train_windows(rank=0, world_size=1, start_step=0)
        self._val = ValWindows(self.data_dir, self.tok, block_size, val_windows, legal_sets=self.legal_sets,
                               start_id=self.start_ids[0] if self.start_ids else None)

    def _source_id(self, name: str, where: str) -> int:
        """The start-token id of source ``name`` (ConfigError naming ``where`` if the model lacks it)."""
        if name not in self.sources:
            raise ConfigError(f"{where}: the model has no source token {name!r} (model.sources: "
                              f"{list(self.sources)}; a mix entry must be named after one of {', '.join(SOURCES)})")
        return self.tok.vocab_size + self.sources.index(name)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.tok

    def _train_windows(self, rank: int, world_size: int, start_step: int) -> TrainWindows:
        steps = self.steps_per_epoch or max(1, math.ceil(self.n_train_tokens / (self.batch_size * self.block_size
                                                                                 * world_size)))
        return TrainWindows(self.data_dir, self.tok, self.block_size, self.batch_size, self.mirror_p,
                            self.game_start_p, self.seed, rank, steps, start_step, mix=self.mix,
                            legal_sets=self.legal_sets, start_ids=self.start_ids,
                            mirror_start_id=self.mirror_start_id, legal_only=self.legal_only,
                            board_targets=self.board_targets)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        if trainer is None:
            return StepLoader(self._train_windows(0, 1, 0), batch_size=None, num_workers=self.num_workers)

        def start_step() -> int:  # batches already consumed: resume / next epoch continue the same stream
            return trainer.global_step * trainer.accumulate_grad_batches

        dataset = self._train_windows(trainer.global_rank, trainer.world_size, start_step())
        return StepLoader(dataset, start_step=start_step, batch_size=None, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._val, batch_size=self.val_batch_size, shuffle=False, num_workers=0)

    def state_dict(self) -> dict:
        return {"tokenizer": self.tok.name, "vocab_size": self.tok.vocab_size, "data_dir": self.data_dir}
