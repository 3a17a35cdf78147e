"""Data-stage benchmark: collection speed, bytes per sample and peak memory of `make_dataset`.

    python benchmarks/bench_data.py [--game pong] [--samples 1024] [--workers 2]

Reference (ox4rl on the same kind of machine): 8.2 samples/s and 310 KB per sample (PNG + .pt
files). Target: >= 100 samples/s on 2 cores and <= 15 KB per sample. The background image is
computed first and not timed.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from spacemoc.data import compute_background, make_dataset, save_background


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="pong")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--motion-kind", default="mode")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        background = save_background(
            compute_background(args.game, 100, 100), Path(tmp) / "bg.png", game=args.game
        )
        out = Path(tmp) / "test.h5"
        start = time.perf_counter()
        make_dataset(
            args.game,
            "test",
            out,
            background[1],
            args.samples,
            motion_kind=args.motion_kind,
            workers=args.workers,
        )
        seconds = time.perf_counter() - start
        size = out.stat().st_size
    # ru_maxrss is in KiB on Linux; children = the worker processes (largest one).
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    parent, child = me.ru_maxrss / 1024, children.ru_maxrss / 1024
    # CPU seconds per sample (all processes, background included) does not depend on how busy
    # the machine is: 2 / cpu_per_sample is the rate on 2 otherwise idle cores.
    cpu = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    print(
        f"bench_data game={args.game} samples={args.samples} workers={args.workers} "
        f"motion={args.motion_kind}: {args.samples / seconds:.1f} samples/s, "
        f"{size / args.samples / 1024:.1f} KB/sample, {seconds:.1f} s, "
        f"{1000 * cpu / args.samples:.1f} CPU ms/sample, "
        f"peak RSS main {parent:.0f} MiB / largest worker {child:.0f} MiB"
    )


if __name__ == "__main__":
    main()
