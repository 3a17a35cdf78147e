"""Save and load model checkpoints of any family: our ``model.pt`` ("spacemoc/1") and foreign
weight files a family can read (SPACE: the reference's ``model_*.pth``).

A "spacemoc/1" file records its ``family`` (files written before families existed hold SPACE
weights and name none). Loading always uses ``torch.load(..., weights_only=True)``; the family
checks every key and shape before it loads the weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from spacemoc.atomic import atomic_path
from spacemoc.files import damaged_file_error

from .families import DEFAULT_FAMILY, FAMILIES, get_family

FORMAT = "spacemoc/1"
FOREGROUND = "foreground"  # ``parts`` of a detector-only checkpoint: the weights infer() needs


def _is_device_error(err: Exception) -> bool:
    """torch.load failing on the device (no CUDA), not on the file."""
    return isinstance(err, RuntimeError) and "CUDA" in str(err)


def _read(path: Path, map_location) -> dict:
    if not path.exists():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        if _is_device_error(err):
            raise ValueError(f"cannot load checkpoint {path} onto {map_location}: {err}") from err
        raise damaged_file_error(path, "checkpoint", err) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a checkpoint dict (got {type(ckpt).__name__})")
    return ckpt


def checkpoint_family(ckpt: dict) -> str:
    """The family name a "spacemoc/1" checkpoint dict records (SPACE for files of before)."""
    return str(ckpt.get("family") or DEFAULT_FAMILY)


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    config=None,
):
    """Load a spacemoc ``model.pt`` (any family), a distilled ``student.pt``
    (``spacemoc.distill``) or a foreign file a family reads (the reference's
    ``model_XXXXXXXXX.pth``: SPACE, channel order BGR) as a model in eval mode.

    ``config``: the family's config dataclass to use instead of the stored / inferred one, or a
    dict of overrides on it (e.g. annealing values a reference checkpoint cannot tell).
    The model carries ``game``, ``labels``, ``step`` and ``channel_order`` from the file.
    """
    from spacemoc.distill.checkpoint import student_from_payload
    from spacemoc.distill.config import STUDENT_FORMAT

    path = Path(path)
    ckpt = _read(path, map_location)
    if ckpt.get("format") == STUDENT_FORMAT:
        model = student_from_payload(ckpt)
    elif ckpt.get("format") == FORMAT:
        family = get_family(checkpoint_family(ckpt))
        model = family.from_checkpoint(ckpt, path, config)
        model.channel_order = ckpt.get("channel_order", "rgb")
        labels, step = ckpt.get("labels"), ckpt.get("step")
        model.game = ckpt.get("game")
        model.labels = list(labels) if labels is not None else None
        model.step = int(step) if step is not None else None
    else:
        family = next((f for f in FAMILIES.values() if f.reads_foreign(ckpt)), None)
        if family is None:
            fmt = ckpt.get("format", "<none>")
            raise ValueError(
                f"{path}: unsupported checkpoint format {fmt!r} (keys "
                f"{sorted(map(str, ckpt))[:8]}); expected a spacemoc '{FORMAT}' model.pt or a "
                "reference ox4rl model_*.pth (keys model, global_step, ...)"
            )
        model = family.from_foreign(ckpt, path, config)
    return model.to(map_location).eval()


def save_checkpoint(
    path: str | os.PathLike,
    model,
    *,
    game: str | None,
    labels: list[str] | None,
    step: int | None,
    extra: dict | None = None,
    foreground_only: bool = False,
) -> Path:
    """Write ``model`` as a "spacemoc/1" checkpoint atomically (temporary file + rename).

    ``extra`` entries (the trainer's optimiser and scheduler states, RNG states, ...) are stored
    beside the model's. ``foreground_only`` keeps only the weights ``infer`` needs (SPACE: the
    foreground, 45 % of the parameters); such a file cannot train.
    """
    family = get_family(model.family)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = family.inference_state(model) if foreground_only else model.state_dict()
    payload = {
        "format": FORMAT,
        "family": family.name,
        "game": game,
        "labels": list(labels) if labels is not None else None,
        "model_config": model.config.to_dict(),
        "channel_order": model.channel_order,
        "step": step,
        "parts": FOREGROUND if foreground_only else "all",
        "state_dict": {k: v.detach().cpu() for k, v in weights.items()},
    }
    for key, value in (extra or {}).items():
        if key in payload:
            raise ValueError(f"extra key {key!r} would overwrite a checkpoint field")
        payload[key] = value
    bad = [k for k, v in payload["state_dict"].items() if not torch.isfinite(v).all()]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise FloatingPointError(
            f"refusing to write {path}: {len(bad)} of {len(payload['state_dict'])} weight "
            f"tensors hold NaN or infinite values ({', '.join(bad[:3])}{more})"
        )
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
