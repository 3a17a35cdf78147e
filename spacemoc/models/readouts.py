"""Box readouts: how a detection's box is read off a model, by name.

``"glimpse"`` (the reference's readout) is the box the model encodes the object from: SPACE's
z_where, the box its glimpse is cut from. ``"alpha"`` is the box of what the model draws: the
bounding box of the decoded alpha mask above a threshold. For small objects the two differ by
pixels (Pong's ball, docs/evaluation.md).
A family's ``infer(..., box_readout=...)`` offers the readouts it can give
(``spacemoc.models.space.boxes.alpha_extent`` computes SPACE's alpha boxes).
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


def recorded_box_readout(folder: str | Path) -> str | None:
    """The readout a run or detector folder was evaluated with, as its files record it.

    In order: the ``eval.boxes`` of a detector folder's ``config.yaml`` (the workflow config it
    was evaluated with; the schema default where it names none), the readout stored in its
    ``classifier.npz`` (that of the latents it was fit on), the ``box_readout`` of its
    ``latents/validation.h5`` or ``latents/test.h5``. None when the folder records none.
    """
    folder = Path(folder)
    config_path = folder / "config.yaml"
    if config_path.is_file():
        import yaml

        config = yaml.safe_load(config_path.read_text()) or {}
        eval_section = config.get("eval") or {}
        return check_box_readout(str(eval_section.get("boxes", default_box_readout())))
    classifier_path = folder / "classifier.npz"
    if classifier_path.is_file():
        import numpy as np

        try:  # a damaged file records nothing; the stage that needs it says what is wrong
            with np.load(classifier_path, allow_pickle=False) as arrays:
                if "box_readout" in arrays.files:
                    return check_box_readout(str(arrays["box_readout"]))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass
    for split in ("validation", "test"):
        latents_path = folder / "latents" / f"{split}.h5"
        if latents_path.is_file():
            import h5py

            try:
                with h5py.File(latents_path, "r") as f:
                    readout = f.attrs.get("box_readout")
            except OSError:
                continue
            if readout is not None:
                readout = readout.decode() if isinstance(readout, bytes) else str(readout)
                return check_box_readout(readout)
    return None


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
