"""Grids of runs (the paper's Tables 1 and 2, with seeds), run locally or on a Ray cluster.

A sweep is a *spec*: a base `RunConfig` plus one or more grids of axes. Each axis is a field
path (``"train.batch_size"``) with a list of values, or a section name (``"data"``) whose values
are partial dicts applied together (e.g. a category with its own data root). `expand()` takes the
Cartesian product of each grid, unions the grids, and returns distinct, validated configs.

A data seed tied to the run seed (opt-in): ``"data.seed": "run"`` in a spec's base (or as a grid
axis's value) gives each run the data seed of its training seed, so every seed draws its own
training subset (``max_train``), test cap (``max_test``) and validation split, and intervals over
seeds cover the data drawn as well as the weights; a LAMP run and its base (same seed) still share
theirs. Without it the data seed is the spec's number (0 by default) and run keys are unchanged.

Every run is evaluated and filed in the `RunStore` by `runner.finish_run` (through
`runner.run_config` when trained alone): the store decides what is done, so a sweep that is
killed and started again redoes nothing that finished. Base and LAMP runs of one
seed share initial weights and batch order (`runner.compare_configs`), which is what makes the
paired comparison in `report.py` meaningful (paper §3.3-3.4 compare L_base with L_base^LAMP).

Executors:

* ``local``: in this process, one stack at a time (one device). With ``stack=True`` (the
  default) the runs not yet in the store are grouped by `stack.plan_stacks` (same network, image
  and batch shape; only where stacking pays; within a memory budget) and each group trains as
  one stack (`lamp_core.stack`); every run is evaluated and stored as soon as its stack ends.
  ``stack=False`` trains one run at a time. Results are the same up to float rounding.
* ``ray``: one ``@ray.remote`` task per stack (one per run with ``stack=False``), with a
  resource request (``num_cpus``, and ``num_gpus`` when the runs want a GPU); results stream
  back with ``ray.wait`` and the driver writes each run to the store (atomic writes), so workers
  need no access to the store's folder. Relative data paths are resolved against the driver's working folder,
  which must exist on the workers too (a shared file system, or the same layout on every node).

One module, although a long one, because spec expansion, the two executors and the list parsers
are one command's parts and are tested together (tests/test_sweep.py).

Same seeds give the same numbers on both executors when both use the same number of torch
threads (``threads``, default 1: floating-point reductions depend on the thread count).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import sys
import time
try:
    import tomllib
except ImportError:  # Python 3.10: TOML specs need Python 3.11+; JSON specs work everywhere
    tomllib = None  # type: ignore[assignment]
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .config import (RUN_SECTIONS, ConfigError, DataConfig, LampError, ModelConfig, RunConfig,  # noqa: F401
                     TrainConfig, canonical, option_specs, validate)
from .evaluate import Evaluation
from .store import RunStore
from .run_types import TrainResult

# the value of data.seed that ties a run's data seed to its training seed (see the module docstring)
DATA_SEED_FROM_RUN = "run"


def tie_data_seed(cfg: RunConfig) -> RunConfig:
    """`cfg` with its data seed set to its training seed: its own draw of the training subset,
    test cap and validation split per seed (what ``"data.seed": "run"`` does in a spec)."""
    return cfg.with_data(seed=cfg.train.seed)


# ----------------------------------------------------------------------------- spec and expansion

@dataclass
class SweepSpec:
    name: str = "sweep"
    base: RunConfig = field(default_factory=RunConfig)
    grids: list[dict[str, list[Any]]] = field(default_factory=lambda: [{}])
    report: dict[str, Any] = field(default_factory=dict)   # layout hints for report.py

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
        unknown = set(d) - {"name", "base", "grid", "report", "description", "protocol"}
        if unknown:
            raise ConfigError(f"unknown sweep spec key(s): {', '.join(sorted(unknown))}; "
                              "use name, base, grid, report")
        grid = d.get("grid", {})
        grids = grid if isinstance(grid, list) else [grid]
        for g in grids:
            if not isinstance(g, dict):
                raise ConfigError("sweep spec 'grid' must be a table of axes (or a list of tables)")
            for axis, values in g.items():
                _check_axis(axis)
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"sweep axis {axis!r} must be a non-empty list of values")
        return cls(name=str(d.get("name", "sweep")), base=RunConfig.from_dict(d.get("base", {})),
                   grids=[dict(g) for g in grids] or [{}], report=dict(d.get("report", {})))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SweepSpec":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"sweep spec {p} not found: give the path of a .json or .toml file")
        if p.suffix.lower() == ".toml" and tomllib is None:
            raise ConfigError(f"sweep spec {p}: TOML needs Python 3.11+; write it as JSON")
        try:
            if p.suffix.lower() == ".toml":
                d = tomllib.loads(p.read_text())
            else:
                d = json.loads(p.read_text())
        except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            raise ConfigError(f"sweep spec {p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: "
                              f"{exc}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"sweep spec {p} must hold one object with name, base, grid")
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base.to_dict(), "grid": self.grids, "report": self.report}


def _check_axis(axis: str) -> None:
    if axis in RUN_SECTIONS:
        return
    section, _, name = axis.partition(".")
    if section not in RUN_SECTIONS or name not in {f.name for f in fields(RUN_SECTIONS[section])}:
        raise ConfigError(f"unknown sweep axis {axis!r}: use a field path such as train.batch_size, "
                          "data.normal_class, model.kernel_size, or a section name data/model/train")


def apply(cfg: RunConfig, axis: str, value: Any) -> RunConfig:
    """`cfg` with one axis set: a field path takes a value, a section name a dict of fields."""
    _check_axis(axis)
    if axis in RUN_SECTIONS:
        if not isinstance(value, dict):
            raise ConfigError(f"sweep axis {axis!r} takes tables of {axis} fields, not {value!r}")
        changes = value
        section = axis
    else:
        section, _, name = axis.partition(".")
        changes = {name: value}
    known = {f.name for f in fields(RUN_SECTIONS[section])}
    bad = set(changes) - known
    if bad:
        raise ConfigError(f"unknown {section} field(s) in sweep axis {axis!r}: {', '.join(sorted(bad))}")
    return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})


def base_of(cfg: RunConfig) -> RunConfig:
    """The base run a LAMP run is paired with (same data, model, seed, optimizer, batches)."""
    return canonical(cfg.with_train(lamp=False))


def expand(spec: SweepSpec) -> list[RunConfig]:
    """Distinct, validated configs of the spec's grids, in grid order (last axis fastest)."""
    out: dict[str, RunConfig] = {}
    for grid in spec.grids:
        axes = list(grid.items())
        for combo in itertools.product(*(values for _, values in axes)):
            cfg = spec.base
            for (axis, _), value in zip(axes, combo):
                cfg = apply(cfg, axis, value)
            if cfg.data.seed == DATA_SEED_FROM_RUN:
                cfg = tie_data_seed(cfg)
            cfg = canonical(cfg)
            try:
                validate(cfg)
            except ConfigError as exc:
                raise ConfigError(f"sweep run {describe(cfg)}: {exc}") from None
            out.setdefault(cfg.key(), cfg)
    return list(out.values())


DATA_NAMES = {"digits": "digits", "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "mvtec": "MVTec",
              "folder": "folder"}
_UPLOAD = re.compile(r"[0-9a-f]{64}\.zip")     # the app files an upload under its content's sha256


def describe(cfg: RunConfig, *, comparison: bool = False) -> str:
    """A configuration's label: the one the sweep's progress lines, `lamp sweep --list` and the
    app's pages show, e.g. 'MNIST subset, normal 3 · 28 px · L2 LAMP (max over sample, eps 0.1,
    detached) · adam lr 0.001 · batch 128 · 20 epochs · seed 0'. Network options appear where they
    differ from the defaults ('kernel size 5', 'patches 2').

    `comparison=True` labels the runs of a comparison, base and LAMP over seeds (what the app's
    pages train): the base loss without LAMP's reading, and no seed."""
    d, m, t = cfg.data, cfg.model, cfg.train
    if d.dataset in ("digits", "mnist", "fashion-mnist"):
        from .data import MNIST_SUBSET_DIR
        subset = " subset" if d.dataset == "mnist" and d.data_root == str(MNIST_SUBSET_DIR) else ""
        what = f"{DATA_NAMES[d.dataset]}{subset}, normal {d.normal_class}"
    else:
        name = d.category or (d.data_root and Path(d.data_root).name) or ""
        what = "your upload" if _UPLOAD.fullmatch(name) else f"{DATA_NAMES[d.dataset]} {name}".strip()
    loss = t.base_loss.upper()
    if t.lamp and not comparison:
        loss += f" LAMP (max over {t.max_over}, eps {t.eps:g}{', detached' if t.detach_max else ''})"
    parts = [what, f"{d.image_size} px", loss, f"{t.optimizer} lr {t.lr:g}", f"batch {t.batch_size}",
             f"{t.epochs} epochs"]
    if not comparison:
        parts.append(f"seed {t.seed}")
    default = ModelConfig()
    for spec in option_specs("model"):
        name = spec.name.partition(".")[2]
        if getattr(m, name) != getattr(default, name):
            parts.append(f"{spec.label or name} {getattr(m, name)}")
    return " · ".join(parts)


# ----------------------------------------------------------------------------- execution

@dataclass
class SweepRun:
    config: RunConfig
    evaluation: Evaluation | None
    seconds: float                 # training time (from the store for cached runs)
    steps: int
    cached: bool
    diverged: bool = False
    error: str | None = None       # a run that failed (e.g. its evaluation met NaN scores)


@dataclass
class SweepOutcome:
    runs: list[SweepRun]
    trained: int                   # runs trained by this call (not found in the store)
    failed: int
    stopped: bool = False          # should_stop ended the sweep early (the rest stays to do)

    @property
    def ok(self) -> list[SweepRun]:
        return [r for r in self.runs if r.evaluation is not None]


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class SweepProgress:
    """One line per finished run on stderr: done, running, left, and the estimated time left."""

    def __init__(self, total: int, *, stream=None, enabled: bool = True):
        self.total, self.stream, self.enabled = total, stream or sys.stderr, enabled
        self.done = self.cached = self.failed = self.running = 0
        self.start = time.perf_counter()
        self.fresh = 0

    def started(self, n: int = 1) -> None:
        self.running += n

    def finished(self, run: SweepRun, label: str, *, ran: bool = True) -> None:
        """Count a finished run; `ran` is False for runs found in the store before starting."""
        self.done += 1
        if ran:
            self.running = max(self.running - 1, 0)
        if run.cached:
            self.cached += 1
        else:
            self.fresh += 1
        if run.error:
            self.failed += 1
        if not self.enabled:
            return
        left = self.total - self.done
        elapsed = time.perf_counter() - self.start
        # throughput of fresh runs so far (covers parallel executors): seconds per finished run
        eta = f"ETA {_fmt_s(elapsed / self.fresh * left)}" if self.fresh and left else ("ETA -" if left else "")
        tail = ("FAILED " + run.error) if run.error else (
            f"auroc {run.evaluation.auroc:.4f}" + (" (cached)" if run.cached else f" ({run.seconds:.1f}s)"))
        self.stream.write(f"sweep: {self.done}/{self.total} done ({self.cached} cached, {self.failed} failed), "
                          f"{self.running} running, {left} left, {eta} | {label} {tail}\n")
        self.stream.flush()


def _from_store(cfg: RunConfig, store: RunStore) -> SweepRun | None:
    stored = store.get(cfg)
    if stored is None:
        return None
    r = stored.result
    return SweepRun(cfg, stored.evaluation, r.seconds, r.steps, cached=True, diverged=r.diverged)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def run_sweep(configs: Sequence[RunConfig], store: RunStore, *, executor: str = "local",
              address: str | None = None, num_cpus: int | None = None, cpus_per_run: float = 1.0,
              gpus_per_run: float | None = None, threads: int | None = 1,
              progress: SweepProgress | None = None,
              should_stop: Callable[[], bool] | None = None, stack: bool = True,
              memory_budget_mb: float | None = None) -> SweepOutcome:
    """Run every config not yet in `store`, writing each to the store as soon as it finishes.

    `stack`: train compatible runs together (`lamp_core.stack`); `memory_budget_mb` caps a
    stack's estimated training memory (default: `stack.default_memory_budget_mb`)."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}: choose local or ray")
    progress = progress or SweepProgress(len(configs), enabled=False)
    runs: dict[str, SweepRun] = {}
    todo: list[RunConfig] = []
    for cfg in configs:
        hit = _from_store(cfg, store)
        if hit is not None:
            runs[cfg.key()] = hit
            progress.finished(hit, describe(cfg), ran=False)
        else:
            todo.append(cfg)
    if executor == "local":
        stopped = _run_local(todo, store, runs, progress, threads, should_stop, stack, memory_budget_mb)
    else:
        stopped = _run_ray(todo, store, runs, progress, address=address, num_cpus=num_cpus,
                           cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, threads=threads,
                           should_stop=should_stop, stack=stack, memory_budget_mb=memory_budget_mb)
    ordered = [runs[c.key()] for c in configs if c.key() in runs]
    trained = sum(1 for r in ordered if not r.cached and r.error is None)
    failed = sum(1 for r in ordered if r.error is not None)
    return SweepOutcome(ordered, trained=trained, failed=failed, stopped=stopped)


def _run_local(todo, store, runs, progress, threads, should_stop, stack=True, memory_budget_mb=None) -> bool:
    import torch
    before = torch.get_num_threads()
    _set_threads(threads)
    try:
        if stack:
            return _local_stacks(todo, store, runs, progress, should_stop, memory_budget_mb)
        return _local_loop(todo, store, runs, progress, should_stop)
    finally:
        torch.set_num_threads(before)      # leave the calling process (e.g. the app) as it was


def _load_all(cfgs: Sequence[RunConfig]) -> list:
    """Each run's data set, through the data module's one cache: equal data configs get the same
    tensors, decoded once (a set the list already holds is found again whatever its size)."""
    from . import data as data_mod
    return [data_mod.load(c.data) for c in cfgs]


def train_and_finish(cfgs: Sequence[RunConfig], datas: Sequence[Any], store: RunStore | None, *,
                     should_stop: Callable[[], bool] | None = None,
                     memory_budget_mb: float | None = None) -> Iterable[tuple[RunConfig, Any]]:
    """Train `cfgs` in planned stacks and yield (config, RunRecord or exception) per run as each
    stack ends; a run whose stack was stopped yields a record without evaluation."""
    from .runner import finish_run
    from .stack import RunSlot, plan_stacks, train_slots
    for group in plan_stacks(list(zip(cfgs, datas)), memory_budget_mb=memory_budget_mb):
        try:
            slots = [RunSlot(cfgs[i], datas[i], cfgs[i].train.device) for i in group]
            train_slots(slots, should_stop=None if should_stop is None else (lambda _s: should_stop()))
        except LampError:
            raise          # bad data or config: every run would fail the same way
        except Exception as exc:  # noqa: BLE001 - one broken stack must not end a long sweep
            for i in group:
                yield cfgs[i], exc
            continue
        for i, slot in zip(group, slots):
            try:
                yield cfgs[i], finish_run(slot.result(), datas[i], store)
            except LampError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. an evaluation that met NaN scores
                yield cfgs[i], exc


def _local_stacks(todo, store, runs, progress, should_stop, memory_budget_mb) -> bool:
    if not todo:
        return False
    datas = _load_all(todo)
    for cfg, rec in train_and_finish(todo, datas, store, should_stop=should_stop,
                                     memory_budget_mb=memory_budget_mb):
        progress.started()
        if isinstance(rec, Exception):
            run = SweepRun(cfg, None, 0.0, 0, cached=False, error=f"{type(rec).__name__}: {rec}")
        elif rec.evaluation is None:     # stopped mid-run: nothing stored, redo next time
            return True
        else:
            r = rec.result
            run = SweepRun(cfg, rec.evaluation, r.seconds, r.steps, cached=False, diverged=r.diverged)
        runs[cfg.key()] = run
        progress.finished(run, describe(cfg))
    return bool(should_stop is not None and should_stop())


def _local_loop(todo, store, runs, progress, should_stop) -> bool:
    from .runner import run_config
    for cfg in todo:
        if should_stop is not None and should_stop():
            return True
        progress.started()
        try:
            rec = run_config(cfg, store=store, should_stop=should_stop)
        except LampError:
            raise          # bad data or config: every run would fail the same way
        except Exception as exc:  # noqa: BLE001 - one broken run must not end a long sweep
            run = SweepRun(cfg, None, 0.0, 0, cached=False, error=f"{type(exc).__name__}: {exc}")
        else:
            if rec.evaluation is None:      # stopped mid-run: nothing stored, redo next time
                return True
            r = rec.result
            run = SweepRun(cfg, rec.evaluation, r.seconds, r.steps, cached=rec.cached, diverged=r.diverged)
        runs[cfg.key()] = run
        progress.finished(run, describe(cfg))
    return False


# --- Ray: one remote task per stack ----------------------------------------------------------

def _ray_task(cfg_dicts: list[dict[str, Any]], cwd: str, threads: int | None, stack: bool = True,
              memory_budget_mb: float | None = None):
    """Body of the remote task: train and evaluate a stack of configs (one config with
    stack=False), return plain data to the driver: per run (checkpoint, evaluation) or an error."""
    _set_threads(threads)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)   # relative data roots in configs are relative to the driver's folder
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    datas = _load_all(cfgs)
    out = []
    if stack:
        # no store here: the driver files results
        records = train_and_finish(cfgs, datas, None, memory_budget_mb=memory_budget_mb)
    else:
        from .runner import finish_run
        from .train import train
        records = ((c, finish_run(train(c, d), d, None)) for c, d in zip(cfgs, datas))
    for _, rec in records:
        if isinstance(rec, Exception):
            out.append(("error", f"{type(rec).__name__}: {str(rec).splitlines()[-1] if str(rec) else ''}"))
        elif rec.evaluation is None:
            out.append(("error", "RuntimeError: the run stopped before it finished"))
        else:
            out.append((rec.result.to_checkpoint(), rec.evaluation.to_dict()))
    return out


def ray_batches(todo: Sequence[RunConfig], stack: bool, threads: int | None = 1) -> list[list[RunConfig]]:
    """What each Ray task trains: runs that may share a stack (judged from the configs; the task
    plans its stacks again on the loaded data), at most a default stack's size; one run each
    without stacking or where stacking was measured not to pay."""
    from .stack import DEFAULT_MAX_STACK, balanced_split, cpu_stack_cap, stack_signature
    if not stack:
        return [[c] for c in todo]
    groups: dict[tuple, list[RunConfig]] = {}
    for c in todo:
        # the driver loads no data: the signature that predicts the stack key from the config
        groups.setdefault(stack_signature(c, data_size=True), []).append(c)
    batches: list[list[RunConfig]] = []
    for group in groups.values():
        c = group[0]
        # the CPU cap of the thread count the Ray task trains with (--threads; one when unset)
        size = DEFAULT_MAX_STACK if c.train.device == "cuda" else cpu_stack_cap(c, threads=threads or 1)
        # balanced (60 runs at cap 24: 20 + 20 + 20, not 24 + 24 + 12), so no task runs long alone
        batches.extend(balanced_split(group, size))
    # longest first: the tasks that take longest start first, and the short ones fill the other
    # workers' gaps at the end (a stack of small-batch runs takes minutes, a large batch seconds)
    # (a small-batch step costs about as much as a large-batch one on a CPU, so steps rank tasks)
    from .run_types import planned_steps
    return sorted(batches, key=lambda b: -len(b) * planned_steps(b[0]))


def wants_gpu(cfg: RunConfig, cluster_gpus: float) -> bool:
    return cfg.train.device == "cuda" or (cfg.train.device == "auto" and cluster_gpus > 0)


def _run_ray(todo, store, runs, progress, *, address, num_cpus, cpus_per_run, gpus_per_run, threads,
             should_stop, stack=True, memory_budget_mb=None) -> bool:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'lamp-lab[ray]' (or use --executor local)") \
            from None
    from .runner import RunRecord, file_run
    if not todo:
        return False
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                "include_dashboard": False}
        if address:
            init["address"] = address
        elif num_cpus:
            init["num_cpus"] = num_cpus
        try:
            ray.init(**init)
        except ConnectionError as exc:
            raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}; check --address") from None
    try:
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        remote = ray.remote(max_retries=0)(_ray_task)
        cwd = os.getcwd()
        pending: dict[Any, list[RunConfig]] = {}
        for batch in ray_batches(todo, stack, threads):
            cfg = batch[0]
            gpus = gpus_per_run if gpus_per_run is not None else (1.0 if wants_gpu(cfg, cluster_gpus) else 0.0)
            if gpus and cluster_gpus <= 0:
                raise ConfigError(f"run {describe(cfg)} wants a GPU but the Ray cluster has none: "
                                  "use device cpu or auto, or --gpus-per-run 0")
            ref = remote.options(num_cpus=cpus_per_run, num_gpus=gpus).remote(
                [c.to_dict() for c in batch], cwd, threads, stack, memory_budget_mb)
            pending[ref] = batch
        # runs that can execute at once: the cluster's CPUs over each task's CPU request
        slots = max(1, int(float(ray.cluster_resources().get("CPU", 1)) // max(cpus_per_run, 1e-9)))
        progress.running = min(len(pending), slots)
        while pending:
            if should_stop is not None and should_stop():
                for ref in pending:
                    ray.cancel(ref, force=True)
                return True
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                batch = pending.pop(ref)
                try:
                    outputs = ray.get(ref)
                except ray.exceptions.RayError as exc:   # a failed task, or a lost worker/node
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    if isinstance(cause, LampError):
                        for r in pending:
                            ray.cancel(r, force=True)
                        raise LampError(str(cause)) from None
                    error = f"{type(cause).__name__}: {str(cause).splitlines()[-1] if str(cause) else ''}"
                    outputs = [("error", error)] * len(batch)
                for cfg, (ckpt, ev) in zip(batch, outputs):
                    if ckpt == "error":
                        run = SweepRun(cfg, None, 0.0, 0, cached=False, error=ev)
                    else:
                        result, evaluation = TrainResult.from_checkpoint(ckpt), Evaluation.from_dict(ev)
                        file_run(RunRecord(result, evaluation, cached=False), store)   # as soon as its stack ends
                        run = SweepRun(cfg, evaluation, result.seconds, result.steps, cached=False,
                                       diverged=result.diverged)
                    runs[cfg.key()] = run
                    progress.finished(run, describe(cfg), ran=False)
                progress.running = min(len(pending), slots)
        return False
    finally:
        if started_here:
            ray.shutdown()


# ----------------------------------------------------------------------------- helpers

def parse_int_list(text: str) -> list[int]:
    """'0-9' -> 0..9; '1024,128,32' -> [1024, 128, 32]; '0-2,5' -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, part)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"cannot read {text!r} as integers: write e.g. 0-9 or 1024,128,32") from None
    if not out:
        raise ConfigError(f"{text!r} holds no integers: write e.g. 0-9 or 1024,128,32")
    return out


def parse_float_list(text: str) -> list[float]:
    try:
        out = [float(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as numbers: write e.g. 1e-3,1e-2") from None
    if not out or any(not math.isfinite(v) for v in out):
        raise ConfigError(f"{text!r} must be finite numbers separated by commas, e.g. 1e-3,1e-2")
    return out


def parse_str_list(text: str, allowed: Iterable[str] | None = None, what: str = "value") -> list[str]:
    out = [p.strip() for p in str(text).split(",") if p.strip()]
    if allowed is not None:
        allowed = tuple(allowed)
        for v in out:
            if v not in allowed:
                raise ConfigError(f"unknown {what} {v!r}: choose from {', '.join(allowed)}")
    if not out:
        raise ConfigError(f"no {what} given: write a comma-separated list")
    return out
