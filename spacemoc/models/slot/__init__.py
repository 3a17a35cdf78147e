"""The Slot Attention family with MOC losses for slots: one module per component.

``config`` SlotConfig and SlotMocConfig · ``model`` encoder, slot attention, decoder and
``infer`` · ``masks`` objects and boxes from slot masks · ``losses`` the motion and continuity
losses · ``training`` the optimiser, a training step and its logs · ``build`` hyperparameters
from a workflow config · ``checkpoint`` weights in and out.
"""

from spacemoc.models.families import Family

from . import checkpoint
from .build import build_configs
from .config import SlotConfig, SlotMocConfig
from .model import SlotAttentionModel
from .training import SlotTrainer

FAMILY = Family(
    name="slot",
    config=SlotConfig,
    loss_config=SlotMocConfig,
    build_configs=build_configs,
    model=SlotAttentionModel,
    trainer=SlotTrainer,
    from_checkpoint=checkpoint.from_checkpoint,
    inference_state=checkpoint.inference_state,
    can_train=checkpoint.can_train,
    sections=("slot", "slot_moc"),
)

__all__ = ["FAMILY", "SlotConfig", "SlotMocConfig", "SlotAttentionModel", "SlotTrainer"]
