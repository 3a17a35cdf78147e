"""Motion maps (mode / median / flow), motion boxes and the MOC motion hints (spec §1.6).

A motion map is a float32 (210, 160) array in [0, 1] computed on the raw RGB frame:
- ``mode``: max over channels of |frame - background| (the background is the per-pixel mode
  image of the game; for a game of several looks, the nearest look per pixel), normalised by its
  per-frame maximum;
- ``median``: the same against a median background made from the sample's own frames: the
  per-pixel, per-channel median of the ``window`` consecutive frames of the sample's window
  (decorrelated splits: one median per sample), or of the ``window`` frames ending at each frame
  (the tracking split, whose samples are long consecutive runs);
- ``flow``: magnitude of the dense optical flow (OpenCV Farneback) from the previous frame to this
  one, on grey-level frames, normalised by its per-frame maximum.

Motion boxes are found in the motion map as in the reference (threshold at the mean, 3x3
closing, contours, bounding rectangles, colour-histogram refinement) with its defects fixed:
outer contours only (no boxes around holes), one colour code base (256), no zero-area boxes.
"""

from __future__ import annotations

import cv2
import numpy as np

from spacemoc.geometry import FRAME_HEIGHT, FRAME_WIDTH, boxes_to_z_where

MOTION_KINDS = ("mode", "median", "flow")
MOTION_SIZE = 128

_CLOSING_KERNEL = np.ones((3, 3), np.uint8)


def check_motion_kind(kind: str) -> str:
    if kind not in MOTION_KINDS:
        raise ValueError(
            f"unknown motion kind {kind!r}; valid motion kinds: {', '.join(MOTION_KINDS)}"
        )
    return kind


def _normalise(delta: np.ndarray) -> np.ndarray:
    peak = float(delta.max())
    delta = delta.astype(np.float32)
    return delta / peak if peak > 0 else delta


def as_looks(background: np.ndarray) -> np.ndarray:
    """A background (H,W,3) or (K,H,W,3) -> (K,H,W,3): the looks it has."""
    background = np.asarray(background)
    return background[None] if background.ndim == 3 else background


def changed_amount(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """How far each pixel is from the background: min over its looks of max over channels
    |frame - look|, (H,W,3) and (H,W,3) or (K,H,W,3) uint8 -> (H,W) uint8."""
    out = None
    for look in as_looks(background):
        diff = cv2.absdiff(frame, look)
        amount = cv2.max(cv2.max(diff[..., 0], diff[..., 1]), diff[..., 2])
        out = amount if out is None else cv2.min(out, amount)
    return out


def difference_map(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """max over channels |frame - background| (the nearest of its looks), normalised to [0,1]:
    (H,W,3) uint8 and a background (H,W,3) or (K,H,W,3) uint8 -> (H,W) f32."""
    return _normalise(changed_amount(frame, background))


def flow_map(previous: np.ndarray | None, frame: np.ndarray) -> np.ndarray:
    """Optical-flow magnitude between ``previous`` and ``frame`` (RGB uint8), normalised to [0,1].

    The flow is computed from ``frame`` back to ``previous`` so that it is defined at the pixels
    where the objects are now. A small window (5) keeps small fast objects such as Pong's ball
    (measured on Pong: the default window 15 finds a motion box on 4% of ball frames, 5: 72%).
    """
    if previous is None:
        return np.zeros(frame.shape[:2], np.float32)
    now = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    before = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(now, before, None, 0.5, 3, 5, 3, 5, 1.1, 0)
    return _normalise(np.hypot(flow[..., 0], flow[..., 1]))


def motion_maps(
    kind: str, frames: np.ndarray, T: int, background: np.ndarray, window: int, rolling: bool
) -> np.ndarray:
    """Motion maps of the last ``T`` of ``frames`` (S,210,160,3) uint8 -> (T,210,160) float32.

    ``frames`` is the whole consecutive run that ends with the kept frames (the sample's window),
    so ``median`` and ``flow`` can look at the frames before the first kept one. ``rolling``
    selects the per-frame median of the tracking split (see the module docstring).
    """
    check_motion_kind(kind)
    first = len(frames) - T
    out = np.empty((T, *frames.shape[1:3]), np.float32)
    if kind == "mode":
        for i in range(T):
            out[i] = difference_map(frames[first + i], background)
    elif kind == "median":
        shared = None if rolling else np.median(frames[-window:], axis=0).astype(np.uint8)
        for i in range(T):
            k = first + i
            med = shared
            if med is None:
                med = np.median(frames[max(0, k + 1 - window) : k + 1], axis=0).astype(np.uint8)
            out[i] = difference_map(frames[k], med)
    else:
        for i in range(T):
            k = first + i
            out[i] = flow_map(frames[k - 1] if k > 0 else None, frames[k])
    return out


_ROWS = np.floor(np.arange(MOTION_SIZE) * (FRAME_HEIGHT / MOTION_SIZE)).astype(np.int64)
_COLS = np.floor(np.arange(MOTION_SIZE) * (FRAME_WIDTH / MOTION_SIZE)).astype(np.int64)


def resize_motion(delta: np.ndarray) -> np.ndarray:
    """(…,210,160) float [0,1] -> (…,128,128) uint8 0..255, nearest like torch's interpolate."""
    small = delta[..., _ROWS[:, None], _COLS[None, :]]
    return np.rint(small * 255.0).astype(np.uint8)


def colour_codes(img: np.ndarray) -> np.ndarray:
    """One integer per RGB pixel, base 256 (the reference mixes bases 255 and 256; defect 12)."""
    img = img.astype(np.int64)
    return img[..., 0] + 256 * img[..., 1] + 65536 * img[..., 2]


class ColourScore:
    """Pixel 'excitement' of a colour: 1/count(colour in the background) - 1e-4 (spec §1.6.1).

    Colours absent from the background count as 1, so they score about 1; the common background
    colours score slightly below 0, so trimming them off a box raises its score. A background of
    several looks counts a colour's pixels per look, on average.
    """

    def __init__(self, background: np.ndarray, colour_counts: dict | None = None):
        looks = as_looks(background)
        codes, counts = np.unique(colour_codes(looks), return_counts=True)
        counts = counts.astype(np.float64) / len(looks)
        # the game's colours to count as given (Game.motion_colour_counts: RGB -> pixel count)
        for rgb, count in (colour_counts or {}).items():
            code = colour_codes(np.array(rgb).reshape(1, 3))[0]
            at = np.searchsorted(codes, code)
            if at < len(codes) and codes[at] == code:
                counts[at] = count
            else:
                codes, counts = np.insert(codes, at, code), np.insert(counts, at, count)
        self.codes = codes
        self.scores = 1.0 / counts - 1e-4

    def pixel_scores(self, frame: np.ndarray) -> np.ndarray:
        codes = colour_codes(frame)
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        return np.where(self.codes[at] == codes, self.scores[at], 1.0 - 1e-4)


class _BoxScore:
    """Sum of pixel scores over sub-boxes of one box in O(1) via an integral image of the box."""

    def __init__(self, colours: ColourScore, frame: np.ndarray, x: int, y: int, w: int, h: int):
        self.x, self.y = x, y
        self.ii = cv2.integral(colours.pixel_scores(frame[y : y + h, x : x + w]))

    def __call__(self, x: int, y: int, w: int, h: int) -> float:
        if w < 1 or h < 1:
            return 0.0
        ii, x, y = self.ii, x - self.x, y - self.y
        return float(ii[y + h, x + w] - ii[y, x + w] - ii[y + h, x] + ii[y, x])


def refine_box(score: _BoxScore, x: int, y: int, w: int, h: int):
    """Trim low-scoring borders off a box; None when the box is rejected (spec §1.6.1)."""
    step_w, step_h = w // 5 + 1, h // 5 + 1
    best = score(x, y, w, h)
    while w > 8:  # from the left
        s = score(x + step_w, y, w - step_w, h)
        if s <= best:
            break
        x, w, best = x + step_w, w - step_w, s
    while w > 8:  # from the right
        s = score(x, y, w - step_w, h)
        if s <= best:
            break
        w, best = w - step_w, s
    while h > 9:  # from the top
        s = score(x, y + step_h, w, h - step_h)
        if s <= best:
            break
        y, h, best = y + step_h, h - step_h, s
    while h > 9:  # from the bottom
        s = score(x, y, w, h - step_h)
        if s <= best:
            break
        h, best = h - step_h, s
    if best < 0.01:
        return None
    return x, y, w, h


def motion_boxes(
    delta: np.ndarray, frame: np.ndarray | None = None, colours: ColourScore | None = None
) -> np.ndarray:
    """Boxes (K,4) int [x, y, w, h] in frame pixels of the moving regions of a motion map.

    ``delta`` (H,W) float; with ``frame`` and ``colours`` each box is refined or rejected by the
    colour-histogram score of the raw frame.
    """
    mask = (delta > delta.mean()).astype(np.uint8)
    if not mask.any():
        return np.zeros((0, 4), np.int32)
    # skimage's binary closing with a 3x3 square; pixels outside the image count as background,
    # hence the padding (cv2's default border would otherwise differ at the frame edge).
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, _CLOSING_KERNEL)[1:-1, 1:-1]
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    height, width = delta.shape
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if colours is not None:
            refined = refine_box(_BoxScore(colours, frame, x, y, w, h), x, y, w, h)
            if refined is None:
                continue
            x, y, w, h = refined
        w, h = min(width - x, w), min(height - y, h)
        if w > 0 and h > 0:
            boxes.append((x, y, w, h))
    # Contour order is OpenCV's; sort so that the stored table does not depend on it.
    boxes.sort(key=lambda b: (b[1], b[0], b[3], b[2]))
    return np.array(boxes, np.int32).reshape(-1, 4)


def cell_winners(boxes, grid_size: int = 16) -> dict[int, int]:
    """Which box each cell of a G x G grid over the frame holds: cell (row-major) -> index into
    ``boxes`` (K,4) [x, y, w, h] in 160x210 frame pixels. The cell of a box is that of its
    (integer-halved) centre; the largest box wins a cell, the first of equal ones."""
    G = grid_size
    H, W = float(FRAME_HEIGHT), float(FRAME_WIDTH)
    winners: dict[int, int] = {}
    areas: dict[int, float] = {}
    for index, (x, y, w, h) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        row = int((y + np.floor(h / 2)) // (H / G))
        col = int((x + np.floor(w / 2)) // (W / G))
        cell = min(max(row, 0), G - 1) * G + min(max(col, 0), G - 1)
        # a new box's area against the held one's float32-stored scales, as the reference
        if cell not in winners or (w / W) * (h / H) > areas[cell]:
            winners[cell] = index
            areas[cell] = float(np.float32(w / W)) * float(np.float32(h / H))
    return winners


def motion_hints(boxes, grid_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """MOC hints of one frame from its motion boxes (spec §1.6 step 3).

    boxes: (K,4) [x, y, w, h] in 160x210 frame pixels. Returns z_pres (G*G,) float32 in {0,1} and
    z_where (G*G,4) float32 = [w/W, h/H, cx, cy] with centres in [-1,1]; cells are row-major, one
    box per cell (``cell_winners``).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    z_pres = np.zeros(grid_size * grid_size, np.float32)
    z_where = np.zeros((grid_size * grid_size, 4), np.float32)
    for cell, index in cell_winners(boxes, grid_size).items():
        z_pres[cell] = 1.0
        z_where[cell] = boxes_to_z_where(boxes[index])
    return z_pres, z_where
