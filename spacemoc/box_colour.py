"""The colour of a detected object: a label feature its encoding may lack.

SPACE's encodings describe a glimpse's shape more than its colour, so objects of one shape and
different colours (Skiing's blue and red flags, Tennis's two players) can share a cluster. The
colour of a box is the mean colour of its pixels that differ from the background around it: the
commonest colour of a ring ``RING`` pixels wide just outside the box (inside the box when the box
fills the image). A box whose pixels all match that colour gets the mean of all its pixels.

Computed on the model's input image (``IMAGE_SIZE`` squared, the same for latents and detector),
from the normalised corners of ``spacemoc.geometry``; values are RGB in [0, 1].
"""

from __future__ import annotations

import numpy as np

RING = 2  # pixels of background sampled around a box
TOLERANCE = 16  # a pixel differs from the background when a channel differs by more (of 255)


def box_colour(image: np.ndarray, corners) -> np.ndarray:
    """(H,W,3) uint8 image, normalised [x_min, y_min, x_max, y_max] -> (3,) float32 RGB."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = np.asarray(corners, dtype=np.float64) * [width, height, width, height]
    x0, y0 = int(np.clip(np.floor(x0), 0, width - 1)), int(np.clip(np.floor(y0), 0, height - 1))
    x1, y1 = int(np.clip(np.ceil(x1), x0 + 1, width)), int(np.clip(np.ceil(y1), y0 + 1, height))
    inside = image[y0:y1, x0:x1].reshape(-1, 3).astype(np.int16)
    top, left = max(y0 - RING, 0), max(x0 - RING, 0)
    around = image[top : y1 + RING, left : x1 + RING]
    ring = np.ones(around.shape[:2], dtype=bool)
    ring[y0 - top : y1 - top, x0 - left : x1 - left] = False
    background_pixels = around[ring] if ring.any() else inside
    colours, counts = np.unique(background_pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()].astype(np.int16)
    differs = np.abs(inside - background).max(axis=1) > TOLERANCE
    chosen = inside[differs] if differs.any() else inside
    return (chosen.mean(axis=0) / 255.0).astype(np.float32)


def box_colours(images: np.ndarray, corners: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(n,H,W,3) uint8 images, (n,C,4) normalised corners, (n,C) bool -> (n,C,3) float32: the
    colour of every present box (0 for the others)."""
    out = np.zeros((*present.shape, 3), dtype=np.float32)
    for i, c in zip(*np.nonzero(present), strict=True):
        out[i, c] = box_colour(images[i], corners[i, c])
    return out
