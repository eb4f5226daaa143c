"""Has a run finished learning? The plain indicator every page that shows AUROC puts beside it.

A difference between two models that are still learning is not a finding (DESIGN.md, "Doing the
science"), so the verdicts the pages word follow this indicator. The evidence is the curve the
run recorded: its held-out normal images' mean anomaly score where the data holds a validation
share (a training loss on a few images keeps falling long after by memorising them), else its
training loss. The rate that matters is how fast that curve still falls per image the model
sees: the relative fall over the last quarter of the epochs, per 1000 training images passed
(an epoch of 60 images teaches less than an epoch of 1000, and a full-batch epoch is one step).

An autoencoder's loss never stops falling altogether, so "trained" is measured against the lab's
own converged protocol (1000 MNIST images per class, 20 epochs, whose L2 AUROC is at the paper's
level): in its runs the loss falls by at most CONVERGED_RATE_MAX per 1000 images over the last
quarter (bench/results/convergence_calibration.md), and a run is *still learning* when it falls
faster than LEARNING_RATE, a margin above that. A run that learns no faster at its end than the
converged runs did is "trained".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

# The largest last-quarter fall per 1000 images measured over the converged protocol's runs
# (bench/results/convergence_calibration.md), and the threshold a margin above it.
CONVERGED_RATE_MAX = 0.05
LEARNING_RATE = 0.06
PER_IMAGES = 1000

TRAINED, STILL_LEARNING, UNKNOWN = "trained", "still learning", "unknown"


@dataclass(frozen=True)
class TrainingStatus:
    state: str          # TRAINED, STILL_LEARNING or UNKNOWN (too few epochs to tell)
    rate: float | None  # relative fall of the curve over its last quarter, per 1000 training images seen
    drop: float | None  # relative fall of the curve over the last quarter of the epochs
    curve: str          # "validation score" or "training loss"
    epochs: int

    @property
    def learning(self) -> bool:
        return self.state == STILL_LEARNING

    def sentence(self) -> str:
        """One plain line for a page: what the indicator says and on what evidence."""
        if self.state == UNKNOWN:
            return f"Too few epochs ({self.epochs}) to tell whether the model has finished learning."
        pct = f"{100 * self.rate:.1f}% per {PER_IMAGES} images"
        if self.state == STILL_LEARNING:
            return (f"Still learning: at the end of its {self.epochs} epochs its {self.curve} still fell "
                    f"{pct} seen, faster than in the lab's converged runs (at most "
                    f"{100 * CONVERGED_RATE_MAX:.1f}%). A difference between models that are still learning "
                    "is not a finding.")
        return (f"Trained: at the end of its {self.epochs} epochs its {self.curve} fell {pct} seen, no faster "
                f"than in the lab's converged runs (up to {100 * CONVERGED_RATE_MAX:.1f}%).")


def last_quarter_drop(curve: Sequence[float]) -> float | None:
    """Relative fall of a curve from the start of its last quarter to its end ((a - b) / a);
    None for fewer than 4 points or a non-positive start."""
    vals = [float(v) for v in curve]
    if len(vals) < 4:
        return None
    start = vals[len(vals) - max(1, len(vals) // 4) - 1]
    if not start > 0:
        return None
    return (start - vals[-1]) / start


def quarter_epochs(curve_epochs: Sequence[float], n_points: int) -> float:
    """Epochs spanned by the last quarter of a curve of n_points (as last_quarter_drop takes it)."""
    k = max(1, n_points // 4)
    return float(curve_epochs[-1]) - float(curve_epochs[-1 - k])


def training_status(history: Mapping[str, Sequence[float]], n_train: int) -> TrainingStatus:
    """The indicator for one run from its recorded history (TrainResult.history) and the number
    of normal training images it trained on."""
    val = history.get("val_score") or []
    loss = history.get("loss") or []
    if len(val) >= 4:
        curve, name, at = val, "validation score", history.get("val_epoch") or list(range(1, len(val) + 1))
    else:
        curve, name, at = loss, "training loss", list(range(1, len(loss) + 1))
    drop = last_quarter_drop(curve)
    if drop is None or n_train <= 0:
        return TrainingStatus(UNKNOWN, None, None, name, len(loss))
    images = quarter_epochs(at, len(curve)) * n_train
    rate = drop / (images / PER_IMAGES)
    return TrainingStatus(STILL_LEARNING if rate > LEARNING_RATE else TRAINED, rate, drop, name, len(loss))


def summarize(statuses: Sequence[TrainingStatus]) -> TrainingStatus:
    """The indicator of a group of runs (the seeds of a comparison): still learning when any is."""
    if not statuses:
        return TrainingStatus(UNKNOWN, None, None, "training loss", 0)
    known = [s for s in statuses if s.rate is not None]
    if not known:
        return statuses[0]
    return max(known, key=lambda s: s.rate)
