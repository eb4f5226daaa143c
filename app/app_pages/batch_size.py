"""Batch size (paper Table 1 and Fig. 3): AUROC against batch size, contour at the chosen size."""
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for lab_state), when run alone
import streamlit as st

import lab_state
import results
from lamp_core import figures, landscape, landscape_figures
from lamp_core.jobs import DONE, FINAL

q = lab_state.setup("Batch size")
ss = st.session_state
cfg = lab_state.current_config()
SIZES = lab_state.BATCH_SIZES
LCFG = replace(lab_state.DEFAULT_LANDSCAPE, nx=11, ny=11, n_images=64)   # coarser: six sizes to compute
st.caption(f"The settings of **Train & compare** ({lab_state.describe(cfg)}, first seed) at the paper's "
           "batch sizes, with the same number of epochs: smaller batches take more steps.")


def configs(bs: int) -> dict:
    return {n: cs[0] for n, cs in results.seed_configs(cfg.with_train(batch_size=bs), 1).items()}


if ss.get("bs_cfg") != cfg.key():            # new settings on Train & compare: start a new table
    ss["bs_cfg"], ss["bs_jobs"] = cfg.key(), {}


def queue_size(bs: int) -> None:
    """Queue (or load at once, when finished) both runs and both contours at one batch size."""
    jobs = {}
    for n, c in configs(bs).items():
        jobs[n] = q.submit_run(c).id
        if ss.get("bs_landscape", True):
            jobs[f"surface {n}"] = q.submit_surface(c, LCFG).id
    ss["bs_jobs"][bs] = jobs


def on_slide() -> None:
    queue_size(int(ss["bs"]))


default = cfg.train.batch_size if cfg.train.batch_size in SIZES else 32
bs = st.select_slider("Batch size", options=SIZES, value=default, key="bs", on_change=on_slide,
                      help="Moving the slider queues both runs at this size in the background; a size that "
                           "has been trained before (by anyone on this server) shows at once.")
c1, c2 = st.columns(2)
c1.toggle("Contours too", True, key="bs_landscape",
          help=f"Also compute both loss landscapes ({LCFG.nx}×{LCFG.ny} grid, {LCFG.n_images} images, "
               f"metric '{LCFG.metric}') at each queued size.")
if c2.button("Queue every size", key="queue_all", help="Queue all six sizes, smallest work first."):
    for b in sorted(SIZES, reverse=True):
        queue_size(b)
if bs not in ss["bs_jobs"]:
    queue_size(bs)


def finished_rows() -> list[dict]:
    """AUROC rows of every size finished so far (this session's jobs and the run store)."""
    rows = []
    for b in SIZES:
        for n, c in configs(b).items():
            v = q.find(f"run:{c.key()}")
            if (v is None or v.status != DONE) and q.store.has(c):
                v = q.submit_run(c)
            if v is not None and v.status == DONE and v.result.evaluation is not None:
                rows.append({"batch_size": b, "name": n, "auroc": v.result.evaluation.auroc,
                             "steps": v.result.result.steps, "seconds": round(v.result.result.seconds, 2),
                             "config_key": c.key()})
    return rows


def view() -> bool:
    jobs = ss["bs_jobs"]
    mine = {b: {k: q.get(i) for k, i in js.items()} for b, js in jobs.items()}
    busy = any(v is not None and v.status not in FINAL for js in mine.values() for v in js.values())
    sel = mine.get(bs, {})
    cols = st.columns(max(len(sel), 1))
    for col, (k, v) in zip(cols, sel.items()):
        with col:
            lab_state.show_job(v, label=f"{k} @ {bs}")
    waiting = sorted(b for b, js in mine.items() if b != bs and any(
        v is not None and v.status not in FINAL for v in js.values()))
    if waiting:
        st.caption("Also queued or running: batch " + ", ".join(map(str, waiting)))
    if busy:
        st.button("Stop all", key="stop_bs", help="Stop every queued or running job of this page.",
                  on_click=lambda: [q.cancel(i) for js in jobs.values() for i in js.values()])
    rows = finished_rows()
    left, right = st.columns(2)
    with left:
        if rows:
            fig = figures.fig_auroc_vs_batch(rows, selected=bs)
            st.plotly_chart(fig, key="auroc_bs")
        else:
            st.caption("AUROC against batch size appears as sizes finish.")
    with right:
        surfaces = {}
        for n in ("base", "LAMP"):
            v = sel.get(f"surface {n}")
            s = None if v is None else (v.result if v.status == DONE else v.partial.get("surface"))
            if s is not None and s.displayable().values.size:
                surfaces[n] = s
        if len(surfaces) == 2:
            st.plotly_chart(landscape_figures.fig_contour(surfaces), key="contour_bs")
        elif ss.get("bs_landscape", True):
            st.caption(f"The contours at batch {bs} appear when their runs are trained.")
    n_train = next((v.result.result for v in sel.values()
                    if v is not None and v.status == DONE and hasattr(v.result, "result")), None)
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
    grid = {}
    for b in SIZES:
        for n, c in configs(b).items():
            s = landscape.cached_surface(c, LCFG, q.store)
            if s is not None:
                grid[(n, b)] = s
    if grid:
        fig3 = landscape_figures.fig_batch_grid(grid)
        st.plotly_chart(fig3, key="batch_grid")
        lab_state.download_figure(fig3, "contours_by_batch_size", key="dl_grid")
    else:
        st.caption("No landscape has finished yet.")
