"""Load a script of ``studies/`` (or ``benchmarks/``) as a module, for the tests of its pure parts (the scripts are not a package).

``studies/`` is on pytest's ``pythonpath`` (pyproject.toml), so a script's imports of its neighbours
(``from teaforn_study import ...``) resolve."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"


def load_script(name: str, folder: str = "studies"):
    """``studies/<name>.py`` (or ``<folder>/<name>.py``, e.g. ``benchmarks``) as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
