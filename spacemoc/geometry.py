"""Frame sizes and box conversions: the one home of the coordinates every stage shares.

Three box forms appear in the project:

* ``z_where`` (..., 4) = [scale_x, scale_y, centre_x, centre_y]: a model's box, scales as
  fractions of the image side, centres in [-1, 1] (SPACE's convention, spec §2.2);
* corners (..., 4) = [x_min, y_min, x_max, y_max] in normalised [0, 1] frame coordinates (the
  unit of the games' relevant areas);
* pixel boxes (..., 4) = [x, y, w, h] in raw frame pixels (160x210), x, y the top-left corner:
  the unit of stored ground truth, detections and metrics.

A model sees the whole frame resized to ``IMAGE_SIZE`` squared, so the normalised coordinates of
a box are the same in the model's image and in the raw frame.
"""

from __future__ import annotations

import numpy as np

FRAME_HEIGHT, FRAME_WIDTH = 210, 160  # raw ALE frame
FRAME_SIZE = (FRAME_WIDTH, FRAME_HEIGHT)  # (width, height): the unit of stored boxes
FRAME_SHAPE = (FRAME_HEIGHT, FRAME_WIDTH, 3)  # a raw RGB frame as OCAtari / ALE give it
IMAGE_SIZE = 128  # side of the square model input (frames resized with PIL Lanczos)


def z_where_to_corners(z_where) -> np.ndarray:
    """(..., 4) [sx, sy, cx, cy] -> (..., 4) normalised [x_min, y_min, x_max, y_max] (not
    clipped)."""
    z_where = np.asarray(z_where, dtype=np.float64)
    sx, sy, cx, cy = np.moveaxis(z_where, -1, 0)
    x_c, y_c = (cx + 1) / 2, (cy + 1) / 2
    return np.stack([x_c - sx / 2, y_c - sy / 2, x_c + sx / 2, y_c + sy / 2], axis=-1)


def z_where_to_boxes(z_where, frame_size=FRAME_SIZE) -> np.ndarray:
    """(..., 4) [sx, sy, cx, cy] -> (..., 4) [x, y, w, h] in frame pixels (not clipped)."""
    z_where = np.asarray(z_where, dtype=np.float64)
    width, height = frame_size
    sx, sy, cx, cy = np.moveaxis(z_where, -1, 0)
    return np.stack(
        [
            ((cx + 1) / 2 - sx / 2) * width,
            ((cy + 1) / 2 - sy / 2) * height,
            sx * width,
            sy * height,
        ],
        axis=-1,
    )


def boxes_to_z_where(boxes, frame_size=FRAME_SIZE) -> np.ndarray:
    """(..., 4) [x, y, w, h] in frame pixels -> (..., 4) [sx, sy, cx, cy], the inverse of
    ``z_where_to_boxes``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    width, height = frame_size
    x, y, w, h = np.moveaxis(boxes, -1, 0)
    return np.stack(
        [w / width, h / height, ((x + w / 2) / width) * 2 - 1, ((y + h / 2) / height) * 2 - 1],
        axis=-1,
    )


def boxes_to_corners(boxes, frame_size=FRAME_SIZE) -> np.ndarray:
    """(..., 4+) [x, y, w, h, ...] in frame pixels -> (..., 4) normalised corners."""
    boxes = np.asarray(boxes, dtype=np.float64)
    width, height = frame_size
    x0, y0 = boxes[..., 0] / width, boxes[..., 1] / height
    return np.stack([x0, y0, x0 + boxes[..., 2] / width, y0 + boxes[..., 3] / height], axis=-1)


def corners_to_boxes(corners, frame_size=FRAME_SIZE) -> np.ndarray:
    """(..., 4) normalised [x_min, y_min, x_max, y_max] -> (..., 4) [x, y, w, h] in frame pixels,
    the inverse of ``boxes_to_corners``."""
    corners = np.asarray(corners, dtype=np.float64)
    width, height = frame_size
    x0, y0, x1, y1 = np.moveaxis(corners, -1, 0)
    return np.stack([x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height], axis=-1)


def in_relevant_area(game_row, boxes, frame_size=FRAME_SIZE) -> np.ndarray:
    """Boolean mask (...,) of pixel boxes (..., 4+) [x, y, w, h, ...] inside the relevant area of
    ``game_row`` (a ``spacemoc.games.Game``: HUD boxes such as scores and clocks lie outside)."""
    corners = boxes_to_corners(boxes, frame_size)
    mask = game_row.in_relevant_area(*np.moveaxis(corners, -1, 0))
    return np.broadcast_to(np.asarray(mask, dtype=bool), corners.shape[:-1]).copy()


def check_min_overlap(min_overlap) -> float:
    """The overlap suppression's share as a float: 0 (off) or in (0, 1]; else a ValueError."""
    try:
        value = float(min_overlap)
    except (TypeError, ValueError):
        raise ValueError(f"overlap suppression must be a number, got {min_overlap!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"overlap suppression must be in [0, 1] (0: off), got {value}")
    return value


def suppress_overlaps(z_pres_prob, z_where, min_overlap: float, threshold: float = 0.5):
    """Presence (..., N) with the present cells that repeat a more present box set to 0.

    Cells above ``threshold`` are visited in order of decreasing presence; one is dropped when a
    kept box covers at least ``min_overlap`` of the smaller of the two boxes' areas (SPACE draws
    an object that spans grid cells once per cell; the second box, often the smaller, is a false
    positive). ``z_where`` (..., N, 4) are the cells' boxes; ``min_overlap`` 0 turns it off.
    """
    prob = np.array(z_pres_prob, dtype=np.result_type(z_pres_prob, np.float32), copy=True)
    if not check_min_overlap(min_overlap):
        return prob
    corners = z_where_to_corners(z_where)
    flat_prob = prob.reshape(-1, prob.shape[-1])  # a view: frames (F,N)
    flat_corners = corners.reshape(-1, prob.shape[-1], 4)
    for frame, cells in zip(flat_prob, flat_corners, strict=True):
        present = np.flatnonzero(frame > threshold)
        if len(present) < 2:
            continue
        order = present[np.argsort(-frame[present], kind="stable")]
        box = cells[order]  # (M,4), most present first
        low = np.maximum(box[:, None, :2], box[None, :, :2])
        high = np.minimum(box[:, None, 2:], box[None, :, 2:])
        inter = np.prod(np.clip(high - low, 0.0, None), axis=-1)  # (M,M)
        area = np.prod(np.clip(box[:, 2:] - box[:, :2], 0.0, None), axis=-1)
        smaller = np.minimum(area[:, None], area[None, :])
        covered = inter >= min_overlap * np.maximum(smaller, 1e-12)
        kept = np.zeros(len(order), dtype=bool)
        for i in range(len(order)):
            kept[i] = not np.any(covered[i, :i] & kept[:i])
        frame[order[~kept]] = 0.0
    return prob
