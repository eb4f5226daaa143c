"""`lamp lesson measure`: train every exercise of the lesson over its seeds with the engine and
record what a student will see, in assets/expected_results.json (format in `lamp_core.lesson`).

The guide's and the teacher notes' numbers are rendered from that file (`lamp_core.lesson_notes`),
so no number in them is typed. Runs go through the same engine the app's job queue uses
(`sweep.run_sweep`: stacked where stacking pays, evaluated and stored by `runner.finish_run`);
landscapes through `surfaces.surface_for_run` with the app's landscape settings, so the sharpness
numbers are the ones the Loss landscape page shows for the same models.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import lesson
from .config import RunConfig, run_key
from .convergence import summarize, training_status
from .files import atomic_write
from .store import RunStore

Log = Callable[[str], None]


def _pair_configs(cfg: RunConfig, seeds) -> dict[str, list[RunConfig]]:
    return {"base": [cfg.with_train(lamp=False, seed=s) for s in seeds],
            "lamp": [cfg.with_train(lamp=True, seed=s) for s in seeds]}


def _train(cfgs: list[RunConfig], store: RunStore, threads: int) -> float:
    """Train what the store lacks (stacked where it pays, as the app's queue does); wall seconds."""
    from .sweep import run_sweep
    t0 = time.perf_counter()
    out = run_sweep(cfgs, store, threads=threads)
    if out.failed:
        bad = next(r for r in out.runs if r.error)
        raise RuntimeError(f"a lesson run failed: {bad.error}")
    return time.perf_counter() - t0


def _misses_at(ev, pct: float = 95.0) -> dict[str, Any]:
    """Anomalies missed at the pct-th percentile of the model's own normal test scores, overall
    and per test group (digit), as the Train & compare page's threshold slider starts."""
    s, y = np.asarray(ev.scores), np.asarray(ev.labels)
    thr = float(np.percentile(s[y == 0], pct))
    missed = (s < thr) & (y == 1)
    groups = np.asarray(ev.groups) if ev.groups else None
    per = {}
    if groups is not None and len(groups) == len(s):
        for g in sorted(set(groups[y == 1].tolist())):
            sel = (groups == g) & (y == 1)
            per[str(g)] = round(float(missed[sel].mean()), 4)
    return {"missed": int(missed.sum()), "anomalies": int((y == 1).sum()), "missed_share_by_group": per,
            "median_score_normal": float(np.median(s[y == 0])), "median_score_anomalous": float(np.median(s[y == 1]))}


def _record(cfgs: dict[str, list[RunConfig]], store: RunStore, n_train: int, *, details: bool = False) -> dict:
    out: dict[str, Any] = {"config": cfgs["base"][0].to_dict(), "seeds": [c.train.seed for c in cfgs["base"]]}
    every_status = []
    for name, cs in cfgs.items():
        recs = [store.get(c) for c in cs]            # read once: a record loads its checkpoint
        out[f"{name}_auroc"] = [round(r.evaluation.auroc, 6) for r in recs]
        out.setdefault("train_seconds", {})[name] = [round(r.result.seconds, 3) for r in recs]
        statuses = [training_status(r.result.history, n_train) for r in recs]
        every_status += statuses
        out.setdefault("status", {})[name] = [s.state for s in statuses]
        out.setdefault("learning_rate_per_1000", {})[name] = [None if s.rate is None else round(s.rate, 4)
                                                              for s in statuses]
        out.setdefault("final_loss", {})[name] = [round(r.result.history["loss"][-1], 4) for r in recs]
        if details:
            out.setdefault("misses_95", {})[name] = [_misses_at(r.evaluation) for r in recs]
        out["steps"], out["epochs"] = recs[0].result.steps, cs[0].train.epochs
        out["run_keys"] = out.get("run_keys", []) + [run_key(c) for c in cs]
    out["overall_status"] = summarize(every_status).state
    out["train_images"] = n_train
    return out


def measure_comparison(store: RunStore, threads: int, log: Log) -> dict:
    ex = lesson.exercise("default_comparison")
    cfgs = _pair_configs(ex.config, ex.seeds)
    secs = _train([c for cs in cfgs.values() for c in cs], store, threads)
    log(f"default comparison: {secs:.1f} s")
    out = _record(cfgs, store, lesson.train_images(ex.config), details=True)
    out["wall_seconds"] = round(secs, 2)
    return out


def measure_batch_size(store: RunStore, threads: int, log: Log) -> dict:
    """Every size at the exercise's seeds, in both step modes, with the first seed's contours
    (what "Train every size" queues); the wall time of each mode is what a student waits when
    the default comparison (batch 32) is already in the store."""
    from .surfaces import surface_for_run
    ex = lesson.exercise("batch_size")
    n = lesson.train_images(ex.config)
    out: dict[str, Any] = {"wall_seconds": {}, "sizes": list(lesson.BATCH_SIZES)}
    for mode in lesson.STEP_MODES:
        t0 = time.perf_counter()
        per: dict[str, Any] = {}
        # train every size first (the queue stacks small batches), then their contours
        all_cfgs = {bs: _pair_configs(lesson.batch_size_config(ex.config, bs, mode, n), ex.seeds)
                    for bs in lesson.BATCH_SIZES}
        _train([c for cfgs in all_cfgs.values() for cs in cfgs.values() for c in cs], store, threads)
        for bs, cfgs in all_cfgs.items():
            for cs in cfgs.values():
                surface_for_run(cs[0], lesson.BATCH_LANDSCAPE, store)
            per[str(bs)] = _record(cfgs, store, n)
        out[mode] = per
        out["wall_seconds"][mode] = round(time.perf_counter() - t0, 1)
        log(f"batch size, {mode}: {out['wall_seconds'][mode]:.0f} s")
    return out


def measure_landscape(store: RunStore, log: Log) -> dict:
    """The Loss landscape page's default: the first seed's base and LAMP models, in the page's
    default metric (l2) and in LAMP's own loss, at the page's grid and sharpness settings."""
    from .surfaces import surface_for_run
    ex = lesson.exercise("landscape")
    cfgs = _pair_configs(ex.config, ex.seeds)
    out: dict[str, Any] = {"config": ex.config.to_dict(), "seed": ex.seeds[0],
                           "landscape": {k: v for k, v in lesson.DEFAULT_LANDSCAPE.__dict__.items()}}
    t0 = time.perf_counter()
    for metric in ("l2", "own"):
        lcfg = replace(lesson.DEFAULT_LANDSCAPE, metric=metric)
        for name, cs in cfgs.items():
            s = surface_for_run(cs[0], lcfg, store)
            out.setdefault(metric, {})[name] = {
                "centre": float(s.center), "highest": float(np.nanmax(s.values)),
                **{k: float(v) for k, v in s.sharpness.items()}}
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    log(f"landscape: {out['wall_seconds']:.0f} s")
    return out


def measure_upload(store: RunStore, threads: int, log: Log) -> dict:
    """The example zip as the Your data page trains it: at the upload size, with the training
    budget its size gets (lesson.budget_epochs), and at the old fixed 5 epochs for contrast."""
    from .config import DataConfig
    zip_path = Path(__file__).resolve().parent.parent / "assets" / "example_upload.zip"
    data = DataConfig(dataset="folder", data_root=str(zip_path), image_size=lesson.UPLOAD_IMAGE_SIZE)
    base = replace(lesson.DEFAULT_CONFIG, data=data)
    n = lesson.train_images(base)
    budget = lesson.budget_epochs(n, base.train.batch_size)
    out: dict[str, Any] = {"train_images": n, "budget_epochs": budget}
    for label, epochs in (("budget", budget), ("five_epochs", 5)):
        cfg = base.with_train(epochs=epochs)
        cfgs = _pair_configs(cfg, lesson.seeds_of(cfg))
        secs = _train([c for cs in cfgs.values() for c in cs], store, threads)
        out[label] = _record(cfgs, store, n, details=True)
        out[label]["wall_seconds"] = round(secs, 2)
        log(f"upload, {label} ({epochs} epochs): {secs:.0f} s")
    # the zip's own path is a checkout's: record it relative to the repository
    for label in ("budget", "five_epochs"):
        out[label]["config"]["data"]["data_root"] = "assets/example_upload.zip"
    return out


def environment(threads: int) -> dict:
    import torch
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "threads": threads, "load_average_at_end": [round(x, 2) for x in load],
            "command": "lamp lesson measure"}


PARTS = ("default_comparison", "landscape", "batch_size", "upload")


def measure(out_path: Path, *, store_dir: str | None = None, threads: int | None = None,
            parts=PARTS, log: Log | None = None) -> dict:
    """Measure the named parts (all by default) and merge them into out_path's JSON."""
    import torch
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    threads = threads or torch.get_num_threads()
    tmp = None
    if store_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="lamp-lesson-")
        store_dir = tmp.name
    store = RunStore(Path(store_dir))
    torch.set_num_threads(threads)
    current = lesson.load_expected(out_path) or {}
    try:
        for part in parts:
            if part == "default_comparison":
                current[part] = measure_comparison(store, threads, log)
            elif part == "landscape":
                current[part] = measure_landscape(store, log)
            elif part == "batch_size":
                current[part] = measure_batch_size(store, threads, log)
            elif part == "upload":
                current[part] = measure_upload(store, threads, log)
            else:
                raise ValueError(f"unknown part {part!r}: choose from {', '.join(PARTS)}")
            current["environment"] = environment(threads)
            # the recorded configs name the shipped subset by its place in the repository
            atomic_write(out_path, (json.dumps(_portable(current), indent=1) + "\n").encode())
    finally:
        if tmp is not None:
            tmp.cleanup()
    return current


def _portable(obj):
    """Absolute paths of the checkout replaced by repository-relative ones."""
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_portable(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(root):
        return obj[len(root):]
    return obj


def config_of(entry: dict) -> RunConfig:
    """A recorded config with its repository-relative data root made absolute again."""
    d = json.loads(json.dumps(entry["config"]))
    root = d["data"].get("data_root")
    if root and not os.path.isabs(root):
        d["data"]["data_root"] = str(Path(__file__).resolve().parent.parent / root)
    return RunConfig.from_dict(d)
