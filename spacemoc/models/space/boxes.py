"""SPACE's alpha box readout (``spacemoc.models.readouts``): the extent of what a glimpse draws.

SPACE's z_where is the box the glimpse is cut from and drawn into; nothing in the loss ties the
object to the box's centre, so for small objects the glimpse box's centre can sit pixels away from
the object (Pong's ball, docs/evaluation.md). The alpha readout is the bounding box of the
glimpse's decoded alpha mask above ``ALPHA_THRESHOLD``.
"""

from __future__ import annotations

import torch

ALPHA_THRESHOLD = 0.5


def alpha_extent(
    z_where: torch.Tensor,  # (M,4) [scale_x, scale_y, centre_x, centre_y], centres in [-1, 1]
    alpha: torch.Tensor,  # (M,1,g,g) decoded glimpse alpha in (0, 1)
    threshold: float = ALPHA_THRESHOLD,
) -> torch.Tensor:
    """The bounding box of ``alpha > threshold`` inside each glimpse, as z_where (M,4).

    Glimpses are sampled with align_corners=True: glimpse pixel j sits at -1 + 2j/(g-1) in box
    units, so a run of pixels j0..j1 covers half a pixel spacing more on each side. A glimpse
    with no pixel above the threshold keeps its box.
    """
    g = alpha.shape[-1]
    on = alpha[:, 0] > threshold  # (M,g,g) rows = y, columns = x
    out = z_where.clone()
    for axis, dim in ((0, 1), (1, 2)):  # x: any over rows; y: any over columns
        hit = on.any(dim)  # (M,g)
        found = hit.any(1)
        first = hit.float().argmax(1)
        last = g - 1 - hit.flip(1).float().argmax(1)
        scale, centre = z_where[:, axis], z_where[:, axis + 2]
        new_centre = centre + scale * (-1 + (first + last) / (g - 1))
        new_scale = scale * (last - first + 1) / (g - 1)
        out[:, axis] = torch.where(found, new_scale, scale)
        out[:, axis + 2] = torch.where(found, new_centre, centre)
    return out
