"""A trained SPACE model + z_what classifier as an object detector for raw Atari frames.

    from spacemoc import Detector
    det = Detector.load("results/pong/space_moc/seed0")   # or Detector.pretrained("pong")
    dets = det.detect(frame)                      # frame: uint8 (210,160,3) RGB, as OCAtari gives
    # -> [Detection(label='Ball', x=.., y=.., w=.., h=.., score=0.97), ...]  frame pixels

What `detect` does (spec §7, with the reference's defects fixed):
1. The frame is resized to 128x128 exactly as the training data was (PIL Lanczos on uint8,
   `spacemoc.data.preprocess`) and put in the checkpoint's channel order (RGB for our models, BGR
   for reference weights). The reference detector resized with bilinear while it trained on
   Lanczos (defect 41).
2. Deterministic inference (posterior means, the model's `infer`: the path the workflow's latents
   take); cells with presence probability > `threshold` (0.5) are objects; only their glimpses
   are encoded (the reference encoded all 256 cells).
3. With `hud=False` (the default, as the reference) boxes outside the game's relevant area are
   dropped (HUD: scores, clocks); `hud=True` keeps everything (the reference crashed there).
4. The classifier names each object from its z_what. `score` is the presence probability (the
   reference returned zeros).
5. When the classifier carries a box calibration (`spacemoc.box_calibration`: fit by the
   workflow's classifier rule on detections matched to OCAtari's objects), each box moves towards
   OCAtari's box for its label; `calibrate_boxes=False` keeps the model's own boxes.
Boxes are floats in original frame pixels: x, y the top-left corner, w, h the size; not clipped.
An empty frame gives an empty list (the reference returned a tuple of three empty arrays).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spacemoc.box_colour import box_colour
from spacemoc.devices import resolve_device
from spacemoc.distill.config import STUDENT_WEIGHTS
from spacemoc.games import get_game
from spacemoc.geometry import (
    FRAME_HEIGHT,
    FRAME_SHAPE,
    FRAME_WIDTH,
    IMAGE_SIZE,
    corners_to_boxes,
    suppress_overlaps,
    z_where_to_corners,
)
from spacemoc.models.inputs import model_input
from spacemoc.models.readouts import resolve_box_readout, resolve_overlap_suppression
from spacemoc.stages.export import DETECTOR_WEIGHTS, PRETRAINED_ROOT, shipped_detectors

PRECISIONS = ("float32", "bfloat16")
REFERENCE_CLASSIFIER = "z_what-classifier_relevant_nn.joblib.pkl"
# The reference's old README spells it with a dash (defect 43); accept both.
REFERENCE_CLASSIFIER_ALIASES = (REFERENCE_CLASSIFIER, "z-what-classifier_relevant_nn.joblib.pkl")


@dataclass(frozen=True)
class Detection:
    """One detected object; box in original frame pixels (x, y = top-left corner)."""

    label: str
    x: float
    y: float
    w: float
    h: float
    score: float  # presence probability in (threshold, 1]
    # The object's appearance code (used by the tracker); not part of equality or repr.
    z_what: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)


# ----------------------------------------------------------------------- input checks


def _describe(a) -> str:
    return f"{a.dtype} array of shape {tuple(a.shape)}"


def check_frame(frame, what: str = "frame") -> np.ndarray:
    """A raw ALE frame or a clear ValueError saying what was expected instead."""
    if hasattr(frame, "detach"):  # a torch tensor
        frame = frame.detach().cpu().numpy()
    if not isinstance(frame, np.ndarray):
        raise ValueError(
            f"{what}: expected a numpy uint8 array of shape (210, 160, 3) (RGB, as OCAtari / ALE "
            f"give it), got {type(frame).__name__}"
        )
    expected = "expected a raw uint8 RGB frame of shape (210, 160, 3) as OCAtari / ALE give it"
    if frame.ndim == 2:
        raise ValueError(
            f"{what}: {expected}; got a single-channel {_describe(frame)} (grayscale "
            f"observation? make the env with obs_type='rgb' / obs_mode='ori')"
        )
    if frame.ndim != 3:
        raise ValueError(f"{what}: {expected}; got {_describe(frame)}")
    if frame.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"{what}: {expected}; got a frame already resized to {frame.shape}. Pass the raw "
            f"frame (the detector resizes it as training did), or use detect_preprocessed() for "
            f"frames of a spacemoc dataset"
        )
    if frame.shape[0] in (1, 3, 4) and frame.shape[1:] == (FRAME_HEIGHT, FRAME_WIDTH):
        raise ValueError(
            f"{what}: {expected}; got channels-first {frame.shape}: transpose to (H, W, C)"
        )
    if frame.shape[:2] != (FRAME_HEIGHT, FRAME_WIDTH):
        raise ValueError(f"{what}: {expected}; got {_describe(frame)}")
    if frame.shape[2] != 3:
        raise ValueError(
            f"{what}: {expected}; got {frame.shape[2]} channels ({_describe(frame)}); RGB has 3"
        )
    if frame.dtype != np.uint8:
        hint = " (values scaled to [0,1]? pass the uint8 frame)" if frame.dtype.kind == "f" else ""
        raise ValueError(f"{what}: {expected}; got dtype {frame.dtype}{hint}")
    return frame


def check_frames(frames) -> np.ndarray:
    """A batch (B,210,160,3) uint8 (array or sequence of frames) or a clear ValueError."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            raise ValueError(
                f"detect_batch expects a batch (B, 210, 160, 3) of frames, got one frame of "
                f"shape {frames.shape}; use detect(frame) or add a batch axis"
            )
        if frames.ndim != 4:
            raise ValueError(
                f"detect_batch expects uint8 frames of shape (B, 210, 160, 3), got "
                f"{_describe(frames)}"
            )
        check_frame(frames[0] if len(frames) else np.zeros(FRAME_SHAPE, frames.dtype), "frames")
        return frames
    frames = list(frames)
    for i, f in enumerate(frames):
        f = np.asarray(f) if not hasattr(f, "detach") else f
        if i and getattr(f, "shape", None) != getattr(frames[0], "shape", None):
            raise ValueError(
                f"batch of mixed sizes: frame 0 has shape {np.shape(frames[0])} but frame {i} "
                f"has shape {np.shape(f)}; every frame must be a raw (210, 160, 3) uint8 RGB frame"
            )
        frames[i] = check_frame(f, f"frame {i} of the batch")
    if not frames:
        return np.zeros((0, *FRAME_SHAPE), np.uint8)
    return np.stack(frames)


def check_preprocessed(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(
            f"detect_preprocessed expects uint8 RGB images (B, 128, 128, 3) made by "
            f"spacemoc.data.preprocess_frame(s), got {_describe(images)}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"detect_preprocessed expects uint8 images, got dtype {images.dtype}")
    return images


# ----------------------------------------------------------------------- output


def box_rgb(frame: np.ndarray, x, y, w, h) -> tuple[int, int, int]:
    """Mean colour of a box (frame pixels, clipped to the frame) as an (r, g, b) int tuple."""
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1 = min(int(np.ceil(x + w)), frame.shape[1])
    y1 = min(int(np.ceil(y + h)), frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0)
    mean = frame[y0:y1, x0:x1].reshape(-1, frame.shape[2]).mean(0)
    return tuple(int(round(v)) for v in mean[:3])


def to_ox4rl(detections, frame: np.ndarray | None = None) -> dict[str, list[tuple]]:
    """The reference detector's return shape: `{class_name: [(x, y, w, h, conf, rgb), ...]}`.

    x, y, w, h are int frame pixels truncated as the reference did; `conf` is the real presence
    probability (the reference gave 0.0); `rgb` the box's mean colour when `frame` is given, else
    None (as the reference).
    """
    out: dict[str, list[tuple]] = {}
    for d in detections:
        rgb = box_rgb(frame, d.x, d.y, d.w, d.h) if frame is not None else None
        out.setdefault(d.label, []).append(
            (int(d.x), int(d.y), int(d.w), int(d.h), float(d.score), rgb)
        )
    return out


# ----------------------------------------------------------------------- the detector


class Detector:
    """A model + z_what classifier -> labelled boxes on raw frames.

    Build it with `Detector.load(folder)` or `Detector.pretrained(game)`; the constructor takes
    the objects: `model` (from `spacemoc.models.load_checkpoint`: any family, or any object with
    the documented `.infer` and `.channel_order`), `classifier` (anything with
    `.predict(z_what (M,D)) -> label indices`; a `ZWhatClassifier` of colour features also gets
    the boxes' colours, `spacemoc.box_colour`), and `labels`, the names the indices refer to
    (default: the classifier's `.labels`, else the game's label list). The model is left as it
    is given: one on another device, or in training mode, is copied.
    """

    def __init__(
        self,
        model,
        classifier,
        *,
        game: str | None = None,
        labels=None,
        device=None,
        threshold: float = 0.5,
        hud: bool = False,
        batch_size: int = 32,
        precision: str = "float32",
        box_readout: str | None = None,
        calibrate_boxes: bool = True,
        overlap_suppression: float | None = None,
    ):
        game = game or getattr(model, "game", None) or getattr(classifier, "game", None)
        if not game:
            raise ValueError("unknown game: neither model nor classifier names one; pass game=")
        self.game = get_game(str(game)).name
        model_game = getattr(model, "game", None)
        if model_game and get_game(str(model_game)).name != self.game:
            raise ValueError(f"the model was trained on {model_game!r}, not {self.game!r}")
        clf_game = getattr(classifier, "game", None)
        if clf_game and get_game(str(clf_game)).name != self.game:
            raise ValueError(f"classifier is for {clf_game!r} but the model is for {self.game!r}")
        if classifier is None or not hasattr(classifier, "predict"):
            raise ValueError(
                f"a detector for {self.game} needs a z_what classifier with .predict(); got "
                f"{type(classifier).__name__}"
            )
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        # bfloat16: the encoders run under autocast (~1.5x faster convolutions on CPUs with
        # AVX512-BF16); presence probabilities and boxes move by ~1e-2, so it is opt-in.
        self.precision = precision
        self.box_readout = resolve_box_readout(box_readout, model=model, classifier=classifier)
        self.overlap_suppression = resolve_overlap_suppression(
            overlap_suppression, classifier=classifier
        )
        order = getattr(model, "channel_order", "rgb")
        if order not in ("rgb", "bgr"):
            raise ValueError(f"model.channel_order must be 'rgb' or 'bgr', got {order!r}")
        self.channel_order = order
        self.classifier = classifier
        self.labels = tuple(
            labels or getattr(classifier, "labels", None) or get_game(self.game).labels
        )
        self.threshold = float(threshold)
        # The classifier's per-label box corrections towards OCAtari's boxes, if it has them
        # (spacemoc.box_calibration); calibrate_boxes=False gives the model's own boxes.
        self.box_calibration = (
            getattr(classifier, "box_calibration", None) if calibrate_boxes else None
        )
        self.hud = bool(hud)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.model = _on_device(model, self.device)
        self._game_row = get_game(self.game)
        self._pool = None  # resize threads, made on the first big batch
        config = getattr(model, "config", None)
        if getattr(config, "motion_input", False):
            raise ValueError(
                "this model was trained with motion_input=True and needs a motion channel; "
                "the detector works on single frames: use a model trained without it"
            )
        # oneDNN float32 convolutions are faster on channels-last input on CPU (same values up
        # to float rounding). Under bfloat16 autocast the image encoder is faster in the default
        # layout (0.97 vs 1.37 ms per frame).
        self._channels_last = self.device.type == "cpu" and precision == "float32"

    def __repr__(self) -> str:
        return (
            f"Detector(game={self.game!r}, labels={len(self.labels)}, device={self.device}, "
            f"channel_order={self.channel_order!r}, threshold={self.threshold}, hud={self.hud}, "
            f"precision={self.precision!r}, box_readout={self.box_readout!r}, "
            f"overlap_suppression={self.overlap_suppression})"
        )

    # ------------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        path,
        device=None,
        *,
        game: str | None = None,
        classifier=None,
        trust: bool = False,
        **kwargs,
    ) -> Detector:
        """Load a detector from a folder.

        - A spacemoc run folder (`results/<game>/<arm>/seed<k>`): `model.pt` + `classifier.npz`, or
          a detector folder from `spacemoc export` (`detector.pt` + `classifier.npz`).
        - A distilled student folder (`spacemoc distill`: `student.pt` + `classifier.npz`); its
          boxes are the readout it was distilled from.
        - The reference's published layout (`<game>/space_weights/model_000005001.pth` +
          `<game>/classifier/z_what-classifier_relevant_nn.joblib.pkl`, BGR weights). The
          classifier there is a pickle: loading it runs code from the file, so it needs
          `trust=True`. The game is the folder's name unless `game=` says otherwise.
        - A checkpoint file (`model.pt` or a reference `.pth`) with `classifier=` (a path to a
          `classifier.npz` or a run folder, or a fitted object with `.predict`).
        Extra keyword arguments (`threshold`, `hud`, `batch_size`, `precision`, `box_readout`,
        `calibrate_boxes`, `overlap_suppression`) go to the constructor. Without `box_readout`
        and `overlap_suppression` the folder's own settings are used, those its evaluation was
        computed with (`spacemoc.models.readouts`: an exported folder's `config.yaml`, the run's
        classifier or latents, else the config schema's default), so the detector gives the
        numbers the workflow gave.
        """
        from spacemoc.models import load_checkpoint

        path = Path(path)
        if not path.exists():
            raise ValueError(f"no detector at {path}: the path does not exist")
        reference = False
        if path.is_file():
            weights = path
            folder = path.parent
        elif (path / "model.pt").is_file():
            weights, folder = path / "model.pt", path
        elif (path / DETECTOR_WEIGHTS).is_file():
            weights, folder = path / DETECTOR_WEIGHTS, path
        elif (path / STUDENT_WEIGHTS).is_file():
            weights, folder = path / STUDENT_WEIGHTS, path
        elif (path / "space_weights").is_dir():
            candidates = sorted((path / "space_weights").glob("model_*.pth"))
            if not candidates:
                raise ValueError(f"{path / 'space_weights'} holds no model_*.pth weights")
            weights, folder, reference = candidates[-1], path, True
            game = game or path.name
        else:
            raise ValueError(
                f"{path} is not a detector folder: expected a spacemoc run (model.pt + "
                f"classifier.npz), an exported detector ({DETECTOR_WEIGHTS} + classifier.npz), "
                f"a distilled student ({STUDENT_WEIGHTS} + classifier.npz) or the reference "
                f"layout (space_weights/model_*.pth + classifier/{REFERENCE_CLASSIFIER})"
            )
        model = load_checkpoint(weights)
        game = game or getattr(model, "game", None)
        if classifier is None:
            if reference:
                classifier, labels = _load_reference_classifier(folder, game, trust)
                kwargs.setdefault("labels", labels)
            else:
                classifier = _load_classifier(folder, game)
        elif isinstance(classifier, (str, Path)):
            classifier = _load_classifier(Path(classifier), game)
        kwargs["box_readout"] = resolve_box_readout(
            kwargs.get("box_readout"), folder=folder, model=model, classifier=classifier
        )
        kwargs["overlap_suppression"] = resolve_overlap_suppression(
            kwargs.get("overlap_suppression"), folder=folder, classifier=classifier
        )
        return cls(model, classifier, game=game, device=device, **kwargs)

    @classmethod
    def pretrained(cls, game: str, device=None, **kwargs) -> Detector:
        """The detector shipped with the package in `spacemoc/pretrained/<game>/`."""
        name = get_game(game).name
        folder = PRETRAINED_ROOT / name
        if name not in shipped_detectors():
            shipped = shipped_detectors()
            raise ValueError(
                f"no pretrained detector is shipped for {name!r}; available: "
                f"{', '.join(shipped) or 'none'}. Train one (snakemake "
                f"results/{name}/space_moc/seed0/classifier.npz) and use "
                f"Detector.load('results/{name}/space_moc/seed0')"
            )
        return cls.load(folder, device=device, game=name, **kwargs)

    # ------------------------------------------------------------------- detection

    def detect(self, frame) -> list[Detection]:
        """One raw frame (210,160,3) uint8 RGB -> its detections."""
        return self.detect_batch(check_frame(frame)[None])[0]

    def detect_batch(self, frames) -> list[list[Detection]]:
        """Frames (B,210,160,3) uint8 RGB (an array or a list of frames) -> a list per frame."""
        frames = check_frames(frames)
        out: list[list[Detection]] = []
        for start in range(0, len(frames), self.batch_size):
            images = self._preprocess(frames[start : start + self.batch_size])
            out.extend(self._detect_images(images))
        return out

    def _preprocess(self, frames: np.ndarray) -> np.ndarray:
        """The training resize (spacemoc.data.preprocess_frame, PIL Lanczos) of each frame; big
        batches on two threads (PIL releases the GIL while it resizes)."""
        from spacemoc.data.preprocess import preprocess_frame, preprocess_frames

        if len(frames) < 8:
            return preprocess_frames(frames)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(2, thread_name_prefix="spacemoc-resize")
        return np.stack(list(self._pool.map(preprocess_frame, frames)))

    def detect_preprocessed(self, images) -> list[list[Detection]]:
        """Images already resized by `spacemoc.data.preprocess_frame(s)` (B,128,128,3) uint8
        RGB, e.g. the frames of a spacemoc dataset -> a list of detections per image (boxes
        still in original frame pixels)."""
        images = check_preprocessed(images)
        out: list[list[Detection]] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(self._detect_images(images[start : start + self.batch_size]))
        return out

    def model_input(self, images: np.ndarray):
        """(B,128,128,3) uint8 RGB -> the model's input: float (B,3,128,128) in [0,1], in the
        checkpoint's channel order, on the detector's device."""
        return model_input(images, self.channel_order, self.device, self._channels_last)

    def _cells(self, x):
        """The objects of model input ``x``: the model's ``infer`` (present cells only), the
        overlap suppression, then the relevant-area filter (unless ``hud``).

        Returns prob (B,N) numpy, (b_idx, c_idx) of the kept cells, their normalised boxes
        (M,4) [x_min, y_min, x_max, y_max] and z_what (M,D) numpy.
        """
        kwargs = {"present_only": True, "threshold": self.threshold}
        if self.box_readout != "glimpse":
            kwargs["box_readout"] = self.box_readout
        out = self.model.infer(x, **kwargs)
        where = out["z_where"].float().cpu().numpy()  # (B,N,4)
        prob = suppress_overlaps(
            out["z_pres_prob"].float().cpu().numpy(),
            where,
            self.overlap_suppression,
            self.threshold,
        )
        b_idx, c_idx = np.nonzero(prob > self.threshold)
        where = where[b_idx, c_idx]  # (M,4)
        z_what = out["z_what"].float().cpu().numpy()[b_idx, c_idx]  # (M,D)
        boxes = z_where_to_corners(where)
        if not self.hud and len(b_idx):
            keep = np.asarray(self._game_row.in_relevant_area(*boxes.T), dtype=bool)
            b_idx, c_idx, boxes, z_what = b_idx[keep], c_idx[keep], boxes[keep], z_what[keep]
        return prob, b_idx, c_idx, boxes, z_what

    def _detect_images(self, images: np.ndarray) -> list[list[Detection]]:
        import torch

        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bfloat16"),
        ):
            prob, b_idx, c_idx, boxes, z_what = self._cells(self.model_input(images))
        result: list[list[Detection]] = [[] for _ in range(len(images))]
        if len(b_idx) == 0:
            return result
        if getattr(self.classifier, "features", "encoding") == "encoding":
            label_idx = np.asarray(self.classifier.predict(z_what))
        else:  # a classifier that also compares the boxes' colours, read off the model's input
            colours = [box_colour(images[b], c) for b, c in zip(b_idx, boxes, strict=True)]
            label_idx = np.asarray(self.classifier.predict(z_what, np.array(colours)))
        scores = prob[b_idx, c_idx]
        xywh = corners_to_boxes(boxes)
        if self.box_calibration is not None:
            xywh = self.box_calibration.apply(xywh, z_what, label_idx)
        for k in range(len(b_idx)):
            x, y, w, h = xywh[k]
            result[b_idx[k]].append(
                Detection(
                    label=self._label_name(int(label_idx[k])),
                    x=float(x),
                    y=float(y),
                    w=float(w),
                    h=float(h),
                    score=float(scores[k]),
                    z_what=z_what[k],
                )
            )
        return result

    def _label_name(self, index: int) -> str:
        if not 0 <= index < len(self.labels):
            raise ValueError(
                f"the classifier predicted label index {index}, outside the {len(self.labels)} "
                f"labels {self.labels}: classifier and game table disagree"
            )
        return self.labels[index]

    to_ox4rl = staticmethod(to_ox4rl)


def _on_device(model, device):
    """``model`` on ``device`` in eval mode, copied when it is not so already (the caller's
    model is never changed)."""
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if params is not None else None
    moved = first is not None and (
        first.device.type != device.type
        or (device.index is not None and first.device.index != device.index)
    )
    if moved or getattr(model, "training", False):
        model = copy.deepcopy(model).to(device).eval()
    return model


# ----------------------------------------------------------------------- classifiers


def _load_classifier(path: Path, game: str | None):
    """`classifier.npz` of a run folder (or the file itself), never a pickle."""
    from spacemoc.classifier import ZWhatClassifier

    npz = path / "classifier.npz" if path.is_dir() else path
    if not npz.is_file():
        what = f"game {game!r}" if game else "these weights"
        raise ValueError(
            f"no classifier for {what}: {npz} does not exist. A detector needs the z_what "
            f"classifier of the same run: build it first (snakemake results/<game>/<arm>/seed<k>/"
            f"classifier.npz) or pass classifier="
        )
    if npz.suffix != ".npz":
        raise ValueError(
            f"{npz}: expected a classifier.npz (pickle-free); for a joblib/pickle classifier use "
            f"spacemoc.classifier.load_joblib(path, trust=True) and pass the object"
        )
    return ZWhatClassifier.load(npz, game=game)


def _load_reference_classifier(folder: Path, game: str | None, trust: bool):
    if not game:
        raise ValueError(f"cannot tell the game of {folder}; pass game=")
    candidates = [folder / "classifier" / n for n in REFERENCE_CLASSIFIER_ALIASES]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ValueError(
            f"no classifier for game {game!r}: {candidates[0]} does not exist. The reference "
            f"layout needs <game>/classifier/{REFERENCE_CLASSIFIER} next to space_weights/"
        )
    if not trust:
        raise ValueError(
            f"{found} is a pickle: loading it can run arbitrary code. Pass trust=True (CLI: "
            f"--trust) if you trust its source"
        )
    from spacemoc.classifier import load_joblib

    return load_joblib(found, trust=True), get_game(game).reference_labels
