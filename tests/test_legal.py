"""The rule engine as a teacher: stored legal move sets, the legality loss, mixed sources, warm starts and the faster
recipe's options (attention dropout, time-based LR schedule, EMA). Small random legal games; tiny models."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from training_fixtures import write_dataset  # noqa: E402
from random_games import random_board  # noqa: E402

from xiangqi_gpt.rules.board import Board  # noqa: E402
from xiangqi_gpt.model.datamodule import TrainWindows, XiangqiDataModule  # noqa: E402
from xiangqi_gpt.errors import ConfigError, DatasetError  # noqa: E402
from xiangqi_gpt.data.legal import legal_sets, load_legal_sets, window_mask, write_legal_sets  # noqa: E402
from xiangqi_gpt.model.gpt import GPTConfig  # noqa: E402
from xiangqi_gpt.data.tokenizer import N_SPECIAL, get_tokenizer  # noqa: E402
from xiangqi_gpt.model.training import GPTModule, legality_loss, main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "configs" / "tiny.yaml")
TOK = get_tokenizer("move")


def random_games(n: int, seed: int, max_plies: int = 60) -> list:
    rng = random.Random(seed)
    games = []
    for _ in range(n):
        board = random_board(rng, rng.randint(8, max_plies))
        games.append(([m.iccs() for m in board.move_stack], rng.choice(["1-0", "0-1", "1/2-1/2", "*"])))
    return games


@pytest.fixture(scope="module")
def legal_dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("legal")
    games = random_games(40, seed=1)
    main_ds = write_dataset(base / "human", {"train": games[:30], "val": games[30:36], "test": games[36:]})
    write_legal_sets(main_ds, quiet=True)
    other = random_games(30, seed=2)
    engine = write_dataset(base / "human" / "engine", {"train": other[:20], "val": other[20:26], "test": other[26:]})
    write_legal_sets(engine, quiet=True)
    return main_ds, games


def test_stored_sets_match_the_rules(legal_dataset):
    ds, games = legal_dataset
    tokens = np.fromfile(ds / "move" / "train.bin", dtype=np.uint16)
    offsets, ids = load_legal_sets(ds, "train", len(tokens))
    t = 0
    for moves, _ in games[:30]:
        board = Board()
        for ply in range(len(moves) + 1):  # <bos>, then after each move
            want = {TOK.move_id(m.iccs()) for m in board.legal_moves()}
            assert set(ids[offsets[t]:offsets[t + 1]].tolist()) == want
            assert offsets[t + 1] - offsets[t] == len(want)  # no duplicates
            if ply < len(moves):
                board.push_iccs(moves[ply])
            t += 1
        assert offsets[t + 1] == offsets[t]  # the result token has no legal continuation
        t += 1
    assert t == len(tokens)


def test_bad_tokens_and_missing_sets_are_one_line(tmp_path, legal_dataset):
    with pytest.raises(DatasetError, match="illegal"):
        legal_sets(np.array([0, TOK.move_id("h2e2"), TOK.move_id("h2e2"), 1], dtype=np.uint16))
    with pytest.raises(DatasetError, match="outside a game"):
        legal_sets(np.array([TOK.move_id("h2e2")], dtype=np.uint16))
    with pytest.raises(DatasetError, match="legal-sets"):
        load_legal_sets(tmp_path, "train", 10)
    ds, _ = legal_dataset
    with pytest.raises(DatasetError, match="do not match"):
        load_legal_sets(ds, "train", 12345)


def test_windows_carry_legal_targets_also_mirrored(legal_dataset):
    ds, _ = legal_dataset
    for mirror in (0.0, 1.0):
        tw = TrainWindows(ds, TOK, block_size=32, batch_size=8, mirror_p=mirror, game_start_p=0.5, seed=3,
                          legal_sets=True)
        for step in range(4):
            x, legal = tw.batch(step)
            assert legal.shape == (8, 32, TOK.vocab_size)
            y = x[:, 1:]
            is_move = y >= N_SPECIAL
            hit = legal.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            assert bool(hit[is_move].all())  # every played move is in its position's legal set
            inp = x[:, :-1]
            assert not bool(legal[(inp > 0) & (inp < N_SPECIAL)].any())  # at a result token the game is over
            assert int(legal.sum()) > 0


def test_window_mask_is_the_slice():
    offsets = np.array([0, 2, 2, 5])
    ids = np.array([7, 9, 5, 6, 8], dtype=np.uint16)
    m = window_mask(offsets, ids, 1, 2, 10)
    assert m.shape == (2, 10) and not m[0].any() and sorted(np.flatnonzero(m[1])) == [5, 6, 8]


def test_legality_loss_zero_on_legal_mass_and_masked_at_results():
    torch.manual_seed(0)
    V = TOK.vocab_size
    legal = torch.zeros(1, 3, V, dtype=torch.bool)
    legal[0, 0, [10, 11]] = True
    legal[0, 1, [12]] = True
    legal[0, 2, [13, 14]] = True
    targets = torch.tensor([[10, 12, 1]])  # the last target is a result token: masked out
    logits = torch.randn(1, 3, V)
    loss, share = legality_loss(logits, targets, legal, "logp")
    assert loss > 0 and 0 < share < 1
    on_legal = torch.full((1, 3, V), -1e4)
    on_legal[legal] = 0.0
    loss0, share0 = legality_loss(on_legal, targets, legal, "logp")
    assert loss0.item() == pytest.approx(0.0, abs=1e-5) and share0.item() == pytest.approx(1.0)
    kl0, _ = legality_loss(on_legal, targets, legal, "kl")  # uniform over the legal moves: KL = 0
    assert kl0.item() == pytest.approx(0.0, abs=1e-4)
    changed = logits.clone()
    changed[0, 2] = torch.randn(V) * 5  # the result-token position does not count
    assert legality_loss(changed, targets, legal, "logp")[0].item() == pytest.approx(loss.item(), rel=1e-6)
    assert legality_loss(changed, targets, legal, "kl")[0].item() > 0


def test_mix_draws_from_the_sources(legal_dataset):
    ds, _ = legal_dataset
    dm = XiangqiDataModule(str(ds), block_size=32, batch_size=8, mix={"engine": 1.0}, game_start_p=0.0,
                           mirror_p=0.0, val_windows=4)
    engine = np.fromfile(ds / "engine" / "move" / "train.bin", dtype=np.uint16)
    human = np.fromfile(ds / "move" / "train.bin", dtype=np.uint16)
    tw = dm._train_windows(0, 1, 0)

    def inside(w, arr):
        w = w.numpy()
        return any(np.array_equal(arr[s:s + len(w)], w) for s in np.flatnonzero(arr == w[0]))

    x = tw.batch(0)
    assert all(inside(w, engine) for w in x)
    half = XiangqiDataModule(str(ds), block_size=32, batch_size=64, mix={"engine": 0.5}, game_start_p=0.0,
                             mirror_p=0.0, val_windows=4)._train_windows(0, 1, 0).batch(1)
    from_human = sum(inside(w, human) for w in half)
    assert 10 < from_human < 54
    for mix, pattern in (({"engine": 0.7, str(ds): 0.6}, "add up"), ({"nowhere": 0.2}, "neither a subset"),
                         ({"engine": 1.5}, r"\[0, 1\]"), (["engine"], "mapping")):
        with pytest.raises((ConfigError, DatasetError), match=pattern):
            XiangqiDataModule(str(ds), block_size=32, batch_size=8, mix=mix, val_windows=4)


def test_single_source_stream_is_unchanged(legal_dataset):
    ds, _ = legal_dataset
    a = TrainWindows(ds, TOK, 32, 8, mirror_p=0.5, game_start_p=0.5, seed=9).batch(5)
    b, _ = TrainWindows(ds, TOK, 32, 8, mirror_p=0.5, game_start_p=0.5, seed=9, legal_sets=True).batch(5)
    assert torch.equal(a, b)


def test_attention_dropout_option():
    from xiangqi_gpt.model.gpt import GPT

    assert GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.1)).blocks[0].attn.dropout == 0.1
    assert GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.1, attn_dropout=0.0)).blocks[0].attn.dropout == 0
    with pytest.raises(ConfigError, match="attn_dropout"):
        GPTConfig(attn_dropout=1.5)


def test_time_schedule_follows_the_clock():
    m = GPTModule(n_layer=1, n_head=2, n_embd=16, block_size=16, warmup_steps=2, lr_decay_steps=100,
                  min_lr_ratio=0.1, lr_schedule="time")
    m._time_fraction = lambda: 1.0  # the time budget is spent: the LR is at its floor after warmup
    sched = m.configure_optimizers()["lr_scheduler"]["scheduler"]
    factor = sched.lr_lambdas[0]
    assert factor(0) == pytest.approx(1 / 3) and factor(5) == pytest.approx(0.1)
    m._time_fraction = lambda: 0.0
    assert m.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0](5) > 0.9
    with pytest.raises(ConfigError, match="lr_schedule"):
        GPTModule(lr_schedule="never")
    with pytest.raises(ConfigError, match="legal_loss"):
        GPTModule(legal_loss="bce")
    with pytest.raises(ConfigError, match="legal_weight"):
        GPTModule(legal_weight=-1)


def test_train_with_legality_ema_and_warm_start(legal_dataset, tmp_path):
    ds, _ = legal_dataset
    common = ["fit", "--config", TINY, "--data.data_dir", str(ds), "--trainer.enable_progress_bar", "false",
              "--data.legal_sets", "true", "--model.legal_weight", "0.5", "--trainer.max_steps", "4",
              "--trainer.val_check_interval", "2", "--model.attn_dropout", "0.0"]
    assert main(common + ["--trainer.default_root_dir", str(tmp_path / "a"), "--ema", "0.9",
                          "--data.mix", "{engine: 0.5}", "--model.lr_schedule", "time",
                          "--trainer.max_time", "00:00:10:00"]) == 0
    from xiangqi_gpt.model.training import read_metrics

    metrics = read_metrics(tmp_path / "a" / "metrics.csv")
    assert "val/legal_rate" in metrics and "train/legal_loss" in metrics
    ck = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert "current_model_state" in ck  # EMAWeightAveraging: state_dict holds the average
    from xiangqi_gpt.model.checkpoint import export_model

    export_model(tmp_path / "a" / "checkpoints" / "last.ckpt", tmp_path / "a.pt")
    warm = GPTModule(tokenizer="move", block_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0,
                     init_from=str(tmp_path / "a.pt"))
    from xiangqi_gpt.model.checkpoint import load_model

    ref = load_model(tmp_path / "a.pt").model.state_dict()
    for k, v in warm.model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    with pytest.raises(ConfigError, match="n_embd"):
        GPTModule(tokenizer="move", block_size=64, n_layer=2, n_head=2, n_embd=64, init_from=str(tmp_path / "a.pt"))
    assert main(common + ["--trainer.default_root_dir", str(tmp_path / "b"),
                          "--model.init_from", str(tmp_path / "a.pt")]) == 0


def test_legal_sets_cli_errors_are_one_line(tmp_path, capsys):
    from xiangqi_gpt import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["legal-sets", str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such dataset directory" in err[0]


def test_legal_only_windows_teach_legality_and_no_moves(legal_dataset):
    ds, _ = legal_dataset
    kw = dict(block_size=32, batch_size=64, game_start_p=0.0, mirror_p=0.5, val_windows=4, legal_sets=True)
    dm = XiangqiDataModule(str(ds), mix={"engine": 0.5}, legal_only=["engine"], **kw)
    x, legal, move_rows = dm._train_windows(0, 1, 0).batch(3)
    engine = np.fromfile(ds / "engine" / "move" / "train.bin", dtype=np.uint16)
    human = np.fromfile(ds / "move" / "train.bin", dtype=np.uint16)

    def inside(w, arr):
        w = w.numpy()
        return any(np.array_equal(arr[s:s + len(w)], w) for s in np.flatnonzero(arr == w[0]))

    unmirrored = TrainWindows(ds, TOK, 32, 64, mirror_p=0.0, game_start_p=0.0, seed=0,
                              mix=dm.mix, legal_sets=True, legal_only=dm.legal_only).batch(3)
    assert 5 < int((~move_rows).sum()) < 59
    for w, counts in zip(unmirrored[0], unmirrored[2]):
        assert inside(w, human if counts else engine)      # False marks exactly the engine windows
    assert legal[~move_rows].any()                          # their legal sets are still there

    # the training step: legal-only rows add nothing to the move loss, but do to the legal-set term
    module = GPTModule(n_layer=1, n_head=2, n_embd=16, block_size=32, legal_weight=1.0)
    module.log = lambda *a, **k: None
    module.eval()                                                   # no dropout: the three calls compare

    def step(batch):
        module.on_train_epoch_start()                               # no step timing (no trainer here)
        return module.training_step(batch, 0)

    all_only = step((x, legal, torch.zeros(64, dtype=torch.bool)))
    assert torch.isfinite(all_only) and all_only.item() > 0        # no move targets at all: legality only
    none_only = step((x, legal, torch.ones(64, dtype=torch.bool)))
    plain = step((x, legal))
    assert none_only.item() == pytest.approx(plain.item(), rel=1e-5)
    assert none_only.item() > all_only.item()

    for legal_only, pattern in ((["nowhere"], "not in data.mix"), ("engine", "list")):
        with pytest.raises(ConfigError, match=pattern):
            XiangqiDataModule(str(ds), mix={"engine": 0.5}, legal_only=legal_only, **kw)
    with pytest.raises(ConfigError, match="legal_sets"):
        XiangqiDataModule(str(ds), mix={"engine": 0.5}, legal_only=["engine"], **dict(kw, legal_sets=False))
