"""The classifier stage: fit the z_what classifier on a latents file and write it.

Reads latents (``spacemoc.latents``) and fits with ``spacemoc.classifier``; living here keeps
``spacemoc.classifier`` free of file stages (it was the import circle classifier -> latents ->
metrics -> classifier).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from spacemoc.classifier import (
    KINDS,
    ZWhatClassifier,
    atomic_write,
    check_clusters,
    check_features,
    choose_n_clusters,
    feature_scales,
    fit_centroid_classifier,
    fit_ridge_classifier,
    label_features,
    write_label_csv,
)
from spacemoc.games import get_game
from spacemoc.latents import collect_encodings, load_latents


def train_classifier(
    latents_path: str | Path | list[str | Path],
    out_npz: str | Path,
    out_joblib: str | Path | None = None,
    out_labels_csv: str | Path | None = None,
    kind: str = "nn",
    seed: int = 0,
    shots: int = 16,
    game: str | None = None,
    clusters: str | int = "classes",
    data_paths: list[str | Path] | None = None,
    features: str = "encoding",
) -> ZWhatClassifier:
    """Fit the classifier on the relevant labelled objects of one or more latents files of one
    model (the workflow's: the validation split, and the agent split where there is one).
    ``clusters`` (nn): how many k-means clusters (``spacemoc.classifier.choose_n_clusters``);
    "auto" searches up to four per class, or one per object slot of the game (OCAtari's maximum
    objects) where that is more, among the k whose labelled centroids name every class.
    ``data_paths`` (the dataset splits the latents were made from, in the same order): also fit
    the box calibration (``spacemoc.box_calibration``) on the matched detections. ``features``:
    what the objects are told apart by (``spacemoc.classifier.FEATURES``): the encodings, the
    boxes' colours or both."""
    if kind not in KINDS:
        raise ValueError(f"unknown classifier kind {kind!r}; valid kinds: {KINDS}")
    check_clusters(clusters)
    check_features(features)
    paths = [latents_path] if isinstance(latents_path, (str, Path)) else list(latents_path)
    if not paths:
        raise ValueError("no latents file to fit the classifier on")
    lats = [load_latents(path, game=game) for path in paths]
    lat = lats[0]
    _check_same_model(lats, paths)
    g = get_game(lat.game)
    encodings = [collect_encodings(one, "relevant") for one in lats]
    z = np.concatenate([enc["z_what"] for enc in encodings])
    y = np.concatenate([enc["label"] for enc in encodings])
    latents_path = ", ".join(str(path) for path in paths)
    if kind == "ridge" and len(np.unique(y)) < 2:
        warnings.warn(
            f"{latents_path}: {len(np.unique(y))} relevant label(s) among the detections; ridge "
            "needs two: fitting the nn classifier instead",
            stacklevel=2,
        )
        kind = "nn"
    if len(z) == 0:
        # An untrained or failed model finds nothing: keep the pipeline going with a classifier
        # that says so ("no_label" for everything) rather than stopping every later stage.
        warnings.warn(
            f"{latents_path}: no present cell matches a relevant object; the classifier is "
            "empty and labels every object no_label",
            stacklevel=2,
        )
        clf = ZWhatClassifier(
            "nn",
            g.name,
            g.labels,
            centroids=np.zeros((0, lat.z_what.shape[-1])),
            centroid_labels=np.zeros(0, dtype=np.int64),
        )
        _record_readouts(clf, lat)
        _write(clf, out_npz, out_joblib, out_labels_csv)
        return clf
    x, scales = _features(features, encodings, z, latents_path)
    print(
        f"training a {kind} classifier ({features} features) on {len(z)} relevant objects "
        f"({dict(zip(*np.unique(y, return_counts=True), strict=True))} per label) of {latents_path}"
    )
    if kind == "nn":
        n_classes = len(g.relevant_indices)
        most = max(4 * n_classes, sum(g.max_objects.values()))
        n_clusters = choose_n_clusters(
            x,
            n_classes,
            clusters,
            max_clusters=most,
            seed=seed,
            y=y,
            candidate_labels=g.relevant_indices,
        )
        if clusters != "classes":
            print(f"{n_clusters} clusters for {n_classes} classes (clusters: {clusters})")
        if len(z) < n_clusters:
            warnings.warn(
                f"{latents_path}: {len(z)} relevant objects for {n_clusters} clusters: using "
                f"{len(z)} clusters",
                stacklevel=2,
            )
            n_clusters = len(z)
        clf = fit_centroid_classifier(
            x,
            y,
            n_clusters,
            g.relevant_indices,
            seed=seed,
            game=g.name,
            labels=g.labels,
        )
    else:
        clf = fit_ridge_classifier(x, y, shots=shots, seed=seed, game=g.name, labels=g.labels)
    clf.features, clf.feature_scales = features, scales
    _record_readouts(clf, lat)
    if data_paths is not None:
        clf.box_calibration = _fit_box_calibration(encodings, paths, data_paths)
    _write(clf, out_npz, out_joblib, out_labels_csv)
    return clf


def _features(features, encodings, z, latents_path):
    """The label-feature vectors of the fitting objects and, for ``encoding+colour``, the
    scales that weigh the two blocks alike."""
    if features == "encoding":
        return z, None
    if any("colour" not in enc for enc in encodings):
        raise ValueError(
            f"{latents_path}: latents without box colours (made before them): remake them "
            f"(spacemoc latents) to fit a classifier on {features!r} features"
        )
    colours = np.concatenate([enc["colour"] for enc in encodings])
    scales = feature_scales(z, colours) if features == "encoding+colour" else None
    return label_features(features, z, colours, scales), scales


def _fit_box_calibration(encodings, latents_paths, data_paths):
    """The box calibration from the matched relevant detections of every latents file against
    the objects of its dataset split."""
    from spacemoc.box_calibration import fit_box_calibration
    from spacemoc.latents import frame_ground_truth, read_objects

    if len(data_paths) != len(latents_paths):
        raise ValueError(
            f"{len(data_paths)} dataset files for {len(latents_paths)} latents files: give the "
            "split of each latents file, in the same order"
        )
    targets = []
    for enc, latents_path, data_path in zip(encodings, latents_paths, data_paths, strict=True):
        boxes, _ = frame_ground_truth(read_objects(data_path))
        if len(enc["frame"]) and enc["frame"].max() >= len(boxes):
            raise ValueError(f"{latents_path} has more frames than {data_path}: another split?")
        targets.append(
            np.array(
                [boxes[f][i] for f, i in zip(enc["frame"], enc["gt_index"], strict=True)]
            ).reshape(-1, 4)
        )
    calibration = fit_box_calibration(
        np.concatenate([enc["z_what"] for enc in encodings]),
        np.concatenate([enc["box"] for enc in encodings]),
        np.concatenate(targets),
        np.concatenate([enc["label"] for enc in encodings]),
    )
    if calibration is not None:
        print(f"box calibration for labels {calibration.labels.tolist()}")
    return calibration


def _record_readouts(clf, lat) -> None:
    """The classifier keeps how its latents read detections off the model: the detector's
    defaults."""
    clf.box_readout = str(lat.attrs.get("box_readout", ""))
    clf.overlap_suppression = float(lat.attrs.get("overlap_suppression", 0.0))


def _check_same_model(lats, paths) -> None:
    """Encodings of different models (or readouts) do not mix in one classifier."""
    first = _identity(lats[0])
    for lat, path in zip(lats[1:], paths[1:], strict=True):
        for key, value in _identity(lat).items():
            if first[key] != value and (first[key] != "" and value != ""):
                raise ValueError(
                    f"{path} and {paths[0]} were made with different {key} ({value!r} vs "
                    f"{first[key]!r}); a classifier is fit on the latents of one model"
                )


def _identity(lat) -> dict:
    """What a latents file must share with the others of one classifier ("": not recorded; a
    file without an overlap suppression was made before the setting, so without it)."""
    identity = {key: lat.attrs.get(key, "") for key in ("game", "model_sha256", "box_readout")}
    identity["overlap_suppression"] = float(lat.attrs.get("overlap_suppression", 0.0))
    return identity


def _write(clf, out_npz, out_joblib, out_labels_csv) -> None:
    clf.save(out_npz)
    if out_joblib is not None:
        import joblib

        est = clf.to_sklearn()
        atomic_write(out_joblib, lambda tmp: joblib.dump(est, tmp))
    if out_labels_csv is not None:
        write_label_csv(clf, out_labels_csv)
