"""The search: tactics, rules inside the search, budgets, levels. Behaviour only, never time."""

import threading

import pytest

from eval_fixtures import gpt  # noqa: F401  (the shipped model, a fixture)
from eval_fixtures import load, tiny_checkpoint
from xiangqi_gpt.rules.board import Board, Move
from xiangqi_gpt.errors import ConfigError
from xiangqi_gpt.play.player import GPTPlayer
from xiangqi_gpt.play.search import (DEFAULT_LEVEL, LEVELS, MATE_BOUND, Limits, Searcher, SearchPlayer, evaluate,
                                level_limits, material)


def board_after(fen: str, moves: str = "") -> Board:
    board = Board(fen)
    for m in moves.split():
        board.push_iccs(m)
    return board


def search(gpt, board, **limits):
    return Searcher(gpt).search(board, Limits(**limits))


def test_mate_in_one(gpt):
    board = Board("4k4/R8/1R7/9/9/9/9/9/3K2p2/9 w - - 0 1")
    result = search(gpt, board, nodes=2000)
    assert str(result.move) == "b7b9" and result.info.mate == 1


def test_mate_in_two(gpt):
    board = Board("3R5/4k4/9/9/9/2N6/3p5/9/9/5K3 w - - 0 1")     # the only mate in 2 is the quiet d9d3
    result = search(gpt, board, depth=5)
    assert str(result.move) == "d9d3" and result.info.mate == 2
    assert [str(m) for m in result.info.pv][:1] == ["d9d3"]


def test_does_not_leave_a_chariot_hanging(gpt):
    board = Board("3k5/9/9/9/9/3n5/9/2R6/9/4K4 w - - 0 1")       # the horse on d4 attacks the chariot on c2
    move = search(gpt, board, nodes=3000).move
    board.push(move)
    assert not any(board.piece_at(m.to_square) == "R" for m in board.legal_moves())


def test_takes_a_free_piece(gpt):
    board = Board("3k5/9/9/9/r8/9/9/9/4A4/R3K4 w - - 0 1")
    assert str(search(gpt, board, nodes=2000).move) == "a0a5"
    # in a game: Black's cannon walks into the red chariot's file unprotected
    board = board_after(Board().fen(), "h2e2 h9g7 h0g2 g6g5 i0h0 h7h3")
    result = search(gpt, board, nodes=4000)
    assert board.is_capture(result.move) and board.piece_at(result.move.to_square) == "c"


def test_plays_the_only_legal_move(gpt):
    board = Board("3nk1b2/4a1n2/4ba3/2N6/2p5p/3rC1P2/8P/3K5/9/3A1R1N1 w - - 1 55")
    assert [str(m) for m in board.legal_moves()] == ["d2e2"]
    assert str(search(gpt, board, nodes=1000).move) == "d2e2"


def test_no_legal_move(tmp_path):
    board = board_after("4k4/R8/1R7/9/9/9/9/9/3K2p2/9 w - - 0 1", "b7b9")     # checkmated
    assert not board.legal_moves()
    out = Searcher(GPTPlayer(load(tiny_checkpoint(tmp_path)))).search(board, Limits(nodes=100))
    assert out.move is None and out.info.mate == 0


# Red's chariot checks on a9 / a8 while Black's general steps e9 <-> e8. Black is a chariot and a cannon up.
PERPETUAL_FEN = "4k4/R8/9/9/9/2c6/9/9/r8/3K5 w - - 0 1"


def test_avoids_a_losing_perpetual_check(gpt):
    board = board_after(PERPETUAL_FEN, "a8a9 e9e8 a9a8 e8e9 a8a9 e9e8")
    # a9a8+ again: Black steps back to e9, the third time, and Red, who checked with every move, loses
    board.push_iccs("a9a8")
    board.push_iccs("e8e9")
    assert board.outcome().termination == "perpetual_check" and board.outcome().winner == 1
    board.pop()
    board.pop()
    result = search(gpt, board, nodes=3000)
    assert str(result.move) != "a9a8" and result.info.score_cp > -MATE_BOUND


def test_claims_the_repetition_win_when_the_opponent_checks(gpt):
    # Black's chariot checks on a0 / a1 while Red's general steps e0 <-> e1; Black is a chariot up
    board = board_after("3k5/9/9/9/9/9/2R6/9/r8/4K4 b - - 0 1", "a1a0 e0e1 a0a1 e1e0 a1a0 e0e1 a0a1")
    result = search(gpt, board, nodes=3000)
    assert str(result.move) == "e1e0" and result.info.mate == 1
    board.push(result.move)
    assert board.outcome().termination == "perpetual_check" and board.outcome().winner == 0
    # one cycle earlier the search already walks into the repetition: the checks cannot go on for Black
    board = board_after("3k5/9/9/9/9/9/2R6/9/r8/4K4 b - - 0 1", "a1a0 e0e1 a0a1")
    assert str(search(gpt, board, nodes=3000).move) == "e1e0"


def test_node_budget_is_exact(gpt):
    board = board_after(Board().fen(), "h2e2 h9g7")
    infos = []
    result = Searcher(gpt).search(board, Limits(nodes=1234), on_info=infos.append)
    assert result.info.nodes == 1234 and board.legal_moves() and result.move in board.legal_moves()
    assert infos and infos[-1] == result.info and all(i.nodes <= 1234 for i in infos)
    assert all(a.depth < b.depth for a, b in zip(infos[:-2], infos[1:-1]))
    # the same budget gives the same move and the same tree (machine-independent levels)
    again = Searcher(gpt).search(board, Limits(nodes=1234))
    assert again.move == result.move and again.info.score_cp == result.info.score_cp
    assert board.fen() == board_after(Board().fen(), "h2e2 h9g7").fen() and len(board.move_stack) == 2


def test_depth_limit_and_stop(gpt):
    board = Board()
    result = Searcher(gpt).search(board, Limits(depth=2))
    assert result.info.depth == 2 and result.move in board.legal_moves() and result.info.gpt_calls >= 1
    stop = threading.Event()
    stop.set()
    result = Searcher(gpt).search(board, Limits(), stop=stop)     # unlimited, but stopped: answers at once
    assert result.move in board.legal_moves() and result.info.nodes <= 300


def test_level_zero_is_the_gpt(gpt):
    board = Board()
    player = SearchPlayer(gpt, 0)
    for m in ["h2e2", "h9g7", "h0g2", "i9h9", "i0h0"]:
        assert player.choose(board) == gpt.choose(board)
        assert player.move_probs(board) == gpt.move_probs(board)
        board.push_iccs(m)
    assert player.last is None


def test_search_player(gpt):
    board = board_after(Board().fen(), "h2e2 h9g7")
    player = SearchPlayer(gpt, 2)
    move = player.choose(board)
    assert move in board.legal_moves() and player.last.move == move and player.last.info.depth >= 1
    assert player.tokenizer is gpt.tokenizer and player.raw_move(board) == gpt.raw_move(board)


def test_levels_and_bad_budgets():
    assert LEVELS[0] == Limits() and DEFAULT_LEVEL in LEVELS
    for level in LEVELS:
        if level:
            limits = level_limits(level)
            assert limits.nodes is not None or limits.depth is not None     # machine-independent budgets
    for bad in (-1, max(LEVELS) + 1, "3", 2.0, True, None):
        with pytest.raises(ConfigError) as e:
            level_limits(bad)
        assert "\n" not in str(e.value) and f"from 0 to {max(LEVELS)}" in str(e.value)
    for kwargs in ({"depth": 0}, {"depth": 65}, {"nodes": 0}, {"nodes": -5}, {"movetime_ms": 0}, {"min_depth": 0},
                   {"nodes": 1.5}, {"depth": True}, {"movetime_ms": "100"}):
        with pytest.raises(ConfigError) as e:
            Limits(**kwargs)
        assert "\n" not in str(e.value) and next(iter(kwargs)) in str(e.value)


def test_evaluation_is_symmetric():
    board = board_after(Board().fen(), "h2e2 h9g7 h0g2")
    assert evaluate(Board()) == 0
    assert evaluate(board) == -evaluate(Board(board.fen().replace(" b ", " w ")))
    assert evaluate(board.mirror()) == evaluate(board)


def test_material_is_red_minus_black():
    assert material(Board()) == 0
    board = board_after(Board().fen(), "h2e2 h9g7 e2e6")       # the cannon takes the centre soldier
    assert material(board) == 100
    board = board_after(board.fen(), "g7e6")                    # the horse takes the cannon back
    assert material(board) == 100 - 450


@pytest.mark.parametrize("mirror", [0.0, 0.4])
def test_batched_child_policies_equal_single_calls(tmp_path, mirror):
    """One batched call gives every child's policy; each equals a plain call on that child's history, also along
    a path (the tree mask lets each child see the history, the path and itself only). With a mirror ensemble
    the root and every child mix in the mirrored game exactly as ``next_logprobs`` does."""
    import torch

    from xiangqi_gpt.play.search import _Policy

    gpt = GPTPlayer(load(tiny_checkpoint(tmp_path, "move", 64)))
    gpt.model.set_mirror_ensemble(mirror)
    board = board_after(Board().fen(), "h2e2 h9g7 h0g2")
    policy = _Policy(gpt, gpt_plies=3)
    moves = [m.to_int() for m in board.legal_moves()]
    root = policy.root(board, moves)
    expected_root = gpt.model.next_logprobs(gpt.history_ids(board))
    assert root == pytest.approx(expected_root[[policy.token(m) for m in moves]].tolist(), abs=1e-4)
    policy.expand(board, [], moves, list(range(len(moves))))
    path = [moves[0]]
    board.push(Move(moves[0] >> 7, moves[0] & 127))
    replies = [m.to_int() for m in board.legal_moves()]
    policy.expand(board, path, replies, [1000 + i for i in range(len(replies))])
    board.pop()
    for i in (0, 5, len(moves) - 1):
        child = board.copy()
        child.push(Move(moves[i] >> 7, moves[i] & 127))
        expected = gpt.model.next_logprobs(gpt.history_ids(child))
        assert torch.allclose(policy.rows[i], expected, atol=1e-4)
    for i in (0, len(replies) - 1):
        child = board.copy()
        child.push(Move(moves[0] >> 7, moves[0] & 127))
        child.push(Move(replies[i] >> 7, replies[i] & 127))
        assert torch.allclose(policy.rows[1000 + i], gpt.model.next_logprobs(gpt.history_ids(child)), atol=1e-4)
    assert policy.calls == 3
    if mirror:                        # and the mixture is not the plain model
        gpt.model.set_mirror_ensemble(0.0)
        assert not torch.allclose(policy.rows[0], gpt.model.next_logprobs(gpt.history_ids(child)[:5]), atol=1e-4)


@pytest.mark.parametrize("mirror", [0.0, 0.4])
def test_policy_two_plies_deep_equals_plain_forward_passes(tmp_path, mirror):
    """gpt_plies=4: a node two plies below the root gets its children's policies in one tree call (the path a
    chain after the history, the children its leaves); each equals a plain forward pass over the root's window
    (which leaves room for the path) followed by the path and the child, mixed with the same pass over the
    mirrored tokens when the ensemble is on."""
    import torch
    import torch.nn.functional as F

    gpt = GPTPlayer(load(tiny_checkpoint(tmp_path, "move", 32)))   # a 30-ply game is beyond block_size
    model = gpt.model
    model.set_mirror_ensemble(mirror)
    board = Board()
    for i in range(30):
        board.push(sorted(board.legal_moves(), key=str)[i % 3])
    as_int = lambda m: (m.from_square << 7) | m.to_square
    policy = _policy(gpt, 4)
    policy.root(board, [as_int(m) for m in board.legal_moves()])
    start = model.context_start(len(gpt.history_ids(board)), 3)
    assert start > 0
    path = [sorted(board.legal_moves(), key=str)[0]]
    board.push(path[0])
    path.append(sorted(board.legal_moves(), key=str)[-1])
    board.push(path[1])
    children = board.legal_moves()
    policy.expand(board, [as_int(m) for m in path], [as_int(m) for m in children], list(range(len(children))))

    def plain(window):
        with torch.no_grad():
            return F.log_softmax(model(torch.tensor([window]))[0][0, -1], dim=-1)

    for i in (0, len(children) // 2, len(children) - 1):
        board.push(children[i])
        window = gpt.history_ids(board)[start:]
        expected = plain(window) if not mirror else model.mirror_mix(plain(window), plain(model.mirror_ids(window)))
        assert torch.allclose(policy.rows[i], expected, atol=1e-4)
        board.pop()
    assert not torch.allclose(policy.rows[0], policy.rows[len(children) - 1], atol=1e-3)


def _policy(gpt, gpt_plies):
    """The searcher's GPT policy (``Searcher(...).policy``)."""
    return Searcher(gpt, gpt_plies=gpt_plies).policy


def test_root_moves_restrict_the_search(gpt):
    board = Board("3k5/9/9/9/r8/9/9/9/4A4/R3K4 w - - 0 1")
    allowed = [Move.from_iccs("a0a1"), Move.from_iccs("e0f0")]
    result = Searcher(gpt).search(board, Limits(nodes=500), root_moves=allowed)
    assert result.move in allowed
    assert Searcher(gpt).search(board, Limits(nodes=500), root_moves=[]).move is None


def test_stop_from_another_thread_and_movetime(gpt):
    board = board_after(Board().fen(), "h2e2 h9g7")
    stop, out, infos = threading.Event(), [], []
    thread = threading.Thread(target=lambda: out.append(Searcher(gpt).search(board, Limits(), infos.append, stop)))
    thread.start()
    while not infos and thread.is_alive():     # an unlimited search: wait for its first iteration, then stop it
        thread.join(0.01)
    assert thread.is_alive()
    stop.set()
    thread.join(60)
    assert not thread.is_alive() and out[0].move in board.legal_moves() and out[0].info.depth >= 1
    result = Searcher(gpt).search(board, Limits(movetime_ms=30))
    assert result.move in board.legal_moves()


def test_a_tiny_node_budget_still_searches_depth_one(gpt):
    """The first iteration always completes, so even a budget of a few nodes answers with a searched move."""
    board = Board("3k5/9/9/9/r8/9/9/9/4A4/R3K4 w - - 0 1")
    result = Searcher(gpt).search(board, Limits(nodes=3))
    assert result.info.depth == 1 and result.info.nodes > 3 and str(result.move) == "a0a5"


def test_min_depth_completes_before_the_node_budget(gpt):
    board = board_after(Board().fen(), "h2e2 h9g7 h0g2 i9h9 i0h0 b9c7")
    shallow = Searcher(gpt).search(board, Limits(nodes=50))
    deep = Searcher(gpt).search(board, Limits(nodes=50, min_depth=3))
    assert shallow.info.depth == 1 and deep.info.depth == 3 and deep.info.nodes > 50
    exact = Searcher(gpt).search(board, Limits(nodes=deep.info.nodes + 500, min_depth=3))
    assert exact.info.nodes == deep.info.nodes + 500 and exact.info.depth >= 3


def test_the_design_follows_the_condition(tmp_path):
    """Human style: the policy prunes and adds its style bonus; strong style (and the search's own condition): it
    only orders (search.DESIGNS). Explicit options win over the condition's design."""
    from xiangqi_gpt.play.search import DESIGNS, design_for

    loaded = load(tiny_checkpoint(tmp_path))
    human, strong = GPTPlayer(loaded, style="human"), GPTPlayer(loaded, style="strong")
    assert design_for(human) is DESIGNS["master"] and design_for(strong) is DESIGNS["engine"]
    assert design_for(GPTPlayer(loaded, style="search")) is DESIGNS["search"]
    assert design_for(object()) is DESIGNS["master"]
    h, s = Searcher(human), Searcher(strong)
    assert (h.prune, h.style_cp) == (True, 100) and (s.prune, s.style_cp) == (False, 0)
    s2 = Searcher(strong, prune=True, style_cp=20)
    assert (s2.prune, s2.style_cp) == (True, 20)
    board = Board()
    s.search(board, Limits(depth=1))
    assert {r[3] for r in s.root} == {0}                           # no style bonus in the strong style
    h.search(board, Limits(depth=1))
    assert min(r[3] for r in h.root) < 0
