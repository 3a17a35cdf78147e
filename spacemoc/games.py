"""The game table: one row per supported Atari game.

Label lists are OCAtari 2.1.0's class names (the version is pinned in pyproject.toml because the
lists, and so the label indices stored in datasets and classifiers, depend on it). Index 0 is
``no_label``, then the sorted class names of OCAtari's ``MAX_NB_OBJECTS_HUD`` table, as in the
reference, so label indices stay compatible with its classifiers. ``relevant`` are the moving game
objects (OCAtari's non-HUD classes). Seaquest's ``NoObject`` placeholder label of the reference is
dropped (spec defect 15): placeholders are never ground truth here.

``slots`` is OCAtari's object-slot layout with ``hud=False`` (its ``MAX_NB_OBJECTS``: class and
maximum number per class, in the order of ``env.objects``); ``spacemoc.envs`` fills the same slots
from the detector. ``ns_meaning`` names the classes whose ``ns_state`` entry is not the position
(OCAtari's ``_ns_meaning`` of that class); every other class contributes ``POSITION`` (x, y).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RELEVANT_AREA_MARGIN = 0.02
_WIDE = (-0.05, -0.05, 1.05, 1.05)  # whole frame


@dataclass(frozen=True)
class Game:
    name: str  # lower-case key used in paths and configs, e.g. "pong"
    env_id: str  # gymnasium id, e.g. "ALE/Pong-v5" (frameskip 4, sticky actions 0.25)
    labels: tuple[str, ...]  # index -> OCAtari class name; 0 is "no_label"
    relevant: tuple[str, ...]  # moving game objects (non-HUD classes)
    # (min_x, min_y, max_x, max_y) in normalised [0,1] frame coordinates, before the margin.
    relevant_area: tuple[float, float, float, float]
    # Extra lower bound on a box's y_max (Tennis: keeps the scores out).
    min_y_max: float | None = None
    space_overrides: dict[str, Any] = field(default_factory=dict)  # SpaceConfig fields
    moc_overrides: dict[str, Any] = field(default_factory=dict)  # MocConfig fields
    # OCAtari's slot layout (hud=False): (class, maximum number), in env.objects order.
    slots: tuple[tuple[str, int], ...] = ()
    # class -> its ns_state fields where they are not ("POSITION",), as OCAtari's _ns_meaning
    ns_meaning: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Background colours the motion hints' colour score counts as this many pixels (RGB -> count),
    # so that objects of a colour common in the background still score (spec §1.6.1).
    motion_colour_counts: dict[tuple[int, int, int], int] = field(default_factory=dict)
    # How many looks the playfield has, found per "frame" (Tennis: the court's sidelines swap
    # colours when the players change ends) or per "pixel" (Seaquest: the animated sea surface);
    # a pixel counts as changed only where it differs from every look (spacemoc.data.background).
    background_looks: int = 1
    background_looks_per: str = "frame"
    # The rule policy that plays this game (a key of spacemoc.control.POLICIES); "" for none.
    control_policy: str = ""
    # Labels the reference's classifiers index that this table drops: (index, name) inserted.
    reference_extra_labels: tuple[tuple[int, str], ...] = ()

    @property
    def reference_labels(self) -> tuple[str, ...]:
        """The label list the reference's classifiers index (spec §1.9)."""
        labels = list(self.labels)
        for index, name in self.reference_extra_labels:
            labels.insert(index, name)
        return tuple(labels)

    @property
    def max_objects(self) -> dict[str, int]:
        """OCAtari's ``MAX_NB_OBJECTS`` (hud=False): class -> number of slots, in slot order."""
        return dict(self.slots)

    @property
    def relevant_indices(self) -> tuple[int, ...]:
        return tuple(self.labels.index(name) for name in self.relevant)

    def in_relevant_area(self, x_min, y_min, x_max, y_max, margin=RELEVANT_AREA_MARGIN):
        """Boolean mask: which boxes (normalised coordinates) lie inside the relevant area."""
        lo_x, lo_y, hi_x, hi_y = self.relevant_area
        keep = (
            (y_min > lo_y - margin)
            & (y_max < hi_y + margin)
            & (x_min > lo_x - margin)
            & (x_max < hi_x + margin)
        )
        if self.min_y_max is not None:
            keep = keep & (y_max > self.min_y_max)
        return keep


def _game(name, env_name, moving_classes, hud_only_classes, area, **kw) -> Game:
    """A row from OCAtari's class names: the moving game objects and the HUD-only classes."""
    return Game(
        name=name,
        env_id=f"ALE/{env_name}-v5",
        labels=("no_label", *sorted([*moving_classes, *hud_only_classes])),
        relevant=tuple(sorted(moving_classes)),
        relevant_area=area,
        **kw,
    )


_BIG_OBJECTS = {"z_scale_mean_start_value": -1.0, "z_scale_mean_end_value": -1.0}

GAMES: dict[str, Game] = {
    g.name: g
    for g in [
        _game(
            "pong",
            "Pong",
            ["Ball", "Enemy", "Player"],
            ["EnemyScore", "PlayerScore"],
            (-0.05, 0.16190, 1.05, 0.92857),
            # 15x the reference's object-continuity weight: pulls a paddle half hidden behind
            # the top or bottom wall towards the whole paddle's encoding (docs/train.md)
            moc_overrides={"motion_underestimating": 1.5, "area_object_weight": 150.0},
            slots=(("Player", 1), ("Ball", 1), ("Enemy", 1)),
            motion_colour_counts={(236, 236, 236): 8},  # white ball and walls
            control_policy="paddle_to_ball",
        ),
        _game(
            "boxing",
            "Boxing",
            ["Enemy", "Player"],
            ["Clock", "EnemyScore", "PlayerScore"],
            (0.21875, 0.18571, 0.79375, 0.82381),
            space_overrides=_BIG_OBJECTS,
            slots=(("Player", 1), ("Enemy", 1)),
            control_policy="approach_and_punch",
        ),
        _game(
            "skiing",
            "Skiing",
            ["Flag", "Mogul", "Player", "Tree"],
            ["Clock", "Score"],
            (-0.05, 0.13333, 1.05, 0.86190),
            space_overrides=_BIG_OBJECTS,
            slots=(("Player", 1), ("Tree", 4), ("Mogul", 3), ("Flag", 4)),
            ns_meaning={"Player": ("POSITION", "ORIENTATION")},
        ),
        _game(
            "asterix",
            "Asterix",
            ["Consumable", "Enemy", "Player", "Reward"],
            ["Lives", "Score"],
            (-0.05, -0.05, 1.05, 0.71429),
            space_overrides=_BIG_OBJECTS,
            slots=(("Player", 1), ("Reward", 8), ("Enemy", 8), ("Consumable", 8)),
        ),
        _game(
            "freeway",
            "Freeway",
            ["Car", "Chicken"],
            ["Score"],
            (-0.05, 0.08, 1.05, 1.05),
            space_overrides=_BIG_OBJECTS,
            slots=(("Chicken", 2), ("Car", 10)),
        ),
        _game(
            "kangaroo",
            "Kangaroo",
            [
                "Bell",
                "Child",
                "FallingCoconut",
                "Fruit",
                "Ladder",
                "Monkey",
                "Platform",
                "Player",
                "ThrownCoconut",
            ],
            ["Lives", "Score", "Time"],
            (-0.05, -0.05, 1.05, 0.91),
            space_overrides=_BIG_OBJECTS,
            motion_colour_counts={(162, 98, 33): 8},  # brown coconuts, walls and platforms
            slots=(
                ("Player", 1),
                ("Child", 1),
                ("Monkey", 4),
                ("FallingCoconut", 1),
                ("ThrownCoconut", 3),
                ("Fruit", 3),
                ("Bell", 1),
                ("Ladder", 6),
                ("Platform", 20),
            ),
        ),
        _game(
            "seaquest",
            "Seaquest",
            [
                "CollectedDiver",
                "Diver",
                "EnemyMissile",
                "OxygenBar",
                "Player",
                "PlayerMissile",
                "Shark",
                "Submarine",
                "SurfaceSubmarine",
            ],
            ["Lives", "OxygenBarDepleted", "PlayerScore"],
            (-0.05, 0.21905, 1.10, 0.74),
            space_overrides=_BIG_OBJECTS,
            slots=(
                ("Player", 1),
                ("Shark", 12),
                ("Submarine", 12),
                ("Diver", 4),
                ("EnemyMissile", 4),
                ("SurfaceSubmarine", 1),
                ("PlayerMissile", 1),
                ("OxygenBar", 1),
                ("CollectedDiver", 6),
            ),
            ns_meaning={"OxygenBar": ("WIDTH",)},
            background_looks=3,  # the animated sea surface: several colours per pixel
            background_looks_per="pixel",
            # the reference's classifiers keep a placeholder label (spec defect 15)
            reference_extra_labels=((1, "NoObject"),),
        ),
        _game(
            "bowling",
            "Bowling",
            ["Ball", "Pin", "Player"],
            ["Player2Round", "PlayerRound", "PlayerScore"],
            (0.0875, 0.50952, 0.94375, 0.81429),
            space_overrides={
                "z_scale_mean_start_value": -0.5,
                "z_scale_mean_end_value": -2.0,
                "fix_alpha_steps": 15000,
                "fix_alpha_value": 0.01,
            },
            slots=(("Player", 1), ("Ball", 1), ("Pin", 10)),
        ),
        _game(
            "tennis",
            "Tennis",
            ["Ball", "BallShadow", "Enemy", "Player"],
            ["EnemyScore", "PlayerScore"],
            _WIDE,
            min_y_max=0.1,
            slots=(("Player", 1), ("Enemy", 1), ("Ball", 1), ("BallShadow", 1)),
            background_looks=2,  # the two ends of the court
        ),
        # The reference has no relevant area for the next four games: measured from the extents
        # of the relevant ground-truth boxes over 1024 random-play frames (docs/data.md).
        _game(
            "spaceinvaders",
            "SpaceInvaders",
            ["Alien", "Bullet", "Player", "Satellite", "Shield"],
            ["Lives", "P1Score", "P2Score"],
            (0.05, 0.05, 1.05, 1.05),
            slots=(("Player", 1), ("Shield", 3), ("Bullet", 3), ("Satellite", 1), ("Alien", 36)),
        ),
        _game(
            "mspacman",
            "MsPacman",
            ["Fruit", "Ghost", "Pill", "Player", "PowerPill"],
            ["Life", "Score"],
            (0.03, -0.05, 0.97, 0.81),
            slots=(("Player", 1), ("Ghost", 4), ("Fruit", 1), ("PowerPill", 4), ("Pill", 252)),
        ),
        _game(
            "carnival",
            "Carnival",
            [
                "Duck",
                "ExtraBullets",
                "FlyingDuck",
                "Owl",
                "Player",
                "PlayerMissile",
                "Rabbit",
                "Wheel",
            ],
            ["AmmoBar", "BonusSign", "BonusValue", "PlayerScore"],
            (-0.05, 0.07, 1.05, 0.95),
            slots=(
                ("Player", 1),
                ("PlayerMissile", 1),
                ("Rabbit", 6),
                ("Duck", 5),
                ("ExtraBullets", 4),
                ("Owl", 3),
                ("Wheel", 1),
                ("FlyingDuck", 6),
            ),
        ),
        _game(
            "riverraid",
            "Riverraid",
            [
                "Bridge",
                "FuelDepot",
                "Helicopter",
                "House",
                "Jet",
                "Player",
                "PlayerMissile",
                "Tanker",
            ],
            ["Lives", "PlayerScore"],
            (0.04, -0.05, 1.05, 0.78),
            slots=(
                ("Player", 1),
                ("PlayerMissile", 1),
                ("FuelDepot", 4),
                ("Tanker", 4),
                ("Helicopter", 4),
                ("House", 4),
                ("Jet", 4),
                ("Bridge", 1),
            ),
            # The reference's code 3497752 is the river bank green (53, 95, 24) in base 256 with
            # the channels reversed; in its effective base 255 it matched no colour at all.
            motion_colour_counts={(53, 95, 24): 20000},
        ),
    ]
}

SPLITS = ("train", "validation", "test")
# tracking: long consecutive sequences for judging trackers; agent: frames the game's control
# policy visits (spacemoc.control), which the classifier also learns from.
DATA_SPLITS = (*SPLITS, "tracking", "agent")


def game_key(name: str) -> str:
    """The game table's key for a name as users write it (``Pong``, ``ALE/Pong-v5``, ...)."""
    return name.lower().replace("ale/", "").replace("-v5", "").replace("_", "")


def get_game(name: str) -> Game:
    """Look a game up by its lower-case name; unknown names raise one clear error."""
    key = game_key(name)
    if key not in GAMES:
        raise ValueError(f"unknown game {name!r}; known games: {', '.join(sorted(GAMES))}")
    return GAMES[key]


def check_split(split: str, allowed=SPLITS) -> str:
    if split not in allowed:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(allowed)}")
    return split
