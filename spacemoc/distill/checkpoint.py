"""A student's file: ``student.pt`` ("spacemoc-student/1"), read with weights_only=True."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from spacemoc.atomic import atomic_path
from spacemoc.distill.config import STUDENT_FORMAT as FORMAT
from spacemoc.distill.config import StudentConfig
from spacemoc.distill.student import Student


def save_student(path: str | os.PathLike, student: Student, extra: dict | None = None) -> Path:
    """Write ``student`` atomically; ``extra``: plain values recorded beside it (the teacher's
    path, the distillation settings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": student.config.to_dict(),
        "game": student.game,
        "labels": list(student.labels),
        "channel_order": student.channel_order,
        "box_readout": student.fixed_box_readout,
        "step": int(student.step),
        "extra": dict(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_student(path: str | os.PathLike, map_location="cpu") -> Student:
    """The student at ``path`` in eval mode (a ValueError for a missing or foreign file)."""
    from spacemoc.models import load_checkpoint

    student = load_checkpoint(path, map_location)
    if not isinstance(student, Student):
        raise ValueError(f"{path} is not a spacemoc student (format {FORMAT!r})")
    return student


def student_from_payload(ckpt: dict) -> Student:
    """The student a "spacemoc-student/1" dict holds (``spacemoc.models.load_checkpoint`` reads
    the file)."""
    student = Student(
        StudentConfig.from_dict(ckpt["config"]),
        game=ckpt["game"],
        labels=ckpt["labels"],
        channel_order=ckpt["channel_order"],
        box_readout=ckpt["box_readout"],
    )
    student.load_state_dict(ckpt["state_dict"])
    student.step = int(ckpt.get("step", 0))
    student.extra = dict(ckpt.get("extra", {}))
    return student
