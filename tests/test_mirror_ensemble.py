"""studies/mirror_ensemble.py: weight 0 is exactly what ``evaluate`` reports, weight 1 is the model on the
mirrored games (mapped back), and a mixture is a probability distribution."""

import math

import pytest
import torch

from eval_fixtures import one_thread  # noqa: F401  (the fixture of pytestmark)
from eval_fixtures import load, pgn_text, random_game, tiny_checkpoint
from study_scripts import load_script
from xiangqi_gpt.model.evaluate import evaluate_games, read_eval_games
from xiangqi_gpt.data.tokenizer import BOS, mirror_iccs

pytestmark = pytest.mark.usefixtures("one_thread")
GAMES = [random_game(11, 70), random_game(12, 30)]


def _report(ckpt, pgn):
    loaded = load(ckpt)
    games, _ = read_eval_games(str(pgn))
    return evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=1000)


def test_weights_zero_and_one_match_evaluate(tmp_path):
    bench = load_script("mirror_ensemble")
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


def test_a_model_with_source_tokens_is_scored_as_evaluate_scores_it(tmp_path):
    """The study asks the model in the master condition (its start token, not the legacy ``<bos>``), and its
    mirrored view in the mirror condition: w = 0 is ``evaluate`` on the games, w = 1 ``evaluate --source mirror``
    on the mirrored games."""
    import torch as _torch

    from eval_fixtures import save_pt
    from xiangqi_gpt.data.tokenizer import SOURCES
    from xiangqi_gpt.model.gpt import GPT, GPTConfig

    bench = load_script("mirror_ensemble")
    _torch.manual_seed(3)
    model = GPT(GPTConfig(tokenizer="move", block_size=32, n_layer=2, n_head=2, n_embd=32,
                          sources=list(SOURCES))).eval()
    ckpt = save_pt(model, tmp_path / "sources.pt")
    short = [random_game(21, 2), random_game(22, 3)]     # short games: the start token weighs on every answer
    pgn, mirrored = tmp_path / "g.pgn", tmp_path / "m.pgn"
    pgn.write_text(pgn_text(short), encoding="utf-8")
    mirrored.write_text(pgn_text([[mirror_iccs(m) for m in g] for g in short]), encoding="utf-8")
    result = bench.measure(ckpt, str(pgn), 10, [0.0, 1.0], progress=False)
    loaded = load(ckpt)
    games, _ = read_eval_games(str(pgn))
    master = evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=1000, source="master")
    bos = evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=1000, source=None)
    games_m, _ = read_eval_games(str(mirrored))
    flipped = evaluate_games(loaded.model, loaded.tokenizer, games_m, free_run_every=1000, source="mirror")
    assert abs(bos["nll"] - master["nll"]) > 1e-3          # the condition changes the answer
    for row, ref in zip(result["rows"], (master, flipped)):
        assert row["all"]["nll"] == pytest.approx(ref["nll"], rel=1e-5)
        assert row["all"]["top1"] == pytest.approx(ref["top1"], abs=1e-9)


def test_mix_is_a_distribution():
    bench = load_script("mirror_ensemble")
    a = torch.log_softmax(torch.randn(3, 50), dim=-1)
    b = torch.log_softmax(torch.randn(3, 50), dim=-1)
    for w in (0.0, 0.25, 1.0):
        m = bench.mix(a, b, w)
        assert torch.allclose(m.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert torch.equal(bench.mix(a, b, 0.0), a) and torch.equal(bench.mix(a, b, 1.0), b)
    assert torch.allclose(bench.mix(a, b, 0.25).exp(), 0.75 * a.exp() + 0.25 * b.exp(), atol=1e-6)
    assert math.isclose(float(bench.mix(a, a, 0.3)[0, 0]), float(a[0, 0]), abs_tol=1e-6)


def test_bad_weights_are_one_line_errors(capsys):
    bench = load_script("mirror_ensemble")
    for bad in ("2", "x"):
        with pytest.raises(SystemExit):
            bench.main(["--weights", bad])
        assert "--weights" in capsys.readouterr().err


# -- the mirror ensemble in the model, its file and the commands ------------------------------------------------------

def _manual_mix(model, history, weight):
    """(1 - w) P(.|history) + w P(mirror(.)|mirror(history)), from two plain calls."""
    table = model.tokenizer.mirror_table
    model.set_mirror_ensemble(0.0)
    plain = model.next_logprobs(history)
    mirrored = model.next_logprobs([table[i] for i in history])[torch.tensor(table)]
    model.set_mirror_ensemble(weight)
    return torch.logaddexp(plain + math.log(1 - weight), mirrored + math.log(weight))


def test_next_logprobs_generate_and_cache(tmp_path):
    from xiangqi_gpt.model.gpt import KVCache

    model = load(tiny_checkpoint(tmp_path, "move", 32)).model
    tok = model.tokenizer
    history = [BOS] + tok.encode_moves(GAMES[0][:40])        # longer than block_size: the windows jump
    for n in (1, 5, 31, 40):
        expected = _manual_mix(model, history[:n], 0.3)
        assert torch.allclose(model.next_logprobs(history[:n]), expected, atol=1e-5)
    cache = KVCache()
    for n in range(1, len(history) + 1):                   # one cache for the history as it grows
        assert torch.allclose(model.next_logprobs(history[:n], cache), model.next_logprobs(history[:n]), atol=1e-5)
    assert cache.mirror is not None and cache.mirror.length == cache.length
    greedy = list(history[:20])
    for _ in range(20):                                    # across a window jump
        greedy.append(int(model.next_logprobs(greedy).argmax()))
    assert model.generate(history[:20], 20, temperature=0.0)[0].tolist() == greedy


def test_player_uses_the_ensemble(tmp_path):
    from xiangqi_gpt.rules.board import Board
    from xiangqi_gpt.play.player import GPTPlayer

    loaded = load(tiny_checkpoint(tmp_path, "move", 64))
    loaded.model.set_mirror_ensemble(0.45)
    player = GPTPlayer(loaded)
    board = Board()
    for m in GAMES[1][:6]:
        board.push_iccs(m)
    expected = _manual_mix(loaded.model, player.history_ids(board), 0.45)
    tok = loaded.tokenizer
    for move, score in player.move_logprobs(board):
        assert score == pytest.approx(float(expected[tok.move_id(move.iccs())]), abs=1e-5)
    assert player.raw_move(board) == tok.tokens[int(expected.argmax())]


def test_bad_weights_and_the_char_tokenizer(tmp_path):
    from xiangqi_gpt.errors import ConfigError

    model = load(tiny_checkpoint(tmp_path, "move", 32)).model
    for bad in (-0.1, 1.0, 2, "x", None):
        with pytest.raises(ConfigError, match="mirror ensemble weight"):
            model.set_mirror_ensemble(bad)
    assert model.mirror_weight == 0.0
    char = load(tiny_checkpoint(tmp_path, "char", 64)).model
    char.set_mirror_ensemble(0.0)
    with pytest.raises(ConfigError, match="move tokenizer"):
        char.set_mirror_ensemble(0.3)


def test_file_weight_export_and_override(tmp_path):
    from xiangqi_gpt.model.checkpoint import export_model, load_model
    from xiangqi_gpt.cli import main
    from xiangqi_gpt.errors import CheckpointError

    src = tiny_checkpoint(tmp_path, "move", 32)
    assert load_model(src).model.mirror_weight == 0.0
    out = tmp_path / "mixed.pt"
    assert main(["export", src, "--out", str(out), "--mirror-ensemble", "0.4"]) == 0
    assert torch.load(out, weights_only=False)["info"]["mirror_ensemble"] == 0.4
    assert load_model(out).model.mirror_weight == 0.4
    assert load_model(out, mirror_ensemble=0.0).model.mirror_weight == 0.0
    export_model(out, tmp_path / "kept.pt")                  # a re-export keeps the file's weight ...
    assert load_model(tmp_path / "kept.pt").model.mirror_weight == 0.4
    export_model(out, tmp_path / "off.pt", mirror_ensemble=0.0)   # ... unless told otherwise
    assert "mirror_ensemble" not in torch.load(tmp_path / "off.pt", weights_only=False)["info"]
    payload = torch.load(out, weights_only=False)
    payload["info"]["mirror_ensemble"] = 3
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: info mirror_ensemble"):
        load_model(tmp_path / "bad.pt")


def test_evaluate_with_the_ensemble(tmp_path, capsys):
    """evaluate --mirror-ensemble W: the teacher-forced numbers are the benchmark's at W; the free runs are
    GPT.generate's with the ensemble."""
    from xiangqi_gpt.cli import main

    bench = load_script("mirror_ensemble")
    ckpt = tiny_checkpoint(tmp_path, "move", 32)
    pgn = tmp_path / "g.pgn"
    pgn.write_text(pgn_text(GAMES), encoding="utf-8")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--checkpoint", ckpt, "--pgn", str(pgn), "--json", str(out), "--quiet",
                 "--free-run-every", "20", "--mirror-ensemble", "0.3"]) == 0
    import json

    report = json.loads(out.read_text())
    ref = bench.measure(ckpt, str(pgn), 10, [0.3], progress=False)["rows"][0]["all"]
    assert report["mirror_ensemble"] == 0.3
    for key in ("top1", "top1_raw", "legal_rate"):
        assert report[key] == pytest.approx(ref[key], abs=1e-9)
    assert report["nll"] == pytest.approx(ref["nll"], rel=1e-5)
    loaded = load(ckpt)
    loaded.model.set_mirror_ensemble(0.3)
    from xiangqi_gpt.rules.board import Move
    from xiangqi_gpt.model.evaluate import GameScorer

    moves = [Move.from_iccs(m) for m in GAMES[0]]
    runs = GameScorer(loaded.model, loaded.tokenizer).free_runs(moves, 20)
    history = [BOS] + loaded.tokenizer.encode_moves(GAMES[0])
    assert [r.ply for r in runs] == [0, 20, 40, 60]
    for run in runs:
        greedy = list(history[:1 + run.ply])
        for _ in range(len(run.generated)):
            greedy.append(int(loaded.model.next_logprobs(greedy).argmax()))
        assert run.generated == [loaded.tokenizer.tokens[i] for i in greedy[1 + run.ply:]]
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", ckpt, "--pgn", str(pgn), "--mirror-ensemble", "1.5"])
    assert "--mirror-ensemble" in capsys.readouterr().err
