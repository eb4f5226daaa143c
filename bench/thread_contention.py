"""Benchmark: training in a worker thread while another thread holds an OpenMP team.

The app trains in the job queue's worker thread while Streamlit's script threads render pages.
With OpenMP (PyTorch's CPU backend here) each thread that computes on several threads keeps its
own team of threads for as long as it lives. The likely cause of the slowdown: once the teams'
threads outnumber the cores, libgomp spins only briefly between parallel regions, so the many
small operations of a training step wait on futexes (forcing the spin with OMP_WAIT_POLICY=active
made it worse: the idle team then spins on a core). This measures one run of
the app's default comparison (MNIST subset, batch 32) trained in a fresh thread at the machine's
thread count:

* `alone`: no other thread has computed;
* `after_one_thread_caller`: another thread has computed on one thread first (what the app's
  pages do since `lamp_core.threads.single_threaded_caller`);
* `after_multi_thread_caller`: another thread has computed on all cores first (what they did).

Each case runs in its own process, so the teams of one cannot leak into the next. Results in
bench/results/thread_contention.{json,md}.

    python bench/thread_contention.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("alone", "after_one_thread_caller", "after_multi_thread_caller")


def child(case: str) -> float:
    """Best of 3 trainings of the default run in a fresh worker thread, in this process."""
    import threading

    import torch
    sys.path.insert(0, str(ROOT / "app"))          # the app's lab_defaults (lamp_core is installed)
    from lab_defaults import DEFAULT_CONFIG
    from lamp_core.data import load
    from lamp_core.threads import usable_cores
    from lamp_core.train import train
    cfg = DEFAULT_CONFIG.with_train(epochs=2, device="cpu")
    cores = usable_cores()
    if case != "alone":          # the caller (e.g. a page thread) computes first
        torch.set_num_threads(1 if case == "after_one_thread_caller" else cores)
        train(cfg.with_train(epochs=1), load(cfg.data))
    best = []

    def worker():
        torch.set_num_threads(cores)
        data = load(cfg.data)
        train(cfg.with_train(epochs=1), data)                 # warm-up
        for _ in range(3):
            t = time.perf_counter()
            train(cfg, data)
            best.append(time.perf_counter() - t)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    return min(best)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps({"seconds": child(sys.argv[2])}))
        return 0
    load_before = os.getloadavg()[0]
    seconds = {}
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True, check=True)
        seconds[case] = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
    result = {"seconds": seconds, "slowdown_after_multi_thread_caller": seconds["after_multi_thread_caller"] / seconds["alone"],
              "slowdown_after_one_thread_caller": seconds["after_one_thread_caller"] / seconds["alone"],
              "cores": os.cpu_count(), "load_average_before_after": [load_before, os.getloadavg()[0]]}
    out = ROOT / "bench" / "results" / "thread_contention"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    s = seconds
    md = ["# Training in a worker thread beside other threads' OpenMP teams", "",
          "Command: `python bench/thread_contention.py` (one run of the app's default comparison, 2 epochs, "
          f"trained in a fresh thread at all {result['cores']} cores; best of 3; each case in its own process; "
          f"load average {load_before:.1f} before, {result['load_average_before_after'][1]:.1f} after).", "",
          "| another thread computed first | seconds per run | against alone |", "|---|---:|---:|",
          f"| no | {s['alone']:.3f} | 1.00 |",
          f"| on one thread (the app's pages now) | {s['after_one_thread_caller']:.3f} | "
          f"{result['slowdown_after_one_thread_caller']:.2f} |",
          f"| on all cores (the app's pages before) | {s['after_multi_thread_caller']:.3f} | "
          f"{result['slowdown_after_multi_thread_caller']:.2f} |"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
