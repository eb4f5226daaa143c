"""Batch size (paper Table 1 and Fig. 3): AUROC against batch size, contour at the chosen size.

Nothing trains until a button is pressed: the slider shows what is finished (by anyone on this
server, from the run store) at once, and offers to train the size it is on.
"""
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for lab_state), when run alone
import streamlit as st

import lab_state
import results
from lamp_core import landscape_figures, surfaces
from lamp_core import figures
from lamp_core.config import LampError, run_key
from lamp_core.jobs import DONE, FINAL

q = lab_state.setup("Batch size")
ss = st.session_state
cfg = lab_state.current_config()
SIZES = lab_state.BATCH_SIZES
LCFG = replace(lab_state.DEFAULT_LANDSCAPE, nx=11, ny=11, n_images=64)   # coarser: six sizes to compute
st.caption(f"The settings last trained on **Train & compare** ({lab_state.describe(cfg)}, first seed) at the "
           "paper's batch sizes, with the same number of epochs: smaller batches take more steps.")


def configs(bs: int) -> dict:
    return {n: cs[0] for n, cs in results.seed_configs(cfg.with_train(batch_size=bs), 1).items()}


page_key = run_key(cfg)
if ss.get("bs_cfg") != page_key:            # other settings trained on Train & compare: a new table
    ss["bs_cfg"], ss["bs_jobs"] = page_key, {}


def queue_size(bs: int) -> None:
    """Queue (or load at once, when finished) both runs and, if asked, both contours at one size."""
    sid = lab_state.session_id()
    try:
        views = q.submit_runs(list(configs(bs).values()), session=sid)
        jobs = {n: v.id for n, v in zip(configs(bs), views)}
        if ss.get("bs_landscape", True):
            for n, c in configs(bs).items():
                jobs[f"surface {n}"] = q.submit_surface(c, LCFG, session=sid).id
    except LampError as exc:
        st.error(lab_state.page_message(str(exc)))
        return
    ss["bs_jobs"][bs] = jobs


default = cfg.train.batch_size if cfg.train.batch_size in SIZES else 32
bs = st.select_slider("Batch size", options=SIZES, value=default, key="bs",
                      help="Shows the runs at this size when they are finished (by anyone on this server); "
                           "moving the slider never starts training: press the button below to train a size.")
c1, c2 = st.columns(2)
c1.toggle("Contours too", True, key="bs_landscape",
          help=f"Also compute both loss landscapes ({LCFG.nx}×{LCFG.ny} grid, {LCFG.n_images} images, "
               f"metric '{LCFG.metric}') at each size you train.")
if c2.button("Train every size", key="queue_all", help="Queue all six sizes, smallest work first. Sizes "
             "already finished load from the run store."):
    for b in sorted(SIZES, reverse=True):
        queue_size(b)


def stored(bs: int) -> dict:
    """The finished runs (job views) at one size: this server's jobs or the run store; no work."""
    out = {}
    for n, c in configs(bs).items():
        v = q.find_run(c)
        if (v is None or v.status != DONE) and q.store.has(c):
            v = q.submit_run(c)                # a store hit is done on return: nothing is queued
        if v is not None and v.status == DONE and v.result.evaluation is not None:
            out[n] = v
    return out


def finished_rows() -> list[dict]:
    """AUROC rows of every size finished so far."""
    rows = []
    for b in SIZES:
        for n, v in stored(b).items():
            rows.append({"batch_size": b, "name": n, "auroc": v.result.evaluation.auroc,
                         "steps": v.result.result.steps, "seconds": round(v.result.result.seconds, 2),
                         "config_key": run_key(configs(b)[n])})
    return rows


def view() -> bool:
    jobs = ss["bs_jobs"]
    mine = {b: {k: q.get(i) for k, i in js.items()} for b, js in jobs.items()}
    busy = any(v is not None and v.status not in FINAL for js in mine.values() for v in js.values())
    sel = mine.get(bs, {})
    done_here = stored(bs)
    wants_contours = ss.get("bs_landscape", True)
    surfaces_here = {n: surfaces.cached_surface(c, LCFG, q.store) for n, c in configs(bs).items()}
    complete = len(done_here) == 2 and (not wants_contours or all(surfaces_here.values()))
    if sel:
        cols = st.columns(max(len(sel), 1))
        for col, (k, v) in zip(cols, sel.items()):
            with col:
                lab_state.show_job(v, label=f"{k} @ {bs}")
    elif done_here:
        st.caption(" · ".join(f"✓ {n} @ {bs}: from the run store" for n in done_here))
    if not complete and not any(v is not None and v.status not in FINAL for v in sel.values()):
        missing = "its runs" if len(done_here) < 2 else "its contours"
        st.info(f"Batch {bs} has not been trained with these settings yet ({missing} missing).",
                icon=":material/info:")
        st.button(f"Train batch {bs}", type="primary", key="train_bs", on_click=queue_size, args=(bs,),
                  help="Queue both runs (and the contours, if ticked) at this size; the page follows them.")
    waiting = sorted(b for b, js in mine.items() if b != bs and any(
        v is not None and v.status not in FINAL for v in js.values()))
    if waiting:
        st.caption("Also queued or running: batch " + ", ".join(map(str, waiting)))
    if busy:
        sid = lab_state.session_id()
        st.button("Stop all", key="stop_bs", help="Stop every queued or running job of this page (a job another "
                  "session also asked for goes on for them).",
                  on_click=lambda: [q.cancel(i, sid) for js in jobs.values() for i in js.values()])
    rows = finished_rows()
    left, right = st.columns(2)
    with left:
        if rows:
            fig = figures.fig_auroc_vs_batch(rows, selected=bs)
            st.plotly_chart(fig, key="auroc_bs")
        else:
            st.caption("AUROC against batch size appears as sizes finish.")
    with right:
        shown = {}
        for n in ("base", "LAMP"):
            s = surfaces_here.get(n)
            v = sel.get(f"surface {n}")
            if s is None and v is not None:
                s = v.result if v.status == DONE else v.partial.get("surface")
            if s is not None and s.displayable().values.size:
                shown[n] = s
        if len(shown) == 2:
            st.plotly_chart(landscape_figures.fig_contour(shown), key="contour_bs")
        elif wants_contours:
            st.caption(f"The contours at batch {bs} appear when they are computed.")
    n_train = next((v.result.result for v in done_here.values()), None)
    if n_train is not None and bs > 1 and n_train.steps and n_train.steps // max(n_train.epochs_done, 1) == 1:
        st.caption(f"At batch {bs} every epoch is one step: the training set is smaller than the batch, "
                   "so the batch is the whole set.")
    if rows and not busy:
        lab_state.download_table(rows, "auroc_by_batch_size", key="dl_bs")
    return busy


lab_state.poll(view, key="batch")

if st.toggle("Show every finished size (paper Fig. 3)", False, key="bs_grid",
             help="Contours of base and LAMP at every batch size whose landscapes are finished, on one "
                  "colour scale: rows are the losses, columns the batch sizes."):
    st.caption("The paper's Fig. 3 shows the landscape of the encoder trained to predict class labels. A "
               "one-class autoencoder has no labels to predict, so the lab draws what LAMP changes: the "
               "reconstruction loss of the whole autoencoder around its trained weights.")
    grid = {}
    for b in SIZES:
        for n, c in configs(b).items():
            s = surfaces.cached_surface(c, LCFG, q.store)
            if s is not None:
                grid[(n, b)] = s
    if grid:
        fig3 = landscape_figures.fig_batch_grid(grid)
        st.plotly_chart(fig3, key="batch_grid")
        lab_state.download_figure(fig3, "contours_by_batch_size", key="dl_grid")
    else:
        st.caption("No landscape has finished yet.")
