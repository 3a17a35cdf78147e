"""Detection and encoding metrics (spec §5.2-5.3, §6.4), with the reference's defects fixed.

Boxes are ``[x, y, w, h]`` (top-left corner, size) in frame pixels; predictions carry a fifth
column, the confidence. Matching and areas are computed in *normalised* coordinates (x / width,
y / height of the frame, 160x210 by default) as in the reference, so the centre-distance criterion
does not depend on the frame's aspect ratio.

Detection (``detection_scores``):

* AP: 11-point interpolated, IoU thresholds 0.1, 0.2, ..., 0.9 (``ap_avg`` is their mean,
  ``ap_0.5`` the one at 0.5). Per frame, predictions are taken by decreasing confidence and each
  takes the *best unused* ground-truth box whose IoU is above the threshold. (The reference takes
  the best box even if it is used and then counts a miss: a duplicate could hide a second, real
  match. We fall back to the next best unused box.)
* precision / recall / F: the same greedy one-to-one matching, with the misalignment score
  ``max(0, 1 - |c_pred - c_gt| / diag_gt)`` > 0.5, i.e. centre distance below half the GT box's
  diagonal. ``F = 2PR / (P + R)``, 0 when P + R = 0.
* ``count_accuracy``: the fraction of frames whose number of predictions equals the number of
  ground-truth objects.

Empty cases (no division by zero): with no prediction at all, precision is 1 when there is no
ground truth either (nothing claimed, nothing to find) and 0 otherwise; with no ground truth,
recall is 1 (nothing to miss); AP is NaN (undefined: written as an empty cell) when the split has
no ground-truth object. An empty list of frames is an error.

Encodings (``encoding_scores``): seeded, shuffled, stratified train/test split; few-shot
``RidgeClassifier`` accuracy with k labelled samples per class; seeded ``KMeans`` AMI / ARI;
accuracy of the centroid-labelled 1-NN classifier (``spacemoc.classifier``). Classes with fewer
than two samples cannot be split: they are dropped and reported in ``too_rare``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from spacemoc.geometry import FRAME_SIZE
from spacemoc.geometry import in_relevant_area as _in_relevant_area

IOU_THRESHOLDS = tuple(np.round(np.linspace(0.1, 0.9, 9), 2))
CENTRE_THRESHOLD = 0.5  # misalignment score above which a prediction hits (spec §5.2)
JOINT_THRESHOLD = 0.2  # misalignment for the mutual-best pairs of the joint score (spec §6.4)
RECALL_POINTS = np.linspace(0.0, 1.0, 11)

DETECTION_KEYS = ("precision", "recall", "f_score", "ap_avg", "ap_0.5", "count_accuracy")


# --------------------------------------------------------------------------- boxes and matching


def _as_boxes(boxes, ncols: int) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, ncols))
    if arr.ndim != 2 or arr.shape[1] < ncols:
        raise ValueError(f"expected boxes of shape (n, {ncols}) [x, y, w, h...], got {arr.shape}")
    return arr


def _normalise(boxes: np.ndarray, frame_size) -> np.ndarray:
    width, height = frame_size
    return boxes[:, :4] / np.array([width, height, width, height], dtype=np.float64)


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Standard IoU between (M,4) and (K,4) [x, y, w, h] boxes -> (M,K)."""
    p0, p1 = pred[:, None, :2], pred[:, None, :2] + pred[:, None, 2:4]
    g0, g1 = gt[None, :, :2], gt[None, :, :2] + gt[None, :, 2:4]
    overlap = np.clip(np.minimum(p1, g1) - np.maximum(p0, g0), 0, None).prod(-1)
    union = pred[:, None, 2:4].prod(-1) + gt[None, :, 2:4].prod(-1) - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def misalignment_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``max(0, 1 - centre distance / GT diagonal)`` between (M,4) and (K,4) boxes -> (M,K)."""
    pc = pred[:, None, :2] + pred[:, None, 2:4] / 2
    gc = gt[None, :, :2] + gt[None, :, 2:4] / 2
    dist = np.linalg.norm(pc - gc, axis=-1)
    diag = np.maximum(np.linalg.norm(gt[None, :, 2:4], axis=-1), 1e-12)
    return np.clip(1.0 - dist / diag, 0.0, None)


def greedy_match(scores: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """One-to-one matching: by decreasing confidence, each prediction takes its best *unused*
    ground truth with ``score > threshold``. Returns the matched GT index per prediction (-1)."""
    n_pred, n_gt = scores.shape
    matched = np.full(n_pred, -1, dtype=np.int64)
    if n_pred == 0 or n_gt == 0:
        return matched
    used = np.zeros(n_gt, dtype=bool)
    for p in np.argsort(-confidence, kind="stable"):
        candidates = np.where(used, -np.inf, scores[p])
        g = int(np.argmax(candidates))
        if candidates[g] > threshold:
            matched[p] = g
            used[g] = True
    return matched


def mutual_best_match(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs that are each other's best match with ``score > threshold`` (spec §6.4)."""
    n_pred, n_gt = scores.shape
    matched = np.full(n_pred, -1, dtype=np.int64)
    if n_pred == 0 or n_gt == 0:
        return matched
    best_gt = scores.argmax(1)
    best_pred = scores.argmax(0)
    for p in range(n_pred):
        g = best_gt[p]
        if best_pred[g] == p and scores[p, g] > threshold:
            matched[p] = g
    return matched


def centre_matches(p: np.ndarray, g: np.ndarray, frame_size, threshold: float) -> np.ndarray:
    """The matched GT index of each (M,5) prediction of a frame among its (K,4) GT boxes (-1:
    none) by centre distance: ``greedy_match`` of the misalignment scores by confidence."""
    scores = misalignment_matrix(_normalise(p, frame_size), _normalise(g, frame_size))
    return greedy_match(scores, p[:, 4], threshold)


# --------------------------------------------------------------------------- detection


def _check_frames(pred, gt):
    if len(pred) != len(gt):
        raise ValueError(f"pred has {len(pred)} frames but gt has {len(gt)}; they must match")
    if len(gt) == 0:
        raise ValueError("no frames to evaluate: the split is empty")


def _average_precision(confidence: np.ndarray, hits: np.ndarray, n_gt: int) -> float:
    """11-point interpolated AP of predictions (confidence, hit flag) against n_gt objects."""
    if n_gt == 0:
        return float("nan")
    precision, recall = _pr_points(confidence, hits, n_gt)
    points = [precision[recall >= r].max() if np.any(recall >= r) else 0.0 for r in RECALL_POINTS]
    return float(np.mean(points))


def _pr_points(confidence: np.ndarray, hits: np.ndarray, n_gt: int):
    order = np.argsort(-confidence, kind="stable")
    true_pos = np.cumsum(hits[order])
    precision = true_pos / np.arange(1, len(order) + 1)
    recall = true_pos / max(n_gt, 1)
    return precision, recall


def safe_precision(tp: int, n_pred: int, n_gt: int) -> float:
    if n_pred == 0:
        return 1.0 if n_gt == 0 else 0.0
    return tp / n_pred


def _safe_recall(tp: int, n_gt: int) -> float:
    return 1.0 if n_gt == 0 else tp / n_gt


def f_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def detection_scores(
    pred: Sequence,
    gt: Sequence,
    frame_size: tuple[int, int] = FRAME_SIZE,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    centre_threshold: float = CENTRE_THRESHOLD,
) -> dict[str, float]:
    """Detection metrics over a list of frames.

    pred: per frame an (M,5) array [x, y, w, h, score]; gt: per frame a (K,4) array [x, y, w, h];
    both in the same pixel units (``frame_size`` = (width, height) of that frame).
    Returns precision, recall, f_score, ap_avg, ap_0.5, count_accuracy (and ap_{t} per threshold).
    """
    _check_frames(pred, gt)
    conf_all, centre_hits, count_ok, n_pred_total, n_gt_total = [], [], 0, 0, 0
    iou_hits = {t: [] for t in iou_thresholds}
    for frame_pred, frame_gt in zip(pred, gt, strict=True):
        p = _as_boxes(frame_pred, 5)
        g = _as_boxes(frame_gt, 4)
        count_ok += len(p) == len(g)
        n_pred_total += len(p)
        n_gt_total += len(g)
        conf = p[:, 4]
        conf_all.append(conf)
        centre_hits.append(centre_matches(p, g, frame_size, centre_threshold) >= 0)
        iou = iou_matrix(_normalise(p, frame_size), _normalise(g, frame_size))
        for t in iou_thresholds:
            iou_hits[t].append(greedy_match(iou, conf, t) >= 0)
    confidence = np.concatenate(conf_all)
    tp = int(np.concatenate(centre_hits).sum())
    precision = safe_precision(tp, n_pred_total, n_gt_total)
    recall = _safe_recall(tp, n_gt_total)
    aps = {
        t: _average_precision(confidence, np.concatenate(iou_hits[t]), n_gt_total)
        for t in iou_thresholds
    }
    out = {
        "precision": precision,
        "recall": recall,
        "f_score": f_score(precision, recall),
        "ap_avg": float(np.mean(list(aps.values()))) if n_gt_total else float("nan"),
        "ap_0.5": aps.get(0.5, float("nan")),
        "count_accuracy": count_ok / len(gt),
    }
    out.update({f"ap_{t:.1f}": v for t, v in aps.items()})
    return out


def recall_by_label(
    pred: Sequence,
    gt: Sequence,
    gt_labels: Sequence,
    frame_size: tuple[int, int] = FRAME_SIZE,
    centre_threshold: float = CENTRE_THRESHOLD,
) -> dict[int, tuple[int, int]]:
    """Per GT label: (found, total) objects under ``detection_scores``' centre-distance matching,
    so that the recalls of the labels add up to its recall. Inputs as ``detection_scores``, with
    ``gt_labels`` per frame a (K,) array of the GT boxes' label indices."""
    _check_frames(pred, gt)
    found: dict[int, int] = {}
    total: dict[int, int] = {}
    for frame_pred, frame_gt, labels in zip(pred, gt, gt_labels, strict=True):
        p, g = _as_boxes(frame_pred, 5), _as_boxes(frame_gt, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(g):
            raise ValueError(f"{len(g)} GT boxes but {len(labels)} labels in a frame")
        matched = centre_matches(p, g, frame_size, centre_threshold)
        hit = np.zeros(len(g), dtype=bool)
        hit[matched[matched >= 0]] = True
        for label, was_found in zip(labels.tolist(), hit.tolist(), strict=True):
            total[label] = total.get(label, 0) + 1
            found[label] = found.get(label, 0) + int(was_found)
    return {label: (found[label], total[label]) for label in sorted(total)}


def precision_recall_curve(pred, gt, frame_size=FRAME_SIZE, iou_threshold: float = 0.5):
    """Cumulative (precision, recall, confidence) arrays by decreasing confidence (IoU matching)."""
    _check_frames(pred, gt)
    conf_all, hits, n_gt = [], [], 0
    for frame_pred, frame_gt in zip(pred, gt, strict=True):
        p, g = _as_boxes(frame_pred, 5), _as_boxes(frame_gt, 4)
        n_gt += len(g)
        iou = iou_matrix(_normalise(p, frame_size), _normalise(g, frame_size))
        hits.append(greedy_match(iou, p[:, 4], iou_threshold) >= 0)
        conf_all.append(p[:, 4])
    confidence = np.concatenate(conf_all)
    precision, recall = _pr_points(confidence, np.concatenate(hits), n_gt)
    return precision, recall, np.sort(confidence)[::-1]


# --------------------------------------------------------------------------- subsets


def relevant_subset(pred, gt, gt_labels, game: str, frame_size=FRAME_SIZE):
    """The ``relevant`` subset: GT boxes whose label is a relevant one and predictions whose box
    lies in the game's relevant area (spec §1.8-1.9). Returns (pred, gt, gt_labels, keep_masks)
    where keep_masks[i] marks the frame's kept predictions."""
    from spacemoc.games import get_game

    game_row = get_game(game)
    relevant = np.array(game_row.relevant_indices)
    out_pred, out_gt, out_labels, keep_masks = [], [], [], []
    for frame_pred, frame_gt, labels in zip(pred, gt, gt_labels, strict=True):
        p, g = _as_boxes(frame_pred, 5), _as_boxes(frame_gt, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        keep = in_area(p, game_row, frame_size)
        gt_keep = np.isin(labels, relevant)
        out_pred.append(p[keep])
        out_gt.append(g[gt_keep])
        out_labels.append(labels[gt_keep])
        keep_masks.append(keep)
    return out_pred, out_gt, out_labels, keep_masks


def in_area(boxes: np.ndarray, game_row, frame_size=FRAME_SIZE) -> np.ndarray:
    """Mask of (n,4+) pixel boxes inside the relevant area of ``game_row`` (a Game)."""
    return _in_relevant_area(game_row, _as_boxes(boxes, 4), frame_size)


# --------------------------------------------------------------------------- joint (§6.4)


def joint_scores(
    pred,
    pred_labels,
    gt,
    gt_labels,
    n_labels: int,
    frame_size=FRAME_SIZE,
    threshold: float = JOINT_THRESHOLD,
) -> dict:
    """Labelled detection against labelled ground truth (spec §6.4).

    Pairs are mutual-best matches by misalignment with score > ``threshold``; an unmatched
    prediction counts as (NOT_AN_OBJECT = n_labels, its label), an unmatched GT object as
    (its label, NOT_DETECTED = n_labels + 1). precision = correctly labelled matches / all
    predictions, recall = correctly labelled matches / all GT objects (empty cases as in
    ``detection_scores``). Returns precision, recall, f1 and the (n_labels+2)^2 ``confusion``
    matrix (rows: ground truth, columns: prediction).
    """
    _check_frames(pred, gt)
    not_object, not_detected = n_labels, n_labels + 1
    confusion = np.zeros((n_labels + 2, n_labels + 2), dtype=np.int64)
    for p, pl, g, gl in zip(pred, pred_labels, gt, gt_labels, strict=True):
        p, g = _as_boxes(p, 4), _as_boxes(g, 4)
        pl = np.asarray(pl, dtype=np.int64).reshape(-1)
        pl = np.where((pl < 0) | (pl >= n_labels), not_object, pl)  # unknown kind: not an object
        gl = np.asarray(gl, dtype=np.int64).reshape(-1)
        matched = mutual_best_match(
            misalignment_matrix(_normalise(p, frame_size), _normalise(g, frame_size)), threshold
        )
        for i, j in enumerate(matched):
            confusion[gl[j] if j >= 0 else not_object, pl[i]] += 1
        for j in np.setdiff1d(np.arange(len(g)), matched[matched >= 0]):
            confusion[gl[j], not_detected] += 1
    correct = int(np.trace(confusion[:n_labels, :n_labels]))
    n_pred = int(confusion[:, :not_detected].sum())
    n_gt = int(confusion[:not_object, :].sum())
    precision = safe_precision(correct, n_pred, n_gt)
    recall = _safe_recall(correct, n_gt)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f_score(precision, recall),
        "confusion": confusion,
    }


# --------------------------------------------------------------------------- encodings


def split_encodings(z, labels, seed: int = 0, test_fraction: float = 0.1):
    """Seeded, shuffled, stratified train/test split; drops classes with < 2 samples.

    Returns (z_train, y_train, z_test, y_test, too_rare) with too_rare the dropped labels.
    """
    from sklearn.model_selection import train_test_split

    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(z) != len(labels):
        raise ValueError(f"{len(z)} encodings but {len(labels)} labels")
    classes, counts = np.unique(labels, return_counts=True)
    too_rare = [int(c) for c in classes[counts < 2]]
    keep = np.isin(labels, classes[counts >= 2])
    z, labels = z[keep], labels[keep]
    n_classes = len(np.unique(labels))
    if n_classes < 2:
        return None, None, None, None, too_rare
    n_test = max(int(round(test_fraction * len(labels))), n_classes)
    if len(labels) - n_test < n_classes:  # too few samples for a stratified split
        return None, None, None, None, too_rare
    z_train, z_test, y_train, y_test = train_test_split(
        z, labels, test_size=n_test, random_state=seed, shuffle=True, stratify=labels
    )
    return z_train, y_train, z_test, y_test, too_rare


def few_shot_indices(y_train: np.ndarray, k: int) -> np.ndarray:
    """The first k training samples of each class (all of them when a class has fewer)."""
    return np.sort(np.concatenate([np.flatnonzero(y_train == c)[:k] for c in np.unique(y_train)]))


def encoding_scores(
    z,
    labels,
    few_shot: Sequence[int] = (1, 4, 16, 64),
    seed: int = 0,
    test_fraction: float = 0.1,
    candidate_labels: Sequence[int] | None = None,
) -> dict:
    """Few-shot ridge accuracy, k-means AMI/ARI and centroid-labelled 1-NN accuracy.

    z: (n, D) encodings; labels: (n,) ground-truth label indices. Returns ``few_shot_{k}``,
    ``ami``, ``ari``, ``cluster_nn_accuracy`` (NaN when fewer than two classes can be split) and
    ``too_rare`` (labels dropped because they have fewer than two samples).
    """
    from sklearn.cluster import KMeans
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    from spacemoc.classifier import fit_centroid_classifier

    z_train, y_train, z_test, y_test, too_rare = split_encodings(z, labels, seed, test_fraction)
    out = {f"few_shot_{k}": float("nan") for k in few_shot}
    out.update(ami=float("nan"), ari=float("nan"), cluster_nn_accuracy=float("nan"))
    out["too_rare"] = too_rare
    if too_rare:
        warnings.warn(
            f"labels {too_rare} have fewer than 2 samples: left out of the encoding metrics",
            stacklevel=2,
        )
    if z_train is None:
        warnings.warn(
            "fewer than two classes to split: encoding metrics are undefined", stacklevel=2
        )
        return out
    for k in few_shot:
        idx = few_shot_indices(y_train, k)
        clf = RidgeClassifier().fit(z_train[idx], y_train[idx])
        out[f"few_shot_{k}"] = float((clf.predict(z_test) == y_test).mean())
    n_classes = len(np.unique(y_train))
    kmeans = KMeans(n_clusters=n_classes, random_state=seed, n_init=10).fit(z_train)
    clusters = kmeans.predict(z_test)
    out["ami"] = float(adjusted_mutual_info_score(y_test, clusters))
    out["ari"] = float(adjusted_rand_score(y_test, clusters))
    candidates = np.unique(y_train) if candidate_labels is None else candidate_labels
    nn = fit_centroid_classifier(z_train, y_train, n_classes, candidates, seed=seed)
    out["cluster_nn_accuracy"] = float((nn.predict(z_test) == y_test).mean())
    return out
