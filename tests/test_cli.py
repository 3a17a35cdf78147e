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
    from spacemoc.model import Space, SpaceConfig, save_checkpoint

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
    from spacemoc.model.boxes import BOX_READOUTS, default_box_readout

    assert default_box_readout() == load_config(None)["eval"]["boxes"] == "alpha"
    assert set(schema_property("eval", "boxes")["enum"]) == set(BOX_READOUTS)


def test_a_run_reads_the_workflows_default_by_hand(run, tmp_path):
    """Nothing recorded: Detector.load, `spacemoc latents` and the workflow config agree."""
    from spacemoc.config import load_config
    from spacemoc.detector import Detector
    from spacemoc.latents import load_latents

    workflow_default = load_config(None)["eval"]["boxes"]
    assert Detector.load(run, device="cpu").boxes == workflow_default
    data = write_split(tmp_path / "test.h5")
    out = tmp_path / "by_hand.h5"
    assert main(["latents", "--run", str(run), "--data", str(data), "--out", str(out)]) == 0
    assert load_latents(out).attrs["box_readout"] == workflow_default


@pytest.mark.filterwarnings("ignore:.*no present cell matches")  # the untrained model's
@pytest.mark.parametrize("scored_with", ["glimpse", "alpha"])
def test_a_run_reads_the_boxes_it_was_scored_with(run, tmp_path, scored_with):
    """The workflow's latents record its eval.boxes: the run's classifier, detector and later
    latents by hand use the same readout."""
    from spacemoc.classifier import train_classifier
    from spacemoc.detector import Detector
    from spacemoc.latents import compute_latents, load_latents

    data = write_split(tmp_path / "validation.h5")
    (run / "latents").mkdir()
    compute_latents(run / "model.pt", data, run / "latents" / "validation.h5", boxes=scored_with)
    (run / "classifier.npz").unlink()  # the latents alone tell
    unrecorded = ZWhatClassifier("nn", "pong", PONG.labels, np.eye(2, Z_WHAT), np.array([1, 4]))
    assert Detector.load(run / "model.pt", classifier=unrecorded).boxes == scored_with
    clf = train_classifier(run / "latents" / "validation.h5", run / "classifier.npz")
    assert clf.box_readout == scored_with
    assert ZWhatClassifier.load(run / "classifier.npz").box_readout == scored_with
    assert Detector.load(run, device="cpu").boxes == scored_with
    out = tmp_path / "test_by_hand.h5"
    assert main(["latents", "--run", str(run), "--data", str(data), "--out", str(out)]) == 0
    assert load_latents(out).attrs["box_readout"] == scored_with
    # a flag still wins
    other = "glimpse" if scored_with == "alpha" else "alpha"
    assert Detector.load(run, device="cpu", boxes=other).boxes == other


def test_exported_folder_reads_its_config(run, tmp_path):
    from spacemoc.detector import Detector
    from spacemoc.export import export_detector

    out = export_detector(
        run / "model.pt", run / "classifier.npz", tmp_path / "det", config={"eval": {}}
    )
    assert Detector.load(out, device="cpu").boxes == "alpha"  # the schema default
    export_detector(
        run / "model.pt",
        run / "classifier.npz",
        tmp_path / "det",
        config={"eval": {"boxes": "glimpse"}},
    )
    assert Detector.load(out, device="cpu").boxes == "glimpse"


@pytest.mark.parametrize("game", ["pong", "boxing"])
def test_shipped_detectors_keep_their_readout(game):
    import yaml

    from spacemoc.detector import Detector
    from spacemoc.export import PRETRAINED_ROOT

    config = yaml.safe_load((PRETRAINED_ROOT / game / "config.yaml").read_text())
    assert Detector.pretrained(game, device="cpu").boxes == config["eval"]["boxes"]
