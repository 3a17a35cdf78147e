"""SPACE model (spec §2): config, module, checkpoints.

B2's MOC loss lives in ``spacemoc.model.moc``.
"""

from .annealing import linear_annealing
from .checkpoint import load_checkpoint, save_checkpoint
from .config import SpaceConfig
from .moc import MocConfig, MocLoss
from .space import Space

__all__ = [
    "SpaceConfig", "Space", "load_checkpoint", "save_checkpoint", "linear_annealing",
    "MocConfig", "MocLoss",
]  # fmt: skip
