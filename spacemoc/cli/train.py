"""`spacemoc train`: train a model arm on a dataset file (resumes from checkpoints in --out)."""

from __future__ import annotations

from spacemoc.arms import BUILTIN_ARMS
from spacemoc.cli.args import add_device, add_game, non_negative_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (SPACE+MOC by default) on a dataset HDF5 file",
        description=(
            "Train a model arm (SPACE+MOC by default) on DATA and write OUT/model.pt, "
            "OUT/train_curves.csv, periodic checkpoints in OUT/checkpoints/ and TensorBoard logs "
            "in OUT/logs/. A run killed midway continues from its last checkpoint when started "
            "again with the same OUT."
        ),
    )
    parser.add_argument(
        "--data", required=True, help="dataset file, e.g. results/pong/data/train.h5"
    )
    parser.add_argument(
        "--out", required=True, help="output folder, e.g. results/pong/space_moc/seed0"
    )
    add_game(parser, help="game name (default: the dataset's game)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="training seed (default 0)"
    )
    parser.add_argument("--config", help="config YAML (default: built-in defaults)")
    parser.add_argument(
        "--arm",
        help="model arm to train, as the workflow does for results/<game>/<arm>/ (built in: "
        f"{', '.join(BUILTIN_ARMS)}; or an arm of --config); default: the config's model section "
        "as is",
    )
    parser.add_argument(
        "--validation",
        help="validation split (e.g. results/pong/data/validation.h5): relevant F and cluster-NN "
        "accuracy every train.eval_every steps, in the curves and TensorBoard",
    )
    parser.add_argument(
        "--background",
        help="the game's background (e.g. results/pong/background.npy), for a model that "
        "needs it (slot.attend: changed)",
    )
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    add_device(parser, help="auto (default: train.device), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch threads (default: config threads)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from spacemoc.config import load_config
    from spacemoc.devices import set_threads
    from spacemoc.stages.train import train

    overrides: dict = {"train": {}}
    if args.steps is not None:
        overrides["train"]["steps"] = args.steps
    if args.batch_size is not None:
        overrides["train"]["batch_size"] = args.batch_size
    config = load_config(args.config, overrides)
    if args.arm is not None:
        from spacemoc.arms import arm_config

        config = arm_config(config, args.arm)
    set_threads(args.threads or config["threads"])
    path = train(
        args.data,
        args.out,
        game=args.game,
        config=config,
        seed=args.seed,
        device=args.device,
        validation_path=args.validation,
        background_path=args.background,
    )
    print(path)
    return 0
