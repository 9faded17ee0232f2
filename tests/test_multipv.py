"""Multi-line search (MultiPV): distinct legal lines, best first, the first line's move is the best move."""

from __future__ import annotations

import io

from eval_fixtures import gpt  # noqa: F401  (the shipped model, a fixture)
from xiangqi_gpt.rules.board import Board
from xiangqi_gpt.play.search import Limits, Searcher

MIDDLEGAME = "r1bakab1r/9/1cn3nc1/p1p1p1p1p/9/2P6/P3P1P1P/1CN3NC1/9/R1BAKAB1R w - - 4 5"
FREE_PIECE = "3k5/9/9/9/r8/9/9/9/4A4/R3K4 w - - 0 1"      # a0a5 wins a chariot


def test_three_distinct_lines_at_every_depth(gpt):
    board = Board(MIDDLEGAME)
    infos = []
    result = Searcher(gpt).search(board, Limits(depth=3), infos.append, multipv=3)
    legal = set(board.legal_moves())
    for depth in (1, 2):
        lines = [i for i in infos if i.depth == depth]
        assert [i.multipv for i in lines] == [1, 2, 3]
        assert len({i.pv[0] for i in lines}) == 3 and all(i.pv[0] in legal for i in lines)
        assert lines[0].score_cp >= lines[1].score_cp >= lines[2].score_cp
    assert [i.multipv for i in result.lines] == [1, 2, 3] and result.lines[0].pv[0] == result.move
    for line in result.lines:                         # each pv is a legal line
        b = board.copy()
        for move in line.pv:
            assert b.is_legal(move)
            b.push(move)


def test_the_best_line_is_the_single_line_search_s_move(gpt):
    board = Board(FREE_PIECE)
    single = Searcher(gpt).search(board, Limits(depth=3))
    lines = Searcher(gpt).best_lines(board, 4, Limits(depth=3))
    assert str(single.move) == str(lines[0].pv[0]) == "a0a5"
    assert len(lines) == 4 and lines[0].score_cp > lines[1].score_cp + 500    # the others do not win the chariot
    moves = board.legal_moves()
    assert len(Searcher(gpt).best_lines(board, len(moves) + 5, Limits(depth=1))) == len(moves)   # at most every move
    assert Searcher(gpt).best_lines(Board("R3k4/7R1/9/9/9/9/9/9/9/3K5 b - - 0 1"), 3, Limits(depth=1)) == []


def test_the_engine_prints_multipv_lines_and_answers_the_first(gpt):
    from xiangqi_gpt.play.engine import Engine

    out = io.StringIO()
    engine = Engine(out=out, load=lambda path: None, make_player=lambda loaded, t, seed: gpt)
    for line in ("setoption name MultiPV value 3", f"position fen {MIDDLEGAME}", "go depth 3"):
        engine.handle(line)
    engine.settle()
    lines = out.getvalue().splitlines()
    for depth in (1, 2, 3):
        mine = [line.split() for line in lines if line.startswith("info multipv") and line.split()[4] == str(depth)]
        assert [words[2] for words in mine][:3] == ["1", "2", "3"]
        assert len({words[words.index("pv") + 1] for words in mine[:3]}) == 3
    last_first = [line.split() for line in lines if line.startswith("info multipv 1 ")][-1]
    assert lines[-1].split()[1] == last_first[last_first.index("pv") + 1]
