import math

import pytest
import torch

from eval_fixtures import one_thread  # noqa: F401  (the fixture of pytestmark)
from eval_fixtures import forced_move_model, load, random_game, save_pt, tiny_checkpoint
from xiangqi_gpt.rules.board import Board, Move
from xiangqi_gpt.errors import ConfigError, IllegalMoveError
from xiangqi_gpt.rules.notation import is_legal_text
from xiangqi_gpt.play.player import GPTPlayer
from xiangqi_gpt.data.tokenizer import BOS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["move", "char"])
def player(request, tmp_path):
    # block sizes small enough that the 60-ply histories below need the model's sliding window
    block = 32 if request.param == "move" else 96
    return GPTPlayer(load(tiny_checkpoint(tmp_path, request.param, block)))


def board_after(moves):
    board = Board()
    for m in moves:
        board.push_iccs(m)
    return board


def test_move_probs_cover_exactly_the_legal_moves(player):
    for board in (Board(), board_after(random_game(3, 60))):
        probs = player.move_probs(board)
        assert {m for m, _ in probs} == set(board.legal_moves())
        assert len(probs) == len(board.legal_moves())
        assert math.isclose(sum(p for _, p in probs), 1.0, rel_tol=1e-6)
        assert all(p >= 0 for _, p in probs)
        assert [p for _, p in probs] == sorted((p for _, p in probs), reverse=True)
        assert player.choose(board) == probs[0][0]


def test_scores_match_the_model_directly(player):
    """The player's scores are the model's log-probabilities of each legal move given <bos> + history."""
    model, tok = player.model, player.tokenizer
    board = board_after(random_game(5, 50))
    history = [BOS] + tok.encode_moves([m.iccs() for m in board.move_stack])
    moves = board.legal_moves()
    if tok.tokens_per_move == 1:
        expected = model.next_logprobs(history)[[tok.move_id(m.iccs()) for m in moves]]
    else:  # independent of score_candidates: one plain forward pass per candidate over its window
        expected = []
        for m in moves:
            seq = history + tok.move_ids(m.iccs())
            s = model.context_start(len(history), 3)
            with torch.no_grad():
                logits, _ = model(torch.tensor([seq[s:-1]]))  # the last token is predicted, not fed
            logp = torch.log_softmax(logits[0], -1)
            n = len(history) - s
            expected.append(sum(float(logp[n - 1 + j, seq[s + n + j]]) for j in range(4)))
        expected = torch.tensor(expected)
    got = torch.tensor([s for _, s in player.move_logprobs(board)])
    assert torch.allclose(got, expected, atol=1e-4)


def test_cache_reuse_gives_the_same_answers(player, tmp_path):
    """One player following a game move by move (its caches extended, window jumps included) answers exactly like
    a fresh player for every position."""
    moves = random_game(7, 70)
    board = Board()
    for i, m in enumerate(moves):
        if i % 9 == 0:
            fresh = GPTPlayer(player.loaded)
            a = player.move_probs(board)
            b = fresh.move_probs(board)
            assert [m for m, _ in a] == [m for m, _ in b]
            assert all(math.isclose(p, q, rel_tol=1e-4, abs_tol=1e-7) for (_, p), (_, q) in zip(a, b))
            assert player.raw_move(board) == fresh.raw_move(board)
        board.push_iccs(m)


def test_raw_move_is_the_unconstrained_greedy_move(player):
    model, tok = player.model, player.tokenizer
    for board in (Board(), board_after(random_game(11, 40))):
        history = [BOS] + tok.encode_moves([m.iccs() for m in board.move_stack])
        out = model.generate(history, tok.tokens_per_move, temperature=0)[0, len(history):].tolist()
        assert player.raw_move(board) == "".join(tok.tokens[i] for i in out)


def test_sampling_is_seeded_and_legal(tmp_path):
    loaded = load(tiny_checkpoint(tmp_path, "move", 32))
    board = board_after(random_game(2, 10))
    a = GPTPlayer(loaded, temperature=2.0, seed=123)
    b = GPTPlayer(loaded, temperature=2.0, seed=123)
    picks_a = [a.choose(board) for _ in range(30)]
    picks_b = [b.choose(board) for _ in range(30)]
    assert picks_a == picks_b
    legal = set(board.legal_moves())
    assert set(picks_a) <= legal
    assert len(set(picks_a)) > 1     # a near-uniform random model at T=2 does not always pick the same move


def test_forced_model_raw_move_can_be_illegal_but_choice_is_legal(tmp_path):
    loaded = load(save_pt(forced_move_model("h2e2"), tmp_path / "forced.pt"))
    player = GPTPlayer(loaded)
    board = Board()
    assert player.raw_move(board) == "h2e2" and player.choose(board) == Move.from_iccs("h2e2")
    board.push_iccs("h2e2")       # Black to move: h2e2 is not Black's move
    assert player.raw_move(board) == "h2e2"
    assert not is_legal_text(board, player.raw_move(board))
    assert player.choose(board) in board.legal_moves()


def test_errors(tmp_path):
    loaded = load(tiny_checkpoint(tmp_path, "move", 32))
    with pytest.raises(ConfigError):
        GPTPlayer(loaded, temperature=-1)
    mated = Board("3k5/4R4/4R4/9/9/9/9/9/9/4K4 b - - 0 1")   # black general in the corner, no moves
    assert not mated.legal_moves()
    player = GPTPlayer(loaded)
    assert player.move_probs(mated) == []
    with pytest.raises(IllegalMoveError):
        player.choose(mated)


# ---- the rules' one-move safety net (GPTPlayer(safety=True)) --------------------------------------------------

from xiangqi_gpt.play.player import _allows_immediate_loss, _safety_scores  # noqa: E402

MATE_IN_ONE = "4k4/R8/9/9/9/9/9/9/9/1R1K5 w - - 0 1"     # b0b9 mates


def test_safety_takes_a_mate_in_one_the_model_does_not_like():
    board = Board(MATE_IN_ONE)
    moves = board.legal_moves()
    mate = Move.from_iccs("b0b9")
    scores = [5.0 if m != mate else -5.0 for m in moves]
    adjusted = _safety_scores(board, moves, scores)
    choice = moves[max(range(len(moves)), key=lambda i: adjusted[i])]
    board.push(choice)
    outcome = board.outcome()
    board.pop()
    assert outcome is not None and outcome.winner == board.turn     # mate (b0b9) or stalemate (a8f8) both win
    assert choice in (mate, Move.from_iccs("a8f8"))
    assert board.fen() == MATE_IN_ONE and not board.move_stack      # the board is left as it was


def test_safety_avoids_a_favourite_that_allows_mate_in_one():
    board = Board("4k4/R8/9/9/9/9/9/9/5r3/1R1K5 b - - 0 1")      # Black to move; Red threatens b0b9 mate
    moves = board.legal_moves()
    bad = [m for m in moves if _allows_immediate_loss(board, m)]
    good = [m for m in moves if m not in bad]
    assert bad and good
    scores = [10.0 if m == bad[0] else 0.0 for m in moves]
    adjusted = _safety_scores(board, moves, scores)
    choice = moves[max(range(len(moves)), key=lambda i: adjusted[i])]
    assert choice in good
    assert _safety_scores(board, moves, scores) != scores


def test_safety_off_by_default_follows_the_model(tmp_path):
    board = Board(MATE_IN_ONE)
    plain = GPTPlayer(load(tiny_checkpoint(tmp_path)))
    safe = GPTPlayer(load(tiny_checkpoint(tmp_path)), safety=True)
    assert not plain.safety
    assert safe.choose(board) in (Move.from_iccs("b0b9"), Move.from_iccs("a8f8"))
    assert plain.choose(board) == plain.move_probs(board)[0][0]
