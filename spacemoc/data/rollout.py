"""Collect samples from a seeded rollout (spec §1.3, with seeding added): random actions, or for
the agent split the game's control policy with some random actions.

A sample is a run of ``span`` consecutive env steps (no black frames, no episode end inside) of
which the last ``T`` frames are kept. Decorrelated splits use span = window (the reference keeps
the last 4 of every 20 steps); the tracking split keeps long runs of consecutive frames. Samples
are made in fixed chunks; each chunk starts a fresh env seeded from (split seed, chunk index), so
the data do not depend on how chunks are spread over worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spacemoc.data.env import (
    OBJECT_DTYPE,
    agent_steps,
    frame_objects,
    make_agent,
    make_env,
    reset,
    seeds_for_chunk,
    step,
)
from spacemoc.data.motion import ColourScore, motion_boxes, motion_maps, resize_motion
from spacemoc.data.preprocess import preprocess_frames
from spacemoc.games import get_game
from spacemoc.geometry import IMAGE_SIZE

WARMUP_STEPS = 100 + 50 + 1  # reference: 100 warm-up steps, then 50 + 1 before collecting
RESET_STEPS = 10 + 1  # after an episode ends
# Kept frames per chunk: chunk = max(1, 1024 // T) samples. Each chunk pays a fresh env (ROM
# load, warm-up), so chunks are large; changing this changes the data.
CHUNK_FRAMES = 1024


def chunk_samples(T: int) -> int:
    return max(1, CHUNK_FRAMES // T)


@dataclass(frozen=True)
class ChunkTask:
    game: str
    split_seed: int
    chunk: int
    first_sample: int  # global index of the chunk's first sample
    n_samples: int
    T: int
    window: int
    span: int  # consecutive frames per sample, the last T kept
    motion_kind: str
    rolling_median: bool
    policy: str = "random"  # who plays: "random" or "control" (spacemoc.data.env.make_agent)
    epsilon: float = 0.0  # the control policy's share of random actions


@dataclass
class ChunkResult:
    frames: np.ndarray  # (n,T,128,128,3) uint8 RGB
    motion: np.ndarray  # (n,T,128,128) uint8
    objects: np.ndarray  # OBJECT_DTYPE rows
    motion_boxes: np.ndarray  # OBJECT_DTYPE rows, label -1


def _not_black(obs: np.ndarray) -> bool:
    """Black frames (all zeros) are skipped; 8 bytes at a time is ~10x faster than obs.any()."""
    flat = obs.reshape(-1)
    if flat.size % 8 == 0 and flat.flags.c_contiguous:
        return bool(flat.view(np.uint64).any())
    return bool(flat.any())


def runs(env, agent, game_row, n: int, span: int, T: int):
    """Yield ``n`` runs: (frames (span,210,160,3), objects of each of the last T frames)."""
    frames: list[np.ndarray] = []
    objects: list[list] = []
    made = 0
    while made < n:
        obs, over, objects_ok = step(env, agent.act())
        if not objects_ok:  # no trustworthy ground truth for this frame: drop the window
            frames, objects = [], []
        elif _not_black(obs):
            frames.append(obs.copy())
            if len(frames) > span - T:
                objects.append(frame_objects(env, game_row))
        if len(frames) == span:
            yield np.stack(frames), objects
            made += 1
            frames, objects = [], []
        if over:  # a partial window is dropped
            reset(env)
            agent_steps(env, agent, RESET_STEPS)
            frames, objects = [], []


def _rows(sample: int, t: int, boxes, label=None, relevant=None) -> list[tuple]:
    if label is None:
        return [(sample, t, x, y, w, h, lab, rel) for x, y, w, h, lab, rel in boxes]
    return [(sample, t, x, y, w, h, label, relevant) for x, y, w, h in boxes]


def collect_chunk(task: ChunkTask, background: np.ndarray) -> ChunkResult:
    game_row = get_game(task.game)
    env_seed, agent_rng = seeds_for_chunk(task.split_seed, task.chunk)
    env = make_env(game_row)
    agent = make_agent(env, task.game, agent_rng, task.policy, task.epsilon)
    reset(env, env_seed)
    agent_steps(env, agent, WARMUP_STEPS)
    colours = ColourScore(background, game_row.motion_colour_counts)

    n, T = task.n_samples, task.T
    frames = np.empty((n, T, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    motion = np.empty((n, T, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    objects: list[tuple] = []
    found: list[tuple] = []
    for i, (run, run_objects) in enumerate(runs(env, agent, game_row, n, task.span, T)):
        sample = task.first_sample + i
        kept = run[-T:]
        frames[i] = preprocess_frames(kept)
        deltas = motion_maps(task.motion_kind, run, T, background, task.window, task.rolling_median)
        motion[i] = resize_motion(deltas)
        for t in range(T):
            objects += _rows(sample, t, run_objects[t])
            boxes = motion_boxes(deltas[t], kept[t], colours)
            found += _rows(sample, t, boxes.tolist(), label=-1, relevant=0)
    env.close()
    return ChunkResult(
        frames=frames,
        motion=motion,
        objects=np.array(objects, OBJECT_DTYPE),
        motion_boxes=np.array(found, OBJECT_DTYPE),
    )
