"""The command line and the library agree: one box readout per run, one name per thing, argparse
checks its own choices, and inputs of another game are refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from spacemoc.classifier import ZWhatClassifier
from spacemoc.cli import main
from spacemoc.games import get_game

PONG = get_game("pong")
Z_WHAT = 32  # SpaceConfig's z_what_dim
OBJECT_DTYPE = np.dtype([("sample", "i4"), ("t", "i2"), ("x", "f4"), ("y", "f4"), ("w", "f4"),
                         ("h", "f4"), ("label", "i2"), ("relevant", "u1")])  # fmt: skip


def write_split(path, n=2, T=2):
    """A pong split of grey frames with one ball per frame (what latents need of a dataset)."""
    frames = np.full((n, T, 128, 128, 3), 90, np.uint8)
    frames[:, :, 60:64, 60:64] = 236
    rows = [(i, t, 75.0, 100.0, 4.0, 4.0, 1, 1) for i in range(n) for t in range(T)]
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=frames)
        f.create_dataset("objects", data=np.array(rows, dtype=OBJECT_DTYPE))
        f.attrs.update(game="pong", split=path.stem, labels=list(PONG.labels), T=T)
    return path


@pytest.fixture
def run(tmp_path):
    """A run folder as training leaves it: a tiny SPACE model.pt with some cells present, and a
    classifier that records no readout (as classifiers written before the record)."""
    from spacemoc.models import save_checkpoint
    from spacemoc.models.space import Space, SpaceConfig

    torch.manual_seed(0)
    model = Space(SpaceConfig(G=4))
    with torch.no_grad():
        model.fg_module.img_encoder.z_pres_net.bias.fill_(0.5)
    folder = tmp_path / "seed0"
    save_checkpoint(folder / "model.pt", model, game="pong", labels=list(PONG.labels), step=1)
    ZWhatClassifier("nn", "pong", PONG.labels, np.eye(2, Z_WHAT), np.array([1, 4])).save(
        folder / "classifier.npz"
    )
    return folder


# ------------------------------------------------------------------ one box readout


def test_one_default_box_readout_the_config_schemas():
    from spacemoc.config import load_config, schema_property
    from spacemoc.models.readouts import BOX_READOUTS, default_box_readout

    assert default_box_readout() == load_config(None)["eval"]["boxes"] == "alpha"
    assert set(schema_property("eval", "boxes")["enum"]) == set(BOX_READOUTS)


def test_a_run_reads_the_workflows_default_by_hand(run, tmp_path):
    """Nothing recorded: Detector.load, `spacemoc latents` and the workflow config agree."""
    from spacemoc.config import load_config
    from spacemoc.detector import Detector
    from spacemoc.latents import load_latents

    workflow_default = load_config(None)["eval"]["boxes"]
    assert Detector.load(run, device="cpu").box_readout == workflow_default
    data = write_split(tmp_path / "test.h5")
    out = tmp_path / "by_hand.h5"
    assert main(["latents", "--run", str(run), "--data", str(data), "--out", str(out)]) == 0
    assert load_latents(out).attrs["box_readout"] == workflow_default


@pytest.mark.filterwarnings("ignore:.*no present cell matches")  # the untrained model's
@pytest.mark.parametrize("scored_with", ["glimpse", "alpha"])
def test_a_run_reads_the_boxes_it_was_scored_with(run, tmp_path, scored_with):
    """The workflow's latents record its eval.boxes: the run's classifier, detector and later
    latents by hand use the same readout."""
    from spacemoc.detector import Detector
    from spacemoc.latents import load_latents
    from spacemoc.stages.classifier import train_classifier
    from spacemoc.stages.latents import compute_latents

    data = write_split(tmp_path / "validation.h5")
    (run / "latents").mkdir()
    compute_latents(
        run / "model.pt", data, run / "latents" / "validation.h5", box_readout=scored_with
    )
    (run / "classifier.npz").unlink()  # the latents alone tell
    unrecorded = ZWhatClassifier("nn", "pong", PONG.labels, np.eye(2, Z_WHAT), np.array([1, 4]))
    assert Detector.load(run / "model.pt", classifier=unrecorded).box_readout == scored_with
    clf = train_classifier(run / "latents" / "validation.h5", run / "classifier.npz")
    assert clf.box_readout == scored_with
    assert ZWhatClassifier.load(run / "classifier.npz").box_readout == scored_with
    assert Detector.load(run, device="cpu").box_readout == scored_with
    out = tmp_path / "test_by_hand.h5"
    assert main(["latents", "--run", str(run), "--data", str(data), "--out", str(out)]) == 0
    assert load_latents(out).attrs["box_readout"] == scored_with
    # a flag still wins
    other = "glimpse" if scored_with == "alpha" else "alpha"
    assert Detector.load(run, device="cpu", box_readout=other).box_readout == other


def test_exported_folder_reads_its_config(run, tmp_path):
    from spacemoc.detector import Detector
    from spacemoc.stages.export import export_detector

    out = export_detector(
        run / "model.pt", run / "classifier.npz", tmp_path / "det", config={"eval": {}}
    )
    assert Detector.load(out, device="cpu").box_readout == "alpha"  # the schema default
    export_detector(
        run / "model.pt",
        run / "classifier.npz",
        tmp_path / "det",
        config={"eval": {"boxes": "glimpse"}},
    )
    assert Detector.load(out, device="cpu").box_readout == "glimpse"


@pytest.mark.parametrize("game", ["pong", "boxing"])
def test_shipped_detectors_keep_their_readout(game):
    import yaml

    from spacemoc.detector import Detector
    from spacemoc.stages.export import PRETRAINED_ROOT

    config = yaml.safe_load((PRETRAINED_ROOT / game / "config.yaml").read_text())
    assert Detector.pretrained(game, device="cpu").box_readout == config["eval"]["boxes"]


# ------------------------------------------------------------------ one name per thing


def subcommands() -> dict:
    import argparse

    from spacemoc.cli import build_parser

    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def options(command: str) -> set[str]:
    return {s for a in subcommands()[command]._actions for s in a.option_strings}


def test_version(capsys):
    import spacemoc

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"spacemoc {spacemoc.__version__}"


@pytest.mark.parametrize("command", ["latents", "detect", "export", "tracking", "evaluate"])
def test_a_trained_run_is_run_everywhere(command):
    assert "--run" in options(command) and "--model" not in options(command)


def test_each_seed_has_its_own_name():
    """--seed is the training seed only; env and k-means seeds say what they seed."""
    seeds = {c: {o for o in options(c) if o.endswith("seed")} for c in subcommands()}
    assert {c for c, s in seeds.items() if "--seed" in s} == {"train", "evaluate"}
    assert {c for c, s in seeds.items() if "--env-seed" in s} == {"background", "dataset", "detect"}
    assert {c for c, s in seeds.items() if "--eval-seed" in s} == {"classifier", "evaluate"}


def test_the_command_tracking_is_the_rule_tracking():
    from spacemoc.cli import build_parser

    parser = build_parser()
    tracking = parser.parse_args(["tracking", "--data", "t.h5", "--ground-truth"])
    alias = parser.parse_args(["track", "--data", "t.h5", "--ground-truth"])
    assert tracking.func is alias.func and tracking.func.__name__ == "_tracking"


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["dataset", "--game", "pong", "--split", "training"], "--split"),
        (["dataset", "--game", "pacman3000", "--split", "test"], "--game"),
        (["dataset", "--game", "pong", "--split", "test", "--motion-kind", "wobble"],
         "--motion-kind"),
        (["latents", "--run", "r", "--data", "d", "--out", "o", "--boxes", "tight"], "--boxes"),
        (["tracking", "--data", "d", "--boxes", "tight"], "--boxes"),
        (["classifier", "--latents", "l", "--out", "o", "--kind", "svm"], "--kind"),
        (["classifier", "--latents", "l", "--out", "o", "--game", "pacman3000"], "--game"),
        (["detect", "--run", "r", "--device", "gpu0"], "--device"),
        (["train", "--data", "d", "--out", "o", "--device", "tpu"], "--device"),
        (["detect", "--pretrained", "freeway3000"], "--pretrained"),
    ],
)  # fmt: skip
def test_argparse_checks_the_choices(argv, flag, capsys):
    required = {"dataset": ["--out", "o", "--background", "b"]}.get(argv[0], [])
    assert main([*argv, *required]) == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_game_names_as_users_write_them():
    from spacemoc.cli import build_parser

    args = build_parser().parse_args(
        ["classifier", "--latents", "l", "--out", "o", "--game", "Pong"]
    )
    assert args.game == "pong"


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["train", "--data", "d", "--out", "o", "--seed"], "--seed"),
        (["evaluate", "--latents", "l", "--data", "d", "--classifier", "c", "--out", "o",
          "--seed"], "--seed"),
        (["evaluate", "--latents", "l", "--data", "d", "--classifier", "c", "--out", "o",
          "--eval-seed"], "--eval-seed"),
        (["classifier", "--latents", "l", "--out", "o", "--eval-seed"], "--eval-seed"),
        (["background", "--game", "pong", "--out", "o", "--env-seed"], "--env-seed"),
        (["dataset", "--game", "pong", "--split", "test", "--out", "o", "--background", "b",
          "--env-seed"], "--env-seed"),
        (["detect", "--run", "r", "--env-seed"], "--env-seed"),
    ],
)  # fmt: skip
def test_a_negative_seed_is_refused_naming_the_flag(argv, flag, capsys):
    assert main([*argv, "-1"]) == 2
    assert f"argument {flag}: must be >= 0, got -1" in capsys.readouterr().err


def test_pretrained_names_a_shipped_detector_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["detect", "--pretrained", "pong", "--frames", "1", "--skip", "0", "--threads", "1"]
    assert main([*argv, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Detector(game='pong'" in out and "box_readout='alpha'" in out and "frame 0:" in out
    assert main(["detect", "--pretrained", "pong", "--run", "results/pong/seed0"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_latents_on_cuda_without_cuda_says_so(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = write_split(tmp_path / "test.h5")
    argv = ["latents", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "l.h5")]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "cannot read checkpoint" not in err
    assert not (tmp_path / "l.h5").exists()
    from spacemoc.stages.latents import compute_latents

    with pytest.raises(ValueError, match="CUDA is not available"):
        compute_latents(run / "model.pt", data, tmp_path / "l.h5", device="cuda")


# ------------------------------------------------------------------ inputs of another game


def test_a_background_of_another_game_is_refused(tmp_path, capsys):
    from spacemoc.data import load_background, save_background
    from spacemoc.data.background import background_game

    image = np.full((210, 160, 3), 40, np.uint8)
    png, npy = save_background(image, tmp_path / "boxing_bg.png", game="boxing")
    assert background_game(png) == background_game(npy) == "boxing"
    np.testing.assert_array_equal(load_background(npy, game="boxing"), image)
    out = tmp_path / "test.h5"
    for background in (npy, png):
        argv = ["dataset", "--game", "pong", "--split", "test", "--out", str(out),
                "--background", str(background), "--samples", "1", "--workers", "1"]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(background) in err and "boxing's, not pong's" in err
    assert not out.exists()


def test_a_background_recording_no_game_is_read_with_a_warning(tmp_path):
    from spacemoc.data import load_background, save_background

    _, npy = save_background(np.zeros((210, 160, 3), np.uint8), tmp_path / "bg.png")
    with pytest.warns(UserWarning, match="records no game: cannot check it is pong's"):
        load_background(npy, game="pong")


def test_the_background_command_records_the_game(tmp_path):
    from spacemoc.data.background import background_game

    out = tmp_path / "background.png"
    assert main(["background", "--game", "Pong", "--out", str(out), "--frames", "2"]) == 0
    assert background_game(out.with_suffix(".npy")) == "pong"


def test_train_names_an_unknown_arm(tmp_path, capsys):
    from spacemoc.cli import main

    args = ["train", "--data", str(tmp_path / "x.h5"), "--out", str(tmp_path), "--arm", "spacex"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        "unknown model arm 'spacex'; known arms: slot, slot_moc, space, space_m, space_moc" in err
    )
