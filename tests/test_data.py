"""The data stage end to end on Pong with tiny sizes: background, HDF5 files, torch dataset, CLI."""

import json
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import spacemoc.data.rollout as rollout
from spacemoc.cli import main as cli
from spacemoc.data import (
    OBJECT_DTYPE,
    AtariDataset,
    collate,
    compute_background,
    load_background,
    make_dataset,
    read_table,
    save_background,
)
from spacemoc.games import get_game

N = 6  # samples per test file


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def background(work):
    png, npy = save_background(compute_background("pong", 40, seed=5), work / "bg.png", game="pong")
    return npy


@pytest.fixture(scope="module")
def test_h5(work, background):
    return make_dataset("pong", "test", work / "test.h5", background, N, workers=1, config={"a": 1})


def test_background_files_and_errors(work, background):
    img = load_background(background)
    assert img.shape == (210, 160, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(load_background(background.with_suffix(".png")), img)
    # Pong's playfield is the brown background colour; the mode removes the moving objects.
    assert tuple(img[120, 80]) == (144, 72, 17)
    np.testing.assert_array_equal(compute_background("pong", 40, seed=5), img)
    with pytest.raises(ValueError, match="does not exist; make it first with `spacemoc background"):
        load_background(work / "missing.npy")
    with pytest.raises(ValueError, match="expected uint8 \\(210,160,3\\)"):
        save_background(np.zeros((10, 10, 3), np.uint8), work / "bad.png")
    # Named with either suffix, the PNG and the .npy go side by side (neither overwrites the other).
    png, npy = save_background(img, work / "named.npy", game="pong")
    assert (png.name, npy.name) == ("named.png", "named.npy")
    np.testing.assert_array_equal(load_background(work / "named.npy"), img)


def test_a_background_of_several_looks(work):
    from spacemoc.data.background import split_looks

    # Looks are numbered from the most frequent: 5 frames of B before 3 of A make B look 0.
    a, b = np.zeros((210, 160, 3), np.uint8), np.full((210, 160, 3), 200, np.uint8)
    frames = np.stack([a, a, a, b, b, b, b, b])
    frames[1, 7, 7] = 9  # a small change does not make a look of its own
    np.testing.assert_array_equal(split_looks(frames, 2, seed=0), [1, 1, 1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="fewer than 2 distinct looks"):
        split_looks(np.stack([a, a, a]), 2, seed=0)
    # Tennis's game table asks for two looks (the court's ends); saved and read back as such.
    assert get_game("tennis").background_looks == 2
    looks = compute_background("tennis", 12, seed=5)
    assert looks.shape == (2, 210, 160, 3) and looks.dtype == np.uint8
    png, npy = save_background(looks, work / "tennis_bg.png", game="tennis")
    np.testing.assert_array_equal(load_background(png, game="tennis"), looks)
    np.testing.assert_array_equal(load_background(npy, game="tennis"), looks)
    with pytest.raises(ValueError, match="fewer than 2|must be >= 2"):
        compute_background("tennis", 1, seed=5)
    with pytest.raises(ValueError, match="for K > 1 looks"):
        save_background(looks[:1], work / "one_look_stacked.png")
    # A background of the wrong number of looks still works, with a warning to remake it.
    one = save_background(looks[0], work / "tennis_one.png", game="tennis")[1]
    with pytest.warns(UserWarning, match="has 1 look\\(s\\), tennis's game table says 2"):
        make_dataset("tennis", "test", work / "tennis.h5", one, 1, T=2, window=2, workers=1)


def test_pixel_looks_keep_each_pixels_common_colours():
    from spacemoc.data.background import pixel_looks

    # A pixel that is red in 6 of 10 frames, blue in 3 (a look) and green once (a passing sprite).
    frames = np.zeros((10, 2, 2, 3), np.uint8)
    frames[:6, 0, 0] = (200, 0, 0)
    frames[6:9, 0, 0] = (0, 0, 200)
    frames[9, 0, 0] = (0, 200, 0)
    looks = pixel_looks(frames, 3, min_share=0.2)
    assert looks.shape == (3, 2, 2, 3)
    assert [tuple(looks[k, 0, 0]) for k in range(3)] == [(200, 0, 0), (0, 0, 200), (200, 0, 0)]
    assert (looks[:, 1, 1] == 0).all()  # one colour only: every look is it
    # A look of a pixel with one colour differs nowhere; only what no look has is a change.
    from spacemoc.data.motion import changed_amount

    frame = frames[0].copy()
    frame[0, 0] = (0, 0, 200)
    assert not changed_amount(frame, looks).any()
    frame[0, 0] = (0, 200, 0)
    assert changed_amount(frame, looks)[0, 0] == 200


def test_schema(test_h5):
    with h5py.File(test_h5, "r") as f:
        assert set(f) == {"frames", "motion", "objects", "motion_boxes"}
        frames, motion = f["frames"], f["motion"]
        assert frames.shape == (N, 4, 128, 128, 3) and frames.dtype == np.uint8
        assert motion.shape == (N, 4, 128, 128) and motion.dtype == np.uint8
        assert frames.chunks == (1, 4, 128, 128, 3) and frames.compression == "gzip"
        assert motion.chunks == (1, 4, 128, 128) and motion.compression == "gzip"
        for name in ("objects", "motion_boxes"):
            assert f[name].dtype == OBJECT_DTYPE
        a = f.attrs
        assert (a["game"], a["env_id"], a["split"], a["seed"]) == ("pong", "ALE/Pong-v5", "test", 2)
        assert (a["T"], a["window"], a["frameskip"], a["motion_kind"]) == (4, 20, 4, "mode")
        assert list(a["labels"]) == list(get_game("pong").labels)
        assert list(a["relevant_labels"]) == ["Ball", "Enemy", "Player"]
        assert a["ocatari_version"] == "2.1.0" and a["ale_py_version"] and a["spacemoc_version"]
        assert json.loads(a["config"]) == {"a": 1}
        assert motion[()].max() == 255  # per-frame normalised
        boxes = f["motion_boxes"][()]
        assert (boxes["label"] == -1).all() and (boxes["relevant"] == 0).all()
    assert not list(test_h5.parent.glob("*.tmp.h5"))


def test_ground_truth_boxes_are_real_and_inside_the_frame(test_h5):
    with h5py.File(test_h5, "r") as f:
        for name in ("objects", "motion_boxes"):
            rows = f[name][()]
            assert len(rows) > 0
            assert (rows["w"] > 0).all() and (rows["h"] > 0).all()
            assert (rows["x"] >= 0).all() and (rows["y"] >= 0).all()
            assert (rows["x"] + rows["w"] <= 160).all() and (rows["y"] + rows["h"] <= 210).all()
            keys = rows["sample"].astype(int) * 4 + rows["t"]
            assert (np.diff(keys) >= 0).all()  # sorted by (sample, t)
        gt = f["objects"][()]
    labels = get_game("pong").labels
    assert set(gt["label"]) <= {labels.index(n) for n in ("Ball", "Enemy", "Player")}
    assert (gt["relevant"] == 1).all()  # HUD classes are not collected
    table = read_table(test_h5)
    assert len(table) == N and all(len(s) == 4 for s in table)
    assert all(len(frame) >= 2 for sample in table for frame in sample)  # both paddles at least


def test_same_arrays_for_any_worker_count(work, background, monkeypatch):
    monkeypatch.setattr(rollout, "CHUNK_FRAMES", 8)  # 2 samples per chunk -> 3 chunks
    paths = [
        make_dataset("pong", "validation", work / f"w{w}.h5", background, 6, workers=w)
        for w in (1, 2, 3)
    ]
    paths.append(make_dataset("pong", "validation", work / "again.h5", background, 6, workers=2))
    files = [h5py.File(p, "r") for p in paths]
    for name in ("frames", "motion", "objects", "motion_boxes"):
        first = files[0][name][()]
        for other in files[1:]:
            np.testing.assert_array_equal(first, other[name][()])
    other_seed = make_dataset("pong", "validation", work / "s9.h5", background, 2, seed=9)
    with h5py.File(other_seed, "r") as f:
        assert not np.array_equal(f["frames"][()], files[0]["frames"][:2])


def test_motion_boxes_cover_moving_objects(background):
    """>= 0.9 of Pong's relevant objects that differ from the background get a motion box
    whose centre lies inside them (measured 0.99 over 1000 objects; the ball is the hard one)."""
    from spacemoc.data.env import RandomAgent, agent_steps, make_env, seeds_for_chunk
    from spacemoc.data.motion import ColourScore, motion_boxes, motion_maps

    game = get_game("pong")
    bg = load_background(background)
    env = make_env(game)
    env_seed, rng = seeds_for_chunk(11, 0)
    env.reset(seed=env_seed)
    agent = RandomAgent(env.nb_actions, rng)
    agent_steps(env, agent, rollout.WARMUP_STEPS)
    colours = ColourScore(bg, get_game("pong").motion_colour_counts)
    moving = covered = 0
    for run, objects in rollout.runs(env, agent, game, 40, 20, 4):
        maps = motion_maps("mode", run, 4, bg, 20, False)
        for t in range(4):
            frame = run[-4 + t]
            boxes = motion_boxes(maps[t], frame, colours)
            cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
            for x, y, w, h, _label, relevant in objects[t]:
                x0, y0 = int(x), int(y)
                x1, y1 = int(np.ceil(x + w)), int(np.ceil(y + h))
                if not relevant or not (frame[y0:y1, x0:x1] != bg[y0:y1, x0:x1]).any():
                    continue
                moving += 1
                covered += bool(((cx >= x) & (cx <= x + w) & (cy >= y) & (cy <= y + h)).any())
    assert moving > 200
    assert covered / moving >= 0.9


def test_tracking_split_is_consecutive(work, background):
    path = make_dataset("pong", "tracking", work / "tracking.h5", background, 2, T=12, window=5)
    with h5py.File(path, "r") as f:
        assert f["frames"].shape == (2, 12, 128, 128, 3) and f.attrs["T"] == 12
        assert f.attrs["seed"] == 3 and f.attrs["split"] == "tracking"
        stored = f["frames"][()]
    # The stored frames are 12 consecutive env steps of the seeded rollout (after window - 1
    # steps of history), replayed here step by step.
    from spacemoc.data.env import RandomAgent, agent_steps, make_env, seeds_for_chunk
    from spacemoc.data.preprocess import preprocess_frames

    game = get_game("pong")
    env = make_env(game)
    env_seed, rng = seeds_for_chunk(3, 0)
    env.reset(seed=env_seed)
    agent = RandomAgent(env.nb_actions, rng)
    agent_steps(env, agent, rollout.WARMUP_STEPS)
    for i, (run, _objects) in enumerate(rollout.runs(env, agent, game, 2, 12 + 5 - 1, 12)):
        np.testing.assert_array_equal(stored[i], preprocess_frames(run[-12:]))
    assert not np.array_equal(stored[0, 0], stored[0, 1])


@pytest.mark.parametrize("kind", ["median", "flow"])
def test_other_motion_kinds(work, background, kind):
    path = make_dataset("pong", "test", work / f"{kind}.h5", background, 2, motion_kind=kind)
    with h5py.File(path, "r") as f:
        assert f.attrs["motion_kind"] == kind
        assert f["motion"][()].max() == 255 and len(f["motion_boxes"]) > 0


def test_exception_leaves_no_file(work, background, monkeypatch):
    calls = []

    def failing(task, bg):
        calls.append(task.chunk)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(task, bg)

    real = rollout.collect_chunk
    monkeypatch.setattr(rollout, "CHUNK_FRAMES", 4)
    monkeypatch.setattr("spacemoc.data.writer.collect_chunk", failing)
    with pytest.raises(RuntimeError, match="boom"):
        make_dataset("pong", "test", work / "broken.h5", background, 3, workers=1)
    assert not (work / "broken.h5").exists() and not (work / "broken.tmp.h5").exists()


def test_killed_run_leaves_no_final_file(work, background):
    out = work / "killed.h5"
    code = (
        "from spacemoc.data import make_dataset\n"
        f"make_dataset('pong', 'train', {str(out)!r}, {str(background)!r}, 4096, workers=1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        # killed once samples are being collected (the progress bar has started)
        started = ""
        while "pong train" not in started and proc.poll() is None:
            started += proc.stderr.read(1)
        assert "pong train" in started
        time.sleep(1.0)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()
    assert list(work.glob("*killed*")) == []  # nothing half-written either


def test_bad_input_errors(work, background):
    with pytest.raises(ValueError, match="unknown game 'pang'; known games: .*pong"):
        make_dataset("pang", "test", work / "x.h5", background, 1)
    with pytest.raises(ValueError, match="unknown split 'val'; valid splits: .*tracking"):
        make_dataset("pong", "val", work / "x.h5", background, 1)
    with pytest.raises(ValueError, match="valid motion kinds: mode, median, flow"):
        make_dataset("pong", "test", work / "x.h5", background, 1, motion_kind="diff")
    with pytest.raises(ValueError, match="background image .* does not exist"):
        make_dataset("pong", "test", work / "x.h5", work / "nope.npy", 1)
    assert not (work / "x.h5").exists()


def test_cli_errors_are_one_clean_line(work, background, capsys):
    args = ["dataset", "--game", "pong", "--out", str(work / "c.h5"), "--background"]
    assert cli([*args, str(background), "--split", "dev"]) == 2
    assert "error: argument --split: invalid choice: 'dev'" in capsys.readouterr().err
    assert cli([*args, str(work / "none.npy"), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_cli_dataset_and_show(work, background):
    out = work / "cli.h5"
    args = ["--game", "pong", "--split", "test", "--out", str(out), "--background", str(background)]
    assert cli(["dataset", *args, "--samples", "2", "--workers", "1"]) == 0
    with h5py.File(out, "r") as f:
        assert f["frames"].shape[:2] == (2, 4)
        # the settings the file was made with, command-line overrides included
        recorded = json.loads(f.attrs["config"])["data"]
        assert recorded == {
            "split": "test", "n_samples": 2, "T": 4, "window": 20, "seed": 2, "motion_kind": "mode"
        }  # fmt: skip
    png = work / "show.png"
    assert cli(["show", "--data", str(out), "--out", str(png), "--samples", "2"]) == 0
    from PIL import Image

    img = Image.open(png)
    assert img.size[0] == 4 * 480 + 3 * 4 and img.size[1] > 2 * 630
    assert cli(["show", "--data", str(work / "nope.h5"), "--out", str(png)]) == 2


def test_atari_dataset_items(test_h5):
    ds = AtariDataset(test_h5, grid_size=16, with_gt=True)
    assert len(ds) == N and ds.T == 4 and ds.game == "pong" and ds.labels[1] == "Ball"
    item = ds[1]
    assert item["frames"].shape == (4, 3, 128, 128) and str(item["frames"].dtype) == "torch.float32"
    assert 0 <= float(item["frames"].min()) and float(item["frames"].max()) <= 1
    assert item["motion"].shape == (4, 128, 128)
    assert set(item["motion"].unique().tolist()) <= {0.0, 1.0} and item["motion"].sum() > 0
    assert item["motion_z_pres"].shape == (4, 256)
    assert item["motion_z_where"].shape == (4, 256, 4)
    assert len(item["gt"]) == 4 and item["gt"][0].dtype == OBJECT_DTYPE
    # the hints are those of the stored motion boxes
    from spacemoc.data import motion_hints

    boxes = read_table(test_h5, "motion_boxes")[1][2]
    z_pres, _ = motion_hints(np.stack([boxes["x"], boxes["y"], boxes["w"], boxes["h"]], 1))
    np.testing.assert_array_equal(item["motion_z_pres"][2].numpy(), z_pres)
    # frames are the stored RGB frames
    with h5py.File(test_h5, "r") as f:
        stored = f["frames"][1]
    np.testing.assert_allclose(item["frames"].permute(0, 2, 3, 1).numpy() * 255, stored, atol=1e-3)
    assert AtariDataset(test_h5, grid_size=8)[0]["motion_z_pres"].shape == (4, 64)


def test_dataloader_batches(test_h5):
    from torch.utils.data import DataLoader

    loader = DataLoader(
        AtariDataset(test_h5, with_gt=True), batch_size=3, num_workers=2, collate_fn=collate
    )
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["frames"].shape == (3, 4, 3, 128, 128)
    assert b["motion"].shape == (3, 4, 128, 128)
    assert b["motion_z_where"].shape == (3, 4, 256, 4)
    assert len(b["gt"]) == 3 and len(b["gt"][0]) == 4


def test_dataset_without_motion_is_rejected(work, test_h5):
    path = work / "frames_only.h5"
    with h5py.File(test_h5, "r") as src, h5py.File(path, "w") as dst:
        src.copy("frames", dst)
        src.copy("objects", dst)
        dst.attrs.update(src.attrs)
    with pytest.raises(ValueError, match="lacks motion, motion_boxes"):
        AtariDataset(path)


def test_agent_split_is_played_by_the_control_policy(work, background):
    """The agent split: the same sampling as validation/test, actions from Pong's policy; a game
    without a policy is refused before any rollout."""
    path = make_dataset("pong", "agent", work / "agent.h5", background, 2, epsilon=0.25)
    with h5py.File(path, "r") as f:
        assert f["frames"].shape == (2, 4, 128, 128, 3)
        assert (f.attrs["split"], f.attrs["seed"]) == ("agent", 4)
        assert (f.attrs["policy"], f.attrs["epsilon"]) == ("control", 0.25)
    with h5py.File(make_dataset("pong", "test", work / "t.h5", background, 1), "r") as f:
        assert (f.attrs["policy"], f.attrs["epsilon"]) == ("random", 0.0)
    with pytest.raises(ValueError, match="no control policy for 'tennis'"):
        make_dataset("tennis", "agent", work / "never.h5", background, 1)
    assert not (work / "never.h5").exists()


def test_policy_agent_follows_the_policy_except_at_epsilon():
    from spacemoc.data.env import PolicyAgent

    class Env:
        objects = []

        def get_action_meanings(self):
            return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    always_left = PolicyAgent(Env(), lambda objects, meanings: 3, np.random.default_rng(0), 0.0)
    assert {always_left.act() for _ in range(50)} == {3}
    mixed = PolicyAgent(Env(), lambda objects, meanings: 3, np.random.default_rng(0), 0.5)
    actions = [mixed.act() for _ in range(400)]
    assert 0.55 < actions.count(3) / 400 < 0.7  # half the policy's, a quarter of the random ones
