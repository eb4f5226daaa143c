"""The loss a landscape point shows, and Li et al.'s way of evaluating it (one forward pass per point).

Metrics, so that base and LAMP can be compared honestly. LAMP's loss (paper eq. 1-2) is on
another scale than L2, so a steeper-looking LAMP surface may only be a bigger number:

    own      the run's training loss (L2, L1, SSIM, or its LAMP amplification), as trained
    l2       plain L2 (sum over C,H,W, mean over images): one yardstick for every model
    own_rel  own / own(theta): the relative increase, 1 at the centre
    l2_rel   l2 / l2(theta)

Every loss is evaluated on the first `n_images` normal training images as one batch (so that
eq. 2's max over the "batch" and BatchNorm's batch statistics mean the same images), with the
loss map reduced in float64 so that two exact evaluators agree to ~1e-7.

BatchNorm. `bn_mode="eval"` (default) uses the running statistics saved with the model, i.e. the
network that is actually used for anomaly scores. `bn_mode="batch"` normalises with the
statistics of the evaluation images themselves (all of them as one batch), as during training;
this is what a landscape computed in train mode (as in Li et al.'s code) shows.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import LandscapeConfig, TrainConfig
from ..data import ADDataset
from ..losses import l2_map, reduce_base, training_loss


def evaluation_images(data: ADDataset, cfg: LandscapeConfig) -> torch.Tensor:
    """The first n_images normal training images (all of them when there are fewer): (N, C, H, W)."""
    return data.train[: cfg.n_images].float().contiguous()


def raw_loss(x: torch.Tensor, y_hat: torch.Tensor, metric: str, train_cfg: TrainConfig) -> float:
    """The metric (without centre normalisation) in float64 over all evaluation images."""
    return float(loss_tensor(x.double(), y_hat.double(), metric, train_cfg))


def loss_tensor(x: torch.Tensor, y_hat: torch.Tensor, metric: str, train_cfg: TrainConfig) -> torch.Tensor:
    """The metric's loss (no centre normalisation) as a 0-d tensor, in the inputs' dtype."""
    if metric.startswith("own"):
        return training_loss(x, y_hat, train_cfg)
    return reduce_base(l2_map(x, y_hat))


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


def evaluation_model(model: nn.Module, bn_mode: str) -> nn.Module:
    """A copy of the model in eval mode whose BatchNorm follows `bn_mode` (eval or batch)."""
    return batch_stat_model(model) if bn_mode == "batch" else copy.deepcopy(model).eval()


class LoopEvaluator:
    """Li et al.'s method: load theta + a*d1 + b*d2 into the network, run one forward pass."""

    def __init__(self, model: nn.Module, x: torch.Tensor, metric: str, train_cfg: TrainConfig,
                 bn_mode: str = "eval"):
        self.model = evaluation_model(model, bn_mode)
        self.params = dict(self.model.named_parameters())
        self.x, self.metric, self.train_cfg = x, metric, train_cfg

    @torch.inference_mode()
    def forward(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        for k, p in self.params.items():
            p.copy_(params[k])
        return self.model(self.x)

    def loss(self, params: dict[str, torch.Tensor]) -> float:
        return raw_loss(self.x, self.forward(params), self.metric, self.train_cfg)


def base_metric(metric: str) -> str:
    """The loss behind a metric, without the centre normalisation: "own" or "l2"."""
    return "own" if metric.startswith("own") else "l2"
