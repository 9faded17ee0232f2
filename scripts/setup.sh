#!/usr/bin/env bash
# Set up this checkout on a fresh Debian/Ubuntu machine: Fairy-Stockfish (the sparring engine for tests and
# matches), a virtual environment in .venv and the project installed into it in editable mode.
#
#   ./scripts/setup.sh          # what playing needs
#   ./scripts/setup.sh --dev    # plus the test tools (pytest, pytest-xdist, cchess)
#
# Safe to run again: the apt step runs only when something is missing, pip only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
stamp=".venv/.setup-base"
if [[ "${1:-}" == "--dev" ]]; then
    extras="[dev]"
    stamp=".venv/.setup-dev"
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--dev]" >&2
    exit 2
fi

# System packages: Fairy-Stockfish, and venv support (Debian ships it separately from python3).
missing=()
command -v fairy-stockfish >/dev/null 2>&1 || [[ -x /usr/games/fairy-stockfish ]] || missing+=(fairy-stockfish)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
if [[ ${#missing[@]} -gt 0 ]]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        if [[ "$(id -u)" -ne 0 ]]; then
            sudo="sudo"
        fi
        $sudo apt-get update
        $sudo apt-get install -y "${missing[@]}"
    else
        echo "setup: no apt-get here; please install: ${missing[*]} (Fairy-Stockfish tests will be skipped)" >&2
    fi
fi

# Python environment. pyproject.toml pins torch>=2.2,<2.14.
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    .venv/bin/python -m pip install -e ".${extras}"
    touch "$stamp"
fi
