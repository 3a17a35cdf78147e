"""`spacemoc background`, `spacemoc dataset` and `spacemoc show`: the data stage by hand."""

from __future__ import annotations

from pathlib import Path

from spacemoc.cli.args import add_env_seed, add_game, config_choices
from spacemoc.games import DATA_SPLITS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "background", help="per-pixel mode image of a game (png + npy)", description=_bg.__doc__
    )
    add_game(p, required=True)
    p.add_argument("--out", required=True, type=Path, help="png path; the .npy is written beside")
    p.add_argument("--config", type=Path, help="config YAML (default: built-in defaults)")
    p.add_argument(
        "--frames", type=int, help="frames to take the mode over (config: data.background_frames)"
    )
    add_env_seed(
        p, "env and random-agent seed of the rollout (config: data.split_seeds.background)"
    )
    p.set_defaults(func=_bg)

    p = subparsers.add_parser(
        "dataset", help="collect one split into an HDF5 file", description=_dataset.__doc__
    )
    add_game(p, required=True)
    p.add_argument("--split", required=True, choices=DATA_SPLITS, help="the split to collect")
    p.add_argument("--out", required=True, type=Path, help="HDF5 file to write")
    p.add_argument(
        "--background",
        required=True,
        type=Path,
        help="the game's background .png or .npy (spacemoc background)",
    )
    p.add_argument("--config", type=Path, help="config YAML (default: built-in defaults)")
    p.add_argument("--samples", type=int, help="number of samples (config: data.sizes / tracking)")
    p.add_argument(
        "--motion-kind",
        choices=config_choices("data", "motion_kind"),
        help="motion map kind (config: data.motion_kind)",
    )
    p.add_argument("--workers", type=int, help="collection processes (config: data.workers)")
    add_env_seed(p, "env and random-agent seed of the split (config: data.split_seeds)")
    p.set_defaults(func=_dataset)

    p = subparsers.add_parser(
        "show", help="draw dataset samples with their boxes into a PNG", description=_show.__doc__
    )
    p.add_argument("--data", required=True, type=Path, help="dataset HDF5 file")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.add_argument("--samples", type=int, default=4, help="samples (rows) to draw")
    p.set_defaults(func=_show)


def _bg(args) -> None:
    """Compute a game's background (per-pixel mode of random-play frames; for a game of several
    looks, one image per look, stacked top to bottom in the PNG)."""
    from spacemoc.config import load_config
    from spacemoc.data import compute_background, save_background
    from spacemoc.games import get_game

    data = load_config(args.config)["data"]
    game = get_game(args.game).name
    frames = args.frames if args.frames is not None else data["background_frames"]
    seed = args.env_seed if args.env_seed is not None else data["split_seeds"]["background"]
    image = compute_background(game, frames, seed)
    png, npy = save_background(image, args.out, game=game)
    looks = f" ({len(image)} looks)" if image.ndim == 4 else ""
    print(f"wrote {png} and {npy}{looks}")


def _dataset(args) -> None:
    """Collect one split of a game into an HDF5 file (sizes and seeds from the config)."""
    from spacemoc.config import load_config
    from spacemoc.data import make_dataset
    from spacemoc.games import get_game

    config = load_config(args.config)
    game = get_game(args.game).name
    split = args.split
    out = make_dataset(
        game, split, args.out, args.background, **_dataset_kwargs(config, split, args)
    )
    print(f"wrote {out}")


def _dataset_kwargs(config: dict, split: str, args) -> dict:
    """make_dataset keyword arguments: the config's, then the command line's overrides (the file
    records the resolved values)."""
    from spacemoc.config import dataset_arguments

    given = {"n_samples": args.samples, "motion_kind": args.motion_kind, "seed": args.env_seed}
    kwargs = dataset_arguments(
        config, split, **{name: value for name, value in given.items() if value is not None}
    )
    kwargs["workers"] = args.workers if args.workers is not None else config["data"]["workers"]
    return kwargs


def _show(args) -> None:
    """Draw samples with ground-truth boxes (green, labelled) and motion boxes (magenta)."""
    from spacemoc.data.show import show

    print(f"wrote {show(args.data, args.out, args.samples)}")
