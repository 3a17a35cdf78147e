"""Draw dataset samples with their ground-truth and motion boxes into a PNG a person can read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spacemoc.data.writer import split_rows
from spacemoc.files import open_h5
from spacemoc.geometry import FRAME_HEIGHT, FRAME_WIDTH

SCALE = 3  # frames are drawn at 3x the original 160x210 size (aspect ratio restored)
GT_COLOUR = (0, 255, 0)
MOTION_COLOUR = (255, 0, 255)
GAP = 4


def show(data_path: str | Path, out_path: str | Path, samples: int = 4) -> Path:
    """Grid of ``samples`` evenly spaced samples (rows) x T frames (columns) with boxes.

    Green: ground-truth objects with their label names; magenta: motion boxes.
    """
    data_path, out_path = Path(data_path), Path(out_path)
    if not data_path.exists():
        raise ValueError(f"dataset file {data_path} does not exist")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    with open_h5(data_path, "dataset") as f:
        n, T = f["frames"].shape[:2]
        labels = [str(v) for v in f.attrs["labels"]]
        title = f"{f.attrs['game']} / {f.attrs['split']} / motion: {f.attrs['motion_kind']}"
        picked = np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int))
        frames = [f["frames"][int(i)] for i in picked]
        objects = split_rows(f["objects"][()], n, T)
        found = split_rows(f["motion_boxes"][()], n, T)

    w, h = FRAME_WIDTH * SCALE, FRAME_HEIGHT * SCALE
    header = 20
    canvas = Image.new("RGB", (T * (w + GAP) - GAP, header + len(picked) * (h + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    legend = f"{title}   green: ground truth (label)   magenta: motion boxes"
    draw.text((4, 3), legend, fill=(0, 0, 0), font=font)
    for row, sample in enumerate(picked):
        for t in range(T):
            left, top = t * (w + GAP), header + row * (h + GAP)
            canvas.paste(Image.fromarray(frames[row][t]).resize((w, h), Image.NEAREST), (left, top))
            for box in found[sample][t]:  # drawn 2 px outside, so boxes equal to GT stay visible
                _rect(draw, box, left, top, MOTION_COLOUR, pad=2)
            for box in objects[sample][t]:
                _rect(draw, box, left, top, GT_COLOUR, pad=0)
                draw.text(
                    (left + box["x"] * SCALE, top + max(0.0, box["y"] * SCALE - 16)),
                    labels[box["label"]],
                    fill=GT_COLOUR,
                    font=font,
                    stroke_width=2,
                    stroke_fill=(0, 0, 0),
                )
            draw.text(
                (left + 3, top + 3),
                f"#{sample} t={t}",
                fill=(255, 255, 0),
                font=font,
                stroke_width=2,
                stroke_fill=(0, 0, 0),
            )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
    return out_path


def _rect(draw, box, left, top, colour, pad):
    x0, y0 = left + box["x"] * SCALE - pad, top + box["y"] * SCALE - pad
    x1, y1 = x0 + box["w"] * SCALE - 1 + 2 * pad, y0 + box["h"] * SCALE - 1 + 2 * pad
    draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
