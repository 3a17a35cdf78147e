"""MOC: motion supervision and object continuity for SPACE (spec §3).

The motion loss pulls SPACE's presence, boxes and alpha map towards the hints found in the motion
maps; the object-continuity (OC) loss is a contrastive loss that makes an object's z_what agree
with the z_what of the same object one frame later. A scheduler moves the weight ``lambda_align``
from the motion loss to the OC loss once the predicted objects match the motion objects.

Shapes: B sequences of T frames, flattened b-major (index = b*T + t) like the model's log;
N = G*G cells; D = z_what dimension.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spacemoc.models.settings import DictConfig

# Fields of earlier versions that stored configs may still hold: motion_kind was recorded only
# (the dataset's motion maps are set by data.motion_kind).
RETIRED = ("motion_kind",)
PRESENCE_LOSSES = ("squared", "log")


@dataclass
class MocConfig(DictConfig):
    """MOC hyperparameters; defaults are the reference's (``moc_cfg.py``, spec §3.6)."""

    # OC (object continuity) contrastive loss
    area_object_weight: float = 10.0  # weight of the OC loss; 0 switches it off
    cosine_sim: bool = True  # cosine similarity, else 1 / (1 + mean squared difference)
    object_threshold: float = 0.5  # z_pres_prob above which a cell is an object
    z_cos_match_weight: float = 5.0  # beta' = the paper's beta + 1
    agree_sim: bool = True  # skip an anchor when the closest hit (z_where) is not the most similar
    # motion loss
    # The motion map as a 4th input channel of the z_pres head (False in every reference yaml);
    # build_configs passes it on to SpaceConfig.motion_input and the trainer appends the channel.
    motion_input: bool = False
    motion_loss_weight_z_pres: float = 1000.0
    # "squared" (the reference's) or "log" (cross-entropy): the squared error's gradient to the
    # presence logit vanishes in a cell that is confidently off, the log-loss's does not
    # (docs/train.md, Hyperparameters, with what it did on Tennis).
    motion_z_pres_loss: str = "squared"
    motion_loss_weight_z_where: float = 10000.0
    motion_loss_weight_alpha: float = 5.0
    motion_weight: float = 100.0
    # schedulers
    dynamic_scheduling: bool = True  # dynamic scheduler, else the linear one
    motion_cooling_start_step: int = 0  # linear scheduler only
    motion_cooling_end_step: int = 3000  # linear scheduler only
    dynamic_steepness: float = 2.0
    use_variance: bool = True
    motion_underestimating: float = 1.25  # tolerated over-prediction of presence vs motion
    motion_object_found_lambda: float = 0.1
    z_where_offset: float = 0.1
    variance_steps: int = 20

    def __post_init__(self):
        if self.motion_z_pres_loss not in PRESENCE_LOSSES:
            raise ValueError(
                f"MocConfig.motion_z_pres_loss must be one of {PRESENCE_LOSSES}, "
                f"got {self.motion_z_pres_loss!r}"
            )
        if self.variance_steps < 2:
            raise ValueError(f"MocConfig.variance_steps must be >= 2, got {self.variance_steps}")

    @classmethod
    def from_dict(cls, values: dict) -> MocConfig:
        """From a dict; keys of earlier versions (``RETIRED``, e.g. in stored checkpoints) are
        dropped."""
        return super().from_dict({k: v for k, v in values.items() if k not in RETIRED})


# ----------------------------------------------------------------------------------------------
# motion loss (spec §3.2)


def motion_losses(
    z_pres_prob: torch.Tensor,  # (BT,N,1) predicted presence probability
    z_where: torch.Tensor,  # (BT,N,4) sampled z_where
    alpha_map: torch.Tensor,  # (BT,1,H,W)
    motion: torch.Tensor,  # (BT,1,H,W) binarised motion map
    motion_z_pres: torch.Tensor,  # (BT,N,1)
    motion_z_where: torch.Tensor,  # (BT,N,4)
    presence_loss: str = "squared",
) -> dict[str, torch.Tensor]:
    """The three sum-reduced errors of the motion loss (unweighted): squared errors, the presence
    term a cross-entropy when ``presence_loss`` is "log"."""
    if presence_loss == "log":
        # Written out: F.binary_cross_entropy raises under CUDA autocast. float32, and the
        # logits are bounded (|logit| <= 8.8), so the logs stay finite.
        p, target = z_pres_prob.float(), motion_z_pres.float()
        z_pres_loss = -(target * p.log() + (1 - target) * (1 - p).log()).sum()
    else:
        z_pres_loss = ((z_pres_prob - motion_z_pres) ** 2).sum()
    where_error = ((z_where - motion_z_where) ** 2).sum(-1)  # (BT,N)
    # Cells with motion are pulled to the motion box; predicted cells without motion have a zero
    # target, which shrinks spurious detections (the reference's semantics).
    motion_cells = (motion_z_pres.squeeze(-1) > 0.5).to(where_error.dtype)
    predicted_cells = (z_pres_prob.squeeze(-1) > 0.5).to(where_error.dtype)
    z_where_loss = (where_error * motion_cells).sum() + (where_error * predicted_cells).sum()
    alpha_loss = ((alpha_map - motion) ** 2).sum()
    return {
        "flow_loss_z_pres": z_pres_loss,
        "flow_loss_z_where": z_where_loss,
        "flow_loss_alpha_map": alpha_loss,
    }


# ----------------------------------------------------------------------------------------------
# object-continuity loss (spec §3.3)


def _neighbourhoods(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(F,N,C) per-cell values -> (F,N,9,C): each cell's 3x3 neighbourhood, zero outside the grid.

    Spec §10.3 defect 23: the reference pads the grid circularly, so a cell on the left edge sees
    the right edge. Here padding is zero, and padded neighbours have z_pres_prob 0, so they are
    never hits: neighbourhoods do not wrap around.
    """
    frames, n, channels = x.shape
    maps = x.transpose(1, 2).reshape(frames, channels, grid, grid)
    patches = F.unfold(maps, kernel_size=3, padding=1)  # (F, C*9, N), zero padding
    return patches.view(frames, channels, 9, n).permute(0, 3, 2, 1)


def object_continuity_loss(
    z_what: torch.Tensor,  # (B*T,N,D) sampled
    z_pres_prob: torch.Tensor,  # (B*T,N,1)
    z_where: torch.Tensor,  # (B*T,N,4)
    batch: int,
    grid: int,
    cfg: MocConfig,
) -> tuple[torch.Tensor, int]:
    """Contrastive z_what loss between each present cell of frame t and the hits of frame t+1.

    Returns (loss, number of anchor objects). Vectorised: no loop over cells or frames.
    """
    bt, n, dim = z_what.shape
    steps = bt // batch
    if steps < 2:
        return z_what.sum() * 0.0, 0

    def split(x):  # (B*T,N,C) -> anchors (B*(T-1),N,C) from frame t, targets from frame t+1
        x = x.view(batch, steps, n, -1)
        return x[:, :-1].reshape(-1, n, x.shape[-1]), x[:, 1:].reshape(-1, n, x.shape[-1])

    what_a, what_next = split(z_what)
    pres_a, pres_next = split(z_pres_prob)
    where_a, where_next = split(z_where)
    # Neighbours in frame t+1; the presence is unfolded along so padding marks invalid cells.
    what_n = _neighbourhoods(what_next, grid)  # (F,N,9,D)
    pres_n = _neighbourhoods(pres_next.detach(), grid).squeeze(-1)  # (F,N,9)
    where_n = _neighbourhoods(where_next.detach(), grid)  # (F,N,9,4)

    threshold = cfg.object_threshold  # for anchors and hits (both 0.5 in the reference)
    anchors = pres_a.detach().squeeze(-1) > threshold  # (F,N)
    hits = (pres_n > threshold) & anchors.unsqueeze(-1)  # (F,N,9)
    anchor = what_a.unsqueeze(2)  # (F,N,1,D)
    if cfg.cosine_sim:
        sim = F.cosine_similarity(anchor, what_n, dim=-1)  # (F,N,9)
    else:
        sim = 1.0 / (1.0 + ((anchor - what_n) ** 2).mean(-1))
    # Similarities lie in [-1, 1]; a finite fill keeps gradients of skipped anchors NaN-free.
    max_sim, best_sim = sim.masked_fill(~hits, -10.0).max(-1)  # (F,N)
    n_hits = hits.sum(-1)
    keep = n_hits > 0
    if cfg.agree_sim:
        # With several hits, the closest hit in z_where must also be the most similar one.
        distance = ((where_a.detach().unsqueeze(2) - where_n) ** 2).sum(-1)
        closest = distance.masked_fill(~hits, math.inf).argmin(-1)
        keep &= (n_hits <= 1) | (closest == best_sim)
    per_anchor = -cfg.z_cos_match_weight * max_sim + (sim * hits).sum(-1)
    loss = torch.where(keep, per_anchor, torch.zeros_like(per_anchor)).sum()
    return loss, int(anchors.sum())


# ----------------------------------------------------------------------------------------------
# schedulers (spec §3.5)


def _encode_objects(z_where, present, batch):
    """Objects as 5-vectors [z_where, 10*frame] with frame = t*B + b, so that objects of different
    frames are >= 10 apart in L1 distance."""
    bt, n, _ = z_where.shape
    steps = bt // batch
    b_index = torch.arange(bt, device=z_where.device) // steps
    t_index = torch.arange(bt, device=z_where.device) % steps
    frame = (t_index * batch + b_index).to(z_where.dtype)
    tag = (10.0 * frame).view(bt, 1, 1).expand(bt, n, 1)
    return torch.cat([z_where, tag], -1)[present]  # (M,5)


class DynamicScheduler:
    """lambda_align = steepness^(-v): v is small once the predicted objects match the motion
    objects and the predicted presence mass is stable (running variance)."""

    def __init__(self, cfg: MocConfig, grid: int):
        self.cfg = cfg
        self.grid = grid
        self.history: deque[float] = deque(maxlen=cfg.variance_steps)

    @torch.no_grad()
    def __call__(self, z_pres_prob, z_where, motion_z_pres, motion_z_where, batch, step) -> float:
        cfg = self.cfg
        predicted = _encode_objects(z_where.float(), z_pres_prob.squeeze(-1) > 0.5, batch)
        moving = _encode_objects(motion_z_where.float(), motion_z_pres.squeeze(-1) > 0.5, batch)
        if len(predicted) == 0 or len(moving) == 0:
            v = 1000.0
        else:
            found = torch.cdist(moving, predicted, p=1).min(1).values.mean().item()
            predicted_mass = z_pres_prob.float().mean().item()
            motion_mass = motion_z_pres.float().mean().item()
            v0 = max(0.0, (found - cfg.z_where_offset) * cfg.motion_object_found_lambda)
            v0 += max(0.0, predicted_mass - motion_mass * cfg.motion_underestimating)
            if not self.history:  # first value duplicated: the initial variance is 0
                self.history.append(predicted_mass - motion_mass)
            self.history.append(predicted_mass - motion_mass)
            variance = torch.tensor(list(self.history), dtype=torch.float64).var().item()
            v = (v0 + variance * float(cfg.use_variance)) * self.grid**2
        return float(cfg.dynamic_steepness ** (-v))

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.history = deque((float(x) for x in state["history"]), maxlen=self.cfg.variance_steps)


class LinearScheduler:
    """lambda_align rises linearly from 0 to 1: 1 - max(0, 1 - (step - start) / end)
    (the reference divides by the end step, not by end - start)."""

    def __init__(self, cfg: MocConfig):
        self.cfg = cfg

    def __call__(self, z_pres_prob, z_where, motion_z_pres, motion_z_where, batch, step) -> float:
        start, end = self.cfg.motion_cooling_start_step, self.cfg.motion_cooling_end_step
        if end <= 0:
            return 1.0
        # Clamped at 0: before a non-zero start step the reference's formula goes negative.
        return max(0.0, 1.0 - max(0.0, 1.0 - (step - start) / end))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# ----------------------------------------------------------------------------------------------
# the combined loss (spec §3.4)


class MocLoss:
    """MOC loss for one training step: ``loss, log = moc(space_log, batch_data, global_step)``.

    ``moc_loss = (1 - lambda) * motion_weight * motion_loss + lambda * area_object_weight * oc``.
    Holds the scheduler's state; save it with ``state_dict()`` for an exact resume.
    """

    def __init__(self, cfg: MocConfig, grid: int):
        self.cfg = cfg
        self.grid = grid
        self.scheduler = (
            DynamicScheduler(cfg, grid) if cfg.dynamic_scheduling else LinearScheduler(cfg)
        )

    def __call__(
        self,
        space_log: dict,
        motion: torch.Tensor,  # (B,T,H,W) binarised
        motion_z_pres: torch.Tensor,  # (B,T,N) or (B,T,N,1)
        motion_z_where: torch.Tensor,  # (B,T,N,4)
        global_step: int,
    ) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        batch, steps = motion.shape[:2]
        bt, n = batch * steps, self.grid**2
        z_pres_prob = space_log["z_pres_prob_pure"].view(bt, n, 1)
        z_where = space_log["z_where_pure"].view(bt, n, 4)
        z_what = space_log["z_what"].view(bt, n, -1)
        alpha_map = space_log["alpha_map"]
        dtype = alpha_map.dtype
        motion = motion.reshape(bt, 1, *motion.shape[-2:]).to(dtype)
        motion_z_pres = motion_z_pres.reshape(bt, n, 1).to(dtype)
        motion_z_where = motion_z_where.reshape(bt, n, 4).to(dtype)
        if z_pres_prob.shape[0] != bt or alpha_map.shape[-2:] != motion.shape[-2:]:
            raise ValueError(
                f"MOC inputs do not match the model output: motion {tuple(motion.shape)}, "
                f"alpha_map {tuple(alpha_map.shape)}, z_pres_prob {tuple(z_pres_prob.shape)}"
            )

        raw = motion_losses(
            z_pres_prob,
            z_where,
            alpha_map,
            motion,
            motion_z_pres,
            motion_z_where,
            presence_loss=cfg.motion_z_pres_loss,
        )
        weights = {
            "flow_loss_z_pres": cfg.motion_loss_weight_z_pres,
            "flow_loss_z_where": cfg.motion_loss_weight_z_where,
            "flow_loss_alpha_map": cfg.motion_loss_weight_alpha,
        }
        zero = alpha_map.sum() * 0.0
        motion_loss = zero
        log: dict[str, torch.Tensor | float | int] = {}
        for name, value in raw.items():
            scaled = value * weights[name] if weights[name] > 1e-3 else zero
            motion_loss = motion_loss + scaled
            log[name], log[f"{name}_scaled"] = value.detach(), scaled.detach()

        if cfg.area_object_weight > 0:
            oc_loss, objects = object_continuity_loss(
                z_what, z_pres_prob, z_where, batch, self.grid, cfg
            )
        else:
            oc_loss, objects = zero, 0

        lam = self.scheduler(
            z_pres_prob.detach(),
            z_where.detach(),
            motion_z_pres,
            motion_z_where,
            batch,
            global_step,
        )
        motion_scaled = (1.0 - lam) * cfg.motion_weight * motion_loss
        oc_scaled = lam * cfg.area_object_weight * oc_loss
        loss = motion_scaled + oc_scaled
        log.update(
            moc_loss=loss.detach(),
            motion_loss=motion_loss.detach(),
            motion_loss_scaled=motion_scaled.detach(),
            oc_loss=oc_loss.detach(),
            oc_loss_scaled=oc_scaled.detach(),
            z_what_loss_objects=oc_loss.detach(),
            z_what_loss_objects_scaled=(cfg.area_object_weight * oc_loss).detach(),
            objects_detected=objects,
            lambda_align=lam,
            m_scheduling_weight=1.0 - lam,
            oc_scheduling_weight=lam,
        )
        return loss, log

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
