"""`spacemoc detect` (run a trained detector on live env frames), `spacemoc export` and
`spacemoc tracking` (the tracking stage: MOTA / IDF1 on the tracking split), the functions the
workflow's rules call."""

from __future__ import annotations

from pathlib import Path

from spacemoc.atomic import atomic_path
from spacemoc.cli.args import add_boxes, add_device, add_env_seed, add_game, add_run, run_path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect",
        help="detect objects in frames of a live env with a trained detector",
        description=_detect.__doc__,
    )
    add_run(
        p,
        pretrained=True,
        help="run folder (results/<game>/<arm>/seed<k>), an exported detector folder, a reference "
        "<game>/ folder, or a checkpoint",
    )
    p.add_argument("--classifier", type=Path, help="classifier.npz (when --run is a checkpoint)")
    add_game(p, help="game (default: from the checkpoint or folder name)")
    p.add_argument("--frames", type=int, default=4, help="env steps to detect on (default 4)")
    add_env_seed(p, "env and random-agent seed (default 0)", default=0)
    p.add_argument("--skip", type=int, default=60, help="random steps before the first frame")
    p.add_argument("--draw", type=Path, help="PNG: the frames with their boxes and labels")
    p.add_argument("--track", action="store_true", help="also print track ids and velocities")
    p.add_argument("--hud", action="store_true", help="keep boxes outside the relevant area")
    add_boxes(p)
    p.add_argument("--trust", action="store_true", help="allow a pickled reference classifier")
    add_device(p)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.set_defaults(func=_detect)

    p = subparsers.add_parser(
        "export",
        help="package a trained run as a detector folder (detector.pt, classifier, eval, config)",
        description=_export.__doc__,
    )
    p.add_argument(
        "--run", required=True, type=Path, help="run folder results/<game>/<arm>/seed<k>"
    )
    p.add_argument("--out", required=True, type=Path, help="detector folder to write")
    p.add_argument("--eval", type=Path, help="the workflow's eval.csv of this run, to include")
    p.add_argument("--config", type=Path, help="the workflow config (YAML) it was trained with")
    p.add_argument(
        "--train-benchmark",
        type=Path,
        help="the train rule's Snakemake benchmark TSV (results/<game>/<arm>/benchmarks/"
        "train_seed<k>.tsv), to include",
    )
    p.set_defaults(func=_export)

    p = subparsers.add_parser(
        "tracking",
        aliases=["track"],
        help="MOTA and IDF1 of detector + tracker on the tracking split -> tracking.csv (the "
        "workflow's rule tracking)",
        description=_tracking.__doc__,
    )
    add_run(p, required=False, pretrained=True, help="run folder or its model.pt")
    p.add_argument("--classifier", type=Path, help="classifier.npz (default: beside model.pt)")
    p.add_argument("--data", required=True, type=Path, help="tracking split, tracking.h5")
    p.add_argument("--out", type=Path, help="tracking.csv to write")
    p.add_argument(
        "--ground-truth",
        action="store_true",
        help="score the tracker alone on OCAtari's boxes (no --run; an upper bound)",
    )
    p.add_argument(
        "--drop", type=float, default=0.0, help="--ground-truth: drop boxes with this probability"
    )
    p.add_argument("--max-missed", type=int, default=3, help="frames a track survives unseen")
    p.add_argument("--max-distance", type=float, default=20.0, help="gate in pixels")
    p.add_argument("--appearance-weight", type=float, default=0.3, help="z_what weight in the cost")
    p.add_argument("--sequences", type=int, help="only the first N sequences")
    add_boxes(p)
    add_device(p)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.set_defaults(func=_tracking)


def _boxes_kwargs(args) -> dict:
    kwargs = {"box_readout": args.boxes, "overlap_suppression": args.overlap_suppression}
    return {name: value for name, value in kwargs.items() if value is not None}


def _detect(args) -> int:
    """Step a live env with random actions and print (optionally draw) the detections."""
    import numpy as np

    from spacemoc.detector import Detector
    from spacemoc.devices import set_threads
    from spacemoc.envs import make_env
    from spacemoc.tracking import Tracker

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    set_threads(args.threads)
    det = Detector.load(
        run_path(args),
        device=args.device,
        game=args.game,
        classifier=args.classifier,
        trust=args.trust,
        hud=args.hud,
        **_boxes_kwargs(args),
    )
    print(det)
    env = make_env(det.game, det, Tracker())
    env.reset(seed=args.env_seed)
    env.action_space.seed(args.env_seed)
    for _ in range(args.skip):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    frames, drawn = [], []
    for i in range(args.frames):
        env.step(env.action_space.sample())
        frames.append(env.frame.copy())
        dets = env.detections
        drawn.append(dets)
        print(f"frame {i}: {len(dets)} objects")
        if args.track:
            for obj in env.tracked_objects:
                print(f"  {obj!r}")
        else:
            for d in dets:
                print(
                    f"  {d.label:<14} x={d.x:6.1f} y={d.y:6.1f} w={d.w:5.1f} h={d.h:5.1f} "
                    f"p={d.score:.3f}"
                )
    env.close()
    if args.draw:
        draw_detections(np.stack(frames), drawn, args.draw)
        print(f"wrote {args.draw}")
    return 0


def draw_detections(frames, detections, path, scale: int = 3) -> Path:
    """Frames side by side, enlarged `scale` times, boxes and labels drawn; written as PNG."""
    import numpy as np
    from PIL import Image, ImageDraw

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    canvas = Image.new("RGB", (len(frames) * w * scale, h * scale))
    for i, (frame, dets) in enumerate(zip(frames, detections, strict=True)):
        img = Image.fromarray(np.asarray(frame)).resize((w * scale, h * scale), Image.NEAREST)
        pen = ImageDraw.Draw(img)
        for d in dets:
            box = [d.x * scale, d.y * scale, (d.x + d.w) * scale, (d.y + d.h) * scale]
            pen.rectangle(box, outline=(255, 0, 255), width=2)
            pen.text((box[0], max(box[1] - 11, 0)), f"{d.label} {d.score:.2f}", fill=(255, 255, 0))
        canvas.paste(img, (i * w * scale, 0))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def _tracking(args) -> int:
    """Run detector + tracker over the tracking split and score it with motmetrics."""
    from spacemoc.devices import set_threads
    from spacemoc.stages.tracking import (
        evaluate_tracking,
        ground_truth_tracking,
        write_metrics_csv,
    )

    set_threads(args.threads)

    tracker = dict(
        max_missed=args.max_missed,
        max_distance=args.max_distance,
        appearance_weight=args.appearance_weight,
    )
    if args.ground_truth:
        metrics = ground_truth_tracking(args.data, drop=args.drop, **tracker)
        print(", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if args.out:
            write_metrics_csv(args.out, {"subset": "relevant", **metrics})
        return 0
    run = run_path(args)
    if run is None or args.out is None:
        raise ValueError(
            "--run and --out are needed (--pretrained GAME instead of --run; or --ground-truth)"
        )
    metrics = evaluate_tracking(
        args.data,
        run,
        args.out,
        classifier=args.classifier,
        device=args.device,
        max_sequences=args.sequences,
        box_readout=args.boxes,
        overlap_suppression=args.overlap_suppression,
        **tracker,
    )
    print(", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    print(f"wrote {args.out}")
    return 0


def _export(args) -> None:
    """Package a trained run as a detector folder: the foreground weights of model.pt (all that
    detection needs, less than half the file), its classifier, and optionally the eval.csv,
    config and train rule's benchmark it was made with. Detector.load(folder) reads it."""
    import yaml

    from spacemoc.stages.export import export_detector

    config = None
    if args.config is not None:
        config = yaml.safe_load(args.config.read_text())
    out = export_detector(
        args.run / "model.pt",
        args.run / "classifier.npz",
        args.out,
        eval_path=args.eval,
        config=config,
        train_benchmark_path=args.train_benchmark,
    )
    print(f"wrote {out}")
