"""Training: one plain loop (pytorch/examples style) over normal images only.

`train(cfg, data)` builds the autoencoder from `cfg.train.seed` and shuffles with a generator
seeded the same way, so a base run and a LAMP run of one seed start from the same weights and
see the same batches in the same order: they differ only by the loss (paper §3.2 compares them
"using the same encoder/decoder"). Small data sets stay one tensor on the device; batches are
index gathers, with no DataLoader in between.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .config import ConfigError, RunConfig, validate
from .data import ADDataset
from .losses import training_loss
from .models import build_model

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]
PROGRESS_INTERVAL_S = 0.25


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
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ConfigError(f"unknown optimizer {name!r}: choose adam, sgd or rmsprop")


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


def initial_model(cfg: RunConfig, in_channels: int, image_size: int) -> nn.Module:
    """The seeded initial weights: identical for every run that shares model config and seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return build_model(cfg.model, in_channels, image_size)


def train(cfg: RunConfig, data: ADDataset, *, on_progress: ProgressFn | None = None,
          should_stop: StopFn | None = None) -> TrainResult:
    """Train an autoencoder on `data.train` (normal images only) with `cfg`."""
    validate(cfg)
    t = cfg.train
    if data.image_size % cfg.model.patches:
        raise ConfigError(f"patches={cfg.model.patches} must divide the image size {data.image_size}")
    device = resolve_device(t.device)
    model = initial_model(cfg, data.channels, data.image_size).to(device).train()
    opt = make_optimizer(t.optimizer, model.parameters(), t.lr)
    x_all = data.train.to(device)                     # (N, C, H, W), lives on the device
    n = x_all.shape[0]
    bs = min(t.batch_size, n)
    steps_per_epoch = -(-n // bs)
    gen = torch.Generator().manual_seed(t.seed)       # data order; CPU generator on every device
    history: dict[str, list[float]] = {"loss": []}
    if t.eval_every_epoch:
        history["test_auroc"] = []
    stopped = diverged = False
    steps = 0
    start = last_report = time.perf_counter()

    def report(epoch: int, running: float, in_epoch: int) -> None:
        if on_progress is not None:
            on_progress({"epoch": epoch, "epochs": t.epochs, "step": steps,
                         "steps_total": steps_per_epoch * t.epochs, "loss": running,
                         "step_in_epoch": in_epoch, "history": {k: list(v) for k, v in history.items()},
                         "seconds": time.perf_counter() - start})

    epoch = 0
    for epoch in range(t.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            if should_stop is not None and should_stop():
                stopped = True
                break
            x = x_all[order[i * bs:(i + 1) * bs]]
            loss = training_loss(x, model(x), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            steps += 1
            now = time.perf_counter()
            if on_progress is not None and now - last_report > PROGRESS_INTERVAL_S:
                last_report = now
                report(epoch, float(total) / (i + 1), i + 1)
        if stopped:
            break
        mean_loss = float(total) / steps_per_epoch
        history["loss"].append(mean_loss)
        if not mean_loss == mean_loss or mean_loss in (float("inf"), float("-inf")):
            diverged = True  # NaN/inf: further steps cannot recover; keep what we have and say so
            break
        if t.eval_every_epoch:
            from .evaluate import image_auroc  # local: evaluate imports train's types
            history["test_auroc"].append(image_auroc(model.eval(), data, device=device))
            model.train()
        report(epoch + 1, mean_loss, 0)

    model.eval()
    return TrainResult(
        config=cfg, state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        in_channels=data.channels, image_size=data.image_size, history=history, stopped=stopped,
        epochs_done=len(history["loss"]), steps=steps, seconds=time.perf_counter() - start,
        device=str(device), diverged=diverged)
