"""Sharpness numbers at a run's trained weights (paper §1, §2.1: LAMP and small batches make the
minimum steeper), for the chosen metric and BN mode, over the parameters the directions move
(weights by default, plus biases/BatchNorm with `include_bn_bias`):

* the top Hessian eigenvalue, by power iteration on Hessian-vector products (largest magnitude);
* the Hessian trace, by Hutchinson's estimator with Rademacher probes (with its standard error);
* a landscape number: the mean relative loss increase (L(theta + r d) - L(theta)) / L(theta)
  over random filter-normalised directions d at +-r (`radius_increase`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..config import LandscapeConfig, TrainConfig
from ..data import ADDataset
from .directions import direction_names, directions, point_params
from .grid import make_evaluator
from .loss import base_metric, evaluation_images, evaluation_model, loss_tensor
from .surface import validate_landscape


def _loss_closure(model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig, bn_mode: str):
    net = evaluation_model(model, bn_mode)
    for p in net.parameters():
        p.requires_grad_(False)
    buffers = dict(net.named_buffers())
    x64 = x.double()

    def f(params: dict[str, torch.Tensor]) -> torch.Tensor:
        y_hat = torch.func.functional_call(net, {**params, **buffers}, (x,))
        return loss_tensor(x64, y_hat.double(), metric, train_cfg)
    return f


def hessian_operator(model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig,
                     bn_mode: str, names: list[str]):
    """(loss, hvp) at the trained weights over the parameters `names`; hvp(v: flat) -> flat H v.

    The gradient graph is built once (create_graph) and every product is one more backward pass.
    """
    f = _loss_closure(model, x, metric, train_cfg, bn_mode)
    all_params = {k: v.detach().clone() for k, v in model.named_parameters()}
    leaves = [all_params[k].requires_grad_(True) for k in names]
    loss = f(all_params)
    grads = torch.autograd.grad(loss, leaves, create_graph=True)
    flat_g = torch.cat([g.reshape(-1) for g in grads])

    def hvp(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat_g, leaves, grad_outputs=v.to(flat_g.dtype), retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).detach()
    return float(loss.detach()), hvp, int(flat_g.numel())


def top_eigenvalue(hvp, n: int, *, iters: int = 20, tol: float = 1e-4, seed: int = 0) -> float:
    """Largest-magnitude Hessian eigenvalue by power iteration (Rayleigh quotient of the last iterate)."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=gen, dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for _ in range(max(iters, 1)):
        hv = hvp(v).double()
        new = float(v @ hv)
        norm = hv.norm()
        if norm == 0:
            return 0.0
        v = hv / norm
        if abs(new - lam) <= tol * max(abs(new), 1e-12):
            return new
        lam = new
    return lam


def hutchinson_trace(hvp, n: int, *, samples: int = 16, seed: int = 0) -> tuple[float, float]:
    """Hutchinson's estimate tr(H) = E[v^T H v], v Rademacher: (mean, standard error)."""
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(max(samples, 1)):
        v = torch.randint(0, 2, (n,), generator=gen, dtype=torch.float64) * 2 - 1
        vals.append(float(v @ hvp(v).double()))
    arr = np.array(vals)
    se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
    return float(arr.mean()), se


def radius_increase(model: nn.Module, x: torch.Tensor, cfg: LandscapeConfig, train_cfg: TrainConfig
                    ) -> float:
    """Mean of (L(theta + r*d) - L(theta)) / L(theta) over random directions d, at r and -r.

    Directions are filter-normalised like the surface's, drawn from seed + 1 so they are not d1/d2.
    """
    if cfg.radius_directions == 0:
        return float("nan")
    metric = base_metric(cfg.metric)
    ev = make_evaluator(model, x, metric, train_cfg, cfg.bn_mode, cfg.method)
    theta = {k: v.detach() for k, v in model.named_parameters()}
    l0 = ev.loss(theta)
    ds = directions(model, cfg.seed + 1, include_bn_bias=cfg.include_bn_bias, count=cfg.radius_directions)
    incs = []
    for d in ds:
        for r in (cfg.radius, -cfg.radius):
            incs.append((ev.loss(point_params(theta, d, None, r, 0.0)) - l0) / l0)
    return float(np.mean(incs))


def compute_sharpness(result, data: ADDataset, cfg: LandscapeConfig) -> dict[str, float]:
    """Top Hessian eigenvalue, Hutchinson trace (with its standard error) and radius increase.

    All of the chosen metric (a *_rel metric divides the Hessian by the centre value) in the
    chosen BN mode, on the evaluation images, over the parameters the directions move.
    """
    validate_landscape(cfg)
    model = result.model("cpu")
    x = evaluation_images(data, cfg)
    train_cfg = result.config.train
    names = direction_names(model, cfg.include_bn_bias)
    metric = base_metric(cfg.metric)
    loss, hvp, n = hessian_operator(model, x, metric, train_cfg, cfg.bn_mode, names)
    scale = loss if cfg.metric.endswith("_rel") else 1.0
    out = {"center": loss / scale, "radius": float(cfg.radius)}
    if cfg.hessian_iters > 0:
        out["top_eigenvalue"] = top_eigenvalue(hvp, n, iters=cfg.hessian_iters, seed=cfg.seed) / scale
    if cfg.hutchinson_samples > 0:
        tr, se = hutchinson_trace(hvp, n, samples=cfg.hutchinson_samples, seed=cfg.seed)
        out["hessian_trace"] = tr / scale
        out["hessian_trace_se"] = se / scale
    if cfg.radius_directions > 0:
        out["radius_increase"] = radius_increase(model, x, cfg, train_cfg)
    return out
