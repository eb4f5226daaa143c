"""One call from a config to a trained, evaluated run, through the run store.

`lamp train`, sweeps and `surfaces` (so `lamp landscape` and the app's landscape jobs) call it;
a configuration trained by any of them is found by the others in the store instead of being
trained again.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import data as data_mod
from .config import RunConfig
from .data import ADDataset
from .evaluate import Evaluation, evaluate
from .store import RunStore
from .run_types import ProgressFn, StopFn, TrainResult
from .train import train


@dataclass
class RunRecord:
    result: TrainResult
    evaluation: Evaluation | None    # None for a stopped run that was not evaluated
    cached: bool                     # True when it came from the store, not from training


def run_config(cfg: RunConfig, *, store: RunStore | None = None, on_progress: ProgressFn | None = None,
               should_stop: StopFn | None = None) -> RunRecord:
    """Train and evaluate `cfg`, or load it from `store` when it has been done before."""
    if store is not None:
        stored = store.get(cfg)
        if stored is not None:
            return RunRecord(stored.result, stored.evaluation, cached=True)
    dataset = data_mod.load(cfg.data)
    result = train(cfg, dataset, on_progress=on_progress, should_stop=should_stop)
    return finish_run(result, dataset, store)


def finish_run(result: TrainResult, dataset: ADDataset, store: RunStore | None = None) -> RunRecord:
    """Evaluate a trained run and file it in `store`: every run that trains ends here, alone
    (`run_config`), in a sweep's stack (`sweep.train_and_finish`) or in a worker of the app's
    job queue (`workers.SliceRunner`, with store=None: the server files it with `file_run`). A stopped run, or one that never took a step, is returned unevaluated and
    not stored (it is redone next time)."""
    if result.stopped or result.steps == 0 and result.config.train.epochs > 0:
        return RunRecord(result, None, cached=False)
    record = RunRecord(result, evaluate(result.model(), dataset), cached=False)
    if store is not None:
        file_run(record, store)
    return record


def file_run(record: RunRecord, store: RunStore) -> None:
    """File an evaluated run in the store: here, for finish_run, and for the processes that
    evaluate elsewhere and leave the filing to the one that owns the store (the app's workers,
    the sweep's Ray tasks). A stopped, unevaluated run is never filed."""
    if record.evaluation is not None and not record.result.stopped:
        store.put(record.result, record.evaluation)


def compare_configs(cfg: RunConfig) -> tuple[RunConfig, RunConfig]:
    """The base and the LAMP version of one config: same data, model, seed, optimizer, batches."""
    return cfg.with_train(lamp=False), cfg.with_train(lamp=True)
