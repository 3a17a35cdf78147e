"""End to end: the tiny config runs the whole workflow from nothing, as a user would."""

from __future__ import annotations

import csv

import pytest
from conftest import TINY_TARGETS, run_snakemake

DESIGN_COLUMNS = (
    "game,model,seed,subset,precision,recall,f_score,ap_avg,ap_0.5,count_accuracy,"
    "few_shot_1,few_shot_4,few_shot_16,few_shot_64,cluster_nn_accuracy,ami,ari,"
    "classifier_accuracy,joint_f1,mota,idf1"
).split(",")


@pytest.mark.slow
def test_tiny_workflow_writes_eval_csv_with_every_column(tiny_run):
    with open(tiny_run / "results/pong/eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == DESIGN_COLUMNS
    # the tiny config's two arms, each with its seed, mean and std rows
    assert {r["model"] for r in rows} == {"space", "space_moc", "bgsub"}
    spacemoc_rows = [r for r in rows if r["model"] == "space_moc"]
    assert {r["seed"] for r in spacemoc_rows} == {"0", "mean", "std"}
    assert {r["subset"] for r in rows} == {"all", "relevant"}
    assert any(r["model"] == "bgsub" for r in rows)
    for row in rows:
        for column in DESIGN_COLUMNS[4:]:
            if row[column] != "":
                assert 0.0 <= float(row[column]) <= 1.0, (column, row[column])
    # The tracking stage filled its columns (tracking is scored on the relevant objects).
    (relevant,) = [r for r in spacemoc_rows if r["seed"] == "0" and r["subset"] == "relevant"]
    assert relevant["mota"] != "" and relevant["idf1"] != ""
    assert (tiny_run / "results/summary.csv").stat().st_size > 0
    # Pong has a control policy: its agent split was made and the classifier was fit on it too.
    assert (tiny_run / "results/pong/data/agent.h5").is_file()
    classifier_log = (tiny_run / "logs/pong/space_moc/classifier_seed0.log").read_text()
    assert "latents/validation.h5, results/pong/space_moc/seed0/latents/agent.h5" in classifier_log
    assert (tiny_run / "results/pong/space_moc/seed0/latents/agent.h5").is_file()
    # Every job left a log and a benchmark file.
    logs = {p.stem for p in (tiny_run / "logs").rglob("*.log")}
    benchmarks = {p.stem for p in (tiny_run / "results/pong").rglob("benchmarks/*.tsv")}
    for stage in ("background", "train_seed0", "evaluate_seed0", "aggregate"):
        assert stage in logs, sorted(logs)
        assert stage in benchmarks, sorted(benchmarks)


def test_tiny_workflow_writes_the_recall_of_every_class_per_source(tiny_run):
    from spacemoc.games import get_game
    from spacemoc.stages.class_recall import read_class_recall

    rows = read_class_recall(tiny_run / "results/pong/space_moc/class_recall.csv")
    sources = ["cells8", "cells16", "motion", "hints8", "hints16", "changed", "bgsub", "space_moc"]
    assert list(dict.fromkeys(r["source"] for r in rows)) == sources
    assert [r["label"] for r in rows[:4]] == [*get_game("pong").relevant, "all"]
    for row in rows:
        found, objects = int(row["found"]), int(row["objects"])
        assert 0 <= found <= objects
        if objects:
            assert float(row["recall"]) == pytest.approx(found / objects, abs=1e-4)
        assert (row["precision"] != "") == (row["label"] == "all")
    for source in sources:  # a source's "all" row sums its classes
        group = [r for r in rows if r["source"] == source]
        assert int(group[-1]["objects"]) == sum(int(r["objects"]) for r in group[:-1])
        assert int(group[-1]["found"]) == sum(int(r["found"]) for r in group[:-1])
    # the ground truth kept where the frame differs from the background is all correct
    (changed,) = [r for r in rows if r["source"] == "changed" and r["label"] == "all"]
    assert float(changed["precision"]) == 1 and float(changed["recall"]) > 0.9
    # the paddles never share a cell of either grid with another object
    for row in rows:
        if row["source"].startswith("cells") and row["label"] in ("Player", "Enemy"):
            assert row["found"] == row["objects"], row
    # the model's and the baseline's rows over all classes are eval.csv's relevant figures
    with open(tiny_run / "results/pong/eval.csv", newline="") as handle:
        evaluated = {
            (r["model"], r["seed"]): r for r in csv.DictReader(handle) if r["subset"] == "relevant"
        }
    for source, key in (("space_moc", ("space_moc", "0")), ("bgsub", ("bgsub", "-"))):
        (overall,) = [r for r in rows if r["source"] == source and r["label"] == "all"]
        for column in ("recall", "precision"):
            assert float(overall[column]) == pytest.approx(float(evaluated[key][column]), abs=1e-4)
    data_only = read_class_recall(tiny_run / "results/pong/class_recall.csv")
    assert data_only == [r for r in rows if r["source"] != "space_moc"]
    assert (tiny_run / "results/pong/space_moc/plots/class_recall.png").stat().st_size > 0
    assert (tiny_run / "results/pong/class_recall.png").stat().st_size > 0


@pytest.mark.slow
def test_tiny_workflow_is_up_to_date_after_a_run(tiny_run):
    result = run_snakemake(tiny_run, "-n", "--", *TINY_TARGETS)
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_exported_detector_folder_detects_like_the_run(tiny_run):
    """`results/<game>/<arm>/seed<k>/detector` (rule export) is the run's detector in less space:
    the same detections, the run's eval.csv, the config it was made with and its training cost."""
    import numpy as np
    import yaml

    from spacemoc import Detector

    folder = tiny_run / "results/pong/space_moc/seed0/detector"
    run = tiny_run / "results/pong/space_moc/seed0"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "classifier.npz", "classifier_labels.csv", "config.yaml", "detector.pt", "eval.csv",
        "train_benchmark.tsv",
    ]  # fmt: skip
    assert (folder / "detector.pt").stat().st_size < 0.5 * (run / "model.pt").stat().st_size
    assert (folder / "eval.csv").read_text() == (tiny_run / "results/pong/eval.csv").read_text()
    # what the weights cost: the train rule's own benchmark
    benchmark = (tiny_run / "results/pong/space_moc/benchmarks/train_seed0.tsv").read_text()
    assert (folder / "train_benchmark.tsv").read_text() == benchmark
    assert benchmark.startswith("s\th:m:s\tmax_rss")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["train"]["steps"] == 4 and config["data"]["sizes"]["train"] == 32

    frames = np.random.default_rng(0).integers(0, 256, (3, 210, 160, 3), dtype=np.uint8)
    exported_detector = Detector.load(folder, threshold=0.01, hud=True)
    assert exported_detector.box_readout == config["eval"]["boxes"]  # the readout eval.csv used
    exported = exported_detector.detect_batch(frames)
    original = Detector.load(
        run, threshold=0.01, hud=True, box_readout=config["eval"]["boxes"]
    ).detect_batch(frames)
    assert exported == original and sum(map(len, original)) > 0


def test_another_workflow_can_import_this_one_as_a_module(tmp_path):
    """The catalog's `module` use: an outer workflow imports every rule under a prefix."""
    import subprocess
    import sys

    from conftest import REPO

    (tmp_path / "Snakefile").write_text(
        "configfile: 'spacemoc.yaml'\n\n"
        "module spacemoc:\n"
        f"    snakefile: {str(REPO / 'workflow' / 'Snakefile')!r}\n"
        "    config: config\n\n"
        "use rule * from spacemoc as spacemoc_*\n"
    )
    (tmp_path / "spacemoc.yaml").write_text((REPO / "config" / "test.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--", "results/pong/eval.csv"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in ("spacemoc_dataset", "spacemoc_train", "spacemoc_evaluate", "spacemoc_aggregate"):
        assert rule in result.stdout, result.stdout[-3000:]


def test_three_arms_plan_three_trainings_under_their_own_paths(tmp_path):
    """The MOC ablation side by side: `models: [space, space_m, space_moc]`."""
    import re

    extra = tmp_path / "arms.yaml"
    extra.write_text(
        "models: [space, space_m, space_moc, space_moc_oc50, slot, slot_moc]\n"
        "arms: {space_moc_oc50: {moc: {area_object_weight: 50.0}}}\n"
    )
    from conftest import REPO

    result = run_snakemake(tmp_path / "wd", "-n", "--cores", "1", "--configfile",
                           str(REPO / "config" / "test.yaml"), str(extra),
                           "--", "results/pong/eval.csv")  # fmt: skip
    planned = set(re.findall(r"results/pong/(\w+)/seed0/model\.pt", result.stdout))
    arms = {"space", "space_m", "space_moc", "space_moc_oc50", "slot", "slot_moc"}
    assert planned == arms, result.stdout[-3000:]
    assert len(re.findall(r"^rule train:", result.stdout, re.M)) == len(arms)


@pytest.mark.slow
def test_slot_moc_arm_runs_end_to_end_and_exports_a_detector(tmp_path):
    """The second model family through the same workflow: eval.csv, plots and a detector."""
    import numpy as np
    from conftest import REPO

    from spacemoc import Detector

    extra = tmp_path / "slot.yaml"
    extra.write_text(
        "models: [slot_moc]\nmodel: {slot: {num_slots: 4, enc_channels: 16, dec_channels: 16}}\n"
    )
    targets = ("results/pong/eval.csv", "results/pong/slot_moc/seed0/detector")
    result = run_snakemake(tmp_path / "wd", "--cores", "2", "--configfile",
                           str(REPO / "config" / "test.yaml"), str(extra),
                           "--", *targets, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    with open(tmp_path / "wd/results/pong/eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["model"] for r in rows} == {"slot_moc", "bgsub"}
    (relevant,) = [
        r for r in rows if (r["model"], r["seed"], r["subset"]) == ("slot_moc", "0", "relevant")
    ]
    assert relevant["f_score"] != "" and relevant["mota"] != ""
    run = tmp_path / "wd/results/pong/slot_moc/seed0"
    frames = np.random.default_rng(0).integers(0, 256, (3, 210, 160, 3), dtype=np.uint8)
    exported = Detector.load(run / "detector", threshold=0.01, hud=True).detect_batch(frames)
    original = Detector.load(run, threshold=0.01, hud=True, box_readout="alpha")
    assert exported == original.detect_batch(frames) and len(exported) == 3
