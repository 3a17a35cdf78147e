"""Tracker: persistent ids, missed frames, velocity, appearance; MOT metrics; the tracking stage."""

import csv

import h5py
import numpy as np
import pytest

from spacemoc.detector import Detection
from spacemoc.stages.tracking import evaluate_tracking, ground_truth_tracking
from spacemoc.tracking import Tracker, mot_metrics, track_sequence


def moving_boxes(n_frames=30):
    """Three objects: two cross each other's paths (Pong-like), one moves diagonally."""
    objs = {
        "a": dict(label="Ball", x0=20.0, y0=100.0, vx=3.0, vy=0.0, code=[1, 0, 0, 0]),
        "b": dict(label="Ball", x0=110.0, y0=100.0, vx=-3.0, vy=0.5, code=[0, 1, 0, 0]),
        "c": dict(label="Player", x0=140.0, y0=40.0, vx=0.0, vy=4.0, code=[0, 0, 1, 0]),
    }
    frames = []
    for t in range(n_frames):
        frames.append(
            {
                k: Detection(
                    o["label"],
                    o["x0"] + o["vx"] * t,
                    o["y0"] + o["vy"] * t,
                    4.0,
                    6.0,
                    0.9,
                    z_what=np.array(o["code"], float),
                )
                for k, o in objs.items()
            }
        )
    return frames


def run(tracker, frames, drop=lambda t, k: False):
    """ids[t][object key] -> track id (None when the object was not detected)."""
    ids = []
    for t, dets in enumerate(frames):
        keys = [k for k in dets if not drop(t, k)]
        tracks = tracker.update([dets[k] for k in keys])
        by_box = {(tr.x, tr.y): tr.id for tr in tracks}
        ids.append({k: by_box.get((dets[k].x, dets[k].y)) for k in keys})
    return ids


def test_ids_persist_on_crossing_boxes():
    frames = moving_boxes()
    ids = run(Tracker(max_missed=2, max_distance=15), frames)
    for key in "abc":
        assert {f[key] for f in ids} == {ids[0][key]}, f"object {key} changed id"
    assert len({ids[0][k] for k in "abc"}) == 3


def test_velocity_and_label_per_track():
    tracker = Tracker()
    for dets in moving_boxes(5):
        tracks = tracker.update(dets.values())
    by_label = {}
    for tr in tracks:
        by_label.setdefault(tr.label, []).append(tr)
    (player,) = by_label["Player"]
    assert (player.dx, player.dy) == pytest.approx((0.0, 4.0))
    balls = sorted(by_label["Ball"], key=lambda tr: tr.dx)
    assert (balls[0].dx, balls[0].dy) == pytest.approx((-3.0, 0.5))
    assert (balls[1].dx, balls[1].dy) == pytest.approx((3.0, 0.0))


def test_track_survives_missed_frames_then_is_dropped():
    frames = moving_boxes(20)
    # "c" is missing in frames 5-7 (3 frames): with max_missed=3 it keeps its id.
    ids = run(Tracker(max_missed=3), frames, drop=lambda t, k: k == "c" and 5 <= t <= 7)
    assert ids[4]["c"] == ids[8]["c"] == ids[19]["c"]
    # Missing 4 frames with max_missed=3: the old track is gone, a new id starts...
    gone = lambda t, k: k == "c" and 5 <= t <= 8  # noqa: E731
    ids = run(Tracker(max_missed=3, reid_frames=0), frames, drop=gone)
    assert ids[9]["c"] != ids[4]["c"]
    assert ids[9]["c"] == ids[19]["c"]
    # ...unless re-identified: "c" is the only Player, its lost track is the only candidate.
    ids = run(Tracker(max_missed=3, reid_frames=5), frames, drop=gone)
    assert ids[9]["c"] == ids[4]["c"] == ids[19]["c"]


def test_unique_label_reidentification_after_a_jump():
    """Pong serves the ball again from the centre: far beyond the gate, same object."""
    tracker = Tracker(max_missed=2, max_distance=20, reid_frames=30)
    ball = lambda x, y: Detection("Ball", x, y, 2, 4, 0.9)  # noqa: E731
    paddle = lambda y: Detection("Player", 140, y, 4, 15, 0.9)  # noqa: E731
    first = {t.label: t.id for t in tracker.update([ball(150, 40), paddle(100)])}
    for _ in range(10):  # the ball is out for 10 frames: its track is dropped, kept as lost
        tracker.update([paddle(100)])
    assert [t.label for t in tracker.lost] == ["Ball"]
    again = {t.label: t.id for t in tracker.update([ball(80, 110), paddle(100)])}
    assert again == first and not tracker.lost
    (revived,) = [t for t in tracker.active if t.label == "Ball"]
    assert (revived.dx, revived.dy) == (0, 0)  # a jump is not a velocity
    # Two balls at once: ambiguous, no re-identification.
    for _ in range(10):
        tracker.update([paddle(100)])
    out = tracker.update([ball(80, 110), ball(20, 60), paddle(100)])
    assert first["Ball"] not in {t.id for t in out}


def test_appearance_resolves_an_exchange_of_positions():
    code_a, code_b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])

    def frame(xa, xb):
        return [
            Detection("Enemy", xa, 50.0, 4, 4, 0.9, z_what=code_a),
            Detection("Enemy", xb, 50.0, 4, 4, 0.9, z_what=code_b),
        ]

    def ids_after_exchange(weight):
        tr = Tracker(appearance_weight=weight, max_distance=20)
        first = {t.x: t.id for t in tr.update(frame(50.0, 60.0))}  # a at 50, b at 60
        after = {t.x: t.id for t in tr.update(frame(60.0, 50.0))}  # they swap places
        return first, after

    first, after = ids_after_exchange(0.0)  # position only: ids stay with the places
    assert after[50.0] == first[50.0]
    first, after = ids_after_exchange(0.8)  # appearance dominates: ids follow the objects
    assert after[60.0] == first[50.0] and after[50.0] == first[60.0]


def test_mot_metrics_perfect_and_swap():
    box = {1: (10.0, 10.0, 4.0, 4.0), 2: (60.0, 10.0, 4.0, 4.0)}
    gt = [(k, b) for k, b in box.items()]
    perfect = [(gt, [(10 + k, b) for k, b in box.items()]) for _ in range(6)]
    m = mot_metrics([perfect])
    assert m["mota"] == pytest.approx(1.0) and m["idf1"] == pytest.approx(1.0)
    assert m["num_switches"] == 0
    # The tracker swaps the two ids after frame 3: two identity switches, IDF1 drops.
    swapped = [(gt, [(10 + (k if t < 3 else 3 - k), b) for k, b in box.items()]) for t in range(6)]
    m = mot_metrics([swapped])
    assert m["num_switches"] == 2
    assert m["mota"] == pytest.approx(1 - 2 / 12)
    assert m["idf1"] == pytest.approx(0.5)
    # A hypothesis farther than half the object's diagonal is a miss plus a false positive.
    far = [(gt[:1], [(7, (14.0, 10.0, 4.0, 4.0))])]
    m = mot_metrics([far])
    assert m["num_misses"] == 1 and m["num_false_positives"] == 1


def test_tracker_swap_counted_by_motmetrics():
    """Position-only tracking through an exchange of places is scored as two switches."""
    code_a, code_b = np.array([1.0, 0]), np.array([0, 1.0])
    seq = []
    tr = Tracker(appearance_weight=0.0)
    for t in range(6):
        xa, xb = (50.0, 60.0) if t < 3 else (60.0, 50.0)
        dets = [
            Detection("Enemy", xa, 50.0, 4, 4, 0.9, z_what=code_a),
            Detection("Enemy", xb, 50.0, 4, 4, 0.9, z_what=code_b),
        ]
        hyp = [(t_.id, (t_.x, t_.y, t_.w, t_.h)) for t_ in tr.update(dets)]
        seq.append(([("a", (xa, 50.0, 4, 4)), ("b", (xb, 50.0, 4, 4))], hyp))
    assert mot_metrics([seq])["num_switches"] == 2


def test_bad_tracker_arguments():
    with pytest.raises(ValueError, match="max_missed"):
        Tracker(max_missed=-1)
    with pytest.raises(ValueError, match="appearance_weight"):
        Tracker(appearance_weight=2)
    with pytest.raises(ValueError, match="max_distance"):
        Tracker(max_distance=0)
    with pytest.raises(ValueError, match="reid_frames"):
        Tracker(reid_frames=-1)


class GroundTruthDetector:
    """Stands in for a Detector: returns the file's ground truth as detections."""

    game = "pong"

    def __init__(self, boxes):
        self.boxes = boxes  # list per frame of (x, y, w, h)
        self.calls = 0

    def detect_preprocessed(self, images):
        out = []
        for _ in images:
            out.append([Detection("Ball", *b, 0.9) for b in self.boxes[self.calls]])
            self.calls += 1
        return out


def write_tracking_h5(path, n_seq=2, T=10):
    from spacemoc.data import OBJECT_DTYPE

    rows, boxes = [], []
    for s in range(n_seq):
        for t in range(T):
            frame = []
            for x, y in [(30 + 2 * t, 80.0), (120 - 2 * t, 120.0)]:
                rows.append((s, t, x, y, 2.0, 4.0, 1, 1))
                frame.append((x, y, 2.0, 4.0))
            rows.append((s, t, 20.0, 2.0, 8.0, 10.0, 3, 0))  # score (HUD): not relevant
            boxes.append(frame)
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=np.zeros((n_seq, T, 128, 128, 3), np.uint8))
        f.create_dataset("objects", data=np.array(rows, dtype=OBJECT_DTYPE))
        f.attrs["game"] = "pong"
    return boxes


def test_evaluate_tracking_writes_csv(tmp_path, monkeypatch):
    boxes = write_tracking_h5(tmp_path / "tracking.h5")
    fake = GroundTruthDetector(boxes)
    monkeypatch.setattr("spacemoc.detector.Detector.load", lambda *a, **k: fake)
    m = evaluate_tracking(tmp_path / "tracking.h5", tmp_path, tmp_path / "out" / "tracking.csv")
    assert fake.calls == 20
    assert m["mota"] == pytest.approx(1.0) and m["idf1"] == pytest.approx(1.0)
    assert m["num_objects"] == 40  # the HUD rows are not ground truth for the tracker
    with open(tmp_path / "out" / "tracking.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["mota"]) == 1.0 and float(row["idf1"]) == 1.0


def test_track_sequence_resets_between_sequences():
    frames = np.zeros((3, 128, 128, 3), np.uint8)
    det = GroundTruthDetector([[(10.0, 50.0, 2.0, 4.0)]] * 6)
    tracker = Tracker()
    first = track_sequence(frames, det, tracker)
    second = track_sequence(frames, det, tracker)
    assert first == second and {h[0] for f in first for h in f} == {0}


def test_cli_track_with_a_real_detector(tmp_path, compat_fixture, capsys):
    """`spacemoc track` end to end: fixture weights, a tiny tracking split (black frames)."""
    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.cli import main
    from spacemoc.games import get_game
    from spacemoc.models import load_checkpoint, save_checkpoint

    labels = get_game("pong").labels
    model = load_checkpoint(compat_fixture / "checkpoint.pth")
    save_checkpoint(tmp_path / "model.pt", model, game="pong", labels=labels, step=0)
    clf = ZWhatClassifier("nn", "pong", labels, np.eye(2, 32), np.array([1, 4]))
    clf.save(tmp_path / "classifier.npz")
    write_tracking_h5(tmp_path / "tracking.h5", n_seq=1, T=6)
    out = tmp_path / "tracking.csv"
    argv = ["track", "--run", str(tmp_path / "model.pt"), "--data", str(tmp_path / "tracking.h5")]
    assert main([*argv, "--out", str(out), "--threads", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    with open(out) as f:
        (row,) = list(csv.DictReader(f))
    assert row["subset"] == "relevant" and int(float(row["num_objects"])) == 12
    assert -1e9 < float(row["mota"]) <= 1 and 0 <= float(row["idf1"]) <= 1


def test_ground_truth_tracking_is_perfect_on_clean_boxes(tmp_path, capsys):
    from spacemoc.cli import main

    write_tracking_h5(tmp_path / "tracking.h5", n_seq=2, T=12)
    m = ground_truth_tracking(tmp_path / "tracking.h5")
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["num_objects"] == 48
    dropped = ground_truth_tracking(tmp_path / "tracking.h5", drop=0.25, seed=1)
    assert dropped["num_misses"] > 0 and dropped["mota"] < 1
    assert main(["track", "--data", str(tmp_path / "tracking.h5"), "--ground-truth"]) == 0
    assert "mota=1" in capsys.readouterr().out
    assert main(["track", "--data", str(tmp_path / "tracking.h5")]) == 2
    assert "--run and --out are needed" in capsys.readouterr().err


def _det(label, x, y, w=4, h=4):
    return Detection(label=label, x=x, y=y, w=w, h=h, score=1.0)


def test_label_window_lets_a_track_take_its_detections_label():
    """A track that took over another object's detections (two objects crossing) keeps the old
    label by full-history majority, and takes the new one within a window of recent labels."""
    for window, expected in ((None, "Enemy"), (1, "Ball"), (3, "Ball")):
        tracker = Tracker(label_window=window)
        for _ in range(5):
            tracker.update([_det("Enemy", 10, 10)])
        for _ in range(3):
            (track,) = tracker.update([_det("Ball", 12, 10)])
        assert track.label == expected, window
    with pytest.raises(ValueError, match="label_window"):
        Tracker(label_window=0)


def test_hold_frames_reports_a_missed_object_where_it_was_heading():
    tracker = Tracker(hold_frames=2, max_missed=3)
    tracker.update([_det("Ball", 10, 10)])
    tracker.update([_det("Ball", 14, 10)])
    (held,) = tracker.update([])  # missed: coasted on its velocity
    assert (held.x, held.missed) == (18.0, 1)
    assert len(tracker.update([])) == 1
    assert tracker.update([]) == []  # beyond hold_frames: kept for matching, not reported
    assert Tracker().update([_det("Ball", 1, 1)]) and not Tracker().update([])
    with pytest.raises(ValueError, match="hold_frames"):
        Tracker(hold_frames=4, max_missed=3)


def test_a_held_track_fills_an_empty_slot_only():
    """In the env wrapper a coasting track stands in for a missed object, never beside the new
    track of the same object (Pong's fast paddle jumping beyond the gate)."""
    from spacemoc.envs import _fill_misses
    from spacemoc.tracking import Track

    def track(i, label, missed):
        t = Track(i, 0, 0, 4, 4, missed=missed)
        t.vote(label)
        return t

    tracks = [
        track(0, "Player", 1),
        track(1, "Player", 0),
        track(2, "Ball", 2),
        track(3, "Ball", 1),
    ]
    shown = _fill_misses(tracks, {"Player": 1, "Ball": 1, "Enemy": 1})
    assert sorted(t.id for t in shown) == [1, 3]  # the new paddle; the ball seen most recently
