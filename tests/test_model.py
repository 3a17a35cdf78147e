"""SPACE model: shapes, loss, gradients, windowed vs dense compositing, config."""

from __future__ import annotations

import pytest
import torch

from spacemoc.models.space import Space, SpaceConfig, linear_annealing
from spacemoc.models.space.glimpse import composite_dense, composite_windowed, extract_glimpses


def _images(b=2, t=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, t, 3, 128, 128, generator=g) * 0.2
    x[..., 40:48, 60:64] = 0.9  # a bright "object"
    return x


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Space(SpaceConfig(G=8))  # small grid: fast tests


def test_forward_shapes_and_finite_loss(model):
    torch.manual_seed(1)
    x = _images()
    loss, log = model(x, global_step=100)
    n, N, D = 4, 64, 32
    assert loss.dim() == 0 and torch.isfinite(loss)
    shapes = {
        "z_pres_prob_pure": (n, N, 1),
        "z_pres": (n, N, 1),
        "z_where_pure": (n, N, 4),
        "z_what": (n, N, D),
        "z_depth": (n, N, 1),
        "alpha_map": (n, 1, 128, 128),
        "fg": (n, 3, 128, 128),
        "bg": (n, 3, 128, 128),
        "y": (n, 3, 128, 128),
        "comps": (n, 3, 3, 128, 128),
        "masks": (n, 3, 1, 128, 128),
    }
    for key, shape in shapes.items():
        assert tuple(log[key].shape) == shape, key
    for key in ("mse", "log_like", "kl_z_what", "kl_z_pres", "kl_z_where", "kl_z_depth", "kl_bg"):
        assert tuple(log[key].shape) == (n,), key
        assert torch.isfinite(log[key]).all(), key
    elbo = log["log_like"] - log["kl_bg"] - log["kl_z_what"] - log["kl_z_where"]
    elbo = elbo - log["kl_z_pres"] - log["kl_z_depth"]
    assert torch.allclose(loss, -elbo.sum(), rtol=1e-5)
    # stick-breaking masks sum to one; alpha in [0, 1]
    assert torch.allclose(log["masks"].sum(1), torch.ones(n, 1, 128, 128), atol=1e-5)
    assert log["alpha_map"].min() >= 0 and log["alpha_map"].max() <= 1


def test_gradients_reach_every_parameter_group(model):
    model.zero_grad()
    torch.manual_seed(2)
    loss, _ = model(_images(b=1), global_step=10)
    loss.backward()
    for name, p in model.named_parameters():
        if name == "fg_module.boundary_filter.weight":
            assert not p.requires_grad and p.grad is None  # frozen placeholder
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for prefix in (
        "fg_module.img_encoder.",
        "fg_module.z_what_net.",
        "fg_module.glimpse_dec.",
        "bg_module.image_enc.",
        "bg_module.mask_decoder.",
        "bg_module.comp_encoder.",
        "bg_module.comp_decoder.",
    ):
        total = sum(p.grad.abs().sum() for n, p in model.named_parameters() if n.startswith(prefix))
        assert total > 0, prefix


def test_annealing_follows_step():
    cfg = SpaceConfig()
    assert linear_annealing(-5, 0, 10, 1.0, 2.0) == 1.0
    assert linear_annealing(5, 0, 10, 1.0, 2.0) == pytest.approx(1.5)
    assert linear_annealing(10, 0, 10, 1.0, 2.0) == 2.0
    fg = Space(SpaceConfig(G=4)).fg_module
    fg.anneal(2500)
    assert fg.prior_z_pres_prob.item() == pytest.approx((0.1 + cfg.z_pres_end_value) / 2, rel=1e-5)
    assert fg.prior_scale_mean_value == pytest.approx(-2.25)
    fg.anneal(1e8)
    assert fg.prior_z_pres_prob.item() == pytest.approx(1e-10)
    assert fg.tau.item() == pytest.approx(2.5)


def _composite_inputs(B=2, N=16, scale=(0.05, 0.4), seed=0, depth_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    z_where = torch.cat(
        (
            torch.empty(B, N, 2).uniform_(*scale, generator=g),
            torch.empty(B, N, 2).uniform_(-1.1, 1.1, generator=g),
        ),
        dim=-1,
    )
    o = torch.rand(B * N, 3, 32, 32, generator=g)
    alpha = torch.rand(B * N, 1, 32, 32, generator=g) * torch.rand(B * N, 1, 1, 1, generator=g)
    depth = torch.randn(B, N, 1, generator=g) * depth_scale
    return [t.requires_grad_() for t in (o, alpha, depth, z_where)]


@pytest.mark.parametrize(
    "scale,depth_scale", [((0.05, 0.4), 1.0), ((0.3, 1.0), 1.0), ((0.05, 0.2), 8)]
)
def test_windowed_equals_dense(scale, depth_scale):
    results = []
    for fn in (composite_dense, composite_windowed):
        o, alpha, depth, z_where = _composite_inputs(scale=scale, depth_scale=depth_scale)
        fg, alpha_map = fn(alpha * o, alpha, depth, z_where, 128, 128)[:2]
        w = torch.linspace(0, 1, 3 * 128 * 128).view(3, 128, 128)
        ((fg * w).sum() + (alpha_map**2).sum()).backward()
        results.append((fg, alpha_map, o.grad, alpha.grad, depth.grad, z_where.grad))
    names = ("fg", "alpha_map", "grad o", "grad alpha", "grad depth", "grad z_where")
    for name, a, b in zip(names, *results, strict=True):
        scale_ = a.abs().max().clamp(min=1)
        assert (a - b).abs().max() / scale_ < 2e-5, name


def test_windowed_equals_dense_full_model():
    torch.manual_seed(0)
    # eval mode: BatchNorm on running statistics, so the conv biases before it get real gradients
    # (in train mode theirs are pure rounding noise)
    m = Space(SpaceConfig(G=4)).eval()
    x = _images(b=1, t=2)
    outs = []
    for mode in ("dense", "windowed"):
        m.zero_grad()
        torch.manual_seed(3)
        loss, log = m(x, global_step=50, compositing=mode)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        outs.append((loss.detach(), log["alpha_map"].detach(), log["y"].detach(), grads))
    (l1, a1, y1, g1), (l2, a2, y2, g2) = outs
    assert torch.allclose(l1, l2, rtol=1e-5)
    assert (a1 - a2).abs().max() < 1e-5 and (y1 - y2).abs().max() < 1e-5
    for name in g1:
        tol = 1e-4 * g1[name].abs().max().clamp(min=1e-3)
        assert (g1[name] - g2[name]).abs().max() <= tol, name


def test_glimpses_single_call_match_repeated_image():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 128, 128, generator=g)
    z_where = torch.cat(
        (torch.rand(2, 5, 2, generator=g), torch.rand(2, 5, 2, generator=g) * 2 - 1), -1
    )
    ours = extract_glimpses(images, z_where, 32)
    # the reference's formulation: repeat each image once per cell
    rep = images.repeat_interleave(5, dim=0)
    s = z_where.reshape(10, 4)
    theta = torch.zeros(10, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = (
        s[:, 0],
        s[:, 1],
        s[:, 2],
        s[:, 3],
    )
    grid = torch.nn.functional.affine_grid(theta, [10, 3, 32, 32], align_corners=True)
    ref = torch.nn.functional.grid_sample(rep, grid, align_corners=True)
    assert torch.equal(ours, ref)


def test_config_round_trip_and_errors():
    cfg = SpaceConfig(G=8, z_what_dim=16)
    assert SpaceConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SpaceConfig keys"):
        SpaceConfig.from_dict({"G": 16, "bogus": 1})
    with pytest.raises(ValueError, match="G must be"):
        SpaceConfig(G=5)
    with pytest.raises(ValueError, match="compositing"):
        SpaceConfig(compositing="sparse")


def test_bad_input_shape(model):
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="infer expects"):
        model.infer(torch.rand(1, 2, 3, 128, 128))


@pytest.mark.parametrize("cfg", [SpaceConfig(G=4, K=1), SpaceConfig(G=4, motion_input=True)])
def test_variants_run(cfg):
    """K = 1 uses the pixel-shuffle component decoder; motion_input adds a 4th input channel."""
    torch.manual_seed(0)
    m = Space(cfg)
    channels = 4 if cfg.motion_input else 3
    x = torch.rand(2, channels, 128, 128)
    loss, log = m(x, global_step=1)
    loss.backward()
    assert torch.isfinite(loss)
    assert log["comps"].shape == (2, cfg.K, 3, 128, 128)
    assert m.fg_module.img_encoder.z_pres_net.weight.grad.shape[1] == 128 + int(cfg.motion_input)
    assert m.infer(x)["z_what"].shape == (2, 16, 32)


def test_recompute_gives_the_same_gradients(monkeypatch):
    import spacemoc.models.space.fg as fg

    monkeypatch.setattr(fg, "RECOMPUTE_CELLS", 12)  # 32 cells: chunks of 12, 12 and 8
    torch.manual_seed(0)
    m = Space(SpaceConfig(G=4)).eval()
    x = _images(b=1, t=2)
    grads = []
    for recompute in (False, True):
        m.fg_module.recompute = recompute
        m.zero_grad()
        torch.manual_seed(5)
        loss, _ = m(x, global_step=10)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    # Chunks change the order of the gradient sums over cells: differences up to ~1e-5 of a
    # gradient's scale (measured: 4-8e-6 with chunks of 8 or 12, on 1 and 2 threads), so elements
    # near zero need an absolute bound relative to that scale. A lost or misplaced chunk would
    # give differences of order 1.
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-4 * g.abs().max()), name
