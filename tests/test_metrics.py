"""Detection, joint and encoding metrics on hand-made cases whose answers are worked out here."""

from __future__ import annotations

import numpy as np
import pytest

from spacemoc.metrics import (
    detection_scores,
    encoding_scores,
    few_shot_indices,
    joint_scores,
    recall_by_label,
    relevant_subset,
    split_encodings,
)

# Two objects in a 160x210 frame: [x, y, w, h] in pixels.
GT = np.array([[10.0, 40.0, 8.0, 10.0], [80.0, 120.0, 4.0, 16.0]])


def with_score(boxes, scores):
    return np.column_stack([np.asarray(boxes, float), scores])


def test_perfect_detections_score_one_everywhere():
    pred = [with_score(GT, [0.9, 0.8]), with_score(GT[:1], [0.7])]
    s = detection_scores(pred, [GT, GT[:1]])
    for key in ("precision", "recall", "f_score", "ap_avg", "ap_0.5", "count_accuracy"):
        assert s[key] == pytest.approx(1.0), key


def test_one_missed_object():
    s = detection_scores([with_score(GT[:1], [0.9])], [GT])
    assert s["precision"] == 1.0
    assert s["recall"] == 0.5
    assert s["f_score"] == pytest.approx(2 / 3)
    assert s["count_accuracy"] == 0.0
    # One hit at recall 0.5: the 6 recall points 0..0.5 have precision 1, the other 5 have none.
    assert s["ap_0.5"] == pytest.approx(6 / 11)
    assert s["ap_avg"] == pytest.approx(6 / 11)


def test_duplicate_detection_is_a_false_positive():
    pred = [with_score([GT[0], GT[0]], [0.9, 0.8])]
    s = detection_scores(pred, [GT[:1]])
    assert s["precision"] == 0.5
    assert s["recall"] == 1.0
    assert s["f_score"] == pytest.approx(2 / 3)
    assert s["count_accuracy"] == 0.0
    # The duplicate ranks below the hit, so precision is 1 at every recall level.
    assert s["ap_0.5"] == pytest.approx(1.0)


def test_frames_without_ground_truth():
    empty_gt = np.zeros((0, 4))
    # A frame with nothing to find and nothing found changes nothing...
    s = detection_scores([with_score(GT[:1], [0.9]), np.zeros((0, 5))], [GT[:1], empty_gt])
    assert (s["precision"], s["recall"], s["count_accuracy"]) == (1.0, 1.0, 1.0)
    # ...a prediction there is a false positive.
    s = detection_scores(
        [with_score(GT[:1], [0.9]), with_score(GT[:1], [0.95])], [GT[:1], empty_gt]
    )
    assert (s["precision"], s["recall"], s["count_accuracy"]) == (0.5, 1.0, 0.5)
    # With the highest confidence on the false positive, precision is 1/2 at recall 1.
    assert s["ap_0.5"] == pytest.approx(0.5)
    # No ground truth and no prediction anywhere: nothing wrong, AP undefined (no division by 0).
    s = detection_scores([np.zeros((0, 5))], [empty_gt])
    assert (s["precision"], s["recall"], s["f_score"]) == (1.0, 1.0, 1.0)
    assert np.isnan(s["ap_avg"])
    # Predictions but no ground truth at all: precision 0.
    s = detection_scores([with_score(GT[:1], [0.9])], [empty_gt])
    assert (s["precision"], s["recall"], s["f_score"]) == (0.0, 1.0, 0.0)
    # Nothing predicted although there is something to find: precision and recall 0.
    s = detection_scores([np.zeros((0, 5))], [GT])
    assert (s["precision"], s["recall"], s["f_score"], s["ap_avg"]) == (0.0, 0.0, 0.0, 0.0)


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        detection_scores([], [])
    with pytest.raises(ValueError, match="frames"):
        detection_scores([np.zeros((0, 5))], [])


def test_centre_distance_threshold():
    # GT of normalised size 0.1 x 0.1: diagonal 0.1414, so a hit needs a centre distance below
    # 0.0707 (normalised) = 11.31 px along x.
    gt = [np.array([[40.0, 100.0, 16.0, 21.0]])]
    inside = detection_scores([np.array([[40.0 + 11.2, 100.0, 16.0, 21.0, 0.9]])], gt)
    outside = detection_scores([np.array([[40.0 + 11.44, 100.0, 16.0, 21.0, 0.9]])], gt)
    assert (inside["precision"], inside["recall"]) == (1.0, 1.0)
    assert (outside["precision"], outside["recall"]) == (0.0, 0.0)


def test_a_prediction_falls_back_to_its_best_unused_match():
    # Two overlapping GT boxes; both predictions prefer the first. The reference gave the second
    # prediction a miss; one-to-one matching gives it the other box.
    gt = [np.array([[50.0, 50.0, 20.0, 20.0], [54.0, 50.0, 20.0, 20.0]])]
    pred = [np.array([[50.0, 50.0, 20.0, 20.0, 0.9], [51.0, 50.0, 20.0, 20.0, 0.8]])]
    s = detection_scores(pred, gt)
    assert (s["precision"], s["recall"]) == (1.0, 1.0)


def test_ap_of_a_known_ranking():
    far = [140.0, 10.0, 5.0, 5.0]
    pred = [with_score([GT[0], far, GT[1]], [0.9, 0.8, 0.7])]
    s = detection_scores(pred, [GT])
    # hit, miss, hit: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> 6 points at 1, 5 at 2/3.
    assert s["ap_0.5"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert s["precision"] == pytest.approx(2 / 3)
    # A box shifted by half its width has IoU 1/3: a hit at 0.1..0.3, a miss from 0.4 on.
    shifted = GT[0] + [4.0, 0, 0, 0]
    s = detection_scores([with_score([shifted], [0.9])], [GT[:1]])
    assert s["ap_0.3"] == pytest.approx(1.0)
    assert s["ap_0.4"] == pytest.approx(0.0)
    assert s["ap_avg"] == pytest.approx(3 / 9)


def test_relevant_subset_filters_area_and_labels():
    # Pong: labels 1 Ball, 2 Enemy, 3 EnemyScore, 4 Player; the area starts at y = 0.1619 * 210.
    hud = [20.0, 2.0, 12.0, 10.0]
    pred = [with_score([GT[0], hud], [0.9, 0.8])]
    gt = [np.array([GT[0], hud])]
    labels = [np.array([1, 3])]
    rel_pred, rel_gt, rel_labels, keep = relevant_subset(pred, gt, labels, "pong")
    assert keep[0].tolist() == [True, False]
    np.testing.assert_array_equal(rel_gt[0], GT[:1])
    assert rel_labels[0].tolist() == [1]
    assert detection_scores(rel_pred, rel_gt)["f_score"] == 1.0


def test_joint_score_with_swapped_labels():
    boxes = [GT]
    right = joint_scores(boxes, [np.array([1, 2])], boxes, [np.array([1, 2])], n_labels=5)
    assert (right["precision"], right["recall"], right["f1"]) == (1.0, 1.0, 1.0)
    swapped = joint_scores(boxes, [np.array([2, 1])], boxes, [np.array([1, 2])], n_labels=5)
    assert (swapped["precision"], swapped["recall"], swapped["f1"]) == (0.0, 0.0, 0.0)
    assert swapped["confusion"][1, 2] == 1 and swapped["confusion"][2, 1] == 1
    # A missed object and a false positive land in the not-detected / not-an-object cells.
    far = np.array([[140.0, 10.0, 5.0, 5.0]])
    s = joint_scores(
        [np.vstack([GT[:1], far])], [np.array([1, 4])], [GT], [np.array([1, 2])], n_labels=5
    )
    assert s["confusion"][5, 4] == 1  # not an object, predicted 4
    assert s["confusion"][2, 6] == 1  # GT 2, not detected
    assert (s["precision"], s["recall"]) == (0.5, 0.5)


# --------------------------------------------------------------------------- encodings


def blobs(n_per_class=(40, 40, 40), dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (len(n_per_class), dim))
    z = np.concatenate(
        [c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, n_per_class, strict=True)]
    )
    y = np.concatenate([np.full(n, label + 1) for label, n in enumerate(n_per_class)])
    return z, y


def test_encoding_scores_on_separated_classes():
    z, y = blobs()
    s = encoding_scores(z, y, few_shot=(1, 4), seed=0)
    assert s["few_shot_1"] == 1.0 and s["few_shot_4"] == 1.0
    assert s["ami"] == pytest.approx(1.0) and s["ari"] == pytest.approx(1.0)
    assert s["cluster_nn_accuracy"] == 1.0
    assert s["too_rare"] == []


def test_encoding_scores_match_scikit_learn_called_directly():
    from sklearn.cluster import KMeans
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score
    from sklearn.model_selection import train_test_split

    z, y = blobs(spread=12.0, seed=3)  # overlapping classes: scores well below 1
    s = encoding_scores(z, y, few_shot=(4, 16), seed=7)
    z_tr, z_te, y_tr, y_te = train_test_split(z, y, test_size=12, random_state=7, stratify=y)
    clusters = KMeans(n_clusters=3, random_state=7, n_init=10).fit(z_tr).predict(z_te)
    assert s["ami"] == pytest.approx(adjusted_mutual_info_score(y_te, clusters))
    assert s["ari"] == pytest.approx(adjusted_rand_score(y_te, clusters))
    for k in (4, 16):
        idx = np.concatenate([np.flatnonzero(y_tr == c)[:k] for c in (1, 2, 3)])
        ridge = RidgeClassifier().fit(z_tr[idx], y_tr[idx])
        assert s[f"few_shot_{k}"] == pytest.approx(ridge.score(z_te, y_te))
    assert 0 < s["few_shot_16"] < 1


def test_split_is_seeded_shuffled_and_stratified():
    z, y = blobs()
    a = split_encodings(z, y, seed=1)
    b = split_encodings(z, y, seed=1)
    c = split_encodings(z, y, seed=2)
    np.testing.assert_array_equal(a[3], b[3])
    assert not np.array_equal(a[2], c[2])
    assert sorted(np.unique(a[3]).tolist()) == [1, 2, 3]  # every class in the test split
    assert few_shot_indices(np.array([5, 5, 7, 5, 7]), 2).tolist() == [0, 1, 2, 4]


def test_too_rare_classes_are_reported_not_crashed_on():
    z, y = blobs((30, 30, 1))
    with pytest.warns(UserWarning, match="fewer than 2 samples"):
        s = encoding_scores(z, y, few_shot=(1,), seed=0)
    assert s["too_rare"] == [3]
    assert s["few_shot_1"] == 1.0
    with pytest.warns(UserWarning, match="undefined"):
        s = encoding_scores(z[:30], y[:30], few_shot=(1,))
    assert np.isnan(s["ami"]) and np.isnan(s["few_shot_1"])


def test_recall_by_label_splits_the_detection_recall_by_class():
    # frame 1: both objects found; frame 2: only the second (label 2), plus a false positive
    pred = [
        with_score(GT, [0.9, 0.8]),
        with_score([[80.5, 120.0, 4.0, 16.0], [140.0, 10.0, 5.0, 5.0]], [0.9, 0.7]),
    ]
    gt, labels = [GT, GT], [np.array([1, 2]), np.array([1, 2])]
    counts = recall_by_label(pred, gt, labels)
    assert counts == {1: (1, 2), 2: (2, 2)}
    found = sum(f for f, _ in counts.values())
    total = sum(t for _, t in counts.values())
    assert found / total == pytest.approx(detection_scores(pred, gt)["recall"])
    # one prediction cannot find two objects; no ground truth, no row
    assert recall_by_label([with_score(GT[:1], [1.0])], [np.repeat(GT[:1], 2, 0)], [[3, 3]]) == {
        3: (1, 2)
    }
    assert recall_by_label([np.zeros((0, 5))], [np.zeros((0, 4))], [np.zeros(0)]) == {}
    with pytest.raises(ValueError, match="labels"):
        recall_by_label([np.zeros((0, 5))], [GT], [np.array([1])])


def test_one_per_cell_keeps_the_largest_box_of_a_cell_in_the_original_order():
    from spacemoc.stages.class_recall import one_per_cell

    small, large, far = [12, 15, 2, 2], [10, 14, 6, 4], [100, 150, 16, 10]
    kept = one_per_cell(np.array([far, small, large], float), 16)
    np.testing.assert_array_equal(kept, [far, large])
    # an 8x8 grid's cells are twice as large: a box 8 px to the left shares only its cell
    assert len(one_per_cell(np.array([small, [4, 15, 2, 2]], float), 16)) == 2
    assert len(one_per_cell(np.array([small, [4, 15, 2, 2]], float), 8)) == 1
    assert one_per_cell(np.zeros((0, 4)), 16).shape == (0, 4)
