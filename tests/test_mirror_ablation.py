"""studies/mirror_ablation.py: its rows and commands, the pairing it relies on, and its summaries (no training)."""

import argparse

import torch

from study_scripts import load_script  # noqa: E402
from training_fixtures import make_dataset  # noqa: E402

from xiangqi_gpt.model.datamodule import TrainWindows  # noqa: E402
from xiangqi_gpt.data.tokenizer import get_tokenizer  # noqa: E402


def load_ablation():
    return load_script("mirror_ablation")


def args_for(ab, **kw):
    base = dict(data="data/ccpd", small_data="data/ccpd_small", small_steps=500, long_steps=1500, full_steps=300, n_layer=2,
                n_head=2, n_embd=128, block=128, batch=16, lr=3e-3, warmup=30, val_windows=64, eval_games=300,
                threads=1, seed_list=[1, 2], long_seed_list=[1], out="runs/mirror")
    return argparse.Namespace(**(base | kw))


def test_pair_commands_differ_only_in_mirror_and_out():
    ab = load_ablation()
    args = args_for(ab)
    rows = {r["name"]: r for r in ab.row_specs(args)}
    assert set(rows) == {f"{r}-m{m}" for r in ("small", "long", "full") for m in ("0", "0.5")}
    assert rows["long-m0"]["seeds"] == [1] and rows["small-m0.5"]["seeds"] == [1, 2]
    for regime, data, steps in (("small", "data/ccpd_small", 500), ("long", "data/ccpd_small", 1500),
                                ("full", "data/ccpd", 300)):
        a = ab.train_command(args, rows[f"{regime}-m0"], 1, "A")
        b = ab.train_command(args, rows[f"{regime}-m0.5"], 1, "B")
        diff = [(x, y) for x, y in zip(a, b) if x != y]
        assert len(a) == len(b) and diff == [("A", "B"), ("0", "0.5")]
        text = " ".join(a)
        assert f"--data {data} " in text and f"--max-steps {steps} " in text and "--objective tf" in text
    # every row is evaluated on the full dataset's test split
    for name in rows:
        assert "--pgn data/ccpd/test.pgn --limit 300" in " ".join(ab.eval_commands(args, f"runs/mirror/{name}")["evaluate"])


def test_mirrored_test_pgn(tmp_path):
    from xiangqi_gpt.records.pgn import read_games

    src = tmp_path / "test.pgn"
    src.write_text('[Event "a"]\n\n1. h2e2 h9g7 2. h0g2 i9h9 1-0\n\n[Event "b"]\n\n1. c3c4 0-1\n\n'
                   '[Event "c"]\n\n1. b2e2 1/2-1/2\n\n', encoding="utf-8")
    ab = load_ablation()
    assert ab.write_mirrored_pgn(src, tmp_path / "m.pgn", limit=2) == 2   # the first `limit` games only
    games = list(read_games(str(tmp_path / "m.pgn")))
    assert [g.iccs() for g in games] == [["b2e2", "b9c7", "b0c2", "a9b9"], ["g3g4"]]
    assert [g.result for g in games] == ["1-0", "0-1"] and games[0].headers["Event"] == "a"
    assert ab.first_move_shares(src, 3) == {"h2e2": 1 / 3, "b2e2": 1 / 3}
    assert ab.first_move_shares(tmp_path / "m.pgn", 2) == {"h2e2": 0.0, "b2e2": 0.5}


def test_train_test_overlap(tmp_path):
    ab = load_ablation()
    test = tmp_path / "test.pgn"
    test.write_text('[Event "t1"]\n\n1. h2e2 h9g7 2. h0g2 1-0\n\n[Event "t2"]\n\n1. c3c4 c6c5 0-1\n\n'
                    '[Event "t3"]\n\n1. b2e2 1-0\n\n', encoding="utf-8")
    train = tmp_path / "train.pgn"
    train.write_text('[Event "prefix of t1"]\n\n1. h2e2 h9g7 *\n\n[Event "other"]\n\n1. h2e2 b9c7 *\n\n'
                     '[Event "extends t3"]\n\n1. b2e2 b9c7 *\n\n', encoding="utf-8")
    assert ab.train_test_overlap(train, test, 2) == {"train_games": 1, "test_games": 1, "test_positions": 3,
                                                      "all_test_positions": 5}
    assert ab.train_test_overlap(train, test, 3)["train_games"] == 2


def test_mirror_half_draws_the_same_windows_as_no_mirror(tmp_path):
    """The pairing claim: with one seed, mirror 0.5 flips some windows of exactly the batch mirror 0 draws."""
    dataset = make_dataset(tmp_path / "ds")
    tok = get_tokenizer("move")
    table = torch.tensor(tok.mirror_table)
    for step in (0, 7):
        plain = TrainWindows(dataset, tok, 16, 64, mirror_p=0.0, game_start_p=0.5, seed=2).batch(step)
        half = TrainWindows(dataset, tok, 16, 64, mirror_p=0.5, game_start_p=0.5, seed=2).batch(step)
        same = [torch.equal(p, h) for p, h in zip(plain, half)]
        mirrored = [torch.equal(table[p], h) for p, h in zip(plain, half)]
        assert all(s or m for s, m in zip(same, mirrored)) and not all(same)


def test_table_and_paired_deltas():
    ab = load_ablation()
    args = args_for(ab, seed_list=[1, 2])

    def run(name, seed, top1):
        metrics = {k: 0.5 for k, _, _ in ab.COLUMNS} | {"top1": top1, "nll": 3.0, "train_seconds": 60.0}
        return {"row": name, "seed": seed, "metrics": metrics}

    runs = {("full-m0", 1): run("full-m0", 1, 0.20), ("full-m0", 2): run("full-m0", 2, 0.22),
            ("full-m0.5", 1): run("full-m0.5", 1, 0.18), ("full-m0.5", 2): run("full-m0.5", 2, 0.21)}
    rows = [r for r in ab.row_specs(args) if r["regime"] == "full"]
    ab.train_tokens = lambda data: 2048 * 900   # 300 steps x 2048 tokens over 1.84M tokens: 1/3 epoch
    text = ab.table(rows, runs, args)
    assert "| `full-m0` | `data/ccpd` | 300 | 0.33 | 1,2 | 21.0 (20.0 / 22.0) |" in text
    deltas = ab.deltas(rows, runs, args)
    assert "| full | 1 | -2.0 |" in deltas and "| full | 2 | -1.0 |" in deltas
