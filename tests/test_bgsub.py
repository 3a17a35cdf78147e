"""The background-subtraction baseline on synthetic frames."""

from __future__ import annotations

import numpy as np
import pytest

from spacemoc.metrics import detection_scores
from spacemoc.stages.bgsub import bgsub_detect, prepare_background

BG = np.full((128, 128, 3), (144, 72, 17), np.uint8)


def test_one_box_per_sprite_in_frame_pixels():
    frame = BG.copy()
    frame[40:52, 16:20] = (92, 186, 92)  # rows 40..51, cols 16..19 of the 128x128 frame
    frame[100:103, 64:67] = (236, 236, 236)
    boxes = bgsub_detect(frame, BG)
    assert len(boxes) == 2
    first = boxes[np.argmin(boxes[:, 0])]
    # Scaled back to 160x210 pixels: x = 16 * 160/128 = 20, w = 4 * 1.25 = 5, y = 40 * 210/128.
    np.testing.assert_allclose(first[:4], [20.0, 40 * 210 / 128, 5.0, 12 * 210 / 128])
    assert 0 < first[4] <= 1


def test_pieces_one_pixel_apart_are_one_object_and_noise_is_ignored():
    frame = BG.copy()
    frame[10:14, 10:12] = (0, 0, 0)
    frame[10:14, 13:15] = (0, 0, 0)  # one background column between the two halves
    frame[60:70, 60:70] = BG[0, 0] + np.array([10, 10, 10], np.uint8)  # below the threshold
    boxes = bgsub_detect(frame, BG)
    assert len(boxes) == 1
    assert boxes[0, 2] == pytest.approx(5 * 160 / 128)


def test_background_only_frame_has_no_detection_and_bad_shapes_are_refused():
    assert bgsub_detect(BG.copy(), BG).shape == (0, 5)
    with pytest.raises(ValueError, match="same"):
        bgsub_detect(BG[:100], BG)


def test_scores_on_synthetic_frames_with_ground_truth():
    rng = np.random.default_rng(0)
    pred, gt = [], []
    for _ in range(5):
        frame = BG.copy()
        boxes = []
        for k in range(3):
            c, r = 10 + 40 * k + int(rng.integers(0, 20)), int(rng.integers(10, 110))
            frame[r : r + 8, c : c + 4] = (200, 200, 200)
            boxes.append([c * 160 / 128, r * 210 / 128, 4 * 160 / 128, 8 * 210 / 128])
        pred.append(bgsub_detect(frame, BG))
        gt.append(np.array(boxes))
    s = detection_scores(pred, gt)
    assert (s["precision"], s["recall"], s["count_accuracy"]) == (1.0, 1.0, 1.0)
    assert s["ap_avg"] == pytest.approx(1.0)


def test_a_full_size_background_goes_through_the_dataset_preprocessing():
    from spacemoc.data import preprocess_frame

    full = np.full((210, 160, 3), (144, 72, 17), np.uint8)
    np.testing.assert_array_equal(prepare_background(full), preprocess_frame(full))
    assert prepare_background(BG) is not None and prepare_background(BG).shape == (128, 128, 3)


def test_a_background_of_looks_hides_what_any_look_shows():
    other_end = BG.copy()
    other_end[10:12, :] = (236, 236, 236)  # a sideline the other look paints white
    frame = other_end.copy()
    frame[50:60, 40:44] = (92, 186, 92)
    looks = np.stack([BG, other_end])
    assert len(bgsub_detect(frame, BG)) == 2  # the sideline is a detection against one look
    boxes = bgsub_detect(frame, looks)
    assert len(boxes) == 1 and boxes[0, 1] == pytest.approx(50 * 210 / 128)
    full = np.stack([np.full((210, 160, 3), c, np.uint8) for c in ((144, 72, 17), (0, 0, 0))])
    assert prepare_background(full).shape == (2, 128, 128, 3)


def test_changed_objects_are_the_boxes_the_frame_draws():
    from spacemoc.stages.bgsub import changed_objects

    frame = BG.copy()
    frame[50:60, 40:44] = (92, 186, 92)  # drawn: rows 50-59, columns 40-43 of the 128 x 128 frame
    sx, sy = 160 / 128, 210 / 128  # boxes are in frame pixels
    drawn = [40 * sx, 50 * sy, 4 * sx, 10 * sy]
    hidden = [90 * sx, 20 * sy, 4 * sx, 10 * sy]  # an object the frame does not show
    edge = [-3.0, 100 * sy, 2.0, 2.0]  # left of the frame: clipped to it, shows nothing
    np.testing.assert_array_equal(
        changed_objects(frame, BG, np.array([drawn, hidden, edge])), [True, False, False]
    )
    assert changed_objects(frame, BG, np.zeros((0, 4))).shape == (0,)
