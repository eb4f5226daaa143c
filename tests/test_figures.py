"""Figure builders: right traces, one shared error colour scale, AUROC labels, no Streamlit."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from lamp_core import figures
from lamp_core.evaluate import Evaluation, confusion_at
from lamp_core.losses import loss_curves


def _eval(scores, labels) -> Evaluation:
    from sklearn.metrics import roc_auc_score, roc_curve
    fpr, tpr, thr = roc_curve(labels, scores)
    return Evaluation(labels=list(labels), scores=list(scores), auroc=float(roc_auc_score(labels, scores)),
                      average_precision=0.0, fpr=fpr.tolist(), tpr=tpr.tolist(), thresholds=thr.tolist(),
                      f1_max=0.0, f1_threshold=0.0)


def test_loss_curves_figure_has_value_and_gradient_panels():
    curves = {b: loss_curves(b, eps=0.01, points=51) for b in ("l1", "l2")}
    fig = figures.fig_loss_curves(curves, eps=0.01)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 8                       # 2 bases x 2 panels x (base, LAMP)
    lamp_l2 = [t for t in fig.data if t.name == "L2 LAMP"]
    assert np.allclose(lamp_l2[0].y, curves["l2"]["lamp"])
    assert "ε = 0.01" in fig.layout.title.text


def test_roc_legend_gives_mean_and_spread_over_seeds():
    labels = [0] * 5 + [1] * 5
    evs = {"base": [_eval([0.1, 0.2, 0.3, 0.4, 0.9, 0.5, 0.6, 0.7, 0.8, 0.35], labels),
                    _eval([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], labels)],
           "LAMP": [_eval(list(range(10)), labels)]}
    fig = figures.fig_roc(evs)
    names = [t.name for t in fig.data if t.showlegend is not False]
    mean = np.mean([e.auroc for e in evs["base"]])
    std = np.std([e.auroc for e in evs["base"]], ddof=1)
    assert f"base: AUROC {mean:.3f} ± {std:.3f} (n=2)" in names
    assert "LAMP: AUROC 1.000" in names
    assert sum(1 for t in fig.data if t.legendgroup == "base") == 2   # every seed's curve is drawn


def test_auroc_summary_single_and_empty():
    assert figures.auroc_summary([0.8]) == (0.8, 0.0)
    m, s = figures.auroc_summary([])
    assert np.isnan(m) and np.isnan(s)


def test_recon_grid_error_maps_share_one_scale():
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 8, 8)).astype(np.float32)
    recons = {"base": np.zeros_like(x), "LAMP": x * 0.9}
    fig = figures.fig_recon_grid(x, recons, titles=["a", "b", "c"], masks=(x[:, :1] > 0.5).astype(np.float32))
    errs = [t for t in fig.data if isinstance(t, go.Heatmap) and t.colorscale and t.zmax is not None
            and t.hovertemplate and "error" in t.hovertemplate]
    assert len(errs) == 6                                           # 2 models x 3 images
    expected = float(((x - 0) ** 2).mean(axis=1).max())               # the base error is the largest
    assert [t.zmax for t in errs] == pytest.approx([expected] * 6)
    assert sum(1 for t in errs if t.showscale) == 1                   # one colour bar for all
    assert len(fig.data) == 3 * 6                                     # rows: input, 2 recon, 2 error, mask


def test_recon_grid_colour_images_use_rgb():
    x = np.random.default_rng(1).random((2, 3, 8, 8)).astype(np.float32)
    fig = figures.fig_recon_grid(x, {"base": x, "LAMP": x})
    assert sum(isinstance(t, go.Image) for t in fig.data) == 2 * 3


def test_score_hist_and_confusion():
    ev = _eval([0.1, 0.2, 0.3, 0.8, 0.9, 0.25], [0, 0, 0, 1, 1, 1])
    fig = figures.fig_score_hist({"base": ev, "LAMP": ev}, thresholds={"base": 0.5, "LAMP": 0.5})
    assert len([t for t in fig.data if isinstance(t, go.Histogram)]) == 4
    assert list(fig.data[1].x) == [0.8, 0.9, 0.25]                     # the anomalous scores
    c = confusion_at(ev, 0.5)
    conf = figures.fig_confusion({"base": c})
    assert [list(r) for r in conf.data[0].z] == [[3, 0], [1, 2]]                         # [[tn, fp], [fn, tp]]


def test_auroc_vs_batch_means_per_size():
    rows = [{"batch_size": 4, "name": "base", "auroc": 0.8}, {"batch_size": 4, "name": "base", "auroc": 0.9},
            {"batch_size": 32, "name": "base", "auroc": 0.7}, {"batch_size": 4, "name": "LAMP", "auroc": 0.95}]
    fig = figures.fig_auroc_vs_batch(rows, selected=4)
    base = next(t for t in fig.data if t.name == "base")
    assert list(base.x) == [4, 32] and np.allclose(base.y, [0.85, 0.7])
    assert base.error_y.array[0] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert fig.layout.xaxis.type == "log"
    assert fig.layout.shapes[0].x0 == 4                               # the selected size


def test_error_maps_use_an_explicit_inferno_scale():
    x = np.zeros((1, 1, 4, 4), np.float32)
    fig = figures.fig_recon_grid(x, {"base": x + 0.5})
    err = next(t for t in fig.data if t.hovertemplate and "error" in t.hovertemplate)
    assert err.colorscale[0] == (0.0, "rgb(0, 0, 4)") and err.colorscale[-1][0] == 1.0
