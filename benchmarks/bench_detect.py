"""Detector speed: ms per frame at batch 1 and batch 32, classifier and box conversion included.

    python benchmarks/bench_detect.py                       # the shared fixture checkpoint
    python benchmarks/bench_detect.py --run results/pong/seed0 --threads 2

Frames are real frames of the detector's game (random agent, seeded). Without `--run` the
reference-format fixture checkpoint (`../shared/fixtures/ox4rl_compat/`) is used with a classifier
fitted on the spot (k-means on its z_what codes). Its weights are untrained and mark ~145 of the
256 cells present (~30 inside Pong's relevant area), far more than a trained model (a handful), so
its glimpse encoding is a worst case; the objects per frame are printed alongside.
The reference detector (spec §7) costs 76 ms per frame at batch 1 and 147 ms at batch 32 on the
same 2 cores. Peak memory is the process's peak resident set (and CUDA peak allocation on GPU).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "ox4rl_compat"
REFERENCE_MS = {1: 76.0, 32: 147.0}


def env_frames(game: str, n: int, seed: int = 0, skip: int = 60) -> np.ndarray:
    import ale_py
    import gymnasium as gym

    from spacemoc.games import get_game

    gym.register_envs(ale_py)
    env = gym.make(get_game(game).env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = []
    for i in range(skip + n):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
        if i >= skip:
            frames.append(obs)
    env.close()
    return np.stack(frames)


def fixture_detector(device, threshold: float = 0.5):
    from sklearn.cluster import KMeans

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.detector import Detector
    from spacemoc.games import get_game
    from spacemoc.model import load_checkpoint

    game = get_game("pong")
    codes = np.load(FIXTURE / "io.npz")["z_what"].reshape(-1, 32).astype(np.float64)
    km = KMeans(n_clusters=3, n_init=3, random_state=0).fit(codes)
    clf = ZWhatClassifier(
        kind="nn",
        game="pong",
        labels=game.labels,
        centroids=km.cluster_centers_,
        centroid_labels=np.array(game.relevant_indices),
    )
    model = load_checkpoint(FIXTURE / "checkpoint.pth")
    return Detector(model, clf, device=device, threshold=threshold)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_per_frame(fn, frames, batch: int, repeats: int) -> tuple[float, int]:
    """Best-of-`repeats` mean ms per frame over all frames, and objects found per pass."""
    best, objects = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        objects = 0
        for i in range(0, len(frames), batch):
            chunk = frames[i : i + batch]
            out = fn(chunk[0]) if batch == 1 else fn(chunk)
            objects += len(out) if batch == 1 else sum(map(len, out))
        best = min(best, (time.perf_counter() - start) / len(frames) * 1000)
    return best, objects


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="run folder / checkpoint (default: the fixture)")
    p.add_argument("--frames", type=int, default=64, help="frames per pass (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="passes; the best is kept")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--trust", action="store_true", help="allow a pickled reference classifier")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="presence threshold (default 0.5); with the fixture, e.g. 0.99 leaves a handful of "
        "objects per frame, like a trained model",
    )
    args = p.parse_args(argv)

    import torch

    from spacemoc.detector import Detector

    torch.set_num_threads(args.threads)
    if args.run is not None:
        det = Detector.load(
            args.run, device=args.device, trust=args.trust, threshold=args.threshold
        )
        source = str(args.run)
    else:
        if not (FIXTURE / "checkpoint.pth").is_file():
            raise SystemExit(f"no --run given and no fixture at {FIXTURE}")
        det = fixture_detector(args.device, args.threshold)
        source = "fixture checkpoint (untrained weights)"
    frames = env_frames(det.game, args.frames)
    print(f"detector: {source}; {det}")
    print(f"torch {torch.__version__}, {args.threads} threads, {len(frames)} {det.game} frames")
    det.detect_batch(frames[:32])  # warm-up: allocator, oneDNN kernels
    det.detect(frames[0])
    rss0 = peak_rss_mb()
    cuda = det.device.type == "cuda"
    results = {}
    for batch in (1, 32):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        fn = det.detect if batch == 1 else det.detect_batch
        ms, objects = time_per_frame(fn, frames, batch, args.repeats)
        mem = f"peak RSS {peak_rss_mb():.0f} MB"
        if cuda:
            mem += f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
        results[batch] = ms
        print(
            f"batch {batch:>2}: {ms:7.2f} ms/frame ({1000 / ms:6.0f} frames/s), "
            f"{objects / len(frames):.1f} objects/frame, {mem} "
            f"(reference {REFERENCE_MS[batch]:.0f} ms/frame, {REFERENCE_MS[batch] / ms:.0f}x)"
        )
    print(f"(peak RSS after loading and warm-up: {rss0:.0f} MB)")
    print(f"bench_detect: batch 1 {results[1]:.2f} ms/frame, batch 32 {results[32]:.2f} ms/frame")


if __name__ == "__main__":
    main()
