"""Workflow configuration: load a YAML file, fill defaults and validate it against the schema.

Snakemake validates the same schema (workflow/schemas/config.schema.yaml links here), so a config
that the workflow accepts is accepted by the `spacemoc` command line and vice versa.
"""

from __future__ import annotations

import copy
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(str(files("spacemoc") / "schemas" / "config.schema.yaml"))


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_property(*keys: str) -> dict:
    """The schema of one config value, e.g. ``schema_property("eval", "boxes")``."""
    node = load_schema()
    for key in keys:
        node = node["properties"][key]
    return node


def schema_default(*keys: str) -> Any:
    """The default the schema gives one config value: the only place a default is written."""
    return copy.deepcopy(schema_property(*keys)["default"])


def _extend_with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft7Validator)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``config`` with defaults filled in; raise ValueError if invalid."""
    config = copy.deepcopy(config or {})
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = [f"{'.'.join(map(str, e.path)) or '<top>'}: {e.message}" for e in errors]
        raise ValueError("invalid spacemoc config:\n  " + "\n  ".join(lines))
    return config


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Load ``path`` (YAML; None means all defaults), merge ``overrides`` and validate."""
    config = yaml.safe_load(Path(path).read_text()) if path else {}
    if overrides:
        config = merge(config or {}, overrides)
    return validate_config(config or {})


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
