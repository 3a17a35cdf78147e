"""Speed and memory of one full training step on real Pong data, per frame.

A step is what `spacemoc.stages.train` does with the family's trainer: forward, losses, backward,
gradient clipping and the optimiser steps, at batch 2 x T=4 (8 frames) on 2 torch threads. SPACE
+ MOC (the space_moc arm; RMSprop for the foreground, Adam for the background) with the windowed
compositing (ours) and the dense one (the reference's formulation); `windowed-bf16` is the
windowed one with bfloat16 mixed precision (`train.precision: bfloat16`). `--variants slot
slot_moc` times the Slot Attention arms (Adam; slot_moc with the motion loss of the schedule's
start).

Time: the median of ``--steps`` timed steps after ``--warmup`` untimed ones, divided by the frames
per step. ``cpu s/frame`` is the process CPU time of a step divided by the frames and the threads:
on a machine shared with other jobs it is a lower bound of the wall time the step would take
alone (equal to ``s/frame`` when every thread is busy all the time and nothing else runs).

``cpu util``: the process CPU seconds per wall second over the timed steps (2.0 = both of two
threads busy throughout). ``--repeat 3`` runs each variant in three fresh processes and reports
the median one, with all three s/step.

Allocator: like every stage's entry point, a step runs with freed memory kept for reuse
(``spacemoc.devices.reuse_freed_memory``); ``--memory release`` measures glibc's default, which
hands large blocks back to the kernel and faults them in again every step.

Memory: each variant runs in its own fresh subprocess. The peak resident set size of that process
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is read once after the model, optimisers and batch
are set up (the baseline: interpreter, torch, weights, data) and once after all steps; the
difference is the extra memory a training step needs at its peak (activations kept for backward,
gradients, optimiser state), divided by the frames per step. A subprocess per variant keeps one
variant's freed-but-cached memory from hiding the other's peak.

Usage:
    python benchmarks/bench_train.py [--data results/pong/data/train.h5] [--steps 5]
    python benchmarks/bench_train.py --profile      # torch profiler table, batch 1 x T=4

Without ``--data`` a small Pong train split (8 samples) is generated in a temporary folder.
Targets (issue 3): <= 0.4 s and <= 250 MB per frame. The reference: 1.9 s and 0.9 GB per frame.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_pong_data(folder: Path) -> Path:
    from spacemoc.data import compute_background, make_dataset, save_background

    background = folder / "background.png"
    save_background(compute_background("pong", 40, seed=100), background, game="pong")
    return make_dataset(
        "pong", "train", folder / "train.h5", background, n_samples=8, seed=0, workers=1
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


SLOT_ARMS = ("slot", "slot_moc")


def variant_settings(variant: str) -> tuple[str, str]:
    """ "windowed", "dense" or "<compositing>-bf16" -> (compositing, precision); a slot arm
    ("slot", "slot_moc") -> ("", "float32")."""
    if variant in SLOT_ARMS:
        return "", "float32"
    compositing, _, precision = variant.partition("-")
    return compositing, {"": "float32", "bf16": "bfloat16"}[precision]


def setup(
    data: str, background: str, variant: str, batch: int, threads: int, decode_cells: int = 0
):
    """One training step of ``variant`` on ``batch`` sequences of ``data``, as the training stage
    runs it (the family's trainer; SPACE variants are the space_moc arm). ``background``: the
    game's background file, for a model that attends to what differs from it (the slot family)."""
    import torch

    from spacemoc.arms import arm_config
    from spacemoc.config import validate_config
    from spacemoc.data import AtariDataset, collate
    from spacemoc.models import get_family
    from spacemoc.rng import seed_everything
    from spacemoc.stages.train import background_looks_for_model, build_configs

    torch.set_num_threads(threads)
    seed_everything(0)
    compositing, precision = variant_settings(variant)
    train = {"precision": precision, **({"compositing": compositing} if compositing else {})}
    arm = variant if variant in SLOT_ARMS else "space_moc"
    model = {"space": {"decode_cells": decode_cells}} if arm == "space_moc" else {}
    config = arm_config(validate_config({"train": train, "model": model}), arm)
    model_cfg, loss_cfg = build_configs("pong", config)
    family = get_family(config["model"]["family"])
    dataset = AtariDataset(data, grid_size=model_cfg.G)
    batch_data = collate([dataset[i % len(dataset)] for i in range(batch)])
    model = family.model(model_cfg)
    if getattr(model_cfg, "needs_background", False):  # the slot family's default
        model.set_background(background_looks_for_model(background, "pong"))
    model.train()
    trainer = family.trainer(model, loss_cfg, config["train"])

    def step(global_step: int) -> float:
        return float(trainer.step(batch_data, global_step)["loss"])

    frames = batch_data["frames"].shape[0] * batch_data["frames"].shape[1]
    return step, frames


def child(args) -> None:
    if args.memory == "reuse":  # as every stage's entry point does (spacemoc.devices.set_threads)
        from spacemoc.devices import reuse_freed_memory

        reuse_freed_memory()
    step, frames = setup(
        args.data, args.background, args.variant, args.batch, args.threads, args.decode_cells
    )
    baseline = peak_rss_mb()
    for i in range(args.warmup):
        step(i)
    times, cpu_times = [], []
    for i in range(args.steps):
        began, began_cpu = time.perf_counter(), time.process_time()
        step(args.warmup + i)
        times.append(time.perf_counter() - began)
        cpu_times.append(time.process_time() - began_cpu)
    peak = peak_rss_mb() - baseline
    print(
        json.dumps(
            {
                "variant": args.variant,
                "frames": frames,
                "s_per_step": statistics.median(times),
                "s_per_frame": statistics.median(times) / frames,
                "cpu_s_per_frame": statistics.median(cpu_times) / frames / args.threads,
                "cpu_utilisation": sum(cpu_times) / sum(times),
                "peak_mb_per_frame": peak / frames,
                "baseline_mb": baseline,
                "steps": times,
            }
        )
    )


def median_run(runs: list[dict]) -> dict:
    """The run with the median s/step (the middle one of an odd count), with every run's s/step."""
    ordered = sorted(runs, key=lambda r: r["s_per_step"])
    return {**ordered[(len(ordered) - 1) // 2], "runs": [r["s_per_step"] for r in runs]}


def profile(args) -> None:
    import torch

    step, frames = setup(
        args.data, args.background, args.variant, 1, args.threads, args.decode_cells
    )
    step(0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(1)
    print(f"torch profiler, one step, batch 1 x T=4 ({frames} frames), {args.variant}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="dataset file (default: generate 8 Pong samples)")
    parser.add_argument(
        "--background",
        help="the game's background (default: results/{game}/background.npy beside --data's "
        "folder, or the generated one); the slot arms attend to what differs from it",
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=2, help="sequences per step (T=4 each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["windowed", "windowed-bf16", "dense"],
        help="SPACE's compositing (windowed, dense), with -bf16 for bfloat16 mixed precision "
        "(train.precision); or a slot arm (slot, slot_moc)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per variant, each a fresh process (median)"
    )
    parser.add_argument(
        "--memory",
        choices=("reuse", "release"),
        default="reuse",
        help="reuse: freed memory kept for the next step, as the stages run (default); release: "
        "glibc's default, large blocks handed back to the kernel and faulted in again",
    )
    parser.add_argument(
        "--decode-cells",
        type=int,
        default=0,
        help="SPACE variants: glimpses decoded per frame (model.space.decode_cells; 0: all 256)",
    )
    parser.add_argument("--profile", action="store_true", help="profile one step instead")
    parser.add_argument("--variant", default="windowed", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        if args.data is None:
            args.data = str(make_pong_data(Path(tmp)))
            args.background = str(Path(tmp) / "background.png")
        elif args.background is None:  # the workflow's layout: results/{game}/data/{split}.h5
            args.background = str(Path(args.data).parents[1] / "background.npy")
        if args.profile:
            for variant in args.variants:
                args.variant = variant
                profile(args)
            return
        results = []
        for variant in args.variants:
            cmd = [
                sys.executable, __file__, "--child", "--variant", variant, "--data", args.data,
                "--background", args.background,
                "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--batch", str(args.batch), "--threads", str(args.threads),
                "--memory", args.memory, "--decode-cells", str(args.decode_cells),
            ]  # fmt: skip
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            results.append(median_run(runs))

    print(
        f"training step, batch {args.batch} x T=4, {args.threads} threads, memory "
        f"{args.memory}, decode_cells {args.decode_cells or 'all'}, median of {args.steps} "
        f"steps; median of {args.repeat} processes: "
        + "; ".join(f"{r['variant']} {[round(x, 3) for x in r['runs']]} s/step" for r in results)
    )
    header = ("variant", "s/step", "s/frame", "cpu s/frame", "cpu util", "peak MB/frame")
    print("{:<14} {:>8} {:>8} {:>12} {:>9} {:>14}".format(*header))
    for r in results:
        print(
            f"{r['variant']:<14} {r['s_per_step']:>8.3f} {r['s_per_frame']:>8.3f} "
            f"{r['cpu_s_per_frame']:>12.3f} {r['cpu_utilisation']:>9.2f} "
            f"{r['peak_mb_per_frame']:>14.1f}"
        )
    print("reference (issue 3): 1.9 s/frame, 900 MB/frame; target <= 0.4 s, <= 250 MB per frame")


if __name__ == "__main__":
    main()
