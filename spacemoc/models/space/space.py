"""SPACE: fg + bg mixture, ELBO and deterministic inference (spec §2.1, §2.5, §2.8)."""

from __future__ import annotations

import torch
from torch import nn

from spacemoc.models.readouts import check_infer_arguments

from .bg import SpaceBg
from .boxes import ALPHA_THRESHOLD, alpha_extent
from .config import SpaceConfig
from .fg import SpaceFg
from .glimpse import glimpses_of_cells

END_STEP = 100_000_000  # forward without a step: every annealed value at its end
ENCODER_CHUNK = 8  # images per image-encoder call in infer
GLIMPSE_CHUNK = 64  # glimpses per z_what-encoder call in infer


class Space(nn.Module):
    """SPACE with the reference's parameter names (reference checkpoints load strictly).

    Metadata attributes (not part of the state dict): ``config``, ``channel_order`` ("rgb", or
    "bgr" for imported reference weights: the input channel order the weights expect), ``game``,
    ``labels``, ``step``.
    """

    family = "space"

    def __init__(self, config: SpaceConfig | None = None):
        super().__init__()
        self.config = config if config is not None else SpaceConfig()
        self.fg_module = SpaceFg(self.config)
        self.bg_module = SpaceBg(self.config)
        # Channels-last conv weights for the per-cell networks and the background: oneDNN then runs
        # those convs (and GroupNorm) in NHWC without per-layer layout reorders, ~1.5x faster on
        # CPU. The image encoder stays NCHW: no faster in NHWC, and its NCHW sums reproduce the
        # reference's presence / where outputs more closely (fixture error 6e-6 instead of 6e-5).
        for module in (self.fg_module.z_what_net, self.fg_module.glimpse_dec, self.bg_module):
            module.to(memory_format=torch.channels_last)
        self.channel_order = "rgb"
        self.game: str | None = None
        self.labels: list[str] | None = None
        self.step: int | None = None

    @property
    def num_cells(self) -> int:
        return self.config.num_cells

    @property
    def num_objects(self) -> int:
        """N, the object slots of ``infer``'s outputs: the G*G cells."""
        return self.config.num_cells

    def _flatten_input(self, x: torch.Tensor) -> torch.Tensor:
        channels = 3 + int(self.config.motion_input)
        size = self.config.img_size
        if x.dim() == 5:
            x = x.reshape(
                x.shape[0] * x.shape[1], *x.shape[2:]
            )  # (B, T, ...) -> (B*T, ...), b-major
        if x.dim() != 4 or x.shape[1] < channels or tuple(x.shape[2:]) != (size, size):
            raise ValueError(
                f"expected images (B, {channels}, {size}, {size}) or "
                f"(B, T, {channels}, {size}, {size}), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"expected float images in [0, 1], got dtype {x.dtype}")
        return x

    def forward(
        self, x: torch.Tensor, global_step: float | None = None, compositing: str | None = None
    ):
        """x (B, T, 3, H, W) or (B, 3, H, W) -> (loss, log), loss = -sum of the B*T images' ELBOs.

        ``global_step`` drives the annealing (None: the end values). ``compositing`` overrides
        ``config.compositing`` ("windowed" or "dense") for this call.
        """
        cfg = self.config
        if self.bg_module is None:
            raise ValueError(
                "this model was loaded from a detector-only (foreground) checkpoint: it can "
                "infer, but training and reconstruction need the full model.pt"
            )
        step = END_STEP if global_step is None else global_step
        x = self._flatten_input(x)
        # background first, then foreground: the reference's order of random draws
        bg_likelihood, bg, kl_bg, log_bg = self.bg_module(x)
        fg_likelihood, fg, alpha_map, kl_fg, log_fg = self.fg_module(x, step, compositing)

        # fix-alpha trick: the mixture uses a constant alpha early on; logged alpha_map stays real
        alpha = alpha_map
        if cfg.fix_alpha_steps > 0 and 0 < step < cfg.fix_alpha_steps:
            alpha = torch.full_like(alpha_map, cfg.fix_alpha_value)
        fg_ll = fg_likelihood + torch.log(alpha + 1e-5)
        bg_ll = bg_likelihood + torch.log(1 - alpha + 1e-5)
        log_like = (
            torch.logsumexp(torch.stack((fg_ll, bg_ll), dim=1), dim=1).flatten(1).sum(1)
        )  # (B,)
        y = alpha * fg + (1.0 - alpha) * bg
        elbo = log_like - kl_bg - kl_fg
        loss = -elbo.sum()

        log = {
            "imgs": x[:, :3],
            "y": y,
            "mse": ((y - x[:, :3]) ** 2).flatten(1).sum(1),
            "log_like": log_like,
            "elbo_loss": loss.detach(),
        }
        log.update(log_fg)
        log.update(log_bg)
        return loss, log

    @torch.no_grad()
    def view(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the model draws, for pictures: images (B,3,H,W) -> {panel: (B,3,H,W) in [0,1]}:
        the reconstruction, the background, and the foreground with its alpha (one sample of the
        posterior at the schedules' end values; seed torch for a repeatable picture)."""
        _, log = self(images.float())
        alpha = log["alpha_map"].expand(-1, 3, -1, -1)
        return {
            "reconstruction": log["y"].clamp(0, 1),
            "background": log["bg"].clamp(0, 1),
            "foreground × alpha": (log["fg"] * alpha).clamp(0, 1),
        }

    @torch.no_grad()
    def infer(
        self,
        images: torch.Tensor,
        present_only: bool = False,
        threshold: float = 0.5,
        box_readout: str = "glimpse",
    ) -> dict:
        """Deterministic posterior means per cell (no background, no sampling): the one inference
        path of latents, the Detector, tracking and export.

        images: float (B, 3, 128, 128) in [0, 1], channels in ``self.channel_order`` (any memory
        layout: channels-last input runs the convolutions in NHWC, faster on CPU).
        Returns z_pres_prob (B, N), z_where (B, N, 4) = [scale_x, scale_y, centre_x, centre_y]
        (centres in [-1, 1]) and z_what (B, N, D), N = G*G, all float32. With ``present_only``
        z_what is encoded only for cells with z_pres_prob > threshold and is zero elsewhere.
        ``box_readout="alpha"`` replaces the z_where of cells above the threshold by the extent of
        their decoded alpha (``spacemoc.models.space.boxes``); ``z_where_glimpse`` is then the box
        z_what was encoded from.
        """
        check_infer_arguments(images, box_readout)
        x = self._flatten_input(images)
        z_pres_prob, z_where = self._encode_cells(x)  # (B,N), (B,N,4)
        B, N = z_pres_prob.shape
        if present_only:
            b_idx, n_idx = (z_pres_prob > threshold).nonzero(as_tuple=True)  # (M,), (M,)
        else:
            b_idx = torch.arange(B, device=x.device).repeat_interleave(N)
            n_idx = torch.arange(N, device=x.device).repeat(B)
        z_what = z_pres_prob.new_zeros(B, N, self.config.z_what_dim)
        codes = self._encode_glimpses(x[:, :3], b_idx, z_where[b_idx, n_idx])  # (M,D)
        z_what[b_idx, n_idx] = codes.float()
        out = {"z_pres_prob": z_pres_prob, "z_where": z_where, "z_what": z_what}
        if box_readout == "alpha":
            present = z_pres_prob[b_idx, n_idx] > threshold
            b_idx, n_idx, codes = b_idx[present], n_idx[present], codes[present]
            drawn = z_where.clone()
            if len(b_idx):
                _, alpha = self.fg_module.glimpse_dec(codes)  # (M,1,g,g)
                drawn[b_idx, n_idx] = alpha_extent(
                    z_where[b_idx, n_idx], alpha.float(), ALPHA_THRESHOLD
                )
            out.update(z_where=drawn, z_where_glimpse=z_where)
        return out

    def _encode_cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,C,H,W) -> z_pres_prob (B,N), z_where (B,N,4) float32. Chunks of ENCODER_CHUNK
        images keep the activations in cache (faster per frame than one big batch), and make
        a frame's values independent of how many frames a caller passes at once."""
        encoder = self.fg_module.img_encoder
        probs, wheres = [], []
        for chunk in x.split(ENCODER_CHUNK):
            post = encoder(chunk)
            probs.append(torch.sigmoid(post["z_pres_logits"]).squeeze(-1))  # (b,N)
            scale = torch.sigmoid(post["z_scale_loc"])  # (b,N,2)
            wheres.append(torch.cat((scale, encoder.shift_to_centre(post["z_shift_loc"])), -1))
        return torch.cat(probs).float(), torch.cat(wheres).float()

    def _encode_glimpses(
        self, images: torch.Tensor, b_idx: torch.Tensor, z_where: torch.Tensor
    ) -> torch.Tensor:
        """Posterior mean z_what (M,D) of the glimpses z_where (M,4) of images[b_idx] (b_idx
        sorted), in chunks of GLIMPSE_CHUNK glimpses."""
        if len(b_idx) == 0:
            return images.new_zeros(0, self.config.z_what_dim)
        glimpses = glimpses_of_cells(images, b_idx, z_where, self.config.glimpse_size)
        return torch.cat([self.fg_module.z_what_net.mean(g) for g in glimpses.split(GLIMPSE_CHUNK)])
