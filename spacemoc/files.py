"""Opening the project's files with errors a user can act on: which file, that it is damaged or
incomplete, and how to make it again (instead of a library traceback without the file's name)."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

# What writes each kind of file, by hand and in the workflow.
REMAKE = {
    "dataset": "`spacemoc dataset` (workflow rule `dataset`)",
    "latents": "`spacemoc latents` (workflow rule `latents`)",
    "classifier": "`spacemoc classifier` (workflow rule `classifier`)",
    "checkpoint": "`spacemoc train` (workflow rule `train`)",
    "background": "`spacemoc background` (workflow rule `background`)",
    "tracking data": "`spacemoc dataset --split tracking` (workflow rule `dataset`)",
}


class DamagedFileError(ValueError):
    """A file that exists but cannot be read: truncated, empty or not what it claims to be."""


def damaged_file_error(path: str | Path, kind: str, err: BaseException) -> DamagedFileError:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        reason = "empty file, 0 bytes"
    else:  # the library's first line: enough to tell truncation from a foreign file
        first = (str(err).strip().splitlines() or [""])[0]
        reason = f"{type(err).__name__}: {first[:160]}".rstrip(": ")
    remake = REMAKE.get(kind, "the command that wrote it")
    return DamagedFileError(
        f"cannot read {kind} {path}: it is damaged or incomplete ({reason}); delete it and make "
        f"it again with {remake}, or rerun the workflow, which remakes missing files"
    )


def require_file(path: str | Path, kind: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"{kind} file {path} does not exist; make it with {REMAKE.get(kind, 'its command')}"
        )
    return path


@contextlib.contextmanager
def open_h5(path: str | Path, kind: str = "dataset") -> Iterator:
    """``h5py.File(path, "r")``; a missing, truncated or empty file is a ValueError naming it."""
    import h5py

    path = require_file(path, kind)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise damaged_file_error(path, kind, err) from err
    with handle:
        yield handle


def load_npz(path: str | Path, kind: str) -> dict:
    """The arrays of an ``.npz`` file (no unpickling); a damaged file is a ValueError naming it."""
    import numpy as np

    path = require_file(path, kind)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise damaged_file_error(path, kind, err) from err


def h5_fingerprint(path: str | Path, kind: str = "dataset") -> str:
    """A digest of an HDF5 file's arrays (their stored chunks, shapes and types) and attributes:
    equal for the same data, different when any sample, table or attribute differs. Reads the
    compressed chunks without decoding them (about 0.1 s for a 4,096-sample dataset)."""
    import hashlib

    import h5py
    import numpy as np

    digest = hashlib.blake2b(digest_size=16)

    def add_attrs(obj) -> None:
        for key in sorted(obj.attrs):
            value = np.asarray(obj.attrs[key])
            digest.update(f"{key}={value.dtype.str}{value.shape}".encode())
            digest.update(value.tobytes() if value.dtype.kind != "O" else repr(value).encode())

    def add(name: str, obj) -> None:
        digest.update(name.encode())
        add_attrs(obj)
        if not isinstance(obj, h5py.Dataset):
            return
        digest.update(f"{obj.dtype.str}{obj.shape}".encode())
        if obj.size == 0:
            return
        if obj.chunks is None:
            digest.update(np.ascontiguousarray(obj[()]).tobytes())
            return
        for chunk in obj.iter_chunks():
            offset = tuple(s.start for s in chunk)
            _, stored = obj.id.read_direct_chunk(offset)
            digest.update(stored)

    with open_h5(path, kind) as f:
        try:
            add_attrs(f)
            f.visititems(add)
        except OSError as err:
            raise damaged_file_error(path, kind, err) from err
    return digest.hexdigest()
