"""The registry of model families: ``FAMILIES[name]`` is what a family folder provides.

A family (``spacemoc/models/<name>/``) exports one ``Family`` object; registering it here is one
line. docs/design.md ("How to add a model family") says what each field takes and returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_FAMILY = "space"  # what checkpoints and configs that name no family hold


@dataclass(frozen=True)
class Family:
    """What a model family provides (every later stage uses only this and ``model.infer``).

    * ``config`` / ``loss_config``: dataclasses with ``to_dict()`` and ``from_dict(dict)``; the
      first rebuilds the model (stored as a checkpoint's ``model_config``), the second configures
      the training losses (SPACE: the MOC losses, stored as ``moc_config``).
    * ``build_configs(game, config) -> (config, loss_config)``: from a workflow config (the game
      table < ``config["model"]`` < ``config["game_overrides"][game]``).
    * ``model(config)``: an ``nn.Module`` with ``family`` (this name), ``config``,
      ``channel_order``, ``game``, ``labels``, ``step``, ``num_objects`` and
      ``infer(images, *, threshold, present_only, box_readout) -> dict`` (docs/design.md) and
      ``view(images) -> {panel: (B,3,H,W) in [0,1]}`` (what it draws, for pictures).
    * ``trainer(model, loss_config, train_section)``: owns the optimisers and the losses;
      ``step(batch, step) -> logs`` (one optimisation step), ``state_dict()`` /
      ``load_state_dict()`` (exact resume), ``curve_row(logs, images, timings)``,
      ``curve_columns``, ``log_tensorboard(writer, step, row, logs)``,
      ``log_images(writer, step, batch, logs)``, ``describe(logs)``.
    * checkpoints: ``from_checkpoint(ckpt, path, config) -> model`` (a "spacemoc/1" dict),
      ``inference_state(model) -> state dict`` (what a detector-only file keeps),
      ``can_train(model)``, and optionally ``reads_foreign(ckpt) -> bool`` with
      ``from_foreign(ckpt, path, config) -> model`` for weight files of other programs.
    * ``sections``: the names of its settings' sections in a workflow config.
    """

    name: str
    config: type
    loss_config: type
    build_configs: Callable[[str, dict | None], tuple[Any, Any]]
    model: type
    trainer: type
    from_checkpoint: Callable[[dict, Path, Any], Any]
    inference_state: Callable[[Any], dict]
    can_train: Callable[[Any], bool]
    reads_foreign: Callable[[dict], bool] = lambda ckpt: False
    from_foreign: Callable[[dict, Path, Any], Any] | None = None
    # the workflow config's sections of this family's settings (in ``model``, an arm and
    # ``game_overrides.<game>``)
    sections: tuple[str, ...] = ("space", "moc")


def _families() -> dict[str, Family]:
    from spacemoc.models import slot, space

    return {family.name: family for family in (space.FAMILY, slot.FAMILY)}


FAMILIES: dict[str, Family] = _families()


def get_family(name: str) -> Family:
    """The registered family ``name``, or a ValueError listing the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]
