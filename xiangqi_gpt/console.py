"""Console plumbing shared by the long commands (``prepare``, ``selfplay``): a progress bar with warnings above
it, Ctrl-C handling that never leaves a step half done, and a worker pool whose workers leave Ctrl-C to the main
process."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import threading

MAX_WARNINGS = 20


class ProgressBar:
    """A rich progress bar on stderr (off when stderr is not a terminal, or when ``enabled`` is False); warnings
    are printed above it. ``label`` names the command; ``unit`` is ``"bytes"`` (an amount read) or ``"items"``
    (done / total, e.g. games). After ``max_warnings`` warnings one more line says ``overflow`` and the rest are
    not shown."""

    def __init__(self, enabled: bool | None, label: str = "prepare", unit: str = "bytes",
                 max_warnings: int = MAX_WARNINGS, overflow: str = "more warnings are not shown"):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label, self.unit = label, unit
        self.max_warnings, self.overflow = max_warnings, overflow
        self.progress = self.task = None
        self.warned = 0

    def start(self, total: int) -> None:
        """Show the bar, ``total`` bytes or items long (0: unknown)."""
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        amount = DownloadColumn() if self.unit == "bytes" else MofNCompleteColumn()
        self.progress = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), amount,
                                 TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
        self.progress.start()
        self.task = self.progress.add_task("", total=total or None)

    def advance(self, n: int) -> None:
        """``n`` more bytes or items done."""
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def update(self, games: int, rejected: int) -> None:
        """Describe the work as ``games`` read and ``rejected``."""
        self.describe(f"{games:,} games, {rejected:,} rejected")

    def describe(self, text: str) -> None:
        """Set the text shown after the amount."""
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def status(self, text: str) -> None:
        """Fill the bar and append ``text`` to its description (a last step with no measurable amount)."""
        if self.progress is not None:
            task = self.progress.tasks[0]
            self.progress.update(self.task, completed=task.total or task.completed,
                                 description=f"{task.description}; {text}")

    def warn(self, message: str) -> None:
        """Print ``warning: message`` on stderr, above the bar."""
        self.warned += 1
        if self.warned > self.max_warnings:
            if self.warned == self.max_warnings + 1:
                message = self.overflow
            else:
                return
        if self.progress is not None:
            self.progress.console.print(f"warning: {message}", markup=False, highlight=False)
        else:
            print(f"warning: {message}", file=sys.stderr)

    def stop(self) -> None:
        """Leave the bar as it is on the screen."""
        if self.progress is not None:
            self.progress.stop()


class CtrlCGuard:
    """Holds back Ctrl-C inside ``with guard:`` blocks (creating a folder, renaming a dataset, writing a game) and
    raises the KeyboardInterrupt at the block's end, so that the step is never half done. It installs its handler
    only in the main thread and only over Python's default SIGINT handler; otherwise the blocks are plain. Reusable;
    :meth:`close` puts the previous handler back."""

    def __init__(self):
        self.busy = self.pending = self.committed = False
        self.previous = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.busy:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self):
        self.busy = True
        return self

    def __exit__(self, *exc):
        self.busy = False
        if self.pending and exc[0] is None:
            self.pending = False
            raise KeyboardInterrupt

    def close(self) -> None:
        """Put back the SIGINT handler that was there before."""
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def restore_ctrl_c() -> None:
    """Make Ctrl-C (SIGINT) raise KeyboardInterrupt in this process even when it was started with SIGINT ignored
    (as a non-interactive shell starts a background job), so a long command always stops when asked."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def ignore_sigint() -> None:
    """For worker processes: a terminal's Ctrl-C reaches the whole process group; only the main process reacts
    (it terminates the workers), so no worker prints a traceback. Workers are started with SIGINT blocked
    (:func:`start_pool`), so a Ctrl-C during the fork waits until it is ignored here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def pool_context():
    """The multiprocessing context for worker pools: ``fork`` where the platform has it (workers inherit what the
    main process has built), else the default."""
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()


def start_pool(ctx, workers: int, initializer, initargs=()):
    """``ctx.Pool(...)`` with SIGINT blocked while the workers are forked: a Ctrl-C that lands then reaches each
    worker only once it ignores SIGINT, and the main process right after (as a KeyboardInterrupt). The
    ``initializer`` must call :func:`ignore_sigint` (or be it). Leaving a ``with`` block on the pool terminates
    the workers."""
    if not hasattr(signal, "pthread_sigmask"):
        return ctx.Pool(workers, initializer=initializer, initargs=initargs)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = ctx.Pool(workers, initializer=initializer, initargs=initargs)
    finally:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        except KeyboardInterrupt:
            pool.terminate()
            raise
    return pool
