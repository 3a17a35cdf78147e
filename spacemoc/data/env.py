"""OCAtari environments, the seeded random agent and the ground-truth objects of a frame."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from spacemoc.games import Game
from spacemoc.geometry import FRAME_HEIGHT, FRAME_WIDTH

# One row per object; x, y, w, h in original 160x210 frame pixels; `label` indexes Game.labels.
OBJECT_DTYPE = np.dtype(
    [
        ("sample", "<i4"),
        ("t", "<i2"),
        ("x", "<f4"),
        ("y", "<f4"),
        ("w", "<f4"),
        ("h", "<f4"),
        ("label", "<i2"),
        ("relevant", "u1"),
    ]
)
FRAMESKIP = 4  # the ALE v5 default; every env id in the game table is ALE/<Game>-v5


def make_env(game_row: Game):
    """An OCAtari env in RAM mode that returns raw RGB frames; HUD objects are not collected."""
    from ocatari.core import OCAtari

    # ALE prints its banner on stdout; keep logs clean.
    with contextlib.redirect_stdout(io.StringIO()):
        # create_buffer_stacks=[]: OCAtari's default list is shared across instances.
        env = OCAtari(
            game_row.env_id, mode="ram", hud=False, obs_mode="ori", create_buffer_stacks=[]
        )
    return env


@dataclass
class RandomAgent:
    """Uniform random actions from OCAtari's minimal action set, from its own Generator."""

    n_actions: int
    rng: np.random.Generator

    def act(self) -> int:
        return int(self.rng.integers(self.n_actions))


@dataclass
class PolicyAgent:
    """The game's control policy (``spacemoc.control.POLICIES``) on OCAtari's RAM objects, with
    a uniform random action instead at rate ``epsilon``: the states an agent visits, not only
    those random play reaches (a paddle held against the wall, the ball at the paddle)."""

    env: object  # the OCAtari env being stepped
    policy: object  # (objects, action meanings) -> action index
    rng: np.random.Generator
    epsilon: float  # spacemoc.data.writer.AGENT_EPSILON unless configured

    def __post_init__(self):
        self.meanings = list(self.env.get_action_meanings())

    def act(self) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(self.meanings)))
        return int(self.policy(self.env.objects, self.meanings))


def make_agent(env, game: str, rng: np.random.Generator, policy: str, epsilon: float):
    """``RandomAgent`` (``policy="random"``) or the game's ``PolicyAgent`` (``"control"``)."""
    if policy == "random":
        return RandomAgent(env.nb_actions, rng)
    if policy != "control":
        raise ValueError(f"unknown data policy {policy!r}; valid: random, control")
    from spacemoc.control import policy_for

    return PolicyAgent(env, policy_for(game), rng, epsilon)


def fit_frame(obs: np.ndarray) -> np.ndarray:
    """Crop a raw frame to 210x160: Carnival's screen is 214 rows, its last 4 carry no objects."""
    return obs[:FRAME_HEIGHT] if obs.shape[0] > FRAME_HEIGHT else obs


def step(env, action: int):
    """Step; returns (frame, episode_over, objects_ok).

    OCAtari swaps truncated/terminated; either ends the episode. ``objects_ok`` is False when
    OCAtari's RAM extraction failed on this step (ocatari 2.1.0's Riverraid raises TypeError for
    some object types, ~0.4% of steps): the emulator has stepped but ``env.objects`` is stale, so
    the caller drops the frame's window.
    """
    try:
        obs, _reward, flag_a, flag_b, _info = env.step(action)
    except TypeError:
        ale = env.unwrapped.ale if hasattr(env, "unwrapped") else env._ale
        return fit_frame(ale.getScreenRGB()), bool(ale.game_over()), False
    return fit_frame(obs), bool(flag_a or flag_b), True


def reset(env, seed: int | None = None):
    """Reset (seeded or not); OCAtari's object extraction errors at reset are ignored because
    random steps always follow a reset before any frame is kept (see ``step``)."""
    try:
        env.reset(seed=seed)
    except TypeError:
        pass


def agent_steps(env, agent, n: int):
    """Take ``n`` of the agent's actions; on episode end reset without a seed (the env RNG
    continues)."""
    obs = None
    for _ in range(n):
        obs, over, _ = step(env, agent.act())
        if over:
            reset(env)
    return obs


def frame_objects(env, game_row: Game) -> list[tuple[float, float, float, float, int, bool]]:
    """Ground truth of the current frame: (x, y, w, h, label, relevant) in frame pixels.

    OCAtari placeholders (``NoObject``, zero-size slots) are dropped, boxes are clipped to the
    frame and what is empty after clipping is dropped; negative sizes are turned around.
    """
    rows = []
    for obj in env.objects:
        name = obj.category
        if name == "NoObject":
            continue
        x, y, w, h = float(obj.x), float(obj.y), float(obj.w), float(obj.h)
        if w < 0:
            x, w = x + w, -w
        if h < 0:
            y, h = y + h, -h
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(FRAME_WIDTH)), min(y + h, float(FRAME_HEIGHT))
        if x1 <= x0 or y1 <= y0:
            continue
        if name not in game_row.labels:
            raise ValueError(
                f"OCAtari returned class {name!r} for {game_row.name}, which is not in its label "
                f"table {game_row.labels}; is the pinned ocatari version installed?"
            )
        rows.append(
            (x0, y0, x1 - x0, y1 - y0, game_row.labels.index(name), name in game_row.relevant)
        )
    return rows


def seeds_for_chunk(split_seed: int, chunk: int) -> tuple[int, np.random.Generator]:
    """Env seed and agent generator of one chunk, from (split seed, chunk index) only."""
    seq = np.random.SeedSequence([int(split_seed), int(chunk)])
    env_seed = int(seq.generate_state(1, dtype=np.uint32)[0])
    agent_rng = np.random.default_rng(seq.spawn(1)[0])
    return env_seed, agent_rng
