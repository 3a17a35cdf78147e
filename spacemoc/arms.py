"""Model arms: the model axis of an experiment. An arm is a name plus the settings that make it: a
model family and its overrides of the family's hyperparameters (``space`` and ``moc`` for the
SPACE family, ``slot`` and ``slot_moc`` for Slot Attention). The MOC paper's ablation is built
in, for both families; a config's ``arms`` section adds arms or redefines these.

Precedence of a run's model settings, lowest first: the family's defaults, the game table, the
config's ``model``, the arm, the config's ``game_overrides.<game>``.
"""

from __future__ import annotations

import copy

from spacemoc.config import merge

DEFAULT_ARM = "space_moc"  # the model column of a run evaluated outside the workflow
BUILTIN_ARMS: dict[str, dict] = {
    # SPACE alone: neither the motion loss nor object continuity
    "space": {"family": "space", "moc": {"motion_weight": 0.0, "area_object_weight": 0.0}},
    # SPACE + the motion loss (object-continuity weight 0)
    "space_m": {"family": "space", "moc": {"area_object_weight": 0.0}},
    # SPACE + MOC: motion loss and object continuity at the game table's weights
    "space_moc": {"family": "space"},
    # Slot Attention alone: no motion loss, no continuity, no weighting by the motion map
    "slot": {
        "family": "slot",
        "slot_moc": {"motion_weight": 0.0, "continuity_weight": 0.0, "foreground_weight": 0.0},
    },
    # Slot Attention + MOC for slots (spacemoc.models.slot.losses)
    "slot_moc": {"family": "slot"},
}


def known_arms(config: dict) -> dict[str, dict]:
    """Every arm a config can name: the built-in ones, then its ``arms`` section."""
    arms = copy.deepcopy(BUILTIN_ARMS)
    arms.update(copy.deepcopy(config.get("arms", {})))
    return arms


def arm_settings(config: dict, name: str) -> dict:
    """The settings of arm ``name``; ValueError naming the known arms. An arm that names no
    family is of the default family (``spacemoc.models.DEFAULT_FAMILY``)."""
    arms = known_arms(config)
    if name not in arms:
        raise ValueError(f"unknown model arm {name!r}; known arms: {', '.join(sorted(arms))}")
    return arms[name]


def arm_config(config: dict, name: str) -> dict:
    """``config`` as arm ``name`` trains: the arm's overrides merged over ``model``."""
    settings = arm_settings(config, name)
    out = copy.deepcopy(config)
    from spacemoc.models import FAMILIES

    parts = ["family", *(section for f in FAMILIES.values() for section in f.sections)]
    overrides = {part: settings[part] for part in parts if part in settings}
    out["model"] = merge(out.get("model", {}), overrides)
    return out
