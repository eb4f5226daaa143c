"""Plain helpers that turn finished runs into what the pages show (no Streamlit here, so
tests reach them directly): result rows for CSV/JSON, per-model thresholds, the example images
of the reconstruction grid (paper Fig. 4), and the numbers the pages' explanations quote
(computed from `lamp_core.losses`, so the text cannot drift from the code)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from lamp_core import data as data_mod
from lamp_core.config import RunConfig, run_key
from lamp_core.evaluate import NORMAL_PERCENTILE, normal_percentile_threshold, reconstruct
from lamp_core.losses import loss_curves

# Column order of the results table: what differs between rows and the metrics first, so AUROC
# is visible without scrolling sideways in a 1400-px window; every other setting follows.
ROW_ORDER = ("loss", "seed", "auroc", "average_precision", "f1_at_normal_p95", "pixel_auroc",
             "final_train_loss", "train_seconds", "from_store", "base_loss", "lamp", "eps", "max_over",
             "detach_max", "optimizer", "lr", "batch_size", "epochs", "dataset", "normal_class", "category",
             "image_size", "stopped", "config_key")


def result_row(name: str, record) -> dict[str, Any]:
    """One flat row per run: the settings that differ between runs and every metric."""
    cfg: RunConfig = record.result.config
    ev = record.evaluation
    t, d = cfg.train, cfg.data
    hist = record.result.history.get("loss", [])
    return {
        "loss": name, "base_loss": t.base_loss, "lamp": t.lamp, "eps": t.eps, "max_over": t.max_over,
        "detach_max": t.detach_max, "optimizer": t.optimizer, "lr": t.lr, "batch_size": t.batch_size,
        "epochs": t.epochs, "seed": t.seed, "dataset": d.dataset, "normal_class": d.normal_class,
        "category": d.category, "image_size": d.image_size,
        "auroc": None if ev is None else ev.auroc,
        "average_precision": None if ev is None else ev.average_precision,
        # not the stored f1_max: with 90% anomalous test images (MNIST one-class) its best F1 is
        # that of flagging everything, the same ≈0.947 for every model (lamp_core.evaluate)
        "f1_at_normal_p95": None if ev is None else ev.f1_at_normal_p95,
        "pixel_auroc": None if ev is None else ev.pixel_auroc,
        "final_train_loss": hist[-1] if hist else None,
        "train_seconds": round(record.result.seconds, 3), "stopped": record.result.stopped,
        "from_store": record.cached, "config_key": run_key(cfg),
    }


def percentile_thresholds(evaluations: Mapping[str, Any], q: float) -> dict[str, float]:
    """Each model's threshold at the q-th percentile of its own normal test scores: the same
    false-positive budget for both models, whatever the scale of their scores."""
    # the engine's own rule, so the slider at 95 and the table's f1_at_normal_p95 agree
    return {name: normal_percentile_threshold(ev.scores, ev.labels, q) for name, ev in evaluations.items()}


def pick_examples(labels: Sequence[int], scores: Sequence[float], k: int = 4) -> list[int]:
    """k normal and k anomalous test images, spread evenly over each group's score ranking
    (from typical to hardest), so the grid is neither cherry-picked nor random."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    picked: list[int] = []
    for lab in (0, 1):
        idx = np.flatnonzero(labels == lab)
        if idx.size == 0:
            continue
        ranked = idx[np.argsort(scores[idx])]
        pos = np.unique(np.linspace(0, ranked.size - 1, min(k, ranked.size)).round().astype(int))
        picked += ranked[pos].tolist()
    return picked


def recon_examples(records: Mapping[str, Any], k: int = 4) -> dict[str, Any]:
    """Inputs, each model's reconstructions and masks for the grid: arrays (K, C, H, W)."""
    first = next(iter(records.values()))
    dataset = data_mod.load(first.result.config.data)
    idx = pick_examples(first.evaluation.labels, first.evaluation.scores, k)
    x = dataset.test[idx]                                        # (K, C, H, W)
    recons = {name: reconstruct(rec.result.model(), x).numpy() for name, rec in records.items()}
    masks = dataset.test_masks[idx].numpy() if dataset.test_masks is not None else None
    labels = dataset.test_labels[idx].tolist()
    titles = [example_title(lab, dataset.test_groups[i] if dataset.test_groups else None)
              for i, lab in zip(idx, labels)]
    return {"inputs": x.numpy(), "recons": recons, "masks": masks, "titles": titles}


def example_title(label: int, group: str | None) -> str:
    """A grid column's title: "normal" or "anomalous", then the image's group (its class or
    defect type, wrapped onto lines of its own by `figures.fig_recon_grid`) unless the group
    only repeats the label, as an upload's normal/ and anomalous/ folders do."""
    kind = "normal" if label == 0 else "anomalous"
    return kind if not group or group == kind else f"{kind} ({group})"


def first_seed_note(seed: int, n_seeds: int) -> str:
    """Which run a one-run figure shows, for its title: the first seed of the comparison."""
    return f"seed {seed}" if n_seeds < 2 else f"seed {seed}, the first of {n_seeds} seeds"


def metrics_note(labels: Sequence[int]) -> str:
    """What average precision and the threshold F1 of the results table measure, with the
    chance levels of this test set (computed from its labels, anomalous = 1)."""
    q = NORMAL_PERCENTILE                               # the percentile of f1_at_normal_p95
    share = float(np.mean(np.asarray(labels) == 1)) if len(labels) else float("nan")
    budget = (100 - q) / 100                            # share of normal images flagged at the threshold
    # a ranking at random flags each group alike: recall = budget, precision = the anomalous share
    f1_random = 2 * share * budget / (share + budget) if share + budget > 0 else 0.0
    return (f"**average_precision**: the area under the precision-recall curve, anomalous images being the "
            f"positives; a detector that ranks at random scores the share of anomalous test images, "
            f"{share:.2f} here, not 0.5. "
            f"**f1_at_normal_p95**: the F1 of flagging every image scored at or above the {q:g}th percentile of "
            f"the model's own normal test scores (the threshold slider's start: {100 - q:g}% of normal images "
            f"flagged); a ranking at random scores about {f1_random:.2f}, a perfect one 1. The best F1 over all "
            f"thresholds is not shown: flagging every image already gives {2 * share / (1 + share):.3f} here.")


def seed_configs(cfg: RunConfig, seeds: int) -> dict[str, list[RunConfig]]:
    """Base and LAMP configs for seeds s0..s0+n-1 (same seed => same initial weights and batches).
    A base run's LAMP options cannot change it: `run_key` ignores them, so changing eps never
    retrains the base."""
    s0 = cfg.train.seed
    return {"base": [cfg.with_train(lamp=False, seed=s0 + s) for s in range(seeds)],
            "LAMP": [cfg.with_train(lamp=True, seed=s0 + s) for s in range(seeds)]}


# ----------------------------------------------------------------------------- explanations

def lamp_below_base_up_to(eps: float, base: str = "l2", points: int = 20001, *, max_over: str = "fixed",
                          residual_range: float = 1.0) -> float | None:
    """The base value B below which the LAMP element -log(1 - B/max(B)·(1-eps)) is smaller than
    B itself: None when LAMP lies below the base on the whole plotted range, 0.0 when it lies
    above everywhere. max(B) is the bound 1 ("fixed", the default) or the largest base value on
    the plotted range ("sample"). From `losses.loss_curves`, i.e. the code that draws Fig. 2."""
    c = loss_curves(base, eps=eps, residual_range=residual_range, points=points, max_over=max_over)
    b, lamp = np.asarray(c["base"]), np.asarray(c["lamp"])
    pos = b > 0
    above = pos & (lamp > b)
    if not above.any():
        return None
    below = pos & (lamp < b)
    if not below.any():
        return 0.0
    return float(b[below].max())


def lamp_vs_base_sentence(eps: float, max_over: str = "fixed", residual_range: float = 1.0) -> str:
    """Where the LAMP curve lies against its base, for the reading of max(B) on screen: the
    Loss curves page's first statement. Every number comes from `lamp_below_base_up_to`, i.e.
    from the curves the page draws."""
    if max_over == "fixed":
        cross = lamp_below_base_up_to(eps)
        if cross is None:
            return (f"With the fixed bound and ε = {eps:g}, the LAMP curve lies **below** its base on the whole "
                    "range: $-\\log(1-(1-\\epsilon)B)$ starts with slope $1-\\epsilon < 1$ and does not catch up "
                    "before B = 1.")
        return (f"With the fixed bound and ε = {eps:g}, the LAMP curve lies **below** its base for base values "
                f"B below about {cross:.2g} (slope $1-\\epsilon$ at 0) and **above** it beyond, where the "
                "logarithm bends up towards the largest residual.")
    parts = []
    for base, name in (("l1", "L1"), ("l2", "L2")):
        top = float(np.max(loss_curves(base, eps=eps, residual_range=residual_range, points=3,
                                       max_over=max_over)["base"]))          # max(B) on the plotted range
        cross = lamp_below_base_up_to(eps, base, max_over=max_over, residual_range=residual_range)
        slope = (1 - eps) / top
        where = ("**below** its base on the whole range" if cross is None else
                 "**above** its base on the whole range" if cross == 0.0 else
                 f"**below** its base for B below about {cross:.2g} and **above** it beyond")
        parts.append(f"{name}, max B = {top:.2g} and so slope {slope:.2g} at B = 0, lies {where}")
    return (f"With *sample* and ε = {eps:g}, each curve is divided by the largest base value on the plotted "
            f"range ±{residual_range:g}, so each LAMP curve starts with slope $(1-\\epsilon)/\\max B$: "
            + "; ".join(parts) + ".")


def fixed_equals_sample(residual_range: float, eps: float) -> bool:
    """Whether the two readings of max(B) draw the same curves at this range: they do when the
    largest base value on the plotted range is the fixed bound 1 (a range of ±1)."""
    return all(np.allclose(loss_curves(b, eps=eps, residual_range=residual_range, max_over="fixed")["lamp"],
                           loss_curves(b, eps=eps, residual_range=residual_range, max_over="sample")["lamp"])
               for b in ("l1", "l2"))


def auroc_spread_note(n_seeds: int) -> str:
    """What the ± after an AUROC means, for the number of seeds shown."""
    if n_seeds < 2:
        return ("One seed: no spread to show. Train with several seeds to see how much AUROC moves with "
                "the initial weights and batch order alone.")
    return (f"± is the standard deviation over the {n_seeds} seeds (initial weights and batch order; the data "
            "and the test set are the same). A difference between base and LAMP smaller than this spread "
            "can come from the seeds alone; with few seeds the spread itself is rough.")


SHARPNESS_NOTE = """\
**What the sharpness numbers measure** (all on the surfaces' metric and BatchNorm mode, at the
trained weights θ):
- **top Hessian eigenvalue (λmax)**: the curvature along the single steepest direction in weight
  space (power iteration on Hessian-vector products).
- **Hessian trace (Hutchinson)**: the curvature summed over *all* directions (a random-probe
  estimate, ± its standard error). A loss can be steep along one direction and flat along most
  others, or the reverse, so λmax and the trace can rank two models differently.
- **mean relative increase at r**: the average of (loss(θ + r·d) − loss(θ)) / loss(θ) over a few random
  filter-normalised directions d at a finite distance r. It is normalised by the centre loss, so a
  model with a lower loss at θ can show a *larger* relative increase while its absolute curvature
  (λmax, trace) is smaller; it also sees beyond the quadratic neighbourhood the Hessian describes.

These numbers come from one model per loss (first seed) and a few random probes: compare them
across direction seeds and training seeds before concluding that one landscape is sharper.
"""


LAYOUT_PREFIXES = {
    "mvtec": ("train/good/", "test/", "ground_truth/"),
    "split": ("train/normal/", "test/normal/", "test/anomalous/", "masks/"),
    "unsplit": ("normal/", "anomalous/", "masks/"),
}


def files_outside_layout(path) -> tuple[str, list[str]]:
    """The layout the engine detects in a folder or zip, and the files it will not read because
    they lie outside that layout's folders (the engine's own notes cover files inside them)."""
    from lamp_core.data.common import list_files, strip_common_root
    from lamp_core.data.folder import LAYOUT_MARKERS, detect_layout

    files = strip_common_root(list_files(path), LAYOUT_MARKERS)
    layout = detect_layout(files)
    prefixes = LAYOUT_PREFIXES.get(layout)
    if prefixes is None:
        return layout, []
    return layout, sorted(k for k in files if not k.startswith(prefixes))


def original_image_stats(path, limit: int = 5000) -> list[tuple[str, int]]:
    """How the uploaded images are stored, before any resizing: [("28x28 L", count), ...],
    most common first. Only image headers are decoded (Pillow's lazy open), at most `limit`."""
    import io
    from collections import Counter

    from PIL import Image

    from lamp_core.data.common import is_image_name, list_files

    counts: Counter = Counter()
    for i, (rel, reader) in enumerate(sorted(list_files(path).items())):
        if i >= limit:
            break
        if not is_image_name(rel):
            continue
        try:
            with Image.open(io.BytesIO(reader())) as im:
                counts[f"{im.size[0]}x{im.size[1]} {im.mode}"] += 1
        except Exception:  # noqa: BLE001 - unreadable files are reported by the loader's notes
            continue
    return counts.most_common()


# ----------------------------------------------------------------------------- trained enough?

def training_summary(records: Mapping[str, Sequence[Any]]):
    """The training indicator of a comparison (lamp_core.convergence): still learning when any of
    its runs is. Each run is judged on its own curve and its own number of training images."""
    from lamp_core.convergence import summarize, training_status
    from lamp_core.lesson import train_images
    return summarize([training_status(r.result.history, train_images(r.result.config))
                      for rl in records.values() for r in rl])


def verdict_lines(records: Mapping[str, Sequence[Any]], status) -> list[str]:
    """What the comparison shows, worded as its paired interval and the training indicator allow,
    and, for the MNIST one-class protocol at a batch size of the converged Table 1, that table's
    answer beside it (ten classes, converged; bench/results/table1.md)."""
    from lamp_core.lesson_notes import difference_words
    from lamp_core.stats import paired
    base, lamp = records.get("base", []), records.get("LAMP", [])
    by_seed = {r.result.config.train.seed: r.evaluation.auroc for r in base}
    diffs = [r.evaluation.auroc - by_seed[r.result.config.train.seed] for r in lamp
             if r.result.config.train.seed in by_seed]
    if not diffs:
        return []
    lines = [f"**LAMP − base AUROC, paired by seed:** {difference_words(paired(diffs), still_learning=status.learning)}."]
    cfg = base[0].result.config
    if cfg.data.dataset == "mnist" and not cfg.train.lamp:
        from lamp_core.references import converged_table1
        conv = converged_table1().get(cfg.train.batch_size)
        if conv:
            lines.append(
                f"**The lab's converged result** at batch {cfg.train.batch_size} (ten digits, {conv['max_train']} "
                f"images, {conv['epochs']} epochs, {conv['pairs']} pairs): L2 "
                f"{conv['l2']:.3f}, LAMP {conv['lamp']:.3f}, LAMP − L2 {conv['delta']:+.3f} "
                f"[{conv['delta_lo']:+.3f}, {conv['delta_hi']:+.3f}] over (class, seed) pairs, "
                f"[{conv['delta_class_lo']:+.3f}, {conv['delta_class_hi']:+.3f}] over classes. One digit's short runs "
                "can differ from it: "
                "compare your difference with its interval, not with zero.")
    return lines
