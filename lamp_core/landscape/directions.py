"""Filter-normalised random directions (Li et al. 2018 §4), the axes of every landscape cut.

For every weight tensor, a Gaussian tensor of the same shape is drawn from a generator seeded
with `LandscapeConfig.seed`, and each output filter d[i] is rescaled to the norm of the trained
filter: d[i] <- d[i] / |d[i]| * |w[i]|. Biases and BatchNorm parameters (1-D tensors) get a zero
direction by default; with `include_bn_bias=True` they get the parameter itself as direction, as
in Li et al.'s code. The draws depend only on the seed and the architecture, so a base and a
LAMP model of one architecture are cut along directions drawn the same way (each rescaled to
its own filters).
"""
from __future__ import annotations

import torch
from torch import nn


def random_direction(model: nn.Module, generator: torch.Generator, *,
                     include_bn_bias: bool = False) -> dict[str, torch.Tensor]:
    """One filter-normalised direction (Li et al. 2018 §4): {parameter name: tensor}.

    For a weight w of shape (C_out, ...), d ~ N(0, 1) of the same shape and each filter d[i]
    is rescaled to |w[i]|. 1-D parameters (biases, BatchNorm) get 0, or w itself when included.
    Draws happen for every parameter in order, so the stream does not depend on the option.
    """
    out = {}
    for name, w in model.named_parameters():
        w = w.detach()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32)
        if w.dim() <= 1:
            d = w.clone() if include_bn_bias else torch.zeros_like(w)
        else:
            d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)          # (C_out,)
            w_norm = w.flatten(1).norm(dim=1)                          # (C_out,)
            d = d * (w_norm / d_norm).view(-1, *([1] * (w.dim() - 1)))
        out[name] = d.to(w.dtype)
    return out


def directions(model: nn.Module, seed: int, *, include_bn_bias: bool = False, count: int = 2
               ) -> list[dict[str, torch.Tensor]]:
    """`count` seeded filter-normalised directions (d1, d2, ...)."""
    gen = torch.Generator().manual_seed(int(seed))
    return [random_direction(model, gen, include_bn_bias=include_bn_bias) for _ in range(count)]


def point_params(theta: dict[str, torch.Tensor], d1: dict[str, torch.Tensor],
                 d2: dict[str, torch.Tensor] | None, a: float, b: float) -> dict[str, torch.Tensor]:
    """theta + a*d1 + b*d2, parameter by parameter (the one formula both evaluators use)."""
    out = {}
    for k, t in theta.items():
        p = t + a * d1[k]
        if d2 is not None and b != 0.0:
            p = p + b * d2[k]
        out[k] = p
    return out


def direction_names(model: nn.Module, include_bn_bias: bool) -> list[str]:
    """Parameters the directions move: weights (dim > 1), plus 1-D ones when included."""
    return [k for k, v in model.named_parameters() if v.dim() > 1 or include_bn_bias]
