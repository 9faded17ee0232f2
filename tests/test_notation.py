import random
import re
import tarfile
from pathlib import Path

import pytest

from xiangqi_gpt.rules.board import Board, Move
from xiangqi_gpt.errors import AmbiguousMoveError, IllegalMoveError, InvalidMoveError, MoveError
from xiangqi_gpt.rules.notation import (detect_notation, format_move, move_to_chinese, move_to_wxf, parse_chinese,
                                  parse_iccs, parse_move, parse_wxf)

CCPD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ccpd.tar.xz"

# Positions with tandem pieces (kings kept off each other's file).
THREE_PAWNS = "5k3/9/2P6/2P6/2P6/9/9/9/9/4K4 w - - 0 1"              # Red soldiers c7 c6 c5 (file 七)
FOUR_PAWNS = "5k3/2P6/2P6/2P6/2P6/9/9/9/9/4K4 w - - 0 1"             # c8 c7 c6 c5
FIVE_PAWNS = "2P2k3/2P6/2P6/2P6/2P6/9/9/9/9/4K4 w - - 0 1"           # c9 .. c5
TWO_FILES = "5k3/9/2P6/2P3P2/2P3P2/9/9/9/9/4K4 w - - 0 1"            # c7 c6 c5 (七) and g6 g5 (三)
BLACK_THREE = "4k4/9/9/9/9/6p2/6p2/6p2/9/3K5 b - - 0 1"              # Black g4 g3 g2 (Black's file 7)
BLACK_TWO_FILES = "3k5/9/9/9/2p1p4/2p1p4/9/9/9/4K4 b - - 0 1"        # c4 c5 (file 3) and e4 e5 (file 5)
# Red chariots c5/c1 (file 七), horses h6/h4 (file 二), advisors d2/d0 (file 六)
DOUBLED = "3akab2/9/2n1b4/7N1/2R6/7N1/2C6/3A2C2/2R6/3AK1B2 w - - 0 1"
BLACK_DOUBLED = "1rbakab2/9/1c5n1/9/9/1C7/9/1r5N1/9/3K1AB2 b - - 0 1"  # Black chariots b9 b2 on file 2
TANDEM_FENS = [THREE_PAWNS, FOUR_PAWNS, FIVE_PAWNS, TWO_FILES, BLACK_THREE, BLACK_TWO_FILES, DOUBLED,
               BLACK_DOUBLED,
               "4k4/4a4/3a5/9/2P1P1P2/2P1P4/9/4B4/4A4/2BAK4 w - - 0 1",
               "2ba1k3/4a4/4b4/9/2p1p4/2p1p4/2p6/9/9/3K5 b - - 0 1",
               "r1bakab1r/9/1cn1c1n2/p3p1p1p/9/9/P3P1P1P/1C2C1N2/9/RNBAKAB1R w - - 0 1"]


def random_positions(seed: int, fens: list[str], games: int, plies: int):
    rng = random.Random(seed)
    for g in range(games):
        board = Board(fens[g % len(fens)])
        for _ in range(plies):
            moves = board.legal_moves()
            if not moves:
                break
            yield board
            board.push(rng.choice(moves))


def round_trip(board: Board) -> int:
    n = 0
    for move in board.legal_moves():
        texts = {
            "iccs": format_move(board, move, "iccs"),
            "wxf": move_to_wxf(board, move),
            "chinese": move_to_chinese(board, move),
            "chinese-traditional": move_to_chinese(board, move, traditional=True),
            "fullwidth": move_to_chinese(board, move, fullwidth=True),
            "halfwidth": move_to_chinese(board, move, traditional=True, fullwidth=False),
        }
        for kind, text in texts.items():
            assert parse_move(board, text) == move, (board.fen(), move, kind, text)
        assert parse_move(board, texts["wxf"], "wxf") == move
        assert detect_notation(texts["wxf"]) == "wxf"
        assert detect_notation(texts["chinese"]) == "chinese"
        assert format_move(board, move, "chinese-traditional") == texts["chinese-traditional"]
        n += 1
    return n


# ---- round trips --------------------------------------------------------------------------------------------

def test_round_trip_random_play_from_start():
    n = sum(round_trip(b) for b in random_positions(1, [Board().fen()], games=4, plies=30))
    assert n > 4000


def test_round_trip_tandem_positions():
    n = 0
    for fen in TANDEM_FENS:
        n += round_trip(Board(fen))
    n += sum(round_trip(b) for b in random_positions(2, TANDEM_FENS, games=len(TANDEM_FENS) * 2, plies=12))
    assert n > 2000


def test_every_text_names_one_move():
    # different legal moves never share a text, in any output style
    for board in random_positions(3, TANDEM_FENS + [Board().fen()], games=12, plies=10):
        moves = board.legal_moves()
        for fmt in (lambda m: move_to_wxf(board, m), lambda m: move_to_chinese(board, m),
                    lambda m: move_to_chinese(board, m, traditional=True)):
            texts = [fmt(m) for m in moves]
            assert len(set(texts)) == len(texts)


# ---- fixed examples -----------------------------------------------------------------------------------------

def test_classic_opening_from_start():
    board = Board()
    expected = ["h2e2", "h9g7", "h0g2", "i9h9"]
    for text, iccs in zip(["炮二平五", "马８进７", "马二进三", "车９平８"], expected):
        move = parse_move(board, text)
        assert move.iccs() == iccs
        board.push(move)
    board = Board()
    for text, iccs in zip(["炮二平五", "馬８進７", "傌二進三", "車９平８"], expected):   # traditional, Big5 style
        move = parse_chinese(board, text)
        assert move.iccs() == iccs
        board.push(move)


def test_output_styles():
    board = Board()
    m = Move.from_iccs("h2e2")
    assert move_to_chinese(board, m) == "炮二平五"
    assert move_to_wxf(board, m) == "C2.5"
    board.push(m)
    m = Move.from_iccs("h9g7")
    assert move_to_chinese(board, m) == "马8进7"
    assert move_to_chinese(board, m, traditional=True) == "馬８進７"
    assert move_to_chinese(board, m, fullwidth=True) == "马８进７"
    assert move_to_chinese(board, m, traditional=True, fullwidth=False) == "馬8進7"
    assert move_to_wxf(board, m) == "H8+7"
    assert format_move(board, Move.from_iccs("g6g5"), "chinese") == "卒7进1"
    assert format_move(board, Move.from_iccs("b9c7"), "wxf") == "H2+3"
    board.push(m)
    board.push_iccs("h0g2")
    assert format_move(board, Move.from_iccs("i9h9"), "chinese-traditional") == "車９平８"
    assert format_move(board, Move.from_iccs("i9h9"), "wxf") == "R9.8"
    board = Board()
    assert move_to_chinese(board, Move.from_iccs("h0g2"), traditional=True) == "傌二進三"
    assert move_to_chinese(board, Move.from_iccs("c0e2"), traditional=True) == "相七進五"
    assert move_to_chinese(board, Move.from_iccs("e0e1")) == "帅五进一"
    assert move_to_chinese(board, Move.from_iccs("f0e1")) == "仕四进五"
    assert move_to_wxf(board, Move.from_iccs("f0e1")) == "A4+5"
    assert move_to_wxf(board, Move.from_iccs("g0e2")) == "E3+5"


def test_wxf_examples():
    board = Board()
    assert parse_wxf(board, "C2.5").iccs() == "h2e2"
    assert parse_wxf(board, "C2=5").iccs() == "h2e2"
    assert parse_wxf(board, "c2.5").iccs() == "h2e2"
    assert parse_wxf(board, "R1+1").iccs() == "i0i1"
    assert parse_wxf(board, "H2+3").iccs() == "h0g2"
    board.push_iccs("h2e2")
    assert parse_wxf(board, "H8+7").iccs() == "h9g7"
    assert parse_wxf(board, "R1+2").iccs() == "a9a7"
    board.push_iccs("h9g7")
    board.push_iccs("h0g2")
    assert parse_move(board, "R9.8").iccs() == "i9h9"
    with pytest.raises(IllegalMoveError, match="R1=2"):
        parse_move(board, "R1=2")                           # Black's file 1 is a: a9 -> b9, onto its own horse
    board.push_iccs("i9h9")
    assert parse_move(board, "R1=2").iccs() == "i0h0"
    assert parse_move(board, "R1.2+").iccs() == "i0h0"     # a trailing check mark after the 4-character move


def test_wxf_tandems():
    board = Board("4k4/9/9/9/9/2C6/9/2C6/9/3K5 w - - 0 1")      # cannons c4 (front) and c2 (rear) on file 七
    assert move_to_wxf(board, Move.from_iccs("c4e4")) == "C+.5"
    assert move_to_wxf(board, Move.from_iccs("c2e2")) == "C-.5"
    assert parse_wxf(board, "C+.5").iccs() == "c4e4"
    assert parse_wxf(board, "+C.5").iccs() == "c4e4"
    assert parse_wxf(board, "-C.5").iccs() == "c2e2"
    assert parse_wxf(board, "C--1").iccs() == "c2c1"
    assert parse_wxf(board, "C++3").iccs() == "c4c7"
    assert parse_chinese(board, "前炮平五").iccs() == "c4e4"
    assert parse_chinese(board, "後炮退一").iccs() == "c2c1"
    # WXF's soldier rules
    board = Board(THREE_PAWNS)
    assert parse_wxf(board, "P+.6").iccs() == "c7d7"
    assert parse_wxf(board, "P7.6").iccs() == "c6d6"      # the bare file digit names the middle soldier
    assert parse_wxf(board, "P-.6").iccs() == "c5d5"
    board = Board(FIVE_PAWNS)
    assert [parse_wxf(board, t).iccs() for t in ("++.6", "P+.6", "P7.6", "P-.6", "--.6")] == \
        ["c9d9", "c8d8", "c7d7", "c6d6", "c5d5"]
    board = Board(FOUR_PAWNS)
    assert [move_to_wxf(board, Move.from_iccs(m)) for m in ("c8d8", "c7d7", "c6d6", "c5d5")] == \
        ["++.6", "P+.6", "P-.6", "--.6"]
    board = Board(TWO_FILES)
    assert parse_wxf(board, "7+.6").iccs() == "c7d7"
    assert parse_wxf(board, "77.6").iccs() == "c6d6"
    assert parse_wxf(board, "7-.6").iccs() == "c5d5"
    assert parse_wxf(board, "3-.4").iccs() == "g5f5"
    assert move_to_wxf(board, Move.from_iccs("g6h6")) == "3+.2"


def test_chinese_pawn_tandems():
    board = Board(THREE_PAWNS)
    assert [move_to_chinese(board, Move.from_iccs(m)) for m in ("c7d7", "c6d6", "c5d5")] == \
        ["前兵平六", "中兵平六", "后兵平六"]
    assert parse_chinese(board, "中兵平八").iccs() == "c6b6"
    assert parse_chinese(board, "二兵平八").iccs() == "c6b6"
    assert parse_chinese(board, "三兵平八").iccs() == "c5b5"
    assert parse_chinese(board, "後兵平八").iccs() == "c5b5"
    assert parse_chinese(board, "前兵七进一").iccs() == "c7c8"     # position word with an explicit file
    assert parse_chinese(board, "前七进一").iccs() == "c7c8"       # file instead of the piece
    assert parse_chinese(board, "兵七进一").iccs() == "c7c8"       # only the front soldier can advance
    board = Board(FIVE_PAWNS)
    assert [parse_chinese(board, f"{p}兵平六").iccs() for p in "一二三四五"] == \
        ["c9d9", "c8d8", "c7d7", "c6d6", "c5d5"]
    assert parse_chinese(board, "前兵平六").iccs() == "c9d9"
    assert parse_chinese(board, "后兵平六").iccs() == "c5d5"
    assert parse_chinese(board, "中兵平六").iccs() == "c7d7"
    board = Board(TWO_FILES)       # ordinals run over both files, from Red's right (file 三 first), front to back
    assert [move_to_chinese(board, Move.from_iccs(m)) for m in ("g6f6", "g5f5", "c7d7", "c6d6", "c5d5")] == \
        ["一兵平四", "二兵平四", "三兵平六", "四兵平六", "五兵平六"]
    assert parse_chinese(board, "前兵三平四").iccs() == "g6f6"
    assert parse_chinese(board, "后三平二").iccs() == "g5h5"
    assert parse_chinese(board, "前兵平四").iccs() == "g6f6"       # only the file-三 reading is legal
    with pytest.raises(AmbiguousMoveError, match="前兵进一"):
        parse_chinese(board, "前兵进一")                             # both front soldiers can advance
    board = Board(BLACK_THREE)
    assert move_to_chinese(board, Move.from_iccs("g2f2")) == "前卒平6"
    assert move_to_chinese(board, Move.from_iccs("g4f4"), traditional=True) == "後卒平６"
    assert parse_chinese(board, "中卒平８").iccs() == "g3h3"
    assert parse_chinese(board, "２卒平８").iccs() == "g3h3"        # a Black ordinal written as a digit


def test_chinese_character_variants():
    board = Board()
    for text in ("炮二平五", "砲二平五", "包二平五", "炮2平5", "炮２平５", "炮 二 平 五", "炮二平五!", "炮二平五？"):
        assert parse_move(board, text).iccs() == "h2e2", text
    for text, iccs in (("車一進一", "i0i1"), ("俥一进一", "i0i1"), ("硨一进一", "i0i1"), ("马二进三", "h0g2"),
                       ("馬二進三", "h0g2"), ("傌二进三", "h0g2"), ("相三进五", "g0e2"), ("象三进五", "g0e2"),
                       ("仕四进五", "f0e1"), ("士四进五", "f0e1"), ("帅五进一", "e0e1"), ("帥五進一", "e0e1"),
                       ("将五进一", "e0e1"), ("將五进一", "e0e1"), ("兵三进一", "g3g4"), ("卒三进一", "g3g4")):
        assert parse_chinese(board, text).iccs() == iccs, text
    board.push_iccs("h2e2")
    for text in ("马8进7", "马８进７", "馬８進７", "馬八進七", "马八进七"):
        assert parse_move(board, text).iccs() == "h9g7", text


def test_omitted_front_rear():
    board = Board("4k4/9/9/9/9/9/2R6/9/2R6/3K5 w - - 0 1")        # chariots c3 and c1 on file 七
    assert parse_chinese(board, "车七进三").iccs() == "c3c6"          # the rear one is blocked
    with pytest.raises(IllegalMoveError, match="车七退三"):
        parse_chinese(board, "车七退三")                               # c3 is blocked by c1, c1 would leave the board
    with pytest.raises(AmbiguousMoveError, match="车七平六") as e:
        parse_chinese(board, "车七平六")
    assert "c3d3" in str(e.value) and "c1d1" in str(e.value)
    assert parse_chinese(board, "前车平六").iccs() == "c3d3"
    assert move_to_chinese(board, Move.from_iccs("c1d1")) == "后车平六"
    with pytest.raises(AmbiguousMoveError):
        parse_wxf(board, "R7.6")
    # advisors on one file are written with the file: only one of them can make the move
    board = Board(DOUBLED)
    assert move_to_chinese(board, Move.from_iccs("d0e1")) == "仕六进五"
    assert move_to_chinese(board, Move.from_iccs("d2e1")) == "仕六退五"
    assert parse_chinese(board, "仕六进五").iccs() == "d0e1"
    assert parse_chinese(board, "前仕退五").iccs() == "d2e1"
    assert move_to_chinese(board, Move.from_iccs("c5c7")) == "前车进二"
    assert move_to_wxf(board, Move.from_iccs("h4g6")) == "H-+3"
    assert move_to_chinese(board, Move.from_iccs("h4g6"), traditional=True) == "後傌進三"
    board = Board(BLACK_DOUBLED)
    assert move_to_chinese(board, Move.from_iccs("b2b0")) == "前车进2"
    assert move_to_wxf(board, Move.from_iccs("b9a9")) == "R-.1"
    assert parse_chinese(board, "後車平１").iccs() == "b9a9"


def test_iccs():
    board = Board()
    for text in ("h2e2", "H2E2", "H2-E2", "h2-e2", "h2e2+", "h2e2!?", " h2e2 "):
        assert detect_notation(text) == "iccs"
        assert parse_move(board, text).iccs() == "h2e2"
        assert parse_iccs(board, text).iccs() == "h2e2"
    with pytest.raises(IllegalMoveError, match="h2h8"):
        parse_move(board, "h2h8")


def test_legality_matches_the_engine():
    # parsing accepts exactly the engine's legal moves: every from/to pair of the mover's pieces, in check or not
    fens = TANDEM_FENS + ["4k4/9/9/9/9/9/9/9/3r5/3K5 w - - 0 1", "3k5/3P5/9/9/9/9/9/9/9/4K4 b - - 0 1"]
    for board in random_positions(4, fens + [Board().fen()], games=len(fens) + 1, plies=3):
        legal = set(board.legal_moves())
        for frm, piece in board.pieces().items():
            if piece.isupper() != (board.turn == 0):
                continue
            for to in range(90):
                if to == frm:
                    continue
                move = Move(frm, to)
                if move in legal:
                    assert parse_iccs(board, move.iccs()) == move
                else:
                    with pytest.raises(IllegalMoveError):
                        parse_iccs(board, move.iccs())


def test_detect_notation():
    assert detect_notation("h2e2") == "iccs"
    assert detect_notation("C2.5") == "wxf"
    assert detect_notation("+C.5") == "wxf"
    assert detect_notation("C+.5") == "wxf"
    assert detect_notation("33.4") == "wxf"
    assert detect_notation("炮二平五") == "chinese"
    assert detect_notation("馬８進７") == "chinese"
    for text in ("", "1-0", "0-1", "1/2-1/2", "*", "炮二平X", "hello", "h2e2e2", "C2.0", "C0.5"):
        assert detect_notation(text) is None, text


# ---- errors -------------------------------------------------------------------------------------------------

def test_errors_name_the_move():
    board = Board()
    with pytest.raises(InvalidMoveError, match="cannot read move '炮二平X'"):
        parse_move(board, "炮二平X")
    with pytest.raises(InvalidMoveError):
        parse_move(board, "")
    with pytest.raises(InvalidMoveError):
        parse_move(board, None)
    with pytest.raises(InvalidMoveError):
        parse_wxf(board, "炮二平五")
    with pytest.raises(InvalidMoveError):
        parse_chinese(board, "C2.5")
    with pytest.raises(IllegalMoveError, match=r"'车一进四' \(i0i4\): the chariot's path is blocked at i3"):
        parse_move(board, "车一进四")
    with pytest.raises(IllegalMoveError, match="'马二进五': a horse cannot move like that"):
        parse_move(board, "马二进五")
    with pytest.raises(IllegalMoveError, match="no Red cannon on file 一"):
        parse_move(board, "炮一平五")
    with pytest.raises(IllegalMoveError, match="no two Red chariots"):
        parse_move(board, "前车进一")
    with pytest.raises(IllegalMoveError, match="马二进三"):
        parse_move(Board("4k4/9/9/9/9/9/9/9/7R1/3K3N1 w - - 0 1"), "马二进三")   # the horse's leg is blocked
    with pytest.raises(IllegalMoveError, match="general"):
        parse_move(Board("4k4/9/9/9/9/9/9/9/9/3K5 w - - 0 1"), "帅六平五")      # the generals would face
    with pytest.raises(ValueError):
        parse_move(board, "h2e2", notation="san")
    assert issubclass(IllegalMoveError, MoveError)


def test_formatting_an_illegal_move_raises():
    board = Board()
    with pytest.raises(IllegalMoveError, match="h2h8"):
        move_to_chinese(board, Move.from_iccs("h2h8"))
    with pytest.raises(IllegalMoveError):
        move_to_wxf(board, Move.from_iccs("h9g7"))          # Black's horse, Red to move
    with pytest.raises(IllegalMoveError):
        format_move(board, Move.from_iccs("e4e5"), "iccs")
    with pytest.raises(ValueError):
        format_move(board, Move.from_iccs("h2e2"), "san")


# ---- real records -------------------------------------------------------------------------------------------

@pytest.mark.data
@pytest.mark.skipif(not CCPD.exists(), reason="needs ../shared/data/ccpd.tar.xz")
def test_ccpd_records_parse():
    """The first 150 Big5 records of the CCPD archive: every move reads, is legal, and nearly always is written
    back exactly as the record has it (the rest are records that leave out 前/後 where we write it)."""
    games = moves = same = 0
    plain = str.maketrans("俥傌砲", "車馬炮")       # the CCPD records use 車馬炮 for both sides
    with tarfile.open(CCPD, "r:xz") as tar:
        for member in tar:
            if not member.name.endswith(".pgn"):
                continue
            text = tar.extractfile(member).read().decode("big5")
            fen = re.search(r'\[FEN "([^"]*)"\]', text)
            board = Board(fen.group(1)) if fen else Board()
            body = "\n".join(line for line in text.splitlines() if not line.startswith("["))
            for token in body.split():
                if re.fullmatch(r"\d+\.|1-0|0-1|1/2-1/2|\*", token):
                    continue
                move = parse_move(board, token)
                same += move_to_chinese(board, move, traditional=True).translate(plain) == token.translate(plain)
                board.push(move)
                moves += 1
            games += 1
            if games == 150:
                break
    assert games == 150 and moves > 5000
    assert same >= 0.98 * moves
