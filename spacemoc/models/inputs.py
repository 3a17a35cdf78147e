"""Images as every model family takes them: the one conversion of the Detector and latents."""

from __future__ import annotations

import numpy as np


def model_input(images, channel_order: str, device, channels_last: bool | None = None):
    """uint8 RGB images (B, H, W, 3) (numpy or torch) -> float (B, 3, H, W) in [0, 1] on
    ``device``, channels in ``channel_order`` ("rgb", or "bgr" for the reference's weights).

    ``channels_last`` (default: on the CPU) makes the tensor channels-last: oneDNN then runs
    float32 convolutions in NHWC (faster, same values up to float rounding) without touching the
    model's weights; under bfloat16 autocast the default layout is faster.
    """
    import torch

    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.ascontiguousarray(images))
    x = images.to(device)
    if channel_order == "bgr":
        x = x.flip(-1)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B,3,H,W)
    if channels_last is None:
        channels_last = x.device.type == "cpu"
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()
