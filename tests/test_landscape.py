"""Loss landscapes: grid values against direct evaluations, directions, the fast evaluator against
the module, sharpness against a dense Hessian, persistence, progressive computation, caching."""
from __future__ import annotations

import copy
import io
import logging
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lamp_core import landscape as L
from lamp_core import landscape_figures as LF
from lamp_core import surfaces
from lamp_core.config import DataConfig, LandscapeConfig, ModelConfig, RunConfig, TrainConfig
from lamp_core.data import load
from lamp_core.losses import training_loss
from lamp_core.models import ConvAutoencoder, PatchAutoencoder
from lamp_core.store import RunStore
from lamp_core.landscape.fast import _small_head_conv, _subpixel_conv
from lamp_core.train import train

TINY = RunConfig(data=DataConfig(max_train=24, max_test=40),
                 model=ModelConfig(width=4, latent_channels=4),
                 train=TrainConfig(epochs=1, batch_size=8, lamp=True))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Torch on one thread in this module (restored after): these tiny models run far faster so on
    a machine other processes load. Tests of the thread handling set (and restore) their own count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained():
    data = load(TINY.data)
    return train(TINY, data), train(TINY.with_train(lamp=False), data), data


def direct_loss(result, data, cfg: LandscapeConfig, a: float, b: float) -> float:
    """Independent evaluation: load theta + a*d1 + b*d2 into a fresh module and run it."""
    model = result.model()
    d1, d2 = L.directions(model, cfg.seed, include_bn_bias=cfg.include_bn_bias)
    state = model.state_dict()
    for name, p in model.named_parameters():
        state[name] = p.detach() + a * d1[name] + b * d2[name]
    net = result.model()
    net.load_state_dict(state)
    x = data.train[: cfg.n_images]
    with torch.no_grad():
        y_hat = net(x)
    if cfg.metric == "own":
        return float(training_loss(x.double(), y_hat.double(), result.config.train))
    return float((x.double() - y_hat.double()).square().flatten(1).sum(1).mean())


@pytest.mark.parametrize("method", ["fast", "loop"])
def test_non_square_grid_matches_direct_evaluation(trained, method):
    lamp_run, _, data = trained
    cfg = LandscapeConfig(nx=5, ny=3, span=0.8, n_images=16, metric="own", method=method)
    s = L.compute_surface(lamp_run, data, cfg)
    assert s.values.shape == (3, 5) and s.complete
    assert np.allclose(s.x, np.linspace(-0.8, 0.8, 5)) and np.allclose(s.y, np.linspace(-0.8, 0.8, 3))
    for j in range(3):
        for i in range(5):
            want = direct_loss(lamp_run, data, cfg, s.x[i], s.y[j])
            assert s.values[j, i] == pytest.approx(want, rel=1e-5), (i, j)
    # the two directions give different slopes, so swapped axes could not pass the loop above
    assert not np.allclose(s.values[:, 2], s.values[1, 1:4])


def test_center_is_the_models_own_loss(trained):
    lamp_run, _, data = trained
    cfg = LandscapeConfig(nx=3, ny=5, span=0.5, n_images=16, metric="own")
    s = L.compute_surface(lamp_run, data, cfg)
    model = lamp_run.model()
    x = data.train[:16]
    with torch.no_grad():
        own = float(training_loss(x, model(x), lamp_run.config.train))
    assert s.center == pytest.approx(own, rel=1e-5)
    assert s.values[2, 1] == pytest.approx(s.center, rel=1e-6)   # (0, 0) is on this grid


def test_relative_metric_is_one_at_centre(trained):
    _, base, data = trained
    s = L.compute_surface(base, data, LandscapeConfig(nx=3, ny=3, n_images=12, metric="l2_rel"))
    assert s.center == 1.0 and s.values[1, 1] == pytest.approx(1.0, rel=1e-6)
    raw = L.compute_surface(base, data, LandscapeConfig(nx=3, ny=3, n_images=12, metric="l2"))
    assert np.allclose(s.values * raw.center, raw.values, rtol=1e-6)


def test_directions_are_filter_normalised_and_seeded():
    m1, m2 = ConvAutoencoder(1, 16, depth=2, width=4), ConvAutoencoder(1, 16, depth=2, width=4)
    with torch.no_grad():
        for p in m2.parameters():
            p.mul_(3.0).add_(0.1)
    d1, d2 = L.directions(m1, 7)
    for name, w in m1.named_parameters():
        if w.dim() > 1:
            assert torch.allclose(d1[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
            assert not torch.allclose(d1[name], d2[name])
        else:
            assert torch.count_nonzero(d1[name]) == 0          # biases and BN: zero by default
    again = L.directions(m1, 7)[0]
    assert all(torch.equal(again[k], d1[k]) for k in d1)
    other = L.directions(m1, 8)[0]
    assert not torch.allclose(other["encoder.0.0.weight"], d1["encoder.0.0.weight"])
    # two models of one architecture get the same draws, each scaled to its own filters
    e1 = L.directions(m2, 7)[0]
    for name, w in m1.named_parameters():
        if w.dim() > 1:
            u1 = d1[name] / w.flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
            w2 = dict(m2.named_parameters())[name]
            u2 = e1[name] / w2.flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
            assert torch.allclose(u1, u2, rtol=1e-5, atol=1e-7)
    inc = L.directions(m1, 7, include_bn_bias=True)[0]
    for name, w in m1.named_parameters():
        if w.dim() <= 1:
            assert torch.equal(inc[name], w.detach())


def _randomise_bn(model):
    gen = torch.Generator().manual_seed(3)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
            mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            with torch.no_grad():
                mod.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
    return model.eval()


@pytest.mark.parametrize("bn_mode", ["eval", "batch"])
@pytest.mark.parametrize("kind", ["plain28", "patch", "odd20"])
def test_fast_evaluator_equals_module(bn_mode, kind):
    torch.manual_seed(0)
    if kind == "plain28":
        model, size = ConvAutoencoder(1, 28, depth=4, width=8, latent_channels=8), 28
    elif kind == "patch":
        model, size = PatchAutoencoder(ConvAutoencoder(3, 16, depth=3, width=4, latent_channels=4), 2), 32
    else:
        model, size = ConvAutoencoder(1, 20, depth=4, width=4, kernel_size=5, latent_channels=4), 20
    _randomise_bn(model)
    channels = 3 if kind == "patch" else 1
    x = torch.rand(20, channels, size, size)
    train_cfg = TrainConfig(lamp=True, max_over="batch")
    fast = L.FastEvaluator(model, x, "own", train_cfg, bn_mode, chunk=8)
    loop = L.LoopEvaluator(model, x, "own", train_cfg, bn_mode)
    theta = {k: v.detach() for k, v in model.named_parameters()}
    d1, d2 = L.directions(model, 1, include_bn_bias=True)
    for a, b in [(0.0, 0.0), (0.7, -0.4), (-1.0, 1.0)]:
        p = L.point_params(theta, d1, d2, a, b)
        assert torch.allclose(fast.forward(p), loop.forward(p), atol=2e-6)
        assert fast.loss(p) == pytest.approx(loop.loss(p), rel=1e-5)
    if kind == "plain28":
        assert "subpixel" in fast.modes and "head" in fast.modes   # the fast paths were exercised


@pytest.mark.parametrize("k,h,w", [(3, 7, 5), (5, 6, 6), (1, 4, 3)])
def test_subpixel_conv_equals_upsample_then_conv(k, h, w):
    torch.manual_seed(1)
    x = torch.randn(3, 4, h, w)
    weight, bias = torch.randn(5, 4, k, k), torch.randn(5)
    want = F.conv2d(F.interpolate(x, size=(2 * h, 2 * w), mode="nearest"), weight, bias, padding=k // 2)
    assert torch.allclose(_subpixel_conv(x, weight, bias, k // 2), want, atol=1e-5)
    xc = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(_subpixel_conv(xc, weight, bias, k // 2), want, atol=1e-5)


def test_small_head_equals_conv():
    torch.manual_seed(2)
    x = torch.randn(2, 6, 9, 7)
    w, b = torch.randn(1, 6, 3, 3), torch.randn(1)
    want = F.conv2d(x, w, b, padding=1)
    assert torch.allclose(_small_head_conv(x, w, b), want, atol=1e-5)
    assert torch.allclose(_small_head_conv(x.contiguous(memory_format=torch.channels_last), w, b), want, atol=1e-5)


# ----------------------------------------------------------------------------- sharpness vs dense Hessian

@pytest.fixture(scope="module")
def tiny_hessian():
    torch.manual_seed(4)
    model = _randomise_bn(ConvAutoencoder(1, 8, depth=2, width=2, kernel_size=3, latent_channels=2))
    x = torch.rand(6, 1, 8, 8)
    names = L.direction_names(model, include_bn_bias=False)
    train_cfg = TrainConfig(lamp=True)
    loss, hvp, n = L.hessian_operator(model, x, "own", train_cfg, "eval", names)
    # independent dense Hessian: torch.func.hessian of the loss of a flat parameter vector
    params = dict(model.named_parameters())
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    buffers = dict(model.named_buffers())
    net = copy.deepcopy(model).eval()

    def f(flat):
        parts = dict(zip(names, [t.view(s) for t, s in zip(flat.split(sizes), shapes)]))
        full = {k: v.detach() for k, v in params.items()}
        full.update(parts)
        y_hat = torch.func.functional_call(net, {**full, **buffers}, (x,))
        return training_loss(x.double(), y_hat.double(), train_cfg)
    flat = torch.cat([params[k].detach().reshape(-1) for k in names])
    dense = torch.func.hessian(f)(flat).double()
    dense = (dense + dense.T) / 2
    return hvp, n, dense


def test_hvp_matches_dense_hessian(tiny_hessian):
    hvp, n, dense = tiny_hessian
    assert dense.shape == (n, n)
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hvp(v).double(), dense @ v, rtol=1e-4, atol=1e-4 * float(dense.abs().max()))


def test_power_iteration_finds_the_top_eigenvalue(tiny_hessian):
    hvp, n, dense = tiny_hessian
    eig = torch.linalg.eigvalsh(dense)
    want = float(eig[eig.abs().argmax()])
    got = L.top_eigenvalue(hvp, n, iters=300, tol=1e-7, seed=1)
    assert got == pytest.approx(want, rel=1e-3)


def test_hutchinson_trace_is_unbiased(tiny_hessian):
    _, n, dense = tiny_hessian
    samples = 150
    # the estimator is tested on the dense matrix itself (the HVP is checked against it above),
    # which keeps 150 samples cheap
    est, se = L.hutchinson_trace(lambda v: dense @ v, n, samples=samples, seed=2)
    # Var[v^T H v] for Rademacher v is 2 * sum_{i != j} H_ij^2
    off = dense - torch.diag(torch.diag(dense))
    sd = float(torch.sqrt(2 * off.square().sum() / samples))
    assert abs(est - float(torch.trace(dense))) < 4 * sd
    assert se == pytest.approx(sd, rel=0.3)


def test_compute_sharpness_numbers(trained):
    lamp_run, _, data = trained
    cfg = LandscapeConfig(n_images=8, metric="l2", hessian_iters=4, hutchinson_samples=3, radius_directions=2)
    sh = L.compute_sharpness(lamp_run, data, cfg)
    assert set(sh) >= {"top_eigenvalue", "hessian_trace", "hessian_trace_se", "radius_increase", "center"}
    assert all(np.isfinite(v) for v in sh.values())
    rel = L.compute_sharpness(lamp_run, data, LandscapeConfig(n_images=8, metric="l2_rel", hessian_iters=4,
                                                              hutchinson_samples=3, radius_directions=2))
    assert rel["top_eigenvalue"] == pytest.approx(sh["top_eigenvalue"] / sh["center"], rel=1e-6)


# ----------------------------------------------------------------------------- the Surface object

def _surface():
    vals = np.arange(12, dtype=np.float64).reshape(3, 4) * 0.5 + 1.0
    vals[1, 2] = np.nan
    return L.Surface(x=np.linspace(-1, 1, 4), y=np.linspace(-0.5, 0.5, 3), values=vals, metric="l2", seed=3,
                     bn_mode="batch", center=1.25, sharpness={"top_eigenvalue": 2.5, "hessian_trace": 7.0},
                     complete=False)


def test_save_load_csv_round_trip(tmp_path):
    s = _surface()
    s.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:   # no pickled objects inside
        assert "values" in npz.files
    t = L.Surface.load(tmp_path / "s.npz")
    assert np.array_equal(t.values, s.values, equal_nan=True)
    assert np.array_equal(t.x, s.x) and np.array_equal(t.y, s.y)
    assert (t.metric, t.seed, t.bn_mode, t.center, t.sharpness, t.complete) == \
        (s.metric, s.seed, s.bn_mode, s.center, s.sharpness, s.complete)
    rows = np.genfromtxt(io.StringIO(s.to_csv()), delimiter=",", names=True)
    assert len(rows) == 12
    for r in rows:
        i, j = int(np.argmin(abs(s.x - r["x"]))), int(np.argmin(abs(s.y - r["y"])))
        assert (np.isnan(r["value"]) and np.isnan(s.values[j, i])) or r["value"] == pytest.approx(s.values[j, i])


@pytest.mark.parametrize("nx,ny", [(21, 21), (9, 4), (1, 1), (6, 1), (2, 17)])
def test_refinement_order_covers_every_point_once(nx, ny):
    levels = L.refinement_order(nx, ny)
    flat = [p for lv in levels for p in lv]
    assert sorted(flat) == sorted((i, j) for i in range(nx) for j in range(ny))
    if nx == ny == 21:
        assert len(levels[0]) == 36        # every 4th point, ends included: 8% of the grid first


def test_progressive_partial_surfaces_and_stop(trained):
    _, base, data = trained
    cfg = LandscapeConfig(nx=9, ny=9, n_images=8, metric="l2")
    seen = []
    final = L.compute_surface(base, data, cfg, on_progress=seen.append)
    first = seen[0]
    assert not first.complete and 0 < first.fraction_done() < 0.5
    shown = first.displayable()
    assert shown.values.shape == (5, 5) and np.isfinite(shown.values).all()
    assert np.allclose(shown.values, final.values[::2, ::2])      # coarse points are final values
    assert seen[-1].complete and final.complete and np.isfinite(final.values).all()
    calls = []
    stopped = L.compute_surface(base, data, cfg, should_stop=lambda: calls.append(1) or len(calls) > 10)
    assert not stopped.complete and 0 < np.isfinite(stopped.values).sum() <= 10


def test_displayable_is_the_finest_complete_lattice():
    s = L.Surface(x=np.linspace(-1, 1, 13), y=np.linspace(-1, 1, 13), values=np.full((13, 13), np.nan),
                  metric="l2", seed=0, bn_mode="eval", center=1.0)
    s.values[::2, ::2] = 1.0                        # the coarse level only
    assert s.displayable().values.shape == (7, 7)
    s.values[:] = 2.0                               # refined: the whole grid, not the coarse lattice
    assert s.displayable() is s and s.displayable().values.shape == (13, 13)


def test_line_and_interpolation(trained):
    lamp_run, base, data = trained
    line = L.compute_surface(base, data, LandscapeConfig(nx=7, ny=1, n_images=8, metric="l2"))
    assert line.values.shape == (1, 7) and line.kind == "line" and np.allclose(line.y, [0.0])
    cfg = LandscapeConfig(n_images=8, metric="l2")
    it = L.interpolate(base, lamp_run, data, cfg, points=5, t_min=0.0, t_max=1.0)
    assert it.kind == "interpolation" and it.values.shape == (1, 5)
    x = data.train[:8]
    for t, run in ((0, base), (4, lamp_run)):
        with torch.no_grad():
            want = float((x - run.model()(x)).double().square().flatten(1).sum(1).mean())
        assert it.values[0, t] == pytest.approx(want, rel=1e-5)


def test_surface_for_run_caches_with_the_run(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    lcfg = LandscapeConfig(nx=3, ny=3, n_images=8, metric="l2", hessian_iters=2, hutchinson_samples=2,
                           radius_directions=1)
    s1 = surfaces.surface_for_run(TINY, lcfg, store)
    assert store.has(TINY) and s1.complete and "top_eigenvalue" in s1.sharpness
    monkeypatch.setattr(surfaces, "compute_surface", lambda *a, **k: pytest.fail("recomputed a cached surface"))
    s2 = surfaces.surface_for_run(TINY, lcfg, store)
    assert np.array_equal(s1.values, s2.values) and s1.sharpness == s2.sharpness
    # how the values are computed is not part of the surface's name, so it is found either way
    s3 = surfaces.surface_for_run(TINY, replace(lcfg, workers=3, method="loop"), store)
    assert np.array_equal(s1.values, s3.values)
    assert surfaces.cached_surface(TINY, replace(lcfg, span=2.0), store) is None


def test_landscape_key_ignores_how_values_are_computed():
    cfg = LandscapeConfig()
    assert L.landscape_key(cfg) == L.landscape_key(replace(cfg, workers=4)) == L.landscape_key(replace(cfg, method="loop"))
    for change in (dict(nx=5), dict(span=0.5), dict(metric="l2"), dict(seed=1), dict(bn_mode="batch")):
        assert L.landscape_key(replace(cfg, **change)) != L.landscape_key(cfg), change


def test_bad_landscape_config_is_one_clear_error(trained):
    _, base, data = trained
    from lamp_core.config import ConfigError
    for bad in (dict(nx=0), dict(span=0.0), dict(metric="l3"), dict(bn_mode="train"), dict(n_images=0)):
        with pytest.raises(ConfigError):
            L.compute_surface(base, data, LandscapeConfig(**bad))


# ----------------------------------------------------------------------------- figures

def test_figures_share_one_scale():
    a = _surface()
    a.values[1, 2] = 5.0
    b = a.copy()
    b.values = b.values * 3.0
    fig = LF.fig_surface_3d({"base": a, "lamp": b})
    lo, hi = np.nanmin(a.values), np.nanmax(b.values)
    for tr in fig.data:
        assert (tr.cmin, tr.cmax) == pytest.approx((lo, hi))
    con = LF.fig_contour({"base": a, "lamp": b}, levels=10)
    assert all((tr.zmin, tr.zmax) == pytest.approx((lo, hi)) for tr in con.data)
    grid = LF.fig_batch_grid({("base", 4): a, ("lamp", 4): b, ("base", 64): a, ("lamp", 64): b})
    assert len(grid.data) == 4
    line = LF.fig_line({"a": a})
    assert len(line.data) == 1
    other = _surface()
    other.metric = "own"
    with pytest.raises(ValueError, match="different metrics"):
        LF.fig_contour({"base": a, "lamp": other})


def test_partial_surface_draws_its_complete_subgrid():
    s = L.Surface(x=np.linspace(-1, 1, 9), y=np.linspace(-1, 1, 9), values=np.full((9, 9), np.nan),
                  metric="l2", seed=0, bn_mode="eval", center=1.0)
    s.values[::2, ::2] = 1.0
    fig = LF.fig_surface_3d({"run": s})
    assert np.asarray(fig.data[0].z).shape == (5, 5)


def test_point_pool_matches_sequential_and_leaves_torch_threads_alone():
    torch.manual_seed(5)
    model = _randomise_bn(ConvAutoencoder(1, 16, depth=3, width=4, latent_channels=4))
    x = torch.rand(10, 1, 16, 16)
    ev = L.FastEvaluator(model, x, "l2", TrainConfig(), "eval")
    theta = {k: v.detach() for k, v in model.named_parameters()}
    d1, d2 = L.directions(model, 0)
    coords = [(a, b) for a in (-0.5, 0.0, 0.5) for b in (-1.0, 1.0)]
    outer = torch.get_num_threads()
    torch.set_num_threads(2)                           # the caller's choice, restored at the end
    before = torch.get_num_threads()
    with L.PointPool(ev, 1) as pool:
        seq = list(pool.map(theta, d1, d2, coords))
    with L.PointPool(ev, 3) as pool:
        with L.PointPool(ev, 2) as inner:              # a second job at the same time
            par2 = list(inner.map(theta, d1, d2, coords))
            assert torch.get_num_threads() == before   # the process-wide setting is the caller's
            if L.grid.per_thread_setters():           # ... and each pool thread runs single-threaded
                assert set(inner._executor.map(lambda _: torch.get_num_threads(), range(4))) == {1}
            started = []                               # a thread started meanwhile keeps torch's count
            t = threading.Thread(target=lambda: started.append(torch.get_num_threads()))
            t.start()
            t.join()
            assert started == [before]
        par = list(pool.map(theta, d1, d2, coords))
    assert torch.get_num_threads() == before
    assert par == seq and par2 == seq
    stopped = list(L.PointPool(ev, 1).map(theta, d1, d2, coords, should_stop=lambda: True))
    assert stopped == [None]
    torch.set_num_threads(outer)


def test_default_workers_follow_the_callers_thread_setting(monkeypatch):
    model = ConvAutoencoder(1, 16, depth=2, width=4, latent_channels=4)
    x = torch.rand(4, 1, 16, 16)
    fast = L.FastEvaluator(model, x, "l2", TrainConfig(), "eval")
    loop = L.LoopEvaluator(model, x, "l2", TrainConfig(), "eval")
    monkeypatch.setattr(L.grid, "usable_cores", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(L.grid, "per_thread_setters", lambda: (print,))
    assert L.resolve_workers(LandscapeConfig(), fast) == 8          # single-threaded workers: one per core
    # where workers cannot run single-threaded, never more threads than cores
    monkeypatch.setattr(L.grid, "per_thread_setters", lambda: ())
    assert L.resolve_workers(LandscapeConfig(), fast) == 1          # all threads on one point
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert L.resolve_workers(LandscapeConfig(), fast) == 8
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert L.resolve_workers(LandscapeConfig(), fast) == 2
    assert L.resolve_workers(LandscapeConfig(workers=5), fast) == 5
    assert L.resolve_workers(LandscapeConfig(workers=5), loop) == 1  # the loop shares one module


def test_unsupported_model_falls_back_to_the_loop_and_says_so(caplog):
    class Other(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return torch.sigmoid(self.conv(x))
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(L.UnsupportedModel):
        L.FastEvaluator(Other(), x, "l2", TrainConfig(), "eval")
    with caplog.at_level(logging.WARNING, logger="lamp_core.landscape.grid"):
        ev = L.make_evaluator(Other(), x, "l2", TrainConfig(), "eval", "fast")
    assert isinstance(ev, L.LoopEvaluator)
    assert any("per-point loop" in r.getMessage() for r in caplog.records)


def test_fast_evaluator_disagreeing_with_the_module_is_an_error(monkeypatch):
    model = ConvAutoencoder(1, 16, depth=2, width=4, latent_channels=4)
    x = torch.rand(4, 1, 16, 16)
    real = L.FastEvaluator._forward
    monkeypatch.setattr(L.FastEvaluator, "_forward", lambda self, p, xs: real(self, p, xs) + 1e-2)
    with pytest.raises(L.FastEvaluatorMismatch, match="disagrees"):
        L.make_evaluator(model, x, "l2", TrainConfig(), "eval", "fast")   # never silently the loop


@pytest.mark.parametrize("option", ["fold_bn", "subpixel", "small_head", "channels_last", "chunk"])
def test_every_fast_ingredient_can_be_switched_off_and_stays_exact(option):
    torch.manual_seed(6)
    model = _randomise_bn(ConvAutoencoder(1, 28, depth=4, width=4, latent_channels=4))
    x = torch.rand(12, 1, 28, 28)
    loop = L.LoopEvaluator(model, x, "l2", TrainConfig(), "eval")
    fast = L.FastEvaluator(model, x, "l2", TrainConfig(), "eval", **{option: None if option == "chunk" else False})
    theta = {k: v.detach() for k, v in model.named_parameters()}
    d1, d2 = L.directions(model, 2)
    p = L.point_params(theta, d1, d2, 0.6, -0.9)
    assert torch.allclose(fast.forward(p), loop.forward(p), atol=2e-6)
