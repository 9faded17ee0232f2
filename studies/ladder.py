"""The Elo ladder: every strength level against fixed opponents, and how human the searched moves are.

    .venv/bin/python studies/ladder.py [--levels 0,1,2,3,4]
        [--opponents random,fsf-d1,fsf-d2,fsf-d3,fsf-skill0,fsf-skill5] [--games 20] [--jobs 1]
        [--human-games 100] [--human-stride 4] [--human-levels DEFAULT] [--report-only]

Each pairing (level, opponent) is an arena match (``xiangqi_gpt.play.arena.run_match``): ``--games`` games, our side Red
in odd games, both colours from each book opening (``arena.opening_schedule``, seed 0: every pairing gets the same
openings), the model sampling its first 8 plies at temperature 1 (a searching level keeps a sampled move only when
its search scores it within ``search.SAMPLE_MARGIN_CP`` of its best), greedy after that; 300 plies is a draw.
Opponents: ``random`` (a uniformly random legal mover), ``fsf-dN`` (Fairy-Stockfish at depth N, full strength),
``fsf-skillS`` (Fairy-Stockfish Skill Level S, 100 ms per move, as in the README's earlier arena table).

Finished pairings are kept in ``docs/ladder.json`` (with the sha256 of the model and of search.py): a rerun skips
them, so an interrupted ladder resumes; a changed model or search.py moves the old json aside and starts afresh.
``--jobs J`` runs J pairings at a time in separate processes (one torch thread each).

Human moves: on the first ``--human-games`` games of ``data/ccpd/test.pgn`` (every ``--human-stride``-th position),
how often the level's move equals the move the master played, against level 0's top-1 (the pure GPT), overall and
where material is level (equal material by the search's piece values).

Writes ``docs/ladder.md`` (tables), ``docs/ladder.png`` (score against level, one line per opponent) and
``docs/ladder.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "docs" / "ladder.json"
OPPONENTS = {
    "random": {"label": "random mover"},
    "fsf-d1": {"label": "Fairy-Stockfish depth 1", "depth": 1},
    "fsf-d2": {"label": "Fairy-Stockfish depth 2", "depth": 2},
    "fsf-d3": {"label": "Fairy-Stockfish depth 3", "depth": 3},
    "fsf-skill0": {"label": "Fairy-Stockfish Skill 0 (100 ms)", "skill": 0, "movetime": 100},
    "fsf-skill5": {"label": "Fairy-Stockfish Skill 5 (100 ms)", "skill": 5, "movetime": 100},
}


def model_path(checkpoint: str | None) -> Path:
    return Path(checkpoint) if checkpoint else ROOT / "xiangqi_gpt" / "checkpoints" / "default.pt"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _player(checkpoint, level: int):
    import torch

    from xiangqi_gpt.play.player import GPTPlayer
    from xiangqi_gpt.play.search import SearchPlayer

    torch.set_num_threads(1)
    gpt = GPTPlayer.load(checkpoint, seed=0)
    return gpt if level == 0 else SearchPlayer(gpt, level)


def play_pairing(checkpoint: str | None, level: int, opponent: str, games: int) -> dict:
    """One pairing; runs in a worker process."""
    from xiangqi_gpt.play.arena import DEFAULT_SAMPLE_PLIES, opening_schedule, play_game, summarize
    from xiangqi_gpt.rules.board import BLACK, RED
    from xiangqi_gpt.play.fairy import EngineError
    from xiangqi_gpt.play.match import DEFAULT_MAX_PLIES, FairyPlayer, RandomPlayer

    player = _player(checkpoint, level)
    gpt = player if level == 0 else player.player
    spec = OPPONENTS[opponent]

    def new_opponent():
        return RandomPlayer(0) if opponent == "random" else FairyPlayer.start(
            depth=spec.get("depth"), movetime=spec.get("movetime"), skill=spec.get("skill"))

    opp = new_opponent()
    t0 = time.perf_counter()
    records = []
    openings = opening_schedule(games, 0)       # the games of arena.run_match(seed=0), one at a time
    try:
        for i in range(games):
            for attempt in range(3):
                state = gpt.rng.getstate()
                try:
                    records.append(play_game(player, opp, RED if i % 2 == 0 else BLACK, openings[i],
                                             DEFAULT_MAX_PLIES, DEFAULT_SAMPLE_PLIES, 1.0, round_=i + 1))
                    break
                except EngineError as e:     # Fairy-Stockfish died (e.g. killed from outside): replay the game
                    if attempt == 2:
                        raise
                    print(f"level {level} vs {opponent}, game {i + 1}: {e}; restarting the engine", flush=True)
                    gpt.rng.setstate(state)
                    opp.close()
                    opp = new_opponent()
    finally:
        opp.close()
    s = summarize(records)
    return {"level": level, "opponent": opponent, "opponent_name": opp.name, "games": s["games"],
            "wins": s["wins"], "draws": s["draws"], "losses": s["losses"], "score": s["score"], "elo": s["elo"],
            "ms_per_move": s["model_ms_per_move"], "cpu_ms_per_move": s.get("model_cpu_ms_per_move"),
            "nodes_per_move": s["model_nodes_per_move"],
            "average_length": s["average_length"], "terminations": s["terminations"],
            "seconds": round(time.perf_counter() - t0, 1),
            "games_moves": [{"color": r.model_color, "result": r.result, "termination": r.termination,
                             "moves": " ".join(r.moves)} for r in records]}


def human_match(checkpoint: str | None, level: int, n_games: int, stride: int) -> dict:
    """How often ``level``'s move is the human's, on every ``stride``-th position of the first test games."""
    player = _player(checkpoint, level)
    gpt = player if level == 0 else player.player
    result = human_agreement(player, gpt, ROOT / "data" / "ccpd" / "test.pgn", n_games, stride)
    return {"level": level, **result}


def human_agreement(player, gpt, pgn: Path, n_games: int, stride: int) -> dict:
    """How often ``player``'s move is the human's, on every ``stride``-th position of the first ``n_games`` games
    of ``pgn``, against ``gpt``'s top-1 on the same positions; also on the positions where material is level.
    (The report uses the test split, as the issue asks; design choices are made with bench_search.py --human,
    which runs this on the val split.)"""
    from xiangqi_gpt.rules.board import Board
    from xiangqi_gpt.records.pgn import read_games
    from xiangqi_gpt.play.search import material

    total = same = same_gpt = level_n = level_same = level_same_gpt = 0
    t0 = time.perf_counter()
    for i, game in enumerate(read_games(str(pgn))):
        if i >= n_games:
            break
        if isinstance(game, Exception):
            continue
        board = Board(game.root_fen)
        if hasattr(player, "searcher"):
            player.searcher.clear()
        for ply, human in enumerate(game.moves):
            if ply % stride == 0 and board.legal_moves():
                ours = player.choose(board)
                top1 = ours if gpt is player else gpt.choose(board)
                total += 1
                same += ours == human
                same_gpt += top1 == human
                if material(board) == 0:
                    level_n += 1
                    level_same += ours == human
                    level_same_gpt += top1 == human
            board.push(human)
    return {"pgn": pgn.name if pgn.parent == ROOT / "data" / "ccpd" else str(pgn), "games": n_games,
            "stride": stride, "positions": total,
            "match": same / total if total else None, "gpt_top1": same_gpt / total if total else None,
            "level_material_positions": level_n, "match_level_material": level_same / level_n if level_n else None,
            "gpt_top1_level_material": level_same_gpt / level_n if level_n else None,
            "seconds": round(time.perf_counter() - t0, 1)}


def _signed(x: float) -> str:
    return "0" if round(x) == 0 else f"{x:+.0f}"


def load_json(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {}


def save_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def write_report(data: dict, md: Path, png: Path) -> None:
    from xiangqi_gpt.play.search import LEVELS, DEFAULT_LEVEL

    pairings = sorted(data.get("pairings", {}).values(),
                      key=lambda p: (p["level"], list(OPPONENTS).index(p["opponent"])))
    levels = sorted({p["level"] for p in pairings})
    opps = [o for o in OPPONENTS if any(p["opponent"] == o for p in pairings)]
    model = data.get("model", {})

    def budget(level):
        if level == 0:
            return "pure GPT"
        lim = LEVELS.get(level)
        if lim is None:
            return "?"
        parts = [f"depth {lim.depth}"] if lim.depth else []
        if lim.nodes:
            parts.append((f"depth >= {lim.min_depth}, " if getattr(lim, "min_depth", None) else "")
                         + f"{lim.nodes:,} nodes")
        return ", ".join(parts)

    lines = ["# Elo ladder", "",
             f"Model: `{model.get('path', '?')}` (sha256 `{model.get('sha256', '?')[:16]}`). "
             f"Default level of `play.py`: {DEFAULT_LEVEL}.", "",
             "Each row is one arena match (see `studies/ladder.py`): games alternate colours from the book "
             "openings, seed 0, 300-ply cap. Elo is our level minus the opponent, with a 95% interval "
             "(`arena.elo_interval`; at 0% or 100% it is clamped and only a bound). ms/move is the median wall time "
             "of our moves, CPU ms/move the median CPU time of our process for them (one torch thread): the "
             "2-core machine was shared with training runs that had priority, so wall times are inflated and the "
             "CPU times are the ones to compare. nodes/move is the median search nodes.", "",
             "## Score by level", "",
             "| level | budget | " + " | ".join(OPPONENTS[o]["label"] for o in opps) + " | CPU ms/move |",
             "|---:|---|" + "---:|" * len(opps) + "---:|"]
    by = {(p["level"], p["opponent"]): p for p in pairings}
    for level in levels:
        cells = []
        ms = [by[(level, o)]["cpu_ms_per_move"] for o in opps
              if (level, o) in by and by[(level, o)].get("cpu_ms_per_move") is not None]
        for o in opps:
            p = by.get((level, o))
            cells.append("-" if p is None else f"{100 * p['score']:.0f}%")
        ms_cell = f"{statistics.median(ms):.0f}" if ms else "-"
        lines.append(f"| {level} | {budget(level)} | " + " | ".join(cells) + f" | {ms_cell} |")
    lines += ["", "## Every pairing", "",
              "| level | opponent | games | W / D / L | score | Elo [95%] | ms/move | CPU ms/move | nodes/move "
              "| avg plies | terminations |",
              "|---:|---|---:|---|---:|---|---:|---:|---:|---:|---|"]
    for p in pairings:
        e = p["elo"]
        elo = f"{_signed(e['diff'])} [{_signed(e['low'])}, {_signed(e['high'])}]" + (" (bound)" if e["clamped"] else "")
        nodes = "-" if p["nodes_per_move"] is None else f"{p['nodes_per_move']:.0f}"
        term = ", ".join(f"{k} {v}" for k, v in p["terminations"].items())
        lines.append(f"| {p['level']} | {OPPONENTS[p['opponent']]['label']} | {p['games']} | {p['wins']} / "
                     f"{p['draws']} / {p['losses']} | {100 * p['score']:.1f}% | {elo} | {p['ms_per_move']:.0f} | "
                     f"{'-' if p.get('cpu_ms_per_move') is None else format(p['cpu_ms_per_move'], '.0f')} | "
                     f"{nodes} | {p['average_length']:.0f} | {term} |")
    human = data.get("human", {})
    if human:
        lines += ["", "## Human moves", "",
                  "How often the move equals the master's, on the first test-split games of `data/ccpd/test.pgn` "
                  "(every n-th position), against the pure GPT's top-1 on the same positions.", "",
                  "| level | games | positions | same as human | GPT top-1 same | level-material positions "
                  "| same (level material) | GPT top-1 (level material) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for h in sorted(human.values(), key=lambda h: h["level"]):
            lines.append(f"| {h['level']} | {h['games']} | {h['positions']} | {100 * h['match']:.1f}% | "
                         f"{100 * h['gpt_top1']:.1f}% | {h['level_material_positions']} | "
                         f"{100 * h['match_level_material']:.1f}% | {100 * h['gpt_top1_level_material']:.1f}% |")
    if data.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in data["notes"]]
    games = sorted({p["games"] for p in pairings})
    command = (f".venv/bin/python studies/ladder.py --levels {','.join(map(str, levels))} --opponents "
               f"{','.join(opps)} --games {','.join(map(str, games))}")
    if human:
        h = next(iter(human.values()))
        hl = ",".join(str(x["level"]) for x in sorted(human.values(), key=lambda x: x["level"]))
        command += (f" --human-levels {hl}"
                    f" --human-games {h['games']} --human-stride {h['stride']}")
    lines += ["", f"Reproduce (resumable: finished pairings in docs/ladder.json are kept): `{command}`", ""]
    md.write_text("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for o in opps:
        xs = [lv for lv in levels if (lv, o) in by]
        ax.plot(xs, [100 * by[(lv, o)]["score"] for lv in xs], marker="o", label=OPPONENTS[o]["label"])
    ax.set_xlabel("level")
    ax.set_ylabel("score (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(levels)
    ax.axhline(50, color="grey", lw=0.6, ls="--")
    ax.set_title("xiangqi-gpt: score by level")
    if opps:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from xiangqi_gpt.play.search import DEFAULT_LEVEL, LEVELS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default=",".join(str(lv) for lv in LEVELS))
    ap.add_argument("--opponents", default=",".join(OPPONENTS))
    ap.add_argument("--games", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--human-games", type=int, default=100, help="0: skip the human-move comparison")
    ap.add_argument("--human-stride", type=int, default=4)
    ap.add_argument("--human-levels", default=str(DEFAULT_LEVEL))
    ap.add_argument("--json", default=str(DEFAULT_JSON))
    ap.add_argument("--report-only", action="store_true", help="rewrite ladder.md/png from the json")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's notes (repeatable)")
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x != ""]
    opponents = [o for o in args.opponents.split(",") if o]
    for o in opponents:
        if o not in OPPONENTS:
            ap.error(f"unknown opponent {o!r} (known: {', '.join(OPPONENTS)})")
    for lv in levels:
        if lv not in LEVELS:
            ap.error(f"unknown level {lv} (levels: {min(LEVELS)}..{max(LEVELS)})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = load_json(out)
    stored = data.get("model", {})
    if not (args.report_only and stored):     # a report shows what the json holds, whatever files are there now
        path = model_path(args.checkpoint)
        model = {"path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                 "sha256": sha256(path), "search_sha256": sha256(ROOT / "xiangqi_gpt" / "play" / "search.py")}
        if stored and stored.get("sha256") != model["sha256"]:
            what, suffix = "model", ""
        elif stored and stored.get("search_sha256") != model["search_sha256"]:
            what, suffix = "search (xiangqi_gpt/play/search.py)", "-oldsearch"
        else:
            what = None
        if what:
            keep = out.with_name(f"{out.stem}-{stored['sha256'][:16]}{suffix}{out.suffix}")
            os.replace(out, keep)
            print(f"note: {out} was made with another {what} (kept as {keep}); starting afresh", file=sys.stderr)
            data = {}
        data["model"] = model
    data.setdefault("pairings", {})
    data.setdefault("human", {})
    if args.note:
        data["notes"] = args.note
    if not args.report_only:
        todo = [(lv, o) for lv in levels for o in opponents
                if data["pairings"].get(f"{lv}|{o}", {}).get("games") != args.games]
        human_todo = [int(x) for x in args.human_levels.split(",") if x != ""] if args.human_games else []
        human_todo = [lv for lv in human_todo if str(lv) not in data["human"]
                      or data["human"][str(lv)]["games"] != args.human_games]
        print(f"{len(todo)} pairings to play, {len(data['pairings'])} kept; human-move levels {human_todo}",
              flush=True)

        def done(result):
            data["pairings"][f"{result['level']}|{result['opponent']}"] = result
            save_json(out, data)
            print(f"level {result['level']} vs {result['opponent']}: +{result['wins']} ={result['draws']} "
                  f"-{result['losses']} ({100 * result['score']:.0f}%), {result['ms_per_move']:.0f} ms/move, "
                  f"{result['seconds']:.0f} s", flush=True)

        def done_human(h):
            data["human"][str(h["level"])] = h
            save_json(out, data)
            print(f"human moves, level {h['level']}: {100 * h['match']:.1f}% (GPT top-1 {100 * h['gpt_top1']:.1f}%)"
                  f" on {h['positions']} positions, {h['seconds']:.0f} s", flush=True)

        if args.jobs <= 1:
            for lv, o in todo:
                done(play_pairing(args.checkpoint, lv, o, args.games))
            for lv in human_todo:
                done_human(human_match(args.checkpoint, lv, args.human_games, args.human_stride))
        else:
            with ProcessPoolExecutor(args.jobs) as pool:
                futures = {pool.submit(play_pairing, args.checkpoint, lv, o, args.games): "pairing" for lv, o in todo}
                futures.update({pool.submit(human_match, args.checkpoint, lv, args.human_games,
                                            args.human_stride): "human" for lv in human_todo})
                for f in as_completed(futures):
                    (done if futures[f] == "pairing" else done_human)(f.result())
    save_json(out, data)
    write_report(data, out.with_suffix(".md"), out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.md')}, {out.with_suffix('.png')}, {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
