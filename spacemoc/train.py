"""The training stage: SPACE + MOC on a dataset file, with exact resume from periodic checkpoints.

``train(data_path, out_dir, game=..., config=..., seed=...)`` writes into ``out_dir``:

- ``model.pt``: the final weights (format ``spacemoc/1``), written once, at the end, atomically;
- ``checkpoints/step_XXXXXXXXX.pt``: every ``train.checkpoint_every`` steps, with both optimiser
  states, the MOC scheduler state, every RNG state and the data position, so that a killed run
  resumes from its last checkpoint and continues as if it had never stopped;
- ``logs/``: TensorBoard scalars and images, and ``logs/train_curves.csv`` (kept across resumes);
- ``train_curves.csv``: a copy of the curves, written at the end beside ``model.pt``.

Checkpoints record a fingerprint of the training data: checkpoints of other data are moved to
``checkpoints/previous_data/`` and training starts afresh (said in the log). Training stops with
an error naming the step when the loss or a weight stops being finite; a non-finite model is
never written.

The live curves stay in ``logs/`` because Snakemake deletes the outputs of a failed job, and
``train_curves.csv`` is an output; checkpoints and logs are not outputs, so a rerun resumes.
"""

from __future__ import annotations

import csv
import dataclasses
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spacemoc.atomic import atomic_path, remove_orphan_temps
from spacemoc.config import validate_config, with_defaults
from spacemoc.devices import resolve_device
from spacemoc.files import h5_fingerprint
from spacemoc.games import get_game
from spacemoc.logs import StatusLine
from spacemoc.model.moc import MocConfig, MocLoss

CHECKPOINT_NAME = re.compile(r"^step_(\d{9})\.pt$")
KEEP_CHECKPOINTS = 3
PREVIOUS_DATA_DIR = "previous_data"  # in checkpoints/: the checkpoints of other training data

# Step boundaries multiplied by train.anneal_scale (prior/temperature annealing, fixed-alpha
# warm-up, linear MOC scheduler), so that a short budget reaches the end values.
SPACE_ANNEAL_KEYS = (
    "z_pres_start_step",
    "z_pres_end_step",
    "z_scale_mean_start_step",
    "z_scale_mean_end_step",
    "tau_start_step",
    "tau_end_step",
    "fix_alpha_steps",
)
MOC_ANNEAL_KEYS = ("motion_cooling_start_step", "motion_cooling_end_step")

# Columns of train_curves.csv.
CURVE_COLUMNS = (
    "step",
    "total_loss",
    "elbo_loss",
    "moc_loss",
    "motion_loss",
    "oc_loss",
    "lambda_align",
    "flow_loss_z_pres",
    "flow_loss_z_where",
    "flow_loss_alpha_map",
    "objects_detected",
    "count",
    "mse",
    "log_like",
    "kl_z_what",
    "kl_z_where",
    "kl_z_pres",
    "kl_z_depth",
    "kl_bg",
    "step_time_s",
    "data_time_s",
    "elapsed_s",
)


# ----------------------------------------------------------------------------------------------
# configuration


def build_configs(game: str, config: dict | None = None):
    """(SpaceConfig, MocConfig) for ``game``.

    Precedence, lowest first: the reference defaults (the dataclasses), the game table's
    overrides, ``config["model"]``, ``config["game_overrides"][game]``. Then ``train.compositing``
    sets the compositing mode and ``train.anneal_scale`` multiplies the annealing step boundaries.
    Unknown keys raise a ValueError that names their source and the valid keys.
    """
    from spacemoc.model import SpaceConfig

    config = with_defaults(config)
    row = get_game(game)
    space: dict[str, Any] = {"compositing": config["train"]["compositing"]}
    moc: dict[str, Any] = {}
    layers = [("the game table", row.space_overrides, row.moc_overrides)]
    model = config["model"]
    layers.append(("config model", model.get("space", {}), model.get("moc", {})))
    for name, overrides in config["game_overrides"].items():
        if get_game(name).name == row.name:
            layers.append(
                (
                    f"config game_overrides.{name}",
                    overrides.get("space", {}),
                    overrides.get("moc", {}),
                )
            )
    for source, space_layer, moc_layer in layers:
        _check_keys(SpaceConfig, space_layer, f"{source} (space)")
        _check_keys(MocConfig, moc_layer, f"{source} (moc)")
        space.update(space_layer)
        moc.update(moc_layer)

    if moc.get("motion_input"):  # a MOC key in the reference; the model needs to know
        space["motion_input"] = True
    scale = float(config["train"]["anneal_scale"])
    if scale != 1.0:
        defaults_space, defaults_moc = SpaceConfig(), MocConfig()
        for key in SPACE_ANNEAL_KEYS:
            space[key] = _scaled(space.get(key, getattr(defaults_space, key)), scale)
        for key in MOC_ANNEAL_KEYS:
            moc[key] = _scaled(moc.get(key, getattr(defaults_moc, key)), scale)
    return SpaceConfig.from_dict(space), MocConfig.from_dict(moc)


# Python types a config value may have for a dataclass field of each annotated type.
_ACCEPTED_TYPES = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,)}


def _check_keys(cls, values: dict, source: str) -> None:
    """Unknown keys and values of the wrong type (a string where a number belongs) are named."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} key(s) {', '.join(unknown)} in {source}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    for key, value in values.items():
        accepted = _ACCEPTED_TYPES.get(str(fields[key].type))
        wrong_bool = isinstance(value, bool) and bool not in (accepted or ())
        if accepted and (not isinstance(value, accepted) or wrong_bool):
            raise ValueError(
                f"{cls.__name__}.{key} in {source} must be of type {fields[key].type}, "
                f"got {value!r} ({type(value).__name__})"
            )


def _scaled(value, scale: float):
    if value <= 0:  # e.g. fix_alpha_steps <= 0 means "never"; keep the sentinel
        return value
    return type(value)(round(value * scale))


# ----------------------------------------------------------------------------------------------
# data order: a pure function of (seed, step), so a resumed run draws the same batches


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches of sample indices for steps ``start, start+1, ... stop-1``.

    Epoch e uses the permutation of a generator seeded with (seed, e); step s takes batch
    ``s mod batches_per_epoch`` of epoch ``s // batches_per_epoch``. Batches have exactly
    ``batch_size`` samples (the remainder of an epoch is dropped) unless the dataset is smaller.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int):
        self.n, self.seed, self.start, self.stop = n, seed, start, stop
        self.batch_size = min(batch_size, n)
        self.per_epoch = n // self.batch_size

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of ``step``."""
        return divmod(step, self.per_epoch)

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = self.position(self.start)
        order = self._permutation(epoch)
        for step in range(self.start, self.stop):
            e, b = self.position(step)
            if e != epoch:
                epoch, order = e, self._permutation(e)
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


# ----------------------------------------------------------------------------------------------
# RNG state and checkpoints


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG state as tensors and plain values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the periodic checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = CHECKPOINT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _load_latest_checkpoint(directory: Path) -> dict | None:
    """The newest readable checkpoint (an unreadable newest one is skipped with a warning)."""
    for step, path in reversed(list_checkpoints(directory)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a damaged file: fall back to the previous one
            print(f"warning: cannot read checkpoint {path} ({err}); trying the previous one")
            continue
        if state.get("step") != step:
            raise ValueError(f"checkpoint {path} holds step {state.get('step')}, not {step}")
        state["path"] = str(path)
        return state
    return None


def _set_aside(checkpoint_dir: Path) -> Path:
    """Move the periodic checkpoints into ``previous_data/`` (replacing what an earlier data
    change put there), so a fresh start neither continues nor deletes them."""
    aside = checkpoint_dir / PREVIOUS_DATA_DIR
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for _, path in list_checkpoints(checkpoint_dir):
        path.rename(aside / path.name)
    return aside


def _first_non_finite(model) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, if any."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            return name
    return None


# Settings that do not change the numbers (windowed and dense compositing agree).
_RESUME_MAY_CHANGE = {"compositing"}


def _check_resumable(state: dict, expected: dict) -> None:
    """A checkpoint from another configuration must not be continued silently."""
    for key, value in expected.items():
        saved = state.get(key)
        if isinstance(value, dict) and isinstance(saved, dict):
            differ = sorted(
                k
                for k in set(value) | set(saved)
                if value.get(k) != saved.get(k) and k not in _RESUME_MAY_CHANGE
            )
            if differ:
                details = ", ".join(f"{k}: {saved.get(k)!r} -> {value.get(k)!r}" for k in differ)
                raise ValueError(
                    f"checkpoint {state['path']} was written with another {key} ({details}); "
                    "use a fresh output directory or restore the configuration"
                )
        elif saved != value:
            raise ValueError(
                f"checkpoint {state['path']} was written with {key}={saved!r}, now {value!r}; "
                "use a fresh output directory or restore the configuration"
            )


# ----------------------------------------------------------------------------------------------
# logging helpers


def _scalar(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().sum())
    return float(value)


def _mean(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean())
    return float(value)


def _curve_row(step, loss, elbo_loss, moc_log, log, images, timings) -> dict:
    row = {
        "step": step,
        "total_loss": _scalar(loss),
        "elbo_loss": _scalar(elbo_loss),
        "moc_loss": _scalar(moc_log["moc_loss"]),
        "motion_loss": _scalar(moc_log["motion_loss"]),
        "oc_loss": _scalar(moc_log["oc_loss"]),
        "lambda_align": moc_log["lambda_align"],
        "flow_loss_z_pres": _scalar(moc_log["flow_loss_z_pres"]),
        "flow_loss_z_where": _scalar(moc_log["flow_loss_z_where"]),
        "flow_loss_alpha_map": _scalar(moc_log["flow_loss_alpha_map"]),
        "objects_detected": int(moc_log["objects_detected"]),
        # per image: sampled presence, reconstruction and KL terms
        "count": _scalar(log["z_pres"]) / images,
        "mse": _mean(log["mse"]),
        "log_like": _mean(log["log_like"]),
    }
    for key in ("kl_z_what", "kl_z_where", "kl_z_pres", "kl_z_depth", "kl_bg"):
        row[key] = _mean(log[key])
    row.update(timings)
    return row


# TensorBoard tags of the reference (spec §4), prefixed with train/.
_TB_MOC_KEYS = (
    "objects_detected",
    "m_scheduling_weight",
    "oc_scheduling_weight",
    "moc_loss",
    "oc_loss",
    "motion_loss",
    "z_what_loss_objects",
    "flow_loss_z_pres",
    "flow_loss_z_where",
    "flow_loss_alpha_map",
    "flow_loss_z_pres_scaled",
    "flow_loss_z_where_scaled",
    "flow_loss_alpha_map_scaled",
    "z_what_loss_objects_scaled",
    "motion_loss_scaled",
    "oc_loss_scaled",
)
_TB_KL_TAGS = {
    "What_KL": "kl_z_what",
    "Where_KL": "kl_z_where",
    "Pres_KL": "kl_z_pres",
    "Depth_KL": "kl_z_depth",
    "Bg_KL": "kl_bg",
}


def _log_scalars(writer, step, row, moc_log) -> None:
    writer.add_scalar("train/total_loss", row["total_loss"], step)
    writer.add_scalar("train/elbo_loss", row["elbo_loss"], step)
    for key in _TB_MOC_KEYS:
        writer.add_scalar(f"train/{key}", _scalar(moc_log[key]), step)
    for tag, key in _TB_KL_TAGS.items():
        writer.add_scalar(f"train/{tag}", row[key], step)
    for key in ("count", "mse", "log_like", "step_time_s"):
        writer.add_scalar(f"train/{key}", row[key], step)


def draw_boxes(images: torch.Tensor, z_where: torch.Tensor, present: torch.Tensor, colour):
    """Draw the outlines of the present boxes onto copies of ``images`` (N,3,H,W).

    ``z_where`` (N,M,4) = [scale_x, scale_y, centre_x, centre_y] with centres in [-1,1].
    """
    images = images.clone()
    _, _, height, width = images.shape
    colour = torch.tensor(colour, dtype=images.dtype).view(3, 1)
    for i, (boxes, keep) in enumerate(zip(z_where.cpu(), present.cpu(), strict=True)):
        for sx, sy, cx, cy in boxes[keep].tolist():
            x0 = int(np.clip(((cx + 1) / 2 - sx / 2) * width, 0, width - 1))
            x1 = int(np.clip(((cx + 1) / 2 + sx / 2) * width, 0, width - 1))
            y0 = int(np.clip(((cy + 1) / 2 - sy / 2) * height, 0, height - 1))
            y1 = int(np.clip(((cy + 1) / 2 + sy / 2) * height, 0, height - 1))
            images[i, :, y0, x0 : x1 + 1] = colour
            images[i, :, y1, x0 : x1 + 1] = colour
            images[i, :, y0 : y1 + 1, x0] = colour
            images[i, :, y0 : y1 + 1, x1] = colour
    return images


@torch.no_grad()
def _log_images(writer, step, batch_data, log, batch, steps, grid) -> None:
    """Frame 2 (or the last) of the first 8 sequences: input, reconstruction, fg, bg, alpha map,
    predicted boxes (red) and motion boxes (green) on the input."""
    t = min(2, steps - 1)
    index = torch.arange(min(batch, 8)) * steps + t  # b-major flattening
    n = grid * grid
    images = batch_data["frames"][: len(index), t].cpu()
    predicted = log["z_where_pure"].view(-1, n, 4)[index].cpu()
    present = log["z_pres_prob_pure"].view(-1, n)[index].cpu() > 0.5
    motion_where = batch_data["motion_z_where"][: len(index), t].view(-1, n, 4).cpu()
    motion_present = batch_data["motion_z_pres"][: len(index), t].view(-1, n).cpu() > 0.5
    boxes = draw_boxes(images, motion_where, motion_present, (0.0, 1.0, 0.0))
    boxes = draw_boxes(boxes, predicted, present, (1.0, 0.0, 0.0))
    writer.add_images("train/0-image", images, step)
    writer.add_images("train/1-boxes", boxes, step)
    for tag, key in (("2-reconstruction", "y"), ("3-foreground", "fg"), ("4-background", "bg")):
        if key in log:
            writer.add_images(f"train/{tag}", log[key][index].detach().cpu().clamp(0, 1), step)
    alpha = log["alpha_map"][index].detach().cpu().clamp(0, 1)
    writer.add_images("train/5-alpha_map", alpha.expand(-1, 3, -1, -1), step)
    motion = batch_data["motion"][: len(index), t].unsqueeze(1).cpu()
    writer.add_images("train/6-motion", motion.expand(-1, 3, -1, -1), step)


class _Curves:
    """train_curves.csv, appended row by row; on resume rows after the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if resume_step > 0 and path.exists():
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.handle = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=CURVE_COLUMNS)

    def append(self, row: dict) -> None:
        self.writer.writerow({k: row[k] for k in CURVE_COLUMNS})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# ----------------------------------------------------------------------------------------------
# the stage


def make_optimizers(model, lr_fg: float, lr_bg: float):
    """The reference recipe: RMSprop for the foreground, Adam for the background."""
    return (
        torch.optim.RMSprop(model.fg_module.parameters(), lr=lr_fg),
        torch.optim.Adam(model.bg_module.parameters(), lr=lr_bg),
    )


def training_step(
    model,
    moc,
    optimizers,
    batch_data: dict,
    step: int,
    clip_norm: float,
    precision: str = "float32",
):
    """One step: forward, MOC loss, backward, clipping of all parameters together, fg then bg
    optimiser. Returns (loss, elbo_loss, moc_loss, space_log, moc_log).

    ``precision="bfloat16"`` runs forward and loss under autocast (mixed precision: weights,
    gradients and optimiser state stay float32; autocast keeps sums and losses in float32)."""
    frames = batch_data["frames"]  # (B,T,3,128,128)
    if model.config.motion_input:  # the motion map as a 4th channel: (B,T,4,128,128)
        frames = torch.cat([frames, batch_data["motion"].unsqueeze(2)], dim=2)
    device_type = frames.device.type
    with torch.autocast(device_type, torch.bfloat16, enabled=precision == "bfloat16"):
        elbo_loss, log = model(frames, global_step=step)
        moc_loss, moc_log = moc(
            log,
            batch_data["motion"],
            batch_data["motion_z_pres"],
            batch_data["motion_z_where"],
            global_step=step,
        )
        loss = elbo_loss.float() + moc_loss.float()
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, clip_norm)
    for optimizer in optimizers:
        optimizer.step()
    return loss, elbo_loss, moc_loss, log, moc_log


def train(
    data_path: str | Path,
    out_dir: str | Path,
    *,
    game: str | None = None,
    config: dict | None = None,
    seed: int = 0,
    device: str | None = "auto",
    threads: int | None = None,
    callback: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train SPACE+MOC on ``data_path`` (a dataset HDF5 file); return the path of ``model.pt``.

    ``config`` is a spacemoc config dict (missing keys take the schema defaults); the budget and
    the optimisers come from its ``train`` section. ``device``: "auto" uses ``train.device``
    (itself "auto" = CUDA if available, else CPU). ``threads``: torch threads (default
    ``config["threads"]``). If ``out_dir/checkpoints`` holds checkpoints of this configuration,
    training continues from the newest. ``callback(step, row)`` runs after every step.
    """
    from tqdm.auto import tqdm

    from spacemoc.data import AtariDataset, collate
    from spacemoc.model import Space, save_checkpoint

    config = validate_config(config or {})
    train_cfg = config["train"]
    out_dir = Path(out_dir)
    checkpoint_dir = out_dir / "checkpoints"
    log_dir = out_dir / "logs"
    threads = int(threads or config["threads"])
    torch.set_num_threads(threads)
    device = resolve_device(train_cfg["device"] if device in (None, "auto") else device)

    dataset = AtariDataset(data_path, grid_size=16)  # reopened below with the model's grid
    game = game or dataset.game
    if get_game(game).name != get_game(dataset.game).name:
        raise ValueError(f"dataset {data_path} holds game {dataset.game!r}, not {game!r}")
    space_cfg, moc_cfg = build_configs(game, config)
    if space_cfg.G != dataset.grid_size:
        dataset = AtariDataset(data_path, grid_size=space_cfg.G)
    if dataset.T < 2:
        raise ValueError(f"{data_path} has T={dataset.T} frames per sample; MOC needs T >= 2")

    steps = int(train_cfg["steps"])
    for orphan in [*remove_orphan_temps(checkpoint_dir), *remove_orphan_temps(out_dir)]:
        print(f"removed {orphan}, a temporary file of an interrupted run")
    identity = {
        "data_fingerprint": h5_fingerprint(data_path),
        "model_config": space_cfg.to_dict(),
        "moc_config": moc_cfg.to_dict(),
        "seed": int(seed),
        "batch_size": int(train_cfg["batch_size"]),
        "lr_fg": float(train_cfg["lr_fg"]),
        "lr_bg": float(train_cfg["lr_bg"]),
        "clip_norm": float(train_cfg["clip_norm"]),
        "precision": train_cfg["precision"],
    }

    seed_everything(seed)
    model = Space(space_cfg).to(device)
    model.train()
    optimizer_fg, optimizer_bg = make_optimizers(model, train_cfg["lr_fg"], train_cfg["lr_bg"])
    moc = MocLoss(moc_cfg, grid=space_cfg.G)

    start = 0
    state = _load_latest_checkpoint(checkpoint_dir)
    if state is not None and state.get("data_fingerprint") != identity["data_fingerprint"]:
        aside = _set_aside(checkpoint_dir)
        print(
            f"{state['path']} (step {state['step']}) was trained on other data than {data_path} "
            f"(data fingerprint {state.get('data_fingerprint') or 'not recorded'}, now "
            f"{identity['data_fingerprint']}): starting afresh at step 0; its checkpoints are "
            f"kept in {aside}"
        )
        state = None
    if state is not None:
        state.setdefault("precision", "float32")  # checkpoints from before the option
        _check_resumable(state, {**identity, "game": get_game(game).name})
        model.load_state_dict(state["state_dict"])
        optimizer_fg.load_state_dict(state["optimizer_fg"])
        optimizer_bg.load_state_dict(state["optimizer_bg"])
        moc.load_state_dict(state["moc"])
        set_rng_state(state["rng"])
        start = int(state["step"])
        print(f"resuming from {state['path']} at step {start} of {steps}")
        del state
    if start > steps:
        raise ValueError(
            f"{checkpoint_dir} holds step {start}, beyond train.steps={steps}; "
            "raise train.steps or use a fresh output directory"
        )

    sampler = StepBatchSampler(len(dataset), identity["batch_size"], seed, start, steps)
    # An own generator: creating the iterator must not draw from the global RNG, or a resumed run
    # would sample differently from an uninterrupted one.
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    curves = _Curves(log_dir / "train_curves.csv", start)
    from torch.utils.tensorboard import SummaryWriter

    # purge_step: TensorBoard drops the events a resumed (or restarted) run writes again
    writer = SummaryWriter(str(log_dir), purge_step=start)

    def save(step: int, path: Path, *, periodic: bool) -> None:
        extra = {
            "data_fingerprint": identity["data_fingerprint"],
            "moc_config": identity["moc_config"],
            "seed": identity["seed"],
            "train_config": dict(train_cfg),
        }
        if periodic:
            epoch, batch_in_epoch = sampler.position(step)
            extra.update(
                {
                    k: v
                    for k, v in identity.items()
                    if k not in ("model_config", "moc_config", "data_fingerprint")
                },
                optimizer_fg=optimizer_fg.state_dict(),
                optimizer_bg=optimizer_bg.state_dict(),
                moc=moc.state_dict(),
                rng=rng_state(),
                data_position={"epoch": epoch, "batch": batch_in_epoch},
            )
        save_checkpoint(
            path, model, game=get_game(game).name, labels=dataset.labels, step=step, extra=extra
        )

    clip_norm = identity["clip_norm"]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    began = time.perf_counter()
    status = StatusLine(f"train {game} seed {seed}", steps)
    progress = tqdm(
        total=steps, initial=start, desc=f"train {game} seed {seed}", unit="step", mininterval=2.0
    )
    data_clock = time.perf_counter()
    try:
        for step, batch_data in enumerate(loader, start=start):
            batch_data = {k: v.to(device, non_blocking=True) for k, v in batch_data.items()}
            step_clock = time.perf_counter()
            data_time = step_clock - data_clock
            batch, frames_per_sample = batch_data["frames"].shape[:2]  # (B,T,3,128,128)
            loss, elbo_loss, moc_loss, log, moc_log = training_step(
                model,
                moc,
                (optimizer_fg, optimizer_bg),
                batch_data,
                step,
                clip_norm,
                train_cfg["precision"],
            )
            sync()
            done = step + 1
            broken = None if torch.isfinite(loss) else f"loss {loss.item()}"
            if broken is None and (name := _first_non_finite(model)) is not None:
                broken = f"weight {name} is not finite after the update"
            if broken is not None:
                raise FloatingPointError(
                    f"training diverged at step {done} of {steps}: {broken} (elbo "
                    f"{elbo_loss.item()}, moc {moc_loss.item()}; lr_fg {identity['lr_fg']}, "
                    f"lr_bg {identity['lr_bg']}); no model written, the last checkpoint is kept"
                )
            timings = {
                "step_time_s": time.perf_counter() - step_clock,
                "data_time_s": data_time,
                "elapsed_s": time.perf_counter() - began,
            }
            row = _curve_row(
                done, loss, elbo_loss, moc_log, log, batch * frames_per_sample, timings
            )
            if done % train_cfg["log_every"] == 0 or done == steps:
                curves.append(row)
                _log_scalars(writer, done, row, moc_log)
            if done % train_cfg["image_every"] == 0 or done == steps:
                _log_images(writer, done, batch_data, log, batch, frames_per_sample, space_cfg.G)
            if done % train_cfg["checkpoint_every"] == 0 or done == steps:
                save(done, checkpoint_dir / f"step_{done:09d}.pt", periodic=True)
                for _, old in list_checkpoints(checkpoint_dir)[:-KEEP_CHECKPOINTS]:
                    old.unlink(missing_ok=True)
            progress.update(1)
            status.update(done, start, loss=f"{row['total_loss']:.4g}")
            progress.set_postfix(
                loss=f"{row['total_loss']:.4g}",
                moc=f"{row['moc_loss']:.4g}",
                lam=f"{row['lambda_align']:.2f}",
                refresh=False,
            )
            del log, moc_log, loss, elbo_loss, moc_loss
            if callback is not None:
                callback(done, row)
            data_clock = time.perf_counter()
    finally:
        progress.close()
        writer.close()
        curves.close()

    model_path = out_dir / "model.pt"
    save(steps, model_path, periodic=False)
    with atomic_path(out_dir / "train_curves.csv") as tmp:
        shutil.copyfile(log_dir / "train_curves.csv", tmp)
    print(f"wrote {model_path} after {steps} steps ({time.perf_counter() - began:.1f} s)")
    return model_path
