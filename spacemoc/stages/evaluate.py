"""One seed's metrics table, the per-game aggregate and the all-games summary.

``evaluate`` -> ``results/{game}/{model}/seed{seed}/metrics.csv``: rows (game, model arm, seed,
subset) for subset in all / relevant with every ``COLUMNS`` entry, computed on the *test* latents:

* detection (``spacemoc.metrics.detection_scores``) of the present cells against the GT boxes;
* encodings (``encoding_scores``) of the present cells matched to a GT object (for ``relevant``:
  relevant labels, boxes in the relevant area); AMI / ARI below 0 (worse than chance) are written
  as 0 so that every value is a fraction in [0,1];
* ``classifier_accuracy`` and ``joint_f1`` (spec §6.3-6.4) with the classifier trained on the
  validation latents: ``relevant`` row only (the classifier knows only the relevant labels);
* ``mota`` / ``idf1`` from the tracking stage's CSV when given (rows matched on its ``subset``
  column if it has one, else the ``relevant`` row; a negative MOTA is written as 0), empty
  otherwise.

The background-subtraction baseline's rows (``model`` = bgsub, seed ``-``) are appended when its
CSV is given. Columns that do not apply are empty, never 0.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from spacemoc.arms import DEFAULT_ARM
from spacemoc.atomic import atomic_path
from spacemoc.stages.bgsub import BASELINE_MODEL
from spacemoc.tables import cell, read_table, write_table

COLUMNS = (
    "game",
    "model",
    "seed",
    "subset",
    "precision",
    "recall",
    "f_score",
    "ap_avg",
    "ap_0.5",
    "count_accuracy",
    "few_shot_1",
    "few_shot_4",
    "few_shot_16",
    "few_shot_64",
    "cluster_nn_accuracy",
    "ami",
    "ari",
    "classifier_accuracy",
    "joint_f1",
    "mota",
    "idf1",
)
KEY_COLUMNS = COLUMNS[:4]
VALUE_COLUMNS = COLUMNS[4:]
DEFAULT_MODEL_NAME = DEFAULT_ARM
SUBSETS = ("all", "relevant")


# --------------------------------------------------------------------------- csv helpers


def write_rows(rows: list[dict], path: str | Path) -> None:
    """Write rows with exactly ``COLUMNS`` (missing/NaN -> empty), atomically."""
    write_table(rows, path, COLUMNS)


def read_rows(path: str | Path) -> list[dict]:
    return read_table(path, COLUMNS, "metrics")


# --------------------------------------------------------------------------- pieces


def mean_and_std(values) -> tuple[float | str, float | str]:
    """Mean and sample standard deviation of per-seed values; "" where undefined (no value; one
    value for the std)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if len(values) else ""
    std = float(values.std(ddof=1)) if len(values) > 1 else ""
    return mean, std


def ground_truth(data_path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame (flattened, sample-major) GT boxes (K,4) and labels (K,)."""
    from spacemoc.latents import frame_ground_truth, read_objects

    boxes, labels = frame_ground_truth(read_objects(data_path))
    if not boxes:
        raise ValueError(f"{data_path} holds no frames: nothing to evaluate")
    return boxes, labels


def joint_evaluation(lat, gt_boxes, gt_labels, clf) -> dict:
    """Joint detection + classification on the relevant subset (spec §6.4)."""
    from spacemoc.metrics import joint_scores, relevant_subset

    pred = lat.predictions()
    z, colours = lat.prediction_features()
    rel_pred, rel_gt, rel_labels, keep = relevant_subset(pred, gt_boxes, gt_labels, lat.game)
    pred_labels = [
        clf.predict(zf[k], None if cf is None else cf[k]) if len(zf[k]) else np.zeros(0, np.int64)
        for zf, cf, k in zip(z, colours, keep, strict=True)
    ]
    return joint_scores(rel_pred, pred_labels, rel_gt, rel_labels, n_labels=len(lat.labels))


def tracking_values(path) -> dict[str, dict]:
    """subset -> {mota, idf1} from the tracking stage's CSV."""
    if path is None or not Path(path).exists():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for row in rows:
        subset = row.get("subset") or "relevant"
        values = {k: float(row[k]) for k in ("mota", "idf1") if row.get(k, "") != ""}
        # MOTA is below 0 when there are more errors than objects: written as 0 (the raw value
        # stays in the tracking CSV) so that every table value is a fraction in [0,1].
        if "mota" in values and values["mota"] < 0:
            values["mota"] = 0.0
        out[subset] = values
    return out


# --------------------------------------------------------------------------- evaluate


def evaluate(
    latents_path,
    data_path,
    classifier_path,
    out_path,
    seed,
    model_path=None,
    baseline_path=None,
    tracking_path=None,
    few_shot=(1, 4, 16, 64),
    eval_seed: int = 0,
    model_name: str = DEFAULT_MODEL_NAME,
) -> list[dict]:
    """Compute one seed's metrics (test latents vs test data) and write ``out_path``; the rows'
    ``model`` column is ``model_name`` (the workflow's model arm)."""
    import warnings

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.latents import collect_encodings, load_latents
    from spacemoc.metrics import detection_scores, encoding_scores, relevant_subset

    lat = load_latents(latents_path, model_path=model_path, data_path=data_path)
    clf = ZWhatClassifier.load(classifier_path, game=lat.game)
    gt_boxes, gt_labels = ground_truth(data_path)
    pred = lat.predictions()
    if len(pred) != len(gt_boxes):
        raise ValueError(f"{latents_path} has {len(pred)} frames, {data_path} {len(gt_boxes)}")
    tracking = tracking_values(tracking_path)
    rows = []
    for subset in SUBSETS:
        row = {"game": lat.game, "model": model_name, "seed": str(seed), "subset": subset}
        if subset == "all":
            row.update(detection_scores(pred, gt_boxes))
        else:
            rel_pred, rel_gt, _, _ = relevant_subset(pred, gt_boxes, gt_labels, lat.game)
            row.update(detection_scores(rel_pred, rel_gt))
        enc = collect_encodings(lat, subset)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scores = encoding_scores(enc["z_what"], enc["label"], few_shot, seed=eval_seed)
        for w in caught:
            print(f"[{subset}] {w.message}")
        for key in ("ami", "ari"):
            scores[key] = max(scores[key], 0.0) if not math.isnan(scores[key]) else scores[key]
        row.update({k: v for k, v in scores.items() if k != "too_rare"})
        if subset == "relevant":
            if len(enc["z_what"]):
                row["classifier_accuracy"] = float(
                    (clf.predict(enc["z_what"], enc.get("colour")) == enc["label"]).mean()
                )
            row["joint_f1"] = joint_evaluation(lat, gt_boxes, gt_labels, clf)["f1"]
        row.update(tracking.get(subset, {}))
        rows.append(row)
        print(f"{subset}: " + ", ".join(f"{k}={cell(row.get(k))}" for k in VALUE_COLUMNS))
    if baseline_path is not None:
        rows += read_rows(baseline_path)
    write_rows(rows, out_path)
    return rows


def run_bgsub(data_path, background_path, out_path, **kw) -> list[dict]:
    """The background-subtraction baseline's rows for a test split -> ``out_path``."""
    from spacemoc.stages.bgsub import evaluate_bgsub

    rows = evaluate_bgsub(data_path, background_path, **kw)
    write_rows(rows, out_path)
    return rows


# --------------------------------------------------------------------------- aggregate


def aggregate(metrics_paths, out_path, baseline_path=None) -> list[dict]:
    """Per model (arm): its per-seed rows + ``mean`` and ``std`` (sample std; empty with one
    seed) rows per subset; then the bgsub rows (from ``baseline_path`` or the metrics files)."""
    if not metrics_paths:
        raise ValueError("no metrics files to aggregate")
    per_seed, baseline = [], []
    for path in metrics_paths:
        for row in read_rows(path):
            (baseline if row["model"] == BASELINE_MODEL else per_seed).append(row)
    if baseline_path is not None:
        baseline = [r for r in read_rows(baseline_path) if r["model"] == BASELINE_MODEL]
    else:  # every seed's file carries the same baseline rows
        seen, unique = set(), []
        for row in baseline:
            key = (row["model"], row["subset"])
            if key not in seen:
                seen.add(key)
                unique.append(row)
        baseline = unique
    rows = []
    for model in dict.fromkeys(r["model"] for r in per_seed):
        runs = [r for r in per_seed if r["model"] == model]
        rows += runs
        for subset in SUBSETS:
            group = [r for r in runs if r["subset"] == subset]
            if not group:
                continue
            mean = {"game": group[0]["game"], "model": model, "seed": "mean", "subset": subset}
            std = dict(mean, seed="std")
            for column in VALUE_COLUMNS:
                values = [float(r[column]) for r in group if r[column] != ""]
                mean[column], std[column] = mean_and_std(values)
            rows += [mean, std]
    rows += baseline
    write_rows(rows, out_path)
    return rows


def summary(eval_paths, out_path) -> list[dict]:
    """All games' ``eval.csv`` rows in one table."""
    rows = [row for path in eval_paths for row in read_rows(path)]
    write_rows(rows, out_path)
    return rows


# --------------------------------------------------------------------------- results table

TABLE_COLUMNS = {
    "f_score": "relevant F",
    "cluster_nn_accuracy": "cluster-NN",
    "ami": "AMI",
    "few_shot_64": "few-shot-64",
    "joint_f1": "joint F1",
    "mota": "MOTA",
    "idf1": "IDF1",
}


def _mean_std(rows: list[dict], column: str) -> str:
    """ "mean ± std" of the per-seed rows' ``column`` ("mean" alone for one seed)."""
    mean, std = mean_and_std([float(r[column]) for r in rows if r[column] != ""])
    if mean == "":
        return ""
    return f"{mean:.3f}" if std == "" else f"{mean:.3f} ± {std:.3f}"


def results_table(summary_path, out_path) -> str:
    """Markdown: per game, the relevant-object figures of every model arm (mean ± sample std over
    its seeds, the seed count beside), the background-subtraction baseline and the published
    figures (``spacemoc.published``); written to ``out_path`` and returned."""
    from spacemoc.published import PUBLISHED

    rows = [r for r in read_rows(summary_path) if r["subset"] == "relevant"]
    lines = [
        "# Results",
        "",
        f"Test split, relevant objects; made by `spacemoc results-table` (the workflow's rule "
        f"`results_table`) from `{summary_path}`. `{BASELINE_MODEL}`: the non-learned "
        "background-subtraction detector on the same frames (detection only, no labels). Empty "
        "cells: not measured, or not given by the source.",
        "",
    ]
    header = "| model | seeds | " + " | ".join(TABLE_COLUMNS.values()) + " |"
    rule = "|---|---|" + "---|" * len(TABLE_COLUMNS)
    for game in dict.fromkeys(r["game"] for r in rows):
        lines += [f"## {game}", "", header, rule]
        game_rows = [r for r in rows if r["game"] == game]
        for model in dict.fromkeys(r["model"] for r in game_rows):
            group = [r for r in game_rows if r["model"] == model]
            seeds = [r for r in group if r["seed"] not in ("mean", "std")]
            count = "-" if model == BASELINE_MODEL else str(len(seeds))
            cells = [_mean_std(seeds, column) for column in TABLE_COLUMNS]
            lines.append(f"| {model} | {count} | " + " | ".join(cells) + " |")
        sources: dict[str, dict[str, str]] = {}
        for column, (value, source) in PUBLISHED.get(game, {}).items():
            sources.setdefault(source, {})[column] = value
        for source, values in sources.items():
            cells = [values.get(column, "") for column in TABLE_COLUMNS]
            lines.append(f"| {source} | | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    with atomic_path(out_path) as tmp:
        Path(tmp).write_text(text)
    return text
