"""The time-to-quality pictures of docs/train.md (docs/img/pong_time_to_quality*.png).

Run from the repository root after a decode_cells run, once per machine:

    python docs/runs/pong_decode32/time_to_quality.py          # AVX2 EPYC
    python docs/runs/pong_decode32/time_to_quality.py --step-s 4.459 --machine "AVX512 EPYC" \
        --curves docs/runs/pong_decode32_avx512/train_curves.csv \
        --out docs/img/pong_time_to_quality_avx512.png
    python docs/runs/pong_decode32/time_to_quality.py --step-s 5.423 \
        --machine "AVX512 EPYC, 2nd sitting" \
        --curves docs/runs/pong_decode32_avx512/train_curves.csv \
        --label "decode_cells 32, 1,500 steps (own clock, 1st sitting: steps 1.18x faster)" \
        --also "decode_cells 32, 1,000 steps (own clock)=\
docs/runs/pong_1000_steps/train_curves.csv" \
        --out docs/img/pong_time_to_quality_1000_steps.png

With ``--old-curves`` (the validation curve of a run of the old recipe itself, e.g. the shipped
recipe retrained with a probe) the old recipe is drawn at its own clock instead of steps x
``--step-s``.

One clock per picture: that machine's. The ``decode_cells: 32`` run is drawn at its own wall clock
(its train_curves.csv), as is every ``--also`` run. The runs that decode every cell (the old
step) are drawn at step x ``--step-s``, the old step's ``bench_train.py`` time measured in the
same sitting as the run: the 600-step run's validation curve and the default recipe's test-split
figures of its step 1,000 and 1,500 checkpoints (docs/train.md's table; that run logged no
validation curve).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from spacemoc.stages.plots import plot_time_to_quality

HERE = Path(__file__).resolve().parent
RUNS = HERE.parent
# relevant F and cluster-NN of the default recipe's checkpoints, test split (docs/train.md)
DEFAULT_RECIPE = {1000: (0.975, 0.978), 1500: (0.983, 0.991)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curves", default=str(HERE / "train_curves.csv"), help="decode run")
    parser.add_argument(
        "--label", default="decode_cells 32, 1,500 steps (own clock)", help="--curves' legend"
    )
    parser.add_argument("--step-s", type=float, default=10.97, help="the old step's s/step here")
    parser.add_argument("--machine", default="AVX2", help="the CPU, for the title")
    parser.add_argument(
        "--also", action="append", default=[], metavar="LABEL=CSV", help="more runs, own clock"
    )
    parser.add_argument(
        "--old-curves", help="the old recipe's own train_curves.csv: drawn at its own clock"
    )
    parser.add_argument("--out", default=str(RUNS.parent / "img" / "pong_time_to_quality.png"))
    args = parser.parse_args()
    if args.old_curves:
        runs = {args.label: Path(args.curves), **dict(_also(parser, args.also))}
        runs["all cells, 1,500 steps (own clock)"] = Path(args.old_curves)
        _plot(runs, {}, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        old = pd.read_csv(RUNS / "pong_600_steps" / "train_curves.csv")
        old["elapsed_s"] = old["step"] * args.step_s
        old_csv = Path(tmp) / "pong_600_steps.csv"
        old.to_csv(old_csv, index=False)
        runs = {
            args.label: Path(args.curves),
            "all cells, 600 steps (steps x old step)": old_csv,
        }
        runs.update(_also(parser, args.also))
        points = {
            "all cells, 1,500 steps, test split (steps x old step)": [
                {"minutes": step * args.step_s / 60, "val_relevant_f": f, "val_cluster_nn": nn}
                for step, (f, nn) in DEFAULT_RECIPE.items()
            ]
        }
        _plot(runs, points, args)


def _also(parser, also: list[str]):
    """(label, path) of each ``--also LABEL=CSV``."""
    for item in also:
        label, _, csv = item.rpartition("=")
        if not label:
            parser.error(f"--also takes LABEL=CSV, got {item!r}")
        yield label, Path(csv)


def _plot(runs: dict, points: dict, args) -> None:
    path = plot_time_to_quality(
        runs,
        args.out,
        targets={"val_relevant_f": 0.97, "val_cluster_nn": 0.98},
        points=points,
        title=f"Pong: time to quality, {args.machine}",
    )
    print(path)


if __name__ == "__main__":
    main()
