"""The overlap suppression: which boxes it drops, and that every consumer reads it from the files
a run writes (latents, classifier, exported config), as the box readout."""

from __future__ import annotations

import numpy as np
import pytest

from spacemoc.geometry import boxes_to_z_where, suppress_overlaps


def z_where(*boxes):
    """Pixel boxes [x, y, w, h] -> (N,4) z_where."""
    return boxes_to_z_where(np.array(boxes, dtype=np.float64))


def test_a_box_mostly_inside_a_more_present_one_is_dropped():
    where = z_where(
        [10, 10, 20, 20],  # 0: the object
        [12, 12, 6, 6],  # 1: a second, smaller box inside it
        [25, 25, 10, 10],  # 2: a quarter of it inside box 0: kept at 0.5
        [100, 100, 8, 8],  # 3: elsewhere
        [11, 11, 18, 18],  # 4: absent (presence 0.3): never counted, never changed
    )
    prob = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
    out = suppress_overlaps(prob, where, 0.5)
    np.testing.assert_array_equal(out, [0.9, 0.0, 0.7, 0.6, 0.3])
    np.testing.assert_array_equal(prob, [0.9, 0.8, 0.7, 0.6, 0.3])  # the input is not changed
    # 0.25 of box 2 lies inside box 0: dropped at 0.25, kept above
    np.testing.assert_array_equal(suppress_overlaps(prob, where, 0.25)[2], 0.0)
    np.testing.assert_array_equal(suppress_overlaps(prob, where, 0.26)[2], 0.7)
    np.testing.assert_array_equal(suppress_overlaps(prob, where, 0.0), prob)  # 0: off


def test_the_more_present_box_is_kept_whichever_is_larger():
    where = z_where([10, 10, 20, 20], [12, 12, 6, 6])
    out = suppress_overlaps(np.array([0.6, 0.9]), where, 0.5)
    np.testing.assert_array_equal(out, [0.0, 0.9])


def test_only_kept_boxes_suppress():
    # 1 is dropped by 0; 2 overlaps only 1, so it stays
    where = z_where([0, 0, 10, 10], [6, 0, 10, 10], [14, 0, 10, 10])
    out = suppress_overlaps(np.array([0.9, 0.8, 0.7]), where, 0.4)
    np.testing.assert_array_equal(out, [0.9, 0.0, 0.7])


def test_frames_are_suppressed_separately():
    one = z_where([10, 10, 20, 20], [12, 12, 6, 6])
    where = np.stack([np.stack([one, one, one])])  # (1,3,N=2,4): frames of a sample
    prob = np.array([[[0.9, 0.8], [0.8, 0.9], [0.9, 0.4]]])
    out = suppress_overlaps(prob, where, 0.5)
    np.testing.assert_array_equal(out, [[[0.9, 0.0], [0.0, 0.9], [0.9, 0.4]]])


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_an_overlap_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        suppress_overlaps(np.ones(2), z_where([0, 0, 5, 5], [0, 0, 5, 5]), bad)


def test_the_setting_is_read_from_what_a_run_records(tmp_path):
    import yaml

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.models.readouts import resolve_overlap_suppression

    assert resolve_overlap_suppression(folder=tmp_path) == 0.0  # records nothing: the default
    clf = ZWhatClassifier(
        kind="nn",
        game="pong",
        labels=("no_label", "ball"),
        centroids=np.zeros((1, 2)),
        centroid_labels=np.array([1]),
        overlap_suppression=0.4,
    )
    clf.save(tmp_path / "classifier.npz")
    assert ZWhatClassifier.load(tmp_path / "classifier.npz").overlap_suppression == 0.4
    assert resolve_overlap_suppression(folder=tmp_path) == 0.4
    assert resolve_overlap_suppression(classifier=clf) == 0.4
    assert resolve_overlap_suppression(0.7, folder=tmp_path) == 0.7  # an explicit choice wins
    # An exported detector's config says how it was evaluated; without the key, the default
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"eval": {"boxes": "alpha"}}))
    assert resolve_overlap_suppression(folder=tmp_path) == 0.0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"eval": {"overlap_suppression": 0.6}}))
    assert resolve_overlap_suppression(folder=tmp_path) == 0.6
    with pytest.raises(ValueError, match="overlap suppression"):
        resolve_overlap_suppression("half")


def test_a_classifier_does_not_mix_latents_of_different_suppressions(tmp_path):
    from spacemoc.stages.classifier import _check_same_model

    class Lat:
        def __init__(self, **attrs):
            self.attrs = {"game": "pong", "model_sha256": "abc", "box_readout": "alpha", **attrs}

    _check_same_model([Lat(), Lat(overlap_suppression=0.0)], ["a.h5", "b.h5"])  # absent: off
    with pytest.raises(ValueError, match="different overlap_suppression"):
        _check_same_model([Lat(overlap_suppression=0.5), Lat()], ["a.h5", "b.h5"])
