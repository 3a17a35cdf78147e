"""Objects from slot masks: which slots are objects, and their boxes; the masks in colour."""

from __future__ import annotations

import torch


def mask_objects(masks: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """masks (B,K,H,W) in [0,1] -> presence (B,K) and z_where (B,K,4).

    A slot's pixels are those with mask > ``cfg.mask_threshold``; it is an object when they number
    ``cfg.min_pixels`` to ``cfg.max_fraction`` of the image (the background slots cover more).
    Presence is then the mean mask value over them (> the threshold, so > 0.5 for the default),
    else 0. z_where = [scale_x, scale_y, centre_x, centre_y] of their bounding box (centres in
    [-1, 1]); a slot without pixels gets a zero box.
    """
    B, K, H, W = masks.shape
    on = masks > cfg.mask_threshold  # (B,K,H,W)
    area = on.flatten(2).sum(-1)  # (B,K)
    sized = (area >= cfg.min_pixels) & (area <= cfg.max_fraction * H * W)
    mean = (masks * on).flatten(2).sum(-1) / area.clamp(min=1)
    presence = torch.where(sized, mean, torch.zeros_like(mean)).float()
    z_where = masks.new_zeros(B, K, 4, dtype=torch.float32)
    for axis, (dim, size) in enumerate(((2, W), (3, H))):  # x: any over rows; y: over columns
        hit = on.any(dim)  # (B,K,size)
        first = hit.float().argmax(-1)
        last = size - 1 - hit.flip(-1).float().argmax(-1)
        found = hit.any(-1)
        scale = torch.where(found, (last - first + 1).float() / size, 0.0)
        centre = torch.where(found, (first + last + 1).float() / size - 1, 0.0)
        z_where[..., axis], z_where[..., axis + 2] = scale, centre
    return presence, z_where


def mask_centres(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """masks (B,K,H,W) -> (B,K,2) [x, y] pixel centroid of each slot's pixels above ``threshold``
    (NaN for a slot without any)."""
    H, W = masks.shape[-2:]
    on = (masks > threshold).float()
    area = on.flatten(2).sum(-1)
    ys = torch.arange(H, device=masks.device, dtype=torch.float32) + 0.5
    xs = torch.arange(W, device=masks.device, dtype=torch.float32) + 0.5
    x = (on.sum(-2) * xs).sum(-1) / area
    y = (on.sum(-1) * ys).sum(-1) / area
    return torch.stack((x, y), dim=-1)


def coloured_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N,K,H,W) soft masks -> (N,3,H,W): each slot's mask in its own colour."""
    K = masks.shape[1]
    hue = torch.arange(K, dtype=torch.float32, device=masks.device) / K
    colours = torch.stack(
        [(torch.sin(2 * torch.pi * (hue + shift)) + 1) / 2 for shift in (0.0, 1 / 3, 2 / 3)], 1
    )  # (K,3)
    return torch.einsum("nkhw,kc->nchw", masks.float(), colours).clamp(0, 1)
