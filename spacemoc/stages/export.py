"""Package a trained run as a detector folder: what `Detector.load` needs and nothing to train.

The folder (``results/<game>/<arm>/seed<k>/detector/`` in the workflow;
``spacemoc/pretrained/<game>/`` when shipped) holds

- ``detector.pt``: the foreground weights of ``model.pt``, bit for bit (detection and latents use
  only the foreground; the background is 55 % of the parameters);
- ``classifier.npz`` and ``classifier_labels.csv``: the run's z_what classifier;
- ``eval.csv``: the workflow's evaluation of these weights;
- ``config.yaml``: the workflow config the run was trained and evaluated with;
- ``train_benchmark.tsv``: the train rule's Snakemake benchmark (wall and CPU seconds, peak
  memory): what the weights cost.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from spacemoc.atomic import atomic_dir, check_replaceable

DETECTOR_WEIGHTS = "detector.pt"
TRAIN_BENCHMARK = "train_benchmark.tsv"
# Everything an export writes: a folder holding anything else is not ours to replace.
DETECTOR_FILES = frozenset(
    {
        DETECTOR_WEIGHTS,
        "classifier.npz",
        "classifier_labels.csv",
        "eval.csv",
        "config.yaml",
        TRAIN_BENCHMARK,
    }
)


PRETRAINED_ROOT = Path(__file__).parents[1] / "pretrained"  # detectors shipped with the package


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
    train_benchmark_path: str | Path | None = None,
) -> Path:
    """Write the detector folder ``out_dir``. An earlier export there is replaced when the new
    one is complete; any other non-empty folder is refused (ValueError)."""
    from spacemoc.models import get_family, load_checkpoint, save_checkpoint

    model_path, classifier_path, out_dir = Path(model_path), Path(classifier_path), Path(out_dir)
    if classifier_path.suffix != ".npz" or not classifier_path.is_file():
        raise ValueError(f"expected the run's classifier.npz, got {classifier_path}")
    model = load_checkpoint(model_path)
    if not get_family(model.family).can_train(model):
        raise ValueError(f"{model_path} is already a detector-only checkpoint")

    check_replaceable(out_dir, DETECTOR_FILES, DETECTOR_WEIGHTS, "detector folder", "export")
    with atomic_dir(out_dir) as tmp:
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
        if train_benchmark_path is not None:
            shutil.copyfile(train_benchmark_path, tmp / TRAIN_BENCHMARK)
    return out_dir
