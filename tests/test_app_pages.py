"""Every page of the app under Streamlit's AppTest, on the default digits data with tiny settings.

AppTest does not fire `st.fragment(run_every=...)` timers, so background work is followed by
calling `at.run()` in a loop until a deadline, as a browser's timer would.
"""
from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest

import conftest
from streamlit.testing.v1 import AppTest

from lamp_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

APP = Path(__file__).resolve().parent.parent / "app"
PAGES = ["loss_curves", "train_compare", "landscape", "batch_size", "your_data", "guide"]
TINY = RunConfig(data=DataConfig(image_size=16), model=ModelConfig(width=4, latent_channels=4),
                 train=TrainConfig(epochs=2, batch_size=32))
DEADLINE_S = 90


def page(name: str, cfg: RunConfig | None = TINY) -> AppTest:
    at = AppTest.from_file(str(APP / "app_pages" / f"{name}.py"), default_timeout=60)
    if cfg is not None:
        at.session_state["config"] = cfg.to_dict()
    return at


def run_until(at: AppTest, done, what: str, deadline_s: float = DEADLINE_S) -> AppTest:
    return conftest.run_until(at, done, what, deadline_s)


def server_queue():
    """The app's job queue for this test's run store (the pages' `lab_state.queue()`)."""
    from lamp_core.jobs import _QUEUES
    from lamp_core.store import default_root
    return next((q for q in list(_QUEUES) if q.store.root == default_root() and not q._closed), None)


def assert_nothing_queued() -> None:
    q = server_queue()
    if q is not None:
        assert not q.jobs(session=None) or all(v.cached for v in q.jobs(session=None)), \
            [v.label for v in q.jobs(session=None)]
        assert not q.slices


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.subheader]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("name", PAGES)
def test_every_page_runs_on_its_own_and_queues_nothing(name):
    at = page(name, cfg=None).run()              # the default: offline MNIST, 3 seeds
    assert not at.exception
    assert not at.error
    assert at.title[0].value
    at.run()
    assert_nothing_queued()


def test_the_default_is_offline_mnist_with_three_seeds():
    at = page("train_compare", cfg=None).run()
    assert at.selectbox(key="source").value == "mnist"
    assert at.selectbox(key="idx_mnist").value.startswith("offline subset")
    assert at.session_state["seeds"] == 3
    assert "MNIST subset, normal 8" in texts(at)


def test_every_widget_has_help_text():
    for name in PAGES:
        at = page(name).run()
        widgets = [*at.selectbox, *at.number_input, *at.slider, *at.select_slider, *at.checkbox,
                   *at.radio, *at.toggle, *at.button]
        missing = [w.label for w in widgets if not w.help]
        assert not missing, f"{name}: widgets without help: {missing}"


# widget label -> the option it sets: its bounds and help come from lamp_core.config's spec
SPEC_WIDGETS = {
    "train_compare": {"Image size (px)": "data.image_size", "Max training images (empty: all)": "data.max_train",
                      "Max test images (empty: all)": "data.max_test", "Latent channels": "model.latent_channels",
                      "Normal class": "data.normal_class", "Epochs": "train.epochs", "ε": "train.eps",
                      "Optimizer": "train.optimizer", "Base loss": "train.base_loss"},
    "landscape": {"Metric": "landscape.metric", "BatchNorm": "landscape.bn_mode", "Direction seed": "landscape.seed"},
    "your_data": {"Image size (px)": "data.image_size"},
}


@pytest.mark.parametrize("name", list(SPEC_WIDGETS))
def test_widgets_take_bounds_choices_and_help_from_the_option_specs(name):
    from lamp_core.config import option_spec
    at = page(name, cfg=None).run()
    seen = set()
    for w in [*at.number_input, *at.selectbox, *at.radio]:
        option = SPEC_WIDGETS[name].get(w.label)
        if option is None:
            continue
        seen.add(w.label)
        spec = option_spec(option)
        assert w.help.lower().startswith(spec.help.lower()), (w.label, w.help)
        if hasattr(w, "options") and spec.choices:
            assert {str(o).lower() for o in w.options} == {str(c) for c in spec.choices}, w.label   # (shown upper-case)
        elif hasattr(w, "options"):                        # a number as a choice: the spec's range
            assert [int(o) for o in w.options] == list(range(int(spec.min), int(spec.max) + 1)), w.label
        else:                                              # a closed bound is the spec's own
            if spec.min is not None and not spec.min_open and spec.min:
                assert w.min == spec.min or w.min > spec.min, w.label   # the same, or narrower and said why
            if spec.max is not None and not spec.max_open:
                assert w.max == spec.max, w.label
            if option in ("data.image_size", "data.max_train", "data.max_test", "model.latent_channels"):
                assert w.min == spec.min, w.label
    assert seen == set(SPEC_WIDGETS[name]), set(SPEC_WIDGETS[name]) - seen


def test_entry_script_opens_on_loss_curves_and_switches_pages():
    at = AppTest.from_file(str(APP / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Loss curves"
    at.switch_page(str(APP / "app_pages" / "guide.py")).run()
    assert not at.exception and at.title[0].value == "Lab guide"
    # the teacher notes are not on the students' page (a TEACHER=1 server offers them: test_lesson.py)
    labels = [b.label for b in at.get("download_button")]
    assert "Download the guide (Markdown)" in labels
    assert not any("teacher" in lab.lower() for lab in labels)


def test_page_runs_do_not_grow_sys_path():
    """Streamlit runs the entry script and the page again on every rerun; each put app/ on
    sys.path once more, so a class's server grew it by an entry per page run (a forkserver
    started after an hour got thousands, and every import that misses sys.modules scans them)."""
    import sys
    at = AppTest.from_file(str(APP / "streamlit_app.py"), default_timeout=60).run()
    at.switch_page(str(APP / "app_pages" / "guide.py")).run()
    before = len(sys.path)
    for _ in range(3):
        at.run()
    assert not at.exception
    assert len(sys.path) == before          # (other tests may have put app/ there too: count the growth)


def test_loss_curves_controls_change_the_figure():
    at = page("loss_curves").run()
    assert len(at.get("plotly_chart")) == 1
    assert len(at.latex) == 2
    before = at.get("plotly_chart")[0].proto.spec
    at.select_slider[0].set_value(0.3).run()
    assert not at.exception
    assert at.get("plotly_chart")[0].proto.spec != before
    at.toggle(key="log_grad").set_value(True).run()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(ax.get("type") == "log" for k, ax in fig["layout"].items() if k.startswith("yaxis"))


def test_loss_curves_statements_match_the_losses():
    """The page's claims are computed from lamp_core.losses; check them against the curves."""
    import numpy as np

    from lamp_core.config import DEFAULT_EPS
    from lamp_core.losses import loss_curves
    at = page("loss_curves").run()                       # opens at the training default eps
    assert at.select_slider[0].value == DEFAULT_EPS
    at.select_slider[0].set_value(0.01).run()           # range ±1
    c = loss_curves("l2", eps=0.01, max_over="fixed")
    b, lamp = np.asarray(c["base"]), np.asarray(c["lamp"])
    cross = b[(b > 0) & (lamp < b)].max()
    assert 0.015 < cross < 0.025 and (lamp[b > 0.03] > b[b > 0.03]).all()
    text = texts(at)
    assert f"below about {cross:.2g}" in text and "below about 0.02" in text
    assert "identical curves" in text                    # fixed and sample coincide at ±1 ...
    same = [loss_curves(n, eps=0.01, max_over=m)["lamp"] for n in ("l1", "l2") for m in ("fixed", "sample")]
    assert np.allclose(same[0], same[1]) and np.allclose(same[2], same[3])
    # the gradient: base gradient x (1 - eps) / max(B) / (1 - B')
    g_ratio = np.asarray(c["lamp_grad"])[b > 0] / np.asarray(c["base_grad"])[b > 0]
    assert np.allclose(g_ratio, 0.99 / (1 - 0.99 * b[b > 0]))
    assert "frac{1-\\epsilon}{\\max B}" in text
    at.select_slider[0].set_value(0.5).run()            # ... and at eps 0.5 LAMP is below everywhere
    c5 = loss_curves("l2", eps=0.5, max_over="fixed")
    assert (np.asarray(c5["lamp"]) <= np.asarray(c5["base"]) + 1e-12).all()
    assert "on the whole range" in texts(at)
    at.slider[0].set_value(0.5).run()                   # a smaller range: the two readings part
    assert "identical curves" not in texts(at) and "amplifies more" in texts(at)


def test_loss_curves_text_follows_the_sample_reading():
    """Choosing *sample* in "Max taken over" used to leave the text at "With the fixed bound…"."""
    at = page("loss_curves").run()
    import results                                       # app/ is on the path once a page has run
    assert "With the fixed bound" in texts(at)
    at.radio[0].set_value("sample").run()
    at.slider[0].set_value(0.5).run()
    eps = at.select_slider[0].value
    text = texts(at)
    assert "With the fixed bound" not in text and "With *sample*" in text
    assert results.lamp_vs_base_sentence(eps, "sample", 0.5) in text          # the sample curves' numbers


def _unavailable_source(at: AppTest, source: str) -> str:
    """Choose a data source, then the one message the page gives: no error, no "None", and no
    Train button (nor the rest of the page) while the data is missing."""
    at.selectbox(key="source").set_value(source).run()
    assert not at.exception and not at.error
    shown = [m.value for m in [*at.info, *at.warning]]
    assert len(shown) == 1, shown
    helps = [w.help or "" for w in [*at.selectbox, *at.number_input, *at.button]]
    assert "None" not in texts(at) and not any("None" in h for h in helps)
    assert not any(b.key in ("train", "train_stale") for b in at.button)
    assert not any(s.value == "Training" for s in at.subheader)
    return shown[0]


def test_unavailable_data_sources_say_once_what_is_missing(monkeypatch, tmp_path):
    """Fashion-MNIST without files or network, MVTec without a data root: one message naming
    what is missing and how to get it, instead of six identical run errors after Train."""
    import torchvision

    if (APP.parent / "data").is_dir():
        pytest.skip("a data/ folder beside the app stands in for LAMP_DATA_ROOT")
    monkeypatch.delenv("LAMP_DATA_ROOT", raising=False)
    at = page("train_compare").run()
    msg = _unavailable_source(at, "fashion-mnist")
    assert "Fashion-MNIST needs its IDX files" in msg and "LAMP_DATA_ROOT" in msg and "network" in msg
    msg = _unavailable_source(at, "mvtec")
    assert "needs a data root" in msg and "LAMP_DATA_ROOT" in msg and "train/good/" in msg

    # a download that cannot reach the network ends in one line naming the fix
    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    _unavailable_source(at, "fashion-mnist")
    at.button(key="download_idx").click().run()
    assert not at.exception and len(at.error) == 1 and "LAMP_DATA_ROOT" in at.error[0].value
    assert not any(b.key == "train" for b in at.button)

    # a data root without the data: the message names that folder
    monkeypatch.setenv("LAMP_DATA_ROOT", str(tmp_path))
    at = page("train_compare").run()
    assert f"none under the data root {tmp_path}" in _unavailable_source(at, "fashion-mnist")
    assert str(tmp_path) in _unavailable_source(at, "mvtec")


def _done_comparison(at: AppTest) -> bool:
    return any(s.value == "Detection" for s in at.subheader)


def test_train_compare_background_run_to_completion():
    at = page("train_compare")
    at.session_state["seeds"] = 1
    at.run()
    assert_nothing_queued()
    at.button(key="train").click()
    run_until(at, _done_comparison, "the comparison to finish")
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"base AUROC", "LAMP AUROC"}
    for v in metrics.values():
        assert 0.0 <= float(v) <= 1.0
    assert len(at.get("plotly_chart")) >= 4          # history, ROC, histograms, confusion, grid
    rows = at.dataframe[0].value
    assert list(rows["loss"]) == ["base", "LAMP"] and set(rows["epochs"]) == {2}
    # shown metrics first (column_order), so AUROC is on screen without scrolling sideways, and
    # every column of the rows is shown
    shown = list(at.dataframe[0].proto.column_order)
    assert shown[:3] == ["loss", "seed", "auroc"] and set(shown) == set(rows.columns)
    # no degenerate F1-max (≈0.947 for any model with 90% anomalous test images): the F1 at the
    # slider's starting threshold instead, and what it and average precision mean
    assert "f1_max" not in rows.columns and rows["f1_at_normal_p95"].between(0, 1).all()
    assert "f1_at_normal_p95" in texts(at) and "not 0.5" in texts(at)
    # the one-run figures say which seed they show; the threshold line is in the legend
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [(f["layout"].get("title") or {}).get("text", "") for f in specs]
    assert "Anomaly scores · seed 0" in titles and "At the threshold · seed 0" in titles
    assert any(t.get("name") == "threshold (95th percentile of normal)" for f in specs for t in f["data"])
    assert "Models of seed 0." in texts(at)
    # the threshold slider redraws the confusion matrices
    at.slider(key="threshold").set_value(60.0).run()
    assert not at.exception
    # pressing Train again: the same finished jobs, shown at once, nothing trained twice
    ids = at.session_state["compare"]["ids"]
    at.button(key="train").click().run()
    assert at.session_state["compare"]["ids"] == ids and _done_comparison(at)


def test_a_fragment_rerun_starts_its_runner_behind_the_finished_runs_events():
    """The session's last runner has stopped, but the end of its run (elements, auto_rerun,
    script_finished) still waits on the event loop: a fragment's rerun starts its new runner after
    them, so they reach the browser (Streamlit ignores a replaced runner's events)."""
    import asyncio
    from types import SimpleNamespace
    lab_state = conftest.import_lab_state()
    loop = asyncio.new_event_loop()
    try:
        calls = []
        create = lab_state.start_fragment_runners_late(lambda session, data: calls.append(("new runner", data.fragment_id)))
        stopped_runner = SimpleNamespace(request_rerun=lambda data: False)
        session = SimpleNamespace(_scriptrunner=stopped_runner, _event_loop=loop, _state=None)
        loop.call_soon(lambda: calls.append("the finished run's last messages"))
        create(session, SimpleNamespace(fragment_id="poll"))
        assert calls == []                            # not at once, as Streamlit would
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert calls == ["the finished run's last messages", ("new runner", "poll")]
        # a full rerun, or a session without a runner, starts at once as before
        calls.clear()
        create(session, SimpleNamespace(fragment_id=None))
        create(SimpleNamespace(_scriptrunner=None, _event_loop=loop), SimpleNamespace(fragment_id="poll"))
        assert calls == [("new runner", None), ("new runner", "poll")]
        # a newer runner (a full rerun came in meanwhile) takes the fragment's rerun itself
        calls.clear()
        taken = []
        create(session, SimpleNamespace(fragment_id="poll"))
        session._scriptrunner = SimpleNamespace(request_rerun=lambda data: taken.append(data.fragment_id) or True)
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert calls == [] and taken == ["poll"]
    finally:
        loop.close()
    # the server applies it once, on the first page view
    lab_state._deliver_finished_runs_first()
    from streamlit.runtime.app_session import AppSession
    assert AppSession._create_scriptrunner.lamp_deferred


def test_a_page_that_lost_its_poll_timer_is_rerun_by_the_sidebar():
    """Under load Streamlit can drop the end of a full run (its `auto_rerun` message among it),
    so the page never polls again and freezes on its progress view (bench/class_soak.py). The
    page's run marks that it started polling; the sidebar's own polling fragment reruns the page
    once neither the page's fragment nor a full run has run for STALL_S."""
    lab_state = conftest.import_lab_state()
    at = page("train_compare")
    at.session_state["seeds"] = 1
    at.run()
    assert not at.session_state["_page_polls"]        # nothing to poll: no watchdog
    at.button(key="train").click().run()
    assert at.session_state["_page_polls"]            # this run started the page's polling
    ss = {k: at.session_state[k] for k in ("_page_polls", "_full_run_at")}
    now = ss["_full_run_at"]
    assert not lab_state.poll_stalled(ss, now + 1.0)
    assert lab_state.poll_stalled(ss, now + lab_state.STALL_S + 0.1)
    assert not lab_state.poll_stalled({**ss, "_polled_at": now + lab_state.STALL_S}, now + lab_state.STALL_S + 0.1)
    run_until(at, _done_comparison, "the comparison to finish")
    at.run()
    assert not at.session_state["_page_polls"]        # finished: the page polls no more


def test_train_compare_several_seeds_report_spread():
    at = page("train_compare", TINY.with_train(epochs=1)).run()
    at.session_state["seeds"] = 2
    at.run()
    at.button(key="train").click()
    run_until(at, _done_comparison, "two seeds to finish")
    assert all("± " in m.value and "(n=2)" in m.value for m in at.metric)
    assert len(at.dataframe[0].value) == 4


def test_results_say_when_the_settings_have_changed():
    at = page("train_compare")
    at.session_state["seeds"] = 1
    at.run()
    at.button(key="train").click()
    run_until(at, _done_comparison, "the comparison to finish")
    assert not at.warning
    at.selectbox(key="source").set_value("digits")
    at.run()
    at.selectbox[1].set_value(3).run()                    # the normal class: 8 -> 3
    notices = [w.value for w in at.warning if "results below are for" in w.value]
    assert len(notices) == 1 and "normal 8" in notices[0]
    assert _done_comparison(at)                           # the old results stay, under the notice
    at.button(key="train_stale").click()
    run_until(at, lambda a: _done_comparison(a) and not a.warning, "the new settings to finish")
    assert at.session_state["config"]["data"]["normal_class"] == 3


def test_train_compare_stop():
    at = page("train_compare", TINY.with_train(epochs=400))
    at.session_state["seeds"] = 1
    at.run()
    at.button(key="train").click().run()
    run_until(at, lambda a: any(b.key == "stop" for b in a.button), "the Stop button")
    at.button(key="stop").click()
    run_until(at, lambda a: "Stopped or failed" in texts(a), "the stop", deadline_s=30)
    assert not any(s.value == "Detection" for s in at.subheader)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
    return buf.getvalue()


def test_your_data_upload_errors_are_shown_in_the_page():
    at = page("your_data").run()
    at.file_uploader[0].set_value(("bad.zip", _zip({"pictures/a.txt": b"hello"}), "application/zip")).run()
    assert not at.exception
    assert at.error and "no known layout" in at.error[0].value and "bad.zip" in at.error[0].value
    at.file_uploader[0].set_value(("broken.zip", b"this is not a zip", "application/zip")).run()
    assert not at.exception and at.error and "zip" in at.error[0].value
    assert "upload" not in at.session_state


def test_your_data_example_zip_report_then_train(tmp_path):
    example = APP.parent / "assets" / "example_upload.zip"
    at = page("your_data").run()
    at.number_input(key="up_size").set_value(16)
    at.file_uploader[0].set_value(("example_upload.zip", example.read_bytes(), "application/zip")).run()
    assert not at.exception and not at.error
    m = {x.label: x.value for x in at.metric}
    assert m["train (normal)"] == "60" and m["test normal"] == "20" and m["test anomalous"] == "40"
    assert "README.txt" in texts(at)                  # the skipped non-image is listed
    assert "28x28 L (120)" in texts(at)               # the images as stored, before resizing
    at.button(key="use_upload").click().run()
    up = at.session_state["upload"]
    assert Path(up["path"]).is_file() and up["name"] == "example_upload.zip"
    assert at.session_state["config"]["data"]["dataset"] == "folder"


def test_landscape_page_coarse_then_complete():
    at = page("landscape").run()
    assert_nothing_queued()
    at.select_slider(key="ls_grid").set_value(7)
    at.select_slider(key="ls_images").set_value(16)
    at.button(key="compute").click()
    run_until(at, lambda a: len(a.get("plotly_chart")) == 2 and not a.session_state["_busy_landscape"]
              and a.dataframe, "both surfaces and sharpness", deadline_s=120)
    rows = at.dataframe[0].value
    assert list(rows["loss"]) == ["base", "LAMP"]
    assert (rows["top_eigenvalue"] != 0).all()
    assert "steepest direction" in texts(at) and "all* directions" in texts(at)
    # another grid: the surfaces shown are flagged as other settings', with a button to compute these
    at.select_slider(key="ls_grid").set_value(9).run()
    assert len([w for w in at.warning if "results below are for" in w.value]) == 1
    assert any(b.key == "compute_stale" for b in at.button)


def test_batch_size_trains_only_on_a_click_and_shows_finished_sizes_at_once():
    at = page("batch_size", TINY.with_train(epochs=1))
    at.session_state["bs_landscape"] = False          # runs only: contours are tested on their page
    at.run()
    assert_nothing_queued()
    at.select_slider(key="bs").set_value(16).run()    # dragging queues nothing ...
    at.select_slider(key="bs").set_value(4).run()
    assert_nothing_queued()
    assert "has not been trained" in texts(at)
    at.button(key="train_bs").click().run()           # ... a click does
    run_until(at, lambda a: not a.session_state["_busy_batch"] and 4 in a.session_state["bs_jobs"]
              and len(a.get("plotly_chart")) == 1, "batch 4 to finish")
    n_slices = len(server_queue().slices)
    at.select_slider(key="bs").set_value(16).run()
    assert "has not been trained" in texts(at) and any(b.key == "train_bs" for b in at.button)
    at.button(key="train_bs").click().run()
    run_until(at, lambda a: not a.session_state["_busy_batch"] and 16 in a.session_state["bs_jobs"],
              "batch 16 to finish")
    # back to a finished size: one run of the page shows it, nothing is queued
    n_slices = len(server_queue().slices)
    at.select_slider(key="bs").set_value(4).run()
    assert not at.exception and not at.session_state["_busy_batch"]
    assert len(server_queue().slices) == n_slices
    assert "has not been trained" not in texts(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    xs = {t["name"]: t["x"] for t in fig["data"] if t.get("name") in ("base", "LAMP")}
    assert set(xs) == {"base", "LAMP"}
    assert all({4, 16} <= set(x) for x in xs.values())
    # a new session on the same server sees both sizes at once, from the store, without training
    other = page("batch_size", TINY.with_train(epochs=1))
    other.session_state["bs_landscape"] = False
    other.session_state["bs"] = 16
    other.run()
    assert "from the run store" in texts(other) and len(server_queue().slices) == n_slices


@pytest.fixture(autouse=True)
def _close_queues():
    """Stop whatever a test left running, so tests never compete for the CPU (and the process
    never exits with a worker inside a torch operation)."""
    yield
    from lamp_core import jobs
    jobs.close_all(timeout=30)


def test_uploaded_mvtec_zip_trains_with_pixel_auroc_and_masks(make_layout):
    zpath = make_layout("mvtec", as_zip=True)
    up_page = page("your_data").run()
    up_page.number_input(key="up_size").set_value(16)
    up_page.file_uploader[0].set_value(("mine.zip", zpath.read_bytes(), "application/zip")).run()
    assert not up_page.error and {m.label: m.value for m in up_page.metric}["masks"] == "yes"
    up_page.button(key="use_upload").click().run()
    upload = up_page.session_state["upload"]
    cfg = RunConfig.from_dict(up_page.session_state["config"])
    cfg = RunConfig(data=cfg.data, model=TINY.model, train=TINY.train)
    at = page("train_compare", cfg)
    at.session_state["upload"] = upload
    at.run()
    assert at.selectbox(key="source").value == "folder"
    at.button(key="train").click()
    run_until(at, _done_comparison, "the upload comparison")
    labels = [m.label for m in at.metric]
    assert f"pixel AUROC (seed {cfg.train.seed})" in labels      # the first seed, by its own number
    grid = json.loads(at.get("plotly_chart")[-1].proto.spec)
    assert any(a.get("text") == "mask" for a in grid["layout"]["annotations"])


def test_your_data_refuses_an_upload_over_the_size_limit(monkeypatch):
    monkeypatch.setenv("LAMP_MAX_UPLOAD_MB", "1")
    at = page("your_data").run()
    buf = io.BytesIO()                                          # 2 MiB, stored uncompressed
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("normal/a.png", bytes(range(256)) * 8192)
    at.file_uploader[0].set_value(("big.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception
    assert at.error and "over the 1 MB limit" in at.error[0].value


def test_two_browser_sessions_share_one_job_per_config():
    first, second = page("train_compare"), page("train_compare")
    for at in (first, second):
        at.session_state["seeds"] = 1
        at.run()
    first.button(key="train").click().run()
    second.button(key="train").click().run()
    assert first.session_state["compare"]["ids"] == second.session_state["compare"]["ids"]
    run_until(second, _done_comparison, "the shared comparison")


def test_an_uploads_runs_are_found_after_a_restart(tmp_path):
    """The upload is kept under its content hash beside the store, so its runs keep their keys."""
    import streamlit as st

    from lamp_core import jobs
    example = (APP.parent / "assets" / "example_upload.zip").read_bytes()

    def upload_and_train() -> AppTest:
        up = page("your_data").run()
        up.number_input(key="up_size").set_value(16)
        up.file_uploader[0].set_value(("example_upload.zip", example, "application/zip")).run()
        up.button(key="use_upload").click().run()
        cfg = RunConfig.from_dict(up.session_state["config"])
        at = page("train_compare", RunConfig(data=cfg.data, model=TINY.model, train=TINY.train))
        at.session_state["upload"] = up.session_state["upload"]
        at.session_state["seeds"] = 1
        at.run()
        at.button(key="train").click()
        return at

    first = upload_and_train()
    run_until(first, _done_comparison, "the upload comparison")
    path = first.session_state["upload"]["path"]
    assert Path(path).parent.name == "uploads" and Path(path).stem == __import__("hashlib").sha256(example).hexdigest()
    jobs.close_all(timeout=30)                 # "restart": the queue and its memory are gone
    st.cache_resource.clear()
    again = upload_and_train()
    again.run()
    assert again.session_state["upload"]["path"] == path
    assert _done_comparison(again) and "from the run store" in texts(again)
    assert not server_queue().slices           # nothing trained again
