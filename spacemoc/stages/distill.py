"""The distill stage: a trained detector's model taught to a small student on unlabeled frames
of data splits; the student folder (``student.pt`` + the teacher's classifier) loads with
``Detector.load`` like any detector folder (``spacemoc.distill``; docs/detector.md)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from spacemoc.atomic import atomic_dir, check_replaceable
from spacemoc.distill.config import STUDENT_WEIGHTS
from spacemoc.files import open_h5
from spacemoc.logs import StatusLine

# Everything a distill writes: a folder holding anything else is not ours to replace.
STUDENT_FILES = frozenset(
    {STUDENT_WEIGHTS, "classifier.npz", "classifier_labels.csv", "distill.csv"}
)


def read_frames(data_paths, game: str, max_samples: int | None = None) -> list[np.ndarray]:
    """Per data file, every frame (n*T,128,128,3) uint8 of that spacemoc data split of ``game``,
    read sample by sample; ``max_samples`` caps the samples taken from each file."""
    per_file = []
    for path in data_paths:
        with open_h5(path, "dataset") as f:
            if str(f.attrs["game"]) != game:
                found = str(f.attrs["game"])
                raise ValueError(f"{path} holds {found!r} frames, the teacher is {game!r}")
            frames = f["frames"]  # (n,T,128,128,3)
            n = len(frames) if max_samples is None else min(len(frames), max_samples)
            if n == 0:
                raise ValueError(f"{path} holds no frames")
            per_file.append(np.concatenate([frames[i] for i in range(n)]))
    if not per_file:
        raise ValueError("no data files given: the student needs frames to learn from")
    return per_file


def distill_detector(
    run,
    data_paths,
    out_dir,
    *,
    config=None,
    student_config=None,
    max_samples: int | None = None,
    device="auto",
) -> Path:
    """Distil the detector at ``run`` (a run folder or an exported detector folder) on the
    frames of ``data_paths`` (each file drawn from equally often) into the student folder
    ``out_dir``: ``student.pt``, the teacher's
    ``classifier.npz`` (the student reproduces the teacher's z_what) and ``distill.csv`` (losses
    and agreement with the teacher on held-out frames)."""
    from spacemoc.detector import Detector
    from spacemoc.devices import resolve_device
    from spacemoc.distill import DistillConfig, distill, save_student

    run, out_dir = Path(run), Path(out_dir)
    if not (run / "classifier.npz").is_file():
        raise ValueError(
            f"{run} is not a spacemoc run or detector folder with a classifier.npz: the student "
            "is distilled from such a folder"
        )
    check_replaceable(out_dir, STUDENT_FILES, STUDENT_WEIGHTS, "student folder", "distill")
    device = resolve_device(device)
    config = config or DistillConfig()
    teacher = Detector.load(run, device=device)
    per_file = read_frames(data_paths, teacher.game, max_samples)
    images = np.concatenate(per_file)
    # Each file weighs the same: the agent split's few states an agent visits as much as the
    # train split's random play.
    weights = np.concatenate([np.full(len(f), 1.0 / len(f)) for f in per_file])
    status = StatusLine(f"distill {teacher.game}", config.steps, unit="step")

    def progress(step, row):
        status.update(step)
        print(
            f"step {step}: loss {row['loss']:.4f}; held-out agreement with the teacher: cell F "
            f"{row['cell_f']:.4f}, box {row['box_px']:.2f} px, z_what MSE {row['what_mse']:.4f}",
            flush=True,
        )

    student, rows = distill(
        teacher.model,
        images,
        game=teacher.game,
        labels=teacher.labels,
        box_readout=teacher.box_readout,
        student_config=student_config,
        config=config,
        device=device,
        progress=progress,
        frame_weights=weights,
    )
    extra = {
        "teacher": str(run),
        "data": [str(p) for p in data_paths],
        "frames": int(len(images)),
        "distill": config.to_dict(),
    }
    with atomic_dir(out_dir) as tmp:
        save_student(tmp / STUDENT_WEIGHTS, student, extra=extra)
        for name in ("classifier.npz", "classifier_labels.csv"):
            if (run / name).is_file():
                shutil.copyfile(run / name, tmp / name)
        with open(tmp / "distill.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return out_dir


def evaluate_student(
    student_dir, data_path, latents_path, metrics_path, *, seed, arm, few_shot, eval_seed=0
) -> list[dict]:
    """A student folder scored like any model: its latents of the test split ``data_path``
    (``latents_path``), then the evaluate stage's metrics with its classifier (``metrics_path``,
    ``model`` column ``arm``)."""
    from spacemoc.stages.evaluate import evaluate
    from spacemoc.stages.latents import compute_latents

    student_dir = Path(student_dir)
    weights = student_dir / STUDENT_WEIGHTS
    compute_latents(weights, data_path, latents_path)
    return evaluate(
        latents_path,
        data_path,
        student_dir / "classifier.npz",
        metrics_path,
        seed,
        model_path=weights,
        few_shot=few_shot,
        eval_seed=eval_seed,
        model_name=arm,
    )
