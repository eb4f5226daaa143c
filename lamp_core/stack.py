"""Stacked training: K runs that share an architecture train together in one sequence of ops.

Small autoencoders at small batches leave most of a machine idle (issue: 5-24% of a matmul's
FLOP/s at batch 1-16). Runs that share architecture, image size, batch size and number of
training images (so every step has the same batch shape) are trained as one wide network:

* Each run keeps its own leaf parameters, BatchNorm buffers, optimizer state and seeded
  data-order generator (`RunSlot`), so its numbers are the ones `train()` gives alone, up to
  float rounding. Per step the K runs' conv weights are concatenated along the output-channel
  axis and run as one grouped convolution (groups=K) on the batches concatenated along channels,
  `(N, K*C, H, W)`. BatchNorm over K*C channels is per-run BatchNorm (statistics are per
  channel), the running buffers of the K runs are views of one concatenated tensor while the
  stack lives, and LeakyReLU / Upsample / Sigmoid / patch tiling act per channel.
* Losses (paper eq. 1-2) are evaluated per group of runs that share a loss recipe, on the
  group's channel slice, with `lamp_core.losses`' own functions: the base maps act per channel,
  the per-image max of eq. 2 is a per-(image, run) max, the batch max a per-run max. The sum of
  the K losses is backpropagated once; parameters are disjoint, so each run gets its own gradient.
* Runs sharing an optimizer and learning rate are adjacent rows of every stacked leaf. Where
  they also share their step count (the usual case: they started together), one optimizer
  updates the rows as one flat tensor per leaf, its state the runs' states concatenated; each run
  gets its slice back when the stack is left. Otherwise (runs at different epochs share a stack)
  one optimizer object updates the runs' own parameters with their own state dicts. Either way
  a run can leave the stack at any step and go on alone.

Why this design. Measured on the project's 2-core machine (bench/results/stacked_training*.md;
K=16, ratios of alternating rounds): stacked / one-by-one images/s = 2.41x / 2.08x / 1.19x at
batch 1 / 4 / 16 on one torch thread, 3.44-3.73x / 2.69-2.95x / 1.31-1.41x on two; at 128 one
stack of 16 was 0.68-0.72x, so the planner trains such batches one run at a time. Grouped convolutions on
channels-last tensors were the fastest way found to batch K small networks (against per-run
convolutions in a loop, an im2col + batched-matmul formulation, and native instead of oneDNN
convolutions; oneDNN's grouped weight-gradient kernel is now the largest cost). Giving each run's
parameters slices of one stacked leaf (instead of concatenating per-run leaves every step) was
worth ~25% at batch 1, and one optimizer tensor per leaf instead of one per leaf and run another
1.2-1.3x (the per-run update of 16 runs, 208 tensors, many of them channels-last slices the fused
kernel copied, cost a quarter of a batch-1 step). A batched-matmul weight gradient for the
small-output layers, where oneDNN's grouped kernel looked slow in isolation, was within 5% in
whole steps and was dropped. Fused Adam/SGD beat foreach and per-tensor steps (also alone), and
channels-last weights beat contiguous ones, so `train()` is this module's one-run stack.
`torch.func.vmap` over stacked parameters was not pursued: its batching rule for a convolution
with batched weights is this same grouped convolution, and stacked leaves alone would lose
per-run step counts (kept here by falling back to per-run optimizers where they differ). On the CPU `plan_stacks` stacks runs of up to CPU_STACK_MAX_VALUES
input values per step (batch 16 at 28x28), at most as many as keep one stacked step within the
thread count's budget (`cpu_stack_cap`: 24 runs at batch 1, 8 at batch 4 on one thread); on CUDA it
always stacks. Stack size is also capped by a memory budget through `run_memory_mb` (an
over-estimate: 1.9 MB/run at batch 1 against 1.8 measured, 69 MB at 128 against 48).

Numerics: a stacked run differs from the run alone only by float rounding (different
convolution kernels sum in a different order); in float64 they agree to ~1e-12 (tested). In
float32, Adam's first steps map the sign of near-zero gradient entries to +-lr, so a few weights
can differ by 2*lr, exactly as between two solo runs at different thread counts.

PatchAutoencoder stacks too: tiling an (N, K*C, H, W) tensor is per channel.

One module: the slot, the stacked network and the planner share the stack key and the per-step
shapes, and callers need exactly this API from one place. What a run is made of (device,
optimizer, initial weights, `TrainResult`) comes from `lamp_core.run_types`, below this module and
below `lamp_core.train`, which trains a single run as a stack of one.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, RunConfig, resolved_depth, validate
from .data import ADDataset
from .evaluate import anomaly_scores, image_auroc
from .losses import base_map, lamp_map, training_loss
from .models import forward_spec, tile, untile
from .run_types import (PROGRESS_INTERVAL_S, TrainResult, initial_model, make_optimizer, planned_steps,
                        resolve_device, steps_per_epoch)

CHANNELS_LAST = torch.channels_last     # activations
PARAM_FORMAT = torch.channels_last      # weights (oneDNN reads them without a re-layout)
# Stacking pays on the CPU while one run's batch is small. Measured on 2 cores (MNIST, 28x28,
# stacked / one-by-one time per run): batch 32 0.82-0.93x at one and two threads; batch 16
# 0.94-1.05x at one thread, 1.19-1.38x at two; batch 4 and 1 1.5-3.3x. Above this many input
# values per step of one run (batch x channels x pixels) a run trains alone.
CPU_STACK_MAX_VALUES = 16 * 28 * 28
# ... and a CPU stack pays most while all its runs' inputs of one step stay small (the stack's
# activations then stay in the caches): at one thread batch 4 gives 2.18x with 8 runs and 1.54x
# with 16; at two threads 16 runs (2.57x) beat 8 (2.53x) and batch 16 x 16 runs still pays 1.38x.
# Input values per stacked step, at one thread and at more.
CPU_STEP_VALUES_ONE_THREAD = 32 * 28 * 28
CPU_STEP_VALUES = 256 * 28 * 28
DEFAULT_MAX_STACK = 24
DEFAULT_CPU_BUDGET_MB = 2048.0
VAL_POINTS = 50          # validation scores recorded per run (where the data holds validation images)


def _to_cpu(v: Any) -> Any:
    """A deep copy of an optimizer state dict with every tensor on the CPU."""
    if isinstance(v, torch.Tensor):
        return v.detach().to("cpu", copy=True)
    if isinstance(v, dict):
        return {k: _to_cpu(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_to_cpu(x) for x in v)
    return v


def result_from_checkpoint(cfg: RunConfig, ckpt: dict[str, Any], *, stopped: bool | None = None) -> TrainResult:
    """The run as `RunSlot.result()` would give it at the checkpoint (no data or model needed)."""
    return TrainResult(
        config=cfg, state_dict=ckpt["model"], in_channels=ckpt["in_channels"], image_size=ckpt["image_size"],
        history={k: list(v) for k, v in ckpt["history"].items()},
        stopped=ckpt["stopped"] if stopped is None else stopped, epochs_done=len(ckpt["history"]["loss"]),
        steps=ckpt["steps"], seconds=ckpt["seconds"], device=ckpt["device"], diverged=ckpt["diverged"])


# ----------------------------------------------------------------------------- one run's state

class RunSlot:
    """One run's complete training state (model parameters, BatchNorm buffers, optimizer,
    data-order generator, epoch/step counters, history), resumable at any step."""

    def __init__(self, cfg: RunConfig, data: ADDataset, device: str | torch.device = "cpu", *,
                 dtype: torch.dtype = torch.float32):
        validate(cfg)
        t = cfg.train
        if dtype != torch.float32 and t.eval_every_epoch:
            raise ConfigError("eval_every_epoch evaluates in float32: train in float32 or turn it off")
        if data.image_size % cfg.model.patches:
            raise ConfigError(f"patches={cfg.model.patches} must divide the image size {data.image_size}")
        self.cfg, self.data = cfg, data
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        # float64 is for tests that check the stacked maths below float32's rounding noise
        self.model = initial_model(cfg, data.channels, data.image_size).to(self.device, dtype).train()
        self.model.to(memory_format=PARAM_FORMAT)
        self.opt = make_optimizer(t.optimizer, self.model.parameters(), t.lr)
        self.x_all = data.train.to(self.device, dtype)       # (n, C, H, W) on the device
        self.n = self.x_all.shape[0]
        self.batch_size = min(t.batch_size, self.n) if self.n else t.batch_size
        self.steps_per_epoch = steps_per_epoch(self.n, t.batch_size)   # the one count (run_types)
        self.steps_total = planned_steps(cfg, self.n)
        self.gen = torch.Generator().manual_seed(t.seed)     # data order; CPU generator everywhere
        self.order: torch.Tensor | None = None               # this epoch's permutation
        self.history: dict[str, list[float]] = {"loss": []}
        if t.eval_every_epoch:
            self.history["test_auroc"] = []
        # held-out normal images, when the data has them: their mean anomaly score at about
        # VAL_POINTS evenly spaced epochs (and the last), so a report can tell a model that has
        # stopped improving on unseen normal images from one still learning (a training loss on
        # 20 images keeps falling long after, by memorising them)
        self.val_every = 0
        if data.val is not None and len(data.val) and t.epochs:
            self.val_every = max(1, t.epochs // VAL_POINTS)
            self.history["val_epoch"], self.history["val_score"] = [], []
        self.epochs_done = self.steps = self.step_in_epoch = 0
        self.epoch_total = torch.zeros((), device=self.device, dtype=dtype)   # running sum of this epoch's losses
        self.stopped = self.diverged = False
        self.seconds = 0.0
        self.last_report = 0.0
        self._bn_pending = 0       # BatchNorm steps taken in a stack, not yet in num_batches_tracked
        self.finished = t.epochs == 0 or self.steps_per_epoch == 0

    # -- the public view
    def stop(self) -> None:
        """Leave the stack now; the partial history is kept and result().stopped is True."""
        if not self.finished:
            self.stopped = True

    def progress(self) -> dict[str, Any]:
        """What train()'s on_progress receives."""
        t = self.cfg.train
        running = float(self.epoch_total) / self.step_in_epoch if self.step_in_epoch else (
            self.history["loss"][-1] if self.history["loss"] else float("nan"))
        return {"epoch": self.epochs_done, "epochs": t.epochs, "step": self.steps,
                "steps_total": self.steps_total, "loss": running, "step_in_epoch": self.step_in_epoch,
                "history": {k: list(v) for k, v in self.history.items()}, "seconds": self.seconds}

    def result(self) -> TrainResult:
        """The run as it stands (final once finished or stopped)."""
        self._flush_bn()
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.model.state_dict().items()}
        return TrainResult(
            config=self.cfg, state_dict=state, in_channels=self.data.channels,
            image_size=self.data.image_size, history={k: list(v) for k, v in self.history.items()},
            stopped=self.stopped, epochs_done=len(self.history["loss"]), steps=self.steps,
            seconds=self.seconds, device=str(self.device), diverged=self.diverged)

    # -- moving a run between processes (the app's worker processes and Ray actors)
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to go on from this step elsewhere, as CPU tensors and builtins: a
        worker sends it after every slice, so a worker that dies costs at most the slice it was
        in, and the run resumes on the next worker with the same weights, optimizer state and
        data order (nothing is trained twice). Call between slices, not inside a stack."""
        self._flush_bn()
        return {
            "model": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
            "opt": _to_cpu(self.opt.state_dict()),
            "gen": self.gen.get_state(),
            "order": None if self.order is None else self.order.to("cpu", copy=True),
            "epoch_total": self.epoch_total.detach().to("cpu", copy=True),
            "history": {k: list(v) for k, v in self.history.items()},
            "epochs_done": self.epochs_done, "steps": self.steps, "step_in_epoch": self.step_in_epoch,
            "steps_per_epoch": self.steps_per_epoch, "steps_total": self.steps_total,
            "stopped": self.stopped, "diverged": self.diverged, "finished": self.finished,
            "seconds": self.seconds, "in_channels": self.data.channels, "image_size": self.data.image_size,
            "device": str(self.device),
        }

    def restore(self, ckpt: dict[str, Any]) -> "RunSlot":
        """Continue from `checkpoint()`'s dict (taken from a slot of the same config and data)."""
        self.model.load_state_dict(ckpt["model"])
        self.model.to(memory_format=PARAM_FORMAT)
        self.opt.load_state_dict(ckpt["opt"])
        self.gen.set_state(ckpt["gen"])
        self.order = None if ckpt["order"] is None else ckpt["order"].to(self.device)
        self.epoch_total = ckpt["epoch_total"].to(self.device, self.epoch_total.dtype)
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        for name in ("epochs_done", "steps", "step_in_epoch", "stopped", "diverged", "finished", "seconds"):
            setattr(self, name, ckpt[name])
        return self

    @property
    def active(self) -> bool:
        return not (self.finished or self.stopped)

    # -- used by the stack
    def _flush_bn(self) -> None:
        if self._bn_pending:
            for m in self.model.modules():
                if isinstance(m, nn.BatchNorm2d) and m.num_batches_tracked is not None:
                    m.num_batches_tracked.add_(self._bn_pending)
            self._bn_pending = 0

    def _next_size(self) -> int:
        """Images in this slot's next batch (the last batch of an epoch may be smaller)."""
        if self.step_in_epoch < self.steps_per_epoch - 1:
            return self.batch_size
        return self.n - self.batch_size * (self.steps_per_epoch - 1)

    def _next_indices(self) -> torch.Tensor:
        """Indices into x_all of this step's images, the same draw as train() makes."""
        if self.step_in_epoch == 0:
            self.order = torch.randperm(self.n, generator=self.gen).to(self.device)
        i, bs = self.step_in_epoch, self.batch_size
        return self.order[i * bs:(i + 1) * bs]

    def _next_batch(self) -> torch.Tensor:
        """This step's images (N, C, H, W)."""
        return self.x_all[self._next_indices()]

    def _after_step(self, loss: torch.Tensor) -> bool:
        """Count a step whose (detached, 0-d) loss is `loss`; True when an epoch ended."""
        self.epoch_total += loss
        self.steps += 1
        self.step_in_epoch += 1
        if self.step_in_epoch < self.steps_per_epoch:
            return False
        mean_loss = float(self.epoch_total) / self.steps_per_epoch
        self.history["loss"].append(mean_loss)
        self.epochs_done += 1
        self.step_in_epoch = 0
        self.epoch_total.zero_()
        if not math.isfinite(mean_loss):
            self.diverged = True   # NaN/inf: further steps cannot recover; keep what we have
            self.finished = True
            return True
        if self.cfg.train.eval_every_epoch:
            self._flush_bn()
            self.history["test_auroc"].append(image_auroc(self.model.eval(), self.data, device=self.device))
            self.model.train()
        if self.val_every and (self.epochs_done % self.val_every == 0 or self.epochs_done >= self.cfg.train.epochs):
            self._flush_bn()
            val = self.data.val.to(self.x_all.dtype)    # float64 in the maths tests
            score = float(anomaly_scores(self.model.eval(), val, device=self.device).mean())
            self.model.train()
            self.history["val_epoch"].append(float(self.epochs_done))
            self.history["val_score"].append(score)
        if self.epochs_done >= self.cfg.train.epochs:
            self.finished = True
        return True


def stack_key(cfg: RunConfig, data: ADDataset) -> tuple:
    """Equal keys <=> the runs may share a stack (same network shape, same batch shape per step).
    The authority on loaded data; `stack_signature` is the shortlist a config alone gives."""
    m = cfg.model
    n = int(data.train.shape[0])
    bs = min(cfg.train.batch_size, n) if n else cfg.train.batch_size
    device = str(resolve_device(cfg.train.device))
    return (resolved_depth(m, data.image_size), m.width, m.kernel_size, m.latent_channels, m.patches,
            int(data.channels), int(data.image_size), bs, n, device)


def stack_signature(cfg: RunConfig, *, data_size: bool = False) -> tuple:
    """What a config alone says about which runs may share a stack, for planners that have not
    loaded the data: the job queue (it picks stack-mates under its lock, where nothing may load)
    and the Ray driver (its tasks load the data). Runs are put together only where their
    signatures are equal: the same network (model config, image size), the batch size asked for
    and the device named. `stack_key` on the loaded data decides after that (it adds the
    training set's size and channels), so equal signatures are a shortlist, not a promise.

    data_size=True adds the data fields that set the training set's size and channels (not the
    normal class: capped classes are equally large), so that equal signatures predict equal
    stack keys for a planner that never sees the data (the Ray driver)."""
    key = (cfg.model, cfg.data.image_size, cfg.train.batch_size, cfg.train.device)
    if not data_size:
        return key
    d = cfg.data
    return key + (d.dataset, d.data_root, d.category, d.channels, d.max_train, d.val_fraction)


# ----------------------------------------------------------------------------- the stacked network

def _loss_recipe(t) -> tuple:
    """Runs with equal recipes compute their losses in one vectorised pass."""
    if not t.lamp:
        return (t.base_loss, False)
    return (t.base_loss, True, t.max_over, t.detach_max, t.eps)


def _optimizer_kind(t) -> tuple:
    return (t.optimizer, t.lr)


def _segments(keys: list) -> list[tuple[int, int]]:
    """[a, b) ranges of equal adjacent keys."""
    out: list[tuple[int, int]] = []
    for i, key in enumerate(keys):
        if out and keys[out[-1][0]] == key:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _same_optimizer_state(slots: list[RunSlot]) -> bool:
    """All runs fresh, or all holding the same state entries with equal scalars (step counts)."""
    def scalars(s: RunSlot) -> list:
        out = []
        for p in s.model.parameters():
            st = s.opt.state.get(p) or {}
            out.append(sorted((k, float(v) if torch.is_tensor(v) and v.dim() == 0 else
                               (None if torch.is_tensor(v) else v)) for k, v in st.items()))
        return out
    first = scalars(slots[0])
    return all(scalars(s) == first for s in slots[1:])


def _memory_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The dimension order in which a stacked leaf lies in memory: channels-last weights are
    (out, kh, kw, in); everything else is as it is."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)
    return None


def _per_element(v: Any, numel: int) -> bool:
    """An optimizer state entry with one value per parameter element (a moment), not a step count."""
    return torch.is_tensor(v) and v.dim() > 0 and v.numel() == numel


def _copy(v: Any) -> Any:
    return v.clone() if torch.is_tensor(v) else v


def _flatten(t: torch.Tensor, order: tuple[int, ...] | None, *, view: bool = False) -> torch.Tensor:
    u = t.permute(*order) if order else t
    return u.view(-1) if view else u.reshape(-1)


def _unflatten(flat: torch.Tensor, shape: torch.Size, order: tuple[int, ...] | None) -> torch.Tensor:
    if not order:
        return flat.view(shape)
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return flat.view([shape[d] for d in order]).permute(*inverse)


class _Stack:
    """K slots wired as one grouped network for as long as the set of slots does not change."""

    def __init__(self, slots: list[RunSlot]):
        # runs sharing an optimizer are adjacent (so each optimizer group is one row range of every
        # stacked leaf), and within it runs sharing a loss recipe (one channel slice per recipe)
        self.slots = sorted(slots, key=lambda s: (_optimizer_kind(s.cfg.train), repr(_loss_recipe(s.cfg.train))))
        self.k = len(self.slots)
        self.c = self.slots[0].data.channels
        self.device = self.slots[0].device
        specs = [forward_spec(s.model) for s in self.slots]      # the model's layers, as its forward walks them
        self.layers, self.patches = specs[0].layers, specs[0].patches
        self.inners = [spec.inner for spec in specs]
        self.bns = [[layer.bn for layer in spec.layers if layer.bn is not None] for spec in specs]
        self.big_buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.k > 1:
            for j in range(len(self.bns[0])):
                layer = [bns[j] for bns in self.bns]
                rm = torch.cat([bn.running_mean for bn in layer])     # (K*C_j,)
                rv = torch.cat([bn.running_var for bn in layer])
                cj = layer[0].num_features
                for i, bn in enumerate(layer):   # each run's buffers become views of the stack's
                    bn.running_mean = rm[i * cj:(i + 1) * cj]
                    bn.running_var = rv[i * cj:(i + 1) * cj]
                self.big_buffers.append((rm, rv))
        # Parameters: one stacked leaf per tensor name, (K*C_out, ...), and each run's parameter
        # (still its own leaf, in its own optimizer) aliases its slice of that leaf's storage,
        # its gradient its slice of the leaf's gradient. No per-step concatenation or split, and
        # the optimizer's in-place update of a run's parameter is the update of the stacked one.
        self.big: dict[str, torch.Tensor] = {}
        if self.k > 1:
            per_run = [dict(inner.named_parameters()) for inner in self.inners]
            for name in per_run[0]:
                ps = [d[name] for d in per_run]
                big = torch.cat([q.detach() for q in ps]).requires_grad_()
                big.grad = torch.zeros_like(big)
                rows = ps[0].shape[0]
                for i, q in enumerate(ps):
                    q.data = big.data[i * rows:(i + 1) * rows]
                    q.grad = big.grad[i * rows:(i + 1) * rows]
                self.big[name] = big
        self.big_grads = [big.grad for big in self.big.values()]
        # runs on the same images (seeds, losses, readings of one class) hold the same tensor
        self.shared_images = all(s.x_all is self.slots[0].x_all for s in self.slots)
        self.loss_groups = [(_loss_recipe(self.slots[a].cfg.train), a, b)
                            for a, b in _segments([_loss_recipe(s.cfg.train) for s in self.slots])]
        self.group_optimizers: list[tuple[torch.optim.Optimizer, int, int, list[tuple[str, torch.Tensor]]]] = []
        self.optimizers = self._merged_optimizers()

    def _merged_optimizers(self) -> list[torch.optim.Optimizer]:
        if self.k == 1:
            return [self.slots[0].opt]
        merged = []
        for a, b in _segments([_optimizer_kind(s.cfg.train) for s in self.slots]):
            name, lr = _optimizer_kind(self.slots[a].cfg.train)
            group = self.slots[a:b]
            if _same_optimizer_state(group):
                merged.append(self._group_optimizer(name, lr, a, b))
                continue
            params = [p for s in group for p in s.model.parameters()]
            opt = make_optimizer(name, params, lr)
            for s in group:      # the merged optimizer updates the runs' own state dicts in place
                for p in s.model.parameters():
                    opt.state[p] = s.opt.state[p]
            merged.append(opt)
        return merged

    def _group_optimizer(self, name: str, lr: float, a: int, b: int) -> torch.optim.Optimizer:
        """One optimizer over the rows [a, b) of every stacked leaf, as flat 1-D views of their
        memory, with the runs' optimizer state concatenated the same way. The runs must hold equal
        scalar state (step counts), so that one step count serves them all. Its fused kernel then
        walks one tensor per leaf instead of one per leaf and run: at batch 1 with 16 runs the
        per-run update cost about a quarter of a step, mostly copies of channels-last slices."""
        per_run = [dict(inner.named_parameters()) for inner in self.inners[a:b]]
        flat_params = []
        for pname, big in self.big.items():
            rows = big.shape[0] // self.k
            order = _memory_order(big)
            gp = _flatten(big.detach()[a * rows:b * rows], order, view=True).requires_grad_()
            gp.grad = _flatten(big.grad[a * rows:b * rows], order, view=True)
            flat_params.append((pname, gp))
        opt = make_optimizer(name, [gp for _, gp in flat_params], lr)
        for pname, gp in flat_params:
            states = [self.slots[a + i].opt.state.get(d[pname]) for i, d in enumerate(per_run)]
            if not states[0]:
                continue     # fresh runs: the optimizer initialises its state as each run's would
            order = _memory_order(self.big[pname])
            opt.state[gp] = {
                key: (torch.cat([_flatten(st[key], order) for st in states])
                      if _per_element(v, per_run[0][pname].numel()) else _copy(v))
                for key, v in states[0].items()}
        self.group_optimizers.append((opt, a, b, flat_params))
        return opt

    def release(self) -> None:
        """Give every run standalone parameters, BatchNorm buffers and optimizer state again
        (the stack is being rebuilt or left)."""
        for opt, a, b, flat_params in self.group_optimizers:
            per_run = [dict(inner.named_parameters()) for inner in self.inners[a:b]]
            for pname, gp in flat_params:
                state = opt.state.get(gp)
                if not state:
                    continue
                order = _memory_order(self.big[pname])
                for i, (s, params) in enumerate(zip(self.slots[a:b], per_run)):
                    p = params[pname]
                    n = p.numel()
                    s.opt.state[p] = {
                        key: (_unflatten(v[i * n:(i + 1) * n], p.shape, order).clone()
                              if _per_element(v, gp.numel()) else _copy(v))
                        for key, v in state.items()}
        self.group_optimizers = []
        if self.k > 1:
            for inner in self.inners:
                for q in inner.parameters():
                    q.data = q.data.clone()
                    q.grad = None
        for bns in self.bns:
            for bn in bns:
                bn.running_mean = bn.running_mean.clone()
                bn.running_var = bn.running_var.clone()
        for s in self.slots:
            s._flush_bn()

    # -- one training step of all K runs
    def step(self) -> torch.Tensor:
        """One optimizer step of every slot; returns the K detached losses (K,)."""
        if self.k == 1:
            s = self.slots[0]
            x = s._next_batch().contiguous(memory_format=CHANNELS_LAST)
            loss = training_loss(x, s.model(x), s.cfg.train)
            s.opt.zero_grad(set_to_none=True)
            loss.backward()
            s.opt.step()
            return loss.detach().view(1)
        if self.shared_images:   # one gather for all runs: (N, K, C, H, W) -> (N, K*C, H, W)
            idx = torch.stack([s._next_indices() for s in self.slots], dim=1)
            x = self.slots[0].x_all[idx].flatten(1, 2)
        else:
            x = torch.cat([s._next_batch() for s in self.slots], dim=1)   # (N, K*C, H, W)
        x = x.contiguous(memory_format=CHANNELS_LAST)
        y = self.forward(x)
        losses = self.losses(x, y)                                       # (K,)
        torch._foreach_zero_(self.big_grads)   # the runs' .grad are views of these: zeroed with them
        losses.sum().backward()
        for opt in self.optimizers:
            opt.step()
        for s in self.slots:
            s._bn_pending += 1
        return losses.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The K autoencoders on (N, K*C, H, W) → (N, K*C, H, W): the model's layers
        (`models.forward_spec`), each as one grouped conv (stacked (K*C_out, C_in, k, k) weight),
        per-run BatchNorm over the K*C_out channels (the stack's concatenated running buffers) and
        the activation. Upsampling, activations and patch tiling act per channel."""
        h = tile(x, self.patches)
        big = self.big
        bn_i = 0
        for layer in self.layers:
            if layer.upsample is not None:
                h = layer.upsample(h)                                  # nearest upsample, per channel
            c0, name = layer.conv, layer.conv_name
            h = F.conv2d(h, big[f"{name}.weight"], big[f"{name}.bias"] if c0.bias is not None else None,
                         c0.stride, c0.padding, groups=self.k)
            if layer.bn is not None:
                rm, rv = self.big_buffers[bn_i]
                bn_i += 1
                h = F.batch_norm(h, rm, rv, big[f"{layer.bn_name}.weight"], big[f"{layer.bn_name}.bias"],
                                 training=True, momentum=layer.bn.momentum, eps=layer.bn.eps)
            h = F.leaky_relu(h, layer.act.negative_slope, inplace=True) if layer.leaky else torch.sigmoid(h)
        return untile(h, self.patches)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-run training losses (K,) of inputs x and reconstructions y, both (N, K*C, H, W)."""
        n, c = x.shape[0], self.c
        out = []
        for recipe, a, b in self.loss_groups:
            g = b - a
            bmap = base_map(recipe[0], x[:, a * c:b * c], y[:, a * c:b * c])   # (N, G*C, H, W)
            if not recipe[1]:
                out.append(bmap.reshape(n, g, -1).sum(dim=2).mean(dim=0))        # (G,)
                continue
            _, _, max_over, detach, eps = recipe
            hw = bmap.shape[-2:]
            if max_over == "batch":     # one "sample" per run: its whole (N, C, H, W) loss map
                per = bmap.reshape(n, g, c, *hw).transpose(0, 1).reshape(g, n * c, *hw)
            else:                       # sample: one per (image, run); fixed: any layout
                per = bmap.reshape(n * g, c, *hw)
            elem = lamp_map(per, eps=eps, max_over="sample" if max_over == "batch" else max_over,
                            detach_max=detach)                                  # eq. 1 per element
            if max_over == "batch":
                out.append(elem.reshape(g, n, -1).sum(dim=2).mean(dim=1))
            else:
                out.append(elem.reshape(n, g, -1).sum(dim=2).mean(dim=0))
        return torch.cat(out)


# ----------------------------------------------------------------------------- driving slots

def train_slots(slots: list[RunSlot], *, max_steps: int | None = None, deadline: float | None = None,
                on_progress: Callable[[RunSlot, dict], None] | None = None,
                should_stop: Callable[[RunSlot], bool] | None = None) -> None:
    """Advance every unfinished, unstopped slot together (all must share stack_key; slots may be
    at different epochs) by up to max_steps steps or until time.perf_counter() >= deadline,
    whichever first. A slot for which should_stop(slot) is true is stopped and leaves the stack
    at once; its stack-mates go on. Returns when all slots are finished/stopped or the budget
    is used."""
    keys = {stack_key(s.cfg, s.data) + (str(s.device),) for s in slots}
    if len(keys) > 1:
        raise ConfigError("these runs cannot share a stack (different network, image or batch shape): "
                          "group them with plan_stacks")
    active = [s for s in slots if s.active]
    stack: _Stack | None = None
    done = 0
    try:
        while active:
            if (max_steps is not None and done >= max_steps) or (
                    deadline is not None and time.perf_counter() >= deadline):
                break
            if should_stop is not None:
                for s in active:
                    if should_stop(s):
                        s.stop()
            if stack is not None and any(not s.active for s in stack.slots):
                stack.release()
                stack = None
            active = [s for s in active if s.active]
            if not active:
                break
            sizes = {s._next_size() for s in active}
            if len(sizes) > 1:
                # slots at different points of their epochs, and one is at its epoch's shorter last
                # batch: this step runs one stack per batch size, built for this step only
                if stack is not None:
                    stack.release()
                    stack = None
                parts = [[s for s in active if s._next_size() == size] for size in sorted(sizes)]
                for members in parts:        # partitioned before any steps: one step per slot
                    part = _Stack(members)
                    try:
                        _step_and_report(part, on_progress)
                    finally:
                        part.release()
            else:
                if stack is None:
                    stack = _Stack(active)
                _step_and_report(stack, on_progress)
            done += 1
    finally:
        if stack is not None:
            stack.release()


def _step_and_report(stack: _Stack, on_progress) -> None:
    t0 = time.perf_counter()
    losses = stack.step()
    dt = time.perf_counter() - t0
    for i, s in enumerate(stack.slots):
        s.seconds += dt
        ended = s._after_step(losses[i])
        now = time.perf_counter()
        if on_progress is not None and (ended or now - s.last_report > PROGRESS_INTERVAL_S):
            s.last_report = now
            on_progress(s, s.progress())


def train_stack(cfgs: Sequence[RunConfig], datas: Sequence[ADDataset], *, on_progress=None,
                should_stop=None, device=None) -> list[TrainResult]:
    """Train runs that share a stack key together to the end; one TrainResult per config."""
    slots = [RunSlot(c, d, device if device is not None else c.train.device) for c, d in zip(cfgs, datas)]
    train_slots(slots, on_progress=on_progress, should_stop=should_stop)
    return [s.result() for s in slots]


# ----------------------------------------------------------------------------- planning

def run_memory_mb(cfg: RunConfig, data: ADDataset) -> float:
    """Estimated training memory of one run in a stack: parameters with gradients and optimizer
    state, and the activations autograd keeps for one step (about 4 tensors per block)."""
    net = initial_model(cfg, data.channels, data.image_size)
    params = sum(p.numel() for p in net.parameters())
    spec = forward_spec(net)
    inner, p = spec.inner, spec.patches
    n = min(cfg.train.batch_size, max(len(data.train), 1)) * p * p
    size = data.image_size // p
    acts = 0
    with torch.no_grad():
        shapes: list[int] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: shapes.append(o[0].numel()))
                 for m in inner.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Upsample))]
        inner.eval()(torch.zeros(1, data.channels, size, size))
        for h in hooks:
            h.remove()
        acts = sum(shapes) * 2     # conv/bn/upsample outputs + activations and gradients in flight
    return (params * 4 + n * acts + 2 * n * data.channels * size * size) * 4 / 2**20


def cpu_stack_cap(cfg: RunConfig, data: ADDataset | None = None, threads: int | None = None) -> int:
    """Most runs per CPU stack that still pay (measured, see CPU_STACK_MAX_VALUES): 1 where one
    run's step is too large, else as many as fit the per-step budget of the thread count (torch's
    current one by default). `data` None: the config's own batch size and image size."""
    bs = cfg.train.batch_size if data is None else min(cfg.train.batch_size, max(len(data.train), 1))
    channels = data.channels if data is not None else max(cfg.data.channels, 1)
    size = data.image_size if data is not None else cfg.data.image_size
    values = bs * channels * size ** 2
    if values > CPU_STACK_MAX_VALUES:
        return 1
    threads = threads if threads is not None else torch.get_num_threads()
    budget = CPU_STEP_VALUES_ONE_THREAD if threads <= 1 else CPU_STEP_VALUES
    return max(1, min(DEFAULT_MAX_STACK, budget // values))


def default_memory_budget_mb(device: torch.device | str = "cpu") -> float:
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return free / 2**20 / 2
    return DEFAULT_CPU_BUDGET_MB


def plan_stacks(items: Sequence[tuple[RunConfig, ADDataset]], *, max_stack: int | None = None,
                memory_budget_mb: float | None = None, device=None) -> list[list[int]]:
    """Indices grouped into stacks: compatible runs together, split so each stack pays (no
    stacking where one run was measured to be as fast) and fits the memory budget."""
    groups: dict[tuple, list[int]] = {}
    for i, (cfg, data) in enumerate(items):
        groups.setdefault(stack_key(cfg, data), []).append(i)
    plan: list[list[int]] = []
    for idx in groups.values():
        cfg, data = items[idx[0]]
        dev = torch.device(device) if device is not None else resolve_device(cfg.train.device)
        # the measured rule: on CUDA always; on the CPU while a step's input is small
        cap = cpu_stack_cap(cfg, data) if dev.type == "cpu" else DEFAULT_MAX_STACK
        if cap == 1:
            plan.extend([i] for i in idx)
            continue
        budget = memory_budget_mb if memory_budget_mb is not None else default_memory_budget_mb(dev)
        cap = min(cap, max(1, int(budget // max(run_memory_mb(cfg, data), 1e-6))), max_stack or DEFAULT_MAX_STACK)
        plan.extend(balanced_split(idx, cap))
    return plan


def balanced_split(items: Sequence, cap: int) -> list[list]:
    """`items` in consecutive parts of at most `cap`, as even as can be (25 at cap 24: 13 + 12,
    not 24 + 1), so that no part trains long after the others."""
    if not items:
        return []
    n = -(-len(items) // cap)
    base, extra = divmod(len(items), n)
    parts, start = [], 0
    for j in range(n):
        size = base + (1 if j < extra else 0)
        parts.append(list(items[start:start + size]))
        start += size
    return parts
