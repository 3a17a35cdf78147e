"""How a detection's box is read off the model: the glimpse box or the extent of the drawn object.

SPACE's z_where is the box the glimpse is cut from and drawn into; nothing in the loss ties the
object to the box's centre (the decoder may draw it anywhere inside), so for small objects the
glimpse box's centre can sit pixels away from the object (Pong's ball, docs/evaluation.md).
``"alpha"`` reads the box as the bounding box of the glimpse's decoded alpha mask above
``ALPHA_THRESHOLD``: where the model draws the object. ``"glimpse"`` is the reference's readout.
"""

from __future__ import annotations

import inspect
import zipfile
from pathlib import Path

import torch

BOX_READOUTS = ("glimpse", "alpha")
ALPHA_THRESHOLD = 0.5
# The reference's weights were published and scored with their z_where boxes.
REFERENCE_BOX_READOUT = "glimpse"


def check_box_readout(boxes: str) -> str:
    if boxes not in BOX_READOUTS:
        raise ValueError(f"unknown box readout {boxes!r}; valid: {', '.join(BOX_READOUTS)}")
    return boxes


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
    """Whether ``model.infer`` takes a ``boxes`` argument (else it gives its z_where only)."""
    infer = getattr(model, "infer", None)
    return infer is not None and "boxes" in inspect.signature(infer).parameters


def resolve_box_readout(
    boxes: str | None = None, *, folder=None, model=None, classifier=None
) -> str:
    """The box readout to use: ``boxes`` when given, else the one the run was evaluated with.

    Without ``boxes``: what ``folder`` records (``recorded_box_readout``), else what the
    classifier records (the latents it was fit on), else ``glimpse`` for the reference's weights
    (channel order BGR) and for a model whose ``infer`` offers no other, else the config schema's
    default. So a run gives by hand the numbers the workflow gave it.
    """
    if boxes is not None:
        readout = check_box_readout(boxes)
        if readout != "glimpse" and model is not None and not offers_box_readouts(model):
            raise ValueError(f"this model's infer() has no box readout {readout!r}")
        return readout
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


def alpha_extent(
    z_where: torch.Tensor,  # (M,4) [scale_x, scale_y, centre_x, centre_y], centres in [-1, 1]
    alpha: torch.Tensor,  # (M,1,g,g) decoded glimpse alpha in (0, 1)
    threshold: float = ALPHA_THRESHOLD,
) -> torch.Tensor:
    """The bounding box of ``alpha > threshold`` inside each glimpse, as z_where (M,4).

    Glimpses are sampled with align_corners=True: glimpse pixel j sits at -1 + 2j/(g-1) in box
    units, so a run of pixels j0..j1 covers half a pixel spacing more on each side. A glimpse
    with no pixel above the threshold keeps its box.
    """
    g = alpha.shape[-1]
    on = alpha[:, 0] > threshold  # (M,g,g) rows = y, columns = x
    out = z_where.clone()
    for axis, dim in ((0, 1), (1, 2)):  # x: any over rows; y: any over columns
        hit = on.any(dim)  # (M,g)
        found = hit.any(1)
        first = hit.float().argmax(1)
        last = g - 1 - hit.flip(1).float().argmax(1)
        scale, centre = z_where[:, axis], z_where[:, axis + 2]
        new_centre = centre + scale * (-1 + (first + last) / (g - 1))
        new_scale = scale * (last - first + 1) / (g - 1)
        out[:, axis] = torch.where(found, new_scale, scale)
        out[:, axis + 2] = torch.where(found, new_centre, centre)
    return out
