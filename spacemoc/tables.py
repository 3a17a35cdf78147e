"""CSV tables with fixed columns (the metrics tables, the class-recall table): one cell format,
atomic writes and a header check on reading."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from spacemoc.atomic import atomic_path


def cell(value) -> str:
    """A value as a table cell: empty for None, "" and NaN; strings as they are; integers whole;
    other numbers to 6 significant digits."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    return "" if math.isnan(value) else f"{value:.6g}"


def write_table(rows: list[dict], path: str | Path, columns: tuple[str, ...]) -> None:
    """Write rows with exactly ``columns`` (a missing key is an empty cell), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(columns)
        for row in rows:
            out.writerow([cell(row.get(c)) for c in columns])


def read_table(path: str | Path, columns: tuple[str, ...], what: str) -> list[dict]:
    """The rows of a table written by ``write_table`` with ``columns`` (ValueError naming ``what``
    the table is when its header differs)."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != columns:
            raise ValueError(f"{path} does not have the {what} columns {columns}")
        return list(reader)
