"""A small student network distilled from a trained model's own outputs (no labels): the same
per-cell presence, boxes and z_what as the teacher's ``infer``, at a fraction of the cost, for
agents that read objects every step (docs/detector.md, "Fast detection").

    from spacemoc.distill import Student, StudentConfig, distill, load_student, save_student
"""

from spacemoc.distill.checkpoint import load_student, save_student
from spacemoc.distill.student import Student, StudentConfig
from spacemoc.distill.training import DistillConfig, distill, teacher_targets

__all__ = [
    "DistillConfig",
    "Student",
    "StudentConfig",
    "distill",
    "load_student",
    "save_student",
    "teacher_targets",
]
