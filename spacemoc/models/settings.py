"""Checks of a family's settings as a workflow config gives them (shared by the families'
``build_configs``)."""

from __future__ import annotations

import dataclasses

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
