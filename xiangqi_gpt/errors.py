"""Exception types. Every user-facing error is a :class:`XiangqiError` whose ``str`` is one clear line."""

from __future__ import annotations


class XiangqiError(Exception):
    """Base class for every error the project raises on bad input."""


class FenError(XiangqiError, ValueError):
    """A malformed or impossible FEN string."""


class MoveError(XiangqiError, ValueError):
    """A move that cannot be used in the current position."""


class InvalidMoveError(MoveError):
    """Text that does not parse as a move in any supported notation."""


class IllegalMoveError(MoveError):
    """A move that parses but is not legal in the position."""


class AmbiguousMoveError(MoveError):
    """A move text that matches more than one legal move."""


class PgnError(XiangqiError):
    """A game record that cannot be read. Names the file, the game and the ply where known."""

    def __init__(self, message: str, path: str | None = None, game: int | None = None, ply: int | None = None):
        self.path, self.game, self.ply = path, game, ply
        where = []
        if path:
            where.append(str(path))
        if game is not None:
            where.append(f"game {game}")
        if ply is not None:
            where.append(f"ply {ply}")
        self.reason = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class DatasetError(XiangqiError):
    """A missing, corrupt or mismatched dataset."""


class CheckpointError(XiangqiError):
    """A missing, corrupt or mismatched model checkpoint."""


class ConfigError(XiangqiError, ValueError):
    """A configuration value that cannot be used."""
