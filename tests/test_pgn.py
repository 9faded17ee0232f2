import io
import random
import tarfile
from pathlib import Path

import pytest

from random_games import random_board

from xiangqi_gpt.rules.board import STARTING_FEN, Board
from xiangqi_gpt.errors import PgnError, XiangqiError
from xiangqi_gpt.records.pgn import (Game, decode_bytes, detect_encoding, normalize_result, pgn_text, read_games,
                             write_game, write_games)

CCPD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ccpd.tar.xz"


def random_game(seed: int, plies: int = 60, fen: str = STARTING_FEN, **headers) -> Game:
    rng = random.Random(seed)
    board = random_board(rng, plies, fen)
    outcome = board.outcome()
    result = outcome.result() if outcome else rng.choice(["1-0", "0-1", "1/2-1/2", "*"])
    return Game(headers={"Event": "test", **headers}, moves=list(board.move_stack), root_fen=board.root_fen(),
                result=result, source="t.pgn", index=1)


def games_of(data, **kw):
    return list(read_games(data, name="t.pgn", **kw))


def only_games(items):
    assert all(isinstance(i, Game) for i in items), [str(i) for i in items if not isinstance(i, Game)]
    return items


# ---- encodings ----------------------------------------------------------------------------------------------

TRAD = '[Event "全國象棋個人賽"]\n[Red "胡榮華"]\n[Black "楊官璘"]\n\n1. 炮二平五 馬８進７ 2. 馬二進三 車９平８ 1-0\n'
SIMP = '[Event "全国象棋个人赛"]\n[Red "胡荣华"]\n[Black "李来群"]\n\n1. 炮二平五 马8进7 2. 马二进三 车9平8 1-0\n'


@pytest.mark.parametrize("text,encoding,family", [
    (TRAD, "big5", "big5"), (TRAD, "cp950", "big5"), (TRAD, "gb18030", "gb18030"), (SIMP, "gbk", "gb18030"),
    (SIMP, "gb2312", "gb18030"), (SIMP, "utf-8", "utf-8"), (TRAD, "utf-8-sig", "utf-8"), (SIMP, "utf-8-sig", "utf-8"),
], ids=["big5", "cp950", "trad-gb18030", "gbk", "gb2312", "utf8", "trad-utf8-bom", "simp-utf8-bom"])
def test_encoding_detection(text, encoding, family):
    data = text.encode(encoding)
    assert detect_encoding(data) == family
    assert decode_bytes(data) == text
    games = only_games(games_of(data))
    assert [m.iccs() for m in games[0].moves] == ["h2e2", "h9g7", "h0g2", "i9h9"]
    assert games[0].headers["Red"] in ("胡榮華", "胡荣华")


def test_big5_vs_gbk_on_short_moves_only():
    # Only moves, no names: Big5 bytes also decode as GBK, the score must pick Big5.
    moves = "1. 炮二平五 馬８進７ 2. 傌二進三 車９平８ 3. 車一平二 包８進４ 4. 兵七進一 卒７進１\n"
    assert detect_encoding(moves.encode("big5")) == "big5"
    assert detect_encoding(moves.replace("傌", "马").replace("車", "车").encode("gbk")) == "gb18030"


def test_undecodable_bytes_reject_one_game_only():
    good = "[Event \"a\"]\n\n1. 炮二平五 馬８進７ 1-0\n".encode("big5")
    bad = b"[Event \"b\"]\n\n1. \xff\xff\xff\xfe h9g7 0-1\n"
    items = games_of(good + b"\n" + bad + b"\n" + good)
    assert isinstance(items[0], Game) and isinstance(items[2], Game)
    assert isinstance(items[1], PgnError) and items[1].kind == "decode" and items[1].game == 2
    with pytest.raises(PgnError, match="cannot decode"):
        decode_bytes(b"\x81\x30\xff\xff\xfe\xa1")


# ---- reading ------------------------------------------------------------------------------------------------

def test_iccs_with_format_tag_and_move_numbers():
    text = '[Format "ICCS"]\n[Result "0-1"]\n\n1. H2-E2 H9-G7 2. h0g2 i9h9\n3... ; comment\n0-1\n'
    g = only_games(games_of(text.encode()))[0]
    assert g.iccs() == ["h2e2", "h9g7", "h0g2", "i9h9"]
    assert g.result == "0-1" and g.standard_start and g.index == 1 and g.source == "t.pgn"


def test_notation_detected_without_format_tag():
    for moves in ("1. C2.5 H8+7 2. H2+3 R9.8", "1. h2e2 h9g7 2. h0g2 i9h9", "1. 炮二平五 马8进7 2. 马二进三 车9平8",
                  "1.炮二平五 馬８進７ 2.馬二進三 車９平８", "炮二平五馬８進７馬二進三車９平８"):
        g = only_games(games_of(f'[Event "x"]\n\n{moves} *\n'.encode()))[0]
        assert g.iccs() == ["h2e2", "h9g7", "h0g2", "i9h9"], moves


def test_comments_variations_nags_and_marks_are_skipped():
    text = ("[Event \"x\"]\n\n{opening (not a variation) ; not a comment}\n"
            "1. h2e2! {best} (1. b2e2 (1. c3c4) h9g7) h9g7?! $1\n"
            "2. h0g2 {multi\n[line] comment} i9h9 ; rest of line h0h1\n"
            "% escape line h0h1\n3. i0h0 (3. b0c2 {x (y} ) 1/2-1/2\n")
    g = only_games(games_of(text.encode()))[0]
    assert g.iccs() == ["h2e2", "h9g7", "h0g2", "i9h9", "i0h0"]
    assert g.result == "1/2-1/2"


def test_check_marks_after_moves():
    g = only_games(games_of(b"1. h2e2 h9g7 2. e2e6+ a9a8 *\n"))[0]
    assert g.iccs()[-2:] == ["e2e6", "a9a8"]


@pytest.mark.parametrize("terminator,tag,expected", [
    ("1-0", "0-1", "1-0"), ("*", "0-1", "0-1"), ("", "1/2-1/2", "1/2-1/2"), ("", "", "*"), ("红胜", "", "1-0"),
    ("黑勝", "", "0-1"), ("和棋", "*", "1/2-1/2"),
])
def test_results(terminator, tag, expected):
    tags = f'[Result "{tag}"]\n' if tag else '[Event "e"]\n'
    g = only_games(games_of(f"{tags}\n1. h2e2 h9g7 {terminator}\n".encode()))[0]
    assert g.result == expected


def test_normalize_result():
    assert normalize_result("½-½") == "1/2-1/2"
    assert normalize_result("紅勝") == "1-0"
    assert normalize_result("h2e2") is None


def test_fen_tag_and_black_to_move():
    fen = "2C1ka3/4a4/9/R8/9/3ppnP2/Pr7/9/4A4/3AK1B2 b - - 0 1"
    text = f'[FEN "{fen}"]\n\n1... 車２平７ 2. 相三進一 馬６進５ 0-1\n'
    g = only_games(games_of(text.encode("big5")))[0]
    assert not g.standard_start and g.root_fen == fen
    assert g.iccs() == ["b3g3", "g0i2", "f4e2"]
    assert g.board().fen().split()[1] == "w"


def test_many_games_illegal_one_is_yielded_as_error_and_reading_goes_on():
    text = ('[Event "1"]\n\n1. h2e2 h9g7 1-0\n\n'
            '[Event "2"]\n\n1. h2e2 h9g7 2. e2e9 *\n\n'      # e2e9 is illegal (cannon capture over two screens)
            '[Event "3"]\n\n1. b0c2 *\n\n'
            '[Event "4"]\n\n1. h2e2 zz99 *\n\n'
            '[Event "5"]\n[FEN "bad fen"]\n\n1. h2e2 *\n')
    items = games_of(text.encode())
    assert [type(i).__name__ for i in items] == ["Game", "PgnError", "Game", "PgnError", "PgnError"]
    err = items[1]
    assert (err.path, err.game, err.ply, err.kind) == ("t.pgn", 2, 3, "illegal_move")
    assert "t.pgn" in str(err) and "game 2" in str(err) and "ply 3" in str(err) and "e2e9" in str(err)
    assert (items[3].game, items[3].ply, items[3].kind) == (4, 2, "invalid_move")
    assert items[4].kind == "bad_fen"
    assert items[2].headers["Event"] == "3" and items[2].index == 3


def test_games_without_tags_split_at_results():
    items = only_games(games_of(b"1. h2e2 h9g7 1-0\n1. b0c2 0-1\n\n1. c3c4 *\n"))
    assert [g.iccs() for g in items] == [["h2e2", "h9g7"], ["b0c2"], ["c3c4"]]
    assert [g.result for g in items] == ["1-0", "0-1", "*"]


def test_comment_after_a_result_is_not_a_game():
    items = only_games(games_of(b'[Event "a"]\n\n1. h2e2 1-0\n{annotated by someone}\n\n[Event "b"]\n\n1. b0c2 *\n'))
    assert [(g.index, g.headers["Event"], g.iccs()) for g in items] == [(1, "a", ["h2e2"]), (2, "b", ["b0c2"])]


def test_empty_game_and_empty_file():
    items = only_games(games_of(b'[Event "only tags"]\n[Result "*"]\n'))
    assert len(items) == 1 and items[0].moves == []
    assert games_of(b"") == []


def test_escaped_quotes_in_tags_round_trip():
    g = random_game(3, 10, Event='He said "draw" \\ ok')
    back = only_games(games_of(write_game(g).encode()))[0]
    assert back.headers["Event"] == 'He said "draw" \\ ok'


def test_reading_is_lazy():
    one = b'[Event "x"]\n\n1. h2e2 h9g7 2. h0g2 i9h9 1-0\n\n'
    stream = io.BytesIO(one * 20_000)           # ~1 MB, pure ASCII
    it = read_games(stream, name="big.pgn")
    first = next(it)
    assert isinstance(first, Game) and first.iccs()[0] == "h2e2"
    assert stream.tell() < 10_000              # only the start of the file has been consumed
    second = next(it)
    assert second.index == 2 and stream.tell() < 10_000
    assert sum(1 for _ in it) == 19_998


def test_utf16_with_bom_is_read_and_binary_is_refused():
    g = only_games(games_of(SIMP.encode("utf-16")))[0]
    assert g.iccs() == ["h2e2", "h9g7", "h0g2", "i9h9"] and g.headers["Red"] == "胡荣华"
    for data in ('[Event "x"]\n\n1. h2e2 *\n'.encode("utf-16-le"), b"\x00\x01\x02PK"):
        with pytest.raises(PgnError, match="not a PGN text file"):
            list(read_games(data, name="odd.pgn"))


def test_path_input_and_missing_file(tmp_path):
    p = tmp_path / "a.pgn"
    p.write_bytes(SIMP.encode("gbk"))
    assert only_games(list(read_games(p)))[0].source == str(p)
    with pytest.raises(PgnError, match="cannot read"):
        list(read_games(tmp_path / "missing.pgn"))


def test_bad_arguments():
    with pytest.raises(XiangqiError):
        list(read_games(b"", notation="klingon"))
    with pytest.raises(XiangqiError):
        write_game(random_game(1, 4), notation="klingon")
    with pytest.raises(XiangqiError):
        write_game(random_game(1, 4), encoding="latin-1")


# ---- writing ------------------------------------------------------------------------------------------------

ROUND_TRIP_FENS = [STARTING_FEN, "2C1ka3/4a4/9/R8/9/3ppnP2/Pr7/9/4A4/3AK1B2 b - - 0 1",
                   "4k4/4a4/3a5/9/2P1P1P2/2P1P4/9/4B4/4A4/2BAK4 w - - 0 1",      # tandem soldiers
                   "2ba1k3/4a4/4b4/9/2p1p4/2p1p4/2p6/9/9/3K5 b - - 0 1"]


@pytest.mark.parametrize("notation", ["iccs", "wxf", "chinese"])
@pytest.mark.parametrize("encoding", ["utf-8", "gb18030", "big5"])
def test_round_trip(notation, encoding):
    event = "全國賽" if encoding == "big5" else "全国赛"
    games = [random_game(seed, 80, fen, Event=event, Red="甲", Black="乙")
             for seed, fen in enumerate(ROUND_TRIP_FENS * 3)]
    buf = io.BytesIO()
    assert write_games(games, buf, notation=notation, encoding=encoding) == len(games)
    data = buf.getvalue()
    if notation != "iccs" and encoding != "utf-8":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    back = only_games(games_of(data))
    assert len(back) == len(games)
    for g, b in zip(games, back):
        assert b.moves == g.moves and b.result == g.result and b.root_fen == g.root_fen
        assert b.headers["Event"] == event and b.headers["Format"].lower() == notation
    # and the writer is deterministic
    assert write_game(games[0], notation, encoding) == write_game(back[0], notation, encoding)


def test_chinese_writing_uses_traditional_for_big5():
    g = random_game(0, 6)
    simp = write_game(g, "chinese", "gb18030")
    trad = write_game(g, "chinese", "big5")
    trad.encode("big5")
    assert any(ch in trad for ch in "馬車炮進") and "进" not in trad and "马" not in trad
    assert any(ch in simp for ch in "马车炮进")


def test_write_games_to_path_and_unencodable_tag(tmp_path):
    g = random_game(5, 20, Event="马")           # simplified character, not in Big5
    p = tmp_path / "out.pgn"
    write_games([g], p, "iccs", "utf-8")
    assert only_games(list(read_games(p)))[0].moves == g.moves
    with pytest.raises(PgnError, match="cannot encode"):
        write_games([g], tmp_path / "b5.pgn", "chinese", "big5")


def test_written_move_numbers():
    g = random_game(1, 3, "2C1ka3/4a4/9/R8/9/3ppnP2/Pr7/9/4A4/3AK1B2 b - - 0 1")
    text = write_game(g)
    body = text.split("\n\n")[1]
    assert body.startswith("1... ") and " 2. " in body
    assert pgn_text({}, ["h2e2"], result="1-0").endswith("1. h2e2 1-0\n\n")


# ---- the real archive ---------------------------------------------------------------------------------------

@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not CCPD.exists(), reason="../shared/data/ccpd.tar.xz not present")
def test_ccpd_sample_is_read_legally():
    """Every 25th file of CCPD (about 2,200, deterministic): each is converted to a legal ICCS sequence (replayed
    with validation) or rejected with a reason; fewer than 0.1% of the files that hold moves are rejected.
    benchmarks/bench_ccpd_read.py does the same over the whole archive."""
    files_with_moves = rejected = empty = games = 0
    n_members = 0
    with tarfile.open(CCPD, "r|xz") as tar:          # streamed, in archive order
        for member in tar:
            if not (member.isfile() and member.name.endswith(".pgn")):
                continue
            n_members += 1
            if n_members % 25:
                continue
            data = tar.extractfile(member).read()
            items = list(read_games(data, name=member.name))
            errors = [i for i in items if isinstance(i, PgnError)]
            ok = [i for i in items if isinstance(i, Game)]
            for e in errors:
                assert e.kind and e.path == member.name and e.game is not None
            for g in ok:
                g.board()                                   # replays with Board.push: raises if illegal
                assert g.result in ("1-0", "0-1", "1/2-1/2", "*")
            games += len(ok)
            if errors or any(g.moves for g in ok):
                files_with_moves += 1
                rejected += bool(errors)
            else:
                empty += 1
    assert n_members > 50_000
    assert files_with_moves > 2000 and games >= files_with_moves - rejected
    assert rejected <= files_with_moves * 0.001, rejected
