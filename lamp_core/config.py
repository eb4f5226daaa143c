"""Run configuration as plain dataclasses, each option declared once (nanoGPT style, with specs).

A `RunConfig` names everything that decides a trained model: the data, the network and the
training recipe (loss included); `LandscapeConfig` names a loss-landscape cut. `run_key(cfg)` is
a run's identity, used by the run store, the job queue, the pages and sweeps.

Every field carries its option spec in its metadata (`opt(default, help, min=, max=, choices=,
flag=)`): one help sentence, its bounds or choices, and its `lamp` flag. `option_spec("train.eps")`
returns it as an `OptionSpec`; the `lamp train/landscape/sweep` flags are generated from the
specs and `validate` checks them. The app's widgets for these options take their bounds,
choices and help sentence from the specs too (app/lab_state.py `spec_range`, `spec_help`): the
image size widgets allow the same 8-512 px as `lamp` (a set too large for memory is refused by
the decode budget, with its reason, not by a second limit). A page narrows a range only where a
widget cannot take the spec's (an open bound: lr, eps > 0) or the lesson wants a shorter one
(epochs, width), and says so beside the widget.

The three choices the paper leaves open in eq. 2 (where the max is taken, whether it is
detached from the gradient, and epsilon) are fields of `TrainConfig`; their defaults are
documented in `lamp_core.losses` and in the README.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

DATASETS = ("digits", "mnist", "fashion-mnist", "mvtec", "folder")
BASE_LOSSES = ("l2", "l1", "ssim")
MAX_OVER = ("sample", "batch", "fixed")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
DEVICES = ("auto", "cpu", "cuda", "mps")
METRICS = ("own", "l2", "own_rel", "l2_rel")   # landscapes: see lamp_core.landscape.loss
BN_MODES = ("eval", "batch")
METHODS = ("fast", "loop")

# The image size a data set is resized to unless a config says otherwise: the paper's 28 px for
# the digit sets, 64 px for image folders. The one home of this default: the `lamp` commands, the
# app's pages and the lesson (lamp_core.lesson.IMAGE_SIZE) take it from here.
DEFAULT_IMAGE_SIZE = {"digits": 28, "mnist": 28, "fashion-mnist": 28, "mvtec": 64, "folder": 64}

# Defaults of the paper's open choices, chosen by the converged ablation on MNIST classes 0-4 and
# reported on classes 5-9 (bench/results/ablation.md; losses.py gives the reasoning).
DEFAULT_EPS = 0.1
DEFAULT_MAX_OVER = "sample"
DEFAULT_DETACH_MAX = True


class LampError(ValueError):
    """Any error a user can act on; its message names the problem and the fix."""


class ConfigError(LampError):
    """A configuration value a user can fix (bad option, out of range)."""


@dataclass(frozen=True)
class OptionSpec:
    """One option, declared once: the `lamp` flags, sweep axes, checks and page widgets read it."""

    name: str                        # "train.eps": section.field, as sweep axes name it
    help: str                        # one sentence for --help, widget help and docs
    default: Any
    kind: type                       # int, float, str or bool
    optional: bool = False           # None is allowed (unset: all images, automatic, the only one)
    choices: tuple | None = None     # the allowed values, when there is a fixed list
    min: float | None = None
    max: float | None = None
    min_open: bool = False           # True: the bound itself is not allowed (eps > 0)
    max_open: bool = False
    flag: str | None = None          # the command-line flag; None: not on the command line
    label: str = ""                  # how messages name the option ("batch size")
    hint: str = ""                   # appended to a range message, e.g. "(e.g. 0.01)"

    def check(self, value: Any) -> None:
        """Raise ConfigError naming the option, the value and the allowed range or choices."""
        label = self.label or self.name.split(".")[-1]
        if value is None:
            if self.optional:
                return
            raise ConfigError(f"{label} must be set")
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(f"unknown {label} {value!r}: choose one of {', '.join(map(str, self.choices))}")
            return
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    self.kind is int and isinstance(value, float)):
                raise ConfigError(f"{label} must be {'an integer' if self.kind is int else 'a number'}, "
                                  f"not {value!r}")
            lo_ok = self.min is None or (value > self.min if self.min_open else value >= self.min)
            hi_ok = self.max is None or (value < self.max if self.max_open else value <= self.max)
            if not (lo_ok and hi_ok and value == value):          # value != value: NaN
                raise ConfigError(f"{label} {value} {self.range_text()}" + (f" {self.hint}" if self.hint else ""))

    def range_text(self) -> str:
        """The allowed range in words: "must lie strictly between 0 and 1", "must be at least 1"."""
        lo, hi = _num(self.min), _num(self.max)
        if self.min is not None and self.max is not None:
            if self.min_open and self.max_open:
                return f"must lie strictly between {lo} and {hi}"
            if not self.min_open and not self.max_open:
                return f"is out of range: use {lo} to {hi}"
            return f"must lie in {'(' if self.min_open else '['}{lo}, {hi}{')' if self.max_open else ']'}"
        if self.min is not None:
            if self.min == 0:
                return "must be a positive number" if self.min_open else "must not be negative"
            return f"must be greater than {lo}" if self.min_open else f"must be at least {lo}"
        if self.max is not None:
            return f"must be less than {hi}" if self.max_open else f"must be at most {hi}"
        return "is not allowed"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def opt(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with its option spec (help, bounds or choices, flag) in its metadata."""
    return field(default=default, metadata={"option": dict(help=help, **spec)})


@dataclass(frozen=True)
class DataConfig:
    dataset: str = opt("digits", "digits (built in), mnist, fashion-mnist, mvtec, folder (your own; zip or folder)",
                       choices=DATASETS, flag="--dataset", label="dataset")
    data_root: str | None = opt(None, "mnist: folder with the IDX files; mvtec: the MVTec root; folder: your "
                                "folder or .zip", flag="--data-root")
    normal_class: int = opt(8, "digits/mnist/fashion-mnist: the digit trained as normal (0-9)", min=0, max=9,
                            flag="--normal-class", label="normal class")
    category: str | None = opt(None, "mvtec: category folder, e.g. grid (unset: the only one)", flag="--category")
    image_size: int = opt(DEFAULT_IMAGE_SIZE["digits"], "resize images to this many pixels (default: "
                          + ", ".join(f"{n} {s}" for n, s in DEFAULT_IMAGE_SIZE.items()) + ")",
                          min=8, max=512, flag="--image-size", label="image size", hint="pixels")
    channels: int = opt(0, "0 = the data's own (1 grey, 3 colour); 1 or 3 forces it", choices=(0, 1, 3),
                        flag="--channels", label="channels")
    max_train: int | None = opt(None, "cap on normal training images (fast runs); unset = all", min=2,
                                flag="--max-train", hint="(or unset for all images)")
    max_test: int | None = opt(None, "cap on test images (stratified, seeded); unset = all", min=2,
                               flag="--max-test", hint="(or unset for all images)")
    test_fraction: float = opt(0.3, "digits and normal/anomalous folders: share held out for testing",
                               min=0.0, max=1.0, min_open=True, max_open=True, flag="--test-fraction",
                               label="test fraction")
    val_fraction: float = opt(0.0, "share of normal training images held out for validation", min=0.0, max=1.0,
                              max_open=True, flag="--val-fraction", label="validation fraction")
    download: bool = opt(True, "mnist: download into the cache when files are missing (--no-download: never)",
                         flag="--no-download")
    seed: int = opt(0, "seed of the data splits and caps (independent of the training seed)", flag="--data-seed")


@dataclass(frozen=True)
class ModelConfig:
    depth: int = opt(0, "blocks per side; 0 = 4 for <=32 px, else 6", min=0, max=8, flag="--depth",
                     hint="(0 = automatic)")
    width: int = opt(16, "channels of the first block; doubled per block up to 4x", min=1, flag="--width")
    kernel_size: int = opt(3, "odd convolution kernel size", min=1, flag="--kernel-size", label="kernel size")
    latent_channels: int = opt(32, "channels at the bottleneck", min=1, flag="--latent-channels",
                               label="latent channels")
    patches: int = opt(1, "p: reconstruct a p x p grid of patches (p must divide the image size)", min=1,
                       flag="--patches")


@dataclass(frozen=True)
class TrainConfig:
    base_loss: str = opt("l2", "base reconstruction loss (per-element map: l2, l1 or ssim)", choices=BASE_LOSSES,
                         flag="--loss", label="base loss")
    lamp: bool = opt(False, "amplify the base loss (eq. 1-2)", flag="--lamp")
    eps: float = opt(DEFAULT_EPS, "eq. 2: B' = B / max(B) * (1 - eps)", min=0.0, max=1.0, min_open=True,
                     max_open=True, flag="--eps", hint="(e.g. 0.01)")
    max_over: str = opt(DEFAULT_MAX_OVER, "eq. 2: max per sample, over the batch, or the fixed bound 1",
                        choices=MAX_OVER, flag="--max-over")
    detach_max: bool = opt(DEFAULT_DETACH_MAX, "eq. 2: no gradient through the max", flag="--detach-max")
    optimizer: str = opt("adam", "adam, sgd (momentum 0.9) or rmsprop", choices=OPTIMIZERS, flag="--optimizer")
    lr: float = opt(1e-3, "learning rate", min=0.0, min_open=True, flag="--lr", label="learning rate")
    batch_size: int = opt(32, "images per step (capped at the training set size)", min=1, flag="--batch-size",
                          label="batch size")
    epochs: int = opt(20, "passes over the normal training images", min=0, flag="--epochs")
    seed: int = opt(0, "seed of initial weights and data order", flag="--seed")
    device: str = opt("auto", "auto = cuda, then mps, then cpu", choices=DEVICES, flag="--device")
    eval_every_epoch: bool = opt(False, "also record test AUROC after every epoch")


@dataclass(frozen=True)
class LandscapeConfig:
    nx: int = opt(21, "grid points along direction 1", min=1, flag="--nx")
    ny: int = opt(21, "grid points along direction 2; 1 = a 1-D line", min=1, flag="--ny")
    span: float = opt(1.0, "coordinates run over [-span, span]", min=0.0, min_open=True, flag="--span",
                      hint="(coordinates run over [-span, span])")
    n_images: int = opt(256, "evaluation images (normal training images, one batch)", min=1, flag="--images")
    metric: str = opt("own", "own = the run's training loss, l2 = plain L2, *_rel = divided by the centre",
                      choices=METRICS, flag="--metric")
    bn_mode: str = opt("eval", "BatchNorm with running statistics (eval) or the evaluation batch's (batch)",
                       choices=BN_MODES, flag="--bn-mode", label="BN mode")
    include_bn_bias: bool = opt(False, "give biases and BatchNorm parameters a direction too (off: they stay fixed)",
                                flag="--include-bn-bias")
    seed: int = opt(0, "seed of the random directions", flag="--direction-seed")
    radius: float = opt(0.25, "sharpness: mean relative loss increase at this distance", min=0.0, min_open=True,
                        flag="--radius")
    radius_directions: int = opt(8, "sharpness: random directions, each probed at +radius and -radius", min=0)
    hessian_iters: int = opt(20, "sharpness: power-iteration steps for the top Hessian eigenvalue (0 = skip)",
                             min=0, flag="--hessian-iters")
    hutchinson_samples: int = opt(16, "sharpness: Rademacher probes of the Hutchinson trace (0 = skip)", min=0,
                                  flag="--hutchinson-samples")
    method: str = opt("fast", "fast = exact fused evaluator, loop = Li et al.'s per-point loop", choices=METHODS,
                      flag="--method", label="landscape method")
    workers: int = opt(0, "fast: grid points evaluated at once; 0 = usable cores / torch's thread count", min=0)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(**{name: _build(kind, d.get(name, {})) for name, kind in RUN_SECTIONS.items()})

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


# The config sections, declared once: a run's (RunConfig's fields, what sweep axes set) and all of
# them (the option specs, the `lamp` flags).
RUN_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
SECTIONS = {**RUN_SECTIONS, "landscape": LandscapeConfig}


def _type_of(annotation: str) -> tuple[type, bool]:
    """(kind, optional) from a field's annotation string such as "int | None"."""
    parts = [p.strip() for p in str(annotation).split("|")]
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    return kinds[next(p for p in parts if p != "None")], "None" in parts


# Unbounded lru_cache on purpose: its key is a section name and an unknown one raises (an exception
# is never cached), so it holds at most len(SECTIONS) = 4 entries of a few KB each.
@functools.lru_cache(maxsize=None)
def option_specs(section: str) -> tuple[OptionSpec, ...]:
    """Every option of a config section ("data", "model", "train", "landscape"), in field order."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r}: choose one of {', '.join(SECTIONS)}")
    out = []
    for f in fields(SECTIONS[section]):
        kind, optional = _type_of(f.type)
        meta = dict(f.metadata.get("option", {}))
        out.append(OptionSpec(name=f"{section}.{f.name}", default=f.default, kind=kind, optional=optional,
                              **meta))
    return tuple(out)


def option_spec(name: str) -> OptionSpec:
    """The spec of one option by its path, e.g. option_spec("train.eps").help / .min / .max / .choices."""
    section, _, field_name = name.partition(".")
    for spec in option_specs(section):
        if spec.name == name:
            return spec
    raise ConfigError(f"unknown option {name!r}: use a field path such as train.eps or data.image_size")


def check_options(section: str, cfg: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Check every field of `cfg` against its spec (range, choices, type); ConfigError on the first bad one."""
    for spec in option_specs(section):
        field_name = spec.name.partition(".")[2]
        if field_name not in skip:
            spec.check(getattr(cfg, field_name))


def validate_data(d: DataConfig) -> None:
    """Raise ConfigError with a message naming the field and the fix."""
    # the normal class is a digit only for the digit data sets (folders and MVTec ignore it)
    check_options("data", d, skip=("normal_class",))
    if d.dataset in ("digits", "mnist", "fashion-mnist"):
        option_spec("data.normal_class").check(d.normal_class)


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError with a message naming the field and the fix."""
    d, m = cfg.data, cfg.model
    validate_data(d)
    check_options("model", m)
    check_options("train", cfg.train)
    if m.kernel_size % 2 == 0:
        raise ConfigError(f"kernel size {m.kernel_size} must be an odd number such as 3 or 5")
    if d.image_size % m.patches:
        raise ConfigError(
            f"patches={m.patches} must divide the image size {d.image_size}: "
            "choose a patch count that divides it")
    if d.image_size // m.patches < 4:
        raise ConfigError(f"patches of {d.image_size // m.patches} px are too small: use fewer patches")
