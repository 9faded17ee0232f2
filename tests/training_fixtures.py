"""Synthetic token datasets in the layout ``prepare`` writes (meta.json, {move,char}/{split}.bin + .idx.npy).

Games are drawn from a few fixed "opening" templates of geometrically possible moves (not legal games: the training
code never looks at a board), so a tiny model can learn them in a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xiangqi_gpt.data.tokenizer import TOKENIZER_NAMES, get_tokenizer

RESULTS = ["1-0", "0-1", "1/2-1/2", "*"]


def make_games(n_games: int, seed: int = 0, n_templates: int = 6, min_len: int = 12, max_len: int = 40):
    rng = np.random.default_rng(seed)
    moves = get_tokenizer("move").moves
    templates = [[moves[i] for i in rng.integers(0, len(moves), size=max_len)] for _ in range(n_templates)]
    games = []
    for _ in range(n_games):
        t = templates[rng.integers(n_templates)]
        length = int(rng.integers(min_len, max_len + 1))
        games.append((t[:length], RESULTS[rng.integers(len(RESULTS))]))
    return games


def write_dataset(out, games_by_split: dict[str, list], tokenizers=TOKENIZER_NAMES) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, games in games_by_split.items():
        entry = {"games": len(games), "plies": sum(len(m) for m, _ in games), "tokens": {}}
        for name in tokenizers:
            tok = get_tokenizer(name)
            ids, starts = [], []
            for moves, result in games:
                starts.append(len(ids))
                ids.extend(tok.encode_game(moves, result))
            (out / name).mkdir(exist_ok=True)
            np.asarray(ids, dtype=np.uint16).tofile(out / name / f"{split}.bin")
            np.save(out / name / f"{split}.idx.npy", np.asarray(starts, dtype=np.int64))
            entry["tokens"][name] = len(ids)
        splits[split] = entry
    meta = {
        "format_version": 1,
        "dtype": "uint16",
        "tokenizers": {name: {"vocab_size": get_tokenizer(name).vocab_size,
                              "tokens_per_move": get_tokenizer(name).tokens_per_move,
                              "tokens": list(get_tokenizer(name).tokens)} for name in TOKENIZER_NAMES},
        "splits": splits,
        "attribution": "synthetic test data",
        "sources": [],
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def make_dataset(out, n_train: int = 300, n_val: int = 40, n_test: int = 10, seed: int = 0) -> Path:
    games = make_games(n_train + n_val + n_test, seed=seed)
    return write_dataset(out, {"train": games[:n_train], "val": games[n_train:n_train + n_val],
                               "test": games[n_train + n_val:]})
