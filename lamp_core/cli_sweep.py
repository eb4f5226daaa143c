"""`lamp sweep`: run a grid of configurations (from a spec file or options), resumably, locally or
on Ray, and write a CSV of every run plus markdown tables in the paper's layouts (Tables 1-2).

    lamp sweep --store runs/ --dataset mnist --data-root ../shared/data/mnist --no-download \\
        --classes 0-9 --batch-sizes 1024,128,32,16,4,1 --lamp both --seeds 0-2 --epochs 5 \\
        --max-train 1024 --max-test 500 --out results/table1 --layout table1
    lamp sweep --spec bench/specs/table2.json --store runs/ --executor ray --num-cpus 2

Options given with --spec replace that axis of the spec's grid(s) (or the base value).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import BASE_LOSSES, DATASETS, DEVICES, MAX_OVER, OPTIMIZERS, ConfigError
from .sweep import (SweepProgress, SweepSpec, apply, describe, expand, parse_float_list, parse_int_list,
                    parse_str_list, run_sweep)

LAYOUTS = ("auto", "table1", "table2", "settings")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", help="sweep spec (.json or .toml): name, base config, grid of axes")
    p.add_argument("--store", required=True, help="run store folder: finished runs are kept there and "
                   "never trained again, so a killed sweep resumes where it stopped")
    g = p.add_argument_group("grid (each takes a comma-separated list; integers also as ranges like 0-9)")
    g.add_argument("--dataset", choices=DATASETS, help="data source (base value)")
    g.add_argument("--data-root", help="mnist: IDX folder; mvtec: the MVTec root; folder: folder or .zip")
    g.add_argument("--no-download", action="store_true", help="never download MNIST")
    g.add_argument("--classes", help="normal classes (digits/mnist), e.g. 0-9")
    g.add_argument("--categories", help="mvtec categories, e.g. grid,carpet")
    g.add_argument("--losses", help=f"base losses from {','.join(BASE_LOSSES)}")
    g.add_argument("--lamp", choices=("both", "on", "off"), help="LAMP on, off, or both (paired)")
    g.add_argument("--optimizers", help=f"from {','.join(OPTIMIZERS)}")
    g.add_argument("--lrs", help="learning rates, e.g. 1e-3,3e-3")
    g.add_argument("--batch-sizes", help="e.g. 1024,128,32,16,4,1")
    g.add_argument("--kernel-sizes", help="odd kernel sizes, e.g. 3,5")
    g.add_argument("--patches", help="patch grid sizes p (p x p patches), e.g. 1,2")
    g.add_argument("--seeds", help="training seeds, e.g. 0-2")
    g.add_argument("--eps", help="LAMP eps values, e.g. 0.001,0.01,0.1")
    g.add_argument("--max-over", help=f"LAMP max over: from {','.join(MAX_OVER)}")
    g.add_argument("--detach-max", choices=("both", "on", "off"), help="LAMP: detach the max, or both")
    g.add_argument("--epochs", type=int, help="epochs per run (base value)")
    g.add_argument("--max-train", type=int, help="cap on normal training images (base value)")
    g.add_argument("--max-test", type=int, help="cap on test images (base value)")
    g.add_argument("--image-size", type=int, help="image size in pixels (base value)")
    g.add_argument("--val-fraction", type=float, help="held-out normal share for the val protocol")
    g.add_argument("--device", choices=DEVICES, help="device of every run (base value)")
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
    e.add_argument("--dry-run", action="store_true", help="list the runs and how many are done; train nothing")
    e.add_argument("--report-only", action="store_true",
                   help="write --out from the runs already in the store (a partial sweep too); train nothing")
    o = p.add_argument_group("report")
    o.add_argument("--out", help="write OUT.csv (every run) and OUT.md (tables)")
    o.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="table1: loss rows x batch-size columns; table2: category x optimizer x loss; "
                   "settings: one line per setting; auto: from the spec or the grid")
    o.add_argument("--quiet", action="store_true", help="no per-run progress lines on stderr")


def _spec_from_args(a: argparse.Namespace) -> SweepSpec:
    spec = SweepSpec.load(a.spec) if a.spec else SweepSpec(name="sweep")
    base = spec.base
    for axis, value in (("data.dataset", a.dataset), ("data.data_root", a.data_root),
                        ("train.epochs", a.epochs), ("data.max_train", a.max_train),
                        ("data.max_test", a.max_test), ("data.image_size", a.image_size),
                        ("data.val_fraction", a.val_fraction), ("train.device", a.device)):
        if value is not None:
            base = apply(base, axis, value)
    if a.no_download:
        base = apply(base, "data.download", False)
    if a.dataset and a.image_size is None and not a.spec:
        from .cli import SIZE_DEFAULT
        base = apply(base, "data.image_size", SIZE_DEFAULT[a.dataset])
    axes: dict[str, list] = {}
    both = {"both": [False, True], "on": [True], "off": [False]}
    if a.classes:
        axes["data.normal_class"] = parse_int_list(a.classes)
    if a.categories:
        axes["data.category"] = parse_str_list(a.categories, what="category")
    if a.losses:
        axes["train.base_loss"] = parse_str_list(a.losses, BASE_LOSSES, "base loss")
    if a.optimizers:
        axes["train.optimizer"] = parse_str_list(a.optimizers, OPTIMIZERS, "optimizer")
    if a.lrs:
        axes["train.lr"] = parse_float_list(a.lrs)
    if a.batch_sizes:
        axes["train.batch_size"] = parse_int_list(a.batch_sizes)
    if a.kernel_sizes:
        axes["model.kernel_size"] = parse_int_list(a.kernel_sizes)
    if a.patches:
        axes["model.patches"] = parse_int_list(a.patches)
    if a.eps:
        axes["train.eps"] = parse_float_list(a.eps)
    if a.max_over:
        axes["train.max_over"] = parse_str_list(a.max_over, MAX_OVER, "max_over")
    if a.detach_max:
        axes["train.detach_max"] = both[a.detach_max]
    if a.lamp:
        axes["train.lamp"] = both[a.lamp]
    if a.seeds:
        axes["train.seed"] = parse_int_list(a.seeds)
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
    csv_path.write_text(rep.to_csv(rows))
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
            fields = [f for f in ("unit", "base_loss", "optimizer", "batch_size", "max_over", "detach_max", "eps")
                      if len({r[f] for r in ok}) > 1 and f != "unit"]
            parts.append(rep.settings_markdown(rep.lamp_variants(ok), setting_fields=fields or ["base_loss"],
                                               protocol=protocol))
    failed = [r for r in rows if r.get("error")]
    if failed:
        parts.append(f"{len(failed)} run(s) failed: " + "; ".join(f"{r['key']}: {r['error']}" for r in failed[:5]))
    md_path.write_text("\n".join(parts) + "\n")
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
            print(f"{'done' if store.has(c) else 'todo'}  {c.key()}  {describe(c)}")
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
                        progress=progress)
    sys.stderr.write(f"sweep {spec.name}: {len(outcome.ok)} runs finished ({outcome.trained} trained now), "
                     f"{outcome.failed} failed\n")
    if a.out:
        layout = _layout(a, spec, configs)
        paths = write_report(rows_from_outcome(outcome), a.out, layout, title=f"Sweep {spec.name}",
                             command="lamp sweep " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None)
        print(json.dumps({"runs": len(configs), "trained": outcome.trained, "failed": outcome.failed,
                          "files": [str(p) for p in paths]}))
    return 1 if outcome.failed else 0
