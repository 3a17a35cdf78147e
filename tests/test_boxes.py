"""Box readouts: the alpha extent inside a glimpse, through infer, latents and the detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spacemoc.models.readouts import check_box_readout
from spacemoc.models.space.boxes import alpha_extent

G = 32  # glimpse size


def test_alpha_extent_is_the_box_of_the_drawn_pixels():
    # A box of half-size (0.2, 0.4) centred at (0.1, -0.3); alpha on in rows 4..11, columns 20..27.
    z_where = torch.tensor([[0.2, 0.4, 0.1, -0.3]])
    alpha = torch.zeros(1, 1, G, G)
    alpha[0, 0, 4:12, 20:28] = 0.9
    (sx, sy, cx, cy) = alpha_extent(z_where, alpha)[0].tolist()
    # align_corners=True: pixel j is at -1 + 2j/(G-1) in box units, plus half a spacing each side
    left, right = -1 + (2 * 20 - 1) / (G - 1), -1 + (2 * 27 + 1) / (G - 1)
    top, bottom = -1 + (2 * 4 - 1) / (G - 1), -1 + (2 * 11 + 1) / (G - 1)
    assert cx == pytest.approx(0.1 + 0.2 * (left + right) / 2)
    assert sx == pytest.approx(0.2 * (right - left) / 2)
    assert cy == pytest.approx(-0.3 + 0.4 * (top + bottom) / 2)
    assert sy == pytest.approx(0.4 * (bottom - top) / 2)


def test_alpha_extent_full_and_empty_glimpses():
    z_where = torch.tensor([[0.2, 0.4, 0.1, -0.3], [0.1, 0.1, 0.5, 0.5]])
    alpha = torch.zeros(2, 1, G, G)
    alpha[0] = 1.0  # every pixel drawn: the glimpse box plus half a pixel spacing
    alpha[1] = 0.4  # nothing above 0.5: the glimpse box is kept
    out = alpha_extent(z_where, alpha)
    np.testing.assert_allclose(out[0, 2:], z_where[0, 2:], atol=1e-6)
    np.testing.assert_allclose(out[0, :2], z_where[0, :2] * G / (G - 1), atol=1e-6)
    np.testing.assert_allclose(out[1], z_where[1])


def test_box_conversions_are_inverses():
    from spacemoc.geometry import (
        boxes_to_corners,
        boxes_to_z_where,
        corners_to_boxes,
        z_where_to_boxes,
        z_where_to_corners,
    )

    boxes = np.array([[10.0, 20.0, 5.0, 7.0], [0.0, 0.0, 160.0, 210.0], [-3.0, 200.0, 8.0, 20.0]])
    np.testing.assert_allclose(corners_to_boxes(boxes_to_corners(boxes)), boxes, atol=1e-9)
    z_where = boxes_to_z_where(boxes)
    np.testing.assert_allclose(z_where_to_boxes(z_where), boxes, atol=1e-9)
    np.testing.assert_allclose(corners_to_boxes(z_where_to_corners(z_where)), boxes, atol=1e-9)


def test_unknown_readout_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown box readout 'tight'.*glimpse, alpha"):
        check_box_readout("tight")


@pytest.fixture(scope="module")
def tiny_model():
    from spacemoc.models.space import Space, SpaceConfig

    torch.manual_seed(0)
    model = Space(SpaceConfig(G=4)).eval()
    with torch.no_grad():  # make some cells present
        model.fg_module.img_encoder.z_pres_net.bias.fill_(0.5)
    return model


def test_infer_alpha_moves_only_present_cells(tiny_model):
    x = torch.rand(2, 3, 128, 128)
    glimpse = tiny_model.infer(x, present_only=True)
    alpha = tiny_model.infer(x, present_only=True, box_readout="alpha")
    present = glimpse["z_pres_prob"] > 0.5
    assert present.any() and (~present).any()
    torch.testing.assert_close(alpha["z_where_glimpse"], glimpse["z_where"])
    torch.testing.assert_close(alpha["z_what"], glimpse["z_what"])  # encoded from the glimpse box
    torch.testing.assert_close(alpha["z_where"][~present], glimpse["z_where"][~present])
    b, n = present.nonzero(as_tuple=True)
    _, decoded = tiny_model.fg_module.glimpse_dec(glimpse["z_what"][b, n])
    expected = alpha_extent(glimpse["z_where"][b, n], decoded)
    torch.testing.assert_close(alpha["z_where"][b, n], expected)


def test_detector_alpha_boxes_equal_infer(tiny_model):
    from spacemoc.detector import Detector
    from spacemoc.geometry import z_where_to_corners as cells_to_boxes

    class Nearest:
        def predict(self, z):
            return np.ones(len(z), dtype=np.int64)  # every object a Ball

    x = torch.rand(3, 3, 128, 128)
    det = Detector(tiny_model, Nearest(), game="pong", device="cpu", hud=True, box_readout="alpha")
    with torch.inference_mode():
        prob, b, c, boxes, z_what = det._cells(x)
        full = tiny_model.infer(x, present_only=True, box_readout="alpha")
    assert len(b) > 0
    np.testing.assert_allclose(boxes, cells_to_boxes(full["z_where"].numpy()[b, c]), atol=1e-5)
    np.testing.assert_allclose(z_what, full["z_what"].numpy()[b, c], atol=1e-4)
    assert "box_readout='alpha'" in repr(det)
    with pytest.raises(ValueError, match="unknown box readout"):
        Detector(tiny_model, Nearest(), game="pong", box_readout="tight")


def save_run(folder, model, **recorded):
    """A run folder: ``model.pt`` and a one-centroid ``classifier.npz`` recording ``recorded``."""
    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.games import get_game
    from spacemoc.models import save_checkpoint

    labels = get_game("pong").labels
    save_checkpoint(folder / "model.pt", model, game="pong", labels=labels, step=0)
    ZWhatClassifier(
        kind="nn",
        game="pong",
        labels=labels,
        centroids=np.zeros((1, model.config.z_what_dim)),
        centroid_labels=np.array([1]),
        **recorded,
    ).save(folder / "classifier.npz")


def test_exported_config_sets_the_detector_readout(tmp_path, tiny_model):
    import yaml

    from spacemoc.detector import Detector

    save_run(tmp_path, tiny_model)
    # no config: the config schema's default, as in the workflow
    assert Detector.load(tmp_path).box_readout == "alpha"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"eval": {"boxes": "alpha"}}))
    assert Detector.load(tmp_path).box_readout == "alpha"
    assert (
        Detector.load(tmp_path, box_readout="glimpse").box_readout == "glimpse"
    )  # an explicit choice wins
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"eval": {"classifier": "nn"}}))
    assert (
        Detector.load(tmp_path).box_readout == "alpha"
    )  # a config without the option: the default
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"eval": {"boxes": "glimpse"}}))
    assert Detector.load(tmp_path).box_readout == "glimpse"


def test_detector_load_takes_the_recorded_overlap_suppression(tmp_path, tiny_model):
    from spacemoc.detector import Detector

    save_run(tmp_path, tiny_model, overlap_suppression=0.5)
    detector = Detector.load(tmp_path, device="cpu")
    assert detector.overlap_suppression == 0.5
    assert "overlap_suppression=0.5" in repr(detector)
    assert Detector.load(tmp_path, device="cpu", overlap_suppression=0).overlap_suppression == 0


OBJECT_DTYPE = np.dtype([("sample", "i4"), ("t", "i2"), ("x", "f4"), ("y", "f4"), ("w", "f4"),
                         ("h", "f4"), ("label", "i2"), ("relevant", "u1")])  # fmt: skip


@pytest.mark.parametrize(
    "box_readout, hud, overlap_suppression",
    [
        ("glimpse", True, 0.0),
        ("glimpse", False, 0.0),
        ("alpha", True, 0.0),
        ("alpha", False, 0.0),
        ("alpha", True, 0.5),
        ("glimpse", False, 0.3),
    ],
)
def test_detector_gives_the_objects_of_the_workflow_latents(
    tmp_path, tiny_model, box_readout, hud, overlap_suppression
):
    """One inference path: on the same frames the Detector finds exactly the present cells of
    the workflow's latents file, with the same boxes, scores, z_what and box colours (both
    readouts, with and without the overlap suppression), so a classifier of colour features
    labels them alike."""
    import h5py

    from spacemoc.classifier import ZWhatClassifier
    from spacemoc.detector import Detector
    from spacemoc.games import get_game
    from spacemoc.geometry import in_relevant_area
    from spacemoc.latents import load_latents
    from spacemoc.models import save_checkpoint
    from spacemoc.stages.latents import compute_latents

    pong = get_game("pong")
    by_colour = ZWhatClassifier(  # darker boxes are Balls (1), lighter ones Enemies (2)
        "nn", "pong", pong.labels, centroids=np.array([[0.45] * 3, [0.55] * 3]),
        centroid_labels=np.array([1, 2]), features="colour",
    )  # fmt: skip
    frames = np.random.default_rng(1).integers(0, 256, (2, 4, 128, 128, 3), dtype=np.uint8)
    data = tmp_path / "test.h5"
    with h5py.File(data, "w") as f:
        f.create_dataset("frames", data=frames)
        f.create_dataset("objects", data=np.array([(0, 0, 70, 90, 4, 4, 1, 1)], OBJECT_DTYPE))
        f.attrs.update(game="pong", split="test", labels=list(pong.labels), T=4)
    model_path = save_checkpoint(
        tmp_path / "model.pt", tiny_model, game="pong", labels=list(pong.labels), step=0
    )
    latents = compute_latents(
        model_path, data, tmp_path / "latents.h5", batch_size=2, device="cpu",
        box_readout=box_readout, overlap_suppression=overlap_suppression,
    )  # fmt: skip
    lat = load_latents(latents)
    assert lat.attrs["overlap_suppression"] == overlap_suppression
    det = Detector(
        tiny_model, by_colour, game="pong", device="cpu", hud=hud, box_readout=box_readout,
        batch_size=8, overlap_suppression=overlap_suppression,
    )  # fmt: skip
    found = det.detect_preprocessed(frames.reshape(-1, 128, 128, 3))
    codes = lat.z_what.reshape(8, lat.z_what.shape[2], -1)
    colours = lat.box_colour.reshape(8, lat.z_what.shape[2], 3)
    assert sum(map(len, found)) > 0
    assert {d.label for dets in found for d in dets} == {"Ball", "Enemy"}
    for frame, (dets, pred, cells) in enumerate(
        zip(found, lat.predictions(), lat.cell_indices(), strict=True)
    ):
        keep = np.ones(len(pred), bool) if hud else in_relevant_area(pong, pred)
        assert len(dets) == keep.sum(), f"frame {frame}"
        got = np.array([[d.x, d.y, d.w, d.h, d.score] for d in dets]).reshape(-1, 5)
        np.testing.assert_allclose(got, pred[keep], rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            np.array([d.z_what for d in dets]).reshape(-1, codes.shape[-1]),
            codes[frame, cells[keep]],
            rtol=0,
            atol=1e-6,
        )
        expected = by_colour.predict(codes[frame, cells[keep]], colours[frame, cells[keep]])
        assert [d.label for d in dets] == [pong.labels[i] for i in expected]
