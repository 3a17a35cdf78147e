"""The distilled student: its infer contract, that distillation learns a teacher, its file, and
the student folder as a detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spacemoc.distill import (
    DistillConfig,
    Student,
    StudentConfig,
    distill,
    load_student,
    save_student,
)
from spacemoc.geometry import IMAGE_SIZE

G = 16
CELL = IMAGE_SIZE // G


def squares(n: int, seed: int = 0, per_image: int = 8) -> np.ndarray:
    """uint8 images (n,128,128,3), each with 8x8 squares, red or green, on random cells."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for image in images:
        for cell in rng.choice(G * G, per_image, replace=False):
            row, col = divmod(int(cell), G)
            colour = rng.integers(0, 2)
            image[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL, colour] = 255
    return images


class SquareTeacher:
    """A stand-in teacher with the models' infer contract: the cell holding a square is present,
    its box the square, its z_what [1, 0] for red and [0, 1] for green."""

    channel_order = "rgb"

    class config:
        G = G

    def infer(self, x, present_only=False, threshold=0.5):
        cells = torch.nn.functional.avg_pool2d(x, CELL).flatten(2).transpose(1, 2)  # (B,N,3)
        prob = (cells.amax(-1) > 0.5).float() * 0.98 + 0.01  # (B,N)
        centres = (torch.arange(G) + 0.5) / G * 2 - 1
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        z_where = (
            torch.stack((torch.full_like(cx, 1 / G), torch.full_like(cx, 1 / G), cx, cy), -1)
            .reshape(1, G * G, 4)
            .expand(len(x), -1, -1)
        )
        z_what = (cells[..., :2] > 0.5).float() * (prob > threshold).unsqueeze(-1)
        return {"z_pres_prob": prob, "z_where": z_where, "z_what": z_what}


def test_student_infer_contract():
    student = Student(StudentConfig(z_what_dim=2), game="pong", labels=["a"], box_readout="alpha")
    out = student.infer(torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE), present_only=True)
    assert out["z_pres_prob"].shape == (3, G * G)
    assert out["z_where"].shape == (3, G * G, 4)
    absent = out["z_pres_prob"] <= 0.5
    assert (out["z_what"][absent] == 0).all()
    assert student.infer(torch.rand(1, 3, 128, 128), box_readout="alpha")["z_where"].shape[1] == 256
    with pytest.raises(ValueError, match="distilled from 'alpha'"):
        student.infer(torch.rand(1, 3, 128, 128), box_readout="glimpse")


def test_duplicates_between_neighbouring_cells_are_dropped():
    from spacemoc.distill.student import suppress_duplicates

    prob = torch.zeros(1, G * G)
    z_where = torch.zeros(1, G * G, 4)
    z_where[..., :2] = 0.05
    same = torch.tensor([0.05, 0.05, 0.0, 0.0])
    prob[0, 0], prob[0, 1], z_where[0, 0], z_where[0, 1] = 0.9, 0.7, same, same  # one object
    prob[0, 40], z_where[0, 40] = 0.8, same  # the same box, but not a neighbour
    prob[0, 100], prob[0, 101] = 0.9, 0.8  # neighbours with disjoint boxes: two objects
    z_where[0, 100], z_where[0, 101] = torch.tensor([0.05, 0.05, -0.5, 0.0]), same
    kept = suppress_duplicates(prob, z_where, G, threshold=0.5, max_iou=0.3)[0]
    assert kept[0] == 0.9 and kept[1] == 0  # the weaker of the two is dropped
    assert kept[40] == 0.8 and kept[100] == 0.9 and kept[101] == 0.8
    prob[0, 1] = 0.9  # a tie: the earlier cell stays
    kept = suppress_duplicates(prob, z_where, G, threshold=0.5, max_iou=0.3)[0]
    assert kept[0] == 0.9 and kept[1] == 0


def test_student_config_must_reach_the_cell_grid():
    with pytest.raises(ValueError, match="not G=16"):
        StudentConfig(patch=2)
    assert StudentConfig(G=8, patch=8).G == 8


def test_distillation_learns_the_teacher():
    images = squares(600)
    student, log = distill(
        SquareTeacher(),
        images,
        game="pong",
        labels=["red", "green"],
        box_readout="glimpse",
        config=DistillConfig(steps=300, batch_size=16, eval_every=150, holdout=0.1),
    )
    last = log[-1]
    assert [row["step"] for row in log] == [150, 300]
    assert last["cell_f"] > 0.95, log
    assert last["box_px"] < 2.0, log
    # the student's z_what tells red from green on new images
    fresh = squares(40, seed=1)
    x = torch.from_numpy(fresh).permute(0, 3, 1, 2).float() / 255
    out, ref = student.infer(x, present_only=True), SquareTeacher().infer(x, present_only=True)
    present = ref["z_pres_prob"] > 0.5
    assert (out["z_pres_prob"][present] > 0.5).float().mean() > 0.95
    same = out["z_what"][present].argmax(-1) == ref["z_what"][present].argmax(-1)
    assert same.float().mean() > 0.95


def test_frame_weights_must_match_the_frames():
    with pytest.raises(ValueError, match="frame_weights must be 10 weights"):
        distill(
            SquareTeacher(),
            squares(10),
            game="pong",
            labels=["red", "green"],
            box_readout="glimpse",
            frame_weights=np.ones(3),
        )


def test_the_command_line_and_the_workflow_default_alike():
    from spacemoc.config import schema_default

    defaults = DistillConfig()
    for key in ("steps", "batch_size", "lr"):
        assert schema_default("distill", key) == getattr(defaults, key), key


def test_importing_the_package_leaves_torch_to_the_commands():
    import subprocess
    import sys

    code = "import sys, spacemoc.cli, spacemoc.distill.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_model_without_cells_is_refused():
    class SlotLike:
        channel_order = "rgb"

        def infer(self, x):
            raise AssertionError("never called")

    with pytest.raises(ValueError, match="G x G grid of cells"):
        distill(SlotLike(), squares(4), game="pong", labels=["a"], box_readout="glimpse")


def test_student_file_round_trip(tmp_path):
    from spacemoc.models import load_checkpoint

    student = Student(StudentConfig(), game="pong", labels=["a", "b"], box_readout="alpha")
    student.step = 7
    path = save_student(tmp_path / "student.pt", student, extra={"teacher": "x"})
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Student) and not loaded.training
    assert (loaded.game, loaded.labels, loaded.step) == ("pong", ("a", "b"), 7)
    assert loaded.fixed_box_readout == "alpha" and loaded.extra == {"teacher": "x"}
    x = torch.rand(2, 3, 128, 128)
    for a, b in zip(student.eval()(x), loaded(x), strict=True):
        torch.testing.assert_close(a, b)
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        load_student(tmp_path / "other.pt")


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory, tiny_run):
    """A student of the shipped Pong detector, distilled for a few steps on the tiny run's
    frames (quality is measured in docs, not here)."""
    from spacemoc.cli import main

    out = tmp_path_factory.mktemp("student") / "pong_student"
    data = tiny_run / "results/pong/data/validation.h5"
    code = main(
        ["distill", "--pretrained", "pong", "--data", str(data), "--out", str(out),
         "--steps", "3", "--batch-size", "4", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    return out


def test_student_folder_is_a_detector(student_folder, tiny_run, tmp_path):
    from spacemoc.cli import main
    from spacemoc.detector import Detector
    from spacemoc.latents import load_latents

    assert sorted(p.name for p in student_folder.iterdir()) == [
        "classifier.npz", "classifier_labels.csv", "distill.csv", "student.pt"
    ]  # fmt: skip
    det = Detector.load(student_folder)
    assert det.game == "pong" and det.box_readout == "alpha"
    frames = np.zeros((3, 210, 160, 3), np.uint8)
    assert len(det.detect_batch(frames)) == 3
    with pytest.raises(ValueError, match="distilled from"):
        Detector.load(student_folder, box_readout="glimpse")
    # the latents stage takes the student folder like a run
    out = tmp_path / "test_latents.h5"
    data = tiny_run / "results/pong/data/test.h5"
    assert main(["latents", "--run", str(student_folder), "--data", str(data),
                 "--out", str(out), "--threads", "1"]) == 0  # fmt: skip
    lat = load_latents(out)
    assert lat.z_pres_prob.shape[-1] == 256


def test_distill_never_replaces_a_foreign_folder(tmp_path, tiny_run, capsys):
    from spacemoc.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    data = tiny_run / "results/pong/data/validation.h5"
    code = main(["distill", "--pretrained", "pong", "--data", str(data), "--out", str(out),
                 "--steps", "1"])  # fmt: skip
    assert code == 2
    assert "not a student folder" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_distill_refuses_frames_of_another_game(tmp_path, tiny_run, capsys):
    from spacemoc.cli import main

    data = tiny_run / "results/pong/data/validation.h5"
    code = main(["distill", "--pretrained", "boxing", "--data", str(data),
                 "--out", str(tmp_path / "s"), "--steps", "1"])  # fmt: skip
    assert code == 2
    assert "'pong' frames, the teacher is 'boxing'" in capsys.readouterr().err


def test_workflow_distills_and_scores_the_student(tiny_run):
    import csv

    run = tiny_run / "results/pong/space_moc/seed0"
    assert (run / "student/student.pt").is_file() and (run / "student/distill.csv").is_file()
    with open(run / "student_metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["model"] for row in rows} == {"space_moc_student"}
    assert {row["subset"] for row in rows} == {"all", "relevant"}
    benchmarks = tiny_run / "results/pong/space_moc/benchmarks"
    assert (benchmarks / "distill_seed0.tsv").is_file()
    assert (benchmarks / "student_evaluate_seed0.tsv").is_file()
    assert (tiny_run / "logs/pong/space_moc/distill_seed0.log").is_file()
