"""Argument types and options shared by the sub-commands, so each thing has one name and one
check: argparse rejects a bad value naming the flag, before any file is touched."""

from __future__ import annotations

import argparse
from pathlib import Path


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, counts): argparse names the flag when it is not."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def cluster_rule(text: str) -> str | int:
    """The nn classifier's clusters: "classes", "auto" or a positive integer."""
    from spacemoc.classifier import check_clusters

    try:
        return check_clusters(int(text) if text.isdigit() else text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def game_name(text: str) -> str:
    """A game name as the game table spells it (case and `ALE/...-v5` forms accepted); argparse
    then checks it against the known games (``choices=GAMES``)."""
    from spacemoc.games import game_key

    return game_key(text)


def device_name(text: str) -> str:
    from spacemoc.devices import check_device_name

    try:
        return check_device_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def games() -> list[str]:
    from spacemoc.games import GAMES

    return sorted(GAMES)


def config_choices(*keys: str) -> list[str]:
    """The values the config schema allows for one setting, e.g. ``("eval", "boxes")``."""
    from spacemoc.config import schema_property

    return list(schema_property(*keys)["enum"])


def add_game(parser, required: bool = False, help: str = "game name, e.g. pong") -> None:
    parser.add_argument(
        "--game", required=required, type=game_name, choices=games(), metavar="GAME", help=help
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def overlap_share(text: str) -> float:
    """argparse type: an overlap suppression share, 0 (off) or in (0, 1]."""
    from spacemoc.geometry import check_min_overlap

    try:
        return check_min_overlap(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_env_seed(parser, help: str, default: int | None = None) -> None:
    parser.add_argument(
        "--env-seed", type=non_negative_int, default=default, metavar="SEED", help=help
    )


def add_device(parser, help: str = "auto (default), cpu, cuda or cuda:N") -> None:
    parser.add_argument("--device", type=device_name, default="auto", help=help)


def add_boxes(parser) -> None:
    parser.add_argument(
        "--boxes",
        choices=config_choices("eval", "boxes"),
        help="box readout: alpha (the drawn object's extent) or glimpse (z_where, the "
        "reference's); default: the one the run was evaluated with (its detector config.yaml, "
        "classifier or latents), else the workflow's default (eval.boxes)",
    )
    parser.add_argument(
        "--overlap-suppression",
        type=overlap_share,
        metavar="SHARE",
        help="drop a present box when a more present one covers at least this share of the "
        "smaller box (0: off); default: the one the run was evaluated with, else the workflow's "
        "default (eval.overlap_suppression)",
    )


def add_run(parser, required: bool = True, pretrained: bool = False, help: str = "") -> None:
    """``--run`` (a trained run) and, with ``pretrained``, ``--pretrained GAME`` instead of it."""
    help = help or "run folder (results/<game>/<arm>/seed<k>) or its model.pt"
    if not pretrained:
        parser.add_argument("--run", required=required, type=Path, help=help)
        return
    from spacemoc.stages.export import shipped_detectors

    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--run", type=Path, help=help)
    group.add_argument(
        "--pretrained",
        choices=shipped_detectors(),
        metavar="GAME",
        help=f"a detector shipped with spacemoc: {', '.join(shipped_detectors())}",
    )


def run_path(args) -> Path | None:
    """The detector folder ``--run`` or ``--pretrained`` names (None: neither given)."""
    if getattr(args, "pretrained", None):
        from spacemoc.stages.export import PRETRAINED_ROOT

        return PRETRAINED_ROOT / args.pretrained
    return args.run


def run_checkpoint(run: Path) -> Path:
    """The checkpoint of a run: ``run`` itself when a file, else its model.pt (or detector.pt,
    or a distilled student.pt)."""
    from spacemoc.distill.config import STUDENT_WEIGHTS
    from spacemoc.stages.export import DETECTOR_WEIGHTS

    run = Path(run)
    if not run.is_dir():
        return run
    for name in ("model.pt", DETECTOR_WEIGHTS, STUDENT_WEIGHTS):
        if (run / name).is_file():
            return run / name
    raise ValueError(
        f"{run} holds no model.pt: expected a run folder (results/<game>/<arm>/seed<k>) or a "
        "checkpoint"
    )
