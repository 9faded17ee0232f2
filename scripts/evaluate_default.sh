#!/usr/bin/env bash
# Measure a model the way docs/default_model.md reports it: evaluate on the held-out test split (master games, in
# the master condition) and on the first 200 games of the engine test split (in the engine condition), then arena
# matches against a random mover and Fairy-Stockfish (depth 1, Skill Level 0, UCI_Elo 1350), and the pure GPT
# (level 0) in the strong condition against depth 1, whose illegal-attempt rate the README's model table reports.
#
#   scripts/evaluate_default.sh [MODEL.pt] [OUT_DIR] [GAMES]
#
# Defaults: the shipped model, docs/default, 20 games per match. Needs data/ccpd (python -m xiangqi_gpt prepare).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-xiangqi_gpt/checkpoints/default.pt}"
out="${2:-docs/default}"
games="${3:-20}"
py=.venv/bin/python
mkdir -p "$out"
$py -m xiangqi_gpt evaluate --checkpoint "$model" --pgn data/ccpd/test.pgn --free-run-every 8 --json "$out/evaluate.json" --plots "$out"
$py -m xiangqi_gpt evaluate --checkpoint "$model" --pgn data/ccpd/engine/test.pgn --limit 200 --source engine --json "$out/evaluate_engine.json"
$py -m xiangqi_gpt arena --checkpoint "$model" --opponent fairy-stockfish --depth 1 --style strong --games "$games" --json "$out/arena_fsf_depth1_strong.json" --pgn "$out/arena_fsf_depth1_strong.pgn"
$py -m xiangqi_gpt arena --checkpoint "$model" --opponent random --games "$games" --json "$out/arena_random.json" --pgn "$out/arena_random.pgn"
$py -m xiangqi_gpt arena --checkpoint "$model" --opponent fairy-stockfish --depth 1 --games "$games" --json "$out/arena_fsf_depth1.json" --pgn "$out/arena_fsf_depth1.pgn"
$py -m xiangqi_gpt arena --checkpoint "$model" --opponent fairy-stockfish --skill 0 --movetime 100 --games "$games" --json "$out/arena_fsf_skill0.json" --pgn "$out/arena_fsf_skill0.pgn"
$py -m xiangqi_gpt arena --checkpoint "$model" --opponent fairy-stockfish --elo 1350 --movetime 100 --games "$games" --json "$out/arena_fsf_elo1350.json" --pgn "$out/arena_fsf_elo1350.pgn"
# The same two headline matches with the rules' one-move safety net (player.py: take a win, never lose at once,
# avoid moves that allow mate in one).
$py -m xiangqi_gpt arena --checkpoint "$model" --opponent random --safety --games "$games" --json "$out/arena_random_safety.json" --pgn "$out/arena_random_safety.pgn"
$py -m xiangqi_gpt arena --checkpoint "$model" --opponent fairy-stockfish --depth 1 --safety --games "$games" --json "$out/arena_fsf_depth1_safety.json" --pgn "$out/arena_fsf_depth1_safety.pgn"
