"""Training: data module, LightningModule, train.py CLI (shortcut and LightningCLI styles), DDP, resume, errors,
checkpoint export/load. Tiny models on synthetic token files; every training run is a few steps."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training_fixtures import make_dataset  # noqa: E402

from xiangqi_gpt.model.datamodule import TrainWindows, XiangqiDataModule, move_phase  # noqa: E402
from xiangqi_gpt.errors import CheckpointError, ConfigError, DatasetError  # noqa: E402
from xiangqi_gpt.data.tokenizer import get_tokenizer  # noqa: E402
from xiangqi_gpt.model.training import (GPTModule, lr_factor, main, move_hits, read_metrics,  # noqa: E402
                                  translate_shortcuts)

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds")


def train(dataset, run_dir, *extra) -> int:
    """In-process ``train.py fit --config configs/tiny.yaml`` into run_dir."""
    return main(["fit", "--config", TINY, "--data.data_dir", str(dataset), "--trainer.default_root_dir", str(run_dir),
                 "--trainer.enable_progress_bar", "false", *extra])


def ckpt(run_dir, name="last.ckpt") -> dict:
    return torch.load(Path(run_dir) / "checkpoints" / name, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------------------------------------------------
# data


def test_train_batches_are_a_function_of_step_and_rank(dataset):
    tok = get_tokenizer("move")
    a = TrainWindows(dataset, tok, block_size=32, batch_size=4, mirror_p=0.5, seed=7, rank=0)
    b = TrainWindows(dataset, tok, block_size=32, batch_size=4, mirror_p=0.5, seed=7, rank=0, start_step=3)
    batches = [x for _, x in zip(range(5), iter(a))]
    assert batches[0].shape == (4, 33) and batches[0].dtype == torch.int64
    assert torch.equal(next(iter(b)), batches[3])  # a stream started at step 3 continues the same batches
    other_rank = TrainWindows(dataset, tok, block_size=32, batch_size=4, mirror_p=0.5, seed=7, rank=1)
    assert not torch.equal(other_rank.batch(0), batches[0])
    assert not torch.equal(batches[0], batches[1])


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_starts_at_the_trainers_step(dataset, workers):
    """Each epoch (and a resumed run) starts the stream at the trainer's global step, with or without a worker."""
    from types import SimpleNamespace

    dm = XiangqiDataModule(str(dataset), "move", block_size=16, batch_size=2, steps_per_epoch=4, val_windows=2,
                           num_workers=workers, seed=5)
    fake = SimpleNamespace(global_step=0, accumulate_grad_batches=1, global_rank=1, world_size=2)
    dm.trainer = fake
    loader = dm.train_dataloader()
    first = list(loader)
    assert len(first) == 4
    fake.global_step = 4  # the next epoch
    second = list(loader)
    reference = TrainWindows(dataset, get_tokenizer("move"), 16, 2, mirror_p=0.5, game_start_p=0.5, seed=5, rank=1)
    for step, batch in enumerate(first + second):
        assert torch.equal(batch, reference.batch(step))


def test_windows_are_contiguous_slices_and_mirror_is_exact(dataset):
    tok = get_tokenizer("move")
    data = np.fromfile(Path(dataset) / "move" / "train.bin", dtype=np.uint16).astype(np.int64)
    plain = TrainWindows(dataset, tok, block_size=16, batch_size=64, mirror_p=0.0, seed=1)
    mirrored = TrainWindows(dataset, tok, block_size=16, batch_size=64, mirror_p=1.0, seed=1)
    x, m = plain.batch(5), mirrored.batch(5)
    table = torch.tensor(tok.mirror_table)
    assert torch.equal(table[x], m)  # same windows, every one mirrored
    for row in x[:8].numpy():  # each window is a slice of the token file
        starts = np.flatnonzero(np.lib.stride_tricks.sliding_window_view(data, 17).dot(np.ones(17)) == row.sum())
        assert any(np.array_equal(data[s:s + 17], row) for s in starts)
    half = TrainWindows(dataset, tok, block_size=16, batch_size=400, mirror_p=0.5, seed=1).batch(0)
    flipped = sum(not torch.equal(r, s) for r, s in zip(half, TrainWindows(dataset, tok, block_size=16,
                                                                            batch_size=400, seed=1).batch(0)))
    assert 120 < flipped < 280  # about half of the windows (a mirrored window can equal itself only by chance)


def test_game_start_bias(dataset):
    tok = get_tokenizer("move")
    aligned = TrainWindows(dataset, tok, block_size=16, batch_size=200, game_start_p=1.0, seed=3).batch(0)
    assert (aligned[:, 0] == 0).all()  # every window starts with <bos>
    uniform = TrainWindows(dataset, tok, block_size=16, batch_size=200, game_start_p=0.0, seed=3).batch(0)
    assert (uniform[:, 0] == 0).float().mean() < 0.3


def test_val_windows_fixed_and_phase(dataset):
    dm = XiangqiDataModule(str(dataset), "char", block_size=40, batch_size=4, val_windows=6)
    dm2 = XiangqiDataModule(str(dataset), "char", block_size=40, batch_size=4, val_windows=6)
    assert len(dm._val) == 6
    for i in range(6):
        w, phase = dm._val[i]
        assert torch.equal(w, dm2._val[i][0])
        assert w[0] == 0  # starts at a game start
        # targets w[1:]: the first is the first char of the first move
        assert phase[:8].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
        assert ((phase == -1) == (w[1:] < 5)).all()
    assert move_phase(np.array([0, 7, 8, 9, 10, 3, 0, 5]), 4).tolist() == [-1, 0, 1, 2, 3, -1, -1, 0]


def test_dataset_errors(dataset, tmp_path):
    with pytest.raises(DatasetError, match="no such dataset directory"):
        XiangqiDataModule(str(tmp_path / "nope"))
    broken = make_dataset(tmp_path / "broken", n_train=20, n_val=5, n_test=2)
    (broken / "char" / "val.bin").unlink()
    with pytest.raises(DatasetError, match="val.bin"):
        XiangqiDataModule(str(broken), "char")
    vocab = make_dataset(tmp_path / "vocab", n_train=20, n_val=5, n_test=2)
    meta = json.loads((vocab / "meta.json").read_text())
    meta["tokenizers"]["move"]["tokens"] = meta["tokenizers"]["move"]["tokens"][:-1]
    meta["tokenizers"]["move"]["vocab_size"] -= 1
    (vocab / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="vocabulary"):
        XiangqiDataModule(str(vocab), "move")
    with pytest.raises(ConfigError, match="tokenizer"):
        XiangqiDataModule(str(dataset), "words")
    with pytest.raises(DatasetError, match="fewer than one window"):
        XiangqiDataModule(str(dataset), "move", block_size=100_000)


# --------------------------------------------------------------------------------------------------------------------
# module pieces


def test_module_hparams_cover_gpt_config():
    from dataclasses import fields

    from xiangqi_gpt.model.gpt import GPTConfig

    m = GPTModule(n_layer=1, n_head=2, n_embd=16, block_size=16)
    assert {f.name for f in fields(GPTConfig)} <= set(m.hparams)
    with pytest.raises(ConfigError, match="objective"):
        GPTModule(objective="beam")
    with pytest.raises(ConfigError, match="lr"):
        GPTModule(lr=0)
    with pytest.raises(ConfigError, match="value_head"):
        GPTModule(n_layer=1, n_head=2, n_embd=16, block_size=16, value_head=True)


def test_lr_schedule():
    f = [lr_factor(s, warmup_steps=10, decay_steps=110, min_lr_ratio=0.1) for s in range(130)]
    assert f[0] == pytest.approx(1 / 11) and f[9] == pytest.approx(10 / 11)
    assert f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.55)
    assert f[110] == pytest.approx(0.1) and f[129] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))


def test_time_fraction_reads_the_timer_through_its_public_api():
    """lr_schedule "time": the training time used over ``trainer.max_time``, from Lightning's Timer (its time is
    restored on resume; before the Timer starts counting again, the elapsed time is exactly what was restored)."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import Timer

    def trainer(**kwargs):
        return Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, **kwargs)

    m = GPTModule(n_layer=1, n_head=2, n_embd=16, block_size=16)
    assert m._time_fraction() is None                               # no trainer yet
    m.trainer = trainer(max_time={"seconds": 1000})
    timer = next(cb for cb in m.trainer.callbacks if isinstance(cb, Timer))
    timer.load_state_dict({"time_elapsed": {"train": 250.0}})
    assert m._time_fraction() == pytest.approx(0.25)
    timer.load_state_dict({"time_elapsed": {"train": 4000.0}})      # past the limit: the schedule's end
    assert m._time_fraction() == 1.0
    m.trainer = trainer()                                           # no max_time
    assert m._time_fraction() is None


def test_move_hits_counts_whole_char_moves():
    V = 24
    targets = torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17, 1, 0]])
    phase = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, -1, -1]])
    logits = torch.nn.functional.one_hot(targets, V).float()
    assert [int(v) for v in move_hits(logits, targets, phase, 4)] == [2, 2]
    logits[0, 6] = torch.nn.functional.one_hot(torch.tensor(5), V).float()  # third char of move 2 wrong
    assert [int(v) for v in move_hits(logits, targets, phase, 4)] == [1, 2]
    assert [int(v) for v in move_hits(logits, targets, phase, 4, first=1)] == [0, 1]
    # a move cut by the window's end is not counted
    assert [int(v) for v in move_hits(logits[:, :6], targets[:, :6], phase[:, :6], 4)] == [1, 1]


def test_shortcut_translation():
    argv = translate_shortcuts(["--data", "D", "--objective", "teaforn", "--teaforn-n=3", "--max-steps", "5",
                                "--trainer.precision", "bf16-mixed"])
    assert argv == ["fit", "--data.data_dir", "D", "--model.objective", "teaforn", "--model.teaforn_n=3",
                    "--trainer.max_steps", "5", "--trainer.precision", "bf16-mixed"]
    with pytest.raises(ConfigError, match="--bogus"):
        translate_shortcuts(["--bogus", "1"])


# --------------------------------------------------------------------------------------------------------------------
# training runs


def test_teaforn_trains_and_logs_levels(dataset, tmp_path):
    run = tmp_path / "tf3"
    assert train(dataset, run, "--model.objective", "teaforn", "--model.teaforn_n", "3",
                 "--trainer.max_steps", "30", "--trainer.val_check_interval", "15") == 0
    series = read_metrics(run / "metrics.csv")
    for k in (1, 2, 3):
        assert f"train/loss_level{k}" in series
        assert f"val/loss_level{k}" in series and f"val/acc_level{k}" in series
        train_k = [v for _, v in series[f"train/loss_level{k}"]]
        assert np.mean(train_k[-5:]) < np.mean(train_k[:5]) - 0.3  # every level learns
    val1 = [v for _, v in series["val/loss_level1"]]
    assert val1[-1] < val1[0]
    assert (run / "loss.png").stat().st_size > 1000 and (run / "accuracy.png").is_file()
    hp = ckpt(run)["hyper_parameters"]
    assert hp["objective"] == "teaforn" and hp["teaforn_n"] == 3 and hp["tokenizer"] == "move"


def test_char_tokenizer_logs_whole_move_accuracy(dataset, tmp_path):
    run = tmp_path / "char"
    assert train(dataset, run, "--model.tokenizer", "char", "--trainer.max_steps", "4",
                 "--trainer.val_check_interval", "4") == 0
    series = read_metrics(run / "metrics.csv")
    assert "val/acc" in series and "val/char_acc" in series and "val/acc5" not in series
    assert series["val/acc"][-1][1] <= series["val/char_acc"][-1][1]


def test_resume_continues_exactly(dataset, tmp_path):
    n = 6
    common = ["--model.lr_decay_steps", str(2 * n), "--trainer.val_check_interval", "3",
              "--model.warmup_steps", "2"]
    assert train(dataset, tmp_path / "full", "--trainer.max_steps", str(2 * n), *common) == 0
    assert train(dataset, tmp_path / "cut", "--trainer.max_steps", str(n), *common) == 0
    assert ckpt(tmp_path / "cut")["global_step"] == n
    assert train(dataset, tmp_path / "cut", "--trainer.max_steps", str(2 * n), "--ckpt_path", "last", *common) == 0
    full, resumed = ckpt(tmp_path / "full"), ckpt(tmp_path / "cut")
    assert resumed["global_step"] == full["global_step"] == 2 * n
    for key, value in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    opt_full, opt_resumed = full["optimizer_states"][0]["state"], resumed["optimizer_states"][0]["state"]
    for i in opt_full:
        torch.testing.assert_close(opt_resumed[i]["exp_avg_sq"], opt_full[i]["exp_avg_sq"], rtol=1e-5, atol=1e-9)
        assert float(opt_resumed[i]["step"]) == 2 * n
    assert resumed["lr_schedulers"][0]["last_epoch"] == full["lr_schedulers"][0]["last_epoch"] == 2 * n
    assert resumed["lr_schedulers"][0]["_last_lr"] == pytest.approx(full["lr_schedulers"][0]["_last_lr"])
    steps = [s for s, _ in read_metrics(tmp_path / "cut" / "metrics.csv")["train/loss"]]
    assert min(steps) == 0 and max(steps) == 2 * n - 1  # the resumed run appended to the log


def test_checkpoint_export_and_load(dataset, tmp_path):
    from xiangqi_gpt.model.checkpoint import export_model, load_model

    run = tmp_path / "run"
    assert train(dataset, run, "--trainer.max_steps", "3", "--trainer.val_check_interval", "3") == 0
    info = export_model(run / "checkpoints" / "last.ckpt", tmp_path / "m.pt")
    assert info["global_step"] == 3 and info["dtype"] == "float16"
    a, b = load_model(run / "checkpoints" / "last.ckpt"), load_model(tmp_path / "m.pt")
    assert a.tokenizer.name == b.tokenizer.name == "move" and not b.model.training
    x = torch.tensor([[0, 100, 200, 300, 400]])
    with torch.no_grad():
        torch.testing.assert_close(a.model(x)[0], b.model(x)[0], atol=2e-2, rtol=1e-2)  # fp16 weights
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------------------------------------
# through the command line (subprocess): one line, no traceback


def run_cli(*args, env=None, cwd=ROOT, timeout=300):
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def assert_one_line_error(proc, pattern):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def move_run(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "move"
    assert train(dataset, run, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2") == 0
    return run


@pytest.mark.parametrize("args, pattern", [
    (["--data", "{tmp}/missing"], "no such dataset directory"),
    (["--data", "{data}", "--n-embd", "30", "--n-head", "4"], "not divisible by n_head"),
    (["--data", "{data}", "--max-steps", "many"], "trainer.max_steps"),
    (["--data", "{data}", "--objective", "teaforn", "--teaforn-n", "0"], "teaforn_n"),
    (["--data", "{data}", "--tokenizer", "char", "--out", "{run}", "--ckpt-path", "last"],
     "trained with the 'move' tokenizer"),
    (["--data", "{data}", "--out", "{tmp}/fresh", "--ckpt-path", "last"], "no {tmp}/fresh/checkpoints/last.ckpt"),
    (["fit", "--config", "configs/tiny.yaml", "--data.data_dir", "{tmp}/missing"], "no such dataset directory"),
])
def test_cli_errors_are_one_line(args, pattern, dataset, move_run, tmp_path):
    fill = {"tmp": str(tmp_path), "data": str(dataset), "run": str(move_run)}
    proc = run_cli("train.py", *[a.format(**fill) for a in args], "--threads", "1")
    assert_one_line_error(proc, pattern.format(**fill))


def test_cli_dataset_vocab_mismatch(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=20, n_val=5, n_test=2)
    meta = json.loads((ds / "meta.json").read_text())
    meta["tokenizers"]["char"]["tokens"][7] = "x"
    (ds / "meta.json").write_text(json.dumps(meta))
    assert_one_line_error(run_cli("train.py", "--data", str(ds), "--tokenizer", "char"), "vocabulary")


def test_export_cli(move_run, tmp_path):
    proc = run_cli("-m", "xiangqi_gpt", "export", str(move_run), "--out", str(tmp_path / "m.pt"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.pt").is_file() and "exported" in proc.stdout
    assert_one_line_error(run_cli("-m", "xiangqi_gpt", "export", str(tmp_path / "nope.ckpt"), "--out",
                                  str(tmp_path / "x.pt")), "not found")


def test_shortcut_and_config_styles_train(dataset, tmp_path):
    proc = run_cli("train.py", "--config", "configs/tiny.yaml", "--data", str(dataset), "--out", str(tmp_path / "a"),
                   "--objective", "teaforn", "--teaforn-n", "2", "--max-steps", "3", "--val-every", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    hp = ckpt(tmp_path / "a")["hyper_parameters"]
    assert hp["objective"] == "teaforn" and hp["teaforn_n"] == 2 and hp["n_embd"] == 32
    assert ckpt(tmp_path / "a")["global_step"] == 3


def test_ddp_ranks_end_identical(dataset, tmp_path):
    """strategy=ddp, 2 CPU processes (gloo): both ranks see different batches and end with identical weights."""
    dump = tmp_path / "dump"
    dump.mkdir()
    proc = run_cli(str(ROOT / "tests" / "ddp_train.py"), "fit", "--config", TINY, "--data.data_dir", str(dataset),
                   "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.strategy", "ddp",
                   "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.max_steps", "4",
                   "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
                   env={"XQ_DUMP_DIR": str(dump)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    assert r0["world_size"] == r1["world_size"] == 2 and r0["global_step"] == r1["global_step"] == 4
    assert r0["first_batch"] != r1["first_batch"]  # the ranks trained on different data
    for key in r0["state_dict"]:
        assert torch.equal(r0["state_dict"][key], r1["state_dict"][key]), key
    init = GPTModule(**{k: v for k, v in ckpt(tmp_path / "run")["hyper_parameters"].items()
                        if not k.startswith("_")}).model.state_dict()
    assert not torch.equal(init["tok_emb.weight"], r0["state_dict"]["tok_emb.weight"])
