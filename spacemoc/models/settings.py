"""A family's settings as plain dicts: configs rebuilt from the dicts checkpoints store, and
checks of the settings a workflow config gives (shared by the families' ``build_configs``)."""

from __future__ import annotations

import dataclasses
from typing import Any


class DictConfig:
    """``to_dict`` / ``from_dict`` of a config dataclass, as checkpoints store it: unknown keys
    are a ValueError naming them and the valid ones."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} key(s) {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        return cls(**values)


# Python types a config value may have for a dataclass field of each annotated type.
_ACCEPTED_TYPES = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,)}


def check_keys(cls, values: dict, source: str) -> None:
    """Unknown keys and values of the wrong type (a string where a number belongs) are named."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} key(s) {', '.join(unknown)} in {source}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    for key, value in values.items():
        accepted = _ACCEPTED_TYPES.get(str(fields[key].type))
        wrong_bool = isinstance(value, bool) and bool not in (accepted or ())
        if accepted and (not isinstance(value, accepted) or wrong_bool):
            raise ValueError(
                f"{cls.__name__}.{key} in {source} must be of type {fields[key].type}, "
                f"got {value!r} ({type(value).__name__})"
            )
