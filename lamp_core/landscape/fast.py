"""The fast exact evaluator: the same forward pass as the module at theta + a*d1 + b*d2, with
fewer and cheaper operations (paper Fig. 1 and 3 need hundreds of points per surface).

Li et al. evaluate each grid point with a full forward pass of the network. `FastEvaluator`
computes the same values (to float rounding, ~1e-7): BatchNorm folded into the convolutions
(eval mode), nearest-upsample + 3x3 conv rewritten as four 2x2 convolutions on the small image
(sub-pixel form: 16 instead of 36 multiply-adds per source pixel and channel pair, no upsampled
tensor), a GEMM head for the 1-channel output conv, channels-last memory, cache-sized image
chunks, inference mode. bench/landscape_speed.py measures it against the per-point loop.

Two errors, two meanings: `UnsupportedModel` (a model `lamp_core.models.forward_spec` does not
describe, or a layer this plan cannot rewrite: use the loop) and `FastEvaluatorMismatch` (the plan
gives other numbers than the module: a bug to report). The plan is built from the model's one
forward description (`forward_spec`), the same the module and the stacked training walk.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..models import Layer, UnsupportedModel, forward_spec, tile, untile
from .loss import evaluation_model, raw_loss

SUBPIXEL_MIN_SIZE = 4             # below this the sub-pixel form's fixed costs outweigh its savings


class FastEvaluatorMismatch(RuntimeError):
    """The fast evaluator's values differ from the module's on the model it was built for."""


@dataclass
class _Step:
    conv: str                         # parameter prefix of the Conv2d, e.g. "encoder.0.0"
    stride: int
    padding: int
    has_bias: bool
    bn: str | None                    # prefix of the BatchNorm2d that follows, if any
    bn_eps: float
    act: str                          # "lrelu" | "sigmoid" | "none"
    slope: float
    upsample: tuple[int, int] | None  # nearest-upsample target size before the conv, if any
    out_channels: int = 0
    kernel_size: int = 3


class FastEvaluator:
    """Exact forward passes of a ConvAutoencoder at perturbed weights, with fewer operations.

    * BatchNorm (eval mode) is folded into the preceding convolution: scale = gamma/sqrt(var+eps),
      W' = W*scale, b' = beta - mean*scale. One conv instead of conv + normalise.
    * Nearest upsampling by exactly 2 followed by a k x k convolution (padding k//2) equals, for
      each of the four output phases (p, q), a smaller convolution of the small image whose
      kernel sums the taps that read the same source pixel (k=3: 2x2 kernels, 16 instead of 36
      multiply-adds per source pixel and channel pair), and the upsampled tensor never exists.
    * The 16 -> 1 head convolution runs as one GEMM plus k*k shifted adds (`_head_apply`).
    * Channels-last memory (the CPU convolution kernels are several times faster on it here) and,
      in eval mode, chunks of 128 images so activations stay in cache; inference mode; the leaky
      ReLU in place. Weights are folded and re-laid once per grid point, not per chunk.
    Everything else (non-integer upsampling such as 4->7, batch statistics) runs as in the model.
    Any other architecture raises `UnsupportedModel` at construction (`make_evaluator` then falls
    back to the loop and logs why); a self-check against the module on a few images guards the
    plan and raises `FastEvaluatorMismatch` (a bug, never silently replaced by the loop).
    The results differ from the module's only by float rounding (the bench checks <= 1e-5).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig,
                 bn_mode: str = "eval", *, fold_bn: bool = True, subpixel: bool = True,
                 small_head: bool = True, channels_last: bool = True, chunk: int | None = 128):
        spec = forward_spec(model)          # UnsupportedModel for a model it does not describe
        self.patches = spec.patches
        self.x, self.metric, self.train_cfg, self.bn_mode = x, metric, train_cfg, bn_mode
        self.fold_bn = fold_bn and bn_mode == "eval"
        self.subpixel, self.small_head, self.channels_last = subpixel, small_head, channels_last
        # eval mode: images are independent, so they may be processed in chunks (cache-friendly);
        # batch mode: the batch statistics need all images at once.
        self.chunk = chunk if (chunk and bn_mode == "eval") else None
        self.steps = self._plan(spec.layers, spec.prefix)
        self.kernel_sizes = [st.kernel_size for st in self.steps]
        self.modes: list[str] | None = None
        self.buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        self._folded_cache: dict[str, tuple] = {}
        self._check(model)

    # -- plan: one step per layer of the model's forward description (models.forward_spec)
    @staticmethod
    def _plan(layers: tuple[Layer, ...], prefix: str) -> list[_Step]:
        steps = []
        for layer in layers:
            conv, bn = layer.conv, layer.bn
            steps.append(_Step(conv=prefix + layer.conv_name, stride=conv.stride[0], padding=conv.padding[0],
                               has_bias=conv.bias is not None, bn=None if bn is None else prefix + layer.bn_name,
                               bn_eps=0.0 if bn is None else bn.eps, act="lrelu" if layer.leaky else "sigmoid",
                               slope=layer.act.negative_slope if layer.leaky else 0.0,
                               upsample=layer.upsample_size, out_channels=conv.out_channels,
                               kernel_size=conv.kernel_size[0]))
        return steps

    def _check(self, model: nn.Module) -> None:
        """Guard against a model layout this plan misreads: compare on a few images at theta."""
        ref = evaluation_model(model, self.bn_mode)
        theta = {k: v.detach() for k, v in model.named_parameters()}
        xs = self.x[: min(len(self.x), 8)]
        with torch.inference_mode():
            want = ref(xs)
            got = self._forward(theta, xs)
        if not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
            err = float((want - got).abs().max())
            raise FastEvaluatorMismatch(f"the fast evaluator disagrees with the module on this model (max abs "
                                        f"difference {err:.3g}): a bug in its plan; use method=loop meanwhile")

    # -- execution
    def _modes(self, size: tuple[int, int]) -> list[str]:
        """How each step runs, from the spatial sizes its input will have (fixed per model)."""
        modes = []
        hh, ww = size
        for st, k in zip(self.steps, self.kernel_sizes):
            mode = "conv"
            if st.upsample is not None:
                mode = "upconv"
                if (self.subpixel and st.upsample == (2 * hh, 2 * ww) and st.stride == 1 and k % 2 == 1
                        and st.padding == k // 2 and min(hh, ww) >= SUBPIXEL_MIN_SIZE):
                    mode = "subpixel"
                hh, ww = st.upsample
            elif (self.small_head and st.out_channels <= 2 and st.stride == 1 and k % 2 == 1
                    and st.padding == k // 2 and st.bn is None):
                mode = "head"
            modes.append(mode)
            hh = (hh + 2 * st.padding - k) // st.stride + 1
            ww = (ww + 2 * st.padding - k) // st.stride + 1
        return modes

    def _prepare(self, params: dict[str, torch.Tensor]) -> list[tuple]:
        """Per grid point, once: weights of every step, BN folded and re-laid for its mode."""
        prepared = []
        for st, mode in zip(self.steps, self.modes):
            w = params[f"{st.conv}.weight"]
            b = params.get(f"{st.conv}.bias") if st.has_bias else None
            bn = None
            if st.bn is not None:
                gamma, beta = params[f"{st.bn}.weight"], params[f"{st.bn}.bias"]
                if self.fold_bn:
                    mean, var = self.buffers[f"{st.bn}.running_mean"], self.buffers[f"{st.bn}.running_var"]
                    scale = gamma / torch.sqrt(var + st.bn_eps)                     # (C_out,)
                    shift = beta - mean * scale
                    if b is not None:
                        shift = shift + b * scale
                    w, b = w * scale.view(-1, 1, 1, 1), shift
                else:
                    bn = (gamma, beta)
            if mode == "subpixel":
                prepared.append((mode, _subpixel_kernel(w, b, st.padding), bn))
            elif mode == "head":
                prepared.append((mode, _head_taps(w, b), bn))
            else:
                prepared.append((mode, (w, b), bn))
        return prepared

    def _forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        x = tile(x, self.patches)
        if self.modes is None:
            self.modes = self._modes(tuple(x.shape[-2:]))
        prepared = self._prepare(params)
        chunks = x.split(self.chunk) if self.chunk else (x,)
        outs = []
        for h in chunks:
            if self.channels_last:
                h = h.contiguous(memory_format=torch.channels_last)
            for st, (mode, kern, bn) in zip(self.steps, prepared):
                if mode == "subpixel":
                    h = _subpixel_apply(h, *kern)
                elif mode == "head":
                    h = _head_apply(h, *kern)
                else:
                    if mode == "upconv":
                        h = F.interpolate(h, size=st.upsample, mode="nearest")
                    h = F.conv2d(h, kern[0], kern[1], stride=st.stride, padding=st.padding)
                    if self.channels_last:
                        # a 1-channel input counts as both layouts and conv then returns NCHW
                        h = h.contiguous(memory_format=torch.channels_last)
                if bn is not None:
                    if self.bn_mode == "batch":
                        h = F.batch_norm(h, None, None, bn[0], bn[1], training=True, eps=st.bn_eps)
                    else:
                        h = F.batch_norm(h, self.buffers[f"{st.bn}.running_mean"],
                                         self.buffers[f"{st.bn}.running_var"], bn[0], bn[1],
                                         training=False, eps=st.bn_eps)
                if st.act == "lrelu":
                    h = F.leaky_relu_(h, st.slope)
                elif st.act == "sigmoid":
                    h = torch.sigmoid_(h)
            outs.append(h)
        out = torch.cat(outs) if len(outs) > 1 else outs[0].contiguous()
        return untile(out, self.patches)

    @torch.inference_mode()
    def forward(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._forward(params, self.x)

    def loss(self, params: dict[str, torch.Tensor]) -> float:
        return raw_loss(self.x, self.forward(params), self.metric, self.train_cfg)


def _phase_kernels(w: torch.Tensor, pad: int) -> list[tuple[int, torch.Tensor, int]]:
    """For each output phase p of a 2x nearest upsample + conv: (first source offset, kernel, p).

    Output row 2i+p, tap ky reads upsampled row 2i+p+ky-pad = source row i + (p+ky-pad)//2, so
    taps with the same offset collapse into one (their weights summed).
    """
    k = w.shape[-1]
    out = []
    for p in (0, 1):
        offs = [(p + ky - pad) // 2 for ky in range(k)]
        lo, hi = min(offs), max(offs)
        r = torch.zeros(hi - lo + 1, k, dtype=w.dtype)
        for ky, o in enumerate(offs):
            r[o - lo, ky] = 1.0
        out.append((lo, r, p))
    return out


def _subpixel_kernel(w: torch.Tensor, b: torch.Tensor | None, pad: int):
    """The four phase kernels of conv(upsample_nearest_2x(h), w, padding=pad), stacked.

    Phase (p, q) reads source offsets lo_p.. (rows) and lo_q.. (cols); all phase kernels have
    the same size (k=3: 2x2), so one convolution with 4*C_out outputs over the zero-padded small
    image gives every phase, phase (p, q) being that output shifted by (lo_p - lo_min, lo_q - lo_min).
    One larger GEMM beats four small ones. Returns (kernel (4*C_out, C_in, kh, kw), bias, pads,
    shifts, C_out).
    """
    c_out = w.shape[0]
    phases = _phase_kernels(w, pad)
    sizes = {r.shape[0] for _, r, _ in phases}
    if len(sizes) != 1:
        raise UnsupportedModel("phase kernels of different sizes")
    ks = sizes.pop()
    lo_min = min(lo for lo, _, _ in phases)
    max_shift = max(lo for lo, _, _ in phases) - lo_min
    kernels, shifts = [], []
    for lo_y, ry, p in phases:
        for lo_x, rx, q in phases:
            kernels.append(torch.einsum("ak,bl,oikl->oiab", ry, rx, w))     # (C_out, C_in, ks, ks)
            shifts.append((lo_y - lo_min, lo_x - lo_min))
    # output u of the padded conv reads source rows u + lo_min .. u + lo_min + ks - 1; H + max_shift
    # outputs are needed, so the padded image has H + max_shift + ks - 1 rows
    before = -lo_min
    after = ks - 1 + max_shift - before
    pads = (before, after, before, after)
    bias = None if b is None else b.repeat(4)
    return torch.cat(kernels), bias, pads, tuple(shifts), c_out


def _subpixel_apply(h: torch.Tensor, kernel: torch.Tensor, bias, pads, shifts, c_out: int) -> torch.Tensor:
    """(N, C_in, H, W) -> (N, C_out, 2H, 2W): one conv for all four phases, then interleave."""
    n, _, hh, ww = h.shape
    o = F.conv2d(F.pad(h, pads), kernel, bias)                          # (N, 4*C_out, H', W'), (p, q, c)
    cl = h.is_contiguous(memory_format=torch.channels_last)
    if cl:
        out = h.new_empty(n, hh, 2, ww, 2, c_out)                      # memory of a channels_last result
        for k, (dy, dx) in enumerate(shifts):
            p, q = divmod(k, 2)
            src = o[:, k * c_out:(k + 1) * c_out, dy:dy + hh, dx:dx + ww]     # (N, C_out, H, W)
            out[:, :, p, :, q, :] = src.permute(0, 2, 3, 1)
        return out.view(n, 2 * hh, 2 * ww, c_out).permute(0, 3, 1, 2)
    out = h.new_empty(n, c_out, hh, 2, ww, 2)
    for k, (dy, dx) in enumerate(shifts):
        p, q = divmod(k, 2)
        out[:, :, :, p, :, q] = o[:, k * c_out:(k + 1) * c_out, dy:dy + hh, dx:dx + ww]
    return out.view(n, c_out, 2 * hh, 2 * ww)


def _subpixel_conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, pad: int) -> torch.Tensor:
    """conv2d(upsample_nearest_2x(h), w, b, padding=pad) computed on h: (N, C_in, H, W) -> (N, C_out, 2H, 2W)."""
    return _subpixel_apply(h, *_subpixel_kernel(w, b, pad))


def _head_taps(w: torch.Tensor, b: torch.Tensor | None):
    c_out, c_in, k, _ = w.shape
    return w.permute(0, 2, 3, 1).reshape(c_out * k * k, c_in), b, c_out, k   # taps (C_out*k*k, C_in)


def _head_apply(h: torch.Tensor, taps: torch.Tensor, b, c_out: int, k: int) -> torch.Tensor:
    """A k x k convolution (padding k//2) to very few channels (the 16 -> 1 head) as one GEMM over
    channels, (N, H*W, C_in) @ (C_in, C_out*k*k), plus k*k shifted adds: the library's conv
    kernels are 2-3x slower than this when C_out is 1."""
    n, c_in, hh, ww = h.shape
    pad = k // 2
    if h.is_contiguous(memory_format=torch.channels_last):
        z = torch.matmul(h.permute(0, 2, 3, 1).reshape(n, hh * ww, c_in), taps.t())  # (N, H*W, C_out*k*k)
        z = z.transpose(1, 2).contiguous()                             # (N, C_out*k*k, H*W)
    else:
        z = torch.matmul(taps, h.reshape(n, c_in, hh * ww))             # (N, C_out*k*k, H*W)
    z = F.pad(z.view(n, c_out, k * k, hh, ww), (pad, pad, pad, pad))
    out = h.new_zeros(n, c_out, hh, ww) if b is None else b.view(1, -1, 1, 1).expand(n, c_out, hh, ww).clone()
    for t in range(k * k):
        ky, kx = divmod(t, k)
        out += z[:, :, t, ky:ky + hh, kx:kx + ww]
    return out


def _small_head_conv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return _head_apply(h, *_head_taps(w, b))
