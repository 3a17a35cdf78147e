"""N Atari envs stepped together, their objects read by the learned detector in one batched call
per step (gymnasium's vector API): how many env steps per second an agent gets.

    python examples/vector_envs_with_detector.py --pretrained pong --envs 8 --steps 200
    python examples/vector_envs_with_detector.py --run results/pong/space_moc/seed0 --envs 16
    python examples/vector_envs_with_detector.py --run pong_student --envs 16   # spacemoc distill

Prints env steps per second (all envs together, detection included), the detector's time per
frame and its share of the whole.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder or detector folder")
    source.add_argument("--pretrained", metavar="GAME", help="a shipped detector, e.g. pong")
    parser.add_argument("--envs", type=int, default=8, help="envs stepped together (8)")
    parser.add_argument("--steps", type=int, default=200, help="vector steps (200)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from spacemoc import Detector
    from spacemoc.devices import set_threads
    from spacemoc.envs import make_vector_env

    set_threads(args.threads)
    if args.pretrained:
        detector = Detector.pretrained(args.pretrained)
    else:
        detector = Detector.load(args.run)
    env = make_vector_env(detector.game, detector, args.envs)
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    before = env.detect_seconds  # the reset's detection (first-call warm-up) is not a step's
    began = time.perf_counter()
    objects_seen = []
    for _ in range(args.steps):
        env.step(env.action_space.sample())
        objects_seen.append(np.mean([sum(bool(o) for o in objs) for objs in env.objects]))
    elapsed = time.perf_counter() - began
    detect_s = env.detect_seconds - before
    env.close()
    frames = args.steps * args.envs
    print(
        f"{args.envs} envs x {args.steps} steps with the {detector.game} detector: "
        f"{frames / elapsed:.0f} env steps/s; detection {1000 * detect_s / frames:.2f} ms/frame "
        f"({100 * detect_s / elapsed:.0f} % of the time); {np.mean(objects_seen):.2f} objects "
        "per env and step"
    )


if __name__ == "__main__":
    main()
