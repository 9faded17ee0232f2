"""Differential test of the rule engine against Fairy-Stockfish, and tests of the UCI client (xiangqi_gpt.play.fairy).

Positions come from seeded random games of varied length. Captures are preferred part of the time so that long
games reach sparse endgames, and every position on the way is a candidate, so checks, pins and game ends appear.
For each sampled position the legal move sets must be equal, and the per-move perft counts at depth 2 (and at
depth 3 for every eighth position) too. One engine process serves the whole module.
"""

from __future__ import annotations

import random

import pytest

from xiangqi_gpt.rules.board import STARTING_FEN, Board, Move
from xiangqi_gpt.errors import ConfigError, InvalidMoveError
from xiangqi_gpt.play.fairy import EngineError, FairyStockfish, find_fairy_stockfish, iccs_to_uci, uci_to_iccs

ENGINE_PATH = find_fairy_stockfish()


def needs_engine(test):
    test = pytest.mark.skipif(ENGINE_PATH is None, reason="Fairy-Stockfish is not installed")(test)
    return pytest.mark.fairy(test)


N_GAMES = 40
SAMPLES_PER_GAME = 6


def random_positions(seed: int = 20240601) -> list[str]:
    """FENs sampled from seeded random games; lengths vary from a few plies to long captured-out endgames."""
    rng = random.Random(seed)
    fens: list[str] = []
    for game in range(N_GAMES):
        board = Board()
        length = rng.choice([8, 20, 40, 80, 150, 300])
        greed = rng.choice([0.0, 0.5, 0.9])          # chance of playing a capture when one exists
        seen, checks = [], []
        for _ in range(length):
            if board.outcome() is not None:
                break
            moves = board.legal_moves()
            captures = [m for m in moves if board.is_capture(m)]
            board.push(rng.choice(captures if captures and rng.random() < greed else moves))
            seen.append(board.fen())
            if board.is_check():
                checks.append(seen[-1])
        picks = rng.sample(seen, min(SAMPLES_PER_GAME - 1, len(seen))) + [seen[-1]]   # always the last one
        picks += rng.sample(checks, min(2, len(checks)))                              # and a few checks
        fens.extend(dict.fromkeys(picks))
    return fens


POSITIONS = random_positions()


@pytest.fixture(scope="module")
def engine():
    with FairyStockfish(ENGINE_PATH) as fsf:
        yield fsf


# ---------------------------------------------------------------------------------------------------------------
# Square conversion and error handling (no engine needed)
# ---------------------------------------------------------------------------------------------------------------

def test_rank_conversion_both_ways():
    assert iccs_to_uci("b0b9") == "b1b10"
    assert iccs_to_uci("H2-E2".replace("-", "")) == "h3e3"
    assert uci_to_iccs("b1b10") == "b0b9"
    assert uci_to_iccs("i10i1") == "i9i0"
    files = "abcdefghi"
    for f in files:
        for r in range(10):
            iccs = f"{f}{r}a{9 - r}"
            assert uci_to_iccs(iccs_to_uci(iccs)) == iccs


@pytest.mark.parametrize("text", ["b0b10", "j0a1", "a0a", "e0e-1"])
def test_bad_iccs_for_engine(text):
    with pytest.raises(InvalidMoveError):
        iccs_to_uci(text)


@pytest.mark.parametrize("text", ["b0b9", "b11b1", "a1", "k1k2"])
def test_bad_uci_from_engine(text):
    with pytest.raises(InvalidMoveError):
        uci_to_iccs(text)


def test_missing_binary_is_a_clear_error(tmp_path):
    with pytest.raises(EngineError) as info:
        FairyStockfish(str(tmp_path / "no-such-engine"))
    assert "not found" in str(info.value) and "\n" not in str(info.value)


def test_random_positions_cover_checks_endgames_and_game_ends():
    assert len(POSITIONS) >= 200
    boards = [Board(fen) for fen in POSITIONS]
    assert sum(b.is_check() for b in boards) >= 40
    assert sum(len(b.pieces()) <= 12 for b in boards) >= 10
    assert any(not b.legal_moves() for b in boards)       # at least one mate or stalemate


# ---------------------------------------------------------------------------------------------------------------
# Against the engine
# ---------------------------------------------------------------------------------------------------------------

@needs_engine
def test_legal_moves_and_perft_match_fairy_stockfish(engine):
    mismatches = []
    for i, fen in enumerate(POSITIONS):
        board = Board(fen)
        ours = {m.iccs() for m in board.legal_moves()}
        theirs = engine.legal_moves(fen)
        if ours != theirs:
            mismatches.append(f"{fen}: only ours {sorted(ours - theirs)}, only Fairy-Stockfish {sorted(theirs - ours)}")
            continue
        depth = 3 if i % 8 == 0 else 2
        ours_divide, theirs_divide = board.perft_divide(depth), engine.perft(fen, depth)
        if ours_divide != theirs_divide:
            diff = {m: (ours_divide.get(m), theirs_divide.get(m)) for m in ours_divide
                    if ours_divide.get(m) != theirs_divide.get(m)}
            mismatches.append(f"{fen}: perft {depth} differs below {diff}")
    assert not mismatches, "\n".join(mismatches[:10])


@needs_engine
def test_published_style_positions_match(engine):
    fens = [STARTING_FEN,
            "1rbaka2R/5r3/6n2/2p1p1p2/4P1bP1/PpC3Bc1/1nPR2P2/2N2AN2/1c2K1p2/2BAC4 w - - 0 1",
            "4kcP1N/8n/3rb4/9/9/9/9/3p1A3/4K4/5CB2 w - - 0 1"]
    for fen in fens:
        assert Board(fen).perft_divide(2) == engine.perft(fen, 2)


@needs_engine
def test_perft_after_moves_uses_startpos_moves(engine):
    board = Board()
    for move in ["h2e2", "h9g7", "b0c2"]:
        board.push_iccs(move)
    assert engine.perft(None, 2, ["h2e2", "h9g7", "b0c2"]) == board.perft_divide(2)


@needs_engine
def test_bestmove_is_legal_and_respects_strength_options(engine):
    moves = ["h2e2", "h9g7"]
    board = Board()
    for move in moves:
        board.push_iccs(move)
    best = engine.bestmove(moves=moves, depth=4)
    assert board.is_legal(Move.from_iccs(best))
    assert engine.bestmove(board.fen(), depth=3, elo=1500) in {m.iccs() for m in board.legal_moves()}
    assert engine._sent_options["UCI_LimitStrength"] == "true" and engine._sent_options["UCI_Elo"] == "1500"
    assert engine.bestmove(board.fen(), nodes=500, skill=0) in {m.iccs() for m in board.legal_moves()}
    assert engine._sent_options["UCI_LimitStrength"] == "false" and engine._sent_options["Skill Level"] == "0"
    engine.bestmove(board.fen(), depth=1)
    assert engine._sent_options["Skill Level"] == "20"      # back to the instance's default: full strength


@needs_engine
def test_bestmove_finds_mate_and_none_when_mated(engine):
    assert engine.bestmove("3k5/R1R6/9/9/9/9/9/9/9/4K4 w - - 0 1", depth=3) == "a8a9"
    assert engine.bestmove("R2k5/2R6/9/9/9/9/9/9/9/4K4 b - - 0 1", depth=3) is None


@needs_engine
def test_bad_strength_and_option_are_config_errors(engine):
    with pytest.raises(ConfigError):
        engine.bestmove(depth=1, elo=100)
    with pytest.raises(ConfigError):
        engine.set_option("No Such Option", 1)


@needs_engine
def test_close_is_idempotent():
    fsf = FairyStockfish(ENGINE_PATH, skill=5)
    assert fsf._sent_options["Skill Level"] == "5"
    fsf.close()
    fsf.close()
    assert fsf.closed
    with pytest.raises(EngineError):
        fsf.perft(None, 1)
