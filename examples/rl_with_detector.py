"""An object-centric Pong agent that reads `env.objects`, from OCAtari's RAM extraction or from
the learned detector: switching is one line (see `make`).

    python examples/rl_with_detector.py --ram                        # OCAtari RAM objects
    python examples/rl_with_detector.py --run results/pong/space_moc/seed0   # detector + tracker
    python examples/rl_with_detector.py --run results/pong/space_moc/seed0 --compare   # both

The agent is a hand-written policy (follow the ball with the paddle), standing in for a trained
SCoBots-style agent: what matters here is the interface it reads, which is the same for both
sources: OCAtari's fixed object slots (Pong: Player, Ball, Enemy; an empty slot is a falsy
`NoObject`) with category, x, y, w, h, center, dx, dy of each object.
"""

from __future__ import annotations

import argparse

NOOP, UP, DOWN = 0, 2, 3  # Pong: RIGHT moves the paddle up, LEFT down


def make(args):
    """The env an agent uses; the detector replaces RAM extraction by changing one line."""
    if args.ram:
        from ocatari.core import OCAtari

        return OCAtari(
            "ALE/Pong-v5", mode="ram", hud=False, obs_mode="ori", create_buffer_stacks=[]
        )
    from spacemoc import Detector
    from spacemoc.envs import make_env

    return make_env("pong", Detector.load(args.run, trust=args.trust))


def policy(objects) -> int:
    """Move the player's paddle towards the ball, aiming where the ball is going."""
    player, ball = objects[0], objects[1]  # OCAtari's Pong slots: Player, Ball, Enemy
    if not player or not ball:  # an empty slot (NoObject) is falsy
        return NOOP
    target = ball.center[1] + 2 * ball.dy  # a little ahead of the ball
    if target < player.center[1] - 4:
        return UP
    if target > player.center[1] + 4:
        return DOWN
    return NOOP


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ram", action="store_true", help="OCAtari RAM objects (no detector)")
    p.add_argument("--run", help="detector: run folder or reference <game>/ folder")
    p.add_argument("--trust", action="store_true", help="allow a pickled reference classifier")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", action="store_true", help="print RAM and detected objects")
    args = p.parse_args(argv)
    if not args.ram and not args.run:
        p.error("give --ram or --run")

    if args.compare:  # OCAtari wrapped by the detector: both object lists every step
        from ocatari.core import OCAtari

        from spacemoc import Detector
        from spacemoc.envs import DetectedObjects

        ocatari = OCAtari(
            "ALE/Pong-v5", mode="ram", hud=False, obs_mode="ori", create_buffer_stacks=[]
        )
        env = DetectedObjects(ocatari, Detector.load(args.run, trust=args.trust))
    else:
        env = make(args)

    env.reset(seed=args.seed)
    total, episodes = 0.0, 0
    for step in range(args.steps):
        # OCAtari returns (obs, reward, truncated, terminated, info), gymnasium (..., terminated,
        # truncated, info): an agent that only asks "is the episode over" reads both alike.
        _, reward, done_a, done_b, _ = env.step(policy(env.objects))
        total += reward
        if args.compare and step % 50 == 0:
            print(f"step {step}")
            print("  RAM:     ", [f"{o.category}@{o.xy}" for o in env.ram_objects])
            print("  detected:", [f"{o.category}@{o.xy}" for o in env.objects])
        if done_a or done_b:
            episodes += 1
            env.reset()
    print(f"{args.steps} steps, {episodes} episodes finished, total reward {total:+.0f}")


if __name__ == "__main__":
    main()
