"""The data stage: OCAtari rollouts -> background image -> dataset HDF5 files -> torch dataset.

Torch is imported only when AtariDataset or collate is used.
"""

from spacemoc.data.background import compute_background, load_background, save_background
from spacemoc.data.env import OBJECT_DTYPE
from spacemoc.data.motion import MOTION_KINDS, motion_boxes, motion_hints
from spacemoc.data.preprocess import preprocess_frame, preprocess_frames
from spacemoc.data.writer import make_dataset, read_table

__all__ = [
    "MOTION_KINDS",
    "OBJECT_DTYPE",
    "AtariDataset",
    "collate",
    "compute_background",
    "load_background",
    "make_dataset",
    "motion_boxes",
    "motion_hints",
    "preprocess_frame",
    "preprocess_frames",
    "read_table",
    "save_background",
]


def __getattr__(name):
    if name in ("AtariDataset", "collate"):
        from spacemoc.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'spacemoc.data' has no attribute {name!r}")
