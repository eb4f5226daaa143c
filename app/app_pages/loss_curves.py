"""Loss curves (paper Fig. 2, eq. 1-2): base L1/L2 against their LAMP versions, instantly."""
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
from lamp_core import figures
from lamp_core.config import DEFAULT_EPS
from lamp_core.losses import loss_curves

lab_state.setup("Loss curves")
st.markdown("LAMP replaces a base reconstruction loss by an amplified version of itself. "
            "Per element of the base loss map $B$ (shape N×C×H×W):")
st.latex(r"\mathcal{L}'_{base}(y,\hat y) = \frac{\mathcal{L}_{base}(y,\hat y)}{\max \mathcal{L}_{base}(y,\hat y)}\,(1-\epsilon)"
         r"\qquad \text{(eq. 2)}")
st.latex(r"\mathcal{L}^{LAMP}_{base}(y,\hat y) = \sum_{h,w,c} -\log\bigl(1-\mathcal{L}'_{base}(y,\hat y)\bigr)"
         r"\qquad \text{(eq. 1)}")

c1, c2, c3 = st.columns(3)
eps = c1.select_slider("ε (eq. 2)", options=[1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.3, 0.5], value=DEFAULT_EPS,
                       format_func=lambda v: f"{v:g}",
                       help="Scales the normalised loss to at most 1 − ε, so −log(1 − B') stays finite. "
                            f"Smaller ε: a steeper wall at the largest residual. The training default is {DEFAULT_EPS:g}.")
max_over = c2.radio("Max taken over", ["fixed", "sample"], horizontal=True,
                    help="'fixed': divide by the bound 1 (every base loss map lies in [0, 1]), so the curve "
                         "does not depend on the plotted range. 'sample': divide by the largest value on "
                         "the plotted range, as eq. 2 does per image in training.")
rng = c3.slider("Residual range ±", 0.1, 1.0, 1.0, 0.05,
                help="Residuals r = y − ŷ are plotted over [−range, range]; images live in [0, 1].")
log_grad = st.toggle("Gradients on a log scale", False, key="log_grad",
                     help="Show |d loss / d r| for r > 0 on a log axis (the curves are symmetric). At small ε "
                          "LAMP's gradient spans several decades; on a linear axis all but the rim looks flat.")

curves = {b: loss_curves(b, eps=eps, residual_range=rng, max_over=max_over) for b in ("l1", "l2")}
fig = figures.fig_loss_curves(curves, eps=eps, log_gradient=log_grad)
st.plotly_chart(fig, key="fig2")
lab_state.download_figure(fig, "loss_curves", key="dl_fig2")

# Every number below is computed from lamp_core.losses for the settings on screen.
# The first statement follows the reading of max(B) chosen above ("fixed" or "sample").
where = results.lamp_vs_base_sentence(eps, max_over, rng)
same = results.fixed_equals_sample(rng, eps)
st.markdown(f"""
**What to notice.** {where} LAMP's gradient (right column) is the base gradient multiplied by
$\\frac{{1-\\epsilon}}{{\\max B}}\\cdot\\frac{{1}}{{1-B'}}$: the factor $1/(1-B')$ pushes large residuals
much harder, and $(1-\\epsilon)/\\max B$ rescales every element. L1's base gradient is a constant ±1;
LAMP turns it into a slope that grows with |r|, much like L2. Lower ε and watch the wall at the edge
of the range grow (the log scale shows how many decades it spans).

**Fixed or sample?** *sample* divides by the largest base value on the plotted range; *fixed* by
the bound 1. {"At this range (±1) the largest value on the plot is 1 for both L1 (|±1|) and L2 ((±1)²), the same as the bound, so the two readings draw identical curves: shrink the range to see them part." if same else "At this range the largest value on the plot is below 1, so *sample* amplifies more than *fixed*: the whole curve is relative to the plotted edge."}
In training the max is taken per image or over the batch (an option on Train & compare), so each
pixel's loss is relative to the worst pixel of its image or of its batch.
""")
