"""Motion maps, motion boxes, MOC hints, preprocessing and the mode image, on hand-made inputs."""

import numpy as np
import pytest
from PIL import Image

from spacemoc.data import motion_boxes, motion_hints, preprocess_frame, preprocess_frames
from spacemoc.data.background import pixel_mode
from spacemoc.data.motion import (
    ColourScore,
    check_motion_kind,
    colour_codes,
    difference_map,
    flow_map,
    motion_maps,
    resize_motion,
)
from spacemoc.games import get_game

H, W = 210, 160


def test_motion_hints_cells_and_values():
    boxes = np.array([[10, 20, 4, 8], [100, 150, 16, 10]], np.float32)
    z_pres, z_where = motion_hints(boxes, grid_size=16)
    assert z_pres.shape == (256,) and z_where.shape == (256, 4)
    assert z_pres.dtype == np.float32 and z_where.dtype == np.float32
    # box 1: centre (10+2, 20+4) -> row floor(24/13.125)=1, col floor(12/10)=1
    # box 2: centre (100+8, 150+5) -> row floor(155/13.125)=11, col floor(108/10)=10
    assert np.flatnonzero(z_pres).tolist() == [1 * 16 + 1, 11 * 16 + 10]
    np.testing.assert_allclose(
        z_where[17], [4 / W, 8 / H, (12 / W) * 2 - 1, (24 / H) * 2 - 1], rtol=1e-6
    )
    np.testing.assert_allclose(
        z_where[11 * 16 + 10], [16 / W, 10 / H, (108 / W) * 2 - 1, (155 / H) * 2 - 1], rtol=1e-6
    )
    assert not z_where[z_pres == 0].any()


def test_motion_hints_largest_box_wins_a_cell_and_empty_input():
    small, large = [12, 15, 2, 2], [10, 14, 6, 4]  # same cell (row 1, col 1)
    for boxes in ([small, large], [large, small]):
        z_pres, z_where = motion_hints(np.array(boxes, np.float32))
        assert z_pres.sum() == 1
        np.testing.assert_allclose(z_where[17, :2], [6 / W, 4 / H], rtol=1e-6)
    z_pres, z_where = motion_hints(np.zeros((0, 4)), grid_size=8)
    assert z_pres.shape == (64,) and not z_pres.any() and not z_where.any()


def test_motion_boxes_outer_contours_only_and_no_zero_area():
    delta = np.zeros((H, W), np.float32)
    delta[50:70, 30:50] = 1.0  # a ring: the hole must not give a box of its own
    delta[55:65, 35:45] = 0.0
    delta[100:104, 120:122] = 0.5  # a small blob
    boxes = motion_boxes(delta)
    assert sorted(map(tuple, boxes.tolist())) == [(30, 50, 20, 20), (120, 100, 2, 4)]
    assert (boxes[:, 2:] > 0).all()
    assert motion_boxes(np.zeros((H, W), np.float32)).shape == (0, 4)


def test_colour_refinement_trims_background_and_rejects_background_only_boxes():
    background = np.zeros((H, W, 3), np.uint8)
    background[..., 2] = 100  # a blue screen
    frame = background.copy()
    frame[60:70, 40:44] = (250, 250, 250)  # an object of a colour absent from the background
    delta = np.zeros((H, W), np.float32)
    delta[60:70, 20:44] = 1.0  # the motion region also covers 20 background columns on the left
    delta[150:160, 100:110] = 1.0  # moving region with only background colours
    colours = ColourScore(background)
    boxes = motion_boxes(delta, frame, colours)
    assert len(boxes) == 1
    x, y, w, h = boxes[0].tolist()
    assert (y, h) == (60, 10) and x + w == 44 and 40 - 5 <= x <= 40  # trimmed towards the object


def test_colour_codes_base_256_and_game_override():
    assert colour_codes(np.array([[1, 2, 3]]))[0] == 1 + 2 * 256 + 3 * 65536
    background = np.full((H, W, 3), 236, np.uint8)  # Pong's white everywhere
    plain = ColourScore(background)
    pong = ColourScore(background, get_game("pong").motion_colour_counts)
    white = np.full((2, 2, 3), 236, np.uint8)
    assert plain.pixel_scores(white).max() < 0  # common background colour
    np.testing.assert_allclose(pong.pixel_scores(white), 1 / 8 - 1e-4)
    other = np.full((1, 1, 3), 7, np.uint8)
    np.testing.assert_allclose(plain.pixel_scores(other), 1 - 1e-4)  # absent colour


def test_difference_map_is_normalised_channel_max():
    background = np.zeros((H, W, 3), np.uint8)
    frame = background.copy()
    frame[0, 0] = (10, 200, 0)
    frame[1, 1] = (0, 0, 100)
    delta = difference_map(frame, background)
    assert delta.dtype == np.float32 and delta.max() == 1.0
    assert delta[1, 1] == pytest.approx(0.5) and delta[2, 2] == 0
    assert not difference_map(background, background).any()  # no division by zero


def test_a_background_of_looks_counts_only_what_differs_from_every_look():
    from spacemoc.data.motion import as_looks, changed_amount

    court_a = np.zeros((H, W, 3), np.uint8)
    court_b = court_a.copy()
    court_b[0, :] = (200, 0, 0)  # a sideline in the other end's colour
    looks = np.stack([court_a, court_b])
    frame = court_b.copy()
    frame[5, 5] = (0, 100, 0)  # a player
    assert as_looks(court_a).shape == (1, H, W, 3) and as_looks(looks) is looks
    # Against look A alone the sideline is "motion"; against both looks only the player is.
    assert difference_map(frame, court_a)[0].max() == 1.0
    delta = difference_map(frame, looks)
    assert delta[5, 5] == 1.0 and delta.sum() == 1.0
    one_look = changed_amount(frame, court_a[None])
    np.testing.assert_array_equal(one_look, changed_amount(frame, court_a))
    # The colour score averages a colour's pixels over the looks: one look's sideline colour is
    # half as common as a colour every look has all over.
    score = ColourScore(looks)
    red, black = np.array([[[200, 0, 0]]], np.uint8), np.zeros((1, 1, 3), np.uint8)
    np.testing.assert_allclose(score.pixel_scores(red), 1 / (W / 2) - 1e-4)
    np.testing.assert_allclose(score.pixel_scores(black), 1 / (H * W - W / 2) - 1e-4)


def test_motion_maps_kinds():
    rng = np.random.default_rng(0)
    background = np.zeros((H, W, 3), np.uint8)
    frames = np.repeat(background[None], 6, axis=0)
    for i in range(6):  # a square moving right by 3 pixels per frame
        frames[i, 100:110, 20 + 3 * i : 30 + 3 * i] = 200
    for kind in ("mode", "median", "flow"):
        for rolling in (False, True):
            maps = motion_maps(kind, frames, 3, background, window=6, rolling=rolling)
            assert maps.shape == (3, H, W) and maps.dtype == np.float32
            assert 0 <= maps.min() and maps.max() <= 1
            for t in range(3):  # the motion is where the square is
                assert maps[t, 95:115].max() == 1.0
                assert maps[t, :90].max() < 0.01 and maps[t, 120:].max() < 0.01
    assert not flow_map(None, frames[0]).any()
    noise = rng.integers(0, 255, (H, W, 3), np.uint8)
    assert flow_map(noise, noise).max() <= 1


def test_unknown_motion_kind():
    with pytest.raises(ValueError, match="unknown motion kind 'optical'.*mode, median, flow"):
        check_motion_kind("optical")


def test_resize_motion_nearest_like_torch():
    import torch

    delta = np.random.default_rng(1).random((2, H, W)).astype(np.float32)
    ours = resize_motion(delta)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(delta)[None], size=(128, 128))
    expected = np.rint(theirs[0].numpy() * 255).astype(np.uint8)
    assert ours.shape == (2, 128, 128) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, expected)


def test_preprocess_matches_pil_lanczos_and_checks_input():
    frame = np.random.default_rng(2).integers(0, 255, (H, W, 3), np.uint8)
    expected = np.asarray(Image.fromarray(frame).resize((128, 128), Image.LANCZOS))
    np.testing.assert_array_equal(preprocess_frame(frame), expected)
    batch = preprocess_frames(np.stack([frame, frame[::-1]]))
    assert batch.shape == (2, 128, 128, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], expected)
    tall = np.concatenate([frame, np.zeros((4, W, 3), np.uint8)])  # Carnival's 214 rows
    np.testing.assert_array_equal(preprocess_frame(tall), expected)
    with pytest.raises(ValueError, match=r"uint8 RGB frame of shape \(210,160,3\)"):
        preprocess_frame(frame.astype(np.float32))
    with pytest.raises(ValueError, match="got uint8"):
        preprocess_frame(frame[:, :, :2])
    with pytest.raises(ValueError, match=r"\(B,210,160,3\)"):
        preprocess_frames(frame)


def test_pixel_mode_per_channel_ties_to_smaller():
    frames = np.zeros((5, 2, 3, 3), np.uint8)
    frames[:3, 0, 0, 0] = 7  # value 7 three times, 0 twice
    frames[:2, 0, 1, 1] = 9  # 9 twice, 0 three times
    frames[:2, 1, 2, 2] = 4  # tie below: 4, 4, 5, 5, 0 -> 4
    frames[2:4, 1, 2, 2] = 5
    frames[4, 1, 2, 2] = 200
    mode = pixel_mode(frames)
    assert mode.shape == (2, 3, 3)
    assert mode[0, 0, 0] == 7 and mode[0, 1, 1] == 0 and mode[1, 2, 2] == 4


def test_cell_winners_names_the_box_each_cell_holds():
    from spacemoc.data.motion import cell_winners

    small, large, far = [12, 15, 2, 2], [10, 14, 6, 4], [100, 150, 16, 10]
    assert cell_winners(np.array([small, large, far]), 16) == {17: 1, 11 * 16 + 10: 2}
    assert cell_winners(np.array([large, small]), 16) == {17: 0}
    # equal boxes: the first keeps the cell
    assert cell_winners(np.array([small, small]), 16) == {17: 0}
    assert cell_winners(np.zeros((0, 4)), 8) == {}
