"""The distill package's settings and file names, free of torch (the command line reads them
before any model is loaded)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spacemoc.geometry import IMAGE_SIZE

STUDENT_WEIGHTS = "student.pt"
STUDENT_FORMAT = "spacemoc-student/1"


@dataclass(frozen=True)
class StudentConfig:
    G: int = 16  # cells per side, the teacher's
    z_what_dim: int = 32  # the teacher's
    patch: int = 4  # the first layer maps each patch x patch pixels to patch_channels features
    patch_channels: int = 32
    width: int = 48  # channels at the cell resolution
    cell_layers: int = 2  # 3x3 convolutions at the cell resolution
    # A present cell whose box overlaps a stronger present neighbour's by more than this IoU is
    # the same object seen from the next cell: dropped (0 keeps every cell).
    duplicate_iou: float = 0.3

    def __post_init__(self):
        cells = IMAGE_SIZE / (2 * self.patch) if self.patch >= 1 else 0
        if cells != self.G:
            raise ValueError(
                f"patches of {self.patch}px and one stride-2 layer map {IMAGE_SIZE}px to "
                f"{cells:g} cells per side, not G={self.G}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> StudentConfig:
        return cls(**values)


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 4000
    batch_size: int = 64  # frames
    lr: float = 2e-3  # Adam, cosine-decayed to 0
    box_weight: float = 1.0  # L1 in cell widths
    what_weight: float = 1.0  # squared error per z_what dimension
    threshold: float = 0.5  # a teacher cell above it is an object
    holdout: float = 0.05  # fraction of the frames kept out to measure agreement
    eval_every: int = 250
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
