"""Plotly figures of loss surfaces (paper Fig. 1: 3-D surface and contour; Fig. 3: batch sizes).

Plain functions from `Surface` objects to `go.Figure`, no Streamlit. Every comparison figure puts
its panels on ONE colour and height scale (the paper's point is a difference in shape, so each
panel's own autoscale would hide it), and refuses surfaces of different metrics: LAMP's own loss
and L2 are different numbers, and comparing them needs a common metric (see landscape.METRICS).
Partial surfaces (coarse-to-fine computation still running) are drawn on their finest complete
sub-grid, see `Surface.displayable`. Every panel's axes are labelled (α, β: the coordinates along
the two random directions; the loss in its metric), contour levels fall on round numbers, and the
3-D surfaces share one scene, so one camera turns them together (see `fig_surface_3d`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .config import ConfigError, LampError
from .landscape import Surface

METRIC_LABELS = {
    "own": "training loss",
    "l2": "L2 loss",
    "own_rel": "training loss / centre",
    "l2_rel": "L2 loss / centre",
}
COLORSCALE = "Viridis"


def _check_metrics(surfaces: Sequence[Surface]) -> str:
    metrics = sorted({s.metric for s in surfaces})
    if len(metrics) > 1:
        raise ConfigError(f"surfaces use different metrics ({', '.join(metrics)}): "
                          "compute them in one metric (l2 or l2_rel) to compare them")
    return metrics[0] if metrics else "own"


def _label(metric: str, log: bool = False) -> str:
    text = METRIC_LABELS.get(metric, metric)
    return f"log10 {text}" if log else text


def _shown(s: Surface, zmax: float | None, log: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = s.displayable()
    z = np.array(d.values, dtype=np.float64)
    if zmax is not None:
        z = np.minimum(z, zmax)   # Li et al.'s vmax: clip the rim so the basin stays visible
    if log:
        z = np.log10(np.clip(z, 1e-12, None))
    return d.x, d.y, z


def shared_range(surfaces: Sequence[Surface], *, zmax: float | None = None, log: bool = False
                 ) -> tuple[float, float]:
    """(low, high) over all computed values of all surfaces: the one scale of a comparison."""
    vals = [(_shown(s, zmax, log)[2]) for s in surfaces]
    finite = np.concatenate([v[np.isfinite(v)].ravel() for v in vals]) if vals else np.zeros(0)
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    return lo, hi


def _title(name: str, s: Surface) -> str:
    parts = [name]
    if not s.complete:
        parts.append(f"({s.fraction_done():.0%} computed)")
    if "top_eigenvalue" in s.sharpness:
        parts.append(f"λmax {s.sharpness['top_eigenvalue']:.3g}")
    return " ".join(parts)


def _grid(n: int, cols: int | None = None) -> tuple[int, int]:
    cols = max(1, min(cols or 3, n)) if n > 0 else 1
    return max(1, math.ceil(n / cols)), cols


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least `raw` (> 0): round contour levels."""
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * power >= raw * (1 - 1e-9):
            return m * power
    return 10.0 * power


SURFACE_GAP = 0.35        # the empty stretch between two surfaces of one scene, in surface widths
# An orthographic scene's size on screen follows its aspect ratio and the figure's height, not the
# eye's distance nor the width: 1.12 fills a 500-px-tall figure from 800 px wide (the wide page
# beside the sidebar) without clipping the axes, checked as PNGs at 800 and 1000 px; 1.3 clipped
# the z ticks at 750-800 px.
ZOOM = 1.12


def _ticks(lo: float, hi: float) -> list[float]:
    """Round tick values within [lo, hi] (about five), ends included when they are round."""
    step = nice_step((hi - lo) / 4) if hi > lo else 1.0
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def fig_surface_3d(surfaces: dict[str, Surface], *, zmax: float | None = None, log: bool = False) -> go.Figure:
    """3-D surfaces side by side on one height and colour scale (paper Fig. 1, top), in ONE 3-D
    scene, so that rotating or zooming moves all of them together.

    Separate scenes (one per subplot) each own a camera, and plotly links cameras only through a
    JavaScript relayout handler, which Streamlit's `st.plotly_chart` cannot attach. So the surfaces
    share one scene instead: surface k is shifted along the α axis by k · (its width + a gap), the
    α ticks are labelled with each surface's own coordinates, and each surface's name floats above
    it as a 3-D label. The projection is orthographic, so the surface farther from the eye is not
    drawn smaller than the nearer one (their shapes are what is compared).

    The quantity is named in the colour bar and the title, not as a z-axis title: plotly places a
    3-D axis title beside the tick labels, with no stand-off, and at a page's width it ended up
    behind them (it read "oss")."""
    items = list(surfaces.items())
    metric = _check_metrics([s for _, s in items])
    lo, hi = shared_range([s for _, s in items], zmax=zmax, log=log)
    zlabel = _label(metric, log)
    shown = [(name, s, *_shown(s, zmax, log)) for name, s in items]
    width = max((float(x.max() - x.min()) for _, _, x, _, _ in shown if x.size), default=1.0) or 1.0
    pitch = width * (1 + SURFACE_GAP)            # distance between the left edges of two surfaces
    fig = go.Figure()
    tickvals, ticktext, labels = [], [], []
    y_top = max((float(y.max()) for _, _, _, y, _ in shown if y.size), default=1.0)
    for k, (name, s, x, y, z) in enumerate(shown):
        shift = k * pitch - (float(x.min()) if x.size else 0.0)
        # hover shows the surface's own α (the plotted x is shifted)
        text = [[f"{name}<br>α {xv:.2f}<br>β {yv:.2f}" for xv in x] for yv in y]
        fig.add_trace(go.Surface(x=x + shift, y=y, z=z, cmin=lo, cmax=hi, colorscale=COLORSCALE, name=name,
                                 showscale=(k == 0), colorbar=dict(title=zlabel, len=0.8),
                                 contours=dict(z=dict(show=True, usecolormap=True, project_z=True)),
                                 text=text, hovertemplate="%{text}<br>" + zlabel + " %{z:.4g}<extra></extra>"))
        if x.size:
            for t in _ticks(float(x.min()), float(x.max())):
                tickvals.append(t + shift)
                ticktext.append(f"{t:g}")
            labels.append(dict(x=float(x.mean()) + shift, y=y_top, z=hi, text=_title(name, s), showarrow=False,
                               yanchor="bottom", font=dict(size=14)))
    span_x = len(items) * width + max(len(items) - 1, 0) * width * SURFACE_GAP
    fig.update_scenes(
        xaxis=dict(title="α (each surface)" if len(items) > 1 else "α", tickvals=tickvals, ticktext=ticktext),
        yaxis=dict(title="β"), zaxis=dict(title="", range=[lo, hi]),
        # the box is as wide as the surfaces side by side; each surface keeps a square base
        aspectmode="manual", aspectratio=dict(x=ZOOM * span_x / width, y=ZOOM, z=ZOOM * 0.8),
        annotations=labels,
        camera=dict(eye=dict(x=0.3, y=-1.6, z=0.8), center=dict(x=0, y=0, z=-0.1),
                    projection=dict(type="orthographic")),
        domain=dict(x=[0.0, 0.94], y=[0.0, 1.0]))
    fig.update_layout(height=500, margin=dict(l=10, r=10, t=60, b=10),
                      title=f"Loss surfaces, one scale and one camera (height and colour: {zlabel})")
    return fig


def _contour_trace(s: Surface, lo: float, hi: float, levels, *, zmax, log, showscale, metric, name):
    x, y, z = _shown(s, zmax, log)
    if levels is None:
        levels = 20
    if isinstance(levels, (int, np.integer)):
        size = nice_step((hi - lo) / max(int(levels), 1))
        contours = dict(start=math.floor(lo / size) * size, end=math.ceil(hi / size) * size, size=size,
                        showlabels=False)
    else:
        lv = sorted(float(v) for v in levels)
        contours = dict(start=lv[0], end=lv[-1], size=(lv[-1] - lv[0]) / max(len(lv) - 1, 1))
    label = _label(metric, log)
    return go.Contour(x=x, y=y, z=z, zmin=lo, zmax=hi, zauto=False, colorscale=COLORSCALE, name=name,
                      contours=contours, autocontour=False, showscale=showscale,
                      colorbar=dict(title=label),
                      hovertemplate="α %{x:.2f}<br>β %{y:.2f}<br>" + label + " %{z:.4g}<extra>" + name + "</extra>")


def _label_contour_axes(fig: go.Figure, rows: int, cols: int) -> None:
    """α under the bottom row, β beside the first column only (not between panels); square
    panels without empty margins."""
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            fig.update_xaxes(title_text="α" if r == rows else None, constrain="domain", row=r, col=c)
            anchor = "x" if (r, c) == (1, 1) else f"x{(r - 1) * cols + c}"
            fig.update_yaxes(title_text="β" if c == 1 else None, scaleanchor=anchor, scaleratio=1,
                             constrain="domain", row=r, col=c)


def fig_contour(surfaces: dict[str, Surface], *, levels=None, zmax: float | None = None,
                log: bool = False) -> go.Figure:
    """Contour maps side by side, same levels and colours for all (paper Fig. 1, bottom).

    `levels`: a number of evenly spaced levels over the shared range (default 20) or the levels.
    """
    items = list(surfaces.items())
    metric = _check_metrics([s for _, s in items])
    lo, hi = shared_range([s for _, s in items], zmax=zmax, log=log)
    rows, cols = _grid(len(items))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_title(n, s) for n, s in items],
                        shared_xaxes=True, shared_yaxes=True)
    for k, (name, s) in enumerate(items):
        fig.add_trace(_contour_trace(s, lo, hi, levels, zmax=zmax, log=log, showscale=(k == 0),
                                     metric=metric, name=name), row=k // cols + 1, col=k % cols + 1)
    _label_contour_axes(fig, rows, cols)
    fig.update_layout(height=420 * rows, title=f"Contours, one scale ({_label(metric, log)})",
                      margin=dict(t=80, l=60, r=20, b=50))
    return fig


def fig_batch_grid(surfaces: dict[tuple[str, int], Surface], *, levels=None, zmax: float | None = None,
                   log: bool = False) -> go.Figure:
    """Paper Fig. 3: contour maps, rows = loss (e.g. base, LAMP), columns = batch size; one scale."""
    if not surfaces:
        raise LampError("no surfaces to draw: compute at least one landscape first")
    names = list(dict.fromkeys(name for name, _ in surfaces))
    sizes = sorted({bs for _, bs in surfaces})
    metric = _check_metrics(list(surfaces.values()))
    lo, hi = shared_range(list(surfaces.values()), zmax=zmax, log=log)
    titles = [f"{n}, batch {bs}" for n in names for bs in sizes]
    fig = make_subplots(rows=len(names), cols=len(sizes), subplot_titles=titles,
                        shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.03, vertical_spacing=0.08)
    first = True
    for r, name in enumerate(names):
        for c, bs in enumerate(sizes):
            s = surfaces.get((name, bs))
            if s is None:
                continue
            fig.add_trace(_contour_trace(s, lo, hi, levels, zmax=zmax, log=log, showscale=first,
                                         metric=metric, name=f"{name} {bs}"), row=r + 1, col=c + 1)
            first = False
    _label_contour_axes(fig, len(names), len(sizes))
    fig.update_layout(height=330 * len(names) + 60, title=f"Loss contours by batch size ({_label(metric, log)})",
                      margin=dict(t=80, l=60, r=20, b=50))
    return fig


def fig_line(surfaces: dict[str, Surface], *, log: bool = False) -> go.Figure:
    """1-D lines (ny = 1), interpolations, or the β = 0 row of planes, on one axis."""
    items = list(surfaces.items())
    metric = _check_metrics([s for _, s in items])
    fig = go.Figure()
    kinds = {s.kind for _, s in items}
    for name, s in items:
        row = 0 if s.values.shape[0] == 1 else int(np.argmin(np.abs(s.y)))
        v = s.values[row]
        done = np.isfinite(v)
        fig.add_trace(go.Scatter(x=s.x[done], y=v[done], mode="lines+markers", name=name))
    xt = "t  (0 = model a, 1 = model b)" if kinds == {"interpolation"} else "α (direction 1)"
    fig.update_layout(xaxis_title=xt, yaxis_title=_label(metric), yaxis_type="log" if log else "linear",
                      title="Loss along a line" if kinds != {"interpolation"} else "Linear interpolation")
    return fig
