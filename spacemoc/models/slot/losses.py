"""MOC for slots: the motion loss (slot masks against the objects of the motion map, matched by
the Hungarian algorithm) and object continuity across consecutive frames."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .masks import mask_centres


def motion_windows(motion_z_pres, motion_z_where, size: int, margin: int) -> list[list[tuple]]:
    """Per frame the motion objects as pixel windows: (box, window) of (x0, y0, x1, y1) ints in
    the model's image (side ``size``), the window the box widened by ``margin``.

    motion_z_pres (F,N) and motion_z_where (F,N,4) are the dataset's motion hints (one box per
    moving object, in the cell of its centre)."""
    out = []
    for present, where in zip(
        motion_z_pres.cpu().numpy(), motion_z_where.cpu().numpy(), strict=True
    ):
        frame = []
        for sx, sy, cx, cy in where[present > 0.5]:
            x0, x1 = ((cx + 1) / 2 - sx / 2) * size, ((cx + 1) / 2 + sx / 2) * size
            y0, y1 = ((cy + 1) / 2 - sy / 2) * size, ((cy + 1) / 2 + sy / 2) * size
            box = (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))
            box = tuple(int(np.clip(v, 0, size)) for v in box)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            window = (
                max(box[0] - margin, 0), max(box[1] - margin, 0),
                min(box[2] + margin, size), min(box[3] + margin, size),
            )  # fmt: skip
            frame.append((box, window))
        out.append(frame)
    return out


def reconstruction_loss(
    reconstruction, images, foreground=None, foreground_weight: float = 0.0
) -> torch.Tensor:
    """Mean squared error of reconstruction against images (B,3,H,W), the ``foreground`` pixels
    (B,H,W) bool weighing ``1 + foreground_weight`` (a weighted mean, so the loss stays an MSE).
    Atari objects are a few pixels whose error a plain MSE hardly sees: a missing ball and
    paddles cost Pong about 0.0025. The foreground must come from the data (the motion map): a
    mask read off the learned background moves with it, and the background can then learn to
    weigh down the pixels it gets wrong."""
    if foreground_weight <= 0 or foreground is None:
        return torch.nn.functional.mse_loss(reconstruction, images)
    error = (reconstruction - images).pow(2).mean(1)  # (B,H,W)
    weights = 1 + foreground_weight * foreground.to(error.dtype)
    return (weights * error).sum() / weights.sum()


def dice_loss(masks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of every mask (K,h,w) against one target (h,w): (K,). Dice weighs a 4-pixel
    ball as much as a paddle, where a per-pixel loss would hardly see the ball."""
    inter = (masks * target).flatten(1).sum(-1)
    return 1 - (2 * inter + 1) / (masks.flatten(1).sum(-1) + target.sum() + 1)


def motion_loss(masks: torch.Tensor, motion: torch.Tensor, windows) -> tuple[torch.Tensor, int]:
    """masks (F,K,H,W), motion (F,H,W) binary, ``windows`` from ``motion_windows`` -> the mean
    Dice loss of the slots matched one-to-one to the motion objects (Hungarian, on the same loss)
    and the number of matched objects. Inside a window the target is the moving pixels of the
    object's box (the whole box when the map shows none there) and 0 around it."""
    losses = []
    for f, objects in enumerate(windows):
        if not objects:
            continue
        costs = []
        for (bx0, by0, bx1, by1), (wx0, wy0, wx1, wy1) in objects:
            target = torch.zeros(wy1 - wy0, wx1 - wx0, device=masks.device)
            inside = motion[f, by0:by1, bx0:bx1]
            if not bool(inside.any()):
                inside = torch.ones_like(inside)
            target[by0 - wy0 : by1 - wy0, bx0 - wx0 : bx1 - wx0] = inside
            costs.append(dice_loss(masks[f, :, wy0:wy1, wx0:wx1], target))  # (K,)
        cost = torch.stack(costs)  # (J,K)
        rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
        losses.append(cost[rows, cols])
    if not losses:
        return masks.new_zeros(()), 0
    matched = torch.cat(losses)
    return matched.mean(), len(matched)


def continuity_loss(slots, present, centres, radius: float) -> tuple[torch.Tensor, int]:
    """Object continuity from frame t to t+1 of each sequence.

    slots (B,T,K,D), present (B,T,K) bool, centres (B,T,K,2) pixel centroids. For every present
    slot at t, the nearest present slot at t+1 within ``radius`` is the same object: the loss is
    minus its cosine similarity plus the mean similarity to the other present slots at t+1, so the
    same object's encodings are pulled together and different objects' apart. Returns the mean
    over such slots and their number."""
    B, T = slots.shape[:2]
    terms = []
    for b in range(B):
        for t in range(T - 1):
            now = present[b, t].nonzero().flatten()
            nxt = present[b, t + 1].nonzero().flatten()
            if len(now) == 0 or len(nxt) == 0:
                continue
            distance = torch.cdist(centres[b, t, now], centres[b, t + 1, nxt])  # (P,Q)
            nearest = distance.argmin(1)
            close = distance.gather(1, nearest[:, None]).squeeze(1) < radius
            if not bool(close.any()):
                continue
            a = torch.nn.functional.normalize(slots[b, t, now], dim=-1)
            c = torch.nn.functional.normalize(slots[b, t + 1, nxt], dim=-1)
            sim = a @ c.T  # (P,Q)
            same = sim.gather(1, nearest[:, None]).squeeze(1)
            others = (sim.sum(1) - same) / max(len(nxt) - 1, 1)
            terms.append((others - same)[close])
    if not terms:
        return slots.new_zeros(()), 0
    pairs = torch.cat(terms)
    return pairs.mean(), len(pairs)


def slot_centres(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """(F,K,H,W) -> (F,K,2) pixel centroids (detached: continuity moves encodings, not masks)."""
    return mask_centres(masks.detach(), threshold)
