"""Reports: statistics (paired t-interval, wins), the two selection protocols, the paper's table
layouts, CSV and figures, on hand-made rows whose answers are worked out by hand."""
from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from lamp_core import report as rep
from lamp_core import stats
from lamp_core.config import LampError, RunConfig


def row(unit, seed, lamp, auroc, *, bs=128, lr=1e-3, val=None, loss="l2", opt="adam", pixel=None, **kw):
    r = rep.row_of(RunConfig())
    r.update(unit=str(unit), seed=seed, lamp=lamp, auroc=auroc, batch_size=bs, lr=lr, val_score=val,
             base_loss=loss, optimizer=opt, pixel_auroc=pixel, key=f"{unit}-{seed}-{lamp}-{bs}-{lr}-{loss}-{opt}",
             eps=0.01, max_over="sample", detach_max=False)
    r.update(kw)
    return r


def test_paired_interval_matches_the_t_formula():
    p = rep.paired([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    assert p.mean == pytest.approx(2.0)
    assert p.hi - p.mean == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert (p.wins, p.ties, p.losses) == (3, 0, 0)
    q = rep.paired([0.1, -0.2, 0.0, 0.3])
    assert (q.wins, q.ties, q.losses, q.n) == (2, 1, 1, 4)
    assert q.lo < 0 < q.hi                      # a mixed result: the interval covers zero
    one = rep.paired([0.5])
    assert one.n == 1 and math.isnan(one.lo) and one.text() == "+0.500"


def test_minimum_detectable_effect_has_the_power_it_claims():
    # sd 0.04 over 30 pairs (the old ablation's spread): (t_.975,29 + t_.80,29) * 0.04 / sqrt(30)
    p = rep.paired([0.04 * x for x in (-1.0, 1.0)] * 15)
    assert p.sd == pytest.approx(0.04 * math.sqrt(30 / 29))
    mde = stats.minimum_detectable_effect(0.04, 30)
    assert mde == pytest.approx((2.045229642132703 + 0.8541920) * 0.04 / math.sqrt(30), rel=1e-5)
    # simulate the paired t-test at a true effect of mde: it must reject about 80% of the time
    rng = np.random.default_rng(0)
    d = rng.normal(mde, 0.04, size=(4000, 30))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(30))
    assert abs(float((np.abs(t) > stats.t_quantile(29)).mean()) - 0.80) < 0.03
    assert math.isnan(stats.minimum_detectable_effect(0.04, 1)) and math.isnan(rep.paired([0.1]).mde)


@pytest.mark.parametrize("df, q, want", [   # reference values: scipy.stats.t.ppf
    (1, 0.975, 12.706204736174694), (2, 0.975, 4.302652729749462), (9, 0.975, 2.262157162798205),
    (29, 0.975, 2.045229642132703), (1000, 0.975, 1.9623390808264083), (4, 0.025, -2.7764451051977943),
    (3, 0.995, 5.840909309733355)])
def test_t_quantile_matches_the_t_distribution(df, q, want):
    assert stats.t_quantile(df, q) == pytest.approx(want, rel=1e-9)
    assert stats.t_cdf(want, df) == pytest.approx(q, rel=1e-9)


def test_one_mean_std_helper_one_seed_has_no_spread():
    assert stats.mean_std([0.8]) == (0.8, pytest.approx(math.nan, nan_ok=True), 1)
    m, s, n = stats.mean_std([0.7, None, 0.9, float("nan")])
    assert (m, n) == (pytest.approx(0.8), 2) and s == pytest.approx(math.sqrt(0.02))
    assert stats.fmt_ms(0.8, math.nan) == "0.800" and stats.fmt_ms(math.nan, math.nan) == "–"


def test_cells_average_classes_per_seed_then_spread_over_seeds():
    rows = [row(0, 0, False, 0.8), row(1, 0, False, 0.6), row(0, 1, False, 0.9), row(1, 1, False, 0.7),
            row(0, 0, True, 0.9), row(1, 0, True, 0.6), row(0, 1, True, 0.9), row(1, 1, True, 0.8)]
    c = rep.cells(rows, cell_fields=["batch_size"])[(128,)]
    # base: seed means 0.7 and 0.8 -> 0.75 ± 0.0707; lamp: 0.75 and 0.85 -> 0.80 ± 0.0707
    assert c.base[0] == pytest.approx(0.75) and c.base[1] == pytest.approx(math.sqrt(0.005))
    assert c.lamp[0] == pytest.approx(0.80) and c.base[2] == 2
    # pairs (seed x class): +0.1, 0, 0, +0.1
    assert c.paired.n == 4 and c.paired.mean == pytest.approx(0.05)
    assert (c.paired.wins, c.paired.ties) == (2, 2)


def test_the_two_selection_protocols_pick_differently():
    # lr 1e-2 has the best test AUROC; lr 1e-3 reconstructs held-out normals better (lower val score)
    rows = [row(0, 0, False, 0.70, lr=1e-3, val=0.01), row(0, 0, False, 0.90, lr=1e-2, val=0.05),
            row(0, 0, True, 0.80, lr=1e-3, val=0.02), row(0, 0, True, 0.85, lr=1e-2, val=0.01)]
    paper = rep.cells(rows, cell_fields=["batch_size"], protocol="test")[(128,)]
    honest = rep.cells(rows, cell_fields=["batch_size"], protocol="val")[(128,)]
    assert (paper.base[0], paper.lamp[0]) == (0.90, 0.85)
    assert (honest.base[0], honest.lamp[0]) == (0.70, 0.85)
    assert paper.paired.mean == pytest.approx(-0.05) and honest.paired.mean == pytest.approx(0.15)
    with pytest.raises(LampError, match="val_fraction"):
        rep.cells([row(0, 0, False, 0.7, lr=1e-3), row(0, 0, False, 0.8, lr=1e-2)],
                  cell_fields=["batch_size"], protocol="val")


def test_table1_layout_matches_the_paper():
    rows = [row(u, s, l, 0.5 + 0.1 * l + 0.01 * u, bs=bs) for u in (0, 1) for s in (0, 1, 2)
            for l in (False, True) for bs in (1, 1024, 16)]
    md = rep.table1_markdown(rows, paper={"L2": {1024: 0.658, 16: 0.926, 1: 0.919}})
    lines = md.splitlines()
    assert "| Loss | 1024 | 16 | 1 |" in lines                  # batch sizes descending, as in the paper
    assert "| L2 | 0.505 ± 0.000 | 0.505 ± 0.000 | 0.505 ± 0.000 |" in lines
    assert "| L2-LAMP | 0.605 ± 0.000 | 0.605 ± 0.000 | 0.605 ± 0.000 |" in lines
    assert "| LAMP wins / pairs | 6/6 | 6/6 | 6/6 |" in lines
    assert "| paper: L2 | 0.658 | 0.926 | 0.919 |" in lines
    assert "paper's protocol" in md and "3 seeds" in md and "2 classes" in md
    # extra seeds at one batch size (more power there): the header says how many where
    more = rows + [row(u, s, l, 0.5, bs=16) for u in (0, 1) for s in (3, 4) for l in (False, True)]
    md = rep.table1_markdown(more)
    assert "over 3-5 seeds (batch 1024: 3, batch 16: 5, batch 1: 3)" in md
    assert "| LAMP wins / pairs | 6/6 | 6/10 | 6/6 |" in md.splitlines()


def test_table2_layout_has_arrows_average_and_both_metrics():
    rows = []
    for u in ("grid", "hazelnut"):
        for s in (0, 1):
            for loss in ("l2", "ssim"):
                for opt in ("sgd", "adam"):
                    rows.append(row(u, s, False, 0.8, loss=loss, opt=opt, pixel=0.7))
                    rows.append(row(u, s, True, 0.8 if opt == "sgd" else 0.9, loss=loss, opt=opt, pixel=0.6))
    md = rep.table2_markdown(rows, paper={"grid": {("l2", "sgd"): (0.791, 0.787)}})
    assert "| Category | L2 SGD | L2 Adam | SSIM SGD | SSIM Adam |" in md
    assert "| grid | 0.800 ± 0.000 → 0.800 ± 0.000 | 0.800 ± 0.000 → 0.900 ± 0.000 |" in md
    assert "| paper: grid | 0.791 → 0.787 | – | – | – |" in md
    assert "equal or higher in 4 of 4 settings" in md and "| LAMP wins / pairs | 0/4 | 4/4 | 0/4 | 4/4 |" in md
    px = rep.table2_markdown(rows, metric="pixel_auroc")
    assert "equal or higher in 0 of 4 settings." in px


def test_lamp_variants_pair_each_variant_with_the_same_base_runs():
    rows = [row(0, 0, False, 0.8), row(0, 0, True, 0.9, max_over="sample"),
            row(0, 0, True, 0.7, max_over="batch")]
    v = rep.lamp_variants(rows)
    cs = rep.cells(v, cell_fields=["max_over", "detach_max", "eps"])
    assert cs[("batch", False, 0.01)].paired.mean == pytest.approx(-0.1)
    assert cs[("sample", False, 0.01)].paired.mean == pytest.approx(0.1)
    md = rep.settings_markdown(v, setting_fields=["max_over"], base_label="L2")
    assert "| batch | 0.800 | 0.700 | -0.100 | 0/1 |" in md


def test_csv_has_every_run_and_blank_missing_values():
    rows = [row(0, 0, False, 0.8), row(0, 0, True, None, error="ValueError: NaN")]
    got = list(csv.DictReader(io.StringIO(rep.to_csv(rows))))
    assert len(got) == 2 and got[0]["auroc"] == "0.800000" and got[1]["auroc"] == ""
    assert got[1]["error"] == "ValueError: NaN" and set(rep.ID_FIELDS) <= set(got[0])
    some = list(csv.DictReader(io.StringIO(rep.to_csv(rows, columns=["seed", "auroc", "extra"]))))
    assert list(some[0]) == ["seed", "auroc", "extra"] and some[0]["extra"] == ""


def test_run_summary_is_the_rows_metrics_plus_how_the_run_went():
    from types import SimpleNamespace

    from lamp_core.config import run_key
    from lamp_core.evaluate import Evaluation
    cfg = RunConfig().with_train(epochs=3)
    ev = Evaluation(labels=[0, 1], scores=[0.1, 0.2], auroc=1.0, average_precision=1.0, fpr=[0, 1], tpr=[0, 1],
                    thresholds=[0.2, 0.1], f1_max=1.0, f1_threshold=0.2)
    result = SimpleNamespace(config=cfg, seconds=1.23456, steps=30, epochs_done=3, stopped=False, diverged=False,
                             history={"loss": [2.0, 1.5]}, device="cpu")
    s = rep.run_summary(SimpleNamespace(result=result, evaluation=ev, cached=True))
    row = rep.row_of(cfg, ev)
    assert {k: s[k] for k in rep.metrics_of(ev)} == {k: row[k] for k in rep.metrics_of(ev)}
    assert (s["seconds"], s["final_loss"], s["cached"], s["key"]) == (1.235, 1.5, True, run_key(cfg))
    assert s["key"] == row["key"]                     # the summary and the sweep row name one run
    assert RunConfig.from_dict(s["config"]) == cfg
    empty = rep.run_summary(SimpleNamespace(result=result, evaluation=None, cached=False))
    assert empty["auroc"] is None and empty["pixel_auroc"] is None


def test_figures_have_error_bars_and_one_panel_per_category():
    rows = [row(u, s, l, 0.6 + 0.1 * s, bs=bs) for u in (0, 1) for s in (0, 1) for l in (False, True)
            for bs in (4, 128)]
    fig = rep.fig_auroc_vs_batch(rows, paper={"L2": {4: 0.931, 128: 0.919}})
    assert [t.name for t in fig.data] == ["L2", "L2-LAMP", "paper: L2"]
    assert list(fig.data[0].x) == [4, 128] and fig.data[0].error_y.array[0] == pytest.approx(math.sqrt(0.005))
    # seed means of the class-averaged AUROC: 0.65 and 0.75 (base), as the table reports them
    assert fig.data[0].y[0] == pytest.approx(rep.cells(rows, cell_fields=["batch_size"])[(4,)].base[0])
    assert fig.layout.xaxis.type == "log"
    bars = rep.fig_category_bars([dict(r, unit=("grid" if r["unit"] == "0" else "hazelnut")) for r in rows
                                  if r["batch_size"] == 4])
    assert len(bars.data) == 4 and bars.layout.annotations[0].text == "grid"


# ----------------------------------------------------------------------------- class-level intervals

def _three_classes():
    """Classes 0, 1, 2 x seeds 0, 1; base 0.8; LAMP − base: class 0 +0.02/+0.04, class 1 0/+0.02,
    class 2 -0.01/+0.01, so the class means are 0.03, 0.01 and 0.00."""
    gains = {0: (0.02, 0.04), 1: (0.0, 0.02), 2: (-0.01, 0.01)}
    rows = []
    for u, gs in gains.items():
        for s, g in enumerate(gs):
            rows += [row(u, s, False, 0.8), row(u, s, True, 0.8 + g)]
    return rows


def test_cells_give_the_class_level_interval_beside_the_pair_level_one():
    c = rep.cells(_three_classes(), cell_fields=["batch_size"])[(128,)]
    assert c.paired.n == 6 and c.by_unit.n == 3
    # class means 0.03, 0.01, 0.00: mean 0.04/3, sd sqrt(0.0007/3), half-width t(0.975, 2) sd / sqrt(3)
    assert c.by_unit.mean == pytest.approx(0.04 / 3)
    assert c.by_unit.sd == pytest.approx(math.sqrt(0.0007 / 3))
    assert c.by_unit.hi - c.by_unit.mean == pytest.approx(4.302652729911275 * math.sqrt(0.0007 / 3) / math.sqrt(3))
    assert c.paired.mean == pytest.approx(c.by_unit.mean)          # balanced: the same mean ...
    assert c.by_unit.hi - c.by_unit.lo > c.paired.hi - c.paired.lo   # ... but 3 units, not 6 pairs
    assert rep.unit_level(_three_classes()).mean == pytest.approx(0.04 / 3)
    one = rep.cells(_three_classes(), cell_fields=["unit"], average_units=False)[("0",)]
    assert one.by_unit.n == 1 and math.isnan(one.by_unit.lo)       # one unit: no interval


def test_every_report_table_shows_both_intervals():
    rows = _three_classes()
    c = rep.cells(rows, cell_fields=["batch_size"])[(128,)]
    t1 = rep.table1_markdown(rows).splitlines()
    assert f"| Δ LAMP − base [95% CI] | {c.paired.text()} |" in t1
    assert f"| Δ class-level [95% CI] | {c.by_unit.text()} |" in t1
    assert any("t-interval over the 3 classes" in ln for ln in t1)
    st = rep.settings_markdown(rep.lamp_variants(rows), setting_fields=["max_over"], base_label="L2")
    assert "| wins / pairs | Δ class-level [95% CI] |" in st
    assert st.splitlines()[-1].endswith(f"| {c.paired.text()} | 4/6 | {c.by_unit.text()} |")
    t2 = rep.table2_markdown([dict(r, unit=f"cat{r['unit']}") for r in rows])
    assert f"| Δ category-level [95% CI] | {c.by_unit.text()} |" in t2.splitlines()


def test_an_exact_tie_counts_as_equal_despite_float_rounding():
    # grid-like AUROCs (multiples of 1/33) whose means differ only by float rounding
    a, b, d = 18 / 33, 19 / 33, 20 / 33
    rows = []
    for s, (base, lamp) in enumerate(((a, b), (d, a), (b, d))):
        rows += [row("grid", s, False, base, opt="adam"), row("grid", s, True, lamp, opt="adam")]
        rows += [row("grid", s, False, 0.7, opt="sgd"), row("grid", s, True, 0.6, opt="sgd")]
    overall = rep.cells(rows, cell_fields=["base_loss", "optimizer"])
    tie = overall[("l2", "adam")]
    assert abs(tie.lamp[0] - tie.base[0]) < rep.TIE_TOL
    md = rep.table2_markdown(rows)
    assert "equal or higher in 1 of 2 settings, 1 of them an exact tie" in md
    assert rep.equal_or_higher([tie, overall[("l2", "sgd")]]) == (1, 1)


def test_verdicts_are_worded_as_the_intervals_allow():
    clear = rep.paired([0.01, 0.012, 0.011, 0.009])
    mixed = rep.paired([0.02, -0.01, 0.03, -0.02])
    assert rep.verdict(clear) == "higher"
    assert rep.verdict(rep.paired([-x for x in (0.01, 0.012, 0.011, 0.009)])) == "lower"
    assert rep.verdict(mixed) == "mean higher, interval includes 0"
    assert rep.verdict(clear, mixed) == "higher over pairs, but the class-level interval includes 0"
    assert rep.verdict(clear, clear) == "higher"
    assert rep.verdict(rep.paired([0.0, 0.0])) == "level"
    assert "below" not in rep.verdict(rep.paired([-0.02, 0.01, -0.03]))


def test_a_report_is_written_again_from_its_csv_with_the_same_numbers(tmp_path):
    rows = _three_classes() + [row(0, 0, True, None, error="ValueError: NaN", bs=4)]
    path = tmp_path / "t.csv"
    path.write_text(rep.to_csv(rows))
    back = rep.rows_from_csv(path)
    assert [type(back[0][k]) for k in ("lamp", "seed", "batch_size", "eps", "auroc", "unit")] == \
        [bool, int, int, float, float, str]
    assert back[-1]["auroc"] is None and back[-1]["error"] == "ValueError: NaN" and back[0]["max_train"] is None
    assert rep.table1_markdown(back) == rep.table1_markdown(rows)
    assert rep.to_csv(back) == path.read_text()
