"""Multi-object tracking on top of the detector, and its evaluation (MOTA, IDF1).

`Tracker` keeps persistent ids across frames. Every frame it matches the live tracks to the new
detections with the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`) on a cost that
mixes the distance between a track's predicted centre (last centre + velocity) and a detection's
centre with the cosine dissimilarity of their z_what codes (when the detections carry them). A
track that finds no detection survives `max_missed` frames (coasting on its velocity) before it is
dropped; a detection that finds no track starts a new one.

`mot_metrics` scores tracks against OCAtari's objects with motmetrics (the tracking stage,
`spacemoc.stages.tracking`, runs detector + tracker over the `tracking` split). A track matches a
ground-truth object when their centres are closer than half the object's diagonal (the matching
criterion of the detection precision/recall, spec §5.2), so the tiny Atari objects (Pong's ball is
2x4 pixels) are not lost to an IoU threshold.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

_INFEASIBLE = 1e6  # cost of a pair outside the gate; never kept after the assignment


@dataclass
class Track:
    """One tracked object. Box in frame pixels (x, y = top-left corner)."""

    id: int
    x: float
    y: float
    w: float
    h: float
    score: float = 1.0
    dx: float = 0.0  # centre velocity, pixels per frame
    dy: float = 0.0
    hits: int = 1  # frames with a matched detection
    missed: int = 0  # consecutive frames without one
    z_what: np.ndarray | None = field(default=None, repr=False)  # unit-norm appearance code
    label_votes: Counter = field(default_factory=Counter, repr=False)
    # with a label window: the labels that vote, newest last (None: every label votes, for good)
    recent_labels: deque | None = field(default=None, repr=False)

    @property
    def label(self) -> str | None:
        """The label the track's (recent) detections carried most often (ties: first seen)."""
        return self.label_votes.most_common(1)[0][0] if self.label_votes else None

    def vote(self, label) -> None:
        """Count one detection's label; with a window, the oldest vote in it leaves."""
        if self.recent_labels is not None:
            if len(self.recent_labels) == self.recent_labels.maxlen:
                gone = self.recent_labels.popleft()
                self.label_votes[gone] -= 1
                if not self.label_votes[gone]:
                    del self.label_votes[gone]
            self.recent_labels.append(label)
        self.label_votes[label] += 1

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def predicted_center(self) -> tuple[float, float]:
        cx, cy = self.center
        return (cx + self.dx, cy + self.dy)


def _unit(v) -> np.ndarray | None:
    if v is None:
        return None
    v = np.asarray(v, dtype=np.float64).ravel()
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


class Tracker:
    """Hungarian tracker on centre distance and z_what similarity.

    Args:
        max_missed: frames a track survives without a matching detection.
        max_distance: gate in pixels; a detection farther than this from a track's predicted
            centre never continues that track.
        appearance_weight: weight in [0,1] of the z_what cosine dissimilarity in the cost (the
            rest is the centre distance divided by `max_distance`). Ignored for pairs where either
            side has no z_what.
        label_penalty: added to the cost when the detection's label differs from the track's.
        velocity_momentum: how much of the previous velocity is kept at each update (0: the last
            displacement only).
        label_window: a track's label is the majority of its last `label_window` detections'
            labels (None: of all of them). A short window lets a track that took over another
            object's detections (two objects crossing) take their label too, instead of carrying
            the old one for as long as it had it.
        hold_frames: `update` also returns tracks missed for at most this many frames, at their
            coasted position (0: matched tracks only, as MOT scoring wants). An agent would
            rather see a ball the detector lost for a frame where it is heading than not at all.

    `update(detections)` takes anything with `label, x, y, w, h` (optionally `score`, `z_what`),
    e.g. the `Detection`s of `spacemoc.Detector`, and returns the tracks matched in this frame.
    """

    def __init__(
        self,
        max_missed: int = 3,
        max_distance: float = 20.0,
        appearance_weight: float = 0.3,
        label_penalty: float = 0.5,
        velocity_momentum: float = 0.0,
        reid_frames: int = 30,
        label_window: int | None = None,
        hold_frames: int = 0,
    ):
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        if max_distance <= 0:
            raise ValueError(f"max_distance must be > 0 pixels, got {max_distance}")
        if not 0.0 <= appearance_weight <= 1.0:
            raise ValueError(f"appearance_weight must be in [0, 1], got {appearance_weight}")
        if not 0.0 <= velocity_momentum < 1.0:
            raise ValueError(f"velocity_momentum must be in [0, 1), got {velocity_momentum}")
        if reid_frames < 0:
            raise ValueError(f"reid_frames must be >= 0, got {reid_frames}")
        if hold_frames < 0 or hold_frames > max_missed:
            raise ValueError(
                f"hold_frames must be in [0, max_missed={max_missed}], got {hold_frames}"
            )
        if label_window is not None and label_window < 1:
            raise ValueError(f"label_window must be >= 1 or None, got {label_window}")
        self.max_missed = max_missed
        self.max_distance = float(max_distance)
        self.appearance_weight = float(appearance_weight)
        self.label_penalty = float(label_penalty)
        self.velocity_momentum = float(velocity_momentum)
        self.reid_frames = int(reid_frames)
        self.label_window = label_window
        self.hold_frames = int(hold_frames)
        self.reset()

    def reset(self) -> None:
        """Forget every track (new episode); ids start again from 0."""
        self.tracks: list[Track] = []
        self.lost: list[Track] = []  # dropped tracks kept `reid_frames` for re-identification
        self._next_id = 0
        self.frame = 0

    @property
    def active(self) -> list[Track]:
        """Tracks matched in the last update."""
        return [t for t in self.tracks if t.missed == 0]

    @property
    def reported(self) -> list[Track]:
        """What `update` returns: the tracks matched in the last update, and those coasting for
        at most `hold_frames` frames."""
        return [t for t in self.tracks if t.missed <= self.hold_frames]

    def cost_matrix(self, detections) -> np.ndarray:
        """(tracks, detections) assignment cost; `_INFEASIBLE` outside the distance gate."""
        n_t, n_d = len(self.tracks), len(detections)
        if n_t == 0 or n_d == 0:
            return np.zeros((n_t, n_d))
        pred = np.array([t.predicted_center for t in self.tracks])  # (T,2)
        cent = np.array([(d.x + d.w / 2, d.y + d.h / 2) for d in detections], dtype=np.float64)
        dist = np.linalg.norm(pred[:, None, :] - cent[None, :, :], axis=-1) / self.max_distance
        cost = dist.copy()
        if self.appearance_weight > 0:
            t_codes = [t.z_what for t in self.tracks]
            d_codes = [_unit(getattr(d, "z_what", None)) for d in detections]
            dims = {c.shape for c in t_codes + d_codes if c is not None}
            if len(dims) == 1:  # pairs where both sides have a code mix in appearance
                (dim,) = dims
                t_has = np.array([c is not None for c in t_codes])
                d_has = np.array([c is not None for c in d_codes])
                tm = np.stack([c if c is not None else np.zeros(dim) for c in t_codes])
                dm = np.stack([c if c is not None else np.zeros(dim) for c in d_codes])
                dissim = (1.0 - tm @ dm.T) / 2  # (T,D) cosine dissimilarity in [0, 1]
                both = t_has[:, None] & d_has[None, :]
                a = self.appearance_weight
                cost = np.where(both, (1 - a) * dist + a * dissim, dist)
        t_labels = np.array([t.label for t in self.tracks], dtype=object)
        d_labels = np.array([d.label for d in detections], dtype=object)
        differ = (t_labels[:, None] != d_labels[None, :]) & (t_labels[:, None] != None)  # noqa: E711
        cost = cost + self.label_penalty * differ
        cost[dist > 1.0] = _INFEASIBLE
        return cost

    def update(self, detections) -> list[Track]:
        """Match one frame's detections to the tracks; returns the tracks seen in this frame."""
        detections = list(detections)
        cost = self.cost_matrix(detections)
        matched_t, matched_d = set(), set()
        if cost.size:
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols, strict=True):
                if cost[i, j] < _INFEASIBLE:
                    self._continue(self.tracks[i], detections[j])
                    matched_t.add(i)
                    matched_d.add(j)
        unmatched_d = [j for j in range(len(detections)) if j not in matched_d]
        revived = self._reidentify(detections, unmatched_d, matched_t)
        survivors = []
        for i, t in enumerate(self.tracks):
            if i not in matched_t and t.id not in revived:
                t.missed += 1
                if t.missed > self.max_missed:
                    self.lost.append(t)
                    continue
                t.x += t.dx  # coast on the velocity so the track can be found again
                t.y += t.dy
            survivors.append(t)
        survivors += [t for t in self.lost if t.id in revived]
        self.lost = [
            t
            for t in self.lost
            if t.id not in revived and t.missed - self.max_missed < self.reid_frames
        ]
        for t in self.lost:
            t.missed += 1
        for j in unmatched_d:
            if j not in revived.values():
                survivors.append(self._new_track(detections[j]))
        self.tracks = survivors
        self.frame += 1
        return self.reported

    def _reidentify(self, detections, unmatched_d, matched_t) -> dict[int, int]:
        """Unique-label re-identification: a detection left over by the assignment whose label
        no other detection of the frame has, and exactly one unmatched or recently lost track
        of that label, continue that track (Atari objects teleport: a ball served again, a
        paddle reset). Returns {track id: detection index}."""
        if not unmatched_d:
            return {}
        label_count = Counter(d.label for d in detections)
        candidates = [t for i, t in enumerate(self.tracks) if i not in matched_t] + self.lost
        revived = {}
        for j in unmatched_d:
            d = detections[j]
            if label_count[d.label] != 1:
                continue
            same = [t for t in candidates if t.label == d.label]
            if len(same) != 1:
                continue
            t = same[0]
            t.x, t.y, t.w, t.h = float(d.x), float(d.y), float(d.w), float(d.h)
            t.dx = t.dy = 0.0  # a jump, not a motion
            t.score = float(getattr(d, "score", 1.0))
            code = _unit(getattr(d, "z_what", None))
            if code is not None:
                t.z_what = code
            t.vote(d.label)
            t.hits += 1
            t.missed = 0
            revived[t.id] = j
        return revived

    def _new_track(self, d) -> Track:
        t = Track(
            id=self._next_id,
            x=float(d.x),
            y=float(d.y),
            w=float(d.w),
            h=float(d.h),
            score=float(getattr(d, "score", 1.0)),
            z_what=_unit(getattr(d, "z_what", None)),
            recent_labels=None if self.label_window is None else deque(maxlen=self.label_window),
        )
        t.vote(d.label)
        self._next_id += 1
        return t

    def _continue(self, t: Track, d) -> None:
        gap = t.missed + 1  # frames since the last matched detection
        # The coasting moved t by (missed * velocity); measure from the last observed centre.
        last_cx = t.x + t.w / 2 - t.missed * t.dx
        last_cy = t.y + t.h / 2 - t.missed * t.dy
        cx, cy = d.x + d.w / 2, d.y + d.h / 2
        m = self.velocity_momentum
        t.dx = m * t.dx + (1 - m) * (cx - last_cx) / gap
        t.dy = m * t.dy + (1 - m) * (cy - last_cy) / gap
        t.x, t.y, t.w, t.h = float(d.x), float(d.y), float(d.w), float(d.h)
        t.score = float(getattr(d, "score", 1.0))
        code = _unit(getattr(d, "z_what", None))
        if code is not None:
            # A running mean of the unit codes tolerates one odd glimpse.
            t.z_what = code if t.z_what is None else _unit(0.5 * t.z_what + 0.5 * code)
        t.vote(d.label)
        t.hits += 1
        t.missed = 0


# ------------------------------------------------------------------------------------ metrics


def centre_distance_matrix(gt_boxes, hyp_boxes, max_distance: float = 0.5) -> np.ndarray:
    """motmetrics distance matrix (gt, hyp): centre distance / gt diagonal; NaN above the gate.

    Boxes are (x, y, w, h) in the same units. `max_distance` 0.5 is the precision/recall criterion
    of the detection metrics (a hit when the centre is within half the object's diagonal).
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    hyp = np.asarray(hyp_boxes, dtype=np.float64).reshape(-1, 4)
    if len(gt) == 0 or len(hyp) == 0:
        return np.empty((len(gt), len(hyp)))
    gc = gt[:, :2] + gt[:, 2:] / 2
    hc = hyp[:, :2] + hyp[:, 2:] / 2
    diag = np.maximum(np.hypot(gt[:, 2], gt[:, 3]), 1e-9)
    d = np.linalg.norm(gc[:, None] - hc[None], axis=-1) / diag[:, None]
    d[d >= max_distance] = np.nan
    return d


def mot_metrics(sequences) -> dict[str, float]:
    """MOTA, IDF1 and counts over many sequences.

    `sequences`: iterable of sequences; a sequence is a list of frames; a frame is a pair
    `(gt, hyp)` where `gt` is a list of `(object_id, (x, y, w, h))` and `hyp` a list of
    `(track_id, (x, y, w, h))`. Ids are any hashable values, unique within a sequence.
    """
    import motmetrics as mm

    accs, names = [], []
    for k, seq in enumerate(sequences):
        acc = mm.MOTAccumulator(auto_id=True)
        gt_index, hyp_index = {}, {}  # motmetrics wants scalar ids: number them
        for gt, hyp in seq:
            gt_ids = [gt_index.setdefault(g[0], len(gt_index)) for g in gt]
            hyp_ids = [hyp_index.setdefault(h[0], len(hyp_index)) for h in hyp]
            dist = centre_distance_matrix([g[1] for g in gt], [h[1] for h in hyp])
            acc.update(gt_ids, hyp_ids, dist)
        accs.append(acc)
        names.append(str(k))
    if not accs:
        raise ValueError("mot_metrics needs at least one sequence")
    mh = mm.metrics.create()
    wanted = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects"]
    summary = mh.compute_many(accs, metrics=wanted, names=names, generate_overall=True)
    row = summary.loc["OVERALL"]
    out = {k: float(row[k]) for k in wanted}
    # No ground truth at all: motmetrics gives NaN/inf; report NaN rather than a made-up number.
    if out["num_objects"] == 0:
        out["mota"] = float("nan")
    return out


def track_sequence(frames, detector, tracker: Tracker, batch_size: int = 32):
    """Run detector + tracker over one sequence of frames: raw (T,210,160,3) RGB, or the
    (T,128,128,3) preprocessed frames of a spacemoc dataset.

    Returns a list (per frame) of `(track_id, (x, y, w, h))` for the tracks matched in it.
    """
    frames = np.asarray(frames)
    detect = (
        detector.detect_preprocessed if frames.shape[1:3] == (128, 128) else detector.detect_batch
    )
    tracker.reset()
    out = []
    for start in range(0, len(frames), batch_size):
        for dets in detect(frames[start : start + batch_size]):
            out.append([(t.id, (t.x, t.y, t.w, t.h)) for t in tracker.update(dets)])
    return out


def ground_truth_frames(rows, game_row, n_frames: int):
    """Ground-truth objects of one sequence: relevant labels inside the relevant area."""
    from spacemoc.geometry import in_relevant_area

    frames = []
    for t in range(n_frames):
        objs = rows[t] if t < len(rows) else []
        frame, rank = [], Counter()
        for o in objs:
            names = o.dtype.names
            # Identity across frames: the file's `id` column when it has one, else (label, rank
            # of the object among those of its label in the frame); OCAtari lists objects in a
            # stable slot order, and most relevant classes have one object per frame.
            if "id" in names:
                key = int(o["id"])
            else:
                key = (int(o["label"]), rank[int(o["label"])])
                rank[int(o["label"])] += 1
            if "relevant" in names and not bool(o["relevant"]):
                continue
            x, y, w, h = (float(o[c]) for c in ("x", "y", "w", "h"))
            if bool(in_relevant_area(game_row, np.array([x, y, w, h]))):
                frame.append((key, (x, y, w, h)))
        frames.append(frame)
    return frames
