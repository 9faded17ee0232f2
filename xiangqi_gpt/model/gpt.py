"""A small GPT over move tokens (nanoGPT style). It knows token ids, never boards.

Main names: :class:`GPT`, :class:`GPTConfig`, :class:`KVCache`. Call ``model.eval()`` before the inference methods.
Design notes: docs/design.md#model-gpt
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..data.tokenizer import BOS, SOURCES, TOKENIZER_NAMES, get_tokenizer

IGNORE_INDEX = -100  # targets with this value are left out of the loss


# --------------------------------------------------------------------------------------------------------------------
# Config


@dataclass
class GPTConfig:
    """Model hyper-parameters. ``vocab_size=None`` takes the tokenizer's size; a larger value pads the table."""

    vocab_size: int | None = None
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    tokenizer: str = "move"
    bias: bool = False
    rope_base: float = 10000.0
    #: dropout on the attention probabilities; None = ``dropout`` (the original recipe). 0 keeps PyTorch's fused
    #: attention kernel on the CPU while residual, MLP and embedding dropout stay on (reported 1.35x faster in bf16 on
    #: an AVX512-BF16 CPU; no difference measured in fp32 on an AVX2-only one).
    attn_dropout: float | None = None
    #: source start tokens the model embeds after the tokenizer's vocabulary (names from ``tokenizer.SOURCES``;
    #: source ``i`` has id ``tokenizer vocab_size + i``). Empty: every game starts with ``<bos>`` (older files).
    sources: tuple = ()
    #: a value output: a linear head from the final vector to the game's result for the side to move (loss, draw,
    #: win), read by :meth:`GPT.value`. False in every file before it (they load unchanged).
    value_head: bool = False

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZER_NAMES:
            raise ConfigError(f"model tokenizer must be one of {', '.join(TOKENIZER_NAMES)}, got {self.tokenizer!r}")
        if self.sources is None:
            self.sources = ()
        if isinstance(self.sources, str) or not isinstance(self.sources, (list, tuple)):
            raise ConfigError(f"model sources must be a list of names from {', '.join(SOURCES)}, got {self.sources!r}")
        self.sources = tuple(self.sources)
        bad = [s for s in self.sources if s not in SOURCES]
        if bad or len(set(self.sources)) != len(self.sources):
            raise ConfigError(f"model sources must be distinct names from {', '.join(SOURCES)}, got "
                              f"{list(self.sources)!r}")
        needed = get_tokenizer(self.tokenizer).vocab_size + len(self.sources)
        if self.vocab_size is None:
            self.vocab_size = needed
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model {name} must be a positive integer, got {value!r}")
        if self.vocab_size < needed:
            raise ConfigError(f"model vocab_size {self.vocab_size} is smaller than the {self.tokenizer} tokenizer's "
                              f"{needed - len(self.sources)} tokens plus {len(self.sources)} source tokens")
        min_block = get_tokenizer(self.tokenizer).tokens_per_move + 1
        if self.block_size < min_block:
            raise ConfigError(f"model block_size must be at least {min_block} tokens (<bos> and one move), "
                              f"got {self.block_size}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"model n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"model head size n_embd/n_head = {self.n_embd // self.n_head} must be even for "
                              f"rotary position embeddings")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"model dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.attn_dropout is not None and (isinstance(self.attn_dropout, bool)
                                              or not isinstance(self.attn_dropout, (int, float))
                                              or not 0 <= self.attn_dropout < 1):
            raise ConfigError(f"model attn_dropout must be null or a number in [0, 1), got {self.attn_dropout!r}")
        if not isinstance(self.value_head, bool):
            raise ConfigError(f"model value_head must be true or false, got {self.value_head!r}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"model bias must be true or false, got {self.bias!r}")
        if not isinstance(self.rope_base, (int, float)) or self.rope_base <= 1:
            raise ConfigError(f"model rope_base must be a number > 1, got {self.rope_base!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sources"] = list(self.sources)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Build from a dict (e.g. a checkpoint's hyper-parameters); unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**d)


# --------------------------------------------------------------------------------------------------------------------
# Layers


def rope_tables(n_positions: int, head_size: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin tables, each (n_positions, head_size // 2)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
    angles = torch.outer(torch.arange(n_positions, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[..., i], x[..., i + D/2]) of x (B, H, T, D) by the angles of each position (T, D/2)."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.dropout = config.dropout if config.attn_dropout is None else config.attn_dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, past: tuple[Tensor, Tensor] | None = None,
                mask: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, T, C); cos/sin (T, D/2) for the positions of x; ``past`` keys/values (B, H, L, D) of earlier tokens;
        ``mask`` (T, L + T) booleans, True = may attend. Without past or mask attention is causal over x.
        Returns the output and the keys/values of x (rotated), for a cache."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new_kv = (k, v)
        if past is not None:
            k = torch.cat([past[0].expand(B, -1, -1, -1), k], dim=2)
            v = torch.cat([past[1].expand(B, -1, -1, -1), v], dim=2)
        if past is not None and mask is None and T > 1:
            raise ValueError("attention over a cache with several new tokens needs an explicit mask")
        is_causal = past is None and mask is None and T > 1
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y)), new_kv


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, past=None, mask=None):
        a, kv = self.attn(self.ln_1(x), cos, sin, past, mask)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, kv


# --------------------------------------------------------------------------------------------------------------------
# Mirror ensemble: the weight and the mixture


def check_mirror_weight(weight) -> float:
    """``weight`` as a float in [0, 1), else a one-line :class:`ConfigError`."""
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise ConfigError(f"mirror ensemble weight must be a number in [0, 1), got {weight!r}") from None
    if not 0.0 <= w < 1.0:
        raise ConfigError(f"mirror ensemble weight must lie in [0, 1), got {w}")
    return w


def mix_logprobs(logp: Tensor, other: Tensor, weight: float) -> Tensor:
    """log((1 - weight) P + weight P'), both given as log-probabilities over the same ids (weight 0: ``logp``,
    1: ``other``)."""
    if weight <= 0:
        return logp
    if weight >= 1:
        return other
    return torch.logaddexp(logp + math.log(1.0 - weight), other + math.log(weight))


# --------------------------------------------------------------------------------------------------------------------
# Candidate trees


def candidate_tree(candidates: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[list[int]]]:
    """The proper prefixes of candidate token sequences as a trie, for :meth:`GPT.tree_logprobs`: returns
    ``(tokens, parents, nodes)``, one node per distinct prefix (its last token and its parent node, -1 for a
    one-token prefix) and, per candidate ``c``, ``nodes[c]`` = the nodes of its prefixes of length 1 ..
    ``len(c) - 1`` (the node whose row predicts the candidate's token ``j + 1`` is ``nodes[c][j]``)."""
    index: dict[tuple[int, ...], int] = {}
    tokens: list[int] = []
    parents: list[int] = []
    nodes: list[list[int]] = []
    for c in candidates:
        c = [int(t) for t in c]
        path: list[int] = []
        for j in range(len(c) - 1):
            key = tuple(c[:j + 1])
            q = index.get(key)
            if q is None:
                q = index[key] = len(tokens)
                tokens.append(c[j])
                parents.append(path[-1] if path else -1)
            path.append(q)
        nodes.append(path)
    return tokens, parents, nodes


# --------------------------------------------------------------------------------------------------------------------
# KV cache


class KVCache:
    """Keys and values of the tokens fed so far, per layer, each (B, n_head, length, head_size).

    For batch-1 histories it also remembers which tokens it holds (``tokens``), where they start in the history
    (``start``) and the logits after the last one, so that :meth:`GPT.next_logprobs` and
    :meth:`GPT.score_candidates` can extend it instead of recomputing a history that only grew."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.length = 0
        self.tokens: list[int] = []
        self.start = 0
        self.last_logits: Tensor | None = None
        self.mirror: KVCache | None = None     # the mirrored history's cache (mirror ensemble), made when needed

    def past(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """Layer ``layer``'s cached (keys, values), or None while the cache is empty."""
        return (self.keys[layer], self.values[layer]) if self.length else None

    def append(self, new_kv: list[tuple[Tensor, Tensor]]) -> None:
        """Extend every layer by the keys/values of new tokens (one (keys, values) pair per layer, as
        :meth:`GPT.forward_tokens` returns them). The tensors held so far are never modified in place."""
        if not self.length:
            self.keys = [k for k, _ in new_kv]
            self.values = [v for _, v in new_kv]
        else:
            self.keys = [torch.cat([old, k], dim=2) for old, (k, _) in zip(self.keys, new_kv)]
            self.values = [torch.cat([old, v], dim=2) for old, (_, v) in zip(self.values, new_kv)]
        self.length = self.keys[0].size(2)

    def fork(self) -> "KVCache":
        """A copy that can be extended or cleared without touching this cache (its mirror cache, if any, is forked
        too). The key/value tensors are shared, not copied: no method modifies them in place."""
        other = KVCache()
        other.keys, other.values = list(self.keys), list(self.values)
        other.length, other.start = self.length, self.start
        other.tokens, other.last_logits = list(self.tokens), self.last_logits
        other.mirror = self.mirror.fork() if self.mirror is not None else None
        return other

    def __repr__(self) -> str:
        return f"KVCache(length={self.length}, start={self.start})"


# --------------------------------------------------------------------------------------------------------------------
# Model


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying
        #: (optional) final vector -> logits of the result for the side to move: loss, draw, win
        self.value_head = nn.Linear(config.n_embd, 3) if config.value_head else None
        cos, sin = rope_tables(config.block_size, config.head_size, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        #: how far (in tokens) the context window jumps once a history outgrows block_size; see the module docs
        self.window_hop = max(1, config.block_size // 8)
        #: positions kept free after a history's window: room for the tokens of one move
        self.context_reserve = get_tokenizer(config.tokenizer).tokens_per_move - 1
        #: logits cover the tokenizer's vocabulary only: source tokens and padding rows are inputs, never outputs
        self.n_out = get_tokenizer(config.tokenizer).vocab_size
        #: weight of the mirrored view at inference (see the module docs); 0 = the plain model
        self.mirror_weight = 0.0
        self._mirror_table: list[int] | None = None
        self._mirror_index: Tensor | None = None
        self._mirror_ids: Tensor | None = None
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections, scaled as in GPT-2
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, exclude_embedding: bool = False) -> int:
        """Number of parameters (the tied embedding/head matrix counted once)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_emb.weight.numel() if exclude_embedding else n

    @property
    def tokenizer(self):
        return get_tokenizer(self.config.tokenizer)

    # -- the three pieces TeaForN needs ------------------------------------------------------------------------------

    def embed(self, idx: Tensor) -> Tensor:
        """Token ids (B, T) -> input vectors (B, T, C). No positions: RoPE applies them inside attention."""
        return self.drop(self.tok_emb(idx))

    def decode(self, x: Tensor) -> Tensor:
        """Input vectors (B, T, C), positions 0..T-1 -> final-norm output vectors (B, T, C), causally."""
        self._check_length(x.size(1))
        h, _ = self._run(x, self.rope_cos[:x.size(1)], self.rope_sin[:x.size(1)])
        return h

    def decode_with_layer(self, x: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        """:meth:`decode`, also returning the residual stream after block ``layer`` (1..n_layer; before any norm),
        (B, T, C): what an auxiliary training head reads, such as the training module's board-state head."""
        if not 1 <= layer <= self.config.n_layer:
            raise ValueError(f"layer must lie in 1..{self.config.n_layer}, got {layer}")
        self._check_length(x.size(1))
        taps: list[Tensor] = []
        h, _ = self._run(x, self.rope_cos[:x.size(1)], self.rope_sin[:x.size(1)], taps=taps)
        return h, taps[layer - 1]

    def head(self, h: Tensor) -> Tensor:
        """Output vectors -> logits over the tokenizer's vocabulary (``n_out`` ids: never a source token or a
        padding row, which only the input embedding has)."""
        if self.n_out == self.config.vocab_size:
            return self.lm_head(h)
        return F.linear(h, self.lm_head.weight[:self.n_out])

    def value(self, h: Tensor) -> Tensor:
        """Output vectors (..., C) -> the expected score (float32, (...)) of the side to move in each position,
        P(win) + P(draw) / 2 of the value head (the position after the vector's token: after an odd number of
        moves Black is to move). ValueError if the model has no value head (``config.value_head``)."""
        if self.value_head is None:
            raise ValueError("this model has no value head (config.value_head is false)")
        p = F.softmax(self.value_head(h).float(), dim=-1)
        return p[..., 2] + 0.5 * p[..., 1]

    def start_id(self, source: str | None = None) -> int:
        """The token a game starts with when the model is asked in the condition ``source`` (a name from
        ``tokenizer.SOURCES``, e.g. ``"master"`` or ``"engine"``): that source's token if this model has it, else
        ``<bos>`` (models trained before source tokens, or a source the model never saw)."""
        if source is not None and source in self.config.sources:
            return self.n_out + self.config.sources.index(source)
        return BOS

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) for every position, and the mean cross-entropy if ``targets`` (B, T) are given
        (``IGNORE_INDEX`` = -100 is skipped)."""
        logits = self.head(self.decode(self.embed(idx)))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        return logits, loss

    def forward_tokens(self, idx: Tensor, positions: Tensor | None = None, cache: KVCache | None = None,
                       mask: Tensor | None = None) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Low-level pass for callers that lay out their own sequences (batched evaluation, tree search):
        token ids ``idx`` (B, T) at rotary ``positions`` after the keys/values that ``cache`` holds.

        ``positions``: (T,) integer tensor, each < block_size; default ``L, L+1, .., L+T-1`` where L is the cache
        length (0 without a cache). ``cache``: earlier tokens' keys/values, batch 1 (shared by all B rows) or B; it
        is read, never modified. ``mask``: (T, L + T) booleans, True = may attend (row i: new token i; columns:
        the L cached tokens, then the T new ones); default causal (every cached token, and the new tokens up to
        itself).

        Returns the final-norm output vectors (B, T, C) (logits are :meth:`head` of them, so a caller can take
        only the rows it needs) and each layer's keys/values of the new tokens, rotated, (B, n_head, T,
        head_size): ``cache.append(kv)`` extends a cache by them. Gradients follow the caller's mode (the other
        inference methods switch to ``torch.inference_mode``; this one does not). With no cache, no mask and
        default positions it is :meth:`decode` of :meth:`embed`."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.rope_cos.device)
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(f"forward_tokens needs token ids of shape (batch, time >= 1), got {tuple(idx.shape)}")
        T = idx.size(1)
        L = cache.length if cache is not None else 0
        if positions is None:
            self._check_length(L + T)
            cos, sin = self.rope_cos[L:L + T], self.rope_sin[L:L + T]
        else:
            positions = torch.as_tensor(positions, dtype=torch.long, device=self.rope_cos.device)
            if positions.shape != (T,):
                raise ValueError(f"positions must have shape ({T},), got {tuple(positions.shape)}")
            if int(positions.min()) < 0 or int(positions.max()) >= self.config.block_size:
                raise ValueError(f"positions must lie in 0..{self.config.block_size - 1}, got "
                                 f"{int(positions.min())}..{int(positions.max())}")
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        if mask is None and L and T > 1:
            mask = torch.ones(T, L + T, dtype=torch.bool, device=idx.device).tril(diagonal=L)
        elif mask is not None and mask.shape[-2:] != (T, L + T):
            raise ValueError(f"mask must have shape ({T}, {L + T}) for {T} new tokens after {L} cached ones, "
                             f"got {tuple(mask.shape)}")
        return self._run(self.embed(idx), cos, sin, cache if L else None, mask)

    def _run(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None = None, mask: Tensor | None = None,
             taps: list | None = None):
        """Blocks + final norm; returns the output vectors and each layer's new keys/values (and appends each
        block's output to ``taps`` if given)."""
        new_kv = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, cache.past(i) if cache is not None else None, mask)
            new_kv.append(kv)
            if taps is not None:
                taps.append(x)
        return self.ln_f(x), new_kv

    def _check_length(self, t: int) -> None:
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than the model's block_size {self.config.block_size}")

    def optim_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for AdamW: matrices decay, norms/biases do not (nanoGPT's rule)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]

    # -- inference ---------------------------------------------------------------------------------------------------

    def _as_ids(self, ids) -> Tensor:
        """list[int] / (T,) / (B, T) -> LongTensor (B, T) on the model's device, range-checked."""
        t = torch.as_tensor(ids, dtype=torch.long, device=self.rope_cos.device)
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if t.dim() != 2:
            raise ValueError(f"token ids must be 1-D or (batch, time), got shape {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.config.vocab_size - 1}, got {int(t.min())}..{int(t.max())}")
        return t

    @torch.inference_mode()
    def prefill(self, idx, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """Feed tokens (list, (T,) or (B, T)) after whatever ``cache`` holds (a new cache if None).

        Returns the logits after the last token, (B, V), and the extended cache. The cache plus the new tokens
        must fit in ``block_size``; use :meth:`context_start` / :meth:`next_logprobs` for longer histories."""
        idx = self._as_ids(idx)
        cache = KVCache() if cache is None else cache
        B, T = idx.shape
        if T == 0:
            raise ValueError("prefill needs at least one token")
        L = cache.length
        self._check_length(L + T)
        mask = None
        if L and T > 1:  # new tokens see the whole cache and the new tokens up to themselves
            mask = torch.ones(T, L + T, dtype=torch.bool, device=idx.device).tril(diagonal=L)
        h, new_kv = self._run(self.embed(idx), self.rope_cos[L:L + T], self.rope_sin[L:L + T], cache, mask)
        cache.append(new_kv)
        if B == 1:
            cache.tokens.extend(idx[0].tolist())
        cache.last_logits = self.head(h[:, -1])
        return cache.last_logits, cache

    def step(self, cache: KVCache, next_id) -> Tensor:
        """Feed one token per sequence (an int, or (B,)) after the cache; returns the next logits (B, V)."""
        ids = self._as_ids([[next_id]] if isinstance(next_id, int) else torch.as_tensor(next_id).reshape(-1, 1))
        return self.prefill(ids, cache)[0]

    def context_start(self, n_tokens: int, reserve: int = 0) -> int:
        """Index where the context window of an ``n_tokens`` history starts. The window leaves
        ``max(reserve, context_reserve)`` positions free for tokens fed after it (a candidate's own tokens; by
        default one move's worth), so every method agrees on the windows. See the module docs."""
        reserve = max(reserve, self.context_reserve)
        max_ctx = self.config.block_size - reserve
        if max_ctx < 1:
            raise ValueError(f"cannot reserve {reserve} of block_size {self.config.block_size} positions")
        if n_tokens <= max_ctx:
            return 0
        hop = min(self.window_hop, max_ctx)
        return -(-(n_tokens - max_ctx) // hop) * hop

    def _history_logits(self, history_ids: Sequence[int], reserve: int, cache: KVCache | None) -> tuple[Tensor, KVCache]:
        """Logits (V,) after the history's context window, reusing ``cache`` when it holds a prefix of the window."""
        history = [int(i) for i in history_ids]
        if not history:
            raise ValueError("history must hold at least one token (a game starts with <bos>)")
        start = self.context_start(len(history), reserve)
        window = history[start:]
        # A cache serves any window that starts with its tokens (it holds them at positions 0..length-1).
        if (cache is not None and cache.length and cache.length <= len(window)
                and cache.keys[0].size(0) == 1 and cache.tokens == window[:cache.length]):
            cache.start = start
            rest = window[cache.length:]
            logits = self.prefill(rest, cache)[0] if rest else cache.last_logits
            return logits[0], cache
        cache = KVCache() if cache is None else cache
        cache.clear()
        cache.start = start
        logits, cache = self.prefill(window, cache)
        return logits[0], cache

    @torch.inference_mode()
    def next_logprobs(self, history_ids: Sequence[int], cache: KVCache | None = None) -> Tensor:
        """Log-probabilities (V,) float32 of the token after the history (which starts with <bos>).

        ``cache`` (optional, e.g. one :class:`KVCache` per game) is updated in place and reused by the next call
        whose history extends this one; results are the same with or without it."""
        return self.history_logprobs(history_ids, 0, cache)

    @torch.inference_mode()
    def history_logprobs(self, history_ids: Sequence[int], reserve: int = 0, cache: KVCache | None = None) -> Tensor:
        """Log-probabilities (V,) float32 of the token after the history's context window, the window leaving
        ``reserve`` positions free (:meth:`context_start`) for tokens a caller feeds after it, e.g. a tree of
        continuations through :meth:`tree_logprobs` with ``cache``. ``reserve=0`` is :meth:`next_logprobs`.

        ``cache`` is updated in place to hold the window (reused when it holds a prefix of it). With the mirror
        ensemble on, the mirrored history runs in ``cache.mirror`` (made when needed) and the two are mixed."""
        logits, _ = self._history_logits(history_ids, reserve, cache)
        logp = F.log_softmax(logits.float(), dim=-1)
        if not self.mirror_weight:
            return logp
        if cache is not None and cache.mirror is None:
            cache.mirror = KVCache()
        mirrored, _ = self._history_logits(self.mirror_ids(history_ids), reserve,
                                           cache.mirror if cache is not None else None)
        return self.mirror_mix(logp, F.log_softmax(mirrored.float(), dim=-1))

    # -- mirror ensemble ---------------------------------------------------------------------------------------------

    def set_mirror_ensemble(self, weight: float) -> None:
        """Read the policy as ``(1 - weight)`` x the model + ``weight`` x the model on the mirrored game (module docs).
        ``weight`` in [0, 1); 0 turns it off. Move tokenizer only."""
        weight = check_mirror_weight(weight)
        tok = self.tokenizer
        if weight and tok.tokens_per_move != 1:
            raise ConfigError(f"the mirror ensemble needs the move tokenizer, this model uses {tok.name!r}")
        table = list(tok.mirror_table) + list(range(len(tok.mirror_table), self.config.vocab_size))
        sources = self.config.sources
        if "master" in sources and "mirror" in sources:  # the mirrored view of a master game has its own token
            a, b = self.start_id("master"), self.start_id("mirror")
            table[a], table[b] = b, a
        self._mirror_table = table
        self._mirror_ids = torch.tensor(table, dtype=torch.long, device=self.rope_cos.device)
        self._mirror_index = self._mirror_ids[:self.n_out].clone()  # over output ids (logits)
        self.mirror_weight = weight

    def mirror_ids(self, ids):
        """The token ids of the mirrored game (a permutation; needs :meth:`set_mirror_ensemble` first): a list for
        a sequence of ints, a tensor of the same shape for a tensor."""
        table = self._mirror_table
        if table is None:
            raise ValueError("mirror_ids needs set_mirror_ensemble first")
        if isinstance(ids, Tensor):
            return self._mirror_ids.to(ids.device)[ids]
        return [table[int(i)] for i in ids]

    def mirror_mix(self, logp: Tensor, logp_mirrored: Tensor) -> Tensor:
        """log((1 - w) P + w P'), with ``logp`` (..., V) the log-probabilities after a history and ``logp_mirrored``
        those after the mirrored history (over mirrored ids; mapped back here). Returns ``logp`` when w = 0."""
        if not self.mirror_weight:
            return logp
        back = logp_mirrored.index_select(-1, self._mirror_index.to(logp_mirrored.device))
        return mix_logprobs(logp, back, self.mirror_weight)

    @torch.inference_mode()
    def score_candidates(self, history_ids: Sequence[int], candidates: Sequence[Sequence[int]],
                         cache: KVCache | None = None) -> Tensor:
        """Summed log-probability (float32, shape (N,)) of each candidate token sequence following the history.

        One batched call. The history is run once (or taken from ``cache``, see :meth:`next_logprobs`). The
        candidates' proper prefixes form a trie (:func:`candidate_tree`; char moves share their from-square, so 40
        four-token moves need about 60 nodes, not 120), scored in one :meth:`tree_logprobs` call after the cached
        history. Candidates may differ in length (a move is 1 token for the move tokenizer, 4 for char). Scores
        are the plain model's: the mirror ensemble (move tokenizer only) is not mixed in here; with it,
        :meth:`next_logprobs` gives every move's mixed score at once."""
        if len(candidates) == 0:
            return torch.empty(0)
        cands = [[int(t) for t in c] for c in candidates]
        if min(len(c) for c in cands) == 0:
            raise ValueError("every candidate needs at least one token")
        self._as_ids([t for c in cands for t in c])  # range check
        depth_needed = max(len(c) for c in cands) - 1
        logits, cache = self._history_logits(history_ids, depth_needed, cache)
        device = logits.device
        scores = F.log_softmax(logits.float(), dim=-1)[torch.tensor([c[0] for c in cands], device=device)]
        if depth_needed == 0:
            return scores
        tokens, parents, nodes = candidate_tree(cands)
        logp = self.tree_logprobs(cache, tokens, parents, mirror=False)        # (n_nodes, V)
        read_cand = [ci for ci, c in enumerate(cands) for _ in c[1:]]
        read_node = [q for ns in nodes for q in ns]
        read_tok = [t for c in cands for t in c[1:]]
        later = logp[torch.tensor(read_node, device=device), torch.tensor(read_tok, device=device)]
        return scores.index_add(0, torch.tensor(read_cand, device=device), later)

    @torch.inference_mode()
    def tree_logprobs(self, cache: KVCache, tokens: Sequence[int], parents: Sequence[int],
                      context: Sequence[int] | None = None, rows: Sequence[int] | None = None,
                      mirror: bool = True, values: bool = False):
        """Log-probabilities (float32, (N, V), or (len(rows), V)) of the token after each node of a tree of
        continuations of the history held in ``cache`` (batch 1): one model call for the whole tree.

        Node i holds token ``tokens[i]``; ``parents[i]`` is its parent node (an earlier index), or -1 for a root,
        which directly follows the history. All nodes are fed as one flat sequence after the cache, with an
        attention mask letting each node see the history, its ancestors and itself only, at the rotary position
        it would have in its own sequence; so each row is what a plain forward pass over the history and the
        node's path gives. The history's keys/values are shared by all nodes, never copied, and the cache is not
        modified.

        ``context``: per node, how many of the cache's first tokens its tree follows (only the roots' entries are
        read; a node inherits its root's). Several positions of one game can so be scored in one call after the
        cache of their common window. Default: the whole cache. ``rows``: the nodes whose log-probabilities are
        wanted (default all, in order).

        Mirror ensemble: when it is on and ``mirror`` is True, the tree runs a second time, on the mirrored tokens
        after ``cache.mirror`` (the mirrored history, as :meth:`history_logprobs` leaves it), and the two are
        mixed as in :meth:`next_logprobs`. ``mirror=False`` gives the plain model.

        ``values=True`` (a model with a value head): returns ``(logp, value)``, ``value`` the expected score
        (:meth:`value`) of the side to move after each wanted node, from the same call (with the mirror ensemble,
        the two views' values mixed with the same weight). ValueError (from :meth:`value`) if it has none."""
        n = len(tokens)
        if n == 0 or len(parents) != n:
            raise ValueError(f"a tree needs at least one node and one parent per token, got {n} tokens and "
                             f"{len(parents)} parents")
        if cache.length and cache.keys[0].size(0) != 1:
            raise ValueError("tree_logprobs needs a batch-1 cache")
        L = cache.length
        ctx, depth, rows_m, cols_m = [], [], [], []
        ancestors: list[list[int]] = []
        for i, parent in enumerate(parents):
            parent = int(parent)
            if parent < 0:
                c = L if context is None else int(context[i])
                if not 0 <= c <= L:
                    raise ValueError(f"a root's context must lie in 0..{L} (the cache length), got {c}")
                ctx.append(c)
                depth.append(0)
                ancestors.append([i])
            elif parent < i:
                ctx.append(ctx[parent])
                depth.append(depth[parent] + 1)
                ancestors.append(ancestors[parent] + [i])
            else:
                raise ValueError(f"node {i}'s parent must be an earlier node or -1, got {parent}")
            rows_m.extend([i] * len(ancestors[i]))
            cols_m.extend(L + a for a in ancestors[i])
        pos = [c + d for c, d in zip(ctx, depth)]
        if max(pos) >= self.config.block_size:
            raise ValueError(f"the tree reaches position {max(pos)}, beyond the model's block_size "
                             f"{self.config.block_size}")
        tokens = [int(t) for t in tokens]
        if min(tokens) < 0 or max(tokens) >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in 0..{self.config.vocab_size - 1}, got {min(tokens)}..{max(tokens)}")
        device = self.rope_cos.device
        ids = torch.tensor([tokens], device=device)
        if context is None:
            mask = torch.zeros(n, L + n, dtype=torch.bool, device=device)
            mask[:, :L] = True
        else:
            mask = torch.arange(L + n, device=device)[None, :] < torch.tensor(ctx, device=device)[:, None]
        mask[torch.tensor(rows_m, device=device), torch.tensor(cols_m, device=device)] = True
        pos_t = torch.tensor(pos, device=device)
        cos, sin = self.rope_cos[pos_t], self.rope_sin[pos_t]
        if rows is None:
            pick = slice(None)
        elif isinstance(rows, range) and rows.step == 1 and 0 <= rows.start <= rows.stop <= n:
            pick = slice(rows.start, rows.stop)
        else:
            pick = torch.tensor(list(rows), dtype=torch.long, device=device)

        def run(feed: Tensor, history: KVCache) -> tuple[Tensor, Tensor | None]:
            h, _ = self._run(self.embed(feed), cos, sin, history if history.length else None, mask)
            h = h[0, pick]
            return F.log_softmax(self.head(h).float(), dim=-1), (self.value(h) if values else None)

        logp, value = run(ids, cache)
        if mirror and self.mirror_weight:
            if cache.mirror is None or cache.mirror.length != L:
                raise ValueError("the mirror ensemble needs the mirrored history in cache.mirror "
                                 "(history_logprobs with this cache makes it)")
            logp_m, value_m = run(self.mirror_ids(ids), cache.mirror)
            logp = self.mirror_mix(logp, logp_m)
            if values:
                value = (1.0 - self.mirror_weight) * value + self.mirror_weight * value_m
        return (logp, value) if values else logp

    @torch.inference_mode()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Sample ``max_new_tokens`` tokens after ``idx`` (list, (T,) or (B, T)); returns (B, T + max_new_tokens).

        ``temperature=0`` is greedy. Uses a KV cache; histories longer than block_size follow the window rule of
        the module docs, so each token is drawn from exactly what a forward pass over its window gives."""
        seq = self._as_ids(idx)
        if seq.size(1) == 0:
            raise ValueError("generate needs at least one token to start from")
        views = [seq] if not self.mirror_weight else [seq, self.mirror_ids(seq)]
        caches = [KVCache() for _ in views]
        logits = []
        for view, cache in zip(views, caches):
            cache.start = self.context_start(seq.size(1))
            logits.append(self.prefill(view[:, cache.start:], cache)[0])
        for i in range(max_new_tokens):
            mixed = logits[0] if len(views) == 1 else self.mirror_mix(
                F.log_softmax(logits[0].float(), dim=-1), F.log_softmax(logits[1].float(), dim=-1))
            next_id = self._sample(mixed, temperature, top_k, generator)
            feeds = [next_id] if len(views) == 1 else [next_id, self.mirror_ids(next_id)]
            seq = torch.cat([seq, next_id[:, None]], dim=1)
            views = [torch.cat([v, f[:, None]], dim=1) for v, f in zip(views, feeds)]
            if i == max_new_tokens - 1:
                break
            start = self.context_start(seq.size(1))
            for j, (view, cache, feed) in enumerate(zip(views, caches, feeds)):
                if start == cache.start:
                    logits[j] = self.step(cache, feed)
                else:  # the window jumped: rebuild the cache over the new window
                    cache.clear()
                    cache.start = start
                    logits[j], _ = self.prefill(view[:, start:], cache)
        return seq

    @torch.inference_mode()
    def greedy_continuations(self, history_ids: Sequence[int], ends: Sequence[int], steps: int) -> list[list[int]]:
        """Greedy ``steps`` tokens after each prefix ``history_ids[:n]`` for n in ``ends``, all prefixes at once:
        the same tokens as ``generate(history_ids[:n], steps, temperature=0)`` for each. Every prefix and its
        continuation must fit in the first context window (``context_start(n + steps - 1) == 0``).

        The history is run once; then each step feeds the last token of every continuation as one flat sequence
        whose mask lets it see its own prefix and its own earlier tokens only. With the mirror ensemble on, the
        mirrored history runs beside it, fed the mirrored tokens, and each step takes the argmax of the mixture."""
        ns = [int(n) for n in ends]
        if not ns or steps < 1:
            return [[] for _ in ns]
        history = [int(i) for i in history_ids]
        if min(ns) < 1 or max(ns) > len(history):
            raise ValueError(f"every prefix length must lie in 1..{len(history)} (the history), got {min(ns)}.."
                             f"{max(ns)}")
        if self.context_start(max(ns) + steps - 1) != 0:
            raise ValueError(f"a prefix of {max(ns)} tokens and {steps} more do not fit in the first context window")
        self._as_ids(history)  # range check
        device = self.rope_cos.device
        L, P = max(ns), len(ns)
        views = [history] if not self.mirror_weight else [history, self.mirror_ids(history)]
        n_t = torch.tensor(ns, device=device)

        def pick(hs):            # the next token of every continuation from each view's final vectors
            if len(hs) == 1:
                return self.head(hs[0]).float().argmax(dim=-1)
            lps = [F.log_softmax(self.head(h).float(), dim=-1) for h in hs]
            return self.mirror_mix(lps[0], lps[1]).argmax(dim=-1)

        caches, hs = [], []
        for view in views:
            h, kv = self.forward_tokens(torch.tensor([view[:L]], device=device))
            cache = KVCache()
            cache.append(kv)
            caches.append(cache)
            hs.append(h[0, n_t - 1])
        tok = pick(hs)                                                     # (P,) first generated tokens
        out = [tok]
        row = torch.arange(P, device=device)
        hist_mask = torch.arange(L, device=device)[None, :] < n_t[:, None]  # (P, L)
        for t in range(1, steps):
            prev = P * (t - 1)                       # generated tokens already cached, P per earlier step
            mask = torch.zeros(P, L + prev + P, dtype=torch.bool, device=device)
            mask[:, :L] = hist_mask
            for s in range(t):                       # earlier steps' tokens and itself: same continuation only
                mask[row, L + s * P + row] = True
            pos = n_t + t - 1
            feeds = [tok] if len(views) == 1 else [tok, self.mirror_ids(tok)]
            hs = []
            for feed, cache in zip(feeds, caches):
                h, new_kv = self._run(self.embed(feed[None, :]), self.rope_cos[pos], self.rope_sin[pos], cache, mask)
                cache.append(new_kv)
                hs.append(h[0])
            tok = pick(hs)
            out.append(tok)
        return torch.stack(out, dim=1).tolist()

    @staticmethod
    def _sample(logits: Tensor, temperature: float, top_k: int | None, generator) -> Tensor:
        logits = logits.float()
        if temperature <= 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
