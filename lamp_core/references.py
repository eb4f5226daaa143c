"""The project's recorded reference results, as numbers the app can show beside a quick run.

A page that trains a small model in seconds should say what the converged, multi-seed studies
found, so that a reader does not take one quick pair of models for a finding. This module reads
those numbers from the files the benchmarks wrote (never typed in here), so a page and the
markdown reports cannot drift apart:

* `converged_table1` - the converged Table 1 reproduction (bench/results/table1.csv, summarised in
  bench/results/table1.md), per batch size, computed with `lamp_core.report.cells`, the function
  that wrote the markdown table;
* `paper_table1` - the paper's Table 1 (../shared/paper/lamp-paper.md, Table 1), as recorded once
  in bench/reproduce_table1.py (`PAPER`), the script that prints it beside our numbers;
* `landscape_verdict` - the landscape study (bench/results/landscape_study.csv, summarised in
  bench/results/landscape_study.md): is LAMP's minimum steeper in its own loss and in plain L2?
  `landscape_ratios` is the one computation of its ratios; bench/landscape_study.py formats its
  table from it;
* `batch_size_study` - the batch-size study of the paper's batch-1024 claim
  (bench/results/batch_size_study.csv, summarised in bench/results/batch_size_study.md, which
  bench/batch_size_study.py writes from the same `study_rows` and `report.cells`): per regime and
  batch size, L2 against LAMP with the pair-level and the class-level interval;
* `landscape_sentence` - the sentence the Loss landscape page prints: does the quick model on
  screen agree with the study?

No Streamlit here: the app's pages import it, and so do tests and bench scripts.
"""
from __future__ import annotations

import ast
import csv
import functools
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from .config import DEFAULT_DETACH_MAX, DEFAULT_EPS, DEFAULT_MAX_OVER, TrainConfig
from .report import cells
from .stats import paired

REPO = Path(__file__).resolve().parent.parent
TABLE1_CSV = REPO / "bench" / "results" / "table1.csv"
TABLE1_MD = REPO / "bench" / "results" / "table1.md"
TABLE1_SCRIPT = REPO / "bench" / "reproduce_table1.py"
LANDSCAPE_CSV = REPO / "bench" / "results" / "landscape_study.csv"
LANDSCAPE_MD = REPO / "bench" / "results" / "landscape_study.md"
BATCH_STUDY_CSV = REPO / "bench" / "results" / "batch_size_study.csv"
BATCH_STUDY_MD = REPO / "bench" / "results" / "batch_size_study.md"
# the batch-size study's regimes that test the paper's batch-1024 claim, in the order a page shows them
BATCH_STUDY_REGIMES = ("paper_level", "converged", "step_matched")

# The LAMP readings of eq. 2 the converged Table 1 compares with L2 (max_over, detach_max, eps):
# the engine's default, and the reading the project shipped before it (table1.md's second table).
READINGS = {
    "default": (DEFAULT_MAX_OVER, DEFAULT_DETACH_MAX, DEFAULT_EPS),
    "previous": ("batch", True, 0.01),
}
LANDSCAPE_METRICS = ("own", "l2")
# the sharpness numbers the study compares as ratios (scale quantities) and as a difference
RATIO_FIELDS = ("lambda_max", "trace")
DIFF_FIELDS = ("radius_increase",)


def _bool(v: Any) -> bool:
    return v is True or str(v).strip().lower() == "true"


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _read_csv(path: Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


def table1_rows(path: Path = TABLE1_CSV) -> list[dict[str, Any]]:
    """The converged Table 1 runs (one per row of table1.csv), with the types `report.cells`
    compares: lamp and detach_max as bools, numbers as numbers, the AUROC None for a failed run."""
    out = []
    for r in _read_csv(path):
        out.append({**r, "lamp": _bool(r["lamp"]), "detach_max": _bool(r["detach_max"]), "eps": _num(r["eps"]),
                    "batch_size": int(r["batch_size"]), "seed": int(r["seed"]),
                    "epochs": int(r["epochs"]), "steps": int(r["steps"]) if r.get("steps") else None,
                    "max_train": int(r["max_train"]) if r.get("max_train") else None,
                    "auroc": float(r["auroc"]) if r.get("auroc") not in (None, "") else None})
    return out


def _reading(reading: str | tuple) -> tuple[str, bool, float]:
    if isinstance(reading, str):
        if reading not in READINGS:
            raise ValueError(f"unknown LAMP reading {reading!r}: choose one of {sorted(READINGS)} or pass "
                             "(max_over, detach_max, eps)")
        reading = READINGS[reading]
    max_over, detach_max, eps = reading
    return str(max_over), bool(detach_max), float(eps)


def _only(values: Iterable[Any]) -> Any:
    """The one value a batch size's runs share (steps, epochs, images); None if they differ."""
    vs = set(values)
    return vs.pop() if len(vs) == 1 else None


@functools.lru_cache(maxsize=8)
def _converged_table1(reading: tuple[str, bool, float], path: str) -> dict[int, dict]:
    rows = table1_rows(Path(path))
    max_over, detach_max, eps = reading
    # L2's runs are shared by every reading; LAMP's are the chosen reading's
    chosen = [r for r in rows if r["base_loss"] == "l2" and (
        not r["lamp"] or (r["max_over"] == max_over and r["detach_max"] == detach_max
                          and math.isclose(r["eps"], eps)))]
    if not any(r["lamp"] for r in chosen):
        raise ValueError(f"no LAMP runs of reading {reading} in {path}")
    # the same computation as the markdown table (report.table1_markdown): per batch size, the
    # mean +- std over seeds of each seed's class-mean AUROC, and the paired (class, seed) difference
    cs = cells(chosen, cell_fields=["batch_size"], protocol="test")
    out: dict[int, dict] = {}
    for (bs,), c in cs.items():
        runs = [r for r in chosen if r["batch_size"] == bs and r["auroc"] is not None]
        p = c.paired
        out[bs] = {"l2": c.base[0], "lamp": c.lamp[0], "l2_sd": c.base[1], "lamp_sd": c.lamp[1],
                   "delta": p.mean, "delta_lo": p.lo, "delta_hi": p.hi, "pairs": p.n, "wins": p.wins,
                   # the class-level interval: mean over seeds per class, then a t-interval over classes
                   "delta_class_lo": c.by_unit.lo, "delta_class_hi": c.by_unit.hi,
                   "seeds": len({r["seed"] for r in runs}), "classes": len({r["unit"] for r in runs}),
                   "steps": _only(r["steps"] for r in runs), "epochs": _only(r["epochs"] for r in runs),
                   "max_train": _only(r["max_train"] for r in runs)}
    return dict(sorted(out.items(), reverse=True))


def converged_table1(reading: str | tuple = "default", *, path: Path = TABLE1_CSV) -> dict[int, dict]:
    """Per batch size (descending, as the paper's Table 1): the converged reproduction of L2
    against one LAMP reading ("default": the engine's, "previous": max over the batch, eps 0.01,
    or a (max_over, detach_max, eps) tuple).

    Each value: l2, lamp (mean over seeds of the AUROC averaged over the classes), l2_sd, lamp_sd
    (std over seeds of that class-mean), delta, delta_lo, delta_hi (paired LAMP − L2 over (class,
    seed) pairs, 95% t-interval), delta_class_lo, delta_class_hi (the class-level interval: per
    class the mean over seeds, then over classes), pairs, wins (pairs where LAMP is higher), seeds, classes, and the
    runs' steps, epochs and max_train (training images per class)."""
    return {b: dict(v) for b, v in _converged_table1(_reading(reading), str(path)).items()}


@functools.lru_cache(maxsize=2)
def _paper_table1(script: str) -> dict[str, dict[int, float]]:
    # The paper's numbers are written once, as the PAPER literal of bench/reproduce_table1.py (the
    # script prints them beside ours in table1.md). Read the literal without importing the script,
    # which puts bench/ on sys.path and pulls in the sweep machinery.
    tree = ast.parse(Path(script).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PAPER" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"no PAPER table in {script}")


def paper_table1(*, script: Path = TABLE1_SCRIPT) -> dict[int, dict]:
    """The paper's Table 1 (../shared/paper/lamp-paper.md, Table 1: mean AUROC over the ten MNIST
    one-class tasks, one number per cell): {batch size: {"l2", "lamp"}}, batch sizes descending."""
    paper = _paper_table1(str(script))
    l2, lamp = paper["L2"], paper["L2-LAMP"]
    return {b: {"l2": float(l2[b]), "lamp": float(lamp[b])} for b in sorted(l2, reverse=True) if b in lamp}


# ----------------------------------------------------------------------------- batch-size study

def study_rows(rows: Iterable[dict]) -> list[dict[str, Any]]:
    """The batch-size study's CSV rows as `report.cells` reads them (unit = the digit); rows
    without an AUROC are skipped. Rows written before the `lr` column trained at the engine's."""
    engine_lr = TrainConfig().lr
    out = []
    for r in rows:
        if r.get("auroc") in (None, ""):
            continue
        out.append({"unit": str(r["normal_class"]), "seed": int(r["seed"]), "lamp": _bool(r["lamp"]),
                    "auroc": float(r["auroc"]), "val_score": None, "regime": r["regime"],
                    "batch_size": int(r["batch_size"]), "epochs": int(r["epochs"]), "steps": int(r["steps"]),
                    "train_images": int(r["train_images"]) if r.get("train_images") else None,
                    "lr": float(r.get("lr") or engine_lr),
                    "curve": json.loads(r["auroc_curve"]) if r.get("auroc_curve") else None})
    return out


@functools.lru_cache(maxsize=2)
def _batch_size_study(path: str) -> dict[str, dict[int, dict]]:
    from .report import verdict
    rows = [r for r in study_rows(_read_csv(Path(path))) if r["regime"] in BATCH_STUDY_REGIMES]
    out: dict[str, dict[int, dict]] = {}
    for regime in BATCH_STUDY_REGIMES:
        sub = [r for r in rows if r["regime"] == regime]
        for (bs,), c in sorted(cells(sub, cell_fields=["batch_size"], protocol="test").items(), reverse=True):
            runs = [r for r in sub if r["batch_size"] == bs]
            p, u = c.paired, c.by_unit
            out.setdefault(regime, {})[bs] = {
                "l2": c.base[0], "lamp": c.lamp[0], "l2_sd": c.base[1], "lamp_sd": c.lamp[1],
                "delta": p.mean, "delta_lo": p.lo, "delta_hi": p.hi, "pairs": p.n, "wins": p.wins,
                "delta_class_lo": u.lo, "delta_class_hi": u.hi, "verdict": verdict(p, u),
                "seeds": len({r["seed"] for r in runs}), "classes": len({r["unit"] for r in runs}),
                "epochs": _only(r["epochs"] for r in runs), "lr": _only(r["lr"] for r in runs),
                "steps": (min(r["steps"] for r in runs), max(r["steps"] for r in runs)),
                # whole classes differ in size (5421-6742 images): the range, not one number
                "train_images": (min(r["train_images"] or 0 for r in runs), max(r["train_images"] or 0 for r in runs))}
    return out


def batch_size_study(*, path: Path = BATCH_STUDY_CSV) -> dict[str, dict[int, dict]]:
    """The batch-size study of the paper's batch-1024 claim: {regime: {batch size: summary}} for
    the regimes in BATCH_STUDY_REGIMES that have runs ("paper_level": batch 1024 on whole classes at
    the epochs and learning rate where L2 lands near the paper's 0.658; "converged": batch 1024
    trained until L2 passes 0.90; "step_matched": batch 1024 and 128 at the same optimiser steps).
    Each summary has the fields of `converged_table1` (l2, lamp, their sds over seeds, delta with
    its pair-level and class-level 95% intervals, pairs, wins, seeds, classes, epochs, steps), the
    learning rate, the ranges (min, max) of optimiser steps and of training images per class
    (whole classes differ in size), and `verdict`: the difference in the
    words its intervals allow (`report.verdict`)."""
    return {g: {b: dict(v) for b, v in per.items()} for g, per in _batch_size_study(str(path)).items()}


STUDY_REGIME_WORDS = {"paper_level": "the paper's regime", "converged": "trained to convergence",
                      "step_matched": "at equal optimiser steps"}


def range_text(lo_hi: tuple) -> str:
    """A (min, max) range as the study's sentences write it: one number when they agree."""
    lo, hi = lo_hi
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def study_regime_sentence(regime: str, bs: int, v: dict, paper: dict | None = None) -> str:
    """One regime of the batch-size study in words its intervals allow: the recipe, L2 (beside the
    paper's where given), LAMP − L2 with both intervals, the verdict, and whether the paper's
    difference lies inside each interval."""
    lr = f" at learning rate {v['lr']:g}" if v.get("lr") else ""
    text = (f"{STUDY_REGIME_WORDS.get(regime, regime)}, batch {bs} ({v['epochs']} epochs{lr}, "
            f"{range_text(v['steps'])} steps on {range_text(v['train_images'])} images per class): L2 {v['l2']:.3f}"
            + (f" (paper {paper['l2']:.3f})" if paper else "")
            + f", L2-LAMP {v['lamp']:.3f}; LAMP − L2 {v['delta']:+.3f} [{v['delta_lo']:+.3f}, {v['delta_hi']:+.3f}] "
            f"over {v['pairs']} pairs, class-level [{v['delta_class_lo']:+.3f}, {v['delta_class_hi']:+.3f}] over "
            f"{v['classes']} digits: {v['verdict']} (LAMP ahead in {v['wins']} of {v['pairs']})")
    if paper:
        gain = paper["lamp"] - paper["l2"]
        inside = [name for name, lo, hi in (("pair-level", v["delta_lo"], v["delta_hi"]),
                                            ("class-level", v["delta_class_lo"], v["delta_class_hi"]))
                  if lo <= gain <= hi]
        text += (f"; the paper's {gain:+.3f} lies "
                 + ("outside both intervals" if not inside else f"inside the {' and the '.join(inside)} interval"))
    return text


# ----------------------------------------------------------------------------- landscape study

def landscape_pairs(rows: Sequence[dict]) -> dict[tuple, dict]:
    """The study's rows (one per model and metric) as pairs: {(batch size, metric, class, seed):
    {"base": row, "lamp": row}}; a pair missing one model keeps only the other."""
    pairs: dict[tuple, dict] = {}
    for r in rows:
        key = (int(r["batch_size"]), r["metric"], int(r["normal_class"]), int(r["seed"]))
        pairs.setdefault(key, {})["lamp" if _bool(r["lamp"]) else "base"] = r
    return pairs


def ratio_stats(pairs: Sequence[dict]) -> dict[str, Any]:
    """LAMP against base over complete pairs: for the scale quantities (lambda_max, trace) the
    geometric-mean ratio LAMP/base with the 95% t-interval of the log-ratio and the pairs where
    LAMP's number is larger (steeper); for the scale-free radius increase the mean difference with
    its interval and the pairs where LAMP's is larger. Keys: pairs, <field>, <field>_lo,
    <field>_hi, <field>_n (pairs with a usable value), <field>_steeper (lo/hi NaN for fewer than
    two usable pairs)."""
    ps = [p for p in pairs if "base" in p and "lamp" in p]
    out: dict[str, Any] = {"pairs": len(ps)}
    for field in RATIO_FIELDS + DIFF_FIELDS:
        b = [_num(p["base"][field]) for p in ps]
        la = [_num(p["lamp"][field]) for p in ps]
        if field in RATIO_FIELDS:
            # scale quantities: a ratio per pair, averaged on the log scale (a 2x and a 0.5x cancel)
            st = paired([math.log(y / x) if x > 0 and y > 0 else math.nan for x, y in zip(b, la)])
            val, lo, hi = math.exp(st.mean), math.exp(st.lo), math.exp(st.hi)
        else:
            st = paired([y - x for x, y in zip(b, la)])
            val, lo, hi = st.mean, st.lo, st.hi
        out.update({field: val, f"{field}_lo": lo, f"{field}_hi": hi, f"{field}_n": st.n,
                    f"{field}_steeper": sum(1 for x, y in zip(b, la) if y > x)})
    return out


def landscape_ratios(rows: Sequence[dict]) -> dict[tuple, dict]:
    """Per (batch size, metric), batch sizes descending, then per ("all", metric) over every batch
    size: `ratio_stats` of the study's pairs. bench/landscape_study.py's table is this, formatted."""
    pairs = landscape_pairs(rows)
    out: dict[tuple, dict] = {}
    metrics = [m for m in LANDSCAPE_METRICS if any(k[1] == m for k in pairs)] + \
        sorted({k[1] for k in pairs} - set(LANDSCAPE_METRICS))
    for bs in sorted({k[0] for k in pairs}, reverse=True):
        for metric in metrics:
            ps = [v for k, v in pairs.items() if k[0] == bs and k[1] == metric]
            if any(len(p) == 2 for p in ps):
                out[(bs, metric)] = ratio_stats(ps)
    for metric in metrics:
        ps = [v for k, v in pairs.items() if k[1] == metric]
        if any(len(p) == 2 for p in ps):
            out[("all", metric)] = ratio_stats(ps)
    return out


@functools.lru_cache(maxsize=2)
def _landscape_verdict(path: str, table1_path: str) -> dict:
    rows = _read_csv(Path(path))
    ratios = landscape_ratios(rows)
    # the study's models are runs of the converged Table 1: their recipe is table1.csv's row
    recipe = {r["key"]: r for r in _read_csv(Path(table1_path))} if Path(table1_path).is_file() else {}
    runs = [recipe[r["run_key"]] for r in rows if r["run_key"] in recipe]
    overall = {m: ratios[("all", m)] for m in LANDSCAPE_METRICS if ("all", m) in ratios}
    by_batch: dict[int, dict] = {}
    for (bs, m), v in ratios.items():
        if bs != "all":
            by_batch.setdefault(bs, {})[m] = v

    def every(metric: str, test) -> bool:
        # a verdict needs the pooled interval AND every batch size's interval on the same side of 1
        # for both scale numbers: one batch size pointing the other way is not "steeper"
        blocks = [overall.get(metric)] + [v.get(metric) for v in by_batch.values()]
        return all(b is not None and all(test(b[f"{f}_lo"], b[f"{f}_hi"]) for f in RATIO_FIELDS) for b in blocks)

    reading = sorted({(r["max_over"], r["detach_max"], r["eps"]) for r in rows if _bool(r["lamp"])})
    return {
        "overall": overall, "by_batch": dict(sorted(by_batch.items(), reverse=True)),
        "steeper_in_own": every("own", lambda lo, hi: lo > 1.0),
        "flatter_in_l2": every("l2", lambda lo, hi: hi < 1.0),
        "classes": sorted({int(r["normal_class"]) for r in rows}),
        "seeds": sorted({int(r["seed"]) for r in rows}),
        "batch_sizes": sorted({int(r["batch_size"]) for r in rows}, reverse=True),
        "epochs": _only(int(r["epochs"]) for r in runs) if runs else None,
        "max_train": _only(int(r["max_train"]) for r in runs) if runs else None,
        "dataset": _only(r["dataset"] for r in runs) if runs else None,
        "reading": reading,
        "source": str(Path(path).relative_to(REPO)) if Path(path).is_relative_to(REPO) else str(path),
    }


def landscape_verdict(*, path: Path = LANDSCAPE_CSV, table1_path: Path = TABLE1_CSV) -> dict:
    """The landscape study's answer to "is LAMP's minimum steeper?".

    Keys: overall[metric] and by_batch[batch size][metric] (metric "own" or "l2") hold
    `ratio_stats`: pairs, lambda_max / trace (geometric-mean ratio LAMP/base) with _lo/_hi (95%
    interval) and _steeper (pairs where LAMP's is larger), radius_increase (LAMP − base) likewise;
    steeper_in_own / flatter_in_l2 (both scale numbers' intervals above / below 1, pooled and at
    every batch size); classes, seeds, batch_sizes; epochs, max_train and dataset of the models
    (from their table1.csv rows); reading (LAMP's max_over, detach_max, eps); source (the CSV)."""
    v = _landscape_verdict(str(path), str(table1_path))
    return {**v, "overall": {m: dict(s) for m, s in v["overall"].items()},
            "by_batch": {b: {m: dict(s) for m, s in ms.items()} for b, ms in v["by_batch"].items()}}


def _span(values: Sequence[float], digits: int = 2) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}×" if f"{lo:.{digits}f}" == f"{hi:.{digits}f}" else f"{lo:.{digits}f}-{hi:.{digits}f}×"


def verdict_summary(verdict: dict) -> str:
    """One line naming the study and its λmax ratios per metric, e.g. "converged study (3 classes ×
    2 seeds × 3 batch sizes, 20 epochs): own λmax 8.52-12.64× the base's in 18 of 18 pairs, L2
    λmax 0.68-0.76× in 0 of 18"."""
    v = verdict
    head = (f"converged study ({len(v['classes'])} classes × {len(v['seeds'])} seeds × "
            f"{len(v['batch_sizes'])} batch sizes" + (f", {v['epochs']} epochs" if v.get("epochs") else "") + ")")
    parts = []
    for m, name in (("own", "own loss"), ("l2", "L2")):
        if m not in v["overall"]:
            continue
        per = [ms[m]["lambda_max"] for ms in v["by_batch"].values() if m in ms]
        o = v["overall"][m]
        parts.append(f"{name} λmax {_span(per)} the base's (LAMP steeper in {o['lambda_max_steeper']} of "
                     f"{o['pairs']} pairs)")
    return head + ": " + ", ".join(parts)


def _ratio(quick: dict, field: str) -> float:
    b, la = _num((quick.get("base") or {}).get(field)), _num((quick.get("lamp") or {}).get(field))
    return la / b if b > 0 and la > 0 else math.nan


def landscape_sentence(metric: str, quick: dict, verdict: dict) -> str:
    """Whether the quick model on screen agrees with the landscape study, in one sentence.

    `metric` is the landscape metric on screen ("own", "l2", "own_rel", "l2_rel"); `quick` holds
    the two models' sharpness: {"base": {"lambda_max", "trace"}, "lamp": {...}, "epochs": N} (the
    epochs are optional). The study measured "own" and "l2" only; a relative metric (*_rel) is the
    same function divided by its value at the centre, whose Hessian is the absolute one over a
    constant, so its ratio's direction is not the study's: the sentence then says so."""
    if metric not in verdict["overall"]:
        known = " and ".join(f'"{m}"' for m in verdict["overall"])
        return (f"The converged study measured the {known} metrics; the {metric!r} landscape on screen is "
                "divided by each model's loss at its centre, so its sharpness is not compared with the study's. "
                "Switch the metric to own or l2 to compare.")
    study = verdict["overall"][metric]
    study_steeper = study["lambda_max"] > 1.0
    loss = "its own loss" if metric == "own" else "plain L2"
    epochs = quick.get("epochs")
    trained = f"this quick model trained for {epochs} epoch{'s' if epochs != 1 else ''}" if epochs else \
        "this quick model trained briefly"
    r_l, r_t = _ratio(quick, "lambda_max"), _ratio(quick, "trace")
    if math.isnan(r_l) or math.isnan(r_t):
        # The power iteration returns the eigenvalue of largest magnitude: a negative one means the
        # loss curves downwards along some direction more than it curves upwards along any, so the
        # weights are not at a minimum and a ratio of "steepness" has no meaning.
        bad = [f"{arm} λmax {_num(quick[arm].get('lambda_max')):.3g}, trace {_num(quick[arm].get('trace')):.3g}"
               for arm in ("base", "lamp") if quick.get(arm)
               and not (_num(quick[arm].get("lambda_max")) > 0 and _num(quick[arm].get("trace")) > 0)]
        return (f"These weights are not at a minimum of {loss} ({'; '.join(bad).replace('lamp', 'LAMP')}: a "
                "negative or zero curvature), so their sharpness cannot be compared with the converged study, "
                f"which measured trained minima: {trained}; train longer to compare.")
    quick_steeper = r_l > 1.0 and r_t > 1.0
    quick_flatter = r_l < 1.0 and r_t < 1.0
    numbers = f"λmax {r_l:.2f}×, trace {r_t:.2f}× the base's"
    if (study_steeper and quick_steeper) or (not study_steeper and quick_flatter):
        word = "steeper" if study_steeper else "flatter"
        return f"Here, as in the converged study, LAMP's minimum is {word} in {loss} ({numbers})."
    if quick_steeper or quick_flatter:
        here = "steeper" if quick_steeper else "flatter"
    else:
        here = "steeper in one number and flatter in the other"
    head = f"Here LAMP's minimum is {here} in {loss} ({numbers})"
    study_word = "steeper" if study_steeper else "flatter"
    return (f"{head}, unlike the converged study (LAMP {study_word} there, steeper in "
            f"{study['lambda_max_steeper']} of {study['pairs']} pairs): {trained}, and this is one pair of "
            "models (first seed) measured with a few random probes; a difference between models that are "
            "still learning is not a finding.")
