"""Shared test fixtures and paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COMPAT_FIXTURE = SHARED / "fixtures" / "ox4rl_compat"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def compat_fixture() -> Path:
    """The reference checkpoint and its exact inference outputs (shared/fixtures/ox4rl_compat)."""
    if not (COMPAT_FIXTURE / "checkpoint.pth").exists():
        pytest.skip(f"reference fixture not found at {COMPAT_FIXTURE} (../shared beside the repo)")
    return COMPAT_FIXTURE


# What the tiny end-to-end run builds; the SLURM test builds the same through SLURM and compares.
TINY_TARGETS = (
    "results/pong/eval.csv",
    "results/summary.csv",
    "results/results.md",
    "results/pong/control.csv",
    "results/pong/class_recall.csv",
    "results/pong/space_moc/class_recall.csv",
    "results/pong/space_moc/seed0/detector",
    "results/pong/space_moc/seed0/student_metrics.csv",
)


def run_snakemake(workdir, *args, check=True, config=REPO / "config" / "test.yaml"):
    """Run the workflow of this checkout in ``workdir`` with the tiny config."""
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "workflow" / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(config),
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=1800)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny config run from nothing, once per test session (shared by the workflow and
    SLURM tests)."""
    workdir = tmp_path_factory.mktemp("tiny_workflow")
    result = run_snakemake(workdir, "--cores", "2", "--", *TINY_TARGETS, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir
