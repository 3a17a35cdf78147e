"""The training stage: configs, outputs, logging, exact kill-and-resume, CLI and Snakemake rule."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from spacemoc.stages.train import build_configs, list_checkpoints, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"steps": 3, "batch_size": 1, "checkpoint_every": 2, "log_every": 1, "image_every": 2}


@pytest.fixture(scope="module")
def pong_background(tmp_path_factory) -> Path:
    from spacemoc.data import compute_background, save_background

    folder = tmp_path_factory.mktemp("pong_data")
    save_background(
        compute_background("pong", 40, seed=100), folder / "background.png", game="pong"
    )
    return folder / "background.png"


def make_pong(background: Path, name: str, T: int) -> Path:
    from spacemoc.data import make_dataset

    out = background.parent / name
    return make_dataset("pong", "train", out, background, 8, T=T, seed=0, workers=1)


@pytest.fixture(scope="module")
def pong_data(pong_background) -> Path:
    """A tiny real Pong train split (8 samples of T=2 frames with motion), made in seconds."""
    return make_pong(pong_background, "train_t2.h5", T=2)


@pytest.fixture(scope="module")
def pong_data_t4(pong_background) -> Path:
    return make_pong(pong_background, "train_t4.h5", T=4)


def config(**train_keys) -> dict:
    """Tiny budgets; an 8x8 grid keeps the mechanics tests fast (the loss test uses G=16)."""
    return {"threads": 2, "model": {"space": {"G": 8}}, "train": {**TINY, **train_keys}}


def curves(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# ------------------------------------------------------------------------------ configs


def test_build_configs_precedence():
    space, moc = build_configs("pong", {})
    assert space.G == 16 and space.z_scale_mean_start_value == -2.0  # reference defaults
    assert moc.motion_underestimating == 1.5  # game table (pong)
    space, _ = build_configs("boxing", {})
    assert space.z_scale_mean_start_value == -1.0  # game table (boxing)

    cfg = {
        "model": {"space": {"z_scale_mean_start_value": -0.7, "K": 4}, "moc": {"motion_weight": 7}},
        "game_overrides": {
            "boxing": {"space": {"z_scale_mean_start_value": -0.3}, "moc": {"motion_weight": 9}},
            "pong": {"moc": {"motion_underestimating": 3.0}},
        },
        "train": {"compositing": "dense"},
    }
    space, moc = build_configs("boxing", cfg)
    assert space.z_scale_mean_start_value == -0.3  # game_overrides win over model
    assert space.K == 4 and moc.motion_weight == 9  # model beats the defaults
    assert moc.motion_underestimating == 1.25  # pong's overrides do not leak into boxing
    assert space.compositing == "dense"
    space, moc = build_configs("pong", cfg)
    assert space.z_scale_mean_start_value == -0.7 and moc.motion_weight == 7
    assert moc.motion_underestimating == 3.0  # config beats the game table


def test_build_configs_anneal_scale_scales_every_step_boundary():
    base_space, base_moc = build_configs("bowling", {"train": {"anneal_scale": 1.0}})
    space, moc = build_configs("bowling", {"train": {"anneal_scale": 0.01}})
    assert space.z_pres_end_step == round(base_space.z_pres_end_step * 0.01) == 50
    assert space.z_scale_mean_end_step == 50 and space.tau_end_step == 100
    assert space.fix_alpha_steps == 150  # bowling's 15000-step fixed-alpha warm-up
    assert moc.motion_cooling_end_step == 30
    assert space.z_pres_end_value == base_space.z_pres_end_value  # values are untouched
    assert moc.motion_cooling_start_step == base_moc.motion_cooling_start_step == 0


def test_build_configs_rejects_unknown_keys_and_games():
    with pytest.raises(ValueError, match=r"unknown SpaceConfig key\(s\) grid in config model"):
        build_configs("pong", {"model": {"space": {"grid": 8}}})
    with pytest.raises(ValueError, match=r"MocConfig key\(s\) motion_wieght in config game_over"):
        build_configs("pong", {"game_overrides": {"pong": {"moc": {"motion_wieght": 1}}}})
    with pytest.raises(ValueError, match="unknown game 'pongg'"):
        build_configs("pong", {"game_overrides": {"pongg": {"moc": {}}}})
    with pytest.raises(ValueError, match="unknown game"):
        build_configs("pacman", {})


# ------------------------------------------------------------------------------ the stage


def test_train_writes_model_checkpoints_curves_and_tensorboard(pong_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spacemoc.models import load_checkpoint

    out = tmp_path / "seed0"
    path = train(pong_data, out, game="pong", config=config(), seed=0, device="cpu")
    assert path == out / "model.pt"
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["format"] == "spacemoc/1" and saved["step"] == 3
    assert saved["game"] == "pong" and saved["channel_order"] == "rgb"
    assert "Ball" in saved["labels"] and saved["model_config"]["G"] == 8
    model = load_checkpoint(path)
    assert model.config.G == 8
    # periodic checkpoints at 2 and at the end, each with what an exact resume needs
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [2, 3]
    last = torch.load(out / "checkpoints" / "step_000000003.pt", weights_only=True)
    for key in ("optimizer_fg", "optimizer_bg", "moc", "rng", "data_position", "state_dict"):
        assert key in last, key
    assert last["rng"]["numpy"]["keys"].shape == (624,)
    # curves: one row per step (log_every 1), finite losses, copied beside the model
    rows = curves(out / "train_curves.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(float(r["total_loss"]))) for r in rows)
    assert float(rows[0]["motion_loss"]) > 0 and float(rows[0]["step_time_s"]) > 0
    # TensorBoard: the reference's scalars and the images
    events = EventAccumulator(str(out / "logs"), size_guidance={"images": 0}).Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    for tag in ("total_loss", "motion_loss", "oc_loss", "m_scheduling_weight", "What_KL", "mse"):
        assert f"train/{tag}" in scalars, tag
    for tag in ("2-reconstruction", "5-alpha_map", "1-boxes"):
        assert f"train/{tag}" in images, tag


class Interrupt(Exception):
    pass


def stop_after(k):
    def callback(step, row):
        if step == k:
            raise Interrupt(f"killed after step {k}")

    return callback


@pytest.mark.parametrize("decode_cells", [0, 16])  # every cell; a random draw of cells too
def test_kill_and_resume_continues_the_run_exactly(pong_data, tmp_path, decode_cells):
    cfg = config(steps=4)
    cfg["model"]["space"]["decode_cells"] = decode_cells
    whole = train(pong_data, tmp_path / "whole", game="pong", config=cfg, seed=3, device="cpu")

    out = tmp_path / "killed"
    with pytest.raises(Interrupt):  # dies after step 3; its last checkpoint is step 2
        train(pong_data, out, game="pong", config=cfg, seed=3, device="cpu", callback=stop_after(3))
    assert not (out / "model.pt").exists()
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [2]
    seen = []
    resumed = train(
        pong_data, out, game="pong", config=cfg, seed=3, device="cpu",
        callback=lambda step, row: seen.append(step),
    )  # fmt: skip
    assert seen == [3, 4]  # continues at step 3, no lost or repeated steps
    assert torch.load(resumed, weights_only=True)["step"] == 4
    assert [int(r["step"]) for r in curves(out / "train_curves.csv")] == [1, 2, 3, 4]
    # same parameters and the same losses as the run that was never interrupted
    a, b = params(whole), params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    loss_a = [float(r["total_loss"]) for r in curves(whole.parent / "train_curves.csv")]
    loss_b = [float(r["total_loss"]) for r in curves(out / "train_curves.csv")]
    assert loss_a == pytest.approx(loss_b, rel=1e-6)


def test_checkpoints_of_other_settings_are_set_aside_and_restored(pong_data, tmp_path, capsys):
    """A setting that changes the weights starts afresh, keeping the old checkpoints; changing it
    back continues them. (The workflow reruns train after such a change, so it must not fail.)"""
    out, cfg = tmp_path / "run", config(checkpoint_every=1)
    aside = out / "checkpoints" / "previous"
    with pytest.raises(Interrupt):
        train(pong_data, out, game="pong", config=cfg, seed=0, callback=stop_after(2))
    first = params(out / "checkpoints" / "step_000000002.pt")

    def run(cfg, seed=0):
        seen = []
        train(pong_data, out, game="pong", config=cfg, seed=seed,
              callback=lambda step, row: seen.append(step))  # fmt: skip
        return seen, capsys.readouterr().out

    seen, log = run(config(checkpoint_every=1, lr_fg=3e-4))
    assert seen == [1, 2, 3]
    assert "other settings (lr_fg: 0.0001 -> 0.0003)" in log and "starting afresh" in log
    assert sorted(p.name for p in (aside / "1").iterdir()) == [
        "step_000000001.pt", "step_000000002.pt"
    ]  # fmt: skip
    for changed, named in [
        ({"seed": 1}, "seed: 0 -> 1"),
        ({"cfg": config(precision="bfloat16")}, "precision: 'float32' -> 'bfloat16'"),
        ({"cfg": {**config(), "model": {}}}, "model_config G: 8 -> 16"),
    ]:
        seen, log = run(changed.get("cfg", cfg), changed.get("seed", 0))
        assert seen == [1, 2, 3] and named in log, log
    # back to the first settings: the first set comes back and continues at step 3
    seen, log = run(cfg)
    assert seen == [3] and "restored the checkpoints set aside in" in log, log
    assert not (aside / "1").exists()
    torch.testing.assert_close(params(out / "checkpoints" / "step_000000002.pt"), first)
    assert sorted(p.name for p in aside.iterdir()) == ["2", "3", "4", "5"]  # nothing deleted
    # a budget below the newest checkpoint starts afresh too
    seen, log = run(config(checkpoint_every=1, steps=2))
    assert seen == [1, 2] and "is beyond train.steps=2" in log


def test_train_rejects_bad_input(pong_data, tmp_path):
    with pytest.raises(ValueError, match="holds game 'pong', not 'boxing'"):
        train(pong_data, tmp_path / "x", game="boxing", config=config())
    with pytest.raises(ValueError, match="does not exist"):
        train(tmp_path / "missing.h5", tmp_path / "x", game="pong", config=config())
    import h5py

    no_motion = tmp_path / "no_motion.h5"
    with h5py.File(pong_data, "r") as src, h5py.File(no_motion, "w") as dst:
        src.copy("frames", dst)
        dst.attrs.update(src.attrs)
    with pytest.raises(ValueError, match="motion"):
        train(no_motion, tmp_path / "x", game="pong", config=config())


def test_cli_train(pong_data, tmp_path):
    from spacemoc.cli import main

    out = tmp_path / "cli"
    config_file = tmp_path / "config.yaml"
    config_file.write_text("model: {space: {G: 8}}\ntrain: {log_every: 1}\n")
    code = main(
        ["train", "--data", str(pong_data), "--out", str(out), "--steps", "1", "--device", "cpu",
         "--config", str(config_file), "--batch-size", "1"]
    )  # fmt: skip
    assert code == 0
    assert torch.load(out / "model.pt", weights_only=True)["step"] == 1
    code = main(["train", "--data", str(pong_data), "--out", str(out), "--game", "tennis"])
    assert code == 2


@pytest.mark.slow
def test_loss_and_motion_loss_fall_on_real_data(pong_data_t4, tmp_path):
    cfg = {
        "threads": 2,
        "train": {**TINY, "steps": 40, "checkpoint_every": 100, "image_every": 100},
    }
    train(pong_data_t4, tmp_path / "run", game="pong", config=cfg, seed=0, device="cpu")
    rows = curves(tmp_path / "run" / "train_curves.csv")
    total = [float(r["total_loss"]) for r in rows]
    motion = [float(r["motion_loss"]) for r in rows]
    first, last = slice(0, 8), slice(-8, None)

    def mean(values):
        return sum(values) / len(values)

    assert mean(total[last]) < 0.5 * mean(total[first])
    assert mean(motion[last]) < 0.5 * mean(motion[first])


@pytest.mark.slow
def test_killed_snakemake_run_resumes_from_its_checkpoint(pong_data, tmp_path):
    """Ctrl-C during `train`: Snakemake removes the outputs but keeps checkpoints; a rerun
    continues from the last one."""
    STEPS = 60  # noqa: N806
    # the inputs exist, background first so that the dataset is not older than its input
    for name in ("background.png", "background.npy"):
        (tmp_path / "results/pong").mkdir(parents=True, exist_ok=True)
        (tmp_path / "results/pong" / name).write_bytes((pong_data.parent / name).read_bytes())
    data = tmp_path / "results/pong/data/train.h5"
    data.parent.mkdir(parents=True)
    data.write_bytes(pong_data.read_bytes())
    run = tmp_path / "results/pong/space_moc/seed0"
    workflow_config = yaml.safe_load((REPO / "config/test.yaml").read_text())
    # enough steps that the kill lands mid-run even on a loaded machine
    workflow_config["train"] = {**TINY, "steps": STEPS}
    workflow_config["model"] = {"space": {"G": 8}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(workflow_config))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
        "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
        "--cores", "2", "--resources", "gpu=1", "--", "results/pong/space_moc/seed0/model.pt",
    ]  # fmt: skip
    output = open(tmp_path / "first_run.txt", "w")
    # Ctrl-C from a shell: SIGINT at its default in the run (a library used earlier in the test
    # session can leave SIGINT ignored in this process, and children inherit an ignored signal)
    proc = subprocess.Popen(
        cmd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not list_checkpoints(run / "checkpoints"):
        assert proc.poll() is None, (tmp_path / "first_run.txt").read_text()[-3000:]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    output.close()
    inherited = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    assert not (run / "model.pt").exists(), f"SIGINT handler and blocked signals: {inherited}"
    kept = list_checkpoints(run / "checkpoints")
    assert kept and kept[-1][0] < STEPS

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "logs/pong/space_moc/train_seed0.log").read_text()
    assert "resuming from results/pong/space_moc/seed0/checkpoints/step_" in log
    assert torch.load(run / "model.pt", weights_only=True)["step"] == STEPS
    steps = [int(r["step"]) for r in curves(run / "train_curves.csv")]
    assert steps == list(range(1, STEPS + 1))


def test_bfloat16_training_step_matches_float32(pong_data):
    """Mixed precision: same loss within bfloat16's ~3 digits, finite gradients everywhere,
    float32 weights (resuming with another precision: test_resume_refuses_...)."""
    from spacemoc.data import AtariDataset, collate
    from spacemoc.models.space import Space
    from spacemoc.models.space.moc import MocLoss
    from spacemoc.models.space.training import make_optimizers, training_step
    from spacemoc.rng import seed_everything

    space_cfg, moc_cfg = build_configs("pong", config())
    batch = collate([AtariDataset(pong_data, grid_size=space_cfg.G)[i] for i in range(2)])
    losses = {}
    for precision in ("float32", "bfloat16"):
        seed_everything(0)
        model = Space(space_cfg).train()
        optimizers = make_optimizers(model, lr_fg=1e-4, lr_bg=1e-3)
        loss, elbo, moc_loss, *_ = training_step(
            model, MocLoss(moc_cfg, grid=space_cfg.G), optimizers, batch, 0, 1.0, precision
        )
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        for name, p in model.named_parameters():
            assert p.dtype == torch.float32, name
            if p.grad is not None:
                assert torch.isfinite(p.grad).all(), name
        losses[precision] = (float(elbo.detach()), float(moc_loss.detach()))
    (elbo32, moc32), (elbo16, moc16) = losses["float32"], losses["bfloat16"]
    assert elbo16 == pytest.approx(elbo32, rel=0.02)
    assert moc16 == pytest.approx(moc32, rel=0.05, abs=1.0)


# ------------------------------------------------------------------------------ validation


def test_validation_during_training_is_logged_and_leaves_the_weights_alone(pong_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config(steps=3, eval_every=2, eval_samples=4)
    plain = train(pong_data, tmp_path / "plain", game="pong", config=cfg, seed=0, device="cpu")
    probed = train(
        pong_data, tmp_path / "probed", game="pong", config=cfg, seed=0, device="cpu",
        validation_path=pong_data,
    )  # fmt: skip
    a, b = params(plain), params(probed)
    for key in a:  # the probe restores the RNGs and the train mode: the same run
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    rows = {int(r["step"]): r for r in curves(probed.parent / "train_curves.csv")}
    assert rows[1]["val_relevant_f"] == ""  # measured at eval_every steps and at the end
    for step in (2, 3):
        assert 0 <= float(rows[step]["val_relevant_f"]) <= 1
        assert float(rows[step]["val_time_s"]) > 0
    assert "val_relevant_f" not in curves(plain.parent / "train_curves.csv")[0]
    events = EventAccumulator(str(probed.parent / "logs")).Reload()
    assert {"validation/relevant_f", "validation/cluster_nn"} <= set(events.Tags()["scalars"])


def test_validation_scores_are_eval_csvs_on_the_same_frames(pong_data, tmp_path):
    """The probe's relevant F is the evaluation's, on latents of the same frames and model (the
    shipped Pong detector, which finds the objects)."""
    from spacemoc.latents import load_latents
    from spacemoc.metrics import detection_scores, relevant_subset
    from spacemoc.models import load_checkpoint
    from spacemoc.stages.evaluate import ground_truth
    from spacemoc.stages.latents import compute_latents
    from spacemoc.validation import ValidationProbe

    model_path = REPO / "spacemoc" / "pretrained" / "pong" / "detector.pt"
    model = load_checkpoint(model_path)
    values = ValidationProbe(pong_data, 8, "alpha").measure(model, torch.device("cpu"))
    latents = compute_latents(
        model_path, pong_data, tmp_path / "latents.h5", device="cpu", box_readout="alpha"
    )
    boxes, labels = ground_truth(pong_data)
    pred, gt, _, _ = relevant_subset(load_latents(latents).predictions(), boxes, labels, "pong")
    assert values["val_relevant_f"] == pytest.approx(detection_scores(pred, gt)["f_score"])
    assert values["val_relevant_f"] > 0.8
    assert len(ValidationProbe(pong_data, 100, "alpha").frames) == 8  # all of a small split
