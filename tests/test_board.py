"""The rule engine, rule by rule: FEN, piece moves, check, game end, Zobrist keys, push/pop, explanations."""

from __future__ import annotations

import random

import pytest

from xiangqi_gpt.records.archive import placement_fen
from xiangqi_gpt.rules.board import BLACK, RED, STARTING_FEN, Board, Move, parse_square, square_name
from xiangqi_gpt.errors import FenError, IllegalMoveError, InvalidMoveError


def position(pieces: str, turn: str = "w", halfmove: int = 0, fullmove: int = 1) -> Board:
    """A board from a list like ``"Kd0 kf9 Ne4"`` (FEN letter + ICCS square)."""
    placement = placement_fen({parse_square(tok[1:]): tok[0] for tok in pieces.split()}, True).split()[0]
    return Board(f"{placement} {turn} - - {halfmove} {fullmove}", strict=False)   # rule tests place anything


def targets(board: Board, square: str) -> set[str]:
    """Destinations of the legal moves of the piece on ``square``."""
    s = parse_square(square)
    return {square_name(m.to_square) for m in board.legal_moves() if m.from_square == s}


# ---------------------------------------------------------------------------------------------------------------
# FEN
# ---------------------------------------------------------------------------------------------------------------

SAMPLE_FENS = [     # the start and two middlegames, for the FEN and the mirror tests
    STARTING_FEN,
    "r1ba1a3/4kn3/2n1b4/pNp1p1p1p/4c4/6P2/P1P2R2P/1CcC5/9/2BAKAB2 w - - 0 1",
    "1cbak4/9/n2a5/2p1p3p/5cp2/2n2N3/6PCP/3AB4/2C6/3A1K1N1 w - - 0 1",
]
ROUND_TRIP_FENS = SAMPLE_FENS + [
    "CRN1k1b2/3ca4/4ba3/9/2nr5/9/9/4B4/4A4/4KA3 w - - 0 1",
    "rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C2C4/9/RNBAKABNR b - - 1 1",
    "3k5/9/9/9/9/9/9/9/9/4K4 b - - 117 59",
]


@pytest.mark.parametrize("fen", ROUND_TRIP_FENS)
def test_fen_round_trip(fen):
    board = Board(fen)
    assert board.fen() == fen
    assert board.root_fen() == fen
    assert Board(board.fen()).key == board.key


def test_fen_defaults_for_missing_fields():
    board = Board("3k5/9/9/9/9/9/9/9/9/4K4")
    assert board.fen() == "3k5/9/9/9/9/9/9/9/9/4K4 w - - 0 1"
    assert board.turn == RED
    assert Board("3k5/9/9/9/9/9/9/9/9/4K4 b").turn == BLACK
    assert Board("3k5/9/9/9/9/9/9/9/9/4K4 r").turn == RED   # some tools write 'r' for Red


def test_fen_accepts_h_and_e_letters():
    board = Board("rheakaehr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RHEAKAEHR w - - 0 1")
    assert board.fen() == STARTING_FEN
    assert board.piece_at(parse_square("b0")) == "N"
    assert board.piece_at(parse_square("c9")) == "b"


@pytest.mark.parametrize("fen, message", [
    ("", "empty FEN"),
    ("   ", "empty FEN"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w", "expected 10 ranks"),
    ("rnbakabnr/9/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w", "expected 10 ranks"),
    ("rnbakabnrr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w", "more than 9 files"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABN w", "does not have 9 files"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/55/P1P1P1P1P/1C5C1/9/RNBAKABNR w", "does not have 9 files"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNX w", "unknown piece letter 'X'"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABN\u00b2 w", "unknown piece letter"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBA1ABNR w", "no Red general"),
    ("4k4/4k4/9/9/9/9/9/9/9/3K5 w", "two Black generals"),
    ("9/9/9/9/9/9/9/9/9/K2k5 w", "outside its palace"),
    ("3k5/9/9/9/9/9/9/9/9/4K4 x", "side to move"),
    ("3k5/9/9/9/9/9/9/9/9/4K4 w - - x 1", "move counters"),
    ("3k5/9/9/9/9/9/9/9/9/4K4 w - - -1 1", "out of range"),
    ("3k5/9/9/9/9/9/9/9/9/4K4 w - - 0 0", "out of range"),
    ("4k4/9/9/9/9/9/9/9/9/4K4 w", "faces the other general"),    # generals face each other
    ("3k5/9/9/9/9/9/9/9/3R5/4K4 w", "in check"),                 # Black in check, Red to move
])
def test_malformed_fen(fen, message):
    with pytest.raises(FenError) as info:
        Board(fen)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert isinstance(info.value, ValueError)


def test_fen_error_for_non_string():
    with pytest.raises(FenError):
        Board(None)


# ---------------------------------------------------------------------------------------------------------------
# Moves and squares
# ---------------------------------------------------------------------------------------------------------------

def test_move_parsing_and_text():
    m = Move.from_iccs("h2e2")
    assert (m.from_square, m.to_square) == (parse_square("h2"), parse_square("e2"))
    assert str(m) == m.iccs() == "h2e2"
    assert Move.from_iccs("H2-E2") == m == Move.from_iccs(" h2e2 ")
    assert hash(Move.from_iccs("h2e2")) == hash(m)
    assert m.mirror() == Move.from_iccs("b2e2")
    assert m.mirror().mirror() == m
    assert square_name(0) == "a0" and square_name(89) == "i9"
    with pytest.raises(AttributeError):
        m.from_square = 3


@pytest.mark.parametrize("text", ["", "h2e", "h2e2e", "j2e2", "h2ea", "h2h2", "h2e\u00b2", "x"])
def test_move_parse_errors(text):
    with pytest.raises(InvalidMoveError):
        Move.from_iccs(text)


# ---------------------------------------------------------------------------------------------------------------
# Piece rules
# ---------------------------------------------------------------------------------------------------------------

def test_starting_position_moves():
    board = Board()
    assert len(board.legal_moves()) == 44
    assert board.turn == RED and not board.is_check() and board.outcome() is None
    assert board.king_square(RED) == parse_square("e0") and board.king_square(BLACK) == parse_square("e9")
    assert len(board.pieces()) == 32


def test_horse_moves_and_leg():
    assert targets(position("Kd0 kf9 Ne4"), "e4") == {"c3", "c5", "d2", "d6", "f2", "f6", "g3", "g5"}
    # a piece of either colour on a leg point blocks the two moves through it
    board = position("Kd0 kf9 Ne4 Pe5 nd4")
    assert targets(board, "e4") == {"d2", "f2", "g3", "g5"}
    assert board.why_illegal(Move.from_iccs("e4d6")) == "the horse's leg is blocked at e5"
    assert board.why_illegal(Move.from_iccs("e4c3")) == "the horse's leg is blocked at d4"
    assert board.why_illegal(Move.from_iccs("e4e6")) == "a horse moves one point straight then one point diagonally outward"
    # captures an enemy piece, never its own
    board = position("Kd0 kf9 Ne4 rd6 Pf6")
    assert "d6" in targets(board, "e4") and "f6" not in targets(board, "e4")
    assert board.is_capture(Move.from_iccs("e4d6")) and not board.is_capture(Move.from_iccs("e4c5"))


def test_elephant_eye_and_river():
    assert targets(position("Kd0 kf9 Be2"), "e2") == {"c0", "g0", "c4", "g4"}
    board = position("Kd0 kf9 Be2 pd3")
    assert targets(board, "e2") == {"c0", "g0", "g4"}
    assert board.why_illegal(Move.from_iccs("e2c4")) == "the elephant's eye is blocked at d3"
    board = position("Kd0 kf9 Bc4")
    assert targets(board, "c4") == {"a2", "e2"}
    assert board.why_illegal(Move.from_iccs("c4e6")) == "an elephant cannot cross the river"
    assert board.why_illegal(Move.from_iccs("c4c6")) == "an elephant moves exactly two points diagonally"
    board = position("Kd0 kf9 bc5", "b")
    assert targets(board, "c5") == {"a7", "e7"}
    assert board.why_illegal(Move.from_iccs("c5e3")) == "an elephant cannot cross the river"


def test_advisor_palace():
    assert targets(position("Kd0 kf9 Ae1"), "e1") == {"d2", "f0", "f2"}     # d0 holds its own general
    assert targets(position("Kd0 kf9 Af0"), "f0") == {"e1"}
    board = position("Kd0 kf9 Ad2")
    assert targets(board, "d2") == {"e1"}
    assert board.why_illegal(Move.from_iccs("d2c3")) == "an advisor cannot leave the palace"
    assert board.why_illegal(Move.from_iccs("d2d3")) == "an advisor moves one point diagonally inside the palace"
    assert targets(position("Kd0 kf9 ae8", "b"), "e8") == {"d9", "d7", "f7"}  # f9 holds its own general


def test_general_palace():
    board = position("Kd0 kf9")
    assert targets(board, "d0") == {"d1", "e0"}
    assert board.why_illegal(Move.from_iccs("d0c0")) == "the general cannot leave the palace"
    assert board.why_illegal(Move.from_iccs("d0d2")) == "the general moves one point straight inside the palace"
    board = position("Kf0 kd7 Ae0", "b")
    assert targets(board, "d7") == {"d8", "e7"}       # c7 is outside the palace, d6 across its border
    assert targets(position("Ke1 kd7 Ae0", "b"), "d7") == {"d8"}     # e7 would face the red general
    # e1 -> f1 would face the black general on the open f-file
    assert targets(position("Ke1 kf9"), "e1") == {"d1", "e0", "e2"}


def test_chariot():
    board = position("Ke1 kf9 Ra0 Pa3 pc0")
    assert targets(board, "a0") == {"a1", "a2", "b0", "c0"}
    assert board.why_illegal(Move.from_iccs("a0a5")) == "the chariot's path is blocked at a3"
    assert board.why_illegal(Move.from_iccs("a0b1")) == "a chariot moves in straight lines"


def test_cannon_screen_capture_and_non_capture():
    board = Board()
    # b2b9: captures the horse by jumping the black cannon on b7
    assert "b9" in targets(board, "b2") and board.is_capture(Move.from_iccs("b2b9"))
    assert {"b3", "b4", "b5", "b6", "b1", "a2", "c2", "d2", "e2", "f2", "g2"} <= targets(board, "b2")
    assert not {"b7", "b8", "h2", "b0"} & targets(board, "b2")
    assert board.why_illegal(Move.from_iccs("b2b8")) == \
        "a cannon needs a clear path to move without capturing (blocked at b7)"
    assert board.why_illegal(Move.from_iccs("b2b7")) == "a cannon captures by jumping over exactly one piece"
    assert board.why_illegal(Move.from_iccs("b2c4")) == "a cannon moves in straight lines"
    # two screens: no capture
    board = position("Kd0 kf9 Ca0 pa3 Pa5 ra8")
    assert targets(board, "a0") == {"a1", "a2", "b0", "c0"}
    board = position("Kd0 kf9 Ca0 pa3 ra8")
    assert targets(board, "a0") == {"a1", "a2", "b0", "c0", "a8"}


def test_soldiers_before_and_after_the_river():
    board = position("Kd0 kf9 Pe3")
    assert targets(board, "e3") == {"e4"}
    assert board.why_illegal(Move.from_iccs("e3d3")) == "a soldier moves sideways only after crossing the river"
    assert board.why_illegal(Move.from_iccs("e3e2")) == "a soldier never moves backward"
    assert targets(position("Kd0 kf9 Pe4"), "e4") == {"e5"}
    assert targets(position("Kd0 kf9 Pe5"), "e5") == {"d5", "e6", "f5"}
    assert targets(position("Kf0 kd7 Pe9"), "e9") == {"d9", "f9"}          # last rank: sideways only
    assert targets(position("Kd0 kf9 Pa5"), "a5") == {"a6", "b5"}
    board = position("Kd0 kf9 pe5", "b")
    assert targets(board, "e5") == {"e4"}
    assert board.why_illegal(Move.from_iccs("e5e6")) == "a soldier never moves backward"
    assert targets(position("Kd0 kf9 pe4", "b"), "e4") == {"d4", "e3", "f4"}


# ---------------------------------------------------------------------------------------------------------------
# Flying general, pins, check
# ---------------------------------------------------------------------------------------------------------------

def test_flying_general():
    board = position("Ke0 kd9")
    assert targets(board, "e0") == {"e1", "f0"}     # d0 faces the black general
    assert board.why_illegal(Move.from_iccs("e0d0")) == "the two generals would face each other on an open file"


def test_piece_between_generals_cannot_leave_the_file():
    board = position("Ke0 ke9 Ce4 Nd3")
    assert targets(board, "e4") == {"e1", "e2", "e3", "e5", "e6", "e7", "e8"}
    assert targets(position("Ke0 ke9 Ne4"), "e4") == set()
    assert board.why_illegal(Move.from_iccs("e4d4")) == "the two generals would face each other on an open file"
    # the black side: a lone horse between the generals has no legal move
    board = position("Ke0 ke9 ne6", "b")
    assert targets(board, "e6") == set()
    assert board.why_illegal(Move.from_iccs("e6d4")) == "the two generals would face each other on an open file"
    # with two pieces between the generals, either may leave the file
    board = position("Ke0 ke9 Ce4 Ne2")
    assert "a4" in targets(board, "e4") and "c3" in targets(board, "e2")


def test_cannon_screen_created_by_a_move():
    board = position("Ke0 kd9 ce7 Ra4")
    assert not board.is_check()
    assert "e4" not in targets(board, "a4")          # would screen the cannon's check
    assert board.why_illegal(Move.from_iccs("a4e4")) == "it leaves your general in check"
    assert {"b4", "d4", "f4", "a9"} <= targets(board, "a4")
    # the general itself may not step behind a single screen either
    board = position("Kd0 kf9 ce7 Pe3")
    assert targets(board, "d0") == {"d1"}
    assert board.why_illegal(Move.from_iccs("d0e0")) == "it leaves your general in check"
    # removing the second of two screens opens the cannon's check
    board = position("Ke0 kd9 ce7 Pe3 Ne1")
    assert targets(board, "e1") == set()
    assert targets(board, "e3") == {"e4"}


def test_check_detection():
    board = position("Kd0 kf9 Ra1")
    assert not board.is_check()
    move = Move.from_iccs("a1f1")
    assert board.gives_check(move)
    assert not board.gives_check(Move.from_iccs("a1e1"))
    board.push(move)
    assert board.is_check() and board.turn == BLACK
    # horse check, and the same horse with its leg blocked
    assert position("Kd0 ke9 Nd7", "b").is_check()
    assert not position("Kd0 ke9 Nd7 Pd8", "b").is_check()
    # cannon check needs exactly one screen
    assert position("Kd0 ke9 Ce2 Pe5", "b").is_check()
    assert not position("Kd0 ke9 Ce2", "b").is_check()
    assert not position("Kd0 ke9 Ce2 Pe5 pe6", "b").is_check()
    # soldiers check forward and, across the river, sideways; never backward
    assert position("Kd0 ke8 Pe7", "b").is_check()
    assert position("Kd0 ke8 Pd8", "b").is_check()
    assert not position("Kd0 ke7 Pe8", "b").is_check()
    # in check, only moves that resolve it are legal
    board = position("Kd0 ke9 Re3 ra7", "b")
    assert board.is_check()
    # d9 faces the red general, e8 stays on the chariot's file
    assert {m.iccs() for m in board.legal_moves()} == {"e9f9", "a7e7"}
    assert board.why_illegal(Move.from_iccs("a7a6")) == "your general is in check and stays in check"


# ---------------------------------------------------------------------------------------------------------------
# Game end
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pieces, turn, winner, termination", [
    ("Ra9 kd9 Rc8 Ke0", "b", RED, "checkmate"),
    ("kd9 Rc8 Ke0", "b", RED, "stalemate"),
    ("ra0 Kd0 rc1 ke9", "w", BLACK, "checkmate"),
    ("Kd0 rc1 ke9", "w", BLACK, "stalemate"),
])
def test_no_legal_move_loses(pieces, turn, winner, termination):
    board = position(pieces, turn)
    assert board.legal_moves() == []
    assert board.is_check() == (termination == "checkmate")
    outcome = board.outcome()
    assert outcome.winner == winner and outcome.termination == termination
    assert outcome.result() == ("1-0" if winner == RED else "0-1")
    assert board.is_game_over()


def test_checkmate_by_a_played_move():
    board = position("kd9 Ra8 Rc8 Ke0")
    assert board.outcome() is None
    board.push_iccs("a8a9")
    assert board.outcome().termination == "checkmate" and board.outcome().winner == RED


def test_threefold_repetition_is_a_draw():
    board = Board()
    shuffle = ["h0g2", "h9g7", "g2h0", "g7h9"]
    for move in shuffle:
        board.push_iccs(move)
    assert board.repetition_count() == 2 and board.outcome() is None
    for move in shuffle[:3]:
        board.push_iccs(move)
        assert board.outcome() is None
    board.push_iccs(shuffle[3])
    assert board.repetition_count() == 3
    outcome = board.outcome()
    assert outcome.winner is None and outcome.termination == "repetition" and outcome.result() == "1/2-1/2"
    board.pop()
    assert board.outcome() is None


def test_perpetual_check_loses_for_red():
    board = position("Kd0 ke9 Rh8")
    cycle = ["h8h9", "e9e8", "h9h8", "e8e9"]
    for move in cycle + cycle[:3]:
        board.push_iccs(move)
        assert board.outcome() is None
    board.push_iccs(cycle[3])
    outcome = board.outcome()
    assert outcome.termination == "perpetual_check" and outcome.winner == BLACK
    assert outcome.result() == "0-1"


def test_perpetual_check_loses_for_black():
    board = position("Ke0 kd9 rh1", "b")
    cycle = ["h1h0", "e0e1", "h0h1", "e1e0"]
    for move in cycle * 2:
        board.push_iccs(move)
    outcome = board.outcome()
    assert outcome.termination == "perpetual_check" and outcome.winner == RED


def test_repetition_with_checks_by_one_side_only_sometimes_is_a_draw():
    # Red alternates a checking move and a quiet move, so it is not a perpetual check.
    board = position("Kd0 ke9 Rh7")
    cycle = ["h7h9", "e9e8", "h9h7", "e8e9"]
    for move in cycle * 2:
        board.push_iccs(move)
    assert board.repetition_count() == 3
    assert board.outcome().termination == "repetition"


def test_move_limit_draw():
    board = position("Kd0 ke9 Ra0 ri9", halfmove=118, fullmove=70)
    board.push_iccs("a0a1")
    assert board.halfmove_clock == 119 and board.outcome() is None
    board.push_iccs("i9i8")
    assert board.halfmove_clock == 120
    outcome = board.outcome()
    assert outcome.termination == "move_limit" and outcome.winner is None
    board.pop()
    board.push_iccs("i9i1")
    board.push_iccs("a1i1")      # a capture resets the clock
    assert board.halfmove_clock == 0 and board.outcome() is None


def test_checkmate_on_the_last_ply_beats_the_move_limit():
    board = position("kd9 Ra8 Rc8 Ke0", halfmove=119)
    board.push_iccs("a8a9")
    assert board.halfmove_clock == 120
    assert board.outcome().termination == "checkmate"


# ---------------------------------------------------------------------------------------------------------------
# Keys, push/pop, copy, mirror
# ---------------------------------------------------------------------------------------------------------------

def test_zobrist_key_transposition_and_pop():
    a, b = Board(), Board()
    start = a.key
    for move in ["h2e2", "h9g7", "b0c2"]:
        a.push_iccs(move)
    for move in ["b0c2", "h9g7", "h2e2"]:
        b.push_iccs(move)
    assert a.key == b.key and a.fen() == b.fen()
    assert a.key != start
    assert Board(a.fen()).key == a.key
    for _ in range(3):
        a.pop()
    assert a.key == start


def test_zobrist_key_depends_on_side_to_move_and_placement():
    red = Board("3k5/9/9/9/9/9/9/9/9/4K4 w")
    black = Board("3k5/9/9/9/9/9/9/9/9/4K4 b")
    moved = Board("3k5/9/9/9/9/9/9/9/4K4/9 w")
    assert len({red.key, black.key, moved.key}) == 3
    assert 0 <= red.key < 2 ** 64


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_push_pop_restores_everything(seed):
    rng = random.Random(seed)
    board = Board()
    history = []
    for _ in range(160):
        if board.outcome() is not None:
            break
        history.append((board.fen(), board.key, board.is_check(), len(board.legal_moves())))
        board.push(rng.choice(board.legal_moves()))
        assert board.key == Board(board.fen()).key
    assert board.ply == len(history) == len(board.move_stack)
    while history:
        board.pop()
        assert (board.fen(), board.key, board.is_check(), len(board.legal_moves())) == history.pop()
    assert board.fen() == STARTING_FEN and board.ply == 0
    with pytest.raises(IndexError):
        board.pop()


def test_fullmove_number_and_halfmove_clock():
    board = Board()
    board.push_iccs("h2e2")
    assert board.fen().endswith(" b - - 1 1")
    board.push_iccs("h7e7")
    assert board.fen().endswith(" w - - 2 2")
    board.push_iccs("e2e6")           # captures a soldier
    assert board.fen().endswith(" b - - 0 2")


def test_copy_is_independent():
    board = Board()
    board.push_iccs("h2e2")
    other = board.copy()
    other.push_iccs("h9g7")
    assert board.ply == 1 and other.ply == 2
    assert board.move_stack == [Move.from_iccs("h2e2")]
    other.pop()
    assert other.fen() == board.fen() and other.key == board.key


MIRROR_FENS = SAMPLE_FENS + [
    "C1nNk4/9/9/9/9/9/n1pp5/B3C4/9/3A1K3 w - - 0 1",
    "4ka3/4a4/9/9/4N4/p8/9/4C3c/7n1/2BK5 w - - 0 1",
]


@pytest.mark.parametrize("fen", MIRROR_FENS)
def test_mirror_symmetry(fen):
    board = Board(fen)
    mirror = board.mirror()
    assert mirror.mirror().fen() == board.fen()
    assert {m.mirror() for m in board.legal_moves()} == set(mirror.legal_moves())
    assert mirror.perft(3) == board.perft(3)
    assert mirror.is_check() == board.is_check()


def test_perft_divide_sums_to_perft():
    board = Board()
    divide = board.perft_divide(2)
    assert len(divide) == 44 and sum(divide.values()) == board.perft(2) == 1920
    assert divide["h2e2"] == len(_after(board, "h2e2").legal_moves())
    assert board.perft(0) == 1 and board.fen() == STARTING_FEN


def _after(board: Board, iccs: str) -> Board:
    other = board.copy()
    other.push_iccs(iccs)
    return other


# ---------------------------------------------------------------------------------------------------------------
# Illegal moves and explanations
# ---------------------------------------------------------------------------------------------------------------

def test_push_illegal_move_raises_and_changes_nothing():
    board = Board()
    with pytest.raises(IllegalMoveError) as info:
        board.push(Move.from_iccs("h2h8"))
    assert "illegal move h2h8" in str(info.value) and "clear path" in str(info.value)
    assert "\n" not in str(info.value)
    assert board.fen() == STARTING_FEN and board.ply == 0
    with pytest.raises(IllegalMoveError):
        board.push_iccs("a6a5")            # a black soldier, Red to move
    with pytest.raises(InvalidMoveError):
        board.push_iccs("h2")
    assert not board.is_legal(Move.from_iccs("e0e2"))
    assert board.is_legal(Move.from_iccs("h2e2"))


@pytest.mark.parametrize("iccs, reason", [
    ("e4e5", "there is no piece on e4"),
    ("a6a5", "the piece on a6 is Black's and it is Red to move"),
    ("a0a3", "a3 is occupied by your own soldier"),
    ("h2g1", "a cannon moves in straight lines"),
    ("a0b1", "a chariot moves in straight lines"),
    ("b0b1", "a horse moves one point straight then one point diagonally outward"),
    ("c0d1", "an elephant moves exactly two points diagonally"),
    ("d0d1", "an advisor moves one point diagonally inside the palace"),
    ("e0e2", "the general moves one point straight inside the palace"),
    ("a3a5", "a soldier moves one point forward (or sideways after crossing the river)"),
])
def test_why_illegal_in_the_starting_position(iccs, reason):
    assert Board().why_illegal(Move.from_iccs(iccs)) == reason


def test_why_illegal_off_board_move():
    assert Board().why_illegal(Move(0, 95)) == "not a move between two board points"
    assert Board().why_illegal(Move.from_iccs("h2e2")) is None


def test_illegal_kind_names_the_rule_broken():
    from xiangqi_gpt.rules.board import ILLEGAL_KINDS

    board = Board()
    cases = {"h2e2": None, "e4e5": "no_piece", "h7h6": "opponents_piece", "a0a3": "own_piece",
             "a0a5": "piece_rules", "h0h2": "own_piece", "h0g1": "piece_rules", "e0e0": "piece_rules"}
    for text, kind in cases.items():
        move = Move(parse_square(text[:2]), parse_square(text[2:]))
        assert board.illegal_kind(move) == kind, text
        assert (board.why_illegal(move) is None) == (kind is None)
    board = position("Ke0 kd9 ce7 Ra4")
    assert board.illegal_kind(Move.from_iccs("a4e4")) == "general_safety"
    assert board.illegal_kind(Move.from_iccs("a4a5")) is None
    assert set(cases.values()) - {None} | {"general_safety"} == set(ILLEGAL_KINDS)
