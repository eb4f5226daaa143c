"""Ablation of LAMP's open choices (paper eq. 2): where max(L_base) is taken, whether it is
detached from the gradient, and epsilon, against plain L2, on the converged Table 1 MNIST protocol
at batch 128 (bench/specs/ablation_converged.json): all ten classes, 3 seeds, paired with the
same L2 runs. The engine's default reading is chosen on classes 0-4 (`--choose-on`) and reported
on classes 5-9, a rule fixed before the runs.

    nice -n 10 python bench/ablation.py --store ../lamp-sweeps
    python bench/ablation.py --from-csv      # the report again from bench/results/ablation.csv

Shares its store with bench/reproduce_table1.py: the L2 and both LAMP readings' batch-128 runs
coincide and are trained once. Writes bench/results/ablation.{md,csv}; notes written after
reading the results are appended from bench/specs/<spec name>_notes.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))   # its sibling sweep_bench, also when imported from tests

from lamp_core import report as rep  # noqa: E402
from lamp_core.config import DEFAULT_DETACH_MAX, DEFAULT_EPS, DEFAULT_MAX_OVER  # noqa: E402
from lamp_core.sweep import SweepSpec, expand  # noqa: E402
from lamp_core.files import atomic_write  # noqa: E402
from sweep_bench import add_execution_arguments, rows_for  # noqa: E402

SPEC = "bench/specs/ablation_converged.json"
PAPER_128 = {"L2": 0.919, "L2-LAMP": 0.925}   # paper Table 1, batch 128
PREVIOUS_DEFAULT = ("batch", True, 0.01)       # the engine's reading before the converged ablation


def reading_label(k) -> str:
    """A (max_over, detach_max, eps) reading as the report names it."""
    return f"max over {k[0]}, detach {k[1]}, eps {k[2]:g}"


def ranked_lines(cs, default) -> list[str]:
    """One line per LAMP variant, best mean paired difference first, worded as its intervals allow
    (pair-level, then class-level: the mean per class over seeds, t-interval over the classes)."""
    lines = []
    for k, c in sorted(cs.items(), key=lambda kv: -kv[1].paired.mean):
        p, u = c.paired, c.by_unit
        tag = " (the engine's default)" if k == default else ""
        lines.append(f"- {reading_label(k)}{tag}: Δ {p.mean:+.4f} [{p.lo:+.4f}, "
                     f"{p.hi:+.4f}], LAMP {rep.verdict(p, u)}; wins {p.wins}/{p.n}; sd {p.sd:.4f}, MDE {p.mde:.4f}; "
                     f"class-level {u.text(4)} over {u.n} classes")
    return lines


def selection_section(variants, fields, choose_on: list[str], default) -> list[str]:
    """The rule fixed before the runs: choose the reading with the largest mean paired difference
    on the `choose_on` classes; report it on the other classes, which the choice did not see."""
    pick = [r for r in variants if r["unit"] in choose_on]
    held = [r for r in variants if r["unit"] not in choose_on]
    cs_pick = rep.cells(pick, cell_fields=fields, protocol="test")
    cs_held = rep.cells(held, cell_fields=fields, protocol="test")
    if not cs_pick or not cs_held:
        return []
    chosen = max(cs_pick, key=lambda k: cs_pick[k].paired.mean)
    held_units = sorted({r["unit"] for r in held}, key=str)

    out = ["## The default reading, chosen on classes " + ", ".join(choose_on) + " (computed)", "",
           f"Rule (fixed before the runs): the reading with the largest mean paired difference on classes "
           f"{', '.join(choose_on)}; its numbers below are on classes {', '.join(held_units)}, which the "
           f"choice did not see.", "",
           "Ranking on the choosing classes:", "", *ranked_lines(cs_pick, default), "",
           f"**Chosen: {reading_label(chosen)}.**", "",
           "All readings on the held-out classes (the chosen one is the only one read as a result; the "
           "others are context, not a second selection):", "", *ranked_lines(cs_held, default), ""]
    for k, name in ((chosen, "chosen reading"), (default, "engine's default now"),
                    (PREVIOUS_DEFAULT, "engine's default before this ablation")):
        if k in cs_held:
            c = cs_held[k]
            p = c.paired
            out.append(f"- Held out, {name} ({reading_label(k)}): L2 {c.base[0]:.4f}, LAMP {c.lamp[0]:.4f}, "
                       f"Δ {p.text(4)}, wins {p.wins}/{p.n}, sd {p.sd:.4f}, MDE {p.mde:.4f}; class-level "
                       f"{c.by_unit.text(4)} over {c.by_unit.n} classes ({rep.verdict(p, c.by_unit)}).")
    return out + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_execution_arguments(ap)
    ap.add_argument("--spec", default=SPEC)
    ap.add_argument("--rotate", type=int, default=0,
                    help="start the grid at this run: extra workers on the same store share the work")
    ap.add_argument("--out", default="bench/results/ablation")
    ap.add_argument("--choose-on", default="0,1,2,3,4",
                    help="comma-separated classes the default reading is chosen on (the rest report "
                         "it); empty: no selection section")
    a = ap.parse_args(argv)
    spec_path = ROOT / a.spec
    spec = SweepSpec.load(spec_path)
    configs = expand(spec)
    configs = configs[a.rotate:] + configs[:a.rotate]
    out = ROOT / a.out
    rows, failed = rows_for(configs, a, csv_path=out.with_suffix(".csv"))
    ok = [r for r in rows if r["auroc"] is not None]
    out.parent.mkdir(parents=True, exist_ok=True)
    if not a.from_csv:
        atomic_write(out.with_suffix(".csv"), rep.to_csv(rows))
    # a partial store (--report-only on a stopped sweep): keep only variants with every run, so
    # each mean is over the same seeds x classes as the L2 baseline
    from collections import Counter
    n_ok = len(ok)
    count = Counter((r["max_over"], r["detach_max"], r["eps"]) for r in ok if r["lamp"])
    n_base = sum(1 for r in ok if not r["lamp"])
    full = n_base if n_base else max(count.values(), default=0)
    partial = sorted(k for k, n in count.items() if n < full)
    ok = [r for r in ok if not r["lamp"] or (r["max_over"], r["detach_max"], r["eps"]) not in partial]
    variants = rep.lamp_variants(ok)
    fields = ["max_over", "detach_max", "eps"]
    cs = rep.cells(variants, cell_fields=fields, protocol="test")
    default = (DEFAULT_MAX_OVER, DEFAULT_DETACH_MAX, DEFAULT_EPS)
    lines = ranked_lines(cs, default)
    steps = sorted({r["steps"] for r in ok})
    desc = json.loads(spec_path.read_text()).get("description", "")
    md = ["# Ablation of LAMP's open choices (eq. 2) at batch 128", "",
          f"Command: `nice -n 10 python bench/ablation.py --store <store folder>` (the runs alone: `lamp sweep "
          f"--spec {a.spec} --store <store folder> --out {a.out}`).", "",
          f"Protocol: {desc}", "",
          f"Runs: {n_ok} finished of {len(configs)}; failed: {failed}; steps per run: {steps}. "
          f"No tuned hyperparameter: one table (paper selection = honest selection). Paper Table 1 at batch "
          f"128 (no seeds, its own unstated reading): L2 {PAPER_128['L2']}, L2-LAMP {PAPER_128['L2-LAMP']}.", "",
          (f"Left out, not finished when the sweep was stopped (runs done of {full}): "
           + ", ".join(f"{k[0]}/{'detach' if k[1] else 'no detach'}/eps {k[2]:g} ({count[k]})" for k in partial)
           + ".\n" if partial else ""),
          "Each line: the L2 runs (same seeds, classes, initial weights, batch order) against one LAMP "
          "variant; mean ± std over 3 seeds of the ten-class mean AUROC; Δ paired over seeds × classes "
          "with a 95% t-interval (pair-level); the last column: each class's Δ averaged over the seeds, "
          "with a 95% t-interval over the classes (class-level).", "",
          rep.settings_markdown(variants, setting_fields=fields, protocol="test", base_label="L2"), "",
          "## Ranked by the paired difference (computed)", "",
          "Δ is LAMP − L2 per (seed, class) pair; sd is the pairs' standard deviation and MDE the "
          "smallest true Δ these pairs detect with 80% power (two-sided paired t-test at 5%).", "",
          "\n".join(lines), ""]
    if a.choose_on:
        md += selection_section(variants, fields, [c.strip() for c in a.choose_on.split(",")], default)
    notes = ROOT / "bench" / "specs" / f"{spec_path.stem}_notes.md"
    if notes.is_file():
        md += ["## Notes", "", notes.read_text()]
    atomic_write(out.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if not failed else 1


if __name__ == "__main__":
    from lamp_core.cli import run_script
    sys.exit(run_script(main, "ablation"))
