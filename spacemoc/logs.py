"""Send a stage's output (prints, warnings, tqdm progress bars) and its errors to a log file,
and a short status line of long stages to the terminal."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
import traceback
from pathlib import Path

# The terminal a stage's output was taken from by ``log_to`` (None outside it).
_terminal: contextvars.ContextVar = contextvars.ContextVar("terminal", default=None)


@contextlib.contextmanager
def log_to(path: str | Path | None):
    """Redirect stdout and stderr into ``path`` (None: leave them alone). An exception leaving
    the block is written to the log too (the file Snakemake points to when a job fails) and then
    raised as usual."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    token = _terminal.set(sys.stderr)
    with open(path, "w", buffering=1) as handle:
        with (
            contextlib.redirect_stdout(handle),
            contextlib.redirect_stderr(handle),
            _log_records_to(handle),
        ):
            try:
                yield
            except BaseException as err:
                traceback.print_exception(err, file=handle)
                handle.write(f"error: {err}\n")
                raise
            finally:
                _terminal.reset(token)


@contextlib.contextmanager
def _log_records_to(handle):
    """Send INFO and above log records to ``handle`` while the block runs; the root logger's
    handlers and level are as they were afterwards (no process-wide logging configuration)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(handle)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class StatusLine:
    """A one-line status of a long stage on the terminal (the process's own stderr, which
    Snakemake shows) while its progress bar goes to the log: the first step, then one line per
    ``every_s`` seconds and the last step. Silent outside ``log_to`` (the progress bar is on the
    terminal already)."""

    def __init__(self, label: str, total: int, unit: str = "step", every_s: float = 60.0):
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.began = time.perf_counter()
        self.last: float | None = None

    def update(self, done: int, start: int = 0, **fields) -> None:
        terminal = _terminal.get()
        if terminal is None:
            return
        now = time.perf_counter()
        if self.last is not None and now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        rate = (now - self.began) / max(done - start, 1)
        eta = rate * (self.total - done)
        extra = "".join(f", {k} {v}" for k, v in fields.items())
        terminal.write(
            f"[{time.strftime('%H:%M:%S')}] {self.label}: {self.unit} {done}/{self.total} "
            f"({100 * done / max(self.total, 1):.0f} %){extra}, {rate:.2f} s/{self.unit}, "
            f"ETA {_duration(eta)}\n"
        )
        terminal.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
