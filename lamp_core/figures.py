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
* `fig_auroc_vs_batch` - Table 1 as a plot: AUROC against batch size for both losses, error
                       bars over seeds, reference tables (converged, paper) as dashed/dotted lines.

Loss-landscape figures (Fig. 1, 3) live in `landscape_figures.py`. Colours: base is grey-blue,
LAMP orange, everywhere. Figures are laid out to be read at a glance at the widths the app gives
them in a 1400-px window: log axes carry explicit ticks (powers of 10, or 1-2-5 steps, or powers
of 2 for batch sizes) rather than Plotly's digit-only minor labels, every axis with numbers says
what they are, panels of one comparison share one colour scale, and long titles are shortened.
"""
from __future__ import annotations

import math
import posixpath
import re
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"base": "#4c72b0", "LAMP": "#dd8452"}
NORMAL_COLOR, ANOMALOUS_COLOR = "#55a868", "#c44e52"
THRESHOLD_COLOR = "#333"
TITLE_CHAR_PX = 7.2   # width of a character of an 11-px column title (capitals and "_" run wide)
TITLE_LINE_PX = 14    # height of one more line of an 11-px column title


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


def wrap_title(text: str, limit: int, max_lines: int = 3) -> list[str]:
    """A column title as lines of at most `limit` characters: "anomalous (scratch_and_sticker)"
    puts its group on lines of its own ("anomalous", "scratch_and_", "sticker"), and a long word
    breaks after "_" or "-". File names lose their folder and image extension (as in
    `short_label`). Only what does not fit in `max_lines` is cut, in its middle, so the lines
    keep the end that tells similar names apart."""
    def join(line: str, piece: str) -> str:
        return line + piece if not line or line.endswith(("_", "-")) else f"{line} {piece}"

    m = re.fullmatch(r"(.+?) \((.+)\)", str(text))
    paragraphs = [m.group(1), m.group(2)] if m else [short_label(text, 10 ** 6)]   # folder, extension off
    lines: list[str] = []
    for para in paragraphs:
        line = ""
        for piece in re.findall(r"[^ _-]+[_-]*|[_-]+", para):   # words, each with its trailing "_"/"-"
            if line and len(join(line, piece)) > limit:
                lines.append(line)
                line = piece
            else:
                line = join(line, piece)
        lines.append(line)
    if len(lines) > max_lines:
        rest = lines[max_lines - 1]
        for line in lines[max_lines:]:
            rest = join(rest, line)
        lines = lines[:max_lines - 1] + [rest]
    return [short_label(line, limit) for line in lines]


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
                   bins: int = 30, title: str | None = None, threshold_label: str = "threshold") -> go.Figure:
    """Anomaly scores (per-image mean L2) of normal and anomalous test images, one panel per
    model; the dashed line is the threshold in use, named `threshold_label` in the legend.
    `title` says which run the panels show (e.g. which seed)."""
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
            fig.add_vline(x=thresholds[n], line_dash="dash", line_color=THRESHOLD_COLOR, row=1, col=i)
        fig.update_xaxes(title_text="anomaly score (mean L2)", row=1, col=i)
        fig.update_yaxes(title_text="density" if i == 1 else None, row=1, col=i)
    if thresholds and any(n in thresholds for n in names):
        # a vline is a shape, which has no legend entry: an empty trace drawn like it gives one
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=threshold_label, hoverinfo="skip",
                                 line=dict(color=THRESHOLD_COLOR, dash="dash")), row=1, col=1)
    # the legend above the panels leaves their whole width to the data; a title goes above it
    fig.update_layout(barmode="overlay", height=340 + (30 if title else 0),
                      margin=dict(t=100 if title else 70, l=60, r=20, b=40),
                      legend=dict(orientation="h", x=0, y=1.12, yanchor="bottom"))
    if title:
        fig.update_layout(title=dict(text=title, y=0.98, yanchor="top"))
    return fig


def fig_confusion(counts: Mapping[str, Mapping[str, int]], *, title: str | None = None) -> go.Figure:
    """`counts`: name -> `evaluate.confusion_at(...)` dict. Rows: truth; columns: prediction.
    The matrices share one colour scale (0 to the largest count), and only the first carries
    the row labels, so no label sits over its neighbour. `title` says which run they show."""
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
    fig.update_layout(height=280 + (30 if title else 0), margin=dict(t=70 if title else 40, l=90, r=20, b=50))
    if title:
        fig.update_layout(title=dict(text=title, y=0.98, yanchor="top"))
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
    # takes up to about 7 px, so longer lines would run into their neighbours: titles wrap
    # (the group of "anomalous (scratch_and_sticker)" on lines of its own) rather than lose
    # their middle, and the top margin grows with the number of lines
    limit = max(6, int(850 / max(k, 1) / TITLE_CHAR_PX))
    full_titles = [str(t) for t in titles] if titles is not None else None
    wrapped = [wrap_title(t, limit) for t in full_titles] if full_titles else []
    n_lines = max((len(w) for w in wrapped), default=1)
    fig = make_subplots(rows=len(rows), cols=k, horizontal_spacing=0.01, vertical_spacing=0.02,
                        column_titles=["<br>".join(line.replace("<", "&lt;") for line in w) for w in wrapped]
                        if wrapped else None,
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
    fig.update_layout(height=90 * len(rows) + 60 + TITLE_LINE_PX * (n_lines - 1),
                      margin=dict(t=40 + TITLE_LINE_PX * (n_lines - 1), l=10, r=90, b=10))
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

SPREADS = {"std": "± one standard deviation over seeds",
           "ci95": "95% t-interval of the mean over seeds"}
# Reference series are told apart from the solid quick runs (and from each other) by the line's
# dash and the marker's shape, not by colour alone: colour keeps saying which loss it is.
REFERENCE_STYLES = (("dash", "diamond-open"), ("dot", "square-open"), ("dashdot", "triangle-up-open"),
                    ("longdash", "circle-open"), ("longdashdot", "x-open"))


def seed_spread(values: Sequence[float], spread: str = "std") -> tuple[float, float]:
    """Mean over seeds and the half-height of its error bar: "std" the sample standard deviation,
    "ci95" the half-width of the 95% t-interval of the mean (0 for a single seed: no spread)."""
    if spread not in SPREADS:
        raise ValueError(f"unknown spread {spread!r}: choose one of {', '.join(SPREADS)}")
    mean, sd = auroc_summary(values)
    n = len(values)
    if spread == "ci95" and n > 1:
        from .stats import t_quantile
        return mean, t_quantile(n - 1) * sd / math.sqrt(n)
    return mean, sd


def fig_auroc_vs_batch(rows: Sequence[Mapping], *, selected: int | None = None,
                       sizes: Sequence[int] | None = None,
                       references: Mapping[str, Mapping[str, Mapping[int, tuple]]] | None = None,
                       spread: str = "std", show_n: bool = False,
                       title: str = "AUROC against batch size (paper Table 1)") -> go.Figure:
    """`rows`: dicts with batch_size, name ("base"/"LAMP"), auroc (one row per seed).
    Points are seed means with error bars (`spread`: "std" or "ci95", see `SPREADS`); hovering a
    point gives its n (seeds finished), and `show_n` writes "n=…" beside every point.

    `references`: label -> series name -> {batch size: (mean, half-height of its bar or None)},
    e.g. {"paper": {"L2": {1024: (0.658, None), ...}, "L2-LAMP": {...}}}: drawn as thinner
    dashed / dotted lines (one style per label) named "<label>: <series>", coloured by loss.

    The x axis is logarithmic. `sizes`: every size the axis should cover, so it does not move as
    sizes finish; given, each of them (and each size with data) gets a tick, as they are the
    sizes a student trains (1, 4, 16, 32, 128, 1024 are not all powers of 4); not given, the
    axis covers 1 to 1024 with powers of 2 as ticks."""
    fig = go.Figure()
    by_name: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], {}).setdefault(int(r["batch_size"]), []).append(float(r["auroc"]))
    for i, (name, per_bs) in enumerate(by_name.items()):
        done = sorted(per_bs)
        stats = [seed_spread(per_bs[b], spread) for b in done]
        ns = [len(per_bs[b]) for b in done]
        fig.add_trace(go.Scatter(
            x=done, y=[m for m, _ in stats], mode="lines+markers+text" if show_n else "lines+markers", name=name,
            line=dict(color=color_of(name), width=2.5), marker=dict(size=8), customdata=ns,
            text=[f"n={n}" for n in ns] if show_n else None,
            # base's labels above its points, LAMP's below, so the two never print over each other
            textposition="top right" if i % 2 == 0 else "bottom right", textfont=dict(size=10, color=color_of(name)),
            error_y=dict(type="data", array=[s for _, s in stats], visible=True, thickness=1.5, width=5),
            hovertemplate="batch %{x}<br>AUROC %{y:.3f} (n=%{customdata})<extra>" + name + "</extra>"))
    ref_sizes: list[int] = []
    for (label, series), (dash, symbol) in zip((references or {}).items(), REFERENCE_STYLES * 4):
        for arm, points in series.items():
            xs = sorted(int(b) for b in points)
            if not xs:
                continue
            ref_sizes += xs
            ys = [float(points[b][0]) for b in xs]
            bars = [points[b][1] if len(points[b]) > 1 else None for b in xs]
            err = None if all(e is None for e in bars) else dict(
                type="data", array=[0.0 if e is None else float(e) for e in bars], visible=True, thickness=1, width=3)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", name=f"{label}: {arm}", legendgroup=label,
                line=dict(color=color_of(arm), dash=dash, width=1.5), opacity=0.75,
                marker=dict(symbol=symbol, size=7), error_y=err,
                hovertemplate="batch %{x}<br>AUROC %{y:.3f}<extra>" + f"{label}: {arm}" + "</extra>"))
    if selected is not None:
        fig.add_vline(x=selected, line_dash="dot", line_color="#888")
    data_sizes = [int(r["batch_size"]) for r in rows] + ([int(selected)] if selected else [])
    if sizes is None:
        ticks = pow2_ticks([1, 1024] + data_sizes)
    else:
        ticks = sorted({int(s) for s in sizes} | set(data_sizes) | set(ref_sizes))
    span = [math.log10(ticks[0]) - 0.15, math.log10(ticks[-1]) + 0.15]
    many = len(fig.data) > 2
    fig.update_layout(title=title, xaxis_title="batch size (log scale)", yaxis_title="AUROC",
                      xaxis=dict(type="log", tickmode="array", tickvals=ticks, ticktext=[str(t) for t in ticks],
                                 range=span),
                      # with reference series the legend's long names go below the plot, where they
                      # take whole rows instead of squeezing the plot from above
                      legend=dict(orientation="h", x=0, y=-0.2, yanchor="top") if many else
                      dict(orientation="h", x=0, y=1.0, yanchor="bottom"),
                      height=520 if many else 360, margin=dict(t=70, l=60, r=20, b=50))
    return fig
