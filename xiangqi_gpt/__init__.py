"""xiangqi-gpt: a GPT that plays xiangqi (Chinese chess), with its own rule engine as referee.

The package top names the public API, as python-chess's ``chess`` does. Importing it needs no torch: the model's
names (``GPT``, ``GPTConfig``, ``load_model``) are imported on first use. The layers, each importable on its own:
``rules`` < ``records`` < ``data`` < ``model`` < ``play`` (imports go only downward; the first three need no torch).
"""

from .errors import (AmbiguousMoveError, CheckpointError, ConfigError, DatasetError, FenError,
                     IllegalMoveError, InvalidMoveError, MoveError, PgnError, XiangqiError)
from .rules.board import BLACK, RED, STARTING_FEN, Board, Move, Outcome
from .rules.notation import format_move, move_to_chinese, move_to_wxf, parse_move
from .records.pgn import Game, read_games, write_game, write_games
from .data.tokenizer import SOURCES, get_tokenizer
from .data.prepare import load_meta
from .model.checkpoint import DEFAULT_PATH, FORMAT

__version__ = "0.1.0"

_LAZY = {"GPT": ("model.gpt", "GPT"), "GPTConfig": ("model.gpt", "GPTConfig"),
         "load_model": ("model.checkpoint", "load_model")}


def __getattr__(name: str):
    """The torch-backed names, imported when first used."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Board", "Move", "Outcome", "RED", "BLACK", "STARTING_FEN",
           "parse_move", "format_move", "move_to_wxf", "move_to_chinese",
           "Game", "read_games", "write_game", "write_games",
           "get_tokenizer", "SOURCES", "load_meta",
           "GPT", "GPTConfig", "load_model", "DEFAULT_PATH", "FORMAT",
           "XiangqiError", "FenError", "MoveError", "InvalidMoveError", "IllegalMoveError", "AmbiguousMoveError",
           "PgnError", "DatasetError", "CheckpointError", "ConfigError"]
