"""Write a dataset split to HDF5 (schema in docs/design.md) and read its tables back."""

from __future__ import annotations

import json
import multiprocessing
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm import tqdm

import spacemoc
from spacemoc.atomic import atomic_h5
from spacemoc.data.background import load_background
from spacemoc.data.env import FRAMESKIP, OBJECT_DTYPE
from spacemoc.data.motion import as_looks, check_motion_kind
from spacemoc.data.rollout import ChunkTask, chunk_samples, collect_chunk
from spacemoc.files import open_h5
from spacemoc.games import DATA_SPLITS, check_split, get_game
from spacemoc.geometry import IMAGE_SIZE
from spacemoc.logs import StatusLine

DEFAULT_SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2, "tracking": 3, "agent": 4}
AGENT_EPSILON = 0.1  # the agent split's share of random actions
COMPRESSION = {"compression": "gzip", "compression_opts": 4}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _tasks(game, split_seed, n_samples, T, window, span, motion_kind, rolling, policy, epsilon):
    size = chunk_samples(T)
    return [
        ChunkTask(
            game=game,
            split_seed=split_seed,
            chunk=c,
            first_sample=start,
            n_samples=min(size, n_samples - start),
            T=T,
            window=window,
            span=span,
            motion_kind=motion_kind,
            rolling_median=rolling,
            policy=policy,
            epsilon=epsilon,
        )
        for c, start in enumerate(range(0, n_samples, size))
    ]


_BACKGROUND = None  # set once per worker process by the pool initialiser


def _init_worker(background):
    global _BACKGROUND
    _BACKGROUND = background


def _run_task(task):
    return collect_chunk(task, _BACKGROUND)


def make_dataset(
    game: str,
    split: str,
    out_path: str | Path,
    background_path: str | Path,
    n_samples: int,
    T: int = 4,
    window: int = 20,
    seed: int | None = None,
    motion_kind: str = "mode",
    workers: int = 2,
    config: dict | None = None,
    epsilon: float = AGENT_EPSILON,
) -> Path:
    """Collect ``n_samples`` samples of ``split`` and write them to ``out_path`` (HDF5).

    Decorrelated splits (train, validation, test) keep the last ``T`` frames of every ``window``
    steps; the ``tracking`` split keeps runs of ``T`` consecutive frames (``window`` - 1 frames of
    history before each run feed the median/flow motion maps). The ``agent`` split is sampled as
    the decorrelated ones from the game's control policy (``spacemoc.control``) with a random
    action at rate ``epsilon``; the other splits from random play. ``seed`` defaults to the split's
    default seed. Collection runs in ``workers`` processes; the file does not depend on it.
    The file is written under a temporary name and renamed when complete.
    """
    spec = get_game(game)
    check_split(split, DATA_SPLITS)
    check_motion_kind(motion_kind)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if T < 1 or window < 1:
        raise ValueError(f"T and window must be >= 1, got T={T}, window={window}")
    tracking = split == "tracking"
    if not tracking and window < T:
        raise ValueError(f"window ({window}) must be >= T ({T}): the last T frames are kept")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    policy = "control" if split == "agent" else "random"
    if policy == "control":
        from spacemoc.control import policy_for

        policy_for(spec.name)  # a game without a policy fails here, before any rollout
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    else:
        epsilon = 0.0
    background = load_background(background_path, game=spec.name)
    looks = len(as_looks(background))
    if looks != spec.background_looks:
        warnings.warn(
            f"background {background_path} has {looks} look(s), {spec.name}'s game table says "
            f"{spec.background_looks}: remake it (spacemoc background --game {spec.name}) for "
            "motion maps as the game table intends",
            stacklevel=2,
        )
    seed = DEFAULT_SPLIT_SEEDS[split] if seed is None else int(seed)
    span = T + window - 1 if tracking else window
    tasks = _tasks(
        spec.name, seed, n_samples, T, window, span, motion_kind, tracking, policy, epsilon
    )

    out_path = Path(out_path)
    attrs = {
        "game": spec.name,
        "env_id": spec.env_id,
        "split": split,
        "seed": seed,
        "T": T,
        "window": window,
        "frameskip": FRAMESKIP,
        "motion_kind": motion_kind,
        "policy": policy,
        "epsilon": epsilon,
        "labels": list(spec.labels),
        "relevant_labels": list(spec.relevant),
        "spacemoc_version": spacemoc.__version__,
        "ocatari_version": _version("ocatari"),
        "ale_py_version": _version("ale-py"),
        "config": json.dumps(config if config is not None else {}, sort_keys=True),
    }
    with atomic_h5(out_path) as f:
        f.attrs.update(attrs)
        frames = f.create_dataset(
            "frames",
            (n_samples, T, IMAGE_SIZE, IMAGE_SIZE, 3),
            np.uint8,
            chunks=(1, T, IMAGE_SIZE, IMAGE_SIZE, 3),
            **COMPRESSION,
        )
        motion = f.create_dataset(
            "motion",
            (n_samples, T, IMAGE_SIZE, IMAGE_SIZE),
            np.uint8,
            chunks=(1, T, IMAGE_SIZE, IMAGE_SIZE),
            **COMPRESSION,
        )
        tables = {
            name: f.create_dataset(
                name, (0,), OBJECT_DTYPE, maxshape=(None,), chunks=(4096,), **COMPRESSION
            )
            for name in ("objects", "motion_boxes")
        }
        progress = tqdm(total=n_samples, desc=f"{spec.name} {split}", unit="sample")
        status = StatusLine(f"dataset {spec.name} {split}", n_samples, unit="sample")
        for task, result in zip(tasks, _results(tasks, background, workers), strict=True):
            rows = slice(task.first_sample, task.first_sample + task.n_samples)
            frames[rows] = result.frames
            motion[rows] = result.motion
            for name, table in tables.items():
                new = getattr(result, name)
                table.resize((table.shape[0] + len(new),))
                table[table.shape[0] - len(new) :] = new
            progress.update(task.n_samples)
            status.update(task.first_sample + task.n_samples)
        progress.close()
    return out_path


def _results(tasks, background, workers):
    """Chunk results in task order, computed in ``workers`` processes (1: in this process)."""
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            yield collect_chunk(task, background)
        return
    # fork: workers inherit the imported modules (fast start); the data stage starts no threads.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "fork":
        import ocatari.core  # noqa: F401  (imported once here instead of once per worker)
    context = multiprocessing.get_context(method)
    with context.Pool(min(workers, len(tasks)), _init_worker, (background,)) as pool:
        yield from pool.imap(_run_task, tasks)


def read_table(path: str | Path, name: str = "objects") -> list[list[np.ndarray]]:
    """A box table of a dataset file split per sample and frame: ``table[sample][t]`` -> rows."""
    with open_h5(path, "dataset") as f:
        if name not in f:
            raise ValueError(f"{path} has no table {name!r}; it has {sorted(f.keys())}")
        rows = f[name][()]
        n, T = f["frames"].shape[:2]
    return split_rows(rows, n, T)


def split_rows(rows: np.ndarray, n: int, T: int) -> list[list[np.ndarray]]:
    """Split table rows (sorted by sample, t) into ``[sample][t]`` lists of row arrays."""
    keys = rows["sample"].astype(np.int64) * T + rows["t"]
    bounds = np.searchsorted(keys, np.arange(n * T + 1))
    return [[rows[bounds[s * T + t] : bounds[s * T + t + 1]] for t in range(T)] for s in range(n)]
