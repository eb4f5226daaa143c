"""Loss surfaces of runs named by their config: from the run store, or trained first, then cut.

The orchestration half of the landscape feature (the science is in `lamp_core.landscape`): a
run is trained through `runner.run_config` when the store lacks it, its surface is computed
(`landscape.compute_surface`) with its sharpness numbers (`landscape.compute_sharpness`) and
saved with the run, so asking again costs nothing. The `lamp landscape` command and the app's
job queue both call `surface_for_run`; this is the one place that says how.
"""
from __future__ import annotations

from . import data as data_mod
from .config import LandscapeConfig, RunConfig
from .landscape import (ProgressFn, StopFn, Surface, compute_sharpness, compute_surface, empty_surface,
                        landscape_key, validate_landscape)
from .runner import run_config
from .store import RunStore


def cached_surface(run_cfg: RunConfig, lcfg: LandscapeConfig, store: RunStore) -> Surface | None:
    """The finished surface of this run and landscape config from the store, if there is one."""
    arrays = store.load_arrays(run_cfg, landscape_key(lcfg))
    if arrays is None:
        return None
    try:
        return Surface.from_arrays(arrays)
    except (KeyError, ValueError):
        return None


def surface_for_run(run_cfg: RunConfig, lcfg: LandscapeConfig, store: RunStore | None, *,
                    on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Surface:
    """The surface (with sharpness numbers) of a run: from the store, or trained and computed.

    A stop request returns the partial surface (complete=False, or an empty grid when the
    training was stopped), which is not stored.
    """
    validate_landscape(lcfg)
    if store is not None:
        hit = cached_surface(run_cfg, lcfg, store)
        if hit is not None:
            if on_progress is not None:
                on_progress(hit.copy())
            return hit
    record = run_config(run_cfg, store=store, should_stop=should_stop)
    if record.result.stopped:
        return empty_surface(lcfg)
    surf = surface_of_result(record.result, lcfg, on_progress=on_progress, should_stop=should_stop)
    if surf.complete and surf.sharpness and store is not None:
        save_surface(run_cfg, lcfg, surf, store)
    return surf


def surface_of_result(result, lcfg: LandscapeConfig, *, on_progress: ProgressFn | None = None,
                      should_stop: StopFn | None = None) -> Surface:
    """Cut a trained run's surface and, when it completes, its sharpness numbers. Touches no
    store: the app's workers compute, the server files (`save_surface`)."""
    dataset = data_mod.load(result.config.data)
    surf = compute_surface(result, dataset, lcfg, on_progress=on_progress, should_stop=should_stop)
    if not surf.complete or (should_stop is not None and should_stop()):
        return surf
    surf.sharpness = compute_sharpness(result, dataset, lcfg)
    if on_progress is not None:
        on_progress(surf.copy())
    return surf


def save_surface(run_cfg: RunConfig, lcfg: LandscapeConfig, surf: Surface, store: RunStore) -> None:
    """File a complete surface with its run, so asking again costs nothing."""
    store.save_arrays(run_cfg, landscape_key(lcfg), surf.to_arrays())
