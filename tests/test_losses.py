"""Losses: base maps, LAMP (eq. 1-2) against an independent implementation, properties, Fig. 2 curves."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lamp_core.config import ConfigError, TrainConfig
from lamp_core.losses import (base_map, lamp, loss_curves, normalised, reduce_base, ssim_loss_map, ssim_map,
                              training_loss)


def lamp_reference(b: np.ndarray, eps: float, max_over: str) -> float:
    """Eq. 1-2 written out in float64 numpy, one image at a time, without any shared code."""
    n = b.shape[0]
    total = 0.0
    batch_max = b.max()
    for i in range(n):
        m = {"sample": b[i].max(), "batch": batch_max, "fixed": 1.0}[max_over]
        if m == 0:
            continue  # a zero map contributes 0
        scaled = b[i] / m * (1 - eps)
        total += float(np.sum(-np.log(1 - scaled)))
    return total / n


@pytest.mark.parametrize("max_over", ["sample", "batch", "fixed"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("eps", [1e-3, 1e-2, 0.3])
def test_lamp_matches_independent_implementation(max_over, detach, eps):
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 1, (4, 3, 8, 8)) ** 3  # skewed, like real residual maps
    b[2] = 0.0                                 # one perfectly reconstructed image
    got = lamp(torch.from_numpy(b), eps=eps, max_over=max_over, detach_max=detach).item()
    want = lamp_reference(b, eps, max_over)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_zero_map_gives_zero_loss_and_finite_gradient():
    for max_over in ("sample", "batch", "fixed"):
        b = torch.zeros(2, 1, 4, 4, requires_grad=True)
        loss = lamp(b, eps=0.01, max_over=max_over, detach_max=False)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.isfinite(b.grad).all()


def test_detach_changes_gradient_not_value():
    b = torch.rand(2, 1, 5, 5, dtype=torch.float64)
    values, grads = [], []
    for detach in (False, True):
        x = b.clone().requires_grad_(True)
        loss = lamp(x, eps=0.01, max_over="sample", detach_max=detach)
        loss.backward()
        values.append(loss.item())
        grads.append(x.grad.clone())
    assert values[0] == pytest.approx(values[1])
    assert not torch.allclose(grads[0], grads[1])


def test_bad_eps_and_max_over_are_config_errors():
    b = torch.rand(1, 1, 3, 3)
    with pytest.raises(ConfigError):
        lamp(b, eps=1.0, max_over="sample", detach_max=False)
    with pytest.raises(ConfigError):
        lamp(b, eps=0.01, max_over="row", detach_max=False)
    with pytest.raises(ConfigError):
        base_map("l3", b, b)


maps = arrays(np.float64, st.tuples(st.integers(1, 3), st.just(1), st.integers(1, 4), st.integers(1, 4)),
              elements=st.floats(0.0, 1.0, allow_nan=False))


@settings(max_examples=150, deadline=None)
@given(b=maps, eps=st.floats(1e-6, 0.999), max_over=st.sampled_from(["sample", "batch", "fixed"]))
def test_lamp_is_finite_nonnegative_and_above_normalised_base(b, eps, max_over):
    t = torch.from_numpy(b)
    loss = lamp(t, eps=eps, max_over=max_over, detach_max=False).item()
    base_norm = reduce_base(normalised(t, eps=eps, max_over=max_over, detach_max=False)).item()
    assert np.isfinite(loss)
    assert loss >= 0.0
    assert loss >= base_norm - 1e-12  # -log(1 - x) >= x on [0, 1)


def test_base_maps_are_in_unit_range_and_reduce_by_sum_then_mean():
    torch.manual_seed(0)
    y, y_hat = torch.rand(3, 2, 16, 16), torch.rand(3, 2, 16, 16)
    for name in ("l2", "l1", "ssim"):
        b = base_map(name, y, y_hat)
        assert b.shape == y.shape
        assert b.min() >= 0 and b.max() <= 1
    b = base_map("l2", y, y_hat)
    assert reduce_base(b).item() == pytest.approx(b.sum().item() / 3, rel=1e-6)


def test_ssim_matches_pytorch_msssim_where_both_are_defined():
    ref_ssim = pytest.importorskip("pytorch_msssim", reason="a test extra: pip install -e .[test]").ssim
    torch.manual_seed(1)
    y = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    y_hat = (y + 0.2 * torch.randn_like(y)).clamp(0, 1)
    ours = ssim_map(y, y_hat)[..., 5:-5, 5:-5].mean().item()   # the "valid" interior
    ref = ref_ssim(y, y_hat, data_range=1.0, size_average=True, win_size=11, win_sigma=1.5).item()
    assert ours == pytest.approx(ref, abs=1e-6)
    assert ssim_loss_map(y, y).abs().max().item() < 1e-6        # identical images: zero loss


def test_training_loss_switches_on_lamp():
    y, y_hat = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    base = training_loss(y, y_hat, TrainConfig(base_loss="l1", lamp=False))
    amp = training_loss(y, y_hat, TrainConfig(base_loss="l1", lamp=True, eps=0.01))
    assert base.item() == pytest.approx(reduce_base((y - y_hat).abs()).item())
    assert amp.item() > 0 and amp.item() != pytest.approx(base.item())


@pytest.mark.parametrize("base", ["l1", "l2"])
def test_fig2_curves_gradients_match_finite_differences(base):
    c = loss_curves(base, eps=0.01, points=201)
    r = np.array(c["residual"])
    for key, gkey in (("base", "base_grad"), ("lamp", "lamp_grad")):
        v, g = np.array(c[key]), np.array(c[gkey])
        fd = np.gradient(v, r)
        inner = slice(5, -5)
        smooth = np.abs(r[inner]) > 0.05  # L1 has a kink at 0
        np.testing.assert_allclose(g[inner][smooth], fd[inner][smooth], rtol=2e-2, atol=2e-2)
    # LAMP imposes a larger penalty, and a steeper one, than the normalised base (Fig. 2)
    assert np.all(np.array(c["lamp"]) >= np.array(c["base"]) * 0.99 - 1e-12)
    edge = np.abs(r) > 0.5
    assert np.all(np.abs(np.array(c["lamp_grad"]))[edge] > np.abs(np.array(c["base_grad"]))[edge])


def test_fig2_curves_reject_ssim():
    with pytest.raises(ConfigError):
        loss_curves("ssim")


@pytest.mark.parametrize("max_over", ["sample", "batch"])
def test_undetached_lamp_cannot_shrink_all_residuals_at_once(max_over):
    """Why detach_max defaults to True: without it, LAMP is invariant to a common scale of the
    residual map, so the gradient along "make every residual smaller" vanishes."""
    b = torch.rand(3, 1, 6, 6, dtype=torch.float64) * 0.5 + 0.01
    scale = torch.ones((), dtype=torch.float64, requires_grad=True)
    for detach, expect_zero in ((False, True), (True, False)):
        scale.grad = None
        lamp(b * scale, eps=0.01, max_over=max_over, detach_max=detach).backward()
        assert (abs(scale.grad.item()) < 1e-9) == expect_zero
