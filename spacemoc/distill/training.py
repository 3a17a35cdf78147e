"""Distillation: the teacher's deterministic inference on unlabeled frames is the target; the
student learns presence (soft cross-entropy on every cell), and the boxes and z_what of the cells
the teacher calls present."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from spacemoc.distill.config import DistillConfig, StudentConfig
from spacemoc.distill.student import Student
from spacemoc.models.inputs import model_input


@torch.no_grad()
def teacher_targets(
    teacher, images: np.ndarray, box_readout: str, device, batch_size: int = 32, threshold=0.5
) -> dict[str, np.ndarray]:
    """The teacher's ``infer`` on uint8 images (n,128,128,3): z_pres_prob (n,N), z_where (n,N,4)
    in the given readout, z_what (n,N,D) (zero where the teacher sees no object)."""
    kwargs = {"present_only": True, "threshold": threshold}
    if box_readout != "glimpse":
        kwargs["box_readout"] = box_readout
    parts: dict[str, list] = {"z_pres_prob": [], "z_where": [], "z_what": []}
    for start in range(0, len(images), batch_size):
        x = model_input(images[start : start + batch_size], teacher.channel_order, device)
        out = teacher.infer(x, **kwargs)
        for name in parts:
            parts[name].append(out[name].float().cpu().numpy())
    return {name: np.concatenate(values) for name, values in parts.items()}


def distill_loss(student: Student, x, target: dict, config: DistillConfig) -> dict:
    """The loss terms of one batch; ``target`` holds the teacher's arrays as tensors."""
    logit, z_where, z_what = student(x)  # (B,N), (B,N,4), (B,N,D)
    present = target["z_pres_prob"] > config.threshold  # (B,N)
    # Object cells (~1 % of all) and empty ones weigh the same in total: a plain mean learns
    # slowly (held-out cell F 0.84 after 2,250 Pong steps against 0.96).
    cells = F.binary_cross_entropy_with_logits(logit, target["z_pres_prob"], reduction="none")
    empty = (~present).sum().clamp(min=1)
    presence = cells[present].sum() / present.sum().clamp(min=1) + cells[~present].sum() / empty
    count = present.sum().clamp(min=1)
    cell = 2.0 / student.config.G  # a cell's width in normalised coordinates
    box = (z_where - target["z_where"]).abs().sum(-1)[present].sum() / count / cell
    what = (z_what - target["z_what"]).pow(2).mean(-1)[present].sum() / count
    total = presence + config.box_weight * box + config.what_weight * what
    return {"loss": total, "presence": presence, "box": box, "what": what}


@torch.no_grad()
def agreement(student: Student, images, targets, device, threshold: float) -> dict:
    """Cell-level agreement with the teacher: F of the present cells, mean box error (px of the
    128x128 image) and z_what error on cells both call present."""
    student.eval()
    tp = fp = fn = 0
    box_err, what_err = [], []
    for start in range(0, len(images), 64):
        x = model_input(images[start : start + 64], student.channel_order, device)
        out = student.infer(x)
        prob = out["z_pres_prob"].cpu().numpy() > threshold
        ref = targets["z_pres_prob"][start : start + 64] > threshold
        tp += int((prob & ref).sum())
        fp += int((prob & ~ref).sum())
        fn += int((~prob & ref).sum())
        both = prob & ref
        where = out["z_where"].cpu().numpy()[both]
        box_err.append(np.abs(where - targets["z_where"][start : start + 64][both]) * 64)
        what = out["z_what"].cpu().numpy()[both]
        what_err.append((what - targets["z_what"][start : start + 64][both]) ** 2)
    student.train()
    box_err, what_err = np.concatenate(box_err), np.concatenate(what_err)
    return {
        "cell_f": 2 * tp / max(2 * tp + fp + fn, 1),
        "box_px": float(box_err.mean()) if box_err.size else math.nan,
        "what_mse": float(what_err.mean()) if what_err.size else math.nan,
    }


def distill(
    teacher,
    images: np.ndarray,
    *,
    game: str,
    labels,
    box_readout: str,
    student_config: StudentConfig | None = None,
    config: DistillConfig | None = None,
    device="cpu",
    progress=None,
    frame_weights: np.ndarray | None = None,
) -> tuple[Student, list[dict]]:
    """A student trained to reproduce ``teacher.infer`` on uint8 images (n,128,128,3).

    ``frame_weights`` (n,): how often each frame is drawn for a batch, relatively (default:
    uniform), e.g. to give a small split of the states an agent visits as much weight as a
    large one of random play.

    Returns the student (eval mode) and its log: one row per ``config.eval_every`` steps with
    the training losses and the agreement on the held-out frames. ``progress(step, row)`` is
    called with each row.
    """
    config = config or DistillConfig()
    device = torch.device(device)
    G = getattr(getattr(teacher, "config", None), "G", None)
    if not G:
        raise ValueError(
            "the student learns the per-cell outputs of a model with a G x G grid of cells "
            f"(SPACE); {type(teacher).__name__} has none (slot models give slots, not cells)"
        )
    if len(images) < 2:
        raise ValueError(f"distillation needs frames; got {len(images)}")
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    order = rng.permutation(len(images))
    n_hold = max(1, int(round(config.holdout * len(images))))
    hold, train = np.sort(order[:n_hold]), order[n_hold:]
    draw = None
    if frame_weights is not None:
        frame_weights = np.asarray(frame_weights, dtype=np.float64)
        if frame_weights.shape != (len(images),) or (frame_weights < 0).any():
            raise ValueError(f"frame_weights must be {len(images)} weights >= 0")
        draw = frame_weights[train] / frame_weights[train].sum()
    targets = teacher_targets(teacher, images, box_readout, device, threshold=config.threshold)
    student_config = student_config or StudentConfig(
        G=int(G), z_what_dim=targets["z_what"].shape[-1]
    )
    student = Student(
        student_config,
        game=game,
        labels=labels,
        channel_order=teacher.channel_order,
        box_readout=box_readout,
    ).to(device)
    optimiser = torch.optim.Adam(student.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / config.steps, 1.0)))
    )
    held_images = images[hold]
    held_targets = {k: v[hold] for k, v in targets.items()}
    log, running = [], {}
    student.train()
    for step in range(1, config.steps + 1):
        batch = rng.choice(train, size=min(config.batch_size, len(train)), replace=False, p=draw)
        x = model_input(images[batch], student.channel_order, device)
        target = {k: torch.from_numpy(v[batch]).to(device) for k, v in targets.items()}
        terms = distill_loss(student, x, target, config)
        optimiser.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimiser.step()
        schedule.step()
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if step % config.eval_every == 0 or step == config.steps:
            seen = config.eval_every if step % config.eval_every == 0 else step % config.eval_every
            row = {"step": step, **{k: v / seen for k, v in running.items()}}
            row.update(agreement(student, held_images, held_targets, device, config.threshold))
            log.append(row)
            running = {}
            if progress is not None:
                progress(step, row)
    student.step = config.steps
    return student.eval(), log
