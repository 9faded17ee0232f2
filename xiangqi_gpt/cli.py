"""``python -m xiangqi_gpt <command>``: the non-training tools.

Each subcommand is a small function that adds its arguments and returns the function that runs it. Heavy imports
(torch) happen inside the runner, so ``perft`` and ``moves`` start fast. User errors print one line
``error: ...`` on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import XiangqiError


_LENIENT_HELP = "accept a FEN that no game can reach (e.g. 6 soldiers, an advisor off the palace points)"


def _board(args):
    """The --fen position (an empty --fen is an error, not the start position), strict unless --allow-impossible."""
    from .rules.board import STARTING_FEN, Board
    from .errors import FenError

    try:
        return Board(STARTING_FEN if args.fen is None else args.fen, strict=not args.allow_impossible)
    except FenError as e:
        if getattr(e, "impossible", False):
            raise FenError(f"{e} (--allow-impossible accepts it)") from None
        raise


def _perft(p: argparse.ArgumentParser):
    p.add_argument("--fen", default=None, help="position (default: the starting position)")
    p.add_argument("--allow-impossible", action="store_true", help=_LENIENT_HELP)
    p.add_argument("--depth", type=int, required=True, help="plies to search")
    p.add_argument("--divide", action="store_true", help="also print the count below each root move")

    def run(args):
        if args.depth < 0:
            raise XiangqiError(f"--depth must be >= 0, got {args.depth}")
        board = _board(args)
        if args.divide and args.depth >= 1:
            counts = board.perft_divide(args.depth)
            for move in sorted(counts):
                print(f"{move}: {counts[move]}")
            print(sum(counts.values()))
        else:
            print(board.perft(args.depth))

    return run


def _moves(p: argparse.ArgumentParser):
    p.add_argument("--fen", default=None, help="position (default: the starting position)")
    p.add_argument("--allow-impossible", action="store_true", help=_LENIENT_HELP)

    def run(args):
        board = _board(args)
        for move in sorted(m.iccs() for m in board.legal_moves()):
            print(move)

    return run


# name -> (help, builder). Other modules' subcommands are registered below, imported lazily by name.
COMMANDS = {
    "perft": ("count the legal move tree (perft)", _perft),
    "moves": ("list the legal moves in ICCS", _moves),
}

# Subcommands implemented in other modules: name -> (help, "module:function"). The function builds the parser
# like the ones above. Listing them here keeps `--help` complete without importing torch.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "uci": ("serve the model as a UCI engine for xiangqi GUIs (also answers ucci)", ".play.engine:add_uci_command"),
    "ucci": ("serve the model as a UCCI engine (also answers uci)", ".play.engine:add_ucci_command"),
    "prepare": ("build a training dataset from PGN sources", ".data.prepare:add_prepare_command"),
    "convert": ("write PGN from PGN, XQF, CBF, CBR, CBL or DhtmlXQ files", ".records.archive:add_convert_command"),
    "selfplay": ("generate training games by Fairy-Stockfish self-play", ".play.selfplay:add_selfplay_command"),
    "evaluate": ("score the model on PGN games: top-1/5, legality, NLL, free runs",
                 ".model.evaluate:add_evaluate_command"),
    "arena": ("play the model against a random mover or Fairy-Stockfish", ".play.arena:add_arena_command"),
    "export": ("convert a train.py checkpoint to a slim model file (.pt)", ".model.checkpoint:add_export_command"),
    "review": ("review a game: evaluation before and after each move, best lines, blunders, accuracy",
               ".play.review:add_review_command"),
    "legal-sets": ("store the legal move set of every training position (for the legality loss)",
                   ".data.legal:add_legal_sets_command"),
}


def _resolve(spec: str):
    import importlib

    module, func = spec.split(":")
    return getattr(importlib.import_module(module, __package__), func)


def build_parser(prog: str = "python -m xiangqi_gpt") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, builder) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_builder=builder)
    for name, (help_text, spec) in LAZY_COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_builder=spec)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m xiangqi_gpt", command_prog: str | None = None) -> int:
    """Run one command line (default: ``sys.argv[1:]``). ``prog`` is the program name in usage lines, and
    ``command_prog`` the command's own (default: ``prog`` and the command's name)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(prog)
    # first pass finds the command, second pass parses its own arguments
    known, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    builder = known._builder
    if isinstance(builder, str):
        builder = _resolve(builder)
    sub = argparse.ArgumentParser(prog=command_prog or f"{prog} {known.command}",
                                  description=(COMMANDS.get(known.command) or LAZY_COMMANDS[known.command])[0])
    run = builder(sub)
    args = sub.parse_args(argv[1:])
    try:
        run(args)
    except XiangqiError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    return 0


def console_main() -> int:
    """The ``xiangqi-gpt`` console command: the same as ``python -m xiangqi_gpt``."""
    return main(prog="xiangqi-gpt")


def engine_main(argv: list[str] | None = None) -> int:
    """The ``xiangqi-gpt-engine`` console command: ``python -m xiangqi_gpt uci`` with the same options (a GUI that
    says ``ucci`` gets UCCI), so a GUI can be pointed at one executable."""
    argv = sys.argv[1:] if argv is None else argv
    return main(["uci", *argv], command_prog="xiangqi-gpt-engine")
