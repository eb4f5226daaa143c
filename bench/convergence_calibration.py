"""Calibrate the "still learning" indicator (lamp_core.convergence) on the lab's converged runs.

An autoencoder's training loss never stops falling altogether, so "trained" is measured against
the lab's converged protocol (1000 MNIST images per class, 20 epochs, whose L2 AUROC is at the
paper's level: bench/results/table1.md). This trains that protocol's runs at batch 32 and 128
(seed 0, every class, L2 and the default LAMP reading) on the MNIST subset the app ships, and
records each run's last-quarter fall of its training loss per 1000 images seen, beside the same
number for the app's quick default. `lamp_core.convergence.CONVERGED_RATE_MAX` must be at least
the largest converged rate, and a test checks it against bench/results/convergence_calibration.json.

    nice -n 10 .venv/bin/python bench/convergence_calibration.py --store <store folder>
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from lamp_core import lesson  # noqa: E402
from lamp_core.convergence import CONVERGED_RATE_MAX, LEARNING_RATE, training_status  # noqa: E402
from lamp_core.files import atomic_write  # noqa: E402
from lamp_core.store import RunStore  # noqa: E402
from lamp_core.sweep import run_sweep  # noqa: E402

OUT = ROOT / "bench" / "results" / "convergence_calibration"


def converged(cls: int, batch: int, lamp: bool):
    return lesson.DEFAULT_CONFIG.with_data(max_train=1000, normal_class=cls).with_train(
        epochs=20, batch_size=batch, lamp=lamp, seed=0, device="cpu")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="run store folder (resumable)")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--batch-sizes", default="32,128")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    classes = [int(c) for c in a.classes.split(",")]
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    store = RunStore(Path(a.store))
    groups = {"converged": [converged(c, b, lamp) for b in sizes for c in classes for lamp in (False, True)],
              "quick default": [lesson.DEFAULT_CONFIG.with_data(normal_class=c).with_train(seed=0, lamp=lamp,
                                                                                            device="cpu")
                                for c in classes for lamp in (False, True)]}
    rows = []
    for group, cfgs in groups.items():
        run_sweep(cfgs, store, threads=a.threads)
        for cfg in cfgs:
            rec = store.get(cfg)
            st = training_status(rec.result.history, lesson.train_images(cfg))
            rows.append({"group": group, "normal_class": cfg.data.normal_class, "batch_size": cfg.train.batch_size,
                         "train_images": lesson.train_images(cfg), "epochs": cfg.train.epochs, "lamp": cfg.train.lamp,
                         "auroc": round(rec.evaluation.auroc, 4), "rate_per_1000": round(st.rate, 5),
                         "last_quarter_drop": round(st.drop, 4), "state": st.state})
    conv = [r["rate_per_1000"] for r in rows if r["group"] == "converged"]
    quick = [r["rate_per_1000"] for r in rows if r["group"] == "quick default"]
    summary = {"converged_rate_max": max(conv), "converged_rate_median": sorted(conv)[len(conv) // 2],
               "quick_rate_min": min(quick), "quick_rate_median": sorted(quick)[len(quick) // 2],
               "CONVERGED_RATE_MAX": CONVERGED_RATE_MAX, "LEARNING_RATE": LEARNING_RATE,
               "converged_trained": sum(r["state"] == "trained" for r in rows if r["group"] == "converged"),
               "converged_runs": len(conv),
               "quick_still_learning": sum(r["state"] == "still learning" for r in rows if r["group"] == "quick default"),
               "quick_runs": len(quick)}
    atomic_write(OUT.with_suffix(".json"), (json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n").encode())
    md = ["# Calibration of the \"still learning\" indicator", "",
          f"Command: `nice -n 10 python bench/convergence_calibration.py --store <store> --classes {a.classes} "
          f"--batch-sizes {a.batch_sizes}`", "",
          "The rate is the relative fall of the training loss over the last quarter of the epochs, per 1000 "
          "training images seen (lamp_core.convergence). Converged: 1000 images of the class, 20 epochs, seed 0 "
          "(the protocol of bench/results/table1.md, on the MNIST subset the app ships); quick default: "
          "lamp_core.lesson.DEFAULT_CONFIG on every class.", "",
          "| runs | n | rate per 1000 images: median | max / min | AUROC median | read as |",
          "|---|---:|---:|---:|---:|---|"]
    for group, rs in (("converged", [r for r in rows if r["group"] == "converged"]),
                      ("quick default", [r for r in rows if r["group"] == "quick default"])):
        rates = sorted(r["rate_per_1000"] for r in rs)
        au = sorted(r["auroc"] for r in rs)
        states = {s: sum(r["state"] == s for r in rs) for s in ("trained", "still learning")}
        md.append(f"| {group} | {len(rs)} | {rates[len(rates) // 2]:.3f} | {rates[-1]:.3f} / {rates[0]:.3f} | "
                  f"{au[len(au) // 2]:.3f} | {states['trained']} trained, {states['still learning']} still learning |")
    md += ["", f"Thresholds in lamp_core/convergence.py: CONVERGED_RATE_MAX = {CONVERGED_RATE_MAX} (at least the "
           f"largest converged rate, {max(conv):.3f}), LEARNING_RATE = {LEARNING_RATE}: a run falling faster than "
           "that at its end is shown as still learning.", ""]
    atomic_write(OUT.with_suffix(".md"), "\n".join(md).encode())
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
