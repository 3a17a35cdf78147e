"""SPACE background: K GENESIS-style components with stick-breaking masks (spec §2.3).

Names follow the reference state-dict layout (spec §2.10).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from .config import SpaceConfig
from .fg import normal_kl

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _conv_bn_elu(c_in, c_out, k=3, s=2, p=1):
    return [nn.Conv2d(c_in, c_out, k, s, p), nn.BatchNorm2d(c_out), nn.ELU(inplace=True)]


def _conv_celu_gn(c_in, c_out, k, p, groups):
    return [nn.Conv2d(c_in, c_out, k, 1, p), nn.CELU(inplace=True), nn.GroupNorm(groups, c_out)]


def _upsample(c_in, c_out, factor, groups):
    """1x1 conv to factor^2 * c_out channels, pixel shuffle, CELU, GN, then a 3x3 conv block."""
    return [
        nn.Conv2d(c_in, c_out * factor * factor, 1),
        nn.PixelShuffle(factor),
        nn.CELU(inplace=True),
        nn.GroupNorm(groups, c_out),
        *_conv_celu_gn(c_out, c_out, 3, 1, groups),
    ]


class ImageEncoderBg(nn.Module):
    """(B, 3, 128, 128) -> (B, img_enc_dim_bg)."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        embed = cfg.img_size // 16
        self.enc = nn.Sequential(
            *_conv_bn_elu(3, 64),
            *_conv_bn_elu(64, 64),
            *_conv_bn_elu(64, 64),
            *_conv_bn_elu(64, 64),
            nn.Flatten(),
            nn.Linear(64 * embed * embed, cfg.img_enc_dim_bg),
            nn.ELU(inplace=True),
        )

    def forward(self, x):
        return self.enc(x)


class PredictMask(nn.Module):
    """RNN state (B, H) -> Normal parameters of z_mask, each (B, D)."""

    def __init__(self, hidden: int, z_dim: int):
        super().__init__()
        self.fc = nn.Linear(hidden, 2 * z_dim)

    def forward(self, h):
        loc, scale = self.fc(h).chunk(2, -1)
        return loc, F.softplus(scale) + 1e-4


class PredictComp(nn.Module):
    """z_mask (B, D) -> prior Normal parameters of z_comp."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        h = cfg.predict_comp_hidden_dim
        self.mlp = nn.Sequential(
            nn.Linear(cfg.z_mask_dim, h),
            nn.ELU(),
            nn.Linear(h, h),
            nn.ELU(),
            nn.Linear(h, 2 * cfg.z_comp_dim),
        )

    def forward(self, z_mask):
        loc, scale = self.mlp(z_mask).chunk(2, -1)
        return loc, F.softplus(scale) + 1e-4


class MaskDecoder(nn.Module):
    """z_mask (B, D) -> mask logits' sigmoid (B, 1, 128, 128); spatial 1 -> 4 -> 8 -> 32 -> 128."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.dec = nn.Sequential(
            *_conv_celu_gn(cfg.z_mask_dim, 256, 1, 0, 16),
            *_upsample(256, 256, 4, 16),
            *_upsample(256, 128, 2, 16),
            *_upsample(128, 64, 4, 8),
            *_upsample(64, 16, 4, 4),
            *_conv_celu_gn(16, 16, 3, 1, 4),
            nn.Conv2d(16, 1, 3, 1, 1),
        )

    def forward(self, z_mask):
        return torch.sigmoid(self.dec(z_mask.view(z_mask.shape[0], -1, 1, 1)))


class CompEncoder(nn.Module):
    """cat(log mask, image) (B, 4, 128, 128) -> z_comp posterior (loc, scale)."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        embed = cfg.img_size // 16
        self.enc = nn.Sequential(
            *_conv_bn_elu(4, 32),
            *_conv_bn_elu(32, 32),
            *_conv_bn_elu(32, 64),
            *_conv_bn_elu(64, 64),
            nn.Flatten(),
            nn.Linear(64 * embed * embed, 2 * cfg.z_comp_dim),
        )

    def forward(self, x):
        loc, scale = self.enc(x).chunk(2, -1)
        return loc, F.softplus(scale) + 1e-4


class CompDecoder(nn.Module):
    """Spatial-broadcast decoder (K > 1): z_comp (B, L) -> component (B, 3, 128, 128).

    The reference broadcasts z_comp to (L + 2, 136, 136) with x, y coordinate channels and runs four
    valid 3x3 convs. The first conv of a broadcast input is a per-sample constant (the kernel-summed
    weights times z) plus the conv of the coordinate channels, which is the same for every sample:
    computing it that way gives the same numbers (up to float rounding) at a fraction of the cost.
    """

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.size = cfg.img_size + 8
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.z_comp_dim + 2, 32, 3, 1),
            nn.BatchNorm2d(32),
            nn.ELU(inplace=True),
            *_conv_bn_elu(32, 32, 3, 1, 0),
            *_conv_bn_elu(32, 32, 3, 1, 0),
            *_conv_bn_elu(32, 32, 3, 1, 0),
            nn.Conv2d(32, 3, 1, 1),
        )

    def coords(self, device, dtype):
        """(1, 2, S, S): channel 0 = x (varies along width), channel 1 = y, both linspace(-1, 1)."""
        lin = torch.linspace(-1, 1, self.size, device=device, dtype=dtype)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        return torch.stack((xx, yy), dim=0)[None]

    def forward(self, z_comp):
        first = self.decoder[0]
        L = z_comp.shape[1]
        w_z, w_xy = first.weight[:, :L], first.weight[:, L:]
        coord_part = F.conv2d(
            self.coords(z_comp.device, z_comp.dtype), w_xy, first.bias
        )  # (1,32,S-2,S-2)
        z_part = z_comp @ w_z.sum(dim=(2, 3)).t()  # (B, 32)
        h = coord_part + z_part[:, :, None, None]
        for layer in self.decoder[1:]:
            h = layer(h)
        return torch.sigmoid(h)


class CompDecoderStrong(nn.Module):
    """Pixel-shuffle decoder used when K = 1: z_comp (B, L) -> (B, 3, 128, 128)."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.dec = nn.Sequential(
            *_conv_celu_gn(cfg.z_comp_dim, 256, 1, 0, 16),
            *_upsample(256, 256, 4, 16),
            *_upsample(256, 128, 4, 16),
            *_upsample(128, 64, 2, 8),
            *_upsample(64, 16, 4, 4),
            *_conv_celu_gn(16, 16, 3, 1, 4),
            nn.Conv2d(16, 3, 3, 1, 1),
        )

    def forward(self, z_comp):
        return torch.sigmoid(self.dec(z_comp.view(z_comp.shape[0], -1, 1, 1)))


class SpaceBg(nn.Module):
    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.cfg = cfg
        self.image_enc = ImageEncoderBg(cfg)
        self.rnn_mask = nn.LSTMCell(cfg.z_mask_dim + cfg.img_enc_dim_bg, cfg.rnn_mask_hidden_dim)
        self.rnn_mask_h = nn.Parameter(torch.zeros(cfg.rnn_mask_hidden_dim))
        self.rnn_mask_c = nn.Parameter(torch.zeros(cfg.rnn_mask_hidden_dim))
        self.z_mask_0 = nn.Parameter(torch.zeros(cfg.z_mask_dim))
        self.predict_mask = PredictMask(cfg.rnn_mask_hidden_dim, cfg.z_mask_dim)
        self.mask_decoder = MaskDecoder(cfg)
        self.comp_encoder = CompEncoder(cfg)
        self.comp_decoder = CompDecoder(cfg) if cfg.K > 1 else CompDecoderStrong(cfg)
        self.rnn_mask_prior = nn.LSTMCell(cfg.z_mask_dim, cfg.rnn_mask_prior_hidden_dim)
        self.rnn_mask_h_prior = nn.Parameter(torch.zeros(cfg.rnn_mask_prior_hidden_dim))
        self.rnn_mask_c_prior = nn.Parameter(torch.zeros(cfg.rnn_mask_prior_hidden_dim))
        self.predict_mask_prior = PredictMask(cfg.rnn_mask_prior_hidden_dim, cfg.z_mask_dim)
        self.predict_comp_prior = PredictComp(cfg)

    @staticmethod
    def stick_breaking(masks):
        """(B, K, 1, H, W) in (0, 1) -> masks summing to 1 over K; the last takes the remainder."""
        remained = torch.ones_like(masks[:, 0])
        out = []
        K = masks.shape[1]
        for k in range(K):
            mask = masks[:, k] * remained if k < K - 1 else remained
            remained = remained - mask
            out.append(mask)
        return torch.stack(out, dim=1)

    def forward(self, x):
        """x (B, 3, H, W) -> bg_likelihood (B,3,H,W), bg (B,3,H,W), kl_bg (B,), log."""
        cfg = self.cfg
        B, _, H, W = x.shape
        K = cfg.K
        x = x[:, :3]
        x_enc = self.image_enc(x)

        # posterior over mask latents: autoregressive LSTM
        z_mask = self.z_mask_0.expand(B, cfg.z_mask_dim)
        h = self.rnn_mask_h.expand(B, cfg.rnn_mask_hidden_dim)
        c = self.rnn_mask_c.expand(B, cfg.rnn_mask_hidden_dim)
        z_masks, mask_posts = [], []
        for _ in range(K):
            h, c = self.rnn_mask(torch.cat((z_mask, x_enc), dim=1), (h, c))
            loc, scale = self.predict_mask(h)
            z_mask = Normal(loc, scale, validate_args=False).rsample()
            z_masks.append(z_mask)
            mask_posts.append((loc, scale))
        # the recurrence only needs the latents, so all K masks decode in one batched call
        masks = self.mask_decoder(torch.stack(z_masks, dim=1).view(B * K, -1))
        masks = self.stick_breaking(masks.view(B, K, 1, H, W))  # (B, K, 1, H, W)

        log_masks = torch.log(masks + 1e-5)
        comp_in = torch.cat((log_masks, x[:, None].expand(B, K, 3, H, W)), dim=2).view(
            B * K, 4, H, W
        )
        comp_loc, comp_scale = self.comp_encoder(comp_in)  # (B*K, L)
        z_comp = Normal(comp_loc, comp_scale, validate_args=False).rsample()
        comps = self.comp_decoder(z_comp).view(B, K, 3, H, W)

        # mixture likelihood: logsumexp_k log N(x; comp_k, bg_sigma) + log mask_k
        comp_ll = (
            -((x[:, None] - comps) ** 2) / (2 * cfg.bg_sigma**2)
            - math.log(cfg.bg_sigma)
            - HALF_LOG_2PI
        )
        bg_likelihood = torch.logsumexp(comp_ll + log_masks, dim=1)
        bg = (comps * masks).sum(dim=1)

        # conditional priors, fed the posterior samples
        h = self.rnn_mask_h_prior.expand(B, cfg.rnn_mask_prior_hidden_dim)
        c = self.rnn_mask_c_prior.expand(B, cfg.rnn_mask_prior_hidden_dim)
        comp_loc, comp_scale = comp_loc.view(B, K, -1), comp_scale.view(B, K, -1)
        kl_bg = x.new_zeros(B)
        for k in range(K):
            p_loc, p_scale = self.predict_mask_prior(h)
            kl_bg = kl_bg + normal_kl(*mask_posts[k], p_loc, p_scale).sum(1)
            pc_loc, pc_scale = self.predict_comp_prior(z_masks[k])
            kl_bg = kl_bg + normal_kl(comp_loc[:, k], comp_scale[:, k], pc_loc, pc_scale).sum(1)
            h, c = self.rnn_mask_prior(z_masks[k], (h, c))

        log = {"comps": comps, "masks": masks, "bg": bg, "kl_bg": kl_bg}
        return bg_likelihood, bg, kl_bg, log
