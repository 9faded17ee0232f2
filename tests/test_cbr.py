"""CBR, CBL and CBF reading (xiangqi_gpt.records.cbr): tags, variations, and corrupt files rejected with a reason."""

from pathlib import Path

import pytest

from xiangqi_gpt.records.archive import VARIATIONS_TAG, read_game_file
from xiangqi_gpt.records.cbr import CBL_BLOCK, CBR_HEADER, read_cbf, read_cbl, read_cbr
from xiangqi_gpt.errors import PgnError
from xiangqi_gpt.records.pgn import Game

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "xqf"
CBL = SAMPLES / "1989年龙化杯象棋名师邀请赛35局.CBL"
pytestmark = [pytest.mark.data, pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data/xqf not present")]


def problem_of(item, name: str) -> PgnError:
    assert isinstance(item, PgnError), item
    assert str(item).startswith(name) and "\n" not in str(item)
    return item


def test_cbr_sample():
    game = read_cbr((SAMPLES / "test.cbr").read_bytes(), "test.cbr")
    assert isinstance(game, Game) and len(game.moves) == 28 and game.headers[VARIATIONS_TAG] == "11"
    assert game.iccs()[0] == "h2e2" and game.standard_start


def test_cbr_corrupt():
    data = (SAMPLES / "test.cbr").read_bytes()
    assert "no 'CCBridge Record' signature" in str(problem_of(read_cbr(b"X" + data[1:], "a.cbr"), "a.cbr"))
    assert "truncated CBR file" in str(problem_of(read_cbr(data[:1000], "a.cbr"), "a.cbr"))
    cut = problem_of(read_cbr(data[:CBR_HEADER + 4 + 4 * 10], "a.cbr"), "a.cbr")
    assert "truncated after ply" in str(cut) and cut.game == 1
    bad = bytearray(data)
    at = CBR_HEADER + 4 + 4 * 3                 # the 4th move's node (no comments before it in this file)
    bad[at + 2] = 40                            # from e5 (row 4, file 4): nothing stands there
    problem = problem_of(read_cbr(bytes(bad), "a.cbr"), "a.cbr")
    assert problem.ply == 4 and problem.kind == "illegal_move"
    bad = bytearray(data)
    bad[2120] = 0x99                            # an unknown piece code on the board
    assert "unknown piece code" in str(problem_of(read_cbr(bytes(bad), "a.cbr"), "a.cbr"))


def test_cbl_sample_and_truncation():
    data = CBL.read_bytes()
    items = list(read_cbl(data, "lib.cbl"))
    games = [g for g in items if isinstance(g, Game)]
    problems = [p for p in items if isinstance(p, PgnError)]
    assert len(items) == 38 and len(games) == 36 and [p.game for p in problems] == [1, 22]
    assert all("no pieces on the board" in str(p) for p in problems)
    assert games[0].headers["Red"] == "徐天红" and games[0].headers["Black"] == "徐天利"
    assert games[0].result == "1/2-1/2" and games[0].headers["Library"] == "1989年龙化杯象棋名师邀请赛35局"
    # cut inside the 10th record: the 9 before it are kept, the cut one is rejected, nothing is invented after it
    start = data.find(b"CCBridge Record\x00", 576)
    offsets = [a for a in range(start, len(data), CBL_BLOCK) if data.startswith(b"CCBridge Record\x00", a)]
    cut = list(read_cbl(data[:offsets[9] + CBR_HEADER + 40], "lib.cbl"))
    assert len(cut) == 10 and [g.iccs() for g in cut[:9] if isinstance(g, Game)] == \
        [g.iccs() for g in items[:9] if isinstance(g, Game)]
    assert problem_of(cut[9], "lib.cbl").game == 10
    assert "no 'CCBridgeLibrary' signature" in str(problem_of(next(read_cbl(b"junk" * 200, "x.cbl")), "x.cbl"))
    assert list(read_cbl(data[:5000], "x.cbl")) == []          # a library with no game records


def test_cbf_sample_and_corrupt():
    data = (SAMPLES / "test.cbf").read_bytes()
    game = read_cbf(data, "t.cbf")
    assert isinstance(game, Game) and len(game.moves) == 50 and game.headers["ECCO"] == "C03"
    assert game.headers["Title"].startswith("第一局") and game.iccs()[:2] == ["h2e2", "h9g7"]
    assert "not a readable CBF" in str(problem_of(read_cbf(data[:700], "t.cbf"), "t.cbf"))
    bad = data.replace(b'value="70-62"', b'value="70-6"', 1)
    assert problem_of(read_cbf(bad, "t.cbf"), "t.cbf").ply == 2
    illegal = data.replace(b'value="70-62"', b'value="70-50"', 1)      # the horse cannot go there
    problem = problem_of(read_cbf(illegal, "t.cbf"), "t.cbf")
    assert problem.ply == 2 and problem.kind == "illegal_move"
    games, problems = read_game_file(illegal, name="renamed.xml")      # found by its content, not its name
    assert not games and problems[0].ply == 2
