"""Slot Attention's hyperparameters (``SlotConfig``: the model) and its training
(``SlotMocConfig``: losses, schedule, optimiser), each rebuilt from a plain dict."""

from __future__ import annotations

from dataclasses import dataclass

from spacemoc.models.settings import DictConfig

DECODERS = ("relative", "broadcast")
BACKGROUNDS = ("learned", "slots")
ATTENDS = ("all", "changed")


@dataclass
class SlotConfig(DictConfig):
    img_size: int = 128  # square input side (spacemoc.geometry.IMAGE_SIZE)
    num_slots: int = 10
    slot_dim: int = 64  # the encoding a slot gives the classifier
    iterations: int = 3  # attention rounds per frame
    enc_channels: int = 32
    token_stride: int = 2  # 128 / 2 = 64 x 64 tokens: Pong's 2x4-pixel ball keeps a token
    # "relative": a per-token MLP of the slot and the token's position relative to the slot's
    # attention centre, each token giving token_stride^2 pixels; "broadcast": a spatial
    # broadcast at broadcast_size upsampled by transposed convolutions
    decoder: str = "relative"
    # "learned": one learned static image behind the slots (with its own attention query), so the
    # slots need only explain what differs from it; "slots": the slots explain every pixel
    background: str = "learned"
    dec_channels: int = 32  # broadcast decoder
    broadcast_size: int = 16  # broadcast decoder: its grid, upsampled x2 to img_size
    relative_clamp: float = 6.0  # relative decoder: positions beyond this many spreads look alike
    mlp_hidden: int = 128
    # "changed": the slots attend only to the tokens whose pixels differ from the game's
    # background (the workflow's background.npy, every look) by more than changed_threshold in a
    # channel, so a few object tokens are not outweighed by thousands of backdrop tokens; the
    # model keeps the background for inference. "all": every token.
    attend: str = "changed"
    changed_threshold: float = 0.1
    # A slot is an object when its mask (> mask_threshold) covers min_pixels to max_fraction of
    # the image: the slots that take the background cover more.
    mask_threshold: float = 0.5
    min_pixels: int = 2
    max_fraction: float = 0.05
    G: int = 16  # grid of the dataset's motion hints the motion loss reads

    @property
    def needs_background(self) -> bool:
        """Training must give the model the game's background (``attend: changed``)."""
        return self.attend == "changed"

    def __post_init__(self):
        for key, valid in (
            ("decoder", DECODERS),
            ("background", BACKGROUNDS),
            ("attend", ATTENDS),
        ):
            if getattr(self, key) not in valid:
                raise ValueError(
                    f"SlotConfig.{key} must be one of {valid}, not {getattr(self, key)!r}"
                )
        if self.img_size % self.token_stride or (self.img_size // self.broadcast_size) & (
            self.img_size // self.broadcast_size - 1
        ):
            raise ValueError(
                f"img_size {self.img_size} must be a multiple of token_stride and a power-of-two "
                f"multiple of broadcast_size ({self.token_stride}, {self.broadcast_size})"
            )


@dataclass
class SlotMocConfig(DictConfig):
    """The slot family's training: MOC losses for slots and the optimiser.

    total = reconstruction + (1 - λ)·motion_weight·motion + λ·continuity_weight·continuity, λ
    rising linearly from 0 at ``schedule_start_step`` to 1 at ``schedule_end_step``."""

    # small: at 1 the motion loss drew every slot over the motion windows, at 0.5 it slowed the
    # slots down (docs/slot.md, tries 6 and 13)
    motion_weight: float = 0.05
    # The reconstruction weight of the moving pixels (the dataset's motion map) is
    # 1 + foreground_weight; 0: a plain MSE.
    foreground_weight: float = 100.0
    continuity_weight: float = 0.1
    # Slots t and t+1 are one object when their mask centres are closer than this (pixels of
    # the model's image); continuity pulls their encodings together, others apart.
    continuity_radius: float = 8.0
    # pixels around a motion box where the motion loss compares a slot's mask with the motion
    motion_margin: int = 2
    # times train.anneal_scale (0.3 by default): continuity starts at step 1,020, once the slots
    # have found the objects (about step 1,000 on Pong), and would take over at step 3,000
    schedule_start_step: int = 3400
    schedule_end_step: int = 10000
    lr: float = 4.0e-4  # Adam
    # Adam, the learned background image (SlotConfig.background); 0 keeps the game's background
    # it starts from (a trained one learned the paddles' columns: docs/slot.md, try 11)
    background_lr: float = 0.0
    warmup_steps: int = 100  # linear learning-rate warm-up
