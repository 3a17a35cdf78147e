"""The evaluation stage by hand: `spacemoc latents`, `classifier`, `bgsub`, `class-recall`,
`evaluate`, `aggregate`, `summary`, `results-table` and `plots` (the functions the workflow's rules
call)."""

from __future__ import annotations

from pathlib import Path

from spacemoc.arms import DEFAULT_ARM
from spacemoc.cli.args import (
    add_boxes,
    add_device,
    add_game,
    add_run,
    cluster_rule,
    config_choices,
    non_negative_int,
    run_checkpoint,
)


def add_latents_arm(parser, arm_help: str) -> None:
    """``--arm`` (the name the latents' rows get) and ``--run`` (the run that made them)."""
    parser.add_argument("--arm", default=DEFAULT_ARM, help=f"{arm_help} (default {DEFAULT_ARM})")
    add_run(
        parser,
        required=False,
        help="check the latents were made by this run's model (folder or .pt)",
    )


def add_eval_seed(parser) -> None:
    parser.add_argument(
        "--eval-seed",
        type=non_negative_int,
        default=0,
        metavar="SEED",
        help="k-means / few-shot sampling seed (config: eval.seed; default 0)",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "latents",
        help="encode a dataset split with a trained model (z_pres, z_where, z_what, labels)",
        description=_latents.__doc__,
    )
    add_run(
        p, help="run folder (results/<game>/<arm>/seed<k>) or a checkpoint (model.pt, reference)"
    )
    p.add_argument("--data", required=True, type=Path, help="dataset split, e.g. test.h5")
    p.add_argument("--out", required=True, type=Path, help="latents HDF5 file to write")
    p.add_argument("--batch-size", type=int, default=16, help="samples per batch (default 16)")
    add_device(p)
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument(
        "--all-cells", action="store_true", help="encode z_what of absent cells too (slower)"
    )
    add_boxes(p)
    p.set_defaults(func=_latents)

    p = subparsers.add_parser(
        "classifier",
        help="fit the z_what -> label classifier on validation (and agent) latents",
        description=_classifier.__doc__,
    )
    p.add_argument(
        "--latents",
        required=True,
        type=Path,
        nargs="+",
        help="latents HDF5 of one model: the validation split's, and the agent split's if made",
    )
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        help="the dataset splits of the --latents files, in the same order: also fit the box "
        "calibration towards OCAtari's boxes (the detector applies it)",
    )
    p.add_argument("--out", required=True, type=Path, help="classifier.npz (pickle-free)")
    p.add_argument("--joblib", type=Path, help="also write the scikit-learn estimator here")
    p.add_argument("--labels-csv", type=Path, help="also write the label mapping CSV here")
    p.add_argument(
        "--kind",
        default="nn",
        choices=config_choices("eval", "classifier"),
        help="nn (k-means + 1-NN, default) or ridge",
    )
    p.add_argument("--shots", type=int, default=16, help="ridge: labelled objects per class")
    p.add_argument(
        "--clusters",
        type=cluster_rule,
        default="classes",
        help="nn: k-means clusters: 'classes' (one per relevant class, default), 'auto' (the "
        "best silhouette, up to 4 per class or one per object slot) or a number",
    )
    p.add_argument(
        "--features",
        default="encoding",
        choices=config_choices("eval", "label_features"),
        help="what objects are told apart by: encoding (z_what, default), colour (the box's "
        "colour) or encoding+colour",
    )
    add_eval_seed(p)
    add_game(p, help="refuse latents of another game")
    p.set_defaults(func=_classifier)

    p = subparsers.add_parser(
        "bgsub",
        help="detection metrics of the background-subtraction baseline on a split",
        description=_bgsub.__doc__,
    )
    p.add_argument("--data", required=True, type=Path, help="dataset split, e.g. test.h5")
    p.add_argument("--background", required=True, type=Path, help="background.npy of the game")
    p.add_argument("--out", required=True, type=Path, help="CSV with the metrics columns")
    p.set_defaults(func=_bgsub)

    p = subparsers.add_parser(
        "class-recall",
        help="recall of every relevant class: ground truth per grid cell, motion boxes, hints, "
        "bgsub and a model",
        description=_class_recall.__doc__,
    )
    p.add_argument("--data", required=True, type=Path, help="dataset split, e.g. test.h5")
    p.add_argument(
        "--out", required=True, type=Path, help="CSV to write (one row per source, class)"
    )
    p.add_argument("--plot", type=Path, help="PNG of the recalls as bars")
    p.add_argument("--background", type=Path, help="background.npy: adds the bgsub rows")
    p.add_argument("--latents", type=Path, help="a model's latents of the same split")
    add_latents_arm(p, "source name of the latents' rows")
    p.set_defaults(func=_class_recall)

    p = subparsers.add_parser(
        "evaluate",
        help="all metrics of one trained model -> metrics.csv",
        description=_evaluate.__doc__,
    )
    p.add_argument("--latents", required=True, type=Path, help="test latents HDF5")
    p.add_argument("--data", required=True, type=Path, help="the test split they were made from")
    p.add_argument("--classifier", required=True, type=Path, help="classifier.npz")
    p.add_argument("--out", required=True, type=Path, help="metrics.csv to write")
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="training seed of the run, written in the seed column (default 0)",
    )
    add_latents_arm(p, "model arm of the run, written in the model column")
    p.add_argument("--baseline", type=Path, help="bgsub CSV to append (spacemoc bgsub)")
    p.add_argument("--tracking", type=Path, help="tracking CSV (mota, idf1) of this model")
    p.add_argument("--few-shot", default="1,4,16,64", help="labelled objects per class")
    add_eval_seed(p)
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser(
        "aggregate", help="per-seed metrics.csv files -> eval.csv", description=_aggregate.__doc__
    )
    p.add_argument("metrics", nargs="+", type=Path, help="metrics.csv of each seed")
    p.add_argument("--out", required=True, type=Path, help="eval.csv to write")
    p.add_argument("--baseline", type=Path, help="bgsub CSV (default: rows in the first file)")
    p.set_defaults(func=_aggregate)

    p = subparsers.add_parser(
        "summary", help="eval.csv of several games -> one table", description=_summary.__doc__
    )
    p.add_argument("evals", nargs="+", type=Path, help="eval.csv of each game")
    p.add_argument("--out", required=True, type=Path, help="summary.csv to write")
    p.set_defaults(func=_summary)

    p = subparsers.add_parser(
        "results-table",
        help="summary.csv -> a markdown table of every game and arm beside published figures",
        description=_results_table.__doc__,
    )
    p.add_argument("summary", type=Path, help="results/summary.csv (or one game's eval.csv)")
    p.add_argument("--out", required=True, type=Path, help="markdown file to write")
    p.set_defaults(func=_results_table)

    p = subparsers.add_parser(
        "plots", help="figures of one trained model", description=_plots.__doc__
    )
    p.add_argument("--latents", required=True, type=Path, help="test latents HDF5")
    p.add_argument("--data", required=True, type=Path, help="the test split")
    p.add_argument("--classifier", required=True, type=Path, help="classifier.npz")
    p.add_argument("--curves", required=True, type=Path, help="train_curves.csv")
    p.add_argument("--model", required=True, type=Path, help="the full checkpoint (model.pt)")
    p.add_argument("--out", required=True, type=Path, help="folder for the PNG files")
    p.add_argument("--frames", type=int, default=8, help="test frames to draw (default 8)")
    p.set_defaults(func=_plots)


def _latents(args) -> None:
    """Run a trained model deterministically over every frame of a split and store, per cell,
    z_pres_prob, z_where, z_what and the label of the ground-truth object it matches (-1: none)."""
    from spacemoc.devices import set_threads
    from spacemoc.stages.latents import compute_latents

    set_threads(args.threads)
    print(
        compute_latents(
            run_checkpoint(args.run),
            args.data,
            args.out,
            batch_size=args.batch_size,
            device=args.device,
            all_cells=args.all_cells,
            box_readout=args.boxes,
            overlap_suppression=args.overlap_suppression,
        )
    )


def _classifier(args) -> None:
    """Fit the z_what classifier on the relevant objects of validation latents: k-means with
    centroid labelling and 1-NN (nn) or a few-shot ridge classifier (ridge)."""
    from spacemoc.stages.classifier import train_classifier

    clf = train_classifier(
        args.latents,
        args.out,
        args.joblib,
        args.labels_csv,
        kind=args.kind,
        seed=args.eval_seed,
        shots=args.shots,
        game=args.game,
        clusters=args.clusters,
        data_paths=args.data,
        features=args.features,
    )
    print(f"wrote {args.out} ({clf.kind}, {clf.features} features, game {clf.game})")


def _bgsub(args) -> None:
    """Background-subtraction detection on a split, scored with the same detection metrics."""
    from spacemoc.stages.evaluate import run_bgsub

    for row in run_bgsub(args.data, args.background, args.out):
        print(row["subset"], {k: round(row[k], 4) for k in ("precision", "recall", "f_score")})


def _class_recall(args) -> None:
    """Where detection fails first: per relevant class, the recall of the ground truth kept one
    per cell of an 8x8 and a 16x16 grid (the most SPACE can find), of the dataset's motion boxes
    and of the motion hints made from them, of background subtraction and of a model (its test
    latents), with the class's object count and median size."""
    from spacemoc.stages.class_recall import run_class_recall

    rows = run_class_recall(
        args.data,
        args.out,
        plot_path=args.plot,
        background_path=args.background,
        latents_path=args.latents,
        model_path=run_checkpoint(args.run) if args.run else None,
        model_name=args.arm,
    )
    for row in rows:
        print(f"{row['source']:>10} {row['label']:>16}: {row['found']}/{row['objects']}")


def _evaluate(args) -> None:
    """Detection, encoding, classifier and joint metrics of one model on the test split (rows for
    the subsets all and relevant), plus the baseline rows when given."""
    from spacemoc.stages.evaluate import evaluate

    few_shot = [int(k) for k in args.few_shot.split(",") if k]
    evaluate(
        args.latents,
        args.data,
        args.classifier,
        args.out,
        seed=args.seed,
        model_path=None if args.run is None else run_checkpoint(args.run),
        baseline_path=args.baseline,
        tracking_path=args.tracking,
        few_shot=few_shot,
        eval_seed=args.eval_seed,
        model_name=args.arm,
    )
    print(f"wrote {args.out}")


def _aggregate(args) -> None:
    """Per-seed rows plus mean and std rows per subset, then the baseline rows."""
    from spacemoc.stages.evaluate import aggregate

    aggregate(args.metrics, args.out, baseline_path=args.baseline)
    print(f"wrote {args.out}")


def _summary(args) -> None:
    """Concatenate the eval.csv tables of several games."""
    from spacemoc.stages.evaluate import summary

    summary(args.evals, args.out)
    print(f"wrote {args.out}")


def _results_table(args) -> None:
    """Per game, every model arm's relevant-object figures (mean ± std over seeds), the
    background-subtraction baseline and the published figures, as markdown."""
    from spacemoc.stages.evaluate import results_table

    print(results_table(args.summary, args.out))


def _plots(args) -> None:
    """Detections on test frames, what the model draws on them, precision-recall curves, z_what
    PCA, training curves and the detection + classification confusion matrix."""
    from spacemoc.stages.plots import make_plots

    for path in make_plots(
        args.latents,
        args.data,
        args.classifier,
        args.curves,
        args.model,
        args.out,
        n_frames=args.frames,
    ).values():
        print(f"wrote {path}")
