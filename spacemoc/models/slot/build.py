"""Slot Attention + MOC hyperparameters from a workflow config (the family's
``build_configs``)."""

from __future__ import annotations

from typing import Any

from spacemoc.config import with_defaults
from spacemoc.games import get_game
from spacemoc.models.settings import check_keys

from .config import SlotConfig, SlotMocConfig

SCHEDULE_KEYS = ("schedule_start_step", "schedule_end_step")


def build_configs(game: str, config: dict | None = None):
    """(SlotConfig, SlotMocConfig) for ``game``: the dataclasses' defaults, then
    ``config["model"]`` (sections ``slot`` and ``slot_moc``), then
    ``config["game_overrides"][game]``; ``train.anneal_scale`` multiplies the schedule's step
    boundaries, as it does SPACE's annealing."""
    config = with_defaults(config)
    row = get_game(game)
    slot: dict[str, Any] = {}
    moc: dict[str, Any] = {}
    layers = [("config model", config["model"])]
    for name, overrides in config["game_overrides"].items():
        if get_game(name).name == row.name:
            layers.append((f"config game_overrides.{name}", overrides))
    for source, layer in layers:
        check_keys(SlotConfig, layer.get("slot", {}), f"{source} (slot)")
        check_keys(SlotMocConfig, layer.get("slot_moc", {}), f"{source} (slot_moc)")
        slot.update(layer.get("slot", {}))
        moc.update(layer.get("slot_moc", {}))
    scale = float(config["train"]["anneal_scale"])
    defaults = SlotMocConfig()
    for key in SCHEDULE_KEYS:
        moc[key] = int(round(moc.get(key, getattr(defaults, key)) * scale))
    return SlotConfig.from_dict(slot), SlotMocConfig.from_dict(moc)
