"""Tiny randomly initialised models saved in the exported ``.pt`` format, small game records and the shipped model
(a fixture), for the player, evaluation, arena and search tests."""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from random_games import play_random

from xiangqi_gpt.rules.board import Board
from xiangqi_gpt.model.gpt import GPT, GPTConfig


def tiny_model(tokenizer: str = "move", block_size: int = 64, seed: int = 0, n_embd: int = 32) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(tokenizer=tokenizer, block_size=block_size, n_layer=2, n_head=2, n_embd=n_embd)).eval()


def save_pt(model: GPT, path) -> str:
    torch.save({"format": "xiangqi-gpt-model", "version": 1, "config": asdict(model.config),
                "state_dict": model.state_dict(), "info": {"note": "tiny random test model"}}, path)
    return str(path)


def load(path):
    from xiangqi_gpt.model.checkpoint import load_model

    return load_model(str(path))


def tiny_checkpoint(tmp_path: Path, tokenizer: str = "move", block_size: int = 64, seed: int = 0) -> str:
    return save_pt(tiny_model(tokenizer, block_size, seed), Path(tmp_path) / f"tiny-{tokenizer}-{block_size}.pt")


def random_game(seed: int, max_plies: int = 60, prefix: tuple[str, ...] = ()) -> list[str]:
    """A legal game of random moves (ICCS) after the given ``prefix`` moves, stopping early if the game ends."""
    board = Board()
    for m in prefix:
        board.push_iccs(m)
    play_random(board, max_plies - len(prefix), random.Random(seed))
    return [m.iccs() for m in board.move_stack]


def pgn_text(games: list[list[str]], results: list[str] | None = None) -> str:
    out = []
    for i, moves in enumerate(games):
        result = results[i] if results else "*"
        body = " ".join(f"{j // 2 + 1}. {m}" if j % 2 == 0 else m for j, m in enumerate(moves))
        out.append(f'[Event "test {i + 1}"]\n[Result "{result}"]\n[Format "ICCS"]\n\n{body} {result}\n')
    return "\n".join(out)


def forced_move_model(move: str = "h2e2", block_size: int = 64) -> GPT:
    """A move-tokenizer model whose output ignores its input: it always puts almost all probability on ``move``."""
    from xiangqi_gpt.data.tokenizer import get_tokenizer

    return forced_token_model(get_tokenizer("move").move_id(move), "move", block_size)


def forced_token_model(i: int, tokenizer: str = "move", block_size: int = 64) -> GPT:
    """A model whose output ignores its input: it always puts almost all probability on token ``i`` (e.g. a
    result token). (Final LayerNorm weight 0 so its output is its bias, a large multiple of token ``i``'s unit-norm
    embedding; the head is tied to the embedding.)"""
    torch.manual_seed(0)
    model = GPT(GPTConfig(tokenizer=tokenizer, block_size=block_size, n_layer=1, n_head=2, n_embd=32, bias=True))
    with torch.no_grad():
        e = model.tok_emb.weight
        e[i] = e[i] / e[i].norm()
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(20 * e[i])
    return model.eval()


@pytest.fixture(autouse=False)
def one_thread():
    """torch on one thread for the test (restored after): tiny models are fastest so, and on a busy 2-core machine
    two threads per process can be several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gpt():
    """The shipped model as a ``GPTPlayer``, with torch on one thread while the module's tests run (restored after)."""
    from xiangqi_gpt.play.player import GPTPlayer

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield GPTPlayer.load()
    torch.set_num_threads(before)
