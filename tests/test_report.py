"""The README's report command works after the README's main command (issue 16).

The README runs the whole workflow (rule `all`), then `snakemake --report report.html`; after a
single target, the report command names the same target.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import run_snakemake

# Runs the tiny workflow (the shared session run) and then the rest of rule `all`.
pytestmark = pytest.mark.slow


def ran(result) -> str:
    return f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def test_report_after_the_readme_main_command(tiny_run, tmp_path):
    # A copy of the shared run: the SLURM test compares that run's files with its own.
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)

    # The shared run built single targets: a report of the same target works.
    result = run_snakemake(
        workdir, "--report", "eval.html", "--", "results/pong/eval.csv", check=False
    )
    assert result.returncode == 0, ran(result)
    assert "The workflow's stages" in (workdir / "eval.html").read_text()

    # The README: the main command (rule `all`, with the tiny config), then the report command.
    result = run_snakemake(workdir, "--cores", "2", "--resources", "gpu=1", check=False)
    assert result.returncode == 0, ran(result)
    result = run_snakemake(workdir, "--report", "report.html", check=False)
    assert result.returncode == 0, ran(result)

    # One self-contained HTML page a browser opens.
    html = (workdir / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    # The home page: the stages and the config of this run (the tiny config's 4 training steps).
    assert "The workflow's stages" in html
    assert "Config of this run" in html and "steps=4" in html
    # The tables and figures registered for the report.
    for name in ("summary.csv", "eval.csv", "detections.png", "train_curves.png"):
        assert name in html, name
