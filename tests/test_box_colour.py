"""The box colour (spacemoc.box_colour) and classifiers that label by it."""

from __future__ import annotations

import numpy as np
import pytest

from spacemoc.box_colour import box_colour, box_colours
from spacemoc.classifier import (
    FEATURES,
    KINDS,
    ZWhatClassifier,
    feature_scales,
    label_features,
)
from spacemoc.games import get_game

BLUE, RED, WHITE = (0, 0, 200), (220, 30, 30), (255, 255, 255)


def image_with(sprites, size=32, background=BLUE) -> np.ndarray:
    """A (size,size,3) image of ``background`` with filled rectangles (x0, y0, x1, y1, colour)."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = background
    for x0, y0, x1, y1, colour in sprites:
        image[y0:y1, x0:x1] = colour
    return image


def corners(x0, y0, x1, y1, size=32):
    return np.array([x0, y0, x1, y1], float) / size


def test_the_colour_of_a_sprite_not_of_the_background_around_it():
    image = image_with([(10, 10, 14, 20, RED)])
    red = np.array(RED) / 255
    np.testing.assert_allclose(box_colour(image, corners(10, 10, 14, 20)), red, atol=1e-6)
    # a loose box: the background inside it does not count
    np.testing.assert_allclose(box_colour(image, corners(6, 6, 18, 24)), red, atol=1e-6)
    # a filled sprite its box fits exactly (a paddle): the ring outside is the background
    image = image_with([(0, 0, 4, 32, WHITE)])  # at the image's edge: the ring is clipped
    np.testing.assert_allclose(box_colour(image, corners(0, 0, 4, 32)), [1, 1, 1], atol=1e-6)


def test_two_sprites_and_faint_differences():
    image = image_with([(10, 10, 12, 12, RED), (12, 10, 14, 12, WHITE)])
    both = (np.array(RED) + np.array(WHITE)) / 2 / 255
    np.testing.assert_allclose(box_colour(image, corners(8, 8, 16, 14)), both, atol=1e-6)
    # pixels within the tolerance of the background (resampling ringing) are background
    image = image_with([(10, 10, 14, 14, (0, 0, 210)), (11, 11, 13, 13, RED)])
    np.testing.assert_allclose(box_colour(image, corners(9, 9, 15, 15)), np.array(RED) / 255)


def test_a_box_of_background_or_of_the_whole_image():
    image = image_with([])
    np.testing.assert_allclose(box_colour(image, corners(4, 4, 8, 8)), np.array(BLUE) / 255)
    image = image_with([(3, 3, 6, 6, RED)])
    whole = box_colour(image, [0, 0, 1, 1])  # no ring: the commonest colour inside is background
    np.testing.assert_allclose(whole, np.array(RED) / 255, atol=1e-6)
    # a box beyond the image, or thinner than a pixel, still reads at least one pixel
    assert box_colour(image, [-0.5, -0.5, 0.02, 0.02]).shape == (3,)
    assert box_colour(image, [0.5, 0.5, 0.5, 0.5]).shape == (3,)


def test_box_colours_of_present_boxes_only():
    images = np.stack([image_with([(10, 10, 14, 20, RED)]), image_with([])])
    boxes = np.tile(corners(10, 10, 14, 20), (2, 2, 1))
    present = np.array([[True, False], [False, False]])
    out = box_colours(images, boxes, present)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], np.array(RED) / 255, atol=1e-6)
    assert not out[~present].any()


# ----------------------------------------------------------------------------- classifiers


def shapes_alike_colours_apart(n=60, seed=0):
    """Encodings of two classes drawn from one distribution, colours far apart."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2 * n, 8))
    y = np.repeat([1, 2], n)
    colours = np.where(y[:, None] == 1, 0.2, 0.8) + 0.02 * rng.standard_normal((2 * n, 3))
    return z, colours, y


def test_a_colour_classifier_tells_apart_what_the_encodings_do_not():
    from spacemoc.classifier import fit_centroid_classifier

    z, colours, y = shapes_alike_colours_apart()
    labels = get_game("pong").labels
    accuracy = {}
    for features in FEATURES:
        scales = feature_scales(z, colours) if features == "encoding+colour" else None
        x = label_features(features, z, colours, scales)
        clf = fit_centroid_classifier(x, y, 2, [1, 2], game="pong", labels=labels)
        clf.features, clf.feature_scales = features, scales
        accuracy[features] = (clf.predict(z, colours) == y).mean()
    assert accuracy["colour"] == 1.0 and accuracy["encoding+colour"] == 1.0
    assert accuracy["encoding"] < 0.8


def test_encoding_and_colour_weigh_alike():
    z, colours, _ = shapes_alike_colours_apart()
    scales = feature_scales(z * 10, colours)
    x = label_features("encoding+colour", z * 10, colours, scales)
    assert x.shape == (len(z), 11)
    assert x[:, :8].var(0).sum() == pytest.approx(1) and x[:, 8:].var(0).sum() == pytest.approx(1)
    assert feature_scales(np.ones((4, 2)), np.ones((4, 3))).tolist() == [1.0, 1.0]


def test_colour_features_round_trip_and_are_required(tmp_path):
    z, colours, y = shapes_alike_colours_apart()
    clf = ZWhatClassifier(
        "ridge", "pong", get_game("pong").labels, coef=np.ones((1, 11)), intercept=np.zeros(1),
        classes=np.array([1, 2]), features="encoding+colour", feature_scales=np.array([2.0, 0.5]),
    )  # fmt: skip
    clf.save(tmp_path / "c.npz")
    back = ZWhatClassifier.load(tmp_path / "c.npz")
    assert back.features == "encoding+colour"
    np.testing.assert_array_equal(back.feature_scales, [2.0, 0.5])
    np.testing.assert_array_equal(back.predict(z, colours), clf.predict(z, colours))
    with pytest.raises(ValueError, match="needs the boxes' colours"):
        back.predict(z)
    with pytest.raises(ValueError, match="3 box colours for 120 encodings"):
        back.predict(z, colours[:3])
    with pytest.raises(ValueError, match="unknown label features 'shape'"):
        ZWhatClassifier("nn", features="shape")
    # a classifier of encodings takes and ignores colours; files without the record are one
    plain = ZWhatClassifier("nn", "pong", centroids=np.zeros((1, 8)), centroid_labels=np.ones(1))
    assert plain.predict(z, colours).tolist() == [1] * len(z)


def test_the_classifier_stage_fits_on_colours_and_needs_them(tmp_path):
    import h5py

    from spacemoc.latents import FORMAT
    from spacemoc.stages.classifier import train_classifier

    z, colours, y = shapes_alike_colours_apart()
    game = get_game("pong")
    n = len(z)

    def latents(path, with_colours):
        with h5py.File(path, "w") as f:
            f["z_pres_prob"] = np.ones((n, 1, 1), np.float32)
            f["z_where"] = np.zeros((n, 1, 1, 4), np.float32)
            f["z_what"] = z.reshape(n, 1, 1, -1).astype(np.float32)
            if with_colours:
                f["box_colour"] = colours.reshape(n, 1, 1, 3).astype(np.float32)
            f["label"] = y.reshape(n, 1, 1).astype(np.int16)
            f["gt_index"] = np.zeros((n, 1, 1), np.int32)
            f.attrs.update(format=FORMAT, game="pong", labels=list(game.labels),
                           split="validation", n_samples=n, model_path="m", model_step=0,
                           model_sha256="", data_path="d")  # fmt: skip
        return path

    path = latents(tmp_path / "validation.h5", True)
    clf = train_classifier(path, tmp_path / "c.npz", features="encoding+colour")
    back = ZWhatClassifier.load(tmp_path / "c.npz")
    assert back.features == "encoding+colour" and back.feature_scales is not None
    assert (back.predict(z, colours) == y).all()
    assert (clf.predict(z, colours) == y).all()
    old = latents(tmp_path / "old.h5", False)
    with pytest.raises(ValueError, match="without box colours.*remake"):
        train_classifier(old, tmp_path / "d.npz", features="colour")
    train_classifier(old, tmp_path / "e.npz")  # encodings need no colours


def test_the_schema_offers_what_the_classifier_knows():
    from spacemoc.config import schema_property

    assert schema_property("eval", "label_features")["enum"] == list(FEATURES)
    assert schema_property("eval", "classifier")["enum"] == list(KINDS)
