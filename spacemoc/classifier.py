"""z_what -> object label classifiers (spec §6.2), stored without pickles.

``nn`` (default): k-means on the encodings of labelled objects (k = number of relevant classes),
each centroid labelled from its nearest labelled neighbours with the rule the reference intended
(spec §6.2 step 4), then 1-NN on the centroids. ``ridge``: a ``RidgeClassifier`` trained on a few
labelled objects per class.

Centroid labelling: walk the ``min(24, n)`` nearest encodings of a centroid from nearest to
farthest, counting their labels; at the i-th neighbour (0-based) label l is accepted once
``count[l] > 3 / (i + 1)``, or ``> 6 / (i + 1)`` when l already labels another centroid. (The
reference's operator-precedence bug accepts any not-yet-used label at its first sighting.) When no
label qualifies, the first candidate label not used yet is taken; when all are used, the most
frequent neighbour label (the reference raised IndexError there).

Label features (``features``): ``encoding`` (z_what, the reference's), ``colour`` (the box's
colour, ``spacemoc.box_colour``) or ``encoding+colour`` (both, each block divided by its total
standard deviation over the fitting objects, so that the 3 colour channels weigh as much as the
D encoding dimensions). The classifier compares these vectors; ``predict`` takes the encodings
and, unless ``encoding``, the boxes' colours.

Files: ``classifier.npz`` (kind, game, labels, features, the box readout of the latents it was
fit on, arrays, and optionally the box calibration of ``spacemoc.box_calibration``; read by
``ZWhatClassifier.load`` with ``allow_pickle=False``, used by the detector), ``classifier.joblib``
(the equivalent fitted scikit-learn estimator, for scikit-learn users; loading it unpickles, so
``load_joblib`` needs ``trust=True``) and ``classifier_labels.csv`` (cluster, label, label_name).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spacemoc.atomic import atomic_path
from spacemoc.box_calibration import BoxCalibration
from spacemoc.files import load_npz

FORMAT = "spacemoc-classifier/1"
KINDS = ("nn", "ridge")
FEATURES = ("encoding", "colour", "encoding+colour")


def check_features(features: str) -> str:
    if features not in FEATURES:
        raise ValueError(f"unknown label features {features!r}; valid: {FEATURES}")
    return features


def label_features(features: str, z, colours=None, scales=None) -> np.ndarray:
    """(n,D) encodings and (n,3) box colours -> the (n,F) vectors a classifier of ``features``
    compares; ``scales`` (2,): what ``encoding+colour`` divides each block by."""
    z = np.asarray(z, dtype=np.float64)
    if check_features(features) == "encoding":
        return z
    if colours is None:
        raise ValueError(
            f"a classifier of {features!r} features needs the boxes' colours "
            "(spacemoc.box_colour): the latents or the caller gave none"
        )
    colours = np.asarray(colours, dtype=np.float64).reshape(-1, 3)
    if len(colours) != len(z):
        raise ValueError(f"{len(colours)} box colours for {len(z)} encodings")
    if features == "colour":
        return colours
    z_scale, colour_scale = (1.0, 1.0) if scales is None else scales
    return np.concatenate([z / z_scale, colours / colour_scale], axis=1)


def feature_scales(z, colours) -> np.ndarray:
    """(2,) the total standard deviation of the encoding and the colour block (1 where 0)."""
    spread = [np.sqrt(np.asarray(a, dtype=np.float64).var(axis=0).sum()) for a in (z, colours)]
    return np.array([v if v > 0 else 1.0 for v in spread])


@dataclass
class ZWhatClassifier:
    kind: str  # "nn" or "ridge"
    game: str = ""
    labels: tuple[str, ...] = ()  # the game's label names; predictions index this
    centroids: np.ndarray | None = None  # (k, D) nn
    centroid_labels: np.ndarray | None = None  # (k,) nn
    coef: np.ndarray | None = None  # (C, D) ridge (C = 1 for two classes, as in sklearn)
    intercept: np.ndarray | None = None  # (C,) ridge
    classes: np.ndarray | None = None  # (n_classes,) ridge
    meta: dict = field(default_factory=dict)
    features: str = "encoding"  # what it compares (FEATURES)
    feature_scales: np.ndarray | None = None  # (2,) encoding+colour: each block's divisor
    # The box readout of the latents it was fit on ("" unknown): the detector's default readout.
    box_readout: str = ""
    # The overlap suppression of those latents (None unknown): the detector's default.
    overlap_suppression: float | None = None
    # Per-label corrections of the model's boxes towards OCAtari's (None: boxes as the model's)
    box_calibration: BoxCalibration | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown classifier kind {self.kind!r}; valid kinds: {KINDS}")
        check_features(self.features)

    @property
    def dim(self) -> int:
        return int((self.centroids if self.kind == "nn" else self.coef).shape[1])

    @property
    def empty(self) -> bool:
        """Fitted on no object (the model found none): predicts 0, "no_label", for everything."""
        return self.kind == "nn" and len(self.centroids) == 0

    def predict(self, z, colours=None) -> np.ndarray:
        """(n, D) encodings (and (n, 3) box colours unless ``features`` is ``encoding``) ->
        (n,) label indices."""
        z = np.asarray(z, dtype=np.float64)
        if self.features == "encoding" and (z.ndim != 2 or (len(z) and z.shape[1] != self.dim)):
            raise ValueError(f"expected encodings of shape (n, {self.dim}), got {z.shape}")
        if z.ndim != 2:
            raise ValueError(f"expected encodings of shape (n, D), got {z.shape}")
        if len(z) == 0 or self.empty:
            return np.zeros(len(z), dtype=np.int64)  # 0 is "no_label"
        z = label_features(self.features, z, colours, self.feature_scales)
        if z.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} {self.features} features, got {z.shape[1]}")
        if self.kind == "nn":
            dist = ((z[:, None, :] - self.centroids[None]) ** 2).sum(-1)
            return self.centroid_labels[dist.argmin(1)].astype(np.int64)
        scores = z @ self.coef.T + self.intercept
        if scores.shape[1] == 1:  # binary ridge: one column, positive -> classes[1]
            return self.classes[(scores[:, 0] > 0).astype(int)].astype(np.int64)
        return self.classes[scores.argmax(1)].astype(np.int64)

    # ----------------------------------------------------------------- storage

    def save(self, path: str | Path) -> None:
        arrays = {
            "format": np.array(FORMAT),
            "kind": np.array(self.kind),
            "game": np.array(self.game),
            "labels": np.array(self.labels, dtype=str),
            "features": np.array(self.features),
        }
        if self.feature_scales is not None:
            arrays["feature_scales"] = np.asarray(self.feature_scales, dtype=np.float64)
        if self.box_readout:
            arrays["box_readout"] = np.array(self.box_readout)
        if self.overlap_suppression is not None:
            arrays["overlap_suppression"] = np.array(float(self.overlap_suppression))
        if self.box_calibration is not None:
            arrays.update(self.box_calibration.arrays())
        for name in ("centroids", "centroid_labels", "coef", "intercept", "classes"):
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name))
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays))

    @classmethod
    def load(cls, path: str | Path, game: str | None = None) -> ZWhatClassifier:
        """Read a ``classifier.npz`` (no unpickling). ``game`` given: check it matches."""
        arrays = load_npz(path, "classifier")
        if "format" not in arrays or str(arrays["format"]) != FORMAT:
            raise ValueError(f"{path} is not a spacemoc classifier ({FORMAT})")
        clf = cls(
            kind=str(arrays["kind"]),
            game=str(arrays["game"]),
            labels=tuple(str(s) for s in arrays["labels"]),
            **{
                k: arrays[k]
                for k in ("centroids", "centroid_labels", "coef", "intercept", "classes")
                if k in arrays
            },
            features=str(arrays["features"]) if "features" in arrays else "encoding",
            feature_scales=arrays.get("feature_scales"),
            box_readout=str(arrays["box_readout"]) if "box_readout" in arrays else "",
            overlap_suppression=(
                float(arrays["overlap_suppression"]) if "overlap_suppression" in arrays else None
            ),
            box_calibration=BoxCalibration.from_arrays(arrays),
        )
        if game is not None:
            check_game(clf, game, path)
        return clf

    def to_sklearn(self):
        """The equivalent fitted scikit-learn estimator (KNeighbors- or RidgeClassifier), on the
        vectors of ``label_features(est.spacemoc_features_, z, colours, est.spacemoc_feature_
        scales_)``."""
        if self.empty:
            from sklearn.dummy import DummyClassifier

            est = DummyClassifier(strategy="constant", constant=0)
            est.fit(np.zeros((1, self.dim)), [0])
        elif self.kind == "nn":
            from sklearn.neighbors import KNeighborsClassifier

            est = KNeighborsClassifier(n_neighbors=1).fit(self.centroids, self.centroid_labels)
        else:
            from sklearn.linear_model import RidgeClassifier

            est = RidgeClassifier()
            est.coef_, est.intercept_ = self.coef, self.intercept
            est.classes_ = self.classes
            est.n_features_in_ = self.coef.shape[1]
            # RidgeClassifier.predict needs its label binarizer; rebuild it from the classes.
            from sklearn.preprocessing import LabelBinarizer

            est._label_binarizer = LabelBinarizer(pos_label=1, neg_label=-1).fit(self.classes)
        est.spacemoc_game_ = self.game
        est.spacemoc_labels_ = list(self.labels)
        est.spacemoc_features_ = self.features
        est.spacemoc_feature_scales_ = self.feature_scales
        return est


def check_game(clf: ZWhatClassifier, game: str, path="classifier") -> None:
    from spacemoc.games import get_game

    if get_game(clf.game).name != get_game(game).name:
        raise ValueError(f"{path} was trained for game {clf.game!r}, not {game!r}")
    if tuple(clf.labels) != get_game(game).labels:
        raise ValueError(
            f"{path} label list {clf.labels} differs from {game}'s "
            f"{get_game(game).labels}: trained with another OCAtari version?"
        )


def load_joblib(path: str | Path, trust: bool = False, game: str | None = None):
    """Load ``classifier.joblib`` (a scikit-learn estimator). Unpickling runs code from the file,
    so this refuses unless ``trust=True``; ``ZWhatClassifier.load`` on the .npz is always safe."""
    if not trust:
        raise ValueError(
            f"{path} is a pickle: loading it can run arbitrary code. Pass trust=True "
            "if you made it, or use ZWhatClassifier.load on classifier.npz"
        )
    import joblib

    est = joblib.load(path)
    if game is not None and getattr(est, "spacemoc_game_", None) != game:
        raise ValueError(
            f"{path} was trained for game {getattr(est, 'spacemoc_game_', None)!r}, not {game!r}"
        )
    return est


# --------------------------------------------------------------------------- fitting


def label_centroids(
    centroids: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    candidate_labels: Sequence[int],
    n_neighbors: int = 24,
) -> np.ndarray:
    """Label each centroid from its nearest labelled encodings (the intended rule of §6.2)."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.int64)
    n = min(n_neighbors, len(z))
    assigned: list[int] = []
    for centroid in np.asarray(centroids, dtype=np.float64):
        order = np.argsort(((z - centroid) ** 2).sum(1), kind="stable")[:n]
        counts: dict[int, int] = {}
        choice = None
        for i, label in enumerate(y[order].tolist()):
            counts[label] = counts.get(label, 0) + 1
            needed = (6 if label in assigned else 3) / (i + 1)
            if counts[label] > needed:
                choice = label
                break
        if choice is None:
            free = [int(c) for c in candidate_labels if int(c) not in assigned]
            if free:
                choice = free[0]
            else:
                choice = max(counts, key=counts.get) if counts else int(candidate_labels[0])
        assigned.append(int(choice))
    return np.array(assigned, dtype=np.int64)


CLUSTER_RULES = ("classes", "auto")  # or a number of clusters


def check_clusters(clusters) -> str | int:
    """``clusters`` as the classifier takes it: "classes", "auto" or a positive integer."""
    if isinstance(clusters, bool) or not (
        clusters in CLUSTER_RULES or (isinstance(clusters, int) and clusters >= 1)
    ):
        raise ValueError(
            f"clusters must be one of {CLUSTER_RULES} or a positive integer, got {clusters!r}"
        )
    return clusters


def choose_n_clusters(
    z,
    n_classes: int,
    clusters: str | int = "classes",
    max_clusters: int | None = None,
    seed: int = 0,
    sample: int = 2000,
    y=None,
    candidate_labels: Sequence[int] = (),
) -> int:
    """The number of k-means clusters: the number of classes ("classes", the reference's rule),
    a given number, or "auto": the k in ``n_classes .. max_clusters`` (default 4 per class) whose
    clustering has the highest silhouette on a seeded sample of ``sample`` encodings, for
    classes whose objects look different (cars of several colours; "auto" searches no further
    than the number of encodings).

    Given the encodings' labels ``y`` and the ``candidate_labels``, "auto" prefers the k whose
    centroids, labelled by ``label_centroids``, name every candidate label present in ``y``: a
    large class of two looks can outscore a small class on silhouette (Freeway: two clusters of
    cars, the chicken inside one of them), and a classifier without a centroid for a class never
    predicts it."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    check_clusters(clusters)
    z = np.asarray(z, dtype=np.float64)
    if clusters == "classes":
        k = n_classes
    elif clusters != "auto":
        k = int(clusters)
    else:
        top = min(max_clusters or 4 * n_classes, len(z) - 1)
        rng = np.random.default_rng(seed)
        subset = rng.permutation(len(z))[:sample]
        present = set() if y is None else set(np.unique(y).tolist()) & set(candidate_labels)
        scores, covering = {}, {}
        for k in range(max(n_classes, 2), top + 1):
            fit = KMeans(n_clusters=k, random_state=seed, n_init=3).fit(z)
            scores[k] = silhouette_score(z[subset], fit.labels_[subset])
            if present:
                named = label_centroids(fit.cluster_centers_, z, y, candidate_labels)
                if present <= set(named.tolist()):
                    covering[k] = scores[k]
        choices = covering or scores
        k = max(choices, key=choices.get) if choices else n_classes
    return k


def fit_centroid_classifier(
    z,
    y,
    n_clusters: int,
    candidate_labels,
    seed: int = 0,
    game: str = "",
    labels: Sequence[str] = (),
) -> ZWhatClassifier:
    """k-means (seeded) + centroid labelling -> a 1-NN-on-centroids ``ZWhatClassifier``."""
    from sklearn.cluster import KMeans

    z = np.asarray(z, dtype=np.float64)
    if len(z) < n_clusters:
        raise ValueError(f"{len(z)} labelled encodings are too few for {n_clusters} clusters")
    kmeans = KMeans(n_clusters=n_clusters, random_state=seed, n_init=10).fit(z)
    centroid_labels = label_centroids(kmeans.cluster_centers_, z, y, candidate_labels)
    return ZWhatClassifier(
        "nn",
        game,
        tuple(labels),
        centroids=kmeans.cluster_centers_,
        centroid_labels=centroid_labels,
    )


def fit_ridge_classifier(
    z, y, shots: int = 16, seed: int = 0, game: str = "", labels: Sequence[str] = ()
) -> ZWhatClassifier:
    """RidgeClassifier on ``shots`` randomly chosen (seeded) labelled encodings per class."""
    from sklearn.linear_model import RidgeClassifier

    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError(f"ridge needs at least two classes, got {np.unique(y).tolist()}")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:shots] for c in np.unique(y)])
    est = RidgeClassifier().fit(z[idx], y[idx])
    return ZWhatClassifier(
        "ridge",
        game,
        tuple(labels),
        coef=est.coef_,
        intercept=np.atleast_1d(est.intercept_),
        classes=est.classes_,
    )


def write_label_csv(clf: ZWhatClassifier, path: str | Path) -> None:
    """cluster,label,label_name: one row per centroid (nn) or class (ridge)."""
    values = clf.centroid_labels if clf.kind == "nn" else clf.classes

    def write(tmp):
        with open(tmp, "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["cluster", "label", "label_name"])
            for i, label in enumerate(np.asarray(values).tolist()):
                out.writerow([i, label, clf.labels[label] if label < len(clf.labels) else ""])

    atomic_write(path, write)


def atomic_write(path, write) -> None:
    """Write through ``write(tmp_path)`` and rename when complete."""
    with atomic_path(path) as tmp:
        write(str(tmp))
