"""The gymnasium wrapper: OCAtari-like `.objects` from detector + tracker on a real ALE env."""

from pathlib import Path

import numpy as np
import pytest
import torch
from test_detector import FIXTURE, ArgmaxClassifier, FakeModel, needs_fixture

from spacemoc.detector import Detector, box_rgb
from spacemoc.envs import DetectedObject, DetectedObjects, make_env
from spacemoc.tracking import Tracker


class MovingModel(FakeModel):
    """Two objects; the second moves 2 px right per call (detector input ignored)."""

    def __init__(self):
        super().__init__(prob=(0.9, 0.8))
        self.calls = 0

    def infer(self, images, present_only=False, threshold=0.5):
        out = super().infer(images, present_only, threshold)
        where = out["z_where"].clone()
        where[:, 1, 2] = -0.5 + 0.025 * (self.calls % 20)  # 0.025 * 80 px = 2 px per frame
        self.calls += 1
        return {**out, "z_where": where}


def test_wrapper_runs_a_real_env_for_hundreds_of_steps():
    det = Detector(MovingModel(), ArgmaxClassifier(), device="cpu")
    env = make_env("pong", det, Tracker(max_missed=1))
    obs, info = env.reset(seed=0)
    env.action_space.seed(0)
    assert obs.shape == (210, 160, 3)
    enemy_ids = []
    for step in range(300):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        objs = env.tracked_objects  # every tracked object, no placeholders
        assert [o.category for o in objs] == ["Ball", "Enemy"]
        ball, enemy = objs
        # OCAtari's Pong slots: Player (empty here), Ball, Enemy
        assert [o.category for o in env.objects] == ["NoObject", "Ball", "Enemy"]
        assert not env.objects[0] and env.objects[1] is ball and env.objects[2] is enemy
        assert env.ns_state == [0, 0, ball.x, ball.y, enemy.x, enemy.y]
        assert ball.id == 0 and (ball.dx, ball.dy) == (0, 0)  # a still object keeps its id
        wrapped = (step + 1) % 20 == 0  # the moving one jumps back 38 px every 20 frames
        if not wrapped:
            assert (enemy.dx, enemy.dy) == (2, 0)
            assert enemy.prev_xy == (enemy.x - 2, enemy.y)
            assert not enemy_ids or enemy.id == enemy_ids[-1]
        else:  # beyond the gate, but the only Enemy: re-identified, a jump (dx from prev_xy)
            assert enemy.id == enemy_ids[-1] and enemy.dx == -38
        enemy_ids.append(enemy.id)
        for o in objs:
            assert o.rgb == box_rgb(env.frame, o.x, o.y, o.w, o.h)
            assert o.xy == (o.x, o.y) and o.xywh == (o.x, o.y, o.w, o.h)
            assert o.center == (o.x + o.w / 2, o.y + o.h / 2)
            assert not o.hud and o.visible
        np.testing.assert_array_equal(env.frame, env.unwrapped.ale.getScreenRGB())
        if terminated or truncated:
            env.reset()
    assert set(enemy_ids) == {1}
    env.close()


def test_tracker_is_reset_with_the_episode():
    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    env = make_env("pong", det)
    env.reset(seed=1)
    for _ in range(3):
        env.step(0)
    first = [o.id for o in env.objects]
    env.reset(seed=2)
    assert [o.id for o in env.objects] == first  # ids restart at 0 in a new episode
    env.close()


def test_grayscale_observations_still_give_rgb_objects():
    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    env = make_env("pong", det, obs_type="grayscale")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (210, 160)
    assert env.frame.shape == (210, 160, 3) and len(env.tracked_objects) == 2
    env.close()


def test_wrapper_errors():
    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    with pytest.raises(ValueError, match="gymnasium env or an OCAtari env"):
        DetectedObjects(object(), det)
    with pytest.raises(ValueError, match="the detector is for 'pong', not 'boxing'"):
        make_env("boxing", det)


def test_detected_object_attributes():
    o = DetectedObject("Ball", 10.4, 20.6, 2.2, 3.9, prev_xy=(8, 25), rgb=(1, 2, 3), id=7)
    assert (o.x, o.y, o.w, o.h) == (10, 21, 2, 4)
    assert (o.dx, o.dy) == (2, -4) and o.h_coords == [(10, 21), (8, 25)]
    assert (o.prev_x, o.prev_y) == (8, 25)
    assert DetectedObject("Ball", 1, 2, 3, 4).dx == 0  # first sighting: no motion
    assert "Ball #7" in repr(o)


@needs_fixture
def test_wrapping_ocatari_with_the_fixture_detector():
    from ocatari.core import OCAtari

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.games import get_game
    from spacemoc.models import load_checkpoint

    torch.set_num_threads(2)
    io = np.load(FIXTURE / "io.npz")
    clf = ZWhatClassifier(
        kind="nn",
        game="pong",
        labels=get_game("pong").labels,
        centroids=io["z_what"][0, [10, 100, 200]].astype(np.float64),
        centroid_labels=np.array([1, 2, 4]),
    )
    # untrained weights: a high threshold keeps the number of objects (and the test) small
    det = Detector(load_checkpoint(FIXTURE / "checkpoint.pth"), clf, device="cpu", threshold=0.95)
    oc = OCAtari("ALE/Pong-v5", mode="ram", hud=False, obs_mode="ori", create_buffer_stacks=[])
    env = DetectedObjects(oc, det)
    obs, _ = env.reset(seed=0)
    for _ in range(8):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (210, 160, 3)
    np.testing.assert_array_equal(env.frame, obs)
    tracked = {o.category for o in env.tracked_objects}
    assert tracked and tracked <= {"Ball", "Enemy", "Player"}
    assert "Player" in {o.category for o in env.ram_objects}  # RAM extraction kept
    assert len(env.detections) >= len(env.tracked_objects)
    assert len(env.objects) == len(env.ram_objects) == 3
    env.close()


@needs_fixture
def test_example_agent_runs_on_both_sources(tmp_path):
    import subprocess
    import sys

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.games import get_game
    from spacemoc.models import load_checkpoint, save_checkpoint

    labels = get_game("pong").labels
    model = load_checkpoint(FIXTURE / "checkpoint.pth")
    save_checkpoint(tmp_path / "model.pt", model, game="pong", labels=labels, step=0)
    ZWhatClassifier("nn", "pong", labels, np.eye(3, 32), np.array([1, 2, 4])).save(
        tmp_path / "classifier.npz"
    )
    script = Path(__file__).resolve().parents[1] / "examples" / "rl_with_detector.py"
    for args in (["--ram", "--steps", "100"], ["--run", str(tmp_path), "--steps", "3"]):
        out = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "steps, " in out.stdout
