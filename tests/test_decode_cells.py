"""SPACE's decode_cells: a training forward pass that decodes the glimpses of some cells only."""

from __future__ import annotations

import pytest
import torch
from test_model import _images

from spacemoc.models.space import Space, SpaceConfig
from spacemoc.models.space.fg import cells_to_decode
from spacemoc.models.space.glimpse import composite_windowed


def test_cells_to_decode_keeps_the_most_present_and_draws_the_rest():
    torch.manual_seed(0)
    logits = torch.randn(3, 64)
    cells = cells_to_decode(logits, 16)  # 12 most present + 4 drawn
    assert cells.shape == (3, 16)
    for row, chosen in zip(logits, cells, strict=True):
        assert len(set(chosen.tolist())) == 16  # no cell twice
        assert set(chosen[:12].tolist()) == set(row.topk(12).indices.tolist())
    draws = torch.stack([cells_to_decode(logits, 16)[:, 12:] for _ in range(50)])
    assert len(set(draws.flatten().tolist())) > 30  # the drawn quarter moves around the grid


def test_a_cell_left_out_of_the_softmax_counts_as_drawing_nothing():
    """Compositing a subset with n_cells = the grid equals compositing the whole grid with the
    other cells' alpha at zero (the reference's softmax over every cell)."""
    torch.manual_seed(0)
    B, N, g = 2, 16, 32
    alpha = torch.rand(B * N, 1, g, g)
    colour = torch.rand(B * N, 3, g, g)
    depth = torch.randn(B, N, 1)
    where = torch.cat((torch.rand(B, N, 2) * 0.3 + 0.05, torch.rand(B, N, 2) * 1.6 - 0.8), -1)
    keep = torch.tensor([[0, 3, 5, 9], [1, 2, 11, 15]])  # (B, K)
    mask = torch.zeros(B, N, dtype=torch.bool).scatter(1, keep, True).view(B * N, 1, 1, 1)
    alpha_all = alpha * mask
    full = composite_windowed(alpha_all * colour, alpha_all, depth, where, 128, 128)
    rows = (keep + torch.arange(B)[:, None] * N).flatten()
    part = composite_windowed(
        (alpha * colour)[rows],
        alpha[rows],
        depth.gather(1, keep[..., None]),
        where.gather(1, keep[..., None].expand(-1, -1, 4)),
        128,
        128,
        n_cells=N,
    )
    for a, b in zip(full, part, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    full = Space(SpaceConfig(G=8))
    sparse = Space(SpaceConfig(G=8, decode_cells=16))
    sparse.load_state_dict(full.state_dict())
    return full, sparse


def test_decoding_every_cell_is_the_reference_forward(models):
    full, _ = models
    every = Space(SpaceConfig(G=8, decode_cells=64))
    every.load_state_dict(full.state_dict())
    torch.manual_seed(1)
    loss_full, _ = full(_images(), global_step=10)
    torch.manual_seed(1)
    loss_every, _ = every(_images(), global_step=10)
    assert torch.equal(loss_full, loss_every)


def test_sparse_forward_shapes_and_gradients(models):
    _, sparse = models
    sparse.zero_grad()
    torch.manual_seed(2)
    loss, log = sparse(_images(), global_step=10)
    n, N, K, D = 4, 64, 16, 32
    assert torch.isfinite(loss)
    assert tuple(log["decoded_cells"].shape) == (n, K)
    assert tuple(log["o_att"].shape) == (n * K, 3, 32, 32)
    assert tuple(log["z_what"].shape) == (n, N, D)
    decoded = torch.zeros(n, N, dtype=torch.bool).scatter(1, log["decoded_cells"], True)
    assert (log["z_what"][~decoded] == 0).all() and (log["z_what"][decoded] != 0).any()
    loss.backward()
    fg = sparse.fg_module
    for net in (fg.z_what_net, fg.glimpse_dec, fg.img_encoder):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_decode_cells_needs_windowed_compositing(models):
    with pytest.raises(ValueError, match="windowed"):
        SpaceConfig(decode_cells=32, compositing="dense")
    with pytest.raises(ValueError, match="windowed"):
        models[1](_images(), global_step=10, compositing="dense")
    with pytest.raises(ValueError, match=">= 0"):
        SpaceConfig(decode_cells=-1)
