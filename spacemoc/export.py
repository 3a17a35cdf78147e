"""Package a trained run as a detector folder: what `Detector.load` needs and nothing to train.

The folder (``results/<game>/seed<k>/detector/`` in the workflow; ``spacemoc/pretrained/<game>/``
when shipped) holds

- ``detector.pt``: the foreground weights of ``model.pt``, bit for bit (detection and latents use
  only the foreground; the background is 55 % of the parameters);
- ``classifier.npz`` and ``classifier_labels.csv``: the run's z_what classifier;
- ``eval.csv``: the workflow's evaluation of these weights;
- ``config.yaml``: the workflow config the run was trained and evaluated with.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

DETECTOR_WEIGHTS = "detector.pt"
PRETRAINED_ROOT = Path(__file__).parent / "pretrained"  # detectors shipped with the package


def shipped_detectors() -> list[str]:
    """Games with a detector folder shipped in ``spacemoc/pretrained/``."""
    if not PRETRAINED_ROOT.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_ROOT.iterdir() if (p / DETECTOR_WEIGHTS).is_file())


def export_detector(
    model_path: str | Path,
    classifier_path: str | Path,
    out_dir: str | Path,
    *,
    eval_path: str | Path | None = None,
    config: dict | None = None,
) -> Path:
    """Write the detector folder ``out_dir`` (replacing it only when complete)."""
    from spacemoc.model import load_checkpoint, save_checkpoint

    model_path, classifier_path, out_dir = Path(model_path), Path(classifier_path), Path(out_dir)
    if classifier_path.suffix != ".npz" or not classifier_path.is_file():
        raise ValueError(f"expected the run's classifier.npz, got {classifier_path}")
    model = load_checkpoint(model_path)
    if model.bg_module is None:
        raise ValueError(f"{model_path} is already a detector-only checkpoint")

    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_checkpoint(
            tmp / DETECTOR_WEIGHTS,
            model,
            game=model.game,
            labels=model.labels,
            step=model.step,
            foreground_only=True,
        )
        shutil.copyfile(classifier_path, tmp / "classifier.npz")
        labels_csv = classifier_path.with_name("classifier_labels.csv")
        if labels_csv.is_file():
            shutil.copyfile(labels_csv, tmp / "classifier_labels.csv")
        if eval_path is not None:
            shutil.copyfile(eval_path, tmp / "eval.csv")
        if config is not None:
            (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
