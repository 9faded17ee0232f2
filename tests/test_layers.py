"""The layers stay importable on their own: the rules layer needs no torch, teaforn needs no xiangqi code, and the
model knows tokens, not boards."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["xiangqi_gpt", "xiangqi_gpt.board", "xiangqi_gpt.notation", "xiangqi_gpt.pgn",
                                    "xiangqi_gpt.corpus", "xiangqi_gpt.tokenizer", "xiangqi_gpt.cli"])
def test_rules_layer_imports_no_torch(module):
    assert "torch" not in _loaded_after_import(module)


def test_teaforn_imports_no_xiangqi_code():
    loaded = _loaded_after_import("teaforn")
    assert "torch" in loaded
    assert not [m for m in loaded if m.startswith("xiangqi_gpt")]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("name", ["model.py", "data.py", "training.py"])
def test_model_side_knows_tokens_not_boards(name):
    board_modules = {".board", ".notation", ".pgn", "xiangqi_gpt.board", "xiangqi_gpt.notation", "xiangqi_gpt.pgn"}
    assert not _imports(ROOT / "xiangqi_gpt" / name) & board_modules
