"""Benchmark: the exact fast landscape evaluator against Li et al.'s per-point loop (issue 3).

One run, one trained 28x28 autoencoder (MNIST digit 8 from ../shared/data/mnist, 1 epoch; the
built-in digits set when MNIST is absent, with fewer images), one 21x21 grid over [-1, 1]^2,
512 evaluation images, metric "own" (the run's training loss), BN in eval mode:

* both evaluators compute every grid point, interleaved row by row (loop row j, then fast row j)
  so that load from other processes on a shared machine hits both alike; wall-clock and process
  CPU time are summed per method; the values must agree to 1e-5 (relative). The loop runs as Li
  et al.'s does, one point after another with torch's intra-op threads; the fast evaluator runs
  as compute_surface runs it: grid points spread over `workers` = the usable cores, each pool
  thread single-threaded (torch's process-wide setting untouched);
* the time to the first (coarse) picture: `compute_surface(method="fast")` from its call until
  its first `on_progress` (setup, centre and the coarse level included);
* achieved GFLOP/s of the forward pass (the module's multiply-adds x 2 x images / time, for both
  methods; the fast one performs fewer real FLOPs, so its figure is "effective") against a
  2048x2048 matrix product measured in the same run and thread setting.

    python bench/landscape_speed.py [--threads N] [--out bench/results/landscape_speed]

Targets: loop time / fast time >= 2; first picture <= 10% of the loop's time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent

from lamp_core import landscape as L  # noqa: E402
from lamp_core.config import DataConfig, LandscapeConfig, RunConfig, TrainConfig  # noqa: E402
from lamp_core.data import load  # noqa: E402
from lamp_core.train import train  # noqa: E402
from lamp_core.files import atomic_write  # noqa: E402

MNIST_REL = "../shared/data/mnist"


def forward_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of the module over x (convolutions only)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out.numel() * k

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model(x)
    for h in hs:
        h.remove()
    return total


def fast_macs(ev: L.FastEvaluator, params: dict) -> int:
    """Multiply-adds the fast evaluator really performs (its conv2d and matmul calls), counted
    by intercepting them with a TorchFunctionMode during one forward pass."""
    from torch.overrides import TorchFunctionMode
    total = 0

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            nonlocal total
            out = func(*args, **(kwargs or {}))
            if func in (F.conv2d, torch.conv2d):
                w = args[1]
                total += out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
            elif func in (torch.matmul, torch.Tensor.matmul):
                total += out.numel() * args[0].shape[-1]
            return out

    with Count():
        ev.forward(params)
    return total


def matmul_gflops(n: int = 2048, reps: int = 5, device: str = "cpu") -> float:
    """Best-of-`reps` float32 n x n matmul rate: the yardstick every benchmark's fraction is of.
    On CUDA with TF32 off (float32 proper, as training runs) and synchronised around each product."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", default="bench/results/landscape_speed")
    ap.add_argument("--grid", type=int, default=21)
    ap.add_argument("--images", type=int, default=512)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    os.chdir(ROOT)
    load_start = os.getloadavg()

    mnist = Path(MNIST_REL)
    if (mnist / "train-images-idx3-ubyte.gz").is_file():
        dcfg = DataConfig(dataset="mnist", data_root=MNIST_REL, download=False, max_train=a.images + 88,
                          max_test=200)
    else:
        dcfg = DataConfig(dataset="digits")
    cfg = RunConfig(data=dcfg, train=TrainConfig(epochs=1, batch_size=32, seed=0, device="cpu"))
    data = load(cfg.data)
    result = train(cfg, data)
    lcfg = LandscapeConfig(nx=a.grid, ny=a.grid, span=1.0, n_images=a.images, metric="own", bn_mode="eval")
    x = L.evaluation_images(data, lcfg)
    model = result.model()
    theta = {k: v.detach() for k, v in model.named_parameters()}
    d1, d2 = L.directions(model, lcfg.seed)
    gx, gy = L.grid_coordinates(lcfg)
    loop = L.LoopEvaluator(model, x, "own", cfg.train, "eval")
    fast = L.FastEvaluator(model, x, "own", cfg.train, "eval")

    mm_before = matmul_gflops()
    wall = {"loop": 0.0, "fast": 0.0}
    cpu = {"loop": 0.0, "fast": 0.0}
    vals = {"loop": np.full((len(gy), len(gx)), np.nan), "fast": np.full((len(gy), len(gx)), np.nan)}
    workers = L.resolve_workers(lcfg, fast)
    for j in range(len(gy)):
        coords = [(float(a_), float(gy[j])) for a_ in gx]
        for name, ev in (("loop", loop), ("fast", fast)):
            t, c = time.perf_counter(), time.process_time()
            with L.PointPool(ev, workers if name == "fast" else 1) as pool:
                vals[name][j] = list(pool.map(theta, d1, d2, coords))
            wall[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
        print(f"row {j + 1}/{len(gy)}: loop {wall['loop']:.1f}s fast {wall['fast']:.1f}s", flush=True)
    rel = np.abs(vals["fast"] - vals["loop"]) / np.maximum(np.abs(vals["loop"]), 1e-12)
    max_rel = float(rel.max())

    # first picture: the progressive computation as the app and CLI run it
    first = {}
    t0 = time.perf_counter()

    def on_progress(s):
        if "t" not in first:
            first["t"] = time.perf_counter() - t0
            first["fraction"] = s.fraction_done()

    L.compute_surface(result, data, lcfg, on_progress=on_progress, should_stop=lambda: "t" in first)
    mm_after = matmul_gflops()

    macs = forward_macs(model, x)
    fmacs = fast_macs(fast, theta)
    flops_total = 2.0 * macs * len(gx) * len(gy)
    out = {
        "command": "nice -n 10 python bench/landscape_speed.py" + (f" --threads {a.threads}" if a.threads else ""),
        "data": data.summary()["name"], "images": int(len(x)), "grid": [len(gx), len(gy)],
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
        "loop_wall_s": wall["loop"], "fast_wall_s": wall["fast"],
        "loop_cpu_s": cpu["loop"], "fast_cpu_s": cpu["fast"],
        "ratio_wall": wall["loop"] / wall["fast"], "ratio_cpu": cpu["loop"] / cpu["fast"],
        "max_rel_diff": max_rel, "agree_1e-5": max_rel <= 1e-5,
        "first_picture_s": first.get("t"), "first_picture_fraction_of_grid": first.get("fraction"),
        "first_picture_over_loop": (first["t"] / wall["loop"]) if "t" in first else None,
        "fast_modes": fast.modes, "fast_workers": workers,
        "forward_mmacs_per_image": macs / len(x) / 1e6,
        "fast_real_mmacs_per_image": fmacs / len(x) / 1e6,
        "fast_real_gflops": 2.0 * fmacs * len(gx) * len(gy) / wall["fast"] / 1e9,
        "loop_gflops": flops_total / wall["loop"] / 1e9,
        "fast_effective_gflops": flops_total / wall["fast"] / 1e9,
        "matmul_gflops_before": mm_before, "matmul_gflops_after": mm_after,
    }
    out["loop_fraction_of_matmul"] = out["loop_gflops"] / max(mm_before, mm_after)
    out["fast_fraction_of_matmul"] = out["fast_effective_gflops"] / max(mm_before, mm_after)
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path.with_suffix(".json"), json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0 if out["agree_1e-5"] else 1


if __name__ == "__main__":
    sys.exit(main())
