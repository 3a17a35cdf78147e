"""One reading of a device name for every stage: auto (or None), cpu, cuda, cuda:N."""

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
    """Torch's CPU thread count for this process (None or 0: leave it). Called by the stage
    entry points (the command line, the workflow's scripts), never by library functions."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
