"""benchmarks/mirror_ensemble.py: weight 0 is exactly what ``evaluate`` reports, weight 1 is the model on the
mirrored games (mapped back), and a mixture is a probability distribution."""

import math

import pytest
import torch

from benchmark_scripts import load_benchmark
from eval_fixtures import one_thread  # noqa: F401  (the fixture of pytestmark)
from eval_fixtures import load, pgn_text, random_game, tiny_checkpoint
from xiangqi_gpt.evaluate import evaluate_games, read_eval_games
from xiangqi_gpt.tokenizer import mirror_iccs

pytestmark = pytest.mark.usefixtures("one_thread")
GAMES = [random_game(11, 70), random_game(12, 30)]


def _report(ckpt, pgn):
    loaded = load(ckpt)
    games, _ = read_eval_games(str(pgn))
    return evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=1000)


def test_weights_zero_and_one_match_evaluate(tmp_path):
    bench = load_benchmark("mirror_ensemble")
    ckpt = tiny_checkpoint(tmp_path, "move", 32)          # 70 plies: several context windows
    pgn, mirrored = tmp_path / "g.pgn", tmp_path / "m.pgn"
    pgn.write_text(pgn_text(GAMES), encoding="utf-8")
    mirrored.write_text(pgn_text([[mirror_iccs(m) for m in g] for g in GAMES]), encoding="utf-8")
    result = bench.measure(ckpt, str(pgn), 10, [0.0, 1.0, 0.4], progress=False)
    plain, flipped = _report(ckpt, pgn), _report(ckpt, mirrored)
    for row, ref in zip(result["rows"], (plain, flipped)):
        got = row["all"]
        assert got["positions"] == ref["positions"] == sum(len(g) for g in GAMES)
        for key in ("top1", "top1_raw", "legal_rate"):
            assert got[key] == pytest.approx(ref[key], abs=1e-9), key
        assert got["nll"] == pytest.approx(ref["nll"], rel=1e-5)
    # -log is convex: the mixture's nll is at most the same mixture of the two nlls (Jensen), and below it here
    mixed = result["rows"][2]["all"]["nll"]
    assert mixed < 0.6 * plain["nll"] + 0.4 * flipped["nll"]
    assert sum(r["positions"] for r in result["rows"][0].values() if isinstance(r, dict)) == 2 * len(
        GAMES[0] + GAMES[1])


def test_mix_is_a_distribution():
    bench = load_benchmark("mirror_ensemble")
    a = torch.log_softmax(torch.randn(3, 50), dim=-1)
    b = torch.log_softmax(torch.randn(3, 50), dim=-1)
    for w in (0.0, 0.25, 1.0):
        m = bench.mix(a, b, w)
        assert torch.allclose(m.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert torch.equal(bench.mix(a, b, 0.0), a) and torch.equal(bench.mix(a, b, 1.0), b)
    assert torch.allclose(bench.mix(a, b, 0.25).exp(), 0.75 * a.exp() + 0.25 * b.exp(), atol=1e-6)
    assert math.isclose(float(bench.mix(a, a, 0.3)[0, 0]), float(a[0, 0]), abs_tol=1e-6)


def test_bad_weights_are_one_line_errors(capsys):
    bench = load_benchmark("mirror_ensemble")
    for bad in ("2", "x"):
        with pytest.raises(SystemExit):
            bench.main(["--weights", bad])
        assert "--weights" in capsys.readouterr().err
