import hashlib
import io
import json
import os
import random
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from random_games import random_board

from xiangqi_gpt import cli
import xiangqi_gpt.data.prepare as build
from xiangqi_gpt.records import sources
from xiangqi_gpt.rules.board import STARTING_FEN
from xiangqi_gpt.data.prepare import load_meta, prepare, split_of
from xiangqi_gpt.errors import DatasetError
from xiangqi_gpt.records.pgn import Game, read_games, write_games
from xiangqi_gpt.data.tokenizer import get_tokenizer

CCPD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ccpd.tar.xz"
PUZZLE_FEN = "2C1ka3/4a4/9/R8/9/3ppnP2/Pr7/9/4A4/3AK1B2 b - - 0 1"


def random_game(seed: int, plies: int = 40, fen: str = STARTING_FEN, **headers) -> Game:
    board = random_board(random.Random(seed), plies, fen)
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
            for split in build.SPLITS:
                assert (r.out / name / f"{split}.bin").read_bytes() == (ref.out / name / f"{split}.bin").read_bytes()
        assert r.meta["sources"][0]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_tokens_decode_back_to_the_split_pgn(fixture_dir, tmp_path):
    r = run([fixture_dir], tmp_path / "ds", val_frac=0.3, test_frac=0.3)
    seen = 0
    for base in (r.out, r.out / "computer"):
        for split in build.SPLITS:
            games = list(read_games(base / f"{split}.pgn"))
            assert all(isinstance(g, Game) and g.standard_start for g in games)
            for name in ("move", "char"):
                decoded = read_split(r.out, name, split, base)
                assert decoded == [(g.iccs(), g.result) for g in games]
            assert all(g.headers.get("SourceFile") for g in games)
            seen += len(games)
    assert seen == 10
    puzzles = [g for split in build.SPLITS if (r.out / "custom_fen" / f"{split}.pgn").exists()
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
    for split in build.SPLITS:
        for moves, _ in read_split(a.out, "move", split):
            sides.setdefault(tuple(moves), set()).add(split)
        assert (a.out / "move" / f"{split}.bin").read_bytes() == (b.out / "move" / f"{split}.bin").read_bytes()
        assert (a.out / f"{split}.pgn").read_bytes() == (b.out / f"{split}.pgn").read_bytes()
    assert len(sides) == 120 and all(len(s) == 1 for s in sides.values())
    # no kept game is a prefix of a game in another split
    by_split = {sp: [m for m, s in sides.items() if sp in s] for sp in build.SPLITS}
    for sp, kept in by_split.items():
        others = [m for o, ms in by_split.items() if o != sp for m in ms]
        for m in kept:
            assert not any(o[:len(m)] == m for o in others)
    assert all(by_split[sp] for sp in build.SPLITS)
    assert [len(by_split[sp]) for sp in build.SPLITS] != [
        sum(1 for _ in read_split(c.out, "move", sp)) for sp in build.SPLITS] or \
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

    monkeypatch.setattr(build, "_write_json_synced", boom)
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
        # bad_result: a record whose result the final position contradicts (e.g. 1/2-1/2 with Black checkmated)
        assert ex["file"] and ex["game"] == 1 and ex["reason"] in ("bad_fen", "illegal_move", "bad_result")
        assert (ex["ply"] is None) == (ex["reason"] == "bad_fen")
    assert s["unique_games"] + s["duplicates"] == s["games_accepted"]
    assert s["computer"]["games"] > 100
    assert "Chinese Chess Practical Dataset" in r.meta["attribution"]
    meta = load_meta(r.out)
    for split in build.SPLITS:
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


# ------------------------------------------------------------------------------------------------------------------
# Several sources: the engine subset, compressed single files (issue 10 §2)
# ------------------------------------------------------------------------------------------------------------------

ENGINE_TAGS = {"Game": "Chinese Chess", "Event": "Fairy-Stockfish self-play", "Red": "Fairy-Stockfish Skill 3 depth 2",
               "Black": "Fairy-Stockfish Skill 3 depth 2", "Termination": "checkmate", "Opening": "first 4 plies"}


@pytest.fixture(scope="module")
def engine_pgn(tmp_path_factory) -> Path:
    """An ICCS PGN of 20 engine-like games (one of them twice), plain."""
    path = tmp_path_factory.mktemp("engine") / "engine.pgn"
    games = [random_game(1000 + s, 30 + s, **ENGINE_TAGS) for s in range(20)]
    write(path, games + [games[3]])
    return path


def compressed_copy(src: Path, dest: Path) -> Path:
    import bz2
    import gzip
    import lzma

    opener = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open, ".dat": lzma.open}[dest.suffix]
    with opener(dest, "wb") as f:
        f.write(src.read_bytes())
    return dest


def test_engine_subset_is_separate_deduplicated_split_and_validated(fixture_dir, engine_pgn, tmp_path):
    xz = compressed_copy(engine_pgn, tmp_path / "engine.pgn.xz")
    human_only = run([fixture_dir], tmp_path / "human", val_frac=0.2, test_frac=0.2)
    r = run([fixture_dir], tmp_path / "mix", engine_sources=[str(xz)], val_frac=0.2, test_frac=0.2)
    s = r.summary
    # the human subsets are exactly what they are without engine games
    assert s["splits"] == human_only.summary["splits"] and s["computer"] == human_only.summary["computer"]
    for k in build.COUNT_KEYS:
        assert s[k] == human_only.summary[k]
    e = s["engine"]
    assert (e["games_read"], e["duplicates"], e["unique_games"]) == (21, 1, 20)
    assert e["games"] == 20 and sum(c["games"] for c in e["splits"].values()) == 20
    # the same layout as the main subset, recorded in meta.json and validated by load_meta
    meta = load_meta(r.out, subset="engine")
    assert build.subset_names(meta) == ["main", "computer", "engine"]
    assert meta["engine"]["path"] == "engine" and meta["engine"]["counts"]["unique_games"] == 20
    assert [src["subset"] for src in meta["sources"]] == ["human", "engine"]
    assert meta["sources"][1]["kind"] == "compressed"
    base = r.out / "engine"
    engine_games = {tuple(g.iccs()) for g in read_games(engine_pgn)}
    decoded = []
    for split in build.SPLITS:
        assert (base / "move" / f"{split}.bin").is_file() and (base / "char" / f"{split}.idx.npy").is_file()
        games = read_split(r.out, "move", split, base)
        assert len(games) == meta["engine"]["splits"][split]["games"]
        assert games == read_split(r.out, "char", split, base)
        pgn = [(g.iccs(), g.result) for g in read_games(base / f"{split}.pgn")]
        assert pgn == games
        decoded += games
    assert {tuple(m) for m, _ in decoded} == engine_games
    # a human-only dataset has no engine subset, and says so
    with pytest.raises(DatasetError, match="no 'engine' subset"):
        load_meta(human_only.out, subset="engine")
    assert build.subset_names(load_meta(human_only.out)) == ["main", "computer"]


def test_engine_games_alone_and_the_cli(engine_pgn, tmp_path, capsys):
    out = tmp_path / "ds"
    assert cli.main(["prepare", "--engine", str(engine_pgn), "--out", str(out), "--workers", "0",
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "engine: 21 games read" in printed and "20 unique games" in printed
    assert load_meta(out)["splits"]["train"]["games"] == 0
    assert load_meta(out, subset="engine")["engine"]["counts"]["unique_games"] == 20
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", "--out", str(tmp_path / "none")])
    assert e.value.code == 2 and capsys.readouterr().err.startswith("error: give at least one SOURCE")


@pytest.mark.parametrize("name", ["g.pgn.xz", "g.pgn.gz", "g.pgn.bz2", "games.dat"])
def test_compressed_single_files_are_read_directly(engine_pgn, tmp_path, name):
    src = compressed_copy(engine_pgn, tmp_path / name)           # games.dat: xz without a telling name
    plain = run([engine_pgn], tmp_path / "plain")
    r = run([src], tmp_path / "ds")
    assert r.summary["unique_games"] == plain.summary["unique_games"] == 20
    assert r.summary["splits"] == plain.summary["splits"]
    assert r.meta["sources"][0]["kind"] == "compressed"


def test_compressed_files_in_a_folder_are_read(engine_pgn, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    compressed_copy(engine_pgn, folder / "a.pgn.gz")
    write(folder / "b.pgn", [random_game(7)])
    r = run([folder], tmp_path / "ds")
    assert r.summary["files"]["read"] == 2 and r.summary["unique_games"] == 21


def test_truncated_compressed_file_keeps_the_complete_games_only(engine_pgn, tmp_path):
    full = compressed_copy(engine_pgn, tmp_path / "full.pgn.gz")
    data = full.read_bytes()
    cut = tmp_path / "cut.pgn.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    warnings = []
    r = run([cut], tmp_path / "ds", warn=warnings.append)
    assert any("corrupt compressed file" in w and "\n" not in w for w in warnings)
    kept = r.summary["unique_games"]
    assert 0 < kept < 20 and r.summary["games_rejected"] == 0
    originals = {tuple(g.iccs()): g.result for g in read_games(engine_pgn)}
    for split in build.SPLITS:
        for g in read_games(r.out / f"{split}.pgn"):
            assert originals[tuple(g.iccs())] == g.result        # whole games only, never a shortened one


def test_out_parent_folders_are_created(fixture_dir, tmp_path):
    r = run([fixture_dir], tmp_path / "fresh" / "clone" / "data" / "ccpd")
    assert load_meta(r.out)["counts"]["unique_games"] == 11


# ------------------------------------------------------------------------------------------------------------------
# Issue 12: hostile inputs (defects 2-5)
# ------------------------------------------------------------------------------------------------------------------

def _patch_zip_member(path: Path, member: str, method: int | None = None, flags: int | None = None) -> None:
    """Rewrite one member's compression method and/or flag bits in both its local and central headers."""
    import struct

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    local = info.header_offset
    central = data.find(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(member.encode())] != member.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        struct.pack_into("<H", data, central + 10, method)
    if flags is not None:
        struct.pack_into("<H", data, local + 6, flags)
        struct.pack_into("<H", data, central + 8, flags)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("problem", ["method", "encrypted"])
def test_zip_member_that_cannot_be_unpacked_is_skipped_with_a_warning(tmp_path, problem):
    zpath = tmp_path / "games.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for i in range(3):
            buf = io.BytesIO()
            write_games([random_game(i)], buf)
            z.writestr(f"g{i}.pgn", buf.getvalue())
    if problem == "method":
        _patch_zip_member(zpath, "g1.pgn", method=99)
    else:
        _patch_zip_member(zpath, "g1.pgn", flags=0x1)
    warnings = []
    r = run([zpath], tmp_path / "ds", warn=warnings.append)
    assert r.summary["unique_games"] == 2 and r.summary["files"]["unreadable"] == 1
    expected = "unsupported compression method 99" if problem == "method" else "encrypted"
    assert [w for w in warnings if "g1.pgn" in w] == [f"{zpath}:g1.pgn: {expected}; skipped"]


BIG5_NAME = "對局".encode("big5") + b".pgn"


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses file names that are not UTF-8")
def test_file_names_that_are_not_utf8_never_raise(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), BIG5_NAME), "wb") as f:
        write_games([random_game(21)], f)
    r = run([folder], tmp_path / "ds", val_frac=0, test_frac=0)
    (game,) = read_games(r.out / "train.pgn")
    assert game.headers["SourceFile"] == str(folder / "對局.pgn")      # the Big5 name, decoded
    # a tar member with such a name, whose game has no SourceFile tag: fails only when the PGN is written
    tpath = tmp_path / "games.tar.gz"
    with tarfile.open(tpath, "w:gz", encoding="utf-8", errors="surrogateescape") as tar:
        buf = io.BytesIO()
        write_games([random_game(22)], buf)
        info = tarfile.TarInfo(os.fsdecode(b"records/" + BIG5_NAME))
        info.size = len(buf.getvalue())
        tar.addfile(info, io.BytesIO(buf.getvalue()))
    r = run([tpath], tmp_path / "ds2", val_frac=0, test_frac=0)
    (game,) = read_games(r.out / "train.pgn")
    assert game.headers["SourceFile"] == f"{tpath}:records/對局.pgn"
    # an undecodable name: escaped, still no error
    assert sources.display_name(os.fsdecode(b"x\xff\xfe\xff.pgn")).endswith(".pgn")
    sources.display_name(os.fsdecode(b"x\xff\xfe\xff.pgn")).encode("utf-8")


def _no_parsing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("parsing started before the options were checked")

    monkeypatch.setattr(sources.SourceReader, "__iter__", fail)


def test_bad_limit_and_out_are_rejected_before_any_parsing(fixture_dir, tmp_path, monkeypatch, capsys):
    _no_parsing(monkeypatch)
    a_file = tmp_path / "some.pgn"
    a_file.write_text("x")
    cases = [(["--limit", "-1"], "--limit must be a positive"), (["--limit", "0"], "--limit must be a positive"),
             (["--out", str(a_file / "out")], "is a file, not a folder"),
             (["--out", str(a_file)], "already exists")]
    if Path("/proc/self").is_dir():
        cases.append((["--out", "/proc/x"], "cannot write in /proc"))
    for extra, message in cases:
        argv = ["prepare", str(fixture_dir), "--workers", "0", "--no-progress"]
        argv += extra if "--out" in extra else extra + ["--out", str(tmp_path / "ds")]
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    with pytest.raises(DatasetError, match="is a file"):
        prepare([str(fixture_dir)], a_file, force=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some.pgn"]      # no temporary folder left behind


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_are_skipped_in_folders_and_refused_as_sources(tmp_path):
    import threading

    folder = tmp_path / "src"
    folder.mkdir()
    write(folder / "a.pgn", [random_game(1)])
    fifo = folder / "x.pgn"
    os.mkfifo(fifo)

    def unblock():          # a safety valve: were the FIFO opened for reading, this ends the wait (EOF)
        time.sleep(30)
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    threading.Thread(target=unblock, daemon=True).start()
    warnings = []
    r = run([folder], tmp_path / "ds", warn=warnings.append)
    assert r.summary["unique_games"] == 1 and r.summary["files"]["skipped_not_regular"] == 1
    assert warnings == [f"{fifo}: not a regular file (a FIFO); skipped"]
    with pytest.raises(DatasetError, match="not a regular file or folder \\(a FIFO\\)"):
        run([fifo], tmp_path / "ds2")
    with pytest.raises(DatasetError, match="FIFO"):
        run([folder], tmp_path / "ds3", engine_sources=[str(fifo)])


def test_legal_sets_hook(fixture_dir, engine_pgn, tmp_path, monkeypatch):
    import importlib.machinery
    import types

    calls = []
    fake = types.ModuleType("xiangqi_gpt.data.legal")
    fake.__spec__ = importlib.machinery.ModuleSpec("xiangqi_gpt.data.legal", None)
    fake.write_legal_sets = lambda folder: calls.append(Path(folder))
    monkeypatch.setitem(sys.modules, "xiangqi_gpt.data.legal", fake)
    r = run([fixture_dir], tmp_path / "ds", engine_sources=[str(engine_pgn)], legal_sets=True)
    assert calls == [r.out, r.out / "engine"] and load_meta(r.out, subset="engine")


# ------------------------------------------------------------------------------------------------------------------
# Ctrl-C (issue 10 §2): SIGINT to the whole process group, as a terminal sends it
# ------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_source(tmp_path_factory) -> Path:
    """About 3,000 games in 100 files: seconds of parsing, so that Ctrl-C arrives in the middle."""
    root = tmp_path_factory.mktemp("big")
    games = [random_game(500 + s, 60) for s in range(30)]
    buf = io.BytesIO()
    write_games(games, buf)
    for i in range(100):
        (root / f"f{i:03d}.pgn").write_bytes(buf.getvalue())
    return root


@pytest.mark.parametrize("inherited_ignore", [False, True])
def test_ctrl_c_stops_prepare_and_leaves_nothing(big_source, tmp_path, inherited_ignore):
    """``inherited_ignore``: started with SIGINT ignored, as a non-interactive shell starts a background job (the
    issue's reproduction): Ctrl-C must still stop it."""
    import signal
    import subprocess

    out = tmp_path / "data" / "ds"
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if inherited_ignore else None
    proc = subprocess.Popen([sys.executable, "-m", "xiangqi_gpt", "prepare", str(big_source), "--out", str(out),
                             "--workers", "2", "--no-progress"], cwd=Path(__file__).resolve().parents[1],
                            start_new_session=True, preexec_fn=preexec, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300            # a guard against hanging, not a timing assertion
    while not list(out.parent.glob("ds.tmp-*")):       # the temporary folder appears before reading starts
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "prepare never started"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        stdout, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("prepare still running 300 s after Ctrl-C")
    # 130, or death by SIGINT: a shell reports both as 130 (stopped by Ctrl-C). One fresh-clone CI run saw the
    # second after the message below had been printed and the folder removed (not reproduced in 160 local runs).
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, stdout, err)
    assert err == f"prepare interrupted: nothing was written ({out} is unchanged)\n"
    assert stdout == "" and list(out.parent.iterdir()) == []


def test_concatenated_streams_and_bytes_after_the_end(engine_pgn, tmp_path):
    import gzip
    import lzma

    data = engine_pgn.read_bytes()
    cut = data.index(b"\n\n[", len(data) // 2) + 2
    (tmp_path / "two.pgn.gz").write_bytes(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
    (tmp_path / "padded.pgn.xz").write_bytes(lzma.compress(data) + b"\0" * 8)
    (tmp_path / "junk.pgn.xz").write_bytes(lzma.compress(data) + b"junk")
    for name, expected in (("two.pgn.gz", []), ("padded.pgn.xz", []),
                           ("junk.pgn.xz", [f"{tmp_path / 'junk.pgn.xz'}: 4 bytes after the end of the compressed "
                                            "data are ignored"])):
        warnings = []
        r = run([tmp_path / name], tmp_path / f"ds-{name}", warn=warnings.append)
        assert r.summary["games_read"] == 21 and warnings == expected


@pytest.fixture
def default_sigint():
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_guard_holds_the_interrupt_to_the_end_of_the_block(default_sigint):
    import signal

    from xiangqi_gpt.console import CtrlCGuard

    guard = CtrlCGuard()
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with guard:
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("finished")
    assert steps == ["finished"]
    guard.close()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_the_temporary_folder_is_made_or_the_dataset_renamed(fixture_dir, tmp_path, monkeypatch,
                                                                          default_sigint):
    import signal

    make, commit = build._output_dir, build._commit

    def make_then_ctrl_c(*args):
        tmp = make(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return tmp

    monkeypatch.setattr(build, "_output_dir", make_then_ctrl_c)
    with pytest.raises(build.PrepareInterrupted) as e:
        run([fixture_dir], tmp_path / "a")
    assert not e.value.committed and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(build, "_output_dir", make)

    def commit_with_ctrl_c(tmp, out):
        os.kill(os.getpid(), signal.SIGINT)
        commit(tmp, out)

    monkeypatch.setattr(build, "_commit", commit_with_ctrl_c)
    with pytest.raises(build.PrepareInterrupted) as e:
        run([fixture_dir], tmp_path / "b")
    assert e.value.committed and [p.name for p in tmp_path.iterdir()] == ["b"]
    assert load_meta(tmp_path / "b")["counts"]["unique_games"] == 11
