"""A non-learned floor: background-subtraction detection.

A pixel is "changed" when some channel differs from the game's background image (the per-pixel
mode image of the data stage; for a game of several looks, from every look) by more than
``threshold``; the 8-connected components of the changed pixels (after a 3x3 dilation that joins
the pieces of one sprite) are the detections, scored by their mean absolute difference (in [0,1])
so that AP has a ranking.

The datasets store 128x128 frames, so the detector works there: the 210x160 background goes
through the same ``spacemoc.data.preprocess_frame`` as the frames (identical pixels where the
frame shows background), and component boxes are scaled back to 160x210 frame pixels. The
relevant subset filters these boxes with the relevant area exactly as it does the model's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spacemoc.data.motion import as_looks, changed_amount
from spacemoc.files import damaged_file_error, open_h5
from spacemoc.geometry import FRAME_SIZE, boxes_to_corners

BASELINE_MODEL = "bgsub"  # the model column of the baseline's rows in metrics and eval tables

THRESHOLD = 24  # on 0..255: above interpolation noise at sprite borders, below sprite contrast
MIN_PIXELS = 1


def prepare_background(background: np.ndarray, size: int = 128) -> np.ndarray:
    """(210,160,3) background -> (size,size,3) like the dataset frames (no-op if already so);
    a background of K looks, (K,210,160,3) -> (K,size,size,3)."""
    background = np.asarray(background)
    if background.shape[-3:-1] == (size, size):
        return background
    from spacemoc.data import preprocess_frame

    looks = [np.asarray(preprocess_frame(look)) for look in as_looks(background)]
    return looks[0] if background.ndim == 3 else np.stack(looks)


def bgsub_detect(
    frame: np.ndarray,
    background: np.ndarray,
    threshold: int = THRESHOLD,
    dilate: int = 1,
    min_pixels: int = MIN_PIXELS,
    frame_size=FRAME_SIZE,
) -> np.ndarray:
    """Detections in one (H,W,3) uint8 frame against a background of the same shape (or K looks
    of it, (K,H,W,3)).

    Returns (M,5) [x, y, w, h, score] in ``frame_size`` (width, height) pixels.
    """
    if frame.ndim != 3 or frame.shape != background.shape[-3:]:
        raise ValueError(
            f"frame {frame.shape} and background {background.shape} must be the same (H,W,3) shape"
        )
    diff = changed_amount(frame, background)
    changed = diff > threshold
    grown = ndimage.binary_dilation(changed, iterations=dilate) if dilate else changed
    components, n = ndimage.label(grown, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros((0, 5))
    height, width = frame.shape[:2]
    sx, sy = frame_size[0] / width, frame_size[1] / height
    out = []
    for index, window in enumerate(ndimage.find_objects(components), start=1):
        # Box of the changed pixels only (the dilation just joins them).
        inside = (components[window] == index) & changed[window]
        if inside.sum() < min_pixels:
            continue
        rows, cols = np.nonzero(inside)
        y0, x0 = rows.min() + window[0].start, cols.min() + window[1].start
        y1, x1 = rows.max() + window[0].start + 1, cols.max() + window[1].start + 1
        score = float(diff[window][inside].mean()) / 255.0
        out.append([x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy, score])
    return np.array(out, dtype=np.float64).reshape(-1, 5)


def changed_objects(
    frame: np.ndarray, background: np.ndarray, boxes, threshold: int = THRESHOLD
) -> np.ndarray:
    """Which of the (K,4+) boxes (frame pixels, ``FRAME_SIZE``) hold a pixel of the (H,W,3) frame
    that differs from the background by more than ``threshold``: (K,) bool."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    changed = changed_amount(frame, background) > threshold
    height, width = frame.shape[:2]
    corners = boxes_to_corners(boxes[:, :4])
    scale = np.array([width, height, width, height])
    lo = np.clip(np.floor(corners[:, :2] * scale[:2]), 0, [width - 1, height - 1]).astype(int)
    hi = np.maximum(np.ceil(corners[:, 2:] * scale[2:]).astype(int), lo + 1)
    return np.array(
        [changed[y0:y1, x0:x1].any() for (x0, y0), (x1, y1) in zip(lo, hi, strict=True)], dtype=bool
    )


def split_frames(data_path, background_path, desc: str = "bgsub"):
    """Each sample's (T,H,W,3) frames of a dataset split, with the background prepared to their
    size: yields (background, frames), sample by sample (h5py: one sample per read)."""
    from tqdm import tqdm

    try:  # any size the frames have (a game's 210x160 background, or the frames' own size)
        background = prepare_background(np.load(background_path, allow_pickle=False))
    except (OSError, EOFError, ValueError) as err:
        raise damaged_file_error(background_path, "background", err) from err
    with open_h5(data_path, "dataset") as f:
        frames = f["frames"]
        if frames.shape[0] == 0:
            raise ValueError(f"{data_path} holds no samples: nothing to evaluate")
        if frames.shape[2:] != background.shape[-3:]:
            raise ValueError(
                f"background {background.shape} does not match frames {frames.shape[2:]}"
            )
        for i in tqdm(range(frames.shape[0]), desc=desc, unit="sample"):
            yield background, frames[i]


def detect_split(
    data_path, background_path, threshold: int = THRESHOLD, dilate: int = 1
) -> list[np.ndarray]:
    """The baseline's detections on every frame of a dataset split (flattened, sample-major)."""
    return [
        bgsub_detect(frame, background, threshold, dilate)
        for background, frames in split_frames(data_path, background_path)
        for frame in frames
    ]


def evaluate_bgsub(
    data_path, background_path, threshold: int = THRESHOLD, dilate: int = 1
) -> list[dict]:
    """Detection metrics of the baseline on a dataset split: one row per subset (all, relevant)
    with the ``DETECTION_KEYS`` and ``subset``."""
    from spacemoc.latents import frame_ground_truth, read_objects
    from spacemoc.metrics import detection_scores, relevant_subset

    pred = detect_split(data_path, background_path, threshold, dilate)
    gt, gt_labels = frame_ground_truth(read_objects(data_path))
    with open_h5(data_path, "dataset") as f:
        game = str(f.attrs["game"])
    rows = [{"subset": "all", **detection_scores(pred, gt)}]
    rel_pred, rel_gt, _, _ = relevant_subset(pred, gt, gt_labels, game)
    rows.append({"subset": "relevant", **detection_scores(rel_pred, rel_gt)})
    for row in rows:
        row.update(game=game, model=BASELINE_MODEL, seed="-")
    return rows
