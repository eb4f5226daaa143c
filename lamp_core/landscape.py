"""Loss landscapes and sharpness of trained autoencoders (paper §1, §2.1, Fig. 1 and Fig. 3).

The paper's claim is about shape: LAMP (eq. 1-2) and small batches make the loss landscape
steeper around the trained weights. This module cuts the landscape the way the paper's reference
[1] (Li et al. 2018, "Visualizing the loss landscape of neural nets") does, and puts numbers on it.

Directions (Li et al. §4, "filter normalisation"). For every weight tensor, a Gaussian tensor of
the same shape is drawn from a generator seeded with `LandscapeConfig.seed`, and each output
filter d[i] is rescaled to the norm of the trained filter: d[i] <- d[i] / |d[i]| * |w[i]|.
Biases and BatchNorm parameters (1-D tensors) get a zero direction by default; with
`include_bn_bias=True` they get the parameter itself as direction, as in Li et al.'s code. The
draws depend only on the seed and the architecture, so a base and a LAMP model of one
architecture are cut along directions drawn the same way (each rescaled to its own filters).

Surfaces. A grid point (x_i, y_j) is the loss at theta + x_i*d1 + y_j*d2, stored at
`values[j, i]` (rows follow y, columns follow x, as plotly and numpy image convention expect).
A 1-D line has ny = 1 and y = [0]. `interpolate` gives the 1-D line (1-t)*theta_a + t*theta_b
between two trained models (parameters and BatchNorm running statistics both interpolated).

BatchNorm. `bn_mode="eval"` (default) uses the running statistics saved with the model, i.e. the
network that is actually used for anomaly scores. `bn_mode="batch"` normalises with the
statistics of the evaluation images themselves (all of them as one batch), as during training;
this is what a landscape computed in train mode (as in Li et al.'s code) shows.

Metrics, so that base and LAMP can be compared honestly. LAMP's loss is on another scale than
L2, so a steeper-looking LAMP surface may only be a bigger number:

    own      the run's training loss (L2, L1, SSIM, or its LAMP amplification), as trained
    l2       plain L2 (sum over C,H,W, mean over images): one yardstick for every model
    own_rel  own / own(theta): the relative increase, 1 at the centre
    l2_rel   l2 / l2(theta)

Every loss is evaluated on the first `n_images` normal training images as one batch (so that
eq. 2's max over the "batch" and BatchNorm's batch statistics mean the same images), with the
loss map reduced in float64 so that two exact evaluators agree to ~1e-7.

Sharpness numbers at the trained weights, for the chosen metric and BN mode, over the parameters
the directions move (weights by default, plus biases/BN with `include_bn_bias`):
top Hessian eigenvalue by power iteration on Hessian-vector products (largest magnitude), the
Hessian trace by Hutchinson's estimator with Rademacher probes, and a landscape number: the mean
relative loss increase (L(theta + r d) - L(theta)) / L(theta) over random filter-normalised
directions d at +-r (`radius_increase`).

Speed. Li et al. evaluate each grid point with a full forward pass of the network, one point
after another. `method="fast"` computes the same values (to float rounding, ~1e-7) with fewer
and cheaper operations (see `FastEvaluator`): BatchNorm folded into the convolutions (eval mode),
nearest-upsample + 3x3 conv rewritten as four 2x2 convolutions on the small image (sub-pixel
form: 16 instead of 36 multiply-adds per source pixel and channel pair, no upsampled tensor),
a GEMM head for the 1-channel output conv, channels-last memory, cache-sized image chunks,
inference mode; and it spreads grid points over threads (`PointPool`) instead of splitting each
small convolution across threads. bench/landscape_speed.py measures it against the per-point
loop. Points are computed coarse-to-fine, so a first picture is ready after ~8% of the work.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, LandscapeConfig, RunConfig, TrainConfig
from .data import ADDataset
from .losses import l2_map, reduce_base, training_loss
from .models import ConvAutoencoder, PatchAutoencoder

METRICS = ("own", "l2", "own_rel", "l2_rel")
BN_MODES = ("eval", "batch")
METHODS = ("fast", "loop")
KINDS = ("plane", "line", "interpolation")
MAX_GRID_POINTS = 201 * 201
SUBPIXEL_MIN_SIZE = 4             # below this the sub-pixel form's fixed costs outweigh its savings
PROGRESS_EVERY_S = 1.0            # partial surfaces are reported at least this often (besides levels)

ProgressFn = Callable[["Surface"], None]
StopFn = Callable[[], bool]


# ----------------------------------------------------------------------------- the result

@dataclass
class Surface:
    """A loss surface: values[j, i] is the loss at theta + x[i]*d1 + y[j]*d2 (NaN = not computed)."""

    x: np.ndarray                  # (nx,) coordinates along direction 1 (or t for interpolation)
    y: np.ndarray                  # (ny,) coordinates along direction 2; [0.] for a 1-D line
    values: np.ndarray             # (ny, nx) float64
    metric: str                    # one of METRICS
    seed: int                      # seed of the directions
    bn_mode: str                   # "eval" | "batch"
    center: float                  # the metric at the trained weights (1.0 for the *_rel metrics)
    sharpness: dict[str, float] = field(default_factory=dict)
    complete: bool = False         # False while only a coarse part of the grid is filled
    kind: str = "plane"            # "plane", "line" or "interpolation"
    scale: float = 1.0             # the divisor applied to raw losses (the raw centre for *_rel)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def copy(self) -> "Surface":
        return replace(self, x=self.x.copy(), y=self.y.copy(), values=self.values.copy(),
                       sharpness=dict(self.sharpness))

    def fraction_done(self) -> float:
        return float(np.isfinite(self.values).mean()) if self.values.size else 1.0

    def displayable(self) -> "Surface":
        """The finest fully computed sub-lattice (every s-th point per axis, ends included).

        While the coarse-to-fine computation runs, the missing points are NaN; a plotted surface
        with NaN holes shows nothing, so figures draw this sub-grid instead.
        """
        ny, nx = self.values.shape
        done = np.isfinite(self.values)
        for s in _strides(max(nx, ny)):
            ix, iy = _lattice(nx, s), _lattice(ny, s)
            if done[np.ix_(iy, ix)].all():
                if len(ix) == nx and len(iy) == ny:
                    return self
                return replace(self, x=self.x[ix], y=self.y[iy], values=self.values[np.ix_(iy, ix)],
                               sharpness=dict(self.sharpness))
        return self   # no complete sub-lattice (not computed coarse-to-fine): draw it with its gaps

    # -- persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        keys = sorted(self.sharpness)
        return {
            "x": np.asarray(self.x, dtype=np.float64), "y": np.asarray(self.y, dtype=np.float64),
            "values": np.asarray(self.values, dtype=np.float64), "metric": np.array(self.metric),
            "seed": np.array(int(self.seed)), "bn_mode": np.array(self.bn_mode),
            "center": np.array(float(self.center)), "complete": np.array(bool(self.complete)),
            "kind": np.array(self.kind), "scale": np.array(float(self.scale)),
            "sharpness_keys": np.array(keys, dtype=str),
            "sharpness_values": np.array([float(self.sharpness[k]) for k in keys], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "Surface":
        keys = [str(k) for k in a["sharpness_keys"].tolist()]
        vals = [float(v) for v in np.asarray(a["sharpness_values"]).tolist()]
        return cls(x=np.asarray(a["x"], dtype=np.float64), y=np.asarray(a["y"], dtype=np.float64),
                   values=np.asarray(a["values"], dtype=np.float64), metric=str(a["metric"]),
                   seed=int(a["seed"]), bn_mode=str(a["bn_mode"]), center=float(a["center"]),
                   sharpness=dict(zip(keys, vals)), complete=bool(a["complete"]),
                   kind=str(a["kind"]) if "kind" in a else "plane",
                   scale=float(a["scale"]) if "scale" in a else 1.0)

    def save(self, path) -> None:
        """Write an .npz (plain arrays and strings only: loads with allow_pickle=False)."""
        buf = io.BytesIO()
        np.savez(buf, **self.to_arrays())
        with open(path, "wb") as fh:
            fh.write(buf.getvalue())

    @classmethod
    def load(cls, path) -> "Surface":
        with np.load(path, allow_pickle=False) as npz:
            return cls.from_arrays({k: npz[k] for k in npz.files})

    def to_csv(self) -> str:
        """One row per grid point: x, y, value (empty where not computed)."""
        lines = ["x,y,value"]
        for j, yv in enumerate(self.y):
            for i, xv in enumerate(self.x):
                v = self.values[j, i]
                lines.append(f"{xv:.9g},{yv:.9g}," + (f"{v:.12g}" if np.isfinite(v) else ""))
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- configuration

def validate_landscape(cfg: LandscapeConfig) -> None:
    """Raise ConfigError naming the field and the fix."""
    if cfg.nx < 1 or cfg.ny < 1:
        raise ConfigError(f"grid {cfg.nx}x{cfg.ny} is empty: use at least 1 point per axis (e.g. 21x21)")
    if cfg.nx * cfg.ny > MAX_GRID_POINTS:
        raise ConfigError(f"grid {cfg.nx}x{cfg.ny} has more than {MAX_GRID_POINTS} points: use a smaller grid")
    if not (cfg.span > 0 and math.isfinite(cfg.span)):
        raise ConfigError(f"span {cfg.span} must be a positive number (coordinates run over [-span, span])")
    if cfg.n_images < 1:
        raise ConfigError(f"n_images {cfg.n_images} must be at least 1")
    if cfg.metric not in METRICS:
        raise ConfigError(f"unknown metric {cfg.metric!r}: choose one of {', '.join(METRICS)}")
    if cfg.bn_mode not in BN_MODES:
        raise ConfigError(f"unknown BN mode {cfg.bn_mode!r}: choose eval (running statistics) or batch")
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown landscape method {cfg.method!r}: choose fast or loop")
    if not (cfg.radius > 0 and math.isfinite(cfg.radius)):
        raise ConfigError(f"radius {cfg.radius} must be a positive number")
    if cfg.radius_directions < 0 or cfg.hessian_iters < 0 or cfg.hutchinson_samples < 0:
        raise ConfigError("radius_directions, hessian_iters and hutchinson_samples must not be negative")


def landscape_key(cfg: LandscapeConfig) -> str:
    """Store name of a surface: depends on everything that changes its values (not the method)."""
    d = asdict(cfg)
    d.pop("method")
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return "landscape-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def grid_coordinates(cfg: LandscapeConfig) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-cfg.span, cfg.span, cfg.nx) if cfg.nx > 1 else np.zeros(1)
    y = np.linspace(-cfg.span, cfg.span, cfg.ny) if cfg.ny > 1 else np.zeros(1)
    return x, y


def evaluation_images(data: ADDataset, cfg: LandscapeConfig) -> torch.Tensor:
    """The first n_images normal training images (all of them when there are fewer): (N, C, H, W)."""
    return data.train[: cfg.n_images].float().contiguous()


# ----------------------------------------------------------------------------- directions

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


# ----------------------------------------------------------------------------- the loss

def _raw_loss(x: torch.Tensor, y_hat: torch.Tensor, metric: str, train_cfg: TrainConfig) -> float:
    """The metric (without centre normalisation) in float64 over all evaluation images."""
    x64, y64 = x.double(), y_hat.double()
    if metric.startswith("own"):
        return float(training_loss(x64, y64, train_cfg))
    return float(reduce_base(l2_map(x64, y64)))


def batch_stat_model(model: nn.Module) -> nn.Module:
    """A copy whose BatchNorm layers always normalise with the statistics of the current batch."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.track_running_stats = False
            mod.running_mean = None
            mod.running_var = None
            mod.num_batches_tracked = None
    return m.eval()


class LoopEvaluator:
    """Li et al.'s method: load theta + a*d1 + b*d2 into the network, run one forward pass."""

    def __init__(self, model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig,
                 bn_mode: str = "eval"):
        self.model = batch_stat_model(model) if bn_mode == "batch" else copy.deepcopy(model).eval()
        self.params = dict(self.model.named_parameters())
        self.x, self.metric, self.train_cfg = x, metric, train_cfg

    @torch.inference_mode()
    def forward(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        for k, p in self.params.items():
            p.copy_(params[k])
        return self.model(self.x)

    def loss(self, params: dict[str, torch.Tensor]) -> float:
        return _raw_loss(self.x, self.forward(params), self.metric, self.train_cfg)


# ----------------------------------------------------------------------------- the fast evaluator

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
    Any other architecture raises TypeError at construction (`make_evaluator` then falls back to
    the loop), and a self-check against the module on a few images guards the plan.
    The results differ from the module's only by float rounding (the bench checks <= 1e-5).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig,
                 bn_mode: str = "eval", *, fold_bn: bool = True, subpixel: bool = True,
                 small_head: bool = True, channels_last: bool = True, chunk: int | None = 128):
        self.patches = 1
        inner, prefix = model, ""
        if isinstance(model, PatchAutoencoder):
            inner, prefix, self.patches = model.inner, "inner.", model.patches
        if not isinstance(inner, ConvAutoencoder):
            raise TypeError(f"FastEvaluator supports ConvAutoencoder, not {type(inner).__name__}")
        self.x, self.metric, self.train_cfg, self.bn_mode = x, metric, train_cfg, bn_mode
        self.fold_bn = fold_bn and bn_mode == "eval"
        self.subpixel, self.small_head, self.channels_last = subpixel, small_head, channels_last
        # eval mode: images are independent, so they may be processed in chunks (cache-friendly);
        # batch mode: the batch statistics need all images at once.
        self.chunk = chunk if (chunk and bn_mode == "eval") else None
        self.steps = self._plan(inner, prefix)
        self.kernel_sizes = [st.kernel_size for st in self.steps]
        self.modes: list[str] | None = None
        self.buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        self._folded_cache: dict[str, tuple] = {}
        self._check(model)

    # -- plan: ConvAutoencoder = encoder blocks, decoder blocks, head (see models.py)
    @staticmethod
    def _plan(inner: ConvAutoencoder, prefix: str) -> list[_Step]:
        steps = []

        def block(seq: nn.Sequential, name: str, has_up: bool) -> _Step:
            mods = list(seq)
            up = None
            if has_up:
                if not isinstance(mods[0], nn.Upsample) or mods[0].mode != "nearest" or mods[0].size is None:
                    raise TypeError("unexpected decoder block")
                s = mods[0].size
                up = (s, s) if isinstance(s, int) else tuple(s)
                mods = mods[1:]
                name_off = 1
            else:
                name_off = 0
            conv, bn, act = mods
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and isinstance(act, nn.LeakyReLU)) or conv.groups != 1 or conv.dilation != (1, 1):
                raise TypeError("unexpected block layout")
            return _Step(conv=f"{name}.{name_off}", stride=conv.stride[0], padding=conv.padding[0],
                         has_bias=conv.bias is not None, bn=f"{name}.{name_off + 1}", bn_eps=bn.eps,
                         act="lrelu", slope=act.negative_slope, upsample=up,
                         out_channels=conv.out_channels, kernel_size=conv.kernel_size[0])

        for i, seq in enumerate(inner.encoder):
            steps.append(block(seq, f"{prefix}encoder.{i}", False))
        for i, seq in enumerate(inner.decoder):
            steps.append(block(seq, f"{prefix}decoder.{i}", True))
        conv, sig = list(inner.head)
        if not isinstance(conv, nn.Conv2d) or not isinstance(sig, nn.Sigmoid):
            raise TypeError("unexpected head layout")
        steps.append(_Step(conv=f"{prefix}head.0", stride=conv.stride[0], padding=conv.padding[0],
                           has_bias=conv.bias is not None, bn=None, bn_eps=0.0, act="sigmoid",
                           slope=0.0, upsample=None, out_channels=conv.out_channels,
                           kernel_size=conv.kernel_size[0]))
        return steps

    def _check(self, model: nn.Module) -> None:
        """Guard against a model layout this plan misreads: compare on a few images at theta."""
        ref = (batch_stat_model(model) if self.bn_mode == "batch" else copy.deepcopy(model).eval())
        theta = {k: v.detach() for k, v in model.named_parameters()}
        xs = self.x[: min(len(self.x), 8)]
        with torch.inference_mode():
            want = ref(xs)
            got = self._forward(theta, xs)
        if not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
            raise TypeError("fast evaluator disagrees with the module on this model")

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
        n, c, hgt, wid = x.shape
        p = self.patches
        if p > 1:
            ph, pw = hgt // p, wid // p
            x = x.reshape(n, c, p, ph, p, pw).permute(0, 2, 4, 1, 3, 5).reshape(n * p * p, c, ph, pw)
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
        if p > 1:
            out = out.reshape(n, p, p, c, hgt // p, wid // p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, hgt, wid)
        return out

    @torch.inference_mode()
    def forward(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._forward(params, self.x)

    def loss(self, params: dict[str, torch.Tensor]) -> float:
        return _raw_loss(self.x, self.forward(params), self.metric, self.train_cfg)


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
        raise TypeError("phase kernels of different sizes")
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


# ----------------------------------------------------------------------------- surfaces

def _strides(n: int) -> list[int]:
    """Coarse-to-fine strides: the coarsest keeps >= 5 points per axis, the last is 1."""
    s = 1
    while (n - 1) // (2 * s) >= 4:
        s *= 2
    out = []
    while s >= 1:
        out.append(s)
        s //= 2
    return out


def _lattice(n: int, s: int) -> list[int]:
    idx = list(range(0, n, s))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return idx


def refinement_order(nx: int, ny: int) -> list[list[tuple[int, int]]]:
    """Grid points (i, j) grouped by level, coarse first; every point appears exactly once."""
    done = np.zeros((ny, nx), dtype=bool)
    levels = []
    for s in _strides(max(nx, ny)):
        level = []
        for j in _lattice(ny, s):
            for i in _lattice(nx, s):
                if not done[j, i]:
                    done[j, i] = True
                    level.append((i, j))
        if level:
            levels.append(level)
    return levels


def make_evaluator(model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig,
                   bn_mode: str, method: str = "fast"):
    """The fast evaluator where the model's layout allows it, else the per-point loop."""
    if method == "fast":
        try:
            return FastEvaluator(model, x, metric, train_cfg, bn_mode)
        except TypeError:
            pass
    return LoopEvaluator(model, x, metric, train_cfg, bn_mode)


def resolve_workers(cfg: LandscapeConfig, ev) -> int:
    """Parallel grid points: only for the fast evaluator (the loop's module is shared state)."""
    if not isinstance(ev, FastEvaluator):
        return 1
    return max(1, cfg.workers or torch.get_num_threads())


class PointPool:
    """Evaluates grid points on `workers` threads, each running its operations single-threaded.

    Grid points are independent, so they parallelise without any synchronisation inside a forward
    pass; intra-op threading of these small convolutions scales poorly and, on a machine shared
    with other processes, every operation waits at a barrier for a descheduled thread. Torch's
    thread count is set to 1 while the pool is open and restored afterwards (it is a process-wide
    setting: other work in this process runs single-threaded meanwhile). Results are identical to
    sequential evaluation: each point runs the same code on its own tensors.
    """

    _lock = threading.Lock()
    _open = 0                       # pools open in this process (several jobs may run at once)
    _saved_threads = 0              # torch's thread count before the first of them opened

    def __init__(self, ev, workers: int):
        self.ev, self.workers = ev, workers
        self._executor = None

    def __enter__(self) -> "PointPool":
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            with PointPool._lock:
                if PointPool._open == 0:
                    PointPool._saved_threads = torch.get_num_threads()
                    torch.set_num_threads(1)
                PointPool._open += 1
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="landscape")
        return self

    def __exit__(self, *exc) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            with PointPool._lock:
                PointPool._open -= 1
                if PointPool._open == 0:      # the last pool restores what the first one found
                    torch.set_num_threads(PointPool._saved_threads)

    def map(self, theta, d1, d2, coords: list[tuple[float, float]], should_stop: StopFn | None = None):
        """Yields the raw loss of each (a, b) in order; None from the first stopped point on."""
        def one(ab):
            if should_stop is not None and should_stop():
                return None
            return self.ev.loss(point_params(theta, d1, d2, ab[0], ab[1]))
        if self._executor is None:
            for ab in coords:
                v = one(ab)
                yield v
                if v is None:
                    return
            return
        for v in self._executor.map(one, coords):
            yield v
            if v is None:
                return


def _train_cfg(result) -> TrainConfig:
    return result.config.train


def compute_surface(result, data: ADDataset, cfg: LandscapeConfig, *,
                    on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                    with_sharpness: bool = False) -> Surface:
    """The loss surface of a trained run around its weights, computed coarse-to-fine.

    `on_progress` receives a copy of the partial Surface after every refinement level (the first
    call carries the coarse grid) and at most every PROGRESS_EVERY_S seconds in between;
    `should_stop` is polled before every point and ends the computation with complete=False.
    """
    validate_landscape(cfg)
    model = result.model("cpu")
    x = evaluation_images(data, cfg)
    ev = make_evaluator(model, x, cfg.metric, _train_cfg(result), cfg.bn_mode, cfg.method)
    theta = {k: v.detach() for k, v in model.named_parameters()}
    d1, d2 = directions(model, cfg.seed, include_bn_bias=cfg.include_bn_bias)
    raw_center = ev.loss(theta)
    scale = raw_center if cfg.metric.endswith("_rel") else 1.0
    if cfg.metric.endswith("_rel") and not raw_center > 0:
        raise ConfigError(f"the loss at the trained weights is {raw_center}: a relative metric needs "
                          "a positive centre; use own or l2")
    gx, gy = grid_coordinates(cfg)
    surf = Surface(x=gx, y=gy, values=np.full((len(gy), len(gx)), np.nan), metric=cfg.metric,
                   seed=cfg.seed, bn_mode=cfg.bn_mode, center=raw_center / scale, complete=False,
                   kind="line" if cfg.ny == 1 else "plane", scale=scale)
    last = time.perf_counter()
    workers = resolve_workers(cfg, ev)
    with PointPool(ev, workers) as pool:
        for n_level, level in enumerate(refinement_order(len(gx), len(gy))):
            coords = [(float(gx[i]), float(gy[j])) for i, j in level]
            for (i, j), value in zip(level, pool.map(theta, d1, d2, coords, should_stop)):
                if value is None:                       # should_stop said so
                    return surf
                surf.values[j, i] = value / scale
                now = time.perf_counter()
                # the first report is always the whole coarse level (a drawable picture)
                if on_progress is not None and n_level > 0 and now - last > PROGRESS_EVERY_S:
                    last = now
                    on_progress(surf.copy())
            last = time.perf_counter()
            if on_progress is not None and not np.isfinite(surf.values).all():
                on_progress(surf.copy())
    surf.complete = True
    if with_sharpness:
        surf.sharpness = compute_sharpness(result, data, cfg)
    if on_progress is not None:
        on_progress(surf.copy())
    return surf


def interpolate(result_a, result_b, data: ADDataset, cfg: LandscapeConfig, points: int = 41, *,
                t_min: float = -0.5, t_max: float = 1.5) -> Surface:
    """1-D linear interpolation (1-t)*theta_a + t*theta_b, t in [t_min, t_max] (Goodfellow et al.).

    Parameters and BatchNorm running statistics are interpolated together, so t=0 and t=1 are
    exactly the two trained networks. The metric "own" is model a's training loss (prefer l2 when
    a and b were trained with different losses); *_rel divides by the value at t=0.
    """
    validate_landscape(cfg)
    if points < 2:
        raise ConfigError(f"interpolation needs at least 2 points, not {points}")
    ma, mb = result_a.model("cpu"), result_b.model("cpu")
    if [(k, v.shape) for k, v in ma.state_dict().items()] != [(k, v.shape) for k, v in mb.state_dict().items()]:
        raise ConfigError("the two runs have different architectures: interpolation needs the same model")
    x = evaluation_images(data, cfg)
    sa, sb = ma.state_dict(), mb.state_dict()
    net = batch_stat_model(ma) if cfg.bn_mode == "batch" else copy.deepcopy(ma).eval()
    own = net.state_dict()
    ts = np.linspace(t_min, t_max, points)

    def loss_at(t: float) -> float:
        mixed = {}
        for k in own:
            if sa[k].is_floating_point():
                mixed[k] = (1.0 - t) * sa[k] + t * sb[k]
            else:
                mixed[k] = sa[k]
        net.load_state_dict(mixed)
        with torch.inference_mode():
            return _raw_loss(x, net(x), cfg.metric, _train_cfg(result_a))

    raw0 = loss_at(0.0)
    scale = raw0 if cfg.metric.endswith("_rel") else 1.0
    vals = np.array([[loss_at(float(t)) / scale for t in ts]])
    return Surface(x=ts, y=np.zeros(1), values=vals, metric=cfg.metric, seed=cfg.seed, bn_mode=cfg.bn_mode,
                   center=raw0 / scale, complete=True, kind="interpolation", scale=scale)


# ----------------------------------------------------------------------------- sharpness

def _loss_closure(model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig, bn_mode: str):
    net = batch_stat_model(model) if bn_mode == "batch" else copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    buffers = dict(net.named_buffers())
    x64 = x.double()

    def f(params: dict[str, torch.Tensor]) -> torch.Tensor:
        y_hat = torch.func.functional_call(net, {**params, **buffers}, (x,))
        if metric.startswith("own"):
            return training_loss(x64, y_hat.double(), train_cfg)
        return reduce_base(l2_map(x64, y_hat.double()))
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


def direction_names(model: nn.Module, include_bn_bias: bool) -> list[str]:
    """Parameters the directions move: weights (dim > 1), plus 1-D ones when included."""
    return [k for k, v in model.named_parameters() if v.dim() > 1 or include_bn_bias]


def radius_increase(model: nn.Module, x: torch.Tensor, cfg: LandscapeConfig, train_cfg: TrainConfig
                    ) -> float:
    """Mean of (L(theta + r*d) - L(theta)) / L(theta) over random directions d, at r and -r.

    Directions are filter-normalised like the surface's, drawn from seed + 1 so they are not d1/d2.
    """
    if cfg.radius_directions == 0:
        return float("nan")
    metric = "own" if cfg.metric.startswith("own") else "l2"
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
    train_cfg = _train_cfg(result)
    names = direction_names(model, cfg.include_bn_bias)
    metric = "own" if cfg.metric.startswith("own") else "l2"
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


# ----------------------------------------------------------------------------- with the run store

def _empty_surface(cfg: LandscapeConfig) -> Surface:
    gx, gy = grid_coordinates(cfg)
    return Surface(x=gx, y=gy, values=np.full((len(gy), len(gx)), np.nan), metric=cfg.metric,
                   seed=cfg.seed, bn_mode=cfg.bn_mode, center=float("nan"), complete=False,
                   kind="line" if cfg.ny == 1 else "plane")


def cached_surface(run_cfg: RunConfig, lcfg: LandscapeConfig, store) -> Surface | None:
    """The finished surface of this run and landscape config from the store, if there is one."""
    arrays = store.load_arrays(run_cfg, landscape_key(lcfg))
    if arrays is None:
        return None
    try:
        return Surface.from_arrays(arrays)
    except (KeyError, ValueError):
        return None


def surface_for_run(run_cfg: RunConfig, lcfg: LandscapeConfig, store, *, on_progress: ProgressFn | None = None,
                    should_stop: StopFn | None = None, with_sharpness: bool = True) -> Surface:
    """The surface (with sharpness numbers) of a run: from the store, or trained and computed.

    The run is trained through runner.run_config when the store lacks it; a finished surface is
    saved with the run (store.save_arrays), so asking again costs nothing. A stop request returns
    the partial surface (complete=False), which is not stored.
    """
    from . import data as data_mod
    from .runner import run_config

    validate_landscape(lcfg)
    if store is not None:
        hit = cached_surface(run_cfg, lcfg, store)
        if hit is not None:
            if on_progress is not None:
                on_progress(hit.copy())
            return hit
    record = run_config(run_cfg, store=store, should_stop=should_stop)
    if record.result.stopped:
        return _empty_surface(lcfg)
    dataset = data_mod.load(run_cfg.data)
    surf = compute_surface(record.result, dataset, lcfg, on_progress=on_progress, should_stop=should_stop)
    if not surf.complete:
        return surf
    if with_sharpness:
        if should_stop is not None and should_stop():
            return surf
        surf.sharpness = compute_sharpness(record.result, dataset, lcfg)
        if on_progress is not None:
            on_progress(surf.copy())
    if store is not None:
        store.save_arrays(run_cfg, landscape_key(lcfg), surf.to_arrays())
    return surf
