"""Fuzz targets shared by ``tests/test_fuzz.py`` (Hypothesis, bounded) and ``benchmarks/fuzz.py`` (the same
properties for as long as you like).

Each target is a Hypothesis strategy for its inputs and a ``check_*`` function that raises ``AssertionError`` when a
property fails (any other exception escaping from the code under test is a failure too):

* ``move``: ``parse_move`` and ``detect_notation`` on move texts (valid ones, mutated ones, arbitrary text with
  case-folding traps) on positions of random games: only the project's own errors, and a parsed move is legal.
* ``fen``: ``Board(fen)`` on valid, mutated and arbitrary FENs: only ``FenError``; an accepted FEN round-trips and
  is a reachable kind of position; on a board built with ``strict=False`` every notation writes every legal move
  so that it reads back as the same move, or says it cannot (``MoveError``), and never crashes.
* ``pgn``: the PGN reader on generated records (three notations, three encodings, three line ends, comments with
  a ``{`` inside, variations, NAGs) with mutations. Structure edits that keep every move (comments, line ends,
  variations, blank lines) must give back exactly the games written. Edits that break a game (a variation or a
  comment never closed, a stray ``)``, a Chinese move deleted in the middle) must reject that game with a reason
  and give back every other game exactly: an accepted game is never shorter than its movetext. Byte flips, token
  edits and re-encodings must give only ``PgnError``s or games that replay legally and round-trip through all
  three notations.
* ``engine``: the UCI/UCCI command loop on command sequences with mutated tokens: it never raises, always answers
  ``isready``, and never shows a Python exception name that was not in its input.
* ``archive``: zip, tar (plain, gz, xz, bz2) and compressed PGN files of random games, with bit flips, cuts,
  inserted bytes, zip header fields, central directories that repeat one member, and members far past the size
  limit: reading never raises, no member yields more than the limit, the Python memory held stays under a cap, and
  an intact archive gives back exactly its games.
* ``model``: a tiny exported model with NaN or infinite weights, wrong shapes, missing, extra or non-tensor weights,
  bad info and config fields (types, huge sizes), Lightning fields, bit flips and cuts: a one-line CheckpointError,
  or a model with finite weights whose player picks a legal move.
* ``transform``: record transforms that must not change the games read: CRLF or CR line ends, byte-order marks,
  files concatenated, each in its own encoding (UTF-8, GB18030, Big5), movetext on the tag line, ``[%clk]``
  lines in the movetext.
"""

from __future__ import annotations

import io
import random
import re

from hypothesis import strategies as st

from random_games import random_board

from xiangqi_gpt.rules.board import STARTING_FEN, Board, Move
from xiangqi_gpt.errors import FenError, MoveError, PgnError
from xiangqi_gpt.rules.notation import detect_notation, format_move, parse_move
from xiangqi_gpt.records.pgn import Game, read_games, write_game

NOTATIONS = ("iccs", "wxf", "chinese", "chinese-traditional")


# --------------------------------------------------------------------------------------------------------------
# Random games
# --------------------------------------------------------------------------------------------------------------

def random_game(rng: random.Random, plies: int, custom: bool) -> Game:
    root = STARTING_FEN
    if custom:                                   # a midgame start: a FEN tag, sometimes Black to move
        root = Board(random_board(rng, rng.randrange(1, 40)).fen()).fen()
    board = random_board(rng, plies, root)
    outcome = board.outcome()
    result = outcome.result() if outcome else rng.choice(["1-0", "0-1", "1/2-1/2", "*"])
    return Game(headers={}, moves=list(board.move_stack), root_fen=board.root_fen(), result=result)


def key(game: Game) -> tuple:
    return Board(game.root_fen).fen(), tuple(m.iccs() for m in game.moves), game.result


# --------------------------------------------------------------------------------------------------------------
# move: parse_move / detect_notation
# --------------------------------------------------------------------------------------------------------------

# Characters that look like notation, and traps: letters that Unicode case folding matches to ASCII (ı İ K ſ),
# full-width and other digits, Chinese piece, direction and position characters in both scripts.
TRAPS = "ıİKſ²³¹٣０１２３４５６７８９"
NOTATION_CHARS = ("abcdefghiABCDEFGHI0123456789KAEBHNRCPGkaebhnrcpg+-.=#!? "
                  "一二三四五六七八九１２３４５６７８９车車俥马馬傌炮砲包相象仕士帅帥将將兵卒进進退平前中后後\u3000")


# Non-ASCII characters that re.IGNORECASE would match to an ASCII letter of the notations.
LOOKALIKES = {"i": "ıİ", "I": "ıİ", "k": "\u212a", "K": "\u212a"}


def _mutate_text(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        pool = NOTATION_CHARS + TRAPS
        i = rng.randrange(len(chars) + 1)
        if op == 4:                              # a look-alike letter, or a trap character anywhere
            spots = [j for j, ch in enumerate(chars) if ch in LOOKALIKES]
            if spots:
                j = rng.choice(spots)
                chars[j] = rng.choice(LOOKALIKES[chars[j]])
            else:
                chars.insert(i, rng.choice(TRAPS))
            continue
        if op == 0 or not chars:
            chars.insert(i, rng.choice(pool))
        elif op == 1:
            del chars[min(i, len(chars) - 1)]
        elif op == 2:
            chars[min(i, len(chars) - 1)] = rng.choice(pool)
        else:
            j = rng.randrange(len(chars))
            chars[min(i, len(chars) - 1)], chars[j] = chars[j], chars[min(i, len(chars) - 1)]
    return "".join(chars)


@st.composite
def move_inputs(draw):
    """(fen, text, notation or None): a position of a random game, and a move text to read on it."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    board = random_board(rng, draw(st.integers(0, 60)))
    kind = draw(st.sampled_from(["valid", "mutated", "text", "traps"]))
    moves = board.legal_moves()
    if kind in ("valid", "mutated") and moves:
        move = rng.choice(sorted(moves, key=Move.iccs))
        text = format_move(board, move, rng.choice(NOTATIONS))
        if rng.random() < 0.3:                   # aim at the letters that case folding confuses
            text = text.replace("i", "ı").replace("K", "\u212a") if rng.random() < 0.5 else \
                text.replace("i", "İ").replace("K", "\u212a")
        if kind == "mutated":
            text = _mutate_text(rng, text)
    elif kind == "traps":
        text = draw(st.text(st.sampled_from(NOTATION_CHARS + TRAPS), min_size=1, max_size=8))
    else:
        text = draw(st.text(max_size=12))
    notation = draw(st.sampled_from([None, None, "iccs", "wxf", "chinese", "chinese-traditional"]))
    return board.fen(), text, notation


def check_move(fen: str, text: str, notation: str | None) -> None:
    board = Board(fen)
    detected = detect_notation(text)
    assert detected in (None, "iccs", "wxf", "chinese"), detected
    try:
        move = parse_move(board, text, notation)
    except MoveError:
        return
    assert board.is_legal(move), (text, move)
    assert detected is not None or notation is not None, text


# --------------------------------------------------------------------------------------------------------------
# fen: Board(fen), strict and not, and the notation writers on any board
# --------------------------------------------------------------------------------------------------------------

FEN_CHARS = "kabnrcphe" + "KABNRCPHE" + "123456789/ wb-0" + TRAPS


def _mutate_fen(rng: random.Random, fen: str) -> str:
    op = rng.randrange(6)
    if op == 0:                                   # add a piece somewhere: often too many, or on a wrong point
        board = Board(fen)
        squares = [s for s in range(90) if board.piece_at(s) is None]
        return _place(fen, rng.choice(squares), rng.choice("ABNRCPabnrcp")) if squares else fen
    if op == 1:                                   # junk after the fields
        return fen + " " + rng.choice(["junk", "0", "-", "w", "1 2"])
    if op == 2:
        parts = fen.split()
        return " ".join(parts[:rng.randrange(0, len(parts) + 1)])
    chars = list(fen)
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(chars))
        if op == 3:
            chars[i] = rng.choice(FEN_CHARS)
        elif op == 4:
            chars.insert(i, rng.choice(FEN_CHARS))
        elif len(chars) > 1:
            del chars[i]
    return "".join(chars)


def _place(fen: str, square: int, letter: str) -> str:
    rows = fen.split()[0].split("/")
    grid = ["".join("1" * int(ch) if ch.isdigit() else ch for ch in row) for row in rows]
    rank, file = square // 9, square % 9
    row = grid[9 - rank]
    grid[9 - rank] = row[:file] + letter + row[file + 1:]
    packed = []
    for row in grid:
        out, empty = "", 0
        for ch in row:
            if ch == "1":
                empty += 1
            else:
                out += (str(empty) if empty else "") + ch
                empty = 0
        packed.append(out + (str(empty) if empty else ""))
    return " ".join(["/".join(packed)] + fen.split()[1:])


@st.composite
def fen_inputs(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    fen = random_board(rng, draw(st.integers(0, 80))).fen()
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "crowded", "text"]))
    if kind == "mutated":
        fen = _mutate_fen(rng, fen)
    elif kind == "crowded":                        # many extra pieces: tandems no game can have
        for _ in range(rng.randrange(2, 14)):
            board = Board(fen, strict=False)
            squares = [s for s in range(90) if board.piece_at(s) is None]
            candidate = _place(fen, rng.choice(squares), rng.choice("PPPpppRrNnCcAaBb"))
            try:
                Board(candidate, strict=False)
                fen = candidate
            except FenError:
                pass
    elif kind == "text":
        fen = draw(st.text(st.sampled_from(FEN_CHARS), max_size=40))
    return fen, seed


def check_fen(fen: str, seed: int) -> None:
    rng = random.Random(seed)
    try:
        board = Board(fen)
    except FenError:
        board = None
    if board is not None:
        again = Board(board.fen())
        assert again.fen() == board.fen() and again.key == board.key
        for move in rng.sample(board.legal_moves(), min(3, len(board.legal_moves()))):
            for notation in NOTATIONS:
                text = format_move(board, move, notation)
                assert parse_move(board, text) == move, (fen, move.iccs(), text)
    try:
        loose = Board(fen, strict=False)
    except FenError:
        assert board is None, fen
        return
    moves = loose.legal_moves()
    for move in rng.sample(moves, min(12, len(moves))):
        for notation in NOTATIONS:
            try:
                text = format_move(loose, move, notation)
            except MoveError:
                continue
            assert parse_move(loose, text) == move, (fen, move.iccs(), notation, text)


# --------------------------------------------------------------------------------------------------------------
# pgn: generated records and their mutations
# --------------------------------------------------------------------------------------------------------------

NAMES = {"utf-8": "胡荣华吕钦許銀川楊官璘东北上海全國象棋個人賽",
         "gb18030": "胡荣华吕钦许银川杨官璘东北上海全国象棋个人赛刘宗泽赵鑫党斐黄景贤荥阳绵沈卜凤波石家庄荷兰",
         "big5": "胡榮華呂欽許銀川楊官璘東北上海全國象棋個人賽劉宗澤邯鄲撫州陳鍾趙鑫黨斐曹霖黃景賢滎綿陽沈卜鳳波周介眉瀋石家莊荷蘭"}
RESULT_WORDS = {"utf-8": ("先胜", "先負", "先和"), "gb18030": ("先胜", "先负", "先和"), "big5": ("先勝", "先負", "先和")}
# structure edits that keep every move; edits that break one game (it must be rejected); free edits
SAFE = ("comment", "brace_in_comment", "variation", "nag", "blank", "bom")
BREAKING = ("open_variation", "stray_paren", "open_comment", "delete_chinese")
FREE = ("flip", "insert_byte", "delete_byte", "delete_token", "duplicate_token", "swap_tokens", "truncate",
        "reencode", "result_token", "junk_line", "move_number")


def _move_texts(game: Game, notation: str, encoding: str) -> list[str]:
    board = Board(game.root_fen)
    out = []
    for move in game.moves:
        text = format_move(board, move, notation)
        if encoding == "big5":
            text = text.replace("俥", "車")          # as pgn.write_games does: 俥 is not in Big5
        out.append(text)
        board.push(move)
    return out


def _render(rng: random.Random, games: list[Game], notation: str, encoding: str, safe: list[str]) \
        -> list[list[str]]:
    """Each game as lines (tags first, then movetext); ``safe`` edits are applied here. The tags written are
    added to each game's ``headers``."""
    rendered = []
    for index, game in enumerate(games):
        red, black = ("".join(rng.sample(NAMES[encoding], rng.randrange(2, 4))) for _ in range(2))
        # as CCPD writes it: "RED先勝BLACK"; two names alone can read as sensibly in Big5 as in GBK
        game.headers = {"Event": red + rng.choice(RESULT_WORDS[encoding]) + black, "Round": str(index + 1)}
        if rng.random() < 0.5:
            game.headers["Red"] = red
        lines = [f'[{tag} "{value}"]' for tag, value in game.headers.items()]
        if game.root_fen != STARTING_FEN:
            lines.append(f'[FEN "{game.root_fen}"]')
        if rng.random() < 0.5:
            lines.append(f'[Format "{"Chinese" if notation.startswith("chinese") else notation.upper()}"]')
        lines.append("")
        tokens = []
        black_first = game.root_fen.split()[1] == "b"
        number = int(game.root_fen.split()[5])
        for ply, text in enumerate(_move_texts(game, notation, encoding)):
            red = (ply % 2 == 0) != black_first
            if red:
                tokens.append(f"{number}.")
            elif ply == 0:
                tokens.append(f"{number}...")
            tokens.append(text)
            if not red:
                number += 1
            if "comment" in safe and rng.random() < 0.1:
                tokens.append(rng.choice(["{good move}", "{see (line) ; here [x]}", "{多 行\n註解}"]))
            if "brace_in_comment" in safe and rng.random() < 0.1:
                tokens.append(rng.choice(["{see {note}", "{ { {x}", "{a{b}"]))
            if "variation" in safe and rng.random() < 0.1:
                tokens.append(rng.choice(["(1. h2e2 h9g7)", "(h0g2 {x)} (i0h0))", "（炮二平五）"]))
            if "nag" in safe and rng.random() < 0.1:
                tokens.append(rng.choice(["$1", "$14"]))
        tokens.append(game.result)
        width = rng.randrange(20, 100)
        line = ""
        for token in tokens:
            if line and len(line) + len(token) + 1 > width:
                lines.append(line)
                line = token
            else:
                line = f"{line} {token}" if line else token
        lines.append(line)
        lines.append("")
        if "blank" in safe and rng.random() < 0.3:
            lines.append("")
        rendered.append(lines)
    return rendered


def _encode(text: str, encoding: str) -> bytes:
    return text.encode("cp950" if encoding == "big5" else encoding)


@st.composite
def pgn_inputs(draw):
    """(data, expected, mode): PGN bytes, the games written (with their labels), and which properties apply."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    n = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["safe", "breaking", "free", "free"]))
    edit = draw(st.sampled_from(BREAKING)) if mode == "breaking" else None
    games = [random_game(rng, rng.randrange(4 if edit == "delete_chinese" else 0, 50), rng.random() < 0.25)
             for _ in range(n)]
    if edit == "delete_chinese":
        notation = draw(st.sampled_from(["chinese", "chinese-traditional"]))
    else:
        notation = draw(st.sampled_from(NOTATIONS))
    encoding = draw(st.sampled_from(["utf-8", "gb18030", "big5"]))
    if notation == "chinese" and encoding == "big5":
        notation = "chinese-traditional"
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    safe = draw(st.lists(st.sampled_from(SAFE), max_size=4, unique=True))
    if mode == "breaking":        # no comments: a '{' or '(' inserted inside one would be text, not a break
        safe = [edit for edit in safe if edit in ("nag", "blank", "bom")]
    rendered = _render(rng, games, notation, encoding, safe)
    broken = None
    if mode == "breaking":
        broken = rng.randrange(n)
        lines = rendered[broken]
        body = [i for i, line in enumerate(lines) if line and not line.startswith("[")]
        i = body[-1]
        if edit == "delete_chinese":
            if not notation.startswith("chinese") or len(games[broken].moves) < 4:
                mode, broken = "safe", None
            else:
                lines[i] = _delete_move(rng, lines, body, games[broken])
        else:
            tokens = lines[i].split(" ")
            at = rng.randrange(len(tokens))           # before the result: the result is the last token
            tokens.insert(at, {"open_variation": "(", "stray_paren": ")", "open_comment": "{"}[edit])
            lines[i] = " ".join(tokens)
    text = newline.join(line for lines in rendered for line in lines)
    if "bom" in safe and encoding == "utf-8":
        text = "\ufeff" + text
    data = _encode(text, encoding)
    if mode == "free":
        for _ in range(draw(st.integers(1, 3))):
            data = _free_edit(rng, data, draw(st.sampled_from(FREE)))
    expected = [key(g) + (tuple(g.headers.items()),) for g in games]
    return data, expected, mode, broken


def _delete_move(rng: random.Random, lines: list[str], body: list[int], game: Game) -> str:
    """Delete one Chinese move of ``game`` from its movetext, neither the first nor among its last two (so that
    the moves after it change sides); returns the last line."""
    text = "\n".join(lines[i] for i in body)
    moves = [m for m in re.finditer(r"\S+", text) if detect_notation(m.group()) == "chinese"]
    assert len(moves) == len(game.moves), (text, len(game.moves))
    k = rng.randrange(1, len(moves) - 2)
    m = moves[k]
    text = text[:m.start()] + text[m.end():]
    for i, line in zip(body, text.split("\n")):
        lines[i] = line
    return lines[body[-1]]


def _free_edit(rng: random.Random, data: bytes, edit: str) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    if edit == "flip":
        return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
    if edit == "insert_byte":
        return data[:i] + bytes([rng.choice(b"{}()[];%$\r\n\x00\x80\xa4\xff" + bytes(range(32, 127)))]) + data[i:]
    if edit == "delete_byte":
        return data[:i] + data[i + 1:]
    if edit == "truncate":
        return data[:i]
    if edit == "reencode":
        for source in ("utf-8", "gb18030", "cp950"):
            try:
                text = data.decode(source)
            except UnicodeDecodeError:
                continue
            target = rng.choice(["utf-8", "gb18030", "cp950", "utf-16"])
            try:
                return text.encode(target)
            except UnicodeEncodeError:
                return data
        return data
    tokens = data.split(b" ")
    j = rng.randrange(len(tokens))
    if edit == "delete_token" and len(tokens) > 1:
        del tokens[j]
    elif edit == "duplicate_token":
        tokens.insert(j, tokens[j])
    elif edit == "swap_tokens":
        k = rng.randrange(len(tokens))
        tokens[j], tokens[k] = tokens[k], tokens[j]
    elif edit == "result_token":
        tokens.insert(j, rng.choice([b"1-0", b"0-1", b"1/2-1/2", b"*", "紅勝".encode()]))
    elif edit == "junk_line":
        tokens.insert(j, rng.choice([b"\n[Event \"x\"]\n", b"\n%junk\n", b"\n;note\n", b"\n\n", b"\r"]))
    elif edit == "move_number":
        tokens.insert(j, rng.choice([b"12.", b"3...", b"99."]))
    return b" ".join(tokens)


def _check_game(game: Game) -> None:
    """An accepted game replays legally and round-trips through every notation."""
    board = Board(game.root_fen)
    for move in game.moves:
        board.push(move)                         # validates
    plain = Game(headers={}, moves=game.moves, root_fen=game.root_fen, result=game.result)
    for notation in NOTATIONS:
        text = write_game(plain, notation)
        back = list(read_games(text.encode("utf-8"), name="round-trip"))
        assert len(back) == 1 and isinstance(back[0], Game), (notation, [str(b) for b in back])
        assert key(back[0]) == key(plain), (notation, text)


def check_pgn(data: bytes, expected: list[tuple], mode: str, broken: int | None) -> None:
    try:
        items = list(read_games(data, name="fuzz.pgn"))
    except PgnError:
        assert mode == "free", "a whole-file error on an intact file"
        return
    for item in items:
        assert isinstance(item, (Game, PgnError)), item
        if isinstance(item, PgnError):
            assert "\n" not in str(item), str(item)
        else:
            _check_game(item)
    got = [key(i) + (tuple((tag, i.headers.get(tag)) for tag in ("Event", "Round", "Red") if tag in i.headers),)
           if isinstance(i, Game) else None for i in items]
    if mode == "safe" or (mode == "breaking" and broken is None):
        assert got == expected, ([str(i) for i in items], expected)
    elif mode == "breaking":
        accepted = [g for g in got if g is not None]
        assert expected[broken] not in accepted or expected.count(expected[broken]) > 1, "a broken game was accepted"
        want = [g for i, g in enumerate(expected) if i != broken]
        assert accepted == want, ([str(i) for i in items], want)
        errors = [i for i in items if isinstance(i, PgnError)]
        assert errors, "no reason given for the broken game"


# --------------------------------------------------------------------------------------------------------------
# engine: the command loop
# --------------------------------------------------------------------------------------------------------------

ENGINE_LINES = [
    "uci", "ucci", "isready", "ucinewgame", "position startpos", "position startpos moves h2e2 h9g7",
    "position fen rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w - - 0 1 moves h2e2",
    "position fen 3k5/9/9/9/9/9/9/9/9/4K4 b", "position moves h2e2", "position", "position fen", "go depth 1",
    "go movetime 1", "go nodes 10", "go infinite", "go ponder", "go wtime 100 btime 100", "stop", "ponderhit",
    "setoption name Threads value 2", "setoption name Threads value ²", "setoption name Temperature value 0.5",
    "setoption name Ranks value 1-10", "setoption name Level value 3", "setoption name", "setoption Threads",
    "banmoves h2e2", "d", "probe", "debug on", "register later", "go depth", "position startpos moves",
]
ENGINE_WORDS = ["h2e2", "h3e3", "a10a9", "0", "-1", "99999999999999999999", "nan", "inf", "²", "ı0h0", "\u212a",
                "moves", "fen", "value", "name", "startpos", "", "w", "b", "-", "炮二平五"]


@st.composite
def engine_inputs(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        line = rng.choice(ENGINE_LINES)
        if rng.random() < 0.5:
            words = line.split(" ")
            for _ in range(rng.randrange(1, 3)):
                op = rng.randrange(3)
                i = rng.randrange(len(words) + 1)
                if op == 0:
                    words.insert(i, rng.choice(ENGINE_WORDS))
                elif op == 1 and len(words) > 1:
                    del words[min(i, len(words) - 1)]
                else:
                    words[min(i, len(words) - 1)] = rng.choice(ENGINE_WORDS)
            line = " ".join(words)
        lines.append(line)
    if draw(st.booleans()):
        lines.append(draw(st.text(max_size=30)))
    return lines


class _FirstMovePlayer:
    def move_probs(self, board):
        moves = sorted(board.legal_moves(), key=Move.iccs)
        return [(m, 1 / len(moves)) for m in moves]

    def choose(self, board):
        return min(board.legal_moves(), key=Move.iccs)


class _InstantSearcher:
    """Stands in for the search: the first legal move at once (the protocol is what is fuzzed)."""

    def __init__(self, player):
        self.player = player

    def clear(self):
        pass

    @staticmethod
    def _first(board):
        moves = sorted(board.legal_moves(), key=Move.iccs)
        return moves[0] if moves else None

    @staticmethod
    def _info(move, nodes: int, time_ms: int = 0):
        from xiangqi_gpt.play.search import SearchInfo

        return SearchInfo(depth=1, seldepth=1, score_cp=0, mate=None, nodes=nodes, time_ms=time_ms, nps=0,
                          gpt_calls=1, pv=[move] if move else [])

    def search(self, board, limits, on_info=None, stop=None, **kwargs):
        from xiangqi_gpt.play.search import SearchResult

        move = self._first(board)
        info = self._info(move, 1)
        if on_info:
            on_info(info)
        return SearchResult(move, info)


_PY_NAMES = re.compile(r"\b(Traceback|[A-Z][A-Za-z]*(?:Error|Exception)|KeyboardInterrupt)\b")


def make_engine(out) -> object:
    import inspect

    from xiangqi_gpt.play.engine import Engine

    kwargs = dict(out=out, load=lambda path: None, make_player=lambda loaded, t, seed: _FirstMovePlayer())
    if "make_searcher" in inspect.signature(Engine).parameters:
        kwargs["make_searcher"] = _InstantSearcher
    return Engine(**kwargs)


def check_engine(lines: list[str]) -> None:
    out = io.StringIO()
    engine = make_engine(out)
    for line in lines + ["isready"]:
        before = len(out.getvalue())
        if engine.handle(line) is False:
            break
        if line.strip() == "isready":
            assert "readyok" in out.getvalue()[before:], (line, out.getvalue()[before:])
    if hasattr(engine, "settle"):
        engine.settle()
    said = out.getvalue()
    heard = "\n".join(lines)
    leaked = [name for name in _PY_NAMES.findall(said) if name not in heard]
    assert not leaked, (leaked, said)



# --------------------------------------------------------------------------------------------------------------
# session: the real command loop (engine.run, with its reader thread) while bounded searches run
# --------------------------------------------------------------------------------------------------------------

SESSION_LINES = ["go nodes 100000000000", "go nodes 100000000000", "go infinite", "go ponder", "go depth 3",
                 "go movetime 30", "go nodes 20", "go wtime 500 btime 500", "stop", "stop", "isready", "isready",
                 "ponderhit", "position startpos", "position startpos moves h2e2", "position startpos moves h2e2 h9g7",
                 "position fen 4k4/9/9/9/9/9/9/9/9/4K4 w - - 0 1", "position fen 3k5/4R4/9/9/9/9/9/9/9/4K4 b - - 0 1",
                 "setoption name MultiPV value 3", "setoption name Level value 2", "setoption name Hash value 1",
                 "ucinewgame", "uci", "ucci", "banmoves h2e2", "quit", "go nodes", "position", "xyzzy"]
SESSION_END_S = 5.0         # after the input ends (EOF or quit), the loop must return within this much wall time


@st.composite
def session_inputs(draw):
    """(lines, delays in ms before each line): commands that land while searches run, then EOF (or a quit)."""
    n = draw(st.integers(1, 10))
    lines = [draw(st.sampled_from(SESSION_LINES)) for _ in range(n)]
    delays = [draw(st.sampled_from([0, 0, 1, 5, 20])) for _ in range(n)]
    return lines, delays


class _SlowSearcher(_InstantSearcher):
    """A search that runs for real time: one node per millisecond, until its node, depth or time budget (a depth
    costs 5 ms) or a stop. ``go nodes 100000000000`` or ``go infinite`` thus runs until something stops it."""

    def search(self, board, limits, on_info=None, stop=None, **kwargs):
        import time

        from xiangqi_gpt.play.search import SearchResult

        move = self._first(board)
        budget = [b for b in (limits.nodes, 5 * limits.depth if limits.depth else None, limits.movetime_ms) if b]
        budget_ms = min(budget) if budget else None
        start, nodes = time.monotonic(), 0
        while (budget_ms is None or nodes < budget_ms) and not (stop is not None and stop.is_set()):
            time.sleep(0.001)
            nodes += 1
            if on_info and nodes % 10 == 0 and move is not None:
                on_info(self._info(move, nodes, int(1000 * (time.monotonic() - start))))
        return SearchResult(move, self._info(move, nodes))


class _PacedInput:
    """``readline`` gives the lines with their delays, then the end of input."""

    def __init__(self, lines, delays):
        self.items = list(zip(lines, delays))
        self.done = None        # when the last line (or the end) was given

    def readline(self) -> str:
        import time

        if not self.items:
            if self.done is None:
                self.done = time.monotonic()
            return ""
        line, delay = self.items.pop(0)
        time.sleep(delay / 1000)
        return line + "\n"


def check_session(lines: list[str], delays: list[int]) -> None:
    """Every command is read while a search runs, and the end of input (or quit) ends the loop promptly: the loop
    returns within SESSION_END_S of it and no search runs on after it, every ``isready`` read before the end is answered, no Python exception name
    leaks, and at most one ``bestmove`` answers each ``go``."""
    import threading
    import time

    from xiangqi_gpt.play.engine import run

    before = set(threading.enumerate())
    out = io.StringIO()
    inp = _PacedInput(lines, delays)
    result: list = []
    loop = threading.Thread(target=lambda: result.append(run(inp, out, load=lambda path: None,
                                                             make_player=lambda loaded, t, seed: _FirstMovePlayer(),
                                                             make_searcher=_SlowSearcher)), daemon=True)
    loop.start()
    start = time.monotonic()
    while loop.is_alive() and (inp.done is None or time.monotonic() - inp.done < SESSION_END_S):
        loop.join(0.01)
        assert time.monotonic() - start < 60, "the session never read its input to the end"
    said = out.getvalue()
    assert not loop.is_alive(), f"the loop did not end {SESSION_END_S} s after its input ended: {said[-300:]!r}"
    assert result == [0], result
    searches = [t for t in threading.enumerate() if t not in before and t.name == "search"]
    ended = time.monotonic()
    for t in searches:             # no search runs on after the loop (in a process it would burn a core until exit)
        t.join(max(0.0, SESSION_END_S - (time.monotonic() - ended)))
    assert not any(t.is_alive() for t in searches), f"a search still runs after the loop ended: {said[-300:]!r}"
    heard = "\n".join(lines)
    leaked = [name for name in _PY_NAMES.findall(said) if name not in heard]
    assert not leaked, (leaked, said)
    before_quit = lines[:lines.index("quit")] if "quit" in lines else lines
    assert said.count("readyok") >= before_quit.count("isready"), said
    gos = sum(1 for line in lines if line.split()[:1] == ["go"])
    assert said.count("bestmove") <= gos, said
    for answer in re.findall(r"^bestmove .*$", said, re.M):
        assert re.fullmatch(r"bestmove ([a-i][0-9][a-i][0-9]|\(none\))( ponder [a-i][0-9][a-i][0-9])?", answer), answer


# --------------------------------------------------------------------------------------------------------------
# archive: mutated archives and compressed files, read under a memory cap
# --------------------------------------------------------------------------------------------------------------

ARCHIVE_KINDS = ("zip", "tar", "tar.gz", "tar.xz", "tar.bz2", "pgn.gz", "pgn.xz", "pgn.bz2")
ARCHIVE_EDITS = ("none", "none", "flip", "truncate", "insert", "bomb", "zip_fields", "duplicate_entries")
#: the member limit the archive target reads with, and the most Python memory one read may hold (tracemalloc; the
#: 12 MB leave room for an xz decoder's dictionary, 8 MB at the default preset)
ARCHIVE_LIMIT = 256 << 10
ARCHIVE_MEMORY_CAP = 8 * ARCHIVE_LIMIT + (12 << 20)


def _pack(kind: str, members: list[tuple[str, bytes]]) -> bytes:
    import bz2
    import gzip
    import lzma
    import tarfile
    import zipfile

    if kind.startswith("pgn."):
        data = b"".join(d for _, d in members)
        return {"gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress}[kind[4:]](data)
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members:
                z.writestr(name, data)
    else:
        mode = "w" if kind == "tar" else f"w:{kind[4:]}"
        with tarfile.open(fileobj=buf, mode=mode) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@st.composite
def archive_inputs(draw):
    """(file name, bytes, expected games or None when edited): an archive or compressed PGN of random games."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    kind = draw(st.sampled_from(ARCHIVE_KINDS))
    edit = draw(st.sampled_from(ARCHIVE_EDITS))
    n_members = 1 if kind.startswith("pgn.") else rng.randrange(1, 4)
    members, games = [], []
    for m in range(n_members):
        gs = [random_game(rng, rng.randrange(1, 30), False) for _ in range(rng.randrange(1, 3))]
        games += gs
        members.append((f"d/{m}.pgn", "".join(write_game(g) for g in gs).encode()))
    if edit == "bomb":            # a member far past the limit that compresses to almost nothing
        members.insert(rng.randrange(len(members) + 1), ("bomb.pgn", b"\n" * (ARCHIVE_LIMIT * rng.randrange(2, 60))))
    data = _pack(kind, members)
    if edit == "flip" and data:
        data = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        data = bytes(data)
    elif edit == "truncate":
        data = data[:rng.randrange(len(data) + 1)]
    elif edit == "insert":
        at = rng.randrange(len(data) + 1)
        data = data[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))) + data[at:]
    elif edit == "zip_fields" and kind == "zip":
        data = bytearray(data)
        cd = data.find(b"PK\x01\x02")
        field_at = rng.choice([4, 6, 8, 10, 20, 24, 28, 42])     # versions, flags, method, sizes, name length, offset
        target = cd + field_at if cd >= 0 and rng.random() < 0.7 else rng.choice([4, 6, 8, 18, 22, 26])
        if target < len(data) - 1:
            data[target] = rng.randrange(256)
            data[target + 1] = rng.randrange(256)
        data = bytes(data)
    elif edit == "duplicate_entries" and kind == "zip":
        cd, end = data.find(b"PK\x01\x02"), data.find(b"PK\x05\x06")
        copies = rng.randrange(2, 60)
        entries = data[cd:end] * copies
        tail = bytearray(data[end:])
        count = int.from_bytes(tail[10:12], "little") * copies
        tail[8:10] = tail[10:12] = (count & 0xFFFF).to_bytes(2, "little")
        tail[12:16] = len(entries).to_bytes(4, "little")
        data = data[:cd] + entries + bytes(tail)
    intact = edit in ("none", "bomb") or (edit in ("zip_fields", "duplicate_entries") and kind != "zip")
    if edit == "bomb" and kind.startswith("pgn."):
        games = []                     # the one file is past the limit: skipped with a warning
    return f"fuzz.{kind}", data, [key(g) for g in games] if intact else None


def check_archive(name: str, data: bytes, expected: list[tuple] | None) -> None:
    """Reading never raises (every problem is a warning), no member yields more than the limit, the Python memory
    held stays under the cap, and an intact archive gives back exactly its games."""
    import tempfile
    import tracemalloc
    from pathlib import Path

    from xiangqi_gpt.records.sources import SourceReader

    from xiangqi_gpt.records.pgn import clear_caches

    clear_caches()      # the reader's bounded caches fill across inputs: a dict that grows during one read would
                        # count its new table (up to tens of MB) towards this read, depending on what came before
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        warnings: list[str] = []
        got = []
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            for label, text in SourceReader([str(path)], warnings.append, lambda n: None,
                                            max_member_bytes=ARCHIVE_LIMIT):
                assert len(text) <= ARCHIVE_LIMIT, (label, len(text))
                try:
                    for item in read_games(text, name=label):
                        assert isinstance(item, (Game, PgnError)), item
                        if isinstance(item, Game):
                            got.append(key(item))
                except PgnError as e:           # the whole member unreadable (binary): one line, as prepare warns
                    assert "\n" not in str(e) and expected is None, str(e)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            if not tracing:
                tracemalloc.stop()
        assert peak <= ARCHIVE_MEMORY_CAP, f"{peak:,} bytes held while reading {len(data):,}"
        assert all("\n" not in w for w in warnings), warnings
        if expected is not None:
            assert got == expected, (warnings, len(got), len(expected))


# --------------------------------------------------------------------------------------------------------------
# model: crafted model files
# --------------------------------------------------------------------------------------------------------------

MODEL_EDITS = ("none", "nan", "inf", "shape", "drop", "extra", "not_tensor", "info", "config_type", "config_huge",
               "config_block", "config_vocab", "flip", "truncate", "lightning")
_TINY: list = []


def _tiny_payload() -> dict:
    import torch
    from dataclasses import asdict

    from xiangqi_gpt.model.gpt import GPT, GPTConfig

    if not _TINY:
        torch.manual_seed(0)
        model = GPT(GPTConfig(tokenizer="move", block_size=16, n_layer=1, n_head=2, n_embd=16))
        _TINY.append({"format": "xiangqi-gpt-model", "version": 1, "config": asdict(model.config),
                      "state_dict": {k: v.clone() for k, v in model.state_dict().items()}, "info": {}})
    p = _TINY[0]
    return {**p, "config": dict(p["config"]), "state_dict": {k: v.clone() for k, v in p["state_dict"].items()},
            "info": {}}


@st.composite
def model_inputs(draw):
    """(file bytes, edit): a tiny exported model, crafted."""
    import torch

    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    edit = draw(st.sampled_from(MODEL_EDITS))
    p = _tiny_payload()
    state = p["state_dict"]
    name = rng.choice(sorted(state))
    if edit in ("nan", "inf") and state[name].numel():
        flat = state[name].view(-1)
        flat[rng.randrange(flat.numel())] = float("nan") if edit == "nan" else rng.choice([1, -1]) * float("inf")
    elif edit == "shape":
        state[name] = torch.zeros(*(d + rng.choice([-1, 1]) if d > 1 else d for d in state[name].shape))
    elif edit == "drop":
        del state[name]
    elif edit == "extra":
        state["x.weight"] = torch.zeros(2)
    elif edit == "not_tensor":
        state[name] = rng.choice([1.5, "w", [1.0, 2.0], None, {"a": 1}])
    elif edit == "info":
        p["info"] = rng.choice(["text", 3, [1], {"mirror_ensemble": rng.choice(["x", -1, 2.0, None, [0.5]])}])
    elif edit == "config_type":
        p["config"][rng.choice(sorted(p["config"]))] = rng.choice(["x", -1, 0, 1.5, None, [], True, 10**30])
    elif edit == "config_huge":
        p["config"].update(n_embd=1 << rng.randrange(12, 22), n_head=2)
    elif edit == "config_block":
        p["config"]["block_size"] = 1 << rng.randrange(20, 50)
    elif edit == "config_vocab":
        p["config"]["vocab_size"] = rng.choice([1, 10, 10**12])
    elif edit == "lightning":
        hp = dict(p["config"])
        p = {"state_dict": rng.choice([{"model." + k: v for k, v in state.items()}, [1], "x"]),
             "hyper_parameters": rng.choice([hp, "x", [1]]), "global_step": rng.choice([3, "x", None, [1]]),
             "callbacks": rng.choice([{"ModelCheckpoint{}": {"current_score": rng.choice([1.0, "x", [1]])}}, 1])}
    buf = io.BytesIO()
    torch.save(p, buf)
    data = buf.getvalue()
    if edit == "flip":
        data = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        data = bytes(data)
    elif edit == "truncate":
        data = data[:rng.randrange(len(data))]
    return data, edit


def check_model(data: bytes, edit: str) -> None:
    """Loading gives a one-line CheckpointError, or a model with finite weights whose player picks a legal move."""
    import tempfile
    from pathlib import Path

    import torch

    from xiangqi_gpt.model.checkpoint import load_model
    from xiangqi_gpt.errors import CheckpointError
    from xiangqi_gpt.play.player import GPTPlayer

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.pt"
        path.write_bytes(data)
        try:
            loaded = load_model(path)
        except CheckpointError as e:
            assert "\n" not in str(e) and str(e), str(e)
            assert edit != "none", str(e)
            return
    assert edit not in ("nan", "inf"), "non-finite weights were accepted"
    assert all(bool(torch.isfinite(t).all()) for t in loaded.model.parameters())
    board = Board()
    assert GPTPlayer(loaded).choose(board) in board.legal_moves()


# --------------------------------------------------------------------------------------------------------------
# transform: record transforms that must not change the games read
# --------------------------------------------------------------------------------------------------------------

TRANSFORMS = ("crlf", "cr", "bom", "concat", "mixed_encodings", "tag_line_movetext", "clock_comments")


@st.composite
def transform_inputs(draw):
    """(bytes, expected): one to three PGN files, each in its own encoding, line ends and byte-order mark,
    concatenated; the games and their Event tags must read back exactly."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    chosen = draw(st.lists(st.sampled_from(TRANSFORMS), max_size=4, unique=True))
    notation = draw(st.sampled_from(["iccs", "wxf", "chinese"]))
    n_files = rng.randrange(2, 4) if "concat" in chosen or "mixed_encodings" in chosen else 1
    base = draw(st.sampled_from(["utf-8", "gb18030", "big5"]))
    data, expected = b"", []
    for _ in range(n_files):
        encoding = rng.choice(["utf-8", "gb18030", "big5"]) if "mixed_encodings" in chosen else base
        games = [random_game(rng, rng.randrange(1, 40), rng.random() < 0.2) for _ in range(rng.randrange(1, 4))]
        file_notation = "chinese-traditional" if notation == "chinese" and encoding == "big5" else notation
        rendered = _render(rng, games, file_notation, encoding, [])
        for lines in rendered:
            if "tag_line_movetext" in chosen and rng.random() < 0.5:
                at = lines.index("")                 # the blank line after the tags
                if at + 1 < len(lines) and lines[at + 1]:
                    lines[at - 1] += " " + lines.pop(at + 1)
            if "clock_comments" in chosen and rng.random() < 0.5:
                body = [i for i, line in enumerate(lines) if line and not line.startswith("[")]
                if len(body) > 1:
                    lines.insert(rng.choice(body[1:]), "[%clk 0:05:00]")
        newline = "\n"
        if "crlf" in chosen or "cr" in chosen:
            newline = rng.choice([x for x, t in (("\r\n", "crlf"), ("\r", "cr")) if t in chosen])
        text = newline.join(line for lines in rendered for line in lines) + newline
        if "bom" in chosen and encoding == "utf-8":
            text = "\ufeff" + text
        data += _encode(text, encoding)
        expected += [key(g) + (g.headers["Event"],) for g in games]
    return data, expected


def check_transform(data: bytes, expected: list[tuple]) -> None:
    items = list(read_games(data, name="fuzz.pgn"))
    got = [key(i) + (i.headers.get("Event"),) if isinstance(i, Game) else str(i) for i in items]
    assert got == expected, (got, expected)


TARGETS = {
    "move": (move_inputs(), lambda args: check_move(*args)),
    "fen": (fen_inputs(), lambda args: check_fen(*args)),
    "pgn": (pgn_inputs(), lambda args: check_pgn(*args)),
    "engine": (engine_inputs(), check_engine),
    "session": (session_inputs(), lambda args: check_session(*args)),
    "archive": (archive_inputs(), lambda args: check_archive(*args)),
    "model": (model_inputs(), lambda args: check_model(*args)),
    "transform": (transform_inputs(), lambda args: check_transform(*args)),
}

