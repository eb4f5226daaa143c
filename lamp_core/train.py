"""Training: one plain loop (pytorch/examples style) over normal images only.

`train(cfg, data)` builds the autoencoder from `cfg.train.seed` and shuffles with a generator
seeded the same way, so a base run and a LAMP run of one seed start from the same weights and
see the same batches in the same order: they differ only by the loss (paper §3.2 compares them
"using the same encoder/decoder"). Small data sets stay one tensor on the device; batches are
index gathers, with no DataLoader in between. The loop itself lives in `lamp_core.stack`: a run
trained alone is a stack of one, so alone and stacked runs cannot drift apart. What a run is made
of (device, optimizer, initial weights, `TrainResult`) lives in `lamp_core.run_types`, below
both, and is re-exported here.
"""
from __future__ import annotations

from . import stack
from .config import RunConfig
from .data import ADDataset
# re-exported: callers, tests and bench scripts import these from lamp_core.train
from .run_types import (PROGRESS_INTERVAL_S, ProgressFn, StopFn, TrainResult, initial_model,  # noqa: F401
                        make_optimizer, resolve_device)


def train(cfg: RunConfig, data: ADDataset, *, on_progress: ProgressFn | None = None,
          should_stop: StopFn | None = None) -> TrainResult:
    """Train an autoencoder on `data.train` (normal images only) with `cfg`.

    A one-run stack (`lamp_core.stack`): the plain module in channels-last memory with a fused
    optimizer step, so a run trained alone and a run trained in a stack share one loop.
    """
    # through the module, so a test that wraps stack.RunSlot or stack.train_slots sees solo runs too
    slot = stack.RunSlot(cfg, data, cfg.train.device)
    stack.train_slots([slot], on_progress=None if on_progress is None else (lambda _s, info: on_progress(info)),
                      should_stop=None if should_stop is None else (lambda _s: should_stop()))
    slot.model.eval()
    return slot.result()
