"""Slot Attention + MOC training: the optimiser, one step, and what a run logs of it (the
family's trainer, ``spacemoc.models.families.Family.trainer``)."""

from __future__ import annotations

import torch

from .config import SlotMocConfig
from .losses import (
    continuity_loss,
    motion_loss,
    motion_windows,
    reconstruction_loss,
    slot_centres,
)
from .masks import coloured_masks, mask_objects

CURVE_COLUMNS = (
    "step",
    "total_loss",
    "reconstruction_loss",
    "motion_loss",
    "continuity_loss",
    "lambda_align",
    "motion_objects_matched",
    "continuity_pairs",
    "objects_detected",
    "lr",
    "step_time_s",
    "data_time_s",
    "elapsed_s",
)


def schedule(step: int, cfg: SlotMocConfig) -> float:
    """λ: 0 (motion) until ``schedule_start_step``, 1 (continuity) from ``schedule_end_step``."""
    start, end = cfg.schedule_start_step, cfg.schedule_end_step
    if step <= start:
        return 0.0
    return 1.0 if step >= end else (step - start) / (end - start)


class SlotTrainer:
    """Adam on every weight (``SlotMocConfig.lr`` with a linear warm-up), reconstruction MSE plus
    the slot MOC losses (``total`` in ``SlotMocConfig``), gradients clipped to
    ``train.clip_norm``."""

    curve_columns = CURVE_COLUMNS

    def __init__(self, model, loss_config: SlotMocConfig, train: dict):
        if str(train.get("precision", "float32")) != "float32":
            raise ValueError("the slot family trains in float32 only (train.precision)")
        self.model, self.cfg = model, loss_config
        background = model.background_parameters()
        others = [p for p in model.parameters() if all(p is not b for b in background)]
        groups = [{"params": others, "lr": loss_config.lr}]
        if background:
            groups.append({"params": background, "lr": loss_config.background_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.clip_norm = float(train["clip_norm"])

    def step(self, batch: dict, step: int) -> dict:
        cfg, model = self.cfg, self.model
        frames = batch["frames"]  # (B,T,3,H,W)
        B, T = frames.shape[:2]
        images = frames.flatten(0, 1)  # (B*T,3,H,W), b-major
        if step == 0 and model.learned_background:
            model.initialise_background(images)
        out = model(images)
        foreground = None
        if cfg.foreground_weight > 0:
            foreground = batch["motion"].flatten(0, 1) > 0.5  # (B*T,H,W)
        reconstruction = reconstruction_loss(
            out["reconstruction"], images, foreground, cfg.foreground_weight
        )
        lam = schedule(step, cfg)
        zero = images.new_zeros(())
        motion, matched = zero, 0
        if cfg.motion_weight > 0 and lam < 1:
            windows = motion_windows(
                batch["motion_z_pres"].flatten(0, 1),
                batch["motion_z_where"].flatten(0, 1),
                model.config.img_size,
                cfg.motion_margin,
            )
            motion, matched = motion_loss(out["masks"], batch["motion"].flatten(0, 1), windows)
        continuity, pairs = zero, 0
        with torch.no_grad():
            present, _ = mask_objects(out["masks"].detach(), model.config)
        if cfg.continuity_weight > 0 and lam > 0:
            centres = slot_centres(out["masks"], model.config.mask_threshold)
            continuity, pairs = continuity_loss(
                out["slots"].view(B, T, *out["slots"].shape[1:]),
                (present > 0.5).view(B, T, -1),
                centres.view(B, T, *centres.shape[1:]),
                cfg.continuity_radius,
            )
        loss = (
            reconstruction
            + (1 - lam) * cfg.motion_weight * motion
            + lam * cfg.continuity_weight * continuity
        )
        lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        self.optimizer.param_groups[0]["lr"] = lr  # the background's rate has no warm-up
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip_norm)
        self.optimizer.step()
        return {
            "loss": loss.detach(),
            "reconstruction_loss": reconstruction.detach(),
            "motion_loss": motion.detach(),
            "continuity_loss": continuity.detach(),
            "lambda_align": lam,
            "motion_objects_matched": matched,
            "continuity_pairs": pairs,
            "objects_detected": int((present > 0.5).sum()),
            "lr": lr,
            "out": {k: v.detach() for k, v in out.items()},
        }

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def describe(self, logs: dict) -> str:
        return (
            f"reconstruction {logs['reconstruction_loss'].item()}, motion "
            f"{logs['motion_loss'].item()}, continuity {logs['continuity_loss'].item()}"
        )

    def curve_row(self, logs: dict, images: int, timings: dict) -> dict:
        row = {key: logs[key] for key in CURVE_COLUMNS if key in logs}
        for key, value in row.items():
            if isinstance(value, torch.Tensor):
                row[key] = float(value)
        row["total_loss"] = float(logs["loss"])
        row.update(timings)
        return row

    def log_tensorboard(self, writer, step: int, row: dict, logs: dict) -> None:
        for key in CURVE_COLUMNS[1:]:
            if key in row:
                writer.add_scalar(f"train/{key}", row[key], step)

    @torch.no_grad()
    def log_images(self, writer, step: int, batch: dict, logs: dict) -> None:
        """Frame 0 of up to 8 sequences: input, reconstruction, and the slot masks coloured
        (one colour per slot)."""
        out = logs["out"]
        T = batch["frames"].shape[1]
        index = torch.arange(min(batch["frames"].shape[0], 8)) * T
        writer.add_images("train/0-image", batch["frames"][: len(index), 0].cpu(), step)
        reconstruction = out["reconstruction"][index].cpu().clamp(0, 1)
        writer.add_images("train/1-reconstruction", reconstruction, step)
        writer.add_images("train/2-slot_masks", coloured_masks(out["masks"][index].cpu()), step)
