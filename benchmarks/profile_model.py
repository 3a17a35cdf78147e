"""Where the time of a SPACE forward + backward goes, dense vs windowed compositing.

Runs the torch profiler over one forward + backward of the SPACE model (no MOC, no optimiser) at
batch 1 x T=4 on real Pong frames and sums the self CPU time per category: convolutions (forward
and backward), spatial transforms (affine_grid, grid_sample and their backward), normalisation,
activations, tensor copies (copy, cat, index, ...), scatter/gather of the windowed compositing,
and the rest.

Frames: the 8 real Pong frames of the shared compatibility fixture (``../shared/fixtures/
ox4rl_compat/io.npz``, converted to RGB), or ``--data`` (a dataset .h5, first sample).
``--regime trained`` sets the z_scale head bias to the prior mean (-2.5): boxes of the size a
trained Pong model predicts, instead of the half-image boxes of a fresh initialisation.

Usage:
    python benchmarks/profile_model.py [--threads 2] [--regime init|trained] [--data train.h5]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np
import torch

from spacemoc.models.space import Space, SpaceConfig

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ox4rl_compat" / "io.npz"

CATEGORIES = {
    "convolution": ("convolution", "conv2d", "mkldnn_conv"),
    "spatial transform": ("grid_sampler", "affine_grid"),
    "normalisation": ("group_norm", "batch_norm"),
    "activation": ("elu", "sigmoid", "tanh", "softplus", "celu"),
    "scatter/gather": ("scatter", "index_add", "gather"),  # before "copy": aten::index_add
    "copy": (
        "copy_",
        "aten::cat",
        "aten::index",
        "aten::clone",
        "contiguous",
        "pixel_shuffle",
        "pixel_unshuffle",
        "aten::stack",
        "repeat",
    ),  # fmt: skip
    "softmax/exp/log": ("softmax", "aten::exp", "expm1", "aten::log", "logsumexp"),
}


def frames(data: str | None) -> torch.Tensor:
    if data:
        import h5py

        with h5py.File(data, "r") as f:
            x = f["frames"][0]  # (T, 128, 128, 3) uint8 RGB
        return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)[None]
    x = np.load(FIXTURE)["model_input"][:4, ::-1].copy()  # BGR -> RGB
    return torch.from_numpy(x)[None]


def categorise(name: str) -> str:
    for category, keys in CATEGORIES.items():
        if any(k in name for k in keys):
            return category
    return "other"


def profile(model: Space, x: torch.Tensor, mode: str) -> tuple[float, dict[str, float]]:
    def step():
        torch.manual_seed(1)
        loss, _ = model(x, global_step=0, compositing=mode)
        loss.backward()

    step()  # warm-up
    began = time.perf_counter()
    step()
    wall = time.perf_counter() - began
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    totals = collections.Counter()
    for event in prof.key_averages():
        if event.key.startswith("aten::") or event.key.startswith("mkldnn"):
            totals[categorise(event.key)] += event.self_cpu_time_total / 1e6
    return wall, dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--regime", choices=["init", "trained"], default="init")
    parser.add_argument("--data", help="dataset .h5 (default: the fixture's Pong frames)")
    parser.add_argument("--no-recompute", action="store_true", help="keep all activations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = frames(args.data)
    torch.manual_seed(0)
    model = Space(SpaceConfig()).train()
    model.fg_module.recompute = not args.no_recompute
    if args.regime == "trained":
        with torch.no_grad():
            model.fg_module.img_encoder.z_scale_net.bias[:2] = -2.5
    n = x.shape[0] * x.shape[1]
    print(f"SPACE forward + backward, batch 1 x T=4, {args.threads} threads, {args.regime} boxes")
    for mode in ("dense", "windowed"):
        wall, totals = profile(model, x, mode)
        total = sum(totals.values())
        print(f"\n{mode}: {wall / n:.3f} s/frame wall; profiled self CPU {total:.2f} s")
        for category, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {category:<18} {seconds:7.2f} s  {100 * seconds / total:5.1f} %")


if __name__ == "__main__":
    main()
