"""Benchmark: images per second of `lamp_core.train.train()` against a bare PyTorch loop.

Same model (same initial weights), same data tensor, same optimizer and loss, at batch sizes
1, 16 and 128, in one run. The bare loop is the plain module in contiguous memory with torch's
default Adam; train() runs it in channels-last memory with a fused Adam step (`lamp_core.stack`). The two are measured alternately, several rounds each, and the ratio
uses the best round of each (the least disturbed by other processes on a shared machine).
Target: train() at >= 0.95x the bare loop.

    python bench/train_throughput.py [--rounds 3] [--out bench/results/train_throughput]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from lamp_core.config import DataConfig, RunConfig, TrainConfig
from lamp_core.data import load
from lamp_core.losses import base_map, reduce_base
from lamp_core.train import initial_model, train

IMAGES = {1: 384, 16: 3072, 128: 6144}   # images per timed run: at least a few seconds each


def bare_loop(cfg: RunConfig, x: torch.Tensor, images: int) -> float:
    model = initial_model(cfg, x.shape[1], x.shape[-1]).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    bs = cfg.train.batch_size
    gen = torch.Generator().manual_seed(0)
    seen = 0
    start = time.perf_counter()
    while seen < images:
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), bs):
            batch = x[order[i:i + bs]]
            loss = reduce_base(base_map("l2", batch, model(batch)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(batch)
    return seen / (time.perf_counter() - start)


def lamp_train(cfg: RunConfig, data, images: int) -> float:
    epochs = max(1, round(images / len(data.train)))
    res = train(cfg.with_train(epochs=epochs), data)
    return epochs * len(data.train) / res.seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's own)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "train_throughput"))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    # MNIST-sized images from the built-in digits (28x28): no download, same model as the paper's small AE
    data_cfg = DataConfig(dataset="digits", normal_class=8, image_size=28)
    # repeat the 122 training digits so that one epoch holds several batches even at 128
    loaded = load(data_cfg)
    data = dataclasses.replace(loaded, train=loaded.train.repeat(8, 1, 1, 1))
    rows = []
    for bs in (1, 16, 128):
        cfg = RunConfig(data=data_cfg, train=TrainConfig(batch_size=bs, base_loss="l2", lamp=False, device="cpu"))
        bare, ours = [], []
        for _ in range(a.rounds):
            bare.append(bare_loop(cfg, data.train, IMAGES[bs]))
            ours.append(lamp_train(cfg, data, IMAGES[bs]))
        row = {"batch_size": bs, "bare_img_s": max(bare), "train_img_s": max(ours),
               "ratio": max(ours) / max(bare), "bare_rounds": bare, "train_rounds": ours}
        rows.append(row)
        print(f"batch {bs:>4}: bare {row['bare_img_s']:8.1f} img/s   train() {row['train_img_s']:8.1f} img/s   "
              f"ratio {row['ratio']:.3f}", flush=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "machine": platform.machine(), "rounds": a.rounds, "images_per_run": IMAGES,
            "command": "python bench/train_throughput.py --rounds %d%s" % (
                a.rounds, f" --threads {a.threads}" if a.threads else ""),
            "load_average": os.getloadavg()[0]}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# train() throughput against a bare PyTorch loop", "",
             f"Command: `{meta['command']}` (CPU, {meta['threads']} threads, torch {meta['torch']}; "
             f"load average {meta['load_average']:.1f} at the end: the cores were shared with other jobs).",
             "Best of the rounds for each side, measured alternately in one run. Target: ratio >= 0.95.", "",
             "| batch size | bare loop (img/s) | train() (img/s) | ratio |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['batch_size']} | {r['bare_img_s']:.1f} | {r['train_img_s']:.1f} | {r['ratio']:.3f} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
