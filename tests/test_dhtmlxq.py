"""DhtmlXQ/UBB text reading (xiangqi_gpt.records.dhtmlxq), cross-checked with cchess's reader of the same move digits."""

import pytest

from xiangqi_gpt.records.archive import VARIATIONS_TAG, read_game_file
from xiangqi_gpt.rules.board import STARTING_FEN
from xiangqi_gpt.records.dhtmlxq import read_dhtmlxq
from xiangqi_gpt.errors import PgnError
from xiangqi_gpt.records.pgn import Game

START = "8979695949392919097717866646260600102030405060708012720323436383"


def page(movelist: str, binit: str = START, extra: str = "") -> str:
    return (f"<html><p>中国象棋</p>\n[DhtmlXQ]\n[DhtmlXQ_ver]www_dhtmlxq_com[/DhtmlXQ_ver]\n"
            f"[DhtmlXQ_title]胡荣华 先胜 杨官璘[/DhtmlXQ_title]\n[DhtmlXQ_event]全国赛[/DhtmlXQ_event]\n"
            f"[DhtmlXQ_red]胡荣华[/DhtmlXQ_red]\n[DhtmlXQ_black]杨官璘[/DhtmlXQ_black]\n"
            f"[DhtmlXQ_result]红胜[/DhtmlXQ_result]\n[DhtmlXQ_binit]{binit}[/DhtmlXQ_binit]\n"
            f"[DhtmlXQ_movelist]{movelist}[/DhtmlXQ_movelist]\n{extra}[/DhtmlXQ]\n</html>\n")


def test_page_reads_like_cchess():
    cchess_txt = pytest.importorskip("cchess.read_txt")
    moves = "77477062796763641927"
    (game,) = read_dhtmlxq(page(moves, extra="[DhtmlXQ_move_0_1_1]7242[/DhtmlXQ_move_0_1_1]\n"
                                      "[DhtmlXQ_comment1]中炮[/DhtmlXQ_comment1]\n").encode("gb18030"), "p.html")
    assert isinstance(game, Game) and game.standard_start
    theirs = cchess_txt.read_from_txt(moves, START).dump_iccs_moves()[0]
    assert game.iccs() == [m.replace("-", "") for m in theirs] == ["h2e2", "h9g7", "h0g2", "g6g5", "b0c2"]
    assert game.headers["Red"] == "胡荣华" and game.headers["Event"] == "全国赛" and game.result == "1-0"
    assert game.headers[VARIATIONS_TAG] == "1"


def test_custom_position_black_to_move():
    cchess_txt = pytest.importorskip("cchess.read_txt")
    men = ["99"] * 32
    men[4], men[0] = "39", "05"            # Red general d0, Red chariot a4
    men[16 + 4], men[16 + 3] = "40", "41"  # Black general e9, Black advisor e8
    binit = "".join(men)
    moves = "41500515"                      # Black advisor e8f9, Red chariot a4b4
    (game,) = read_dhtmlxq(page(moves, binit), "p.txt")
    assert isinstance(game, Game), game
    assert game.root_fen.split()[:2] == ["4k4/4a4/9/9/9/R8/9/9/9/3K5", "b"]
    theirs = cchess_txt.read_from_txt(moves, binit).dump_iccs_moves()[0]
    assert game.iccs() == [m.replace("-", "") for m in theirs] == ["e8f9", "a4b4"]


def test_several_games_and_bare_tags():
    text = page("7747") + page("1927")
    games = list(read_dhtmlxq(text, "two.html"))
    assert [g.iccs() for g in games] == [["h2e2"], ["b0c2"]] and [g.index for g in games] == [1, 2]
    (bare,) = read_dhtmlxq("[DhtmlXQ_movelist]7747[/DhtmlXQ_movelist]", "bare.ubb")
    assert bare.iccs() == ["h2e2"] and bare.root_fen == STARTING_FEN


@pytest.mark.parametrize("movelist,binit,words,ply", [
    ("774", START, "groups of 4 digits", None),
    ("77477747", START, "illegal move", 2),          # h2e2 twice: e2 now holds Red's own cannon
    ("9747", START, "file past 8", 1),
    ("7747", START[:-2], "32 two-digit points", None),
    ("7747", START[:2] + START[:2] + START[4:], "two pieces on", None),
])
def test_bad_games_are_rejected_and_the_others_kept(movelist, binit, words, ply):
    text = page("7747") + page(movelist, binit) + page("1927")
    items = list(read_dhtmlxq(text.encode("utf-8"), "forum.html"))
    assert [type(i) for i in items] == [Game, PgnError, Game]
    problem = items[1]
    assert words in str(problem) and str(problem).startswith("forum.html, game 2") and "\n" not in str(problem)
    assert problem.ply == ply


def test_no_game_and_dispatch():
    (problem,) = read_dhtmlxq(b"<html>nothing here</html>", "empty.ubb")
    assert isinstance(problem, PgnError) and "no DhtmlXQ game" in str(problem)
    games, problems = read_game_file(page("7747").encode("utf-8"), name="saved-page.htm")
    assert not problems and games[0].iccs() == ["h2e2"]
