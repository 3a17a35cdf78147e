"""End to end: the tiny config runs the whole workflow from nothing, as a user would."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DESIGN_COLUMNS = (
    "game,model,seed,subset,precision,recall,f_score,ap_avg,ap_0.5,count_accuracy,"
    "few_shot_1,few_shot_4,few_shot_16,few_shot_64,cluster_nn_accuracy,ami,ari,"
    "classifier_accuracy,joint_f1,mota,idf1"
).split(",")


def snakemake(workdir, *args, check=True):
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(REPO / "config" / "test.yaml"),
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=1500)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_workflow")
    result = snakemake(
        workdir, "--cores", "2", "--resources", "gpu=1", "--", "results/pong/eval.csv", check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_tiny_workflow_writes_eval_csv_with_every_column(tiny_run):
    with open(tiny_run / "results/pong/eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys()) == DESIGN_COLUMNS
    spacemoc_rows = [r for r in rows if r["model"] == "spacemoc"]
    assert {r["seed"] for r in spacemoc_rows} == {"0", "mean", "std"}
    assert {r["subset"] for r in rows} == {"all", "relevant"}
    assert any(r["model"] == "bgsub" for r in rows)
    for row in rows:
        for column in DESIGN_COLUMNS[4:]:
            if row[column] != "":
                assert 0.0 <= float(row[column]) <= 1.0, (column, row[column])
    # Every rule left a log and a benchmark file.
    assert list((tiny_run / "logs").rglob("*.log"))


@pytest.mark.slow
def test_tiny_workflow_is_up_to_date_after_a_run(tiny_run):
    result = snakemake(tiny_run, "-n", "--", "results/pong/eval.csv")
    assert "Nothing to be done" in result.stdout + result.stderr
