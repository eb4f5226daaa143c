"""Plotly figure builders for the app and for reports: `fig_*(...) -> go.Figure`, no Streamlit.

One function per figure of the paper (and a few the lab adds):

* `fig_loss_curves`  - Fig. 2: base L1/L2 and their LAMP versions, values and gradients over
                       the residual (eq. 1-2, from `losses.loss_curves`).
* `fig_history`      - training loss per epoch for base and LAMP while they train.
* `fig_roc`          - ROC curves overlaid, AUROC in the legend (mean ± std over seeds).
* `fig_score_hist`   - anomaly-score histograms of normal vs anomalous test images.
* `fig_confusion`    - confusion matrices at one score threshold.
* `fig_recon_grid`   - Fig. 4: input / base / LAMP reconstructions / error maps; every error map
                       of the figure shares one colour scale, so brighter always means larger.
* `fig_auroc_vs_batch` - Table 1 as a plot: AUROC against batch size for both losses.

Loss-landscape figures (Fig. 1, 3) live in `landscape_figures.py`. Colours: base is grey-blue,
LAMP orange, everywhere. Figures are laid out to be read at a glance at the widths the app gives
them in a 1400-px window: log axes carry explicit ticks (powers of 10, or 1-2-5 steps, or powers
of 2 for batch sizes) rather than Plotly's digit-only minor labels, every axis with numbers says
what they are, panels of one comparison share one colour scale, and long titles are shortened.
"""
from __future__ import annotations

import math
import posixpath
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"base": "#4c72b0", "LAMP": "#dd8452"}
NORMAL_COLOR, ANOMALOUS_COLOR = "#55a868", "#c44e52"
TITLE_CHAR_PX = 7.2   # width of a character of an 11-px column title (capitals and "_" run wide)


def rgb_scale(colors: Sequence[str]) -> list[list]:
    """A colour scale as explicit [position, "rgb(r,g,b)"] stops. Streamlit's chart element
    recolours the darkest stops of some named or hex scales (Inferno's "#000004" shows up
    violet), so figures meant for the app spell their scale out."""
    from plotly.colors import hex_to_rgb
    n = len(colors)
    return [[i / (n - 1), "rgb({}, {}, {})".format(*hex_to_rgb(c))] for i, c in enumerate(colors)]


def _inferno() -> list[list]:
    from plotly.colors import sequential
    return rgb_scale(sequential.Inferno)


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick values and labels for a log axis over [lo, hi] (lo > 0): powers of 10 when the range
    spans two decades or more, else the first of 1-2-5, 1-2-3-5 or 1..9 steps that gives at
    least three ticks. Labels are plain numbers ("0.01", "200", "1e-05")."""
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return [], []
    lo, hi = min(lo, hi), max(lo, hi)
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    span = math.log10(hi) - math.log10(lo)
    steps = ((1,),) if span >= 2 else ((1, 2, 5), (1, 2, 3, 5), tuple(range(1, 10)))
    vals: list[float] = []
    for mantissas in steps:
        cand = [float(f"{m}e{e}") for e in range(first, last + 1) for m in mantissas]
        vals = [v for v in cand if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
        if len(vals) >= 3:
            break
    if len(vals) < 2:   # a range inside one step: its ends, rounded
        vals = sorted({float(f"{lo:.2g}"), float(f"{hi:.2g}")})
    if len(vals) > 9:   # many decades: every second or third power
        vals = vals[:: math.ceil(len(vals) / 8)]
    return vals, [f"{v:g}" for v in vals]


def pow2_ticks(values: Sequence[float]) -> list[int]:
    """Powers of 2 from the smallest to the largest value (every second one beyond 7 ticks)."""
    vals = [float(v) for v in values if v and v > 0]
    if not vals:
        return []
    lo, hi = math.floor(math.log2(min(vals))), math.ceil(math.log2(max(vals)))
    ticks = [2 ** e for e in range(lo, hi + 1)]
    return ticks if len(ticks) <= 7 else [2 ** e for e in range(lo, hi + 1, 2)]


def _set_log_axis(fig: go.Figure, values: Sequence[float], *, axis: str = "y", **where) -> None:
    """Log axis with readable ticks for the positive finite `values` it shows."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    update = fig.update_yaxes if axis == "y" else fig.update_xaxes
    if arr.size == 0:
        update(type="log", **where)
        return
    vals, text = log_ticks(float(arr.min()), float(arr.max()))
    update(type="log", tickmode="array", tickvals=vals, ticktext=text, **where)


def short_label(text: str, limit: int) -> str:
    """A file name or title cut to `limit` characters: the folder and an image extension are
    dropped, then the middle."""
    text = posixpath.basename(str(text)) or str(text)
    stem, ext = posixpath.splitext(text)
    if ext.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp") and stem:
        text = stem
    if len(text) <= limit:
        return text
    keep = max(limit - 1, 2)
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2:]


def color_of(name: str) -> str:
    return COLORS.get(name, COLORS["LAMP"] if "LAMP" in name else COLORS["base"])


def auroc_summary(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def format_auroc(values: Sequence[float]) -> str:
    mean, std = auroc_summary(values)
    if len(values) > 1:
        return f"{mean:.3f} ± {std:.3f} (n={len(values)})"
    return f"{mean:.3f}"


# ----------------------------------------------------------------------------- Fig. 2

def fig_loss_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], *, eps: float | None = None,
                    log_gradient: bool = False) -> go.Figure:
    """`curves`: base name ("l1", "l2") -> `losses.loss_curves(...)` dict. Rows: bases; columns:
    value, gradient (as in the paper's Fig. 2). With `log_gradient` the gradient panels show
    |d loss / d r| for r > 0 on a log axis (the curves are symmetric): at small ε LAMP's
    gradient spans decades, and on a linear axis everything but the rim looks flat."""
    names = list(curves)
    titles = []
    for n in names:
        titles += [f"L{n[1:]}: loss value", f"L{n[1:]}: |gradient|, log scale" if log_gradient
                   else f"L{n[1:]}: gradient d loss / d r"]
    fig = make_subplots(rows=len(names), cols=2, subplot_titles=titles, horizontal_spacing=0.1,
                        vertical_spacing=0.14 if len(names) > 1 else 0.1)
    for row, n in enumerate(names, start=1):
        c = curves[n]
        r = np.asarray(c["residual"], dtype=float)
        label = f"L{n[1:]}"
        grad_values: list[float] = []
        for col, (kb, kl) in enumerate((("base", "lamp"), ("base_grad", "lamp_grad")), start=1):
            x, yb, yl = r, np.asarray(c[kb], dtype=float), np.asarray(c[kl], dtype=float)
            if col == 2 and log_gradient:
                keep = r > 0
                x, yb, yl = r[keep], np.abs(yb[keep]), np.abs(yl[keep])
                grad_values += list(yb) + list(yl)
            fig.add_trace(go.Scatter(x=x, y=yb, name=f"{label} (base)", line=dict(color=COLORS["base"]),
                                     legendgroup=f"{n}-base", showlegend=col == 1), row=row, col=col)
            fig.add_trace(go.Scatter(x=x, y=yl, name=f"{label} LAMP", line=dict(color=COLORS["LAMP"]),
                                     legendgroup=f"{n}-lamp", showlegend=col == 1), row=row, col=col)
            fig.update_xaxes(title_text="residual r = y − ŷ", row=row, col=col)
        fig.update_yaxes(title_text="loss", row=row, col=1)
        fig.update_yaxes(title_text="|d loss / d r|" if log_gradient else "d loss / d r", row=row, col=2)
        if log_gradient:
            _set_log_axis(fig, grad_values, row=row, col=2)
    title = "Loss curves (paper Fig. 2)" + (f", ε = {eps:g}" if eps is not None else "")
    fig.update_layout(title=title, height=330 * len(names) + 80, margin=dict(t=80, l=60, r=20, b=40),
                      legend=dict(orientation="h", x=0, y=-0.08 if len(names) > 1 else -0.2, yanchor="top"))
    return fig


# ----------------------------------------------------------------------------- training

def fig_history(histories: Mapping[str, Mapping[str, Sequence[float]]], *, epochs: int | None = None) -> go.Figure:
    """Training loss per epoch. Base and LAMP losses live on different scales (LAMP's -log
    amplifies), so each gets its own panel; the panels share the epoch axis."""
    names = list(histories)
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=[f"{n} training loss" for n in names],
                        shared_xaxes=True)
    for i, n in enumerate(names, start=1):
        loss = list(histories[n].get("loss", []))
        fig.add_trace(go.Scatter(x=list(range(1, len(loss) + 1)), y=loss, mode="lines+markers", name=n,
                                 line=dict(color=color_of(n))), row=1, col=i)
        fig.update_xaxes(title_text="epoch", row=1, col=i, range=[0.5, (epochs or max(len(loss), 1)) + 0.5])
        _set_log_axis(fig, loss, row=1, col=i)
        fig.update_yaxes(title_text="loss (log scale)" if i == 1 else None, row=1, col=i)
    fig.update_layout(height=300, margin=dict(t=50, l=60, r=20, b=40), showlegend=False)
    return fig


# ----------------------------------------------------------------------------- detection

def fig_roc(evaluations: Mapping[str, Sequence], *, title: str = "ROC curves") -> go.Figure:
    """`evaluations`: name -> list of `Evaluation` (one per seed). Every seed's curve is drawn;
    the legend gives the AUROC mean ± std over seeds."""
    fig = go.Figure()
    for name, evs in evaluations.items():
        evs = list(evs)
        if not evs:
            continue
        label = f"{name}: AUROC {format_auroc([e.auroc for e in evs])}"
        for i, ev in enumerate(evs):
            fig.add_trace(go.Scatter(x=ev.fpr, y=ev.tpr, mode="lines", name=label, legendgroup=name,
                                     showlegend=i == 0, line=dict(color=color_of(name), width=2),
                                     opacity=1.0 if len(evs) == 1 else 0.6,
                                     hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<extra>" + name + "</extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999", dash="dot"),
                             name="chance", hoverinfo="skip"))
    fig.update_layout(title=title, xaxis_title="false positive rate", yaxis_title="true positive rate",
                      xaxis=dict(range=[0, 1], constrain="domain"), yaxis=dict(range=[0, 1.02]),
                      height=420, legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom"),
                      margin=dict(t=50, l=50, r=20, b=40))
    return fig


def fig_score_hist(evaluations: Mapping[str, object], *, thresholds: Mapping[str, float] | None = None,
                   bins: int = 30) -> go.Figure:
    """Anomaly scores (per-image mean L2) of normal and anomalous test images, one panel per
    model; the dashed line is the threshold in use."""
    names = list(evaluations)
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=[f"{n} scores" for n in names])
    for i, n in enumerate(names, start=1):
        ev = evaluations[n]
        s, y = np.asarray(ev.scores), np.asarray(ev.labels)
        lo, hi = float(s.min()), float(s.max())
        size = (hi - lo) / bins if hi > lo else 1.0
        for lab, nm, col in ((0, "normal", NORMAL_COLOR), (1, "anomalous", ANOMALOUS_COLOR)):
            fig.add_trace(go.Histogram(x=s[y == lab], name=nm, marker_color=col, opacity=0.6,
                                       histnorm="probability density", legendgroup=nm, showlegend=i == 1,
                                       xbins=dict(start=lo, end=hi + size, size=size)), row=1, col=i)
        if thresholds and n in thresholds:
            fig.add_vline(x=thresholds[n], line_dash="dash", line_color="#333", row=1, col=i)
        fig.update_xaxes(title_text="anomaly score (mean L2)", row=1, col=i)
        fig.update_yaxes(title_text="density" if i == 1 else None, row=1, col=i)
    # the legend above the panels leaves their whole width to the data
    fig.update_layout(barmode="overlay", height=340, margin=dict(t=70, l=60, r=20, b=40),
                      legend=dict(orientation="h", x=0, y=1.12, yanchor="bottom"))
    return fig


def fig_confusion(counts: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """`counts`: name -> `evaluate.confusion_at(...)` dict. Rows: truth; columns: prediction.
    The matrices share one colour scale (0 to the largest count), and only the first carries
    the row labels, so no label sits over its neighbour."""
    names = list(counts)
    zs = {n: [[counts[n]["tn"], counts[n]["fp"]], [counts[n]["fn"], counts[n]["tp"]]] for n in names}
    zmax = max((v for z in zs.values() for row in z for v in row), default=1) or 1
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=names, horizontal_spacing=0.06)
    for i, n in enumerate(names, start=1):
        z = zs[n]
        fig.add_trace(go.Heatmap(z=z, x=["normal", "anomalous"], y=["normal", "anomalous"],
                                 colorscale="Blues", zmin=0, zmax=zmax, showscale=False, text=z,
                                 texttemplate="%{text}",
                                 hovertemplate="truth %{y}<br>predicted %{x}: %{z}<extra>" + n + "</extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", showticklabels=i == 1, title_text="truth" if i == 1 else None,
                         row=1, col=i)
        fig.update_xaxes(title_text="predicted", row=1, col=i)
    fig.update_layout(height=280, margin=dict(t=40, l=90, r=20, b=50))
    return fig


# ----------------------------------------------------------------------------- Fig. 4

def fig_recon_grid(inputs: np.ndarray, recons: Mapping[str, np.ndarray], *, titles: Sequence[str] | None = None,
                   masks: np.ndarray | None = None) -> go.Figure:
    """Columns: test images. Rows: input, each model's reconstruction, each model's error map
    (squared error averaged over channels), and the ground-truth mask where there is one.

    `inputs` (K, C, H, W) and each `recons[name]` (K, C, H, W) in [0, 1]; `masks` (K, 1, H, W).
    All error maps share one colour scale [0, max over the figure]."""
    inputs = np.asarray(inputs, dtype=np.float32)
    k = inputs.shape[0]
    names = list(recons)
    errors = {n: ((inputs - np.asarray(recons[n], dtype=np.float32)) ** 2).mean(axis=1) for n in names}  # (K, H, W)
    zmax = max((float(e.max()) for e in errors.values()), default=1.0) or 1.0
    rows = [("input", None)] + [(f"{n} recon.", n) for n in names] + [(f"{n} error", n) for n in names]
    if masks is not None:
        rows.append(("mask", None))
    # a column is about 850/k px wide at the app's width (less the gaps); at 11 px a character
    # takes up to about 7 px, so longer titles would run into their neighbours
    limit = max(6, int(850 / max(k, 1) / TITLE_CHAR_PX))
    full_titles = [str(t) for t in titles] if titles is not None else None
    fig = make_subplots(rows=len(rows), cols=k, horizontal_spacing=0.01, vertical_spacing=0.02,
                        column_titles=[short_label(t, limit) for t in full_titles] if full_titles else None,
                        row_titles=[r[0] for r in rows])
    for j in range(k):
        for i, (rname, model) in enumerate(rows, start=1):
            if rname == "input":
                trace = _image_trace(inputs[j], hover_name=full_titles[j] if full_titles else None)
            elif rname.endswith("recon."):
                trace = _image_trace(np.asarray(recons[model][j]))
            elif rname == "mask":
                trace = go.Heatmap(z=np.asarray(masks[j, 0])[::-1],
                                   colorscale=[[0, "rgb(0, 0, 0)"], [1, "rgb(255, 255, 255)"]],
                                   zmin=0, zmax=1, showscale=False, hoverinfo="skip")
            else:
                trace = go.Heatmap(z=errors[model][j][::-1], colorscale=_inferno(), zmin=0, zmax=zmax,
                                   showscale=(j == k - 1 and rname == f"{names[0]} error"),
                                   colorbar=dict(title="sq. error", len=0.4, y=0.3),
                                   hovertemplate="error %{z:.3g}<extra></extra>")
            fig.add_trace(trace, row=i, col=j + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor=None)
    fig.update_layout(height=90 * len(rows) + 60, margin=dict(t=40, l=10, r=90, b=10))
    fig.update_annotations(font_size=11)
    return fig


def _image_trace(img: np.ndarray, hover_name: str | None = None) -> go.BaseTraceType:
    """(C, H, W) in [0, 1] -> a grey heatmap (C=1) or an RGB image (C=3); hovering shows the
    image's full name where the column title had to be shortened."""
    img = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    name = (hover_name or "").replace("<", "&lt;")
    if img.shape[0] == 1:
        return go.Heatmap(z=img[0][::-1], colorscale=[[0, "rgb(0, 0, 0)"], [1, "rgb(255, 255, 255)"]],
                          zmin=0, zmax=1, showscale=False,
                          hovertemplate=(f"{name}<br>" if name else "") + "%{z:.2f}<extra></extra>")
    rgb = (img.transpose(1, 2, 0) * 255).astype(np.uint8)
    return go.Image(z=rgb, hovertemplate=f"{name}<extra></extra>") if name else go.Image(z=rgb, hoverinfo="skip")


# ----------------------------------------------------------------------------- Table 1

def fig_auroc_vs_batch(rows: Sequence[Mapping], *, selected: int | None = None,
                       sizes: Sequence[int] | None = None) -> go.Figure:
    """`rows`: dicts with batch_size, name ("base"/"LAMP"), auroc (one row per seed).
    Points are seed means with ± std bars; the x axis is logarithmic like the paper's sizes, with
    powers of 2 as ticks. `sizes`: every size the axis should cover (default 1 to 1024), so it
    does not move as sizes finish."""
    fig = go.Figure()
    by_name: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], {}).setdefault(int(r["batch_size"]), []).append(float(r["auroc"]))
    for name, per_bs in by_name.items():
        done = sorted(per_bs)
        stats = [auroc_summary(per_bs[b]) for b in done]
        fig.add_trace(go.Scatter(x=done, y=[m for m, _ in stats], mode="lines+markers", name=name,
                                 line=dict(color=color_of(name)),
                                 error_y=dict(type="data", array=[s for _, s in stats], visible=True),
                                 hovertemplate="batch %{x}<br>AUROC %{y:.3f}<extra>" + name + "</extra>"))
    if selected is not None:
        fig.add_vline(x=selected, line_dash="dot", line_color="#888")
    shown = list(sizes or (1, 1024)) + [int(r["batch_size"]) for r in rows] + ([selected] if selected else [])
    ticks = pow2_ticks(shown)
    span = [math.log10(ticks[0]) - 0.15, math.log10(ticks[-1]) + 0.15]
    fig.update_layout(title="AUROC against batch size (paper Table 1)", xaxis_title="batch size (log scale)",
                      yaxis_title="AUROC",
                      xaxis=dict(type="log", tickmode="array", tickvals=ticks, ticktext=[str(t) for t in ticks],
                                 range=span),
                      legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"),
                      height=360, margin=dict(t=70, l=60, r=20, b=50))
    return fig
