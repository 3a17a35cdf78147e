"""The tiny workflow through a real SLURM: profiles/slurm on a single-node cluster on this machine.

The cluster (tests/slurm/slurm_cluster.py) is Debian's slurm-wlm and munge, installed with apt-get
when missing, started as plain daemons on 127.0.0.1 and stopped by pid afterwards. Its node declares
one GPU that is /dev/null, so the profile's GPU request for `train` is submitted as written; the job
itself sees no CUDA device and trains on the CPU.

The run is the README's command plus two flags a real cluster does not need: without an accounting
database `sacct` cannot report job states, so the plugin polls `squeue` (SLURM keeps finished jobs
visible for MinJobAge=300 s), and its first poll comes after 2 s instead of 40 s.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_TARGETS

# Not `from tests...`: ocatari installs a top-level `tests` package that can shadow ours.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "slurm"))
from slurm_cluster import SlurmCluster, ensure_installed  # noqa: E402

# Minutes (the tiny workflow twice, ~15 s of SLURM overhead per job); `.ci/run` runs slow tests too.
pytestmark = pytest.mark.slow

# The workflow test's targets, so the local run it shares and the SLURM run build the same files.
TARGETS = TINY_TARGETS
SLURM_TEST_FLAGS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "5",
)  # fmt: skip
RUN_TIMEOUT_S = 1500


def snakemake(workdir: Path, *args: str, env=None, extra_config=()) -> subprocess.CompletedProcess:
    cmd = [
        "timeout", "-k", "30", str(RUN_TIMEOUT_S),
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "workflow" / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(REPO / "config" / "test.yaml"), *map(str, extra_config),
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def ran(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-8000:]}"


def submitted_jobs(log: str) -> dict[int, str]:
    """SLURM job id -> rule, from the plugin's 'submitted' lines in snakemake's log."""
    pattern = r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/"
    return {int(job_id): rule for job_id, rule in re.findall(pattern, log)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.skip('snakemake-executor-plugin-slurm is not installed: pip install -e ".[slurm]"')
    reason = ensure_installed()
    if reason:
        pytest.skip(f"no SLURM on this machine: {reason}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), gpus=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def local_run(request, tmp_path_factory) -> Path:
    """A local run of the tiny config: the workflow test's `tiny_run` when tests/conftest.py
    shares it (one run less in CI), else our own of TARGETS."""
    try:
        return request.getfixturevalue("tiny_run")
    except pytest.FixtureLookupError:
        pass
    local = tmp_path_factory.mktemp("local_run")
    result = snakemake(local, "--cores", "2", "--", *TARGETS)
    assert result.returncode == 0, ran(result)
    return local


@pytest.fixture(scope="module")
def runs(cluster, local_run, tmp_path_factory):
    """TARGETS built through SLURM: (local run dir, slurm run dir, slurm run log)."""
    on_slurm = tmp_path_factory.mktemp("slurm_run")
    result = snakemake(
        on_slurm,
        "--workflow-profile", str(REPO / "profiles" / "slurm"),
        *SLURM_TEST_FLAGS,
        "--", *TARGETS,
        env=cluster.env(),
    )  # fmt: skip
    assert result.returncode == 0, ran(result) + cluster.logs()
    return local_run, on_slurm, result.stderr + result.stdout


def finished_rules(log: str) -> Counter:
    return Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))


def test_every_job_ran_as_a_completed_slurm_job(cluster, runs):
    local, on_slurm, log = runs
    assert all((on_slurm / target).exists() for target in TARGETS)
    jobs = submitted_jobs(log)
    assert jobs, log[-3000:]
    # Every job of the local run ran here too, and all but declared localrules went to SLURM.
    local_log = "".join(p.read_text() for p in (local / ".snakemake" / "log").glob("*.log"))
    assert finished_rules(local_log) <= finished_rules(log)
    local_rules = re.findall(r"^\s*localrule (\w+):", log, flags=re.MULTILINE)
    assert finished_rules(log) == Counter([*jobs.values(), *local_rules])

    # SLURM's own view: squeue (finished jobs stay listed for MinJobAge) and the controller log.
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    listed = cluster.run("squeue", "--states=all", "--noheader", "--format=%i|%j|%T")
    states = {int(i): (name, state) for i, name, state in (ln.split("|") for ln in listed.split())}
    controller_log = (cluster.root / "slurmctld.log").read_text()
    for job_id in jobs:
        assert states[job_id] == (run_id, "COMPLETED"), (job_id, listed)
        assert f"_job_complete: JobId={job_id} WEXITSTATUS 0" in controller_log

    # One GPU for the rules that use one (the `gpu` resource: train, latents), none for the rest.
    for job_id, rule in jobs.items():
        shown = cluster.run("scontrol", "--oneliner", "show", "job", str(job_id))
        assert ("gres:gpu:1" in shown) == (rule in ("train", "latents", "distill")), (rule, shown)
    assert "train" in jobs.values()


def relative_files(root: Path) -> set[str]:
    files = set()
    for path in (root / "results").rglob("*"):
        if path.is_file():
            name = path.relative_to(root).as_posix()
            # TensorBoard names its files after the host, time and pid.
            files.add(re.sub(r"events\.out\.tfevents\..*", "events.out.tfevents.*", name))
    return files


def assert_same_h5(left: Path, right: Path) -> None:
    with h5py.File(left, "r") as a, h5py.File(right, "r") as b:
        names_a, names_b = [], []
        a.visit(names_a.append)
        b.visit(names_b.append)
        assert names_a == names_b, left
        for name in names_a:
            if isinstance(a[name], h5py.Dataset):
                assert np.array_equal(a[name][()], b[name][()]), (left, name)


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        # Timing columns (step_time_s, elapsed_s, ...) differ from run to run.
        return [
            {k: v for k, v in row.items() if not k.endswith("_s")} for row in csv.DictReader(handle)
        ]


def test_outputs_match_a_local_run(runs):
    """Same files, same arrays, same weights, same metrics as the local run of the same config.

    Everything is seeded and both runs train on the CPU with the same thread count (the SLURM job
    gets `--cpus-per-task` = the rule's threads), so the results are identical, not just similar.
    """
    local, on_slurm, _ = runs
    # The local run may have built fewer targets (the workflow test's run), not other files.
    assert relative_files(local) <= relative_files(on_slurm)
    results = local / "results"

    def twin(path: Path) -> Path:
        return on_slurm / path.relative_to(local)

    for path in sorted(results.rglob("*.h5")):
        assert_same_h5(path, twin(path))
    for path in sorted(results.rglob("*.npy")):
        assert np.array_equal(np.load(path), np.load(twin(path))), path
    for path in sorted(results.rglob("*.npz")):
        with np.load(path) as mine, np.load(twin(path)) as theirs:
            assert sorted(mine.files) == sorted(theirs.files), path
            for name in mine.files:
                assert np.array_equal(mine[name], theirs[name]), (path, name)
    for path in sorted(results.rglob("*.pt")):
        mine = torch.load(path, weights_only=True)
        theirs = torch.load(twin(path), weights_only=True)
        assert mine["step"] == theirs["step"], path
        assert mine["state_dict"].keys() == theirs["state_dict"].keys(), path
        for key, tensor in mine["state_dict"].items():
            assert torch.equal(tensor, theirs["state_dict"][key]), (path, key)
    csvs = sorted(p for p in results.rglob("*.csv") if "benchmarks" not in p.parts)
    assert any(p.name == "eval.csv" for p in csvs)
    for path in csvs:
        assert csv_rows(path) == csv_rows(twin(path)), path


def test_gpu_request_can_be_switched_off(cluster, runs, tmp_path):
    """`gpu: 0` for train and latents in the profile submits them without a GPU (CPU-only
    clusters, docs/cluster.md). A second seed with a one-step budget keeps this to one short job."""
    _, on_slurm, _ = runs
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["set-resources"]["train"]["gpu"] == 1
    for rule in ("train", "latents"):
        profile["set-resources"][rule]["gpu"] = 0
    cpu_only = tmp_path / "cpu_only"
    cpu_only.mkdir()
    (cpu_only / "config.yaml").write_text(yaml.safe_dump(profile))
    one_step = tmp_path / "one_step.yaml"
    one_step.write_text("seeds: [1]\ntrain: {steps: 1}\n")
    result = snakemake(
        on_slurm,
        "--workflow-profile", str(cpu_only),
        *SLURM_TEST_FLAGS,
        "--", "results/pong/space_moc/seed1/model.pt",
        env=cluster.env(),
        extra_config=[one_step],
    )  # fmt: skip
    assert result.returncode == 0, ran(result) + cluster.logs()
    jobs = submitted_jobs(result.stderr + result.stdout)
    assert list(jobs.values()) == ["train"]
    shown = cluster.run("scontrol", "--oneliner", "show", "job", str(next(iter(jobs))))
    assert "JobState=COMPLETED" in shown
    assert "gpu" not in shown, shown
    # The rest of the profile's train resources still apply.
    assert f"MinMemoryNode={profile['set-resources']['train']['mem_mb']}M" in shown, shown
