"""The model as a player: board -> move, restricted to legal moves.

Main name: :class:`GPTPlayer` (:meth:`~GPTPlayer.choose`, :meth:`~GPTPlayer.move_probs`,
:meth:`~GPTPlayer.raw_move`).
Design notes: docs/design.md#play-player
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..rules.board import Board, Move
from ..errors import ConfigError, IllegalMoveError
from ..rules.notation import is_legal_text
from ..data.tokenizer import DEFAULT_SOURCE, resolve_style

if TYPE_CHECKING:  # torch is imported by whoever builds the LoadedModel
    from ..model.checkpoint import LoadedModel


@dataclass
class _Scores:
    key: tuple
    moves: list[Move]
    scores: list[float]          # model log-probabilities of the legal moves (not renormalised)
    logprobs: object = None      # move tokenizer: the full next-token log-probabilities (a tensor)


class GPTPlayer:
    """Chooses legal moves with a GPT. See the module docs."""

    def __init__(self, loaded: "LoadedModel", temperature: float = 0.0, seed: int | None = None,
                 safety: bool = False, style: str | None = None):
        from ..model.gpt import KVCache

        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
            raise ConfigError(f"temperature must be a number >= 0, got {temperature!r}")
        self.loaded = loaded
        self.model = loaded.model
        self.model.eval()
        self.tokenizer = loaded.tokenizer
        self.temperature = float(temperature)
        self.safety = bool(safety)
        #: the condition the model is asked in (a source name, see ``tokenizer.STYLES``); None: the model's default
        self.source = resolve_style(style) or DEFAULT_SOURCE
        self.seed = seed
        self.rng = random.Random(seed)
        self._cache = KVCache()        # history cache for scoring the legal moves
        self._raw_cache = KVCache()    # history cache for greedy decoding (char tokenizer)
        self._last: _Scores | None = None
        self._last_raw: tuple[tuple, str] | None = None

    @classmethod
    def load(cls, checkpoint: str | None = None, temperature: float = 0.0, seed: int | None = None,
             style: str | None = None) -> "GPTPlayer":
        """A player for the model file ``checkpoint`` (``None``: the shipped default), asking in ``style``."""
        from ..model.checkpoint import load_model

        return cls(load_model(checkpoint), temperature=temperature, seed=seed, style=style)

    def __repr__(self) -> str:
        return f"GPTPlayer(tokenizer={self.tokenizer.name!r}, temperature={self.temperature}, seed={self.seed})"

    # ---- model input -------------------------------------------------------------------------------------------

    def history_ids(self, board: Board) -> list[int]:
        """The start token of the player's condition (``<bos>`` for a model without source tokens) and the tokens of
        the moves since the board's root position."""
        return [self.model.start_id(self.source)] + self.tokenizer.encode_moves([m.iccs() for m in board.move_stack])

    @staticmethod
    def _key(board: Board) -> tuple:
        return board.root_fen(), tuple(board.move_stack)

    def _score(self, board: Board) -> _Scores:
        key = self._key(board)
        if self._last is not None and self._last.key == key:
            return self._last
        moves = board.legal_moves()
        history = self.history_ids(board)
        logprobs = None
        if not moves:
            scores = []
        elif self.tokenizer.tokens_per_move == 1:
            logprobs = self.model.next_logprobs(history, self._cache)
            ids = [self.tokenizer.move_id(m.iccs()) for m in moves]
            scores = logprobs[ids].tolist()
        else:
            candidates = [self.tokenizer.move_ids(m.iccs()) for m in moves]
            scores = self.model.score_candidates(history, candidates, self._cache).tolist()
        self._last = _Scores(key, moves, scores, logprobs)
        return self._last

    # ---- the contract ------------------------------------------------------------------------------------------

    def move_logprobs(self, board: Board) -> list[tuple[Move, float]]:
        """Every legal move with the model's (unnormalised) log-probability of it, in legal-move order."""
        s = self._score(board)
        return list(zip(s.moves, s.scores))

    def move_probs(self, board: Board) -> list[tuple[Move, float]]:
        """Every legal move with its probability renormalised over the legal moves, best first."""
        s = self._score(board)
        probs = _softmax(s.scores, 1.0)
        order = sorted(range(len(s.moves)), key=lambda i: -probs[i])
        return [(s.moves[i], probs[i]) for i in order]

    def choose(self, board: Board, temperature: float | None = None) -> Move:
        """A legal move: the model's best at temperature 0, else sampled from ``softmax(scores / temperature)``.
        ``temperature`` overrides the player's for this call. Raises IllegalMoveError when there is no legal move."""
        t = self.temperature if temperature is None else temperature
        s = self._score(board)
        if not s.moves:
            raise IllegalMoveError(f"no legal move in {board.fen()}")
        scores = _safety_scores(board, s.moves, s.scores) if self.safety else s.scores
        if not all(math.isfinite(x) for x in scores):
            warnings.warn("the model gave non-finite scores; the move is chosen among the legal moves by the "
                          "finite scores only", RuntimeWarning, stacklevel=2)
            scores = [x if math.isfinite(x) else -1e30 for x in scores]
        if t <= 0:
            best = max(range(len(s.moves)), key=lambda i: scores[i])   # first of equals: deterministic
            return s.moves[best]
        probs = _softmax(scores, t)
        r = self.rng.random()
        acc = 0.0
        for move, p in zip(s.moves, probs):
            acc += p
            if r < acc:
                return move
        return s.moves[-1]

    def raw_move(self, board: Board) -> str:
        """The model's unconstrained greedy move text, e.g. ``"h2e2"``; may be illegal or not a move at all
        (``"<draw>"``, ``"h2<bos>2"``)."""
        key = self._key(board)
        if self._last_raw is not None and self._last_raw[0] == key:
            return self._last_raw[1]
        history = self.history_ids(board)
        if self.tokenizer.tokens_per_move == 1:
            s = self._last if self._last is not None and self._last.key == key else None
            logprobs = s.logprobs if s is not None and s.logprobs is not None else \
                self.model.next_logprobs(history, self._cache)
            text = self.tokenizer.tokens[int(logprobs.argmax())]
        else:
            text = "".join(self.tokenizer.tokens[i] for i in self._greedy(history, self.tokenizer.tokens_per_move))
        self._last_raw = (key, text)
        return text

    def raw_is_legal(self, board: Board) -> bool:
        """Would the model's unconstrained greedy move be legal here?"""
        return is_legal_text(board, self.raw_move(board))

    # ---- helpers -----------------------------------------------------------------------------------------------

    def _greedy(self, history: Sequence[int], n: int) -> list[int]:
        """``n`` greedy tokens after ``history``; the history's cache is kept, the continuation is forked off it.
        The scoring cache is used when it already holds exactly this history's window (the usual case after
        :meth:`move_probs`: one prefill serves both), else a cache of its own."""
        start = self.model.context_start(len(history))
        scored = self._cache
        cache = scored if (scored.length and scored.start == start and scored.length == len(history) - start
                           and scored.tokens == list(history[start:])) else self._raw_cache
        logprobs = self.model.next_logprobs(history, cache)
        out = [int(logprobs.argmax())]
        fork = cache.fork()
        while len(out) < n:
            logprobs = self.model.next_logprobs(list(history) + out, fork)
            out.append(int(logprobs.argmax()))
        return out


_WIN, _LOSS = 1e9, -1e9


def _safety_scores(board: Board, moves: Sequence[Move], scores: Sequence[float]) -> list[float]:
    """The rules' one-move safety net (``safety=True``), applied on top of the model's scores:

    * a move that wins at once by the rules (mate, stalemate, the opponent's perpetual check) is played;
    * a move that loses at once by the rules (our perpetual check) is never played while another move exists;
    * the model's best moves that let the opponent mate (or stalemate) at once are dropped, best first, down to
      the first one that does not (unless every move does).

    So the greedy choice is the model's best safe move; no search beyond that."""
    me = board.turn
    out = list(scores)
    for i, move in enumerate(moves):
        board.push(move, validate=False)
        outcome = board.outcome()
        board.pop()
        if outcome is not None and outcome.winner is not None:
            out[i] = _WIN + scores[i] if outcome.winner == me else _LOSS + scores[i]
    if max(out) >= _WIN / 2:
        return out
    order = sorted((i for i in range(len(moves)) if out[i] > _LOSS / 2), key=lambda i: -out[i])
    unsafe = []
    for i in order:            # best first, up to the first move that does not lose at once
        if not _allows_immediate_loss(board, moves[i]):
            for j in unsafe:
                out[j] = _LOSS + scores[j]
            break
        unsafe.append(i)
    return out


def _allows_immediate_loss(board: Board, move: Move) -> bool:
    """After ``move``, can the opponent end the game in its favour with one move (mate or stalemate)?"""
    board.push(move, validate=False)
    try:
        for reply in board.legal_moves():
            board.push(reply, validate=False)
            lost = not board.legal_moves()
            board.pop()
            if lost:
                return True
        return False
    finally:
        board.pop()


def _softmax(scores: Sequence[float], temperature: float) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    weights = [math.exp((x - top) / temperature) for x in scores]
    total = sum(weights)
    return [w / total for w in weights]
