"""Plain helpers that turn finished runs into what the pages show (no Streamlit here, so
tests reach them directly): result rows for CSV/JSON, per-model thresholds, and the example
images of the reconstruction grid (paper Fig. 4)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from lamp_core import data as data_mod
from lamp_core.config import DEFAULT_DETACH_MAX, DEFAULT_EPS, DEFAULT_MAX_OVER, RunConfig
from lamp_core.evaluate import reconstruct


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
        "f1_max": None if ev is None else ev.f1_max,
        "pixel_auroc": None if ev is None else ev.pixel_auroc,
        "final_train_loss": hist[-1] if hist else None,
        "train_seconds": round(record.result.seconds, 3), "stopped": record.result.stopped,
        "from_store": record.cached, "config_key": cfg.key(),
    }


def percentile_thresholds(evaluations: Mapping[str, Any], q: float) -> dict[str, float]:
    """Each model's threshold at the q-th percentile of its own normal test scores: the same
    false-positive budget for both models, whatever the scale of their scores."""
    out = {}
    for name, ev in evaluations.items():
        s, y = np.asarray(ev.scores), np.asarray(ev.labels)
        normal = s[y == 0]
        out[name] = float(np.percentile(normal if normal.size else s, q))
    return out


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
    titles = [("normal" if lab == 0 else "anomalous") + (f" ({dataset.test_groups[i]})" if dataset.test_groups else "")
              for i, lab in zip(idx, labels)]
    return {"inputs": x.numpy(), "recons": recons, "masks": masks, "titles": titles}


def seed_configs(cfg: RunConfig, seeds: int) -> dict[str, list[RunConfig]]:
    """Base and LAMP configs for seeds s0..s0+n-1 (same seed => same initial weights and batches)."""
    s0 = cfg.train.seed
    # the base run ignores LAMP's options: reset them so changing eps never retrains the base
    base = cfg.with_train(lamp=False, eps=DEFAULT_EPS, max_over=DEFAULT_MAX_OVER, detach_max=DEFAULT_DETACH_MAX)
    return {"base": [base.with_train(seed=s0 + s) for s in range(seeds)],
            "LAMP": [cfg.with_train(lamp=True, seed=s0 + s) for s in range(seeds)]}


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


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
