"""Loss landscape (paper Fig. 1 and Fig. 3): base and LAMP surfaces side by side, one scale."""
import sys
from dataclasses import replace
from pathlib import Path

# Streamlit puts only the main script's folder on sys.path: app/ when streamlit_app.py runs this page,
# app/app_pages/ when the page is run alone (`streamlit run` on it, AppTest.from_file). So app/ is
# added here for lab_state and results; lamp_core itself is the installed package.
if str(Path(__file__).resolve().parents[1]) not in sys.path:     # once (a page runs on every rerun)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import streamlit as st

import lab_state
import results
from lamp_core import landscape_figures, references
from lamp_core.config import LampError, option_spec, run_key
from lamp_core.jobs import DONE, FINAL

q = lab_state.setup("Loss landscape")
cfg = lab_state.current_config()
st.caption(f"The runs of **Train & compare** ({lab_state.describe(cfg)}, first seed), trained here first "
           "if they are not in the run store yet.")
st.markdown("Each surface is the loss at θ + x·d₁ + y·d₂ around the trained weights θ, along two random, "
            "filter-normalised directions (Li et al. 2018) drawn from the same seed for both models.")

d = lab_state.DEFAULT_LANDSCAPE
c1, c2, c3, c4 = st.columns(4)
# the config's metrics, plain L2 (the default) and its relative form first
METRICS = sorted(option_spec("landscape.metric").choices, key=lambda m: (not m.startswith("l2"), m))
metric = c1.selectbox("Metric", METRICS, index=METRICS.index(d.metric), key="ls_metric",
                      help=lab_state.spec_help("landscape.metric", "l2 is the default here: one yardstick for both. "
                                               "LAMP's own loss is amplified, so it is on a larger scale and looks steeper "
                                               "for that alone. *_rel show the relative increase."))
nx = c2.select_slider("Grid", options=[7, 9, 11, 13, 15, 21, 31], value=d.nx, key="ls_grid",
                      help="Points per axis. The grid is drawn coarse first and refined while you watch; "
                           "31×31 takes minutes on a CPU.")
span = c3.select_slider("Span ±", options=[0.25, 0.5, 1.0, 1.5, 2.0], value=d.span,
                        help="Coordinates run over [−span, span] in units of the filter-normalised directions.")
seed = c4.number_input("Direction seed", 0, 10_000, d.seed,
                       help=lab_state.spec_help("landscape.seed", "Another seed gives another 2-D slice: compare a few."))
with st.expander("More"):
    c1, c2, c3 = st.columns(3)
    n_images = c1.select_slider("Evaluation images", options=[16, 32, 64, 128, 256], value=d.n_images,
                                key="ls_images",
                                help=lab_state.spec_help("landscape.n_images", "The loss is their mean."))
    bn_mode = c2.radio("BatchNorm", list(option_spec("landscape.bn_mode").choices), horizontal=True,
                       help=lab_state.spec_help("landscape.bn_mode", "eval is the network that scores images; "
                                                "batch normalises as during training."))
    bn_bias = c3.checkbox("Move biases and BN too", d.include_bn_bias,
                          help=lab_state.spec_help("landscape.include_bn_bias", "Li et al.'s code moves them."))
lcfg = replace(d, nx=nx, ny=nx, span=float(span), seed=int(seed), metric=metric, n_images=int(n_images),
               bn_mode=bn_mode, include_bn_bias=bn_bias)
cfgs = {n: cs[0] for n, cs in results.seed_configs(cfg, 1).items()}
key = "|".join(run_key(c) for c in cfgs.values()) + repr(lcfg)
shown = (f"metric {metric}, {nx}×{nx} grid, span ±{span:g}, direction seed {seed}, {n_images} images, "
         f"BN {bn_mode}{', biases and BN moved' if bn_bias else ''} · {lab_state.describe(cfg)}")


def compute() -> None:
    try:
        st.session_state["landscape"] = {
            "key": key, "describe": shown,
            "ids": {n: q.submit_surface(c, lcfg, session=lab_state.session_id()).id for n, c in cfgs.items()}}
    except LampError as exc:
        st.error(lab_state.page_message(str(exc)))


if st.button("Compute landscapes", type="primary", key="compute",
             help="Queue both surfaces in the background (each run is trained first if the store lacks it); "
                  "finished ones load from the run store at once."):
    compute()

job = st.session_state.get("landscape")
if job and job["key"] != key:
    if lab_state.stale_notice(job["describe"], button="Compute these landscapes", key="compute_stale"):
        compute()
        st.rerun()


def converged_verdict(surfaces: dict) -> None:
    """Beside the quick pair's sharpness: what the converged landscape study found, and whether
    this pair agrees. One quick pair of models, one slice, a few epochs: the study (several
    classes, seeds and batch sizes, trained to convergence) is what a conclusion rests on."""
    try:
        verdict = references.landscape_verdict()
    except (OSError, KeyError, ValueError) as exc:      # a checkout without bench/results
        st.caption(f"(the converged landscape study's results could not be read: {exc})")
        return
    head, _, ratios = references.verdict_summary(verdict).partition(": ")
    st.markdown(f"**For comparison, the {head}**: {ratios}. Source: `{verdict['source']}`, written by "
                "`bench/landscape_study.py`, discussed in `bench/results/landscape_study.md`.")
    table = []
    for bs, ms in verdict["by_batch"].items():
        for m, r in ms.items():
            table.append({"batch": bs, "metric": m, "pairs": r["pairs"],
                          "λmax LAMP/base": f"{r['lambda_max']:.2f}× [{r['lambda_max_lo']:.2f}, "
                                            f"{r['lambda_max_hi']:.2f}]",
                          "trace LAMP/base": f"{r['trace']:.2f}× [{r['trace_lo']:.2f}, {r['trace_hi']:.2f}]",
                          "LAMP steeper (λmax, trace)": f"{r['lambda_max_steeper']}/{r['pairs']}, "
                                                        f"{r['trace_steeper']}/{r['pairs']}"})
    st.dataframe(table, hide_index=True)
    st.caption("Geometric-mean ratio LAMP/base over pairs of models (same class, seed and batch size) with "
               "a 95% interval; the study's models saw "
               f"{verdict['max_train'] or '?'} images per class for {verdict['epochs'] or '?'} epochs.")
    # the quick pair on screen, by arm (the page names them base and LAMP)
    lamp_of = {n: c.train.lamp for n, c in cfgs.items()}
    arms = {("lamp" if lamp_of.get(n) else "base"): s.sharpness for n, s in surfaces.items() if s.sharpness}
    if len(arms) == 2:
        quick = {arm: {"lambda_max": sh.get("top_eigenvalue"), "trace": sh.get("hessian_trace")}
                 for arm, sh in arms.items()}
        quick["epochs"] = cfg.train.epochs
        st.markdown(references.landscape_sentence(metric, quick, verdict))


def view() -> bool:
    vs = {n: q.get(i) for n, i in job["ids"].items()}
    busy = not lab_state.all_final(list(vs.values()))
    cols = st.columns(len(vs))
    for col, (n, v) in zip(cols, vs.items()):
        with col:
            lab_state.show_job(v, label=f"{n} landscape")
    if busy:
        st.button("Stop", key="stop_ls", help="Stop both surfaces (and their training, unless another session "
                  "also asked for it); what is computed so far stays on screen.",
                  on_click=lambda: [q.cancel(i, lab_state.session_id()) for i in job["ids"].values()])
    surfaces, waiting = {}, []
    for n, v in vs.items():
        s = None if v is None else (v.result if v.status == DONE else v.partial.get("surface"))
        if s is not None and s.displayable().values.size:
            surfaces[n] = s
        elif v is not None and v.status not in FINAL:
            waiting.append(n)
    # Draw every surface that has a picture, without waiting for the other: the queue has one
    # worker per device, so on a CPU the two surfaces are computed one after the other, and the
    # first one's coarse grid and its refinement are over before the second has any point.
    # Waiting for both hid every coarse picture but the second's, which can last less than a poll
    # (measured on a tiny 16-px model, 13x13 grid: refined 0.3 s after its coarse picture).
    if surfaces:
        f3d, fc = landscape_figures.fig_surface_3d(surfaces), landscape_figures.fig_contour(surfaces)
        if waiting:
            st.caption(f"Drawn so far: {', '.join(surfaces)}. Still to come: {', '.join(waiting)}; the common "
                       "scale is redrawn when it arrives.")
        # the 3-D panels get the page's full width: in a half column their axis titles are cut off
        st.plotly_chart(f3d, key="surf3d")
        st.plotly_chart(fc, key="contour")
        if not busy:
            c1, c2 = st.columns(2)
            with c1:
                lab_state.download_figure(f3d, "landscape_3d", key="dl_3d")
            with c2:
                lab_state.download_figure(fc, "landscape_contour", key="dl_contour")
        keys = ("top_eigenvalue", "hessian_trace", "hessian_trace_se", "radius_increase")
        rows = [{"loss": n, "centre": s.center, **{k: s.sharpness.get(k) for k in keys}}
                for n, s in surfaces.items()]
        radius = next((s.sharpness.get("radius") for s in surfaces.values() if s.sharpness), lcfg.radius)
        if any(s.sharpness for s in surfaces.values()):
            st.markdown("**Sharpness at the trained weights** (same metric and BN mode as the surfaces)")
            st.dataframe(rows, hide_index=True, column_config={
                "top_eigenvalue": st.column_config.NumberColumn("top Hessian eigenvalue", format="%.4g"),
                "hessian_trace": st.column_config.NumberColumn("Hessian trace (Hutchinson)", format="%.4g"),
                "hessian_trace_se": st.column_config.NumberColumn("± s.e.", format="%.2g"),
                "radius_increase": st.column_config.NumberColumn(f"mean rel. increase at r = {radius:g}",
                                                                 format="%.3f"),
                "centre": st.column_config.NumberColumn("loss at θ", format="%.4g")})
            converged_verdict(surfaces)
            with st.expander("What these numbers measure, and why they can disagree", expanded=True):
                st.markdown(results.SHARPNESS_NOTE)
            if not busy:
                lab_state.download_table(rows, "sharpness", key="dl_sharp")
    elif busy:
        st.caption("The first coarse picture appears after a few grid points.")
    return busy


if job:
    lab_state.poll(view, key="landscape")
st.info("A random 2-D slice shows the loss along two directions out of millions. It can show that one "
        "surface rises faster than another along comparable directions; it cannot prove the whole landscape "
        "is sharper. Compare several direction seeds, and the l2 metric, before drawing conclusions.")
