"""Hostile input: every reproducer of issue 12 (defects 1 and 6-9) as a regression test.

Each gives a one-line error of the project's own type, a game rejected with its reason, or a correct import.
"""

from __future__ import annotations

import io
import random

import pytest

from xiangqi_gpt import cli
from xiangqi_gpt.rules.board import STARTING_FEN, Board, Move
from xiangqi_gpt.errors import FenError, InvalidMoveError, MoveError, PgnError, XiangqiError
from xiangqi_gpt.rules.notation import detect_notation, format_move, move_to_chinese, parse_move
from xiangqi_gpt.records.pgn import Game, detect_encoding, read_games, write_game

from fuzz_targets import check_engine, key, make_engine, random_game


def items_of(data: bytes, **kw) -> list:
    return list(read_games(data, name="t.pgn", **kw))


def games_only(items) -> list[Game]:
    assert all(isinstance(i, Game) for i in items), [str(i) for i in items if not isinstance(i, Game)]
    return items


def three_games(seed: int = 1, plies: int = 30) -> list[Game]:
    rng = random.Random(seed)
    games = []
    while len(games) < 3:
        game = random_game(rng, plies, False)
        if len(game.moves) == plies:
            games.append(game)
    return games


def pgn_of(games: list[Game], notation: str = "iccs") -> str:
    return "".join(write_game(g, notation) for g in games)


# ---- 1. letters that Unicode case folding matches -----------------------------------------------------------

@pytest.mark.parametrize("text", ["ı0h0", "İ0h0", "h2eı", "\u212a12", "\u212a1+1", "\u212a1.2", "h2e2\u212a"])
def test_case_folded_letters_are_not_moves(text):
    assert detect_notation(text) is None
    with pytest.raises(InvalidMoveError, match="cannot read move"):
        parse_move(Board(), text)


def test_issue_reproducers_for_case_folding():
    assert detect_notation("\u212a12") is None
    with pytest.raises(InvalidMoveError):
        parse_move(Board(), "ı0h0")
    assert parse_move(Board(), "H2-E2") == Move.from_iccs("h2e2")          # ASCII upper case still reads
    assert parse_move(Board(), "c2.5") == Move.from_iccs("h2e2")


@pytest.mark.parametrize("movetext", ["1. h2e2 ı9g7 *", "1. \u212a12 *"])
def test_case_folded_letter_in_a_record_rejects_the_game_only(movetext):
    data = f'[Game "x"]\n\n{movetext}\n\n[Game "y"]\n\n1. h2e2 h9g7 *\n'.encode()
    first, second = items_of(data)
    assert isinstance(first, PgnError) and first.kind == "invalid_move" and "cannot read move" in str(first)
    assert first.game == 1 and first.ply in (1, 2) and "\n" not in str(first)
    assert isinstance(second, Game) and second.iccs() == ["h2e2", "h9g7"]


def test_prepare_survives_a_case_folded_letter(tmp_path):
    from xiangqi_gpt.data.prepare import prepare

    source = tmp_path / "x.pgn"
    source.write_text('[Game "x"]\n\n1. h2e2 ı9g7 *\n\n[Game "y"]\n\n1. h2e2 h9g7 2. h0g2 i9h9 *\n', encoding="utf-8")
    prepare([str(source)], tmp_path / "out", workers=1, progress=False, warn=lambda message: None)
    assert (tmp_path / "out" / "meta.json").exists()


# ---- 6. comments, variations and line ends ------------------------------------------------------------------

def test_a_brace_inside_a_comment_does_not_nest():
    games = three_games()
    text = pgn_of(games)
    moves = " ".join(games[0].iccs()[8:10])
    assert moves in text
    text = text.replace(moves, "{see {note} " + moves, 1)      # 5. {see {note} g3g4 h3g3
    got = games_only(items_of(text.encode()))
    assert [key(g) for g in got] == [key(g) for g in games]


def test_an_unclosed_variation_rejects_the_game_with_its_reason():
    games = three_games(2, 66)
    moves = " ".join(games[1].iccs()[8:10])
    text = pgn_of(games).replace(moves, "(" + moves, 1)
    items = items_of(text.encode())
    assert isinstance(items[1], PgnError) and items[1].kind == "bad_movetext"
    assert "variation '(' opened on line" in str(items[1]) and "never closed" in str(items[1])
    assert [key(g) for g in items if isinstance(g, Game)] == [key(games[0]), key(games[2])]


def test_a_parenthesis_that_closes_no_variation_rejects_the_game():
    items = items_of(b'[Event "x"]\n\n1. h2e2 h9g7) 2. h0g2 i9h9 *\n')
    assert len(items) == 1 and isinstance(items[0], PgnError) and "closes no variation" in str(items[0])


def test_a_comment_that_is_never_closed_rejects_its_game_and_keeps_the_next():
    games = three_games(3)
    moves = " ".join(games[0].iccs()[4:6])
    text = pgn_of(games).replace(moves, "{lost brace " + moves, 1)
    items = items_of(text.encode())
    assert isinstance(items[0], PgnError) and items[0].kind == "bad_movetext"
    assert "the comment '{' opened on line" in str(items[0]) and "never closed" in str(items[0])
    assert [key(g) for g in items[1:]] == [key(games[1]), key(games[2])]
    last = items_of((pgn_of(games[:1]).replace(moves, "{ " + moves, 1)).encode())     # at the end of the file
    assert len(last) == 1 and "never closed" in str(last[0])


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_every_line_end_reads_the_same(newline):
    games = three_games(4)
    data = pgn_of(games).replace("\n", newline).encode()
    got = games_only(items_of(data))
    assert [key(g) for g in got] == [key(g) for g in games]
    assert [g.headers.get("Event") for g in got] == [g.headers.get("Event") for g in games]


def test_mixed_line_ends_and_line_numbers():
    data = b'[Event "a"]\r\r1. h2e2 h9g7\r\n2. h0g2 (2. b0c2\r1-0\n'
    (item,) = items_of(data)
    assert isinstance(item, PgnError) and "opened on line 4" in str(item)


def test_moves_after_the_result_reject_the_game():
    (item,) = items_of(b'[Event "x"]\n\n1. h2e2 h9g7 1-0 2. h0g2 i9h9\n')
    assert isinstance(item, PgnError) and "after the result" in str(item)
    (game,) = games_only(items_of('[Event "x"]\n\n1. h2e2 h9g7 1-0 紅勝 (end)\n'.encode()))
    assert game.iccs() == ["h2e2", "h9g7"] and game.result == "1-0"         # more result words are fine


# ---- 7. smaller silent acceptances ---------------------------------------------------------------------------

def test_perft_with_an_empty_fen_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["perft", "--depth", "1", "--fen", ""])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "empty FEN" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        cli.main(["moves", "--fen", ""])


def test_perft_without_fen_is_the_start_position(capsys):
    assert cli.main(["perft", "--depth", "1"]) == 0
    assert capsys.readouterr().out.strip() == "44"


@pytest.mark.parametrize("fen,message", [
    (STARTING_FEN + " junk", "unexpected text 'junk' after the six fields"),
    (STARTING_FEN + " 7", "after the six fields"),
    (STARTING_FEN.replace(" - - ", " KQ - "), "field 3 must be '-'"),
    (STARTING_FEN.replace(" 0 1", " ² 1"), "move counters must be integers"),
    (STARTING_FEN.replace(" 0 1", " 0 +1"), "out of range"),
])
def test_junk_in_fen_fields_is_rejected(fen, message):
    with pytest.raises(FenError, match=message):
        Board(fen)


def test_big5_headers_in_an_ascii_file_are_read_as_big5():
    for value in ("餘快（宏都拉斯", "撫州", "劉宗澤", "邯鄲", "朱剛", "瀋陽", "周介眉", "石家莊", "卜鳳波"):
        # CCPD names that the old guess read as GBK when they were a file's only Chinese text
        data = f'[Event "x"]\n[Red "{value}"]\n\n1. h2e2 h9g7 *\n'.encode("big5")
        assert detect_encoding(data) == "big5", value
        (game,) = games_only(items_of(data))
        assert game.headers["Red"] == value


def test_the_encoding_is_chosen_from_the_whole_file():
    # The first non-ASCII bytes (a name that reads as well in GBK: 黃景賢 or 独春藉) come before 300 KiB of ASCII
    # games; the Big5 headers that decide it come only at the end.
    game = '[Event "x"]\n\n1. h2e2 h9g7 2. h0g2 i9h9 *\n\n'
    first = ('[Red "黃景賢"]\n' + game).encode("big5")
    assert detect_encoding(first) == "gb18030"                              # the start alone misleads
    text = "% padding, skipped as an escape line\n" * (300 * 1024 // 37) + game + \
        '[Event "全國象棋個人賽"]\n[Red "胡榮華"]\n[Black "楊官璘"]\n[Site "東北"]\n\n1. h2e2 h9g7 *\n'
    data = first + text.encode("big5")
    items = items_of(data)
    assert items[0].headers["Red"] == "黃景賢" and items[-1].headers["Red"] == "胡榮華"
    assert items_of(io.BytesIO(data))[0].headers["Red"] == "黃景賢"         # a stream: the same


def test_gb18030_and_utf8_are_still_detected():
    text = '[Event "全国象棋个人赛"]\n[Red "胡荣华"]\n\n1. 炮二平五 马8进7 *\n'
    for codec, family in (("gb18030", "gb18030"), ("gbk", "gb18030"), ("utf-8", "utf-8")):
        (game,) = games_only(items_of(text.encode(codec)))
        assert detect_encoding(text.encode(codec)) == family and game.headers["Red"] == "胡荣华"


# A game of random moves in traditional Chinese: deleting 砲８平９ (the 10th ply) leaves every move legal, only the
# digits show that from there on each move is written for the other side.
DELETED = "炮八平四 砲８進１ 炮二進三 砲２進２ 炮四進六 馬８進７ 炮二退一 卒９進１ 傌八進七 俥九進一 馬７退９ 仕六進五 " \
          "車９平８ 仕五進四 砲２平３"


def test_a_deleted_chinese_move_is_caught_by_the_digit_style():
    board = Board()
    for text in DELETED.split():                   # legal move by move, with the wrong sides
        board.push(parse_move(board, text))
    (item,) = items_of(f'[Event "x"]\n\n{DELETED} *\n'.encode("utf-8"))
    assert isinstance(item, PgnError) and item.kind == "wrong_side_digits" and item.ply == 10
    assert "'俥九進一' is written in Red's digits but it is Black's move" in str(item)


def test_digit_styles_that_carry_no_side_are_accepted():
    for moves in ("炮二平五 马8进7 马二进三 车9平8",          # the usual: Red 一…九, Black 1…9
                  "炮二平五 馬８進７ 傌二進三 車９平８",        # Black in full-width digits
                  "炮2平5 马8进7 马2进3 车9平8",                # one style for both sides: no side information
                  "炮二平五 马八进七 马二进三 车九平八"):
        (game,) = games_only(items_of(f'[Event "x"]\n\n{moves} *\n'.encode()))
        assert game.iccs() == ["h2e2", "h9g7", "h0g2", "i9h9"], moves


def test_a_move_that_mixes_digit_styles_is_rejected_in_a_styled_game():
    (item,) = items_of('[Event "x"]\n\n炮二平五 马8进7 马二进3 车9平8 *\n'.encode())
    assert isinstance(item, PgnError) and item.ply == 3 and "mixes" in str(item)


# ---- 8. engine errors in words ------------------------------------------------------------------------------

def engine_says(*lines: str) -> list[str]:
    out = io.StringIO()
    engine = make_engine(out)
    for line in lines:
        engine.handle(line)
    if hasattr(engine, "settle"):
        engine.settle()
    return out.getvalue().splitlines()


def test_position_with_moves_but_no_position_is_explained():
    out = engine_says("position moves h2e2", "isready")
    assert out == ["info string error: position needs startpos or fen FEN before its moves", "readyok"]


def test_threads_with_a_non_ascii_digit_is_explained():
    out = engine_says("setoption name Threads value ²", "isready")
    assert out == ["info string error: Threads must be an integer from 1 to 256, got '²'", "readyok"]


def test_an_internal_error_is_reported_in_words(capsys):
    out = io.StringIO()
    engine = make_engine(out)

    def broken(args):
        return [][1]

    engine.cmd_d = broken
    engine.handle("d")
    line = out.getvalue().strip()
    assert line.startswith("info string error: cannot process 'd': an internal error") and "Error" not in line
    assert "IndexError" in capsys.readouterr().err


def test_the_engine_never_leaks_python_names_on_these_lines():
    check_engine(["position moves h2e2", "setoption name Threads value ²", "position fen", "go depth",
                  "setoption name Level value ²", "banmoves ı0h0", "position startpos moves \u212a1a2"])


# ---- 9. impossible material and squares ---------------------------------------------------------------------

ISSUE_FEN = "2pk5/3p5/p1PP5/p3P3b/5p3/2p3pR1/rp4p1A/p1p6/ppp1KR2N/8C b - - 0 1"


@pytest.mark.parametrize("fen,reason", [
    ("4k4/9/9/9/PPPPPP3/9/9/9/9/4K4 w - - 0 1", "Red has 6 soldiers (at most 5)"),
    ("3k5/9/9/9/9/9/9/9/9/RRR1K4 w - - 0 1", "Red has 3 chariots"),
    ("3k5/9/9/9/9/9/9/9/9/NNN1K4 w - - 0 1", "Red has 3 horses"),
    ("3k5/9/9/9/9/9/9/9/9/CCC1K4 w - - 0 1", "Red has 3 cannons"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/9/9/4A4/2BAKABNR w - - 0 1", "Red has 3 advisors"),
    ("rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/9/9/B8/2BAKABNR w - - 0 1", "Red elephant on a1"),
    ("3k5/9/9/9/9/9/9/9/4A4/4K4 w - - 0 1", None),                    # e1: an advisor point
    ("4k4/9/9/9/9/9/9/9/9/3KA4 w - - 0 1", "Red advisor on e0"),
    ("3k5/9/9/9/9/9/9/9/9/2B1K4 w - - 0 1", None),                    # c0: an elephant point
    ("3k5/9/9/9/9/9/9/P8/9/4K4 w - - 0 1", "Red soldier on a2, behind its start rank"),
    ("3k5/9/9/9/9/9/1P7/9/9/4K4 w - - 0 1", "off the files a soldier starts on"),
    ("3k5/9/9/9/9/P8/P8/9/9/4K4 w - - 0 1", "two Red soldiers on the a-file before the river"),
    ("3k5/9/9/9/P8/9/9/9/9/4K4 w - - 0 1", None),                     # across the river: anywhere ahead
    ("4k4/8p/9/9/9/9/9/9/9/3K5 w - - 0 1", "Black soldier on i8, behind its start rank"),
    (ISSUE_FEN, "Red advisor on i3"),
])
def test_impossible_positions_are_rejected_with_one_line(fen, reason):
    if reason is None:
        Board(fen)
        return
    with pytest.raises(FenError) as info:
        Board(fen)
    assert reason in str(info.value) and "no game can reach" in str(info.value) and "\n" not in str(info.value)
    Board(fen, strict=False)                     # the opt-out


def test_the_start_position_and_game_positions_are_strict_positions():
    rng = random.Random(0)
    for _ in range(30):
        game = random_game(rng, 120, rng.random() < 0.5)
        board = Board(game.root_fen)
        for move in game.moves:
            board.push(move)
        Board(board.fen())                       # every reachable position passes


def test_notation_never_crashes_on_an_impossible_board():
    board = Board(ISSUE_FEN, strict=False)
    move = Move.from_iccs("g3g2")
    text = move_to_chinese(board, move)          # IndexError before
    assert parse_move(board, text) == move
    for m in board.legal_moves():
        for notation in ("iccs", "wxf", "chinese", "chinese-traditional"):
            try:
                text = format_move(board, m, notation)
            except MoveError as e:               # no text names it unambiguously: said in words
                assert "unambiguously" in str(e)
                continue
            assert parse_move(board, text) == m, (m, notation, text)


def test_a_record_with_an_impossible_fen_is_rejected_unless_asked():
    data = f'[Event "x"]\n[FEN "{ISSUE_FEN}"]\n\n1... g3g2 *\n'.encode()
    (item,) = items_of(data)
    assert isinstance(item, PgnError) and item.kind == "bad_fen" and "no game can reach" in str(item)
    (game,) = games_only(items_of(data, strict=False))
    assert game.iccs() == ["g3g2"] and game.board().fen().startswith("2pk5")
    write_game(game, "chinese")


def test_cli_opt_out_for_impossible_positions(capsys):
    fen = "4k4/9/9/9/9/9/9/P8/9/3K5 w - - 0 1"
    with pytest.raises(SystemExit):
        cli.main(["moves", "--fen", fen])
    assert "--allow-impossible accepts it" in capsys.readouterr().err
    assert cli.main(["moves", "--fen", fen, "--allow-impossible"]) == 0
    assert "a2a3" in capsys.readouterr().out.split()


def test_errors_are_the_projects_own_types():
    for cls in (FenError, MoveError, PgnError):
        assert issubclass(cls, XiangqiError)
