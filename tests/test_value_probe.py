"""studies/value_probe.py on a tiny model and legal random games: the four probes are fitted and reported, and
--export writes the model again with a value head and every other weight unchanged."""

from __future__ import annotations

import json

import torch

from eval_fixtures import load, random_game, tiny_checkpoint
from study_scripts import load_script
from training_fixtures import write_dataset


def games(n: int, seed: int):
    out = []
    for i in range(n):
        moves = random_game(seed + i, max_plies=30)
        out.append((moves, ("1-0", "0-1", "1/2-1/2")[i % 3]))
    return out


def test_probe_reports_and_exports_a_value_head(tmp_path, capsys):
    data = tmp_path / "ds"
    write_dataset(data, {"train": games(24, 0), "val": games(12, 100)}, tokenizers=("move",))
    write_dataset(data / "engine", {"train": games(24, 200), "val": games(12, 300)}, tokenizers=("move",))
    ckpt = tiny_checkpoint(tmp_path)
    out, report = tmp_path / "valued.pt", tmp_path / "probe.json"
    probe = load_script("value_probe")
    assert probe.main(["--checkpoint", ckpt, "--data", str(data), "--games", "24", "--search", str(tmp_path / "no"),
                       "--json", str(report), "--export", str(out)]) == 0
    results = json.loads(report.read_text())["results"]
    assert list(results) == ["prior", "material", "gpt", "gpt+material"]
    for row in results.values():
        assert set(row) == {"master", "engine"} and all(r["log_loss"] > 0 and 0 <= r["acc"] <= 1 for r in row.values())
    assert "| gpt+material |" in capsys.readouterr().out
    src, valued = load(ckpt), load(out)
    assert valued.model.value_head is not None and valued.info["value_probe"]["head"] == "residual"
    for name, weight in src.model.state_dict().items():
        torch.testing.assert_close(valued.model.state_dict()[name], weight, atol=1e-3, rtol=1e-3)   # fp16 file
