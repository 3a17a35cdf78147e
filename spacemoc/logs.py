"""Send a stage's output (prints, warnings, tqdm progress bars) and its errors to a log file."""

from __future__ import annotations

import contextlib
import logging
import traceback
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | Path | None):
    """Redirect stdout and stderr into ``path`` (None: leave them alone). An exception leaving
    the block is written to the log too (the file Snakemake points to when a job fails) and then
    raised as usual."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle:
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            logging.basicConfig(stream=handle, level=logging.INFO, force=True)
            try:
                yield
            except BaseException as err:
                traceback.print_exception(err, file=handle)
                handle.write(f"error: {err}\n")
                raise
