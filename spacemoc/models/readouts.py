"""Readouts: how detections are read off a model: the box readout, by name, and the overlap
suppression.

``"glimpse"`` (the reference's readout) is the box the model encodes the object from: SPACE's
z_where, the box its glimpse is cut from. ``"alpha"`` is the box of what the model draws: the
bounding box of the decoded alpha mask above a threshold. For small objects the two differ by
pixels (Pong's ball, docs/evaluation.md).
A family's ``infer(..., box_readout=...)`` offers the readouts it can give
(``spacemoc.models.space.boxes.alpha_extent`` computes SPACE's alpha boxes).

The overlap suppression (``eval.overlap_suppression``) drops a present box that a more present one
mostly covers (``spacemoc.geometry.suppress_overlaps``). Both settings are recorded in the files
a run writes (latents, classifier, exported config), so a detector loaded from a run folder reads
detections off the model as its evaluation did.
"""

from __future__ import annotations

import inspect
import zipfile
from pathlib import Path

BOX_READOUTS = ("glimpse", "alpha")
# The reference's weights were published and scored with their z_where boxes.
REFERENCE_BOX_READOUT = "glimpse"


def check_box_readout(box_readout: str) -> str:
    if box_readout not in BOX_READOUTS:
        raise ValueError(f"unknown box readout {box_readout!r}; valid: {', '.join(BOX_READOUTS)}")
    return box_readout


def check_infer_arguments(images, box_readout: str) -> None:
    """What every family's ``infer`` checks first: the readout name and a (B, C, H, W) batch."""
    check_box_readout(box_readout)
    if images.dim() != 4:
        raise ValueError(f"infer expects images (B, 3, H, W), got shape {tuple(images.shape)}")


def default_box_readout() -> str:
    """The readout when nothing records one: the config schema's ``eval.boxes`` default, the
    one the workflow uses."""
    from spacemoc.config import schema_default

    return check_box_readout(schema_default("eval", "boxes"))


def _recorded(folder: str | Path, config_key: str, record_key: str):
    """The value a run or detector folder records for an evaluation setting, or None.

    In order: ``eval.<config_key>`` of a detector folder's ``config.yaml`` (the workflow config
    it was evaluated with; the schema default where it names none), ``record_key`` in its
    ``classifier.npz`` (that of the latents it was fit on), the ``record_key`` attribute of its
    ``latents/validation.h5`` or ``latents/test.h5``.
    """
    from spacemoc.config import schema_default

    folder = Path(folder)
    config_path = folder / "config.yaml"
    if config_path.is_file():
        import yaml

        config = yaml.safe_load(config_path.read_text()) or {}
        eval_section = config.get("eval") or {}
        return eval_section.get(config_key, schema_default("eval", config_key))
    classifier_path = folder / "classifier.npz"
    if classifier_path.is_file():
        import numpy as np

        try:  # a damaged file records nothing; the stage that needs it says what is wrong
            with np.load(classifier_path, allow_pickle=False) as arrays:
                if record_key in arrays.files:
                    return arrays[record_key].item()
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass
    for split in ("validation", "test"):
        latents_path = folder / "latents" / f"{split}.h5"
        if latents_path.is_file():
            import h5py

            try:
                with h5py.File(latents_path, "r") as f:
                    value = f.attrs.get(record_key)
            except OSError:
                continue
            if value is not None:
                return value.decode() if isinstance(value, bytes) else value
    return None


def recorded_box_readout(folder: str | Path) -> str | None:
    """The readout a run or detector folder was evaluated with, as its files record it (the
    folder's ``config.yaml``, ``classifier.npz`` or latents, see ``_recorded``). None when the
    folder records none."""
    readout = _recorded(folder, "boxes", "box_readout")
    return None if readout is None else check_box_readout(str(readout))


def offers_box_readouts(model) -> bool:
    """Whether ``model.infer`` takes a ``box_readout`` argument (else it gives its z_where
    only)."""
    infer = getattr(model, "infer", None)
    return infer is not None and "box_readout" in inspect.signature(infer).parameters


def resolve_box_readout(
    box_readout: str | None = None, *, folder=None, model=None, classifier=None
) -> str:
    """The box readout to use: ``box_readout`` when given, else the one the run was evaluated
    with.

    Without it: a distilled student's own readout (``fixed_box_readout``), else what ``folder``
    records (``recorded_box_readout``), else what the
    classifier records (the latents it was fit on), else ``glimpse`` for the reference's weights
    (channel order BGR) and for a model whose ``infer`` offers no other, else the config schema's
    default. So a run gives by hand the numbers the workflow gave it.
    """
    fixed = getattr(model, "fixed_box_readout", None)  # a distilled student's only readout
    if box_readout is not None:
        readout = check_box_readout(box_readout)
        if fixed and readout != fixed:
            raise ValueError(
                f"this student gives the {fixed!r} boxes it was distilled from, not {readout!r}"
            )
        if readout != "glimpse" and model is not None and not offers_box_readouts(model):
            raise ValueError(f"this model's infer() has no box readout {readout!r}")
        return readout
    if fixed:
        return check_box_readout(fixed)
    if folder is not None:
        recorded = recorded_box_readout(folder)
        if recorded is not None:
            return recorded
    recorded = getattr(classifier, "box_readout", "")
    if recorded:
        return check_box_readout(str(recorded))
    if model is not None:
        if getattr(model, "channel_order", "rgb") == "bgr":
            return REFERENCE_BOX_READOUT
        if not offers_box_readouts(model):
            return "glimpse"
    return default_box_readout()


def resolve_overlap_suppression(min_overlap=None, *, folder=None, classifier=None) -> float:
    """The overlap suppression to use (``spacemoc.geometry.suppress_overlaps``): ``min_overlap``
    when given, else the one the run was evaluated with: what ``folder`` records (its
    ``config.yaml``, ``classifier.npz`` or latents), else what the classifier records, else the
    config schema's default. Files from before the setting existed record none and were made
    without it, which the default (0, off) matches."""
    from spacemoc.config import schema_default
    from spacemoc.geometry import check_min_overlap

    if min_overlap is not None:
        return check_min_overlap(min_overlap)
    if folder is not None:
        recorded = _recorded(folder, "overlap_suppression", "overlap_suppression")
        if recorded is not None:
            return check_min_overlap(recorded)
    recorded = getattr(classifier, "overlap_suppression", None)
    if recorded is not None:
        return check_min_overlap(recorded)
    return check_min_overlap(schema_default("eval", "overlap_suppression"))
