"""SPACE + MOC hyperparameters from a workflow config (the family's ``build_configs``)."""

from __future__ import annotations

from typing import Any

from spacemoc.config import with_defaults
from spacemoc.games import get_game
from spacemoc.models.settings import check_keys

from .config import SpaceConfig
from .moc import MocConfig

# Step boundaries multiplied by train.anneal_scale (prior/temperature annealing, fixed-alpha
# warm-up, linear MOC scheduler), so that a short budget reaches the end values.
SPACE_ANNEAL_KEYS = (
    "z_pres_start_step",
    "z_pres_end_step",
    "z_scale_mean_start_step",
    "z_scale_mean_end_step",
    "tau_start_step",
    "tau_end_step",
    "fix_alpha_steps",
)
MOC_ANNEAL_KEYS = ("motion_cooling_start_step", "motion_cooling_end_step")


def build_configs(game: str, config: dict | None = None):
    """(SpaceConfig, MocConfig) for ``game``.

    Precedence, lowest first: the reference defaults (the dataclasses), the game table's
    overrides, ``config["model"]``, ``config["game_overrides"][game]``. Then ``train.compositing``
    sets the compositing mode and ``train.anneal_scale`` multiplies the annealing step boundaries.
    Unknown keys raise a ValueError that names their source and the valid keys.
    """
    config = with_defaults(config)
    row = get_game(game)
    space: dict[str, Any] = {"compositing": config["train"]["compositing"]}
    moc: dict[str, Any] = {}
    layers = [("the game table", row.space_overrides, row.moc_overrides)]
    model = config["model"]
    layers.append(("config model", model.get("space", {}), model.get("moc", {})))
    for name, overrides in config["game_overrides"].items():
        if get_game(name).name == row.name:
            layers.append(
                (
                    f"config game_overrides.{name}",
                    overrides.get("space", {}),
                    overrides.get("moc", {}),
                )
            )
    for source, space_layer, moc_layer in layers:
        check_keys(SpaceConfig, space_layer, f"{source} (space)")
        check_keys(MocConfig, moc_layer, f"{source} (moc)")
        space.update(space_layer)
        moc.update(moc_layer)

    if moc.get("motion_input"):  # a MOC key in the reference; the model needs to know
        space["motion_input"] = True
    scale = float(config["train"]["anneal_scale"])
    if scale != 1.0:
        defaults_space, defaults_moc = SpaceConfig(), MocConfig()
        for key in SPACE_ANNEAL_KEYS:
            space[key] = _scaled(space.get(key, getattr(defaults_space, key)), scale)
        for key in MOC_ANNEAL_KEYS:
            moc[key] = _scaled(moc.get(key, getattr(defaults_moc, key)), scale)
    return SpaceConfig.from_dict(space), MocConfig.from_dict(moc)


def _scaled(value, scale: float):
    if value <= 0:  # e.g. fix_alpha_steps <= 0 means "never"; keep the sentinel
        return value
    return type(value)(round(value * scale))
