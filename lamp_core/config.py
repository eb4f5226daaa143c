"""Run configuration as plain dataclasses (one comment per field, nanoGPT style).

A `RunConfig` names everything that decides a trained model: the data, the network and the
training recipe (loss included). Its `key()` is a hash of the canonical JSON form, used by the
run store so the same configuration is never trained twice.

The three choices the paper leaves open in eq. 2 (where the max is taken, whether it is
detached from the gradient, and epsilon) are fields of `TrainConfig`; their defaults are
documented in `lamp_core.losses` and in the README.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

DATASETS = ("digits", "mnist", "fashion-mnist", "mvtec", "folder")
BASE_LOSSES = ("l2", "l1", "ssim")
MAX_OVER = ("sample", "batch", "fixed")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Defaults of the paper's open choices (see losses.py for the reasoning).
DEFAULT_EPS = 1e-2
DEFAULT_MAX_OVER = "batch"
DEFAULT_DETACH_MAX = True


class LampError(ValueError):
    """Any error a user can act on; its message names the problem and the fix."""


class ConfigError(LampError):
    """A configuration value a user can fix (bad option, out of range)."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"          # one of DATASETS
    data_root: str | None = None     # IDX folder (mnist), MVTec root (mvtec), folder or .zip (folder)
    normal_class: int = 8            # digits / mnist / fashion-mnist: the class trained as normal
    category: str | None = None      # mvtec: category folder name (e.g. "grid"); None = the only one
    image_size: int = 28             # images are resized to image_size x image_size
    channels: int = 0                # 0 = the data's own (1 grey, 3 colour); 1 or 3 forces it
    max_train: int | None = None     # cap on normal training images (fast runs); None = all
    max_test: int | None = None      # cap on test images, drawn stratified and seeded; None = all
    test_fraction: float = 0.3       # digits and normal/anomalous-only folders: share held out
    val_fraction: float = 0.0        # share of normal training images held out for validation
    download: bool = True            # mnist: download into the cache when files are missing
    seed: int = 0                    # seeds every split and cap, independent of the training seed


@dataclass(frozen=True)
class ModelConfig:
    depth: int = 0                   # blocks in encoder and decoder; 0 = 4 for <=32 px, else 6
    width: int = 16                  # channels of the first block; doubled per block up to 4x
    kernel_size: int = 3             # odd convolution kernel size
    latent_channels: int = 32        # channels at the bottleneck
    patches: int = 1                 # p: each image is cut into a p x p grid of patches


@dataclass(frozen=True)
class TrainConfig:
    base_loss: str = "l2"            # per-element base loss map: l2, l1 or ssim
    lamp: bool = False               # amplify the base loss (paper eq. 1-2)
    eps: float = DEFAULT_EPS         # eq. 2: B' = B / max(B) * (1 - eps)
    max_over: str = DEFAULT_MAX_OVER  # eq. 2: max per "sample", over the "batch", or "fixed" = 1
    detach_max: bool = DEFAULT_DETACH_MAX  # eq. 2: stop the gradient through max(B)
    optimizer: str = "adam"          # adam, sgd (momentum 0.9) or rmsprop
    lr: float = 1e-3                 # learning rate
    batch_size: int = 32             # images per step (capped at the training set size)
    epochs: int = 20                 # passes over the normal training images
    seed: int = 0                    # initial weights and data order
    device: str = "auto"             # auto = cuda, then mps, then cpu
    eval_every_epoch: bool = False   # also record test AUROC after every epoch


@dataclass(frozen=True)
class LandscapeConfig:
    nx: int = 21                     # grid points along direction 1
    ny: int = 21                     # grid points along direction 2 (1 = a 1-D line)
    span: float = 1.0                # coordinates run over [-span, span]
    n_images: int = 256              # evaluation images (normal training images)
    metric: str = "own"              # "own" = the run's training loss, "l2" = plain L2
    bn_mode: str = "eval"            # eval = running statistics, batch = batch statistics
    include_bn_bias: bool = False    # give biases and BatchNorm parameters a direction too
    seed: int = 0                    # seed of the random directions
    radius: float = 0.25             # sharpness: mean relative loss increase at this distance
    radius_directions: int = 8       # sharpness: random directions (each probed at +radius and -radius)
    hessian_iters: int = 20          # sharpness: power-iteration steps for the top Hessian eigenvalue
    hutchinson_samples: int = 16     # sharpness: Rademacher probes of the Hutchinson trace estimate
    method: str = "fast"             # "fast" = fused exact evaluator, "loop" = Li et al.'s per-point loop
    workers: int = 0                 # fast: grid points evaluated in parallel; 0 = torch's thread count


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(
            data=_build(DataConfig, d.get("data", {})),
            model=_build(ModelConfig, d.get("model", {})),
            train=_build(TrainConfig, d.get("train", {})),
        )

    def key(self) -> str:
        """Stable hash of the configuration (what the run store files runs under)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def with_train(self, **changes: Any) -> "RunConfig":
        return replace(self, train=replace(self.train, **changes))

    def with_data(self, **changes: Any) -> "RunConfig":
        return replace(self, data=replace(self.data, **changes))

    def with_model(self, **changes: Any) -> "RunConfig":
        return replace(self, model=replace(self.model, **changes))


# Fields that only matter when LAMP is on. A base run's training does not depend on them, so the
# run store files base runs with these constants: a sweep over eps x max_over x detach_max trains
# its baseline once, and `lamp train`, the app and sweeps find each other's base runs. They are
# constants, not the current defaults, so stored base runs keep their keys when a default changes.
LAMP_ONLY_FILING = {"eps": 0.01, "max_over": "sample", "detach_max": False}


def canonical(cfg: RunConfig) -> RunConfig:
    """The config a run is filed under: without fields that cannot change its training (a base
    run's LAMP-only fields; detach_max of a LAMP run whose max is the constant bound 1)."""
    if not cfg.train.lamp:
        return cfg.with_train(**LAMP_ONLY_FILING)
    if cfg.train.max_over == "fixed" and cfg.train.detach_max != LAMP_ONLY_FILING["detach_max"]:
        return cfg.with_train(detach_max=LAMP_ONLY_FILING["detach_max"])
    return cfg


def run_key(cfg: RunConfig) -> str:
    """A run's identity: the one key the run store, the job queue, the pages and sweeps use.

    It is the hash of the canonical config, so two configs that cannot train differently (a base
    run with other unused LAMP fields) are one run everywhere. An uploaded data set must be
    named by its content (the app files uploads under their content hash), so its runs keep their
    identity across restarts.
    """
    return canonical(cfg).key()


def _build(kind, values: dict[str, Any]):
    known = {f.name for f in fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown {kind.__name__} field(s): {', '.join(sorted(unknown))}")
    return kind(**values)


def resolved_depth(model: ModelConfig, image_size: int) -> int:
    """Depth 4 for small images (28-32 px) and 6 for larger ones, as in the paper (§3.1)."""
    if model.depth:
        return model.depth
    patch = image_size // max(model.patches, 1)
    return 4 if patch <= 32 else 6


def validate_data(d: DataConfig) -> None:
    """Raise ConfigError with a message naming the field and the fix."""
    _choice("dataset", d.dataset, DATASETS)
    if not 8 <= d.image_size <= 512:
        raise ConfigError(f"image size {d.image_size} is out of range: use 8 to 512 pixels")
    if d.channels not in (0, 1, 3):
        raise ConfigError(f"channels must be 0 (auto), 1 or 3, not {d.channels}")
    if not 0.0 < d.test_fraction < 1.0:
        raise ConfigError(f"test fraction {d.test_fraction} must lie strictly between 0 and 1")
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"validation fraction {d.val_fraction} must lie in [0, 1)")
    if d.dataset in ("digits", "mnist", "fashion-mnist") and not 0 <= d.normal_class <= 9:
        raise ConfigError(f"normal class {d.normal_class} is not a digit: use 0 to 9")
    for name, cap in (("max_train", d.max_train), ("max_test", d.max_test)):
        if cap is not None and cap < 2:
            raise ConfigError(f"{name} must be at least 2 (or unset for all images)")


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError with a message naming the field and the fix."""
    d, m, t = cfg.data, cfg.model, cfg.train
    validate_data(d)
    _choice("base loss", t.base_loss, BASE_LOSSES)
    _choice("max_over", t.max_over, MAX_OVER)
    _choice("optimizer", t.optimizer, OPTIMIZERS)
    _choice("device", t.device, DEVICES)
    if m.kernel_size < 1 or m.kernel_size % 2 == 0:
        raise ConfigError(f"kernel size {m.kernel_size} must be an odd number such as 3 or 5")
    if m.width < 1 or m.latent_channels < 1:
        raise ConfigError("width and latent channels must be positive")
    if m.depth < 0 or m.depth > 8:
        raise ConfigError(f"depth {m.depth} is out of range: use 0 (auto) or 1 to 8")
    if m.patches < 1 or d.image_size % m.patches:
        raise ConfigError(
            f"patches={m.patches} must divide the image size {d.image_size}: "
            "choose a patch count that divides it")
    if d.image_size // m.patches < 4:
        raise ConfigError(f"patches of {d.image_size // m.patches} px are too small: use fewer patches")
    if not 0.0 < t.eps < 1.0:
        raise ConfigError(f"eps {t.eps} must lie strictly between 0 and 1 (e.g. 0.01)")
    if not t.lr > 0 or t.lr != t.lr:
        raise ConfigError(f"learning rate {t.lr} must be a positive number")
    if t.batch_size < 1:
        raise ConfigError(f"batch size {t.batch_size} must be at least 1")
    if t.epochs < 0:
        raise ConfigError(f"epochs {t.epochs} must not be negative")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
