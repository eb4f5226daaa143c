"""The lesson: the lab guide's exercises as data, all built from one default comparison.

Every place that runs or quotes an exercise takes its settings from here: the app's pages (their
untouched widgets give these configs, so their runs have these `run_key`s), the guide and the
teacher notes (rendered by `lamp_core.lesson_notes` with the numbers `lamp lesson measure`
recorded in `assets/expected_results.json`), and the benchmarks. No page declares a default of
its own.

The default comparison was chosen by measurement (bench/results/quick_default_study.md): the
cheapest setting whose verdicts, over 10 classes x 3 seeds, have the signs of the lab's
converged results, within a click-to-ROC budget of about 20 s for 3 seeds x base and LAMP on a
2-core CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from .config import DEFAULT_IMAGE_SIZE, DataConfig, LandscapeConfig, ModelConfig, RunConfig, TrainConfig
from .data import MNIST_SUBSET_DIR

# ----------------------------------------------------------------------------- the one default

# Real MNIST offline (the subset shipped in assets/mnist_subset), digit 8 normal, a seeded share of
# its training images, all 2,000 stratified test images of the subset (no cap: the run identity is
# the same from every page), 28 px, Adam. Values from bench/results/quick_default_study.md.
DEFAULT_CONFIG = RunConfig(
    data=DataConfig(dataset="mnist", data_root=str(MNIST_SUBSET_DIR), normal_class=8, image_size=28, max_train=500),
    model=ModelConfig(),
    train=TrainConfig(epochs=5, batch_size=32, lr=1e-3))
DEFAULT_SEEDS = 3                  # seeds per loss: the spread is on screen from the first click
BATCH_SIZES = (1, 4, 16, 32, 128, 1024)   # the paper's Table 1

# Landscapes in the app: a 13x13 grid over 64 normal images (coarse pass first, then refined), and
# cheaper sharpness estimates than the command line's defaults, so a surface takes tens of seconds.
# Metric l2 by default: base and LAMP side by side must be measured with one yardstick (LAMP's own
# loss is on a larger scale, so "own" would make it look steeper for that reason alone).
DEFAULT_LANDSCAPE = LandscapeConfig(nx=13, ny=13, span=1.0, n_images=64, metric="l2", hessian_iters=10,
                                    hutchinson_samples=8, radius_directions=4)
BATCH_LANDSCAPE = replace(DEFAULT_LANDSCAPE, nx=11, ny=11)   # coarser: six sizes to compute

UPLOAD_IMAGE_SIZE = 64             # what the Your data page resizes uploads to

# Image size per data source when a page switches to it (the paper's 28 px digits, 64 px otherwise).
IMAGE_SIZE = DEFAULT_IMAGE_SIZE   # declared once, in lamp_core.config

StepMode = Literal["same_epochs", "same_steps"]
STEP_MODES: dict[str, str] = {
    "same_epochs": "same epochs (the paper's Table 1: a larger batch takes fewer steps)",
    "same_steps": "same number of steps (a larger batch sees the data more often)",
}


def seeds_of(cfg: RunConfig, n: int = DEFAULT_SEEDS) -> list[int]:
    """The training seeds of an exercise: n seeds from the config's own seed upward."""
    return [cfg.train.seed + i for i in range(n)]


# ----------------------------------------------------------------------------- steps and budgets

# Optimizer steps per epoch as training takes them (one home: lamp_core.run_types, which the
# trainer, the queue's estimates and the Ray ordering use too)
from .run_types import steps_per_epoch  # noqa: E402


def train_images(cfg: RunConfig) -> int:
    """Normal training images a config trains on (its data set, after the cap): read from the
    data set itself (`lamp_core.data.load` caches it), so an upload or a small class is counted."""
    from . import data as data_mod
    return int(len(data_mod.load(cfg.data).train))


def total_steps(cfg: RunConfig, n_train: int | None = None) -> int:
    n = train_images(cfg) if n_train is None else n_train
    return steps_per_epoch(n, cfg.train.batch_size) * cfg.train.epochs


def default_steps() -> int:
    """Optimizer steps of one run of the default comparison."""
    return total_steps(DEFAULT_CONFIG)


def batch_size_config(cfg: RunConfig, batch_size: int, mode: StepMode = "same_epochs",
                      n_train: int | None = None) -> RunConfig:
    """`cfg` at another batch size. "same_epochs" keeps the epochs (the paper's Table 1: a larger
    batch takes fewer steps); "same_steps" gives it as many optimizer steps as `cfg` takes at its own
    batch size (the epochs rounded up), which separates the batch size from the length of training."""
    if mode == "same_epochs":
        return cfg.with_train(batch_size=batch_size)
    if mode != "same_steps":
        raise ValueError(f"unknown step mode {mode!r}: choose one of {', '.join(STEP_MODES)}")
    n = train_images(cfg) if n_train is None else n_train
    target = steps_per_epoch(n, cfg.train.batch_size) * cfg.train.epochs
    per_epoch = steps_per_epoch(n, batch_size)
    return cfg.with_train(batch_size=batch_size, epochs=max(1, math.ceil(target / max(per_epoch, 1))))


# Training budget for data the lesson did not measure (uploads, other folders): as many optimizer
# steps as the default comparison takes, so that a set of a hundred images is not stopped after 20
# steps, within a cap on image passes that keeps a comparison of large images affordable on a CPU.
MIN_EPOCHS = 5
MAX_IMAGE_PASSES = 20_000


def budget_epochs(n_train: int, batch_size: int, *, target_steps: int | None = None) -> int:
    """Epochs that give `n_train` images the default comparison's number of steps at `batch_size`
    (at least MIN_EPOCHS, at most MAX_IMAGE_PASSES / n_train)."""
    target = default_steps() if target_steps is None else target_steps
    per_epoch = steps_per_epoch(n_train, batch_size)
    if per_epoch == 0:
        return MIN_EPOCHS
    want = math.ceil(target / per_epoch)
    cap = max(MIN_EPOCHS, MAX_IMAGE_PASSES // max(n_train, 1))
    return int(max(MIN_EPOCHS, min(want, cap)))


# ----------------------------------------------------------------------------- the exercises

@dataclass(frozen=True)
class Exercise:
    """One exercise of the guide: where it runs, with what, what to ask and what to look for."""

    key: str                      # name in assets/expected_results.json
    page: str                     # the app page it runs on
    title: str
    config: RunConfig | None      # None: nothing trains (the loss curves)
    seeds: tuple[int, ...]
    questions: tuple[str, ...]
    observe: str                  # what the student should see (the notes fill in the numbers)


EXERCISES: dict[str, Exercise] = {e.key: e for e in (
    Exercise(
        "loss_curves", "Loss curves", "Loss curves (Fig. 2)", None, (),
        ("Why does LAMP's gradient grow towards the largest residual, even for L1?",
         "What happens to the largest element's loss, and to its gradient, as ε → 0?"),
        "the LAMP loss at the largest residual is −log ε and its slope grows like 1/ε"),
    Exercise(
        "default_comparison", "Train & compare", "Train & compare (Fig. 4, ROC)", DEFAULT_CONFIG,
        tuple(seeds_of(DEFAULT_CONFIG)),
        ("Is LAMP's AUROC higher than the base's? By how much, compared with the spread over seeds?",
         "In the score histograms, which model separates normal and anomalous scores better? At the "
         "95th-percentile threshold, how many anomalies does each miss?",
         "In the reconstruction grid, does the LAMP model turn anomalies \"towards normal\" (paper Fig. 4)?"),
        "base and LAMP AUROC per seed, their paired difference, and the converged Table 1 beside them"),
    Exercise(
        "batch_size", "Batch size", "Batch size (Table 1, Fig. 3)", DEFAULT_CONFIG,
        tuple(seeds_of(DEFAULT_CONFIG)),
        ("Does AUROC change with batch size for both losses, as in the paper's Table 1?",
         "How much of the change comes from the number of optimizer steps rather than from the batch size? "
         "Switch to 'same number of steps' and compare.",
         "Does LAMP's advantage change with the batch size, beyond the error bars?"),
        "AUROC against batch size with error bars over seeds, in both step modes, beside the converged "
        "Table 1 and the paper's"),
    Exercise(
        "landscape", "Loss landscape", "Loss landscape (Fig. 1)", DEFAULT_CONFIG, (DEFAULT_CONFIG.train.seed,),
        ("The own LAMP surface is higher and steeper: how much of that is only LAMP's larger scale?",
         "Do the top Hessian eigenvalue and the trace agree with what the picture shows?"),
        "steeper in LAMP's own loss, flatter (or not steeper) in the common L2 metric"),
    Exercise(
        "upload", "Your data", "Your data", None, (0,),
        ("Is my base model good enough, and not perfect, so that a difference could show?",),
        "the example zip's validation report, then AUROC at the training budget its size gets"),
)}


def exercise(key: str) -> Exercise:
    try:
        return EXERCISES[key]
    except KeyError:
        raise KeyError(f"unknown exercise {key!r}: one of {', '.join(EXERCISES)}") from None


# ----------------------------------------------------------------------------- measured numbers

# What `lamp lesson measure` recorded by training every exercise over its seeds with the engine:
# the guide's and the teacher notes' numbers are rendered from it, and the pages quote it (e.g.
# the Batch size page's cost of "Train every size"). Format (all AUROC lists in seed order):
#   {"default_comparison": {"config": RunConfig dict (first seed), "seeds": [...],
#                           "base_auroc": [...], "lamp_auroc": [...], ...},
#    "batch_size": {"same_epochs" | "same_steps": {"<batch>": {"config", "seeds", "base_auroc",
#                   "lamp_auroc", "steps", "epochs", "train_seconds": {"base": [...], "lamp": [...]}}},
#                   "wall_seconds": {"same_epochs": s, "same_steps": s}},
#    "landscape": {...}, "upload": {...}, "environment": {...}}
def expected_path():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent / "assets" / "expected_results.json"


def load_expected(path=None) -> dict | None:
    """The recorded lesson numbers, or None where they have not been measured (a fresh checkout
    always has them: assets/expected_results.json is committed)."""
    import json

    from .config import LampError
    p = expected_path() if path is None else path
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LampError(f"{p.name} is not valid JSON ({exc.__class__.__name__}): restore it from git or "
                        "rerun `lamp lesson measure`") from None


# ----------------------------------------------------------------------------- the class experiment

# The class reproduces Table 1 together (lamp_core.class_experiment, the Class results page): each
# session is handed one digit x seed x batch-size cell of this grid over the one default. Ten
# digits because the paper's Table 1 averages its ten one-class tasks; three seeds as the default
# comparison; batch 32 (the default, so Train & compare's runs are cells of it) and 128 (the size
# where the README reports the lab's converged LAMP effect beside the paper's): 60 cells, 120 runs,
# two cells per student in a class of 30. The teacher may set another grid on the page.
CLASS_GRID = {"digits": tuple(range(10)), "seeds": tuple(range(DEFAULT_SEEDS)), "batch_sizes": (32, 128),
              "mode": "same_epochs"}

EXERCISES["class_experiment"] = Exercise(
    "class_experiment", "Class results", "Class experiment (Table 1 together)", DEFAULT_CONFIG,
    tuple(CLASS_GRID["seeds"]),
    ("Your one cell's LAMP − base difference: how far is it from the class's mean at that batch size?",
     "How does the interval of Δ shrink as the class's runs arrive? At what n does it exclude 0, if ever?",
     "The interval over pairs and the one over digits: why is the second wider, and which answers \"does LAMP "
     "help on a new digit\"?"),
    "the class's Table 1 with every n, Δ against batch size with error bars that narrow as cells finish, beside "
    "the lab's converged Table 1 and the paper's")
