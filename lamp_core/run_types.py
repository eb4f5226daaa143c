"""What one training run is made of, below both the loop that trains it (`lamp_core.stack`) and
its one-run entry point (`lamp_core.train`): the device, the optimizer, the seeded initial
weights, the callbacks' types, the `TrainResult` a run ends as, and how many optimizer steps a
run takes (`steps_per_epoch`, `planned_steps`: the loop, the job queue's waiting times and the
Ray planner all count them here).

Here, not in `train`, because `stack` builds on these and `train` calls `stack`: with them below
both, neither module imports the other's caller. `lamp_core.train` re-exports every name, so
`from lamp_core.train import TrainResult` keeps working.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from . import data as data_mod
from .config import ConfigError, RunConfig
from .models import build_model

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]
PROGRESS_INTERVAL_S = 0.25


# Training images assumed for a run whose data set is neither loaded (so its size is unknown
# without decoding it) nor capped: the app's default cap (lamp_core.lesson.DEFAULT_CONFIG's
# max_train, checked by tests/test_one_home.py), so a waiting run of unknown size is estimated as
# a run of the default's size. It only ranks and estimates (queue ETAs, the order of Ray tasks);
# no run trains on it.
UNKNOWN_TRAIN_IMAGES = 500


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps per epoch as `lamp_core.stack.RunSlot` takes them: the batch is capped at
    the training set, and the last batch of an epoch may be smaller; no images, no steps."""
    if n_train <= 0:
        return 0
    return -(-n_train // min(batch_size, n_train))


def expected_train_images(cfg: RunConfig) -> int:
    """Training images of `cfg`'s data set without loading it: the set's own size where the data
    module holds it (`data.peek`, which never loads, so this is safe under a lock), else the cap
    `max_train` (an upper bound: a smaller set has fewer), else UNKNOWN_TRAIN_IMAGES."""
    ds = data_mod.peek(cfg.data)
    return len(ds.train) if ds is not None else (cfg.data.max_train or UNKNOWN_TRAIN_IMAGES)


def planned_steps(cfg: RunConfig, n_train: int | None = None) -> int:
    """Optimizer steps a run of `cfg` takes on `n_train` training images (None:
    `expected_train_images`)."""
    if n_train is None:
        n_train = expected_train_images(cfg)
    return steps_per_epoch(n_train, cfg.train.batch_size) * cfg.train.epochs


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available: use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device mps was asked for but is not available: use --device auto or cpu")
    return torch.device(name)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """torch.optim's optimizers; Adam and SGD with their fused kernels (one call for all
    parameters instead of a Python loop over them: most of a small-batch step's time on the CPU),
    RMSprop with its foreach kernels."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, fused=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    raise ConfigError(f"unknown optimizer {name!r}: choose adam, sgd or rmsprop")


def initial_model(cfg: RunConfig, in_channels: int, image_size: int) -> nn.Module:
    """The seeded initial weights: identical for every run that shares model config and seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return build_model(cfg.model, in_channels, image_size)


@dataclass
class TrainResult:
    config: RunConfig
    state_dict: dict[str, torch.Tensor]       # CPU tensors
    in_channels: int
    image_size: int
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch: loss[, test_auroc]
    stopped: bool = False                     # True when should_stop ended the run early
    epochs_done: int = 0
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    diverged: bool = False                    # True when the loss became NaN/inf and training halted

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The trained autoencoder in eval mode (BatchNorm uses running statistics)."""
        net = build_model(self.config.model, self.in_channels, self.image_size)
        net.load_state_dict(self.state_dict)
        return net.to(device).eval()

    def to_checkpoint(self) -> dict[str, Any]:
        """A plain dict of tensors and builtins, loadable with torch.load(weights_only=True)."""
        return {
            "config": self.config.to_dict(), "state_dict": self.state_dict,
            "in_channels": self.in_channels, "image_size": self.image_size,
            "history": self.history, "stopped": self.stopped, "epochs_done": self.epochs_done,
            "steps": self.steps, "seconds": self.seconds, "device": self.device,
            "diverged": self.diverged,
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> "TrainResult":
        ckpt = dict(ckpt)
        ckpt["config"] = RunConfig.from_dict(ckpt["config"])
        return cls(**ckpt)
