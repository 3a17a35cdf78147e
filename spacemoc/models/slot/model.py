"""Slot Attention (Locatello et al., 2020) for Atari frames: a CNN encoder with a positional
embedding, K slots refined by iterative attention, and a spatial-broadcast decoder giving each
slot an RGB image and a mask logit, softmax over slots.

Choices for a 2-core CPU and Atari's small objects (docs/model.md, "Slot Attention"):

* tokens at stride 2 (64 x 64 for a 128 x 128 image): Pong's ball (2 x 4 frame pixels, about
  2 x 2.5 image pixels) still fills a token; the public Slot+MOC code's stride 4 would halve it;
* learned per-slot initial queries instead of Gaussian samples: the same image always gives the
  same slots (inference is deterministic, as the latents stage needs), and slots stay apart
  without noise;
* frames are encoded independently (no slots carried over time): inference on single frames then
  sees what training saw; object continuity comes from the loss (``losses.continuity_loss``);
* a learned static background image behind the slots (``background="learned"``, with its own
  attention query): Atari backdrops hardly change, and with the backdrop explained the
  reconstruction error is all in the objects, which the slots alone can then reduce (without it
  one slot learned the whole frame; with it, slots have not yet taken Pong's objects either:
  docs/slot.md);
* the relative decoder (``decoder="relative"``): each token's pixels come from an MLP of the slot
  and the token's position relative to the slot's attention centre, in units of the slot's
  attention spread, so drawing a 2 x 4 ball anywhere is one small sprite for the MLP (as in
  Invariant Slot Attention, Biza et al. 2023); no transposed convolutions, whose 8-pixel period
  showed through the masks of the broadcast decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from spacemoc.models.readouts import check_infer_arguments

from .config import SlotConfig
from .masks import coloured_masks, mask_objects


def position_grid(height: int, width: int) -> torch.Tensor:
    """(H*W, 4) [x, y, 1 - x, 1 - y] of pixel centres in [0, 1] (the soft position embedding's
    input), row-major."""
    ys = (torch.arange(height) + 0.5) / height
    xs = (torch.arange(width) + 0.5) / width
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack((x, y), dim=-1).reshape(-1, 2)
    return torch.cat((grid, 1 - grid), dim=-1)


class Encoder(nn.Module):
    """(B,3,H,W) -> tokens (B, N, slot_dim), N = (H/stride)·(W/stride)."""

    def __init__(self, cfg: SlotConfig):
        super().__init__()
        c = cfg.enc_channels
        self.convs = nn.Sequential(
            nn.Conv2d(3, c, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, cfg.token_stride, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(inplace=True),
        )  # fmt: skip
        side = cfg.img_size // cfg.token_stride
        self.register_buffer("grid", position_grid(side, side), persistent=False)  # (N,4)
        self.position = nn.Linear(4, c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(
            nn.Linear(c, cfg.mlp_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.mlp_hidden, cfg.slot_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.convs(images)  # (B,c,h,w)
        tokens = features.flatten(2).transpose(1, 2)  # (B,N,c)
        return self.mlp(self.norm(tokens + self.position(self.grid)))  # (B,N,D)


class SlotAttention(nn.Module):
    """tokens (B,N,D) -> slots (B,K,D) and the last round's attention (B,K,N), softmax over
    slots: every token is explained by the slots together."""

    def __init__(self, cfg: SlotConfig, num_queries: int):
        super().__init__()
        d, self.iterations, self.eps = cfg.slot_dim, cfg.iterations, 1e-8
        self.queries = nn.Parameter(torch.randn(1, num_queries, d) * d**-0.5)
        self.norm_tokens, self.norm_slots, self.norm_mlp = (nn.LayerNorm(d) for _ in range(3))
        self.to_q, self.to_k, self.to_v = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.gru = nn.GRUCell(d, d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_hidden), nn.ReLU(inplace=True), nn.Linear(cfg.mlp_hidden, d)
        )

    def forward(
        self, tokens: torch.Tensor, token_weights=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``token_weights`` (B,N) in [0,1]: how much each token counts in the slots' updates
        (None: all fully); the returned attention is weighted by them too."""
        B, _, D = tokens.shape
        tokens = self.norm_tokens(tokens)
        k, v = self.to_k(tokens), self.to_v(tokens)  # (B,N,D)
        slots = self.queries.expand(B, -1, -1)  # (B,K,D)
        for _ in range(self.iterations):
            q = self.to_q(self.norm_slots(slots))
            attn = torch.einsum("bkd,bnd->bkn", q, k).mul(D**-0.5).softmax(dim=1)  # (B,K,N)
            if token_weights is not None:
                attn = attn * token_weights[:, None]
            weights = (attn + self.eps) / (attn + self.eps).sum(-1, keepdim=True)
            updates = torch.einsum("bkn,bnd->bkd", weights, v)
            slots = self.gru(updates.reshape(-1, D), slots.reshape(-1, D)).view(B, -1, D)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


def attention_frames(attention: torch.Tensor, grid: torch.Tensor, smallest: float):
    """attention (B,K,N) over tokens at ``grid`` (N,2) [x, y] -> each slot's centre (B,K,2),
    the attention-weighted mean position, and spread (B,K,2), the weighted standard deviation
    (at least ``smallest``)."""
    weights = attention / attention.sum(-1, keepdim=True).clamp(min=1e-8)
    centre = weights @ grid  # (B,K,2)
    variance = weights @ grid.pow(2) - centre.pow(2)
    return centre, variance.clamp(min=0).add(smallest**2).sqrt()


class RelativeDecoder(nn.Module):
    """slots (B,K,D) with their attention centres and spreads (B,K,2) -> rgb (B,K,3,H,W) in (0,1)
    and mask logits (B,K,H,W): at each token, an MLP of the slot plus an embedding of the token's
    position relative to the slot's centre (in spreads, clamped); each token gives its
    ``token_stride`` x ``token_stride`` pixels."""

    def __init__(self, cfg: SlotConfig):
        super().__init__()
        self.side, self.stride = cfg.img_size // cfg.token_stride, cfg.token_stride
        self.clamp = cfg.relative_clamp
        self.register_buffer("grid", position_grid(self.side, self.side)[:, :2], persistent=False)
        self.position = nn.Linear(2, cfg.slot_dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.slot_dim, cfg.mlp_hidden), nn.ReLU(inplace=True),
            nn.Linear(cfg.mlp_hidden, cfg.mlp_hidden), nn.ReLU(inplace=True),
            nn.Linear(cfg.mlp_hidden, 4 * self.stride**2),
        )  # fmt: skip

    def forward(self, slots, centre, spread) -> tuple[torch.Tensor, torch.Tensor]:
        B, K, D = slots.shape
        relative = (self.grid - centre[:, :, None]) / spread[:, :, None]  # (B,K,N,2)
        relative = relative.clamp(-self.clamp, self.clamp)
        out = self.mlp(slots[:, :, None] + self.position(relative))  # (B,K,N,4*s*s)
        out = out.view(B * K, self.side, self.side, 4 * self.stride**2).permute(0, 3, 1, 2)
        out = nn.functional.pixel_shuffle(out, self.stride)  # (B*K,4,H,W)
        out = out.view(B, K, 4, *out.shape[-2:])
        return torch.sigmoid(out[:, :, :3]), out[:, :, 3]


class Decoder(nn.Module):
    """slots (M, D) -> rgb (M,3,H,W) in (0,1) and mask logits (M,1,H,W)."""

    def __init__(self, cfg: SlotConfig):
        super().__init__()
        s, c = cfg.broadcast_size, cfg.dec_channels
        self.size = s
        self.register_buffer("grid", position_grid(s, s), persistent=False)  # (s*s,4)
        self.position = nn.Linear(4, cfg.slot_dim)
        layers = [nn.Conv2d(cfg.slot_dim, c, 3, 1, 1), nn.ReLU(inplace=True)]
        side = s
        while side < cfg.img_size:
            layers += [nn.ConvTranspose2d(c, c, 4, 2, 1), nn.ReLU(inplace=True)]
            side *= 2
        self.net = nn.Sequential(*layers, nn.Conv2d(c, 4, 3, 1, 1))

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        M, D = slots.shape
        x = slots[:, None, :] + self.position(self.grid)  # (M, s*s, D)
        x = x.transpose(1, 2).reshape(M, D, self.size, self.size)
        out = self.net(x)  # (M,4,H,W)
        return torch.sigmoid(out[:, :3]), out[:, 3:]


class SlotAttentionModel(nn.Module):
    family = "slot"

    def __init__(self, config: SlotConfig):
        super().__init__()
        self.config = config
        self.learned_background = config.background == "learned"
        self.encoder = Encoder(config)
        queries = config.num_slots + int(self.learned_background)  # the background's first
        self.slot_attention = SlotAttention(config, queries)
        if config.decoder == "relative":
            self.decoder = RelativeDecoder(config)
        else:
            self.decoder = Decoder(config)
        if self.learned_background:
            size = config.img_size
            self.background_logits = nn.Parameter(torch.zeros(3, size, size))  # sigmoid -> RGB
            # starts level with each slot, so a slot's mask is not held near 0 from the start
            self.background_mask_logit = nn.Parameter(torch.tensor(0.0))
        if config.needs_background:
            # the game's background, (K,3,H,W) in [0,1]: set_background, or the checkpoint
            self.register_buffer("reference", torch.zeros(0, 3, config.img_size, config.img_size))
        self.channel_order = "rgb"
        self.game, self.labels, self.step = None, None, None

    @property
    def needs_background(self) -> bool:
        """Whether training must give the model the game's background (``set_background``)."""
        return self.config.needs_background

    @torch.no_grad()
    def set_background(self, looks) -> None:
        """The game's background at the model's image size, (K,H,W,3) or (H,W,3) uint8 RGB (each
        look as ``spacemoc.data.preprocess`` resizes frames): the tokens that differ from every
        look are the ones the slots attend to (``SlotConfig.attend``)."""
        looks = torch.as_tensor(looks)
        looks = looks[None] if looks.ndim == 3 else looks
        size = self.config.img_size
        if looks.ndim != 4 or tuple(looks.shape[1:]) != (size, size, 3):
            raise ValueError(
                f"background looks must be (K,{size},{size},3), not {tuple(looks.shape)}"
            )
        self.reference = looks.permute(0, 3, 1, 2).float().div(255).to(self.reference.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.needs_background and "reference" in state_dict:
            self.reference = torch.zeros_like(state_dict["reference"])  # its number of looks
        return super().load_state_dict(state_dict, strict, assign)

    def changed_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> (B,N) 1.0 where a token holds a pixel off every look of the background
        by more than ``changed_threshold`` in a channel, else 0.0 (the rule of
        ``spacemoc.data.motion.changed_amount``, on the model's tensors)."""
        if len(self.reference) == 0:
            raise ValueError(
                "this slot model attends to the tokens that differ from the game's background "
                "(slot.attend: changed) but holds no background: train it with one "
                "(`spacemoc train --background results/<game>/background.npy`; the workflow "
                "passes it)"
            )
        amount = (images[:, None] - self.reference[None]).abs().amax(2).amin(1)  # (B,H,W)
        changed = (amount > self.config.changed_threshold).to(images.dtype)[:, None]
        return nn.functional.max_pool2d(changed, self.config.token_stride).flatten(1)

    @property
    def num_objects(self) -> int:
        return self.config.num_slots

    def background_parameters(self) -> list[nn.Parameter]:
        """The learned background image and its mask logit (trained at their own rate)."""
        if not self.learned_background:
            return []
        return [self.background_logits, self.background_mask_logit]

    @torch.no_grad()
    def initialise_background(self, images: torch.Tensor) -> None:
        """Start the learned background at the game's background (its first look) where the
        model holds one, else at the per-pixel median of ``images`` (B,3,H,W): the backdrop
        where objects come and go, so the slots need not first explain the whole frame while
        it is learned."""
        if self.needs_background and len(self.reference):
            start = self.reference[0]
        else:
            start = images.median(dim=0).values
        self.background_logits.copy_(torch.logit(start.clamp(0.02, 0.98)))

    def forward(self, images: torch.Tensor) -> dict:
        """images (B,3,H,W) in [0,1] -> the object slots (B,K,D), their rgb (B,K,3,H,W) and
        masks (B,K,H,W) (softmax over the slots and the background), reconstruction (B,3,H,W)."""
        B = images.shape[0]
        token_weights = self.changed_tokens(images) if self.needs_background else None  # (B,N)
        slots, attention = self.slot_attention(self.encoder(images), token_weights)
        if self.learned_background:
            slots, attention = slots[:, 1:], attention[:, 1:]  # (B,K,D), (B,K,N)
        if isinstance(self.decoder, RelativeDecoder):
            side = self.decoder.side
            centre, spread = attention_frames(attention, self.decoder.grid, 1.0 / side)
            rgb, logits = self.decoder(slots, centre, spread)  # (B,K,3,H,W), (B,K,H,W)
        else:
            rgb, logits = self.decoder(slots.flatten(0, 1))  # (B*K,3,H,W), (B*K,1,H,W)
            rgb, logits = rgb.view(B, -1, *rgb.shape[1:]), logits.view(B, -1, *logits.shape[2:])
        if self.learned_background:
            behind = self.background_mask_logit.expand(B, 1, *logits.shape[-2:])
            layers = torch.cat((behind, logits), 1).softmax(dim=1)  # (B,1+K,H,W)
            masks = layers[:, 1:]
            backdrop = torch.sigmoid(self.background_logits) * layers[:, :1]  # (B,3,H,W)
        else:
            masks, backdrop = logits.softmax(dim=1), 0.0
        reconstruction = (rgb * masks[:, :, None]).sum(1) + backdrop
        return {
            "slots": slots,
            "attention": attention,
            "rgb": rgb,
            "masks": masks,
            "reconstruction": reconstruction,
        }

    @torch.no_grad()
    def view(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the model draws, for pictures: images (B,3,H,W) -> {panel: (B,3,H,W) in [0,1]}:
        the reconstruction and the slot masks, each slot in its own colour."""
        out = self(images.float())
        return {
            "reconstruction": out["reconstruction"].clamp(0, 1),
            "slot masks": coloured_masks(out["masks"]),
        }

    @torch.no_grad()
    def infer(
        self,
        images: torch.Tensor,
        present_only: bool = False,
        threshold: float = 0.5,
        box_readout: str = "alpha",
    ) -> dict:
        """Per slot: z_pres_prob (B,K) (the mean mask value over the slot's pixels above
        ``mask_threshold`` when it is object-sized, else 0), z_where (B,K,4) (the extent of those
        pixels, [scale_x, scale_y, centre_x, centre_y], centres in [-1,1]) and z_what (B,K,D)
        (the slot). A slot has no glimpse: both box readouts are the mask's extent.
        ``present_only`` zeroes the z_what of slots at or below ``threshold``."""
        check_infer_arguments(images, box_readout)
        out = self(images.float())
        prob, z_where = mask_objects(out["masks"], self.config)
        z_what = out["slots"].float()
        if present_only:
            z_what = z_what * (prob > threshold)[..., None]
        return {"z_pres_prob": prob, "z_where": z_where, "z_what": z_what}
