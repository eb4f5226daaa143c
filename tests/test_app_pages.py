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
    end = time.time() + deadline_s
    while time.time() < end:
        at.run()
        assert not at.exception, at.exception[0].message
        if done(at):
            return at
        time.sleep(0.4)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.subheader]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("name", PAGES)
def test_every_page_runs_on_its_own(name):
    at = page(name, cfg=None).run()
    assert not at.exception
    assert not at.error
    assert at.title[0].value


def test_every_widget_has_help_text():
    for name in PAGES:
        at = page(name).run()
        widgets = [*at.selectbox, *at.number_input, *at.slider, *at.select_slider, *at.checkbox,
                   *at.radio, *at.toggle, *at.button]
        missing = [w.label for w in widgets if not w.help]
        assert not missing, f"{name}: widgets without help: {missing}"


def test_entry_script_opens_on_loss_curves_and_switches_pages():
    at = AppTest.from_file(str(APP / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Loss curves"
    at.switch_page(str(APP / "app_pages" / "guide.py")).run()
    assert not at.exception and at.title[0].value == "Lab guide"


def test_loss_curves_controls_change_the_figure():
    at = page("loss_curves").run()
    assert len(at.get("plotly_chart")) == 1
    assert len(at.latex) == 2
    before = at.get("plotly_chart")[0].proto.spec
    at.select_slider[0].set_value(0.3).run()
    assert not at.exception
    assert at.get("plotly_chart")[0].proto.spec != before


def _done_comparison(at: AppTest) -> bool:
    return any(s.value == "Detection" for s in at.subheader)


def test_train_compare_background_run_to_completion():
    at = page("train_compare").run()
    at.button(key="train").click()
    run_until(at, _done_comparison, "the comparison to finish")
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"base AUROC", "LAMP AUROC"}
    for v in metrics.values():
        assert 0.0 <= float(v) <= 1.0
    assert len(at.get("plotly_chart")) >= 4          # history, ROC, histograms, confusion, grid
    rows = at.dataframe[0].value
    assert list(rows["loss"]) == ["base", "LAMP"] and set(rows["epochs"]) == {2}
    # the threshold slider redraws the confusion matrices
    at.slider(key="threshold").set_value(60.0).run()
    assert not at.exception
    # pressing Train again: the same finished jobs, shown at once, nothing trained twice
    ids = at.session_state["compare"]["ids"]
    at.button(key="train").click().run()
    assert at.session_state["compare"]["ids"] == ids and _done_comparison(at)


def test_train_compare_several_seeds_report_spread():
    at = page("train_compare", TINY.with_train(epochs=1)).run()
    at.session_state["seeds"] = 2
    at.run()
    at.button(key="train").click()
    run_until(at, _done_comparison, "two seeds to finish")
    assert all("± " in m.value and "(n=2)" in m.value for m in at.metric)
    assert len(at.dataframe[0].value) == 4


def test_train_compare_stop():
    at = page("train_compare", TINY.with_train(epochs=400)).run()
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
    at.select_slider(key="ls_grid").set_value(7)
    at.select_slider(key="ls_images").set_value(16)
    at.button(key="compute").click()
    run_until(at, lambda a: len(a.get("plotly_chart")) == 2 and not a.session_state["_busy_landscape"]
              and a.dataframe, "both surfaces and sharpness", deadline_s=120)
    rows = at.dataframe[0].value
    assert list(rows["loss"]) == ["base", "LAMP"]
    assert (rows["top_eigenvalue"] != 0).all()


def test_batch_size_slider_moves_to_a_finished_size():
    at = page("batch_size", TINY.with_train(epochs=1))
    at.session_state["bs_landscape"] = False          # runs only: contours are tested on their page
    at.session_state["bs"] = 16
    run_until(at, lambda a: not a.session_state["_busy_batch"] and a.session_state["bs_jobs"].get(16)
              and len(a.get("plotly_chart")) == 1, "batch 16 to finish")
    at.select_slider(key="bs").set_value(4)
    run_until(at, lambda a: not a.session_state["_busy_batch"] and 4 in a.session_state["bs_jobs"],
              "batch 4 to finish")
    # back to a finished size: one run of the page shows it, nothing is queued
    at.select_slider(key="bs").set_value(16).run()
    assert not at.exception
    assert not at.session_state["_busy_batch"]
    assert "16" in texts(at) and "✓" in texts(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    xs = {t["name"]: t["x"] for t in fig["data"]}
    assert set(xs) == {"base", "LAMP"}
    assert all({4, 16} <= set(x) for x in xs.values())


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
    assert "pixel AUROC (seed 1)" in labels
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
    first, second = page("train_compare").run(), page("train_compare").run()
    first.button(key="train").click().run()
    second.button(key="train").click().run()
    assert first.session_state["compare"]["ids"] == second.session_state["compare"]["ids"]
    run_until(second, _done_comparison, "the shared comparison")
