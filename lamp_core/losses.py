"""Reconstruction losses and their LAMP amplification (paper §2.2-2.3, eq. 1-2).

Every base loss is first a per-element map `B` of shape (N, C, H, W) with values in [0, 1] for
images in [0, 1]:

    l2:   (y - ŷ)²
    l1:   |y - ŷ|
    ssim: (1 - SSIM map) / 2, 11x11 Gaussian window, sigma 1.5

`reduce_base(B)` sums over C, H, W and averages over the batch. `lamp(B)` applies eq. 2 and
eq. 1 and is reduced the same way, so the two differ only by the amplification:

    B' = B / max(B) · (1 - eps)
    L_LAMP = mean_n Σ_{c,h,w} -log(1 - B')

The paper leaves three choices open. Our defaults, chosen by a rule fixed before the runs (the
reading with the largest mean paired AUROC difference to L2 on MNIST classes 0-4, batch 128, 20
epochs of 1000 images, 3 seeds; bench/results/ablation.md), and reported on classes 5-9, which
the choice did not see (Δ +0.008 [+0.002, +0.015], 12 of 15 pairs higher):

* ``max_over="sample"``: the max per image, over its C, H, W. Every image's worst pixel is then
  pushed equally hard, whatever the rest of its batch looks like, so LAMP itself does not depend
  on the batch size. ``"batch"`` takes the max over the whole (N, C, H, W) loss tensor (what a
  max over the batch's loss map gives when eq. 2 is coded as written; the default until the
  converged ablation, +0.001 there); ``"fixed"`` uses the bound 1, which for the small residuals
  of a trained model makes LAMP almost equal to the base loss.
* ``detach_max=True``: the max is a constant scale, as a normaliser. Without the detach, the
  normalised loss is invariant to scaling every residual by the same factor (B/max(B) does not
  change), so its gradient has no component that shrinks all residuals at once (tested in
  tests/test_losses.py); ``False`` keeps that literal autograd reading available. In the
  ablation a per-sample max that is not detached is the worst reading (-0.004 to -0.007).
* ``eps=0.1``: "slightly less than 1" (1 - eps = 0.9). The largest element contributes
  -log(eps) = 2.3 and a gradient 1/eps = 10 times the base one. The per-sample reading is
  sensitive to it: eps 0.01 (a 100-fold wall) lowers AUROC (-0.005), 0.03 and 0.1 raise it
  (+0.006, +0.007), 0.3 is close to L2 (+0.002).

The ablation in bench/results/ measures all three; the defaults are options everywhere. Their
bounds and choices are declared once, in lamp_core.config (`option_spec("train.eps")`), and the
checks here use them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ConfigError, option_spec

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def l2_map(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    return (y - y_hat).square()


def l1_map(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    return (y - y_hat).abs()


def _gaussian_window(channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)  # (C, 1, 1, K): separable 1-D kernel


def ssim_map(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (N, C, H, W) with data range 1.

    Inputs are reflect-padded by half a window so the map has the image's size; in the interior
    (where no padding is read) it equals the "valid" SSIM map of pytorch_msssim.
    """
    channels = y.shape[1]
    pad = SSIM_WINDOW // 2
    win = _gaussian_window(channels, y.device, y.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        # reflect padding needs pad < size; replicate is the fallback for tiny images
        mode = "reflect" if min(t.shape[-2:]) > pad else "replicate"
        t = F.pad(t, (pad, pad, pad, pad), mode=mode)
        t = F.conv2d(t, win, groups=channels)                      # blur along W
        return F.conv2d(t, win.transpose(2, 3), groups=channels)   # blur along H

    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_x, mu_y = blur(y), blur(y_hat)
    sxx = blur(y * y) - mu_x**2
    syy = blur(y_hat * y_hat) - mu_y**2
    sxy = blur(y * y_hat) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim_loss_map(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    # SSIM lies in [-1, 1]; clamp guards against float round-off just outside it
    return ((1.0 - ssim_map(y, y_hat)) / 2.0).clamp(0.0, 1.0)


BASE_MAPS = {"l2": l2_map, "l1": l1_map, "ssim": ssim_loss_map}


def base_map(name: str, y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    try:
        return BASE_MAPS[name](y, y_hat)
    except KeyError:
        option_spec("train.base_loss").check(name)     # raises ConfigError naming the choices
        raise


def reduce_base(b: torch.Tensor) -> torch.Tensor:
    """Sum over C, H, W; mean over the batch."""
    return b.flatten(1).sum(dim=1).mean()


def normalised(b: torch.Tensor, *, eps: float, max_over: str, detach_max: bool) -> torch.Tensor:
    """Eq. 2: B' = B / max(B) · (1 - eps), with a zero map mapped to zero (not NaN)."""
    if max_over == "sample":
        m = b.flatten(1).amax(dim=1).view(-1, *([1] * (b.dim() - 1)))  # (N, 1, 1, 1)
    elif max_over == "batch":
        m = b.amax()
    elif max_over == "fixed":
        m = torch.ones((), dtype=b.dtype, device=b.device)  # every base map is bounded by 1
    else:
        option_spec("train.max_over").check(max_over)  # raises ConfigError naming the choices
        raise AssertionError(f"max_over {max_over!r} is a choice with no branch here")
    if detach_max:
        m = m.detach()
    # A zero max would give 0/0: divide by 1 there instead, so B' = 0 and the gradient stays finite.
    safe_m = torch.where(m > 0, m, torch.ones_like(m))
    scaled = b / safe_m
    if max_over == "fixed":
        # a map above 1 (never for images in [0, 1]) must not reach log(<= 0). Only here: for
        # sample/batch, b/m <= 1 already, and a clamp would zero the gradient at the max element.
        # (where, not clamp: clamp's gradient vanishes at exactly 1, e.g. a residual of 1 in Fig. 2)
        scaled = torch.where(scaled > 1.0, torch.ones_like(scaled), scaled)
    return scaled * (1.0 - eps)


def lamp_map(b: torch.Tensor, *, eps: float, max_over: str, detach_max: bool) -> torch.Tensor:
    """Eq. 1 per element: -log(1 - B'), same shape as `b`. The one place the LAMP term is written:
    `lamp`, `loss_curves` and the stacked runs (`lamp_core.stack`) all take it from here."""
    if not 0.0 < eps < 1.0:
        option_spec("train.eps").check(eps)            # raises ConfigError with the allowed range
    return -torch.log1p(-normalised(b, eps=eps, max_over=max_over, detach_max=detach_max))


def lamp(b: torch.Tensor, *, eps: float, max_over: str, detach_max: bool) -> torch.Tensor:
    """Eq. 1: Σ_{c,h,w} -log(1 - B'), mean over the batch. Returns a scalar."""
    return reduce_base(lamp_map(b, eps=eps, max_over=max_over, detach_max=detach_max))


def training_loss(y: torch.Tensor, y_hat: torch.Tensor, train_cfg) -> torch.Tensor:
    """The scalar a run is trained on: its base loss, amplified if `train_cfg.lamp`."""
    b = base_map(train_cfg.base_loss, y, y_hat)
    if train_cfg.lamp:
        return lamp(b, eps=train_cfg.eps, max_over=train_cfg.max_over, detach_max=train_cfg.detach_max)
    return reduce_base(b)


def loss_curves(base: str, *, eps: float = 0.01, residual_range: float = 1.0, points: int = 401,
                max_over: str = "fixed") -> dict[str, list[float]]:
    """1-D curves of paper Fig. 2 over residuals r = y - ŷ in [-range, range].

    The base value is l1 = |r| or l2 = r²; LAMP normalises by the max over the plotted range
    (``max_over="sample"``, the whole curve being one sample) or by the bound 1 (``"fixed"``).
    Gradients d(loss)/dr come from autograd, not from hand-derived formulas.
    """
    if base not in ("l1", "l2"):
        raise ConfigError(f"loss curves exist for l1 and l2, not {base!r}")
    r = torch.linspace(-residual_range, residual_range, points, dtype=torch.float64, requires_grad=True)
    y_hat = torch.zeros_like(r)
    b = BASE_MAPS[base](r, y_hat).view(1, 1, 1, -1)  # one "image" of width `points`
    # the max is a constant here: each point shows its own element's slope, as in Fig. 2
    lamp_elem = lamp_map(b, eps=eps, max_over=max_over, detach_max=True)
    (g_base,) = torch.autograd.grad(b.sum(), r, retain_graph=True)
    (g_lamp,) = torch.autograd.grad(lamp_elem.sum(), r)
    return {
        "residual": r.detach().tolist(),
        "base": b.detach().flatten().tolist(),
        "lamp": lamp_elem.detach().flatten().tolist(),
        "base_grad": g_base.tolist(),
        "lamp_grad": g_lamp.tolist(),
    }
