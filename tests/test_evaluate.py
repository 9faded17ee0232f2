import json
import math

import pytest

from eval_fixtures import one_thread  # noqa: F401  (the fixture of pytestmark)
from eval_fixtures import (forced_move_model, forced_token_model, load, pgn_text, random_game, save_pt,
                           tiny_checkpoint)
from xiangqi_gpt.rules.board import Board, Move
from xiangqi_gpt.cli import main
from xiangqi_gpt.model.evaluate import (ENDGAME_MAJOR_PIECES, FREE_RUN_COUNTING, FREE_RUN_KS, OPENING_PLIES, PHASES,
                                  GameScorer, PositionScore, build_report, evaluate_games, phase_of,
                                  read_eval_games, summarize_positions)
from xiangqi_gpt.rules.notation import is_legal_text
from xiangqi_gpt.play.player import GPTPlayer
from xiangqi_gpt.data.tokenizer import DRAW, END, SPECIAL_TOKENS, TOKEN_RESULTS

pytestmark = pytest.mark.usefixtures("one_thread")

GAMES = [random_game(1, 70), random_game(2, 25), random_game(3, 8)]


@pytest.fixture
def pgn_file(tmp_path):
    path = tmp_path / "games.pgn"
    path.write_text(pgn_text(GAMES, ["1-0", "0-1", "*"]), encoding="utf-8")
    return str(path)


def as_moves(iccs):
    return [Move.from_iccs(m) for m in iccs]


@pytest.mark.parametrize("tokenizer,block", [("move", 32), ("char", 96)])
def test_positions_match_the_player(tmp_path, tokenizer, block):
    """The batched teacher-forced pass (windows for a 70-ply game longer than block_size) gives, position by
    position, what GPTPlayer computes one position at a time."""
    loaded = load(tiny_checkpoint(tmp_path, tokenizer, block))
    scorer = GameScorer(loaded.model, loaded.tokenizer)
    scores = scorer.score_game(as_moves(GAMES[0]))
    assert len(scores) == len(GAMES[0])
    player = GPTPlayer(loaded)
    board = Board()
    for p, move in enumerate(GAMES[0]):
        logprobs = {m.iccs(): s for m, s in player.move_logprobs(board)}
        assert math.isclose(scores[p].nll, -logprobs[move], rel_tol=1e-4, abs_tol=1e-4)
        assert scores[p].rank == sum(v > logprobs[move] for v in logprobs.values())
        raw = player.raw_move(board)
        assert scores[p].legal == is_legal_text(board, raw)
        assert scores[p].end == raw.startswith(tuple(SPECIAL_TOKENS[i] for i in TOKEN_RESULTS))
        assert scores[p].top1_raw == (raw == move)
        assert scores[p].n_legal == len(board.legal_moves())
        board.push_iccs(move)


@pytest.mark.parametrize("chunk_tokens", [None, 100])
def test_char_scores_equal_plain_forward_passes(tmp_path, chunk_tokens):
    """The char tokenizer's trie scoring (several positions per GPT.tree_logprobs call, over several windows)
    gives every legal move the summed log-probability that one plain forward pass over the position's window and
    the move's four tokens gives; so the nll and the rank of the game's move are those of the plain passes."""
    import torch
    import torch.nn.functional as F

    loaded = load(tiny_checkpoint(tmp_path, "char", 96))
    model, tok = loaded.model, loaded.tokenizer
    scorer = GameScorer(model, tok) if chunk_tokens is None else GameScorer(model, tok, chunk_tokens=chunk_tokens)
    moves = GAMES[0][:40]                                 # 161 tokens: beyond block_size, several windows
    scores = scorer.score_game(as_moves(moves))
    history = [0] + tok.encode_moves(moves)
    board = Board()
    for p, move in enumerate(moves):
        n = 1 + 4 * p
        start = model.context_start(n, 3)
        legal = [m.iccs() for m in board.legal_moves()]
        seqs = torch.tensor([history[start:n] + tok.move_ids(m) for m in legal])
        with torch.no_grad():
            logp = F.log_softmax(model(seqs[:, :-1])[0][:, -4:].float(), dim=-1)
        plain = logp.gather(-1, seqs[:, -4:, None]).squeeze(-1).sum(dim=1)
        human = plain[legal.index(move)]
        assert scores[p].nll == pytest.approx(-float(human), abs=1e-4)
        assert int((plain > human + 1e-4).sum()) <= scores[p].rank <= int((plain > human - 1e-4).sum())  # ties
        board.push_iccs(move)


@pytest.mark.parametrize("tokenizer,block,mirror", [("move", 48, 0.0), ("char", 192, 0.0), ("move", 48, 0.4)])
def test_batched_free_runs_equal_generate(tmp_path, tokenizer, block, mirror):
    """Continuations generated together (one call per token for all prefixes) are the tokens GPT.generate gives
    for each prefix alone; later prefixes of this 70-ply game outgrow the first window and use generate. Also
    with a mirror ensemble (both paths mix the mirrored game's answer in)."""
    loaded = load(tiny_checkpoint(tmp_path, tokenizer, block))
    loaded.model.set_mirror_ensemble(mirror)
    scorer = GameScorer(loaded.model, loaded.tokenizer)
    moves = as_moves(GAMES[0])
    together = scorer.free_runs(moves, 6)
    alone = scorer.free_runs(moves, 6, batched=False)
    assert [r.ply for r in together] == list(range(0, 70, 6))
    assert [r.generated for r in together] == [r.generated for r in alone]
    assert [r.legal for r in together] == [r.legal for r in alone]
    model, tpm = loaded.model, loaded.tokenizer.tokens_per_move
    assert model.context_start(1 + tpm * 6 + 16 * tpm - 1) == 0 < model.context_start(1 + tpm * 66 + 16 * tpm - 1)


@pytest.mark.parametrize("tokenizer,block", [("move", 32), ("char", 96)])
def test_report_keys_and_ranges(tmp_path, pgn_file, tokenizer, block):
    loaded = load(tiny_checkpoint(tmp_path, tokenizer, block))
    games, skipped = read_eval_games(pgn_file)
    report = evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=5)
    assert report["games"] == 3 and report["positions"] == sum(map(len, GAMES))
    for key in ("top1", "top5", "top1_raw", "legal_rate", "end_rate"):
        assert 0 <= report[key] <= 1
        assert all(0 <= report["phases"][ph][key] <= 1 for ph in PHASES if report["phases"][ph]["positions"])
    assert report["top1"] <= report["top5"]
    assert report["top1_raw"] <= report["legal_rate"] or report["top1_raw"] == 0
    assert report["legal_rate"] + report["end_rate"] <= 1
    assert report["nll"] > 0
    assert sum(report["phases"][ph]["positions"] for ph in PHASES) == report["positions"]
    assert len(report["by_ply"]["end_rate"]) == len(report["by_ply"]["positions"])
    fr = report["free_run"]
    assert fr["counting"] == FREE_RUN_COUNTING and "free_run_counting" in report["definitions"]
    assert fr["runs"] == sum(len(range(0, len(g), 5)) for g in GAMES)
    assert fr["prefixes"] == fr["runs"] - (len(GAMES) - 1)     # the three games share only their start position
    legal = [fr["legal"][str(k)] for k in FREE_RUN_KS]
    assert all(0 <= x <= 1 for x in legal) and legal == sorted(legal, reverse=True)
    assert fr["match_prefixes"]["16"] <= fr["match_prefixes"]["1"] == fr["prefixes"]
    assert sum(report["by_ply"]["positions"]) == report["positions"]


def test_forced_move_model_is_caught_playing_illegal_moves(tmp_path, pgn_file):
    """A model that always says h2e2: legal only where h2e2 is legal, so legal_rate < 1, matching a count done with
    the rule engine; its legal-only top-1 is unaffected by the illegal argmax."""
    loaded = load(save_pt(forced_move_model("h2e2", block_size=32), tmp_path / "forced.pt"))
    games, _ = read_eval_games(pgn_file)
    report = evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=4)
    h2e2 = Move.from_iccs("h2e2")
    legal_here, human_h2e2, prefix_legal = [], [], {}
    for g in GAMES:
        board = Board()
        for p, m in enumerate(g):
            legal_here.append(board.is_legal(h2e2))
            human_h2e2.append(m == "h2e2")
            if p % 4 == 0:
                prefix_legal[tuple(g[:p])] = board.is_legal(h2e2)    # the start position once, not per game
            board.push_iccs(m)
    assert report["legal_rate"] == pytest.approx(sum(legal_here) / len(legal_here))
    assert report["legal_rate"] < 1 and report["end_rate"] == 0
    assert report["free_run"]["prefixes"] == len(prefix_legal)
    assert report["top1_raw"] == pytest.approx(sum(human_h2e2) / len(human_h2e2))
    assert report["free_run"]["legal"]["1"] == pytest.approx(sum(prefix_legal.values()) / len(prefix_legal))
    assert report["free_run"]["legal"]["2"] == 0      # the same side cannot play h2e2 twice in a row


def test_phases():
    board = Board()
    assert phase_of(board, 0) == "opening" and phase_of(board, OPENING_PLIES - 1) == "opening"
    assert phase_of(board, OPENING_PLIES) == "middlegame"
    # two chariots, one horse, two cannons, one more chariot = 6 major pieces: endgame from ply 20 on
    few = Board("2bak4/9/2n6/9/2r6/9/2R6/2C3C2/4A4/4K2R1 w - - 0 40")
    assert sum(1 for p in few.pieces().values() if p in "RNCrnc") == ENDGAME_MAJOR_PIECES
    assert phase_of(few, OPENING_PLIES) == "endgame" and phase_of(few, 5) == "opening"


def test_cli_writes_json_and_plots(tmp_path, pgn_file):
    ckpt = tiny_checkpoint(tmp_path, "move", 32)
    out = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", ckpt, "--pgn", pgn_file, "--json", str(out), "--plots",
                 str(tmp_path / "plots"), "--limit", "2", "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["games"] == 2 and report["positions"] == len(GAMES[0]) + len(GAMES[1])
    for key in ("top1", "top5", "top1_raw", "legal_rate", "end_rate", "nll", "free_run", "phases"):
        assert key in report
    assert report["free_run"]["counting"] == FREE_RUN_COUNTING
    assert (tmp_path / "plots" / "accuracy_by_ply.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "free_run.png").stat().st_size > 1000


def test_cli_errors_are_one_line(tmp_path, pgn_file, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for argv in (["evaluate", "--checkpoint", str(bad), "--pgn", pgn_file],
                 ["evaluate", "--checkpoint", tiny_checkpoint(tmp_path), "--pgn", str(tmp_path / "missing.pgn")]):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--quiet"])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def test_unreadable_games_are_skipped(tmp_path):
    path = tmp_path / "mixed.pgn"
    path.write_text(pgn_text([GAMES[2]]) + '\n[Event "broken"]\n\n1. h2e2 h2e2 *\n', encoding="utf-8")
    games, skipped = read_eval_games(str(path))
    assert len(games) == 1 and skipped["unreadable"] == 1


# --------------------------------------------------------------------------------------------------------------------
# Free runs: each distinct prefix once


SHARED = ("h2e2", "h9g7")
SHARING = [random_game(11, 30, SHARED), random_game(12, 24, SHARED), random_game(13, 20, ("b2e2",))]


def test_start_position_counted_once(tmp_path):
    """Three games from the start, all sharing ply 0 and two sharing their first two moves. With only ply-0
    prefixes there is one prefix, not three: its (single) continuation decides legal[k], and match[1] is the
    share of its games that open with the generated move (the forced model always says h2e2: 2 of 3)."""
    loaded = load(save_pt(forced_move_model("h2e2", block_size=96), tmp_path / "forced.pt"))
    path = tmp_path / "sharing.pgn"
    path.write_text(pgn_text(SHARING), encoding="utf-8")
    games, _ = read_eval_games(str(path))
    report = evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=1000)
    fr = report["free_run"]
    assert fr["runs"] == 3 and fr["prefixes"] == 1 and fr["match_prefixes"]["1"] == 1
    assert fr["legal"]["1"] == 1 and fr["legal"]["2"] == 0
    assert fr["match"]["1"] == pytest.approx(2 / 3) and fr["prefix_match"]["1"] == pytest.approx(2 / 3)
    assert report["phases"]["opening"]["free_run"]["prefixes"] == 1


def test_free_runs_count_distinct_prefixes(tmp_path):
    """Every 2nd ply of games sharing prefixes: the report equals a brute-force count over distinct prefixes
    (the rule engine decides whether h2e2 is legal), and repeating games changes only ``runs``."""
    loaded = load(save_pt(forced_move_model("h2e2", block_size=96), tmp_path / "forced.pt"))
    h2e2 = Move.from_iccs("h2e2")
    every = 2
    legal1: dict[tuple, bool] = {}
    match1: dict[tuple, list[bool]] = {}
    for g in SHARING:
        board = Board()
        for p, m in enumerate(g):
            if p % every == 0:
                legal1[tuple(g[:p])] = board.is_legal(h2e2)
                match1.setdefault(tuple(g[:p]), []).append(m == "h2e2")
            board.push_iccs(m)
    assert len(legal1) == sum(len(range(0, len(g), every)) for g in SHARING) - 2 - 1   # ply 0 (x3), ply 2 (x2)
    path = tmp_path / "sharing.pgn"
    path.write_text(pgn_text(SHARING), encoding="utf-8")
    games, _ = read_eval_games(str(path))
    fr = evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=every)["free_run"]
    assert fr["prefixes"] == len(legal1) and fr["runs"] == len(legal1) + 3
    assert fr["legal"]["1"] == pytest.approx(sum(legal1.values()) / len(legal1))
    assert fr["match"]["1"] == pytest.approx(sum(sum(v) / len(v) for v in match1.values()) / len(match1))

    twice = evaluate_games(loaded.model, loaded.tokenizer, games + games[::-1], free_run_every=every)["free_run"]
    assert twice["runs"] == 2 * fr["runs"]
    assert {k: v for k, v in twice.items() if k != "runs"} == {k: v for k, v in fr.items() if k != "runs"}


def test_free_run_memo_gives_the_same_tokens(tmp_path):
    """A prefix generated for an earlier game is reused, not regenerated, and gives the same continuation."""
    loaded = load(tiny_checkpoint(tmp_path, "move", 48))
    scorer = GameScorer(loaded.model, loaded.tokenizer)
    a, b = as_moves(SHARING[0]), as_moves(SHARING[1])
    memo: dict = {}
    scorer.free_runs(a, 2, memo=memo)
    n = len(memo)
    runs_b = scorer.free_runs(b, 2, memo=memo)
    assert len(memo) == n + len(runs_b) - 2                   # b's ply-0 and ply-2 prefixes came from a
    assert [r.generated for r in runs_b] == [r.generated for r in scorer.free_runs(b, 2)]
    assert runs_b[0].prefix == "" and runs_b[1].prefix == "h2e2 h9g7"


# --------------------------------------------------------------------------------------------------------------------
# end_rate


def test_end_rate_summary():
    scores = [PositionScore(ply=p, phase=ph, n_legal=40, rank=0, top1_raw=False, legal=legal, nll=1.0, end=end)
              for p, (ph, legal, end) in enumerate([("opening", True, False), ("opening", False, True),
                                                    ("opening", False, False), ("endgame", False, True)])]
    s = summarize_positions(scores)
    assert s["end_rate"] == pytest.approx(0.5) and s["legal_rate"] == pytest.approx(0.25)
    report = build_report(scores, [], 0, 1)
    assert report["phases"]["opening"]["end_rate"] == pytest.approx(1 / 3)
    assert report["phases"]["endgame"]["end_rate"] == 1 and report["phases"]["middlegame"]["end_rate"] is None
    assert report["by_ply"]["end_rate"] == [0.5]


@pytest.mark.parametrize("tokenizer,token", [("move", DRAW), ("char", END)])
def test_end_rate_of_a_model_that_always_ends(tmp_path, pgn_file, tokenizer, token):
    """A model whose top token is always a result token: end_rate 1 everywhere, and none of it is legal."""
    loaded = load(save_pt(forced_token_model(token, tokenizer, block_size=96), tmp_path / "ender.pt"))
    games, _ = read_eval_games(pgn_file, limit=2)
    report = evaluate_games(loaded.model, loaded.tokenizer, games, free_run_every=10)
    assert report["end_rate"] == 1 and report["legal_rate"] == 0 and report["top1_raw"] == 0
    assert all(report["phases"][ph]["end_rate"] in (1, None) for ph in PHASES)
    assert report["free_run"]["legal"]["1"] == 0
