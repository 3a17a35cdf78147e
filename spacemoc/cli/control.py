"""`spacemoc control`: the game's simple policy with RAM, detector and random objects."""

from __future__ import annotations

from pathlib import Path

from spacemoc.cli.args import (
    add_boxes,
    add_device,
    add_game,
    add_run,
    non_negative_int,
    positive_int,
    run_path,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "control",
        help="play the game's simple policy with RAM, detector and random objects -> control.csv",
        description=(
            "Does an agent lose anything by reading objects from the detector? Plays the game's "
            "simple object-based policy (Pong: paddle to the ball's height; Boxing: approach and "
            "punch) for STEPS seeded steps per seed with OCAtari's RAM objects, the detector's "
            "objects and random actions, and writes points won and lost, the return, and how "
            "often the detector missed or doubled an object RAM shows."
        ),
    )
    add_game(parser, required=True)
    add_run(parser, pretrained=True, help="the detector: a run folder or a detector folder")
    parser.add_argument("--out", required=True, type=Path, help="control.csv to write")
    parser.add_argument("--arm", default="detector", help="the detector's name in the model column")
    parser.add_argument(
        "--steps", type=positive_int, default=4000, help="env steps per seed (4000)"
    )
    parser.add_argument(
        "--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2], help="env seeds (0 1 2)"
    )
    add_boxes(parser)
    add_device(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from spacemoc.stages.control import control

    control(
        args.game,
        args.out,
        {args.arm: run_path(args)},
        steps=args.steps,
        seeds=args.seeds,
        device=None if args.device == "auto" else args.device,
        box_readout=args.boxes,
        overlap_suppression=args.overlap_suppression,
    )
    print(f"wrote {args.out}")
    return 0
