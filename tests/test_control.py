"""The control stage: the simple policies, the play loop with RAM, detector and random objects,
control.csv and its command."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from spacemoc.control import boxing_policy, play, pong_policy
from spacemoc.envs import DetectedObject

PONG_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
BOXING_ACTIONS = [
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT",
    "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
]  # fmt: skip


def obj(category, x, y, w=4, h=4):
    return DetectedObject(category, x, y, w, h)


def test_pong_policy_moves_the_paddle_to_the_ball():
    player = obj("Player", 140, 100, 4, 16)  # centre y 108
    assert PONG_ACTIONS[pong_policy([player, obj("Ball", 80, 60)], PONG_ACTIONS)] == "RIGHT"
    assert PONG_ACTIONS[pong_policy([player, obj("Ball", 80, 150)], PONG_ACTIONS)] == "LEFT"
    assert PONG_ACTIONS[pong_policy([player, obj("Ball", 80, 106)], PONG_ACTIONS)] == "NOOP"
    assert PONG_ACTIONS[pong_policy([player], PONG_ACTIONS)] == "NOOP"  # no ball seen


def test_boxing_policy_approaches_and_punches():
    player = obj("Player", 40, 100, 10, 20)
    assert (
        BOXING_ACTIONS[boxing_policy([player, obj("Enemy", 68, 100, 10, 20)], BOXING_ACTIONS)]
        == "FIRE"
    )
    far_right_above = [player, obj("Enemy", 120, 50, 10, 20)]
    assert BOXING_ACTIONS[boxing_policy(far_right_above, BOXING_ACTIONS)] == "UPRIGHT"
    far_left = [player, obj("Enemy", 0, 100, 10, 20)]
    assert BOXING_ACTIONS[boxing_policy(far_left, BOXING_ACTIONS)] == "LEFT"


def test_play_scores_the_policy_with_ram_and_detector_objects():
    from spacemoc import Detector
    from spacemoc.data.env import make_env
    from spacemoc.envs import DetectedObjects
    from spacemoc.games import get_game

    ram = play(make_env(get_game("pong")), pong_policy, 60, seed=0, source="ram")
    assert set(ram) == {"won", "lost", "return", "episodes"}
    assert ram["return"] == ram["won"] - ram["lost"]
    random = play(make_env(get_game("pong")), None, 60, seed=0, source="random")
    assert random == play(make_env(get_game("pong")), None, 60, seed=0, source="random")
    env = DetectedObjects(make_env(get_game("pong")), Detector.pretrained("pong", device="cpu"))
    detected = play(env, pong_policy, 60, seed=0, source="detector")
    assert 0 <= detected["missed"] <= 1 and 0 <= detected["extra"] <= 1
    with pytest.raises(ValueError, match="steps must be at least 1"):
        play(env, pong_policy, 0, seed=0, source="detector")


def test_control_command_writes_rows_per_source_and_seed_with_mean_and_std(tmp_path):
    out = tmp_path / "control.csv"
    cmd = [sys.executable, "-m", "spacemoc", "control", "--game", "pong", "--pretrained",
           "pong", "--out", str(out), "--steps", "20", "--seeds", "0", "1", "--arm",
           "space_moc"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [(r["model"], r["seed"]) for r in rows]
    for model in ("ram", "random", "space_moc"):
        assert [s for m, s in keys if m == model] == ["0", "1", "mean", "std"]
    (mean,) = [r for r in rows if (r["model"], r["seed"]) == ("space_moc", "mean")]
    assert mean["missed"] != "" and mean["steps"] == "20"


def test_control_refuses_a_game_without_a_policy(tmp_path):
    from spacemoc.stages.control import control

    with pytest.raises(ValueError, match="no control policy for 'seaquest'"):
        control("seaquest", tmp_path / "c.csv", {}, steps=10, seeds=[0])
