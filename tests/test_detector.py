"""Detector: reference outputs on the shared fixture, batch consistency, loading, bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch

from spacemoc.classifier import ZWhatClassifier
from spacemoc.data import preprocess_frames
from spacemoc.detector import Detector, to_ox4rl
from spacemoc.games import get_game

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "ox4rl_compat"
needs_fixture = pytest.mark.skipif(
    not (FIXTURE / "checkpoint.pth").is_file() or not (FIXTURE / "io.npz").is_file(),
    reason=f"shared ox4rl fixture not found at {FIXTURE}",
)
PONG = get_game("pong")
NEAR = 1e-4  # the fixture's near-threshold tolerance on z_pres_prob
SCALE = np.array([160.0, 210.0, 160.0, 210.0])


@pytest.fixture(scope="module")
def io():
    return dict(np.load(FIXTURE / "io.npz"))


@pytest.fixture(scope="module")
def classifier(io):
    """A 1-NN on three fixture codes labelled Ball, Enemy, Player."""
    centroids = io["z_what"][0, [10, 100, 200]].astype(np.float64)
    return ZWhatClassifier(
        kind="nn",
        game="pong",
        labels=PONG.labels,
        centroids=centroids,
        centroid_labels=np.array([1, 2, 4]),
    )


@pytest.fixture(scope="module")
def model():
    from spacemoc.models import load_checkpoint

    torch.set_num_threads(2)
    return load_checkpoint(FIXTURE / "checkpoint.pth")


def reference_boxes(io, frame, hud):
    """Fixture boxes of one frame: (M,4) frame pixels [x, y, w, h], scores, cells."""
    rows = io["boxes"][:, 0] == frame
    y0, y1, x0, x1, p = io["boxes"][rows, 1:].T
    cells = io["boxes_cell_index"][rows]
    keep = np.ones(len(p), bool) if hud else PONG.in_relevant_area(x0, y0, x1, y1)
    keep &= np.abs(p - 0.5) >= NEAR
    xyxy = np.stack([x0, y0, x1, y1], 1)[keep] * SCALE
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    return xywh, p[keep], cells[keep]


def as_array(dets):
    dets = [d for d in dets if abs(d.score - 0.5) >= NEAR]
    return np.array([[d.x, d.y, d.w, d.h] for d in dets]).reshape(-1, 4), dets


@needs_fixture
def test_model_input_is_the_reference_input(model, classifier, io):
    det = Detector(model, classifier, device="cpu")
    assert det.channel_order == "bgr"  # reference weights
    x = det.model_input(preprocess_frames(io["frames_rgb_210x160"]))
    assert torch.equal(x, torch.from_numpy(io["model_input"]))


@needs_fixture
@pytest.mark.parametrize("hud", [True, False])
def test_boxes_land_on_the_reference_boxes(model, classifier, io, hud):
    det = Detector(model, classifier, device="cpu", hud=hud)
    results = det.detect_batch(io["frames_rgb_210x160"])
    assert len(results) == 8
    for frame, dets in enumerate(results):
        ref, ref_p, cells = reference_boxes(io, frame, hud)
        got, kept = as_array(dets)
        assert got.shape == ref.shape, f"frame {frame}: {len(got)} boxes, reference {len(ref)}"
        np.testing.assert_allclose(got, ref, atol=2.5e-2)  # 1e-4 normalised, in pixels
        np.testing.assert_allclose([d.score for d in kept], ref_p, atol=1e-4)
        # z_what of each kept cell (only those are encoded) and the labels made from it
        codes = io["z_what"][frame, cells]
        np.testing.assert_allclose(np.stack([d.z_what for d in kept]), codes, atol=1e-3)
        names = [PONG.labels[i] for i in classifier.predict(codes)]
        assert [d.label for d in kept] == names
    if not hud:  # the relevant area removes boxes (the untrained weights put them everywhere)
        assert sum(map(len, results)) < len(io["boxes"]) / 2


@needs_fixture
def test_detect_equals_detect_batch(model, classifier, io):
    det = Detector(model, classifier, device="cpu")
    frames = io["frames_rgb_210x160"]
    batch = det.detect_batch(frames)
    assert det.detect_batch(list(frames)) == batch  # list input, same computation
    for frame, dets in zip(frames, batch, strict=True):
        one = det.detect(frame)
        # batch 1 and batch 8 convolutions differ in float rounding: 1e-4 of the frame size
        assert [d.label for d in one] == [d.label for d in dets]
        np.testing.assert_allclose(
            [[d.x, d.y, d.w, d.h] for d in one], [[d.x, d.y, d.w, d.h] for d in dets], atol=0.02
        )
        np.testing.assert_allclose([d.score for d in one], [d.score for d in dets], atol=1e-4)
    small = Detector(model, classifier, device="cpu", batch_size=3)  # chunked batches
    for a, b in zip(small.detect_batch(frames), batch, strict=True):
        np.testing.assert_allclose([d.x for d in a], [d.x for d in b], atol=0.02)


@needs_fixture
def test_fast_path_equals_model_infer(model, classifier, io):
    """The detection path (glimpses of kept cells only) gives infer()'s values."""
    det = Detector(model, classifier, device="cpu", hud=False)
    x = torch.from_numpy(io["model_input"])
    with torch.inference_mode():
        prob, b, c, boxes, z_what = det._cells(x)
        full = model.infer(x)
    np.testing.assert_allclose(prob, full["z_pres_prob"].numpy(), atol=1e-6)
    np.testing.assert_allclose(z_what, full["z_what"].numpy()[b, c], atol=1e-4)
    from spacemoc.geometry import z_where_to_corners as cells_to_boxes

    np.testing.assert_allclose(boxes, cells_to_boxes(full["z_where"].numpy()[b, c]), atol=1e-6)


@needs_fixture
def test_to_ox4rl_shape(model, classifier, io):
    det = Detector(model, classifier, device="cpu")
    frame = io["frames_rgb_210x160"][0]
    dets = det.detect(frame)
    out = to_ox4rl(dets, frame)
    assert set(out) == {d.label for d in dets}
    assert sum(map(len, out.values())) == len(dets)
    for name, items in out.items():
        assert name in PONG.labels
        for x, y, w, h, conf, rgb in items:
            assert all(isinstance(v, int) for v in (x, y, w, h))
            assert 0.5 < conf <= 1.0
            assert len(rgb) == 3 and all(0 <= v <= 255 for v in rgb)
    assert all(item[5] is None for items in to_ox4rl(dets).values() for item in items)
    assert Detector.to_ox4rl is to_ox4rl


# ------------------------------------------------------------------------------ loading


def reference_layout(root, classifier, with_classifier=True):
    import joblib

    game = root / "pong"
    (game / "space_weights").mkdir(parents=True)
    (game / "space_weights" / "model_000005001.pth").symlink_to(FIXTURE / "checkpoint.pth")
    if with_classifier:
        (game / "classifier").mkdir()
        joblib.dump(
            classifier.to_sklearn(),
            game / "classifier" / "z_what-classifier_relevant_nn.joblib.pkl",
        )
    return game


@needs_fixture
def test_load_reference_layout_needs_trust(tmp_path, classifier, model, io):
    folder = reference_layout(tmp_path, classifier)
    with pytest.raises(ValueError, match="pickle.*trust=True"):
        Detector.load(folder)
    det = Detector.load(folder, device="cpu", trust=True)
    assert det.game == "pong" and det.channel_order == "bgr"
    frame = io["frames_rgb_210x160"][3]
    ours = Detector(model, classifier, device="cpu").detect(frame)
    assert det.detect(frame) == ours


@needs_fixture
def test_load_reference_layout_without_classifier(tmp_path, classifier):
    folder = reference_layout(tmp_path, classifier, with_classifier=False)
    with pytest.raises(ValueError, match="no classifier for game 'pong'"):
        Detector.load(folder, trust=True)


@needs_fixture
def test_load_run_folder(tmp_path, model, classifier, io):
    from spacemoc.models import save_checkpoint

    save_checkpoint(tmp_path / "model.pt", model, game="pong", labels=PONG.labels, step=0)
    with pytest.raises(ValueError, match="no classifier for game 'pong'.*classifier.npz"):
        Detector.load(tmp_path)
    classifier.save(tmp_path / "classifier.npz")
    det = Detector.load(tmp_path, device="cpu")
    assert det.game == "pong" and det.labels == PONG.labels and det.device.type == "cpu"
    frame = io["frames_rgb_210x160"][5]
    assert det.detect(frame) == Detector(model, classifier, device="cpu").detect(frame)
    # the checkpoint file itself, with the classifier given
    det = Detector.load(tmp_path / "model.pt", classifier=tmp_path / "classifier.npz")
    assert det.detect(frame) == Detector(model, classifier, device="cpu").detect(frame)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Detector.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not a detector folder"):
        Detector.load(tmp_path)
    with pytest.raises(ValueError, match="unknown game"):
        Detector.pretrained("pacman3000")


def test_pretrained_absent_is_a_clear_error():
    shipped = Path(__import__("spacemoc").__file__).parent / "pretrained" / "freeway"
    if shipped.is_dir():
        pytest.skip("a pretrained freeway detector is shipped")
    with pytest.raises(ValueError, match="no pretrained detector is shipped for 'freeway'"):
        Detector.pretrained("freeway")


# ------------------------------------------------------------------- without the fixture


class FakeModel:
    """Two cells with known boxes; only what the detector uses from a model."""

    channel_order = "rgb"
    game = "pong"

    def __init__(self, prob=(0.9, 0.2, 0.7)):
        self.prob = torch.tensor(prob)

    def infer(self, images, present_only=False, threshold=0.5):
        B, N = images.shape[0], len(self.prob)
        where = torch.tensor(
            [[0.1, 0.05, 0.0, 0.0], [0.1, 0.1, 0.5, 0.5], [0.05, 0.05, -0.5, 0.2]]
        )[:N]
        z_what = torch.eye(N, 4)
        return {
            "z_pres_prob": self.prob.expand(B, N),
            "z_where": where.expand(B, N, 4),
            "z_what": z_what.expand(B, N, 4),
        }


class ArgmaxClassifier:
    def predict(self, z):
        return np.array([[1, 2, 4, 0][int(np.argmax(v))] for v in z], dtype=np.int64)


def test_generic_model_boxes_and_labels():
    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    dets = det.detect(np.zeros((210, 160, 3), np.uint8))
    assert [d.label for d in dets] == ["Ball", "Player"]
    ball, player = dets
    assert (ball.x, ball.y, ball.w, ball.h, ball.score) == pytest.approx((72, 99.75, 16, 10.5, 0.9))
    assert (player.x, player.y, player.w, player.h) == pytest.approx((36.0, 120.75, 8.0, 10.5))
    assert repr(ball).startswith("Detection(label='Ball', x=")
    assert ball.center == pytest.approx((80.0, 105.0))


def test_nothing_detected_gives_empty_lists():
    det = Detector(FakeModel(prob=(0.1, 0.2, 0.3)), ArgmaxClassifier(), device="cpu")
    assert det.detect(np.zeros((210, 160, 3), np.uint8)) == []
    assert det.detect_batch(np.zeros((2, 210, 160, 3), np.uint8)) == [[], []]
    assert det.detect_batch([]) == []
    assert to_ox4rl([]) == {}


def test_classifier_label_out_of_range():
    class Bad:
        def predict(self, z):
            return np.full(len(z), 42)

    det = Detector(FakeModel(), Bad(), device="cpu")
    with pytest.raises(ValueError, match="label index 42"):
        det.detect(np.zeros((210, 160, 3), np.uint8))


def test_constructor_errors():
    with pytest.raises(ValueError, match="needs a z_what classifier"):
        Detector(FakeModel(), None)
    clf = ZWhatClassifier(
        kind="nn",
        game="boxing",
        labels=get_game("boxing").labels,
        centroids=np.eye(2, 4),
        centroid_labels=np.array([2, 4]),
    )
    with pytest.raises(ValueError, match="classifier is for 'boxing' but the model is for 'pong'"):
        Detector(FakeModel(), clf)
    model = FakeModel()
    model.game = None
    with pytest.raises(ValueError, match="pass game="):
        Detector(model, ArgmaxClassifier())
    with pytest.raises(ValueError, match="trained on 'pong', not 'boxing'"):
        Detector(FakeModel(), ArgmaxClassifier(), game="boxing")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Detector(FakeModel(), ArgmaxClassifier(), device="cuda")
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        Detector(FakeModel(), ArgmaxClassifier(), device="gpu0")
    with pytest.raises(ValueError, match="threshold"):
        Detector(FakeModel(), ArgmaxClassifier(), threshold=1.5)


FRAME = np.zeros((210, 160, 3), np.uint8)


@pytest.mark.parametrize(
    "frame, message",
    [
        (FRAME.astype(np.float32) / 255, "got dtype float32 .*scaled to \\[0,1\\]"),
        (np.zeros((128, 128, 3), np.uint8), "already resized"),
        (np.zeros((210, 160, 4), np.uint8), "got 4 channels"),
        (np.zeros((210, 160), np.uint8), "grayscale"),
        (np.zeros((3, 210, 160), np.uint8), "channels-first"),
        (np.zeros((250, 160, 3), np.uint8), "\\(210, 160, 3\\).*\\(250, 160, 3\\)"),
        (FRAME.tolist(), "numpy uint8 array .*got list"),
    ],
)
def test_bad_frames(frame, message):
    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    with pytest.raises(ValueError, match=message):
        det.detect(frame)


def test_bad_batches():
    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    with pytest.raises(
        ValueError, match="mixed sizes: frame 0 .*frame 1 has shape \\(128, 128, 3\\)"
    ):
        det.detect_batch([FRAME, np.zeros((128, 128, 3), np.uint8)])
    with pytest.raises(ValueError, match="got one frame"):
        det.detect_batch(FRAME)
    with pytest.raises(ValueError, match="already resized"):
        det.detect_batch(np.zeros((4, 128, 128, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype int64"):
        det.detect_batch(np.zeros((2, 210, 160, 3), np.int64))
    with pytest.raises(ValueError, match="frame 1 of the batch.*dtype float64"):
        det.detect_batch([FRAME, FRAME.astype(float)])
    with pytest.raises(ValueError, match="detect_preprocessed expects uint8 RGB images"):
        det.detect_preprocessed(np.zeros((2, 210, 160, 3), np.uint8))


def test_detect_preprocessed_equals_detect():
    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 210, 160, 3), dtype=np.uint8)
    assert det.detect_preprocessed(preprocess_frames(frames)) == det.detect_batch(frames)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@needs_fixture
def test_cuda_matches_cpu(model, classifier, io):
    import copy

    frames = io["frames_rgb_210x160"]
    cpu = Detector(copy.deepcopy(model), classifier, device="cpu").detect_batch(frames)
    gpu = Detector(copy.deepcopy(model), classifier).detect_batch(frames)
    for a, b in zip(cpu, gpu, strict=True):
        a, b = as_array(a)[0], as_array(b)[0]
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=0.05)


def test_batched_glimpses_equal_per_glimpse_sampling():
    from spacemoc.models.space.glimpse import extract_glimpses_at
    from spacemoc.models.space.glimpse import glimpses_of_cells as _glimpses

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 128, 128, generator=gen)
    b_idx = np.array([0, 0, 0, 2, 2, 4])
    where = torch.rand(6, 4, generator=gen) * torch.tensor([0.5, 0.5, 2, 2]) - torch.tensor(
        [0, 0, 1, 1]
    )
    ours = _glimpses(images, torch.from_numpy(b_idx), where, 32)
    assert torch.equal(ours, extract_glimpses_at(images, torch.from_numpy(b_idx), where, 32))


def test_detector_resize_is_the_training_resize():
    """Batches are resized on threads; the bytes are those of spacemoc.data.preprocess_frame."""
    from spacemoc.data import preprocess_frame

    det = Detector(FakeModel(), ArgmaxClassifier(), device="cpu")
    frames = np.random.default_rng(1).integers(0, 256, (9, 210, 160, 3), dtype=np.uint8)
    expected = np.stack([preprocess_frame(f) for f in frames])
    np.testing.assert_array_equal(det._preprocess(frames), expected)  # threaded
    np.testing.assert_array_equal(det._preprocess(frames[:3]), expected[:3])


@needs_fixture
def test_cli_detect(tmp_path, model, classifier, capsys):
    from spacemoc.cli import main
    from spacemoc.models import save_checkpoint

    save_checkpoint(tmp_path / "model.pt", model, game="pong", labels=PONG.labels, step=0)
    classifier.save(tmp_path / "classifier.npz")
    png = tmp_path / "detections.png"
    args = ["detect", "--run", str(tmp_path), "--frames", "2", "--skip", "5", "--threads", "2"]
    assert main([*args, "--draw", str(png)]) == 0
    out = capsys.readouterr().out
    assert "frame 0:" in out and "frame 1:" in out and png.stat().st_size > 0
    assert main([*args, "--track"]) == 0
    assert " #0 at (" in capsys.readouterr().out


def test_cli_detect_bad_input(tmp_path, capsys):
    from spacemoc.cli import main

    assert main(["detect", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["detect", "--run", str(tmp_path), "--frames", "0"]) == 2
    assert "--frames must be >= 1" in capsys.readouterr().err


@needs_fixture
def test_bfloat16_detections_stay_close_to_float32(model, classifier, io):
    """The opt-in bfloat16 mode finds the same objects (cells far from the threshold) with boxes
    within a pixel or two; cells near 0.5 may flip, as bfloat16 keeps ~3 significant digits."""
    frames = io["frames_rgb_210x160"]
    exact = Detector(model, classifier, device="cpu", hud=True).detect_batch(frames)
    fast = Detector(model, classifier, device="cpu", hud=True, precision="bfloat16")
    assert "precision='bfloat16'" in repr(fast)
    paired = total = 0
    for ours, theirs in zip(fast.detect_batch(frames), exact, strict=True):
        sure = [d for d in theirs if abs(d.score - 0.5) > 0.05]
        total += len(sure)
        for d in sure:
            centre = [np.hypot(d.x + d.w / 2 - e.x - e.w / 2, d.y + d.h / 2 - e.y - e.h / 2)
                      for e in ours]  # fmt: skip
            size = [max(abs(d.w - e.w), abs(d.h - e.h)) for e in ours]
            paired += any(c < 1.0 and s < 2.0 for c, s in zip(centre, size, strict=True))
    assert total > 100 and paired / total > 0.95, (paired, total)
    with pytest.raises(ValueError, match="precision must be one of"):
        Detector(model, classifier, device="cpu", precision="float16")
