"""Reports of sweeps: a CSV of every run, and the paper's tables with seeds and statistics.

The paper (Tables 1-2) reports one number per cell: the best AUROC over tuned hyperparameters,
picked on the test set, with no seeds and no spread. Here every cell is

* mean ± std over seeds (for Table 1 the ten classes are first averaged per seed, as the paper
  averages its ten one-class tasks),
* the paired difference LAMP − base over every (seed, class/category) pair that shares initial
  weights and batch order, with a t-based 95% confidence interval (the pair-level interval: it
  covers the seeds' weights and batch order, not which classes were drawn),
* beside it the class-level interval: the difference averaged over the seeds of each class or
  category (the unit), then a t-interval over the units, so that an effect carried by a few
  classes is not read as a general one, and
* the number of pairs LAMP won (ties counted apart).

Words follow the intervals (`verdict`): "higher" or "lower" only where an interval excludes 0,
and two means closer than `TIE_TOL` are equal (AUROC moves in steps, and a float comparison of
two equal means can miss the tie).

Two selection protocols, always labelled:

* ``test`` (the paper's): for each arm, the best test AUROC over the tuned hyperparameters
  (learning rate, kernel size, patches, ...). Optimistic: selection and report use the same data.
* ``val`` (honest): for each arm, the hyperparameters with the lowest validation score (mean
  anomaly score of held-out *normal* images, `DataConfig.val_fraction` > 0), reported on test.

Figures are plain plotly functions (no Streamlit): AUROC against batch size with error bars, and
per-category bars.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from .config import LampError, RunConfig, run_key
from .stats import Paired, fmt_ms, mean_std, paired

if TYPE_CHECKING:
    from .store import RunStore

# CSV columns: what identifies a run, then what it measured
ID_FIELDS = ("key", "dataset", "data_root", "unit", "image_size", "max_train", "max_test", "val_fraction",
             "base_loss", "lamp", "eps", "max_over", "detach_max", "optimizer", "lr", "batch_size",
             "epochs", "kernel_size", "patches", "width", "depth", "seed")
METRIC_FIELDS = ("auroc", "pixel_auroc", "average_precision", "f1_max", "f1_at_normal_p95", "val_score",
                 "seconds", "steps", "diverged", "error")
# Two means (or a difference) closer than this are equal. Far above float rounding (~1e-16) and far
# below one AUROC step of any test set here averaged over the pairs: grid's 3 normal x 11 anomalous
# test images give steps of 1/33; a 2000-image MNIST test set 1/(200 x 1800), over 50 pairs ~6e-8.
TIE_TOL = 1e-9
PROTOCOLS = {
    "test": "paper's protocol: best test AUROC over the tuned hyperparameters (optimistic)",
    "val": "honest protocol: hyperparameters chosen by the lowest validation score (held-out normal "
           "images), AUROC reported on test",
}


def unit_of(cfg: RunConfig) -> str:
    """The one-class task: a digit class ('3') or an MVTec category ('grid')."""
    d = cfg.data
    if d.dataset in ("digits", "mnist", "fashion-mnist"):
        return str(d.normal_class)
    return d.category or (Path(d.data_root).name if d.data_root else d.dataset)


def metrics_of(evaluation) -> dict[str, Any]:
    """What a run measured (None for each when it has no evaluation, e.g. a stopped run)."""
    ev = evaluation
    return {"auroc": ev.auroc if ev else None, "pixel_auroc": ev.pixel_auroc if ev else None,
            "average_precision": ev.average_precision if ev else None, "f1_max": ev.f1_max if ev else None,
            # f1_max stays for older CSVs; f1_at_normal_p95 is the F1 that separates models (evaluate.py)
            "f1_at_normal_p95": ev.f1_at_normal_p95 if ev else None,
            "val_score": ev.val_score if ev else None}


def run_summary(record) -> dict[str, Any]:
    """The one summary of a run (a `runner.RunRecord`): what it measured, how the training went,
    where it came from, its identity and its config. `lamp train --json` prints it; a results
    table is these keys (plus whatever names the row)."""
    r = record.result
    return {
        **metrics_of(record.evaluation),
        "seconds": round(r.seconds, 3), "steps": r.steps, "epochs_done": r.epochs_done, "stopped": r.stopped,
        "diverged": r.diverged, "final_loss": r.history["loss"][-1] if r.history.get("loss") else None,
        "device": r.device, "cached": record.cached, "key": run_key(r.config), "config": r.config.to_dict(),
    }


def row_of(cfg: RunConfig, evaluation=None, *, seconds: float | None = None, steps: int | None = None,
           diverged: bool | None = None, error: str | None = None) -> dict[str, Any]:
    """One CSV row of a sweep: the fields that identify the run (ID_FIELDS), then its metrics."""
    d, m, t = cfg.data, cfg.model, cfg.train
    row: dict[str, Any] = {
        "key": run_key(cfg), "dataset": d.dataset, "data_root": d.data_root, "unit": unit_of(cfg),
        "image_size": d.image_size, "max_train": d.max_train, "max_test": d.max_test,
        "val_fraction": d.val_fraction, "base_loss": t.base_loss, "lamp": t.lamp, "eps": t.eps,
        "max_over": t.max_over, "detach_max": t.detach_max, "optimizer": t.optimizer, "lr": t.lr,
        "batch_size": t.batch_size, "epochs": t.epochs, "kernel_size": m.kernel_size, "patches": m.patches,
        "width": m.width, "depth": m.depth, "seed": t.seed,
    }
    row.update(metrics_of(evaluation))
    row.update({"seconds": seconds, "steps": steps, "diverged": diverged, "error": error})
    return row


def rows_from_outcome(outcome) -> list[dict[str, Any]]:
    return [row_of(r.config, r.evaluation, seconds=r.seconds, steps=r.steps, diverged=r.diverged,
                   error=r.error) for r in outcome.runs]


def rows_from_store(configs: Iterable[RunConfig], store: RunStore) -> list[dict[str, Any]]:
    """Rows of the configs found in the store (missing ones are left out)."""
    rows = []
    for cfg in configs:
        stored = store.get(cfg)
        if stored is not None:
            r = stored.result
            rows.append(row_of(cfg, stored.evaluation, seconds=r.seconds, steps=r.steps, diverged=r.diverged))
    return rows


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """The one CSV writer: a header and one line per row, missing values blank, metrics' floats
    with 6 decimals. `columns` defaults to a sweep's ID_FIELDS + METRIC_FIELDS."""
    columns = list(columns or ID_FIELDS + METRIC_FIELDS)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6f}" if isinstance(r.get(k), float)
                                                     and k in METRIC_FIELDS else r[k]))
                    for k in columns})
    return buf.getvalue()


_INT_FIELDS = {"image_size", "max_train", "max_test", "batch_size", "epochs", "kernel_size", "patches", "width",
               "depth", "seed", "steps"}
_FLOAT_FIELDS = {"val_fraction", "eps", "lr", "auroc", "pixel_auroc", "average_precision", "f1_max",
                 "f1_at_normal_p95", "val_score", "seconds"}
_BOOL_FIELDS = {"lamp", "detach_max", "diverged"}


def rows_from_csv(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a sweep CSV written by `to_csv`, with the types `row_of` gives them (blank:
    None), so a report can be written again from a recorded CSV without the run store."""
    out = []
    with Path(path).open(newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if v is None or v == "":
                    row[k] = None
                elif k in _INT_FIELDS:
                    row[k] = int(v)
                elif k in _FLOAT_FIELDS:
                    row[k] = float(v)
                elif k in _BOOL_FIELDS:
                    row[k] = v.strip().lower() == "true"
                else:
                    row[k] = v
            out.append(row)
    return out


# ----------------------------------------------------------------------------- selection

def select(rows: Sequence[dict[str, Any]], *, protocol: str, metric: str = "auroc",
           group: Sequence[str]) -> dict[tuple, dict[str, Any]]:
    """One row per `group` value (which must include lamp, seed and unit): among the rows of a
    group (they differ in the tuned hyperparameters), the one `protocol` chooses. Rows without
    the metric (failed runs) are skipped."""
    if protocol not in PROTOCOLS:
        raise LampError(f"unknown selection protocol {protocol!r}: choose test or val")
    buckets: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get(metric) is None or (isinstance(r[metric], float) and math.isnan(r[metric])):
            continue
        buckets[tuple(r[g] for g in group)].append(r)
    chosen = {}
    for k, rs in buckets.items():
        if protocol == "test":
            chosen[k] = max(rs, key=lambda r: r[metric])
        else:
            with_val = [r for r in rs if r.get("val_score") is not None and math.isfinite(r["val_score"])]
            if not with_val:
                raise LampError("the val protocol needs a validation split: run the sweep with "
                                "data.val_fraction > 0 (e.g. --val-fraction 0.1)")
            # lowest mean anomaly score on held-out normals; ties go to the first such row
            chosen[k] = min(with_val, key=lambda r: r["val_score"])
    return chosen


@dataclass
class Cell:
    base: tuple[float, float, int]       # mean, std over seeds, n seeds
    lamp: tuple[float, float, int]
    paired: Paired                       # pair-level: every (seed, unit) pair
    values: dict[str, list[float]] = field(default_factory=dict)   # per arm: one value per seed
    # class-level: per unit (class or category) the mean over seeds of its pairs' differences,
    # then the t-interval over the units (n = units; no interval for one unit)
    by_unit: Paired = field(default_factory=lambda: paired([]))


def cells(rows: Sequence[dict[str, Any]], *, cell_fields: Sequence[str], protocol: str = "test",
          metric: str = "auroc", average_units: bool = True) -> dict[tuple, Cell]:
    """Per cell (values of `cell_fields`): mean ± std over seeds of each arm and the paired
    difference. With `average_units`, each seed's value is the mean over the units (classes or
    categories) in the cell first, as the paper averages its ten MNIST tasks."""
    rows = list(rows)
    group = list(cell_fields) + ["unit", "seed", "lamp"]
    chosen = select(rows, protocol=protocol, metric=metric, group=group)
    by_cell: dict[tuple, dict] = defaultdict(lambda: {"base": defaultdict(dict), "lamp": defaultdict(dict)})
    for k, r in chosen.items():
        cell = k[:len(cell_fields)]
        unit, seed, lamp = k[len(cell_fields):]
        by_cell[cell]["lamp" if lamp else "base"][seed][unit] = r[metric]
    out = {}
    for cell, arms in by_cell.items():
        values = {}
        for arm in ("base", "lamp"):
            vals = []
            for seed, units in sorted(arms[arm].items()):
                vals.extend([float(np.mean(list(units.values())))] if average_units else list(units.values()))
            values[arm] = vals
        # a pair whose two AUROCs differ by float rounding only is a tie, however the values were
        # stored (full precision in the run store, 6 decimals in a CSV)
        diffs = [_snap(arms["lamp"][s][u] - arms["base"][s][u])
                 for s in arms["lamp"] for u in arms["lamp"][s] if u in arms["base"].get(s, {})]
        per_unit: dict[str, list[float]] = defaultdict(list)
        for s in arms["lamp"]:
            for u in arms["lamp"][s]:
                if u in arms["base"].get(s, {}):
                    per_unit[u].append(_snap(arms["lamp"][s][u] - arms["base"][s][u]))
        by_unit = paired([float(np.mean(v)) for _, v in sorted(per_unit.items())])
        out[cell] = Cell(mean_std(values["base"]), mean_std(values["lamp"]), paired(diffs), values, by_unit)
    return out


def _snap(d: float) -> float:
    return 0.0 if abs(d) < TIE_TOL else d


def unit_level(rows: Sequence[dict[str, Any]], **kw) -> Paired:
    """The class-level difference of rows that form one cell (see `cells`)."""
    cs = cells(rows, cell_fields=[], **kw)
    return cs[()].by_unit if cs else paired([])


def excludes_zero(p: Paired) -> bool:
    return not math.isnan(p.lo) and (p.lo > 0 or p.hi < 0)


def verdict(p: Paired, by_unit: Paired | None = None, *, unit: str = "class") -> str:
    """LAMP against the base in words its intervals allow: "higher"/"lower" only where the
    pair-level interval excludes 0, and "over pairs, not over classes" where the class-level one
    (when given, with at least two units) includes 0; otherwise "level" or the mean's sign with
    "interval includes 0"."""
    if p.n == 0:
        return "no pairs"
    if abs(p.mean) < TIE_TOL:
        return "level"
    word = "higher" if p.mean > 0 else "lower"
    if not excludes_zero(p):
        return f"mean {word}, interval includes 0"
    if by_unit is not None and by_unit.n >= 2 and not excludes_zero(by_unit):
        return f"{word} over pairs, but the {unit}-level interval includes 0"
    return word


def unit_text(c: Cell, digits: int = 3) -> str:
    """The class-level difference as a table shows it: mean [95% CI], or the mean alone for one unit."""
    return c.by_unit.text(digits)


# ----------------------------------------------------------------------------- markdown tables

LOSS_NAME = {"l2": "L2", "l1": "L1", "ssim": "SSIM"}
OPT_NAME = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam"}


def _seeds_units(rows) -> tuple[int, int]:
    return len({r["seed"] for r in rows}), len({r["unit"] for r in rows})


def table1_markdown(rows: Sequence[dict[str, Any]], *, protocol: str = "test",
                    paper: dict[str, dict[int, float]] | None = None, loss: str = "l2") -> str:
    """Paper Table 1 layout: rows L2 / L2-LAMP, columns batch sizes (descending)."""
    rows = [r for r in rows if r["base_loss"] == loss]
    bss = sorted({r["batch_size"] for r in rows}, reverse=True)
    cs = cells(rows, cell_fields=["batch_size"], protocol=protocol)
    n_seeds, n_units = _seeds_units(rows)
    seeds_text = f"{n_seeds} seeds"
    per_bs = {b: len({r["seed"] for r in rows if r["batch_size"] == b}) for b in bss}
    if len(set(per_bs.values())) > 1:      # extra seeds where the pairs needed more power
        seeds_text = f"{min(per_bs.values())}-{max(per_bs.values())} seeds (" + ", ".join(
            f"batch {b}: {n}" for b, n in per_bs.items()) + ")"
    name = LOSS_NAME.get(loss, loss)
    lines = [f"*Selection: {PROTOCOLS[protocol]}.* Mean ± std over {seeds_text} of the AUROC "
             f"averaged over {n_units} classes; Δ = paired LAMP − {name} over seeds × classes with a "
             "95% t-interval (pair-level); class-level Δ = each class's difference averaged over its "
             f"seeds, with a 95% t-interval over the {n_units} classes (the class as the unit); wins = "
             "pairs where LAMP is higher (of all pairs).", "",
             "| Loss | " + " | ".join(str(b) for b in bss) + " |",
             "|---|" + "---|" * len(bss)]
    lines.append(f"| {name} | " + " | ".join(fmt_ms(*cs[(b,)].base[:2]) if (b,) in cs else "–" for b in bss) + " |")
    lines.append(f"| {name}-LAMP | " + " | ".join(fmt_ms(*cs[(b,)].lamp[:2]) if (b,) in cs else "–" for b in bss)
                 + " |")
    lines.append("| Δ LAMP − base [95% CI] | " + " | ".join(cs[(b,)].paired.text() if (b,) in cs else "–"
                                                            for b in bss) + " |")
    lines.append("| Δ class-level [95% CI] | " + " | ".join(unit_text(cs[(b,)]) if (b,) in cs else "–"
                                                            for b in bss) + " |")
    lines.append("| LAMP wins / pairs | " + " | ".join(
        f"{cs[(b,)].paired.wins}/{cs[(b,)].paired.n}" if (b,) in cs else "–" for b in bss) + " |")
    if paper:
        for label, vals in paper.items():
            lines.append(f"| paper: {label} | " + " | ".join(f"{vals[b]:.3f}" if b in vals else "–" for b in bss)
                         + " |")
    return "\n".join(lines) + "\n"


def table2_markdown(rows: Sequence[dict[str, Any]], *, protocol: str = "test", metric: str = "auroc",
                    paper: dict[str, dict[tuple[str, str], tuple[float, float]]] | None = None) -> str:
    """Paper Table 2 layout: rows categories (+ average), columns base loss × optimizer, each cell
    'base → LAMP' (mean over seeds, ± std), then the paired difference per setting."""
    rows = [r for r in rows if r.get(metric) is not None]
    if not rows:
        return f"(no {metric} values)\n"
    losses = [l for l in ("l2", "l1", "ssim") if any(r["base_loss"] == l for r in rows)]
    opts = [o for o in ("sgd", "rmsprop", "adam") if any(r["optimizer"] == o for r in rows)]
    units = sorted({r["unit"] for r in rows})
    settings = [(l, o) for l in losses for o in opts]
    per_unit = cells(rows, cell_fields=["unit", "base_loss", "optimizer"], protocol=protocol, metric=metric,
                     average_units=False)
    overall = cells(rows, cell_fields=["base_loss", "optimizer"], protocol=protocol, metric=metric)
    n_seeds, n_units = _seeds_units(rows)
    head = " | ".join(f"{LOSS_NAME[l]} {OPT_NAME[o]}" for l, o in settings)
    lines = [f"*Selection: {PROTOCOLS[protocol]}.* Metric: {metric}. Each cell: base → LAMP, mean ± std "
             f"over {n_seeds} seeds. Δ rows: paired LAMP − base over seeds × categories, 95% t-interval "
             f"(pair-level); category-level: each category's difference averaged over its seeds, 95% "
             f"t-interval over the {n_units} categories.",
             "", f"| Category | {head} |", "|---|" + "---|" * len(settings)]

    def arrow(c: Cell | None) -> str:
        if c is None:
            return "–"
        return f"{fmt_ms(*c.base[:2])} → {fmt_ms(*c.lamp[:2])}"
    for u in units:
        lines.append(f"| {u} | " + " | ".join(arrow(per_unit.get((u, l, o))) for l, o in settings) + " |")
        if paper and u in paper:
            lines.append(f"| paper: {u} | " + " | ".join(
                (f"{paper[u][(l, o)][0]:.3f} → {paper[u][(l, o)][1]:.3f}" if (l, o) in paper[u] else "–")
                for l, o in settings) + " |")
    lines.append("| **Average** | " + " | ".join(arrow(overall.get((l, o))) for l, o in settings) + " |")
    lines.append("| Δ LAMP − base [95% CI] | " + " | ".join(
        overall[(l, o)].paired.text() if (l, o) in overall else "–" for l, o in settings) + " |")
    lines.append("| Δ category-level [95% CI] | " + " | ".join(
        unit_text(overall[(l, o)]) if (l, o) in overall else "–" for l, o in settings) + " |")
    lines.append("| LAMP wins / pairs | " + " | ".join(
        f"{overall[(l, o)].paired.wins}/{overall[(l, o)].paired.n}" if (l, o) in overall else "–"
        for l, o in settings) + " |")
    better, ties = equal_or_higher(overall[s] for s in settings if s in overall)
    lines.append("")
    lines.append(f"LAMP's average {metric} is equal or higher in {better} of {len(settings)} settings"
                 + (f", {ties} of them an exact tie (means within {TIE_TOL:g})" if ties else "")
                 + (" (the paper, image AUROC over 15 categories: 5 of 9)." if metric == "auroc" else "."))
    return "\n".join(lines) + "\n"


def equal_or_higher(cs: Iterable[Cell]) -> tuple[int, int]:
    """(cells whose LAMP mean is equal to or above the base mean, how many of those are ties):
    means within TIE_TOL are equal, so a float rounding of an exact tie does not count it lower."""
    better = ties = 0
    for c in cs:
        d = c.lamp[0] - c.base[0]
        if abs(d) < TIE_TOL:
            better, ties = better + 1, ties + 1
        elif d > 0:
            better += 1
    return better, ties


def settings_markdown(rows: Sequence[dict[str, Any]], *, setting_fields: Sequence[str], protocol: str = "test",
                      metric: str = "auroc", base_label: str = "base", unit_name: str = "class") -> str:
    """One line per setting: base and LAMP mean ± std over seeds, Δ with CI over the pairs, wins,
    and Δ with CI over the units (`unit_name`: class or category; the last column) (ablations)."""
    cs = cells(rows, cell_fields=list(setting_fields), protocol=protocol, metric=metric)
    lines = ["| " + " | ".join(setting_fields) + f" | {base_label} | LAMP | Δ LAMP − {base_label} [95% CI] | "
             f"wins / pairs | Δ {unit_name}-level [95% CI] |", "|" + "---|" * (len(setting_fields) + 5)]
    for k in sorted(cs, key=lambda k: tuple(str(x) for x in k)):
        c = cs[k]
        lines.append("| " + " | ".join(str(x) for x in k) + f" | {fmt_ms(*c.base[:2])} | {fmt_ms(*c.lamp[:2])} | "
                     f"{c.paired.text()} | {c.paired.wins}/{c.paired.n} | {unit_text(c)} |")
    return "\n".join(lines) + "\n"


def lamp_variants(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for an ablation over LAMP's open choices: every LAMP variant gets a copy of its
    paired base runs, tagged with the variant's (max_over, detach_max, eps), so `cells` can pair
    each variant with the same base runs."""
    base = [r for r in rows if not r["lamp"]]
    out = []
    variants = sorted({(r["max_over"], r["detach_max"], r["eps"]) for r in rows if r["lamp"]},
                      key=lambda v: (v[0], v[1], v[2]))
    for mo, dm, eps in variants:
        for r in rows:
            if r["lamp"] and (r["max_over"], r["detach_max"], r["eps"]) == (mo, dm, eps):
                out.append(r)
        for r in base:
            out.append({**r, "max_over": mo, "detach_max": dm, "eps": eps})
    return out


# ----------------------------------------------------------------------------- figures

def fig_auroc_vs_batch(rows: Sequence[dict[str, Any]], *, protocol: str = "test", loss: str = "l2",
                       paper: dict[str, dict[int, float]] | None = None):
    """Paper Table 1 as a plot: the app's `figures.fig_auroc_vs_batch` (log batch axis, mean ± std
    over seeds) fed with each seed's AUROC averaged over the classes under `protocol`, plus the
    paper's numbers as dotted lines."""
    import plotly.graph_objects as go

    from .figures import color_of
    from .figures import fig_auroc_vs_batch as plot_auroc_vs_batch
    rows = [r for r in rows if r["base_loss"] == loss]
    cs = cells(rows, cell_fields=["batch_size"], protocol=protocol)
    name = LOSS_NAME.get(loss, loss)
    points = [{"batch_size": b, "name": label, "auroc": v}
              for (b,) in sorted(cs) for arm, label in (("base", name), ("lamp", f"{name}-LAMP"))
              for v in cs[(b,)].values[arm]]
    sizes = sorted(b for (b,) in cs) + [b for vals in (paper or {}).values() for b in vals]
    fig = plot_auroc_vs_batch(points, sizes=sizes or None)
    for label, vals in (paper or {}).items():
        xs = sorted(vals)
        fig.add_trace(go.Scatter(x=xs, y=[vals[b] for b in xs], name=f"paper: {label}", mode="lines+markers",
                                 line=dict(dash="dot", color=color_of(label)), opacity=0.6))
    fig.update_layout(title=f"AUROC vs batch size ({'paper selection' if protocol == 'test' else 'val selection'})",
                      yaxis_title="AUROC (mean over classes)")
    return fig


def fig_category_bars(rows: Sequence[dict[str, Any]], *, protocol: str = "test", metric: str = "auroc"):
    """Per category and setting (base loss × optimizer): base and LAMP bars, std over seeds."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    per = cells(rows, cell_fields=["unit", "base_loss", "optimizer"], protocol=protocol, metric=metric,
                average_units=False)
    units = sorted({k[0] for k in per})
    fig = make_subplots(rows=1, cols=len(units), subplot_titles=units, shared_yaxes=True)
    for i, u in enumerate(units, start=1):
        keys = [k for k in per if k[0] == u]
        keys.sort(key=lambda k: (("l2", "l1", "ssim").index(k[1]), ("sgd", "rmsprop", "adam").index(k[2])))
        xs = [f"{LOSS_NAME[k[1]]} {OPT_NAME[k[2]]}" for k in keys]
        for arm, color in (("base", "#636efa"), ("lamp", "#ef553b")):
            ys = [getattr(per[k], arm)[0] for k in keys]
            es = [0.0 if math.isnan(getattr(per[k], arm)[1]) else getattr(per[k], arm)[1] for k in keys]
            fig.add_trace(go.Bar(x=xs, y=ys, error_y=dict(type="data", array=es), name=arm.upper() if arm == "lamp"
                                 else "base", marker_color=color, showlegend=(i == 1)), row=1, col=i)
    fig.update_layout(barmode="group", title=f"{metric} per category ({PROTOCOLS[protocol].split(':')[0]})",
                      template="plotly_white")
    return fig
