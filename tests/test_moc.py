"""MOC loss and schedulers on small hand-made tensors (spec §3)."""

from __future__ import annotations

import math

import pytest
import torch

from spacemoc.models.space.moc import (
    DynamicScheduler,
    LinearScheduler,
    MocConfig,
    MocLoss,
    motion_losses,
    object_continuity_loss,
)

G = 16
N = G * G


def cell(row, col):
    return row * G + col


def fake_log(batch, steps, dim=8, seed=0, requires_grad=False):
    """A SPACE-like log with random values (b-major flattening)."""
    gen = torch.Generator().manual_seed(seed)
    bt = batch * steps
    log = {
        "z_pres_prob_pure": torch.rand(bt, N, 1, generator=gen),
        "z_where_pure": torch.rand(bt, N, 4, generator=gen) * 2 - 1,
        "z_what": torch.randn(bt, N, dim, generator=gen),
        "alpha_map": torch.rand(bt, 1, 128, 128, generator=gen),
    }
    for value in log.values():
        value.requires_grad_(requires_grad)
    return log


def fake_motion(batch, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    motion = (torch.rand(batch, steps, 128, 128, generator=gen) > 0.97).float()
    motion_z_pres = (torch.rand(batch, steps, N, generator=gen) > 0.98).float()
    motion_z_where = torch.rand(batch, steps, N, 4, generator=gen) * 2 - 1
    return motion, motion_z_pres, motion_z_where * motion_z_pres.unsqueeze(-1)


# ------------------------------------------------------------------------------ motion loss


def test_moc_loss_is_finite_and_differentiable():
    log = fake_log(2, 4, requires_grad=True)
    moc = MocLoss(MocConfig(), grid=G)
    loss, info = moc(log, *fake_motion(2, 4), global_step=0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for key in ("z_pres_prob_pure", "z_where_pure", "alpha_map"):
        assert torch.isfinite(log[key].grad).all() and log[key].grad.abs().sum() > 0
    for key in ("motion_loss", "oc_loss", "flow_loss_z_pres", "flow_loss_z_where"):
        assert torch.isfinite(torch.as_tensor(info[key]))
    assert 0.0 <= info["lambda_align"] <= 1.0
    assert info["m_scheduling_weight"] + info["oc_scheduling_weight"] == pytest.approx(1.0)


def test_motion_loss_is_zero_when_predictions_equal_targets():
    motion, motion_z_pres, motion_z_where = fake_motion(1, 4)
    bt = 4
    terms = motion_losses(
        motion_z_pres.view(bt, N, 1).clone(),
        motion_z_where.view(bt, N, 4).clone(),
        motion.view(bt, 1, 128, 128).clone(),
        motion.view(bt, 1, 128, 128),
        motion_z_pres.view(bt, N, 1),
        motion_z_where.view(bt, N, 4),
    )
    assert motion_z_pres.sum() > 0  # the case is not trivially empty
    for name, value in terms.items():
        assert value.item() == 0.0, name


def test_motion_loss_terms_match_hand_computation():
    bt = 1
    z_pres = torch.zeros(bt, N, 1)
    z_pres[0, 3] = 0.9  # a predicted cell without motion
    motion_z_pres = torch.zeros(bt, N, 1)
    motion_z_pres[0, 7] = 1.0
    z_where = torch.zeros(bt, N, 4)
    z_where[0, 3] = torch.tensor([0.1, 0.2, 0.0, 0.0])
    motion_z_where = torch.zeros(bt, N, 4)
    motion_z_where[0, 7] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    alpha = torch.zeros(bt, 1, 128, 128)
    motion = torch.zeros(bt, 1, 128, 128)
    motion[0, 0, :2, :2] = 1.0
    terms = motion_losses(z_pres, z_where, alpha, motion, motion_z_pres, motion_z_where)
    assert terms["flow_loss_z_pres"].item() == pytest.approx(0.81 + 1.0)
    # motion cell 7: |0 - 0.5|^2 * 4; predicted cell 3 pulled to zero: 0.01 + 0.04
    assert terms["flow_loss_z_where"].item() == pytest.approx(1.0 + 0.05)
    assert terms["flow_loss_alpha_map"].item() == pytest.approx(4.0)


def test_log_presence_loss_is_the_cross_entropy_of_the_hints():
    z_pres = torch.full((1, N, 1), 0.5)
    z_pres[0, 3] = 0.9  # predicted, no motion: -log(0.1)
    z_pres[0, 7] = 0.01  # motion, predicted off: -log(0.01)
    motion_z_pres = torch.zeros(1, N, 1)
    motion_z_pres[0, 7] = 1.0
    z_where, image = torch.zeros(1, N, 4), torch.zeros(1, 1, 128, 128)
    terms = motion_losses(
        z_pres, z_where, image, image, motion_z_pres, z_where, presence_loss="log"
    )
    expected = -math.log(0.1) - math.log(0.01) + (N - 2) * -math.log(0.5)
    assert terms["flow_loss_z_pres"].item() == pytest.approx(expected, rel=1e-5)


def test_log_presence_loss_keeps_pulling_a_cell_that_is_confidently_off():
    """The reason for the option: at p = 0.003 the squared error's gradient to the presence
    logit is ~2 % of its value at p = 0.5; the log-loss's stays near 1."""

    def logit_gradient(presence_loss, p):
        logit = torch.full((1, N, 1), math.log(p / (1 - p)), requires_grad=True)
        motion_z_pres = torch.ones(1, N, 1)
        zeros = torch.zeros(1, N, 4)
        alpha = torch.zeros(1, 1, 128, 128)
        terms = motion_losses(
            torch.sigmoid(logit), zeros, alpha, alpha, motion_z_pres, zeros, presence_loss
        )
        terms["flow_loss_z_pres"].backward()
        return -logit.grad[0, 0, 0].item()

    assert logit_gradient("squared", 0.003) < 0.03 * logit_gradient("squared", 0.5)
    assert logit_gradient("log", 0.003) == pytest.approx(0.997, rel=1e-3)
    assert logit_gradient("log", 0.003) > 100 * logit_gradient("squared", 0.003)


def test_moc_config_rejects_an_unknown_presence_loss():
    with pytest.raises(ValueError, match="motion_z_pres_loss.*'bce'"):
        MocConfig(motion_z_pres_loss="bce")


def test_moc_loss_with_the_log_presence_loss_is_finite_and_differentiable():
    log = fake_log(2, 4, requires_grad=True)
    loss, info = MocLoss(MocConfig(motion_z_pres_loss="log"), G)(
        log, *fake_motion(2, 4), global_step=0
    )
    loss.backward()
    assert torch.isfinite(loss) and info["flow_loss_z_pres"] > 0
    assert log["z_pres_prob_pure"].grad.abs().sum() > 0


def test_motion_weights_below_threshold_skip_a_term():
    log = fake_log(1, 4)
    cfg = MocConfig(motion_loss_weight_z_pres=0.0, motion_loss_weight_z_where=0.0)
    _, info = MocLoss(cfg, G)(log, *fake_motion(1, 4), global_step=0)
    assert info["flow_loss_z_pres_scaled"] == 0 and info["flow_loss_z_where"] > 0
    assert info["motion_loss"].item() == pytest.approx(5.0 * info["flow_loss_alpha_map"].item())


# ------------------------------------------------------------------------------ OC loss


def two_frames(anchor, target, dim=4):
    """B=1, T=2: one object at ``anchor`` (row, col) in frame 0, one at ``target`` in frame 1."""
    z_pres = torch.zeros(2, N, 1)
    z_what = torch.zeros(2, N, dim)
    z_where = torch.zeros(2, N, 4)
    z_pres[0, cell(*anchor)] = 0.9
    z_pres[1, cell(*target)] = 0.9
    z_what[0, cell(*anchor)] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    z_what[1, cell(*target)] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # cosine 1/sqrt(2)
    return z_what, z_pres, z_where


def test_oc_loss_object_moving_one_cell():
    z_what, z_pres, z_where = two_frames((5, 5), (5, 6))
    z_what.requires_grad_(True)
    loss, objects = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig())
    # single hit: -beta' * sim + sim = -4 * sim
    assert loss.item() == pytest.approx(-4.0 / 2**0.5, rel=1e-5)
    assert objects == 1
    loss.backward()
    # gradients reach the z_what of both frames
    assert z_what.grad[0, cell(5, 5)].abs().sum() > 0
    assert z_what.grad[1, cell(5, 6)].abs().sum() > 0


def test_oc_loss_ignores_objects_out_of_reach_and_backwards_in_time():
    z_what, z_pres, z_where = two_frames((5, 5), (5, 8))  # three cells away
    loss, objects = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig())
    assert loss.item() == 0.0 and objects == 1
    # the last frame has no t+1: an object only there is never an anchor
    z_pres[0] = 0.0
    loss, objects = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig())
    assert loss.item() == 0.0 and objects == 0


@pytest.mark.parametrize(
    "anchor,target", [((5, 0), (5, 15)), ((0, 7), (15, 7)), ((0, 0), (15, 15))]
)
def test_oc_neighbourhood_does_not_wrap_around_the_grid(anchor, target):
    """Spec defect 23: the reference's circular padding lets column 0 see column 15."""
    z_what, z_pres, z_where = two_frames(anchor, target)
    loss, objects = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig())
    assert objects == 1
    assert loss.item() == 0.0
    # while a neighbour on the same side of the edge is found
    z_what, z_pres, z_where = two_frames(anchor, (anchor[0], 1 if anchor[1] == 0 else anchor[1]))
    loss, _ = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig())
    assert loss.item() < 0


def test_oc_pairs_frames_only_inside_each_sequence():
    """B=2, T=2: sequence 0's last frame must not pair with sequence 1's first frame."""
    z_pres = torch.zeros(4, N, 1)
    z_what = torch.ones(4, N, 4)
    z_where = torch.zeros(4, N, 4)
    z_pres[1, cell(3, 3)] = 0.9  # b=0, t=1 (last frame)
    z_pres[2, cell(3, 3)] = 0.9  # b=1, t=0
    loss, objects = object_continuity_loss(z_what, z_pres, z_where, 2, G, MocConfig())
    assert objects == 1 and loss.item() == 0.0


def test_oc_agree_sim_skips_an_anchor_whose_closest_hit_is_not_the_most_similar():
    z_pres = torch.zeros(2, N, 1)
    z_what = torch.zeros(2, N, 2)
    z_where = torch.zeros(2, N, 4)
    z_pres[0, cell(5, 5)] = z_pres[1, cell(5, 5)] = z_pres[1, cell(5, 6)] = 0.9
    z_what[0, cell(5, 5)] = torch.tensor([1.0, 0.0])
    z_where[0, cell(5, 5)] = torch.tensor([0.1, 0.1, 0.0, 0.0])
    z_where[1, cell(5, 5)] = torch.tensor([0.1, 0.1, 0.0, 0.0])  # closest in z_where ...
    z_what[1, cell(5, 5)] = torch.tensor([0.0, 1.0])  # ... but dissimilar (cos 0)
    z_where[1, cell(5, 6)] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    z_what[1, cell(5, 6)] = torch.tensor([1.0, 0.0])  # most similar (cos 1)
    loss, _ = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig())
    assert loss.item() == 0.0
    loss, _ = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig(agree_sim=False))
    assert loss.item() == pytest.approx(-5.0 * 1.0 + (1.0 + 0.0))
    # when the closest hit is also the most similar, the anchor counts
    z_what[1, cell(5, 5)] = torch.tensor([1.0, 0.0])
    z_what[1, cell(5, 6)] = torch.tensor([0.0, 1.0])
    loss, _ = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig())
    assert loss.item() == pytest.approx(-5.0 + 1.0)


def test_oc_loss_mse_similarity():
    z_what, z_pres, z_where = two_frames((5, 5), (6, 6))
    loss, _ = object_continuity_loss(z_what, z_pres, z_where, 1, G, MocConfig(cosine_sim=False))
    sim = 1.0 / (1.0 + 1.0 / 4)  # mean squared difference over 4 dims = 1/4
    assert loss.item() == pytest.approx(-4.0 * sim)


# ------------------------------------------------------------------------------ schedulers


def motion_objects(batch=1, steps=4, cells=((4, 4), (10, 2))):
    motion_z_pres = torch.zeros(batch * steps, N, 1)
    motion_z_where = torch.zeros(batch * steps, N, 4)
    for c in (cell(*rc) for rc in cells):
        motion_z_pres[:, c] = 1.0
        motion_z_where[:, c] = torch.tensor([0.05, 0.05, -0.4, 0.3])
    return motion_z_pres, motion_z_where


def test_dynamic_scheduler_is_pure_motion_without_predicted_objects():
    motion_z_pres, motion_z_where = motion_objects()
    scheduler = DynamicScheduler(MocConfig(), G)
    lam = scheduler(
        torch.zeros_like(motion_z_pres), motion_z_where, motion_z_pres, motion_z_where, 1, 0
    )
    assert lam < 1e-100
    # and without motion objects
    lam = scheduler(
        motion_z_pres, motion_z_where, torch.zeros_like(motion_z_pres), motion_z_where, 1, 0
    )
    assert lam < 1e-100


def test_dynamic_scheduler_moves_to_object_continuity_as_predictions_match_motion():
    motion_z_pres, motion_z_where = motion_objects()
    lambdas = []
    for shift in (0.8, 0.4, 0.2, 0.0):  # predicted boxes approach the motion boxes
        scheduler = DynamicScheduler(MocConfig(), G)
        z_where = motion_z_where + shift * motion_z_pres
        lambdas.append(scheduler(motion_z_pres, z_where, motion_z_pres, motion_z_where, 1, 0))
    assert lambdas == sorted(lambdas) and lambdas[0] < 1e-3
    assert lambdas[-1] == pytest.approx(1.0)  # predictions equal the motion objects


def test_dynamic_scheduler_penalises_over_prediction_beyond_tolerance():
    motion_z_pres, motion_z_where = motion_objects()
    extra = motion_z_pres.clone()
    extra[:, cell(12, 12)] = 1.0  # one spurious object per frame: 1.5x the motion mass
    lam_ok = DynamicScheduler(MocConfig(motion_underestimating=2.0), G)(
        extra, motion_z_where, motion_z_pres, motion_z_where, 1, 0
    )
    lam_bad = DynamicScheduler(MocConfig(motion_underestimating=1.25), G)(
        extra, motion_z_where, motion_z_pres, motion_z_where, 1, 0
    )
    # predicted mass 3/256 vs 1.25 * 2/256 tolerated: v = 0.5/256 * G^2 = 0.5
    assert lam_ok == pytest.approx(1.0) and lam_bad == pytest.approx(2**-0.5)


def test_dynamic_scheduler_variance_term_and_state_round_trip():
    motion_z_pres, motion_z_where = motion_objects()
    with_var = DynamicScheduler(MocConfig(), G)
    without_var = DynamicScheduler(MocConfig(use_variance=False), G)
    masses = [0.0, 0.3, 0.0, 0.3, 0.0]
    for step, extra in enumerate(masses):
        pres = motion_z_pres * (1.0 - extra)  # a fluctuating predicted presence mass
        args = (pres.clamp(min=0.51) * motion_z_pres, motion_z_where, motion_z_pres, motion_z_where)
        lam_v = with_var(*args, 1, step)
        lam_nv = without_var(*args, 1, step)
        if step == 0:
            assert lam_v == pytest.approx(lam_nv)  # the first value is duplicated: variance 0
    assert lam_v < lam_nv
    assert len(with_var.history) == len(masses) + 1
    # the running buffer is the whole state: a restored scheduler continues identically
    restored = DynamicScheduler(MocConfig(), G)
    restored.load_state_dict(with_var.state_dict())
    assert restored(*args, 1, 9) == with_var(*args, 1, 9)
    # and it keeps only the last variance_steps values
    short = DynamicScheduler(MocConfig(variance_steps=3), G)
    for _ in range(5):
        short(*args, 1, 0)
    assert len(short.history) == 3


def test_linear_scheduler_values():
    scheduler = LinearScheduler(MocConfig(dynamic_scheduling=False))
    args = (None, None, None, None, 1)
    assert [scheduler(*args, s) for s in (0, 1500, 3000, 6000)] == pytest.approx([0, 0.5, 1, 1])
    shifted = LinearScheduler(
        MocConfig(motion_cooling_start_step=1000, motion_cooling_end_step=2000)
    )
    assert [shifted(*args, s) for s in (0, 1000, 2000, 3000)] == pytest.approx([0, 0, 0.5, 1])
    moc = MocLoss(MocConfig(dynamic_scheduling=False), G)
    _, info = moc(fake_log(1, 4), *fake_motion(1, 4), global_step=1500)
    assert info["lambda_align"] == pytest.approx(0.5)


def test_moc_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown MocConfig key.*motion_wieght"):
        MocConfig.from_dict({"motion_wieght": 1.0})
    assert MocConfig.from_dict(MocConfig().to_dict()) == MocConfig()


def test_a_stored_moc_config_with_the_retired_motion_kind_still_loads():
    stored = {**MocConfig().to_dict(), "motion_kind": "mode"}  # checkpoints of before issue 17
    assert MocConfig.from_dict(stored) == MocConfig()
