"""The slot family's side of the checkpoints (``spacemoc.models.checkpoint`` reads and writes
the files): every weight is an inference weight, so a detector file is the whole model."""

from __future__ import annotations

from pathlib import Path

from .config import SlotConfig
from .model import SlotAttentionModel


def from_checkpoint(ckpt: dict, path: Path, config=None) -> SlotAttentionModel:
    stored = dict(ckpt.get("model_config") or {})
    if isinstance(config, SlotConfig):
        cfg = config
    else:
        cfg = SlotConfig.from_dict({**stored, **(config or {})})
    model = SlotAttentionModel(cfg)
    state = ckpt["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    # the background's number of looks is the game's, not the config's
    wrong = [
        k
        for k in expected
        if k in state and k != "reference" and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path}: the weights do not fit a slot model of config {cfg.to_dict()}: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    model.load_state_dict(state)
    return model


def inference_state(model: SlotAttentionModel) -> dict:
    return model.state_dict()


def can_train(model: SlotAttentionModel) -> bool:
    return True
