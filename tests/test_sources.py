"""Source start tokens: a game begins with a token naming where it comes from (master, engine, search, mirror)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training_fixtures import make_games, write_dataset  # noqa: E402

from xiangqi_gpt import Board  # noqa: E402
from xiangqi_gpt.model.checkpoint import export_model, load_model, model_payload  # noqa: E402
from xiangqi_gpt.model.datamodule import TrainWindows, XiangqiDataModule  # noqa: E402
from xiangqi_gpt.errors import ConfigError  # noqa: E402
from xiangqi_gpt.model.gpt import GPT, GPTConfig  # noqa: E402
from xiangqi_gpt.play.player import GPTPlayer  # noqa: E402
from xiangqi_gpt.data.tokenizer import BOS, SOURCES, get_tokenizer, resolve_style  # noqa: E402
from xiangqi_gpt.model.training import GPTModule, load_init_weights, main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOK = get_tokenizer("move")
V = TOK.vocab_size
SMALL = dict(n_layer=1, n_head=2, n_embd=32, block_size=32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("src") / "ds"
    write_dataset(root, {"train": make_games(60, 1), "val": make_games(12, 2)})
    write_dataset(root / "engine", {"train": make_games(60, 3), "val": make_games(12, 4)})
    return root


def test_config_sources_grow_the_vocabulary_not_the_output():
    config = GPTConfig(sources=["master", "engine"], **SMALL)
    assert config.vocab_size == V + 2 and config.sources == ("master", "engine")
    model = GPT(config).eval()
    assert model.start_id("master") == V and model.start_id("engine") == V + 1
    assert model.start_id("search") == BOS and model.start_id(None) == BOS   # a source it lacks: <bos>
    logits, _ = model(torch.tensor([[V + 1, 100, 200]]))
    assert logits.shape[-1] == V                                            # never predicts a start token
    assert model.next_logprobs([V, 100]).shape == (V,)
    with pytest.raises(ConfigError, match="sources"):
        GPTConfig(sources=["grandmaster"], **SMALL)
    with pytest.raises(ConfigError, match="sources"):
        GPTConfig(sources=["master", "master"], **SMALL)
    assert GPTConfig(**SMALL).sources == () and GPT(GPTConfig(**SMALL)).start_id("master") == BOS


def test_warm_start_grows_the_embedding_from_bos(tmp_path):
    torch.manual_seed(0)
    old = GPT(GPTConfig(**SMALL)).eval()
    path = tmp_path / "old.pt"
    torch.save(model_payload(old, fp16=False), path)
    new = GPT(GPTConfig(sources=list(SOURCES), **SMALL))
    load_init_weights(new, str(path))
    new.eval()
    emb = new.tok_emb.weight
    for i in range(len(SOURCES)):
        torch.testing.assert_close(emb[V + i], emb[BOS])
    history = [100, 200, 300]
    with torch.no_grad():  # the grown model reads every source as the old one read <bos>
        torch.testing.assert_close(new.next_logprobs([new.start_id("engine")] + history),
                                   old.next_logprobs([BOS] + history))
    grown = tmp_path / "grown.pt"
    torch.save(model_payload(new, fp16=False), grown)
    with pytest.raises(ConfigError, match="vocab_size"):  # dropping sources is not a warm start
        load_init_weights(GPT(GPTConfig(**SMALL)), str(grown))


def test_warm_start_grows_the_depth_as_identity_blocks(tmp_path):
    torch.manual_seed(0)
    cfg = dict(SMALL, n_layer=2)
    old = GPT(GPTConfig(sources=list(SOURCES), **cfg)).eval()
    path = tmp_path / "old.pt"
    torch.save(model_payload(old, fp16=False), path)
    new = GPT(GPTConfig(sources=list(SOURCES), **dict(cfg, n_layer=3)))
    load_init_weights(new, str(path))
    new.eval()
    # the old blocks at 0 * 3 // 2 = 0 and 1 * 3 // 2 = 1; block 2 is new, with zero residual projections
    torch.testing.assert_close(new.blocks[1].attn.qkv.weight, old.blocks[1].attn.qkv.weight)
    assert not new.blocks[2].attn.proj.weight.any() and not new.blocks[2].mlp.proj.weight.any()
    assert new.blocks[2].mlp.fc.weight.any()                       # the rest of a new block is a fresh init
    history = [new.start_id("master"), 100, 200, 300]
    with torch.no_grad():                                          # the grown model computes what the file does
        torch.testing.assert_close(new.next_logprobs(history), old.next_logprobs(history))
    deep = tmp_path / "deep.pt"
    torch.save(model_payload(new, fp16=False), deep)
    with pytest.raises(ConfigError, match="n_layer"):              # fewer layers than the file: not a warm start
        load_init_weights(GPT(GPTConfig(sources=list(SOURCES), **cfg)), str(deep))
    payload = model_payload(old, fp16=False)                       # a file missing one weight of an old block
    del payload["state_dict"]["blocks.1.mlp.fc.weight"]
    torch.save(payload, tmp_path / "holed.pt")
    with pytest.raises(ConfigError, match="do not fit"):           # reported, not filled with fresh weights
        load_init_weights(GPT(GPTConfig(sources=list(SOURCES), **dict(cfg, n_layer=3))), str(tmp_path / "holed.pt"))


def test_windows_start_with_their_sources_token(dataset):
    tw = TrainWindows(dataset, TOK, block_size=16, batch_size=256, mirror_p=0.5, game_start_p=1.0, seed=3,
                      mix=[(str(dataset / "engine"), 0.5)], start_ids=[V, V + 1], mirror_start_id=V + 3)
    plain = TrainWindows(dataset, TOK, block_size=16, batch_size=256, mirror_p=0.5, game_start_p=1.0, seed=3,
                         mix=[(str(dataset / "engine"), 0.5)])
    x, ref = tw.batch(0).numpy(), plain.batch(0).numpy()
    assert not (x == BOS).any()
    np.testing.assert_array_equal(np.where(x >= V, BOS, x), ref)   # only the start tokens changed
    firsts = set(x[:, 0].tolist())
    assert firsts == {V, V + 1, V + 3}                                # master, engine, mirrored master


def test_data_module_and_training_round_trip(dataset, tmp_path):
    dm = XiangqiDataModule(str(dataset), block_size=16, batch_size=4, mix={"engine": 0.5},
                           sources=["master", "engine", "mirror"])
    assert dm.start_ids == [V, V + 1] and dm.mirror_start_id == V + 2
    assert (dm._val.windows[:, 0] == V).all()
    with pytest.raises(ConfigError, match="no source token 'engine'"):
        XiangqiDataModule(str(dataset), block_size=16, batch_size=4, mix={"engine": 0.5}, sources=["master"])
    run = tmp_path / "run"
    code = main(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), "--data.data_dir", str(dataset),
                 "--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false",
                 "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
                 "--model.sources", "[master, engine, search, mirror]", "--data.mix", "{engine: 0.5}"])
    assert code == 0
    export_model(run / "checkpoints" / "last.ckpt", tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.model.config.sources == SOURCES
    assert loaded.model.start_id("engine") == V + 1


def test_player_asks_in_its_style(tmp_path):
    torch.manual_seed(1)
    model = GPT(GPTConfig(sources=list(SOURCES), **SMALL))
    with torch.no_grad():
        model.tok_emb.weight[V:] += torch.randn(len(SOURCES), SMALL["n_embd"])   # make the conditions differ
    path = tmp_path / "m.pt"
    torch.save(model_payload(model, fp16=False), path)
    loaded = load_model(path)
    board = Board()
    board.push_iccs("h2e2")
    human = GPTPlayer(loaded, style="human")
    strong = GPTPlayer(loaded, style="strong")
    assert human.history_ids(board)[0] == V and strong.history_ids(board)[0] == V + 1
    assert not torch.allclose(loaded.model.next_logprobs(human.history_ids(board)),
                              loaded.model.next_logprobs(strong.history_ids(board)))
    assert GPTPlayer(loaded).history_ids(board)[0] == V                 # default: master
    assert resolve_style("HUMAN") == "master" and resolve_style(None) is None
    with pytest.raises(ConfigError, match="unknown style"):
        GPTPlayer(loaded, style="sneaky")


def test_old_model_files_start_with_bos():
    loaded = load_model(None)   # the shipped file
    player = GPTPlayer(loaded, style="strong")
    assert player.history_ids(Board())[0] == loaded.model.start_id("engine")
    if not loaded.model.config.sources:
        assert player.history_ids(Board()) == [BOS]


def test_engine_style_option_picks_the_condition():
    import io

    from xiangqi_gpt.play.engine import Engine

    out = io.StringIO()
    engine = Engine(out=out)
    engine.handle("uci")
    assert "option name Style type combo default strong var human var strong" in out.getvalue()
    assert engine.model.player().source == "engine"          # the engine asks for strength by default
    engine.handle("setoption name Style value human")
    assert engine.model.player().source == "master"
    engine.handle("setoption name Style value sneaky")
    assert "Style must be one of human, strong" in out.getvalue() and engine.model.player().source == "master"
    engine.handle("setoption name Style value Strong")
    assert engine.model.player().source == "engine"


def test_play_style_flag(monkeypatch):
    from xiangqi_gpt.play import terminal

    made = {}

    def factory(checkpoint, temperature, seed, threads=1, style=None):
        made["style"] = style
        raise ConfigError("stop here")   # main reports it in one line before any game starts

    monkeypatch.setattr(terminal, "default_player_factory", factory)
    assert terminal.main(["--style", "strong"]) == 2
    assert made["style"] == "strong"
