"""The SPACE family (spec §2) with the MOC losses (spec §3): one module per component.

``config`` SpaceConfig · ``space`` the model and its ``infer`` · ``fg`` / ``bg`` foreground and
background · ``glimpse`` glimpse sampling and compositing · ``boxes`` the alpha box readout ·
``moc`` the MOC losses and schedulers · ``build`` hyperparameters from a workflow config ·
``training`` optimisers, the training step and its logs · ``checkpoint`` weights in and out
(the reference's ``model_*.pth`` included).
"""

from spacemoc.models.families import Family

from . import checkpoint
from .annealing import linear_annealing
from .build import build_configs
from .config import SpaceConfig
from .moc import MocConfig, MocLoss
from .space import Space
from .training import SpaceTrainer

FAMILY = Family(
    name="space",
    config=SpaceConfig,
    loss_config=MocConfig,
    build_configs=build_configs,
    model=Space,
    trainer=SpaceTrainer,
    from_checkpoint=checkpoint.from_checkpoint,
    inference_state=checkpoint.inference_state,
    can_train=checkpoint.can_train,
    reads_foreign=checkpoint.is_reference,
    from_foreign=checkpoint.from_reference,
)

__all__ = [
    "FAMILY", "SpaceConfig", "Space", "SpaceTrainer", "build_configs", "linear_annealing",
    "MocConfig", "MocLoss",
]  # fmt: skip
