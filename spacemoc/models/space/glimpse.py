"""Spatial transforms between the image and the per-cell glimpses, and foreground compositing.

Conventions (spec §2.2): z_where = [s_x, s_y, t_x, t_y]; a glimpse covers the box of centre
(t_x, t_y) and size (s_x, s_y) in the [-1, 1] frame; every affine_grid / grid_sample uses
align_corners=True and zero padding, as the reference does.

Two compositing formulations give the same numbers:

* ``composite_dense`` is the reference: every glimpse is inverse-transformed to the full image and
  a softmax over all N cells runs at every pixel, i.e. (B, N, C, H, W) tensors.
* ``composite_windowed`` renders each glimpse only inside the window of pixels its box can touch.
  A cell whose rendering is zero at a pixel still enters the dense softmax with logit 0 (weight
  exp(0)), so the denominator is ``N * exp(-M) + sum_covering exp(-M) * expm1(importance)`` with
  M the per-pixel maximum logit (stability; the same shift the softmax applies), and the numerators
  only need the covering windows. Cost is N windows of S x S pixels instead of N images of H x W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS_INV = 1e-9  # added to the scales before inverting them, as the reference does


def glimpse_theta(z_where: torch.Tensor) -> torch.Tensor:
    """(M, 4) z_where -> (M, 2, 3) affine matrices mapping glimpse coordinates into the image."""
    sx, sy, tx, ty = z_where.unbind(-1)
    zero = torch.zeros_like(sx)
    return torch.stack((sx, zero, tx, zero, sy, ty), dim=-1).view(-1, 2, 3)


def inverse_theta(z_where: torch.Tensor) -> torch.Tensor:
    """(M, 4) z_where -> (M, 2, 3) affine matrices mapping image coordinates into the glimpse."""
    sx, sy, tx, ty = z_where.unbind(-1)
    zero = torch.zeros_like(sx)
    rows = (
        1 / (sx + _EPS_INV),
        zero,
        -tx / (sx + _EPS_INV),
        zero,
        1 / (sy + _EPS_INV),
        -ty / (sy + _EPS_INV),
    )
    return torch.stack(rows, dim=-1).view(-1, 2, 3)


def extract_glimpses(images: torch.Tensor, z_where: torch.Tensor, size: int) -> torch.Tensor:
    """Cut all N glimpses of each image with one grid_sample call (no per-cell image copies).

    images (B, C, H, W), z_where (B, N, 4) -> glimpses (B*N, C, size, size), b-major.
    The sampling grid is the reference's affine_grid, so the glimpses are bit-identical to it.
    """
    B, C = images.shape[:2]
    N = z_where.shape[1]
    grid = F.affine_grid(
        glimpse_theta(z_where.reshape(B * N, 4)), [B * N, C, size, size], align_corners=True
    )
    # (B*N, s, s, 2) -> (B, N*s, s, 2): the N glimpses of an image stacked along the height
    out = F.grid_sample(
        images, grid.view(B, N * size, size, 2), align_corners=True
    )  # (B, C, N*s, s)
    return out.view(B, C, N, size, size).transpose(1, 2).reshape(B * N, C, size, size)


def extract_glimpses_at(
    images: torch.Tensor, batch_index: torch.Tensor, z_where: torch.Tensor, size: int
) -> torch.Tensor:
    """Glimpses of selected cells: z_where (M, 4) of cells of images[batch_index] -> (M, C, s, s)"""
    M = z_where.shape[0]
    C = images.shape[1]
    if M == 0:
        return images.new_zeros(0, C, size, size)
    grid = F.affine_grid(glimpse_theta(z_where), [M, C, size, size], align_corners=True)
    return F.grid_sample(images[batch_index], grid, align_corners=True)


def glimpses_of_cells(
    images: torch.Tensor, batch_index: torch.Tensor, z_where: torch.Tensor, size: int
) -> torch.Tensor:
    """Glimpses of selected cells with one grid_sample over the batch (the inference path).

    images (B, C, H, W), batch_index (M,) sorted, z_where (M, 4) of cells of
    images[batch_index] -> (M, C, size, size). Each image's glimpse grids are stacked along the
    height and padded to the largest count, so no image is copied per glimpse (as
    ``extract_glimpses_at`` and the reference do); grid_sample is pointwise in the grid, so the
    values equal per-glimpse sampling exactly.
    """
    B, C = images.shape[:2]
    M = z_where.shape[0]
    if M == 0:
        return images.new_zeros(0, C, size, size)
    counts = torch.bincount(batch_index, minlength=B)  # (B,)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(M, device=batch_index.device) - starts[batch_index]  # index in its image
    m_max = int(counts.max())
    grid = F.affine_grid(glimpse_theta(z_where), [M, C, size, size], align_corners=True)
    padded = grid.new_zeros(B, m_max, size, size, 2)
    padded[batch_index, rank] = grid
    out = F.grid_sample(
        images, padded.view(B, m_max * size, size, 2), align_corners=True
    )  # (B, C, m_max*size, size)
    out = out.view(B, C, m_max, size, size).transpose(1, 2)  # (B, m_max, C, size, size)
    return out[batch_index, rank]  # (M, C, size, size)


def render_dense(
    glimpses: torch.Tensor, z_where: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Reference inverse transform: glimpses (B*N, C, g, g) -> full-resolution (B*N, C, H, W)."""
    M, C = glimpses.shape[:2]
    grid = F.affine_grid(
        inverse_theta(z_where.reshape(M, 4)), [M, C, height, width], align_corners=True
    )
    return F.grid_sample(glimpses, grid, align_corners=True)


def composite_dense(y_att, alpha_att_hat, z_depth, z_where, height, width):
    """Reference compositing. y_att (B*N,3,g,g), alpha_att_hat (B*N,1,g,g), z_depth (B,N,1),
    z_where (B,N,4) -> fg (B,3,H,W), alpha_map (B,1,H,W), importance_norm (B,N,1,H,W)."""
    B, N = z_where.shape[:2]
    importance = alpha_att_hat * 100.0 * torch.sigmoid(-z_depth.reshape(B * N, 1, 1, 1))
    importance_full = render_dense(importance, z_where, height, width).view(B, N, 1, height, width)
    importance_norm = torch.softmax(importance_full, dim=1)
    y_full = render_dense(y_att, z_where, height, width).view(B, N, 3, height, width)
    fg = (y_full * importance_norm).sum(dim=1)
    alpha_full = render_dense(alpha_att_hat, z_where, height, width).view(B, N, 1, height, width)
    alpha_map = (alpha_full * importance_norm).sum(dim=1)
    return fg, alpha_map, importance_norm


# Window sizes (pixels) a cell's window is rounded up to; cells sharing a (height, width) pair are
# rendered by one grid_sample call. Ratio ~1.5: at most ~2.25x the pixels of exact windows.
WINDOW_LADDER = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def window_extents(scale, centre, glimpse_size, n_pixels):
    """Per-cell pixel range [lo, lo + extent) where a box's rendering can be non-zero.

    With align_corners=True, pixel j sits at u = -1 + 2j/(n-1) and samples the glimpse at
    v = (u - t)/s; bilinear sampling with zero padding is non-zero only for v inside
    (-1 - 2/(g-1), 1 + 2/(g-1)). One pixel of slack on each side absorbs rounding.
    scale, centre (M,) -> lo (M,) long (may be < 0), extent (M,) long, clipped to n_pixels.
    """
    reach = scale * (1.0 + 2.0 / (glimpse_size - 1)) + _EPS_INV
    half = (n_pixels - 1) / 2.0
    lo = torch.floor((centre - reach + 1.0) * half) - 1
    hi = torch.ceil((centre + reach + 1.0) * half) + 1
    lo = lo.clamp(-(2**30), 2**30).long()
    hi = hi.clamp(-(2**30), 2**30).long()
    extent = (hi.clamp(max=n_pixels - 1) - lo.clamp(min=0) + 1).clamp(min=1)
    return lo, extent


def _ladder_size(extent, n_pixels):
    """Round extents up to the window ladder (capped at the image size): (M,) long."""
    sizes = [s for s in WINDOW_LADDER if s < n_pixels] + [n_pixels]
    ladder = torch.tensor(sizes, device=extent.device)
    return ladder[torch.searchsorted(ladder, extent.clamp(max=n_pixels))]


def window_pixels(z_where: torch.Tensor, glimpse_size: int, height: int, width: int):
    """Pixels composite_windowed renders per image: (B,) long, for z_where (B, N, 4)."""
    B, N = z_where.shape[:2]
    zw = z_where.detach().reshape(-1, 4)
    _, ey = window_extents(zw[:, 1], zw[:, 3], glimpse_size, height)
    _, ex = window_extents(zw[:, 0], zw[:, 2], glimpse_size, width)
    return (_ladder_size(ey, height) * _ladder_size(ex, width)).view(B, N).sum(1)


def composite_windowed(y_att, alpha_att_hat, z_depth, z_where, height, width, n_cells=None):
    """Same result as composite_dense (within float rounding) without full-resolution glimpses.

    y_att (B*N,3,g,g), alpha_att_hat (B*N,1,g,g), z_depth (B,N,1), z_where (B,N,4)
    -> fg (B,3,H,W), alpha_map (B,1,H,W). ``n_cells`` (default N): the cells of the softmax,
    when the N given are a subset of the grid and the others draw nothing (logit 0 everywhere).

    Each cell is rendered inside its own window (its box's pixel range, rounded up to
    WINDOW_LADDER); cells with equal window shapes share one grid_sample call. Per-pixel sums over
    the cells run as index_add into a flat (B*H*W) canvas.
    """
    B, N = z_where.shape[:2]
    M = B * N
    g = y_att.shape[-1]
    HW = height * width
    dev, dtype = z_where.device, z_where.dtype
    zw = z_where.reshape(M, 4)
    depth_factor = 100.0 * torch.sigmoid(-z_depth.reshape(M, 1))  # importance = alpha * this
    glimpse = torch.cat((y_att, alpha_att_hat), dim=1)  # (M, 4, g, g)
    inv_sx, inv_sy = 1 / (zw[:, 0] + _EPS_INV), 1 / (zw[:, 1] + _EPS_INV)
    off_x, off_y = -zw[:, 2] / (zw[:, 0] + _EPS_INV), -zw[:, 3] / (zw[:, 1] + _EPS_INV)
    lin_x = torch.linspace(-1, 1, width, device=dev, dtype=dtype)  # affine_grid's base grid
    lin_y = torch.linspace(-1, 1, height, device=dev, dtype=dtype)

    with torch.no_grad():  # window placement is piecewise constant in z_where: no gradient
        zd = zw.detach()
        lo_y, ext_y = window_extents(zd[:, 1], zd[:, 3], g, height)
        lo_x, ext_x = window_extents(zd[:, 0], zd[:, 2], g, width)
        size_y, size_x = _ladder_size(ext_y, height), _ladder_size(ext_x, width)
        stride = max(WINDOW_LADDER) + 1
        keys = size_y * stride + size_x
        # cells sorted by window shape: each group is then a slice, and one gather (and one
        # backward scatter) serves all groups, instead of a full-size zero tensor per group
        order = torch.argsort(keys, stable=True)
        group_keys, counts = torch.unique_consecutive(keys[order], return_counts=True)
        group_keys, counts = group_keys.tolist(), counts.tolist()
        lo_x, lo_y = lo_x[order], lo_y[order]
        batch_of = torch.div(order, N, rounding_mode="floor")

    per_cell = torch.stack((inv_sx, inv_sy, off_x, off_y, depth_factor[:, 0]), dim=1)[order]
    splits = zip(
        group_keys,
        glimpse[order].split(counts),
        per_cell.split(counts),
        lo_x.split(counts),
        lo_y.split(counts),
        batch_of.split(counts),
        strict=True,
    )
    rendered, indices = [], []
    for key, glimpse_g, cell_g, x0, y0, b_g in splits:
        Sy, Sx = divmod(key, stride)
        m = glimpse_g.shape[0]
        with torch.no_grad():
            x0 = x0.clamp(0, width - Sx)
            y0 = y0.clamp(0, height - Sy)
            cols = x0[:, None] + torch.arange(Sx, device=dev)  # (m, Sx)
            rows = y0[:, None] + torch.arange(Sy, device=dev)  # (m, Sy)
            flat = rows[:, :, None] * width + cols[:, None, :] + (b_g * HW)[:, None, None]
        # sampling positions inside the glimpse, as the reference's inverse theta maps them
        vx = lin_x[cols] * cell_g[:, 0:1] + cell_g[:, 2:3]  # (m, Sx)
        vy = lin_y[rows] * cell_g[:, 1:2] + cell_g[:, 3:4]  # (m, Sy)
        grid = torch.stack((vx[:, None, :].expand(m, Sy, Sx), vy[:, :, None].expand(m, Sy, Sx)), -1)
        out = F.grid_sample(glimpse_g, grid, align_corners=True)  # (m, 4, Sy, Sx)
        out = torch.cat((out, out[:, 3:] * cell_g[:, 4, None, None, None]), dim=1)
        rendered.append(out.permute(0, 2, 3, 1).reshape(m * Sy * Sx, 5))
        indices.append(flat.reshape(-1))
    rendered = torch.cat(rendered)  # (P, 5): y_att (3), alpha, importance per window pixel
    index = torch.cat(indices)  # (P,) into the flat (B*H*W) canvas
    importance = rendered[:, 4]

    with torch.no_grad():  # the softmax is shift invariant: the shift needs no gradient
        # per-pixel max over all N logits; cells not covering a pixel have logit 0
        shift = importance.new_zeros(B * HW)
        shift.scatter_reduce_(0, index, importance.detach(), reduce="amax", include_self=True)
        shift_win = shift[index]
        base = torch.exp(-shift)  # weight of a logit-0 cell, (B*H*W,)
        base_win = torch.exp(-shift_win)
    weight = torch.exp(importance - shift_win)  # (P,)
    # weight minus the weight of a logit-0 cell; expm1 keeps small logits exact, and the clamp keeps
    # the unused branch finite (a where() over an inf branch would give NaN gradients)
    excess = torch.where(
        importance > 1.0, weight - base_win, base_win * torch.expm1(importance.clamp(max=1.0))
    )
    denom = ((n_cells or N) * base).index_add(0, index, excess)  # (B*H*W,)
    numer = importance.new_zeros(B * HW, 4).index_add(0, index, rendered[:, :4] * weight[:, None])
    out = (numer / denom[:, None]).view(B, height, width, 4).permute(0, 3, 1, 2)
    return out[:, :3], out[:, 3:]
