"""A gymnasium wrapper whose `.objects` come from the learned detector + tracker.

Object-centric agents (SCoBots-style) read OCAtari's `env.objects` (RAM extraction) every step.
`DetectedObjects` offers the same attribute from `spacemoc.Detector` and `spacemoc.Tracker`, so an
agent switches from RAM extraction to the learned detector by one line:

    env = OCAtari("ALE/Pong-v5", mode="ram", hud=False, obs_mode="ori")           # RAM
    env = spacemoc.envs.make_env("pong", Detector.load("results/pong/space_moc/seed0"))  # learned

`env.objects` is OCAtari's fixed slot list for the game (`hud=False`): the game table's
`slots` (OCAtari's `MAX_NB_OBJECTS`, in the order of its `env.objects`), one object per slot,
`NoObject` placeholders (falsy, zeros in `ns_state`) for empty ones, duplicate detections resolved
(`ObjectSlots`). `env.ns_state`, `env.ns_meaning`, `env.nb_actions`, `env.get_action_meanings()`
are OCAtari's. `env.tracked_objects` keeps the variable-length list of every tracked object (also
`env.objects` with `slots=False`), `env.detections` the detector's raw output.

The objects have the attributes of OCAtari's game objects that agents read: `category, x, y, w,
h, xy, wh, xywh, center, dx, dy, prev_xy, rgb, hud, visible` (+ `id`, the track id, and `score`,
the presence probability), and its methods `closest_object`, `iou`, `is_on_top`,
`manathan_distance`. `dx, dy` are the pixel moves of the object since the previous frame, as in
OCAtari (0 for an object seen for the first time); `rgb` is the mean colour of its box.

The wrapper is a `gymnasium.Wrapper`: `step` returns gymnasium's `(obs, reward, terminated,
truncated, info)`. (OCAtari's own `step` returns truncated before terminated.) An OCAtari instance
may be wrapped too (it is stepped as usual, its return reordered); its RAM objects stay available
as `env.ram_objects`, e.g. to compare them with the detected ones.
"""

from __future__ import annotations

import time
from collections import Counter

import gymnasium as gym
import numpy as np

from spacemoc.detector import box_rgb
from spacemoc.tracking import Tracker

_NS_FIELDS = {"POSITION": ("x", "y"), "ORIENTATION": ("orientation",), "WIDTH": ("w",)}


def _ns_values(obj, meaning: tuple[str, ...]) -> list[int]:
    """An object's `ns_state` entries for OCAtari's `_ns_meaning` names (unknown values: 0)."""
    values = []
    for name in meaning:
        for attr in _NS_FIELDS[name]:
            v = getattr(obj, attr, None)
            values.append(0 if v is None else int(v))
    return values


class DetectedObject:
    """One object as the agent sees it; OCAtari `GameObject`-like, integer pixel box.

    Besides the attributes it has OCAtari's object methods: `closest_object(others)` ((index,
    object) of the nearest by Manhattan distance between centres, None for an empty list),
    `manathan_distance(other)` (OCAtari's spelling), `iou(other)`, `is_on_top(other)`, and
    `_nsrepr`/`_ns_meaning`/`_nslen` (its part of `ns_state`). It is truthy; the placeholder of an
    empty slot, `NoObject`, is falsy.
    """

    hud = False
    visible = True
    orientation = None
    ns_meaning: tuple[str, ...] = ("POSITION",)

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

    # OCAtari GameObject's relations between objects (same definitions, same return values).
    def is_on_top(self, other) -> bool:
        """True when this object's top-left corner lies inside the other's box."""
        return other.x <= self.x <= other.x + other.w and other.y <= self.y <= other.y + other.h

    def manathan_distance(self, other) -> float:
        """Manhattan distance between the centres (OCAtari's method name)."""
        (ax, ay), (bx, by) = self.center, other.center
        return abs(ax - bx) + abs(ay - by)

    manhattan_distance = manathan_distance

    def closest_object(self, others):
        """`(index, object)` of the object in `others` nearest to this one; None if empty."""
        others = list(others)
        if not others:
            return None
        i = min(range(len(others)), key=lambda k: self.manathan_distance(others[k]))
        return i, others[i]

    def iou(self, other) -> float:
        """Intersection over union of the boxes (1 for two placeholders, as in OCAtari)."""
        if self.category == "NoObject" and other.category == "NoObject":
            return 1
        iw = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        ih = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        inter = max(0, iw) * max(0, ih)
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union > 0 else 0

    def _is_equivalent(self, other) -> bool:
        return self.category == other.category and self.iou(other) > 0.8

    @property
    def _nsrepr(self) -> list[int]:
        return _ns_values(self, self.ns_meaning)

    @property
    def _ns_meaning(self) -> list[str]:
        return list(self.ns_meaning)

    @property
    def _nslen(self) -> int:
        return len(self._nsrepr)

    @property
    def properties(self) -> list[str]:
        """The public non-callable attributes (as OCAtari's `GameObject.properties`)."""
        skip = {"properties", "xy", "wh", "prev_xy", "h_coords", "xywh", "ns_meaning"}
        names = sorted({*vars(self), *(n for k in type(self).__mro__ for n in vars(k))})
        return [
            n
            for n in names
            if not n.startswith("_") and n not in skip and not callable(getattr(self, n))
        ]

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return (
            f"{self.category} #{self.id} at ({self.x}, {self.y}), {self.wh}, d=({self.dx}, "
            f"{self.dy}), p={self.score:.2f}"
        )


class NoObject(DetectedObject):
    """The placeholder of an empty slot, like OCAtari's `NoObject`: falsy, at (0, 0) with size
    (0, 0), black, equal to any other placeholder, zeros in `ns_state`."""

    def __init__(self, nslen: int = 2):
        super().__init__("NoObject", 0, 0, 0, 0, id=-1, score=0.0)
        self.nslen = nslen

    @property
    def _nsrepr(self) -> list[int]:
        return [0] * self.nslen

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other) -> bool:
        return getattr(other, "category", None) == "NoObject"

    def __hash__(self) -> int:
        return hash("NoObject")

    def __repr__(self) -> str:
        return "NaO"


def _duplicates(a, b, merge_px: float) -> bool:
    """Two detections of one object: centres within `merge_px` or half the smaller box shared."""
    (ax, ay), (bx, by) = a.center, b.center
    if ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 <= merge_px:
        return True
    iw = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    ih = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    smaller = min(a.w * a.h, b.w * b.h)
    return iw > 0 and ih > 0 and smaller > 0 and iw * ih >= 0.5 * smaller


class ObjectSlots:
    """OCAtari's fixed object slots filled from tracked objects.

    `layout` is `((class, n), ...)` in slot order (the game table's `slots`). Every frame
    `assign(objects, alive)` returns one object or a `NoObject` per slot:

    1. duplicates are dropped: of two objects of one class whose centres are within `merge_px`
       pixels or that share half the smaller box, the lower-scoring one (`merge_px=0` and the
       overlap rule off with `merge_overlap=False`);
    2. a class with more objects than slots keeps its best-scoring ones;
    3. an object keeps the slot it had (by track id); a new one takes the first free slot of its
       class. The slot of a track that is missed for a few frames (still `alive` in the tracker)
       stays reserved for it unless a new object of the class finds no other free slot.

    Objects of classes outside the layout (HUD classes of a `hud=True` detector) get no slot.
    """

    def __init__(
        self,
        layout,
        merge_px: float = 3.0,
        merge_overlap: bool = True,
        ns_meaning: dict[str, tuple[str, ...]] | None = None,
    ):
        self.layout = tuple((str(c), int(n)) for c, n in layout)
        if not self.layout:
            raise ValueError("an empty slot layout")
        if merge_px < 0:
            raise ValueError(f"merge_px must be >= 0, got {merge_px}")
        self.merge_px = float(merge_px)
        self.merge_overlap = bool(merge_overlap)
        self.ns_meaning = {c: tuple(m) for c, m in (ns_meaning or {}).items()}
        self.reset()

    def meaning(self, category: str) -> tuple[str, ...]:
        return self.ns_meaning.get(category, ("POSITION",))

    def placeholder(self, category: str) -> NoObject:
        """The empty slot of a class: as many zeros in `ns_state` as the class's entry."""
        return NoObject(nslen=sum(len(_NS_FIELDS[m]) for m in self.meaning(category)))

    def reset(self) -> None:
        self._held: dict[str, list[int | None]] = {c: [None] * n for c, n in self.layout}

    def _is_duplicate(self, a, b) -> bool:
        if self.merge_overlap:
            return _duplicates(a, b, self.merge_px)
        (ax, ay), (bx, by) = a.center, b.center
        return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 <= self.merge_px

    def assign(self, objects, alive=()) -> list[DetectedObject]:
        alive = set(alive)
        out: list[DetectedObject] = []
        for category, n in self.layout:
            ranked = sorted(
                (o for o in objects if o.category == category), key=lambda o: (-o.score, o.id)
            )
            kept: list[DetectedObject] = []
            for o in ranked:
                if len(kept) == n:
                    break
                if not any(self._is_duplicate(o, k) for k in kept):
                    kept.append(o)
            held = self._held[category]
            ids = {o.id for o in kept}
            slots: list[DetectedObject | None] = [None] * n
            new = []
            for o in kept:
                if o.id >= 0 and o.id in held:  # negative ids: objects without a track
                    slots[held.index(o.id)] = o
                else:
                    new.append(o)
            for o in new:
                free = [i for i in range(n) if slots[i] is None]
                # first a slot nobody holds (or whose track is gone), then a reserved one
                unheld = [i for i in free if held[i] is None or held[i] not in alive]
                i = (unheld or free)[0]
                slots[i] = o
            self._held[category] = [
                (slots[i].id if slots[i].id >= 0 else None)
                if slots[i] is not None
                else (held[i] if held[i] in alive and held[i] not in ids else None)
                for i in range(n)
            ]
            for o in slots:
                if o is not None:
                    o.ns_meaning = self.meaning(category)
                out.append(o if o is not None else self.placeholder(category))
        return out


def _is_ocatari(env) -> bool:
    return not isinstance(env, gym.Env) and hasattr(env, "_env") and hasattr(env, "objects")


def agent_tracker() -> Tracker:
    """The tracker an agent's env uses by default (measured on Pong's rule policy, docs/control.md):

    - ``max_distance=40``: Pong's paddle moves up to 23 pixels a frame; a tighter gate starts a
      new track each frame and leaves the old one coasting beside it;
    - ``label_window=1``: an object's label is its detection's; longer memories carried a label
      across two crossing objects (a ball passing a paddle took the paddle's label);
    - ``hold_frames=2``: an object the detector misses for up to 2 frames (the ball touching a
      paddle) is reported where it was heading."""
    return Tracker(max_distance=40.0, label_window=1, hold_frames=2)


def _fill_misses(tracks, capacity: dict[str, int]):
    """The tracks seen in this frame, and of the coasting ones (a tracker with `hold_frames`)
    those that fill a class's slots the detector left empty this frame, most recently seen
    first: a coasting track stands in for a missed object, not beside its own new track."""
    seen = [t for t in tracks if t.missed == 0]
    count = Counter(t.label for t in seen)
    for t in sorted((t for t in tracks if t.missed > 0), key=lambda t: t.missed):
        if count[t.label] < capacity.get(t.label, 0):
            seen.append(t)
            count[t.label] += 1
    return seen


def _track_and_fill(holder, frame, detections) -> None:
    """Track `detections` of `frame`; fill `holder`'s `tracked_objects` and `objects` (its slots).

    `holder` has `tracker`, `slots`, `use_slots` and `_last_xy`: a `DetectedObjects` or one env of a
    `DetectedObjectsVector`."""
    holder.frame = frame
    holder.detections = detections
    tracks = _fill_misses(holder.tracker.update(holder.detections), dict(holder.slots.layout))
    objects, last = [], {}
    for t in tracks:
        obj = DetectedObject(
            t.label,
            t.x,
            t.y,
            t.w,
            t.h,
            prev_xy=holder._last_xy.get(t.id),
            id=t.id,
            score=t.score,
        )
        obj.rgb = box_rgb(frame, *obj.xywh)  # the colour of the box the agent sees
        objects.append(obj)
        last[t.id] = obj.xy
    # An object missed for a frame keeps its last position as prev_xy when it returns;
    # positions of tracks the tracker forgot are dropped.
    alive = {t.id for t in holder.tracker.tracks} | {t.id for t in holder.tracker.lost}
    holder._last_xy = {k: v for k, v in {**holder._last_xy, **last}.items() if k in alive}
    holder.tracked_objects = objects
    holder.objects = holder.slots.assign(objects, alive) if holder.use_slots else objects


class DetectedObjects(gym.Wrapper):
    """OCAtari's object interface from detector + tracker, on an ALE gymnasium env or OCAtari.

    Args:
        env: a gymnasium ALE env (`gym.make("ALE/Pong-v5")`, any obs type) or an OCAtari env.
        detector: a `spacemoc.Detector` for the env's game.
        tracker: a `spacemoc.Tracker` (default `agent_tracker()`); reset at every episode start.
        slots: True (default): `objects` is OCAtari's fixed slot list for the game (`hud=False`
            layout, `NoObject` placeholders, duplicates resolved; see `ObjectSlots`). False:
            `objects` is the variable-length list of tracked objects (`tracked_objects`).
        merge_px: same-class objects whose centres are this close (pixels) are one object.

    Attributes: `objects`, `ns_state`, `ns_meaning`, `max_objects_per_cat`, `nb_actions`,
    `get_action_meanings()` as OCAtari's; `tracked_objects` (every tracked object matched in this
    frame, no placeholders, duplicates kept), `detections` (the detector's raw output), `frame`
    (the raw RGB frame).
    """

    hud = False

    def __init__(self, env, detector, tracker: Tracker | None = None, *, slots=True, merge_px=3.0):
        self.ocatari = env if _is_ocatari(env) else None
        base = env._env if self.ocatari is not None else env
        if not isinstance(base, gym.Env):
            raise ValueError(
                f"expected a gymnasium env or an OCAtari env, got {type(env).__name__}"
            )
        super().__init__(base)
        if not hasattr(base.unwrapped, "ale"):
            raise ValueError(f"{base.unwrapped} is not an ALE env: the detector needs Atari frames")
        from spacemoc.games import get_game

        game_row = get_game(detector.game)
        if not game_row.slots:
            raise ValueError(f"the game table has no object slots for {game_row.name!r}")
        self.detector = detector
        self.tracker = tracker if tracker is not None else agent_tracker()
        self.slots = ObjectSlots(game_row.slots, merge_px=merge_px, ns_meaning=game_row.ns_meaning)
        self.use_slots = bool(slots)
        self.objects: list[DetectedObject] = []
        self.tracked_objects: list[DetectedObject] = []
        self.frame: np.ndarray | None = None  # the last raw RGB frame (210,160,3)
        self.detections = []  # the detector's output on it (before tracking)
        self._last_xy: dict[int, tuple[int, int]] = {}

    @property
    def ram_objects(self):
        """OCAtari's RAM-extracted objects (only when an OCAtari env was wrapped)."""
        if self.ocatari is None:
            raise AttributeError("ram_objects needs a wrapped OCAtari env")
        return self.ocatari.objects

    # OCAtari's env interface, as far as it applies to detected objects.
    @property
    def ns_state(self) -> list[int]:
        """OCAtari's neurosymbolic state: every slot's entry (x, y for most classes) in slot
        order, zeros for an empty slot; fixed length (needs `slots=True`)."""
        if not self.use_slots:
            raise AttributeError("ns_state needs the slot layout (slots=True)")
        return [v for o in self.objects for v in o._nsrepr]

    @property
    def ns_meaning(self) -> list[str]:
        """What each slot's `ns_state` entry holds, as OCAtari's `ns_meaning`."""
        return [
            f"{c} ({list(self.slots.meaning(c))})" for c, n in self.slots.layout for _ in range(n)
        ]

    @property
    def max_objects_per_cat(self) -> dict[str, int]:
        return dict(self.slots.layout)

    @property
    def nb_actions(self) -> int:
        return int(self.env.action_space.n)

    def get_action_meanings(self) -> list[str]:
        return self.env.unwrapped.get_action_meanings()

    def getScreenRGB(self) -> np.ndarray:  # noqa: N802 (OCAtari's name)
        return self.env.unwrapped.ale.getScreenRGB()

    def get_ram(self) -> np.ndarray:
        return self.env.unwrapped.ale.getRAM()

    def reset(self, **kwargs):
        if self.ocatari is not None:  # it resets its env and its RAM objects
            obs, info = self.ocatari.reset(**kwargs)
        else:
            obs, info = self.env.reset(**kwargs)
        self.tracker.reset()
        self.slots.reset()
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
        self._update(frame, self.detector.detect(frame))

    def _update(self, frame, detections) -> None:
        _track_and_fill(self, frame, detections)


def make_env(
    game: str,
    detector,
    tracker: Tracker | None = None,
    *,
    slots: bool = True,
    merge_px: float = 3.0,
    **gym_kwargs,
) -> DetectedObjects:
    """`gym.make` of the game's ALE env (`ALE/<Game>-v5`) wrapped with `DetectedObjects`."""
    import ale_py

    from spacemoc.games import get_game

    gym.register_envs(ale_py)
    game_row = get_game(game)
    if detector.game != game_row.name:
        raise ValueError(f"the detector is for {detector.game!r}, not {game_row.name!r}")
    return DetectedObjects(
        gym.make(game_row.env_id, **gym_kwargs), detector, tracker, slots=slots, merge_px=merge_px
    )


class _EnvObjects:
    """The object state of one env of a `DetectedObjectsVector` (as `DetectedObjects` keeps it)."""

    def __init__(self, tracker: Tracker, slots: ObjectSlots, use_slots: bool):
        self.tracker, self.slots, self.use_slots = tracker, slots, use_slots
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self.slots.reset()
        self._last_xy: dict[int, tuple[int, int]] = {}
        self.objects, self.tracked_objects, self.detections, self.frame = [], [], [], None

    @property
    def ns_state(self) -> list[int]:
        return [v for o in self.objects for v in o._nsrepr]


class DetectedObjectsVector(gym.vector.VectorWrapper):
    """`DetectedObjects` for a gymnasium vector env of ALE envs: one `detect_batch` call per step
    for all envs (the detector's batching), one tracker and slot list per env.

    `objects[i]`, `tracked_objects[i]`, `detections[i]` are env i's; `ns_state` is an (envs,
    length) int array. The envs' frames are read from their ALE screens (a `SyncVectorEnv`), or
    from the observations when those are raw RGB frames (`obs_type="rgb"`, e.g. an async vector
    env). Trackers are reset with their env: at `reset()` and when the vector env autoresets it
    (next-step or same-step mode).
    """

    def __init__(self, env, detector, tracker_factory=None, *, slots=True, merge_px=3.0):
        super().__init__(env)
        from spacemoc.games import get_game

        game_row = get_game(detector.game)
        self.detector = detector
        self.use_slots = bool(slots)
        tracker_factory = tracker_factory or agent_tracker
        self.envs_objects = [
            _EnvObjects(
                tracker_factory(),
                ObjectSlots(game_row.slots, merge_px=merge_px, ns_meaning=game_row.ns_meaning),
                self.use_slots,
            )
            for _ in range(self.num_envs)
        ]
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        self._autoreset = gym.vector.AutoresetMode(mode)
        self._done = np.zeros(self.num_envs, dtype=bool)
        self.detect_seconds = 0.0  # wall time spent in the detector since construction

    objects = property(lambda self: [e.objects for e in self.envs_objects])
    tracked_objects = property(lambda self: [e.tracked_objects for e in self.envs_objects])
    detections = property(lambda self: [e.detections for e in self.envs_objects])

    @property
    def ns_state(self) -> np.ndarray:
        if not self.use_slots:
            raise AttributeError("ns_state needs the slot layout (slots=True)")
        return np.array([e.ns_state for e in self.envs_objects], dtype=np.int64)

    def _frames(self, obs) -> np.ndarray:
        subenvs = getattr(self.env, "envs", None)
        if subenvs is not None:
            return np.stack([e.unwrapped.ale.getScreenRGB() for e in subenvs])
        obs = np.asarray(obs)
        if obs.shape[1:] != (210, 160, 3):
            raise ValueError(
                "the detector needs raw frames: use a SyncVectorEnv or RGB observations, got "
                f"observations of shape {obs.shape[1:]}"
            )
        return obs

    def _observe(self, obs) -> None:
        frames = self._frames(obs)
        began = time.perf_counter()
        detections = self.detector.detect_batch(frames)
        self.detect_seconds += time.perf_counter() - began
        for e, frame, dets in zip(self.envs_objects, frames, detections, strict=True):
            _track_and_fill(e, frame, dets)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for e in self.envs_objects:
            e.reset()
        self._done[:] = False
        self._observe(obs)
        return obs, info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        done = np.logical_or(terminated, truncated)
        # next-step mode resets an env one step after it ended; same-step mode at once
        restarted = self._done if self._autoreset == gym.vector.AutoresetMode.NEXT_STEP else done
        for i in np.flatnonzero(restarted):
            self.envs_objects[i].reset()
        self._done = done
        self._observe(obs)
        return obs, reward, terminated, truncated, info


def make_vector_env(
    game: str,
    detector,
    num_envs: int,
    tracker_factory=None,
    *,
    slots: bool = True,
    merge_px: float = 3.0,
    **gym_kwargs,
) -> DetectedObjectsVector:
    """`num_envs` of the game's ALE env in a `SyncVectorEnv`, wrapped with `DetectedObjectsVector`
    (one batched detection call per step)."""
    import ale_py

    from spacemoc.games import get_game

    gym.register_envs(ale_py)
    game_row = get_game(game)
    if detector.game != game_row.name:
        raise ValueError(f"the detector is for {detector.game!r}, not {game_row.name!r}")
    vec = gym.vector.SyncVectorEnv(
        [lambda: gym.make(game_row.env_id, **gym_kwargs) for _ in range(num_envs)]
    )
    return DetectedObjectsVector(vec, detector, tracker_factory, slots=slots, merge_px=merge_px)
