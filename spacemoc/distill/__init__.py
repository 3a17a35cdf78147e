"""A small student network distilled from a trained model's own outputs (no labels): the same
per-cell presence, boxes and z_what as the teacher's ``infer``, at a fraction of the cost, for
agents that read objects every step (docs/detector.md, "Fast detection for agents").

    from spacemoc.distill import Student, StudentConfig, distill, load_student, save_student

The names load lazily: importing the package (or its torch-free ``config``) does not import
torch.
"""

from importlib import import_module

_HOMES = {
    "DistillConfig": "config",
    "StudentConfig": "config",
    "Student": "student",
    "distill": "training",
    "teacher_targets": "training",
    "load_student": "checkpoint",
    "save_student": "checkpoint",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
