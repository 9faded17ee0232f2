"""Render the README screenshots of ``play.py`` and of the engine mode to SVG (rich's ``Console.save_svg``).

    python scripts/screenshots.py [--checkpoint FILE.pt] [--out docs]

Writes ``play.svg`` (wide layout, you play Red), ``play-black.svg`` (you play Black: the board is turned),
``play-compact.svg`` (a narrow terminal), ``play-hint.svg`` (``hint 3``: three lines in the panel) and
``engine.svg`` (a UCI session); ``--only NAME ...`` renders some of them. The model plays at the default level
(its search in the side panel); the human side plays the model's own first choice (no search), at temperature 0 from
the start, so the pictures are reproducible for a given checkpoint (the levels are node budgets).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from rich.console import Console  # noqa: E402
from rich.text import Text  # noqa: E402

from xiangqi_gpt.rules.board import BLACK, RED  # noqa: E402
from xiangqi_gpt.play.terminal import PlayerLoader, Session, chinese, default_player_factory  # noqa: E402
from xiangqi_gpt.play.timeman import GameClock, parse_clock  # noqa: E402


def recording_console(width: int) -> Console:
    return Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                   highlight=False)


def session_screenshot(loader: PlayerLoader, path: Path, width: int, human: int, plies: int, title: str,
                       typed: str | None = None) -> None:
    """Play ``plies`` plies (the human side also plays the model's choice), then record one screen, with the model's
    next choice for the human typed at the prompt in ``typed`` notation (``"iccs"`` or ``"chinese"``)."""
    console = recording_console(width)
    session = Session(console, loader, human=human, input_fn=lambda prompt: "")
    session.last_message = ""
    player = loader.get()
    if session.model_to_move():
        session.model_move()
    while session.board.ply < plies and session.outcome_result() is None:
        session.play_move(player.choose(session.board).iccs())
    console.export_text(clear=True)          # keep only the last screen
    session.show()
    if session.last_message:
        session.say(session.last_message)
    prompt = f"{'Red' if session.board.turn == RED else 'Black'} (you)> "
    text = ""
    if typed and session.outcome_result() is None:
        move = player.choose(session.board)
        text = move.iccs() if typed == "iccs" else chinese(session.board, move)
    console.print(Text(prompt + text, style="bold"))
    console.save_svg(str(path), title=title)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def hint_screenshot(loader: PlayerLoader, path: Path, width: int, plies: int, lines: int = 3) -> None:
    """Play ``plies`` plies as :func:`session_screenshot` does, then type ``hint N`` and record that screen."""
    console = recording_console(width)
    session = Session(console, loader, human=RED, input_fn=lambda prompt: "")
    session.last_message = ""
    player = loader.get()
    while session.board.ply < plies and session.outcome_result() is None:
        session.play_move(player.choose(session.board).iccs())
    session.handle(f"hint {lines}")
    console.export_text(clear=True)          # keep only the screen with the lines (not the search's spinner)
    console.print(Text(f"Red (you)> hint {lines}", style="bold"))
    session.show()
    console.print(Text("Red (you)> ", style="bold"))
    console.save_svg(str(path), title=f"python play.py: hint {lines}")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def clock_screenshot(loader: PlayerLoader, path: Path, width: int, plies: int) -> None:
    """A ``--clock 10+5`` game after ``plies`` plies on a fake clock (Red's moves charged 25 s each; the session
    adds the increments), then record the screen with both clocks in the panel."""
    now = [0.0]
    clock = GameClock(*parse_clock("10+5"), clock=lambda: now[0])
    console = recording_console(width)
    session = Session(console, loader, human=RED, input_fn=lambda prompt: "", clock=clock)
    session.last_message = ""
    player = loader.get()
    while session.board.ply < plies and session.outcome_result() is None:
        side = session.board.turn
        clock.start(side)
        now[0] += 25.0 if side == RED else 9.0
        clock.stop()
        session.play_move(player.choose(session.board).iccs())
    console.export_text(clear=True)
    session.show()
    console.print(Text("Red (you)> ", style="bold"))
    console.save_svg(str(path), title="python play.py --clock 10+5")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def engine_screenshot(loader_checkpoint: str | None, path: Path) -> None:
    """A short UCI conversation with the engine, GUI lines in cyan."""
    from xiangqi_gpt.play.engine import Engine

    out = io.StringIO()
    if loader_checkpoint is None:
        engine = Engine(out=out)
    else:   # show the engine as shipped (Checkpoint <empty>), with the given model standing in for default.pt
        from xiangqi_gpt.model.checkpoint import load_model

        engine = Engine(out=out, load=lambda _: load_model(loader_checkpoint))
    console = recording_console(92)
    console.print(Text("$ python -m xiangqi_gpt uci", style="bold"))
    for line in ("uci", "isready", "position startpos moves h2e2 h9g7", "go", "setoption name Level value 9",
                 "position startpos moves h2e3", "quit"):
        console.print(Text(line, style="bold cyan"))
        out.seek(0)
        out.truncate()
        engine.handle(line)
        engine.settle()   # the search answers from its own thread
        for answer in out.getvalue().splitlines():
            console.print(Text(answer, style="red" if "error" in answer else ""))
    console.save_svg(str(path), title="python -m xiangqi_gpt uci")
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="model file (default: the shipped default.pt)")
    p.add_argument("--out", default=str(ROOT / "docs"), help="output folder (default: docs/)")
    names = ("play", "play-black", "play-compact", "play-hint", "play-clock", "engine")
    p.add_argument("--only", nargs="+", choices=names, default=names, metavar="NAME",
                   help=f"render only these ({', '.join(names)})")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loader = PlayerLoader(default_player_factory(args.checkpoint, 0.0, None)).start()
    if "play" in args.only:
        session_screenshot(loader, out / "play.svg", 96, RED, 12, "python play.py", typed="iccs")
    if "play-black" in args.only:
        session_screenshot(loader, out / "play-black.svg", 96, BLACK, 9, "python play.py --side black",
                           typed="chinese")
    if "play-compact" in args.only:
        session_screenshot(loader, out / "play-compact.svg", 34, RED, 6, "play.py, 34 columns")
    if "play-hint" in args.only:
        hint_screenshot(loader, out / "play-hint.svg", 100, 10)
    if "play-clock" in args.only:
        clock_screenshot(loader, out / "play-clock.svg", 100, 12)
    if "engine" in args.only:
        engine_screenshot(args.checkpoint, out / "engine.svg")


if __name__ == "__main__":
    main()
