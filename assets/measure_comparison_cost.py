"""CPU cost of the app's default comparison, for the teacher notes (assets/teacher_notes.md).

Trains base and LAMP on the bundled MNIST subset (normal digit 8) with one thread and prints,
as one JSON object, the CPU seconds per epoch of each and the CPU seconds to score the 2000 test
images. CPU time depends far less than wall time on what else the machine runs, so it says what
a comparison costs on a quiet machine even when measured on a busy one.

    .venv/bin/python assets/measure_comparison_cost.py [--epochs 5] [--batch-sizes 32,1024]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lamp_core.config import DataConfig, RunConfig, TrainConfig  # noqa: E402
from lamp_core.data import MNIST_SUBSET_DIR, load  # noqa: E402
from lamp_core.evaluate import evaluate  # noqa: E402
from lamp_core.train import train  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-sizes", default="32,1024")
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = DataConfig(dataset="mnist", data_root=str(MNIST_SUBSET_DIR), normal_class=8, download=False)
    ds = load(data)
    train(RunConfig(data=data, train=TrainConfig(epochs=1)), ds)   # warm-up, not counted
    out = {}
    for bs in (int(b) for b in a.batch_sizes.split(",")):
        for lamp in (False, True):
            cfg = RunConfig(data=data, train=TrainConfig(epochs=a.epochs, batch_size=bs, lamp=lamp))
            start = time.process_time()
            result = train(cfg, ds)
            trained = time.process_time()
            evaluate(result.model(), ds)
            scored = time.process_time()
            out[f"batch {bs} {'LAMP' if lamp else 'base'}"] = {
                "cpu_s_per_epoch": round((trained - start) / a.epochs, 2), "score_cpu_s": round(scored - trained, 2)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
