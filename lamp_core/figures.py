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
LAMP orange, everywhere.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"base": "#4c72b0", "LAMP": "#dd8452"}
NORMAL_COLOR, ANOMALOUS_COLOR = "#55a868", "#c44e52"


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

def fig_loss_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], *, eps: float | None = None) -> go.Figure:
    """`curves`: base name ("l1", "l2") -> `losses.loss_curves(...)` dict. Rows: bases; columns:
    value, gradient (as in the paper's Fig. 2)."""
    names = list(curves)
    titles = []
    for n in names:
        titles += [f"L{n[1:]}: loss value", f"L{n[1:]}: gradient d loss / d r"]
    fig = make_subplots(rows=len(names), cols=2, subplot_titles=titles, horizontal_spacing=0.1,
                        vertical_spacing=0.14 if len(names) > 1 else 0.1)
    for row, n in enumerate(names, start=1):
        c = curves[n]
        r = c["residual"]
        label = f"L{n[1:]}"
        for col, (kb, kl) in enumerate((("base", "lamp"), ("base_grad", "lamp_grad")), start=1):
            fig.add_trace(go.Scatter(x=r, y=c[kb], name=f"{label} (base)", line=dict(color=COLORS["base"]),
                                     legendgroup=f"{n}-base", showlegend=col == 1), row=row, col=col)
            fig.add_trace(go.Scatter(x=r, y=c[kl], name=f"{label} LAMP", line=dict(color=COLORS["LAMP"]),
                                     legendgroup=f"{n}-lamp", showlegend=col == 1), row=row, col=col)
            fig.update_xaxes(title_text="residual r = y − ŷ", row=row, col=col)
    title = "Loss curves (paper Fig. 2)" + (f", ε = {eps:g}" if eps is not None else "")
    fig.update_layout(title=title, height=330 * len(names) + 80, margin=dict(t=80, l=50, r=20, b=40))
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
        fig.update_yaxes(type="log", row=1, col=i)
    fig.update_layout(height=300, margin=dict(t=50, l=50, r=20, b=40), showlegend=False)
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
    fig.update_layout(barmode="overlay", height=320, margin=dict(t=50, l=50, r=20, b=40))
    return fig


def fig_confusion(counts: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """`counts`: name -> `evaluate.confusion_at(...)` dict. Rows: truth; columns: prediction."""
    names = list(counts)
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=names, horizontal_spacing=0.15)
    for i, n in enumerate(names, start=1):
        c = counts[n]
        z = [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]
        fig.add_trace(go.Heatmap(z=z, x=["pred. normal", "pred. anomalous"], y=["normal", "anomalous"],
                                 colorscale="Blues", showscale=False, text=z, texttemplate="%{text}",
                                 hovertemplate="truth %{y}<br>%{x}: %{z}<extra></extra>"), row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    fig.update_layout(height=260, margin=dict(t=40, l=80, r=20, b=40))
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
    fig = make_subplots(rows=len(rows), cols=k, horizontal_spacing=0.01, vertical_spacing=0.02,
                        column_titles=list(titles) if titles is not None else None,
                        row_titles=[r[0] for r in rows])
    for j in range(k):
        for i, (rname, model) in enumerate(rows, start=1):
            if rname == "input":
                trace = _image_trace(inputs[j])
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


def _image_trace(img: np.ndarray) -> go.BaseTraceType:
    """(C, H, W) in [0, 1] -> a grey heatmap (C=1) or an RGB image (C=3)."""
    img = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    if img.shape[0] == 1:
        return go.Heatmap(z=img[0][::-1], colorscale=[[0, "rgb(0, 0, 0)"], [1, "rgb(255, 255, 255)"]],
                          zmin=0, zmax=1, showscale=False,
                          hovertemplate="%{z:.2f}<extra></extra>")
    rgb = (img.transpose(1, 2, 0) * 255).astype(np.uint8)
    return go.Image(z=rgb, hoverinfo="skip")


# ----------------------------------------------------------------------------- Table 1

def fig_auroc_vs_batch(rows: Sequence[Mapping], *, selected: int | None = None) -> go.Figure:
    """`rows`: dicts with batch_size, name ("base"/"LAMP"), auroc (one row per seed).
    Points are seed means with ± std bars; the x axis is logarithmic like the paper's sizes."""
    fig = go.Figure()
    by_name: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], {}).setdefault(int(r["batch_size"]), []).append(float(r["auroc"]))
    for name, per_bs in by_name.items():
        sizes = sorted(per_bs)
        stats = [auroc_summary(per_bs[b]) for b in sizes]
        fig.add_trace(go.Scatter(x=sizes, y=[m for m, _ in stats], mode="lines+markers", name=name,
                                 line=dict(color=color_of(name)),
                                 error_y=dict(type="data", array=[s for _, s in stats], visible=True),
                                 hovertemplate="batch %{x}<br>AUROC %{y:.3f}<extra>" + name + "</extra>"))
    if selected is not None:
        fig.add_vline(x=selected, line_dash="dot", line_color="#888")
    fig.update_layout(title="AUROC against batch size (paper Table 1)", xaxis_title="batch size",
                      yaxis_title="AUROC",
                      xaxis=dict(type="log", tickvals=[1, 4, 16, 32, 128, 1024], range=[-0.2, 3.2]),
                      height=360, margin=dict(t=50, l=50, r=20, b=40))
    return fig


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=200)
    return fig


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x
