"""console: the progress bar's warnings and the worker pool's Ctrl-C setup (the Ctrl-C guard and the commands'
Ctrl-C behaviour are tested in test_corpus.py and test_selfplay.py)."""

import signal

from xiangqi_gpt.console import ProgressBar, ignore_sigint, pool_context, start_pool


def test_warnings_stop_after_the_limit_with_one_line_saying_so(capsys):
    bar = ProgressBar(False, max_warnings=2, overflow="more warnings are not shown (see x.json)")
    bar.start(10)
    bar.advance(3)
    bar.describe("ignored when off")
    for i in range(5):
        bar.warn(f"w{i}")
    bar.stop()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["warning: w0", "warning: w1",
                                         "warning: more warnings are not shown (see x.json)"]


def _sigint_handler_in_worker(_):
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_pool_workers_leave_ctrl_c_to_the_main_process():
    before = signal.getsignal(signal.SIGINT)
    with start_pool(pool_context(), 1, ignore_sigint) as pool:
        assert pool.apply(_sigint_handler_in_worker, (0,)) is True
    assert signal.getsignal(signal.SIGINT) is before              # the main process keeps its handler
    if hasattr(signal, "pthread_sigmask"):
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())   # and is not left blocked
