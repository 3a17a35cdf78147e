"""Send a stage's output (prints, warnings, tqdm progress bars) to a log file."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | Path | None):
    """Redirect stdout and stderr into ``path`` (None: leave them alone)."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle:
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            logging.basicConfig(stream=handle, level=logging.INFO, force=True)
            yield
