"""The tracking stage: detector + tracker over the long consecutive sequences of the `tracking`
split, scored against OCAtari's objects (`spacemoc.tracking.mot_metrics`), into a one-row CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np

from spacemoc.atomic import atomic_path
from spacemoc.files import open_h5
from spacemoc.tracking import Tracker, ground_truth_frames, mot_metrics, track_sequence


def evaluate_tracking(
    tracking_h5,
    model,
    out_csv,
    *,
    classifier=None,
    device=None,
    max_sequences: int | None = None,
    box_readout: str | None = None,
    overlap_suppression: float | None = None,
    **tracker_kwargs,
) -> dict[str, float]:
    """Detector + tracker on the tracking split; writes `subset,mota,idf1,...` to `out_csv`.

    `model`: a training run folder (`model.pt` + `classifier.npz`), a checkpoint file with
    `classifier=` (a `classifier.npz`), or anything else `Detector.load` accepts.
    `box_readout`: the detector's box readout ("glimpse" or "alpha"; None: the one the run was
    evaluated with, as `Detector.load` resolves it); `overlap_suppression` likewise (0: off).
    `tracker_kwargs` go to `Tracker` (max_missed, max_distance, appearance_weight, ...).
    Ground truth: OCAtari's relevant objects inside the game's relevant area (the `relevant`
    subset).
    Returns the metrics (MOTA <= 1 and can be negative; IDF1 in [0, 1]).
    """
    from tqdm import tqdm

    from spacemoc.data import read_table
    from spacemoc.detector import Detector
    from spacemoc.games import get_game

    detector = Detector.load(
        model,
        device=device,
        classifier=classifier,
        box_readout=box_readout,
        overlap_suppression=overlap_suppression,
    )
    tracker = Tracker(**tracker_kwargs)
    objects = read_table(tracking_h5, "objects")
    with open_h5(tracking_h5, "tracking data") as f:
        ds = f["frames"]
        game_name = f.attrs.get("game", detector.game)
        if isinstance(game_name, bytes):
            game_name = game_name.decode()
        game_row = get_game(str(game_name))
        if game_row.name != detector.game:
            raise ValueError(
                f"{tracking_h5} holds {game_row.name!r} frames but the detector is for "
                f"{detector.game!r}"
            )
        n = ds.shape[0] if max_sequences is None else min(max_sequences, ds.shape[0])
        sequences = []
        for i in tqdm(range(n), desc="tracking", unit="seq"):
            frames = ds[i]  # one sample at a time: fancy indexing is slow
            hyp = track_sequence(frames, detector, tracker)
            gt = ground_truth_frames(objects[i], game_row, len(hyp))
            sequences.append(list(zip(gt, hyp, strict=True)))
    metrics = mot_metrics(sequences)
    write_metrics_csv(out_csv, {"subset": "relevant", **metrics})
    return metrics


def ground_truth_tracking(
    tracking_h5, *, drop: float = 0.0, seed: int = 0, **tracker_kwargs
) -> dict[str, float]:
    """The tracker alone: OCAtari's objects of the tracking split as detections (no ids), each
    dropped with probability `drop`. An upper bound of what detector + tracker can reach."""
    from spacemoc.data import read_table
    from spacemoc.games import get_game

    if not 0.0 <= drop < 1.0:
        raise ValueError(f"drop must be in [0, 1), got {drop}")

    with open_h5(tracking_h5, "tracking data") as f:
        game_row = get_game(str(f.attrs["game"]))
        T = f["frames"].shape[1]
    rng = np.random.default_rng(seed)
    sequences = []
    for rows in read_table(tracking_h5, "objects"):
        gt = ground_truth_frames(rows, game_row, T)
        tracker, seq = Tracker(**tracker_kwargs), []
        for frame in gt:
            dets = [
                _Box(game_row.labels[key[0]] if isinstance(key, tuple) else "object", *box)
                for key, box in frame
                if rng.random() >= drop
            ]
            seq.append((frame, [(t.id, (t.x, t.y, t.w, t.h)) for t in tracker.update(dets)]))
        sequences.append(seq)
    return mot_metrics(sequences)


@dataclass
class _Box:
    label: str
    x: float
    y: float
    w: float
    h: float


def write_metrics_csv(path, metrics: dict) -> None:
    """One-row CSV, written to a temporary name and renamed when complete."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(metrics))
        w.writeheader()
        w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in metrics.items()})
