"""Centroid labelling (spec §6.2, intended rule), the classifier files and their checks."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from spacemoc.classifier import (
    ZWhatClassifier,
    fit_centroid_classifier,
    fit_ridge_classifier,
    label_centroids,
    load_joblib,
    write_label_csv,
)
from spacemoc.games import get_game


def line_points(labels, start=0.0):
    """Encodings on a line at distance 1, 2, 3, ... from the centroid at the origin."""
    return np.array([[start + i + 1.0, 0.0] for i in range(len(labels))]), np.array(labels)


def test_label_needs_more_than_three_over_i_plus_one_votes():
    # Neighbours A, B, B: A at i=0 has 1 > 3? no; B at i=1 has 1 > 1.5? no; B at i=2 has 2 > 1: B.
    # The reference's precedence bug took A, the first neighbour's label.
    z, y = line_points([1, 2, 2, 1, 1, 1])
    assert label_centroids(np.zeros((1, 2)), z, y, [1, 2]).tolist() == [2]


def test_a_label_already_used_needs_twice_the_votes():
    # Centroid 0 takes label 2 (neighbours 2, 2). Centroid 1 sees 2, 2, 3, 3, 3: label 2 would
    # need 2 > 6/2 (no), 3 needs 3 > 3/5 at i=4... but already at i=3: 2 > 3/4 -> label 3.
    z0, y0 = line_points([2, 2])
    z1, y1 = line_points([2, 2, 3, 3, 3], start=100.0)
    centroids = np.array([[0.0, 0.0], [100.0, 0.0]])
    labels = label_centroids(centroids, np.vstack([z0, z1]), np.concatenate([y0, y1]), [2, 3])
    assert labels.tolist() == [2, 3]
    # With a third centroid whose neighbours are all label 2, 2 is accepted once 2 > 6/(i+1)
    # would need i >= 3: count 4 at i = 3 > 1.5.
    z2, y2 = line_points([2, 2, 2, 2], start=200.0)
    centroids = np.vstack([centroids, [[200.0, 0.0]]])
    labels = label_centroids(
        centroids, np.vstack([z0, z1, z2]), np.concatenate([y0, y1, y2]), [2, 3]
    )
    assert labels.tolist() == [2, 3, 2]


def test_fallback_takes_the_first_unassigned_label():
    # Alternating labels never reach the threshold among two neighbours: fallback.
    z, y = line_points([1, 2])
    assert label_centroids(np.zeros((1, 2)), z, y, [4, 1, 2]).tolist() == [4]


def test_centroid_classifier_recovers_separated_classes():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = np.concatenate([c + rng.normal(0, 0.5, (30, 2)) for c in centres])
    y = np.repeat([1, 2, 4], 30)
    clf = fit_centroid_classifier(z, y, 3, [1, 2, 4], seed=0)
    assert sorted(clf.centroid_labels.tolist()) == [1, 2, 4]
    assert (clf.predict(z) == y).mean() == 1.0


def test_npz_round_trip_without_pickles_and_game_check(tmp_path):
    game = get_game("pong")
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 0.3, (20, 4)) + 5 * np.eye(4)[k] for k in range(3)])
    y = np.repeat([1, 2, 4], 20)
    for clf in (
        fit_centroid_classifier(z, y, 3, [1, 2, 4], game="pong", labels=game.labels),
        fit_ridge_classifier(z, y, shots=5, game="pong", labels=game.labels),
    ):
        path = tmp_path / f"{clf.kind}.npz"
        clf.save(path)
        with np.load(path, allow_pickle=False) as f:  # loads without unpickling
            assert str(f["kind"]) == clf.kind
        back = ZWhatClassifier.load(path, game="pong")
        np.testing.assert_array_equal(back.predict(z), clf.predict(z))
        assert (back.predict(z) == y).mean() == 1.0
        # The scikit-learn twin predicts the same.
        np.testing.assert_array_equal(clf.to_sklearn().predict(z), clf.predict(z))
        with pytest.raises(ValueError, match="trained for game 'pong', not 'boxing'"):
            ZWhatClassifier.load(path, game="boxing")
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        back.predict(np.zeros((2, 3)))


def test_joblib_needs_trust_and_label_csv_has_a_header(tmp_path):
    import joblib

    clf = fit_centroid_classifier(
        np.array([[0.0], [0.1], [5.0], [5.1]]),
        np.array([1, 1, 2, 2]),
        2,
        [1, 2],
        game="pong",
        labels=get_game("pong").labels,
    )
    path = tmp_path / "classifier.joblib"
    joblib.dump(clf.to_sklearn(), path)
    with pytest.raises(ValueError, match="trust=True"):
        load_joblib(path)
    est = load_joblib(path, trust=True, game="pong")
    assert est.predict([[5.05]]).tolist() == [2]
    with pytest.raises(ValueError, match="not 'tennis'"):
        load_joblib(path, trust=True, game="tennis")
    write_label_csv(clf, tmp_path / "labels.csv")
    rows = list(csv.reader(open(tmp_path / "labels.csv")))
    assert rows[0] == ["cluster", "label", "label_name"]
    assert sorted(r[2] for r in rows[1:]) == ["Ball", "Enemy"]


def test_a_model_that_finds_nothing_gets_an_empty_classifier(tmp_path):
    """An untrained model: no present cell, so nothing to fit; later stages still run."""
    import h5py

    from spacemoc.latents import FORMAT
    from spacemoc.stages.classifier import train_classifier

    game = get_game("pong")
    path = tmp_path / "latents.h5"
    n, t, c, d = 2, 2, 16, 8
    with h5py.File(path, "w") as f:
        f["z_pres_prob"] = np.zeros((n, t, c), np.float32)
        f["z_where"] = np.zeros((n, t, c, 4), np.float32)
        f["z_what"] = np.zeros((n, t, c, d), np.float32)
        f["label"] = np.full((n, t, c), -1, np.int16)
        f["gt_index"] = np.full((n, t, c), -1, np.int32)
        f.attrs.update(
            format=FORMAT,
            game="pong",
            labels=list(game.labels),
            split="validation",
            n_samples=n,
            model_path="m",
            model_step=0,
            model_sha256="",
            data_path="d",
        )
    with pytest.warns(UserWarning, match="empty"):
        clf = train_classifier(path, tmp_path / "c.npz", tmp_path / "c.joblib",
                               tmp_path / "c.csv")  # fmt: skip
    back = ZWhatClassifier.load(tmp_path / "c.npz", game="pong")
    assert back.empty and back.predict(np.ones((3, d))).tolist() == [0, 0, 0]
    assert clf.to_sklearn().predict(np.ones((2, d))).tolist() == [0, 0]


def _latents_file(path, codes, labels, model_sha256="abc"):
    """A latents file with one present cell per frame: ``codes`` (n,D) and their label names."""
    import h5py

    from spacemoc.latents import FORMAT

    game = get_game("pong")
    n, d = len(codes), codes.shape[1]
    with h5py.File(path, "w") as f:
        f["z_pres_prob"] = np.ones((n, 1, 1), np.float32)
        f["z_where"] = np.zeros((n, 1, 1, 4), np.float32)  # a box in the middle of the frame
        f["z_what"] = codes.reshape(n, 1, 1, d).astype(np.float32)
        f["label"] = np.array([game.labels.index(x) for x in labels], np.int16).reshape(n, 1, 1)
        f["gt_index"] = np.zeros((n, 1, 1), np.int32)
        f.attrs.update(format=FORMAT, game="pong", labels=list(game.labels), split="validation",
                       n_samples=n, model_path="m", model_step=0, model_sha256=model_sha256,
                       data_path="d")  # fmt: skip
    return path


def test_the_classifier_learns_from_the_agent_split_too(tmp_path):
    """A class the validation frames show only one way (a paddle in full) is recognised in the
    other way (a paddle half behind the wall) once the agent split's latents join the fit."""
    from spacemoc.stages.classifier import train_classifier

    rng = np.random.default_rng(0)

    def around(centre, n):
        return np.asarray(centre, float) + 0.05 * rng.standard_normal((n, 2))

    full_player, ball, enemy = around([0, 3], 30), around([3, 0], 30), around([-3, 0], 30)
    stub = around([2.0, 0.8], 30)  # nearer the ball's codes than the full paddle's
    validation = _latents_file(
        tmp_path / "validation.h5",
        np.concatenate([full_player, ball, enemy]),
        ["Player"] * 30 + ["Ball"] * 30 + ["Enemy"] * 30,
    )
    agent = _latents_file(
        tmp_path / "agent.h5", np.concatenate([stub, full_player]), ["Player"] * 60
    )
    labels = get_game("pong").labels
    test_stub = around([2.0, 0.8], 10)

    alone = train_classifier(validation, tmp_path / "a.npz", kind="ridge", shots=1000)
    both = train_classifier([validation, agent], tmp_path / "b.npz", kind="ridge", shots=1000)
    assert {labels[i] for i in alone.predict(test_stub)} == {"Ball"}
    assert {labels[i] for i in both.predict(test_stub)} == {"Player"}
    assert [labels[i] for i in both.predict(around([3, 0], 1))] == ["Ball"]

    other_model = _latents_file(tmp_path / "other.h5", stub, ["Player"] * 30, model_sha256="def")
    with pytest.raises(ValueError, match="different model_sha256"):
        train_classifier([validation, other_model], tmp_path / "c.npz")


def test_cluster_rules_and_their_errors():
    from spacemoc.classifier import check_clusters, choose_n_clusters

    z = np.random.default_rng(0).standard_normal((50, 4))
    assert choose_n_clusters(z, 3) == 3
    assert choose_n_clusters(z, 3, 7) == 7
    assert choose_n_clusters(z[:5], 3, "auto") <= 4  # searches no further than the encodings
    for bad in (0, -2, "many", True, 2.5):
        with pytest.raises(ValueError, match="clusters must be"):
            check_clusters(bad)


def test_auto_clusters_name_every_class_before_silhouette():
    """A large class of two far-apart looks and a small class beside one of them (Freeway's
    two groups of car encodings and the chicken): two clusters score the best silhouette but
    both centroids are cars; given the labels, `auto` keeps a k that has a chicken centroid."""
    from spacemoc.classifier import choose_n_clusters, fit_centroid_classifier

    rng = np.random.default_rng(0)
    car_left = np.array([0.0, 0.0]) + 0.5 * rng.standard_normal((300, 2))
    car_right = np.array([30.0, 0.0]) + 0.5 * rng.standard_normal((300, 2))
    chicken = np.array([0.0, 4.0]) + 0.5 * rng.standard_normal((30, 2))
    z = np.concatenate([car_left, car_right, chicken])
    y = np.array([1] * 600 + [2] * 30)
    blind = choose_n_clusters(z, 2, "auto", max_clusters=6)
    assert blind == 2
    assert set(fit_centroid_classifier(z, y, blind, [1, 2]).centroid_labels) == {1}
    k = choose_n_clusters(z, 2, "auto", max_clusters=6, y=y, candidate_labels=[1, 2])
    assert k > 2
    clf = fit_centroid_classifier(z, y, k, [1, 2])
    assert (clf.predict(chicken) == 2).all() and (clf.predict(car_right) == 1).all()


def test_more_clusters_than_objects_are_cut_to_the_objects_with_a_warning(tmp_path):
    from spacemoc.stages.classifier import train_classifier

    codes = np.random.default_rng(0).standard_normal((4, 2))
    path = _latents_file(tmp_path / "validation.h5", codes, ["Player", "Ball", "Enemy", "Ball"])
    with pytest.warns(UserWarning, match="4 relevant objects for 7 clusters: using 4"):
        clf = train_classifier(path, tmp_path / "c.npz", clusters=7)
    assert len(clf.centroids) == 4


def test_auto_clusters_keep_a_class_of_two_looks_from_swallowing_another(tmp_path):
    """Players drawn two ways (two far-apart groups of codes): one cluster per class merges the
    two nearest groups, Ball and Enemy, and loses one of them; `auto` finds the four groups."""
    from spacemoc.stages.classifier import train_classifier

    rng = np.random.default_rng(0)
    centres = {"Player": [[0, 10], [10, 0]], "Ball": [[-10, 0]], "Enemy": [[-10, 6]]}
    codes, names = [], []
    for name, looks in centres.items():
        for centre in looks:
            codes.append(np.asarray(centre, float) + 0.1 * rng.standard_normal((40, 2)))
            names += [name] * 40
    path = _latents_file(tmp_path / "validation.h5", np.concatenate(codes), names)
    labels = get_game("pong").labels
    probe = np.array([[-10, 0], [-10, 6], [0, 10], [10, 0]], float)
    expected = ["Ball", "Enemy", "Player", "Player"]

    per_class = train_classifier(path, tmp_path / "k.npz")
    auto = train_classifier(path, tmp_path / "auto.npz", clusters="auto")
    assert len(per_class.centroids) == 3 and len(auto.centroids) == 4
    assert [labels[i] for i in per_class.predict(probe)] != expected
    assert [labels[i] for i in auto.predict(probe)] == expected


def test_the_classifier_stage_fits_the_box_calibration_on_the_splits_objects(tmp_path):
    """Given the dataset split of each latents file, the stage fits the box corrections from
    the matched detections to their objects' boxes (here: every object box 3 pixels right)."""
    import h5py

    from spacemoc.stages.classifier import train_classifier

    rng = np.random.default_rng(0)
    n = 60
    codes = np.concatenate([rng.normal([0, 3], 0.05, (n, 2)), rng.normal([3, 0], 0.05, (n, 2))])
    names = ["Player"] * n + ["Ball"] * n
    latents = _latents_file(tmp_path / "validation.h5", codes, names)
    with h5py.File(latents, "r+") as f:
        from spacemoc.geometry import z_where_to_boxes

        f["z_where"][...] = [0.1, 0.1, 0.0, 0.0]  # every box 16 x 21 pixels at the centre
        model_box = z_where_to_boxes(f["z_where"][0, 0, 0])
    from spacemoc.data.env import OBJECT_DTYPE

    rows = np.zeros(2 * n, dtype=OBJECT_DTYPE)
    rows["sample"] = np.arange(2 * n)
    rows["x"], rows["y"] = model_box[0] + 3, model_box[1]
    rows["w"], rows["h"] = model_box[2], model_box[3]
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["frames"] = np.zeros((2 * n, 1, 1, 1, 3), np.uint8)
        f["objects"] = rows
        f.attrs.update(game="pong", split="validation", labels=list(get_game("pong").labels))

    plain = train_classifier(latents, tmp_path / "plain.npz")
    assert plain.box_calibration is None
    clf = train_classifier(latents, tmp_path / "c.npz", data_paths=[data])
    moved = clf.box_calibration.apply(model_box[None], codes[:1], clf.predict(codes[:1]))
    np.testing.assert_allclose(moved[0], model_box + [3, 0, 0, 0], atol=0.05)
    assert ZWhatClassifier.load(tmp_path / "c.npz").box_calibration is not None
    with pytest.raises(ValueError, match="1 dataset files for 2 latents files"):
        train_classifier([latents, latents], tmp_path / "d.npz", data_paths=[data])
