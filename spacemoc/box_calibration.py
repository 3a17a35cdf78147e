"""Boxes in OCAtari's convention: a per-label correction of a detection's box, fit on labelled
detections as the z_what classifier is.

A model's box is the extent of what it draws (alpha) or its glimpse; OCAtari's box is what the
game's RAM says (a boxer's body without the punching arm, for instance), so the two differ by a
few pixels that depend on the object's pose. For each relevant label, a ridge regression from
(z_what, w, h) to the differences in centre and size (OCAtari's minus the model's, frame pixels)
is fit on the validation (and agent) detections matched to an object of that label; a detection
then moves by its label's prediction. Stored with the classifier (``classifier.npz``), applied by
the Detector; evaluation (eval.csv) reads the model's own boxes, as the published figures do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SAMPLES = 20  # a label with fewer matched detections gets no correction
MIN_SIDE = 1.0  # pixels: a corrected box keeps at least this width and height


@dataclass
class BoxCalibration:
    labels: np.ndarray  # (L,) label indices with a correction
    coef: np.ndarray  # (L, 4, D + 2): [dx, dy, dw, dh] from [z_what, w, h]
    intercept: np.ndarray  # (L, 4)

    def apply(self, boxes, z_what, labels) -> np.ndarray:
        """boxes (M,4) [x, y, w, h] frame pixels, z_what (M,D), labels (M,) -> corrected boxes;
        detections of a label without a correction keep their box."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = boxes.copy()
        if len(boxes) == 0:
            return out
        features = np.concatenate([np.asarray(z_what, np.float64), boxes[:, 2:]], axis=1)
        if features.shape[1] != self.coef.shape[2]:
            raise ValueError(
                f"box calibration expects z_what of dimension {self.coef.shape[2] - 2}, got "
                f"{features.shape[1] - 2}"
            )
        labels = np.asarray(labels)
        for row, label in enumerate(self.labels.tolist()):
            at = labels == label
            if not at.any():
                continue
            dx, dy, dw, dh = (features[at] @ self.coef[row].T + self.intercept[row]).T
            w = np.maximum(boxes[at, 2] + dw, MIN_SIDE)
            h = np.maximum(boxes[at, 3] + dh, MIN_SIDE)
            cx = boxes[at, 0] + boxes[at, 2] / 2 + dx
            cy = boxes[at, 1] + boxes[at, 3] / 2 + dy
            out[at] = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays ``classifier.npz`` stores (``from_arrays`` reads them back)."""
        return {"box_labels": self.labels, "box_coef": self.coef, "box_intercept": self.intercept}

    @classmethod
    def from_arrays(cls, arrays) -> BoxCalibration | None:
        if "box_labels" not in arrays:
            return None
        return cls(
            np.asarray(arrays["box_labels"], np.int64),
            np.asarray(arrays["box_coef"], np.float64),
            np.asarray(arrays["box_intercept"], np.float64),
        )


def fit_box_calibration(z_what, boxes, targets, labels, alpha: float = 1.0):
    """Ridge per label from (z_what (n,D), the model's boxes (n,4)) to the target boxes (n,4)
    (all [x, y, w, h] frame pixels); None when no label has ``MIN_SAMPLES`` detections."""
    from sklearn.linear_model import Ridge

    z_what = np.asarray(z_what, np.float64)
    boxes, targets = np.asarray(boxes, np.float64), np.asarray(targets, np.float64)
    labels = np.asarray(labels)
    features = np.concatenate([z_what, boxes[:, 2:]], axis=1)
    change = np.concatenate(
        [
            targets[:, :2] + targets[:, 2:] / 2 - (boxes[:, :2] + boxes[:, 2:] / 2),
            targets[:, 2:] - boxes[:, 2:],
        ],
        axis=1,
    )
    fitted = {}
    for label in np.unique(labels).tolist():
        at = labels == label
        if at.sum() >= MIN_SAMPLES:
            fitted[label] = Ridge(alpha=alpha).fit(features[at], change[at])
    if not fitted:
        return None
    return BoxCalibration(
        np.array(sorted(fitted), np.int64),
        np.stack([fitted[k].coef_ for k in sorted(fitted)]),
        np.stack([fitted[k].intercept_ for k in sorted(fitted)]),
    )
