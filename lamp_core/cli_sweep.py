"""`lamp sweep`: run a grid of configurations (from a spec file or options), resumably, locally or
on Ray, and write a CSV of every run plus markdown tables in the paper's layouts (Tables 1-2).

    lamp sweep --store runs/ --dataset mnist --data-root ../shared/data/mnist --no-download \\
        --classes 0-9 --batch-sizes 1024,128,32,16,4,1 --lamp both --seeds 0-2 --epochs 5 \\
        --max-train 1024 --max-test 500 --out results/table1 --layout table1
    lamp sweep --spec bench/specs/table2_trained.json --store runs/ --executor ray --num-cpus 2

Options given with --spec replace that axis of the spec's grid(s) (or the base value).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_common import add_option, dest_of
from .config import DEFAULT_IMAGE_SIZE, ConfigError, OptionSpec, option_spec, run_key
from .files import atomic_write
from .sweep import (SweepProgress, SweepSpec, apply, describe, expand, parse_float_list, parse_int_list,
                    parse_str_list, run_sweep)

LAYOUTS = ("auto", "table1", "table2", "settings")
# Flags that set one value of the base config: the same names as `lamp train`'s (config option specs).
BASE_OPTIONS = ("data.dataset", "data.data_root", "data.download", "train.epochs", "data.max_train",
                "data.max_test", "data.image_size", "data.val_fraction", "train.device")
# Grid axes: option -> (flag, example). Each flag takes a list of the option's values; the axes
# are expanded in this order (seeds always first, see _spec_from_args).
GRID_FLAGS = {
    "data.normal_class": ("--classes", "0-9"),
    "data.category": ("--categories", "grid,carpet"),
    "train.base_loss": ("--losses", "l2,ssim"),
    "train.optimizer": ("--optimizers", "adam,sgd"),
    "train.lr": ("--lrs", "1e-3,3e-3"),
    "train.batch_size": ("--batch-sizes", "1024,128,32,16,4,1"),
    "model.kernel_size": ("--kernel-sizes", "3,5"),
    "model.patches": ("--patches", "1,2"),
    "train.eps": ("--eps", "0.001,0.01,0.1"),
    "train.max_over": ("--max-over", "sample,batch"),
    "train.detach_max": ("--detach-max", "paired"),
    "train.lamp": ("--lamp", "both = paired runs"),
    "train.seed": ("--seeds", "0-2"),
}


def _positive_mb(text: str) -> float:
    try:
        mb = float(text)
    except ValueError:
        mb = float("nan")
    if not mb > 0 or mb == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size: give megabytes above 0, e.g. 1024")
    return mb


def register(sub) -> None:
    """Add `lamp sweep` to the `lamp` command's subparsers."""
    p = sub.add_parser("sweep", help="grids of runs with statistics, locally or on Ray (Tables 1-2)")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", help="sweep spec (.json or .toml): name, base config, grid of axes")
    p.add_argument("--store", required=True, help="run store folder: finished runs are kept there and "
                   "never trained again, so a killed sweep resumes where it stopped")
    b = p.add_argument_group("base values (the same flags as `lamp train`; given ones replace the spec's)")
    for name in BASE_OPTIONS:
        spec = option_spec(name)
        add_option(b, spec, default=None, help=spec.help)
    g = p.add_argument_group("grid (each takes a comma-separated list; integers also as ranges like 0-9)")
    for name, (flag, example) in GRID_FLAGS.items():
        spec = option_spec(name)
        if spec.kind is bool:
            g.add_argument(flag, dest=dest_of(spec), choices=("both", "on", "off"),
                           help=f"{spec.help}: on, off, or both ({example})")
        else:
            allowed = f" from {','.join(map(str, spec.choices))}" if spec.choices else ""
            g.add_argument(flag, dest=dest_of(spec), metavar="LIST",
                           help=f"{spec.help}:{allowed} e.g. {example}")
    e = p.add_argument_group("execution")
    e.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one run at a time in this process; ray: one Ray task per run")
    e.add_argument("--address", help="ray: address of an existing cluster (e.g. auto or ray://host:10001); "
                   "default: start a local instance. Ray keeps retrying an address that does not answer")
    e.add_argument("--num-cpus", type=int, help="ray: CPUs of the local instance (default: all)")
    e.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs each run asks for")
    e.add_argument("--gpus-per-run", type=float, help="ray: GPUs each run asks for (default: 1 when the "
                   "run's device wants a GPU and the cluster has one, else 0; fractions share a GPU)")
    e.add_argument("--threads", type=int, default=1, help="torch threads per run (same threads = same numbers)")
    e.add_argument("--stack", action=argparse.BooleanOptionalAction, default=True,
                   help="train compatible runs (same architecture, image size, batch size and steps) together "
                   "as one stack, each equal to its solo run; --no-stack trains them one by one (default: on)")
    e.add_argument("--stack-memory-mb", type=_positive_mb, metavar="MB",
                   help="most estimated training memory of one stack; larger groups of runs are split "
                        "(default: 2048 on a CPU, half the free memory of a GPU)")
    e.add_argument("--dry-run", action="store_true", help="list the runs and how many are done; train nothing")
    e.add_argument("--report-only", action="store_true",
                   help="write --out from the runs already in the store (a partial sweep too); train nothing")
    o = p.add_argument_group("report")
    o.add_argument("--out", help="write OUT.csv (every run) and OUT.md (tables)")
    o.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="table1: loss rows x batch-size columns; table2: category x optimizer x loss; "
                   "settings: one line per setting; auto: from the spec or the grid")
    o.add_argument("--quiet", action="store_true", help="no per-run progress lines on stderr")


def _grid_values(spec: OptionSpec, text: str) -> list:
    """One flag's comma-separated list as values of the option (checked by the spec's kind)."""
    label = spec.label or spec.name.partition(".")[2]
    if spec.kind is bool:
        return {"both": [False, True], "on": [True], "off": [False]}[text]
    if spec.kind is int:
        return parse_int_list(text)
    if spec.kind is float:
        return parse_float_list(text)
    return parse_str_list(text, spec.choices, label)


def _spec_from_args(a: argparse.Namespace) -> SweepSpec:
    spec = SweepSpec.load(a.spec) if a.spec else SweepSpec(name="sweep")
    base = spec.base
    for name in BASE_OPTIONS:
        value = getattr(a, dest_of(option_spec(name)))
        if value is not None:
            base = apply(base, name, value)
    if a.data_dataset and a.data_image_size is None and not a.spec:
        base = apply(base, "data.image_size", DEFAULT_IMAGE_SIZE[a.data_dataset])
    axes: dict[str, list] = {}
    for name in GRID_FLAGS:
        text = getattr(a, dest_of(option_spec(name)))
        if text:
            axes[name] = _grid_values(option_spec(name), text)
    grids = []
    for g in spec.grids:
        g = dict(g)
        # an option replaces that axis (and a section axis setting the same field is kept as is)
        for axis, values in axes.items():
            g.pop(axis, None)
        # seeds first (slowest): an interrupted sweep has every cell at its first seeds
        ordered = {k: v for k, v in axes.items() if k == "train.seed"}
        ordered.update(g)
        ordered.update({k: v for k, v in axes.items() if k != "train.seed"})
        grids.append(ordered)
    spec.base, spec.grids = base, grids
    return spec


def _layout(a: argparse.Namespace, spec: SweepSpec, configs) -> str:
    if a.layout != "auto":
        return a.layout
    if spec.report.get("layout") in LAYOUTS[1:]:
        return spec.report["layout"]
    if len({c.train.batch_size for c in configs}) > 1:
        return "table1"
    if len({(c.train.optimizer, c.train.base_loss) for c in configs}) > 1:
        return "table2"
    return "settings"


def write_report(rows, out: str, layout: str, *, title: str, command: str | None = None) -> list[Path]:
    from . import report as rep
    prefix = Path(out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".md")
    atomic_write(csv_path, rep.to_csv(rows))
    parts = [f"# {title}", ""]
    if command:
        parts += ["Command:", "", "```", command, "```", ""]
    ok = [r for r in rows if r.get("auroc") is not None]
    protocols = ["test"] + (["val"] if ok and all(r.get("val_score") is not None for r in ok) else [])
    for protocol in protocols:
        parts.append(f"## {'Paper' if protocol == 'test' else 'Honest'} selection ({protocol})")
        parts.append("")
        if layout == "table1":
            for loss in sorted({r["base_loss"] for r in ok}):
                parts.append(rep.table1_markdown(ok, protocol=protocol, loss=loss))
        elif layout == "table2":
            parts.append(rep.table2_markdown(ok, protocol=protocol, metric="auroc"))
            if any(r.get("pixel_auroc") is not None for r in ok):
                parts.append(rep.table2_markdown(ok, protocol=protocol, metric="pixel_auroc"))
        else:
            # every setting axis that varies gets its own line (pooling, say, two image sizes would
            # hide the difference between them); learning rates are selected over, not split
            fields = [f for f in ("unit", "base_loss", "optimizer", "batch_size", "image_size", "max_over",
                                  "detach_max", "eps")
                      if len({r[f] for r in ok}) > 1 and f != "unit"]
            parts.append(rep.settings_markdown(rep.lamp_variants(ok), setting_fields=fields or ["base_loss"],
                                               protocol=protocol))
    failed = [r for r in rows if r.get("error")]
    if failed:
        parts.append(f"{len(failed)} run(s) failed: " + "; ".join(f"{r['key']}: {r['error']}" for r in failed[:5]))
    atomic_write(md_path, "\n".join(parts) + "\n")
    return [csv_path, md_path]


def run(a: argparse.Namespace) -> int:
    from . import data as data_mod
    from .report import rows_from_outcome
    from .store import RunStore

    spec = _spec_from_args(a)
    configs = expand(spec)
    if not configs:
        raise ConfigError("the sweep has no runs: give at least one grid axis or a spec")
    store = RunStore(a.store)
    done = sum(1 for c in configs if store.has(c))
    if a.dry_run:
        for c in configs:
            print(f"{'done' if store.has(c) else 'todo'}  {run_key(c)}  {describe(c)}")
        print(f"{len(configs)} runs, {done} done, {len(configs) - done} to do")
        return 0
    if a.report_only:
        from .report import rows_from_store
        if not a.out:
            raise ConfigError("--report-only writes the report to --out: give --out PREFIX")
        rows = rows_from_store(configs, store)
        paths = write_report(rows, a.out, _layout(a, spec, configs), title=f"Sweep {spec.name} "
                             f"({len(rows)} of {len(configs)} runs in the store)")
        print(json.dumps({"runs": len(configs), "in_store": len(rows), "files": [str(p) for p in paths]}))
        return 0
    # fail early, in one line, on data that cannot be read (every run using it would fail)
    if a.executor == "local":
        for d in {c.data for c in configs if not store.has(c)}:
            data_mod.load(d)
    sys.stderr.write(f"sweep {spec.name}: {len(configs)} runs, {done} already in {a.store}, "
                     f"executor {a.executor}\n")
    progress = SweepProgress(len(configs), enabled=not a.quiet)
    outcome = run_sweep(configs, store, executor=a.executor, address=a.address, num_cpus=a.num_cpus,
                        cpus_per_run=a.cpus_per_run, gpus_per_run=a.gpus_per_run, threads=a.threads,
                        progress=progress, stack=a.stack, memory_budget_mb=a.stack_memory_mb)
    sys.stderr.write(f"sweep {spec.name}: {len(outcome.ok)} runs finished ({outcome.trained} trained now), "
                     f"{outcome.failed} failed\n")
    if a.out:
        layout = _layout(a, spec, configs)
        paths = write_report(rows_from_outcome(outcome), a.out, layout, title=f"Sweep {spec.name}",
                             command="lamp sweep " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None)
        print(json.dumps({"runs": len(configs), "trained": outcome.trained, "failed": outcome.failed,
                          "files": [str(p) for p in paths]}))
    return 1 if outcome.failed else 0
