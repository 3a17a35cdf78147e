"""Where detection fails first: recall of every relevant class, per source of boxes.

One row per (source, label) on a split's relevant objects, with the matching of ``eval.csv``'s
recall (centre distance, ``spacemoc.metrics.recall_by_label``; predictions inside the relevant
area). The sources, from the data alone:

* ``cells{G}``: the ground-truth boxes kept one per cell of a G x G grid (the largest), as SPACE's
  grid can hold them: the most a SPACE model of that grid size can find (G = 8 and 16);
* ``motion``: the dataset's motion boxes, what the MOC motion loss starts from;
* ``hints{G}``: those boxes kept one per cell, the presence and box targets the model is taught;
* ``changed``: the ground-truth boxes holding a pixel that differs from the background (bgsub's
  threshold): what a detector comparing a frame with the background can find at most; an object
  missing here is not drawn in its frame, drawn in the background's own colours, or part of the
  background (it never moves);
* ``bgsub``: the background-subtraction baseline (when the background is given);

and, given a model's latents of the same split, the model (its arm's name). ``objects`` counts the
class's ground-truth objects and ``median_width`` / ``median_height`` their size in frame pixels,
the same on every row of a class. Each source ends with a row of label ``all``: every relevant
object, and the source's precision (a box that finds no object is a false positive; the hints'
precision says what the motion loss teaches wrongly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spacemoc.tables import read_table, write_table

CHANGED = "changed"  # the source of the ground truth that differs from the background
ALL_LABELS = "all"  # the label of a source's row over every relevant class, with its precision
GRID_SIZES = (8, 16)  # SPACE's useful grids (G = 4 holds too few objects for any game here)
COLUMNS = (
    "game",
    "source",
    "label",
    "objects",
    "found",
    "recall",
    "precision",
    "median_width",
    "median_height",
)


def one_per_cell(boxes: np.ndarray, grid_size: int) -> np.ndarray:
    """(K,4+) pixel boxes -> the rows a G x G grid holds, one per cell (``cell_winners``, the
    rule of the motion hints), in their original order."""
    from spacemoc.data.motion import cell_winners

    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros((0, 4))
    return boxes[sorted(cell_winners(boxes[:, :4], grid_size).values())]


def _with_score(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes, np.ones((len(boxes), 1))], axis=1)


def _background_sources(data_path, background_path, gt) -> dict[str, list[np.ndarray]]:
    """``changed`` (the ground truth that differs from the background) and ``bgsub``, in one
    pass over the frames."""
    from spacemoc.stages.bgsub import BASELINE_MODEL, bgsub_detect, changed_objects, split_frames

    changed, detected = [], []
    for background, frames in split_frames(data_path, background_path, desc="class recall"):
        for frame in frames:
            boxes = gt[len(changed)]
            changed.append(_with_score(boxes[changed_objects(frame, background, boxes)]))
            detected.append(bgsub_detect(frame, background))
    return {CHANGED: changed, BASELINE_MODEL: detected}


def _rows(game_row, source: str, pred, gt, gt_labels) -> list[dict]:
    from spacemoc.metrics import recall_by_label, relevant_subset, safe_precision

    rel_pred, rel_gt, rel_labels, _ = relevant_subset(pred, gt, gt_labels, game_row.name)
    counts = recall_by_label(rel_pred, rel_gt, rel_labels)
    boxes = np.concatenate(rel_gt) if rel_gt else np.zeros((0, 4))
    labels = np.concatenate(rel_labels) if rel_labels else np.zeros(0, np.int64)
    out = []
    for index in game_row.relevant_indices:
        found, total = counts.get(index, (0, 0))
        sizes = boxes[labels == index, 2:4]
        out.append(
            {
                "game": game_row.name,
                "source": source,
                "label": game_row.labels[index],
                "objects": total,
                "found": found,
                "recall": found / total if total else float("nan"),
                "precision": float("nan"),
                "median_width": float(np.median(sizes[:, 0])) if total else float("nan"),
                "median_height": float(np.median(sizes[:, 1])) if total else float("nan"),
            }
        )
    # the matching is one-to-one, so every found object is one true positive
    found = sum(row["found"] for row in out)
    total = sum(row["objects"] for row in out)
    predictions = sum(len(p) for p in rel_pred)
    out.append(
        {
            "game": game_row.name,
            "source": source,
            "label": ALL_LABELS,
            "objects": total,
            "found": found,
            "recall": found / total if total else float("nan"),
            "precision": safe_precision(found, predictions, total),
            "median_width": float("nan"),
            "median_height": float("nan"),
        }
    )
    return out


def class_recall(
    data_path,
    background_path=None,
    grid_sizes: tuple[int, ...] = GRID_SIZES,
    latents_path=None,
    model_path=None,
    model_name: str | None = None,
) -> list[dict]:
    """The rows of the sources that the given files allow (module docstring)."""
    from spacemoc.data import read_table
    from spacemoc.files import open_h5
    from spacemoc.games import get_game
    from spacemoc.latents import frame_ground_truth

    with open_h5(data_path, "dataset") as f:
        game_row = get_game(str(f.attrs["game"]))
    gt, gt_labels = frame_ground_truth(read_table(data_path, "objects"))
    motion, _ = frame_ground_truth(read_table(data_path, "motion_boxes"))
    sources = {
        f"cells{g}": [_with_score(one_per_cell(boxes, g)) for boxes in gt] for g in grid_sizes
    }
    sources["motion"] = [_with_score(m) for m in motion]
    for g in grid_sizes:
        sources[f"hints{g}"] = [_with_score(one_per_cell(m, g)) for m in motion]
    if background_path is not None:
        sources.update(_background_sources(data_path, background_path, gt))
    if latents_path is not None:
        from spacemoc.latents import load_latents

        lat = load_latents(latents_path, model_path=model_path, data_path=data_path)
        pred = lat.predictions()
        if len(pred) != len(gt):
            raise ValueError(f"{latents_path} has {len(pred)} frames, {data_path} {len(gt)}")
        sources[model_name or "model"] = pred
    rows = []
    for source, pred in sources.items():
        rows += _rows(game_row, source, pred, gt, gt_labels)
    return rows


def write_class_recall(rows: list[dict], out_path) -> None:
    write_table(rows, out_path, COLUMNS)


def read_class_recall(path) -> list[dict]:
    return read_table(path, COLUMNS, "class-recall")


def run_class_recall(data_path, out_path, plot_path=None, **kw) -> list[dict]:
    """``class_recall`` -> ``out_path`` (CSV, ``COLUMNS``) and, given ``plot_path``, its bars."""
    rows = class_recall(data_path, **kw)
    write_class_recall(rows, Path(out_path))
    if plot_path is not None:
        from spacemoc.stages.plots import plot_class_recall

        plot_class_recall(rows, plot_path, title=f"{rows[0]['game']}: recall per class")
    return rows
