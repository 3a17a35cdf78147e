"""One reading of a device name for every stage: auto (or None), cpu, cuda, cuda:N; the process's
CPU settings (threads, freed memory kept for reuse)."""

from __future__ import annotations

import re

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(device: str) -> str:
    """``device`` if it is a device name this project accepts, else a ValueError."""
    if not DEVICE_PATTERN.fullmatch(str(device)):
        raise ValueError(f"invalid device {device!r}: use auto, cpu, cuda or cuda:N")
    return str(device)


def resolve_device(device=None):
    """``auto`` (or None): CUDA if available, else the CPU; otherwise the named device, with a
    clear error when it names CUDA on a machine without it (before any file is read onto it)."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        device = str(device)
    check_device_name(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available here; use auto or cpu"
        )
    return torch.device(device)


def set_threads(threads: int | None) -> None:
    """Torch's CPU thread count for this process (None or 0: leave it), and freed memory kept
    for reuse (``reuse_freed_memory``). Called by the stage entry points (the command line, the
    workflow's scripts), never by library functions."""
    reuse_freed_memory()
    if threads:
        import torch

        torch.set_num_threads(int(threads))


# glibc's mallopt parameters (malloc.h) and the values this project sets
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_KEEP = 2**31 - 1  # the largest value mallopt takes (an int): about 2 GiB


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process for the next allocation, not to
    hand it back to the kernel. By default a block above 32 MiB is a fresh mmap that the kernel
    zero-fills page by page on first touch and unmaps when freed, so a training step that makes
    the same large tensors every step pays for hundreds of thousands of page faults (measured:
    half of a slot_moc step's CPU time in the kernel; docs/train.md, "Speed"). The resident
    memory then stays at its peak between steps instead of falling. False where the C library is
    not glibc (nothing changes)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_MMAP_THRESHOLD, _KEEP),
            (_M_TRIM_THRESHOLD, _KEEP),
            (_M_TOP_PAD, 64 * 2**20),
        )
    )
