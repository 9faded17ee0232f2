"""Training: the LightningModule, its callbacks and the ``train.py`` command line (LightningCLI + jsonargparse).

Main names: :class:`GPTModule`, :class:`XiangqiCLI`, :data:`SHORTCUTS`, :func:`main` (what ``train.py`` runs).
Design notes: docs/design.md#model-training
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from .datamodule import XiangqiDataModule
from ..errors import CheckpointError, ConfigError, XiangqiError
from .gpt import GPT, GPTConfig, IGNORE_INDEX
from ..data.tokenizer import BOS, N_SPECIAL, get_tokenizer

OBJECTIVES = ("tf", "teaforn")
LR_SCHEDULES = ("steps", "time")
LEGAL_LOSSES = ("logp", "kl")
DEFAULT_ROOT = "runs/default"


# --------------------------------------------------------------------------------------------------------------------
# Loss and weight helpers


def legality_loss(logits: torch.Tensor, targets: torch.Tensor, legal: torch.Tensor, kind: str = "logp"):
    """``(loss, mean P(legal))`` over the positions whose target is a move and that have legal moves.

    ``logits`` (B, T, V), ``targets`` (B, T), ``legal`` (B, T, V) booleans. ``logp``: mean −log Σ_{v legal} p_v (zero
    when all the mass is on legal moves); ``kl``: mean KL(uniform over the legal moves ‖ p) = −log|L| − mean_{v∈L}
    log p_v. Result tokens (targets below the first move id) are masked out."""
    logits = logits.float()
    n_legal = legal.sum(-1)
    counted = (targets >= N_SPECIAL) & (n_legal > 0)
    log_z = torch.logsumexp(logits, -1)
    log_p_legal = torch.logsumexp(logits.masked_fill(~legal, float("-inf")), -1) - log_z
    if kind == "logp":
        per = -log_p_legal
    else:
        logp = logits - log_z.unsqueeze(-1)
        mean_logp = (logp * legal).sum(-1) / n_legal.clamp(min=1)
        per = -torch.log(n_legal.clamp(min=1).float()) - mean_logp
    per = torch.where(counted, per, torch.zeros_like(per))
    n = counted.sum().clamp(min=1)
    share = torch.where(counted, log_p_legal.exp(), torch.zeros_like(log_p_legal)).sum() / n
    return per.sum() / n, share.detach()


def cpu_lacks_bf16() -> bool:
    """True when /proc/cpuinfo shows a CPU without native bf16 arithmetic (no avx512_bf16 or amx_bf16 flag).

    bf16 autocast is emulated there and a training step is tens of times slower than in fp32. False when unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return not ({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def load_init_weights(model: GPT, path: str) -> None:
    """Warm start: copy the weights of ``path`` (.pt export or .ckpt) into ``model``; ConfigError if they differ.

    A model with more source start tokens than the file (``model.sources``) grows the embedding: each new source's
    row starts as a copy of the file's start token (its ``<bos>`` row), so the grown model first reads every source
    as the old model read a game start.

    A model with more layers than the file grows in depth: the file's blocks keep their order, spread evenly over
    the new stack (block ``i`` of ``n`` goes to ``i * N // n``), and each new block starts as the identity (its two
    residual projections are zero), so the grown model first computes exactly what the file computes."""
    from .checkpoint import read_checkpoint

    config, state, _ = read_checkpoint(path)
    mine = model.config
    for key in ("tokenizer", "n_layer", "n_head", "n_embd", "bias"):
        if key == "n_layer" and config.n_layer < mine.n_layer:
            continue
        if getattr(config, key) != getattr(mine, key):
            raise ConfigError(f"model.init_from {path}: its {key} is {getattr(config, key)!r}, this model's is "
                              f"{getattr(mine, key)!r}")
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}
    if model.value_head is None:      # a value head is fitted after training (studies/value_probe.py), not trained
        state = {k: v for k, v in state.items() if not k.startswith("value_head.")}
    else:
        state = {**{k: v for k, v in model.state_dict().items() if k.startswith("value_head.")}, **state}
    if config.n_layer < mine.n_layer:
        state = _grow_depth(model, state, config.n_layer)
    if "lm_head.weight" not in state and "tok_emb.weight" in state:
        state["lm_head.weight"] = state["tok_emb.weight"]
    grow = (config.vocab_size != mine.vocab_size and tuple(mine.sources[:len(config.sources)]) == config.sources
            and config.vocab_size == model.n_out + len(config.sources) and mine.vocab_size > config.vocab_size)
    if config.vocab_size != mine.vocab_size and not grow:
        raise ConfigError(f"model.init_from {path}: its vocab_size is {config.vocab_size!r} (sources "
                          f"{list(config.sources)}), this model's is {mine.vocab_size!r} (sources {list(mine.sources)})")
    if grow and "tok_emb.weight" in state:
        old = state["tok_emb.weight"]
        new = old[BOS].unsqueeze(0).repeat(mine.vocab_size - old.size(0), 1)
        state["tok_emb.weight"] = state["lm_head.weight"] = torch.cat([old, new])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConfigError(f"model.init_from {path}: weights do not fit ({_one_line(str(e))[:200]})") from None


def _grow_depth(model: GPT, state: dict, n_old: int) -> dict:
    """``state`` (a file's weights with ``n_old`` blocks) laid out for ``model``'s deeper stack: old block ``i`` at
    ``i * N // n_old``; the other blocks keep ``model``'s own fresh weights, with zero residual projections. A name
    the file lacks stays absent, so the strict load after it reports the file as not fitting."""
    n_new = model.config.n_layer
    where = {i * n_new // n_old: i for i in range(n_old)}
    own = model.state_dict()
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    for j in range(n_new):
        prefix = f"blocks.{j}."
        for k, v in own.items():
            if not k.startswith(prefix):
                continue
            if j in where:
                src = f"blocks.{where[j]}.{k[len(prefix):]}"
                if src in state:
                    out[k] = state[src]
            elif k.endswith("proj.weight") or k.endswith("proj.bias"):
                out[k] = torch.zeros_like(v)
            else:
                out[k] = v.clone()
    return out


# --------------------------------------------------------------------------------------------------------------------
# Metrics helpers


def lr_factor(step: int, warmup_steps: int, decay_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier at optimizer step ``step``: linear warmup to 1 over ``warmup_steps``, then cosine down to
    ``min_lr_ratio`` at ``decay_steps``, constant after."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def move_hits(logits: torch.Tensor, targets: torch.Tensor, phase: torch.Tensor, tokens_per_move: int,
              first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, counted) whole-move top-1 predictions under teacher forcing, over targets at positions >= first.

    ``phase`` (B, T) is -1 for special targets, else the target's index inside its move. A move counts when all its
    ``tokens_per_move`` tokens lie in the window; it is correct when every one of its tokens is the argmax, which is
    exactly "greedy decoding of the move gives the true move". For the move tokenizer this is plain top-1 accuracy
    on move tokens."""
    correct = logits.argmax(-1) == targets
    T, m = targets.size(1), tokens_per_move
    if T < m:
        zero = correct.new_zeros((), dtype=torch.long)
        return zero, zero
    starts = phase[:, :T - m + 1] == 0
    if first:
        starts[:, :first] = False
    whole = correct[:, :T - m + 1].clone()
    for j in range(1, m):
        whole &= correct[:, j:T - m + 1 + j]
    return (whole & starts).sum(), starts.sum()


# --------------------------------------------------------------------------------------------------------------------
# The LightningModule


class GPTModule(LightningModule):
    """A :class:`~xiangqi_gpt.model.gpt.GPT` trained by teacher forcing (``objective="tf"``) or TeaForN
    (``objective="teaforn"``, Goodman et al. 2020) with AdamW and linear-warmup + cosine LR.

    Model (the :class:`~xiangqi_gpt.model.gpt.GPTConfig` fields): tokenizer, block_size, n_layer, n_head, n_embd, dropout,
    bias, rope_base, vocab_size (None = the tokenizer's).

    Objective: ``teaforn_n`` levels, ``teaforn_weights`` (``uniform``, ``decay``, ``mean`` or N numbers),
    ``teaforn_feed`` (``hidden`` as in the paper, or ``expected_embedding``), ``teaforn_mask_warmup`` (ignore level k's
    first k-1 positions), ``teaforn_feedback_scale`` (a learnable scale on fed-back vectors, one per level), started
    at ``teaforn_feedback_init`` (e.g. the token embeddings' RMS over the fed-back vectors' RMS).

    Optimizer: ``lr`` peak, ``min_lr_ratio`` final LR / peak, ``warmup_steps``, ``lr_decay_steps`` (cosine horizon;
    None = ``trainer.max_steps``, or the estimated total steps when training by epochs), ``weight_decay`` on
    matrices only, ``betas``. ``lr_schedule``: ``steps`` (the cosine follows the step count) or ``time`` (it follows
    whichever is further along, the steps or the training time against ``trainer.max_time``, so a run that stops on
    its time budget still ends its cooldown at ``min_lr_ratio``).

    Legality (the rule engine as a teacher; needs ``data.legal_sets: true``): ``legal_weight`` λ adds
    ``λ · legal_loss`` at every position whose target is a move, where ``legal_loss`` is ``logp``
    (−log P(legal) = −log Σ_{v legal} p_v) or ``kl`` (KL(uniform over the legal moves ‖ p)). Result tokens and
    positions without legal moves are masked out.

    Board state (the rule engine as a dense teacher; needs ``data.board_targets: true`` and ``objective: tf``):
    ``board_weight`` μ adds ``μ · board_loss``, the mean cross-entropy of a head (LayerNorm + linear, owned by this
    module and never exported) that reads the residual stream after block ``board_layer`` (default: the middle,
    ``n_layer // 2``) and predicts the piece class on each of the 90 squares after every input token
    (:mod:`xiangqi_gpt.data.boards`).

    Warm start: ``init_from`` (an exported ``.pt`` or a ``.ckpt``) loads the weights (not the optimizer) before
    training; the architecture must match, except that the model may have more source tokens or more layers than
    the file (:func:`load_init_weights`). ``value_head`` must stay false: a value head is fitted after training.
    """

    def __init__(self, tokenizer: str = "move", block_size: int = 256, n_layer: int = 6, n_head: int = 4,
                 n_embd: int = 256, dropout: float = 0.1, bias: bool = False, rope_base: float = 10000.0,
                 vocab_size: Optional[int] = None, attn_dropout: Optional[float] = None,
                 objective: str = "tf", teaforn_n: int = 2, teaforn_weights: Union[str, list[float]] = "uniform",
                 teaforn_feed: str = "hidden", teaforn_mask_warmup: bool = True, teaforn_feedback_scale: bool = False,
                 teaforn_feedback_init: float = 1.0,
                 lr: float = 2e-3, min_lr_ratio: float = 0.1, warmup_steps: int = 300,
                 lr_decay_steps: Optional[int] = None, weight_decay: float = 0.1,
                 betas: tuple[float, float] = (0.9, 0.95), lr_schedule: str = "steps",
                 legal_weight: float = 0.0, legal_loss: str = "logp", init_from: Optional[str] = None,
                 sources: Optional[list[str]] = None, value_head: bool = False, board_weight: float = 0.0,
                 board_layer: Optional[int] = None):
        super().__init__()
        self.save_hyperparameters()
        if value_head is not False:
            raise ConfigError("model.value_head: train.py does not train a value head; fit one on the trained model "
                              "with studies/value_probe.py --export")
        self.config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                                n_embd=n_embd, dropout=dropout, tokenizer=tokenizer, bias=bias, rope_base=rope_base,
                                attn_dropout=attn_dropout, sources=tuple(sources or ()))
        if objective not in OBJECTIVES:
            raise ConfigError(f"model.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if not lr > 0:
            raise ConfigError(f"model.lr must be > 0, got {lr!r}")
        if not 0 <= min_lr_ratio <= 1:
            raise ConfigError(f"model.min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
        if warmup_steps < 0:
            raise ConfigError(f"model.warmup_steps must be >= 0, got {warmup_steps!r}")
        if lr_decay_steps is not None and lr_decay_steps < 1:
            raise ConfigError(f"model.lr_decay_steps must be >= 1 (or null for trainer.max_steps), got {lr_decay_steps}")
        if weight_decay < 0:
            raise ConfigError(f"model.weight_decay must be >= 0, got {weight_decay!r}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"model.betas must be two numbers in [0, 1), got {betas!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"model.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        if isinstance(legal_weight, bool) or not isinstance(legal_weight, (int, float)) or legal_weight < 0:
            raise ConfigError(f"model.legal_weight must be a number >= 0, got {legal_weight!r}")
        if legal_loss not in LEGAL_LOSSES:
            raise ConfigError(f"model.legal_loss must be one of {', '.join(LEGAL_LOSSES)}, got {legal_loss!r}")
        if legal_weight and tokenizer != "move":
            raise ConfigError("model.legal_weight needs the move tokenizer (legal sets are stored per move token)")
        if isinstance(board_weight, bool) or not isinstance(board_weight, (int, float)) or board_weight < 0:
            raise ConfigError(f"model.board_weight must be a number >= 0, got {board_weight!r}")
        if board_weight and objective != "tf":
            raise ConfigError("model.board_weight needs objective: tf")
        if board_weight and tokenizer != "move":
            raise ConfigError("model.board_weight needs the move tokenizer (a board after every move token)")
        self.board_layer = n_layer // 2 if board_layer is None else board_layer
        if board_weight and (isinstance(self.board_layer, bool) or not isinstance(self.board_layer, int)
                             or not 1 <= self.board_layer <= n_layer):
            raise ConfigError(f"model.board_layer must be an integer in 1..{n_layer}, got {board_layer!r}")
        self.board_head = None
        if board_weight:
            from ..data.boards import N_CLASSES, N_SQUARES

            self.board_head = nn.Sequential(nn.LayerNorm(n_embd), nn.Linear(n_embd, N_SQUARES * N_CLASSES))
        self.model = GPT(self.config)
        if init_from:
            load_init_weights(self.model, init_from)
        self.tokenizer = get_tokenizer(tokenizer)
        self.objective = objective
        self.teaforn = None
        if objective == "teaforn":
            from teaforn import FEEDS, FeedbackScale, TeaForN

            if isinstance(teaforn_n, bool) or not isinstance(teaforn_n, int) or teaforn_n < 1:
                raise ConfigError(f"model.teaforn_n must be an integer >= 1, got {teaforn_n!r}")
            if teaforn_feed not in FEEDS:
                raise ConfigError(f"model.teaforn_feed must be one of {', '.join(FEEDS)}, got {teaforn_feed!r}")
            try:
                self.teaforn = TeaForN(n=teaforn_n, weights=teaforn_weights, feed=teaforn_feed,
                                       mask_warmup=teaforn_mask_warmup, ignore_index=IGNORE_INDEX,
                                       feedback_transform=FeedbackScale(teaforn_n, init=teaforn_feedback_init)
                                       if teaforn_feedback_scale else None)
            except ValueError as e:
                raise ConfigError(f"model.teaforn_weights: {e}") from None
        self.levels = teaforn_n if objective == "teaforn" else 1
        self._val_sums: dict[str, torch.Tensor] = {}
        self._step_time: float | None = None

    # -- training ----------------------------------------------------------------------------------------------------

    def _levels(self, x: torch.Tensor, y: torch.Tensor, return_logits: bool = False, tap: list | None = None):
        """TeaForN output (levels 1..N), or ``(loss, logits)`` for teacher forcing; with ``tap`` (a list, teacher
        forcing only) the residual stream after block ``board_layer`` is appended to it."""
        if self.teaforn is None:
            if tap is not None:
                h, mid = self.model.decode_with_layer(self.model.embed(x), self.board_layer)
                tap.append(mid)
            else:
                h = self.model.decode(self.model.embed(x))
            logits = self.model.head(h)
            # the mean over counted targets (0, not NaN, when a batch has none: all its rows legal-only)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=IGNORE_INDEX,
                                   reduction="sum") / (y != IGNORE_INDEX).sum().clamp(min=1)
            return loss, [loss], [logits]
        out = self.teaforn(self.model.embed, self.model.decode, self.model.head, x, y,
                           embedding_weight=self.model.tok_emb.weight, return_logits=return_logits)
        return out.loss, out.level_losses, out.level_logits

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets from a window's tail: a source start token (an input only) is predicted as ``<bos>``."""
        if self.model.n_out == self.config.vocab_size:
            return y
        return torch.where(y >= self.model.n_out, torch.full_like(y, BOS), y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        legal = move_rows = boards = None
        if isinstance(batch, (tuple, list)):
            batch, legal, *rest = batch
            move_rows = rest[0] if rest else None     # data.legal_only: rows whose move targets do not count
            if len(rest) == 3:                         # data.board_targets
                boards, board_valid = rest[1], rest[2]
        if self.board_head is not None and boards is None:
            raise ConfigError("model.board_weight needs data.board_targets: true")
        x, y = batch[:, :-1], self._targets(batch[:, 1:])
        want_legal = legal is not None and self.hparams.legal_weight > 0
        y_moves = y if move_rows is None else torch.where(move_rows[:, None], y, torch.full_like(y, IGNORE_INDEX))
        tap = [] if self.board_head is not None else None
        loss, level_losses, level_logits = self._levels(x, y_moves, return_logits=want_legal, tap=tap)
        if want_legal:
            term, share = legality_loss(level_logits[0], y, legal, self.hparams.legal_loss)
            self.log("train/legal_loss", term)
            self.log("train/p_legal", share)
            self.log("train/ce", loss)
            loss = loss + self.hparams.legal_weight * term
        if tap:                                    # after train/ce is logged: that stays the move loss alone
            board_term, board_acc = self._board_loss(tap[0], boards, board_valid)
            self.log("train/board_loss", board_term)
            self.log("train/board_acc", board_acc)
            loss = loss + self.hparams.board_weight * board_term
        self.log("train/loss", loss, prog_bar=True)
        if self.levels > 1:
            for k, level_loss in enumerate(level_losses, start=1):
                self.log(f"train/loss_level{k}", level_loss)
        now = time.perf_counter()
        if self._step_time is not None:
            self.log("train/tokens_per_sec", x.numel() * self.trainer.world_size / (now - self._step_time))
        self._step_time = now
        return loss

    def _board_loss(self, mid: torch.Tensor, boards: torch.Tensor, valid: torch.Tensor):
        """(mean cross-entropy, accuracy) of the board head over the valid positions' 90 squares."""
        logits = self.board_head(mid).float()
        logits = logits.view(*mid.shape[:2], boards.size(-1), -1)             # (B, T, 90, classes)
        targets = torch.where(valid[..., None], boards, torch.full_like(boards, IGNORE_INDEX))
        term = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                               reduction="sum") / (targets != IGNORE_INDEX).sum().clamp(min=1)
        right = ((logits.argmax(-1) == boards) & valid[..., None]).sum()
        return term, right.float() / (valid.sum() * boards.size(-1)).clamp(min=1)

    def on_train_epoch_start(self) -> None:
        self._step_time = None

    # -- validation --------------------------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._val_sums = {}
        self._step_time = None  # do not count validation time as a training step

    def _add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float64)
        self._val_sums[name] = self._val_sums[name] + value if name in self._val_sums else value

    def validation_step(self, batch, batch_idx: int) -> None:
        window, phase = batch[0], batch[1]
        x, y = window[:, :-1], self._targets(window[:, 1:])
        _, _, level_logits = self._levels(x, y, return_logits=True)
        if len(batch) > 2:  # legal sets: how often the raw top choice is legal, and the mass on legal moves
            legal = batch[2]
            logits = level_logits[0].float()
            counted = (y >= N_SPECIAL) & legal.any(-1)
            top_legal = legal.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1) & counted
            p_legal = torch.logsumexp(logits.masked_fill(~legal, float("-inf")), -1) - torch.logsumexp(logits, -1)
            self._add("legal_top", top_legal.sum())
            self._add("legal_p", torch.where(counted, p_legal.exp(), torch.zeros_like(p_legal)).sum())
            self._add("legal_n", counted.sum())
        m = self.tokenizer.tokens_per_move
        for k, logits in enumerate(level_logits, start=1):
            logits = logits.float()
            first = k - 1  # level k's first k-1 positions only repeat lower levels
            ce = F.cross_entropy(logits[:, first:].reshape(-1, logits.size(-1)), y[:, first:].reshape(-1),
                                 reduction="sum")
            self._add(f"loss_sum{k}", ce)
            self._add(f"tokens{k}", torch.tensor(y[:, first:].numel(), device=ce.device))
            hits, counted = move_hits(logits, y, phase, m, first)
            self._add(f"move_hits{k}", hits)
            self._add(f"moves{k}", counted)
            if m > 1:  # char tokenizer: also per-token accuracy on move characters
                mask = phase[:, first:] >= 0
                right = (logits[:, first:].argmax(-1) == y[:, first:]) & mask
                self._add(f"char_hits{k}", right.sum())
                self._add(f"chars{k}", mask.sum())
            elif k == 1:  # move tokenizer: top-5 on move tokens at level 1
                mask = phase >= 0
                top5 = (logits.topk(5, dim=-1).indices == y.unsqueeze(-1)).any(-1) & mask
                self._add("top5_hits", top5.sum())

    def on_validation_epoch_end(self) -> None:
        if not self._val_sums:
            return
        names = sorted(self._val_sums)
        stacked = torch.stack([self._val_sums[n] for n in names])
        if self.trainer.world_size > 1:
            stacked = self.trainer.strategy.reduce(stacked, reduce_op="sum")
        s = dict(zip(names, stacked))

        def ratio(a, b):
            return (s[a] / s[b].clamp(min=1)).float()

        metrics = {"val/loss": ratio("loss_sum1", "tokens1"), "val/acc": ratio("move_hits1", "moves1")}
        if "legal_n" in s:
            metrics["val/legal_rate"] = ratio("legal_top", "legal_n")
            metrics["val/p_legal"] = ratio("legal_p", "legal_n")
        if "top5_hits" in s:
            metrics["val/acc5"] = ratio("top5_hits", "moves1")
        if "char_hits1" in s:
            metrics["val/char_acc"] = ratio("char_hits1", "chars1")
        if self.levels > 1:
            for k in range(1, self.levels + 1):
                metrics[f"val/loss_level{k}"] = ratio(f"loss_sum{k}", f"tokens{k}")
                key = f"char_hits{k}" if f"char_hits{k}" in s else f"move_hits{k}"
                count = f"chars{k}" if key.startswith("char") else f"moves{k}"
                # per-token accuracy at level k (for the char tokenizer: per character, labelled char_acc)
                label = "char_acc" if key.startswith("char") else "acc"
                metrics[f"val/{label}_level{k}"] = ratio(key, count)
        self.log("val/acc", metrics.pop("val/acc"), prog_bar=True)
        self.log_dict(metrics)

    # -- optimizer ---------------------------------------------------------------------------------------------------

    def decay_steps(self) -> int:
        hp = self.hparams
        if hp.lr_decay_steps:
            return int(hp.lr_decay_steps)
        if self.trainer.max_steps and self.trainer.max_steps > 0:
            return int(self.trainer.max_steps)
        return max(1, int(self.trainer.estimated_stepping_batches))

    def configure_optimizers(self):
        hp = self.hparams
        groups = self.model.optim_groups(hp.weight_decay)
        if self.teaforn is not None:
            extra = [p for p in self.teaforn.parameters() if p.requires_grad]
            if extra:
                groups.append({"params": extra, "weight_decay": 0.0})
        if self.board_head is not None:
            groups.append({"params": list(self.board_head.parameters()), "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        decay = self.decay_steps()
        warmup, floor = int(hp.warmup_steps), float(hp.min_lr_ratio)
        time_fraction = self._time_fraction if hp.get("lr_schedule", "steps") == "time" else None

        def factor(step: int) -> float:
            if time_fraction is not None and step >= warmup:  # whichever is further along: steps or time
                frac = time_fraction()
                if frac is not None:
                    step = max(step, warmup + int(round(frac * max(0, decay - warmup))))
            return lr_factor(step, warmup, decay, floor)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _time_fraction(self) -> float | None:
        """Training time used / ``trainer.max_time`` (Lightning's Timer, restored on resume), or None."""
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return None
        from lightning.pytorch.callbacks import Timer

        for cb in trainer.callbacks:
            if isinstance(cb, Timer):
                remaining = cb.time_remaining("train")      # None without a max_time
                if remaining is None:
                    continue
                elapsed = cb.time_elapsed("train")
                duration = elapsed + remaining
                if duration > 0:
                    return min(1.0, elapsed / duration)
        return None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["xiangqi_gpt"] = {"config": self.config.to_dict(), "num_params": self.model.num_params(),
                                     "tokens_seen": self.trainer.global_step * self.trainer.accumulate_grad_batches
                                     * self.trainer.world_size * self._batch_tokens()}

    def _batch_tokens(self) -> int:
        dm = getattr(self.trainer, "datamodule", None)
        return int(getattr(dm, "batch_size", 0)) * int(getattr(dm, "block_size", 0))


# --------------------------------------------------------------------------------------------------------------------
# Callbacks


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint keeping the best by val/loss and ``last.ckpt``; ``last.ckpt`` is also written at the end of
    training (when the last step had no validation) and on Ctrl-C in single-process runs, so a run can always be
    resumed with ``--ckpt-path last``."""

    def __init__(self, dirpath: str, **kwargs):
        kwargs.setdefault("filename", "best-step={step}")
        kwargs.setdefault("monitor", "val/loss")
        kwargs.setdefault("mode", "min")
        kwargs.setdefault("save_top_k", 1)
        kwargs.setdefault("save_last", True)
        kwargs.setdefault("auto_insert_metric_name", False)
        super().__init__(dirpath=dirpath, **kwargs)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step and not trainer.fast_dev_run:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if (isinstance(exception, KeyboardInterrupt) and trainer.world_size == 1 and not trainer.sanity_checking
                and self._last_global_step_saved != trainer.global_step and trainer.global_step > 0):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class LossCurves(Callback):
    """Writes ``loss.png`` (train and val loss, one curve per TeaForN level) and ``accuracy.png`` (val accuracy per
    level) into the run directory from the CSV log, at the end of training (also after Ctrl-C)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.write(trainer)

    def write(self, trainer: Trainer) -> list[str]:
        if trainer.global_rank != 0:
            return []
        for logger in trainer.loggers:
            logger.save()
        csv_path = next((Path(lg.log_dir) / "metrics.csv" for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if csv_path is None or not csv_path.is_file():
            return []
        return plot_curves(csv_path, self.out_dir)


def read_metrics(csv_path) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv -> {metric: [(step, value), ...]} (rows without the metric skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            if not step:
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    series.setdefault(key, []).append((int(float(step)), float(value)))
                except ValueError:
                    pass
    return series


def plot_curves(csv_path, out_dir) -> list[str]:
    """Draw loss.png and accuracy.png from a metrics.csv; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(csv_path)
    written = []
    plots = {
        "loss.png": ("loss (cross-entropy, nats/token)",
                     [k for k in sorted(series) if k.startswith(("train/loss", "val/loss"))]),
        "accuracy.png": ("validation next-move accuracy",
                         [k for k in sorted(series) if k.startswith("val/") and "acc" in k]),
    }
    for name, (title, keys) in plots.items():
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        for key in keys:
            steps, values = zip(*sorted(series[key]))
            style = "-" if key.startswith("train/") else "o-"
            ax.plot(steps, values, style, label=key, alpha=0.6 if key.startswith("train/") else 1.0,
                    markersize=3)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = Path(out_dir) / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing metrics.csv (a resumed run appends to it) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class RunLogger(CSVLogger):
    """CSVLogger writing ``RUN/metrics.csv`` and ``RUN/hparams.yaml``; ``append=True`` (resume) keeps the rows of
    the interrupted run."""

    def __init__(self, save_dir: str, append: bool = False):
        super().__init__(save_dir=save_dir, name="", version="")
        self.append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = (_AppendingWriter if self.append else ExperimentWriter)(log_dir=self.log_dir)
        return self._experiment


def run_callbacks(root: str, progress_bar: bool = True) -> list[Callback]:
    return ([RichProgressBar()] if progress_bar else []) + [
        LearningRateMonitor(logging_interval="step"), RunCheckpoint(dirpath=os.path.join(root, "checkpoints")),
        LossCurves(root)]


# --------------------------------------------------------------------------------------------------------------------
# Checkpoint resolution (resume)


def resolve_ckpt_path(ckpt_path: str, root: str) -> str:
    """``last`` -> ``ROOT/checkpoints/last.ckpt``; a run directory -> its last.ckpt; a file -> itself.
    CheckpointError when there is nothing to resume."""
    if ckpt_path == "last":
        path = Path(root) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(f"--ckpt-path last: no {path} to resume (is the run directory "
                                  f"(trainer.default_root_dir / --out) {root!r} right?)")
        return str(path)
    path = Path(ckpt_path)
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(f"{path}: a directory without checkpoints/last.ckpt")
        return str(last)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    return str(path)


def read_lightning_checkpoint(path: str) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path}: not a Lightning checkpoint written by train.py (no state_dict/hyper_parameters)")
    return ckpt


def check_resume_checkpoint(path: str, tokenizer: str) -> dict:
    """The checkpoint's hyper-parameters, after checking it was trained with ``tokenizer`` and its vocabulary."""
    ckpt = read_lightning_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    ckpt_tok = hp.get("tokenizer")
    if ckpt_tok is None:
        raise CheckpointError(f"{path}: no tokenizer in its hyper-parameters; not a checkpoint written by train.py")
    if ckpt_tok != tokenizer:
        raise CheckpointError(f"{path}: trained with the {ckpt_tok!r} tokenizer, but this run uses {tokenizer!r} "
                              f"(set model.tokenizer / --tokenizer {ckpt_tok}, or start a new run)")
    emb = ckpt["state_dict"].get("model.tok_emb.weight")
    want = get_tokenizer(tokenizer).vocab_size
    if emb is not None and emb.shape[0] < want:
        raise CheckpointError(f"{path}: its embedding has {emb.shape[0]} tokens but the {tokenizer!r} tokenizer has "
                              f"{want}; it was trained with a different vocabulary")
    return hp


# --------------------------------------------------------------------------------------------------------------------
# LightningCLI


class _OneLineParser(LightningArgumentParser):
    """Parse errors become :class:`ConfigError` (printed by :func:`main` as one line) instead of usage + exit."""

    def error(self, message: str, ex: Exception | None = None):
        raise ConfigError(_parse_error_line(message)) from None


def _parse_error_line(message: str) -> str:
    """jsonargparse's multi-line message -> one line: 'model.n_layer: expected int, got abc'."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    if not lines:
        return "invalid arguments"
    head = lines[0]
    if head.startswith('Parser key "') and len(lines) > 1:
        key = head[len('Parser key "'):].split('"')[0]
        given = next((ln for ln in lines if ln.startswith("Given value:")), None)
        detail = lines[1]
        if detail.startswith("Does not validate against any of the Union subtypes") and given:
            detail = f"invalid value ({given[len('Given value:'):].strip()!r})"
        return f"{key}: {detail}"
    if head.startswith('Parser key "'):
        key, _, rest = head[len('Parser key "'):].partition('"')
        return f"{key}{rest}" if rest.startswith(":") else head
    return head


class XiangqiCLI(LightningCLI):
    """LightningCLI with the project's links, defaults, run directory layout and one-line errors."""

    def __init__(self, *args, extra_callbacks: list[Callback] | None = None, **kwargs):
        self.extra_callbacks = list(extra_callbacks or [])
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--threads", type=Optional[int], default=None,
                            help="torch CPU threads per process (torch.set_num_threads); default: torch's choice")
        parser.add_argument("--ema", type=Optional[float], default=None,
                            help="keep an exponential moving average of the weights with this decay (e.g. 0.999; "
                                 "Lightning's EMAWeightAveraging): validation, checkpoints and exports use it")
        parser.link_arguments("model.tokenizer", "data.tokenizer")
        parser.link_arguments("model.block_size", "data.block_size")
        parser.link_arguments("model.sources", "data.sources")
        parser.link_arguments("seed_everything", "data.seed",
                              compute_fn=lambda s: s if isinstance(s, int) and not isinstance(s, bool) else 0)

    def _parse_ckpt_path(self) -> None:
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        ckpt_path = cfg.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("best", "hpc", "registry"):
            return
        root = cfg.trainer.get("default_root_dir") or DEFAULT_ROOT
        cfg["ckpt_path"] = resolve_ckpt_path(str(ckpt_path), root)
        check_resume_checkpoint(cfg["ckpt_path"], cfg.model.tokenizer)
        super()._parse_ckpt_path()  # the model section comes from the checkpoint

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        threads = cfg.get("threads")
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"--threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        root = trainer_cfg.get("default_root_dir") or DEFAULT_ROOT
        kwargs.setdefault("default_root_dir", root)
        resuming = bool(self._get(self.config, "ckpt_path"))
        if self.subcommand == "fit" and not resuming and (Path(root) / "checkpoints" / "last.ckpt").is_file():
            raise ConfigError(f"{root} already holds a run ({Path(root) / 'checkpoints' / 'last.ckpt'}): resume it "
                              f"with --ckpt-path last, or choose another run directory (--out / "
                              f"--trainer.default_root_dir)")
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = RunLogger(root, append=resuming)
        precision = str(trainer_cfg.get("precision") or "")
        if precision.startswith("bf16") and not torch.cuda.is_available() and cpu_lacks_bf16():
            print(f"warning: this CPU has no native bf16 (no avx512_bf16/amx_bf16), where {precision} runs about 50x "
                  f"slower than fp32: training in 32-true instead (pass --precision 32-true to silence this)",
                  file=sys.stderr)
            kwargs["precision"] = "32-true"
        user = trainer_cfg.get("callbacks") or []
        sub = self.config.get("subcommand")
        ema = (self.config[sub] if sub else self.config).get("ema")
        if ema is not None:
            if not 0 < ema < 1:
                raise ConfigError(f"--ema must be a decay in (0, 1), e.g. 0.999, got {ema!r}")
            from lightning.pytorch.callbacks import EMAWeightAveraging

            user = (list(user) if isinstance(user, list) else [user]) + [EMAWeightAveraging(decay=ema)]
        kwargs["callbacks"] = (list(user) if isinstance(user, list) else [user]) \
            + run_callbacks(root, progress_bar=trainer_cfg.get("enable_progress_bar") is not False) \
            + self.extra_callbacks
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        try:
            return super().instantiate_trainer(**kwargs)
        except (ValueError, TypeError, MisconfigurationException) as e:
            raise ConfigError(f"trainer: {_one_line(str(e))}") from None


#: Defaults = configs/default.yaml's recommendation (see there). bf16-mixed: 2.4x faster than fp32 on CPUs with
#: AVX512-BF16/AMX (and fine on GPUs); on an older CPU pass --precision 32-true.
TRAINER_DEFAULTS = {
    "default_root_dir": DEFAULT_ROOT,
    "max_steps": 6000,
    "precision": "bf16-mixed",
    "gradient_clip_val": 1.0,
    "val_check_interval": 250,
    "check_val_every_n_epoch": None,
    "log_every_n_steps": 10,
    "num_sanity_val_steps": 1,
}


#: Shortcut flag -> LightningCLI argument. ``--flag VALUE`` becomes ``--target VALUE``.
SHORTCUTS = {
    "--data": "--data.data_dir",
    "--tokenizer": "--model.tokenizer",
    "--objective": "--model.objective",
    "--teaforn-n": "--model.teaforn_n",
    "--teaforn-weights": "--model.teaforn_weights",
    "--teaforn-feed": "--model.teaforn_feed",
    "--teaforn-feedback-scale": "--model.teaforn_feedback_scale",
    "--n-layer": "--model.n_layer",
    "--n-head": "--model.n_head",
    "--n-embd": "--model.n_embd",
    "--block-size": "--model.block_size",
    "--dropout": "--model.dropout",
    "--lr": "--model.lr",
    "--min-lr-ratio": "--model.min_lr_ratio",
    "--warmup-steps": "--model.warmup_steps",
    "--lr-decay-steps": "--model.lr_decay_steps",
    "--weight-decay": "--model.weight_decay",
    "--batch-size": "--data.batch_size",
    "--mirror": "--data.mirror_p",
    "--game-start-p": "--data.game_start_p",
    "--val-windows": "--data.val_windows",
    "--num-workers": "--data.num_workers",
    "--max-steps": "--trainer.max_steps",
    "--max-epochs": "--trainer.max_epochs",
    "--val-every": "--trainer.val_check_interval",
    "--grad-clip": "--trainer.gradient_clip_val",
    "--accumulate": "--trainer.accumulate_grad_batches",
    "--devices": "--trainer.devices",
    "--accelerator": "--trainer.accelerator",
    "--strategy": "--trainer.strategy",
    "--num-nodes": "--trainer.num_nodes",
    "--precision": "--trainer.precision",
    "--out": "--trainer.default_root_dir",
    "--seed": "--seed_everything",
    "--ckpt-path": "--ckpt_path",
    "--config": "--config",
    "--threads": "--threads",
    "--ema": "--ema",
    "--init-from": "--model.init_from",
    "--legal-weight": "--model.legal_weight",
    "--legal-loss": "--model.legal_loss",
    "--legal-sets": "--data.legal_sets",
    "--mix": "--data.mix",
    "--legal-only": "--data.legal_only",
    "--lr-schedule": "--model.lr_schedule",
    "--attn-dropout": "--model.attn_dropout",
    "--max-time": "--trainer.max_time",
}

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def shortcut_help() -> str:
    lines = ["usage: python train.py --data DIR [shortcut flags] [--section.key VALUE ...]",
             "       python train.py fit --config configs/small.yaml [--section.key VALUE ...]   (LightningCLI; "
             "see `python train.py fit --help`)", "", "shortcut flags (each maps to one LightningCLI argument):"]
    lines += [f"  {flag:<26} {target}" for flag, target in SHORTCUTS.items()]
    lines += ["", "Arguments already in LightningCLI form (--model.x, --data.x, --trainer.x) pass through unchanged."]
    return "\n".join(lines)


def translate_shortcuts(argv: list[str]) -> list[str]:
    """Shortcut flags -> ``fit`` + LightningCLI arguments (``--flag=value`` and ``--flag value`` both work)."""
    out = ["fit"]
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if flag in SHORTCUTS:
            out.append(SHORTCUTS[flag] + (eq + value if eq else ""))
        elif arg.startswith("--") and "." not in flag and flag not in ("--help", "--print_config") \
                and not flag.startswith("--print_config"):
            raise ConfigError(f"unknown option {flag} (run `python train.py --help` for the shortcut flags)")
        else:
            out.append(arg)
    return out


class _ParseOnly(Exception):
    pass


class _ParseOnlyCLI(XiangqiCLI):
    def _parse_ckpt_path(self) -> None:
        raise _ParseOnly  # parsing succeeded: stop before anything is instantiated


def build_cli(argv: list[str], extra_callbacks: list[Callback] | None = None, run: bool = True,
              parse_only: bool = False) -> XiangqiCLI | None:
    """Parse ``argv`` (after translating shortcut flags) and, with ``run``, run the subcommand."""
    if parse_only:
        try:
            _ParseOnlyCLI(GPTModule, XiangqiDataModule, args=argv, run=run, trainer_defaults=TRAINER_DEFAULTS,
                          seed_everything_default=1337, parser_class=_OneLineParser, auto_configure_optimizers=False)
        except _ParseOnly:
            pass
        return None
    return XiangqiCLI(GPTModule, XiangqiDataModule, args=argv, run=run, trainer_defaults=TRAINER_DEFAULTS,
                      seed_everything_default=1337, save_config_kwargs={"overwrite": True},
                      parser_class=_OneLineParser,
                      auto_configure_optimizers=False, extra_callbacks=extra_callbacks)


def _one_line(message: str) -> str:
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    return lines[0] if lines else "invalid arguments"


def main(argv: list[str] | None = None, extra_callbacks: list[Callback] | None = None) -> int:
    """``train.py`` entry point. User errors: one line on stderr, exit status 2."""
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    import warnings

    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")  # Lightning's own use of jsonargparse
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*IterableDataset. has .__len__. defined.*")
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # the seed is in config.yaml
    try:
        if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
            try:
                print(shortcut_help(), flush=True)
            except BrokenPipeError:   # `train.py --help | head`: the reader left, which is fine
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if not argv or argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help") \
                and not argv[0].startswith("--print_config"):
            argv = translate_shortcuts(argv)
        try:
            build_cli(argv, extra_callbacks=extra_callbacks)
        except ConfigError as e:
            # jsonargparse reports some errors inside a subcommand (a missing required key, a bad union value) only
            # as "unrecognized arguments: fit ...": parse the subcommand's arguments alone to find the real one
            if argv and argv[0] in SUBCOMMANDS and str(e).startswith(f"unrecognized arguments: {argv[0]}"):
                build_cli(argv[1:], run=False, parse_only=True)
            raise
    except XiangqiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ArgumentError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except MisconfigurationException as e:
        print(f"error: trainer configuration: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
