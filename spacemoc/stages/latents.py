"""The latents stage: a model's deterministic inference over every frame of a data split, with
the ground-truth label of every cell, written as a latents file (format: ``spacemoc.latents``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spacemoc.atomic import atomic_h5
from spacemoc.files import open_h5
from spacemoc.latents import (
    FORMAT,
    PRESENT,
    file_sha256,
    infer_batch,
    infer_kwargs,
    match_batch,
    read_objects,
)
from spacemoc.logs import StatusLine


def compute_latents(
    model_path: str | Path,
    data_path: str | Path,
    out_path: str | Path,
    batch_size: int = 16,
    device: str = "auto",
    model=None,
    all_cells: bool = False,
    box_readout: str | None = None,
    overlap_suppression: float | None = None,
) -> Path:
    """Run the model over every frame of ``data_path`` and write ``out_path`` (see module doc).

    ``model``: an already loaded model (anything with ``infer``, ``game``, ``labels``,
    ``channel_order``, ``num_objects``); by default ``spacemoc.models.load_checkpoint
    (model_path)``. ``batch_size`` counts samples (each of T frames). Unless ``all_cells``, z_what
    is encoded only for present cells (zero elsewhere): the glimpse encoder is most of the
    inference time and the metrics use present cells only. ``box_readout``: how boxes are read
    off the model, ``"glimpse"`` (z_where, the reference) or ``"alpha"`` (the drawn object's
    extent, spacemoc.models.readouts); the stored z_where are those boxes. None: the readout the
    model's run folder records, else the config schema's default (``resolve_box_readout``), as
    the workflow. ``overlap_suppression``: drop a present box that a more present one covers by
    at least this share of the smaller (0: off; ``spacemoc.geometry.suppress_overlaps``); None:
    what the run folder records, else the schema's default. ``device``: auto, cpu, cuda or cuda:N.
    """
    from spacemoc.devices import resolve_device
    from spacemoc.models.readouts import resolve_box_readout, resolve_overlap_suppression

    device = resolve_device(device)
    model = _load_model(model_path, model, device)
    box_readout = resolve_box_readout(box_readout, folder=Path(model_path).parent, model=model)
    overlap_suppression = resolve_overlap_suppression(
        overlap_suppression, folder=Path(model_path).parent
    )
    data = _check_data(data_path, model, model_path)
    kwargs = infer_kwargs(model, all_cells, box_readout)
    out_path = Path(out_path)
    with atomic_h5(out_path) as dst:
        _write_latents(dst, model, data_path, data, kwargs, batch_size, device, overlap_suppression)
        dst.attrs.update(
            format=FORMAT,
            game=data["game"],
            labels=list(data["labels"]),
            split=data["split"],
            n_samples=data["n"],
            T=data["T"],
            G=int(getattr(model.config, "G", 0)),
            num_objects=int(_num_objects(model)),
            model_path=str(model_path),
            model_step=int(getattr(model, "step", -1) or -1),
            model_sha256=file_sha256(model_path) if Path(model_path).is_file() else "",
            data_path=str(data_path),
            present_threshold=PRESENT,
            z_what_all_cells=bool(all_cells or "present_only" not in kwargs),
            box_readout=box_readout,
            overlap_suppression=overlap_suppression,
        )
    return out_path


def _load_model(model_path, model, device):
    """The model given (moved to ``device`` if it is elsewhere) or the one at ``model_path``."""
    if model is None:
        from spacemoc.models import load_checkpoint

        return load_checkpoint(model_path, map_location=device)
    if hasattr(model, "to"):
        model = model.to(device)
    if hasattr(model, "eval"):
        model.eval()
    return model


def _num_objects(model) -> int:
    """N, the object slots per frame of ``model.infer`` (SPACE: the G*G cells)."""
    n = getattr(model, "num_objects", None)
    return int(n) if n is not None else int(model.config.G) ** 2


def _check_data(data_path, model, model_path) -> dict:
    """The dataset's game, labels, split and size, checked against the model's."""
    with open_h5(data_path, "dataset") as f:
        data_game = str(f.attrs["game"])
        split = str(f.attrs.get("split", Path(data_path).stem))
        data_labels = tuple(str(s) for s in f.attrs["labels"])
        n, t = f["frames"].shape[:2]
    game = getattr(model, "game", None) or data_game  # reference .pth files name no game
    labels = tuple(getattr(model, "labels", None) or data_labels)
    if data_game != game:
        raise ValueError(
            f"model {model_path} is for game {game!r} but data {data_path} is {data_game!r}"
        )
    if labels != data_labels:
        raise ValueError(f"label lists differ: model {labels} vs data {data_labels}")
    if n == 0:
        raise ValueError(f"{data_path} holds no samples: nothing to encode")
    return {"game": game, "labels": labels, "split": split, "n": n, "T": t}


def _write_latents(
    dst, model, data_path, data, infer_kwargs, batch_size, device, overlap_suppression
) -> None:
    """Infer every sample of ``data_path`` in batches and write the arrays into ``dst``."""
    from tqdm import tqdm

    n, t, split = data["n"], data["T"], data["split"]
    objects = read_objects(data_path)
    datasets = {}
    status = StatusLine(f"latents {data['game']} {split}", n, unit="sample")
    with open_h5(data_path, "dataset") as src:
        frames = src["frames"]
        for start in tqdm(range(0, n, batch_size), desc=f"latents {split}", unit="batch"):
            stop = min(start + batch_size, n)
            status.update(stop)
            batch = np.stack([frames[i] for i in range(start, stop)])  # (b,T,128,128,3)
            arrays = infer_batch(model, batch, infer_kwargs, device, overlap_suppression)
            arrays.update(match_batch(arrays, objects[start:stop]))
            if not datasets:
                datasets = _create(
                    dst, n, t, arrays["z_pres_prob"].shape[-1], arrays["z_what"].shape[-1]
                )
            for name, value in arrays.items():
                datasets[name][start:stop] = value


def _create(dst, n, t, cells, dim):
    opts = {"compression": "gzip", "compression_opts": 4}
    return {
        "z_pres_prob": dst.create_dataset(
            "z_pres_prob", (n, t, cells), "f4", chunks=(1, t, cells), **opts
        ),
        "z_where": dst.create_dataset(
            "z_where", (n, t, cells, 4), "f4", chunks=(1, t, cells, 4), **opts
        ),
        "z_what": dst.create_dataset(
            "z_what", (n, t, cells, dim), "f4", chunks=(1, t, cells, dim), **opts
        ),
        "box_colour": dst.create_dataset(
            "box_colour", (n, t, cells, 3), "f4", chunks=(1, t, cells, 3), **opts
        ),
        "label": dst.create_dataset("label", (n, t, cells), "i2", chunks=(1, t, cells), **opts),
        "gt_index": dst.create_dataset(
            "gt_index", (n, t, cells), "i4", chunks=(1, t, cells), **opts
        ),
    }
