"""What the table benchmarks share: their execution options and running (or reading) the runs.

Each benchmark expands its own spec and writes its own report; this module only turns
`--store/--executor/--address/--num-cpus/--gpus-per-run/--no-stack/--report-only` into result rows.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lamp_core import report as rep  # noqa: E402
from lamp_core.config import ConfigError  # noqa: E402
from lamp_core.store import RunStore  # noqa: E402
from lamp_core.sweep import SweepProgress, run_sweep  # noqa: E402


def add_execution_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--store", required=True, help="run store folder (resumable; benchmarks may share it)")
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    ap.add_argument("--address", help="ray cluster address (default: a local instance)")
    ap.add_argument("--report-only", action="store_true",
                    help="write the results from the runs already in the store (a partial sweep); train nothing")
    ap.add_argument("--gpus-per-run", type=float,
                    help="ray: GPUs per run (e.g. 0.125 packs 8 small runs on one GPU; default 1 on GPU clusters)")
    ap.add_argument("--num-cpus", type=int, help="ray: CPUs of the local instance")
    ap.add_argument("--no-stack", action="store_true",
                    help="train one run at a time (default: compatible runs train together as stacks)")


def rows_for(configs, a: argparse.Namespace) -> tuple[list[dict], int]:
    """Result rows of `configs` (trained now, or read from the store with --report-only) and the
    number of failed runs."""
    store = RunStore(a.store)
    if a.report_only:
        rows = rep.rows_from_store(configs, store)
        if not any(r["auroc"] is not None for r in rows):
            # before any report is written: an empty table must not replace a recorded one
            raise ConfigError(f"no finished run of this spec in {a.store}: name the store that holds them, "
                              "or train them (leave out --report-only)")
        return rows, 0
    outcome = run_sweep(configs, store, executor=a.executor, address=a.address, num_cpus=a.num_cpus,
                        gpus_per_run=a.gpus_per_run, progress=SweepProgress(len(configs)),
                        stack=not getattr(a, "no_stack", False))
    return rep.rows_from_outcome(outcome), outcome.failed
