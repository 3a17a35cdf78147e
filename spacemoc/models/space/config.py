"""SPACE hyperparameters: one dataclass with the reference's defaults (spec §2.7)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

COMPOSITING_MODES = ("windowed", "dense")


@dataclass
class SpaceConfig:
    # image and grid
    img_size: int = 128  # square input, H = W (the background decoders assume 128)
    G: int = 16  # G x G cells; the reference default is 8, but every reference yaml uses 16
    T: int = 4  # frames per training sample (data layout only, not used by the model)
    # foreground
    fg_sigma: float = 0.2
    glimpse_size: int = 32
    img_enc_dim_fg: int = 128
    z_pres_dim: int = 1
    z_depth_dim: int = 1
    z_where_scale_dim: int = 2
    z_where_shift_dim: int = 2
    z_what_dim: int = 32
    # annealing (spec §2.6): prior of z_pres, prior mean of the pre-sigmoid scale, temperature
    z_pres_start_step: float = 0
    z_pres_end_step: float = 5000
    z_pres_start_value: float = 0.1
    z_pres_end_value: float = 1e-10
    z_scale_mean_start_step: float = 0
    z_scale_mean_end_step: float = 5000
    z_scale_mean_start_value: float = -2.0
    z_scale_mean_end_value: float = -2.5
    z_scale_std_value: float = 0.1
    tau_start_step: float = 0
    tau_end_step: float = 10000
    tau_start_value: float = 2.5
    tau_end_value: float = 2.5
    # fixed alpha warm-up: active while 0 < step < fix_alpha_steps (<= 0 disables it)
    fix_alpha_steps: int = 0
    fix_alpha_value: float = 0.1
    # background
    K: int = 3
    bg_sigma: float = 0.1
    img_enc_dim_bg: int = 64
    z_mask_dim: int = 32
    z_comp_dim: int = 32
    rnn_mask_hidden_dim: int = 64
    rnn_mask_prior_hidden_dim: int = 64
    predict_comp_hidden_dim: int = 64
    # ours
    compositing: str = "windowed"  # "dense" renders every glimpse at full resolution (reference)
    motion_input: bool = False  # extra motion channel for the z_pres head (false in every yaml)
    # glimpses encoded and decoded per frame by forward (training; infer is unaffected): the most
    # present cells plus a quarter drawn at random from the rest, the other cells drawing nothing.
    # 0: every cell (the reference)
    decode_cells: int = 0

    def __post_init__(self):
        if self.G not in (4, 8, 16):
            raise ValueError(f"SpaceConfig.G must be 4, 8 or 16, got {self.G}")
        if self.img_size != 128:
            raise ValueError(
                f"SpaceConfig.img_size must be 128 (the decoders assume it), got {self.img_size}"
            )
        if self.compositing not in COMPOSITING_MODES:
            raise ValueError(
                f"SpaceConfig.compositing must be one of {COMPOSITING_MODES}, "
                f"got {self.compositing!r}"
            )
        fixed = {"z_pres_dim": 1, "z_depth_dim": 1, "z_where_scale_dim": 2, "z_where_shift_dim": 2}
        for name, value in fixed.items():
            if getattr(self, name) != value:
                raise ValueError(f"SpaceConfig.{name} must be {value}, got {getattr(self, name)}")
        if self.glimpse_size != 32:
            raise ValueError(
                "SpaceConfig.glimpse_size must be 32 (the z_what encoder assumes it), "
                f"got {self.glimpse_size}"
            )
        if self.decode_cells < 0:
            raise ValueError(f"SpaceConfig.decode_cells must be >= 0, got {self.decode_cells}")
        if self.decode_cells and self.compositing != "windowed":
            raise ValueError("SpaceConfig.decode_cells needs compositing: windowed")
        if self.K < 1:
            raise ValueError(f"SpaceConfig.K must be >= 1, got {self.K}")

    @property
    def num_cells(self) -> int:
        return self.G * self.G

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpaceConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SpaceConfig keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> SpaceConfig:
        return SpaceConfig.from_dict({**self.to_dict(), **changes})
