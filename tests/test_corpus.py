import io
import json
import random
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xiangqi_gpt import cli, corpus
from xiangqi_gpt.board import STARTING_FEN, Board, Move
from xiangqi_gpt.corpus import load_meta, prepare, split_of
from xiangqi_gpt.errors import DatasetError
from xiangqi_gpt.pgn import Game, read_games, write_games
from xiangqi_gpt.tokenizer import get_tokenizer

CCPD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ccpd.tar.xz"
PUZZLE_FEN = "2C1ka3/4a4/9/R8/9/3ppnP2/Pr7/9/4A4/3AK1B2 b - - 0 1"


def random_game(seed: int, plies: int = 40, fen: str = STARTING_FEN, **headers) -> Game:
    rng = random.Random(seed)
    board = Board(fen)
    for _ in range(plies):
        moves = board.legal_moves()
        if not moves or board.outcome():
            break
        board.push(rng.choice(sorted(moves, key=Move.iccs)))
    outcome = board.outcome()
    result = outcome.result() if outcome else ["1-0", "0-1", "1/2-1/2", "*"][seed % 4]
    return Game(headers={"Event": f"game {seed}", **headers}, moves=list(board.move_stack),
                root_fen=board.root_fen(), result=result)


def write(path: Path, games, notation="iccs", encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_games(games, path, notation, encoding)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    """A small corpus in several notations and encodings with every special case once."""
    root = tmp_path_factory.mktemp("src") / "records"
    g = [random_game(s) for s in range(12)]
    write(root / "a_iccs.pgn", g[0:3])                                      # 3 games in one file
    write(root / "b_simplified.pgn", g[3:5], "chinese", "gb18030")
    write(root / "c_traditional.pgn", g[5:6], "chinese", "big5")
    wxf = io.BytesIO()
    write_games(g[6:8], wxf, "wxf")
    (root / "d_wxf_bom.pgn").write_bytes(b"\xef\xbb\xbf" + wxf.getvalue())
    write(root / "e_duplicate.pgn", [g[1]], "chinese", "big5")                 # exact copy of a game in a_iccs
    truncated = Game(dict(g[3].headers), g[3].moves[:15], g[3].root_fen, "*")
    write(root / "f_truncated.pgn", [truncated], "wxf")                        # prefix copy of b_simplified #1
    (root / "g_illegal.pgn").write_text('[Event "bad"]\n\n1. h2e2 h9g7 2. e2e9 a9a8 1-0\n', encoding="utf-8")
    (root / "h_empty.pgn").write_text('[Event "empty"]\n[Result "*"]\n', encoding="utf-8")
    write(root / "電腦對局" / "i_computer.pgn", g[8:10])
    write(root / "j_puzzle.pgn", [random_game(99, 10, PUZZLE_FEN)], "chinese", "big5")
    (root / "notes.txt").write_text("not a record")
    return root


@pytest.fixture(scope="module")
def archives(fixture_dir):
    base = fixture_dir.parent
    tgz = base / "records.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(fixture_dir, arcname="records")
    zpath = base / "records.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(fixture_dir.rglob("*")):
            if p.is_file():
                z.write(p, "records/" + p.relative_to(fixture_dir).as_posix())
    return tgz, zpath


def run(sources, out, **kw):
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    kw.setdefault("warn", lambda m: None)
    return prepare([str(s) for s in sources], out, **kw)


def read_split(out: Path, tokenizer: str, split: str, base: Path | None = None):
    base = base or out
    tokens = np.fromfile(base / tokenizer / f"{split}.bin", dtype=np.uint16)
    starts = np.load(base / tokenizer / f"{split}.idx.npy")
    ends = list(starts[1:]) + [len(tokens)]
    tok = get_tokenizer(tokenizer)
    return [tok.decode_game([int(t) for t in tokens[s:e]]) for s, e in zip(starts, ends)]


def test_counts(fixture_dir, tmp_path):
    r = run([fixture_dir], tmp_path / "ds", val_frac=0.3, test_frac=0.3)
    s = r.summary
    assert s["files"]["read"] == 10 and s["files"]["skipped_not_pgn"] == 1
    assert s["files"]["without_moves"] == 1 and s["files"]["with_rejected_games"] == 1
    assert s["games_read"] == 15
    assert s["games_rejected"] == 1 and s["rejected"]["by_reason"] == {"illegal_move": 1}
    ex = s["rejected"]["examples"][0]
    assert ex["file"].endswith("g_illegal.pgn") and ex["game"] == 1 and ex["ply"] == 3
    assert s["empty_games"] == 1
    assert s["games_accepted"] == 13
    assert s["duplicates_detail"] == {"exact": 1, "prefix": 1} and s["duplicates"] == 2
    assert s["unique_games"] == 11
    assert s["custom_fen_games"] == 1
    assert s["computer"]["games"] == 2
    main_games = sum(c["games"] for c in s["splits"].values())
    assert main_games == 11 - 2 - 1
    assert sum(c["custom_fen_games"] for c in s["splits"].values()) == 1
    assert s["plies"] == sum(c["plies"] + c["custom_fen_plies"] for c in s["splits"].values()) + s["computer"]["plies"]
    meta = load_meta(r.out)
    assert meta["counts"]["unique_games"] == 11 and meta["attribution"] == ""
    assert meta["tokenizers"]["move"]["tokens"] == get_tokenizer("move").tokens
    assert len(meta["sources"]) == 1 and len(meta["sources"][0]["sha256"]) == 64
    assert json.loads((r.out / "summary.json").read_text(encoding="utf-8")) == s


def test_archives_give_the_same_dataset(fixture_dir, archives, tmp_path):
    ref = run([fixture_dir], tmp_path / "dir")
    for archive in archives:
        r = run([archive], tmp_path / archive.name.replace(".", "_"))
        for key in ("games_read", "games_rejected", "empty_games", "duplicates", "unique_games", "plies", "splits",
                    "computer"):
            assert r.summary[key] == ref.summary[key], (archive, key)
        for name in ("move", "char"):
            for split in corpus.SPLITS:
                assert (r.out / name / f"{split}.bin").read_bytes() == (ref.out / name / f"{split}.bin").read_bytes()
        assert r.meta["sources"][0]["sha256"] == corpus.hashlib.sha256(archive.read_bytes()).hexdigest()


def test_tokens_decode_back_to_the_split_pgn(fixture_dir, tmp_path):
    r = run([fixture_dir], tmp_path / "ds", val_frac=0.3, test_frac=0.3)
    seen = 0
    for base in (r.out, r.out / "computer"):
        for split in corpus.SPLITS:
            games = list(read_games(base / f"{split}.pgn"))
            assert all(isinstance(g, Game) and g.standard_start for g in games)
            for name in ("move", "char"):
                decoded = read_split(r.out, name, split, base)
                assert decoded == [(g.iccs(), g.result) for g in games]
            assert all(g.headers.get("SourceFile") for g in games)
            seen += len(games)
    assert seen == 10
    puzzles = [g for split in corpus.SPLITS if (r.out / "custom_fen" / f"{split}.pgn").exists()
               for g in read_games(r.out / "custom_fen" / f"{split}.pgn")]
    assert len(puzzles) == 1 and puzzles[0].root_fen == PUZZLE_FEN


def test_split_is_disjoint_deterministic_and_keeps_copies_together(tmp_path):
    src = tmp_path / "src"
    games = [random_game(s, 30) for s in range(120)]
    write(src / "all.pgn", games)
    # copies and truncated copies of every 3rd game in other files
    write(src / "copies.pgn", [games[i] for i in range(0, 120, 3)], "wxf")
    write(src / "prefixes.pgn", [Game(dict(games[i].headers), games[i].moves[:12], STARTING_FEN, "*")
                                 for i in range(0, 120, 3)], "chinese", "big5")
    a = run([src], tmp_path / "a", val_frac=0.2, test_frac=0.2, seed=7)
    b = run([src], tmp_path / "b", val_frac=0.2, test_frac=0.2, seed=7)
    c = run([src], tmp_path / "c", val_frac=0.2, test_frac=0.2, seed=8)
    assert a.summary["duplicates_detail"] == {"exact": 40, "prefix": 40}
    sides = {}
    for split in corpus.SPLITS:
        for moves, _ in read_split(a.out, "move", split):
            sides.setdefault(tuple(moves), set()).add(split)
        assert (a.out / "move" / f"{split}.bin").read_bytes() == (b.out / "move" / f"{split}.bin").read_bytes()
        assert (a.out / f"{split}.pgn").read_bytes() == (b.out / f"{split}.pgn").read_bytes()
    assert len(sides) == 120 and all(len(s) == 1 for s in sides.values())
    # no kept game is a prefix of a game in another split
    by_split = {sp: [m for m, s in sides.items() if sp in s] for sp in corpus.SPLITS}
    for sp, kept in by_split.items():
        others = [m for o, ms in by_split.items() if o != sp for m in ms]
        for m in kept:
            assert not any(o[:len(m)] == m for o in others)
    assert all(by_split[sp] for sp in corpus.SPLITS)
    assert [len(by_split[sp]) for sp in corpus.SPLITS] != [
        sum(1 for _ in read_split(c.out, "move", sp)) for sp in corpus.SPLITS] or \
        (a.out / "move" / "train.bin").read_bytes() != (c.out / "move" / "train.bin").read_bytes()
    # the split of a game depends on the game only
    assert split_of("", "h2e2h9g7", 7, 0.2, 0.2) == split_of("", "h2e2h9g7", 7, 0.2, 0.2)


def test_limit_reads_the_first_files_only(fixture_dir, tmp_path):
    r = run([fixture_dir], tmp_path / "ds", limit=3)
    assert r.summary["files"]["read"] == 3 and r.summary["games_read"] == 6      # a_iccs 3, b 2, c 1
    assert r.meta["prepare_args"]["limit"] == 3


def test_workers_give_the_same_result(fixture_dir, tmp_path):
    a = run([fixture_dir], tmp_path / "a", workers=0)
    b = run([fixture_dir], tmp_path / "b", workers=2)
    assert a.summary["splits"] == b.summary["splits"]
    assert (a.out / "char" / "train.bin").read_bytes() == (b.out / "char" / "train.bin").read_bytes()


def test_failure_leaves_no_dataset(fixture_dir, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(corpus, "_write_json_synced", boom)
    with pytest.raises(RuntimeError):
        run([fixture_dir], tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="no such dataset"):
        load_meta(tmp_path / "ds")


def test_load_meta_rejects_incomplete_or_mismatched(fixture_dir, tmp_path):
    r = run([fixture_dir], tmp_path / "ds")
    load_meta(r.out)
    meta_path = r.out / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    (r.out / "move" / "train.bin").write_bytes(b"\0\0")
    with pytest.raises(DatasetError, match="train.bin"):
        load_meta(r.out)
    bad = dict(meta, tokenizers={**meta["tokenizers"], "move": {"tokens": ["x"]}})
    meta_path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(DatasetError, match="vocabulary"):
        load_meta(r.out)
    meta_path.write_text(json.dumps(dict(meta, format_version=99)), encoding="utf-8")
    with pytest.raises(DatasetError, match="format_version"):
        load_meta(r.out)
    meta_path.unlink()
    with pytest.raises(DatasetError, match="meta.json"):
        load_meta(r.out)


def test_bad_inputs(fixture_dir, archives, tmp_path):
    warnings = []
    with pytest.raises(DatasetError, match="no such file"):
        prepare([str(tmp_path / "missing")], tmp_path / "x", workers=0, progress=False, warn=warnings.append)
    # a missing path beside a good source: warned about, the rest is processed
    r = prepare([str(tmp_path / "missing"), str(fixture_dir)], tmp_path / "y", workers=0, progress=False,
                warn=warnings.append)
    assert r.summary["unique_games"] == 11 and any("missing" in w for w in warnings)
    assert r.meta["sources"][0]["error"]
    # a truncated (corrupt) archive: a one-line warning, the other source still read
    tgz = archives[0]
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    warnings.clear()
    r = prepare([str(broken), str(fixture_dir)], tmp_path / "z", workers=0, progress=False, warn=warnings.append)
    assert any("corrupt archive" in w and "\n" not in w for w in warnings)
    assert r.summary["unique_games"] == 11
    # an existing output without --force
    with pytest.raises(DatasetError, match="already exists"):
        prepare([str(fixture_dir)], r.out, workers=0, progress=False)
    r2 = prepare([str(fixture_dir)], r.out, workers=0, progress=False, force=True)
    assert load_meta(r2.out)["counts"]["unique_games"] == 11
    with pytest.raises(DatasetError):
        prepare([str(fixture_dir)], tmp_path / "w", val_frac=0.6, test_frac=0.5, progress=False)


def test_wrong_encoding_rejects_the_game_with_a_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = io.BytesIO()
    write_games([random_game(1)], good, "chinese", "big5")
    (src / "mixed.pgn").write_bytes(good.getvalue() + b'\n[Event "x"]\n\n1. \xff\xfe\xff h9g7 *\n')
    r = run([src], tmp_path / "ds")
    assert r.summary["rejected"]["by_reason"] == {"decode": 1}
    assert r.summary["unique_games"] == 1


def test_cli(fixture_dir, tmp_path, capsys):
    out = tmp_path / "ds"
    assert cli.main(["prepare", str(fixture_dir), "--out", str(out), "--workers", "0", "--no-progress",
                     "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "11 unique games" in printed and "train:" in printed
    assert load_meta(out)["prepare_args"]["seed"] == 3
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not CCPD.exists(), reason="../shared/data/ccpd.tar.xz not present")
def test_ccpd_whole_archive(tmp_path):
    """The whole real archive, streamed (about 40 s on two idle cores): every PGN file is accounted for, every game
    is converted to legal moves or rejected with a reason, fewer than 0.1% of the files holding moves are
    rejected, and the token files decode back to the split PGNs."""
    with tarfile.open(CCPD, "r|xz") as tar:
        n_pgn = sum(1 for m in tar if m.isfile() and m.name.endswith(".pgn"))
    r = prepare([str(CCPD)], tmp_path / "ccpd", workers=2, progress=False, warn=lambda m: None, examples=1000)
    s = r.summary
    f = s["files"]
    assert f["read"] == n_pgn > 50_000 and f["unreadable"] == 0 and s["source_errors"] == []
    assert f["with_moves"] + f["without_moves"] == f["read"]
    assert s["games_read"] == n_pgn                 # one game per file in CCPD
    assert f["with_rejected_games"] < 0.001 * f["with_moves"]
    assert len(s["rejected"]["examples"]) == s["games_rejected"]
    for ex in s["rejected"]["examples"]:
        assert ex["file"] and ex["game"] == 1 and ex["reason"] in ("bad_fen", "illegal_move")
        assert (ex["ply"] is None) == (ex["reason"] == "bad_fen")
    assert s["unique_games"] + s["duplicates"] == s["games_accepted"]
    assert s["computer"]["games"] > 100
    assert "Chinese Chess Practical Dataset" in r.meta["attribution"]
    meta = load_meta(r.out)
    for split in corpus.SPLITS:
        decoded = read_split(r.out, "move", split)
        assert len(decoded) == meta["splits"][split]["games"] > 1000
    val = [g for g in read_games(r.out / "val.pgn")]
    assert [(g.iccs(), g.result) for g in val] == read_split(r.out, "char", "val")


def test_unreadable_file_is_warned_about_and_skipped(fixture_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "ok.pgn", [random_game(1)])
    (src / "gone.pgn").symlink_to(tmp_path / "nowhere.pgn")        # listed, but cannot be opened
    (src / "binary.pgn").write_bytes(b"\x00\x01\x02\x03")
    warnings = []
    r = prepare([str(src)], tmp_path / "ds", workers=0, progress=False, warn=warnings.append)
    assert r.summary["files"]["unreadable"] == 2 and r.summary["unique_games"] == 1
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any("binary.pgn" in w and "not a PGN text file" in w for w in warnings)
    assert any("gone.pgn" in w and "cannot read" in w for w in warnings)


def test_custom_fen_copies_with_other_move_counters_are_duplicates(tmp_path):
    src = tmp_path / "src"
    g = random_game(4, 12, PUZZLE_FEN)
    copy = Game(dict(g.headers), g.moves, PUZZLE_FEN.replace(" 0 1", " 3 40"), g.result)
    write(src / "a.pgn", [g])
    write(src / "b.pgn", [copy], "chinese", "gb18030")
    r = run([src], tmp_path / "ds")
    assert r.summary["duplicates"] == 1 and r.summary["custom_fen_games"] == 1
    assert sum(c["games"] for c in r.summary["splits"].values()) == 0      # no token games from a custom FEN
