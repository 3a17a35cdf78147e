"""SPACE + MOC training: the optimisers, one training step, and what a run logs of it.

The trainer is the family's training interface (``spacemoc.models.families.Family.trainer``);
``spacemoc.stages.train`` runs it over the data with checkpoints, curves and TensorBoard.
"""

from __future__ import annotations

import numpy as np
import torch

from spacemoc.geometry import z_where_to_corners

from .moc import MocConfig, MocLoss

# Columns of train_curves.csv.
CURVE_COLUMNS = (
    "step",
    "total_loss",
    "elbo_loss",
    "moc_loss",
    "motion_loss",
    "oc_loss",
    "lambda_align",
    "flow_loss_z_pres",
    "flow_loss_z_where",
    "flow_loss_alpha_map",
    "objects_detected",
    "count",
    "mse",
    "log_like",
    "kl_z_what",
    "kl_z_where",
    "kl_z_pres",
    "kl_z_depth",
    "kl_bg",
    "step_time_s",
    "data_time_s",
    "elapsed_s",
)


# ----------------------------------------------------------------------------------------------
# configuration


def _scalar(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().sum())
    return float(value)


def _mean(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean())
    return float(value)


def _curve_row(loss, elbo_loss, moc_log, log, images, timings) -> dict:
    row = {
        "total_loss": _scalar(loss),
        "elbo_loss": _scalar(elbo_loss),
        "moc_loss": _scalar(moc_log["moc_loss"]),
        "motion_loss": _scalar(moc_log["motion_loss"]),
        "oc_loss": _scalar(moc_log["oc_loss"]),
        "lambda_align": moc_log["lambda_align"],
        "flow_loss_z_pres": _scalar(moc_log["flow_loss_z_pres"]),
        "flow_loss_z_where": _scalar(moc_log["flow_loss_z_where"]),
        "flow_loss_alpha_map": _scalar(moc_log["flow_loss_alpha_map"]),
        "objects_detected": int(moc_log["objects_detected"]),
        # per image: sampled presence, reconstruction and KL terms
        "count": _scalar(log["z_pres"]) / images,
        "mse": _mean(log["mse"]),
        "log_like": _mean(log["log_like"]),
    }
    for key in ("kl_z_what", "kl_z_where", "kl_z_pres", "kl_z_depth", "kl_bg"):
        row[key] = _mean(log[key])
    row.update(timings)
    return row


# TensorBoard tags of the reference (spec §4), prefixed with train/.
_TB_MOC_KEYS = (
    "objects_detected",
    "m_scheduling_weight",
    "oc_scheduling_weight",
    "moc_loss",
    "oc_loss",
    "motion_loss",
    "z_what_loss_objects",
    "flow_loss_z_pres",
    "flow_loss_z_where",
    "flow_loss_alpha_map",
    "flow_loss_z_pres_scaled",
    "flow_loss_z_where_scaled",
    "flow_loss_alpha_map_scaled",
    "z_what_loss_objects_scaled",
    "motion_loss_scaled",
    "oc_loss_scaled",
)
_TB_KL_TAGS = {
    "What_KL": "kl_z_what",
    "Where_KL": "kl_z_where",
    "Pres_KL": "kl_z_pres",
    "Depth_KL": "kl_z_depth",
    "Bg_KL": "kl_bg",
}


def _log_scalars(writer, step, row, moc_log) -> None:
    writer.add_scalar("train/total_loss", row["total_loss"], step)
    writer.add_scalar("train/elbo_loss", row["elbo_loss"], step)
    for key in _TB_MOC_KEYS:
        writer.add_scalar(f"train/{key}", _scalar(moc_log[key]), step)
    for tag, key in _TB_KL_TAGS.items():
        writer.add_scalar(f"train/{tag}", row[key], step)
    for key in ("count", "mse", "log_like", "step_time_s"):
        writer.add_scalar(f"train/{key}", row[key], step)


def draw_boxes(images: torch.Tensor, z_where: torch.Tensor, present: torch.Tensor, colour):
    """Draw the outlines of the present boxes onto copies of ``images`` (N,3,H,W).

    ``z_where`` (N,M,4) = [scale_x, scale_y, centre_x, centre_y] with centres in [-1,1].
    """
    images = images.clone()
    _, _, height, width = images.shape
    colour = torch.tensor(colour, dtype=images.dtype).view(3, 1)
    for i, (boxes, keep) in enumerate(zip(z_where.cpu(), present.cpu(), strict=True)):
        corners = z_where_to_corners(boxes[keep].numpy()) * (width, height, width, height)
        for x0, y0, x1, y1 in corners:
            x0, x1 = (int(np.clip(v, 0, width - 1)) for v in (x0, x1))
            y0, y1 = (int(np.clip(v, 0, height - 1)) for v in (y0, y1))
            images[i, :, y0, x0 : x1 + 1] = colour
            images[i, :, y1, x0 : x1 + 1] = colour
            images[i, :, y0 : y1 + 1, x0] = colour
            images[i, :, y0 : y1 + 1, x1] = colour
    return images


@torch.no_grad()
def _log_images(writer, step, batch_data, log, batch, steps, grid) -> None:
    """Frame 2 (or the last) of the first 8 sequences: input, reconstruction, fg, bg, alpha map,
    predicted boxes (red) and motion boxes (green) on the input."""
    t = min(2, steps - 1)
    index = torch.arange(min(batch, 8)) * steps + t  # b-major flattening
    n = grid * grid
    images = batch_data["frames"][: len(index), t].cpu()
    predicted = log["z_where_pure"].view(-1, n, 4)[index].cpu()
    present = log["z_pres_prob_pure"].view(-1, n)[index].cpu() > 0.5
    motion_where = batch_data["motion_z_where"][: len(index), t].view(-1, n, 4).cpu()
    motion_present = batch_data["motion_z_pres"][: len(index), t].view(-1, n).cpu() > 0.5
    boxes = draw_boxes(images, motion_where, motion_present, (0.0, 1.0, 0.0))
    boxes = draw_boxes(boxes, predicted, present, (1.0, 0.0, 0.0))
    writer.add_images("train/0-image", images, step)
    writer.add_images("train/1-boxes", boxes, step)
    for tag, key in (("2-reconstruction", "y"), ("3-foreground", "fg"), ("4-background", "bg")):
        if key in log:
            writer.add_images(f"train/{tag}", log[key][index].detach().cpu().clamp(0, 1), step)
    alpha = log["alpha_map"][index].detach().cpu().clamp(0, 1)
    writer.add_images("train/5-alpha_map", alpha.expand(-1, 3, -1, -1), step)
    motion = batch_data["motion"][: len(index), t].unsqueeze(1).cpu()
    writer.add_images("train/6-motion", motion.expand(-1, 3, -1, -1), step)


def make_optimizers(model, lr_fg: float, lr_bg: float):
    """The reference recipe: RMSprop for the foreground, Adam for the background."""
    return (
        torch.optim.RMSprop(model.fg_module.parameters(), lr=lr_fg),
        torch.optim.Adam(model.bg_module.parameters(), lr=lr_bg),
    )


def training_step(
    model,
    moc,
    optimizers,
    batch_data: dict,
    step: int,
    clip_norm: float,
    precision: str = "float32",
):
    """One step: forward, MOC loss, backward, clipping of all parameters together, fg then bg
    optimiser. Returns (loss, elbo_loss, moc_loss, space_log, moc_log).

    ``precision="bfloat16"`` runs forward and loss under autocast (mixed precision: weights,
    gradients and optimiser state stay float32; autocast keeps sums and losses in float32)."""
    frames = batch_data["frames"]  # (B,T,3,128,128)
    if model.config.motion_input:  # the motion map as a 4th channel: (B,T,4,128,128)
        frames = torch.cat([frames, batch_data["motion"].unsqueeze(2)], dim=2)
    device_type = frames.device.type
    with torch.autocast(device_type, torch.bfloat16, enabled=precision == "bfloat16"):
        elbo_loss, log = model(frames, global_step=step)
        moc_loss, moc_log = moc(
            log,
            batch_data["motion"],
            batch_data["motion_z_pres"],
            batch_data["motion_z_where"],
            global_step=step,
        )
        loss = elbo_loss.float() + moc_loss.float()
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, clip_norm)
    for optimizer in optimizers:
        optimizer.step()
    return loss, elbo_loss, moc_loss, log, moc_log


class SpaceTrainer:
    """SPACE + MOC training of ``model``: its optimisers, its losses, its resumable state.

    ``train`` (a config's ``train`` section) gives ``lr_fg``, ``lr_bg``, ``clip_norm`` and
    ``precision``. ``step(batch, step)`` is one optimisation step and returns its logs (the
    model's and the MOC loss's tensors); ``state_dict()`` holds everything beyond the weights
    that an exact resume needs (both optimisers, the MOC scheduler).
    """

    curve_columns = CURVE_COLUMNS

    def __init__(self, model, moc_config: MocConfig, train: dict):
        self.model = model
        self.moc = MocLoss(moc_config, grid=model.config.G)
        self.optimizer_fg, self.optimizer_bg = make_optimizers(
            model, float(train["lr_fg"]), float(train["lr_bg"])
        )
        self.clip_norm = float(train["clip_norm"])
        self.precision = str(train.get("precision", "float32"))

    def step(self, batch: dict, step: int) -> dict:
        """One step on ``batch`` (frames (B,T,3,128,128), motion (B,T,128,128), motion hints);
        returns logs with ``loss`` (the total, a scalar tensor), ``elbo_loss``, ``moc_loss``,
        ``space`` (the model's log) and ``moc`` (the MOC loss's log)."""
        loss, elbo_loss, moc_loss, log, moc_log = training_step(
            self.model,
            self.moc,
            (self.optimizer_fg, self.optimizer_bg),
            batch,
            step,
            self.clip_norm,
            self.precision,
        )
        return {
            "loss": loss,
            "elbo_loss": elbo_loss,
            "moc_loss": moc_loss,
            "space": log,
            "moc": moc_log,
        }

    def state_dict(self) -> dict:
        return {
            "optimizer_fg": self.optimizer_fg.state_dict(),
            "optimizer_bg": self.optimizer_bg.state_dict(),
            "moc": self.moc.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer_fg.load_state_dict(state["optimizer_fg"])
        self.optimizer_bg.load_state_dict(state["optimizer_bg"])
        self.moc.load_state_dict(state["moc"])

    def describe(self, logs: dict) -> str:
        """The loss terms, for an error message."""
        return f"elbo {logs['elbo_loss'].item()}, moc {logs['moc_loss'].item()}"

    def curve_row(self, logs: dict, images: int, timings: dict) -> dict:
        """One row of train_curves.csv (``step`` is added by the caller); ``images`` = B*T."""
        return _curve_row(
            logs["loss"], logs["elbo_loss"], logs["moc"], logs["space"], images, timings
        )

    def log_tensorboard(self, writer, step: int, row: dict, logs: dict) -> None:
        _log_scalars(writer, step, row, logs["moc"])

    def log_images(self, writer, step: int, batch: dict, logs: dict) -> None:
        frames = batch["frames"]
        _log_images(writer, step, batch, logs["space"], *frames.shape[:2], self.model.config.G)
