"""Board-state targets (the rule engine as a dense teacher): the replayed boards, their windows (mirrored too) and the
training module's board head. Small random legal games; tiny models."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from training_fixtures import write_dataset  # noqa: E402
from random_games import random_board  # noqa: E402

from xiangqi_gpt.data.boards import (MIRROR_SQUARES, N_CLASSES, N_SQUARES, move_squares, piece_class,  # noqa: E402
                                     window_boards)
from xiangqi_gpt.data.legal import write_legal_sets  # noqa: E402
from xiangqi_gpt.data.tokenizer import get_tokenizer  # noqa: E402
from xiangqi_gpt.errors import ConfigError  # noqa: E402
from xiangqi_gpt.model.datamodule import TrainWindows, XiangqiDataModule  # noqa: E402
from xiangqi_gpt.model.training import GPTModule  # noqa: E402
from xiangqi_gpt.rules.board import Board  # noqa: E402

TOK = get_tokenizer("move")


@pytest.fixture(scope="module")
def board_dataset(tmp_path_factory):
    rng = random.Random(7)
    games = []
    for _ in range(30):
        board = random_board(rng, rng.randint(8, 50))
        games.append(([m.iccs() for m in board.move_stack], rng.choice(["1-0", "0-1", "1/2-1/2", "*"])))
    ds = write_dataset(tmp_path_factory.mktemp("boards") / "d", {"train": games[:22], "val": games[22:27],
                                                                  "test": games[27:]})
    write_legal_sets(ds, quiet=True)
    return ds, games[:22]


def rules_boards(moves: list[str]) -> list[list[int]]:
    """The classes after <bos> and after each move, by the rule engine."""
    board = Board()
    out = [[piece_class(c) for c in board.squares]]
    for m in moves:
        board.push_iccs(m)
        out.append([piece_class(c) for c in board.squares])
    return out


def test_replayed_boards_match_the_rules_also_mid_game_and_across_games(board_dataset):
    ds, games = board_dataset
    tokens = np.fromfile(ds / "move" / "train.bin", dtype=np.uint16)
    starts = np.load(ds / "move" / "train.idx.npy")
    want: list = []        # per token of the split: the board after it, or None after a result token
    for moves, _ in games:
        want.extend(rules_boards(moves))
        want.append(None)
    assert len(want) == len(tokens)
    squares = move_squares()
    for start, length in ((0, 40), (int(starts[3]) + 5, 60), (int(starts[5]) - 3, 10), (len(tokens) - 30, 30)):
        classes, valid = window_boards(tokens, starts, start, length, squares)
        assert classes.shape == (length, N_SQUARES) and classes.max() < N_CLASSES
        for i in range(length):
            w = want[start + i]
            assert valid[i] == (w is not None)
            if w is not None:
                assert classes[i].tolist() == w
    assert piece_class(0) == 0 and piece_class(1) == 1 and piece_class(15) == 14


def test_windows_carry_board_targets_also_mirrored(board_dataset):
    ds, _ = board_dataset
    tokens = np.fromfile(ds / "move" / "train.bin", dtype=np.uint16)
    starts = np.load(ds / "move" / "train.idx.npy")
    kw = dict(game_start_p=0.3, seed=0, legal_sets=True, board_targets=True)
    plain = TrainWindows(ds, TOK, 32, 16, mirror_p=0.0, **kw).batch(2)
    mixed = TrainWindows(ds, TOK, 32, 16, mirror_p=0.5, **kw).batch(2)
    assert len(plain) == 5 and plain[3].shape == (16, 32, N_SQUARES) and plain[4].shape == (16, 32)
    assert plain[2].all()                               # no legal-only source: every row's moves count
    flipped = [not torch.equal(a, b) for a, b in zip(plain[0], mixed[0])]
    assert any(flipped) and not all(flipped)
    mirrored_tokens = np.asarray(TOK.mirror_table, dtype=np.int64)[tokens]
    for i in range(16):
        x = plain[0][i].numpy()
        start = next(s for s in np.flatnonzero(tokens == x[0]) if np.array_equal(tokens[s:s + 33], x))
        b, v = window_boards(tokens, starts, int(start), 32)
        assert np.array_equal(plain[3][i].numpy(), b) and np.array_equal(plain[4][i].numpy(), v)
        if flipped[i]:    # the mirrored window's targets are the boards of the mirrored game
            mb, mv = window_boards(mirrored_tokens, starts, int(start), 32)
            assert np.array_equal(mixed[3][i].numpy(), mb) and np.array_equal(mixed[3][i].numpy(), b[:, MIRROR_SQUARES])
            assert np.array_equal(mixed[4][i].numpy(), mv)
        else:
            assert torch.equal(mixed[3][i], plain[3][i])
    assert v.any()


def test_board_head_trains_and_is_never_exported(board_dataset):
    ds, _ = board_dataset
    dm = XiangqiDataModule(str(ds), block_size=32, batch_size=8, game_start_p=0.5, mirror_p=0.5, val_windows=4,
                           legal_sets=True, board_targets=True)
    batch = dm._train_windows(0, 1, 0).batch(0)
    torch.manual_seed(0)
    module = GPTModule(n_layer=2, n_head=2, n_embd=32, block_size=32, legal_weight=0.5, board_weight=1.0,
                       board_layer=1, lr=3e-3, warmup_steps=0)
    logged = {}
    module.log = lambda name, value, **k: logged.__setitem__(name, float(value.detach()))
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        module.on_train_epoch_start()
        loss = module.training_step(batch, 0)
        first = first if first is not None else logged["train/board_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logged["train/board_loss"] < 0.5 * first        # the head learns the boards of its batch
    assert 0 < logged["train/board_acc"] <= 1
    with torch.no_grad():
        module.board_head[1].weight.zero_()
        module.board_head[1].bias.zero_()
    module.eval()
    module.on_train_epoch_start()
    with_head = module.training_step(batch, 0)
    ce_with_head = logged["train/ce"]
    module.on_train_epoch_start()
    module.hparams.board_weight = 0.0
    without = module.training_step(batch, 0)
    assert with_head.item() > without.item()                 # the board term counts: log(15) per square at zero
    assert ce_with_head == pytest.approx(logged["train/ce"])  # train/ce is the move loss alone
    assert not any(k.startswith("board") for k in module.model.state_dict())   # the exported GPT has no head

    # without board targets, and bad options: one-line configuration errors
    module.hparams.board_weight = 1.0
    with pytest.raises(ConfigError, match="board_targets"):
        module.training_step(batch[:3], 0)
    for kw, pattern in ((dict(board_weight=-1), "board_weight"), (dict(board_weight=1, board_layer=3), "board_layer"),
                        (dict(board_weight=1, objective="teaforn"), "objective: tf")):
        with pytest.raises(ConfigError, match=pattern):
            GPTModule(n_layer=2, n_head=2, n_embd=32, block_size=32, **kw)
    with pytest.raises(ConfigError, match="legal_sets"):
        XiangqiDataModule(str(ds), block_size=32, batch_size=8, val_windows=4, board_targets=True)
