"""xiangqi-gpt: a GPT that plays xiangqi (Chinese chess), with its own rule engine as referee.

Importing the package is light: the rule engine, notation and records need no torch.
"""

from .board import BLACK, RED, STARTING_FEN, Board, Move, Outcome
from .errors import (AmbiguousMoveError, CheckpointError, ConfigError, DatasetError, FenError, IllegalMoveError,
                     InvalidMoveError, MoveError, PgnError, XiangqiError)

__version__ = "0.1.0"

__all__ = ["Board", "Move", "Outcome", "RED", "BLACK", "STARTING_FEN", "XiangqiError", "FenError", "MoveError",
           "InvalidMoveError", "IllegalMoveError", "AmbiguousMoveError", "PgnError", "DatasetError",
           "CheckpointError", "ConfigError"]
