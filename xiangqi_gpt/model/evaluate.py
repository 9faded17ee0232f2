"""``python -m xiangqi_gpt evaluate``: how well the model predicts the moves of real games.

Main names: :func:`evaluate_games`, :class:`GameScorer`, :func:`build_report`, :func:`add_evaluate_command`.
Design notes: docs/design.md#model-evaluate
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field

from ..rules.board import STARTING_FEN, Board
from .checkpoint import add_mirror_option
from ..errors import ConfigError, IllegalMoveError, PgnError, XiangqiError
from ..rules.notation import is_legal_text
from ..data.tokenizer import DEFAULT_SOURCE, SOURCES, TOKEN_RESULTS

PHASES = ("opening", "middlegame", "endgame")
OPENING_PLIES = 20
ENDGAME_MAJOR_PIECES = 6
MAJOR_PIECES = frozenset("RNCrnc")
FREE_RUN_KS = (1, 2, 4, 8, 16)
DEFAULT_FREE_RUN_EVERY = 10
PLY_BIN = 10
#: how free runs are counted (the ``counting`` key of a report's ``free_run``), and what that means
FREE_RUN_COUNTING = "distinct-prefixes"
FREE_RUN_COUNTING_TEXT = (
    "each distinct prefix (the same moves from the same root) counts once, however many games pass through it: "
    "the start position once, not once per game. legal[k] is its greedy continuation's; match[k] and "
    "prefix_match[k] are the share of the games through it (with a k-th move) that the continuation matches, "
    "then averaged over prefixes")
CHUNK_TOKENS = 256      # trie nodes fed in one go (char tokenizer); smaller chunks attend over fewer columns


def major_pieces(board: Board) -> int:
    """Chariots, horses and cannons on the board, both sides."""
    return sum(1 for p in board.pieces().values() if p in MAJOR_PIECES)


def phase_of(board: Board, ply: int) -> str:
    """``opening`` / ``middlegame`` / ``endgame`` of the position before move ``ply`` (0-based); see module docs."""
    if ply < OPENING_PLIES:
        return "opening"
    return "endgame" if major_pieces(board) <= ENDGAME_MAJOR_PIECES else "middlegame"


# --------------------------------------------------------------------------------------------------------------------
# Per-position scores


@dataclass
class PositionScore:
    ply: int
    phase: str
    n_legal: int
    rank: int            # the game move's rank among the legal moves (0 = the model's best)
    top1_raw: bool
    legal: bool          # the unconstrained greedy move is legal
    nll: float
    end: bool = False    # the unconstrained top token is a result token (<red_win>, <black_win>, <draw>, <end>)


@dataclass
class FreeRun:
    ply: int
    phase: str
    legal: list[bool]           # legal[k-1]: moves 1..k all legal
    match: list[bool | None]    # match[k-1]: generated move k == game move (None: the game has no such move)
    prefix: str = ""            # the position's identity: the moves before it (and the root FEN if not standard)
    generated: list[str] = field(default_factory=list)


class GameScorer:
    """Teacher-forced scores and free runs of whole games for one model."""

    def __init__(self, model, tokenizer, chunk_tokens: int = CHUNK_TOKENS, source: str = DEFAULT_SOURCE):
        self.model = model.eval()
        #: the start token of the condition the games are scored in (``<bos>`` for a model without sources)
        self.start = model.start_id(source)
        self.tokenizer = tokenizer
        self.tpm = tokenizer.tokens_per_move
        self.chunk_tokens = chunk_tokens

    # -- teacher forcing -----------------------------------------------------------------------------------------

    def score_game(self, moves, root_fen: str = STARTING_FEN) -> list[PositionScore]:
        """Scores of every position of the game ``moves`` (Move objects, legal from ``root_fen``)."""
        import torch

        iccs = [m.iccs() for m in moves]
        if not iccs:
            return []
        history = [self.start] + self.tokenizer.encode_moves(iccs)
        board = Board(root_fen)
        legal, phases = [], []
        for p, move in enumerate(moves):
            legal.append(board.legal_moves())
            phases.append(phase_of(board, p))
            _push_from(board, move, legal[-1])
        with torch.inference_mode():
            if self.tpm == 1:
                return self._score_move_tokens(history, moves, legal, phases)
            return self._score_char_tokens(history, iccs, legal, phases)

    def _windows(self, n_list: list[int], history: list[int]):
        """Group history lengths by the model's window start; returns (starts, windows, index of window per n)."""
        reserve = self.tpm - 1
        starts: list[int] = []
        ends: list[int] = []
        which = []
        for n in n_list:
            s = self.model.context_start(n, reserve)
            if not starts or starts[-1] != s:
                starts.append(s)
                ends.append(n)
            ends[-1] = max(ends[-1], n)
            which.append(len(starts) - 1)
        windows = [history[s:e] for s, e in zip(starts, ends)]
        return starts, windows, which

    def _forward_windows(self, windows: list[list[int]]):
        """One batched pass over the windows (right-padded); log-probs (W, T, V) and the keys/values per layer."""
        import torch
        import torch.nn.functional as F

        model = self.model
        T = max(len(w) for w in windows)
        ids = torch.zeros(len(windows), T, dtype=torch.long, device=model.rope_cos.device)
        for i, w in enumerate(windows):
            ids[i, :len(w)] = torch.as_tensor(w)
        h, kv = model.forward_tokens(ids)
        return F.log_softmax(model.head(h).float(), dim=-1), kv

    def _score_move_tokens(self, history, moves, legal, phases) -> list[PositionScore]:
        import torch

        n_list = [1 + p for p in range(len(moves))]
        starts, windows, which = self._windows(n_list, history)
        logp, _ = self._forward_windows(windows)
        if self.model.mirror_weight:      # the mirror ensemble: the mirrored game's windows, mapped back
            logp = self.model.mirror_mix(logp, self._forward_windows([self.model.mirror_ids(w) for w in windows])[0])
        move_id = self.tokenizer.move_id
        out = []
        for p, n in enumerate(n_list):
            w = which[p]
            lp = logp[w, n - 1 - starts[w]]
            human = history[n]
            ids = torch.tensor([move_id(m.iccs()) for m in legal[p]])
            scores = lp[ids]
            best = int(lp.argmax())
            out.append(PositionScore(
                ply=p, phase=phases[p], n_legal=len(ids), rank=int((scores > lp[human]).sum()),
                top1_raw=best == human, legal=bool((ids == best).any()), nll=-float(lp[human]),
                end=best in TOKEN_RESULTS))
        return out

    def _score_char_tokens(self, history, iccs, legal, phases) -> list[PositionScore]:
        import torch

        from .gpt import KVCache, candidate_tree

        model = self.model
        device = model.rope_cos.device
        n_list = [1 + 4 * p for p in range(len(iccs))]
        starts, windows, which = self._windows(n_list, history)
        logp, kv = self._forward_windows(windows)
        cands = [torch.tensor([self.tokenizer.move_ids(m.iccs()) for m in moves]) for moves in legal]
        humans = [[m.iccs() for m in moves].index(iccs[p]) for p, moves in enumerate(legal)]
        tries = [candidate_tree(c.tolist()) for c in cands]     # (tokens, parents, nodes) per position
        step_logp: list = [None] * len(iccs)   # per position: (n_cands, 3, V) log-probs after 1..3 own tokens

        # Chunks of consecutive positions sharing a window. The trie nodes of a chunk (each a proper prefix of a
        # legal move: about 60 per position) are scored by one GPT.tree_logprobs call after the window's
        # keys/values, each position's trie following its own history (a prefix of the window).
        p = 0
        while p < len(iccs):
            w = which[p]
            chunk, size = [p], len(tries[p][0])
            while (p + len(chunk) < len(iccs) and which[p + len(chunk)] == w
                   and size + len(tries[p + len(chunk)][0]) <= self.chunk_tokens):
                size += len(tries[p + len(chunk)][0])
                chunk.append(p + len(chunk))
            L = len(windows[w])
            cache = KVCache()
            cache.append([(k[w:w + 1, :, :L], v[w:w + 1, :, :L]) for k, v in kv])
            feed, parents, ctx = [], [], []
            for q in chunk:
                tokens, up, _ = tries[q]
                base = len(feed)
                feed.extend(tokens)
                parents.extend(a if a < 0 else base + a for a in up)
                ctx.extend([n_list[q] - starts[w]] * len(tokens))
            lp = model.tree_logprobs(cache, feed, parents, context=ctx)
            offset = 0
            for q in chunk:
                tokens, _, nodes = tries[q]
                step_logp[q] = lp[offset:offset + len(tokens)][torch.tensor(nodes, device=device)]
                offset += len(tokens)
            p += len(chunk)

        out = []
        for p, n in enumerate(n_list):
            w = which[p]
            root = logp[w, n - 1 - starts[w]]                 # (V,)
            c = cands[p].to(device)                           # (n_c, 4)
            steps = step_logp[p]                              # (n_c, 3, V)
            scores = root[c[:, 0]] + steps.gather(-1, c[:, 1:].unsqueeze(-1)).squeeze(-1).sum(dim=1)
            h = humans[p]
            legal_greedy, raw_is_human = _greedy_in_trie(root, steps, c, h)
            out.append(PositionScore(
                ply=p, phase=phases[p], n_legal=len(c), rank=int((scores > scores[h]).sum()),
                top1_raw=raw_is_human, legal=legal_greedy, nll=-float(scores[h]),
                end=int(root.argmax()) in TOKEN_RESULTS))
        return out

    # -- free runs -----------------------------------------------------------------------------------------------

    def free_runs(self, moves, every: int, root_fen: str = STARTING_FEN, max_k: int = max(FREE_RUN_KS),
                  batched: bool = True, memo: dict[str, list[int]] | None = None) -> list[FreeRun]:
        """Greedy unconstrained continuations of ``max_k`` moves from every ``every``-th ply (0, every, ...).

        The prefixes whose continuation fits in the model's first window are generated together (one model call
        per generated token for all of them, :meth:`GPT.greedy_continuations`); the others, and all of them with
        ``batched=False``, by :meth:`GPT.generate`. Both give the same tokens.

        ``memo`` (prefix -> generated tokens, for this scorer and ``max_k``) is read and extended: a prefix another
        game already went through (the start position, a common opening line) is not generated again. Greedy runs
        are deterministic, so the tokens are the same either way; each run is still judged against its own game."""
        import torch

        iccs = [m.iccs() for m in moves]
        history = [self.start] + self.tokenizer.encode_moves(iccs)
        steps = max_k * self.tpm
        plies = list(range(0, len(moves), every))
        keys = [_prefix_key(root_fen, iccs, p) for p in plies]
        ns = [1 + self.tpm * p for p in plies]
        memo = {} if memo is None else memo
        todo = [i for i, key in enumerate(keys) if key not in memo]
        together = [i for i in todo if batched and self.model.context_start(ns[i] + steps - 1) == 0]
        with torch.inference_mode():
            if together:
                out = self.model.greedy_continuations(history, [ns[i] for i in together], steps)
                memo.update((keys[i], tokens) for i, tokens in zip(together, out))
            for i in todo:
                if keys[i] not in memo:
                    n = ns[i]
                    memo[keys[i]] = self.model.generate(history[:n], steps, temperature=0.0)[0, n:].tolist()
        board = Board(root_fen)
        runs = []
        for p in range(len(moves)):
            if p % every == 0:
                i = p // every
                runs.append(self._judge_run(board, memo[keys[i]], iccs[p:], p, max_k, keys[i]))
            _push_from(board, moves[p], board.legal_moves())
        return runs

    def _judge_run(self, board: Board, seq: list[int], game_rest: list[str], ply: int, max_k: int,
                   prefix: str) -> FreeRun:
        tokens = self.tokenizer.tokens   # the model's head covers exactly these ids (never padding or start tokens)
        texts = ["".join(tokens[i] for i in seq[j:j + self.tpm])
                 for j in range(0, len(seq), self.tpm)]
        phase = phase_of(board, ply)
        board = board.copy()
        legal, ok = [], True
        for text in texts:
            if ok and is_legal_text(board, text):
                board.push_iccs(text)
            else:
                ok = False
            legal.append(ok)
        match = [texts[j] == game_rest[j] if j < len(game_rest) else None for j in range(max_k)]
        return FreeRun(ply=ply, phase=phase, legal=legal, match=match, prefix=prefix, generated=texts)


def _prefix_key(root_fen: str, iccs: list[str], ply: int) -> str:
    """Identity of the position before move ``ply``: the moves that led to it, after the root FEN if that is not
    the standard start. Free runs are counted once per key (see :func:`summarize_free_runs`)."""
    moves = " ".join(iccs[:ply])
    return moves if root_fen == STARTING_FEN else f"{root_fen}|{moves}"


def _push_from(board: Board, move, legal: list) -> None:
    """Play ``move`` after checking it against ``legal`` (the board's legal moves, already computed):
    ``Board.push`` would generate them a second time to validate."""
    if move not in legal:
        raise IllegalMoveError(f"illegal move {move.iccs()} at ply {board.ply + 1} in {board.fen()}")
    board.push(move, validate=False)


def _greedy_in_trie(root, steps, cands, human: int) -> tuple[bool, bool]:
    """Follow the unconstrained greedy path through the trie of legal candidates. Returns (ends on a legal move,
    equals the human move). Leaving the trie at any token means the greedy move is not legal."""
    alive = list(range(len(cands)))
    logits = root
    for j in range(4):
        g = int(logits.argmax())
        alive = [i for i in alive if int(cands[i, j]) == g]
        if not alive:
            return False, False
        if j < 3:
            logits = steps[alive[0], j]
    return True, human in alive


# --------------------------------------------------------------------------------------------------------------------
# Aggregation


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def summarize_positions(scores: list[PositionScore]) -> dict:
    n = len(scores)
    nll = _mean(s.nll for s in scores)
    return {
        "positions": n,
        "top1": _mean(s.rank == 0 for s in scores),
        "top5": _mean(s.rank < 5 for s in scores),
        "top1_raw": _mean(s.top1_raw for s in scores),
        "legal_rate": _mean(s.legal for s in scores),
        "end_rate": _mean(s.end for s in scores),
        "nll": nll,
        "perplexity": math.exp(nll) if nll is not None and nll < 700 else None,
        "legal_moves_mean": _mean(s.n_legal for s in scores),
    }


def summarize_free_runs(runs: list[FreeRun], every: int) -> dict:
    """Free-run shares, each distinct prefix counted once (``FREE_RUN_COUNTING``). Runs from the same prefix
    (same moves from the same root) share one greedy continuation, so ``legal[k]`` is that continuation's;
    ``match[k]`` / ``prefix_match[k]`` of a prefix is the share of its games (among those with a k-th move) that
    the continuation matches, and the report averages these per-prefix shares over the prefixes."""
    groups: dict[str, list[FreeRun]] = {}
    for r in runs:
        groups.setdefault(r.prefix, []).append(r)
    out = {"every": every, "counting": FREE_RUN_COUNTING, "prefixes": len(groups), "runs": len(runs),
           "ks": list(FREE_RUN_KS), "legal": {}, "match": {}, "prefix_match": {}, "match_prefixes": {}}
    for k in FREE_RUN_KS:
        out["legal"][str(k)] = _mean(g[0].legal[k - 1] for g in groups.values())
        with_move = [w for w in ([r for r in g if r.match[k - 1] is not None] for g in groups.values()) if w]
        out["match"][str(k)] = _mean(_mean(bool(r.match[k - 1]) for r in w) for w in with_move)
        out["prefix_match"][str(k)] = _mean(_mean(all(r.match[:k]) for r in w) for w in with_move)
        out["match_prefixes"][str(k)] = len(with_move)
    return out


def by_ply(scores: list[PositionScore], bin_size: int = PLY_BIN) -> dict:
    bins: dict[int, list[PositionScore]] = {}
    for s in scores:
        bins.setdefault(s.ply // bin_size, []).append(s)
    keys = sorted(bins)
    rows = [summarize_positions(bins[b]) for b in keys]
    return {"bin_size": bin_size, "ply_start": [b * bin_size for b in keys],
            **{name: [r[name] for r in rows]
               for name in ("positions", "top1", "top5", "top1_raw", "legal_rate", "end_rate", "nll")}}


def build_report(scores: list[PositionScore], runs: list[FreeRun], every: int, games: int) -> dict:
    report = {"games": games, **summarize_positions(scores), "free_run": summarize_free_runs(runs, every)}
    report["phases"] = {}
    for phase in PHASES:
        entry = summarize_positions([s for s in scores if s.phase == phase])
        entry["free_run"] = summarize_free_runs([r for r in runs if r.phase == phase], every)
        report["phases"][phase] = entry
    report["by_ply"] = by_ply(scores)
    report["definitions"] = {
        "opening": f"positions before ply {OPENING_PLIES} (the first {OPENING_PLIES} plies)",
        "endgame": f"positions from ply {OPENING_PLIES} on with at most {ENDGAME_MAJOR_PIECES} chariots, horses and "
                   f"cannons left on the board (both sides together; 12 at the start)",
        "middlegame": "every other position",
        "top1/top5": "the game's move is among the model's 1/5 best legal moves",
        "top1_raw": "the model's unconstrained greedy move is the game's move",
        "legal_rate": "share of positions whose unconstrained greedy move is legal",
        "end_rate": "share of positions whose unconstrained top token is a result token (<red_win>, <black_win>, "
                    "<draw>, <end>): the model would end a game that goes on (char tokenizer: the first of the "
                    "move's 4 tokens); such positions count as not legal",
        "nll": "mean negative log-likelihood of the game's move in nats, unconstrained model "
               "(char tokenizer: sum over its 4 tokens)",
        "free_run": "greedy unconstrained continuations of 16 moves from every N-th ply; legal[k]: moves 1..k all "
                    "legal; match[k]: move k equals the game's (over prefixes where the game has a k-th move); "
                    "prefixes: distinct prefixes, runs: game prefixes before merging identical ones",
        "free_run_counting": FREE_RUN_COUNTING_TEXT,
    }
    return report


# --------------------------------------------------------------------------------------------------------------------
# Running over a PGN file


def read_eval_games(path: str, limit: int | None = None, warn=None) -> tuple[list, dict]:
    """Readable games from the standard start (up to ``limit``) and the counts of skipped ones."""
    from ..records.pgn import read_games

    if not os.path.exists(path):
        raise PgnError("no such file", path=path)
    games, skipped = [], {"unreadable": 0, "non_standard_start": 0}
    for item in read_games(path):
        if isinstance(item, PgnError):
            skipped["unreadable"] += 1
            if warn:
                warn(f"skipping: {item}")
            continue
        if not item.standard_start:
            skipped["non_standard_start"] += 1
            continue
        games.append(item)
        if limit is not None and len(games) >= limit:
            break
    if not games:
        raise PgnError("no readable game from the standard start position", path=path)
    return games, skipped


def evaluate_games(model, tokenizer, games, free_run_every: int = DEFAULT_FREE_RUN_EVERY, progress=None,
                   source: str = DEFAULT_SOURCE) -> dict:
    """The report (see the module docs) for ``games`` (pgn.Game objects), scored in the condition ``source`` (the
    start token, for a model with source tokens). ``progress(game_index, report_so_far)`` is called after each
    game."""
    scorer = GameScorer(model, tokenizer, source=source)
    scores: list[PositionScore] = []
    runs: list[FreeRun] = []
    memo: dict[str, list[int]] = {}     # prefixes already generated (every game's start position, common lines)
    for i, game in enumerate(games):
        scores.extend(scorer.score_game(game.moves, game.root_fen))
        if free_run_every:
            runs.extend(scorer.free_runs(game.moves, free_run_every, game.root_fen, memo=memo))
        if progress is not None:
            progress(i, scores)
    return build_report(scores, runs, free_run_every, len(games))


def write_plots(report: dict, out_dir: str) -> list[str]:
    """PNG plots of a report: accuracy and legal rate by ply, free-run legality and match by k. Returns paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        os.makedirs(out_dir, exist_ok=True)
    except (OSError, ValueError) as e:
        raise XiangqiError(f"--plots {out_dir}: cannot make the folder ({getattr(e, 'strerror', None) or e})") from None
    paths = []
    bp = report["by_ply"]
    x = [s + bp["bin_size"] / 2 for s in bp["ply_start"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, style in (("top1", "-o"), ("top5", "-s"), ("top1_raw", "--^"), ("legal_rate", "-d"),
                        ("end_rate", ":x")):
        ax.plot(x, [v if v is not None else float("nan") for v in bp[name]], style, label=name, markersize=3)
    ax.set_xlabel(f"ply (bins of {bp['bin_size']})")
    ax.set_ylabel("share of positions")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax2 = ax.twinx()
    ax2.bar(x, bp["positions"], width=bp["bin_size"] * 0.8, alpha=0.12, color="gray")
    ax2.set_ylabel("positions")
    ax.set_title("Move prediction by ply")
    fig.tight_layout()
    path = os.path.join(out_dir, "accuracy_by_ply.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    ks = FREE_RUN_KS
    for label, fr in [("all", report["free_run"])] + [(ph, report["phases"][ph]["free_run"]) for ph in PHASES]:
        if not fr["prefixes"]:
            continue
        a1.plot(ks, [fr["legal"][str(k)] for k in ks], "-o", label=f"{label} ({fr['prefixes']})")
        a2.plot(ks, [fr["match"][str(k)] if fr["match"][str(k)] is not None else float("nan") for k in ks], "-o",
                label=label)
    for a, title in ((a1, "all k moves legal"), (a2, "k-th move matches the game")):
        a.set_xscale("log", base=2)
        a.set_xticks(list(ks), [str(k) for k in ks])
        a.set_ylim(0, 1.02)
        a.set_xlabel("k (plies of free run)")
        a.set_title(title)
        a.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.suptitle("Greedy unconstrained free run from game prefixes")
    fig.tight_layout()
    path = os.path.join(out_dir, "free_run.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(report: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"{report['games']} games, {report['positions']} positions")
    t.add_column("")
    for col in ("positions", "top1", "top5", "top1 raw", "legal", "end", "nll"):
        t.add_column(col, justify="right")
    rows = [("all", report)] + [(ph, report["phases"][ph]) for ph in PHASES]
    for name, r in rows:
        t.add_row(name, str(r["positions"]), _pct(r["top1"]), _pct(r["top5"]), _pct(r["top1_raw"]),
                  _pct(r["legal_rate"]), _pct(r["end_rate"]), "-" if r["nll"] is None else f"{r['nll']:.3f}")
    console.print(t)
    fr = report["free_run"]
    if fr["prefixes"]:
        f = Table(title=f"free run: {fr['prefixes']} distinct prefixes of {fr['runs']} (every {fr['every']} plies)")
        f.add_column("k", justify="right")
        f.add_column("all legal", justify="right")
        f.add_column("k-th matches", justify="right")
        for k in FREE_RUN_KS:
            f.add_row(str(k), _pct(fr["legal"][str(k)]), _pct(fr["match"][str(k)]))
        console.print(f)


def add_evaluate_command(p: argparse.ArgumentParser):
    p.add_argument("--checkpoint", default=None, help="model file (.pt or .ckpt; default: the shipped default.pt)")
    p.add_argument("--pgn", required=True, help="PGN file of games to evaluate on (any encoding and notation)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON to OUT")
    p.add_argument("--plots", default=None, metavar="DIR", help="write PNG plots to DIR")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N games")
    p.add_argument("--free-run-every", type=int, default=DEFAULT_FREE_RUN_EVERY, metavar="N",
                   help=f"free-run prefixes at plies 0, N, 2N, ... of each game (0: no free runs; "
                        f"default {DEFAULT_FREE_RUN_EVERY})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--source", default=DEFAULT_SOURCE, choices=SOURCES,
                   help="the condition the games are scored in: the start token of a model with source tokens "
                        f"(default {DEFAULT_SOURCE}: master games; engine for engine games; ignored by older models)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default 1: fastest on a shared or small machine)")
    add_mirror_option(p)

    def run(args):
        if args.limit is not None and args.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {args.limit}")
        if args.free_run_every < 0:
            raise ConfigError(f"--free-run-every must be >= 0, got {args.free_run_every}")
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        from ..outpaths import check_output_dir, check_output_file

        if args.json:
            check_output_file(args.json, "--json")      # before the work: a bad output path fails at once
        if args.plots:
            check_output_dir(args.plots, "--plots")
        from rich.console import Console

        err = Console(stderr=True)
        out = Console()
        import torch

        from .checkpoint import load_model

        torch.set_num_threads(args.threads)
        loaded = load_model(args.checkpoint, mirror_ensemble=args.mirror_ensemble)
        games, skipped = read_eval_games(args.pgn, args.limit, warn=lambda m: err.print(
            f"[yellow]{m}[/]", highlight=False, markup=True, soft_wrap=True))
        t0 = time.perf_counter()
        report = _run_with_progress(loaded, games, args.free_run_every, err, args.quiet, args.source)
        report = {"checkpoint": args.checkpoint or "default", "pgn": args.pgn, "tokenizer": loaded.tokenizer.name,
                  "source": args.source, "model_sources": list(loaded.model.config.sources),
                  "mirror_ensemble": loaded.model.mirror_weight, **report, "skipped_games": skipped,
                  "seconds": round(time.perf_counter() - t0, 2)}
        print_summary(report, out)
        if args.json:
            _write_json(report, args.json)
            out.print(f"report written to {args.json}")
        if args.plots:
            for path in write_plots(report, args.plots):
                out.print(f"plot written to {path}")

    return run


def _write_json(report: dict, path: str) -> None:
    try:
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    except OSError as e:
        raise XiangqiError(f"cannot write {path}: {e.strerror or e}") from None


def _run_with_progress(loaded, games, every: int, console, quiet: bool, source: str = DEFAULT_SOURCE) -> dict:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(),
               TextColumn("games"), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}")]
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task("evaluate", total=len(games), stats="")

        def update(i, scores):
            n = len(scores)
            top1 = sum(s.rank == 0 for s in scores) / n if n else 0.0
            legal = sum(s.legal for s in scores) / n if n else 0.0
            progress.update(task, completed=i + 1,
                            stats=f"{n} positions  top1 {100 * top1:.1f}%  legal {100 * legal:.1f}%")

        return evaluate_games(loaded.model, loaded.tokenizer, games, every, progress=update, source=source)

