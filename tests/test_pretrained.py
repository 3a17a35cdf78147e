"""The shipped detectors (spacemoc/pretrained/<game>) on frames they have never seen.

Each package's eval.csv is the workflow's evaluation of its weights on the 4,096-frame test split.
Here the detector runs on freshly played frames (a seed no split uses) through the user-facing path
(`Detector.pretrained`, raw 210x160 RGB frames) and must stay near those figures.
"""

from __future__ import annotations

import csv
import functools
import math

import numpy as np
import pytest
import yaml

from spacemoc import Detector
from spacemoc.data.env import RandomAgent, agent_steps, make_env, reset
from spacemoc.data.rollout import WARMUP_STEPS, runs
from spacemoc.games import get_game
from spacemoc.geometry import FRAME_HEIGHT, FRAME_WIDTH
from spacemoc.metrics import detection_scores, greedy_match, misalignment_matrix, relevant_subset
from spacemoc.stages.export import PRETRAINED_ROOT, shipped_detectors

SHIPPED_GAMES = shipped_detectors()
FRESH_SEED = 987_654  # the workflow's splits use seeds 0-3 and 100
WINDOWS = 96  # one frame from each 20-step window: ~270 relevant objects (Pong), ~190 (Boxing)
MIN_OBJECTS = 150
PIXELS = np.array([FRAME_WIDTH, FRAME_HEIGHT, FRAME_WIDTH, FRAME_HEIGHT], dtype=np.float64)


def shipped_relevant_row(game: str) -> dict:
    """The eval.csv row of the shipped weights: seed 0, relevant objects, of the arm the folder's
    config.yaml names (an eval.csv holds every arm of its experiment)."""
    with open(PRETRAINED_ROOT / game / "eval.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["seed"] == "0" and r["subset"] == "relevant"]
    if len({r["model"] for r in rows}) > 1:
        arms = yaml.safe_load((PRETRAINED_ROOT / game / "config.yaml").read_text())["models"]
        rows = [r for r in rows if r["model"] == arms[0]]
    (row,) = rows
    return {k: float(v) for k, v in row.items() if k not in ("game", "model", "seed", "subset")}


@functools.cache
def fresh_frames(game_name: str):
    """(frames, gt boxes, gt labels): the last frame of each 20-step random-play window."""
    game_row = get_game(game_name)
    env = make_env(game_row)
    agent = RandomAgent(env.nb_actions, np.random.default_rng(FRESH_SEED))
    reset(env, seed=FRESH_SEED)
    agent_steps(env, agent, WARMUP_STEPS)  # as the data stage: no frames from the serve
    frames, boxes, labels = [], [], []
    for window, objects in runs(env, agent, game_row, WINDOWS, span=20, T=1):
        rows = objects[-1]
        frames.append(window[-1])
        boxes.append(np.array([r[:4] for r in rows], dtype=np.float64).reshape(-1, 4))
        labels.append(np.array([r[4] for r in rows], dtype=np.int64))
    env.close()
    return np.stack(frames), boxes, labels


def tolerance(value: float, n: int) -> float:
    """Four binomial standard errors of a rate near ``value`` measured on ``n`` objects, at least
    0.03: the fresh sample is small, so only a real regression should fail the test."""
    return max(0.03, 4 * math.sqrt(max(value * (1 - value), 1e-4) / n))


def as_pred(detections) -> list[np.ndarray]:
    """Detections per frame -> the metrics' (M,5) [x, y, w, h, score] arrays."""
    return [np.array([[d.x, d.y, d.w, d.h, d.score] for d in f]).reshape(-1, 5) for f in detections]


@pytest.fixture(scope="module", params=SHIPPED_GAMES)
def fresh_evaluation(request):
    game = request.param
    detector = Detector.pretrained(game, device="cpu")
    frames, gt_boxes, gt_labels = fresh_frames(game)
    detections = detector.detect_batch(frames)
    pred = as_pred(detections)
    names = [[d.label for d in f] for f in detections]
    return game, detector, pred, names, gt_boxes, gt_labels


def test_pong_and_boxing_are_shipped():
    assert {"pong", "boxing"} <= set(SHIPPED_GAMES)


@pytest.mark.parametrize("game", SHIPPED_GAMES)
def test_shipped_package_is_complete_and_small(game):
    files = {p.name for p in (PRETRAINED_ROOT / game).iterdir()}
    # the training cost on record beside the quality: the train rule's Snakemake benchmark
    assert {
        "detector.pt",
        "classifier.npz",
        "config.yaml",
        "eval.csv",
        "train_benchmark.tsv",
    } <= files
    assert (PRETRAINED_ROOT / game / "detector.pt").stat().st_size <= 12 * 2**20
    row = shipped_relevant_row(game)
    assert 0 < row["f_score"] <= 1 and 0 < row["cluster_nn_accuracy"] <= 1
    assert Detector.pretrained(game, device="cpu").game == game


def test_shipped_detector_finds_fresh_objects(fresh_evaluation):
    game, _, pred, _, gt_boxes, gt_labels = fresh_evaluation
    pred, gt, _, _ = relevant_subset(pred, gt_boxes, gt_labels, game)
    n_gt = sum(len(g) for g in gt)
    assert n_gt > MIN_OBJECTS
    scores = detection_scores(pred, gt)
    shipped = shipped_relevant_row(game)["f_score"]
    assert scores["f_score"] >= shipped - tolerance(shipped, n_gt), (scores, shipped)


def test_shipped_detector_labels_fresh_objects(fresh_evaluation):
    """Detections matched to an OCAtari object carry that object's class (the shipped
    classifier_accuracy is the same rate on the test split's matched objects)."""
    game, detector, pred, names, gt_boxes, gt_labels = fresh_evaluation
    labels = get_game(game).labels
    pred, gt, gt_lab, keep = relevant_subset(pred, gt_boxes, gt_labels, game)
    correct = total = 0
    for p, frame_names, k, g, lab in zip(pred, names, keep, gt, gt_lab, strict=True):
        frame_names = [n for n, kept in zip(frame_names, k, strict=True) if kept]
        matched = greedy_match(misalignment_matrix(p[:, :4] / PIXELS, g / PIXELS), p[:, 4], 0.5)
        for i, j in enumerate(matched):
            if j >= 0:
                total += 1
                correct += frame_names[i] == labels[lab[j]]
    assert total > MIN_OBJECTS
    shipped = shipped_relevant_row(game)["classifier_accuracy"]
    accuracy = correct / total
    assert accuracy >= shipped - tolerance(shipped, total), (accuracy, shipped, detector)


def test_bfloat16_mode_scores_like_float32(fresh_evaluation):
    """The opt-in fast mode (Detector(precision="bfloat16")) on the same fresh frames."""
    game, _, pred, _, gt_boxes, gt_labels = fresh_evaluation
    if game != "pong":
        pytest.skip("checked on Pong only: the mode is the same code for every game")
    frames = fresh_frames(game)[0]
    fast = Detector.pretrained(game, device="cpu", precision="bfloat16").detect_batch(frames)
    fast_pred = as_pred(fast)
    scores = [
        detection_scores(*relevant_subset(p, gt_boxes, gt_labels, game)[:2])["f_score"]
        for p in (pred, fast_pred)
    ]
    assert abs(scores[0] - scores[1]) < 0.01, scores
