"""Fault cases: kills, damaged files, changed configs, full disks, concurrent writers, bad
configs. Each test reproduces one failure mode and checks that nothing is lost and nothing stale
is used (docs/faults.md lists what happens when)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tomllib
import torch
import yaml
from conftest import REPO, run_snakemake

from spacemoc.atomic import atomic_path, remove_orphan_temps, temp_path
from spacemoc.config import validate_config
from spacemoc.stages.train import list_checkpoints, train

TINY = {"steps": 2, "batch_size": 1, "checkpoint_every": 1, "log_every": 1, "image_every": 2}
TINY_CONFIG = {"threads": 2, "model": {"space": {"G": 8}}, "train": TINY}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from spacemoc.data import compute_background, save_background

    folder = tmp_path_factory.mktemp("fault_data")
    save_background(
        compute_background("pong", 40, seed=100), folder / "background.png", game="pong"
    )
    return folder


def make_pong(folder: Path, name: str, n: int = 4, seed: int = 0) -> Path:
    from spacemoc.data import make_dataset

    background = folder / "background.npy"
    return make_dataset("pong", "train", folder / name, background, n, T=2, seed=seed, workers=1)


@pytest.fixture(scope="module")
def pong_a(data_dir) -> Path:
    return make_pong(data_dir, "a.h5", seed=0)


@pytest.fixture(scope="module")
def pong_b(data_dir) -> Path:
    """Other training data: other episodes, one sample more."""
    return make_pong(data_dir, "b.h5", n=5, seed=1)


@pytest.fixture(scope="module")
def run_dir(pong_a, tmp_path_factory) -> Path:
    """A finished tiny run: model.pt, checkpoints, curves, logs, and a classifier.npz."""
    out = tmp_path_factory.mktemp("fault_run") / "seed0"
    train(pong_a, out, game="pong", config=TINY_CONFIG, seed=0, device="cpu")
    np.savez(out / "classifier.npz", format=np.array("not read by export"))
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------ 1. export


def test_export_refuses_the_run_folder_and_keeps_it(run_dir):
    from spacemoc.stages.export import export_detector

    before = snapshot(run_dir)
    with pytest.raises(ValueError, match="not empty and not a detector folder"):
        export_detector(run_dir / "model.pt", run_dir / "classifier.npz", run_dir)
    assert snapshot(run_dir) == before


def test_export_refuses_an_unrelated_folder(run_dir, tmp_path):
    from spacemoc.stages.export import export_detector

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not a detector folder \(it holds notes.txt\)"):
        export_detector(run_dir / "model.pt", run_dir / "classifier.npz", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_replaces_an_earlier_export_completely(run_dir, tmp_path):
    from spacemoc.stages.export import export_detector

    out = tmp_path / "detector"
    export_detector(run_dir / "model.pt", run_dir / "classifier.npz", out, config={"a": 1})
    assert (out / "config.yaml").is_file()
    export_detector(run_dir / "model.pt", run_dir / "classifier.npz", out)
    assert sorted(p.name for p in out.iterdir()) == ["classifier.npz", "detector.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector"]  # no temporary folders


# ------------------------------------------------------------------------ 2. stale model


def test_other_training_data_starts_afresh_and_keeps_the_old_checkpoints(
    pong_a, pong_b, tmp_path, capsys
):
    out = tmp_path / "seed0"
    train(pong_a, out, game="pong", config=TINY_CONFIG, seed=0, device="cpu")
    first = torch.load(out / "model.pt", weights_only=True)
    steps = []
    train(
        pong_b, out, game="pong", config=TINY_CONFIG, seed=0, device="cpu",
        callback=lambda step, row: steps.append(step),
    )  # fmt: skip
    assert steps == [1, 2]  # every step ran again, on the new data
    assert "was trained on other data" in capsys.readouterr().out
    second = torch.load(out / "model.pt", weights_only=True)
    assert second["data_fingerprint"] != first["data_fingerprint"]
    assert any(not torch.equal(second["state_dict"][k], v) for k, v in first["state_dict"].items())
    aside = out / "checkpoints" / "previous" / "1"
    assert sorted(p.name for p in aside.iterdir()) == ["step_000000001.pt", "step_000000002.pt"]
    # the same data again resumes (nothing to do) instead of restarting
    steps.clear()
    train(pong_b, out, game="pong", config=TINY_CONFIG, seed=0, device="cpu",
          callback=lambda step, row: steps.append(step))  # fmt: skip
    assert steps == []


def test_a_damaged_newest_checkpoint_resumes_from_the_previous_one(pong_a, tmp_path, capsys):
    out = tmp_path / "seed0"
    train(pong_a, out, game="pong", config=TINY_CONFIG, seed=0, device="cpu")
    newest = out / "checkpoints" / "step_000000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # as a kill during the write of a copy would
    steps = []
    train(pong_a, out, game="pong", config=TINY_CONFIG, seed=0, device="cpu",
          callback=lambda step, row: steps.append(step))  # fmt: skip
    assert steps == [2]
    assert f"cannot read checkpoint {newest}" in capsys.readouterr().out


def test_fingerprint_tells_data_apart_and_ignores_the_worker_count(data_dir, pong_a, pong_b):
    from spacemoc.data import make_dataset
    from spacemoc.files import h5_fingerprint

    again = make_dataset(
        "pong", "train", data_dir / "a2.h5", data_dir / "background.npy", 4, T=2, seed=0,
        workers=2,
    )  # fmt: skip
    assert h5_fingerprint(again) == h5_fingerprint(pong_a) != h5_fingerprint(pong_b)


# ------------------------------------------------------------------------ 3. spurious reruns


def _changed_test_config(tmp_path: Path, change) -> Path:
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    change(config)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _reordered(config: dict) -> None:
    """Every mapping's keys in reverse order: the same settings."""
    for key in list(config)[::-1]:
        value = config.pop(key)
        if isinstance(value, dict):
            _reordered(value)
        config[key] = value


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["data"].update(workers=1),
        _reordered,
        lambda c: c["train"].update(log_every=1, checkpoint_every=1, image_every=1),
        lambda c: c.update(threads=1),
        lambda c: c.setdefault("game_overrides", {}).update(boxing={"moc": {"motion_weight": 2}}),
    ],
    ids=["workers", "key-order", "logging", "threads", "other-game"],
)
def test_settings_that_change_no_output_rerun_nothing(tiny_run, tmp_path, change):
    from conftest import TINY_TARGETS

    config = _changed_test_config(tmp_path, change)
    result = run_snakemake(tiny_run, "-n", "--cores", "2", "--", *TINY_TARGETS, config=config)
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


@pytest.mark.slow
def test_a_setting_that_changes_the_weights_retrains(tiny_run, tmp_path):
    config = _changed_test_config(tmp_path, lambda c: c["train"].update(lr_fg=1e-3))
    result = run_snakemake(tiny_run, "-n", "--cores", "2", "--", "results/pong/eval.csv",
                           config=config)  # fmt: skip
    assert "train" in result.stdout and "dataset" not in result.stdout


# ------------------------------------------------------------------------ 4. concurrent writers


def test_temporary_names_are_unique_and_a_failed_writer_keeps_the_others(tmp_path):
    target = tmp_path / "same.h5"
    assert temp_path(target) != temp_path(target)
    with atomic_path(target) as first:
        first.write_text("first")
        with pytest.raises(RuntimeError), atomic_path(target) as second:
            second.write_text("second")
            raise RuntimeError("the second writer fails")
        assert first.read_text() == "first"  # not deleted by the other writer's clean-up
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["same.h5"]


def test_two_processes_writing_one_dataset_both_succeed_with_a_whole_file(data_dir, tmp_path):
    out = tmp_path / "same.h5"
    code = (
        "from spacemoc.data import make_dataset\n"
        f"make_dataset('pong', 'test', {str(out)!r}, {str(data_dir / 'background.npy')!r}, 6, "
        "T=2, workers=1)\n"
    )
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    with h5py.File(out, "r") as f:
        for i in range(f["motion"].shape[0]):
            f["motion"][i], f["frames"][i]  # every sample reads back
    assert [p.name for p in tmp_path.iterdir()] == ["same.h5"]


# ------------------------------------------------------------------------ 5. config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"game_overrides": {"Pong": {"moc": {}}}}, r"game_overrides.Pong: unknown game \(names"),
        ({"game_overrides": {"pongg": {"moc": {}}}}, "game_overrides.pongg: unknown game"),
        ({"model": {"space": {"Gx": 8}}}, r"unknown SpaceConfig key\(s\) Gx"),
        ({"game_overrides": {"boxing": {"moc": {"typo": 1}}}}, r"MocConfig key\(s\) typo"),
        ({"model": {"space": {"G": 7}}}, "G must be 4, 8 or 16"),
        (
            {"model": {"moc": {"area_object_weight": "0.0}}"}}},
            r"area_object_weight .* must be of type float",
        ),
        ({"model": {"space": {"G": 8.0}}}, r"SpaceConfig.G .* must be of type int"),
        ({"models": ["space_mocc"]}, r"models: unknown arm\(s\) space_mocc"),
        ({"seeds": []}, "seeds: .* should be non-empty"),
        ({"games": []}, "games: .* should be non-empty"),
        ({"data": {"window": 2, "T": 4}}, r"data.window: 2 is smaller than data.T \(4\)"),
        ({"tracking": {"max_missed": -1}}, "tracking: max_missed must be >= 0"),
        ({"tracking": {"max_mised": 1}}, "Additional properties are not allowed"),
        ({"train": {"lr_fg": float("inf")}}, "train.lr_fg: inf is not a finite number"),
    ],
)
def test_config_problems_are_named_at_start_up(config, message):
    with pytest.raises(ValueError, match=message):
        validate_config(config)


def test_every_config_problem_is_reported_at_once():
    bad = {"data": {"window": 2, "T": 4}, "train": {"lr_bg": float("nan")},
           "game_overrides": {"Pong": {}}}  # fmt: skip
    with pytest.raises(ValueError) as err:
        validate_config(bad)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 3, lines


def test_cuda_device_without_cuda_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="train.device: device 'cuda' requested but CUDA is not"):
        validate_config({"train": {"device": "cuda"}}, check_device=True)


def test_workflow_refuses_a_bad_config_before_touching_outputs(tmp_path):
    """window < T used to pass, delete a good test.h5 and then fail."""
    good = tmp_path / "results" / "pong" / "data" / "test.h5"
    good.parent.mkdir(parents=True)
    good.write_bytes(b"a good file")
    config = _changed_test_config(
        tmp_path, lambda c: c.update(data={**c["data"], "window": 2}, seeds=[])
    )
    result = run_snakemake(tmp_path, "--cores", "1", "--", "results/pong/data/test.h5",
                           config=config, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "[] should be non-empty" in result.stderr and "['seeds']" in result.stderr
    assert good.read_bytes() == b"a good file"
    config = _changed_test_config(tmp_path, lambda c: c["data"].update(window=2))
    result = run_snakemake(tmp_path, "--cores", "1", "--", "results/pong/data/test.h5",
                           config=config, check=False)  # fmt: skip
    assert result.returncode != 0 and "data.window: 2 is smaller than data.T" in result.stderr
    assert good.read_bytes() == b"a good file"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_workflow_refuses_cuda_without_cuda_before_any_job(tmp_path):
    config = _changed_test_config(tmp_path, lambda c: c["train"].update(device="cuda"))
    result = run_snakemake(tmp_path, "--cores", "1", "--", "results/pong/data/test.h5",
                           config=config, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "train.device: device 'cuda' requested but CUDA is not available" in result.stderr
    assert not (tmp_path / "results").exists()


def test_the_tracking_section_reaches_the_tracker():
    config = validate_config({"tracking": {"max_missed": 5}})
    assert config["tracking"] == {"max_missed": 5}
    from spacemoc.tracking import Tracker

    assert Tracker(**config["tracking"]).max_missed == 5


# ------------------------------------------------------------------------ 6. non-finite training


def test_diverging_weights_stop_training_without_a_model(pong_a, tmp_path):
    out = tmp_path / "seed0"
    config = {**TINY_CONFIG, "train": {**TINY, "lr_fg": 1e38}}
    with pytest.raises(FloatingPointError, match=r"diverged at step 1 of 2: weight .* not finite"):
        train(pong_a, out, game="pong", config=config, seed=0, device="cpu")
    assert not (out / "model.pt").exists()
    assert list_checkpoints(out / "checkpoints") == []


def test_a_non_finite_model_is_never_written(tmp_path):
    from spacemoc.models import save_checkpoint
    from spacemoc.models.space import Space, SpaceConfig

    model = Space(SpaceConfig(G=8))
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="refusing to write .* NaN or infinite"):
        save_checkpoint(tmp_path / "model.pt", model, game="pong", labels=None, step=1)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ 7. damaged files


def _damaged_copies(path: Path, tmp_path: Path) -> list[Path]:
    data = path.read_bytes()
    empty, cut = tmp_path / f"empty{path.suffix}", tmp_path / f"cut{path.suffix}"
    empty.write_bytes(b"")
    cut.write_bytes(data[: len(data) // 2])
    return [empty, cut]


def _readers():
    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.data import AtariDataset, read_table
    from spacemoc.latents import load_latents
    from spacemoc.models import load_checkpoint

    return {
        "dataset": lambda p: AtariDataset(p),
        "dataset table": lambda p: read_table(p),
        "latents": lambda p: load_latents(p),
        "classifier": lambda p: ZWhatClassifier.load(p),
        "checkpoint": lambda p: load_checkpoint(p),
    }


KINDS = ["dataset", "dataset table", "latents", "classifier", "checkpoint"]


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_files_are_named_with_how_to_remake_them(kind, run_dir, pong_a, tmp_path):
    sources = {
        "dataset": pong_a,
        "dataset table": pong_a,
        "latents": pong_a,  # any HDF5 file: it is damaged before its contents are read
        "classifier": run_dir / "classifier.npz",
        "checkpoint": run_dir / "model.pt",
    }
    read = _readers()[kind]
    for damaged in _damaged_copies(sources[kind], tmp_path):
        with pytest.raises(ValueError) as err:
            read(damaged)
        message = str(err.value)
        assert str(damaged) in message and "damaged or incomplete" in message, message
        assert "make it again with `spacemoc" in message, message
    with pytest.raises(ValueError, match=r"empty file, 0 bytes"):
        read(_damaged_copies(sources[kind], tmp_path)[0])


# ------------------------------------------------------------------------ 8. full disk


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        # lazy: a failed writer's file handle may live until its traceback is collected
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_dataset_on_a_full_disk_says_so_and_keeps_the_previous_file(data_dir, tmp_path):
    with small_disk(tmp_path, "256k") as disk:
        out = disk / "test.h5"
        out.write_bytes(b"the previous dataset")
        code = (
            "from spacemoc.data import make_dataset\n"
            f"make_dataset('pong', 'test', {str(out)!r}, {str(data_dir / 'background.npy')!r}, "
            "64, T=4, workers=1)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 1, done.stderr[-2000:]  # an error, not a crash (139)
        assert f"no space left on device while writing {out}" in done.stderr
        assert out.read_bytes() == b"the previous dataset"
        assert [p.name for p in disk.iterdir()] == ["test.h5"]


def test_checkpoint_on_a_full_disk_says_so(tmp_path):
    from spacemoc.models import save_checkpoint
    from spacemoc.models.space import Space, SpaceConfig

    with small_disk(tmp_path, "512k") as disk:
        with pytest.raises(OSError, match="no space left on device while writing .*step_1.pt"):
            save_checkpoint(disk / "step_1.pt", Space(SpaceConfig(G=8)), game="pong",
                            labels=None, step=1)  # fmt: skip
        assert list(disk.iterdir()) == []


def test_orphaned_temporary_files_are_removed_at_the_next_start(pong_a, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    checkpoints = tmp_path / "seed0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    live = temp_path(checkpoints / "step_000000001.pt")  # this process: a live writer
    orphan = live.with_name(live.name.replace(f"-{os.getpid()}-", f"-{gone.pid}-"))
    for path in (live, orphan):
        path.write_bytes(b"partial")
    assert remove_orphan_temps(checkpoints) == [orphan]
    assert live.exists()
    live.unlink()
    orphan.write_bytes(b"partial")
    train(pong_a, tmp_path / "seed0", game="pong", config=TINY_CONFIG, seed=0, device="cpu")
    assert not orphan.exists()


# ------------------------------------------------------------------------ 9. errors in logs


def test_a_failing_stage_writes_its_error_to_its_log(tmp_path):
    from spacemoc.logs import log_to

    log = tmp_path / "logs" / "train_seed0.log"
    with pytest.raises(ValueError), log_to(log):
        raise ValueError("device 'cuda' requested but CUDA is not available")
    text = log.read_text()
    assert "Traceback" in text and "CUDA is not available" in text


def test_every_rule_script_logs_through_log_to():
    for script in (REPO / "workflow" / "scripts").glob("*.py"):
        assert "with log_to(snakemake.log[0]):" in script.read_text(), script.name


# ------------------------------------------------------------------------ 10. security floor


def test_torch_floor_has_the_weights_only_fix():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_spec,) = [d for d in dependencies if d.startswith("torch")]
    floor = torch_spec.split(">=")[1].split(",")[0]
    assert tuple(int(x) for x in floor.split(".")) >= (2, 6), torch_spec
