"""SPACE's side of the checkpoints (``spacemoc.models.checkpoint`` reads and writes the files).

Every key and shape is checked before ``load_state_dict(strict=True)``: a mismatch is a
ValueError naming it, never a partly loaded model. The reference's ``model_*.pth`` files are
SPACE weights too (``from_reference``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import SpaceConfig
from .space import Space

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


def is_reference(ckpt: dict) -> bool:
    """Whether ``ckpt`` is a reference ox4rl ``model_*.pth`` (keys model, global_step, ...)."""
    return isinstance(ckpt.get("model"), dict) and "format" not in ckpt


def from_checkpoint(ckpt: dict, path: Path, config: SpaceConfig | dict | None) -> Space:
    """A Space from a "spacemoc/1" checkpoint dict (metadata is set by the caller).

    ``parts == "foreground"`` (a detector-only file) gives ``bg_module = None``: ``infer`` works,
    training and reconstruction raise a ValueError.
    """
    state_dict = ckpt["state_dict"]
    parts = ckpt.get("parts", "all")
    if parts not in ("all", FOREGROUND):
        raise ValueError(f"{path}: unknown checkpoint parts {parts!r}")
    foreground_only = parts == FOREGROUND
    base = SpaceConfig.from_dict(ckpt["model_config"])
    if isinstance(config, dict):
        base = base.replace(**config)
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
    return model


def from_reference(ckpt: dict, path: Path, config: SpaceConfig | dict | None) -> Space:
    """A Space from a reference ``model_*.pth`` dict: channel order BGR, step ``global_step``."""
    state_dict = dict(ckpt["model"])
    arch = state_dict.pop("arch_type", "space")
    if arch != "space":
        raise ValueError(
            f"{path}: reference checkpoint of arch_type {arch!r}; only 'space' is supported"
        )
    base = reference_config(state_dict, config if isinstance(config, dict) else None)
    cfg = config if isinstance(config, SpaceConfig) else base
    check_compatible(state_dict, cfg)
    model = Space(cfg)
    model.load_state_dict(state_dict, strict=True)
    model.channel_order = "bgr"
    step = ckpt.get("global_step")
    model.step = int(step) if step is not None else None
    return model


def inference_state(model: Space) -> dict:
    """The weights ``infer`` needs (the foreground): a detector-only checkpoint's state dict."""
    return {k: v for k, v in model.state_dict().items() if k.startswith(FG_PREFIX)}


def can_train(model: Space) -> bool:
    """False for a model loaded from a detector-only checkpoint."""
    return model.bg_module is not None
