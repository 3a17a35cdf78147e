"""Latents, classifier and metric tables end to end on tiny synthetic data and a fake model."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest

from spacemoc.games import get_game

COLUMNS = (
    "game,model,seed,subset,precision,recall,f_score,ap_avg,ap_0.5,count_accuracy,"
    "few_shot_1,few_shot_4,few_shot_16,few_shot_64,cluster_nn_accuracy,ami,ari,"
    "classifier_accuracy,joint_f1,mota,idf1"
).split(",")
BACKGROUND = (144, 72, 17)
# Pong labels: 1 Ball, 2 Enemy, 3 EnemyScore, 4 Player. (label, w, h, colour)
OBJECTS = [(1, 4, 4, (236, 236, 236)), (2, 4, 16, (213, 130, 74)), (4, 4, 16, (92, 186, 92)),
           (3, 12, 10, (210, 100, 60))]  # fmt: skip
OBJECT_DTYPE = np.dtype([("sample", "i4"), ("t", "i2"), ("x", "f4"), ("y", "f4"), ("w", "f4"),
                         ("h", "f4"), ("label", "i2"), ("relevant", "u1")])  # fmt: skip


def make_dataset(path, n=6, T=2, seed=0, split="test"):
    """A pong-like split: 128x128 frames with coloured rectangles, objects in 160x210 pixels."""
    rng = np.random.default_rng(seed)
    game = get_game("pong")
    frames = np.empty((n, T, 128, 128, 3), np.uint8)
    frames[:] = BACKGROUND
    rows = []
    for i in range(n):
        for t in range(T):
            for k, (label, w, h, colour) in enumerate(OBJECTS):
                if label == 3:  # the score, in the HUD at the top
                    x, y = 30.0, 4.0
                else:  # one vertical band per object so that they never overlap
                    x = float(20 + 45 * k + rng.integers(0, 20))
                    y = float(rng.integers(50, 170))
                c0, c1 = round(x * 128 / 160), round((x + w) * 128 / 160)
                r0, r1 = round(y * 128 / 210), round((y + h) * 128 / 210)
                frames[i, t, r0:r1, c0:c1] = colour
                rows.append((i, t, x, y, w, h, label, label in game.relevant_indices))
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=frames)
        f.create_dataset("objects", data=np.array(rows, dtype=OBJECT_DTYPE))
        # motion boxes: every object but the Ball, as if it stood still
        motion = [(*row[:6], -1, 0) for row in rows if row[6] != 1]
        f.create_dataset("motion_boxes", data=np.array(motion, dtype=OBJECT_DTYPE))
        f.attrs.update(
            game="pong",
            split=split,
            labels=list(game.labels),
            T=T,
            relevant_labels=list(game.relevant),
        )
    return path


class FakeModel:
    """Finds the rectangles differing from the background colour: one present cell per object,
    z_where from its box, z_what = its mean colour (plus a little noise)."""

    game = "pong"
    labels = get_game("pong").labels
    channel_order = "rgb"
    step = 7

    class config:  # noqa: N801 - mimics model.config.G
        G = 4

    def infer(self, images):
        from scipy import ndimage

        images = images.numpy()  # (B,3,128,128)
        cells = self.config.G**2
        b = len(images)
        prob = np.full((b, cells), 0.05, np.float32)
        where = np.tile(np.array([0.1, 0.1, 0.0, 0.0], np.float32), (b, cells, 1))
        what = np.zeros((b, cells, 4), np.float32)
        rng = np.random.default_rng(0)
        background = np.array(BACKGROUND, np.float32)[:, None, None] / 255
        for i, image in enumerate(images):
            changed = np.abs(image - background).max(0) > 0.02
            components, _ = ndimage.label(changed)
            for cell, box in enumerate(ndimage.find_objects(components)):
                r, c = box
                sx, sy = (c.stop - c.start) / 128, (r.stop - r.start) / 128
                cx, cy = (c.start + c.stop) / 128 - 1, (r.start + r.stop) / 128 - 1
                prob[i, cell] = 0.9 - 0.01 * cell
                where[i, cell] = [sx, sy, cx, cy]
                what[i, cell, :3] = image[:, r, c].mean((1, 2))
                what[i, cell, 3] = rng.normal(0, 0.01)
        import torch

        return {
            "z_pres_prob": torch.from_numpy(prob),
            "z_where": torch.from_numpy(where),
            "z_what": torch.from_numpy(what),
        }


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """validation + test data, fake model file, latents of both and a trained classifier."""
    from spacemoc.stages.classifier import train_classifier
    from spacemoc.stages.latents import compute_latents

    root = tmp_path_factory.mktemp("eval")
    model_path = root / "model.pt"
    model_path.write_bytes(b"fake weights")
    paths = {"model": model_path}
    for split, seed in (("validation", 1), ("test", 2)):
        paths[f"data_{split}"] = make_dataset(root / f"{split}.h5", seed=seed, split=split)
        paths[f"latents_{split}"] = compute_latents(
            model_path, paths[f"data_{split}"], root / "latents" / f"{split}.h5", batch_size=4,
            model=FakeModel())  # fmt: skip
    paths["classifier"] = root / "classifier.npz"
    train_classifier(
        paths["latents_validation"],
        paths["classifier"],
        root / "classifier.joblib",
        root / "classifier_labels.csv",
        kind="nn",
        game="pong",
    )
    return paths


def test_latents_hold_matched_labels(stage):
    from spacemoc.latents import load_latents

    lat = load_latents(
        stage["latents_test"], game="pong", model_path=stage["model"], data_path=stage["data_test"]
    )
    assert lat.z_pres_prob.shape == (6, 2, 16) and lat.z_what.shape == (6, 2, 16, 4)
    assert lat.attrs["model_step"] == 7 and lat.attrs["split"] == "test"
    # Four objects per frame, each found and labelled; absent cells carry -1.
    present = lat.present
    assert (present.sum(-1) == 4).all()
    assert (lat.label[~present] == -1).all()
    assert sorted(lat.label[0, 0][present[0, 0]].tolist()) == [1, 2, 3, 4]
    assert (lat.gt_index[present] >= 0).all()


def test_latents_from_another_model_game_or_split_are_refused(stage, tmp_path):
    from spacemoc.latents import load_latents

    other = tmp_path / "other.pt"
    other.write_bytes(b"other weights")
    with pytest.raises(ValueError, match="was made by the model"):
        load_latents(stage["latents_test"], model_path=other)
    with pytest.raises(ValueError, match="not 'boxing'"):
        load_latents(stage["latents_test"], game="boxing")
    with pytest.raises(ValueError, match="does not match"):
        load_latents(stage["latents_test"], data_path=stage["data_validation"])


def test_mini_evaluate_fills_every_column(stage, tmp_path):
    from spacemoc.stages.evaluate import aggregate, evaluate, read_rows, run_bgsub, summary

    background = tmp_path / "background.npy"
    np.save(background, np.full((128, 128, 3), BACKGROUND, np.uint8))
    baseline = tmp_path / "bgsub.csv"
    run_bgsub(stage["data_test"], background, baseline)
    tracking = tmp_path / "tracking.csv"
    tracking.write_text("mota,idf1\n0.75,0.8\n")
    out = tmp_path / "seed0" / "metrics.csv"
    evaluate(
        stage["latents_test"],
        stage["data_test"],
        stage["classifier"],
        out,
        seed=0,
        model_path=stage["model"],
        baseline_path=baseline,
        tracking_path=tracking,
    )
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    ours = {r["subset"]: r for r in rows if r["model"] == "space_moc"}  # the default arm
    # The fake model sees every object exactly: detection is perfect, colours separate labels.
    for column in (
        "precision",
        "recall",
        "f_score",
        "count_accuracy",
        "cluster_nn_accuracy",
        "classifier_accuracy",
        "joint_f1",
        "few_shot_1",
    ):
        assert float(ours["relevant"][column]) == pytest.approx(1.0), column
    assert float(ours["all"]["ap_0.5"]) > 0.5
    for column in COLUMNS[4:]:
        assert ours["relevant"][column] != "", column
    assert ours["all"]["classifier_accuracy"] == "" and ours["all"]["mota"] == ""
    assert (ours["relevant"]["mota"], ours["relevant"]["idf1"]) == ("0.75", "0.8")
    bgsub = {r["subset"]: r for r in rows if r["model"] == "bgsub"}
    assert bgsub["relevant"]["seed"] == "-" and bgsub["relevant"]["few_shot_1"] == ""
    assert float(bgsub["relevant"]["f_score"]) == pytest.approx(1.0)
    for row in rows:
        for column in COLUMNS[4:]:
            if row[column]:
                assert 0.0 <= float(row[column]) <= 1.0, (column, row[column])

    # Aggregate two "seeds" and the summary.
    second = tmp_path / "seed1" / "metrics.csv"
    evaluate(
        stage["latents_test"],
        stage["data_test"],
        stage["classifier"],
        second,
        seed=1,
        baseline_path=baseline,
    )
    other_arm = tmp_path / "space" / "seed0" / "metrics.csv"
    evaluate(
        stage["latents_test"],
        stage["data_test"],
        stage["classifier"],
        other_arm,
        seed=0,
        baseline_path=baseline,
        model_name="space",
    )
    eval_csv = tmp_path / "eval.csv"
    rows = aggregate([out, second, other_arm], eval_csv, baseline_path=baseline)
    keys = [(r["model"], r["seed"], r["subset"]) for r in read_rows(eval_csv)]
    # per arm: its seeds, then mean and std; the baseline once at the end
    assert keys == [("space_moc", "0", "all"), ("space_moc", "0", "relevant"),
                    ("space_moc", "1", "all"), ("space_moc", "1", "relevant"),
                    ("space_moc", "mean", "all"), ("space_moc", "std", "all"),
                    ("space_moc", "mean", "relevant"), ("space_moc", "std", "relevant"),
                    ("space", "0", "all"), ("space", "0", "relevant"),
                    ("space", "mean", "all"), ("space", "std", "all"),
                    ("space", "mean", "relevant"), ("space", "std", "relevant"),
                    ("bgsub", "-", "all"), ("bgsub", "-", "relevant")]  # fmt: skip
    mean = next(r for r in read_rows(eval_csv) if r["seed"] == "mean" and r["subset"] == "relevant")
    assert mean["model"] == "space_moc"
    assert float(mean["mota"]) == pytest.approx(0.75)  # only seed 0 has tracking
    std = next(r for r in read_rows(eval_csv) if r["seed"] == "std" and r["subset"] == "relevant")
    assert float(std["recall"]) == 0.0 and std["mota"] == ""
    all_rows = summary([eval_csv, eval_csv], tmp_path / "summary.csv")
    assert len(all_rows) == 32


def test_classifier_for_another_game_and_empty_split_are_refused(stage, tmp_path):
    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.stages.evaluate import evaluate

    clf = ZWhatClassifier.load(stage["classifier"])
    clf.game, clf.labels = "boxing", get_game("boxing").labels
    wrong = tmp_path / "boxing.npz"
    clf.save(wrong)
    with pytest.raises(ValueError, match="trained for game 'boxing', not 'pong'"):
        evaluate(stage["latents_test"], stage["data_test"], wrong, tmp_path / "m.csv", seed=0)
    empty = make_dataset(tmp_path / "empty.h5", n=0)
    from spacemoc.stages.latents import compute_latents

    with pytest.raises(ValueError, match="no samples"):
        compute_latents(stage["model"], empty, tmp_path / "lat.h5", model=FakeModel())


def tiny_checkpoint(family: str, path):
    """A small untrained model of ``family`` saved as a full checkpoint."""
    import torch

    from spacemoc.models import get_family, save_checkpoint

    torch.manual_seed(0)
    config = {"space": {"G": 4}, "slot": {"num_slots": 3, "enc_channels": 8, "attend": "all"}}
    kind = get_family(family)
    model = kind.model(kind.config.from_dict(config[family]))
    return save_checkpoint(path, model, game="pong", labels=get_game("pong").labels, step=0)


def test_plots_are_written(stage, tmp_path):
    from spacemoc.stages.plots import PLOTS, make_plots

    curves = tmp_path / "train_curves.csv"
    curves.write_text("step,loss,kl\n1,3.0,1.0\n2,2.0,0.5\n3,1.5,0.4\n")
    outputs = make_plots(
        stage["latents_test"],
        stage["data_test"],
        stage["classifier"],
        curves,
        tiny_checkpoint("slot", tmp_path / "model.pt"),
        tmp_path / "plots",
        n_frames=2,
    )
    assert tuple(outputs) == PLOTS
    for path in outputs.values():
        assert path.stat().st_size > 1000, path


@pytest.mark.parametrize("family", ["space", "slot"])
def test_model_view_draws_every_panel_of_either_family(stage, tmp_path, family):
    import matplotlib.image
    import torch

    from spacemoc.models import load_checkpoint
    from spacemoc.stages.plots import plot_model_view

    model_path = tiny_checkpoint(family, tmp_path / "model.pt")
    panels = load_checkpoint(model_path).eval().view(torch.rand(2, 3, 128, 128))
    assert len(panels) >= 2
    for panel in panels.values():
        assert panel.shape == (2, 3, 128, 128) and 0 <= panel.min() and panel.max() <= 1
    path = plot_model_view(model_path, stage["data_test"], tmp_path / "view.png", n_frames=2)
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > height  # one row per frame, one column per panel beside the input


def test_dry_run_of_the_summary_shows_one_chain_per_game_and_seed(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    REPO = Path(__file__).resolve().parents[1]  # noqa: N806
    extra = tmp_path / "three.yaml"
    extra.write_text("games: [pong, boxing, skiing]\nseeds: [0, 1]\nmodels: [space_moc]\n")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
           "--directory", str(tmp_path / "wd"), "--configfile", str(REPO / "config" / "test.yaml"),
           str(extra), "--cores", "2", "-n", "--", "results/summary.csv"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = result.stdout + result.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", stats.split("Job stats:")[1], re.M))
    counts = {k: int(v) for k, v in counts.items()}
    # One chain per game (background, data, baseline, aggregate) and per game and seed (train,
    # latents of two splits, and of the agent split for Pong and Boxing, which have a control
    # policy; classifier, evaluate); other stages may add jobs of their own.
    expected = {"background": 3, "bgsub": 3, "train": 6, "latents": 12 + 4, "classifier": 6,
                "evaluate": 6, "aggregate": 3, "summary": 1}  # fmt: skip
    assert {k: counts.get(k) for k in expected} == expected
    assert counts["dataset"] >= 9


def test_latents_of_a_real_checkpoint(tmp_path):
    """The model stage's checkpoint format and infer() plug into compute_latents."""
    import torch

    from spacemoc.latents import load_latents
    from spacemoc.models import save_checkpoint
    from spacemoc.models.space import Space, SpaceConfig
    from spacemoc.stages.latents import compute_latents

    torch.manual_seed(0)
    model = Space(SpaceConfig(G=4))
    path = save_checkpoint(tmp_path / "model.pt", model, game="pong",
                           labels=list(get_game("pong").labels), step=3)  # fmt: skip
    data = make_dataset(tmp_path / "test.h5", n=2)
    out = compute_latents(path, data, tmp_path / "latents.h5", device="cpu")
    lat = load_latents(out, game="pong", model_path=path, data_path=data)
    assert lat.z_pres_prob.shape == (2, 2, 16)
    assert lat.z_what.shape[:3] == (2, 2, 16) and lat.attrs["model_step"] == 3
    assert ((lat.z_pres_prob >= 0) & (lat.z_pres_prob <= 1)).all()
    # Labels only on present cells; z_what of absent cells is not encoded.
    assert (lat.label[~lat.present] == -1).all()
    assert (lat.z_what[~lat.present] == 0).all()
    assert lat.attrs["box_readout"] == "alpha"  # the workflow's default (config schema)
    # the alpha readout changes the boxes of present cells only, not their encodings
    with torch.no_grad():
        model.fg_module.img_encoder.z_pres_net.bias.fill_(0.5)  # some cells present
    save_checkpoint(path, model, game="pong", labels=list(get_game("pong").labels), step=3)
    runs = {
        boxes: load_latents(
            compute_latents(path, data, tmp_path / f"{boxes}.h5", box_readout=boxes)
        )
        for boxes in ("glimpse", "alpha")
    }
    glimpse, alpha = runs["glimpse"], runs["alpha"]
    assert alpha.attrs["box_readout"] == "alpha" and alpha.present.any()
    np.testing.assert_array_equal(alpha.z_what, glimpse.z_what)
    np.testing.assert_array_equal(alpha.z_where[~alpha.present], glimpse.z_where[~alpha.present])
    assert not np.allclose(alpha.z_where[alpha.present], glimpse.z_where[alpha.present])
    with pytest.raises(ValueError, match="unknown box readout"):
        compute_latents(path, data, tmp_path / "bad.h5", box_readout="tight")


def test_command_line(stage, tmp_path, capsys):
    from spacemoc.cli import main

    out = tmp_path / "metrics.csv"
    args = ["evaluate", "--latents", str(stage["latents_test"]), "--data", str(stage["data_test"]),
            "--classifier", str(stage["classifier"]), "--out", str(out), "--seed", "3",
            "--few-shot", "1,4"]  # fmt: skip
    assert main(args) == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["seed"] for r in rows} == {"3"} and rows[0]["few_shot_16"] == ""
    assert main(["aggregate", str(out), "--out", str(tmp_path / "eval.csv")]) == 0
    assert main(["classifier", "--latents", str(stage["latents_test"]), "--out",
                 str(tmp_path / "c.npz"), "--game", "tennis"]) == 2  # fmt: skip
    assert "not 'tennis'" in capsys.readouterr().err


def test_class_recall_per_source_and_its_command(stage, tmp_path, capsys):
    from spacemoc.cli import main
    from spacemoc.latents import load_latents
    from spacemoc.metrics import detection_scores, relevant_subset
    from spacemoc.stages.class_recall import read_class_recall
    from spacemoc.stages.evaluate import ground_truth

    out, plot = tmp_path / "class_recall.csv", tmp_path / "class_recall.png"
    background = tmp_path / "background.npy"
    np.save(background, np.full((128, 128, 3), BACKGROUND, np.uint8))
    args = ["class-recall", "--data", str(stage["data_test"]), "--out", str(out), "--plot",
            str(plot), "--background", str(background), "--latents", str(stage["latents_test"]),
            "--run", str(stage["model"]), "--arm", "space_m"]  # fmt: skip
    assert main(args) == 0
    assert "space_m" in capsys.readouterr().out and plot.stat().st_size > 0
    rows = {(r["source"], r["label"]): r for r in read_class_recall(out)}
    sources = ("cells8", "cells16", "motion", "hints8", "hints16", "changed", "bgsub", "space_m")
    assert list(dict.fromkeys(source for source, _ in rows)) == list(sources)
    # the synthetic objects lie in bands 45 pixels apart: one per cell of either grid
    for label in ("Ball", "Enemy", "Player"):
        assert rows[("cells16", label)]["recall"] == "1"
        assert rows[("bgsub", label)]["recall"] == "1"
        assert rows[("changed", label)]["recall"] == "1"  # every object is drawn
    # the motion boxes miss the still ball, and find nothing but objects
    assert rows[("motion", "Ball")]["recall"] == "0"
    assert rows[("motion", "Player")]["recall"] == "1"
    assert rows[("motion", "all")]["precision"] == "1"
    assert rows[("motion", "Ball")]["objects"] == str(6 * 2)
    assert float(rows[("motion", "Ball")]["median_width"]) == 4
    # the model's row over all classes is eval.csv's relevant recall and precision
    lat = load_latents(stage["latents_test"], model_path=stage["model"])
    gt, labels = ground_truth(stage["data_test"])
    rel_pred, rel_gt, _, _ = relevant_subset(lat.predictions(), gt, labels, "pong")
    expected = detection_scores(rel_pred, rel_gt)
    for column in ("recall", "precision"):
        got = float(rows[("space_m", "all")][column])
        assert got == pytest.approx(expected[column], abs=1e-4)
    # without the optional files, the data's own sources only
    assert main(["class-recall", "--data", str(stage["data_test"]), "--out", str(out)]) == 0
    assert {r["source"] for r in read_class_recall(out)} == set(sources[:5])


def test_tracking_csv_of_the_tracking_stage(tmp_path):
    from spacemoc.stages.evaluate import tracking_values
    from spacemoc.tables import cell

    path = tmp_path / "tracking.csv"
    path.write_text("subset,mota,idf1,num_switches\nrelevant,-0.5,nan,3\n")
    values = tracking_values(path)
    assert values["relevant"]["mota"] == 0.0  # negative MOTA written as 0
    assert cell(values["relevant"]["idf1"]) == ""  # NaN -> empty cell
    assert tracking_values(tmp_path / "missing.csv") == {} and tracking_values(None) == {}


def test_results_table_gives_mean_and_std_per_arm_beside_the_published_figures(tmp_path):
    from spacemoc.stages.evaluate import COLUMNS, results_table, write_rows

    def row(model, seed, f):
        values = dict.fromkeys(COLUMNS, "")
        values.update(game="pong", model=model, seed=seed, subset="relevant", f_score=f)
        return values

    rows = [row("space_moc", "0", 0.9), row("space_moc", "1", 0.8), row("space", "0", 0.5)]
    rows += [dict(row("space_moc", "0", 0.1), subset="all"), row("bgsub", "-", 0.7)]
    write_rows(rows, tmp_path / "summary.csv")
    text = results_table(tmp_path / "summary.csv", tmp_path / "results.md")
    assert (tmp_path / "results.md").read_text() == text
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| space_moc | 2 | 0.850 ± 0.071 |" in lines["| space_moc"]
    assert "| space | 1 | 0.500 |" in lines["| space"]
    assert "| bgsub | - | 0.700 |" in lines["| bgsub"]
    assert "0.928 ± 0.013" in lines["| published SPACE+MOC (GPU)"]


def test_time_to_quality_draws_curves_and_points(tmp_path):
    import matplotlib.image

    from spacemoc.stages.plots import plot_time_to_quality

    curves = tmp_path / "train_curves.csv"
    curves.write_text(
        "step,loss,elapsed_s,val_relevant_f,val_cluster_nn\n"
        "1,3.0,60,,\n50,2.0,3000,0.5,0.6\n100,1.0,6000,0.9,0.95\n"
    )
    points = {"old (test split)": [{"minutes": 150, "val_relevant_f": 0.97}]}
    path = plot_time_to_quality({"new": curves}, tmp_path / "t.png", points=points)
    assert matplotlib.image.imread(path).shape[1] > 0
    (tmp_path / "bare.csv").write_text("step,loss\n1,3.0\n")
    with pytest.raises(ValueError, match="eval_every"):
        plot_time_to_quality({"bare": tmp_path / "bare.csv"}, tmp_path / "u.png")
