"""Hostile input, round two: a regression test for each defect of issue 19 (but the engine's, item 11).

Each gives a one-line error of the project's own type, a game rejected with its reason, or a correct import.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import random
import sys
import tarfile
import time
import zipfile

import pytest

import xiangqi_gpt.data.prepare as build
from xiangqi_gpt.rules.board import Board
from xiangqi_gpt.data.prepare import load_meta, prepare
from xiangqi_gpt.records.sources import SourceReader
from xiangqi_gpt.errors import DatasetError, PgnError
from xiangqi_gpt.records.pgn import Game, detect_encoding, read_games, write_game

from fuzz_targets import random_game

QUIET = dict(workers=1, progress=False, warn=lambda message: None)


def items_of(data: bytes, **kw) -> list:
    return list(read_games(data, name="t.pgn", **kw))


def games(seed: int = 1, n: int = 3, plies: int = 20) -> list[Game]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        game = random_game(rng, plies, False)
        if len(game.moves) == plies and game.result != "*":
            out.append(game)
    return out


def pgn_of(gs: list[Game], notation: str = "iccs") -> str:
    return "".join(write_game(g, notation) for g in gs)


def read_back(items) -> list[tuple]:
    assert all(isinstance(i, Game) for i in items), [str(i) for i in items if not isinstance(i, Game)]
    return [(i.iccs(), i.result) for i in items]


def expected(gs: list[Game]) -> list[tuple]:
    return [(g.iccs(), g.result) for g in gs]


# ---- 1. prepare --force never deletes what it did not write -------------------------------------------------

def _source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "games.pgn").write_text(pgn_of(games()), encoding="utf-8")
    return src


def test_force_refuses_an_out_that_holds_the_sources(tmp_path):
    src = _source(tmp_path)
    (src / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="holds the source|is the source") as e:
        prepare([str(src / "games.pgn")], src, force=True, **QUIET)
    assert "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="is the source"):
        prepare([str(src)], src, force=True, **QUIET)
    assert (src / "games.pgn").exists() and (src / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]        # no .tmp- or .old- left


def test_force_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    src = _source(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a dataset written by prepare"):
        prepare([str(src)], out, force=True, **QUIET)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "meta.json").write_text('{"format_version": 1}')             # not one prepare wrote
    with pytest.raises(DatasetError, match="not a dataset written by prepare"):
        prepare([str(src)], out, force=True, **QUIET)
    assert (out / "notes.txt").exists()


def test_force_replaces_its_own_dataset_but_not_one_with_foreign_files(tmp_path):
    src = _source(tmp_path)
    out = tmp_path / "out"
    prepare([str(src)], out, **QUIET)
    prepare([str(src)], out, force=True, **QUIET)                        # its own: replaced
    load_meta(out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"holds files that prepare did not write \(notes.txt\)"):
        prepare([str(src)], out, force=True, **QUIET)
    assert (out / "notes.txt").read_text() == "mine"


def test_out_dot_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    src = _source(tmp_path)
    monkeypatch.chdir(src)
    with pytest.raises(DatasetError, match="holds the source"):
        prepare(["games.pgn"], ".", force=True, **QUIET)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(DatasetError, match="not . or .."):
        prepare([str(src)], ".", force=True, **QUIET)
    assert list(work.iterdir()) == [] and sorted(p.name for p in src.iterdir()) == ["games.pgn"]


def test_a_failing_rename_is_one_line_and_keeps_the_old_dataset(tmp_path, monkeypatch):
    src = _source(tmp_path)
    out = tmp_path / "out"
    prepare([str(src)], out, **QUIET)
    real_rename = build.os.rename

    def rename(a, b):
        if str(a).startswith(str(tmp_path / "out.tmp-")):
            raise OSError(16, "Device or resource busy")
        return real_rename(a, b)

    monkeypatch.setattr(build.os, "rename", rename)
    with pytest.raises(DatasetError, match="cannot move the finished dataset into place"):
        prepare([str(src)], out, force=True, **QUIET)
    load_meta(out)                                                       # the old dataset is back
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name or ".tmp-" in p.name]


# ---- 2. movetext on a tag line ------------------------------------------------------------------------------

def test_movetext_on_the_tag_line_is_read():
    (game,) = games(n=1)
    moves = " ".join(game.iccs())
    (item,) = items_of(f'[Event "x"]\n[Result "{game.result}"] {moves} {game.result}\n'.encode())
    assert read_back([item]) == expected([game]) and item.headers == {"Event": "x", "Result": game.result}


# ---- 3. a tag the pattern does not match --------------------------------------------------------------------

FEN = "4k4/9/9/9/9/9/9/9/4A4/3AK4 w - - 0 1"


@pytest.mark.parametrize("tag", ['[FEN \u201c%s\u201d]', '[FEN "%s]', '[FEN "%s"', "[FEN '%s']"])
def test_a_malformed_fen_tag_rejects_the_game(tag):
    data = ('[Event "a"]\n' + tag % FEN + '\n\n1. e1e2 *\n\n[Event "b"]\n\n1. h2e2 h9g7 *\n')
    for encoding in ("utf-8", "cp1252"):
        try:
            raw = data.encode(encoding)
        except UnicodeEncodeError:
            continue
        first, second = items_of(raw)
        assert isinstance(first, PgnError) and first.kind in ("bad_tag", "decode"), str(first)
        assert "\n" not in str(first) and read_back([second]) == [(["h2e2", "h9g7"], "*")]


def test_setup_with_an_empty_fen_is_rejected():
    (item,) = items_of(b'[SetUp "1"][FEN ""]\n\n1. h2e2 *\n')
    assert isinstance(item, PgnError) and item.kind == "bad_fen" and "SetUp" in str(item)


def test_inner_quotes_in_a_tag_value_are_kept():
    (item,) = items_of('[Event "第十五屆"銀荔杯"象棋爭霸賽"]\n\n1. h2e2 *\n'.encode())
    assert isinstance(item, Game) and item.headers["Event"] == '第十五屆"銀荔杯"象棋爭霸賽'


# ---- 4. a result that the position contradicts --------------------------------------------------------------

def _mated_game():
    """A game that ends with the side to move checkmated, found by playing random games."""
    rng = random.Random(7)
    while True:
        game = random_game(rng, 120, False)
        board = game.board()
        if not board.legal_moves():
            return game, board


def test_a_result_that_the_final_position_contradicts_is_rejected():
    game, board = _mated_game()
    winner = "0-1" if board.turn == 0 else "1-0"
    loser = "1-0" if winner == "0-1" else "0-1"
    moves = " ".join(game.iccs())
    for claimed in (loser, "1/2-1/2"):
        (item,) = items_of(f'[Result "{claimed}"]\n\n{moves} {claimed}\n'.encode())
        assert isinstance(item, PgnError) and item.kind == "bad_result" and "contradicts" in str(item)
    (item,) = items_of(f'[Result "{winner}"]\n\n{moves} {winner}\n'.encode())
    assert isinstance(item, Game) and item.result == winner


# ---- 5. a newline in a file name ----------------------------------------------------------------------------

def test_a_newline_in_a_member_name_stays_in_its_tag(tmp_path):
    gs = games()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr('x.pgn\n[Event "injected"]\n\n1. h2e2 *\n\n[a "b.pgn', pgn_of(gs))
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    out = tmp_path / "out"
    prepare([str(tmp_path / "a.zip")], out, val_frac=0, test_frac=0, **QUIET)
    back = list(read_games(out / "train.pgn"))
    assert sorted(read_back(back)) == sorted(expected(gs))
    assert all("\\x0a" in g.headers["SourceFile"] and "Event" not in g.headers for g in back)


# ---- 6. a truncated .pgn.xz with CRLF line ends -------------------------------------------------------------

@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_truncated_compressed_file_keeps_the_games_before_the_cut(tmp_path, newline):
    gs = games(n=4)
    data = lzma.compress(pgn_of(gs).replace("\n", newline).encode())
    path = tmp_path / "g.pgn.xz"
    path.write_bytes(data[:len(data) * 9 // 10])
    warnings = []
    reader = SourceReader([str(path)], warnings.append, lambda n: None)
    ((label, text),) = list(reader)
    kept = read_back(items_of(text))
    assert 1 <= len(kept) < 4 and kept == expected(gs)[:len(kept)] and "truncated" in warnings[0]


# ---- 7. an undecodable tag line rejects only its own game ---------------------------------------------------

def test_an_undecodable_tag_line_does_not_reject_the_game_before():
    gs = games(n=2)
    first = write_game(gs[0]).encode("utf-8")
    bad = b'[Event "\xff\xfe\x80 bad"]\n' + write_game(gs[1]).encode("utf-8")
    items = items_of(first + b"\n" + bad)
    assert read_back(items[:1]) == expected(gs[:1])
    assert isinstance(items[1], PgnError) and items[1].kind == "decode"


# ---- 9. a movetext line that starts with '[', a line that ends in 1/2 or 和 ----------------------------------

def test_a_command_comment_line_does_not_end_the_game():
    (game,) = games(n=1, plies=7)
    m = game.iccs()
    text = f'[Event "x"]\n\n1. {m[0]} {m[1]} 2. {m[2]} {m[3]}\n[%clk 0:01:00]\n3. {m[4]} {m[5]} 4. {m[6]} ' \
           f'{game.result}\n'
    (item,) = items_of(text.encode())
    assert read_back([item]) == expected([game])


@pytest.mark.parametrize("word", ["1/2", "和"])
def test_a_line_ending_in_a_draw_word_mid_game_is_never_a_shorter_game(word):
    (game,) = games(n=1, plies=7)
    m = game.iccs()
    text = f'[Event "x"]\n\n1. {m[0]} {m[1]} 2. {m[2]} {m[3]} {word}\n3. {m[4]} {m[5]} 4. {m[6]} {game.result}\n'
    items = items_of(text.encode())
    assert len(items) == 1 and isinstance(items[0], PgnError) and "after the result" in str(items[0])


# ---- 10. concatenated files with byte-order marks -----------------------------------------------------------

def test_concatenated_files_with_boms_read_every_game_and_tag():
    a, b = games(seed=2, n=2), games(seed=3, n=2)
    for g in a + b:
        g.headers["Event"] = "e"
    data = b"\xef\xbb\xbf" + pgn_of(a).encode() + b"\xef\xbb\xbf" + pgn_of(b).encode()
    items = items_of(data)
    assert read_back(items) == expected(a + b) and all(i.headers["Event"] == "e" for i in items)


# ---- 12. decompression bombs --------------------------------------------------------------------------------

def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_members_past_the_limit_are_skipped_with_a_reason(tmp_path):
    good = pgn_of(games()).encode()
    big = good + b"\n" * 5000
    cases = {"a.tar.gz": _tar_gz({"big.pgn": big, "good.pgn": good}),
             "big.pgn.gz": gzip.compress(big), "big.pgn.bz2": bz2.compress(big), "big.pgn.xz": lzma.compress(big)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.pgn", big)
        z.writestr("good.pgn", good)
    cases["a.zip"] = buf.getvalue()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        warnings = []
        read = list(SourceReader([str(tmp_path / name)], warnings.append, lambda n: None,
                                 max_member_bytes=len(good) + 100))
        assert [label.rsplit(":", 1)[-1] for label, _ in read] == (["good.pgn"] if "a." in name else []), name
        assert any("decompresses to more than" in w and "--max-member-mb" in w for w in warnings), (name, warnings)


# GNU tar -cSz of a 3 GB sparse file (all holes): 127 bytes
SPARSE_BOMB = ("H4sIAAAAAAAAA+3QQQrCMBAF0BwlJ5DExFzEE7iQurJS2/tbCkJxoSB0U97b/IEZmGFuU3c9PLp72FCatVqXnH3mUudTSbXllsoxpF"
               "xLySGetzzqbXqOlyHGMPT9+G3uV/9vZfWF9Uc2WQAAAAAAAAAAAMBOvAA1+Gm+ACgAAA==")


def test_a_sparse_tar_member_declaring_gigabytes_is_not_read(tmp_path):
    import base64

    (tmp_path / "bomb.tar.gz").write_bytes(base64.b64decode(SPARSE_BOMB))
    warnings = []
    assert list(SourceReader([str(tmp_path / "bomb.tar.gz")], warnings.append, lambda n: None)) == []
    assert any("huge.pgn" in w and "decompresses to more than 256 MB" in w for w in warnings), warnings


def test_prepare_takes_the_member_limit(tmp_path):
    (tmp_path / "g.pgn.gz").write_bytes(gzip.compress(pgn_of(games()).encode()))
    with pytest.raises(DatasetError, match="decompresses to more than 100 bytes"):
        prepare([str(tmp_path / "g.pgn.gz")], tmp_path / "out", max_member_bytes=100, **QUIET)
    r = prepare([str(tmp_path / "g.pgn.gz")], tmp_path / "out", **QUIET)
    assert r.summary["games_accepted"] == 3


# ---- 13. zip entries that share one member ------------------------------------------------------------------

def test_zip_entries_pointing_at_one_member_are_read_once(tmp_path):
    good = pgn_of(games()).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.pgn", good)
    data = buf.getvalue()
    cd = data.index(b"PK\x01\x02")
    eocd = data.index(b"PK\x05\x06")
    entry = data[cd:eocd]
    copies = 200
    entries = entry * copies                      # 200 names, one member
    end = bytearray(data[eocd:])
    end[8:10] = end[10:12] = copies.to_bytes(2, "little")
    end[12:16] = len(entries).to_bytes(4, "little")
    bomb = data[:cd] + entries + bytes(end)
    (tmp_path / "many.zip").write_bytes(bomb)
    warnings = []
    read = list(SourceReader([str(tmp_path / "many.zip")], warnings.append, lambda n: None))
    assert len(read) == 1 and read[0][1] == good
    assert any("same member" in w for w in warnings)


# ---- 14. encoding detection is linear -----------------------------------------------------------------------

def test_encoding_detection_feeds_each_byte_of_a_long_line_once(monkeypatch):
    """A 16 MB line in 64 read blocks: the evidence is fed once, whole (the old reader joined the growing line to
    every block: quadratic). No timed assert: the bytes handed to the guess are counted."""
    from xiangqi_gpt.records import pgn

    fed = []
    real_feed = pgn._EncodingGuess.feed
    monkeypatch.setattr(pgn._EncodingGuess, "feed", lambda self, block: (fed.append(len(block)),
                                                                          real_feed(self, block))[1])
    line = b"1. " + "炮二平五".encode("gb18030") * (1 << 21) + b"\n"
    assert pgn._detect_stream_encoding(io.BytesIO(line)) == "gb18030"
    assert fed == [len(line) - 1]
    assert pgn._non_ascii_lines(b"a" * 100 + b"\n\xc5\xda\n" + b"b" * 100) == b"\xc5\xda"


# ---- 16. load_meta on a malformed split table ---------------------------------------------------------------

def test_load_meta_with_a_list_of_tokens_is_one_line(tmp_path):
    src = _source(tmp_path)
    out = tmp_path / "out"
    prepare([str(src)], out, **QUIET)
    meta = json.loads((out / "meta.json").read_text())
    meta["splits"]["train"]["tokens"] = [1, 2]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="token count"):
        load_meta(out)


# ---- 19. one-byte archive corruptions -----------------------------------------------------------------------

def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.pgn", pgn_of(games()))
    return buf.getvalue()


def test_one_byte_archive_corruptions_are_warnings(tmp_path):
    data = _zip_bytes()
    cases = {}
    version = bytearray(data)
    cd = data.index(b"PK\x01\x02")
    version[cd + 6] = 99                                               # "version needed to extract"
    version[4] = 99
    cases["version.zip"] = bytes(version)
    cases["empty.zip"] = data.replace(b"a.pgn", b"\x00\x00\x00\x00\x00")
    tgz = _tar_gz({"a.pgn": pgn_of(games()).encode()})
    raw = gzip.decompress(tgz)
    cases["short.tar.gz"] = gzip.compress(raw[:300])                   # a header cut short
    for i in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        cases[f"flip{i}.zip"] = bytes(flipped)
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        warnings = []
        for label, text in SourceReader([str(tmp_path / name)], warnings.append, lambda n: None):
            for item in read_games(text, name=label):
                assert isinstance(item, (Game, PgnError))


# ---- 8. one GBK game in a Big5 file -------------------------------------------------------------------------

def _tagged(gs: list[Game], event: str) -> list[Game]:
    for i, g in enumerate(gs):
        g.headers.update({"Event": f"{event}{i}", "Red": "許銀川" if "屆" in event else "许银川"})
    return gs


@pytest.mark.parametrize("notation", ["chinese", "iccs"])
def test_one_gbk_game_in_a_big5_file_leaves_the_big5_games_intact(notation):
    big5 = _tagged(games(seed=4, n=50), "第十屆全國賽")
    (gbk,) = _tagged(games(seed=5, n=1), "第十届全国赛")
    data = b"".join(write_game(g, notation, "big5").encode("cp950") for g in big5[:25])
    data += write_game(gbk, notation, "gb18030").encode("gb18030")
    data += b"".join(write_game(g, notation, "big5").encode("cp950") for g in big5[25:])
    items = items_of(data)
    assert len(items) == 51
    good = [i for i in items if isinstance(i, Game)]
    bad = [i for i in items if not isinstance(i, Game)]
    assert len(bad) <= 1 and all(i.game == 26 for i in bad)          # at most the GBK game, with its reason
    by_event = {g.headers["Event"]: g for g in good}
    for g in big5:
        assert by_event[g.headers["Event"]].iccs() == g.iccs() and by_event[g.headers["Event"]].headers["Red"] == \
            "許銀川"
    if not bad:
        assert by_event["第十届全国赛0"].iccs() == gbk.iccs()


def test_a_utf8_file_appended_to_a_gbk_file_reads_both():
    a, b = _tagged(games(seed=6, n=3), "第十届全国赛"), _tagged(games(seed=7, n=3), "第十屆全國賽")
    data = pgn_of(a, "chinese").encode("gb18030") + pgn_of(b, "chinese").encode("utf-8")
    items = items_of(data)
    assert read_back(items) == expected(a + b)
    assert [i.headers["Event"] for i in items] == [g.headers["Event"] for g in a + b]


# ---- 15, 16. model files: non-finite and malformed --------------------------------------------------------------

def _tiny(vocab_size=None):
    import torch

    from xiangqi_gpt.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(tokenizer="move", vocab_size=vocab_size, block_size=32, n_layer=1, n_head=2,
                         n_embd=16)).eval()


def _payload(model, **changes) -> dict:
    from dataclasses import asdict

    payload = {"format": "xiangqi-gpt-model", "version": 1, "config": asdict(model.config),
               "state_dict": dict(model.state_dict()), "info": {}}
    payload.update(changes)
    return payload


def _model_file(tmp_path, payload, name="m.pt"):
    import torch

    torch.save(payload, tmp_path / name)
    return tmp_path / name


def _one_line_checkpoint_error(path, match):
    from xiangqi_gpt.model.checkpoint import load_model
    from xiangqi_gpt.errors import CheckpointError

    with pytest.raises(CheckpointError, match=match) as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_nan_weights_are_refused_at_load(tmp_path):
    import torch

    model = _tiny()
    state = dict(model.state_dict())
    state["tok_emb.weight"] = state["tok_emb.weight"].clone()
    state["tok_emb.weight"][3, 2] = float("nan")
    _one_line_checkpoint_error(_model_file(tmp_path, _payload(model, state_dict=state)), "NaN or infinite")
    state["tok_emb.weight"][3, 2] = float("inf")
    _one_line_checkpoint_error(_model_file(tmp_path, _payload(model, state_dict=state)), "NaN or infinite")
    assert torch.isfinite(model.tok_emb.weight).all()


def test_malformed_model_files_are_one_line_errors(tmp_path):
    import torch

    model = _tiny()
    state = dict(model.state_dict())
    huge = dict(_payload(model)["config"], n_embd=1 << 20, n_head=1 << 10)
    cases = {
        "info": (_payload(model, info="a string"), "info"),
        "weights": (_payload(model, state_dict={**state, "tok_emb.weight": [1.0, 2.0]}), "not a tensor"),
        "huge": (_payload(model, config=huge), "do not fit"),
        "block": (_payload(model, config=dict(_payload(model)["config"], block_size=1 << 40)), "table elements"),
        "layers": (_payload(model, config=dict(_payload(model)["config"], n_layer=1 << 100)), "holds 1 block"),
        "layers2": (_payload(model, config=dict(_payload(model)["config"], n_layer=2)), "holds 1 block"),
        "config": (_payload(model, config={"n_layer": "two"}), "bad model config"),
        "lightning": ({"state_dict": [1], "hyper_parameters": {"tokenizer": "move"}}, "not a table"),
        "lightning2": ({"state_dict": {"model." + k: v for k, v in state.items()},
                        "hyper_parameters": "x"}, "not a table"),
    }
    for name, (payload, match) in cases.items():
        _one_line_checkpoint_error(_model_file(tmp_path, payload, f"{name}.pt"), match)
    lightning = {"state_dict": {"model." + k: v for k, v in state.items()},
                 "hyper_parameters": dict(_payload(model)["config"]), "global_step": "many",
                 "callbacks": {"ModelCheckpoint{}": {"current_score": torch.tensor([1.0, 2.0])}}}
    from xiangqi_gpt.model.checkpoint import load_model

    loaded = load_model(_model_file(tmp_path, lightning, "ok.ckpt"))       # odd fields: ignored, still loads
    assert loaded.info["global_step"] is None and "val_loss" not in loaded.info


def test_a_padded_vocabulary_model_evaluates_and_plays(tmp_path):
    from xiangqi_gpt.model.checkpoint import load_model
    from xiangqi_gpt.model.evaluate import evaluate_games, read_eval_games
    from xiangqi_gpt.play.player import GPTPlayer

    model = _tiny(vocab_size=3000)
    with __import__("torch").no_grad():
        model.lm_head.weight[2999].fill_(5.0)            # a padded row that would win every argmax if it were output
    path = _model_file(tmp_path, _payload(model))
    (tmp_path / "g.pgn").write_text(pgn_of(games(n=1)), encoding="utf-8")
    loaded = load_model(path)
    gs, skipped = read_eval_games(str(tmp_path / "g.pgn"), None, warn=lambda m: None)
    report = evaluate_games(loaded.model, loaded.tokenizer, gs, free_run_every=4)
    assert report["positions"] > 0 and report["free_run"]["legal"]["1"] is not None
    assert loaded.model.next_logprobs([0]).shape[-1] == loaded.tokenizer.vocab_size   # padding is input-only
    player = GPTPlayer(loaded)
    assert player.raw_move(Board()) != "<pad>" and player.choose(Board()) in Board().legal_moves()


def test_the_player_never_fails_on_non_finite_scores(monkeypatch):
    from xiangqi_gpt.play import player as player_module
    from xiangqi_gpt.model.checkpoint import LoadedModel
    from xiangqi_gpt.data.tokenizer import get_tokenizer

    p = player_module.GPTPlayer(LoadedModel(model=_tiny(), tokenizer=get_tokenizer("move")))
    board = Board()
    real = p._score(board)
    monkeypatch.setattr(p, "_score", lambda b: type(real)(**{**real.__dict__,
                                                            "scores": [float("nan")] * len(real.moves)}))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert p.choose(board) in board.legal_moves()
    with pytest.warns(RuntimeWarning):
        assert p.choose(board, temperature=1.0) in board.legal_moves()


# ---- 17. output paths are checked before the work -----------------------------------------------------------

def test_output_paths_fail_before_the_work(tmp_path, capsys):
    from xiangqi_gpt.cli import main

    model = _model_file(tmp_path, _payload(_tiny()))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    (tmp_path / "g.pgn").write_text(pgn_of(games(n=1)), encoding="utf-8")
    runs = [(["evaluate", "--checkpoint", str(model), "--pgn", str(tmp_path / "g.pgn"), "--quiet", "--plots",
              str(a_file)], "a file, not a folder"),
            (["evaluate", "--checkpoint", str(model), "--pgn", str(tmp_path / "g.pgn"), "--quiet", "--plots",
              str(a_file / "x")], "is a file, not a folder"),
            (["evaluate", "--checkpoint", str(model), "--pgn", str(tmp_path / "g.pgn"), "--quiet", "--json",
              str(tmp_path)], "a folder"),
            (["export", str(model), "--out", str(tmp_path)], "a folder"),
            (["export", str(model), "--out", str(a_file / "x.pt")], "is a file, not a folder")]
    for argv, match in runs:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr()
        assert e.value.code != 0 and match in err.err and "Traceback" not in err.err
        assert "\n" not in err.err.strip() and "positions" not in err.out          # nothing was evaluated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "g.pgn", "m.pt"]   # no .tmp left


# ---- 18. play.py: save and load with hostile file names -----------------------------------------------------

def test_play_save_and_load_with_hostile_names(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "m.pt").write_bytes(b"never loaded")
    script = ["resign", "~nosuchuser_xq/x.pgn", "save ~nosuchuser_xq/x.pgn", "load ~nosuchuser_xq/x.pgn",
              "save a\x00b.pgn", "load a\x00b.pgn", "save \x1b[31mred.pgn", "load \x1b[2Jgone.pgn", "quit"]
    env = dict(os.environ, COLUMNS="100", LINES="50", PYTHONIOENCODING="utf-8")
    r = subprocess.run([sys.executable, str(root / "play.py"), "--checkpoint", str(tmp_path / "m.pt")],
                       input="\n".join(script) + "\n", capture_output=True, text=True, encoding="utf-8", env=env,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr and "\x1b[31m" not in r.stdout and "\x1b[2J" not in r.stdout
    assert r.stdout.count("no such user") >= 3 and r.stdout.count("NUL byte") == 2
    assert "\\x1b[31mred.pgn" in r.stdout and (tmp_path / "\x1b[31mred.pgn").exists()


def test_a_config_too_large_for_an_int_is_one_line(tmp_path):
    model = _tiny()
    config = dict(_payload(model)["config"], n_embd=10**30, n_head=2)
    _one_line_checkpoint_error(_model_file(tmp_path, _payload(model, config=config)), "table elements|do not fit")


def test_the_archive_memory_property_does_not_count_the_reader_caches(monkeypatch):
    """A 10 KB tar once failed the fuzzer's memory cap (23 MB) and passed on replay: the reader's move cache, filled
    by earlier inputs, grew its table during that read. The property clears the caches first."""
    import fuzz_targets
    from xiangqi_gpt.records import pgn

    rng = random.Random(5)
    games = [random_game(rng, 20, False) for _ in range(3)]
    data = fuzz_targets._pack("tar", [(f"d/{i}.pgn", write_game(g).encode()) for i, g in enumerate(games)])
    expected = [fuzz_targets.key(g) for g in games]

    cache = pgn._MOVE_CACHE
    pgn.clear_caches()
    size, n = sys.getsizeof(cache), 0
    while not (n > 300_000 and sys.getsizeof(cache) != size):   # find the count at which its table grows
        size = sys.getsizeof(cache)
        cache[(n, "x", None)] = None
        n += 1

    def fill_to_a_resize():                                     # one entry short of a new table of 2**20 slots
        cache.clear()
        cache.update(((i, "x", None), None) for i in range(n - 1))
    fill_to_a_resize()
    fuzz_targets.check_archive("fuzz.tar", data, expected)                       # passes: the property clears first
    monkeypatch.setattr(pgn, "clear_caches", lambda: None)
    fill_to_a_resize()
    with pytest.raises(AssertionError, match="bytes held"):                      # without clearing it would fail
        fuzz_targets.check_archive("fuzz.tar", data, expected)
    monkeypatch.undo()
    pgn.clear_caches()
    assert not pgn._MOVE_CACHE
