"""SPACE foreground: G x G grid of cells with z_pres / z_where / z_depth / z_what (spec §2.2, §2.4).

Submodule and parameter names follow the reference state-dict layout exactly (spec §2.10), so
reference checkpoints load strictly. CELUs run in place: same numbers, one activation fewer kept
for backward per layer (the GroupNorm after it keeps the same tensor).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.utils.checkpoint import checkpoint

from .annealing import linear_annealing
from .config import COMPOSITING_MODES, SpaceConfig
from .glimpse import composite_dense, composite_windowed, extract_glimpses, window_pixels

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# rendered window pixels per recomputed compositing chunk (~60 bytes each while recomputed)
RECOMPUTE_WINDOW_PIXELS = 3_000_000
# glimpses per recomputed chunk of the glimpse encoder / decoder. Smaller chunks keep a chunk's
# activations in cache: a training step (batch 2 x T=4, 2 threads) took 0.44 s/frame with 512,
# 0.34-0.35 with 192-384, 0.37 with 64, 0.50 with 1024.
RECOMPUTE_CELLS = 256


def _block(c_in, c_out, k, s, p, groups):
    return [nn.Conv2d(c_in, c_out, k, s, p), nn.CELU(inplace=True), nn.GroupNorm(groups, c_out)]


def _cells(t: torch.Tensor) -> torch.Tensor:
    """(B, D, G, G) -> (B, G*G, D), cells row-major."""
    B, D, G, _ = t.shape
    return t.permute(0, 2, 3, 1).reshape(B, G * G, D)


def normal_kl(q_loc, q_scale, p_loc, p_scale):
    """KL(N(q) || N(p)) elementwise, the same formula torch.distributions uses."""
    var_ratio = (q_scale / p_scale) ** 2
    t1 = ((q_loc - p_loc) / p_scale) ** 2
    return 0.5 * (var_ratio + t1 - 1 - torch.log(var_ratio))


def bernoulli_kl(q_prob, p_prob, eps=1e-15):
    """KL(Bern(q) || Bern(p)) with the reference's eps inside the logs."""
    return q_prob * (torch.log(q_prob + eps) - torch.log(p_prob + eps)) + (1 - q_prob) * (
        torch.log(1 - q_prob + eps) - torch.log(1 - p_prob + eps)
    )


def cells_to_decode(z_pres_logits: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` cells of each image whose glimpses a training step decodes: (B, N) presence
    logits -> (B, count) cell indices. Three quarters are the most present cells (every object
    of a trained model: the shipped Pong and Boxing detectors have at most 10 cells above 0.5 in
    64 frames); the rest are drawn uniformly from the other cells (torch's RNG), so that every
    cell is now and then rendered and its presence learns from the reconstruction."""
    explore = count // 4
    top = z_pres_logits.topk(count - explore, dim=1).indices  # (B, count - explore)
    if explore == 0:
        return top
    draw = torch.rand_like(z_pres_logits).scatter(1, top, -1.0)  # the top cells never drawn again
    return torch.cat((top, draw.topk(explore, dim=1).indices), dim=1)


class ImgEncoderFg(nn.Module):
    """(B, 3, 128, 128) -> per-cell posterior parameters on the G x G grid."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.G = cfg.G
        s4 = 2 if cfg.G == 4 else 1
        s5 = 2 if cfg.G in (4, 8) else 1
        e = cfg.img_enc_dim_fg
        self.enc = nn.Sequential(
            *_block(3, 16, 4, 2, 1, 4),
            *_block(16, 32, 4, 2, 1, 8),
            *_block(32, 64, 4, 2, 1, 8),
            *_block(64, 128, 3, s4, 1, 16),
            *_block(128, 256, 3, s5, 1, 32),
            *_block(256, e, 1, 1, 0, 16),
        )
        self.enc_lat = nn.Sequential(*_block(e, e, 3, 1, 1, 16), *_block(e, e, 3, 1, 1, 16))
        self.enc_cat = nn.Sequential(*_block(2 * e, 128, 3, 1, 1, 16))
        self.z_scale_net = nn.Conv2d(128, 2 * 2, 1)
        self.z_shift_net = nn.Conv2d(128, 2 * 2, 1)
        self.motion_input = cfg.motion_input
        self.z_pres_net = nn.Conv2d(128 + int(cfg.motion_input), 1, 1)
        self.z_depth_net = nn.Conv2d(128, 2 * 1, 1)
        if cfg.motion_input:
            k = cfg.img_size // cfg.G
            self.motion_pool = nn.AvgPool2d(k + 2, stride=k, padding=1, count_include_pad=False)
        rows, cols = torch.meshgrid(torch.arange(cfg.G), torch.arange(cfg.G), indexing="ij")
        self.register_buffer("offset", torch.stack((cols, rows), dim=0).float())  # (2, G, G): x, y

    def forward(self, x):
        """x (B, 3[+1], H, W) -> dict of (B, G*G, D) posterior parameters."""
        img_enc = self.enc(x[:, :3])
        cat_enc = self.enc_cat(torch.cat((img_enc, self.enc_lat(img_enc)), dim=1))  # (B, 128, G, G)
        pres_in = cat_enc
        if self.motion_input:
            pres_in = torch.cat((cat_enc, self.motion_pool(x[:, 3:4])), dim=1)
        z_depth_loc, z_depth_scale = self.z_depth_net(cat_enc).chunk(2, 1)
        z_scale_loc, z_scale_scale = self.z_scale_net(cat_enc).chunk(2, 1)
        z_shift_loc, z_shift_scale = self.z_shift_net(cat_enc).chunk(2, 1)
        return {
            "z_pres_logits": _cells(8.8 * torch.tanh(self.z_pres_net(pres_in))),
            "z_depth_loc": _cells(z_depth_loc),
            "z_depth_scale": F.softplus(_cells(z_depth_scale)),
            "z_scale_loc": _cells(z_scale_loc),
            "z_scale_scale": F.softplus(_cells(z_scale_scale)) + 1e-15,
            "z_shift_loc": _cells(z_shift_loc),
            "z_shift_scale": F.softplus(_cells(z_shift_scale)),
        }

    def shift_to_centre(self, z_shift_raw):
        """pre-tanh shift (B, N, 2) -> box centre in [-1, 1], within a cell of the cell centre."""
        offset = self.offset.permute(1, 2, 0).reshape(self.G * self.G, 2)
        return (2.0 / self.G) * (offset + 0.5 + torch.tanh(z_shift_raw)) - 1


class ZWhatEnc(nn.Module):
    """(M, 3, 32, 32) glimpses -> z_what posterior (loc, scale), each (M, D)."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.enc_cnn = nn.Sequential(
            *_block(3, 16, 3, 1, 1, 4),
            *_block(16, 32, 4, 2, 1, 8),
            *_block(32, 32, 3, 1, 1, 4),
            *_block(32, 64, 4, 2, 1, 8),
            *_block(64, 128, 4, 2, 1, 8),
            *_block(128, 256, 4, 1, 0, 16),
        )
        self.enc_what = nn.Linear(256, 2 * cfg.z_what_dim)

    def forward(self, glimpses):
        loc, scale = self.enc_what(self.enc_cnn(glimpses).flatten(1)).chunk(2, -1)
        return loc, F.softplus(scale)

    def mean(self, glimpses):
        return self.enc_what(self.enc_cnn(glimpses).flatten(1)).chunk(2, -1)[0]


class GlimpseDec(nn.Module):
    """z_what (M, D) -> o_att (M, 3, 32, 32) and alpha_att (M, 1, 32, 32), both in (0, 1)."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        layers = _block(cfg.z_what_dim, 256, 1, 1, 0, 16)
        c_prev = 256
        for c, groups in ((128, 16), (128, 16), (64, 8), (32, 8), (16, 4)):
            layers += [
                nn.Conv2d(c_prev, 4 * c, 1),
                nn.PixelShuffle(2),
                nn.CELU(inplace=True),
                nn.GroupNorm(groups, c),
                *_block(c, c, 3, 1, 1, groups),
            ]
            c_prev = c
        self.dec = nn.Sequential(*layers)
        self.dec_o = nn.Conv2d(16, 3, 3, 1, 1)
        self.dec_alpha = nn.Conv2d(16, 1, 3, 1, 1)

    def forward(self, z_what):
        h = self.dec(z_what.view(z_what.shape[0], -1, 1, 1))
        # both 3x3 heads as one conv: one pass over the 32x32 maps instead of two
        weight = torch.cat((self.dec_o.weight, self.dec_alpha.weight))
        bias = torch.cat((self.dec_o.bias, self.dec_alpha.bias))
        out = torch.sigmoid(F.conv2d(h, weight, bias, padding=1))
        return out[:, :3], out[:, 3:]


class SpaceFg(nn.Module):
    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.cfg = cfg
        self.img_encoder = ImgEncoderFg(cfg)
        self.z_what_net = ZWhatEnc(cfg)
        self.glimpse_dec = GlimpseDec(cfg)
        # Placeholder of the removed boundary loss: frozen, unused, kept for checkpoint layout.
        self.boundary_filter = nn.Conv2d(1, 1, 32, bias=False)
        self.boundary_filter.weight.requires_grad_(False)
        self.register_buffer("tau", torch.tensor(cfg.tau_start_value))
        self.register_buffer("prior_z_pres_prob", torch.tensor(cfg.z_pres_start_value))
        self.register_buffer("prior_what_mean", torch.zeros(1))
        self.register_buffer("prior_what_std", torch.ones(1))
        self.register_buffer("prior_depth_mean", torch.zeros(1))
        self.register_buffer("prior_depth_std", torch.ones(1))
        # Layout placeholders of the reference: the scale/shift priors actually used are the
        # annealed plain attributes below (spec §2.6), not these buffers.
        self.register_buffer(
            "prior_scale_mean", torch.full((2, 1, 1), cfg.z_scale_mean_start_value)
        )
        self.register_buffer("prior_scale_std", torch.full((2, 1, 1), cfg.z_scale_std_value))
        self.register_buffer("prior_shift_mean", torch.zeros(2, 1, 1))
        self.register_buffer("prior_shift_std", torch.ones(2, 1, 1))
        self.prior_scale_mean_value = cfg.z_scale_mean_start_value
        # Runtime switch (not a hyperparameter): recompute the glimpse encoder, decoder and the
        # windowed compositing in backward, in chunks. Same numbers; a training step needs about
        # half the memory and, on CPU, is faster too (cache-sized chunks: RECOMPUTE_CELLS). Only
        # acts when gradients are recorded.
        self.recompute = True

    def _run(self, fn, x):
        """fn(x) over the first dim of x, in chunks of RECOMPUTE_CELLS recomputed during backward
        when ``recompute`` is on: the per-cell networks hold most of a training step's memory, and
        chunks bound the activations alive while one is recomputed. Outputs are the same."""
        if not (self.recompute and torch.is_grad_enabled() and x.requires_grad):
            return fn(x)
        outs = [checkpoint(fn, part, use_reentrant=False) for part in x.split(RECOMPUTE_CELLS)]
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))
        return torch.cat(outs)

    def _composite_windowed(self, y_att, alpha_att_hat, z_depth, z_where, H, W, n_cells):
        """composite_windowed; with ``recompute``, over chunks of whole images, each recomputed in
        backward (images composite independently, so chunks give the same result). A chunk holds
        at most RECOMPUTE_WINDOW_PIXELS rendered pixels: small boxes (a trained model) composite
        the whole batch in one call, the large boxes of a fresh model a few images at a time."""
        if not (self.recompute and torch.is_grad_enabled() and y_att.requires_grad):
            return composite_windowed(y_att, alpha_att_hat, z_depth, z_where, H, W, n_cells)
        B, N = z_where.shape[:2]
        pixels = window_pixels(z_where, y_att.shape[-1], H, W).tolist()
        bounds, start, total = [], 0, 0
        for i, p in enumerate(pixels):
            if i > start and total + p > RECOMPUTE_WINDOW_PIXELS:
                bounds.append((start, i))
                start, total = i, 0
            total += p
        bounds.append((start, B))
        parts = [
            checkpoint(
                composite_windowed,
                y_att[a * N : b * N],
                alpha_att_hat[a * N : b * N],
                z_depth[a:b],
                z_where[a:b],
                H,
                W,
                n_cells,
                use_reentrant=False,
            )
            for a, b in bounds
        ]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def anneal(self, step: float) -> None:
        c = self.cfg
        with torch.no_grad():
            self.prior_z_pres_prob.fill_(
                linear_annealing(
                    step,
                    c.z_pres_start_step,
                    c.z_pres_end_step,
                    c.z_pres_start_value,
                    c.z_pres_end_value,
                )
            )
            self.tau.fill_(
                linear_annealing(
                    step, c.tau_start_step, c.tau_end_step, c.tau_start_value, c.tau_end_value
                )
            )
        self.prior_scale_mean_value = linear_annealing(
            step,
            c.z_scale_mean_start_step,
            c.z_scale_mean_end_step,
            c.z_scale_mean_start_value,
            c.z_scale_mean_end_value,
        )

    def forward(self, x, global_step, compositing=None):
        """x (B, 3, H, W) -> fg_likelihood (B,3,H,W), fg, alpha_map (B,1,H,W), kl (B,), log."""
        cfg = self.cfg
        B, _, H, W = x.shape
        N = cfg.num_cells
        self.anneal(global_step)
        post = self.img_encoder(x)

        # reparameterised samples in the reference's order: z_pres, depth, scale, shift, what
        z_pres_logits = post["z_pres_logits"]  # (B, N, 1)
        z_pres_y = LogitRelaxedBernoulli(
            self.tau, logits=z_pres_logits, validate_args=False
        ).rsample()
        z_pres = torch.sigmoid(z_pres_y)
        z_depth = Normal(post["z_depth_loc"], post["z_depth_scale"], validate_args=False).rsample()
        z_scale_raw = Normal(
            post["z_scale_loc"], post["z_scale_scale"], validate_args=False
        ).rsample()
        z_shift_raw = Normal(
            post["z_shift_loc"], post["z_shift_scale"], validate_args=False
        ).rsample()
        z_scale = torch.sigmoid(z_scale_raw)
        z_shift = self.img_encoder.shift_to_centre(z_shift_raw)
        z_where = torch.cat((z_scale, z_shift), dim=-1)  # (B, N, 4)

        mode = compositing or cfg.compositing
        if mode not in COMPOSITING_MODES:
            raise ValueError(f"compositing must be one of {COMPOSITING_MODES}, got {mode!r}")
        # the cells whose glimpses are encoded and decoded: all, or decode_cells of each image
        cells = None
        if 0 < cfg.decode_cells < N:
            if mode == "dense":
                raise ValueError("decode_cells needs windowed compositing, not dense")
            cells = cells_to_decode(z_pres_logits.detach().squeeze(-1), cfg.decode_cells)  # (B,K)
        K = N if cells is None else cells.shape[1]

        def decoded(t):  # (B, N, C) -> (B, K, C)
            return t if cells is None else t.gather(1, cells[..., None].expand(-1, -1, t.shape[-1]))

        z_where_k, z_depth_k = decoded(z_where), decoded(z_depth)
        glimpses = extract_glimpses(x[:, :3], z_where_k, cfg.glimpse_size)  # (B*K, 3, g, g)
        z_what_loc, z_what_scale = self._run(self.z_what_net, glimpses)  # (B*K, D)
        z_what_k = Normal(z_what_loc, z_what_scale, validate_args=False).rsample()
        o_att, alpha_att = self._run(self.glimpse_dec, z_what_k)
        alpha_att_hat = alpha_att * decoded(z_pres).view(B * K, 1, 1, 1)
        y_att = alpha_att_hat * o_att

        if mode == "dense":
            fg, alpha_map, importance_norm = composite_dense(
                y_att, alpha_att_hat, z_depth, z_where, H, W
            )
        else:
            fg, alpha_map = self._composite_windowed(
                y_att, alpha_att_hat, z_depth_k, z_where_k, H, W, N
            )
            importance_norm = None

        # KLs, each (B, N, D) summed to (B,) (spec §2.4); the scale prior acts before the sigmoid
        z_pres_prob = torch.sigmoid(z_pres_logits)
        kl_z_pres = bernoulli_kl(z_pres_prob, self.prior_z_pres_prob)
        kl_z_depth = normal_kl(
            post["z_depth_loc"], post["z_depth_scale"], self.prior_depth_mean, self.prior_depth_std
        )
        kl_z_scale = normal_kl(
            post["z_scale_loc"],
            post["z_scale_scale"],
            self.prior_scale_mean_value,
            cfg.z_scale_std_value,
        )
        kl_z_shift = normal_kl(post["z_shift_loc"], post["z_shift_scale"], 0.0, 1.0)
        kl_z_what = normal_kl(  # the decoded cells': the others have no z_what posterior
            z_what_loc.view(B, K, -1),
            z_what_scale.view(B, K, -1),
            self.prior_what_mean,
            self.prior_what_std,
        )
        kl_z_pres, kl_z_depth, kl_z_scale, kl_z_shift, kl_z_what = (
            k.flatten(1).sum(1) for k in (kl_z_pres, kl_z_depth, kl_z_scale, kl_z_shift, kl_z_what)
        )
        kl_z_where = kl_z_scale + kl_z_shift
        kl = kl_z_what + kl_z_where + kl_z_pres + kl_z_depth

        # log N(x; fg, fg_sigma), the same formula as torch.distributions.Normal.log_prob
        fg_likelihood = (
            -((x[:, :3] - fg) ** 2) / (2 * cfg.fg_sigma**2) - math.log(cfg.fg_sigma) - HALF_LOG_2PI
        )

        z_what = z_what_k.view(B, K, -1)
        if cells is not None:  # zero for the cells not decoded
            z_what = z_what.new_zeros(B, N, z_what.shape[-1]).scatter(
                1, cells[..., None].expand(-1, -1, z_what.shape[-1]), z_what
            )
        log = {
            "fg": fg,
            "z_what": z_what,
            "z_where": z_where,
            "z_where_pure": z_where,
            "z_pres": z_pres,
            "z_scale": z_scale,
            "z_shift": z_shift,
            "z_depth": z_depth,
            "z_pres_prob": z_pres_prob,
            "z_pres_prob_pure": z_pres_prob,
            "prior_z_pres_prob": self.prior_z_pres_prob.detach().clone().unsqueeze(0),
            # (B, K) the cells whose glimpses o_att / alpha_att(_hat) hold, (B*K, C, g, g)
            "decoded_cells": torch.arange(N, device=x.device).expand(B, N)
            if cells is None
            else cells,
            "o_att": o_att,
            "alpha_att_hat": alpha_att_hat,
            "alpha_att": alpha_att,
            "alpha_map": alpha_map,
            "alpha_map_pure": alpha_map,
            "kl_z_what": kl_z_what,
            "kl_z_pres": kl_z_pres,
            "kl_z_scale": kl_z_scale,
            "kl_z_shift": kl_z_shift,
            "kl_z_depth": kl_z_depth,
            "kl_z_where": kl_z_where,
        }
        if importance_norm is not None:
            log["importance_map_full_res_norm"] = importance_norm
        return fg_likelihood, fg, alpha_map, kl, log
