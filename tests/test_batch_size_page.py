"""The Batch size page (paper Table 1): every size over the exercise's seeds, in both step modes,
beside the converged Table 1 and the paper's; and its figure, `figures.fig_auroc_vs_batch`.

Page tests run under AppTest with tiny settings; AppTest does not fire `run_every` timers, so
background work is followed by calling `at.run()` until a deadline (tests/test_app_pages.py).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import conftest
from streamlit.testing.v1 import AppTest

from lamp_core import figures, lesson, references
from lamp_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig, run_key

APP = Path(__file__).resolve().parent.parent / "app"
sys.path.insert(0, str(APP))                     # app/results.py, as the pages import it
import results  # noqa: E402

SIZES = lesson.BATCH_SIZES
TINY = RunConfig(data=DataConfig(image_size=16), model=ModelConfig(width=4, latent_channels=4),
                 train=TrainConfig(epochs=2, batch_size=32))
DEADLINE_S = 120


def page(cfg: RunConfig | None = TINY, seeds: int | None = None) -> AppTest:
    at = AppTest.from_file(str(APP / "app_pages" / "batch_size.py"), default_timeout=90)
    if cfg is not None:
        at.session_state["config"] = cfg.to_dict()
    if seeds is not None:
        at.session_state["seeds"] = seeds
    return at


def run_until(at: AppTest, done, what: str, deadline_s: float = DEADLINE_S) -> AppTest:
    return conftest.run_until(at, done, what, deadline_s)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def figure(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


@pytest.fixture(autouse=True)
def _close_queues():
    """Stop whatever a test left running, so tests never compete for the CPU."""
    yield
    from lamp_core import jobs
    jobs.close_all(timeout=30)


# ----------------------------------------------------------------------------- configs

def test_both_modes_build_the_lessons_configs_at_every_size():
    at = page(seeds=2).run()
    assert not at.exception
    assert at.radio(key="bs_mode").value == "same_epochs"           # the paper's setting by default
    n_train = lesson.train_images(TINY)
    epochs_plan = at.session_state["bs_plan"]
    for b in SIZES:
        want = results.seed_configs(TINY.with_train(batch_size=b), 2)
        assert epochs_plan[b]["keys"] == {n: [run_key(c) for c in cs] for n, cs in want.items()}
        assert epochs_plan[b]["epochs"] == TINY.train.epochs
        assert epochs_plan[b]["steps"] == lesson.steps_per_epoch(n_train, b) * TINY.train.epochs
    assert "Same epochs: every size trains 2 epochs" in texts(at)
    at.radio(key="bs_mode").set_value("same_steps").run()
    assert not at.exception
    steps_plan = at.session_state["bs_plan"]
    target = lesson.steps_per_epoch(n_train, TINY.train.batch_size) * TINY.train.epochs
    for b in SIZES:
        p = steps_plan[b]
        want = results.seed_configs(lesson.batch_size_config(TINY, b, "same_steps", n_train=n_train), 2)
        assert p["keys"] == {n: [run_key(c) for c in cs] for n, cs in want.items()}
        # the least whole number of epochs that reaches the target: equal steps wherever an epoch
        # is not already longer than the target
        assert p["steps"] >= target and (p["epochs"] == 1 or p["steps"] - p["per_epoch"] < target)
        if p["per_epoch"] <= target and target % p["per_epoch"] == 0:
            assert p["steps"] == target
    assert {steps_plan[b]["steps"] for b in (32, 1024)} == {target}
    assert steps_plan[1024]["epochs"] > TINY.train.epochs
    # the mode is part of each size's run identity (the page's own size is the same run in both)
    assert steps_plan[1024]["keys"] != epochs_plan[1024]["keys"]
    assert steps_plan[32]["keys"] == epochs_plan[32]["keys"]
    assert f"every size gets the {target} steps that batch 32 takes in 2 epochs" in texts(at)
    table = at.dataframe[0].value
    assert list(table["batch"]) == list(SIZES) and list(table["steps"]) == [steps_plan[b]["steps"] for b in SIZES]


def test_a_fresh_page_looks_for_train_and_compares_default_runs():
    """Untouched widgets in a fresh session: batch 32, same epochs, the exercise's seeds give the
    very run keys of Train & compare's default comparison, so its runs show here as finished."""
    at = page(cfg=None).run()
    assert not at.exception
    assert at.select_slider(key="bs").value == 32 and at.radio(key="bs_mode").value == "same_epochs"
    default = results.seed_configs(lesson.DEFAULT_CONFIG, 3)
    assert at.session_state["bs_plan"][32]["keys"] == {n: [run_key(c) for c in cs] for n, cs in default.items()}
    assert lesson.DEFAULT_SEEDS == 3 and at.session_state["seeds"] == 3


def test_the_cost_of_every_size_is_quoted_only_when_measured(monkeypatch):
    at = page(cfg=None).run()
    plan = at.session_state["bs_plan"]
    monkeypatch.setattr(lesson, "load_expected", lambda path=None: None)
    at.run()
    assert "measured by" not in texts(at)
    recorded = {"same_epochs": {str(b): {"config": lesson.batch_size_config(lesson.DEFAULT_CONFIG, b).to_dict(),
                                         "seeds": [0, 1, 2], "steps": plan[b]["steps"]} for b in SIZES},
                "wall_seconds": {"same_epochs": 250.0}}
    monkeypatch.setattr(lesson, "load_expected", lambda path=None: {"batch_size": recorded})
    at.run()
    assert "about 4 min on the lab's 2-core CPU, measured by `lamp lesson measure`" in texts(at)
    at.radio(key="bs_mode").set_value("same_steps").run()          # not recorded for this mode: silence
    assert "measured by" not in texts(at)


# ----------------------------------------------------------------------------- training a size

def test_training_a_size_shows_mean_and_spread_over_the_seeds():
    at = page(TINY.with_train(epochs=1), seeds=3)
    at.session_state["bs_landscape"] = False          # runs only: contours are tested on their page
    at.run()
    assert "has not been trained" in texts(at)
    at.select_slider(key="bs").set_value(128).run()
    at.button(key="train_bs").click()
    run_until(at, lambda a: not a.session_state["_busy_batch"] and 128 in a.session_state["bs_jobs"]
              and "3 of 3 seeds" in texts(a), "batch 128 over 3 seeds")
    assert "✓ base @ 128: 3 of 3 seeds" in texts(at) and "✓ LAMP @ 128: 3 of 3 seeds" in texts(at)
    fig = figure(at)
    quick = {t["name"]: t for t in fig["data"] if t["name"] in ("base", "LAMP")}
    assert set(quick) == {"base", "LAMP"}
    for t in quick.values():
        assert t["x"] == [128] and t["customdata"] == [3] and t["text"] == ["n=3"]
        assert t["error_y"]["visible"] and t["error_y"]["array"][0] > 0      # the spread of 3 seeds
    row = at.dataframe[0].value.set_index("batch").loc[128]
    assert " ± " in row["base AUROC"] and row["base AUROC"].endswith("(n=3/3)")
    assert row["Δ LAMP − base [95% CI]"].count("[") == 1
    assert "± one standard deviation over them" in texts(at)
    assert "not a finding" in texts(at)


def test_the_references_are_drawn_with_labels():
    at = page().run()
    fig = figure(at)
    conv = references.converged_table1()
    label = "lab, converged ({} images, {} epochs, {} classes)".format(
        conv[32]["max_train"], conv[32]["epochs"], conv[32]["classes"])
    names = {t["name"]: t for t in fig["data"]}
    assert {f"{label}: L2", f"{label}: L2-LAMP", "paper: L2", "paper: L2-LAMP"} <= set(names)
    assert names[f"{label}: L2"]["line"]["dash"] != names["paper: L2"]["line"]["dash"]
    assert names[f"{label}: L2"]["y"][names[f"{label}: L2"]["x"].index(32)] == pytest.approx(conv[32]["l2"])
    assert fig["layout"]["xaxis"]["tickvals"] == list(SIZES)
    assert "average over every digit as the normal class" in texts(at) and f"over {conv[32]['classes']} classes" in texts(at)


# ----------------------------------------------------------------------------- the figure

ROWS = [{"batch_size": b, "name": n, "auroc": a} for b in (4, 32) for n, base in (("base", 0.8), ("LAMP", 0.82))
        for a in (base - 0.02, base, base + 0.03)]
REFS = {"lab, converged": {"L2": {b: (0.93, 0.004) for b in SIZES}, "L2-LAMP": {b: (0.935, 0.003) for b in SIZES}},
        "paper": {"L2": {b: (0.92,) for b in SIZES}, "L2-LAMP": {b: (0.93,) for b in SIZES}}}


def test_auroc_vs_batch_ticks_at_every_size_trained():
    fig = figures.fig_auroc_vs_batch(ROWS, selected=32, sizes=SIZES)
    assert list(fig.layout.xaxis.tickvals) == [1, 4, 16, 32, 128, 1024]
    assert list(fig.layout.xaxis.ticktext) == ["1", "4", "16", "32", "128", "1024"]
    assert fig.layout.xaxis.type == "log"
    more = figures.fig_auroc_vs_batch(ROWS + [{"batch_size": 1024, "name": "base", "auroc": 0.6}], sizes=SIZES)
    assert list(more.layout.xaxis.range) == list(fig.layout.xaxis.range)   # the axis does not move


def test_auroc_vs_batch_error_bars_and_n():
    fig = figures.fig_auroc_vs_batch(ROWS, sizes=SIZES, show_n=True)
    base = next(t for t in fig.data if t.name == "base")
    vals = [0.78, 0.8, 0.83]
    assert list(base.x) == [4, 32] and np.allclose(base.y, np.mean(vals))
    assert base.error_y.visible and base.error_y.array[0] == pytest.approx(np.std(vals, ddof=1))
    assert list(base.customdata) == [3, 3] and list(base.text) == ["n=3", "n=3"]
    ci = figures.fig_auroc_vs_batch(ROWS, sizes=SIZES, spread="ci95")
    half = next(t for t in ci.data if t.name == "base").error_y.array[0]
    assert half == pytest.approx(4.302653 * np.std(vals, ddof=1) / np.sqrt(3), rel=1e-4)
    with pytest.raises(ValueError, match="unknown spread"):
        figures.fig_auroc_vs_batch(ROWS, spread="sem")


def test_auroc_vs_batch_reference_traces_are_named_and_distinct():
    fig = figures.fig_auroc_vs_batch(ROWS, sizes=SIZES, references=REFS)
    names = [t.name for t in fig.data]
    assert names == ["base", "LAMP", "lab, converged: L2", "lab, converged: L2-LAMP", "paper: L2", "paper: L2-LAMP"]
    by = {t.name: t for t in fig.data}
    dashes = {by["base"].line.dash, by["lab, converged: L2"].line.dash, by["paper: L2"].line.dash}
    assert len(dashes) == 3 and {"dash", "dot"} <= dashes                   # solid, dashed, dotted
    assert by["lab, converged: L2"].error_y.array[0] == pytest.approx(0.004)
    assert by["paper: L2"].error_y.array is None                           # the paper gives no spread
    assert by["lab, converged: L2-LAMP"].line.color == figures.COLORS["LAMP"]
    assert by["lab, converged: L2"].line.color == figures.COLORS["base"]
    assert list(fig.layout.xaxis.tickvals) == list(SIZES)


def test_batch_1024_quotes_the_batch_size_study():
    """At batch 1024 the page's reference is the study on whole classes, not the converged Table 1's
    20 full-batch steps (issue 20): its numbers, its sentence, and no Table 1 point there."""
    study = references.batch_size_study()
    at = page().run()
    fig = figure(at)
    names = {t["name"]: t for t in fig["data"]}
    v = study["paper_level"][1024]
    trace = names["study, the paper's regime: L2"]
    assert trace["x"] == [1024] and trace["y"][0] == pytest.approx(v["l2"])
    assert names["study, the paper's regime: L2-LAMP"]["y"][0] == pytest.approx(v["lamp"])
    conv_label = next(n for n in names if n.startswith("lab, converged") and n.endswith(": L2"))
    assert 1024 not in names[conv_label]["x"] and 128 in names[conv_label]["x"]
    words = texts(at)
    assert "bench/results/batch_size_study.md" in words
    assert references.study_regime_sentence("paper_level", 1024, v, references.paper_table1()[1024]) in words
    assert "not the paper's regime" in words
