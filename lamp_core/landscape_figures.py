"""Plotly figures of loss surfaces (paper Fig. 1: 3-D surface and contour; Fig. 3: batch sizes).

Plain functions from `Surface` objects to `go.Figure`, no Streamlit. Every comparison figure puts
its panels on ONE colour and height scale (the paper's point is a difference in shape, so each
panel's own autoscale would hide it), and refuses surfaces of different metrics: LAMP's own loss
and L2 are different numbers, and comparing them needs a common metric (see landscape.METRICS).
Partial surfaces (coarse-to-fine computation still running) are drawn on their finest complete
sub-grid, see `Surface.displayable`. Every panel's axes are labelled (α, β: the coordinates along
the two random directions; the loss in its metric), contour levels fall on round numbers, and 3-D
panels leave room above for their titles so nothing is cut off at a 1400-px window.
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


def fig_surface_3d(surfaces: dict[str, Surface], *, zmax: float | None = None, log: bool = False,
                   cols: int | None = None) -> go.Figure:
    """3-D surfaces side by side on one height and colour scale (paper Fig. 1, top).

    `cols`: panels per row (default: all, up to 3). Each panel is about 450 px tall; give the
    figure the page's full width (or cols=1 in a narrow column) so the panels stay readable."""
    items = list(surfaces.items())
    metric = _check_metrics([s for _, s in items])
    lo, hi = shared_range([s for _, s in items], zmax=zmax, log=log)
    rows, cols = _grid(len(items), cols)
    fig = make_subplots(rows=rows, cols=cols, specs=[[{"type": "surface"}] * cols] * rows,
                        subplot_titles=[_title(n, s) for n, s in items], horizontal_spacing=0.02,
                        vertical_spacing=0.04)
    zlabel = _label(metric, log)
    for k, (name, s) in enumerate(items):
        x, y, z = _shown(s, zmax, log)
        fig.add_trace(go.Surface(x=x, y=y, z=z, cmin=lo, cmax=hi, colorscale=COLORSCALE, name=name,
                                 showscale=(k == 0), colorbar=dict(title=zlabel, len=0.8 / rows, x=1.0),
                                 contours=dict(z=dict(show=True, usecolormap=True, project_z=True)),
                                 hovertemplate="α %{x:.2f}<br>β %{y:.2f}<br>" + zlabel + " %{z:.4g}<extra>"
                                               + name + "</extra>"),
                      row=k // cols + 1, col=k % cols + 1)
    # each scene sits below its title (the top 8% of its cell), seen from far enough that the
    # box and its axis titles fit inside the panel
    colorbar_room = 0.1
    for k in range(len(items)):
        r, c = divmod(k, cols)
        x0, x1 = c / cols * (1 - colorbar_room), (c + 1) / cols * (1 - colorbar_room)
        y1 = 1 - r / rows
        y0 = 1 - (r + 1) / rows
        # a margin on the left, where this camera puts the z axis and its title
        fig.layout[f"scene{k + 1 if k else ''}"].domain = dict(x=[x0 + 0.04 / cols, x1 - 0.005],
                                                             y=[y0 + 0.01, y1 - 0.08 / rows])
    # a short z title ("loss") fits beside the axis; the colour bar names the metric
    fig.update_scenes(xaxis_title="α", yaxis_title="β",
                      zaxis=dict(title="log10 loss" if log else "loss", range=[lo, hi]),
                      aspectmode="manual", aspectratio=dict(x=1, y=1, z=0.8),
                      camera=dict(eye=dict(x=1.45, y=-1.45, z=0.9), center=dict(x=-0.1, y=-0.1, z=-0.05)))
    fig.update_layout(height=460 * rows + 40, margin=dict(l=10, r=10, t=70, b=10),
                      title=f"Loss surfaces, one scale ({zlabel})")
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
