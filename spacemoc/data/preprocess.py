"""Frame preprocessing shared by the datasets and the detector (one definition, no drift)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from spacemoc.geometry import FRAME_HEIGHT, FRAME_WIDTH, IMAGE_SIZE

CARNIVAL_HEIGHT = 214  # Carnival's screen; its last 4 rows hold no objects and are cropped


def _check(frames: np.ndarray, batched: bool) -> np.ndarray:
    frames = np.asarray(frames)
    want = (FRAME_HEIGHT, FRAME_WIDTH, 3)
    ndim = 4 if batched else 3
    if frames.ndim == ndim and frames.shape[-3:] == (CARNIVAL_HEIGHT, FRAME_WIDTH, 3):
        frames = frames[..., :FRAME_HEIGHT, :, :]  # as the datasets do (spacemoc.data.env)
    if frames.ndim != ndim or frames.shape[-3:] != want or frames.dtype != np.uint8:
        shape = "(B,210,160,3)" if batched else "(210,160,3)"
        raise ValueError(
            f"expected uint8 RGB frame{'s' if batched else ''} of shape {shape}, "
            f"got {frames.dtype} {frames.shape}"
        )
    return np.ascontiguousarray(frames)


def preprocess_frame(frame: np.ndarray) -> np.ndarray:
    """(210,160,3) uint8 RGB -> (128,128,3) uint8 RGB, PIL Lanczos as the reference.

    Carnival's 214-row frames are cropped to their top 210 rows first, as in the datasets.
    """
    frame = _check(frame, batched=False)
    return np.asarray(Image.fromarray(frame).resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS))


def preprocess_frames(frames: np.ndarray) -> np.ndarray:
    """(B,210,160,3) uint8 RGB -> (B,128,128,3) uint8 RGB."""
    frames = _check(frames, batched=True)
    out = np.empty((len(frames), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS))
    return out
