"""The lab guide and the teacher notes, rendered from the lesson's measured numbers.

Nothing here is typed by hand that a measurement produced: the exercises' settings come from
`lamp_core.lesson`, their results from `assets/expected_results.json` (`lamp lesson measure`),
the loss-curve values from `lamp_core.losses`, and the converged references from the recorded
studies in `bench/results/` (`lamp_core.references`). `lamp lesson notes` prints the notes;
`assets/teacher_notes.md` is this module's output, and a test fails when the two differ.

Every verdict is worded as its interval allows, and follows the training indicator
(`lamp_core.convergence`): a difference between models that are still learning is not a finding.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

from . import lesson
from .convergence import CONVERGED_RATE_MAX, STILL_LEARNING
from .losses import loss_curves
from .stats import Paired, fmt_ms, mean_std, paired

REPO = Path(__file__).resolve().parent.parent
GUIDE_TEMPLATE = REPO / "assets" / "lab_guide.md"
NOTES_PATH = REPO / "assets" / "teacher_notes.md"


# ----------------------------------------------------------------------------- wording

def ms(values: Sequence[float], digits: int = 3) -> str:
    m, s, _ = mean_std(values)
    return fmt_ms(m, s, digits)


def pair_of(entry: dict) -> Paired:
    return paired([b - a for a, b in zip(entry["base_auroc"], entry["lamp_auroc"])])


def difference_words(p: Paired, *, still_learning: bool) -> str:
    """A paired LAMP − base difference in words its interval allows."""
    if p.n == 0:
        return "no pairs"
    wins = f"LAMP higher in {p.wins} of {p.n} seeds"
    if p.n < 2 or math.isnan(p.lo):
        claim = f"{p.mean:+.3f} ({wins}; one seed has no interval)"
    elif p.lo > 0:
        claim = f"LAMP higher by {p.text()} ({wins}; the interval excludes 0)"
    elif p.hi < 0:
        claim = f"LAMP lower by {p.text()} ({wins}; the interval excludes 0)"
    else:
        claim = f"no measurable difference: {p.text()} ({wins}; the interval includes 0)"
    if still_learning:
        claim += "; the models were still learning when they stopped, so this is an observation, not a finding"
    return claim


def learning(entry: dict) -> bool:
    return entry.get("overall_status") == STILL_LEARNING


def state_label(entry: dict) -> str:
    """The training indicator of a recorded exercise, in the notes' words."""
    from .convergence import UNKNOWN
    state = entry.get("overall_status")
    return "too few epochs to tell" if state == UNKNOWN else state or "not recorded"


def status_words(entry: dict) -> str:
    rates = [r for rs in entry.get("learning_rate_per_1000", {}).values() for r in rs if r is not None]
    if not rates:
        return "not recorded"
    state = "still learning" if learning(entry) else "trained"
    return (f"{state} (loss falling {100 * min(rates):.1f}-{100 * max(rates):.1f}% per 1000 images at the end; "
            f"the converged runs: at most {100 * CONVERGED_RATE_MAX:.1f}%)")


# ----------------------------------------------------------------------------- converged references

def converged_row(batch: int) -> dict | None:
    from .references import converged_table1
    return converged_table1().get(batch)


def ablation_eps(eps: float, *, max_over: str = "sample", detach: bool = True) -> Paired | None:
    """LAMP (max_over, detach, eps) − L2 over the converged ablation's pairs (bench/results/ablation.csv)."""
    path = REPO / "bench" / "results" / "ablation.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    base = {(r["unit"], r["seed"]): float(r["auroc"]) for r in rows if r["lamp"] == "False" and r["auroc"]}
    diffs = [float(r["auroc"]) - base[(r["unit"], r["seed"])] for r in rows
             if r["lamp"] == "True" and r["max_over"] == max_over and r["detach_max"] == str(detach)
             and float(r["eps"]) == eps and (r["unit"], r["seed"]) in base and r["auroc"]]
    return paired(diffs) if diffs else None


# ----------------------------------------------------------------------------- pieces

def describe_default(cfg=None) -> dict[str, Any]:
    cfg = cfg or lesson.DEFAULT_CONFIG
    n = lesson.train_images(cfg)
    return {"normal_class": cfg.data.normal_class, "train_images": n, "epochs": cfg.train.epochs,
            "batch": cfg.train.batch_size, "lr": f"{cfg.train.lr:g}", "seeds": lesson.DEFAULT_SEEDS,
            "image_size": cfg.data.image_size, "steps": lesson.total_steps(cfg, n),
            "steps_per_epoch": lesson.steps_per_epoch(n, cfg.train.batch_size),
            "eps": f"{cfg.train.eps:g}", "max_over": cfg.train.max_over,
            "detach": "detached" if cfg.train.detach_max else "not detached",
            "steps_b1": lesson.steps_per_epoch(n, 1) * cfg.train.epochs,
            "steps_b1024": lesson.steps_per_epoch(n, 1024) * cfg.train.epochs,
            "upload_size": lesson.UPLOAD_IMAGE_SIZE}


def loss_curve_rows(eps_values=(0.3, 0.1, 0.01, 0.0001)) -> list[dict[str, float]]:
    """Values at the largest residual r = 1 (fixed bound: max = 1): LAMP loss, LAMP gradients."""
    out = []
    for eps in eps_values:
        l1 = loss_curves("l1", eps=eps, max_over="fixed")
        l2 = loss_curves("l2", eps=eps, max_over="fixed")
        out.append({"eps": eps, "loss": l1["lamp"][-1], "l1_grad": l1["lamp_grad"][-1], "l2_grad": l2["lamp_grad"][-1],
                    "l1_base_grad": l1["base_grad"][-1], "l2_base_grad": l2["base_grad"][-1]})
    return out


def _at(curve: dict, key: str, r: float) -> float:
    rs = curve["residual"]
    i = min(range(len(rs)), key=lambda j: abs(rs[j] - r))
    return curve[key][i]


def _num(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.0f}"
    return f"{x:.2g}" if abs(x) < 1 else f"{x:.2f}".rstrip("0").rstrip(".")


# ----------------------------------------------------------------------------- the guide

def render_guide(expected: dict | None = None) -> str:
    """assets/lab_guide.md with the lesson's real settings filled in ({name} fields)."""
    values = describe_default()
    values["digits_train"] = _digits_train_images()
    exp = lesson.load_expected() if expected is None else expected
    cmp_ = (exp or {}).get("default_comparison")
    values["default_status"] = ("Their models are still learning when they stop" if cmp_ and learning(cmp_) else
                                "By the lab's indicator their models have finished learning" if cmp_ else
                                "Whether their models finish learning is shown on each page")
    return GUIDE_TEMPLATE.read_text(encoding="utf-8").format_map(values)


def _digits_train_images() -> int:
    from .config import DataConfig
    from . import data as data_mod
    return int(len(data_mod.load(DataConfig(dataset="digits", normal_class=lesson.DEFAULT_CONFIG.data.normal_class)).train))


# ----------------------------------------------------------------------------- the teacher notes

def render_notes(expected: dict | None = None) -> str:
    exp = lesson.load_expected() if expected is None else expected
    if not exp:
        raise FileNotFoundError("assets/expected_results.json is missing: run `lamp lesson measure` first")
    d = describe_default()
    env = exp.get("environment", {})
    out: list[str] = []
    w = out.append
    w("# LAMP Lab: teacher notes\n")
    w("For the teacher: what each exercise of the lab guide shows when a student runs it with the app's "
      "defaults, with the numbers the lab measured and the answers to its questions. Hand out the guide; keep "
      "this page. It is generated: `lamp lesson notes` prints it from `assets/expected_results.json`, which "
      "`lamp lesson measure` writes by training every exercise over its seeds with the engine the app uses.\n")
    w("## Where the numbers come from\n")
    cmp_ = exp["default_comparison"]
    w(f"Every exercise starts from one default comparison (`lamp_core/lesson.py`): the MNIST subset that ships "
      f"with the lab (`assets/mnist_subset`), normal digit {d['normal_class']}, {d['train_images']} of its training "
      f"images, all 2,000 test images of the subset, {d['image_size']} px, the default autoencoder, Adam at lr "
      f"{d['lr']}, batch {d['batch']}, {d['epochs']} epochs ({d['steps_per_epoch']} steps per epoch, {d['steps']} "
      f"steps per model), {d['seeds']} seeds, and LAMP read as the engine reads it by default: max per "
      f"{d['max_over']}, {d['detach']}, ε = {d['eps']}. The app's untouched widgets give exactly these runs.\n")
    threads = env.get("threads", "?")
    w(f"Measured with torch {env.get('torch', '?')} on {env.get('cpus', '?')} CPU cores, {threads} "
      f"{'thread' if threads == 1 else 'threads'} as the app's job-queue worker trains (a run's last digits depend on "
      f"the thread count). The default comparison ({2 * d['seeds']} models) trained and scored in {cmp_['wall_seconds']:.0f} s "
      "of wall time there; in the browser, click to ROC adds the page's own work (`bench/results/app_latency.md`).\n")
    w(f"**These are short runs.** They were chosen so that a class sees results in seconds, and by measurement so "
      "that their verdicts have the signs of the lab's converged results (`bench/results/quick_default_study.md`). "
      f"Their models are {status_words(cmp_)}. The converged reproduction (1000 images per class, 20 epochs, all "
      f"ten classes, L2 within 0.02 of the paper's at batch {_paper_level_sizes()}) is `bench/results/table1.md`; "
      "the ablation of LAMP's open choices "
      "`bench/results/ablation.md`; the landscape study `bench/results/landscape_study.md`. Each section below "
      "puts the quick result beside the converged one.\n")
    out += _loss_curve_section()
    out += _comparison_section(exp, d)
    if "batch_size" in exp:
        out += _batch_section(exp, d)
    if "landscape" in exp:
        out += _landscape_section(exp, d)
    if "upload" in exp:
        out += _upload_section(exp, d)
    return "\n".join(out).rstrip() + "\n"


def _loss_curve_section() -> list[str]:
    out = ["## Loss curves (paper Fig. 2)\n",
           "Nothing trains on this page: the curves are `lamp_core.losses.loss_curves`, the function the page draws. "
           "Values at the largest residual r = 1 (max over the full range, so *fixed* and *sample* agree):\n",
           "| ε | LAMP loss at r = 1 (= −log ε) | L1: LAMP gradient at r = 1 (base: 1) | L2: LAMP gradient at r = 1 (base: 2) |",
           "|---|---:|---:|---:|"]
    rows = loss_curve_rows()
    for r in rows:
        out.append(f"| {r['eps']:g} | {r['loss']:.2f} | {_num(r['l1_grad'])} | {_num(r['l2_grad'])} |")
    c01 = loss_curves("l1", eps=0.01, max_over="fixed")
    fixed_half = loss_curves("l1", eps=0.01, residual_range=0.5, max_over="fixed")
    sample_half = loss_curves("l1", eps=0.01, residual_range=0.5, max_over="sample")
    losses = ", ".join(f"{r['loss']:.1f}" for r in rows if r["eps"] != 0.1)
    out += ["",
            "- *Why does LAMP's gradient grow towards the largest residual, even for L1?* The LAMP element is "
            "−log(1 − B′) with B′ = B / max(B) · (1 − ε), so its slope is the base slope times 1 / (1 − B′). L1's "
            "own slope is constant, but that factor is 1 at r = 0 and 1/ε at the largest residual: at ε = 0.01 the "
            f"L1-LAMP slope is {_at(c01, 'lamp_grad', 0.5):.2f} at r = 0.5 and {c01['lamp_grad'][-1]:.0f} at r = 1.",
            "- *What happens to the largest element's loss as ε → 0?* It is exactly −log ε, so it grows slowly "
            f"({losses} for ε = 0.3, 0.01, 0.0001), while its gradient grows like 1/ε. At small ε a handful of worst "
            "pixels dominates each update; the log-scale gradient panel shows the whole curve."]
    p01, p1 = ablation_eps(0.01), ablation_eps(0.1)
    if p01 is not None and p1 is not None:
        out.append(f"- *How much does ε matter once models train?* In the converged ablation (batch 128, ten classes, "
                   f"3 seeds, max per image, detached; LAMP − L2 AUROC over {p1.n} pairs): ε 0.1 gives {p1.text()}, "
                   f"ε 0.01 {p01.text()}. ε's effect is of the size of LAMP's whole effect, a few thousandths.")
    out += [f"- *fixed vs sample.* Over [−1, 1] both use max = 1, so the curves do not move: correct, not a fault. "
            f"Shrink the range to 0.5: with *fixed* the L1-LAMP loss at r = 0.5 (ε 0.01) stays "
            f"{fixed_half['lamp'][-1]:.2f} (slope {fixed_half['lamp_grad'][-1]:.2f}); with *sample* r = 0.5 becomes the "
            f"maximum, so its loss jumps to {sample_half['lamp'][-1]:.2f} and its slope to "
            f"{sample_half['lamp_grad'][-1]:.0f}.", ""]
    return out


def _comparison_section(exp: dict, d: dict) -> list[str]:
    e = exp["default_comparison"]
    p = pair_of(e)
    out = ["## Train & compare (Fig. 4, ROC)\n",
           f"The default comparison, normal digit {d['normal_class']}, {len(e['seeds'])} seeds:\n",
           "| seed | base AUROC | LAMP AUROC | LAMP − base |", "|---:|---:|---:|---:|"]
    for s, b, l in zip(e["seeds"], e["base_auroc"], e["lamp_auroc"]):
        out.append(f"| {s} | {b:.3f} | {l:.3f} | {l - b:+.3f} |")
    deltas = [l - b for b, l in zip(e["base_auroc"], e["lamp_auroc"])]
    m, sd, _ = mean_std(deltas)
    out.append(f"| mean ± std | {ms(e['base_auroc'])} | {ms(e['lamp_auroc'])} | {m:+.3f} ± {sd:.3f} |")
    out.append("")
    conv = converged_row(d["batch"])
    ref = ""
    if conv:
        ref = (f" The converged Table 1 at batch {d['batch']} (ten classes, {conv['pairs']} pairs) gives L2 "
               f"{conv['l2']:.3f} and LAMP {conv['lamp']:.3f}, Δ {conv['delta']:+.3f} [{conv['delta_lo']:+.3f}, "
               f"{conv['delta_hi']:+.3f}]: that is the answer to hold the students' numbers against.")
    out.append(f"- *Is LAMP's AUROC higher, compared with the spread over seeds?* Here: "
               f"{difference_words(p, still_learning=learning(e))}.{ref} Students on other digits will see other, "
               "mixed differences; the reason to ask is to make them compare a difference with the spread.")
    m = e.get("misses_95")
    if m:
        mb = [x["missed"] for x in m["base"]]
        ml = [x["missed"] for x in m["lamp"]]
        total = m["base"][0]["anomalies"]
        per = m["base"][0]["missed_share_by_group"]
        if per:
            worst = max(per, key=per.get)
            best = min(per, key=per.get)
            group_txt = (f" The misses are not spread evenly: with {d['normal_class']} as the normal digit, "
                         f"{100 * per[worst]:.0f}% of the {worst}s are missed by the base model of seed "
                         f"{e['seeds'][0]} and {100 * per[best]:.0f}% of the {best}s: a good moment to discuss "
                         "what \"anomalous\" means to a reconstruction model.")
        else:
            group_txt = ""
        out.append(f"- *Histograms: how many anomalies does each miss at the 95th percentile?* The threshold lets 5% "
                   f"of the normal test images through by construction. Of the {total} anomalies, base missed "
                   f"{' / '.join(map(str, mb))} and LAMP {' / '.join(map(str, ml))} (seeds "
                   f"{' / '.join(map(str, e['seeds']))}).{group_txt}")
        rn = [x["median_score_anomalous"] / x["median_score_normal"] for x in m["base"]]
        rl = [x["median_score_anomalous"] / x["median_score_normal"] for x in m["lamp"]]
        out.append(f"- *Are LAMP's error maps brighter on anomalies, darker on normal images?* Median score on normal "
                   f"images (seed {e['seeds'][0]}): base {m['base'][0]['median_score_normal']:.4f}, LAMP "
                   f"{m['lamp'][0]['median_score_normal']:.4f}; on anomalies {m['base'][0]['median_score_anomalous']:.4f} "
                   f"and {m['lamp'][0]['median_score_anomalous']:.4f}. The ratio anomalous/normal is "
                   f"{min(rn):.2f}-{max(rn):.2f} for base and {min(rl):.2f}-{max(rl):.2f} for LAMP over the seeds. What "
                   "matters for AUROC is the overlap of the two score distributions, not how bright single maps are.")
    out.append("")
    return out


def _batch_section(exp: dict, d: dict) -> list[str]:
    bsx = exp["batch_size"]
    from .references import paper_table1
    paper = paper_table1()
    out = ["## Batch size (Table 1, Fig. 3)\n",
           f"Normal digit {d['normal_class']}, {d['train_images']} training images, seeds "
           f"{', '.join(map(str, exp['default_comparison']['seeds']))}, both step modes of the page. "
           "\"Same epochs\" is the paper's setting (a larger batch takes fewer steps); \"same steps\" gives every size "
           f"the {d['steps']} steps of batch {d['batch']} (rounded up to whole epochs). At the sizes where runs train "
           "together as one stack on this CPU (batch 16 and below), a run's last digits depend on its stack-mates "
           "(float rounding that compounds over the steps: bench/results/batch_size_study_determinism.json), so a "
           "student's numbers there can differ from these in the second or third decimal; the larger sizes "
           "reproduce exactly (bench/results/lesson_walk.md).\n"]
    study = _batch_study()
    study_conv = study.get("converged", {})
    for mode, label in lesson.STEP_MODES.items():
        rows = bsx.get(mode)
        if not rows:
            continue
        out += [f"**{label}** (\"Train every size\" took {bsx['wall_seconds'][mode] / 60:.1f} min here, "
                f"with batch {d['batch']} already in the store):\n",
                "| batch | epochs | steps | base AUROC | LAMP AUROC | Δ [95% CI] | models | converged L2 / LAMP | paper L2 / LAMP |",
                "|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for bs in lesson.BATCH_SIZES:
            e = rows.get(str(bs))
            if not e:
                continue
            p = pair_of(e)
            conv = converged_row(bs)
            c = f"{conv['l2']:.3f} / {conv['lamp']:.3f}" if conv else "–"
            if bs in study_conv:     # the study stands in where Table 1 is not the paper's regime
                c = f"{study_conv[bs]['l2']:.3f} / {study_conv[bs]['lamp']:.3f}†"
            pp = paper.get(bs)
            ptxt = f"{pp['l2']:.3f} / {pp['lamp']:.3f}" if pp else "–"
            state = state_label(e)
            out.append(f"| {bs} | {e['epochs']} | {e['steps']} | {ms(e['base_auroc'])} | {ms(e['lamp_auroc'])} | "
                       f"{p.text()} | {state} | {c} | {ptxt} |")
        out.append("")
    se = bsx.get("same_epochs", {})
    ss = bsx.get("same_steps", {})
    if se and ss:
        big, small = str(max(lesson.BATCH_SIZES)), str(d["batch"])
        out.append(f"- *How many steps at batch 1 and at batch 1024?* With {d['train_images']} images and "
                   f"{d['epochs']} epochs, batch 1 takes {d['steps_b1']} steps and batch 1024 (capped at the "
                   f"{d['train_images']} images, so full-batch) {d['steps_b1024']}. In \"same epochs\" batch 1024 "
                   f"reaches base {ms(se[big]['base_auroc'])} against {ms(se[small]['base_auroc'])} at batch "
                   f"{d['batch']}; given the same {d['steps']} steps it reaches {ms(ss[big]['base_auroc'])}. The "
                   "difference between the two rows is the part of the \"batch-size effect\" that is training length.")
        deltas = {bs: pair_of(se[str(bs)]) for bs in lesson.BATCH_SIZES if str(bs) in se}
        clear = [bs for bs, p in deltas.items() if p.n > 1 and (p.lo > 0 or p.hi < 0)]
        out.append("- *Does LAMP's advantage change with the batch size?* At these budgets the intervals of LAMP − base "
                   + ("include 0 at every size" if not clear else
                      f"exclude 0 only at batch {', '.join(map(str, clear))}")
                   + f" ({len(exp['default_comparison']['seeds'])} seeds, one digit). " + _converged_gain_words(paper))
        out.append(f"- *What does batch 1024 mean with {d['train_images']} training images?* The batch is capped at "
                   "the training set, so it is full-batch gradient descent with one step per epoch, no sampling noise "
                   f"at all. (With the small *digits* data, about {_digits_train_images()} images of a digit, the same is "
                   "already true at batch 128.)")
        out += _batch_study_lines(study, paper)
    out.append("")
    return out


def _batch_study() -> dict:
    from .references import batch_size_study
    try:
        return batch_size_study()
    except (OSError, ValueError, KeyError):      # a checkout without bench/results
        return {}


def _batch_study_lines(study: dict, paper: dict) -> list[str]:
    """The paper's batch-1024 claim as the batch-size study on whole classes found it."""
    from .references import BATCH_STUDY_REGIMES, STUDY_REGIME_WORDS, study_regime_sentence
    parts = [study_regime_sentence(g, b, v, paper.get(b) if g != "step_matched" else None)
             for g in BATCH_STUDY_REGIMES for b, v in study.get(g, {}).items()]
    if not parts:
        return []
    conv = study.get("converged", {})
    mark = (f" † marks batch {', '.join(map(str, conv))} in the tables above: the study {STUDY_REGIME_WORDS['converged']}, "
            "since the converged Table 1's batch 1024 (20 full-batch steps on 1000 images) is not the paper's regime."
            if conv else "")
    return ["- *Does the paper's batch-1024 gain (its largest) hold up?* The batch-size study "
            "(`bench/results/batch_size_study.md`) trains batch 1024 on whole classes, as the paper did, every seed "
            "with its own data draw. " + ". ".join(p[0].upper() + p[1:] for p in parts) + "." + mark]


def _paper_level_sizes() -> str:
    """The batch sizes at which the converged Table 1's L2 lands within 0.02 of the paper's."""
    from .references import converged_table1, paper_table1
    conv, paper = converged_table1(), paper_table1()
    sizes = sorted(b for b in conv if b in paper and abs(conv[b]["l2"] - paper[b]["l2"]) <= 0.02)
    return ", ".join(map(str, sizes)) if sizes else "no size"


def _converged_gain_words(paper: dict) -> str:
    """Where the converged Table 1's interval of LAMP − L2 excludes 0, and the paper's range."""
    from .references import converged_table1
    conv = converged_table1()
    up = [bs for bs, r in sorted(conv.items()) if r["delta_lo"] > 0]
    down = [bs for bs, r in sorted(conv.items()) if r["delta_hi"] < 0]
    gains = [r["lamp"] - r["l2"] for r in paper.values()]
    words = ("The converged Table 1 finds LAMP above L2 beyond its pair-level interval at batch "
             + (", ".join(map(str, up)) if up else "no size"))
    if down:
        words += f" and below it at batch {', '.join(map(str, down))}"
    # over classes (mean per digit first) the same difference may not exclude 0: say so
    loose = [bs for bs in up + down if conv[bs]["delta_class_lo"] <= 0 <= conv[bs]["delta_class_hi"]]
    if loose:
        words += (" (over the ten classes, its class-level interval includes 0 there: "
                  + ", ".join(f"[{conv[b]['delta_class_lo']:+.3f}, {conv[b]['delta_class_hi']:+.3f}] at {b}"
                              for b in loose) + ")")
    return (words + f"; the paper's per-batch differences run from {min(gains):+.3f} to {max(gains):+.3f}, mostly "
            "smaller than what a few seeds can detect: ask how many seeds a claim of +0.003 would need "
            "(`bench/results/table1.md`, power table).")


def _landscape_section(exp: dict, d: dict) -> list[str]:
    L = exp["landscape"]
    lc = L["landscape"]
    out = ["## Loss landscape (Fig. 1)\n",
           f"The default comparison's seed-{L['seed']} models, cut as the page cuts them: a {lc['nx']}×{lc['ny']} grid "
           f"over ±{lc['span']:g} along two filter-normalised random directions (seed {lc['seed']}), {lc['n_images']} "
           f"normal training images, BatchNorm in {lc['bn_mode']} mode; sharpness from {lc['hessian_iters']} power "
           f"iterations and {lc['hutchinson_samples']} Hutchinson probes.\n"]
    for metric, title in (("l2", "metric l2 (the page's default: one yardstick)"), ("own", "metric own")):
        m = L.get(metric)
        if not m:
            continue
        out += [f"| {title} | base | LAMP | LAMP / base |", "|---|---:|---:|---:|"]
        for key, label in (("centre", "loss at the trained weights"), ("highest", "highest loss on the grid"),
                           ("top_eigenvalue", "top Hessian eigenvalue λmax"), ("hessian_trace", "Hessian trace"),
                           ("radius_increase", "mean relative increase at r = 0.25")):
            b, l = m["base"].get(key), m["lamp"].get(key)
            if b is None or l is None:
                continue
            ratio = f"{l / b:.2f}×" if b else "–"
            fmt = (lambda v: f"{v:+.0%}") if key == "radius_increase" else _num
            out.append(f"| {label} | {fmt(b)} | {fmt(l)} | {ratio} |")
        out.append("")
    from .references import landscape_verdict
    v = landscape_verdict()
    q_l2 = L["l2"]["lamp"]["top_eigenvalue"] / L["l2"]["base"]["top_eigenvalue"]
    q_own = L["own"]["lamp"]["top_eigenvalue"] / L["own"]["base"]["top_eigenvalue"]
    conv_own, conv_l2 = v["overall"]["own"], v["overall"]["l2"]
    agree_own = (q_own > 1) == bool(v["steeper_in_own"])
    agree_l2 = (q_l2 < 1) == bool(v["flatter_in_l2"])
    conv_txt = (f"the converged study ({conv_l2['pairs']} pairs) finds LAMP's λmax {conv_own['lambda_max']:.2f}× the "
                f"base's in the own view ({conv_own['lambda_max_steeper']} of {conv_own['pairs']} pairs steeper) and "
                f"{conv_l2['lambda_max']:.2f}× in L2 ({conv_l2['lambda_max_steeper']} of {conv_l2['pairs']} steeper)")
    if agree_own and agree_l2:
        here = (f"Here, as in the converged models, LAMP is steeper in its own loss (λmax {q_own:.2f}×) and flatter "
                f"in L2 ({q_l2:.2f}×): {conv_txt}.")
    else:
        parts = []
        if not agree_own:
            parts.append(f"in its own loss LAMP's λmax is {q_own:.2f}× the base's")
        if not agree_l2:
            parts.append(f"in L2 LAMP's λmax is {q_l2:.2f}× the base's, steeper")
        here = (f"Here, unlike the converged models, {' and '.join(parts)}; {conv_txt}. One pair of quick models "
                "and one slice can differ from the study; the models here are "
                f"{'still learning' if learning(exp['default_comparison']) else 'trained'}, and over ten classes the "
                "quick default agrees with the study (`bench/results/quick_default_study.md`).")
    out += [f"- *The own LAMP surface is higher and steeper: how much of that is only LAMP's larger scale?* "
            f"{here} Expect \"steeper\" in the own view and \"flatter\" in the l2 view; the discussion to have is "
            "which comparison is fair (one yardstick for both), and that the paper's picture is the own view.",
            "- *Do the top Hessian eigenvalue and the trace agree with the picture?* They measure different things: "
            "λmax is the curvature along the single steepest direction, the trace the sum over all directions "
            "(a Hutchinson estimate), the relative increase the average rise at distance 0.25 along random "
            "filter-normalised directions, as a share of the centre value, which is what the picture shows. A table "
            "where one number says \"sharper\" and another \"flatter\" is not a contradiction: the numbers answer "
            "different questions, and only numbers in one metric compare two models.", ""]
    return out


def _upload_section(exp: dict, d: dict) -> list[str]:
    u = exp["upload"]
    b, f = u["budget"], u["five_epochs"]
    return ["## Your data\n",
            f"The example zip (`assets/example_upload.zip`: {u['train_images']} normal training images, 8×8 digits "
            f"scaled up) trained at the upload size of {d['upload_size']} px, batch {d['batch']}, {len(b['seeds'])} seeds. "
            f"The app gives an upload the default comparison's number of steps ({d['steps']}), so this set trains "
            f"for {u['budget_epochs']} epochs ({b['steps']} steps):\n",
            "| budget | epochs | steps | base AUROC | LAMP AUROC | Δ [95% CI] | models |",
            "|---|---:|---:|---:|---:|---:|---|",
            f"| the app's (fits the data) | {b['epochs']} | {b['steps']} | {ms(b['base_auroc'])} | {ms(b['lamp_auroc'])} | "
            f"{pair_of(b).text()} | {state_label(b)} |",
            f"| fixed 5 epochs (before) | {f['epochs']} | {f['steps']} | {ms(f['base_auroc'])} | {ms(f['lamp_auroc'])} | "
            f"{pair_of(f).text()} | {state_label(f)} |", "",
            "The exercise is about the workflow (layout, validation report, skipped files, training on one's own data). "
            "A useful question for students with their own data: \"is my base model good enough, and not perfect, so "
            "that a difference could show?\" The training indicator beside every AUROC says whether the models had "
            "finished learning.", ""]
