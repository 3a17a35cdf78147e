"""The background image of a game: per-pixel, per-channel mode of random-play frames (spec §1.4).

A game whose playfield has several looks (``Game.background_looks`` = K > 1) gets K images, and a
pixel counts as changed only where it differs from every one (``spacemoc.data.motion.
changed_amount``). Such a background is (K,210,160,3); its PNG stacks the looks top to bottom.
``Game.background_looks_per`` says how the looks are found:

* ``frame``: the frames are split into K looks by k-means on coarse pixels and each look is the
  mode image of its frames, the most frequent look first (Tennis: the court's two ends, whose
  sidelines swap colours);
* ``pixel``: look 0 is the mode image; look k at a pixel is the pixel's next most common colour
  if it covers at least ``MIN_PIXEL_LOOK_SHARE`` of the frames, else look 0's (Seaquest: the
  animated sea surface, which has several colours at one pixel).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from tqdm import tqdm

from spacemoc.atomic import atomic_path
from spacemoc.data.env import RandomAgent, agent_steps, make_env, reset, step
from spacemoc.files import damaged_file_error
from spacemoc.games import get_game
from spacemoc.geometry import FRAME_HEIGHT, FRAME_WIDTH

WARMUP_STEPS = 100
KEEP_PROBABILITY = 0.25
GAME_KEY = "spacemoc:game"  # PNG text chunk naming the game a background was made for


def pixel_mode(frames: np.ndarray, block: int = 16384) -> np.ndarray:
    """Per-pixel, per-channel mode of (N,H,W,C) uint8; ties go to the smaller value."""
    flat = frames.reshape(frames.shape[0], -1)
    out = np.empty(flat.shape[1], np.uint8)
    for start in range(0, flat.shape[1], block):
        part = flat[:, start : start + block].astype(np.int64)
        n = part.shape[1]
        # one bincount over (pixel, value) codes: a 256-bin histogram per pixel
        hist = np.bincount((part + 256 * np.arange(n)).ravel(), minlength=256 * n)
        out[start : start + n] = hist.reshape(n, 256).argmax(axis=1)
    return out.reshape(frames.shape[1:])


LOOK_STRIDE = 4  # k-means sees every 4th pixel of each frame: enough to tell the looks apart
# A colour this common at a pixel is background there; a sprite passing through covers less.
MIN_PIXEL_LOOK_SHARE = 0.15
LOOKS_PER = ("frame", "pixel")


def compute_background(game: str, n_frames: int, seed: int) -> np.ndarray:
    """Mode image (210,160,3) uint8 RGB over ``n_frames`` frames of a seeded random agent; for a
    game with K > 1 looks, one mode image per look, (K,210,160,3) (module docstring)."""
    spec = get_game(game)
    if n_frames < spec.background_looks:
        raise ValueError(
            f"n_frames must be >= {spec.background_looks} (the looks of {spec.name}'s "
            f"background), got {n_frames}"
        )
    if spec.background_looks_per not in LOOKS_PER:
        raise ValueError(
            f"{spec.name}'s background_looks_per is {spec.background_looks_per!r}; "
            f"known: {', '.join(LOOKS_PER)}"
        )
    frames = random_play_frames(game, n_frames, seed)
    if spec.background_looks == 1:
        return pixel_mode(frames)
    if spec.background_looks_per == "pixel":
        return pixel_looks(frames, spec.background_looks)
    looks = split_looks(frames, spec.background_looks, seed)
    return np.stack([pixel_mode(frames[looks == k]) for k in range(spec.background_looks)])


def pixel_looks(
    frames: np.ndarray, looks: int, min_share: float = MIN_PIXEL_LOOK_SHARE
) -> np.ndarray:
    """(N,H,W,3) uint8 -> (looks,H,W,3): look 0 the mode image, look k each pixel's k-th most
    common other colour where it covers >= ``min_share`` of the frames, else look 0's colour."""
    from spacemoc.data.motion import colour_codes

    n = len(frames)
    first = pixel_mode(frames)
    codes = np.sort(colour_codes(frames).reshape(n, -1), axis=0)  # (N,P), each column sorted
    n_pixels = codes.shape[1]
    starts = np.ones_like(codes, dtype=bool)
    starts[1:] = codes[1:] != codes[:-1]
    runs = np.cumsum(starts, axis=0) - 1  # (N,P) index of each frame's colour run in its column
    columns = np.broadcast_to(np.arange(n_pixels), codes.shape)
    counts = np.zeros((n, n_pixels), np.int64)  # run -> frames of that colour, per pixel
    np.add.at(counts, (runs, columns), 1)
    colours = np.zeros((n, n_pixels), np.int64)
    colours[runs[starts], columns[starts]] = codes[starts]
    counts[colours == colour_codes(first).reshape(1, -1)] = 0  # look 0's colour is taken
    out = np.repeat(first.reshape(1, n_pixels, 3), looks, axis=0)
    for k in range(1, looks):
        best = counts.argmax(axis=0)  # (P,) the most common colour left (ties: the smaller)
        common = counts[best, np.arange(n_pixels)] >= min_share * n
        code = colours[best, np.arange(n_pixels)][common]
        out[k, common] = np.stack([code % 256, code // 256 % 256, code // 65536], axis=1)
        counts[best, np.arange(n_pixels)] = 0
    return out.reshape(looks, *frames.shape[1:])


def split_looks(frames: np.ndarray, looks: int, seed: int) -> np.ndarray:
    """(N,H,W,3) uint8 -> (N,) look index per frame: k-means clusters of coarse pixels, numbered
    from the largest cluster down (ties: the one seen first)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    coarse = frames[:, ::LOOK_STRIDE, ::LOOK_STRIDE].reshape(len(frames), -1) / 255.0
    with warnings.catch_warnings():  # fewer distinct frames than looks: the error below says so
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = KMeans(looks, n_init=10, random_state=int(seed)).fit_predict(coarse)
    if len(np.unique(labels)) < looks:
        raise ValueError(f"the frames show fewer than {looks} distinct looks")
    sizes = np.bincount(labels, minlength=looks)
    first_seen = np.array([np.argmax(labels == k) for k in range(looks)])
    order = np.lexsort((first_seen, -sizes))  # cluster ids, largest first
    return np.argsort(order)[labels]


def random_play_frames(game: str, n_frames: int, seed: int) -> np.ndarray:
    """(n_frames,210,160,3) uint8 RGB frames of a seeded random agent.

    Each random step keeps its frame with probability 0.25; on episode end the env is reset and
    played 100 steps before frames are kept again.
    """
    spec = get_game(game)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    env = make_env(spec)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB6]))
    agent = RandomAgent(env.nb_actions, rng)
    reset(env, int(seed))
    agent_steps(env, agent, WARMUP_STEPS)
    frames = np.empty((n_frames, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    kept = 0
    with tqdm(total=n_frames, desc=f"background {spec.name}") as progress:
        while kept < n_frames:
            obs, over, _ = step(env, agent.act())
            if over:
                reset(env)
                agent_steps(env, agent, WARMUP_STEPS)
                continue
            if rng.random() < KEEP_PROBABILITY:
                frames[kept] = obs
                kept += 1
                progress.update()
    env.close()
    return frames


def save_background(
    img: np.ndarray, png_path: str | Path, game: str | None = None
) -> tuple[Path, Path]:
    """Write ``img`` as a PNG and beside it as ``.npy`` (each atomically), both named after
    ``png_path`` whatever its suffix (``bg.npy`` gives ``bg.png`` and ``bg.npy``). ``game`` is
    recorded in the PNG (text chunk ``GAME_KEY``), which also vouches for the .npy beside it."""
    img = _check_background(np.asarray(img), png_path)
    png_path = Path(png_path).with_suffix(".png")
    npy_path = png_path.with_suffix(".npy")
    info = PngInfo()
    if game is not None:
        info.add_text(GAME_KEY, get_game(game).name)
    with atomic_path(npy_path) as tmp_npy, open(tmp_npy, "wb") as handle:
        np.save(handle, img)
    with atomic_path(png_path) as tmp_png:
        stacked = img.reshape(-1, FRAME_WIDTH, 3)  # looks top to bottom
        Image.fromarray(stacked).save(tmp_png, format="PNG", pnginfo=info)
    return png_path, npy_path


def background_game(path: str | Path) -> str | None:
    """The game a background was made for, as save_background recorded it in the PNG (for a
    .npy: in the PNG beside it); None when nothing records it."""
    png = Path(path).with_suffix(".png")
    if not png.is_file():
        return None
    try:
        with Image.open(png) as image:
            game = image.info.get(GAME_KEY)
    except OSError:
        return None
    return str(game) if game else None


def load_background(path: str | Path, game: str | None = None) -> np.ndarray:
    """Read a background written by save_background (.png or .npy): (210,160,3) uint8 RGB, or
    (K,210,160,3) for a background of K looks.

    With ``game``, a background recorded for another game is refused; one that records no game
    (written before the record) is read with a warning, as it cannot be checked.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(
            f"background image {path} does not exist; make it first with "
            f"`spacemoc background --game <game> --out {path.with_suffix('.png')}` "
            "(or the workflow's `background` rule)"
        )
    if game is not None:
        expected = get_game(game).name
        recorded = background_game(path)
        if recorded is None:
            warnings.warn(
                f"background {path} records no game: cannot check it is {expected}'s (remake it "
                f"with `spacemoc background --game {expected}` to record it)",
                stacklevel=2,
            )
        elif get_game(recorded).name != expected:
            raise ValueError(
                f"background {path} is {recorded}'s, not {expected}'s: use {expected}'s "
                f"background (spacemoc background --game {expected} --out ...)"
            )
    try:
        if path.suffix == ".npy":
            img = np.load(path, allow_pickle=False)
        else:
            img = np.asarray(Image.open(path).convert("RGB"))
            looks, rest = divmod(img.shape[0], FRAME_HEIGHT)
            if looks > 1 and rest == 0:
                img = img.reshape(looks, FRAME_HEIGHT, *img.shape[1:])
    except (OSError, EOFError, ValueError) as err:
        raise damaged_file_error(path, "background", err) from err
    return _check_background(img, path)


def _check_background(img: np.ndarray, where) -> np.ndarray:
    looks_ok = img.ndim == 3 or (img.ndim == 4 and img.shape[0] > 1)
    if not looks_ok or img.shape[-3:] != (FRAME_HEIGHT, FRAME_WIDTH, 3) or img.dtype != np.uint8:
        raise ValueError(
            f"background {where}: expected uint8 (210,160,3) or (K,210,160,3) for K > 1 looks, "
            f"got {img.dtype} {img.shape}"
        )
    return img
