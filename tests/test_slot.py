"""The Slot Attention family: mask readout, the slot MOC losses on hand-made masks, training and
resume through the training stage, and the workflow end to end with the slot_moc arm."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from spacemoc.models.slot import SlotAttentionModel, SlotConfig, SlotMocConfig
from spacemoc.models.slot.losses import (
    continuity_loss,
    motion_loss,
    motion_windows,
    reconstruction_loss,
)
from spacemoc.models.slot.masks import mask_centres, mask_objects

SIZE = 32


def rectangle(x0, y0, x1, y1, value=1.0) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE)
    mask[y0:y1, x0:x1] = value
    return mask


def three_slots() -> torch.Tensor:
    """(1,3,H,W) softmax-like masks: slot 0 a 4x4 square at (4,4), slot 1 a 2x6 bar at (20,10),
    slot 2 the rest (the background)."""
    a, b = rectangle(4, 4, 8, 8), rectangle(20, 10, 22, 16)
    return torch.stack([a, b, 1 - a - b])[None]


def test_mask_objects_reads_boxes_and_drops_the_background_slot():
    cfg = SlotConfig(img_size=SIZE, broadcast_size=8, max_fraction=0.2)
    presence, z_where = mask_objects(three_slots(), cfg)
    assert presence[0].tolist() == [1.0, 1.0, 0.0]  # the background covers > 20 %
    # slot 1: x 20..22, y 10..16 of a 32-pixel image -> scale (2/32, 6/32), centre (21, 13)
    expected = torch.tensor([2 / SIZE, 6 / SIZE, 21 / 16 - 1, 13 / 16 - 1])
    torch.testing.assert_close(z_where[0, 1], expected)
    centres = mask_centres(three_slots(), 0.5)
    torch.testing.assert_close(centres[0, 0], torch.tensor([6.0, 6.0]))


def motion_hint(x0, y0, x1, y1) -> tuple[torch.Tensor, torch.Tensor]:
    """One motion object as the dataset's hints (one present cell of a 4-cell grid)."""
    where = torch.zeros(1, 4, 4)
    where[0, 0] = torch.tensor(
        [(x1 - x0) / SIZE, (y1 - y0) / SIZE, (x0 + x1) / SIZE - 1, (y0 + y1) / SIZE - 1]
    )
    present = torch.zeros(1, 4)
    present[0, 0] = 1
    return present, where


def test_motion_loss_matches_the_moving_object_to_the_slot_that_covers_it():
    masks = three_slots().requires_grad_()
    present, where = motion_hint(20, 10, 22, 16)  # the bar moves
    motion = rectangle(20, 10, 22, 16)[None]
    windows = motion_windows(present, where, SIZE, margin=2)
    assert windows == [[((20, 10, 22, 16), (18, 8, 24, 18))]]
    loss, matched = motion_loss(masks, motion, windows)
    assert matched == 1 and loss.item() < 0.05  # slot 1 is the bar: matched, nearly no loss
    loss.backward()
    assert masks.grad[0, 1].abs().sum() > 0 and masks.grad[0, 0].abs().sum() == 0
    uncovered = three_slots()
    uncovered[0, 1] = 0  # no slot covers the bar
    far, _ = motion_loss(uncovered, motion, windows)
    assert far.item() > 0.9


def test_reconstruction_loss_weighs_the_foreground_pixels():
    images = torch.zeros(1, 3, 4, 4)
    images[0, :, 1, 1] = 1.0  # one object pixel
    foreground = torch.zeros(1, 4, 4, dtype=torch.bool)
    foreground[0, 1, 1] = True
    missed_object = torch.zeros_like(images)  # draws the backdrop only
    noisy_backdrop = images.clone()
    noisy_backdrop[0, 0, 3, 3] = 1.0  # the object, and one wrong backdrop pixel
    plain = torch.nn.functional.mse_loss(missed_object, images)
    assert float(plain) == pytest.approx(1 / 16)
    assert reconstruction_loss(missed_object, images) == plain
    assert reconstruction_loss(missed_object, images, foreground, 0.0) == plain
    # 16 pixels, the object's weighing 1 + 9: its error (1 per channel) over a weight sum of 25
    weighted = reconstruction_loss(missed_object, images, foreground, 9.0)
    assert weighted == pytest.approx(10 / 25)
    # a backdrop pixel's error (1/3: one channel of three) weighs 1 of 25
    assert reconstruction_loss(noisy_backdrop, images, foreground, 9.0) == pytest.approx(1 / 75)


def test_continuity_loss_is_lower_for_the_same_object_than_for_another():
    torch.manual_seed(0)
    ball, paddle = torch.randn(16), torch.randn(16)
    present = torch.ones(1, 2, 2, dtype=torch.bool)
    # the ball at (10, 10) moves to (12, 10); the paddle stays at (25, 25)
    centres = torch.tensor([[[[10.0, 10.0], [25.0, 25.0]], [[12.0, 10.0], [25.0, 25.0]]]])
    same = torch.stack([torch.stack([ball, paddle]), torch.stack([ball, paddle])])[None]
    swapped = torch.stack([torch.stack([ball, paddle]), torch.stack([paddle, ball])])[None]
    loss_same, pairs = continuity_loss(same, present, centres, radius=8.0)
    loss_swapped, _ = continuity_loss(swapped, present, centres, radius=8.0)
    assert pairs == 2
    assert loss_same.item() < loss_swapped.item()
    assert loss_same.item() == pytest.approx(-1 + float(torch.cosine_similarity(ball, paddle, 0)))
    # nothing within the radius: no pair, no loss
    far = centres.clone()
    far[0, 1] += 20
    assert continuity_loss(same, present, far, radius=8.0)[1] == 0


def test_infer_is_deterministic_and_gives_one_box_per_slot():
    torch.manual_seed(0)
    model = SlotAttentionModel(SlotConfig(attend="all")).eval()
    images = torch.rand(3, 3, 128, 128)
    a, b = model.infer(images), model.infer(images[:1])
    assert a["z_pres_prob"].shape == (3, 10) and a["z_where"].shape == (3, 10, 4)
    assert a["z_what"].shape == (3, 10, 64)
    torch.testing.assert_close(a["z_what"][:1], b["z_what"], rtol=1e-4, atol=1e-5)
    only = model.infer(images, present_only=True)
    assert (only["z_what"][only["z_pres_prob"] <= 0.5] == 0).all()


@pytest.fixture(scope="module")
def pong_t2(tmp_path_factory):
    from spacemoc.data import compute_background, make_dataset, save_background

    folder = tmp_path_factory.mktemp("slot_data")
    background = folder / "background.png"
    save_background(compute_background("pong", 40, seed=100), background, game="pong")
    return make_dataset("pong", "train", folder / "train.h5", background, 4, T=2, seed=0, workers=1)


def test_slot_moc_trains_checkpoints_and_resumes_exactly(pong_t2, tmp_path):
    from spacemoc.arms import arm_config
    from spacemoc.config import validate_config
    from spacemoc.models import load_checkpoint
    from spacemoc.stages.train import train

    config = arm_config(
        validate_config(
            {
                "model": {
                    "slot": {
                        "num_slots": 4,
                        "enc_channels": 16,
                        "dec_channels": 16,
                        "attend": "all",
                    }
                },
                "train": {"steps": 3, "batch_size": 1, "checkpoint_every": 2, "log_every": 1},
            }
        ),
        "slot_moc",
    )
    config["model"]["slot_moc"] = {"schedule_end_step": 4, "warmup_steps": 1}
    whole = train(pong_t2, tmp_path / "whole", game="pong", config=config, device="cpu")

    class Stop(Exception):
        pass

    def stop(step, row):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        train(pong_t2, tmp_path / "cut", game="pong", config=config, device="cpu", callback=stop)
    resumed = train(pong_t2, tmp_path / "cut", game="pong", config=config, device="cpu")
    a = torch.load(whole, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["family"] == "slot" and a["step"] == 3
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], rtol=0, atol=1e-6, msg=key)
    with open(whole.parent / "train_curves.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert float(rows[0]["motion_loss"]) > 0 and float(rows[0]["reconstruction_loss"]) > 0
    model = load_checkpoint(whole)
    assert isinstance(model, SlotAttentionModel) and model.config.num_slots == 4


def test_slot_config_keys_are_checked():
    from spacemoc.arms import arm_config
    from spacemoc.config import validate_config

    with pytest.raises(ValueError, match="SlotMocConfig.lr .* must be of type float"):
        validate_config({"models": ["slot_moc"], "model": {"slot_moc": {"lr": "fast"}}})
    with pytest.raises(ValueError, match="unknown SlotConfig key"):
        validate_config({"models": ["slot"], "model": {"slot": {"slots": 3}}})
    assert SlotMocConfig.from_dict({"lr": 1e-3}).lr == 1e-3
    plain = arm_config(validate_config({}), "slot")["model"]["slot_moc"]
    assert plain["motion_weight"] == plain["continuity_weight"] == plain["foreground_weight"] == 0


def _grey_look(size=128):
    return np.full((size, size, 3), 100, np.uint8)


def test_attend_changed_slots_see_only_the_tokens_off_the_background():
    torch.manual_seed(0)
    model = SlotAttentionModel(SlotConfig(num_slots=4, attend="changed")).eval()
    model.set_background(_grey_look())
    image = torch.full((1, 3, 128, 128), 100 / 255)
    image[:, :, 40:44, 40:44] = 1.0  # a white object: 2 x 2 tokens at stride 2
    tokens = model.changed_tokens(image).view(64, 64)
    assert tokens.sum() == 4 and tokens[20:22, 20:22].all()
    faint, bright = image.clone(), image.clone()
    faint[:, :, 100, 100] += 0.05  # under changed_threshold (0.1): still background
    bright[:, :, 100, 100] += 0.5
    slots = [model(x)["slots"] for x in (image, faint, bright)]
    torch.testing.assert_close(slots[0], slots[1], rtol=0, atol=1e-5)
    assert (slots[0] - slots[2]).abs().max() > 1e-3


def test_attend_changed_keeps_its_background_in_the_weights():
    torch.manual_seed(0)
    config = SlotConfig(num_slots=4, attend="changed")
    trained = SlotAttentionModel(config).eval()
    with pytest.raises(ValueError, match="holds no background"):
        trained.infer(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match="background looks must be"):
        trained.set_background(np.zeros((2, 64, 64, 3), np.uint8))
    looks = np.stack([_grey_look(), _grey_look() + 50])  # a background of two looks
    trained.set_background(looks)
    loaded = SlotAttentionModel(config).eval()
    loaded.load_state_dict(trained.state_dict())
    assert loaded.reference.shape == (2, 3, 128, 128)
    images = torch.rand(2, 3, 128, 128)
    torch.testing.assert_close(loaded.infer(images)["z_what"], trained.infer(images)["z_what"])
    assert (
        not SlotConfig(attend="all").needs_background
        and "reference" not in SlotAttentionModel(SlotConfig(attend="all")).state_dict()
    )


def test_attend_changed_trains_with_the_games_background(pong_t2, tmp_path):
    from spacemoc.arms import arm_config
    from spacemoc.config import validate_config
    from spacemoc.models import load_checkpoint
    from spacemoc.stages.train import needs_background, train

    slot = {"num_slots": 4, "enc_channels": 16, "attend": "changed"}
    config = arm_config(
        validate_config({"model": {"slot": slot}, "train": {"steps": 2, "batch_size": 1}}),
        "slot_moc",
    )
    assert needs_background("pong", config)
    assert needs_background("pong", arm_config(validate_config({}), "slot"))  # the default
    every_token = validate_config({"model": {"slot": {"attend": "all"}}})
    assert not needs_background("pong", arm_config(every_token, "slot_moc"))
    with pytest.raises(ValueError, match="needs the game's background"):
        train(pong_t2, tmp_path / "none", game="pong", config=config, device="cpu")
    background = Path(pong_t2).parent / "background.png"
    path = train(
        pong_t2, tmp_path / "run", game="pong", config=config, device="cpu",
        background_path=background,
    )  # fmt: skip
    model = load_checkpoint(path)
    assert model.reference.shape == (1, 3, 128, 128)
    # the learned backdrop starts at the game's background, not at the batch's median
    model.initialise_background(torch.rand(4, 3, 128, 128))
    start = torch.sigmoid(model.background_logits)
    torch.testing.assert_close(start, model.reference[0].clamp(0.02, 0.98), rtol=0, atol=1e-5)
