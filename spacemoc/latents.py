"""Latent files: deterministic inference over a data split, with ground-truth labels per cell.

``results/{game}/{model}/seed{seed}/latents/{split}.h5`` holds, for every frame of the split,

* ``z_pres_prob`` (N,T,G*G) float32, ``z_where`` (N,T,G*G,4) float32 = [sx, sy, cx, cy]
  (centres in [-1,1]), ``z_what`` (N,T,G*G,D) float32: the model's posterior means (z_what of
  absent cells is 0 unless ``all_cells``: attribute ``z_what_all_cells``); with the ``alpha``
  box readout (attribute ``box_readout``) a present cell's z_where is its drawn object's extent;
  with the overlap suppression (attribute ``overlap_suppression``, 0 or absent: off) a cell whose
  box repeats a more present one has z_pres_prob 0 (``spacemoc.geometry.suppress_overlaps``);
* ``box_colour`` (N,T,G*G,3) float32: the colour of a present cell's box in the model's input
  image (``spacemoc.box_colour``; 0 for absent cells), a label feature; files made before it
  have none;
* ``label`` (N,T,G*G) int16: for a *present* cell (z_pres_prob > 0.5) the label index of the
  ground-truth object it matches, -1 when it matches none (and for absent cells);
* ``gt_index`` (N,T,G*G) int32: the matched object's row among that frame's objects, or -1.

Matching is one-to-one and greedy by decreasing z_pres_prob: a cell takes the best unused
ground-truth object whose centre lies closer than half of that object's diagonal (the
centre-distance criterion of spec §5.2, ``spacemoc.metrics.greedy_match``). So a false positive
never inherits a label (the reference's argmax-IoU labelling gave every box one, spec defect 27).

Attributes record the game, its labels, the model (path, training step, SHA-256 of the file) and
the data (path, split, sample count), so ``load_latents`` can refuse a file made from another
model, game or split.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spacemoc.box_colour import box_colours
from spacemoc.files import open_h5
from spacemoc.geometry import (
    FRAME_SIZE,
    in_relevant_area,
    suppress_overlaps,
    z_where_to_boxes,
    z_where_to_corners,
)
from spacemoc.metrics import CENTRE_THRESHOLD, greedy_match, misalignment_matrix

FORMAT = "spacemoc-latents/1"
PRESENT = 0.5  # z_pres_prob above which a cell is an object


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- ground truth


def read_objects(data_path: str | Path) -> list[list[np.ndarray]]:
    """The ``objects`` table of a dataset as [sample][t] structured arrays."""
    from spacemoc.data import read_table

    return read_table(data_path, "objects")


def object_boxes(rows: np.ndarray) -> np.ndarray:
    """Structured object rows -> (K,4) float [x, y, w, h]."""
    return np.stack([rows[k].astype(np.float64) for k in ("x", "y", "w", "h")], axis=-1).reshape(
        -1, 4
    )


def frame_ground_truth(objects) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``objects`` ([sample][t] rows, as ``read_objects`` gives) -> per frame (flattened,
    sample-major) the GT boxes (K,4) and labels (K,)."""
    boxes = [object_boxes(rows) for sample in objects for rows in sample]
    labels = [rows["label"].astype(np.int64) for sample in objects for rows in sample]
    return boxes, labels


def match_cells(z_pres_prob, boxes, gt_rows) -> np.ndarray:
    """Index of the GT object matched to every cell of one frame (-1: absent or unmatched)."""
    matched = np.full(len(z_pres_prob), -1, dtype=np.int64)
    present = np.flatnonzero(z_pres_prob > PRESENT)
    if len(present) == 0 or len(gt_rows) == 0:
        return matched
    width, height = FRAME_SIZE
    scale = np.array([width, height, width, height], dtype=np.float64)
    scores = misalignment_matrix(boxes[present] / scale, object_boxes(gt_rows) / scale)
    matched[present] = greedy_match(scores, z_pres_prob[present], CENTRE_THRESHOLD)
    return matched


# --------------------------------------------------------------------------- inference


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def infer_kwargs(model, all_cells: bool, box_readout: str) -> dict:
    """The ``infer`` arguments for these latents, as far as the model's ``infer`` takes them."""
    params = inspect.signature(model.infer).parameters
    kwargs = {}
    if not all_cells and "present_only" in params:
        kwargs = {"present_only": True, "threshold": PRESENT}
    if box_readout != "glimpse":
        if "box_readout" not in params:
            raise ValueError(f"this model's infer() has no box readout {box_readout!r}")
        kwargs.update(box_readout=box_readout, threshold=PRESENT)
    return kwargs


def infer_batch(
    model, batch: np.ndarray, infer_kwargs: dict, device, overlap_suppression: float = 0.0
) -> dict:
    """uint8 samples (b,T,128,128,3) -> z_pres_prob (b,T,N), z_where (b,T,N,4), z_what (b,T,N,D)
    and box_colour (b,T,N,3) through the model's ``infer`` (the Detector's path: same input, same
    inference), the presence of boxes repeating a more present one set to 0
    (``suppress_overlaps``)."""
    import torch

    from spacemoc.models.inputs import model_input

    b, t = batch.shape[:2]
    flat = batch.reshape(b * t, *batch.shape[2:])
    images = model_input(flat, model.channel_order, device)
    with torch.no_grad():
        out = model.infer(images, **infer_kwargs)
    n = out["z_pres_prob"].shape[-1]
    z_where = _to_numpy(out["z_where"]).reshape(b, t, n, 4)
    prob = suppress_overlaps(
        _to_numpy(out["z_pres_prob"]).reshape(b, t, n), z_where, overlap_suppression, PRESENT
    )
    colours = box_colours(
        flat, z_where_to_corners(z_where).reshape(b * t, n, 4), prob.reshape(b * t, n) > PRESENT
    )
    return {
        "z_pres_prob": prob,
        "z_where": z_where,
        "z_what": _to_numpy(out["z_what"]).reshape(b, t, n, -1),
        "box_colour": colours.reshape(b, t, n, 3),
    }


def match_batch(arrays: dict, objects) -> dict:
    """label and gt_index (b,T,N) of every cell of a batch (-1: absent or unmatched)."""
    prob = arrays["z_pres_prob"]
    boxes = z_where_to_boxes(arrays["z_where"])
    gt_index = np.full(prob.shape, -1, dtype=np.int32)
    label = np.full(prob.shape, -1, dtype=np.int16)
    for b, sample in enumerate(objects):
        for k, rows in enumerate(sample):
            m = match_cells(prob[b, k], boxes[b, k], rows)
            gt_index[b, k] = m
            label[b, k][m >= 0] = rows["label"][m[m >= 0]]
    return {"label": label, "gt_index": gt_index}


# --------------------------------------------------------------------------- reading


@dataclass
class Latents:
    z_pres_prob: np.ndarray  # (N,T,C)
    z_where: np.ndarray  # (N,T,C,4)
    z_what: np.ndarray  # (N,T,C,D)
    label: np.ndarray  # (N,T,C) int, -1 = no matched object
    gt_index: np.ndarray  # (N,T,C) int, -1 = no matched object
    attrs: dict
    box_colour: np.ndarray | None = None  # (N,T,C,3) float, None: made before the feature

    @property
    def game(self) -> str:
        return self.attrs["game"]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.attrs["labels"])

    @property
    def present(self) -> np.ndarray:
        return self.z_pres_prob > PRESENT

    def pixel_boxes(self) -> np.ndarray:
        """(N,T,C,4) [x, y, w, h] in frame pixels."""
        return z_where_to_boxes(self.z_where)

    def predictions(self) -> list[np.ndarray]:
        """Per frame (flattened N*T, sample-major) the (M,5) [x, y, w, h, prob] of present cells."""
        boxes = self.pixel_boxes().reshape(-1, self.z_pres_prob.shape[-1], 4)
        prob = self.z_pres_prob.reshape(len(boxes), -1)
        out = []
        for b, p in zip(boxes, prob, strict=True):
            keep = p > PRESENT
            out.append(np.concatenate([b[keep], p[keep, None]], axis=1))
        return out

    def prediction_features(self) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Per frame the z_what (M,D) and box colours (M,3; None without colours) of the rows of
        ``predictions()``: what a classifier labels them by."""
        n, t, c, d = self.z_what.shape
        z = self.z_what.reshape(n * t, c, d)
        colours = None if self.box_colour is None else self.box_colour.reshape(n * t, c, 3)
        cells = self.cell_indices()
        return (
            [z[f, k] for f, k in enumerate(cells)],
            [None if colours is None else colours[f, k] for f, k in enumerate(cells)],
        )

    def cell_indices(self) -> list[np.ndarray]:
        """Per frame the cell indices behind ``predictions()``' rows."""
        prob = self.z_pres_prob.reshape(-1, self.z_pres_prob.shape[-1])
        return [np.flatnonzero(p > PRESENT) for p in prob]


def load_latents(
    path: str | Path,
    game: str | None = None,
    model_path: str | Path | None = None,
    data_path: str | Path | None = None,
) -> Latents:
    """Read a latents file; with ``game``/``model_path``/``data_path`` check it was made from
    them (a clear ValueError names the mismatch)."""
    from spacemoc.games import get_game

    with open_h5(path, "latents") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a spacemoc latents file ({FORMAT})")
        attrs["labels"] = [str(s) for s in attrs["labels"]]
        if game is not None and get_game(game).name != attrs["game"]:
            raise ValueError(f"{path} holds latents for game {attrs['game']!r}, not {game!r}")
        if model_path is not None and attrs["model_sha256"] != file_sha256(model_path):
            raise ValueError(
                f"{path} was made by the model {attrs['model_path']} "
                f"(step {attrs['model_step']}), not by {model_path}: remake it"
            )
        if data_path is not None:
            with open_h5(data_path, "dataset") as d:
                d_game, d_split = str(d.attrs["game"]), str(d.attrs.get("split", ""))
                d_n = d["frames"].shape[0]
            if (d_game, d_n) != (attrs["game"], attrs["n_samples"]) or (
                d_split and d_split != attrs["split"]
            ):
                raise ValueError(
                    f"{path} was made from {attrs['data_path']} ({attrs['game']}, split "
                    f"{attrs['split']}, {attrs['n_samples']} samples), which does not match "
                    f"{data_path} ({d_game}, split {d_split}, {d_n} samples)"
                )
        names = ("z_pres_prob", "z_where", "z_what", "label", "gt_index", "box_colour")
        arrays = {k: f[k][()] for k in names if k in f}
    if arrays["z_pres_prob"].shape[0] == 0:
        raise ValueError(f"{path} holds no samples")
    return Latents(**arrays, attrs=attrs)


def collect_encodings(lat: Latents, subset: str = "all") -> dict[str, np.ndarray]:
    """z_what and label of the present cells matched to a GT object, flattened.

    ``all``: every matched cell; ``relevant``: cells matched to a relevant label whose box lies
    in the game's relevant area. Returns z_what (n,D), label (n,), frame (n,) (flat frame index),
    cell (n,), box (n,4) (the cell's [x, y, w, h] in frame pixels), gt_index (n,) (the matched
    object's row among its frame's objects) and, where the latents have them, colour (n,3).
    """
    from spacemoc.games import get_game

    if subset not in ("all", "relevant"):
        raise ValueError(f"unknown subset {subset!r}; valid subsets: all, relevant")
    keep = lat.present & (lat.label >= 0)
    if subset == "relevant":
        game_row = get_game(lat.game)
        keep &= np.isin(lat.label, game_row.relevant_indices)
        keep &= in_relevant_area(game_row, lat.pixel_boxes())
    n, t, c = keep.shape
    flat = np.flatnonzero(keep.reshape(-1))
    colour = {} if lat.box_colour is None else {"colour": lat.box_colour.reshape(-1, 3)[flat]}
    return {
        **colour,
        "z_what": lat.z_what.reshape(n * t * c, -1)[flat],
        "label": lat.label.reshape(-1)[flat].astype(np.int64),
        "frame": flat // c,
        "cell": flat % c,
        "box": lat.pixel_boxes().reshape(n * t * c, 4)[flat],
        "gt_index": lat.gt_index.reshape(-1)[flat].astype(np.int64),
    }
