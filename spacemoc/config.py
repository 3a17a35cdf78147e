"""Workflow configuration: load a YAML file, fill defaults, validate it, and the slices of it
that each stage's outputs depend on.

Snakemake validates the same schema (workflow/schemas/config.schema.yaml links here) and then
calls ``config_problems``, so a config that the workflow accepts is accepted by the `spacemoc`
command line and vice versa, and every problem is reported at start-up, before any output is
touched.
"""

from __future__ import annotations

import copy
import math
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


_Validator = _extend_with_defaults(jsonschema.Draft202012Validator)


def validate_config(config: dict[str, Any], check_device: bool = False) -> dict[str, Any]:
    """Return a deep copy of ``config`` with defaults filled in; raise ValueError naming every
    problem (schema and ``config_problems``) if invalid."""
    config = with_defaults(config)
    problems = config_problems(config, check_device=check_device)
    if problems:
        raise ValueError("invalid spacemoc config:\n  " + "\n  ".join(problems))
    return config


def with_defaults(config: dict[str, Any] | None) -> dict[str, Any]:
    """A deep copy of ``config`` with the schema's defaults filled in; ValueError naming every
    schema violation (the schema alone: ``validate_config`` checks the rest)."""
    config = copy.deepcopy(config or {})
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = [f"{'.'.join(map(str, e.path)) or '<top>'}: {e.message}" for e in errors]
        raise ValueError("invalid spacemoc config:\n  " + "\n  ".join(lines))
    return config


def config_problems(config: dict[str, Any], check_device: bool = False) -> list[str]:
    """What the schema cannot say about a schema-valid config, one line per problem: numbers
    that are not finite, window < T, game names in game_overrides, model keys and values (the
    model configs of every configured game are built), tracker settings, and with
    ``check_device`` a CUDA device on a machine without CUDA."""
    from spacemoc.games import GAMES

    problems = [f"{where}: {value} is not a finite number" for where, value in _non_finite(config)]
    data = config["data"]
    if data["window"] < data["T"]:
        problems.append(
            f"data.window: {data['window']} is smaller than data.T ({data['T']}); each sample "
            "keeps the last T frames of a window of env steps, so window must be >= T"
        )
    for name in config["game_overrides"]:
        if name not in GAMES:
            problems.append(
                f"game_overrides.{name}: unknown game (names are lower case): "
                f"{', '.join(sorted(GAMES))}"
            )
    from spacemoc.arms import arm_config, known_arms

    arms = known_arms(config)
    unknown = [name for name in config["models"] if name not in arms]
    if unknown:
        problems.append(
            f"models: unknown arm(s) {', '.join(unknown)}; known arms (built in or in `arms`): "
            f"{', '.join(sorted(arms))}"
        )
    if not problems:
        from spacemoc.models import DEFAULT_FAMILY, get_family

        for model in config["models"]:
            settings = arm_config(config, model)
            family = get_family(settings["model"].get("family", DEFAULT_FAMILY))
            for game in dict.fromkeys([*config["games"], *config["game_overrides"]]):
                try:
                    family.build_configs(game, settings)
                except (ValueError, TypeError) as err:
                    problems.append(f"model settings of arm {model} for {game}: {err}")
    try:
        from spacemoc.tracking import Tracker

        Tracker(**config["tracking"])
    except ValueError as err:
        problems.append(f"tracking: {err}")
    if check_device:
        from spacemoc.devices import resolve_device

        try:
            resolve_device(config["train"]["device"])
        except ValueError as err:
            problems.append(f"train.device: {err}")
    return problems


def _non_finite(value, where: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        yield where, value


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


def canonical(value):
    """``value`` with every dict's keys sorted: the same settings give the same repr whatever the
    order of the keys in the config file (Snakemake compares params by their repr)."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


# ----------------------------------------------------------------------------------------------
# What each stage's outputs depend on: the workflow's params (a change reruns the rule) and the
# record kept in the outputs. Settings absent here change no byte of the outputs.

# train settings that decide where and how visibly training runs, not the weights it reaches
# (compositing: windowed and dense give the same numbers).
TRAIN_RUN_SETTINGS = (
    "checkpoint_every",
    "log_every",
    "image_every",
    "eval_every",
    "eval_samples",
    "device",
    "compositing",
)


def dataset_arguments(config: dict, split: str, **overrides) -> dict:
    """make_dataset keyword arguments for ``split`` of a validated config, without ``workers``
    (the file does not depend on it); ``overrides`` (e.g. the command line's ``n_samples``) win;
    ``config`` records the resolved settings in the file."""
    data = config["data"]
    if split == "tracking":
        n, T = data["tracking"]["sequences"], data["tracking"]["length"]
    else:
        n, T = data["sizes"][split], data["T"]
    kwargs = {
        "n_samples": n,
        "T": T,
        "window": data["window"],
        "seed": data["split_seeds"][split],
        "motion_kind": data["motion_kind"],
        **({"epsilon": data["agent_epsilon"]} if split == "agent" else {}),
        **overrides,
    }
    return {**kwargs, "config": {"data": {"split": split, **kwargs}}}


def classifier_splits(config: dict, game: str) -> list[str]:
    """The splits whose latents the classifier is fit on: validation, and the agent split when
    ``data.sizes.agent`` > 0 and the game has a control policy to play it."""
    from spacemoc.games import get_game

    agent = config["data"]["sizes"].get("agent", 0) > 0 and bool(get_game(game).control_policy)
    return ["validation", "agent"] if agent else ["validation"]


def distill_splits(config: dict, game: str) -> list[str]:
    """The splits whose frames teach a distilled student: train, and the agent split when one is
    made (the states an agent visits)."""
    return ["train"] + [s for s in classifier_splits(config, game) if s == "agent"]


def training_recipe(config: dict, game: str, model: str) -> dict:
    """The settings the weights of arm ``model`` on ``game`` depend on: train (less
    TRAIN_RUN_SETTINGS), the model section with the arm's settings, and this game's overrides.
    Other sections (data sizes, evaluation, other games and arms) do not retrain it; the training
    data itself is checked by its fingerprint."""
    from spacemoc.arms import arm_config

    config = arm_config(config, model)
    overrides = config.get("game_overrides", {})
    recipe = {
        "train": {k: v for k, v in config["train"].items() if k not in TRAIN_RUN_SETTINGS},
        "model": config.get("model", {}),
        "game_overrides": {game: overrides[game]} if game in overrides else {},
    }
    return canonical(recipe)


def train_needs_background(config: dict, game: str, model: str) -> bool:
    """Whether arm ``model`` on ``game`` trains with the game's background (the rule train's
    input; ``spacemoc.stages.train.needs_background``)."""
    from spacemoc.arms import arm_config
    from spacemoc.stages.train import needs_background

    return needs_background(game, arm_config(config, model))


def run_record(config: dict, game: str, model: str) -> dict:
    """The config a trained and evaluated run of arm ``model`` on ``game`` records beside its
    outputs (the exported detector's config.yaml): a valid config for that run alone, without the
    settings that changed nothing in it (threads, workers, other games and arms, seeds,
    TRAIN_RUN_SETTINGS)."""
    from spacemoc.arms import arm_settings

    data = {k: v for k, v in config["data"].items() if k != "workers"}
    return canonical(
        {
            "games": [game],
            "models": [model],
            "arms": {model: arm_settings(config, model)},
            "data": data,
            **training_recipe(config, game, model),
            "eval": config["eval"],
        }
    )
