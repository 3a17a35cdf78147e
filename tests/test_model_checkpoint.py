"""Checkpoints: the reference fixture loads and reproduces its outputs; save/load; bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spacemoc.models import load_checkpoint, save_checkpoint
from spacemoc.models.space import Space, SpaceConfig


def test_reference_fixture_reproduces_inference(compat_fixture):
    model = load_checkpoint(compat_fixture / "checkpoint.pth")
    assert model.channel_order == "bgr" and not model.training
    assert model.config.G == 16 and model.config.z_what_dim == 32 and model.config.K == 3
    io = np.load(compat_fixture / "io.npz")
    out = model.infer(torch.from_numpy(io["model_input"]))  # BGR, as the reference fed it
    for key in ("z_pres_prob", "z_where", "z_what"):
        err = np.abs(out[key].numpy() - io[key]).max()
        assert err < 1e-4, f"{key}: max abs error {err:.2e}"

    # boxes of present cells: [frame, y_min, y_max, x_min, x_max, p], y first, not clipped
    prob, where = out["z_pres_prob"].numpy(), out["z_where"].numpy()
    ref = io["boxes"]
    ref_cells = {(int(f), int(c)) for f, c in zip(ref[:, 0], io["boxes_cell_index"], strict=True)}
    near = np.abs(prob - 0.5) < 1e-4
    ours = {(f, c) for f, c in zip(*np.nonzero((prob > 0.5) & ~near), strict=True)}
    ref_cells = {(f, c) for f, c in ref_cells if not near[f, c]}
    assert ours == ref_cells
    frames, cells = ref[:, 0].astype(int), io["boxes_cell_index"]
    sx, sy, cx, cy = (where[frames, cells, i] for i in range(4))
    boxes = np.stack(
        (
            (cy + 1) / 2 - sy / 2,
            (cy + 1) / 2 + sy / 2,
            (cx + 1) / 2 - sx / 2,
            (cx + 1) / 2 + sx / 2,
        ),
        1,
    )
    assert np.abs(boxes - ref[:, 1:5]).max() < 1e-4


def test_reference_fixture_present_only(compat_fixture):
    model = load_checkpoint(compat_fixture / "checkpoint.pth")
    x = torch.from_numpy(np.load(compat_fixture / "io.npz")["model_input"][:2])
    full = model.infer(x)
    sparse = model.infer(x, present_only=True, threshold=0.5)
    present = full["z_pres_prob"] > 0.5
    assert torch.equal(sparse["z_pres_prob"], full["z_pres_prob"])
    assert (sparse["z_what"][present] - full["z_what"][present]).abs().max() < 1e-4
    assert (sparse["z_what"][~present] == 0).all()


def test_reference_full_forward_plausible(compat_fixture):
    """The reference's stochastic forward (seed 7) is reproduced: same draws, same order."""
    model = load_checkpoint(compat_fixture / "checkpoint.pth")
    x = torch.from_numpy(np.load(compat_fixture / "io.npz")["model_input"]).view(2, 4, 3, 128, 128)
    ref = np.load(compat_fixture / "full_forward.npz")
    torch.manual_seed(7)
    with torch.no_grad():
        loss, log = model(x)
    assert loss.item() == pytest.approx(float(ref["loss"]), rel=1e-5)
    for key in ("kl_z_what", "kl_z_pres", "kl_z_where", "kl_z_depth", "kl_bg", "log_like"):
        np.testing.assert_allclose(log[key].numpy(), ref[key], rtol=1e-5, atol=1e-3, err_msg=key)
    assert np.abs(log["alpha_map"].numpy() - ref["alpha_map"].astype(np.float32)).max() < 1e-3


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Space(SpaceConfig(G=8, z_what_dim=16, K=2, z_scale_mean_end_value=-1.0))
    path = save_checkpoint(
        tmp_path / "model.pt",
        model,
        game="pong",
        labels=["no_label", "ball"],
        step=42,
        extra={"optimizer_fg": {"state": {}}},
    )
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert (loaded.game, loaded.labels, loaded.step, loaded.channel_order) == (
        "pong",
        ["no_label", "ball"],
        42,
        "rgb",
    )
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = torch.rand(2, 3, 128, 128)
    model.eval()
    for key, value in model.infer(x).items():
        assert torch.equal(value, loaded.infer(x)[key]), key
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "spacemoc/1" and "optimizer_fg" in raw


def test_mismatched_config_is_a_clear_error(tmp_path):
    path = save_checkpoint(
        tmp_path / "m.pt", Space(SpaceConfig(G=8)), game=None, labels=None, step=0
    )
    with pytest.raises(ValueError, match=r"grid size G: checkpoint 8, config 16"):
        load_checkpoint(path, config=SpaceConfig(G=16))
    with pytest.raises(ValueError, match=r"z_what dimension: checkpoint 32, config 8"):
        load_checkpoint(path, config={"z_what_dim": 8})


def test_reference_with_wrong_config(compat_fixture):
    with pytest.raises(ValueError, match="grid size G"):
        load_checkpoint(compat_fixture / "checkpoint.pth", config=SpaceConfig(G=8))


def test_bad_files(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"format": "something/2", "weights": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="unsupported checkpoint format 'something/2'"):
        load_checkpoint(other)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ValueError, match="not a checkpoint dict"):
        load_checkpoint(tensor)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(garbage)
    with pytest.raises(ValueError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    # a reference-style dict with a truncated state dict: named, never partly loaded
    partial = {k: v for k, v in Space().state_dict().items() if not k.startswith("bg_module")}
    ref_like = tmp_path / "model_000000001.pth"
    torch.save({"model": partial, "optimizer_fg": None, "epoch": 0, "global_step": 1}, ref_like)
    with pytest.raises(ValueError, match="missing keys: bg_module"):
        load_checkpoint(ref_like)


def test_foreground_only_checkpoint(tmp_path):
    """Detector weights: the foreground bit for bit, same inference, and no silent training."""
    torch.manual_seed(0)
    model = Space(SpaceConfig(G=8)).eval()
    full = save_checkpoint(tmp_path / "model.pt", model, game="pong", labels=None, step=7)
    fg = save_checkpoint(
        tmp_path / "detector.pt", model, game="pong", labels=None, step=7, foreground_only=True
    )
    assert fg.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(fg)
    assert loaded.bg_module is None and loaded.step == 7 and loaded.game == "pong"
    for key, value in model.fg_module.state_dict().items():
        assert torch.equal(value, loaded.fg_module.state_dict()[key]), key
    x = torch.rand(2, 3, 128, 128)
    for key, value in model.infer(x).items():
        assert torch.equal(value, loaded.infer(x)[key]), key
    with pytest.raises(ValueError, match="detector-only"):
        loaded(x)
    # a full checkpoint with its background removed is not taken for a detector-only one
    raw = torch.load(full, weights_only=True)
    raw["state_dict"] = {k: v for k, v in raw["state_dict"].items() if k.startswith("fg_")}
    torch.save(raw, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match="missing keys: bg_module"):
        load_checkpoint(tmp_path / "cut.pt")


def test_checkpoints_record_their_family_and_older_files_are_space(tmp_path):
    from spacemoc.models import FAMILIES

    assert FAMILIES["space"].model is Space
    model = Space(SpaceConfig(G=4))
    path = save_checkpoint(tmp_path / "model.pt", model, game="pong", labels=None, step=1)
    raw = torch.load(path, weights_only=True)
    assert raw["family"] == "space"
    del raw["family"]  # a file written before families existed
    raw["model_config"]["compositing"] = "windowed"
    torch.save(raw, tmp_path / "old.pt")
    assert isinstance(load_checkpoint(tmp_path / "old.pt"), Space)
    raw["family"] = "capsules"
    torch.save(raw, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match="unknown model family 'capsules'; known: slot, space"):
        load_checkpoint(tmp_path / "unknown.pt")
