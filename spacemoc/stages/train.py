"""The training stage: a model family (SPACE + MOC by default) on a dataset file, with exact
resume from periodic checkpoints. The family builds the model and its trainer (optimisers,
losses, what is logged); this module runs it: data order, RNG state, checkpoints, curves.

``train(data_path, out_dir, game=..., config=..., seed=...)`` writes into ``out_dir``:

- ``model.pt``: the final weights (format ``spacemoc/1``), written once, at the end, atomically;
- ``checkpoints/step_XXXXXXXXX.pt``: every ``train.checkpoint_every`` steps, with both optimiser
  states, the MOC scheduler state, every RNG state and the data position, so that a killed run
  resumes from its last checkpoint and continues as if it had never stopped;
- ``logs/``: TensorBoard scalars and images, and ``logs/train_curves.csv`` (kept across resumes);
- ``train_curves.csv``: a copy of the curves, written at the end beside ``model.pt``.

Checkpoints record a fingerprint of the training data and every setting that changes the weights.
Checkpoints that cannot be continued (other data, another setting, a step beyond ``train.steps``)
are moved to a new folder ``checkpoints/previous/<n>/`` and training starts afresh, or continues
a set put aside earlier that can be (a setting changed and changed back); the log says which and
why. Training stops with an error naming the step when the loss or a weight stops being finite; a
non-finite model is never written.

The live curves stay in ``logs/`` because Snakemake deletes the outputs of a failed job, and
``train_curves.csv`` is an output; checkpoints and logs are not outputs, so a rerun resumes.
"""

from __future__ import annotations

import csv
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from spacemoc.atomic import atomic_path, remove_orphan_temps
from spacemoc.config import validate_config
from spacemoc.devices import resolve_device
from spacemoc.files import h5_fingerprint
from spacemoc.games import get_game
from spacemoc.logs import StatusLine
from spacemoc.models import DEFAULT_FAMILY, get_family
from spacemoc.rng import rng_state, seed_everything, set_rng_state

CHECKPOINT_NAME = re.compile(r"^step_(\d{9})\.pt$")
KEEP_CHECKPOINTS = 3
SET_ASIDE_DIR = "previous"  # in checkpoints/: a numbered folder per set that cannot be continued


def family_name(config: dict | None) -> str:
    """The model family a config trains: ``model.family``, default ``space``."""
    return str(((config or {}).get("model") or {}).get("family", DEFAULT_FAMILY))


def build_configs(game: str, config: dict | None = None):
    """(model config, loss config) of ``game`` for the config's family (SPACE: SpaceConfig and
    MocConfig; precedence, lowest first: the dataclass defaults, the game table,
    ``config["model"]``, ``config["game_overrides"][game]``; ``train.anneal_scale`` scales the
    annealing step boundaries)."""
    return get_family(family_name(config)).build_configs(game, config)


def needs_background(game: str, config: dict | None = None) -> bool:
    """Whether the config's model of ``game`` must be given the game's background to train (a
    model config's ``needs_background``; SPACE never)."""
    model_cfg, _ = build_configs(game, validate_config(config or {}))
    return bool(getattr(model_cfg, "needs_background", False))


def background_looks_for_model(path, game: str) -> np.ndarray:
    """The game's background file (``spacemoc.data.background``) as the model sees frames:
    (K,128,128,3) uint8, each look resized as ``spacemoc.data.preprocess`` resizes frames."""
    from spacemoc.data.background import load_background
    from spacemoc.data.motion import as_looks
    from spacemoc.data.preprocess import preprocess_frames

    return preprocess_frames(as_looks(load_background(path, game)))


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
# checkpoints


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
    """Move the periodic checkpoints into a new folder ``previous/<n>/``, so that a fresh start
    neither continues nor deletes them."""
    newest = _sets_aside(checkpoint_dir)[:1]
    aside = checkpoint_dir / SET_ASIDE_DIR / str(int(newest[0].name) + 1 if newest else 1)
    aside.mkdir(parents=True)
    for _, path in list_checkpoints(checkpoint_dir):
        path.rename(aside / path.name)
    return aside


def _sets_aside(checkpoint_dir: Path) -> list[Path]:
    """The folders of ``previous/``, newest first."""
    root = checkpoint_dir / SET_ASIDE_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name))


def _first_non_finite(model) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, if any."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            return name
    return None


# Settings that do not change the numbers (windowed and dense compositing agree).
_RESUME_MAY_CHANGE = {"compositing"}


def _normalise(state: dict, family) -> dict:
    """A checkpoint's record in today's terms (keys older versions did not write, or wrote
    otherwise)."""
    state.setdefault("precision", "float32")
    state.setdefault("family", DEFAULT_FAMILY)
    if isinstance(state.get("moc_config"), dict) and state["family"] == family.name:
        state["moc_config"] = family.loss_config.from_dict(state["moc_config"]).to_dict()
    return state


def _why_not_resumable(state: dict, expected: dict, steps: int) -> str | None:
    """Why a checkpoint cannot be continued by a run of ``expected`` settings and ``steps``
    steps (every differing setting with both values), or None if it can."""
    if state.get("data_fingerprint") != expected["data_fingerprint"]:
        recorded = state.get("data_fingerprint") or "not recorded"
        return (
            f"was trained on other data (data fingerprint {recorded}, now "
            f"{expected['data_fingerprint']})"
        )
    differ = []
    for key, value in expected.items():
        saved = state.get(key)
        if isinstance(value, dict) and isinstance(saved, dict):
            differ += [
                f"{key} {k}: {saved.get(k)!r} -> {value.get(k)!r}"
                for k in sorted(set(value) | set(saved))
                if value.get(k) != saved.get(k) and k not in _RESUME_MAY_CHANGE
            ]
        elif saved != value:
            differ.append(f"{key}: {saved!r} -> {value!r}")
    if differ:
        return "was written with other settings (" + ", ".join(differ) + ")"
    if int(state["step"]) > steps:
        return f"is beyond train.steps={steps}"
    return None


# ----------------------------------------------------------------------------------------------
# logging helpers


class _Curves:
    """train_curves.csv, appended row by row; on resume rows after the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int, columns):
        self.path, self.columns = path, tuple(columns)
        rows = []
        if resume_step > 0 and path.exists():
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.handle = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=self.columns)

    def append(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in self.columns})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# ----------------------------------------------------------------------------------------------
# the stage


def train(
    data_path: str | Path,
    out_dir: str | Path,
    *,
    game: str | None = None,
    config: dict | None = None,
    seed: int = 0,
    device: str | None = "auto",
    callback: Callable[[int, dict], None] | None = None,
    validation_path: str | Path | None = None,
    background_path: str | Path | None = None,
) -> Path:
    """Train a model (SPACE+MOC by default) on ``data_path`` (a dataset HDF5 file); return the
    path of ``model.pt``.

    ``config`` is a spacemoc config dict (missing keys take the schema defaults): its ``model``
    section holds the family's settings (``model.family``, default ``space``; the workflow puts
    the arm's settings there), its ``train`` section the budget and the optimisers. ``device``:
    "auto" uses ``train.device`` (itself "auto" = CUDA if available, else CPU). Torch's thread
    count is the caller's (``spacemoc.devices.set_threads``). If ``out_dir/checkpoints`` holds
    checkpoints of this configuration, training continues from the newest.
    ``callback(step, row)`` runs after every step. With ``validation_path`` (the validation
    split) and ``train.eval_every`` > 0, relevant F and cluster-NN accuracy on its first
    ``train.eval_samples`` samples are measured every ``train.eval_every`` steps and at the end
    (``spacemoc.validation``), into the curves and TensorBoard; they do not change the weights.
    ``background_path``: the game's background (``background.npy``), for models that need it
    (``needs_background``); the model keeps it for inference.
    """
    config = validate_config(config or {})
    train_cfg = config["train"]
    out_dir = Path(out_dir)
    device = resolve_device(train_cfg["device"] if device in (None, "auto") else device)
    run = _Run(data_path, out_dir, game, config, seed, device, validation_path, background_path)
    start = run.resume()
    try:
        run.loop(start, callback)
    finally:
        run.close()
    return run.finish()


class _Run:
    """One training run: its data, model, trainer, checkpoints and logs (``train`` drives it)."""

    def __init__(
        self,
        data_path,
        out_dir: Path,
        game,
        config: dict,
        seed: int,
        device,
        validation_path,
        background_path=None,
    ):
        from spacemoc.data import AtariDataset

        self.data_path, self.out_dir, self.seed, self.device = data_path, out_dir, seed, device
        self.train_cfg = config["train"]
        self.steps = int(self.train_cfg["steps"])
        self.checkpoint_dir = out_dir / "checkpoints"
        self.log_dir = out_dir / "logs"
        self.family = get_family(family_name(config))
        dataset = AtariDataset(data_path, grid_size=16)  # reopened below with the model's grid
        game = game or dataset.game
        if get_game(game).name != get_game(dataset.game).name:
            raise ValueError(f"dataset {data_path} holds game {dataset.game!r}, not {game!r}")
        self.game = get_game(game).name
        model_cfg, loss_cfg = self.family.build_configs(game, config)
        grid = getattr(model_cfg, "G", dataset.grid_size)  # the grid of the MOC motion hints
        if grid != dataset.grid_size:
            dataset = AtariDataset(data_path, grid_size=grid)
        if dataset.T < 2:
            raise ValueError(f"{data_path} has T={dataset.T} frames per sample; MOC needs T >= 2")
        self.dataset = dataset
        for orphan in [*remove_orphan_temps(self.checkpoint_dir), *remove_orphan_temps(out_dir)]:
            print(f"removed {orphan}, a temporary file of an interrupted run")
        self.identity = _identity(data_path, self.family, model_cfg, loss_cfg, seed, self.train_cfg)
        seed_everything(seed)
        self.model = self.family.model(model_cfg).to(device)
        if getattr(model_cfg, "needs_background", False):
            if background_path is None:
                raise ValueError(
                    f"this {self.family.name} model needs the game's background to train (its "
                    "config asks for it): pass background_path (spacemoc train --background "
                    f"results/{self.game}/background.npy)"
                )
            self.model.set_background(background_looks_for_model(background_path, self.game))
        self.model.train()
        self.trainer = self.family.trainer(self.model, loss_cfg, self.train_cfg)
        self.probe = None
        if validation_path is not None and self.train_cfg["eval_every"] > 0:
            from spacemoc.validation import ValidationProbe

            self.probe = ValidationProbe(
                validation_path,
                self.train_cfg["eval_samples"],
                config["eval"]["boxes"],
                config["eval"]["overlap_suppression"],
            )

    def resume(self) -> int:
        """Load the newest checkpoint this run can continue; the step to start from."""
        state = _load_latest_checkpoint(self.checkpoint_dir)
        problem = state and self._why_not_resumable(state)
        if problem:
            aside = _set_aside(self.checkpoint_dir)
            print(f"{state['path']} (step {state['step']}) {problem}: set aside in {aside}")
        if state is None or problem:
            state = self._restore_set_aside()
            if state is None and problem:
                print("starting afresh at step 0")
        start = 0
        if state is not None:
            self.model.load_state_dict(state["state_dict"])
            self.trainer.load_state_dict(state)
            set_rng_state(state["rng"])
            start = int(state["step"])
            print(f"resuming from {state['path']} at step {start} of {self.steps}")
        self.sampler = StepBatchSampler(
            len(self.dataset), self.identity["batch_size"], self.seed, start, self.steps
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        columns = self.trainer.curve_columns
        if self.probe is not None:
            from spacemoc.validation import COLUMNS

            columns = (*columns, *COLUMNS)
        self.curves = _Curves(self.log_dir / "train_curves.csv", start, columns)
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard drops the events a resumed (or restarted) run writes again
        self.writer = SummaryWriter(str(self.log_dir), purge_step=start)
        return start

    def _why_not_resumable(self, state: dict) -> str | None:
        """Why this run cannot continue ``state`` (``_why_not_resumable``), or None."""
        expected = {**self.identity, "game": self.game}
        return _why_not_resumable(_normalise(state, self.family), expected, self.steps)

    def _restore_set_aside(self) -> dict | None:
        """Move back the newest set of ``previous/`` this run can continue; its newest
        checkpoint, or None if there is none."""
        for aside in _sets_aside(self.checkpoint_dir):
            state = _load_latest_checkpoint(aside)
            if state is None or self._why_not_resumable(state):
                continue
            for _, path in list_checkpoints(aside):
                path.rename(self.checkpoint_dir / path.name)
            if not any(aside.iterdir()):
                aside.rmdir()
            print(f"restored the checkpoints set aside in {aside}: they fit these settings")
            return _load_latest_checkpoint(self.checkpoint_dir)
        return None

    def loader(self):
        """Batches for the sampler's steps. An own generator: creating the iterator must not
        draw from the global RNG, or a resumed run would sample differently."""
        from spacemoc.data import collate

        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def loop(self, start: int, callback) -> None:
        """Train from ``start`` to ``train.steps``: step, check, log, checkpoint."""
        from tqdm.auto import tqdm

        cfg, steps = self.train_cfg, self.steps
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.began = time.perf_counter()
        label = f"train {self.game} seed {self.seed}"
        status = StatusLine(label, steps)
        self.progress = tqdm(total=steps, initial=start, desc=label, unit="step", mininterval=2.0)
        data_clock = time.perf_counter()
        for step, batch in enumerate(self.loader(), start=start):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            step_clock = time.perf_counter()
            logs = self.trainer.step(batch, step)
            sync()
            done = step + 1
            self._check_finite(done, logs)
            timings = {
                "step_time_s": time.perf_counter() - step_clock,
                "data_time_s": step_clock - data_clock,
                "elapsed_s": time.perf_counter() - self.began,
            }
            images = int(np.prod(batch["frames"].shape[:2]))  # B*T
            row = {"step": done, **self.trainer.curve_row(logs, images, timings)}
            if self.probe is not None and (done % cfg["eval_every"] == 0 or done == steps):
                row.update(self._validate(done))
            if done % cfg["log_every"] == 0 or done == steps or "val_time_s" in row:
                self.curves.append(row)
                self.trainer.log_tensorboard(self.writer, done, row, logs)
            if done % cfg["image_every"] == 0 or done == steps:
                self.trainer.log_images(self.writer, done, batch, logs)
            if done % cfg["checkpoint_every"] == 0 or done == steps:
                self.save(done, self.checkpoint_dir / f"step_{done:09d}.pt", periodic=True)
                for _, old in list_checkpoints(self.checkpoint_dir)[:-KEEP_CHECKPOINTS]:
                    old.unlink(missing_ok=True)
            self.progress.update(1)
            status.update(done, start, loss=f"{row['total_loss']:.4g}")
            postfix = {"loss": f"{row['total_loss']:.4g}"}
            if "moc_loss" in row:
                postfix.update(moc=f"{row['moc_loss']:.4g}", lam=f"{row['lambda_align']:.2f}")
            self.progress.set_postfix(**postfix, refresh=False)
            del logs
            if callback is not None:
                callback(done, row)
            data_clock = time.perf_counter()

    def _validate(self, done: int) -> dict:
        values = self.probe.measure(self.model, self.device)
        for key in ("val_relevant_f", "val_cluster_nn"):
            self.writer.add_scalar(f"validation/{key.removeprefix('val_')}", values[key], done)
        self.progress.write(
            f"step {done}: validation relevant F {values['val_relevant_f']:.3f}, cluster-NN "
            f"{values['val_cluster_nn']:.3f} ({values['val_time_s']:.1f} s)"
        )
        return values

    def _check_finite(self, done: int, logs: dict) -> None:
        loss = logs["loss"]
        broken = None if torch.isfinite(loss) else f"loss {loss.item()}"
        if broken is None and (name := _first_non_finite(self.model)) is not None:
            broken = f"weight {name} is not finite after the update"
        if broken is not None:
            raise FloatingPointError(
                f"training diverged at step {done} of {self.steps}: {broken} "
                f"({self.trainer.describe(logs)}; lr_fg {self.identity['lr_fg']}, lr_bg "
                f"{self.identity['lr_bg']}); no model written, the last checkpoint is kept"
            )

    def save(self, step: int, path: Path, *, periodic: bool) -> None:
        """A checkpoint at ``step``: periodic ones add what an exact resume needs."""
        from spacemoc.models import save_checkpoint

        identity = self.identity
        extra = {
            "data_fingerprint": identity["data_fingerprint"],
            "moc_config": identity["moc_config"],
            "seed": identity["seed"],
            "train_config": dict(self.train_cfg),
        }
        if periodic:
            epoch, batch_in_epoch = self.sampler.position(step)
            extra.update(
                {
                    k: v
                    for k, v in identity.items()
                    if k not in ("model_config", "moc_config", "data_fingerprint", "family")
                },
                **self.trainer.state_dict(),
                rng=rng_state(),
                data_position={"epoch": epoch, "batch": batch_in_epoch},
            )
        save_checkpoint(
            path,
            self.model,
            game=self.game,
            labels=self.dataset.labels,
            step=step,
            extra=extra,
        )

    def close(self) -> None:
        if hasattr(self, "progress"):
            self.progress.close()
        self.writer.close()
        self.curves.close()

    def finish(self) -> Path:
        """Write ``model.pt`` and the curves beside it."""
        model_path = self.out_dir / "model.pt"
        self.save(self.steps, model_path, periodic=False)
        with atomic_path(self.out_dir / "train_curves.csv") as tmp:
            shutil.copyfile(self.log_dir / "train_curves.csv", tmp)
        elapsed = time.perf_counter() - self.began
        print(f"wrote {model_path} after {self.steps} steps ({elapsed:.1f} s)")
        return model_path


def _identity(data_path, family, model_cfg, loss_cfg, seed: int, train_cfg: dict) -> dict:
    """What a checkpoint must share with this run to be continued."""
    return {
        "data_fingerprint": h5_fingerprint(data_path),
        "family": family.name,
        "model_config": model_cfg.to_dict(),
        "moc_config": loss_cfg.to_dict(),
        "seed": int(seed),
        "batch_size": int(train_cfg["batch_size"]),
        "lr_fg": float(train_cfg["lr_fg"]),
        "lr_bg": float(train_cfg["lr_bg"]),
        "clip_norm": float(train_cfg["clip_norm"]),
        "precision": train_cfg["precision"],
    }
