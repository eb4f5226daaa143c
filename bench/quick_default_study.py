"""Which quick default comparison tells students what the converged lab says?

The app's default comparison must finish (3 seeds x base and LAMP, click to ROC) in about 20 s on
a 2-core CPU, so its models are short runs. A short run is only a fair exercise when its verdicts
have the same sign as the lab's converged results:

* LAMP against base AUROC at the default batch size (converged Table 1,
  bench/results/table1.md: higher at batch 32 and 128);
* the landscape: steeper than the base in LAMP's own loss, flatter in the common L2 metric
  (converged landscape study, bench/results/landscape_study.md: lambda_max and trace).

For each candidate setting (training images, epochs, batch size, learning rate) this trains
10 classes x 3 seeds x {base, LAMP} on the MNIST subset the app ships (the app's data and test
set) and measures, per pair, AUROC and the sharpness numbers the app's landscape page shows (its
64 images, Hessian iterations and Hutchinson probes) in both metrics. One CSV row per model and
metric is written as soon as it is measured, so a killed study resumes; candidates are chosen on
classes 0-4 and confirmed on 5-9 by the report (`--report-only`).

    nice -n 10 .venv/bin/python bench/quick_default_study.py --store <store> --classes 0,1,2,3,4
    nice -n 10 .venv/bin/python bench/quick_default_study.py --store <store> --classes 5,6,7,8,9 \
        --out bench/results/quick_default_study_5to9
    .venv/bin/python bench/quick_default_study.py --report-only --merge bench/results/quick_default_study_5to9.csv
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from lamp_core import data as data_mod  # noqa: E402
from lamp_core.config import DataConfig, LandscapeConfig, ModelConfig, RunConfig, TrainConfig, run_key  # noqa: E402
from lamp_core.files import atomic_write, read_csv_rows, write_csv_rows  # noqa: E402
from lamp_core.landscape import compute_sharpness  # noqa: E402
from lamp_core.stats import paired  # noqa: E402
from lamp_core.store import RunStore  # noqa: E402
from lamp_core.data import MNIST_SUBSET_DIR  # noqa: E402

# Candidates: (training images, epochs, batch size, learning rate). "now" is the default the
# lesson shipped before this study (500 images, 5 epochs); the others cost about 1-2x its training.
CANDIDATES = {
    "now": (500, 5, 32, 1e-3),
    "n1000_e5_b32": (1000, 5, 32, 1e-3),
    "n500_e10_b32": (500, 10, 32, 1e-3),
    "n500_e5_b16": (500, 5, 16, 1e-3),
}
# The app's landscape page: 64 images, 10 power iterations, 8 Hutchinson probes, 4 radius directions
SHARPNESS = LandscapeConfig(nx=13, ny=13, n_images=64, metric="l2", hessian_iters=10, hutchinson_samples=8,
                            radius_directions=4)
COLUMNS = ("candidate", "max_train", "epochs", "batch_size", "lr", "normal_class", "seed", "lamp", "metric",
           "auroc", "lambda_max", "trace", "radius_increase", "center_loss", "train_seconds", "steps",
           "loss_history", "run_key")


def candidate_config(name: str, normal_class: int, seed: int, lamp: bool) -> RunConfig:
    n, epochs, bs, lr = CANDIDATES[name]
    return RunConfig(data=DataConfig(dataset="mnist", data_root=str(MNIST_SUBSET_DIR), normal_class=normal_class,
                                     image_size=28, max_train=n),
                     model=ModelConfig(),
                     train=TrainConfig(epochs=epochs, batch_size=bs, lr=lr, seed=seed, lamp=lamp, device="cpu"))


def read_rows(path: Path) -> list[dict]:
    return read_csv_rows(path)


def write_rows(path: Path, rows: list[dict]) -> None:
    write_csv_rows(path, rows, COLUMNS)


def measure(candidates, classes, seeds, store: RunStore, csv_path: Path) -> None:
    from lamp_core.runner import run_config
    rows = read_rows(csv_path)
    done = {(r["run_key"], r["metric"]) for r in rows}
    for name in candidates:
        for c in classes:
            for s in seeds:
                for lamp in (False, True):
                    cfg = candidate_config(name, c, s, lamp)
                    metrics = ("l2", "own") if lamp else ("l2",)
                    if all((run_key(cfg), m) in done for m in metrics):
                        continue
                    t0 = time.perf_counter()
                    rec = run_config(cfg, store=store)
                    dataset = data_mod.load(cfg.data)
                    for m in metrics:
                        sh = compute_sharpness(rec.result, dataset, replace(SHARPNESS, metric=m))
                        rows.append({"candidate": name, "max_train": cfg.data.max_train, "epochs": cfg.train.epochs,
                                     "batch_size": cfg.train.batch_size, "lr": cfg.train.lr, "normal_class": c,
                                     "seed": s, "lamp": lamp, "metric": m, "auroc": rec.evaluation.auroc,
                                     "lambda_max": sh["top_eigenvalue"], "trace": sh["hessian_trace"],
                                     "radius_increase": sh["radius_increase"], "center_loss": sh["center"],
                                     "train_seconds": round(rec.result.seconds, 3), "steps": rec.result.steps,
                                     "loss_history": json.dumps([round(v, 4) for v in rec.result.history["loss"]]),
                                     "run_key": run_key(cfg)})
                    write_rows(csv_path, rows)
                    print(f"{name} class {c} seed {s} {'LAMP' if lamp else 'base'}: AUROC "
                          f"{rec.evaluation.auroc:.3f} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def pairs_of(rows: list[dict], candidate: str, classes: set[int]) -> list[dict]:
    """{"base": l2 row, "lamp_l2": row, "lamp_own": row} per (class, seed) of one candidate."""
    by: dict[tuple, dict] = {}
    for r in rows:
        if r["candidate"] != candidate or int(r["normal_class"]) not in classes:
            continue
        lamp = r["lamp"] in ("True", True)
        k = "base" if not lamp else f"lamp_{r['metric']}"
        by.setdefault((int(r["normal_class"]), int(r["seed"])), {})[k] = r
    return [v for _, v in sorted(by.items()) if len(v) == 3]


def verdicts(ps: list[dict]) -> dict:
    """Paired AUROC difference and geometric-mean sharpness ratios (LAMP / base) over pairs."""
    d = paired([_f(p["lamp_l2"]["auroc"]) - _f(p["base"]["auroc"]) for p in ps])
    out = {"pairs": len(ps), "base_auroc": sum(_f(p["base"]["auroc"]) for p in ps) / max(len(ps), 1),
           "lamp_auroc": sum(_f(p["lamp_l2"]["auroc"]) for p in ps) / max(len(ps), 1),
           "delta": d.mean, "delta_lo": d.lo, "delta_hi": d.hi,
           "wins": sum(1 for p in ps if _f(p["lamp_l2"]["auroc"]) > _f(p["base"]["auroc"]))}
    for view in ("own", "l2"):
        for field in ("lambda_max", "trace"):
            logs = [math.log(_f(p[f"lamp_{view}"][field]) / _f(p["base"][field])) for p in ps]
            r = paired(logs)
            out[f"{view}_{field}"] = math.exp(r.mean)
            out[f"{view}_{field}_lo"], out[f"{view}_{field}_hi"] = math.exp(r.lo), math.exp(r.hi)
            out[f"{view}_{field}_steeper"] = sum(1 for v in logs if v > 0)
    out["seconds_per_run"] = sum(_f(p["base"]["train_seconds"]) + _f(p["lamp_l2"]["train_seconds"])
                                 for p in ps) / max(2 * len(ps), 1)
    return out


def category(lo: float, hi: float) -> str:
    """A paired difference's verdict as its interval allows: higher, lower or level."""
    return "higher" if lo > 0 else "lower" if hi < 0 else "level"


def agrees(v: dict, batch_size: int) -> dict[str, bool]:
    """The three verdicts of the converged lab, each as its interval allows: LAMP against L2 AUROC
    at this batch size (converged Table 1: higher, level or lower), steeper in LAMP's own loss and
    flatter in L2 (both lambda_max and trace: geometric mean over pairs on the converged side of 1)."""
    from lamp_core.references import converged_table1, landscape_verdict
    conv = converged_table1()[batch_size]
    lv = landscape_verdict()
    return {"auroc": category(v["delta_lo"], v["delta_hi"]) == category(conv["delta_lo"], conv["delta_hi"]),
            "own_steeper": (v["own_lambda_max"] > 1 and v["own_trace"] > 1) == bool(lv["steeper_in_own"]),
            "l2_flatter": (v["l2_lambda_max"] < 1 and v["l2_trace"] < 1) == bool(lv["flatter_in_l2"])}


def _conv_text(batch_size: int) -> str:
    from lamp_core.references import converged_table1
    c = converged_table1()[batch_size]
    return f"{c['delta']:+.3f} [{c['delta_lo']:+.3f}, {c['delta_hi']:+.3f}] ({category(c['delta_lo'], c['delta_hi'])})"


def report(rows: list[dict], cmd: str, timing: dict | None = None) -> str:
    timing = timing or {}
    names = [n for n in CANDIDATES if any(r["candidate"] == n for r in rows)]
    md = ["# The quick default's verdicts against the converged lab", "",
          f"Command: `{cmd}`", "",
          "Each candidate trains 10 MNIST classes (the subset the app ships) x 3 seeds x {L2, L2-LAMP with the "
          "default reading}; LAMP and base of one class and seed share initial weights and batches. Sharpness is "
          "measured as the app's landscape page measures it (64 normal training images, BatchNorm in eval mode, "
          "10 power iterations, 8 Hutchinson probes), in LAMP's own loss and in plain L2. Ratios are geometric "
          "means of LAMP / base over the pairs with a t-interval of the log-ratio; Δ is the paired LAMP − base "
          "AUROC with its 95% t-interval; 'steeper' counts pairs where LAMP's number is larger. A verdict is worded "
          "as its interval allows (higher, level or lower), and a candidate agrees with the converged lab when its "
          "verdict is the same: LAMP against L2 at the candidate's batch size in the converged Table 1 "
          "(bench/results/table1.md), and λmax and trace higher in the own view and lower in the L2 view (landscape "
          "study, bench/results/landscape_study.md).", ""]
    for label, classes in (("chosen on classes 0-4", set(range(5))), ("confirmed on classes 5-9", set(range(5, 10))),
                           ("all ten classes", set(range(10)))):
        md += [f"## {label}", "",
               "| candidate (images, epochs, batch, lr) | pairs | base AUROC | LAMP AUROC | Δ [95% CI] | wins | "
               "converged Δ at this batch | own λmax [CI] (steeper) | own trace | L2 λmax [CI] (steeper) | L2 trace | "
               "steps / image passes per run | training time vs now | agrees with the converged verdict on |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for n in names:
            ps = pairs_of(rows, n, classes)
            if len(ps) < 2:
                continue
            v = verdicts(ps)
            a = agrees(v, CANDIDATES[n][2])
            spec = ", ".join(f"{x:g}" for x in CANDIDATES[n])
            n_img, ep, bs, _ = CANDIDATES[n]
            steps = -(-n_img // bs) * ep
            ratio = f"{timing['ratio_to_now'][n]:.2f}×" if n in timing.get("ratio_to_now", {}) else "–"
            md.append(
                f"| {n} ({spec}) | {v['pairs']} | {v['base_auroc']:.3f} | {v['lamp_auroc']:.3f} | "
                f"{v['delta']:+.3f} [{v['delta_lo']:+.3f}, {v['delta_hi']:+.3f}] | {v['wins']}/{v['pairs']} | "
                f"{_conv_text(CANDIDATES[n][2])} | {v['own_lambda_max']:.2f}× [{v['own_lambda_max_lo']:.2f}, {v['own_lambda_max_hi']:.2f}] "
                f"({v['own_lambda_max_steeper']}/{v['pairs']}) | {v['own_trace']:.2f}× | "
                f"{v['l2_lambda_max']:.2f}× [{v['l2_lambda_max_lo']:.2f}, {v['l2_lambda_max_hi']:.2f}] "
                f"({v['l2_lambda_max_steeper']}/{v['pairs']}) | {v['l2_trace']:.2f}× | "
                f"{steps} / {n_img * ep} | {ratio} | {', '.join(k for k, ok in a.items() if ok) or 'none'} |")
        md.append("")
    return "\n".join(md)


def time_candidates(path: Path, threads: int, repeats: int = 3) -> dict:
    """Training seconds of one run of each candidate (digit 8, seed 0, L2), all measured in this one
    process, interleaved, median of `repeats`: the ratios to "now" are what the report quotes (the
    study's own train_seconds were taken while the machine was shared, so they are not comparable)."""
    import statistics

    import torch

    from lamp_core.train import train
    torch.set_num_threads(threads)
    cfgs = {n: candidate_config(n, 8, 0, False) for n in CANDIDATES}
    datas = {n: data_mod.load(c.data) for n, c in cfgs.items()}
    train(cfgs["now"], datas["now"])                 # warm-up: first-call costs out of the figures
    secs: dict[str, list[float]] = {n: [] for n in CANDIDATES}
    for _ in range(repeats):
        for n, c in cfgs.items():
            t0 = time.perf_counter()
            train(c, datas[n])
            secs[n].append(time.perf_counter() - t0)
    med = {n: statistics.median(v) for n, v in secs.items()}
    out = {"threads": threads, "repeats": repeats, "seconds": med,
           "ratio_to_now": {n: med[n] / med["now"] for n in med}}
    atomic_write(path, (json.dumps(out, indent=1) + "\n").encode())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="run store folder (runs are reused when the study resumes)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/quick_default_study")
    ap.add_argument("--merge", nargs="*", default=[], help="CSV files of parallel workers to join before the report")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--time", action="store_true", help="only time one run of each candidate in this process "
                    "(writes <out>_timing.json, which the report quotes)")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    out = ROOT / a.out
    csv_path = out.with_suffix(".csv")
    if a.time:
        print(json.dumps(time_candidates(out.parent / (out.name + "_timing.json"), threads=2), indent=1))
        return 0
    if not a.report_only:
        if not a.store:
            print("error: --store is required to train (or pass --report-only)", file=sys.stderr)
            return 2
        ints = lambda s: [int(v) for v in s.split(",") if v.strip()]  # noqa: E731
        unknown = [c for c in a.candidates.split(",") if c not in CANDIDATES]
        if unknown:
            print(f"error: unknown candidate(s) {', '.join(unknown)}: choose from {', '.join(CANDIDATES)}",
                  file=sys.stderr)
            return 2
        measure(a.candidates.split(","), ints(a.classes), ints(a.seeds), RunStore(Path(a.store)), csv_path)
        return 0
    rows = read_rows(csv_path)
    have = {(r["run_key"], r["metric"]) for r in rows}
    for extra in a.merge:
        for r in read_rows(ROOT / extra if not Path(extra).is_absolute() else Path(extra)):
            if (r["run_key"], r["metric"]) not in have:
                rows.append(r)
                have.add((r["run_key"], r["metric"]))
    write_rows(csv_path, rows)
    tpath = out.parent / (out.name + "_timing.json")
    timing = json.loads(tpath.read_text()) if tpath.is_file() else {}
    md = report(rows, "nice -n 10 python bench/quick_default_study.py --store <store> --classes 0,1,2,3,4 "
                      "(and 5-9 with --out …_5to9 in a second process), then --time and --report-only --merge",
                timing)
    if timing:
        md += (f"\nTraining time vs now: one run of each candidate (digit 8, seed 0, L2) timed in one process at "
               f"{timing['threads']} threads, interleaved, median of {timing['repeats']} "
               f"({tpath.name}; 'now' took {timing['seconds']['now']:.2f} s).\n")
    notes = ROOT / "bench" / "specs" / "quick_default_study_notes.md"
    if notes.is_file():
        md += "\n## Notes\n\n" + notes.read_text()
    atomic_write(out.with_suffix(".md"), md.encode())
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
