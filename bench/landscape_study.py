"""Landscape study: is the minimum LAMP finds steeper than L2's (paper Fig. 1 and 3, §3.2)?

For trained models of the converged Table 1 protocol (bench/specs/table1_converged.json: 1000
MNIST training images per class, 20 epochs), base L2 and L2-LAMP of the same class, seed and batch
size (same initial weights, same batches), this computes three sharpness numbers at the trained
weights, in two metrics:

* ``own``: the loss each model was trained on (LAMP's own loss for LAMP models). This is what the
  paper's figures plot, but LAMP's loss lives on a larger scale, so it looks steeper for that
  reason alone;
* ``l2``: plain L2 for both models, one yardstick for both.

Numbers (lamp_core.landscape.sharpness), over the conv weights the landscape directions move
(biases and BatchNorm parameters excluded, as in Li et al.'s filter-normalised plots):
``lambda_max`` (top Hessian eigenvalue, power iteration), ``trace`` and ``trace_se`` (Hutchinson,
Rademacher probes), ``radius_increase`` (mean relative loss increase at distance 0.25 along random
filter-normalised directions; scale-free).

The paper's Fig. 3 shows "the encoder part of the AE trained to predict class labels"; there is
no classifier in a one-class autoencoder, so the lab draws the reconstruction loss of the whole
autoencoder instead, which is the quantity LAMP changes.

    nice -n 10 python bench/landscape_study.py --store <store folder>             # trains what is missing
    python bench/landscape_study.py --store <store folder> --report-only          # tables from the CSV

One CSV row per model and metric (bench/results/landscape_study.csv) is written as soon as it is
computed, so a killed study resumes; the markdown summary is rebuilt from the CSV.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from lamp_core import data as data_mod  # noqa: E402
from lamp_core.config import (DEFAULT_DETACH_MAX, DEFAULT_EPS, DEFAULT_MAX_OVER, LandscapeConfig,  # noqa: E402
                              run_key)
from lamp_core.files import atomic_write, read_csv_rows, write_csv_rows  # noqa: E402
from lamp_core.landscape import compute_sharpness  # noqa: E402
from lamp_core.references import landscape_ratios  # noqa: E402
from lamp_core.store import RunStore  # noqa: E402
from lamp_core.sweep import SweepSpec, describe, run_sweep  # noqa: E402

SPEC = ROOT / "bench/specs/table1_converged.json"
COLUMNS = ("normal_class", "seed", "batch_size", "lamp", "max_over", "detach_max", "eps", "metric",
           "lambda_max", "trace", "trace_se", "radius_increase", "center_loss", "auroc", "run_key")
METRICS = ("own", "l2")


def study_configs(classes, seeds, batch_sizes, max_over: str, detach_max: bool, eps: float):
    base = SweepSpec.load(SPEC).base
    out = []
    for c in classes:
        for s in seeds:
            for b in batch_sizes:
                cfg = base.with_data(normal_class=c).with_train(seed=s, batch_size=b)
                out.append(cfg.with_train(lamp=False))
                out.append(cfg.with_train(lamp=True, max_over=max_over, detach_max=detach_max, eps=eps))
    return out


def read_rows(path: Path) -> list[dict]:
    return read_csv_rows(path)


def write_rows(path: Path, rows: list[dict]) -> None:
    write_csv_rows(path, rows, COLUMNS)


def measure(cfgs, store: RunStore, csv_path: Path, lcfg: LandscapeConfig) -> list[dict]:
    rows = read_rows(csv_path)
    done = {(r["run_key"], r["metric"]) for r in rows}
    for cfg in cfgs:
        stored = store.get(cfg)
        if stored is None:
            print(f"missing from the store (train it first): {describe(cfg)}", file=sys.stderr)
            continue
        dataset = None
        measured: dict[str, dict] = {}
        for metric in METRICS:
            if (run_key(cfg), metric) in done:
                continue
            # a plain L2 model's own loss is L2: the two metrics are one computation
            same = "l2" if metric == "own" else "own"
            if not cfg.train.lamp and cfg.train.base_loss == "l2" and same in measured:
                s = measured[same]
            else:
                dataset = dataset or data_mod.load(cfg.data)
                s = compute_sharpness(stored.result, dataset,
                                      LandscapeConfig(**{**lcfg.__dict__, "metric": metric}))
            measured[metric] = s
            t = cfg.train
            rows.append({"normal_class": cfg.data.normal_class, "seed": t.seed, "batch_size": t.batch_size,
                         "lamp": t.lamp, "max_over": t.max_over if t.lamp else "", "eps": t.eps if t.lamp else "",
                         "detach_max": t.detach_max if t.lamp else "", "metric": metric,
                         "lambda_max": s["top_eigenvalue"], "trace": s["hessian_trace"],
                         "trace_se": s["hessian_trace_se"], "radius_increase": s["radius_increase"],
                         "center_loss": s["center"], "auroc": stored.evaluation.auroc, "run_key": run_key(cfg)})
            write_rows(csv_path, rows)          # after every model: a killed study resumes here
            print(f"{describe(cfg)} [{metric}] lambda_max {s['top_eigenvalue']:.4g} trace "
                  f"{s['hessian_trace']:.4g} radius {s['radius_increase']:.4g}", file=sys.stderr)
    return rows


def summary(rows: list[dict]) -> str:
    """Paired LAMP vs base per batch size and metric: geometric-mean ratio of lambda_max and trace
    (log-ratio t-interval: scale quantities), difference of the scale-free radius increase. The
    numbers are `lamp_core.references.landscape_ratios`, the computation the app's Loss landscape
    page shows as the study's verdict, so the two cannot differ."""
    out = ["| batch | metric | pairs | λmax LAMP/base [95% CI] | trace LAMP/base [95% CI] | "
           "radius increase LAMP − base [95% CI] | steeper with LAMP (λmax, trace, radius) |",
           "|---|---|---|---|---|---|---|"]
    for (bs, metric), s in landscape_ratios(rows).items():
        if bs == "all":             # the pooled rows are the app's; the table is per batch size
            continue
        cells = []
        for field in ("lambda_max", "trace"):
            cells.append(f"{s[field]:.2f}× [{s[field + '_lo']:.2f}, {s[field + '_hi']:.2f}]"
                         if s[field + "_n"] > 1 else f"{s[field]:.2f}×")
        r = "radius_increase"
        cells.append(f"{s[r]:+.3f} [{s[r + '_lo']:+.3f}, {s[r + '_hi']:+.3f}]" if s[r + "_n"] > 1 else f"{s[r]:+.3f}")
        wins = [f"{s[f + '_steeper']}/{s['pairs']}" for f in ("lambda_max", "trace", r)]
        out.append(f"| {bs} | {metric} | {s['pairs']} | {cells[0]} | {cells[1]} | {cells[2]} | {', '.join(wins)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="run store folder shared with the Table 1 reproduction")
    ap.add_argument("--classes", default="0,1,2")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--batch-sizes", default="128,16,4")
    ap.add_argument("--max-over", default=DEFAULT_MAX_OVER, help="LAMP reading: where the max of eq. 2 is "
                    "taken (default: the engine's)")
    ap.add_argument("--detach-max", choices=("on", "off"), default="on" if DEFAULT_DETACH_MAX else "off")
    ap.add_argument("--eps", type=float, default=DEFAULT_EPS)
    ap.add_argument("--n-images", type=int, default=256, help="normal training images the numbers are taken on")
    ap.add_argument("--report-only", action="store_true", help="rebuild the markdown from the CSV")
    ap.add_argument("--merge", nargs="*", default=[], help="CSV files of parallel workers (their own --out) "
                    "whose rows join this study's CSV before the report")
    ap.add_argument("--out", default="bench/results/landscape_study")
    a = ap.parse_args(argv)
    ints = lambda s: [int(v) for v in s.split(",") if v.strip()]  # noqa: E731
    out = ROOT / a.out
    csv_path = out.with_suffix(".csv")
    if not a.report_only:
        cfgs = study_configs(ints(a.classes), ints(a.seeds), ints(a.batch_sizes), a.max_over,
                             a.detach_max == "on", a.eps)
        store = RunStore(Path(a.store))
        run_sweep(cfgs, store)              # trains what the store lacks (stacked), resumable
        measure(cfgs, store, csv_path, LandscapeConfig(n_images=a.n_images))
    if a.merge:
        rows = read_rows(csv_path)
        have = {(r["run_key"], r["metric"]) for r in rows}
        for extra in a.merge:
            for r in read_rows(Path(extra)):
                if (r["run_key"], r["metric"]) not in have:
                    rows.append(r)
                    have.add((r["run_key"], r["metric"]))
        write_rows(csv_path, rows)
    rows = read_rows(csv_path)
    reading = {(r["max_over"], r["detach_max"], r["eps"]) for r in rows if r["lamp"] == "True"}
    md = ["# Landscape study: is LAMP's minimum steeper?", "",
          f"Command: `nice -n 10 python bench/landscape_study.py --store <store folder> --classes {a.classes} "
          f"--seeds {a.seeds} --batch-sizes {a.batch_sizes}`; models from bench/specs/table1_converged.json; "
          f"LAMP reading(s) (max_over, detach_max, eps): {sorted(reading)}.", "",
          f"{len(rows)} rows (one per model and metric) in {csv_path.name}. Numbers over the conv weights the "
          f"landscape directions move, on {a.n_images} normal training images, BatchNorm in eval mode. "
          "Ratios are geometric means of LAMP/base over pairs (same class, seed, batch size) with a t-interval "
          "of the log-ratio; the last column counts pairs where LAMP's number is larger.", "",
          summary(rows), ""]
    notes = ROOT / "bench" / "specs" / "landscape_study_notes.md"     # written after reading the table
    if notes.is_file():
        md += ["## Notes", "", notes.read_text()]
    atomic_write(out.with_suffix(".md"), "\n".join(md).encode())
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
