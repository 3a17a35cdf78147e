"""Box calibration: per-label corrections of the model's boxes towards OCAtari's."""

import numpy as np
import pytest
import torch

from spacemoc.box_calibration import MIN_SAMPLES, BoxCalibration, fit_box_calibration
from spacemoc.classifier import ZWhatClassifier
from spacemoc.games import get_game


def _pose_offsets(n=200, seed=0):
    """Boxes whose OCAtari box is shifted by an amount the encoding tells (a boxer's arm out to
    the left or right), for label 4; label 1's boxes are right already."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    boxes = np.column_stack([rng.uniform(20, 120, (n, 2)), rng.uniform(8, 16, (n, 2))])
    labels = np.where(np.arange(n) % 2 == 0, 4, 1)
    shift = np.where(labels == 4, 3.0 * z[:, 0] + 1.0, 0.0)  # pixels along x
    targets = boxes.copy()
    targets[:, 0] += shift
    targets[labels == 4, 2:] -= 2.0  # and 2 pixels smaller each way
    targets[labels == 4, :2] += 1.0  # keeping its centre
    return z, boxes, targets, labels


def test_fit_recovers_the_offsets_each_label_needs():
    z, boxes, targets, labels = _pose_offsets()
    calibration = fit_box_calibration(z, boxes, targets, labels)
    assert calibration.labels.tolist() == [1, 4]
    z2, boxes2, targets2, labels2 = _pose_offsets(seed=1)
    corrected = calibration.apply(boxes2, z2, labels2)
    before = np.abs(boxes2 - targets2).max(1)
    after = np.abs(corrected - targets2).max(1)
    assert before[labels2 == 4].mean() > 2 and after.max() < 0.2
    # a label without a correction keeps its boxes; an empty frame stays empty
    np.testing.assert_array_equal(calibration.apply(boxes2, z2, np.full(len(z2), 2)), boxes2)
    assert calibration.apply(np.zeros((0, 4)), np.zeros((0, 3)), []).shape == (0, 4)
    with pytest.raises(ValueError, match="z_what of dimension 3"):
        calibration.apply(boxes2, np.zeros((len(boxes2), 5)), labels2)


def test_too_few_samples_give_no_correction():
    z, boxes, targets, labels = _pose_offsets(n=MIN_SAMPLES)  # half of them per label
    assert fit_box_calibration(z, boxes, targets, labels) is None


def test_the_classifier_file_carries_the_calibration(tmp_path):
    z, boxes, targets, labels = _pose_offsets()
    pong = get_game("pong")
    clf = ZWhatClassifier("nn", "pong", pong.labels, centroids=np.eye(3),
                          centroid_labels=np.array([1, 2, 4]))  # fmt: skip
    clf.save(tmp_path / "plain.npz")
    assert ZWhatClassifier.load(tmp_path / "plain.npz").box_calibration is None
    clf.box_calibration = fit_box_calibration(z, boxes, targets, labels)
    clf.save(tmp_path / "calibrated.npz")
    back = ZWhatClassifier.load(tmp_path / "calibrated.npz", game="pong")
    np.testing.assert_array_equal(back.box_calibration.coef, clf.box_calibration.coef)
    np.testing.assert_array_equal(back.predict(np.eye(3)), [1, 2, 4])


def test_the_detector_moves_boxes_by_the_classifier_calibration():
    from spacemoc.detector import Detector
    from spacemoc.models.space import Space, SpaceConfig

    torch.manual_seed(0)
    model = Space(SpaceConfig(G=4)).eval()
    with torch.no_grad():  # make some cells present
        model.fg_module.img_encoder.z_pres_net.bias.fill_(0.5)
    dim = model.config.z_what_dim

    class Ball:
        labels = get_game("pong").labels
        box_calibration = BoxCalibration(
            np.array([1]), np.zeros((1, 4, dim + 2)), np.array([[5.0, -3.0, 2.0, 0.0]])
        )

        def predict(self, z):
            return np.ones(len(z), dtype=np.int64)

    frames = np.random.default_rng(0).integers(0, 256, (2, 210, 160, 3), dtype=np.uint8)
    kwargs = dict(game="pong", device="cpu", hud=True)
    moved = Detector(model, Ball(), **kwargs).detect_batch(frames)
    plain = Detector(model, Ball(), calibrate_boxes=False, **kwargs).detect_batch(frames)
    assert sum(map(len, plain)) > 0
    for a_frame, b_frame in zip(moved, plain, strict=True):
        for a, b in zip(a_frame, b_frame, strict=True):
            assert a.center[0] == pytest.approx(b.center[0] + 5, abs=1e-4)
            assert a.center[1] == pytest.approx(b.center[1] - 3, abs=1e-4)
            assert (a.w, a.h) == pytest.approx((b.w + 2, b.h), abs=1e-4)
