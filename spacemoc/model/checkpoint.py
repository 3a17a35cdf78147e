"""Save and load checkpoints: our ``model.pt`` ("spacemoc/1") and the reference's ``model_*.pth``.

Loading always uses ``torch.load(..., weights_only=True)`` and checks every key and shape before
``load_state_dict(strict=True)``: a mismatch is a ValueError naming it, never a partly loaded model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from spacemoc.atomic import atomic_path
from spacemoc.files import damaged_file_error

from .config import SpaceConfig
from .space import Space

FORMAT = "spacemoc/1"
FOREGROUND = "foreground"  # ``parts`` of a detector-only checkpoint (no background weights)
FG_PREFIX = "fg_module."

# Structural hyperparameters that can be read off reference weight shapes: name -> (key, reader).
_SHAPE_FACTS = {
    "G": ("fg_module.img_encoder.offset", lambda s: s[1]),
    "z_what_dim": ("fg_module.glimpse_dec.dec.0.weight", lambda s: s[1]),
    "img_enc_dim_fg": ("fg_module.img_encoder.enc.15.weight", lambda s: s[0]),
    "motion_input": ("fg_module.img_encoder.z_pres_net.weight", lambda s: s[1] == 129),
    "img_enc_dim_bg": ("bg_module.image_enc.enc.13.weight", lambda s: s[0]),
    "z_mask_dim": ("bg_module.z_mask_0", lambda s: s[0]),
    "z_comp_dim": ("bg_module.predict_comp_prior.mlp.4.weight", lambda s: s[0] // 2),
    "rnn_mask_hidden_dim": ("bg_module.rnn_mask_h", lambda s: s[0]),
    "rnn_mask_prior_hidden_dim": ("bg_module.rnn_mask_h_prior", lambda s: s[0]),
    "predict_comp_hidden_dim": ("bg_module.predict_comp_prior.mlp.0.weight", lambda s: s[0]),
}
_DESCRIPTION = {
    "G": "grid size G",
    "z_what_dim": "z_what dimension",
    "K": "background components K>1",
}


def _facts(state_dict: dict) -> dict[str, Any]:
    """Hyperparameters implied by the weight shapes (only those present)."""
    facts = {}
    for name, (key, read) in _SHAPE_FACTS.items():
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor):
            facts[name] = read(tuple(value.shape))
    # K is not in any shape; the decoder type tells K == 1 (pixel-shuffle) from K > 1 (broadcast)
    if any(k.startswith("bg_module.comp_decoder.decoder.") for k in state_dict):
        facts["K>1"] = True
    elif any(k.startswith("bg_module.comp_decoder.dec.") for k in state_dict):
        facts["K>1"] = False
    return facts


def _config_facts(cfg: SpaceConfig) -> dict[str, Any]:
    facts = {name: getattr(cfg, name) for name in _SHAPE_FACTS}
    facts["K>1"] = cfg.K > 1
    return facts


def check_compatible(state_dict: dict, cfg: SpaceConfig, foreground_only: bool = False) -> None:
    """Raise ValueError naming every mismatch between the weights and a model built from ``cfg``
    (only its foreground with ``foreground_only``)."""
    have, want = _facts(state_dict), _config_facts(cfg)
    diffs = [
        f"{_DESCRIPTION.get(name, name)}: checkpoint {have[name]}, config {want[name]}"
        for name in want
        if name in have and have[name] != want[name]
    ]
    expected = Space(cfg).state_dict()
    if foreground_only:
        expected = {k: v for k, v in expected.items() if k.startswith(FG_PREFIX)}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict
        and isinstance(state_dict[k], torch.Tensor)
        and state_dict[k].shape != v.shape
    ]
    not_tensor = [
        k for k in state_dict if k in expected and not isinstance(state_dict[k], torch.Tensor)
    ]
    if diffs or missing or unexpected or wrong or not_tensor:
        parts = []
        if diffs:
            parts.append("; ".join(diffs))
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatch", wrong),
            ("non-tensor entries", not_tensor),
        ):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise ValueError("checkpoint does not match the model config: " + " | ".join(parts))


def reference_config(state_dict: dict, overrides: dict | None = None) -> SpaceConfig:
    """Config of reference weights: the reference Pong config plus what the shapes tell."""
    facts = _facts(state_dict)
    values = {name: facts[name] for name in _SHAPE_FACTS if name in facts}
    if facts.get("K>1") is False:
        values["K"] = 1
    values.update(overrides or {})
    return SpaceConfig.from_dict({**SpaceConfig().to_dict(), **values})


def _is_device_error(err: Exception) -> bool:
    """torch.load failing on the device (no CUDA), not on the file."""
    return isinstance(err, RuntimeError) and "CUDA" in str(err)


def _is_reference(ckpt: dict) -> bool:
    return isinstance(ckpt.get("model"), dict) and "format" not in ckpt


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    config: SpaceConfig | dict | None = None,
) -> Space:
    """Load a spacemoc ``model.pt`` or a reference ``model_XXXXXXXXX.pth`` as a Space (eval mode).

    ``config``: a SpaceConfig to use instead of the stored / inferred one, or a dict of overrides on
    it (e.g. annealing values a reference checkpoint cannot tell). Reference weights get
    ``channel_order = "bgr"`` (the reference feeds BGR images).

    A detector-only checkpoint (``save_checkpoint(..., foreground_only=True)``) gives a model with
    ``bg_module = None``: ``infer`` works, training and reconstruction raise a ValueError.
    """
    path = Path(path)
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

    foreground_only = False
    if ckpt.get("format") == FORMAT:
        state_dict = ckpt["state_dict"]
        parts = ckpt.get("parts", "all")
        if parts not in ("all", FOREGROUND):
            raise ValueError(f"{path}: unknown checkpoint parts {parts!r}")
        foreground_only = parts == FOREGROUND
        base = SpaceConfig.from_dict(ckpt["model_config"])
        channel_order = ckpt.get("channel_order", "rgb")
        game, labels, step = ckpt.get("game"), ckpt.get("labels"), ckpt.get("step")
        if isinstance(config, dict):
            base = base.replace(**config)
    elif _is_reference(ckpt):
        state_dict = dict(ckpt["model"])
        arch = state_dict.pop("arch_type", "space")
        if arch != "space":
            raise ValueError(
                f"{path}: reference checkpoint of arch_type {arch!r}; only 'space' is supported"
            )
        base = reference_config(state_dict, config if isinstance(config, dict) else None)
        channel_order = "bgr"
        game, labels, step = None, None, ckpt.get("global_step")
    else:
        fmt = ckpt.get("format", "<none>")
        raise ValueError(
            f"{path}: unsupported checkpoint format {fmt!r} (keys {sorted(map(str, ckpt))[:8]}); "
            f"expected a spacemoc '{FORMAT}' model.pt or a reference ox4rl model_*.pth "
            "(keys model, global_step, ...)"
        )
    cfg = config if isinstance(config, SpaceConfig) else base
    check_compatible(state_dict, cfg, foreground_only)
    model = Space(cfg)
    if foreground_only:
        model.fg_module.load_state_dict(
            {k[len(FG_PREFIX) :]: v for k, v in state_dict.items()}, strict=True
        )
        model.bg_module = None
    else:
        model.load_state_dict(state_dict, strict=True)
    model.channel_order = channel_order
    model.game, model.labels = game, list(labels) if labels is not None else None
    model.step = int(step) if step is not None else None
    return model.to(map_location).eval()


def save_checkpoint(
    path: str | os.PathLike,
    model: Space,
    *,
    game: str | None,
    labels: list[str] | None,
    step: int | None,
    extra: dict | None = None,
    foreground_only: bool = False,
) -> Path:
    """Write ``model`` as a "spacemoc/1" checkpoint atomically (temporary file + rename).

    ``extra`` entries (optimizer / scheduler states, ...) are stored beside the model's.
    ``foreground_only`` keeps only the foreground weights: all detection and latents need, 45 % of
    the parameters (the background's mask decoder alone is 2.1 M); such a file cannot train.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "game": game,
        "labels": list(labels) if labels is not None else None,
        "model_config": model.config.to_dict(),
        "channel_order": model.channel_order,
        "step": step,
        "parts": FOREGROUND if foreground_only else "all",
        "state_dict": {
            k: v.detach().cpu()
            for k, v in model.state_dict().items()
            if not foreground_only or k.startswith(FG_PREFIX)
        },
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
