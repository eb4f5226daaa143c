"""What the table benchmarks share: their execution options and running (or reading) the runs.

Each benchmark expands its own spec and writes its own report; this module only turns
`--store/--executor/--address/--num-cpus/--gpus-per-run/--no-stack/--report-only/--from-csv` into result
rows. `--from-csv` reads the benchmark's recorded CSV instead of the store, so a report's wording or
layout can be written again without the runs (a benchmark then leaves its CSV as it is).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lamp_core import report as rep
from lamp_core.config import ConfigError, run_key
from lamp_core.store import RunStore
from lamp_core.sweep import SweepProgress, run_sweep


def add_execution_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--store", help="run store folder (resumable; benchmarks may share it); required unless "
                    "--from-csv")
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    ap.add_argument("--address", help="ray cluster address (default: a local instance)")
    ap.add_argument("--report-only", action="store_true",
                    help="write the results from the runs already in the store (a partial sweep); train nothing")
    ap.add_argument("--from-csv", action="store_true",
                    help="write the report from the CSV this benchmark recorded (its --out prefix's .csv): no store, "
                         "nothing trained, the CSV left unchanged")
    ap.add_argument("--gpus-per-run", type=float,
                    help="ray: GPUs per run (e.g. 0.125 packs 8 small runs on one GPU; default 1 on GPU clusters)")
    ap.add_argument("--num-cpus", type=int, help="ray: CPUs of the local instance")
    ap.add_argument("--no-stack", action="store_true",
                    help="train one run at a time (default: compatible runs train together as stacks)")


def rows_for(configs, a: argparse.Namespace, csv_path: Path | None = None) -> tuple[list[dict], int]:
    """Result rows of `configs` (trained now, read from the store with --report-only, or from
    `csv_path` with --from-csv: the rows whose run key is one of the configs', in the configs'
    order) and the number of failed runs."""
    if getattr(a, "from_csv", False):
        if csv_path is None or not Path(csv_path).is_file():
            raise ConfigError(f"--from-csv: no recorded CSV at {csv_path}: give --out the prefix of the "
                              "recorded results, or use --store")
        by_key = {r["key"]: r for r in rep.rows_from_csv(csv_path)}
        rows = [by_key[k] for k in dict.fromkeys(run_key(c) for c in configs) if k in by_key]
        if not any(r["auroc"] is not None for r in rows):
            raise ConfigError(f"no finished run of this spec in {csv_path}")
        return rows, sum(1 for r in rows if r.get("error"))
    if not a.store:
        raise ConfigError("--store is required (the run store folder), or --from-csv to write the report "
                          "from the recorded CSV")
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
