"""Model families behind one interface: build from config, training losses, ``infer``,
checkpoints (docs/design.md, "How to add a model family").

    from spacemoc.models import load_checkpoint
    model = load_checkpoint("results/pong/space_moc/seed0/model.pt")  # any family, reference .pth
    out = model.infer(images)   # float (B,3,128,128) in [0,1], in model.channel_order
    # out["z_pres_prob"] (B,N), out["z_where"] (B,N,4), out["z_what"] (B,N,D): N object slots
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .families import DEFAULT_FAMILY, FAMILIES, Family, get_family

__all__ = [
    "DEFAULT_FAMILY", "FAMILIES", "Family", "get_family", "load_checkpoint", "save_checkpoint",
]  # fmt: skip
