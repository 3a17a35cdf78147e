"""Simple object-based policies and the play loop that tells whether an agent loses anything by
reading objects from the detector instead of from RAM (OCAtari).

A policy maps the objects of the current frame (OCAtari-like: ``category`` and ``center``) and the
env's action meanings to an action. ``play`` runs one policy for a fixed number of seeded steps
with objects from one source:

* ``ram``: OCAtari's RAM objects;
* ``detector``: the learned detector's (``spacemoc.envs.DetectedObjects`` around the same OCAtari
  env, so the RAM objects of the same frames are at hand to count the detector's misses);
* ``random``: uniform random actions (the floor).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

SOURCES = ("ram", "detector", "random")


def _first(objects, category: str):
    return next((o for o in objects if o and o.category == category), None)


def _action(meanings: Sequence[str], name: str) -> int:
    return meanings.index(name) if name in meanings else meanings.index("NOOP")


def pong_policy(objects, meanings: Sequence[str]) -> int:
    """Move the right paddle (Player) towards the ball's height; stay when within 4 pixels or
    when either is not seen. In Pong RIGHT moves the paddle up and LEFT down."""
    player, ball = _first(objects, "Player"), _first(objects, "Ball")
    if player is None or ball is None:
        return _action(meanings, "NOOP")
    dy = ball.center[1] - player.center[1]
    if dy < -4:
        return _action(meanings, "RIGHT")
    if dy > 4:
        return _action(meanings, "LEFT")
    return _action(meanings, "NOOP")


BOXING_REACH = 28  # pixels between the boxers' centres from which a punch can land


def boxing_policy(objects, meanings: Sequence[str]) -> int:
    """Approach the enemy to punching distance (level with it, ``BOXING_REACH`` pixels apart) and
    punch; stand still when either boxer is not seen."""
    player, enemy = _first(objects, "Player"), _first(objects, "Enemy")
    if player is None or enemy is None:
        return _action(meanings, "NOOP")
    dx = enemy.center[0] - player.center[0]
    dy = enemy.center[1] - player.center[1]
    if abs(dy) < 6 and abs(dx) <= BOXING_REACH + 4:
        return _action(meanings, "FIRE")
    vertical = "UP" if dy < -3 else "DOWN" if dy > 3 else ""
    horizontal = "RIGHT" if dx > BOXING_REACH else "LEFT" if dx < -BOXING_REACH else ""
    return _action(meanings, (vertical + horizontal) or "FIRE")


# The game table names each game's policy (Game.control_policy).
POLICIES: dict[str, Callable] = {
    "paddle_to_ball": pong_policy,
    "approach_and_punch": boxing_policy,
}


def policy_for(game: str) -> Callable:
    """The control policy of ``game`` (a name as the game table takes it); a clear error for a
    game without one."""
    from spacemoc.games import GAMES, get_game

    row = get_game(game)
    if not row.control_policy:
        with_one = ", ".join(name for name, g in GAMES.items() if g.control_policy)
        raise ValueError(f"no control policy for {row.name!r}; games with one: {with_one}")
    return POLICIES[row.control_policy]


def play(env, policy: Callable | None, steps: int, seed: int, source: str) -> dict:
    """Play ``steps`` steps from ``env.reset(seed=seed)`` (a new episode after each end) and
    return the points won (rewards > 0), lost (rewards < 0), the return (their sum), episodes
    begun and, for the detector, the share of frames where RAM shows a category the detector
    does not (``missed``) and where it reports more objects of a category than RAM (``extra``).

    ``env``: an OCAtari env (``ram``, ``random``) or ``DetectedObjects`` around one
    (``detector``). ``policy``: None for ``random`` (seeded by ``seed``).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown object source {source!r}; valid: {', '.join(SOURCES)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    rng = np.random.default_rng(seed)
    meanings = list(env.get_action_meanings())
    env.reset(seed=seed)
    won = lost = 0
    total, episodes, missed, extra = 0.0, 1, 0, 0
    for _ in range(steps):
        if source == "random":
            action = int(rng.integers(len(meanings)))
        else:
            action = policy(env.objects, meanings)
        reward, over = _step(env, action, source)
        won += reward > 0
        lost += reward < 0
        total += reward
        if source == "detector":
            m, e = _disagreement(env.ram_objects, env.tracked_objects)
            missed += m
            extra += e
        if over:
            env.reset()
            episodes += 1
    out = {"won": int(won), "lost": int(lost), "return": float(total), "episodes": episodes}
    if source == "detector":
        out.update(missed=missed / steps, extra=extra / steps)
    return out


def _step(env, action: int, source: str) -> tuple[float, bool]:
    if source == "detector":  # the wrapper returns gymnasium's order
        _, reward, terminated, truncated, _ = env.step(action)
    else:  # OCAtari returns truncated before terminated
        _, reward, truncated, terminated, _ = env.step(action)
    return float(reward), bool(terminated or truncated)


def _disagreement(ram_objects, detected) -> tuple[bool, bool]:
    """(some category RAM shows is not detected, some category is detected more often than RAM
    shows it) for one frame."""
    ram, seen = {}, {}
    for o in ram_objects:
        if o and not getattr(o, "hud", False):
            ram[o.category] = ram.get(o.category, 0) + 1
    for o in detected:
        seen[o.category] = seen.get(o.category, 0) + 1
    missed = any(seen.get(c, 0) == 0 for c in ram)
    extra = any(n > ram.get(c, 0) for c, n in seen.items())
    return missed, extra
