"""The student: a patch layer, one stride-2 convolution to the teacher's G x G cells and a few
3x3 convolutions there; each cell predicts the teacher's presence probability, box and z_what.
About 32 MFLOP per frame (the teacher's image encoder alone: 550)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from spacemoc.distill.config import StudentConfig
from spacemoc.models.readouts import check_infer_arguments

# How far (in cells) a box centre may lie from its cell's centre; the teacher's z_shift allows
# up to one cell.
MAX_CELL_OFFSET = 1.5


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of z_where boxes (..., 4) [sx, sy, cx, cy] pairwise along the last axis -> (...);
    IoU does not change with the axes' scales, so normalised coordinates do."""
    half_a, half_b = a[..., :2] / 2, b[..., :2] / 2
    centre_a, centre_b = (a[..., 2:] + 1) / 2, (b[..., 2:] + 1) / 2
    low = torch.maximum(centre_a - half_a, centre_b - half_b)
    high = torch.minimum(centre_a + half_a, centre_b + half_b)
    overlap = (high - low).clamp(min=0).prod(-1)
    union = a[..., :2].prod(-1) + b[..., :2].prod(-1) - overlap
    return overlap / union.clamp(min=1e-12)


def suppress_duplicates(
    prob: torch.Tensor, z_where: torch.Tensor, G: int, threshold: float, max_iou: float
) -> torch.Tensor:
    """prob (B,N) with 0 at each present cell whose box overlaps a stronger present cell among
    its 8 neighbours by IoU > ``max_iou`` (equal probabilities: the earlier cell stays)."""
    B = prob.shape[0]
    p = F.pad(prob.view(B, 1, G, G), (1, 1, 1, 1), value=-1.0)[:, 0]  # (B,G+2,G+2)
    w = F.pad(z_where.view(B, G, G, 4).permute(0, 3, 1, 2), (1, 1, 1, 1))  # (B,4,G+2,G+2)
    own_p, own_w = prob.view(B, G, G), z_where.view(B, G, G, 4)
    keep = torch.ones_like(own_p, dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if not (dy or dx):
                continue
            near_p = p[:, 1 + dy : 1 + dy + G, 1 + dx : 1 + dx + G]
            near_w = w[:, :, 1 + dy : 1 + dy + G, 1 + dx : 1 + dx + G].permute(0, 2, 3, 1)
            stronger = (near_p > own_p) | ((near_p == own_p) & (dy * G + dx < 0))
            same = box_iou(own_w, near_w) > max_iou
            keep &= ~((near_p > threshold) & stronger & same)
    return prob * keep.view(B, G * G)


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:  # 3x3, ReLU
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ReLU(inplace=True))


class Student(nn.Module):
    """images (B,3,128,128) in [0,1] -> per cell presence logit, z_where and z_what.

    Offers the teacher's ``infer`` (what the Detector and the latents stage call), so it drops in
    wherever a model does. Its boxes are the teacher's chosen readout (``box_readout``), learned
    directly: no glimpse is encoded or decoded.
    """

    def __init__(
        self,
        config: StudentConfig,
        *,
        game: str,
        labels,
        channel_order: str = "rgb",
        box_readout: str = "glimpse",
    ):
        super().__init__()
        self.config = config
        self.game = game
        self.labels = tuple(labels)
        self.channel_order = channel_order
        self.fixed_box_readout = box_readout  # the teacher's readout its boxes were learned from
        self.step = 0
        layers = [
            nn.Conv2d(3, config.patch_channels, config.patch, config.patch),  # patches
            nn.ReLU(inplace=True),
            _conv(config.patch_channels, config.width, 2),  # -> cells
        ]
        layers += [_conv(config.width, config.width, 1) for _ in range(config.cell_layers)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(config.width, 1 + 4 + config.z_what_dim, 1)
        G = config.G
        centres = (torch.arange(G, dtype=torch.float32) + 0.5) / G * 2 - 1
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_centre", torch.stack((cx, cy), -1).reshape(G * G, 2), False)

    @property
    def num_objects(self) -> int:
        return self.config.G**2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B,3,128,128) -> presence logits (B,N), z_where (B,N,4) [scale_x, scale_y,
        centre_x, centre_y] (centres in [-1, 1]), z_what (B,N,D); N = G*G, row-major cells."""
        out = self.head(self.body(x))  # (B,1+4+D,G,G)
        out = out.flatten(2).transpose(1, 2).float()  # (B,N,1+4+D)
        logit, scale, shift, z_what = out.split((1, 2, 2, self.config.z_what_dim), -1)
        centre = self.cell_centre + torch.tanh(shift) * (2 * MAX_CELL_OFFSET / self.config.G)
        z_where = torch.cat((torch.sigmoid(scale), centre), -1)
        return logit.squeeze(-1), z_where, z_what

    @torch.no_grad()
    def infer(
        self,
        images: torch.Tensor,
        present_only: bool = False,
        threshold: float = 0.5,
        box_readout: str | None = None,
    ) -> dict:
        """The teacher's ``infer`` contract: z_pres_prob (B,N), z_where (B,N,4), z_what (B,N,D),
        float32; with ``present_only`` z_what is zero where z_pres_prob <= threshold. The boxes
        are always the distilled readout (``self.fixed_box_readout``); ``box_readout`` naming
        another one is an error. Duplicates (``StudentConfig.duplicate_iou``) get probability 0.
        """
        check_infer_arguments(images, box_readout or self.fixed_box_readout)
        if box_readout not in (None, self.fixed_box_readout):
            raise ValueError(
                f"this student was distilled from {self.fixed_box_readout!r} boxes and cannot "
                f"give {box_readout!r} boxes; use the teacher for that readout"
            )
        logit, z_where, z_what = self(images)
        z_pres_prob = torch.sigmoid(logit)
        if self.config.duplicate_iou > 0:
            z_pres_prob = suppress_duplicates(
                z_pres_prob, z_where, self.config.G, threshold, self.config.duplicate_iou
            )
        if present_only:
            z_what = z_what * (z_pres_prob > threshold).unsqueeze(-1)
        return {"z_pres_prob": z_pres_prob, "z_where": z_where, "z_what": z_what}
