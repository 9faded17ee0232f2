"""Output paths checked before the work: a command that writes a file or a folder says at once, in one line, when
it could not (a folder where a file goes, a file among the parent folders, no write permission, a NUL byte)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import XiangqiError


def _nearest_existing(path: Path) -> Path:
    for folder in path.parents:
        if folder.exists():
            return folder
    return Path(".")


def _check_parents(path: Path, option: str) -> None:
    folder = _nearest_existing(path)
    if not folder.is_dir():
        raise XiangqiError(f"{option} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise XiangqiError(f"{option} {path}: cannot write in {folder} (permission denied)")


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Raise :class:`XiangqiError` (one line naming ``option``) unless a file can be written at ``path``."""
    try:
        p = Path(path)
        if p.is_dir():
            raise XiangqiError(f"{option} {path}: a folder; give a file name")
        if p.exists() and not os.access(p, os.W_OK):
            raise XiangqiError(f"{option} {path}: cannot write the file (permission denied)")
        _check_parents(p, option)
    except ValueError as e:               # a NUL byte in the name
        raise XiangqiError(f"{option} {path!r}: not a usable file name ({e})") from None
    return p


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Raise :class:`XiangqiError` (one line naming ``option``) unless a folder can be made or written at ``path``."""
    try:
        p = Path(path)
        if p.exists():
            if not p.is_dir():
                raise XiangqiError(f"{option} {path}: a file, not a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                raise XiangqiError(f"{option} {path}: cannot write in the folder (permission denied)")
        else:
            _check_parents(p, option)
    except ValueError as e:
        raise XiangqiError(f"{option} {path!r}: not a usable folder name ({e})") from None
    return p
