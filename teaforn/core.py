"""Teacher-Forcing with N-grams (TeaForN).

Reference: Sebastian Goodman, Nan Ding, Radu Soricut. "TeaForN: Teacher-Forcing with N-grams." EMNLP 2020.
https://aclanthology.org/2020.emnlp-main.702/

A decoder is split into three callables:

``embed(ids) -> x``     token ids (B, T) -> input vectors (B, T, C)
``decode(x) -> h``      input vectors (B, T, C) -> output vectors (B, T, C), causal; ``h`` is what the head reads
``head(h) -> logits``   output vectors -> logits (B, T, V)

Level 1 is ordinary teacher forcing, ``H1 = decode(embed(x))``. Level k >= 2 runs the *same* decoder again on
``[e_0, h^{(k-1)}_0, ..., h^{(k-1)}_{T-2}]``: the input at position t is level k-1's output vector from position t-1
(the vector fed to the head, not a sampled token) and position 0 keeps its true embedding. Every level predicts the
same targets, so level k at position t has seen the true inputs ``x_0 .. x_{t-k+1}`` only and predicts
``targets[t]`` (= ``x_{t+1}`` for a language model) k steps ahead through k-1 of its own soft outputs. Gradients
flow through the fed-back vectors. Nothing is sampled, so each level is one parallel pass; N levels cost about N
decoder passes in training. Only level 1 is used at inference, at exactly the cost of teacher forcing.

The loss is ``sum_k lambda_k * CE(head(H_k), targets)``.

Warm-up positions: at level k the positions t < k-1 have fewer than k-1 soft steps behind them and merely repeat a
lower level (position 0 always equals level 1, position t < k-1 equals level t+1). With ``mask_warmup=True``
(the default) they are ignored in level k's loss, so level k's loss is purely a k-step-ahead loss and the early
positions are not counted several times. ``mask_warmup=False`` counts every position at every level, as a plain
reading of the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

FEEDS = ("hidden", "expected_embedding")

#: Named schedules for the level weights lambda_1..lambda_N.
SCHEDULES: dict[str, Callable[[int], list[float]]] = {
    "uniform": lambda n: [1.0] * n,  # 1, 1, 1, ...
    "decay": lambda n: [0.5 ** k for k in range(n)],  # 1, 0.5, 0.25, ...
    "mean": lambda n: [1.0 / n] * n,  # 1/N each: the loss is the mean over levels
}

Weights = Union[str, Sequence[float]]
FeedbackTransform = Callable[[Tensor, int], Tensor]


def level_weights(n: int, weights: Weights = "uniform") -> list[float]:
    """Lambda_1..lambda_n from a schedule name (see :data:`SCHEDULES`) or an explicit sequence of n numbers."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"TeaForN needs n >= 1 levels, got {n!r}")
    if isinstance(weights, str):
        if weights not in SCHEDULES:
            raise ValueError(f"unknown TeaForN weight schedule {weights!r} (choose from {', '.join(SCHEDULES)})")
        return SCHEDULES[weights](n)
    out = [float(w) for w in weights]
    if len(out) != n:
        raise ValueError(f"TeaForN with n={n} needs {n} level weights, got {len(out)}: {out}")
    if any(w < 0 for w in out):
        raise ValueError(f"TeaForN level weights must be >= 0, got {out}")
    return out


@dataclass
class TeaForNOutput:
    """``loss``: the weighted total (a scalar with grad). ``level_losses[k-1]``: level k's mean cross-entropy.
    ``level_accuracy[k-1]``: level k's argmax accuracy on the counted positions (no grad).
    ``level_logits[k-1]``: level k's logits (B, T, V) when requested, else empty. ``level_counts[k-1]``: how many
    target positions level k counted."""

    loss: Tensor
    level_losses: list[Tensor]
    level_accuracy: list[Tensor]
    level_counts: list[int]
    level_logits: list[Tensor] = field(default_factory=list)


def _mean_cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int) -> tuple[Tensor, Tensor, int]:
    flat_logits = logits.reshape(-1, logits.size(-1))
    flat_targets = targets.reshape(-1)
    valid = flat_targets != ignore_index
    count = int(valid.sum())
    if count == 0:  # every position ignored (e.g. T too short for this level): contribute zero, keep the graph
        zero = flat_logits.sum() * 0.0
        return zero, zero.detach(), 0
    loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=ignore_index)
    with torch.no_grad():
        acc = (flat_logits.argmax(-1)[valid] == flat_targets[valid]).float().mean()
    return loss, acc, count


def _embedding_matrix(embedding_weight, embed) -> Tensor:
    if embedding_weight is None:
        embedding_weight = getattr(embed, "weight", None)
    if callable(embedding_weight) and not isinstance(embedding_weight, Tensor):
        embedding_weight = embedding_weight()
    if not isinstance(embedding_weight, Tensor) or embedding_weight.dim() != 2:
        raise ValueError("feed='expected_embedding' needs the (vocab, dim) embedding matrix: pass embedding_weight="
                         "(a tensor or a callable returning it), or an embed with a .weight")
    return embedding_weight


def teaforn_loss(embed: Callable[[Tensor], Tensor], decode: Callable[[Tensor], Tensor],
                 head: Callable[[Tensor], Tensor], inputs: Tensor, targets: Tensor, *, n: int = 2,
                 weights: Weights = "uniform", feed: str = "hidden", mask_warmup: bool = True, detach: bool = False,
                 feedback_transform: FeedbackTransform | None = None,
                 embedding_weight: Tensor | Callable[[], Tensor] | None = None, ignore_index: int = -100,
                 return_logits: bool = False) -> TeaForNOutput:
    """TeaForN loss (Goodman et al., EMNLP 2020) for any causal decoder split into ``embed``/``decode``/``head``.

    Args:
        embed: ids (B, T) -> vectors (B, T, C). Position 0's vector is reused at every level.
        decode: vectors (B, T, C) -> output vectors (B, T, C). Must be causal. It is called ``n`` times.
        head: output vectors -> logits (B, T, V).
        inputs: (B, T) token ids.
        targets: (B, T) target ids (``targets[:, t]`` is what position t predicts); ``ignore_index`` is skipped.
        n: number of levels; ``n=1`` is plain teacher forcing (the loss equals ``F.cross_entropy`` exactly).
        weights: a schedule name from :data:`SCHEDULES` (``"uniform"``, ``"decay"``, ``"mean"``) or n numbers.
        feed: ``"hidden"`` feeds back level k-1's output vectors (the paper's choice); ``"expected_embedding"``
            feeds ``softmax(logits^{(k-1)}) @ E`` (an ablation; needs ``embedding_weight`` or ``embed.weight``).
        mask_warmup: ignore positions t < k-1 at level k, which only repeat a lower level (see module docs).
        detach: stop gradients through the fed-back vectors (an ablation; off in the paper).
        feedback_transform: optional ``f(fed, k) -> fed`` applied to the fed-back vectors of level k before they
            are decoded; ``fed`` is (B, T-1, C) and ``fed[:, i]`` becomes the input at position ``i + 1``. Use it for
            a scale, or to re-add position embeddings when ``embed`` adds absolute positions (RoPE needs none).
        embedding_weight: (V, C) embedding matrix, or a callable returning it, for ``feed="expected_embedding"``.
        ignore_index: target value to skip.
        return_logits: also return every level's logits.
    """
    if feed not in FEEDS:
        raise ValueError(f"unknown TeaForN feed {feed!r} (choose from {', '.join(FEEDS)})")
    lambdas = level_weights(n, weights)
    if inputs.dim() != 2 or targets.shape != inputs.shape:
        raise ValueError(f"inputs and targets must both be (B, T), got {tuple(inputs.shape)} and {tuple(targets.shape)}")
    E = _embedding_matrix(embedding_weight, embed) if feed == "expected_embedding" and n > 1 else None

    x = embed(inputs)
    first = x[:, :1]
    h = decode(x)
    logits = head(h)
    total = None
    out = TeaForNOutput(loss=torch.zeros(()), level_losses=[], level_accuracy=[], level_counts=[])
    for k in range(1, n + 1):
        if k > 1:
            if feed == "hidden":
                fed = h[:, :-1]
            else:
                probs = F.softmax(logits[:, :-1].float(), dim=-1)
                fed = (probs @ E.float()).to(first.dtype)
            if detach:
                fed = fed.detach()
            if feedback_transform is not None:
                fed = feedback_transform(fed, k)
            h = decode(torch.cat([first, fed], dim=1))
            logits = head(h)
        level_targets = targets
        if mask_warmup and k > 1:
            level_targets = targets.clone()
            level_targets[:, :k - 1] = ignore_index
        loss_k, acc_k, count_k = _mean_cross_entropy(logits, level_targets, ignore_index)
        term = lambdas[k - 1] * loss_k  # 1.0 * x == x exactly, so n=1 is plain cross-entropy
        total = term if total is None else total + term
        out.level_losses.append(loss_k)
        out.level_accuracy.append(acc_k)
        out.level_counts.append(count_k)
        if return_logits:
            out.level_logits.append(logits)
    out.loss = total
    return out


class TeaForN(nn.Module):
    """TeaForN objective (Goodman, Ding, Soricut, EMNLP 2020) as a module holding its settings.

    ``TeaForN(n=3, weights="decay")(embed, decode, head, inputs, targets) -> TeaForNOutput``; see
    :func:`teaforn_loss` for the arguments. It is an ``nn.Module`` so that a learnable ``feedback_transform``
    (e.g. :class:`FeedbackScale`) is registered and trained with the model that owns this module.
    """

    def __init__(self, n: int = 2, weights: Weights = "uniform", feed: str = "hidden", mask_warmup: bool = True,
                 detach: bool = False, feedback_transform: FeedbackTransform | None = None,
                 ignore_index: int = -100):
        super().__init__()
        if feed not in FEEDS:
            raise ValueError(f"unknown TeaForN feed {feed!r} (choose from {', '.join(FEEDS)})")
        self.n = n
        self.weights = level_weights(n, weights)
        self.feed = feed
        self.mask_warmup = mask_warmup
        self.detach = detach
        self.feedback_transform = feedback_transform
        self.ignore_index = ignore_index

    def forward(self, embed, decode, head, inputs: Tensor, targets: Tensor, *, embedding_weight=None,
                return_logits: bool = False) -> TeaForNOutput:
        return teaforn_loss(embed, decode, head, inputs, targets, n=self.n, weights=self.weights, feed=self.feed,
                            mask_warmup=self.mask_warmup, detach=self.detach,
                            feedback_transform=self.feedback_transform, embedding_weight=embedding_weight,
                            ignore_index=self.ignore_index, return_logits=return_logits)

    def extra_repr(self) -> str:
        return (f"n={self.n}, weights={self.weights}, feed={self.feed!r}, mask_warmup={self.mask_warmup}, "
                f"detach={self.detach}")


class FeedbackScale(nn.Module):
    """A feedback transform multiplying the fed-back vectors by a scalar (learnable by default), one per level.

    The fed-back ``h`` is a final-norm output and may have a different scale from token embeddings."""

    def __init__(self, n: int, init: float = 1.0, learnable: bool = True):
        super().__init__()
        scale = torch.full((max(n - 1, 1),), float(init))
        if learnable:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)

    def forward(self, fed: Tensor, level: int) -> Tensor:
        return fed * self.scale[level - 2].to(fed.dtype)
