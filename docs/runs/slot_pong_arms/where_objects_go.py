"""Where a slot model puts each relevant object of a test split (docs/slot.md, "Where the ball
goes"): per OCAtari class, the object slots' largest mask value inside the object's box (near 0:
the learned background draws it); where a slot draws it, whether the readout keeps that slot
(``mask_objects``: object-sized) and its box height (128-pixel image); and which other object
shares the slot whose attention holds the object's centre token.

python docs/runs/slot_pong_arms/where_objects_go.py results/pong/slot_moc/seed0/model.pt \
    results/pong/data/test.h5 64
"""

import collections
import sys

import numpy as np
import torch

from spacemoc.data.dataset import AtariDataset
from spacemoc.geometry import FRAME_HEIGHT, FRAME_WIDTH
from spacemoc.models import load_checkpoint
from spacemoc.models.slot.masks import mask_objects


def pixel_span(lo: float, extent: float, frame: int, side: int) -> slice:
    """Frame pixels [lo, lo + extent) -> the model's image pixels (at least one) covering them."""
    start = int(lo * side / frame)
    return slice(start, max(start + 1, int(np.ceil((lo + extent) * side / frame))))


def main(model_path: str, data_path: str, samples: int) -> None:
    torch.set_num_threads(1)
    model = load_checkpoint(model_path)
    cfg = model.config
    side, stride = cfg.img_size, cfg.token_stride
    grid = side // stride
    data = AtariDataset(data_path, with_gt=True)
    figures = collections.defaultdict(list)
    partners = collections.defaultdict(collections.Counter)
    for index in range(min(samples, len(data))):
        item = data[index]
        with torch.no_grad():
            out = model(item["frames"])  # (T,3,H,W) -> masks (T,K,H,W), attention (T,K,N)
        presence, z_where = mask_objects(out["masks"], cfg)
        for t, rows in enumerate(item["gt"]):
            spans = [  # each relevant object with its pixel rows and columns in the image
                (
                    row,
                    pixel_span(row["y"], row["h"], FRAME_HEIGHT, side),
                    pixel_span(row["x"], row["w"], FRAME_WIDTH, side),
                )
                for row in rows[rows["relevant"] == 1]
            ]
            held = (out["attention"][t] > 0.5).view(-1, grid, grid)  # (K,g,g)
            for i, (row, ys, xs) in enumerate(spans):
                name = data.labels[row["label"]]
                peak = out["masks"][t, :, ys, xs].flatten(1).max(1).values  # (K,)
                k = int(peak.argmax())
                figures[name, "largest slot mask in its box"].append(float(peak[k]))
                figures[name, "drawn (that mask > 0.5)"].append(float(peak[k] > 0.5))
                if peak[k] > 0.5:
                    figures[name, "drawn: its slot is read out"].append(float(presence[t, k] > 0))
                    height = float(z_where[t, k, 1]) * side
                    figures[name, "drawn: its slot's box height px"].append(height)
                cy = int((row["y"] + row["h"] / 2) * side / FRAME_HEIGHT) // stride
                cx = int((row["x"] + row["w"] / 2) * side / FRAME_WIDTH) // stride
                owner = int(out["attention"][t, :, cy * grid + cx].argmax())
                shared = "alone"
                for j, (other, oys, oxs) in enumerate(spans):
                    tokens = held[owner, oys.start // stride : oys.stop // stride + 1]
                    if j != i and tokens[:, oxs.start // stride : oxs.stop // stride + 1].any():
                        shared = data.labels[other["label"]]
                        break
                partners[name][shared] += 1
    for (name, what), values in sorted(figures.items()):
        v = np.asarray(values)
        print(f"{name:8s} {what:32s} n={len(v):4d} mean {v.mean():.3f} median {np.median(v):.3f}")
    for name, counter in sorted(partners.items()):
        print(f"{name:8s} the slot attending its centre token also holds: {dict(counter)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 64)
