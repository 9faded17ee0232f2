import random

import pytest

from xiangqi_gpt.errors import ConfigError, InvalidMoveError, XiangqiError
from xiangqi_gpt.data.tokenizer import (BOS, N_SPECIAL, RESULT_TOKENS, SPECIAL_TOKENS, get_tokenizer, geometric_moves,
                                   mirror_iccs, mirror_square)

OPENING = ["h2e2", "h9g7", "h0g2", "i9h9", "i0h0", "b9c7", "b2b6", "c6c5", "b6c6", "a9b9"]


@pytest.fixture(params=["move", "char"])
def tok(request):
    return get_tokenizer(request.param)


def test_specials_first_and_in_order(tok):
    assert tok.tokens[:5] == ["<bos>", "<red_win>", "<black_win>", "<draw>", "<end>"]
    assert SPECIAL_TOKENS == tok.tokens[:N_SPECIAL]
    assert RESULT_TOKENS == {"1-0": 1, "0-1": 2, "1/2-1/2": 3, "*": 4}


def test_vocab_sizes():
    move = get_tokenizer("move")
    # 1530 rank/file lines + 508 horse jumps + 2 * 16 elephant + 2 * 8 advisor moves, plus 5 specials
    assert len(geometric_moves()) == 1530 + 508 + 32 + 16
    assert move.vocab_size == 5 + 2086 == len(move.tokens)
    char = get_tokenizer("char")
    assert char.vocab_size == 24
    assert char.tokens[5:] == list("0123456789abcdefghi")
    assert move.tokens_per_move == 1 and char.tokens_per_move == 4


def test_move_order_is_sorted_by_squares():
    move = get_tokenizer("move")

    def key(m):
        f = lambda s: (int(s[1]) * 9 + "abcdefghi".index(s[0]))
        return f(m[:2]), f(m[2:])

    keys = [key(m) for m in move.tokens[5:]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert move.tokens[5] == "a0b0"  # square 0 -> square 1
    assert move.tokens[-1] == "i9h9"  # square 89 -> square 88 (the last square's largest target)
    assert move.token_to_id["h2e2"] == move.tokens.index("h2e2")


def test_stable_across_instances():
    from xiangqi_gpt.data.tokenizer import MoveTokenizer
    assert MoveTokenizer().tokens == get_tokenizer("move").tokens
    assert get_tokenizer("move") is get_tokenizer("move")


def test_round_trip_game(tok):
    for result in ["1-0", "0-1", "1/2-1/2", "*"]:
        ids = tok.encode_game(OPENING, result)
        assert ids[0] == BOS and ids[-1] == RESULT_TOKENS[result]
        assert len(ids) == 2 + len(OPENING) * tok.tokens_per_move
        assert tok.decode_game(ids) == (OPENING, result)
    assert tok.encode_game(OPENING, None)[-1] == 4
    assert tok.decode_moves(tok.encode_moves(OPENING)) == OPENING


def test_round_trip_every_move(tok):
    moves = get_tokenizer("move").tokens[5:]
    ids = tok.encode_moves(moves)
    assert len(ids) == len(moves) * tok.tokens_per_move
    assert tok.decode_moves(ids) == moves
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_char_tokens_are_the_characters():
    char = get_tokenizer("char")
    assert char.decode_tokens(char.move_ids("h2e2")) == ["h", "2", "e", "2"]


def test_lenient_input_forms(tok):
    assert tok.move_ids("H2-E2") == tok.move_ids("h2e2") == tok.move_ids(" h2e2\n")


@pytest.mark.parametrize("bad", ["h2e", "z2e2", "h2e2e", "", "h0h0", "a0b1", "e0d1x", "a0c2"])
def test_invalid_moves_raise(tok, bad):
    with pytest.raises(InvalidMoveError) as info:
        tok.encode_moves(["h2e2", bad])
    assert "move 2" in str(info.value) and "\n" not in str(info.value)


def test_invalid_ids_raise(tok):
    with pytest.raises(InvalidMoveError, match="out of range"):
        tok.decode_moves([tok.vocab_size])
    with pytest.raises(InvalidMoveError, match="out of range"):
        tok.decode_moves([-1] * tok.tokens_per_move)
    with pytest.raises(InvalidMoveError, match="special"):
        tok.decode_moves([BOS] * tok.tokens_per_move)


def test_char_decode_rejects_bad_groups():
    char = get_tokenizer("char")
    ids = char.encode_moves(["h2e2"])
    with pytest.raises(InvalidMoveError, match="whole number"):
        char.decode_moves(ids[:3])
    with pytest.raises(InvalidMoveError):
        char.decode_moves(ids[1:] + ids[:1])  # "2e2h" is not a move
    with pytest.raises(InvalidMoveError, match="impossible"):
        char.decode_moves(char.encode_moves(["a0a1"])[:2] * 2)  # "a0a0"


def test_unknown_result_and_tokenizer():
    with pytest.raises(XiangqiError, match="unknown game result"):
        get_tokenizer("move").encode_game(OPENING, "2-0")
    with pytest.raises(ConfigError, match="unknown tokenizer"):
        get_tokenizer("bpe")


def test_mirror_is_involution_and_fixes_specials(tok):
    table = tok.mirror_table
    assert sorted(table) == list(range(tok.vocab_size))  # a permutation
    assert all(table[table[i]] == i for i in range(tok.vocab_size))
    assert table[:N_SPECIAL] == list(range(N_SPECIAL))
    assert tok.mirror_ids(tok.encode_moves(["h2e2"])) == tok.encode_moves(["b2e2"])


def test_mirror_maps_geometry_onto_itself():
    moves = set(geometric_moves())
    mirrored = {(mirror_square(a), mirror_square(b)) for a, b in moves}
    assert mirrored == moves
    move, char = get_tokenizer("move"), get_tokenizer("char")
    for m in random.Random(0).sample(move.tokens[5:], 200):
        assert move.mirror_ids(move.move_ids(m)) == move.move_ids(mirror_iccs(m))
        assert char.mirror_ids(char.move_ids(m)) == char.move_ids(mirror_iccs(m))


def test_every_legal_move_in_random_games_is_in_the_vocabulary():
    board_mod = pytest.importorskip("xiangqi_gpt.rules.board")
    vocab = set(get_tokenizer("move").tokens)
    rng = random.Random(1)
    for _ in range(20):
        board = board_mod.Board()
        for _ in range(120):
            legal = board.legal_moves()
            if not legal:
                break
            missing = [m.iccs() for m in legal if m.iccs() not in vocab]
            assert not missing, (board.fen(), missing)
            board.push(rng.choice(legal))
