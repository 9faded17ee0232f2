"""Property-based fuzzing of every reader with Hypothesis (targets and properties: ``tests/fuzz_targets.py``).

Bounded for the suite: a fixed number of examples per target (about 20 s of CPU in all), derandomized so that CI
always tries the same inputs. ``XQ_FUZZ_EXAMPLES=N`` scales the counts and ``XQ_FUZZ_RANDOM=1`` draws new inputs
each run; ``benchmarks/fuzz.py --minutes M`` runs the same properties for a chosen time.
"""

from __future__ import annotations

import os
import tempfile

# Hypothesis keeps a cache next to the working directory unless told otherwise: keep the repository clean.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "xiangqi-gpt-hypothesis"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from fuzz_targets import archive_inputs, check_archive, check_engine, check_fen, check_model, check_move, \
    check_pgn, check_transform, engine_inputs, fen_inputs, model_inputs, move_inputs, pgn_inputs, \
    session_inputs, check_session, transform_inputs  # noqa: E402

SCALE = float(os.environ.get("XQ_FUZZ_EXAMPLES", "1"))


def bounded(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    derandomize=os.environ.get("XQ_FUZZ_RANDOM") != "1", print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@bounded(400)
@given(move_inputs())
def test_fuzz_parse_move_and_detect_notation(args):
    check_move(*args)


@bounded(250)
@given(fen_inputs())
def test_fuzz_board_fen_strict_and_not(args):
    check_fen(*args)


@bounded(150)
@given(pgn_inputs())
def test_fuzz_pgn_reader(args):
    check_pgn(*args)


@bounded(80)
@given(engine_inputs())
def test_fuzz_engine_command_loop(lines):
    check_engine(lines)


@bounded(25)
@given(session_inputs())
def test_fuzz_engine_sessions_with_running_searches_and_eof(args):
    check_session(*args)


@bounded(40)
@given(archive_inputs())
def test_fuzz_archives_under_a_memory_cap(args):
    check_archive(*args)


@bounded(30)
@given(model_inputs())
def test_fuzz_crafted_model_files(args):
    check_model(*args)


@bounded(40)
@given(transform_inputs())
def test_fuzz_record_transforms_keep_the_games(args):
    check_transform(*args)
