"""Figures of one trained model: detections on test frames, what the model draws on them (its
``view``: reconstruction, slot masks or foreground), precision-recall curves, a 2-D PCA of the
encodings, the training curves and the joint detection + classification confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spacemoc.atomic import atomic_path
from spacemoc.files import open_h5

PLOTS = ("detections", "model_view", "pr_curve", "latent_pca", "train_curves", "confusion")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return Path(path)


def plot_detections(frames, pred, pred_labels, gt, gt_labels, label_names, path, title=""):
    """Frames (n,128,128,3) with predicted boxes (red, dashed, predicted label) and GT boxes
    (green, OCAtari label)."""
    plt = _pyplot()
    n = max(len(frames), 1)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, p, pl, g, gl in zip(
        axes.flat, frames, pred, pred_labels, gt, gt_labels, strict=False
    ):
        ax.imshow(image, extent=(0, 160, 210, 0), aspect="auto", interpolation="nearest")
        for (x, y, w, h), label in zip(np.asarray(g)[:, :4], gl, strict=True):
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="lime", lw=1.5))
            ax.text(x, y + h + 6, label_names[label], color="lime", fontsize=6)
        for (x, y, w, h), label in zip(np.asarray(p)[:, :4], pl, strict=True):
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="red", lw=1, ls="--"))
            ax.text(x, y - 1, label_names[label], color="red", fontsize=6)
    fig.suptitle(title or "test frames: predictions (red) and ground truth (green)")
    return _save(fig, path)


def plot_model_view(model_path, data_path, path, n_frames: int = 4, threshold: float = 0.5):
    """The first frame of the first ``n_frames`` samples of ``data_path``, one row each: the
    input with the model's present objects (boxes of ``infer``, alpha readout; every present
    cell, as the model draws it, before any overlap suppression), then every panel
    of the model's ``view`` (the slot family: reconstruction and slot masks; SPACE: reconstruction,
    background, foreground). The full checkpoint (``model.pt``), on the CPU."""
    import torch

    from spacemoc.geometry import z_where_to_boxes
    from spacemoc.models import load_checkpoint
    from spacemoc.models.inputs import model_input

    model = load_checkpoint(model_path, map_location="cpu").eval()
    with open_h5(data_path, "dataset") as f:
        count = min(n_frames, len(f["frames"]))
        frames = np.stack([f["frames"][i][0] for i in range(count)])  # (n,H,W,3) uint8
    x = model_input(frames, model.channel_order, "cpu")
    with torch.random.fork_rng():
        torch.manual_seed(0)  # SPACE's view samples its posterior
        panels = model.view(x)
        found = model.infer(x, threshold=threshold, box_readout="alpha")
    present = found["z_pres_prob"].cpu().numpy() > threshold  # (n,K)
    where = found["z_where"].cpu().numpy()  # (n,K,4)

    plt = _pyplot()
    names = ["input, present objects", *panels]
    fig, axes = plt.subplots(
        count, len(names), figsize=(2.6 * len(names), 3.2 * count), squeeze=False
    )
    for row, image in enumerate(frames):
        images = [image] + [panel[row].permute(1, 2, 0).cpu().numpy() for panel in panels.values()]
        for col, (ax, picture) in enumerate(zip(axes[row], images, strict=True)):
            ax.imshow(picture, extent=(0, 160, 210, 0), aspect="auto", interpolation="nearest")
            ax.axis("off")
            if row == 0:
                ax.set_title(names[col], fontsize=8)
            if col == 0:
                for x0, y0, w, h in z_where_to_boxes(where[row][present[row]]):
                    ax.add_patch(plt.Rectangle((x0, y0), w, h, fill=False, ec="red", lw=1))
    run = "/".join(Path(model_path).parts[-3:-1])  # results/{game}/{arm}/seed{n}/model.pt
    fig.suptitle(f"{run}: what the model draws on test frames")
    return _save(fig, path)


def plot_pr_curves(curves: dict, path, title="precision-recall (IoU 0.5)"):
    """curves: name -> (precision, recall) arrays."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, (precision, recall) in curves.items():
        ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.legend()
    return _save(fig, path)


def plot_latent_pca(z, labels, label_names, path, max_points=5000, seed=0):
    """2-D PCA of encodings coloured by their ground-truth label."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    z, labels = np.asarray(z), np.asarray(labels)
    if len(z) > max_points:
        keep = np.random.default_rng(seed).choice(len(z), max_points, replace=False)
        z, labels = z[keep], labels[keep]
    if len(z) >= 2:
        xy = PCA(n_components=2, random_state=seed).fit_transform(z)
        for label in np.unique(labels):
            m = labels == label
            ax.scatter(xy[m, 0], xy[m, 1], s=6, label=label_names[label], alpha=0.7)
        ax.legend(markerscale=2, fontsize=7)
    ax.set(title="z_what, 2-D PCA, by ground-truth label", xlabel="PC 1", ylabel="PC 2")
    return _save(fig, path)


def plot_training_curves(csv_path, path):
    """Every numeric column of ``train_curves.csv`` against ``step``."""
    import pandas as pd

    plt = _pyplot()
    df = pd.read_csv(csv_path)
    x = df["step"] if "step" in df else np.arange(len(df))
    columns = [c for c in df.columns if c != "step" and pd.api.types.is_numeric_dtype(df[c])]
    cols = min(max(len(columns), 1), 3)
    rows = max((len(columns) + cols - 1) // cols, 1)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, column in zip(axes.flat, columns, strict=False):
        ax.axis("on")
        measured = df[column].notna()  # validation columns: only at train.eval_every steps
        sparse = measured.sum() < len(df) / 2
        ax.plot(x[measured], df[column][measured], marker="o" if sparse else None)
        ax.set(title=column, xlabel="step")
    fig.tight_layout()
    return _save(fig, path)


def plot_time_to_quality(runs: dict, path, targets=None, title="time to quality", points=None):
    """Validation relevant F and cluster-NN accuracy (``train.eval_every``) against wall-clock
    minutes of training, one line per run. ``runs``: name -> train_curves.csv; ``targets``:
    column -> value, drawn as dashed lines; ``points``: name -> list of {"minutes", column:
    value} for figures measured otherwise (e.g. a run without validation: its checkpoints'
    test-split eval.csv), drawn as markers only. The clock is the curves' ``elapsed_s`` (one
    uninterrupted run: a resumed run's clock restarts)."""
    import pandas as pd

    plt = _pyplot()
    panels = (("val_relevant_f", "relevant F"), ("val_cluster_nn", "cluster-NN accuracy"))
    panels_height = 3.8  # inches, without the legend
    fig, axes = plt.subplots(1, 2, figsize=(10, panels_height))
    for name, csv_path in runs.items():
        df = pd.read_csv(csv_path)
        missing = {"elapsed_s", *(c for c, _ in panels)} - set(df.columns)
        if missing:
            raise ValueError(f"{csv_path} has no {sorted(missing)}: train with train.eval_every")
        for ax, (column, _) in zip(axes, panels, strict=True):
            rows = df[df[column].notna()]
            ax.plot(rows["elapsed_s"] / 60, rows[column], marker="o", label=name)
    for name, marks in (points or {}).items():
        for ax, (column, _) in zip(axes, panels, strict=True):
            shown = [m for m in marks if m.get(column) is not None]
            ax.plot(
                [m["minutes"] for m in shown],
                [m[column] for m in shown],
                linestyle="none",
                marker="s",
                markersize=8,
                label=name,
            )
    for ax, (column, label) in zip(axes, panels, strict=True):
        if targets and column in targets:
            ax.axhline(targets[column], color="grey", linestyle="--", linewidth=1)
        ax.set(xlabel="training wall-clock (minutes)", ylabel=label, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    # the legend below both panels: long run names would cover the curves
    handles, labels = axes[0].get_legend_handles_labels()
    legend_rows = -(-len(labels) // 2)
    legend_height = 0.3 * legend_rows
    fig.set_figheight(panels_height + legend_height)
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_height / (panels_height + legend_height), 1, 1))
    return _save(fig, path)


def plot_class_recall(rows: list[dict], path, title=""):
    """Recall per relevant class (groups of bars), one bar per source of boxes, from the rows of
    ``spacemoc.stages.class_recall`` (CSV strings or numbers); each source's precision in the
    legend."""
    from spacemoc.stages.class_recall import ALL_LABELS

    plt = _pyplot()
    labels = list(dict.fromkeys(r["label"] for r in rows))
    sources = list(dict.fromkeys(r["source"] for r in rows))
    recall = {(r["source"], r["label"]): float(r["recall"] or "nan") for r in rows}
    objects = {r["label"]: int(r["objects"]) for r in rows}
    precision = {r["source"]: r.get("precision", "") for r in rows if r["label"] == ALL_LABELS}
    height = 0.8 / max(len(sources), 1)
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.22 * len(labels) * len(sources)))
    for k, source in enumerate(sources):
        y = np.arange(len(labels)) + k * height
        shown = (
            f"{source} (precision {float(precision[source]):.2f})"
            if precision.get(source) not in (None, "")
            else source
        )
        ax.barh(y, [recall[(source, label)] for label in labels], height, label=shown)
    ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2)
    ax.set_yticklabels([f"{label} ({objects[label]})" for label in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("recall (centre distance, relevant area)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(title or "recall per class (objects in the split)")
    return _save(fig, path)


def plot_confusion(confusion, names, path, title="detection + classification"):
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction)."""
    plt = _pyplot()
    confusion = np.asarray(confusion, dtype=float)
    norm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.6 * len(names)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(
                j,
                i,
                int(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="ground truth", title=title)
    return _save(fig, path)


def make_plots(
    latents_path,
    data_path,
    classifier_path,
    train_curves_path,
    model_path,
    out_dir,
    n_frames: int = 8,
) -> dict[str, Path]:
    """All figures of one model into ``out_dir``; returns name -> path (names: ``PLOTS``)."""

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.games import get_game
    from spacemoc.latents import collect_encodings, load_latents
    from spacemoc.metrics import precision_recall_curve, relevant_subset
    from spacemoc.stages.evaluate import ground_truth, joint_evaluation

    out_dir = Path(out_dir)
    lat = load_latents(latents_path, data_path=data_path)
    game_row = get_game(lat.game)
    clf = ZWhatClassifier.load(classifier_path, game=lat.game)
    names = list(lat.labels)
    gt_boxes, gt_labels = ground_truth(data_path)
    pred = lat.predictions()
    z, colours = lat.prediction_features()
    out = {}

    # One frame (the first) of the first samples.
    t = lat.z_pres_prob.shape[1]
    samples = range(min(n_frames, lat.z_pres_prob.shape[0]))
    with open_h5(data_path, "dataset") as f:
        frames = [f["frames"][i][0] for i in samples]
    idx = [i * t for i in samples]
    out["detections"] = plot_detections(
        frames,
        [pred[i] for i in idx],
        [clf.predict(z[i], colours[i]) if len(z[i]) else [] for i in idx],
        [gt_boxes[i] for i in idx],
        [gt_labels[i] for i in idx],
        names,
        out_dir / "detections.png",
        title=f"{game_row.name}: predictions (red), ground truth (green)",
    )

    out["model_view"] = plot_model_view(
        model_path, data_path, out_dir / "model_view.png", n_frames=min(n_frames, 4)
    )

    rel_pred, rel_gt, _, _ = relevant_subset(pred, gt_boxes, gt_labels, lat.game)
    curves = {}
    for name, (p, g) in {"all": (pred, gt_boxes), "relevant": (rel_pred, rel_gt)}.items():
        precision, recall, _ = precision_recall_curve(p, g)
        curves[name] = (precision, recall)
    out["pr_curve"] = plot_pr_curves(
        curves, out_dir / "pr_curve.png", title=f"{game_row.name}: precision-recall (IoU 0.5)"
    )

    enc = collect_encodings(lat, "all")
    out["latent_pca"] = plot_latent_pca(
        enc["z_what"], enc["label"], names, out_dir / "latent_pca.png"
    )
    out["train_curves"] = plot_training_curves(train_curves_path, out_dir / "train_curves.png")

    joint = joint_evaluation(lat, gt_boxes, gt_labels, clf)
    keep = [*game_row.relevant_indices, len(names), len(names) + 1]
    matrix = joint["confusion"][np.ix_(keep, keep)]
    tick_names = [names[i] for i in game_row.relevant_indices] + ["not an object", "not detected"]
    out["confusion"] = plot_confusion(
        matrix,
        tick_names,
        out_dir / "confusion.png",
        title=f"{game_row.name}: joint F1 {joint['f1']:.3f}",
    )
    return out
