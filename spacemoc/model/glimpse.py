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


def _window(scale, centre, glimpse_size, n_pixels):
    """Pixel window [start, start + S) covering every pixel a box's rendering can be non-zero at.

    With align_corners=True, pixel j sits at u = -1 + 2j/(n-1) and samples the glimpse at
    v = (u - t)/s; bilinear sampling with zero padding is non-zero only for v inside
    (-1 - 2/(g-1), 1 + 2/(g-1)). One pixel of slack on each side absorbs rounding.
    Returns (start (M,) long, S int); S is the largest extent in the batch, at most n_pixels.
    """
    reach = scale * (1.0 + 2.0 / (glimpse_size - 1)) + _EPS_INV
    half = (n_pixels - 1) / 2.0
    lo = torch.floor((centre - reach + 1.0) * half) - 1
    hi = torch.ceil((centre + reach + 1.0) * half) + 1
    extent = int((hi - lo).max().item()) + 1 if lo.numel() else 1
    size = max(1, min(extent, n_pixels))
    start = lo.clamp(0, n_pixels - size).long()
    return start, size


def window_sizes(
    z_where: torch.Tensor, glimpse_size: int, height: int, width: int
) -> tuple[int, int]:
    """Window height and width composite_windowed would use for this z_where (B, N, 4)."""
    zw = z_where.detach().reshape(-1, 4)
    _, sy = _window(zw[:, 1], zw[:, 3], glimpse_size, height)
    _, sx = _window(zw[:, 0], zw[:, 2], glimpse_size, width)
    return sy, sx


def composite_windowed(y_att, alpha_att_hat, z_depth, z_where, height, width):
    """Same result as composite_dense (within float rounding) without full-resolution glimpses.

    y_att (B*N,3,g,g), alpha_att_hat (B*N,1,g,g), z_depth (B,N,1), z_where (B,N,4)
    -> fg (B,3,H,W), alpha_map (B,1,H,W).
    """
    B, N = z_where.shape[:2]
    M = B * N
    g = y_att.shape[-1]
    zw = z_where.reshape(M, 4)
    with torch.no_grad():  # window placement is piecewise constant in z_where: no gradient
        x0, Sx = _window(zw[:, 0].detach(), zw[:, 2].detach(), g, width)
        y0, Sy = _window(zw[:, 1].detach(), zw[:, 3].detach(), g, height)
        cols = x0[:, None] + torch.arange(Sx, device=zw.device)  # (M, Sx) pixel columns
        rows = y0[:, None] + torch.arange(Sy, device=zw.device)  # (M, Sy) pixel rows
        # the exact base-grid coordinates affine_grid uses for the full image
        u = torch.linspace(-1, 1, width, device=zw.device, dtype=zw.dtype)[cols]
        w = torch.linspace(-1, 1, height, device=zw.device, dtype=zw.dtype)[rows]
        flat_index = (rows[:, :, None] * width + cols[:, None, :]).view(B, N * Sy * Sx)
    # sampling positions inside the glimpse, as the reference's inverse theta maps them
    inv_sx, inv_sy = 1 / (zw[:, 0:1] + _EPS_INV), 1 / (zw[:, 1:2] + _EPS_INV)
    vx = u * inv_sx + (-zw[:, 2:3] / (zw[:, 0:1] + _EPS_INV))  # (M, Sx)
    vy = w * inv_sy + (-zw[:, 3:4] / (zw[:, 1:2] + _EPS_INV))  # (M, Sy)
    grid = torch.stack((vx[:, None, :].expand(M, Sy, Sx), vy[:, :, None].expand(M, Sy, Sx)), dim=-1)
    rendered = F.grid_sample(torch.cat((y_att, alpha_att_hat), dim=1), grid, align_corners=True)
    rendered = rendered.view(B, N, 4, Sy * Sx)
    y_win, alpha_win = rendered[:, :, :3], rendered[:, :, 3]  # (B,N,3,S*S), (B,N,S*S)
    # importance = alpha_att_hat * 100 * sigmoid(-depth); rendering is linear, so scale after it
    importance = alpha_win * (100.0 * torch.sigmoid(-z_depth.reshape(B, N, 1)))
    importance = importance.reshape(B, N * Sy * Sx)

    with torch.no_grad():  # the softmax is shift invariant: the shift needs no gradient
        # per-pixel max over all N logits; cells not covering a pixel have logit 0
        shift = importance.new_zeros(B, height * width)
        shift.scatter_reduce_(1, flat_index, importance.detach(), reduce="amax", include_self=True)
        shift_win = shift.gather(1, flat_index)
        base = torch.exp(-shift)  # weight of a logit-0 cell, (B, H*W)
        base_win = torch.exp(-shift_win)
    weight = torch.exp(importance - shift_win)  # (B, N*S*S)
    # weight minus the weight of a logit-0 cell; expm1 keeps small logits exact, and the clamp keeps
    # the unused branch finite (a where() over an inf branch would give NaN gradients)
    excess = torch.where(
        importance > 1.0, weight - base_win, base_win * torch.expm1(importance.clamp(max=1.0))
    )
    denom = (N * base).scatter_add(1, flat_index, excess)  # (B, H*W)
    numer_y = importance.new_zeros(B, 3, height * width).scatter_add(
        2,
        flat_index[:, None].expand(B, 3, -1),
        (y_win * weight.view(B, N, 1, Sy * Sx)).transpose(1, 2).reshape(B, 3, N * Sy * Sx),
    )
    numer_alpha = importance.new_zeros(B, height * width).scatter_add(
        1, flat_index, alpha_win.reshape(B, -1) * weight
    )
    fg = (numer_y / denom[:, None]).view(B, 3, height, width)
    alpha_map = (numer_alpha / denom).view(B, 1, height, width)
    return fg, alpha_map
