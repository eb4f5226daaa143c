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


# ----------------------------------------------------------------------------- readable at a glance

def _is_round(v: float) -> bool:
    mantissa = v / 10 ** np.floor(np.log10(v))
    return any(np.isclose(mantissa, m) for m in range(1, 10))


@pytest.mark.parametrize("lo,hi,expected", [(5.0, 43.0, [5, 10, 20]), (1e-4, 2.0, [1e-4, 1e-3, 1e-2, 0.1, 1]),
                                            (100.0, 450.0, [100, 200, 300])])
def test_log_ticks_are_round_numbers_with_plain_labels(lo, hi, expected):
    vals, text = figures.log_ticks(lo, hi)
    assert vals == pytest.approx(expected)
    assert text == [f"{v:g}" for v in vals]


def test_training_loss_log_axis_has_explicit_ticks_not_digit_labels():
    hist = {"base": {"loss": list(np.geomspace(45, 5, 20))}, "LAMP": {"loss": list(np.geomspace(420, 80, 20))}}
    fig = figures.fig_history(hist, epochs=20)
    for axis in (fig.layout.yaxis, fig.layout.yaxis2):
        assert axis.type == "log" and axis.tickmode == "array" and len(axis.tickvals) >= 2
        assert all(_is_round(v) for v in axis.tickvals)
        assert list(axis.ticktext) == [f"{v:g}" for v in axis.tickvals]
    assert fig.layout.yaxis.title.text


def test_gradient_panel_can_use_a_log_scale():
    curves = {b: loss_curves(b, eps=1e-3, points=101) for b in ("l1", "l2")}
    fig = figures.fig_loss_curves(curves, eps=1e-3, log_gradient=True)
    grad_axes = [fig.layout.yaxis2, fig.layout.yaxis4]
    assert all(a.type == "log" and len(a.tickvals) >= 2 for a in grad_axes)
    grad_traces = [t for t in fig.data if t.yaxis in ("y2", "y4")]
    assert grad_traces and all(min(t.y) > 0 and min(t.x) > 0 for t in grad_traces)
    linear = figures.fig_loss_curves(curves, eps=1e-3)
    assert linear.layout.yaxis2.type in (None, "linear", "-")


def test_histograms_label_their_density_axis():
    ev = _eval([0.1, 0.2, 0.3, 0.8, 0.9, 0.25], [0, 0, 0, 1, 1, 1])
    fig = figures.fig_score_hist({"base": ev, "LAMP": ev})
    assert fig.layout.yaxis.title.text == "density"
    assert fig.layout.margin.l >= 50                    # room for the axis title


def test_confusion_matrices_share_a_scale_and_one_set_of_row_labels():
    ev = _eval([0.1, 0.2, 0.3, 0.8, 0.9, 0.25], [0, 0, 0, 1, 1, 1])
    other = _eval([0.1, 0.2, 0.9, 0.8, 0.9, 0.95], [0, 0, 0, 1, 1, 1])
    fig = figures.fig_confusion({"base": confusion_at(ev, 0.5), "LAMP": confusion_at(other, 0.5)})
    assert {(t.zmin, t.zmax) for t in fig.data} == {(0, 3)}
    assert fig.layout.yaxis.showticklabels is not False and fig.layout.yaxis2.showticklabels is False
    assert fig.layout.yaxis.title.text == "truth" and not fig.layout.yaxis2.title.text


def test_reconstruction_titles_are_shortened_with_the_full_name_on_hover():
    x = np.random.default_rng(2).random((10, 1, 8, 8)).astype(np.float32)
    names = [f"uploads/test/anomalous/very_long_defect_name_number_{i:03d}.png" for i in range(10)]
    fig = figures.fig_recon_grid(x, {"base": x, "LAMP": x}, titles=names)
    col_titles = [a.text for a in fig.layout.annotations if a.textangle != 90 and a.text not in (
        "input", "base recon.", "LAMP recon.", "base error", "LAMP error")]
    assert len(col_titles) == 10 and len(set(col_titles)) == 10
    assert all(len(line) <= 850 / 10 / figures.TITLE_CHAR_PX                       # each line fits its column
               for t in col_titles for line in t.split("<br>"))
    assert all("uploads/" not in t and ".png" not in t for t in col_titles)
    inputs = [t for t in fig.data if t.hovertemplate and "very_long" in t.hovertemplate]
    assert len(inputs) == 10 and names[3] in inputs[3].hovertemplate


def test_auroc_vs_batch_ticks_are_powers_of_two_on_a_steady_axis():
    rows = [{"batch_size": b, "name": "base", "auroc": 0.8} for b in (4, 16)]
    fig = figures.fig_auroc_vs_batch(rows, selected=16)
    ticks = list(fig.layout.xaxis.tickvals)
    assert ticks == [1, 4, 16, 64, 256, 1024] and list(fig.layout.xaxis.ticktext) == [str(t) for t in ticks]
    more = figures.fig_auroc_vs_batch(rows + [{"batch_size": 64, "name": "base", "auroc": 0.7}], selected=4)
    assert list(more.layout.xaxis.range) == list(fig.layout.xaxis.range)   # the axis does not move


def _surf(scale: float, metric: str = "l2"):
    from lamp_core.landscape import Surface
    x = np.linspace(-1, 1, 7)
    return Surface(x=x, y=x, values=scale * np.add.outer(x ** 2, x ** 2) + 0.1, metric=metric, seed=0,
                   bn_mode="eval", center=0.1, complete=True)


def test_contours_label_alpha_and_beta_once_per_row_and_column():
    from lamp_core import landscape_figures as LF
    fig = LF.fig_contour({"base": _surf(1), "LAMP": _surf(3)})
    texts = [a.text for a in fig.layout.annotations]
    assert "β" not in texts and "α" not in texts                       # no stray labels between panels
    assert fig.layout.yaxis.title.text == "β" and not fig.layout.yaxis2.title.text
    assert fig.layout.xaxis.title.text == "α" and fig.layout.xaxis2.title.text == "α"
    levels = fig.data[0].contours
    assert levels.size == pytest.approx(LF.nice_step(levels.size))      # round levels
    grid = LF.fig_batch_grid({(n, b): _surf(s * b) for n, s in (("base", 1), ("LAMP", 3)) for b in (4, 64)})
    assert grid.layout.yaxis.title.text == "β" and not grid.layout.yaxis2.title.text
    assert not grid.layout.xaxis.title.text and grid.layout.xaxis3.title.text == "α"   # bottom row only


def test_3d_surfaces_share_one_scene_and_camera_with_their_own_ticks():
    from lamp_core import landscape_figures as LF
    base, lamp = _surf(1), _surf(3)
    fig = LF.fig_surface_3d({"base": base, "LAMP": lamp})
    # one scene, so one camera turns both surfaces together
    assert {t.scene or "scene" for t in fig.data} == {"scene"} and "scene2" not in fig.to_plotly_json()["layout"]
    assert fig.layout.height >= 450 and fig.layout.scene.camera.projection.type == "orthographic"
    xa, xb = np.asarray(fig.data[0].x), np.asarray(fig.data[1].x)
    width = float(base.x.max() - base.x.min())
    assert xb.min() - xa.max() == pytest.approx(LF.SURFACE_GAP * width)   # side by side, a gap between
    sc = fig.layout.scene
    assert sc.xaxis.title.text.startswith("α") and sc.yaxis.title.text == "β"
    # the α ticks read each surface's own coordinates, once per surface
    labels = list(sc.xaxis.ticktext)
    assert labels == [f"{v:g}" for v in LF._ticks(float(base.x.min()), float(base.x.max()))] * 2
    # names float above their surfaces; the quantity is in the colour bar, not a z-axis title
    names = sorted(a.text.split(" ")[0] for a in sc.annotations)
    assert names == ["LAMP", "base"] and not sc.zaxis.title.text
    assert fig.data[0].colorbar.title.text == "L2 loss" and "L2 loss" in fig.layout.title.text
    assert np.allclose(fig.data[0].z, base.values) and np.allclose(fig.data[1].z, lamp.values)


def test_landscape_figure_errors_are_lamp_errors():
    from lamp_core import landscape_figures as LF
    from lamp_core.config import LampError
    with pytest.raises(LampError, match="different metrics"):
        LF.fig_contour({"base": _surf(1), "LAMP": _surf(1, metric="own")})
    with pytest.raises(LampError, match="no surfaces"):
        LF.fig_batch_grid({})


def _column_titles(fig) -> list[str]:
    rows = {"input", "base recon.", "LAMP recon.", "base error", "LAMP error", "mask"}
    return [a.text for a in fig.layout.annotations if a.textangle != 90 and a.text not in rows]


def test_upload_group_titles_wrap_instead_of_being_cut():
    """An upload's 8 grid columns titled "anomalous (scratch_and_sticker)" were cut to
    "anom…cker)": the group goes on lines of its own, broken after "_", whole."""
    x = np.random.default_rng(3).random((8, 1, 8, 8)).astype(np.float32)
    titles = ["normal (good)"] * 4 + ["anomalous (scratch_and_sticker)"] * 4
    fig = figures.fig_recon_grid(x, {"base": x, "LAMP": x}, titles=titles)
    col = _column_titles(fig)
    limit = 850 / 8 / figures.TITLE_CHAR_PX
    assert col[0].split("<br>") == ["normal", "good"]
    assert col[-1].split("<br>") == ["anomalous", "scratch_and_", "sticker"]
    assert all("…" not in t and all(len(line) <= limit for line in t.split("<br>")) for t in col)
    plain = figures.fig_recon_grid(x, {"base": x, "LAMP": x}, titles=["normal"] * 8)
    assert fig.layout.margin.t - plain.layout.margin.t == 2 * figures.TITLE_LINE_PX   # room for 2 more lines
    assert titles[-1] in next(t for t in fig.data if t.hovertemplate and "sticker" in t.hovertemplate).hovertemplate


def test_threshold_line_has_a_legend_entry_and_one_run_figures_say_which_run():
    ev = _eval([0.1, 0.2, 0.3, 0.8, 0.9, 0.25], [0, 0, 0, 1, 1, 1])
    fig = figures.fig_score_hist({"base": ev, "LAMP": ev}, thresholds={"base": 0.5, "LAMP": 0.5},
                                 title="Anomaly scores · seed 0, the first of 3 seeds",
                                 threshold_label="threshold (95th percentile of normal)")
    legend = [t for t in fig.data if t.showlegend is not False and t.name]
    line = [t for t in legend if t.name == "threshold (95th percentile of normal)"]
    assert len(line) == 1 and line[0].line.dash == "dash"
    assert {s.line.dash for s in fig.layout.shapes} == {"dash"}
    assert line[0].line.color == fig.layout.shapes[0].line.color                # drawn like the line it names
    assert "seed 0, the first of 3" in fig.layout.title.text
    assert not [t for t in figures.fig_score_hist({"base": ev}).data if t.name and "threshold" in t.name]
    conf = figures.fig_confusion({"base": confusion_at(ev, 0.5)}, title="At the threshold · seed 0")
    assert "seed 0" in conf.layout.title.text
