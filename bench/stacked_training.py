"""Benchmark: stacked training (`lamp_core.stack`) against training the same runs one by one.

For batch sizes 1, 4, 16 and 128 and K runs (seeds x {L2, L2-LAMP}) of the paper's 28x28
autoencoder, in one process, alternating the two ways round by round so that both see the same
machine load (the ratio uses each side's best round):

* one by one: `train()` on each run, the best single-run path the project ships (channels-last,
  fused optimizer step). Timed on the first `--solo-runs` runs (every run costs the same).
* stacked: the runs grouped by `plan_stacks` (what `lamp sweep` does), each group trained with
  `train_stack`; also "forced": all K runs in one stack whatever the planner says, to show where
  stacking stops paying.
* max_rel_diff: the largest relative difference between a run's loss history trained alone and
  in the stack (float rounding; Adam turns rounding on ~0 gradients into +-lr steps, and one
  epoch at batch 1 is many steps). solo_thread_rel_diff is the same yardstick between one run
  trained alone at 1 and at 2 torch threads: the rounding noise of a run with itself.
* GFLOP/s of training (3 x 2 x forward multiply-adds per image) as a fraction of a 2048^2 float32
  matmul timed in the same run; peak memory of the stacked step (CUDA: allocator peak; Linux CPU:
  peak resident set growth, reset through /proc/self/clear_refs).

Also: the app's default comparison with 5 seeds (10 runs) stacked against 1 seed (2 runs) one by
one (MNIST, 1000 training images of the normal class, batch 32), and the converged Table 1 grid
(360 runs: 20 epochs x 1000 images, batch 1024/128/32/16/4/1, 10 classes, L2 vs LAMP, 3 seeds)
estimated from the measured throughputs under plan_stacks.

    python bench/stacked_training.py [--quick] [--json] [--runs 16] [--rounds 2] [--threads N]
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
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))   # its sibling landscape_speed, also when imported

from lamp_core.config import DataConfig, RunConfig, TrainConfig  # noqa: E402
from lamp_core.data import load  # noqa: E402
from lamp_core.stack import plan_stacks, train_stack  # noqa: E402
from lamp_core.train import initial_model, resolve_device, train  # noqa: E402
from landscape_speed import matmul_gflops  # noqa: E402  (the one 2048^2 matmul yardstick)

BATCHES = (1, 4, 16, 128)
MNIST = ROOT.parent / "shared" / "data" / "mnist"
TABLE1_BATCHES = (1024, 128, 32, 16, 4, 1)
TABLE1_RUNS_PER_BATCH = 10 * 2 * 3          # classes x losses x seeds
TABLE1_IMAGES_PER_RUN = 20 * 1000            # epochs x normal training images


def configs(k: int, bs: int, data_cfg: DataConfig, epochs: int = 1, device: str = "cpu") -> list[RunConfig]:
    """K runs: seeds x {L2, L2-LAMP} (the paper's pair), same data, same batch size."""
    return [RunConfig(data=data_cfg, train=TrainConfig(batch_size=bs, epochs=epochs, seed=i // 2,
                                                       lamp=bool(i % 2), device=device))
            for i in range(k)]


def forward_macs(cfg: RunConfig, channels: int, size: int) -> int:
    """Multiply-adds of one image's forward pass, from the convolutions' output shapes."""
    net = initial_model(cfg, channels, size).eval()
    total = 0

    def hook(m, _i, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(1, channels, size, size))
    for h in hooks:
        h.remove()
    return total


class PeakMemory:
    """Peak memory growth of a block, in MB: CUDA allocator peak, else Linux peak RSS (VmHWM)."""

    def __init__(self, device: str = "cpu"):
        self.cuda = device == "cuda"

    def __enter__(self):
        self.mb = None
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")   # resets VmHWM to the current RSS
                self.base = self._status("VmRSS")
            except OSError:
                self.base = None
        return self

    @staticmethod
    def _status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024      # kB -> MB
        raise OSError(field)

    def __exit__(self, *exc):
        if self.cuda:
            self.mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        elif self.base is not None:
            self.mb = self._status("VmHWM") - self.base


def rel_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)), default=0.0)


def run_stacked(cfgs, data, plan):
    results = [None] * len(cfgs)
    for group in plan:
        for i, r in zip(group, train_stack([cfgs[i] for i in group], [data] * len(group))):
            results[i] = r
    return results


def measure(bs: int, k: int, data, data_cfg: DataConfig, rounds: int, solo_runs: int, quick: bool,
            device: str = "cpu") -> dict:
    cfgs = configs(k, bs, data_cfg, device=device)
    images = len(data.train)                       # one epoch per run
    planned = plan_stacks([(c, data) for c in cfgs])
    forced = [list(range(k))]
    # warm-up: the first convolutions of a shape pay for oneDNN's kernel selection
    warm = dataclasses.replace(data, train=data.train[:2 * min(bs, len(data.train) // 2)])
    train(cfgs[0], warm)
    train_stack(cfgs[:2], [warm, warm])
    best = {"solo": 0.0, "planned": 0.0, "forced": 0.0}
    diff = 0.0
    peak = None
    for _ in range(rounds):
        t = time.perf_counter()
        alone = [train(c, data) for c in cfgs[:solo_runs]]
        best["solo"] = max(best["solo"], solo_runs * images / (time.perf_counter() - t))
        for name, plan in (("planned", planned), ("forced", forced)):
            if name == "forced" and plan == planned:
                best[name] = best["planned"]
                continue
            with PeakMemory(device) as mem:
                t = time.perf_counter()
                stacked = run_stacked(cfgs, data, plan)
                best[name] = max(best[name], k * images / (time.perf_counter() - t))
            if mem.mb is not None:
                peak = mem.mb if peak is None else max(peak, mem.mb)
            diff = max(diff, max(rel_diff(a.history["loss"], s.history["loss"]) for a, s in zip(alone, stacked)))
    if quick:
        return finish_row(bs, k, best, diff, planned, peak, images, None)
    # the same yardstick for a run alone: train() at another thread count sums in another order too
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)
    try:
        other = train(cfgs[0], data)
    finally:
        torch.set_num_threads(threads)
    return finish_row(bs, k, best, diff, planned, peak, images,
                      rel_diff(alone[0].history["loss"], other.history["loss"]))


def finish_row(bs, k, best, diff, planned, peak, images, noise) -> dict:
    return {"batch_size": bs, "runs": k, "one_by_one_img_s": best["solo"], "stacked_img_s": best["planned"],
            "ratio": best["planned"] / best["solo"], "max_rel_diff": diff, "solo_thread_rel_diff": noise,
            "forced_stack_img_s": best["forced"], "forced_ratio": best["forced"] / best["solo"],
            "planned_stacks": [len(g) for g in planned], "peak_memory_mb": peak, "images_per_run": images}


def app_comparison(epochs: int, quick: bool, device: str = "cpu") -> dict | None:
    """5 seeds x {base, LAMP} stacked against 1 seed (2 runs) one by one, batch 32."""
    if (MNIST / "train-images-idx3-ubyte.gz").is_file():
        data_cfg = DataConfig(dataset="mnist", data_root=str(MNIST), download=False, normal_class=8,
                              image_size=28, max_train=160 if quick else 1000, max_test=200)
    else:   # no MNIST beside the repo: the built-in digits, repeated to the same size
        data_cfg = DataConfig(dataset="digits", normal_class=8, image_size=28)
    data = load(data_cfg)
    ten = configs(10, 32, data_cfg, epochs, device)
    t = time.perf_counter()
    for c in ten[:2]:
        train(c, data)
    one_seed = time.perf_counter() - t
    t = time.perf_counter()
    run_stacked(ten, data, plan_stacks([(c, data) for c in ten]))
    five_seeds = time.perf_counter() - t
    return {"dataset": data.name, "train_images": len(data.train), "batch_size": 32, "epochs": epochs,
            "one_seed_2_runs_s": one_seed, "five_seeds_10_runs_stacked_s": five_seeds,
            "time_ratio": five_seeds / one_seed}


def table1_estimate(rows: list[dict]) -> dict:
    """Converged Table 1 (360 runs) from the measured per-batch throughput under plan_stacks.
    Batch sizes not measured use the nearest measured one below (32 -> 16, 1024 -> 128): the
    throughput per image grows with the batch, so this errs on the slow side."""
    rate = {r["batch_size"]: r["stacked_img_s"] for r in rows}
    per_batch = {}
    for bs in TABLE1_BATCHES:
        near = max(b for b in rate if b <= bs)
        per_batch[bs] = TABLE1_RUNS_PER_BATCH * TABLE1_IMAGES_PER_RUN / rate[near]
    solo = {r["batch_size"]: r["one_by_one_img_s"] for r in rows}
    solo_total = sum(TABLE1_RUNS_PER_BATCH * TABLE1_IMAGES_PER_RUN / solo[max(b for b in solo if b <= bs)]
                     for bs in TABLE1_BATCHES)
    return {"runs": TABLE1_RUNS_PER_BATCH * len(TABLE1_BATCHES), "stacked_minutes": sum(per_batch.values()) / 60,
            "one_by_one_minutes": solo_total / 60,
            "minutes_per_batch_size": {str(k): v / 60 for k, v in per_batch.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small data, one round (under a minute)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--runs", type=int, help="K runs per batch size (10-30; default 10 quick, 16 full)")
    p.add_argument("--rounds", type=int, help="alternating rounds (default 1 quick, 2 full)")
    p.add_argument("--solo-runs", type=int, default=2, help="runs timed one by one per batch size")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, as sweeps use: on a shared machine more threads wait on "
                        "each other; 0 = torch's own)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the runs train (cuda: the GPU's float32 matmul is the yardstick)")
    p.add_argument("--app-epochs", type=int, help="epochs of the app comparison (default 1 quick, 2 full)")
    p.add_argument("--out", help="write <out>.json and <out>.md (default: bench/results/stacked_training, "
                                 "not with --quick)")
    a = p.parse_args()
    resolve_device(a.device)          # a GPU asked for and absent: one line (ConfigError), no work
    if a.threads:
        torch.set_num_threads(a.threads)
    k = a.runs or (10 if a.quick else 16)
    rounds = a.rounds or (1 if a.quick else 2)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    base_cfg = DataConfig(dataset="digits", normal_class=8, image_size=28)
    digits = load(base_cfg)
    macs = forward_macs(configs(1, 1, base_cfg)[0], 1, 28)
    gflops_ref = matmul_gflops(device=a.device)          # measured again at the end; the best is kept (shared cores)
    rows = []
    for bs in BATCHES:
        # images per run: a few steps at batch 128, fewer images at the slow small batches
        n = {1: 24, 4: 48, 16: 96, 128: 256}[bs] if a.quick else {1: 128, 4: 256, 16: 512, 128: 1024}[bs]
        reps = -(-n // len(digits.train))
        data = dataclasses.replace(digits, train=digits.train.repeat(reps, 1, 1, 1)[:n])
        row = measure(bs, k, data, base_cfg, rounds, min(a.solo_runs, k), a.quick, a.device)
        for side in ("one_by_one", "stacked"):
            gf = row[f"{side}_img_s"] * 6 * macs / 1e9
            row[f"{side}_matmul_fraction"] = gf / gflops_ref
        rows.append(row)
        if not a.json:
            print(f"batch {bs:>4} K={k}: one by one {row['one_by_one_img_s']:8.1f} img/s, stacked (planned "
                  f"{row['planned_stacks']}) {row['stacked_img_s']:8.1f} img/s, ratio {row['ratio']:.2f}; "
                  f"forced one stack {row['forced_stack_img_s']:8.1f} ({row['forced_ratio']:.2f}x), "
                  f"max rel diff {row['max_rel_diff']:.1e} (alone 1 vs 2 threads {row['solo_thread_rel_diff'] or 0:.1e}), "
                  f"peak {row['peak_memory_mb'] or 0:.0f} MB", flush=True)
    app = app_comparison(a.app_epochs or (1 if a.quick else 2), a.quick, a.device)
    gflops_ref = max(gflops_ref, matmul_gflops(device=a.device))
    for row in rows:
        for side in ("one_by_one", "stacked"):
            row[f"{side}_matmul_fraction"] = row[f"{side}_img_s"] * 6 * macs / 1e9 / gflops_ref
    # what the app target asks of the machine: 10 runs' training FLOPs in 1.5x one seed's time, as
    # a fraction of the matmul yardstick (above 100% no way of batching the runs can reach it)
    seed_flop = 2 * app["epochs"] * app["train_images"] * 6 * macs
    app["one_seed_matmul_fraction"] = seed_flop / app["one_seed_2_runs_s"] / 1e9 / gflops_ref
    app["target_needs_matmul_fraction"] = 5 * seed_flop / (1.5 * app["one_seed_2_runs_s"]) / 1e9 / gflops_ref
    table1 = table1_estimate(rows)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine(), "quick": a.quick,
            "rounds": rounds, "solo_runs": a.solo_runs, "forward_mmac_per_image": macs / 1e6,
            "matmul_2048_gflops": gflops_ref, "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0], "seconds": time.perf_counter() - started,
            "device": a.device if a.device == "cpu" else f"cuda ({torch.cuda.get_device_name()})"}
    result = {"meta": meta, "rows": rows, "app_comparison": app, "table1_estimate": table1}
    if not a.json:
        print(f"app comparison: 5 seeds stacked {app['five_seeds_10_runs_stacked_s']:.1f} s vs 1 seed "
              f"{app['one_seed_2_runs_s']:.1f} s ({app['time_ratio']:.2f}x)")
        print(f"Table 1 converged (360 runs): {table1['stacked_minutes']:.0f} min stacked, "
              f"{table1['one_by_one_minutes']:.0f} min one by one")
    out = a.out or (None if a.quick else str(ROOT / "bench" / "results" / "stacked_training"))
    if out:
        write_reports(Path(out), result)
    if a.json:
        print(json.dumps({"rows": [{key: r[key] for key in ("batch_size", "runs", "one_by_one_img_s",
                                                            "stacked_img_s", "ratio", "max_rel_diff")}
                                   for r in rows], "meta": meta}))
    return 0


def write_reports(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    m, app, t1 = result["meta"], result["app_comparison"], result["table1_estimate"]
    lines = [
        "# Stacked training against one run at a time", "",
        f"Command: `python bench/stacked_training.py{' --device cuda' if m['device'] != 'cpu' else ''}` ({m['device']}, {m['threads']} torch threads, "
        f"{m['cpus']} cores, torch {m['torch']}; {m['rounds']} alternating rounds, best of each side). "
        f"Load average {m['load_average_before']:.1f} before and {m['load_average_after']:.1f} after; both "
        "sides are measured alternately (other jobs may share the machine) and only the ratios are meant "
        "to carry over.", "",
        f"2048^2 float32 matmul: {m['matmul_2048_gflops']:.1f} GFLOP/s in the same run. One training "
        f"step costs 3 x 2 x {m['forward_mmac_per_image']:.2f} MMAC per image.", "",
        "| batch | K | one by one (img/s) | stacked, planned (img/s) | ratio | stacks | forced one stack (img/s) "
        "| forced ratio | matmul fraction (alone / stacked) | peak MB (stack) | max rel diff | alone, 1 vs 2 threads |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        peak = "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        lines.append(
            f"| {r['batch_size']} | {r['runs']} | {r['one_by_one_img_s']:.0f} | {r['stacked_img_s']:.0f} | "
            f"{r['ratio']:.2f} | {'+'.join(map(str, r['planned_stacks']))} | {r['forced_stack_img_s']:.0f} | "
            f"{r['forced_ratio']:.2f} | {r['one_by_one_matmul_fraction']:.1%} / {r['stacked_matmul_fraction']:.1%} "
            f"| {peak} | {r['max_rel_diff']:.1e} | {r['solo_thread_rel_diff'] or 0:.1e} |")
    if m["device"] != "cpu":
        worst = max(result["rows"], key=lambda r: r["max_rel_diff"])
        lines += ["", f"On the GPU the loss histories of a run alone and in its stack differ more than on the CPU (up "
                  f"to {worst['max_rel_diff']:.1e} relative at batch {worst['batch_size']}): cuDNN picks other "
                  "kernels for the grouped and the plain convolution, and PyTorch lets cuDNN run float32 "
                  "convolutions in TF32 by default. The maths is the same: in float64, tests/test_stack.py's "
                  "CUDA test finds stacked and solo runs equal to 1e-9."]
    alone = [str(r["batch_size"]) for r in result["rows"] if max(r["planned_stacks"]) == 1]
    if alone:
        lines += ["", f"At batch {', '.join(alone)} the planner trains one run at a time (stacking was measured "
                  "not to pay there on the CPU), so both columns run `train()`: their ratio is the measurement's "
                  "own noise on shared cores."]
    lines += ["", f"App default comparison ({app['dataset']}, {app['train_images']} training images, batch 32, "
              f"{app['epochs']} epoch(s); the ratio does not depend on the epoch count): 1 seed (2 runs) one by one "
              f"{app['one_seed_2_runs_s']:.1f} s, 5 seeds (10 runs) under plan_stacks "
              f"{app['five_seeds_10_runs_stacked_s']:.1f} s: **{app['time_ratio']:.2f}x** the time (target <= 1.5x). "
              f"One seed alone trains at {app['one_seed_matmul_fraction']:.0%} of the matmul's FLOP/s; the target "
              f"asks the 10 runs for {app['target_needs_matmul_fraction']:.0%} of it"
              + (" (more than the matmul itself: no batching of the runs reaches it on this device)."
                 if app["target_needs_matmul_fraction"] > 1 else "."),
              "", f"Converged Table 1 (360 runs, 20 epochs x 1000 images, estimated from the rows above): "
              f"**{t1['stacked_minutes']:.0f} min** under plan_stacks, {t1['one_by_one_minutes']:.0f} min one by one "
              "(target <= 45 min). Per batch size (min): " +
              ", ".join(f"{k}: {v:.0f}" for k, v in t1["minutes_per_batch_size"].items()) + "."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    from lamp_core.cli import run_script
    sys.exit(run_script(main, "stacked_training"))
