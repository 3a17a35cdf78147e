"""`spacemoc distill`: teach a trained detector to a small, fast student network."""

from __future__ import annotations

from pathlib import Path

from spacemoc.cli.args import add_device, add_run, run_path


def register(subparsers) -> None:
    from spacemoc.distill.config import DistillConfig

    defaults = DistillConfig()
    p = subparsers.add_parser(
        "distill",
        help="distil a trained detector into a small student for fast detection (agents)",
        description=_distill.__doc__,
    )
    add_run(
        p,
        pretrained=True,
        help="the teacher: a run folder (results/<game>/<arm>/seed<k>) or an exported detector",
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        nargs="+",
        help="data splits whose frames teach (no labels are read), e.g. train.h5 agent.h5",
    )
    p.add_argument("--out", required=True, type=Path, help="student folder to write")
    p.add_argument("--steps", type=int, default=defaults.steps, help=f"({defaults.steps})")
    p.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"frames ({defaults.batch_size})",
    )
    p.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam ({defaults.lr})")
    p.add_argument("--max-samples", type=int, help="samples taken from each data file (all)")
    p.add_argument(
        "--distill-seed",
        type=int,
        default=defaults.seed,
        help=f"seed of the student's weights and batches ({defaults.seed})",
    )
    add_device(p)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.set_defaults(func=_distill)


def _distill(args) -> None:
    """Train a student network (a patch layer and a few convolutions at the teacher's cells)
    to give the teacher's presence, boxes and z_what on the frames of --data, and write the
    student folder: student.pt, the teacher's classifier.npz and distill.csv (agreement with the
    teacher on held-out frames). `Detector.load(<out>)` then detects with it; `spacemoc latents
    --run <out>` and `spacemoc evaluate` score it on the test split like any model."""
    from spacemoc.devices import set_threads
    from spacemoc.distill.config import DistillConfig
    from spacemoc.stages.distill import distill_detector

    if args.steps < 1 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be at least 1")
    set_threads(args.threads)
    config = DistillConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.distill_seed
    )
    print(
        distill_detector(
            run_path(args),
            args.data,
            args.out,
            config=config,
            max_samples=args.max_samples,
            device=args.device,
        )
    )
