"""The package by layer: rules < records < data < model < play. Imports go only downward, the three lower layers
need no torch, teaforn needs no xiangqi code, and the model knows tokens, not boards."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "xiangqi_gpt"
LAYERS = ["rules", "records", "data", "model", "play"]
BASE = {"errors", "console", "outpaths"}   # below every layer
TOP = {"__init__", "__main__", "cli"}  # may use every layer


def _loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _modules(layer: str) -> list[str]:
    return sorted(f"xiangqi_gpt.{layer}.{p.stem}" for p in (PKG / layer).glob("*.py") if p.stem != "__init__")


def test_every_module_sits_in_a_layer():
    loose = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in BASE | TOP)
    assert loose == []


@pytest.mark.parametrize("module", ["xiangqi_gpt", *[m for layer in LAYERS[:3] for m in _modules(layer)]])
def test_lower_layers_import_no_torch(module):
    assert "torch" not in _loaded_after_import(module)


def test_package_top_names_the_public_api_lazily():
    code = ("import sys, xiangqi_gpt as x; assert 'torch' not in sys.modules; "
            "b = x.Board(); assert x.read_games and x.load_meta and x.get_tokenizer('move').vocab_size; "
            "assert x.FORMAT and x.DEFAULT_PATH.name == 'default.pt'; "
            "m = x.load_model(); assert isinstance(m.model, x.GPT) and isinstance(m.model.config, x.GPTConfig); "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_teaforn_imports_no_xiangqi_code():
    loaded = _loaded_after_import("teaforn")
    assert "torch" in loaded
    assert not [m for m in loaded if m.startswith("xiangqi_gpt")]


def _imported_layers(path: Path) -> set[str]:
    """The package parts (layer names or base modules) a module imports, relative or absolute."""
    rel = path.relative_to(PKG).with_suffix("").parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:-1])[:len(rel) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
                targets = [parts] if node.module else [base + [a.name] for a in node.names]
            elif node.module and node.module.startswith("xiangqi_gpt"):
                targets = [node.module.split(".")[1:]]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[1:] for a in node.names if a.name.startswith("xiangqi_gpt")]
        for t in targets:
            if t:
                names.add(t[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_go_only_downward(layer):
    allowed = set(LAYERS[:LAYERS.index(layer) + 1]) | BASE
    for path in (PKG / layer).glob("*.py"):
        upward = _imported_layers(path) - allowed
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)} from above its layer"


def test_base_modules_import_no_layer():
    for name in BASE:
        path = PKG / f"{name}.py"
        if path.exists():
            assert not _imported_layers(path) & set(LAYERS), name


@pytest.mark.parametrize("name", ["gpt.py", "datamodule.py", "training.py"])
def test_model_side_knows_tokens_not_boards(name):
    assert not _imported_layers(PKG / "model" / name) & {"rules", "records"}
