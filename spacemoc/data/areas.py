"""Measure a game's relevant area from the ground truth of a dataset file (docs/data.md)."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from spacemoc.games import FRAME_HEIGHT, FRAME_WIDTH

EDGE = 0.02  # a bound this close to the frame border is taken as the whole frame side


def measure_relevant_area(path: str | Path) -> tuple[float, float, float, float]:
    """(min_x, min_y, max_x, max_y), normalised, of the relevant ground-truth boxes of a file.

    Bounds are rounded outwards to 0.01 (the slight extension; Game.in_relevant_area adds its
    0.02 margin on top); a bound within 0.02 of the frame border becomes -0.05 / 1.05 (the whole
    side, as the reference writes it).
    """
    with h5py.File(path, "r") as f:
        rows = f["objects"][()]
    rows = rows[rows["relevant"] == 1]
    if len(rows) == 0:
        raise ValueError(f"{path} has no relevant ground-truth objects to measure")
    x0 = float(rows["x"].min()) / FRAME_WIDTH
    y0 = float(rows["y"].min()) / FRAME_HEIGHT
    x1 = float((rows["x"] + rows["w"]).max()) / FRAME_WIDTH
    y1 = float((rows["y"] + rows["h"]).max()) / FRAME_HEIGHT
    low = [(-0.05 if v < EDGE else math.floor(v * 100) / 100) for v in (x0, y0)]
    high = [(1.05 if v > 1 - EDGE else math.ceil(v * 100) / 100) for v in (x1, y1)]
    return (low[0], low[1], high[0], high[1])


def label_extents(path: str | Path) -> dict[str, tuple[float, float, float, float]]:
    """Per relevant label: normalised (min_x, min_y, max_x, max_y) of its boxes (for the docs)."""
    with h5py.File(path, "r") as f:
        rows = f["objects"][()]
        labels = [str(v) for v in f.attrs["labels"]]
    out = {}
    for label in np.unique(rows["label"]):
        r = rows[rows["label"] == label]
        out[labels[label]] = (
            round(float(r["x"].min()) / FRAME_WIDTH, 3),
            round(float(r["y"].min()) / FRAME_HEIGHT, 3),
            round(float((r["x"] + r["w"]).max()) / FRAME_WIDTH, 3),
            round(float((r["y"] + r["h"]).max()) / FRAME_HEIGHT, 3),
        )
    return out
