"""Benchmark: the wall time of the converged Table 1 grid on this machine, trained for real.

The grid of the stacked-training issue: 360 runs = 10 MNIST classes x batch 1024/128/32/16/4/1 x
{L2, L2-LAMP (the engine's default reading)} x 3 seeds, 20 epochs of 1000 training images each,
scored on the 2000-image stratified test set. `bench/stacked_training.py` estimates this time from
throughputs; this script trains the grid into a fresh store and times it, with the sweep's own
executors, so the figure includes everything a user waits for (data loading, scoring, the store,
a stack's slowest run, the workers' idle tail).

    nice -n 10 python bench/table1_timing.py --store <fresh folder> --executor ray --num-cpus 2

With the Ray executor each of the --num-cpus workers trains one task (a stack of runs) at a time
on --threads torch threads (default 1: the same numbers as `lamp sweep`'s default); with the local
executor one process trains everything. The store must hold none of the grid's runs (a timing
of runs found in the store would be no timing). Writes bench/results/table1_timing.{json,md}
(each timing adds a row to the table).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from lamp_core.config import ConfigError, DataConfig, RunConfig, TrainConfig  # noqa: E402
from lamp_core.files import atomic_write  # noqa: E402
from lamp_core.store import RunStore  # noqa: E402
from lamp_core.sweep import SweepProgress, SweepSpec, expand, parse_int_list, run_sweep  # noqa: E402

BATCHES = [1024, 128, 32, 16, 4, 1]
TARGET_MIN = 45.0
PAPER_L2 = {1024: 0.658, 128: 0.919, 32: 0.921, 16: 0.926, 4: 0.931, 1: 0.919}


def grid(data_root: str, classes: list[int], seeds: list[int]) -> list[RunConfig]:
    base = RunConfig(data=DataConfig(dataset="mnist", data_root=data_root, download=False, image_size=28,
                                     max_train=1000, max_test=2000),
                     train=TrainConfig(epochs=20, device="cpu"))
    return expand(SweepSpec(name="table1-timing", base=base, grids=[{
        "train.batch_size": BATCHES, "data.normal_class": classes, "train.seed": seeds,
        "train.lamp": [False, True]}]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="a fresh run store folder (it must hold none of the grid's runs)")
    ap.add_argument("--executor", choices=("local", "ray"), default="ray")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="ray: workers (default: all cores)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    ap.add_argument("--data-root", default="../shared/data/mnist",
                    help="folder of the four MNIST IDX files (default: the one beside the repository, as the "
                         "converged spec has it; run from the repository root)")
    ap.add_argument("--classes", default="0-9", help="normal classes (fewer for a shorter check)")
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "table1_timing"))
    a = ap.parse_args()
    cfgs = grid(a.data_root, parse_int_list(a.classes), parse_int_list(a.seeds))
    store = RunStore(a.store)
    held = sum(store.has(c) for c in cfgs)
    if held:
        raise ConfigError(f"{a.store} already holds {held} of the grid's {len(cfgs)} runs: "
                          "time the grid into a fresh store folder")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    outcome = run_sweep(cfgs, store, executor=a.executor, num_cpus=a.num_cpus if a.executor == "ray" else None,
                        threads=a.threads, progress=SweepProgress(len(cfgs)))
    wall = time.perf_counter() - started
    l2: dict[int, list[float]] = {}
    for r in outcome.ok:
        if not r.config.train.lamp:
            l2.setdefault(r.config.train.batch_size, []).append(r.evaluation.auroc)
    row = {"when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "runs": len(cfgs), "trained": outcome.trained,
           "failed": outcome.failed, "executor": a.executor,
           "workers": a.num_cpus if a.executor == "ray" else 1, "threads": a.threads,
           "wall_minutes": wall / 60,
           "l2_auroc": {str(bs): sum(v) / len(v) for bs, v in sorted(l2.items(), reverse=True)},
           "load_before": load_before, "load_after": os.getloadavg()[0], "cpus": os.cpu_count(),
           "python": platform.python_version(), "classes": a.classes, "seeds": a.seeds}
    write(Path(a.out), row)
    print(f"{len(cfgs)} runs ({outcome.trained} trained, {outcome.failed} failed) in {wall / 60:.1f} min "
          f"({a.executor}, {row['workers']} worker(s) x {a.threads} thread(s))")
    return 0 if not outcome.failed else 1


def command_of(row: dict) -> str:
    """The command that made a recorded row (its arguments are all in the row)."""
    cmd = f"nice -n 10 python bench/table1_timing.py --store <fresh folder> --executor {row['executor']}"
    if row["executor"] == "ray":
        cmd += f" --num-cpus {row['workers']}"
    if row["threads"] != 1:
        cmd += f" --threads {row['threads']}"
    for flag, default in (("classes", "0-9"), ("seeds", "0-2")):
        if row[flag] != default:
            cmd += f" --{flag} {row[flag]}"
    return cmd


def write(out: Path, row: dict | None) -> None:
    """Add `row` to the recorded rows (None: write the table again from them)."""
    path = out.with_suffix(".json")
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    if row is not None:
        rows.append(row)
    atomic_write(path, json.dumps({"rows": rows}, indent=1))
    lines = ["# Converged Table 1 grid, timed (bench/table1_timing.py)", "",
             "The 360-run grid of the stacked-training issue (10 MNIST classes x 6 batch sizes x {L2, L2-LAMP} x "
             "3 seeds, 20 epochs of 1000 images, 2000 test images), trained for real into a fresh store by "
             f"`lamp_core.sweep.run_sweep` (stacks by default). Target: at most {TARGET_MIN:.0f} min on the "
             "project's 2-core machine. The L2 column checks that the models trained (paper's L2 row: "
             + ", ".join(f"{bs}: {v}" for bs, v in PAPER_L2.items()) + ").", "",
             "| when (UTC) | command | runs (trained / failed) | workers x threads | wall | L2 AUROC per batch size "
             "| load 1m before / after |",
             "|---|---|---|---|---:|---|---|"]
    for r in rows:
        l2 = ", ".join(f"{bs}: {v:.3f}" for bs, v in r["l2_auroc"].items())
        lines.append(f"| {r['when']} | `{command_of(r)}` | {r['runs']} ({r['trained']} / {r['failed']}) | "
                     f"{r['workers']} x {r['threads']} | **{r['wall_minutes']:.1f} min** | "
                     f"{l2} | {r['load_before']:.2f} / {r['load_after']:.2f} |")
    atomic_write(out.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    from lamp_core.cli import run_script
    sys.exit(run_script(main, "table1_timing"))
