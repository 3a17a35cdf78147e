"""Atomic writes, the project's only way to write an output file or folder.

A file is written under a temporary name beside its target and renamed when complete, so a crash,
a kill or a full disk never leaves a file that looks done. The temporary name is unique to the
writer (host, process, random token): two writers of one path never share or delete each other's
temporary file, and the last rename wins with a complete file. Temporary files that a killed
process left behind are recognised by their name and removed by ``remove_orphan_temps``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

# .{target name}.{host}-{pid}-{token}.tmp{target suffix}; the suffix stays last so that writers
# which infer the format from it (PIL, matplotlib, torch) keep working.
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<host>\w+)-(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.\w+)?$")
# A temporary file older than this is an orphan even if a process of that id lives (pid reuse,
# or a writer on another host of a shared file system that was killed).
ORPHAN_AGE_S = 24 * 3600
# Below this much free space a failed write is reported as a full disk (torch's zip writer, for
# one, reports ENOSPC as "unexpected pos ...").
LOW_SPACE_BYTES = 1 << 20


def _host() -> str:
    return re.sub(r"\W", "_", socket.gethostname().split(".")[0]) or "host"


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` for this process."""
    path = Path(path)
    token = secrets.token_hex(4)
    return path.with_name(f".{path.name}.{_host()}-{os.getpid()}-{token}.tmp{path.suffix}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_orphan_temps(directory: str | Path) -> list[Path]:
    """Delete the temporary files and folders in ``directory`` whose writer is gone (its process
    on this host has ended, or the file is older than a day); return what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        match = _TEMP.match(entry.name)
        if not match:
            continue
        try:
            age = time.time() - entry.lstat().st_mtime
        except FileNotFoundError:  # its writer just renamed or removed it
            continue
        same_host = match["host"] == _host()
        if age < ORPHAN_AGE_S and (not same_host or _process_alive(int(match["pid"]))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _write_error(err: BaseException, path: Path, tmp: Path) -> BaseException:
    """The error to raise for a failed write of ``path``: a full disk said as such."""
    full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and isinstance(err, OSError | RuntimeError):
        with contextlib.suppress(OSError):  # checked before the temporary file is removed
            full = shutil.disk_usage(tmp.parent).free < LOW_SPACE_BYTES
    if full:
        return OSError(
            errno.ENOSPC,
            f"no space left on device while writing {path}; the previous file (if any) is "
            "kept and the partial one removed: free some space and run again",
        )
    return err


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same extension); rename it to ``path`` when the
    block succeeds, delete it otherwise. A full disk raises OSError(ENOSPC) naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        error = _write_error(err, path, tmp)
        tmp.unlink(missing_ok=True)
        if error is err:
            raise
        raise error from err
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; when the block succeeds it takes the place
    of ``path`` (an existing folder there is swapped out by renames, then deleted). The caller
    decides whether an existing ``path`` may be replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.mkdir()
    old = None
    try:
        yield tmp
        if path.exists():
            old = temp_path(path)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as err:
        if old is not None and not path.exists():
            os.replace(old, path)  # put the previous folder back
            old = None
        error = _write_error(err, path, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if error is err:
            raise
        raise error from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_h5(path: str | Path) -> Iterator:
    """Yield a writable ``h5py.File`` that is built in memory and written to ``path`` atomically
    when the block succeeds.

    HDF5 never writes to the disk itself: when its write fails (a full disk), the library keeps
    dirty buffers it cannot flush and crashes the interpreter at exit (exit 139). Python writes the
    finished image instead, where a full disk is an ordinary error. The image is the compressed
    file (about 5 KB per dataset sample)."""
    import h5py

    path = Path(path)
    name = f"{temp_path(path).name}.mem"  # the core driver needs a name; nothing is written there
    handle = h5py.File(name, "w", driver="core", backing_store=False)
    try:
        yield handle
        handle.flush()
        image = handle.id.get_file_image()
    finally:
        handle.close()
    with atomic_path(path) as tmp:
        tmp.write_bytes(image)


def check_replaceable(out_dir: Path, own_files, marker: str, kind: str, stage: str) -> None:
    """Refuse (ValueError) to let ``stage`` replace ``out_dir`` unless it is missing, empty, or
    an earlier output of that stage: a folder holding ``marker`` and nothing but ``own_files``.
    A command never deletes what it did not write."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file, not a {kind}; choose another path")
    entries = {entry.name for entry in out_dir.iterdir()}
    foreign = sorted(entries - set(own_files))
    if entries and (foreign or marker not in entries):
        shown = ", ".join(foreign[:5] or sorted(entries)[:5])
        raise ValueError(
            f"{out_dir} is not empty and not a {kind} (it holds {shown}); {stage} replaces only "
            f"an earlier {stage}: choose a new or empty folder"
        )
