"""XQF reading (xiangqi_gpt.records.xqf), the archive dispatch (xiangqi_gpt.records.archive), ``convert`` and ``prepare`` on
archive files. Every sample of ../shared/data/xqf is cross-checked against the independent ``cchess`` reader."""

import random
from pathlib import Path

import pytest

from xiangqi_gpt import cli
from xiangqi_gpt.records.archive import DROPPED_TAG, VARIATIONS_TAG, iter_game_file, read_game_file, sniff
from xiangqi_gpt.rules.board import STARTING_FEN, Board, Move
from xiangqi_gpt.errors import PgnError
from xiangqi_gpt.records.pgn import Game, read_games, write_game
from xiangqi_gpt.records.xqf import HEADER_SIZE, encode_xqf, read_xqf

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "xqf"
need_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data/xqf not present")
SAMPLE_FILES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix.lower() != ".md") if SAMPLES.is_dir() else []


def random_game(seed: int, plies: int = 40, fen: str = STARTING_FEN, **headers) -> Game:
    rng = random.Random(seed)
    board = Board(fen)
    for _ in range(plies):
        moves = board.legal_moves()
        if not moves or board.outcome():
            break
        board.push(rng.choice(sorted(moves, key=Move.iccs)))
    return Game(headers=dict(headers), moves=list(board.move_stack), root_fen=board.root_fen(), result="1-0",
                source="t", index=1)


def cchess_lines(path: Path) -> list[list[list[str]]]:
    """Per game of ``path``, cchess's lines (main line first) as ICCS moves; [] for a game it reads as empty."""
    cchess = pytest.importorskip("cchess")
    if path.suffix.lower() == ".cbl":
        games = cchess.Game.read_from_lib(str(path))["games"]
    else:
        games = [cchess.Game.read_from(str(path))]
    return [[[m.replace("-", "") for m in line] for line in g.dump_iccs_moves()] for g in games]


# --------------------------------------------------------------------------------------------------------------
# The cross-check against cchess
# --------------------------------------------------------------------------------------------------------------

@need_samples
@pytest.mark.data
@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_every_sample_reads_like_cchess(name):
    path = SAMPLES / name
    games, problems = read_game_file(path)
    expected = cchess_lines(path)
    assert len(games) + len(problems) == len(expected)
    by_index = {g.index: g for g in games}
    for problem in problems:
        assert "\n" not in str(problem) and str(path) in str(problem)
        assert expected[problem.game - 1 if problem.game else 0] == []    # cchess gets no move out of it either
    for index, lines in enumerate(expected, start=1):
        if index not in by_index:
            continue
        game = by_index[index]
        main = lines[0] if lines else []
        assert game.iccs() == main
        assert int(game.headers.get(VARIATIONS_TAG, 0)) == max(len(lines) - 1, 0)   # counted, not kept
        board = game.board()                          # replayed by the rule engine
        assert [m.iccs() for m in board.move_stack] == main


@need_samples
@pytest.mark.data
def test_sample_tags_result_and_variations():
    (game,), problems = read_game_file(SAMPLES / "030-黄松轩先胜冯敬如.XQF")
    assert not problems
    assert game.headers["Red"] == "黄松轩" and game.headers["Black"] == "冯敬如" and game.result == "1-0"
    assert game.headers[VARIATIONS_TAG] == "1" and len(game.moves) == 37 and game.standard_start
    (game,), _ = read_game_file(SAMPLES / "game_varations.xqf")
    assert game.headers[VARIATIONS_TAG] == "5" and len(game.moves) == 8
    (empty,), _ = read_game_file(SAMPLES / "EmptyTest.xqf")
    assert empty.moves == [] and Board(empty.root_fen)


@need_samples
@pytest.mark.data
def test_stray_illegal_last_node_is_dropped_and_named():
    # BadMoveTest3 ends its main line with a node that moves from an empty point (XQStudio leaves such nodes);
    # cchess skips it too. It is dropped and named, never played.
    (game,), problems = read_game_file(SAMPLES / "BadMoveTest3.xqf")
    assert not problems and len(game.moves) == 9
    assert game.headers[DROPPED_TAG].startswith("ply 10: e1f0") and "no piece" in game.headers[DROPPED_TAG]
    (game4,), _ = read_game_file(SAMPLES / "BadMoveTest4.xqf")
    assert DROPPED_TAG not in game4.headers and game4.iccs() == game.iccs()


# --------------------------------------------------------------------------------------------------------------
# Versions and keys: our encoder, read by us and by cchess
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [10, 11, 12, 16, 18])
def test_every_version_round_trips_and_cchess_agrees(version, tmp_path):
    cchess = pytest.importorskip("cchess")
    fen = "3k5/4a4/9/9/9/9/9/9/4A4/3AK2R1 b - - 0 1"   # a custom start, Black to move, men captured
    for seed, game in enumerate([random_game(version), random_game(version + 1, 30, fen, Red="甲", Black="乙")]):
        data = encode_xqf(game, version, seed=seed)
        back = read_xqf(data, "x.xqf")
        assert isinstance(back, Game), back
        assert back.iccs() == game.iccs() and back.root_fen.split()[:2] == game.root_fen.split()[:2]
        assert back.result == "1-0" and back.headers.get("Red") == game.headers.get("Red")
        path = tmp_path / f"{seed}.xqf"
        path.write_bytes(data)
        lines = cchess.Game.read_from(str(path)).dump_iccs_moves()
        assert [m.replace("-", "") for m in (lines or [[]])[0]] == game.iccs()


def test_plain_and_encrypted_files_differ_but_read_the_same():
    game = random_game(3)
    plain, secret = encode_xqf(game, 10), encode_xqf(game, 18, seed=5)
    assert plain[HEADER_SIZE:] != secret[HEADER_SIZE:] and plain[0x10:0x30] != secret[0x10:0x30]
    assert read_xqf(plain, "a").iccs() == read_xqf(secret, "b").iccs() == game.iccs()


# --------------------------------------------------------------------------------------------------------------
# Bad files: a one-line reason naming the file, never a traceback
# --------------------------------------------------------------------------------------------------------------

def one_problem(data: bytes, name: str = "bad.xqf") -> PgnError:
    games, problems = read_game_file(data, name=name)
    assert games == [] and len(problems) == 1, (games, problems)
    text = str(problems[0])
    assert text.startswith(name) and "\n" not in text and "Traceback" not in text
    return problems[0]


def test_truncated_files_are_rejected():
    data = encode_xqf(random_game(7), 18, seed=2)
    assert "truncated XQF file" in str(one_problem(data[:500]))
    assert "truncated after ply" in str(one_problem(data[:HEADER_SIZE + 4 + 4 * 10 + 2]))
    assert "truncated after ply" in str(one_problem(data[:-4]))


def test_wrong_magic_is_rejected():
    data = encode_xqf(random_game(7), 18)
    assert "no 'XQ' signature" in str(one_problem(b"QX" + data[2:]))


def test_bad_move_names_the_ply():
    game = random_game(8, 20)
    data = bytearray(encode_xqf(game, 10))
    node = HEADER_SIZE + 8 + 8 * 4           # the 5th move (plain files: 8 bytes per node)
    data[node] = 0x18 + 44                   # from e4 ... (file 4, rank 4): nothing stands there
    problem = one_problem(bytes(data))
    assert problem.ply == 5 and problem.kind == "illegal_move" and "ply 5" in str(problem)


def test_encrypted_with_bad_keys_is_rejected():
    data = bytearray(encode_xqf(random_game(9), 18, seed=4))
    broken = bytearray(data)
    broken[13] ^= 0x5A                       # one key byte: the header's key checksum fails
    assert "bad key checksum" in str(one_problem(bytes(broken)))
    for seed in range(20):                   # keys changed consistently (checksum kept): wrong men, moves, lengths
        rng = random.Random(seed)
        broken = bytearray(data)
        delta = rng.randrange(1, 256)
        broken[13] = (broken[13] + delta) & 0xFF
        broken[12] = (broken[12] - delta) & 0xFF
        games, problems = read_game_file(bytes(broken), name="bad.xqf")
        assert len(problems) == 1 and not games and "\n" not in str(problems[0])


def test_random_corruption_never_raises():
    data = encode_xqf(random_game(11), 18, seed=6)
    rng = random.Random(0)
    for _ in range(300):
        broken = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            broken[rng.randrange(len(broken))] = rng.randrange(256)
        cut = rng.choice([len(broken), rng.randrange(len(broken))])
        for item in iter_game_file(bytes(broken[:cut]), name="x.xqf"):
            assert isinstance(item, (Game, PgnError))
            if isinstance(item, PgnError):
                assert "\n" not in str(item)


# --------------------------------------------------------------------------------------------------------------
# Dispatch, convert and prepare
# --------------------------------------------------------------------------------------------------------------

def test_sniff_by_magic_then_name():
    xqf = encode_xqf(random_game(1), 18)
    assert sniff(xqf, "game.pgn") == "xqf"            # the bytes win over a wrong name
    assert sniff(b"CCBridge Record\x00" + bytes(10)) == "cbr" and sniff(b"CCBridgeLibrary\x00") == "cbl"
    assert sniff(b'<?xml version="1.0"?><ChineseChessRecord>') == "cbf"
    assert sniff(b"<p>[DhtmlXQ][DhtmlXQ_movelist]7747[/DhtmlXQ_movelist][/DhtmlXQ]") == "dhtmlxq"
    assert sniff(b'[Event "x"]\n1. h2e2 *\n') == "pgn" and sniff(b"junk", "g.xqf") == "xqf"


def test_pgn_through_the_dispatch_is_read_games():
    text = write_game(random_game(2), "chinese").encode("utf-8")
    games, problems = read_game_file(text, name="g.pgn")
    assert not problems and [g.iccs() for g in games] == [g.iccs() for g in read_games(text)]


@need_samples
@pytest.mark.data
@pytest.mark.parametrize("notation", ["iccs", "wxf", "chinese"])
def test_convert_round_trip(notation, tmp_path, capsys):
    out = tmp_path / "all.pgn"
    with pytest.raises(SystemExit) as e:      # 2 CBL records are rejected (empty): exit 1, the rest written
        cli.main(["convert", str(SAMPLES), "--out", str(out), "--notation", notation])
    assert e.value.code == 1
    err = capsys.readouterr()
    assert err.err.count("rejected:") == 2 and "Traceback" not in err.err and "wrote 51 games" in err.out
    expected = []
    for name in SAMPLE_FILES:
        expected.extend(g.iccs() for g in read_game_file(SAMPLES / name)[0])
    back = list(read_games(out))
    assert all(isinstance(g, Game) for g in back)
    assert [g.iccs() for g in back] == expected
    assert sum(int(g.headers.get(VARIATIONS_TAG, 0)) for g in back) == 39


def test_convert_single_file_and_bad_input(tmp_path, capsys):
    good = tmp_path / "a.xqf"
    game = random_game(4, Red="红", Black="黑")
    good.write_bytes(encode_xqf(game, 12))
    out = tmp_path / "a.pgn"
    assert cli.main(["convert", str(good), "--out", str(out), "--notation", "chinese"]) == 0
    (back,) = read_games(out)
    assert back.iccs() == game.iccs() and back.headers["Red"] == "红"
    bad = tmp_path / "b.xqf"
    bad.write_bytes(b"XQ\x12" + bytes(100))
    out2 = tmp_path / "b.pgn"
    for args in (["convert", str(bad), "--out", str(out2)], ["convert", str(tmp_path / "none"), "--out", str(out2)]):
        with pytest.raises(SystemExit) as e:
            cli.main(args)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and not any("Traceback" in line for line in err)
        assert not out2.exists()


def test_prepare_takes_archive_files_next_to_pgn(tmp_path):
    from xiangqi_gpt.data.prepare import prepare

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    games = [random_game(100 + i, 30) for i in range(6)]
    for i, game in enumerate(games[:4]):
        (src / "sub" / f"{i}.xqf").write_bytes(encode_xqf(game, 18 if i % 2 else 10, seed=i))
    (src / "games.pgn").write_text("".join(write_game(g, "chinese") for g in games[4:]), encoding="utf-8")
    (src / "cut.xqf").write_bytes(encode_xqf(games[0], 18)[:600])           # in the header: an unreadable file
    (src / "broken.xqf").write_bytes(encode_xqf(games[0], 18)[:HEADER_SIZE + 40])   # in the moves: a rejected game
    (src / "notes.txt").write_text("not a game")
    warnings = []
    r = prepare([str(src)], tmp_path / "out", workers=0, progress=False, warn=warnings.append)
    assert r.summary["games_read"] == 7 and r.summary["games_rejected"] == 1
    assert r.summary["files"]["unreadable"] == 1 and any("cut.xqf" in w for w in warnings)
    assert r.summary["unique_games"] == 6 and r.summary["files"]["skipped_not_pgn"] == 1
    assert r.summary["rejected"]["by_reason"] == {"bad_archive": 1}
    written = []
    for split in ("train", "val", "test"):
        path = r.out / f"{split}.pgn"
        if path.exists():
            written.extend(g.iccs() for g in read_games(path))
    assert sorted(written) == sorted(g.iccs() for g in games)


@need_samples
@pytest.mark.data
def test_prepare_on_the_sample_folder(tmp_path):
    from xiangqi_gpt.data.prepare import prepare

    r = prepare([str(SAMPLES)], tmp_path / "out", workers=0, progress=False, warn=lambda _: None)
    assert r.summary["files"]["read"] == 16 and r.summary["files"]["skipped_not_pgn"] == 1     # README.md
    assert r.summary["games_read"] == 53 and r.summary["games_rejected"] == 2      # the CBL's 2 empty records


def test_benchmark_reads_a_folder(tmp_path):
    from study_scripts import load_script

    bench = load_script("bench_archive", "benchmarks")
    games = [random_game(200 + i, 10) for i in range(3)]
    for i, game in enumerate(games):
        (tmp_path / f"{i}.xqf").write_bytes(encode_xqf(game, 18, seed=i))
    seconds, n, plies = bench.read_folder(tmp_path)
    assert n == 3 and plies == sum(len(g.moves) for g in games) and seconds >= 0
