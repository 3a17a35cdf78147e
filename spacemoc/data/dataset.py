"""Torch dataset over a dataset HDF5 file: what the trainer (and evaluation) read per sample."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from spacemoc.data.motion import motion_hints
from spacemoc.data.writer import split_rows
from spacemoc.files import open_h5

MOTION_THRESHOLD = 0.1  # binarised motion = motion > 0.1 * mean over the sample's T frames


class AtariDataset(Dataset):
    """Samples of ``results/{game}/data/{split}.h5``.

    Each item is a dict: ``frames`` float32 (T,3,128,128) RGB in [0,1]; ``motion`` float32
    (T,128,128) in {0,1}; ``motion_z_pres`` float32 (T,G*G) and ``motion_z_where`` float32
    (T,G*G,4) (the MOC hints of the motion boxes for grid size G); with ``with_gt`` also ``gt``,
    a list of T structured arrays (rows of the ``objects`` table). The file is opened lazily in
    each DataLoader worker and read one sample at a time.
    """

    def __init__(self, path: str | Path, grid_size: int = 16, with_gt: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            raise ValueError(f"dataset file {self.path} does not exist")
        self.grid_size = int(grid_size)
        self.with_gt = with_gt
        with open_h5(self.path, "dataset") as f:
            missing = [k for k in ("frames", "motion", "motion_boxes") if k not in f]
            if with_gt and "objects" not in f:
                missing.append("objects")
            if missing:
                raise ValueError(
                    f"{self.path} lacks {', '.join(missing)}: SPACE+MOC needs frames, motion maps "
                    "and motion boxes (make the file with `spacemoc dataset`)"
                )
            self.game = str(f.attrs["game"])
            self.labels = [str(v) for v in f.attrs["labels"]]
            self.n, self.T = (int(v) for v in f["frames"].shape[:2])
            self.motion_boxes = split_rows(f["motion_boxes"][()], self.n, self.T)
            self.gt = split_rows(f["objects"][()], self.n, self.T) if with_gt else None
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return self.n

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():  # one handle per worker process
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getitem__(self, index: int) -> dict:
        if not -self.n <= index < self.n:
            raise IndexError(f"sample {index} out of range for {self.n} samples")
        index = index % self.n
        f = self._h5()
        # numpy, not torch, for the conversions: single-threaded, so DataLoader workers do not
        # oversubscribe the cores with torch's intra-op threads.
        frames = f["frames"][index].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        motion = f["motion"][index].astype(np.float32) / 255.0  # (T,128,128)
        hints = [
            motion_hints(self._boxes(rows), self.grid_size) for rows in self.motion_boxes[index]
        ]
        item = {
            "frames": torch.from_numpy(np.ascontiguousarray(frames)),  # (T,3,128,128)
            "motion": torch.from_numpy(
                (motion > MOTION_THRESHOLD * motion.mean()).astype(np.float32)
            ),
            "motion_z_pres": torch.from_numpy(np.stack([h[0] for h in hints])),
            "motion_z_where": torch.from_numpy(np.stack([h[1] for h in hints])),
        }
        if self.with_gt:
            item["gt"] = list(self.gt[index])
        return item

    @staticmethod
    def _boxes(rows: np.ndarray) -> np.ndarray:
        return np.stack([rows["x"], rows["y"], rows["w"], rows["h"]], axis=1)

    def __getstate__(self):  # DataLoader workers open their own handle
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state


def collate(batch: list[dict]) -> dict:
    """Stack tensors of a list of items; ``gt`` stays a list (per sample) of lists (per frame)."""
    out = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out
