"""Surfaces of a trained run: the grid of losses around its weights, computed coarse-to-fine,
and the 1-D interpolation between two runs (paper Fig. 1 and 3; Li et al. 2018; Goodfellow et al.).

Points are computed coarse-to-fine, so a first picture is ready after ~8% of the work, and
`on_progress` receives copies of the partial surface. Grid points are independent: with the
fast evaluator they may run on several threads at once (`PointPool`), which on small
convolutions beats splitting each operation over torch's intra-op threads.

Threads. Nothing here calls `torch.set_num_threads`: torch's count belongs to whoever owns the
process. The pool's own threads run single-threaded through `lamp_core.threads.single_threaded_worker`
(OpenMP's and MKL's counts of that thread only; that module says what torch does with thread
counts), while the caller's threads, and threads started later, keep torch's setting. On a build
where those libraries are not found, the pool's threads keep torch's count and the default number
of parallel points is the usable cores divided by it: never more threads than cores, only slower.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, LandscapeConfig, TrainConfig
from ..data import ADDataset
from ..threads import per_thread_setters, single_threaded_worker, usable_cores
from .directions import directions, point_params
from .fast import FastEvaluator, UnsupportedModel
from .loss import LoopEvaluator, evaluation_images, evaluation_model, raw_loss
from .surface import Surface, grid_coordinates, refinement_order, validate_landscape

PROGRESS_EVERY_S = 1.0            # partial surfaces are reported at least this often (besides levels)

ProgressFn = Callable[[Surface], None]
StopFn = Callable[[], bool]

log = logging.getLogger(__name__)


def make_evaluator(model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig,
                   bn_mode: str, method: str = "fast"):
    """The fast evaluator where the model's layout allows it, else the per-point loop (logged).

    A fast evaluator that disagrees with the module raises `FastEvaluatorMismatch`: a wrong
    landscape is worse than a slow one, so that is never replaced by the loop silently.
    """
    if method == "fast":
        try:
            return FastEvaluator(model, x, metric, train_cfg, bn_mode)
        except UnsupportedModel as exc:
            log.warning("landscape: the fast evaluator does not cover this model (%s); "
                        "using the per-point loop", exc)
    return LoopEvaluator(model, x, metric, train_cfg, bn_mode)


def resolve_workers(cfg: LandscapeConfig, ev) -> int:
    """Grid points evaluated at once: `cfg.workers`, or (0) one per usable core when workers can
    run single-threaded (see the module docstring), else usable cores / torch's thread count.

    Only the fast evaluator runs points in parallel: the loop loads each point into one shared
    module, so its points must run one after another.
    """
    if not isinstance(ev, FastEvaluator):
        return 1
    if cfg.workers:
        return cfg.workers
    if per_thread_setters():
        return usable_cores()
    return max(1, usable_cores() // max(torch.get_num_threads(), 1))


class PointPool:
    """Evaluates grid points on `workers` threads (1 = in the calling thread, one after another).

    Grid points are independent, so they parallelise without any synchronisation inside a forward
    pass; intra-op threading of these small convolutions scales poorly and, on a machine shared
    with other processes, every operation waits at a barrier for a descheduled thread. So each
    worker runs its operations single-threaded (`single_threaded_worker`, this pool's threads
    only). Each point runs the same code on its own tensors: results equal sequential evaluation.
    """

    def __init__(self, ev, workers: int):
        self.ev, self.workers = ev, workers
        self._executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> "PointPool":
        if self.workers > 1:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="landscape",
                                                initializer=single_threaded_worker)
        return self

    def __exit__(self, *exc) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

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


def compute_surface(result, data: ADDataset, cfg: LandscapeConfig, *,
                    on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Surface:
    """The loss surface of a trained run around its weights, computed coarse-to-fine.

    `on_progress` receives a copy of the partial Surface after every refinement level (the first
    call carries the coarse grid) and at most every PROGRESS_EVERY_S seconds in between;
    `should_stop` is polled before every point and ends the computation with complete=False.
    Sharpness numbers are a separate computation (`sharpness.compute_sharpness`).
    """
    validate_landscape(cfg)
    model = result.model("cpu")
    x = evaluation_images(data, cfg)
    ev = make_evaluator(model, x, cfg.metric, result.config.train, cfg.bn_mode, cfg.method)
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
    net = evaluation_model(ma, cfg.bn_mode)
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
            return raw_loss(x, net(x), cfg.metric, result_a.config.train)

    raw0 = loss_at(0.0)
    scale = raw0 if cfg.metric.endswith("_rel") else 1.0
    vals = np.array([[loss_at(float(t)) / scale for t in ts]])
    return Surface(x=ts, y=np.zeros(1), values=vals, metric=cfg.metric, seed=cfg.seed, bn_mode=cfg.bn_mode,
                   center=raw0 / scale, complete=True, kind="interpolation", scale=scale)
