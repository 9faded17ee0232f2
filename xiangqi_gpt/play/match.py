"""Playing games: the :class:`Player` protocol, the game loop :func:`play_game` (refereed by :class:`Board`), a
random player and the Fairy-Stockfish player, the two-ply opening book :data:`OPENINGS` and the
:class:`GameRecord`. ``arena`` and ``selfplay`` both play through here."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from ..rules.board import BLACK, RED, STARTING_FEN, Board, Move
from ..errors import InvalidMoveError, XiangqiError
from .fairy import EngineError, FairyStockfish

DEFAULT_MAX_PLIES = 300
DEFAULT_FAIRY_DEPTH = 3
PLY_CAP = "ply_cap"     # the termination of a game stopped at max_plies (scored as a draw)

#: two-ply opening lines (Red's first move, Black's reply), all common in master play
OPENINGS: list[tuple[str, str]] = [
    ("h2e2", "h9g7"),   # central cannon vs screen horse
    ("h2e2", "b9c7"),   # central cannon vs left horse
    ("h2e2", "h7e7"),   # same-direction cannons
    ("h2e2", "b7e7"),   # opposite-direction cannons
    ("c3c4", "b7c7"),   # pawn opening vs cannon to the pawn's file
    ("g3g4", "h9g7"),   # pawn opening vs horse
    ("c3c4", "c6c5"),   # pawn vs pawn
    ("c0e2", "h9g7"),   # elephant opening
    ("g0e2", "b9c7"),   # elephant opening (other side)
    ("h0g2", "b9c7"),   # horse opening
    ("b0c2", "h9g7"),   # horse opening (other side)
    ("b2d2", "h9g7"),   # palace-corner cannon
]


class GameError(XiangqiError):
    """A game could not be finished: a player chose an illegal move (or failed in a way its caller reports)."""


# --------------------------------------------------------------------------------------------------------------------
# Players


class Player(Protocol):
    """One side of a game. ``name`` names it in records and PGN tags."""

    name: str

    def choose(self, board: Board) -> Move:
        """The move to play in ``board`` (the game so far is on its move stack). Called only when the game is not
        over. The referee checks the move; an illegal one stops the game with a :class:`GameError`."""


class ModelPlayer(Protocol):
    """A player that also ranks its moves (``GPTPlayer``, ``SearchPlayer``): what the terminal and the UCI engine
    use."""

    def move_probs(self, board: Board) -> list[tuple[Move, float]]:
        """Every legal move with its probability, most likely first."""

    def choose(self, board: Board) -> Move:
        """The move to play in ``board``."""


class RandomPlayer:
    """Uniformly random legal moves from a seeded RNG (the moves are sorted first, so a seed gives the same game on
    every machine)."""

    def __init__(self, seed: int | None = 0, name: str = "random"):
        self.rng = random.Random(seed)
        self.name = name

    def new_game(self) -> None:
        """Nothing to reset: the RNG runs on from game to game."""

    def choose(self, board: Board) -> Move:
        moves = sorted(board.legal_moves(), key=lambda m: (m.from_square, m.to_square))
        return self.rng.choice(moves)

    def close(self) -> None:
        """Nothing to release."""


class FairyPlayer:
    """Fairy-Stockfish (UCI, variant xiangqi) as a player, through a :class:`~xiangqi_gpt.play.fairy.FairyStockfish`.

    Each move is searched to ``depth`` plies and/or for ``movetime`` ms (neither: depth
    :data:`DEFAULT_FAIRY_DEPTH`), at Skill Level ``skill`` and ``UCI_Elo`` ``elo`` when given. Its answer is checked
    here: no move where our rules have one, text that is not a move, or an illegal move raises
    :class:`~xiangqi_gpt.play.fairy.EngineError`. Several players may share one engine (both sides of a self-play
    game); :meth:`start` makes a player with an engine of its own, which :meth:`close` ends."""

    def __init__(self, engine: FairyStockfish, depth: int | None = None, movetime: int | None = None,
                 skill: int | None = None, elo: int | None = None, name: str | None = None):
        self.engine = engine
        self.depth = DEFAULT_FAIRY_DEPTH if depth is None and movetime is None else depth
        self.movetime, self.skill, self.elo = movetime, skill, elo
        self.owns_engine = False
        limits = [f"depth {self.depth}" if self.depth is not None else None,
                  f"movetime {movetime}ms" if movetime is not None else None,
                  f"skill {skill}" if skill is not None else None, f"elo {elo}" if elo is not None else None]
        self.name = name or f"{engine.name} ({', '.join(x for x in limits if x)})"

    @classmethod
    def start(cls, depth: int | None = None, movetime: int | None = None, skill: int | None = None,
              elo: int | None = None, path: str | None = None, name: str | None = None) -> "FairyPlayer":
        """A player with its own engine process (one thread, 16 MB hash), found at ``path`` or automatically."""
        engine = FairyStockfish(path, skill=skill, elo=elo, options={"Threads": 1, "Hash": 16})
        player = cls(engine, depth, movetime, skill, elo, name)
        player.owns_engine = True
        return player

    def new_game(self) -> None:
        """Clear the engine's hash before an unrelated game."""
        self.engine.new_game()

    def choose(self, board: Board) -> Move:
        text = self.engine.bestmove(board.root_fen(), [m.iccs() for m in board.move_stack], depth=self.depth,
                                    movetime=self.movetime, skill=self.skill, elo=self.elo)
        if text is None:
            raise EngineError(f"Fairy-Stockfish found no move in {board.fen()}, where our rules have "
                              f"{len(board.legal_moves())} legal moves")
        try:
            move = Move.from_iccs(text)
        except InvalidMoveError:
            raise EngineError(f"Fairy-Stockfish answered {text!r}, not a move, in {board.fen()}") from None
        reason = board.why_illegal(move)
        if reason is not None:
            raise EngineError(f"Fairy-Stockfish played the illegal move {text} in {board.fen()}: {reason}")
        return move

    def close(self) -> None:
        """End the engine if this player started it (:meth:`start`); a shared engine is its owner's to close."""
        if self.owns_engine:
            self.engine.close()


# --------------------------------------------------------------------------------------------------------------------
# The game loop


@dataclass
class GameRecord:
    """A finished game: ``moves`` (ICCS, from the standard start, ``opening`` included), ``result`` (PGN, Red's
    view), ``termination`` (an :class:`~xiangqi_gpt.rules.board.Outcome` termination, or :data:`PLY_CAP`) and
    ``reason`` (the same in words)."""

    opening: list[str]
    moves: list[str]
    result: str
    termination: str
    reason: str

    @property
    def plies(self) -> int:
        return len(self.moves)

    @property
    def winner(self) -> int | None:
        """``RED``, ``BLACK`` or None for a draw."""
        return {"1-0": RED, "0-1": BLACK}.get(self.result)


def play_game(red: Player, black: Player, opening: Sequence[str] = (), max_plies: int = DEFAULT_MAX_PLIES,
              on_move: Callable[[Board], None] | None = None) -> GameRecord:
    """One game from the standard start: the ``opening`` moves (ICCS), then ``red`` and ``black`` choose in turn.
    Every move is refereed by :class:`Board` (an illegal one raises :class:`GameError`); the game ends by
    :meth:`Board.outcome` (checkmate, stalemate, repetition, perpetual check, the 60-move limit), or after
    ``max_plies`` plies in all (the opening counted) as a draw with termination :data:`PLY_CAP`.
    ``on_move(board)`` is called after every move the players make. Errors of the players propagate."""
    board = Board(STARTING_FEN)
    for text in opening:
        board.push_iccs(text)
    players = {RED: red, BLACK: black}
    while True:
        outcome = board.outcome()
        if outcome is not None:
            result, termination, reason = outcome.result(), outcome.termination, outcome.reason
            break
        if board.ply >= max_plies:
            result, termination, reason = "1/2-1/2", PLY_CAP, f"stopped after {max_plies} plies (scored as a draw)"
            break
        player = players[board.turn]
        move = player.choose(board)
        why = board.why_illegal(move)
        if why is not None:
            raise GameError(f"{player.name} played the illegal move {move.iccs()} in {board.fen()}: {why}")
        board.push(move, validate=False)
        if on_move is not None:
            on_move(board)
    return GameRecord(opening=list(opening), moves=[m.iccs() for m in board.move_stack], result=result,
                      termination=termination, reason=reason)
