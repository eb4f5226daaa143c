"""The pure parts of bench/class_soak.py: ETA parsing, the /proc readers, lost/duplicated counts
(no server)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import class_soak as cs  # noqa: E402


@pytest.mark.parametrize("text,want", [
    ("LAMP seed 0: 40% · about 12 s left", 12.0),
    ("base: waiting, position 3 in the queue, done in about 45 s", 45.0),
    ("landscape: 10% · about 2 min left · shared with 1 other session(s)", 120.0),
    ("✓ LAMP @ 32: done", None),
    ("base: queued, position 2", None),
])
def test_parse_eta(text, want):
    assert cs.parse_eta(text) == want


def test_max_eta_takes_the_last_job_to_finish():
    assert cs.max_eta(["a: about 5 s left", "b: done in about 30 s", "c: 10%"]) == 30.0
    assert cs.max_eta(["✓ a: done"]) is None


def test_the_eta_at_submission_ignores_a_fragment_run_from_before_the_click():
    click_run = (100.0, [("progress", "base: done in about 20 s")])
    before = [("progress", "batch 1: about 384 s left")]      # the page before the click showed this
    assert cs.eta_since_click([click_run], before, frag_at=99.0) == 20.0
    # a fragment run that finished after the click's run is the page now: its ETA counts
    assert cs.eta_since_click([click_run], [("progress", "base: about 30 s left")], frag_at=101.0) == 30.0
    # a result from the store: the click's run shows no progress, and the old fragment gives no ETA
    assert cs.eta_since_click([(100.0, [("markdown", "AUROC")])], before, frag_at=99.0) is None
    assert cs.eta_since_click([], before, frag_at=101.0) is None


def test_a_click_shown_done_in_under_a_third_of_its_eta_is_kept_for_a_look():
    soon = cs.Job(0, "batch", 100.0, eta_s=420.0, t_done=107.5, trail=["+0.00 send full +trigger"])
    fair = cs.Job(1, "batch", 100.0, eta_s=20.0, t_done=110.0)
    long_wait = cs.Job(2, "batch", 100.0, eta_s=600.0, t_done=160.0)      # 60 s: a wrong ETA, not a view
    assert [cs.done_too_soon(j) for j in (soon, fair, long_wait)] == [True, False, False]
    assert not cs.done_too_soon(cs.Job(3, "batch", 100.0, t_done=101.0))   # no ETA shown
    got = cs.count_jobs([soon, fair, long_wait])["done_too_soon"]
    assert got == [["session 0 batch: ETA 420 s, done after 7.5 s", "+0.00 send full +trigger"]]


def test_the_view_of_a_page_judged_done_keeps_what_says_where_its_jobs_stand():
    elems = [("markdown", "**LAMP Lab** · loss amplification"), ("markdown", "✓ base: 3 seeds, from the run store"),
             ("alert", "Batch 128 has not been trained with these settings yet"), ("button", "Train batch 128"),
             ("markdown", "$$ eq. 2 $$")]
    assert cs.done_view(elems) == ["markdown: ✓ base: 3 seeds, from the run store",
                                   "alert: Batch 128 has not been trained with these settings yet",
                                   "button: Train batch 128"]


class _Socket:
    """What the soak's client reads: serialized ForwardMsgs, in order."""

    def __init__(self, msgs):
        self.raw = [m.SerializeToString() for m in msgs]

    async def _gen(self):
        for r in self.raw:
            yield r

    def __aiter__(self):
        return self._gen()


def _run(fragments=(), armed=(), elems=(), finished=0):
    """The messages of one script run: new_session, its fragment timers, its elements as
    (root, fragment id, kind, text), script_finished."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    out = [ForwardMsg()]
    out[0].new_session.initialize.session_id = "s"
    out[0].metadata.run.fragment_ids[:] = list(fragments)
    for fid, iv in armed:
        m = ForwardMsg()
        m.auto_rerun.fragment_id, m.auto_rerun.interval = fid, iv
        out.append(m)
    for i, (root, fid, kind, text) in enumerate(elems):
        m = ForwardMsg()
        m.metadata.delta_path[:] = [root, i]
        m.delta.fragment_id = fid
        if kind == "progress":
            m.delta.new_element.progress.text = text
        elif kind == "button":
            m.delta.new_element.button.label, m.delta.new_element.button.id = text, "b-" + text
        else:
            m.delta.new_element.markdown.body = text
        out.append(m)
    end = ForwardMsg()
    end.script_finished = finished
    out.append(end)
    return out


def _read(page, *runs):
    import asyncio
    page.ws = _Socket([m for r in runs for m in r])
    asyncio.run(page._read_messages())


SIDE = (1, "side", "markdown", "Worker: cpu · 9 running · 27 queued")


def test_a_full_run_whose_progress_bars_were_dropped_while_the_page_polls_only_looks_done():
    # the sixth quick soak's landscape click: the full run after the click draws the button and no
    # progress bar (the polling fragment's bars in it were dropped from the send queue when that
    # fragment's next run started), and the fragment's next run draws the queued jobs again
    page = cs.Page("http://localhost:1", 0, [])
    looked = _run(armed=[("side", 1), ("poll", 1)], elems=[SIDE, (0, "", "button", "Compute landscapes")])
    _read(page, looked, _run(fragments=["poll"], elems=[(0, "poll", "progress", "base landscape: waiting, "
                                                                            "position 2 in the queue")], finished=3))
    assert page.sidebar_fragments == {"side"}
    assert cs.page_polls(page.full_runs[0], page.sidebar_fragments) == {"poll"}
    assert cs.page_done_at(page.full_runs, page.frag_runs, page.sidebar_fragments, 0.0) == (None, 1)
    # the page's work ends: the fragment sees it and reruns the page, whose full run stops polling
    _read(page, _run(fragments=["poll"], elems=[(0, "poll", "markdown", "✓ base landscape: done")], finished=2),
          _run(armed=[("side", 5)], elems=[SIDE, (0, "", "button", "Compute landscapes")]))
    shown, looked_done = cs.page_done_at(page.full_runs, page.frag_runs, page.sidebar_fragments, 0.0)
    assert shown is page.full_runs[1] and looked_done == 1


def test_a_full_run_without_progress_that_still_polls_counts_once_the_fragment_agrees():
    page = cs.Page("http://localhost:1", 0, [])
    _read(page, _run(armed=[("side", 1), ("poll", 1)], elems=[SIDE, (0, "", "markdown", "✓ base: done")]))
    # undecided until the polling fragment runs again (the sidebar's runs say nothing about it)
    _read(page, _run(fragments=["side"], elems=[SIDE], finished=3))
    assert cs.page_done_at(page.full_runs, page.frag_runs, page.sidebar_fragments, 0.0) == (None, 0)
    # a run of it whose elements were dropped (cut, nothing drawn) says nothing either
    _read(page, _run(fragments=["poll"], finished=2))
    assert cs.page_done_at(page.full_runs, page.frag_runs, page.sidebar_fragments, 0.0) == (None, 0)
    _read(page, _run(fragments=["poll"], elems=[(0, "poll", "markdown", "✓ base: done")], finished=3))
    assert cs.page_done_at(page.full_runs, page.frag_runs, page.sidebar_fragments, 0.0) == (page.full_runs[0], 0)
    # a run before the click, or one with a progress bar, is not the result
    assert cs.page_done_at(page.full_runs, page.frag_runs, page.sidebar_fragments, page.full_runs[0].t + 1) == (None, 0)
    # the page's next full run before any drawn run of the fragment: the fragment's view never
    # reached the page in between, so that next full run is the one judged (an undecided run
    # held four sessions until the end of a quick soak)
    rerun = cs.Page("http://localhost:1", 2, [])
    _read(rerun, _run(armed=[("side", 1), ("poll", 1)], elems=[SIDE, (0, "", "markdown", "✓ base: done")]),
          _run(fragments=["poll"], finished=2),
          _run(armed=[("side", 5)], elems=[SIDE, (0, "", "markdown", "✓ base: done")]),
          _run(fragments=["side"], elems=[SIDE], finished=3))
    assert cs.page_done_at(rerun.full_runs, rerun.frag_runs, rerun.sidebar_fragments, 0.0) == (rerun.full_runs[1], 0)
    still = cs.Page("http://localhost:1", 3, [])
    _read(still, _run(armed=[("side", 1), ("poll", 1)], elems=[SIDE]),
          _run(armed=[("side", 1), ("poll", 1)], elems=[SIDE, (0, "poll", "progress", "base: 40%")]),
          _run(fragments=["poll"], elems=[(0, "poll", "markdown", "✓ base: done")], finished=3))
    assert cs.page_done_at(still.full_runs, still.frag_runs, still.sidebar_fragments, 0.0) == (None, 1)
    busy = cs.Page("http://localhost:1", 1, [])
    _read(busy, _run(armed=[("side", 1), ("poll", 1)], elems=[SIDE, (0, "poll", "progress", "base: 40%")]))
    assert cs.page_done_at(busy.full_runs, busy.frag_runs, busy.sidebar_fragments, 0.0) == (None, 0)


def test_the_slowdown_compares_the_polled_job_with_both_alone_runs_around_it():
    assert cs.slowdown([4.0, 4.0], [5.0, 5.0], [5.0, 5.0]) == round(10 / 9, 2)
    assert cs.slowdown([4.0, 4.0], [5.0, 5.0], [5.0]) is None          # a run missing after
    assert cs.slowdown([], [5.0], [5.0]) is None


def _fake_proc(tmp: Path, pid: int, ppid: int, rss_kb: int, utime: int, stime: int, comm="py (x) y"):
    d = tmp / str(pid)
    d.mkdir()
    (d / "status").write_text(f"Name:\tpython\nVmPeak:\t999 kB\nVmRSS:\t{rss_kb} kB\nThreads:\t4\n")
    rest = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 30
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + "\n")


def test_proc_readers(tmp_path):
    _fake_proc(tmp_path, 10, 1, 2048, 300, 100)
    _fake_proc(tmp_path, 11, 10, 1024, 50, 50)        # a worker
    _fake_proc(tmp_path, 12, 1, 4096, 0, 0)           # unrelated
    assert cs.read_rss_mb(10, str(tmp_path)) == 2.0
    assert cs.read_rss_mb(99, str(tmp_path)) == 0.0
    assert cs.read_cpu_s(10, str(tmp_path), hz=100) == 4.0
    assert sorted(cs.descendants(10, str(tmp_path))) == [10, 11]
    assert cs.read_pss_mb(10, str(tmp_path)) == 2.0            # no smaps_rollup: VmRSS
    (tmp_path / "11" / "smaps_rollup").write_text("Rss:    1024 kB\nPss:     512 kB\nShared_Clean: 9 kB\n")
    assert cs.read_pss_mb(11, str(tmp_path)) == 0.5
    (tmp_path / "10" / "cmdline").write_bytes(b"python\0-m\0streamlit\0run\0app.py\0")
    (tmp_path / "11" / "cmdline").write_bytes(b"/venv/bin/python\0-c\0from multiprocessing.forkserver import main\0")
    assert cs.parent_of(11, str(tmp_path)) == 10 and cs.parent_of(99, str(tmp_path)) is None
    assert cs.process_name(10, str(tmp_path)) == "server" and cs.process_name(11, str(tmp_path)) == "forkserver"


def test_proc_readers_on_this_process():
    assert cs.read_rss_mb(os.getpid()) > 1
    assert 0 < cs.read_pss_mb(os.getpid()) <= cs.read_rss_mb(os.getpid()) + 1
    assert cs.read_cpu_s(os.getpid()) > 0


def test_store_watcher_counts_a_second_store_of_a_key(tmp_path):
    w = cs.StoreWatcher(tmp_path)
    for key in ("a", "b"):
        (tmp_path / key).mkdir()
        (tmp_path / key / "evaluation.json").write_text("{}")
    (tmp_path / "c").mkdir()                            # incomplete entry: no evaluation yet
    w.scan()
    w.scan()
    assert w.duplicated == 0 and set(w.seen) == {"a", "b"}
    new = tmp_path / "a" / "tmp"                        # the store's atomic rewrite (os.replace)
    new.write_text('{"again": 1}')
    os.replace(new, tmp_path / "a" / "evaluation.json")
    w.scan()
    assert w.duplicated == 1 and w.rewrites == {"a": 1}


def test_count_jobs():
    jobs = [cs.Job(0, "default", 100.0, eta_s=20.0, t_done=120.0),      # exact ETA
            cs.Job(1, "digit", 100.0, eta_s=10.0, t_done=120.0),        # 50% off
            cs.Job(2, "batch", 100.0, t_done=100.2),                    # from the store: no ETA
            cs.Job(3, "stop", 100.0, stopped=True),                     # stopped: not lost
            cs.Job(4, "landscape", 100.0, still_running=True),          # unfinished at the end
            cs.Job(5, "digit", 100.0, eta_stale_ignored=True)]          # vanished
    c = cs.count_jobs(jobs)
    assert c["jobs"] == 6 and c["stopped"] == 1
    assert c["lost"] == 2 and c["lost_unfinished"] == 1 and c["lost_vanished"] == 1
    assert c["eta_samples"] == 2 and c["eta_error_median"] == 0.25
    assert c["eta_stale_fragment_ignored"] == 1
    assert c["eta_and_actual_s"] == [(20.0, 20.0, "default", 0), (10.0, 20.0, "digit", 0)]


def test_verdicts():
    v = cs.verdicts({"lost": 0, "duplicated": 1, "train_slowdown": 1.5, "rss_peak_mb": 900})
    assert v["lost"].startswith("meets") and v["duplicated"].startswith("MISSES")
    assert v["train_slowdown"].startswith("MISSES") and v["rss_peak_mb"].startswith("meets")
    assert v["eta_error_median"] == "n/a"


def test_memory_series_takes_one_sample_a_minute_of_one_kind():
    samples = [(1000.0 + 20 * i, 0.0, 0.0, 0.0, {"server": 500.0 + i, "worker": 9.0}) for i in range(10)]
    # samples every 20 s over 3 minutes: the first, then the first at or after each minute
    assert cs.memory_series(samples, "server") == [[0.0, 500.0], [1.0, 503.0], [2.0, 506.0], [3.0, 509.0]]
    assert cs.memory_series(samples, "forkserver")[0] == [0.0, None]


def test_memory_growth_compares_window_means_not_two_noisy_samples():
    # a flat server whose samples alternate ±15 MB (figures built and dropped), ending on a peak
    flat = [(2.0 * i, 700.0 + (15.0 if i % 2 else -15.0), 0.0, 0.0, {}) for i in range(600)]
    half_t, end_t = 600.0, flat[-1][0]
    assert flat[-1][1] - min(flat, key=lambda x: abs(x[0] - half_t))[1] == 30.0     # the two-sample figure
    w = cs.MEMORY_WINDOW_S
    assert cs.window_mean(flat, end_t - w, end_t) - cs.window_mean(flat, half_t - w / 2, half_t + w / 2) == pytest.approx(0.0, abs=0.5)
    assert abs(cs.slope_per_minute(flat, half_t)) < 0.1
    # a server that leaks 1 MB a minute shows it in both
    leak = [(t, v + t / 60.0, 0.0, 0.0, {}) for t, v, *_ in flat]
    assert cs.slope_per_minute(leak, half_t) == pytest.approx(1.0, abs=0.1)
    grown = cs.window_mean(leak, end_t - w, end_t) - cs.window_mean(leak, half_t - w / 2, half_t + w / 2)
    assert grown == pytest.approx((end_t - w / 2 - half_t) / 60.0, abs=2.0)
    # no sample in a window: the nearest one
    assert cs.window_mean(flat[:3], 100.0, 110.0) == flat[2][1]


def test_memory_by_process_kind_is_averaged_over_the_window():
    samples = [(0.0, 0, 0, 0, {"server": 700.0, "worker": 500.0}), (2.0, 0, 0, 0, {"server": 710.0, "worker": 900.0}),
               (4.0, 0, 0, 0, {"server": 720.0})]                   # a worker restarting: not sampled
    assert cs.window_mean_by_kind(samples, 0.0, 4.0) == {"server": 710.0, "worker": 466.7}
    assert cs.window_mean_by_kind(samples, 10.0, 20.0) == {"server": 720.0}      # nearest sample


def test_slice_idle_counts_only_the_slices_that_found_work_waiting():
    lines = [{"snapshot": 1.0, "first": [1]},                        # other lines of the log
             {"slice": "run", "sent": 10.0, "replied": 12.0, "idle_before": 5.0, "queue_was_empty": True},
             {"slice": "run", "sent": 12.01, "replied": 14.0, "idle_before": 0.01, "queue_was_empty": False},
             {"slice": "surface", "sent": 14.03, "replied": 20.0, "idle_before": 0.03, "queue_was_empty": False}]
    got = cs.slice_idle(lines)
    assert got["slices_with_work_waiting"] == 2 and got["idle_median_ms"] == 20.0 and got["idle_total_s"] == 0.0
    assert got["worker_busy_share"] == pytest.approx((1.99 + 5.97) / (1.99 + 5.97 + 0.04), abs=1e-4)
    assert cs.slice_idle(lines[:2]) == {"slices_with_work_waiting": 0}


def test_a_select_slider_is_found_with_its_options_and_an_int_slider_is_not():
    # st.select_slider arrives as a `slider` element: the soak once looked for a "select_slider"
    # element, never found the batch-size slider, and so trained only the default batch size
    from streamlit.proto.Element_pb2 import Element
    from streamlit.proto.Slider_pb2 import Slider
    page = cs.Page("http://localhost:1", 0, [])
    sizes = Element()
    sizes.slider.label, sizes.slider.id, sizes.slider.type = "Batch size", "bs-id", Slider.SELECT_SLIDER
    sizes.slider.options[:] = ["1", "4", "16", "32", "128", "1024"]
    epochs = Element()
    epochs.slider.label, epochs.slider.id = "Epochs", "ep-id"
    page._element(sizes)
    page._element(epochs)
    assert page.find("select_slider", "Batch size") == {"kind": "select_slider", "id": "bs-id",
                                                        "options": ["1", "4", "16", "32", "128", "1024"]}
    assert page.find("select_slider", "Epochs") is None


@pytest.mark.parametrize("name", ["class_soak", "class_soak_quick", "class_soak_quick_seventh",
                                  "class_soak_quick_eighth", "class_soak_quick_ninth"])
def test_the_readme_quotes_the_recorded_soaks(name):
    # the README's benchmark table states these figures: a rerun that records new ones must
    # update it too
    import json
    repo = Path(__file__).resolve().parent.parent
    res = json.loads((repo / "bench" / "results" / f"{name}.json").read_text())
    readme = (repo / "README.md").read_text(encoding="utf-8")
    label = "| `class_soak --quick`" if res["quick"] else "| `class_soak` ("
    row = next(line for line in readme.splitlines() if line.startswith(label))
    assert f"{res['jobs']} jobs" in row
    assert f"{res['lost']} / {res['duplicated']} / {res['failed']}" in row
    assert f"peak {res['rss_peak_mb']:.0f} MB" in row
    assert f"**{res['rss_growth_last_half_mb']:+.1f} MB**" in row
    assert f"**{res['eta_error_median']:.2f}**" in row


def test_the_recorded_slice_stats_are_what_the_kept_slice_log_gives():
    import json
    repo = Path(__file__).resolve().parent.parent
    got = cs.slice_idle(cs.read_jsonl(repo / "bench" / "results" / "class_soak_quick_fourth_slices.jsonl"))
    md = (repo / "bench" / "results" / "class_soak_slices.md").read_text(encoding="utf-8")
    assert json.dumps(got) in md
    assert f"median {got['idle_median_ms']} ms" in md and f"{100 * got['worker_busy_share']:.1f}%" in md
