"""Batch size (paper Table 1 and Fig. 3): AUROC against batch size over the exercise's seeds, in
the paper's setting (same epochs) or at an equal number of optimizer steps, beside the lab's
converged Table 1 and the paper's; the contours (first seed) at the chosen size.

Nothing trains until a button is pressed: the slider shows what is finished (by anyone on this
server, from the run store) at once, and offers to train the size it is on. The configs are the
lesson's (`lesson.batch_size_config` over `results.seed_configs`), so an untouched page finds the
runs Train & compare trained with the default at batch 32.
"""
import sys
from pathlib import Path

# Streamlit puts only the main script's folder on sys.path: app/ when streamlit_app.py runs this page,
# app/app_pages/ when the page is run alone (`streamlit run` on it, AppTest.from_file). So app/ is
# added here for lab_state and results; lamp_core itself is the installed package.
if str(Path(__file__).resolve().parents[1]) not in sys.path:     # once (a page runs on every rerun)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import streamlit as st

import lab_state
import results
from lamp_core import figures, landscape_figures, lesson, references, surfaces
from lamp_core.lesson_measure import config_of
from lamp_core.config import LampError, run_key
from lamp_core.jobs import DONE, FINAL, QUEUED, QueueFull
from lamp_core.stats import paired

q = lab_state.setup("Batch size")
ss = st.session_state
cfg = lab_state.current_config()
n_seeds = int(ss.get("seeds", lab_state.DEFAULT_SEEDS))
SIZES = lab_state.BATCH_SIZES
LCFG = lab_state.BATCH_LANDSCAPE          # coarser than the Landscape page's: six sizes to compute
NAMES = ("base", "LAMP")

st.caption(f"The settings last trained on **Train & compare** ({lab_state.describe(cfg)}, {n_seeds} seed"
           f"{'' if n_seeds == 1 else 's'} per loss) at each of the paper's batch sizes.")
mode = st.radio("Training length at each size", list(lesson.STEP_MODES), format_func=lesson.STEP_MODES.get,
                key="bs_mode", horizontal=True,
                help="Same epochs is the paper's Table 1: every size passes over the data equally often, so "
                     "a small batch takes many more optimizer steps. Same number of steps gives every size "
                     "the steps of the Train & compare batch size, which separates the batch size from "
                     "the length of training.")

try:
    n_train = lesson.train_images(cfg)      # the steps of each size depend on it (cached by data.load)
except (LampError, OSError) as exc:
    st.error(lab_state.page_message(str(exc).splitlines()[0]))
    st.stop()

# Every config of the page, built once per run: {size: {"base": [seed configs], "LAMP": [...]}}.
CONFIGS = {b: results.seed_configs(lesson.batch_size_config(cfg, b, mode, n_train=n_train), n_seeds)
           for b in SIZES}
PLAN = {}
for b, cs in CONFIGS.items():
    per_epoch = lesson.steps_per_epoch(n_train, b)
    epochs = cs["base"][0].train.epochs
    PLAN[b] = {"epochs": epochs, "per_epoch": per_epoch, "steps": per_epoch * epochs,
               "keys": {n: [run_key(c) for c in cs[n]] for n in NAMES}}
# what Train & compare's batch size takes: the target of "same number of steps"
OWN_STEPS = lesson.steps_per_epoch(n_train, cfg.train.batch_size) * cfg.train.epochs
ss["bs_plan"] = PLAN                        # what this page looks for, per size (the tests read it)

# This session's jobs per (settings, mode, seeds): switching the mode and back finds them again.
# Bounded: the MAX_IDENTS settings used most recently are kept (job ids only, a few KB), so a session
# that tries many settings does not grow without end; an older one's results still load from the store.
MAX_IDENTS = 32
ident = (run_key(cfg), mode, n_seeds)
ss["bs_cfg"] = ident
_all = ss.setdefault("bs_all_jobs", {})
ss["bs_jobs"] = _all[ident] = _all.pop(ident, {})          # re-inserted: most recently used last
for _old in list(_all)[:max(0, len(_all) - MAX_IDENTS)]:
    del _all[_old]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def steps_sentence() -> str:
    """How long each size trains in the chosen mode, in words, from PLAN."""
    own = cfg.train.batch_size
    ends = f"batch {SIZES[0]} takes {PLAN[SIZES[0]]['steps']:,} optimizer steps and batch {SIZES[-1]} " \
           f"{PLAN[SIZES[-1]]['steps']:,}"
    if mode == "same_epochs":
        text = f"Same epochs: every size trains {plural(cfg.train.epochs, 'epoch')} over the {n_train:,} " \
               f"training images, so {ends}."
    else:
        target = OWN_STEPS
        longer = [b for b in SIZES if PLAN[b]["steps"] > target]
        text = (f"Same number of steps: every size gets the {target:,} steps that batch {own} takes in "
                f"{plural(cfg.train.epochs, 'epoch')}, in whole epochs (batch {SIZES[-1]}: "
                f"{plural(PLAN[SIZES[-1]]['epochs'], 'epoch')}).")
        if longer:
            text += (" Training stops at the end of an epoch, so " + ", ".join(
                f"batch {b} takes {PLAN[b]['steps']:,}" for b in longer) + " (the least whole number of "
                "epochs that reaches the target).")
    whole = [b for b in SIZES if b >= n_train]
    if whole:
        text += (f" At batch {', '.join(map(str, whole))} the batch is the whole set of {n_train:,} images: one "
                 "step per epoch.")
    return text


st.caption(steps_sentence())


def stored(bs: int) -> dict[str, list]:
    """The finished runs (job views) at one size, per loss, in seed order: this server's jobs or
    the run store; no work."""
    out: dict[str, list] = {}
    for n, cs in CONFIGS[bs].items():
        for c in cs:
            v = q.find_run(c)
            if (v is None or v.status != DONE) and q.store.has(c):
                v = q.submit_run(c)            # a store hit is done on return: nothing is queued
            if v is not None and v.status == DONE and v.result.evaluation is not None:
                out.setdefault(n, []).append(v)
    return out


def queue_sizes(sizes: list[int]) -> None:
    """Queue (or load at once, when finished) every seed's runs at these sizes, then, if asked, the
    first seed's two contours at each while the session's cap allows (runs first: the plot needs them)."""
    sid = lab_state.session_id()
    ss.pop("bs_msg", None)
    try:
        for b in sizes:
            flat = [(f"{n} {i}", c) for n, cs in CONFIGS[b].items() for i, c in enumerate(cs)]
            views = q.submit_runs([c for _, c in flat], session=sid)
            ss["bs_jobs"].setdefault(b, {}).update({k: v.id for (k, _), v in zip(flat, views)})
    except LampError as exc:
        ss["bs_msg"] = lab_state.page_message(str(exc).splitlines()[0])
        return
    if not ss.get("bs_landscape", True):
        return
    left_out = []
    for b in sizes:
        try:
            for n, cs in CONFIGS[b].items():
                ss["bs_jobs"][b][f"surface {n}"] = q.submit_surface(cs[0], LCFG, session=sid).id
        except QueueFull:
            left_out.append(b)
        except LampError as exc:
            ss["bs_msg"] = lab_state.page_message(str(exc).splitlines()[0])
            return
    if left_out:
        ss["bs_msg"] = (f"The contours of batch {', '.join(map(str, left_out))} were not queued: a session may "
                        f"have {q.max_per_session} unfinished jobs. Train them from the slider once the runs finish.")


def recorded_cost() -> float | None:
    """Wall seconds `lamp lesson measure` recorded for "Train every size" in this mode, when the
    recording is of exactly these runs (same configs and seeds at every size); else None."""
    try:
        rec = ((lesson.load_expected() or {}).get("batch_size") or {})
    except LampError:             # a damaged recording: say nothing about the cost rather than fail
        return None
    wall = (rec.get("wall_seconds") or {}).get(mode)
    sizes = rec.get(mode) or {}
    if wall is None:
        return None
    for b in SIZES:
        entry = sizes.get(str(b))
        if not entry or len(entry.get("seeds", [])) != n_seeds:
            return None
        # the recording names the shipped data by its place in the repository (config_of resolves it)
        recorded = config_of(entry).with_train(lamp=False)   # base's key ignores LAMP options
        if run_key(recorded) != run_key(CONFIGS[b]["base"][0]):
            return None
    return float(wall)


default = cfg.train.batch_size if cfg.train.batch_size in SIZES else 32
bs = st.select_slider("Batch size", options=SIZES, value=default, key="bs",
                      help="Shows the runs at this size when they are finished (by anyone on this server); "
                           "moving the slider never starts training: press the button below to train a size.")
c1, c2 = st.columns(2)
c1.toggle("Contours too", True, key="bs_landscape",
          help=f"Also compute both loss landscapes (first seed; {LCFG.nx}×{LCFG.ny} grid, {LCFG.n_images} "
               f"images, metric '{LCFG.metric}') at each size you train.")
c2.button("Train every size", key="queue_all", on_click=queue_sizes, args=(sorted(SIZES, reverse=True),),
          help=f"Queue both losses at all {len(SIZES)} sizes, {plural(n_seeds, 'seed')} each, smallest work first "
               "(the contours after the runs). Sizes already finished load from the run store.")
cost = recorded_cost()
if cost is not None:
    c2.caption(f"Every size at {plural(n_seeds, 'seed')}: about {max(1, round(cost / 60))} min on the lab's "
               "2-core CPU, measured by `lamp lesson measure` (runs and contours; batch 32 already trained on Train & "
               "compare).")


def reference_series(mode: str) -> tuple[dict, list[str]]:
    """The lab's converged Table 1, the batch-size study (at batch 1024, where the converged Table 1
    is not the paper's regime) and the paper's Table 1 as `fig_auroc_vs_batch` references, and the
    sentences that describe them (from the numbers themselves)."""
    refs, words = {}, []
    try:
        study = references.batch_size_study()
    except (OSError, ValueError, KeyError) as exc:
        study = {}
        words.append(f"The batch-size study is not available here ({str(exc).splitlines()[0]}).")
    # the sizes the study quotes for the paper's regime: the converged Table 1 is not shown there
    study_sizes = {b for g in ("paper_level", "converged") for b in study.get(g, {})}
    try:
        conv = references.converged_table1()
    except (OSError, ValueError) as exc:
        words.append(f"The lab's converged Table 1 is not available here ({str(exc).splitlines()[0]}).")
    else:
        def same(field):   # the one value every size shares, else None
            vals = {v.get(field) for v in conv.values()}
            return vals.pop() if len(vals) == 1 else None
        images, epochs, classes = same("max_train"), same("epochs"), same("classes")
        seeds = sorted({v["seeds"] for v in conv.values()})
        what = ", ".join(p for p in (images and f"{images} images", epochs and f"{epochs} epochs",
                                     classes and f"{classes} classes") if p)
        label = f"lab, converged ({what})" if what else "lab, converged"
        shown = {b: v for b, v in conv.items() if b not in study_sizes}
        refs[label] = {"L2": {b: (v["l2"], v["l2_sd"]) for b, v in shown.items()},
                       "L2-LAMP": {b: (v["lamp"], v["lamp_sd"]) for b, v in shown.items()}}
        seed_words = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        left_out = sorted(set(conv) - set(shown))
        words.append(f"**Dashed**: the lab's converged Table 1, the mean AUROC over {classes or 'all'} classes of "
                     f"models trained {epochs or 'to convergence'} epochs on {images or 'all'} images per class "
                     f"({seed_words} seeds; bars ± one standard deviation over seeds)"
                     + (f", except at batch {', '.join(map(str, left_out))}: there {images or 'its'} images make "
                        f"{', '.join(str(conv[b]['steps']) for b in left_out)} full-batch steps, not the paper's "
                        "regime, so the study below stands in for it." if left_out else "."))
    try:
        paper = references.paper_table1()
    except (OSError, ValueError) as exc:
        paper = {}
        words.append(f"The paper's Table 1 is not available here ({str(exc).splitlines()[0]}).")
    if paper:
        refs["paper"] = {"L2": {b: (v["l2"],) for b, v in paper.items()},
                         "L2-LAMP": {b: (v["lamp"],) for b, v in paper.items()}}
        words.append("**Dotted**: the paper's Table 1, the mean over its one-class MNIST tasks, one per digit (one "
                     "number per cell, no spread given).")
    # the study after the two above: fig_auroc_vs_batch styles the references in order (dashed, dotted, ...)
    regimes = [g for g in references.BATCH_STUDY_REGIMES if g != "step_matched" or mode == "same_steps"]
    sentences = []
    for g in regimes:
        per = study.get(g, {})
        if not per:
            continue
        if g == "step_matched":
            steps = "/".join(sorted({references.range_text(v["steps"]) for v in per.values()}))
            label = f"study, {steps} steps at each size"
        else:
            label = f"study, {references.STUDY_REGIME_WORDS[g]}"
        refs[label] = {"L2": {b: (v["l2"], v["l2_sd"]) for b, v in per.items()},
                       "L2-LAMP": {b: (v["lamp"], v["lamp_sd"]) for b, v in per.items()}}
        sentences += [references.study_regime_sentence(g, b, v, None if g == "step_matched" else paper.get(b))
                      for b, v in per.items()]
    if sentences:
        quoted = sorted({b for g in regimes for b in study.get(g, {})})
        words.append(f"**Open markers at batch {', '.join(map(str, quoted))}**: the batch-size study "
                     f"(`{references.BATCH_STUDY_MD.relative_to(references.REPO)}`), which trains batch 1024 on whole "
                     "classes as the paper did (about 6000 images), every seed with its own data draw: " + "; ".join(sentences) + ".")
    return refs, words


REFS, REF_WORDS = reference_series(mode)
kind = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "digits": "digits"}.get(cfg.data.dataset)
one = f"one normal class ({kind} {cfg.data.normal_class})" if kind else "one data set"
length = (f"{plural(cfg.train.epochs, 'epoch')} at every size" if mode == "same_epochs" else
          f"the {OWN_STEPS:,} steps of batch {cfg.train.batch_size} at every size where whole epochs allow "
          "(the table below)")
# the references are L2 on MNIST: say so where the quick runs differ, rather than compare silently
base_note = ("" if cfg.train.base_loss == "l2" else
             f" The references are L2's; your base loss is {cfg.train.base_loss.upper()}.") + \
    ("" if cfg.data.dataset == "mnist" else f" The references are on MNIST; your runs are on {kind or 'your data'}.")
st.markdown(
    f"**What you are looking at.** **Solid**: your quick runs, {one}, {n_train:,} training images, {length}, "
    f"{plural(n_seeds, 'seed')} per loss: each point is the mean over the seeds finished (n), its bars ± one "
    "standard deviation over them (the spread of single runs, not a confidence interval). "
    + " ".join(REF_WORDS) + base_note
    + (" The converged Table 1 and the paper's train every size the same epochs (the paper's setting): in this "
       "mode only your runs and the study's step-matched points change." if mode == "same_steps" else "") +
    " The references average over every digit as the normal class and, but for the study's paper-level "
    "point (trained only until L2 reaches the paper's level), come from converged models; your runs "
    "are one class and short, so their level can sit above or below the references'. Compare how AUROC moves with the batch size, and the gap "
    f"between base and LAMP, not the level. **A difference within the error bars is not a finding**: with "
    f"{plural(n_seeds, 'seed')}, even bars that just separate are weak evidence (the table gives the paired "
    "difference with its 95% interval).")


def rows_of(done: dict[int, dict[str, list]]) -> list[dict]:
    """AUROC rows (one per finished run) of every size."""
    rows = []
    for b, per in done.items():
        for n, vs in per.items():
            for v in vs:
                r = v.result.result
                rows.append({"batch_size": b, "name": n, "seed": r.config.train.seed, "auroc": v.result.evaluation.auroc,
                             "mode": mode, "epochs": r.epochs_done, "steps": r.steps,
                             "seconds": round(r.seconds, 2), "config_key": run_key(r.config)})
    return rows


def size_table(done: dict[int, dict[str, list]]) -> list[dict]:
    """One row per size: how long it trains, n per loss, mean ± std and the paired difference."""
    out = []
    for b in SIZES:
        per = done.get(b, {})
        auroc = {n: {v.result.result.config.train.seed: v.result.evaluation.auroc for v in per.get(n, [])}
                 for n in NAMES}
        row = {"batch": b, "epochs": PLAN[b]["epochs"], "steps per epoch": PLAN[b]["per_epoch"],
               "steps": PLAN[b]["steps"]}
        for n in NAMES:
            vals = list(auroc[n].values())
            mean, sd = figures.auroc_summary(vals)
            row[f"{n} AUROC"] = (f"{mean:.3f} ± {sd:.3f}" if len(vals) > 1 else f"{mean:.3f}" if vals else "—") \
                + f" (n={len(vals)}/{n_seeds})"
        # paired by seed: both models of a seed start from the same weights and see the same batches
        diffs = [auroc["LAMP"][s] - auroc["base"][s] for s in auroc["LAMP"] if s in auroc["base"]]
        p = paired(diffs)
        row["Δ LAMP − base [95% CI]"] = ("—" if not diffs else f"{p.mean:+.3f} (1 seed)" if p.n == 1
                                         else f"{p.mean:+.3f} [{p.lo:+.3f}, {p.hi:+.3f}]")
        # whether this size's models had finished learning (lamp_core.convergence): a difference
        # between models that are still learning is not a finding
        recs = {n: [v.result for v in per.get(n, [])] for n in NAMES}
        row["models"] = results.training_summary(recs).state if any(recs.values()) else "—"
        out.append(row)
    return out


def show_runs(name: str, b: int, vs: list) -> None:
    """One line for a loss's seeds at one size: done, stopped/failed or the progress of them all."""
    done = [v for v in vs if v is not None and v.status == DONE]
    bad = [v for v in vs if v is not None and v.status in FINAL and v.status != DONE]
    if len(done) == len(vs):
        where = "from the run store" if all(v.cached for v in done) else "done"
        st.caption(f"✓ {name} @ {b}: {len(done)} of {len(vs)} seeds, {where}")
    elif all(v is None or v.status in FINAL for v in vs):
        st.caption(f"■ {name} @ {b}: {len(done)} of {len(vs)} seeds done, {len(bad)} stopped or failed")
        err = next((v.error for v in bad if v.error), None)
        if err:
            st.error(lab_state.page_message(err.splitlines()[0]))
    else:
        live = [v for v in vs if v is not None]
        eta = max((v.eta_s or 0 for v in live), default=0)
        queued = all(v.status in (QUEUED, DONE) for v in live)
        what = "waiting in the queue" if queued else "training"
        st.progress(sum(v.progress for v in live) / max(len(vs), 1),
                    text=f"{name} @ {b}: {len(done)} of {len(vs)} seeds done, {what}"
                         + lab_state.eta_text(eta))


def view() -> bool:
    jobs = ss["bs_jobs"]
    mine = {b: {k: q.get(i) for k, i in js.items()} for b, js in jobs.items()}
    busy = any(v is not None and v.status not in FINAL for js in mine.values() for v in js.values())
    sel = mine.get(bs, {})
    done = {b: stored(b) for b in SIZES}
    done_here = done[bs]
    n_done = {n: len(done_here.get(n, [])) for n in NAMES}
    wants_contours = ss.get("bs_landscape", True)
    surfaces_here = {n: surfaces.cached_surface(cs[0], LCFG, q.store) for n, cs in CONFIGS[bs].items()}
    runs_complete = all(k == n_seeds for k in n_done.values())
    complete = runs_complete and (not wants_contours or all(surfaces_here.values()))
    if ss.get("bs_msg"):
        st.error(ss["bs_msg"])
    cols = st.columns(2)
    for col, n in zip(cols, NAMES):
        with col:
            ids = [k for k in sel if k.startswith(f"{n} ")]
            if ids:
                show_runs(n, bs, [sel[k] for k in ids])
            elif n_done[n]:
                st.caption(f"✓ {n} @ {bs}: {n_done[n]} of {n_seeds} seeds, from the run store")
            if f"surface {n}" in sel and wants_contours:
                lab_state.show_job(sel[f"surface {n}"], label=f"contour {n} @ {bs}")
    sel_busy = any(v is not None and v.status not in FINAL for v in sel.values())
    if not complete and not sel_busy:
        if runs_complete:
            st.info(f"The contours of batch {bs} have not been computed with these settings yet.",
                    icon=":material/info:")
        else:
            st.info(f"Batch {bs} has not been trained with these settings yet ({2 * n_seeds - sum(n_done.values())} "
                    f"of its {2 * n_seeds} runs missing).", icon=":material/info:")
        st.button(f"Train batch {bs}", type="primary", key="train_bs", on_click=queue_sizes, args=([bs],),
                  help=f"Queue both losses at this size, {plural(n_seeds, 'seed')} each (and the first seed's "
                       "contours, if ticked); the page follows them.")
    waiting = sorted(b for b, js in mine.items() if b != bs and any(
        v is not None and v.status not in FINAL for v in js.values()))
    if waiting:
        st.caption("Also queued or running: batch " + ", ".join(map(str, waiting)))
    if busy:
        sid = lab_state.session_id()
        st.button("Stop all", key="stop_bs", help="Stop every queued or running job of this page (a job another "
                  "session also asked for goes on for them).",
                  on_click=lambda: [q.cancel(i, sid) for js in jobs.values() for i in js.values()])
    rows = rows_of(done)
    if rows or REFS:
        points = sorted((r["batch_size"], r["name"], r["seed"], r["auroc"]) for r in rows)
        fig = lab_state.memo_figure("auroc_bs", (points, bs, mode, tuple(REFS)), lambda: figures.fig_auroc_vs_batch(
            rows, selected=bs, sizes=SIZES, references=REFS, spread="std", show_n=True,
            title=f"AUROC against batch size: {lesson.STEP_MODES[mode].split(' (')[0]}"))
        st.plotly_chart(fig, key="auroc_bs")
        if not rows:
            st.caption("Your runs appear on the plot as sizes finish.")
    st.dataframe(size_table(done), hide_index=True, column_config={"models": st.column_config.TextColumn(
        "models", help="'still learning': the training loss still fell faster at the end than in the lab's "
                       "converged runs (lamp_core.convergence), so a difference at that size is not a finding.")})
    if wants_contours:
        shown = {}
        for n in NAMES:
            s = surfaces_here.get(n)
            v = sel.get(f"surface {n}")
            if s is None and v is not None:
                s = v.result if v.status == DONE else v.partial.get("surface")
            if s is not None and s.displayable().values.size:
                shown[n] = s
        if len(shown) == 2:
            st.caption(f"Loss landscapes at batch {bs} (first seed, metric '{LCFG.metric}').")
            st.plotly_chart(landscape_figures.fig_contour(shown), key="contour_bs")
        else:
            st.caption(f"The contours at batch {bs} appear when they are computed.")
    if rows and not busy:
        lab_state.download_table(rows, "auroc_by_batch_size", key="dl_bs")
    return busy


lab_state.poll(view, key="batch")

if st.toggle("Show every finished size (paper Fig. 3)", False, key="bs_grid",
             help="Contours of base and LAMP (first seed) at every batch size whose landscapes are finished, "
                  "on one colour scale: rows are the losses, columns the batch sizes."):
    st.caption("The paper's Fig. 3 shows the landscape of the encoder trained to predict class labels. A "
               "one-class autoencoder has no labels to predict, so the lab draws what LAMP changes: the "
               "reconstruction loss of the whole autoencoder around its trained weights.")
    grid = {}
    for b in SIZES:
        for n, cs in CONFIGS[b].items():
            s = surfaces.cached_surface(cs[0], LCFG, q.store)
            if s is not None:
                grid[(n, b)] = s
    if grid:
        fig3 = landscape_figures.fig_batch_grid(grid)
        st.plotly_chart(fig3, key="batch_grid")
        lab_state.download_figure(fig3, "contours_by_batch_size", key="dl_grid")
    else:
        st.caption("No landscape has finished yet.")
