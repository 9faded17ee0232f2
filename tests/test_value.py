"""The value head (issue 16, "let the GPT add strength"): the model's optional result output, its model files, its
batched reading in the search's tree calls, and the search's root bonus from it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from eval_fixtures import load, save_pt, tiny_model
from xiangqi_gpt.errors import ConfigError
from xiangqi_gpt.model.gpt import GPT, GPTConfig
from xiangqi_gpt.model.training import load_init_weights
from xiangqi_gpt.play.player import GPTPlayer
from xiangqi_gpt.play.search import Limits, Searcher
from xiangqi_gpt.rules.board import Board, Move


def valued(seed: int = 0, block_size: int = 64) -> GPT:
    """A tiny model with a value head whose weights are large enough that positions differ clearly."""
    base = tiny_model("move", block_size, seed)
    model = GPT(dataclasses.replace(base.config, value_head=True)).eval()
    state = dict(base.state_dict())
    torch.manual_seed(seed + 1)
    state["value_head.weight"] = torch.randn(3, base.config.n_embd) * 2.0
    state["value_head.bias"] = torch.zeros(3)
    model.load_state_dict(state)
    return model


def test_value_is_an_expected_score_and_old_models_have_none():
    model = valued()
    h, _ = model.forward_tokens(torch.tensor([[0, 100, 200, 300]]))
    v = model.value(h)
    assert v.shape == (1, 4) and bool(((v >= 0) & (v <= 1)).all())
    p = torch.softmax(model.value_head(h).float(), -1)
    torch.testing.assert_close(v, p[..., 2] + 0.5 * p[..., 1])
    plain = tiny_model()
    assert plain.value_head is None and plain.config.value_head is False
    with pytest.raises(ValueError, match="no value head"):
        plain.value(h)
    with pytest.raises(ConfigError, match="value_head"):
        GPTConfig(value_head="yes")


@pytest.mark.parametrize("mirror", [0.0, 0.4])
def test_tree_values_equal_plain_forward_passes(mirror):
    """``tree_logprobs(values=True)``: each child's value is what a plain pass over the history and the child gives
    (mixed with the mirrored game's value at the ensemble weight), from the same call as the policy."""
    from xiangqi_gpt.model.gpt import KVCache

    model = valued()
    model.set_mirror_ensemble(mirror)
    history = [0, 5, 900, 77]
    cache = KVCache()
    model.history_logprobs(history, 1, cache)
    children = [100, 200, 300]
    logp, values = model.tree_logprobs(cache, children, [-1, -1, -1], values=True)
    assert torch.allclose(logp, model.tree_logprobs(cache, children, [-1, -1, -1]))
    for i, child in enumerate(children):
        ids = history + [child]
        with torch.no_grad():
            h, _ = model.forward_tokens(torch.tensor([ids]))
            want = model.value(h)[0, -1]
            if mirror:
                hm, _ = model.forward_tokens(torch.tensor([model.mirror_ids(ids)]))
                want = (1 - mirror) * want + mirror * model.value(hm)[0, -1]
        assert float(values[i]) == pytest.approx(float(want), abs=1e-4)
    with pytest.raises(ValueError, match="no value head"):
        tiny_model().tree_logprobs(cache, children, [-1, -1, -1], values=True)


def test_a_model_file_with_a_value_head_loads_and_warm_starts_drop_it(tmp_path):
    from xiangqi_gpt.model.checkpoint import model_payload

    model = valued()
    path = tmp_path / "valued.pt"
    torch.save(model_payload(model, fp16=False), path)
    loaded = load(path).model
    assert loaded.config.value_head and loaded.value_head is not None
    torch.testing.assert_close(loaded.value_head.weight, model.value_head.weight)
    old = load(save_pt(tiny_model(), tmp_path / "old.pt")).model           # a file from before: no head
    assert old.value_head is None
    fresh = GPT(dataclasses.replace(model.config, value_head=False))
    load_init_weights(fresh, str(path))                 # the head is fitted after training, never trained
    torch.testing.assert_close(fresh.blocks[0].mlp.fc.weight, model.blocks[0].mlp.fc.weight)


def test_the_search_adds_the_value_bonus_at_the_root_only_when_asked(tmp_path):
    path = tmp_path / "valued.pt"
    from xiangqi_gpt.model.checkpoint import model_payload

    torch.save(model_payload(valued(), fp16=False), path)
    player = GPTPlayer(load(path))
    board = Board()
    board.push(Move.from_iccs("h2e2"))
    off = Searcher(player, style_cp=0, prune=False)
    off.search(board, Limits(depth=1))
    assert {r[3] for r in off.root} == {0} and not off.policy.values
    on = Searcher(player, style_cp=0, prune=False, value_cp=200)
    on.search(board, Limits(depth=1))
    bonuses = [r[3] for r in on.root]
    assert max(bonuses) == 0 and min(bonuses) < 0          # the best move after the value head: 0, others below
    values = on.policy.values
    best = max(on.root, key=lambda r: 1 - values[on_child_key(board, r[0])])
    assert best[3] == 0
    with pytest.raises(ConfigError, match="value_cp"):
        Searcher(player, value_cp=-5)
    plain = GPTPlayer(load(save_pt(tiny_model(), tmp_path / "old.pt")))   # no head: the option reads nothing
    s = Searcher(plain, value_cp=200, style_cp=0)
    assert s.search(board, Limits(depth=1)).move is not None and {r[3] for r in s.root} == {0}


def on_child_key(board: Board, m: int) -> int:
    child = board.copy()
    child.push(Move(m >> 7, m & 127))
    return child.key
