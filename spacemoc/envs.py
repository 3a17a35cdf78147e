"""A gymnasium wrapper whose `.objects` come from the learned detector + tracker.

Object-centric agents (SCoBots-style) read OCAtari's `env.objects` (RAM extraction) every step.
`DetectedObjects` offers the same attribute from `spacemoc.Detector` and `spacemoc.Tracker`, so an
agent switches from RAM extraction to the learned detector by one line:

    env = OCAtari("ALE/Pong-v5", mode="ram", hud=False, obs_mode="ori")           # RAM
    env = spacemoc.envs.make_env("pong", Detector.load("results/pong/space_moc/seed0"))  # learned

The objects have the attributes of OCAtari's game objects that agents read: `category, x, y, w,
h, xy, wh, xywh, center, dx, dy, prev_xy, rgb, hud, visible` (+ `id`, the track id, and `score`,
the presence probability). `dx, dy` are the pixel moves of the object since the previous frame, as
in OCAtari (0 for an object seen for the first time); `rgb` is the mean colour of its box.

The wrapper is a `gymnasium.Wrapper`: `step` returns gymnasium's `(obs, reward, terminated,
truncated, info)`. (OCAtari's own `step` returns truncated before terminated.) An OCAtari instance
may be wrapped too (it is stepped as usual, its return reordered); its RAM objects stay available
as `env.ram_objects`, e.g. to compare them with the detected ones.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from spacemoc.detector import box_rgb
from spacemoc.tracking import Tracker


class DetectedObject:
    """One object as the agent sees it; OCAtari `GameObject`-like, integer pixel box."""

    hud = False
    visible = True
    orientation = None

    def __init__(self, category, x, y, w, h, prev_xy=None, rgb=(0, 0, 0), id=-1, score=1.0):
        self.category = category
        self.x, self.y, self.w, self.h = int(round(x)), int(round(y)), int(round(w)), int(round(h))
        self.prev_xy = prev_xy if prev_xy is not None else (self.x, self.y)
        self.rgb = rgb
        self.id = id
        self.score = score

    @property
    def xy(self) -> tuple[int, int]:
        return (self.x, self.y)

    @property
    def wh(self) -> tuple[int, int]:
        return (self.w, self.h)

    @property
    def xywh(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)

    @property
    def prev_x(self) -> int:
        return self.prev_xy[0]

    @property
    def prev_y(self) -> int:
        return self.prev_xy[1]

    @property
    def h_coords(self) -> list[tuple[int, int]]:
        return [self.xy, self.prev_xy]

    @property
    def dx(self) -> int:
        return self.x - self.prev_xy[0]

    @property
    def dy(self) -> int:
        return self.y - self.prev_xy[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    def __repr__(self) -> str:
        return (
            f"{self.category} #{self.id} at ({self.x}, {self.y}), {self.wh}, d=({self.dx}, "
            f"{self.dy}), p={self.score:.2f}"
        )


def _is_ocatari(env) -> bool:
    return not isinstance(env, gym.Env) and hasattr(env, "_env") and hasattr(env, "objects")


class DetectedObjects(gym.Wrapper):
    """Adds `.objects` (detector + tracker) to an ALE gymnasium env or an OCAtari env.

    Args:
        env: a gymnasium ALE env (`gym.make("ALE/Pong-v5")`, any obs type) or an OCAtari env.
        detector: a `spacemoc.Detector` for the env's game.
        tracker: a `spacemoc.Tracker` (default `Tracker()`); reset at every episode start.
    """

    def __init__(self, env, detector, tracker: Tracker | None = None):
        self.ocatari = env if _is_ocatari(env) else None
        base = env._env if self.ocatari is not None else env
        if not isinstance(base, gym.Env):
            raise ValueError(
                f"expected a gymnasium env or an OCAtari env, got {type(env).__name__}"
            )
        super().__init__(base)
        if not hasattr(base.unwrapped, "ale"):
            raise ValueError(f"{base.unwrapped} is not an ALE env: the detector needs Atari frames")
        self.detector = detector
        self.tracker = tracker if tracker is not None else Tracker()
        self.objects: list[DetectedObject] = []
        self.frame: np.ndarray | None = None  # the last raw RGB frame (210,160,3)
        self.detections = []  # the detector's output on it (before tracking)
        self._last_xy: dict[int, tuple[int, int]] = {}

    @property
    def ram_objects(self):
        """OCAtari's RAM-extracted objects (only when an OCAtari env was wrapped)."""
        if self.ocatari is None:
            raise AttributeError("ram_objects needs a wrapped OCAtari env")
        return self.ocatari.objects

    def reset(self, **kwargs):
        if self.ocatari is not None:  # it resets its env and its RAM objects
            obs, info = self.ocatari.reset(**kwargs)
        else:
            obs, info = self.env.reset(**kwargs)
        self.tracker.reset()
        self._last_xy = {}
        self._observe()
        return obs, info

    def step(self, action):
        if self.ocatari is not None:
            obs, reward, truncated, terminated, info = self.ocatari.step(action)  # its order
        else:
            obs, reward, terminated, truncated, info = self.env.step(action)
        self._observe()
        return obs, reward, terminated, truncated, info

    def _observe(self) -> None:
        frame = self.env.unwrapped.ale.getScreenRGB()  # raw frame whatever the obs type
        self.frame = frame
        self.detections = self.detector.detect(frame)
        tracks = self.tracker.update(self.detections)
        objects, last = [], {}
        for t in tracks:
            obj = DetectedObject(
                t.label,
                t.x,
                t.y,
                t.w,
                t.h,
                prev_xy=self._last_xy.get(t.id),
                id=t.id,
                score=t.score,
            )
            obj.rgb = box_rgb(frame, *obj.xywh)  # the colour of the box the agent sees
            objects.append(obj)
            last[t.id] = obj.xy
        # An object missed for a frame keeps its last position as prev_xy when it returns;
        # positions of tracks the tracker forgot are dropped.
        alive = {t.id for t in self.tracker.tracks} | {t.id for t in self.tracker.lost}
        self._last_xy = {k: v for k, v in {**self._last_xy, **last}.items() if k in alive}
        self.objects = objects


def make_env(game: str, detector, tracker: Tracker | None = None, **gym_kwargs) -> DetectedObjects:
    """`gym.make` of the game's ALE env (`ALE/<Game>-v5`) wrapped with `DetectedObjects`."""
    import ale_py

    from spacemoc.games import get_game

    gym.register_envs(ale_py)
    spec = get_game(game)
    if detector.game != spec.name:
        raise ValueError(f"the detector is for {detector.game!r}, not {spec.name!r}")
    return DetectedObjects(gym.make(spec.env_id, **gym_kwargs), detector, tracker)
