"""Detector speed: ms per frame at batch 1 and batch 32, classifier and box conversion included.

    python benchmarks/bench_detect.py                       # the shared fixture checkpoint
    python benchmarks/bench_detect.py --run results/pong/space_moc/seed0 --threads 2

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


def fixture_detector(
    device, threshold: float = 0.5, precision: str = "float32", boxes: str = "glimpse"
):
    from sklearn.cluster import KMeans

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.detector import Detector
    from spacemoc.games import get_game
    from spacemoc.models import load_checkpoint

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
    return Detector(
        model, clf, device=device, threshold=threshold, precision=precision, box_readout=boxes
    )


class ReferenceLikePath:
    """The reference detector's work (spec §7), to compare under the same load: bilinear
    antialiased resize in torch, the image encoder, then every frame copied once per cell and
    all 256 cells' glimpses encoded, boxes of the present cells classified."""

    def __init__(self, det):
        self.det = det

    def __call__(self, frames):
        import torch
        import torch.nn.functional as F

        from spacemoc.geometry import z_where_to_corners as cells_to_boxes
        from spacemoc.models.space.glimpse import glimpse_theta

        single = frames.ndim == 3
        frames = frames[None] if single else frames
        det, fg = self.det, self.det.model.fg_module
        with torch.inference_mode():
            x = torch.from_numpy(frames).flip(-1).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=(128, 128), mode="bilinear", antialias=True)
            post = fg.img_encoder(x)
            prob = torch.sigmoid(post["z_pres_logits"]).squeeze(-1)  # (B,N)
            where = torch.cat(
                (
                    torch.sigmoid(post["z_scale_loc"]),
                    fg.img_encoder.shift_to_centre(post["z_shift_loc"]),
                ),
                -1,
            )
            B, N = prob.shape
            copies = x.repeat_interleave(N, dim=0)  # (B*N,3,128,128)
            grid = F.affine_grid(glimpse_theta(where.reshape(-1, 4)), [B * N, 3, 32, 32], True)
            z_what = fg.z_what_net.mean(F.grid_sample(copies, grid, align_corners=True))
            z_what = z_what.view(B, N, -1).numpy()
        present = prob.numpy() > det.threshold
        out = []
        for b in range(B):
            boxes = cells_to_boxes(where[b].numpy()[present[b]])
            keep = np.asarray(det._game_row.in_relevant_area(*boxes.T), bool)
            codes = z_what[b][present[b]][keep]
            labels = det.classifier.predict(codes) if len(codes) else []
            out.append(list(zip(labels, boxes[keep], strict=True)))
        return out[0] if single else out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_per_frame(fn, frames, batch: int, repeats: int) -> tuple[float, float, int]:
    """Median over `repeats` passes of the wall and process-CPU ms per frame over all frames,
    and the objects of a pass.

    CPU time is the figure to trust on a shared machine with 1 thread (other processes do not
    inflate it); wall time is what a user sees on an idle machine; CPU / wall is the cores used."""
    walls, cpus, objects = [], [], 0
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        objects = 0
        for i in range(0, len(frames), batch):
            chunk = frames[i : i + batch]
            out = fn(chunk[0]) if batch == 1 else fn(chunk)
            objects += len(out) if batch == 1 else sum(map(len, out))
        walls.append((time.perf_counter() - start) / len(frames) * 1000)
        cpus.append((time.process_time() - start_cpu) / len(frames) * 1000)
    return float(np.median(walls)), float(np.median(cpus)), objects


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="run folder / checkpoint (default: the fixture)")
    p.add_argument("--frames", type=int, default=64, help="frames per pass (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="passes; the median is reported")
    p.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=[1, 32],
        help="batch sizes to time (default 1 32; e.g. 1 32 64 for vectorised envs)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--trust", action="store_true", help="allow a pickled reference classifier")
    p.add_argument(
        "--reference-like",
        action="store_true",
        help="also time the reference's detection path on the same frames (same machine load)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="presence threshold (default 0.5); with the fixture, e.g. 0.99 leaves a handful of "
        "objects per frame, like a trained model",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="Detector precision (default float32; bfloat16 is the opt-in fast mode)",
    )
    p.add_argument(
        "--boxes",
        choices=("glimpse", "alpha"),
        help="box readout (default: the run's config.yaml eval.boxes; alpha decodes each kept "
        "object's glimpse)",
    )
    p.add_argument(
        "--overlap-suppression",
        type=float,
        help="overlap suppression (default: the run's; 0 off, e.g. 0.5)",
    )
    args = p.parse_args(argv)

    import torch

    from spacemoc.detector import Detector

    torch.set_num_threads(args.threads)
    if args.run is not None:
        det = Detector.load(
            args.run,
            device=args.device,
            trust=args.trust,
            threshold=args.threshold,
            precision=args.precision,
            **({"box_readout": args.boxes} if args.boxes else {}),
            **(
                {"overlap_suppression": args.overlap_suppression}
                if args.overlap_suppression is not None
                else {}
            ),
        )
        source = str(args.run)
    else:
        if not (FIXTURE / "checkpoint.pth").is_file():
            raise SystemExit(f"no --run given and no fixture at {FIXTURE}")
        det = fixture_detector(args.device, args.threshold, args.precision, args.boxes or "glimpse")
        source = "fixture checkpoint (untrained weights)"
    frames = env_frames(det.game, max(args.frames, max(args.batches)))
    print(f"detector: {source}; {det}")
    print(f"torch {torch.__version__}, {args.threads} threads, {len(frames)} {det.game} frames")
    det.detect_batch(frames[:32])  # warm-up: allocator, oneDNN kernels
    det.detect(frames[0])
    rss0 = peak_rss_mb()
    cuda = det.device.type == "cuda"
    results = {}
    for batch in args.batches:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        fn = det.detect if batch == 1 else det.detect_batch
        ms, cpu_ms, objects = time_per_frame(fn, frames, batch, args.repeats)
        mem = f"peak RSS {peak_rss_mb():.0f} MB"
        if cuda:
            mem += f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
        results[batch] = ms
        reference = (
            f" (reference {REFERENCE_MS[batch]:.0f} ms/frame, {REFERENCE_MS[batch] / ms:.0f}x)"
            if batch in REFERENCE_MS
            else ""
        )
        print(
            f"batch {batch:>2}: {ms:7.2f} ms/frame ({1000 / ms:6.0f} frames/s; CPU time "
            f"{cpu_ms:.2f} ms/frame, {cpu_ms / ms:.2f} cores busy), "
            f"{objects / len(frames):.1f} objects/frame, {mem}{reference}"
        )
    print(f"(peak RSS after loading and warm-up: {rss0:.0f} MB)")
    if args.reference_like and not cuda:
        ref = ReferenceLikePath(det)
        ref(frames[:2])
        for batch in args.batches:
            ms, cpu_ms, objects = time_per_frame(ref, frames, batch, 1)
            print(
                f"reference-like path, batch {batch:>2}: {ms:7.2f} ms/frame (CPU time "
                f"{cpu_ms:.2f}), "
                f"{objects / len(frames):.1f} objects/frame, peak RSS {peak_rss_mb():.0f} MB "
                f"(spacemoc {results[batch]:.2f} ms/frame: {ms / results[batch]:.0f}x faster)"
            )
    figures = ", ".join(
        f"batch {b} {ms:.2f} ms/frame ({1000 / ms:.0f} frames/s)" for b, ms in results.items()
    )
    print(f"bench_detect: {figures}")


if __name__ == "__main__":
    main()
