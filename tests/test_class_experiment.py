"""The class experiment (lamp_core.class_experiment) and its page: hand-outs over the job queue
without Streamlit (30 sessions fill a 10 × 3 × 2 grid; a cell two sessions hold trains once;
the board's numbers are lamp_core.report's on the same runs), whose runs count, the teacher's
code, and the Class results page under AppTest.

A tiny protocol (built-in digits at 16 px, width 4, one epoch of 24 images) keeps the 120 runs of
the 30-session test to seconds; a gate task holds the single worker where a test needs hand-outs
to happen while nothing has finished.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import conftest

from lamp_core import class_experiment as ce
from lamp_core import report
from lamp_core.config import DataConfig, LampError, ModelConfig, RunConfig, TrainConfig, run_key
from lamp_core.jobs import DONE, JobQueue
from lamp_core.stats import paired
from lamp_core.store import RunStore

TINY = RunConfig(data=DataConfig(dataset="digits", image_size=16, max_train=24, max_test=40),
                 model=ModelConfig(width=4, latent_channels=4), train=TrainConfig(epochs=1, batch_size=8))
APP = Path(__file__).resolve().parent.parent / "app"


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2)
    yield q
    q.close()


@pytest.fixture(autouse=True)
def _close_queues():
    """Stop whatever a test (or a page under AppTest) left running."""
    yield
    from lamp_core import jobs
    jobs.close_all(timeout=30)


def hold_worker(q: JobQueue) -> threading.Event:
    """A task that keeps the only worker busy until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def work(report_fn, should_stop):
        started.set()
        gate.wait(60)
    q.submit(f"gate-{time.monotonic()}", work, session="gatekeeper")
    assert started.wait(10)
    return gate


def wait_all(q: JobQueue, views) -> None:
    for v in views:
        end = q.wait(v.id, timeout=180)
        assert end.status == DONE, (end.label, end.status, end.error)


def all_configs(exp: ce.Experiment) -> list[RunConfig]:
    return [c for cell in exp.cells() for c in exp.configs(cell)]


# ----------------------------------------------------------------------------- the class, on the queue

def test_thirty_sessions_fill_the_grid_once_and_the_board_is_reports_table(queue):
    board = ce.ClassBoard(queue.store)
    exp = ce.Experiment(TINY, tuple(range(10)), (0, 1, 2), (8, 16), start=time.time() - 1)
    board.start(exp)
    sessions = [f"s{i:02d}" for i in range(30)]
    cells = exp.cells()
    assert len(cells) == 60

    # round one, the queue frozen: 30 sessions, 30 different cells, in hand-out order (seed 0 first)
    gate = hold_worker(queue)
    first = {s: board.assign(s, queue) for s in sessions}
    assert list(first.values()) == cells[:30]
    assert all(board.assign(s, queue) == first[s] for s in sessions)        # a session keeps its cell
    views = [v for s in sessions for v in board.train(s, queue)]
    assert Counter(board.coverage(queue).values()) == {ce.RUNNING: 30, ce.MISSING: 30}
    gate.set()
    wait_all(queue, views)
    assert Counter(board.coverage(queue).values()) == {ce.DONE: 30, ce.MISSING: 30}

    # round two, frozen again: each session takes the next cell; then a late session is handed a cell
    # another session holds (every cell is done or handed out), and asks for the same jobs
    gate = hold_worker(queue)
    second = {s: board.assign(s, queue) for s in sessions}
    assert list(second.values()) == cells[30:]
    views = {s: board.train(s, queue) for s in sessions}
    late = board.assign("late", queue)
    assert late == cells[30] and board.cell_of("s00") == late
    late_views = board.train("late", queue)
    assert [v.id for v in late_views] == [v.id for v in views["s00"]]       # one job per run, shared
    gate.set()
    wait_all(queue, [v for vs in views.values() for v in vs])

    cov = board.coverage(queue)
    assert set(cov.values()) == {ce.DONE}
    assert board.assign("s00", queue) is None                               # nothing left to hand out
    assert len(queue.trained) == 120 and set(queue.trained.values()) == {1}  # every run trained once

    # the board's numbers are lamp_core.report's on the same runs
    bd = board.board(queue)
    rows = report.rows_from_store(all_configs(exp), queue.store)
    assert len(rows) == bd.runs == 120
    cs = report.cells(rows, cell_fields=["batch_size"], protocol="test")
    assert [t["batch_size"] for t in bd.table] == [16, 8]
    for t in bd.table:
        c = cs[(t["batch_size"],)]
        assert t["base_auroc"] == pytest.approx(c.base[0], abs=1e-6)
        assert t["base_sd"] == pytest.approx(c.base[1], abs=1e-6)
        assert t["lamp_auroc"] == pytest.approx(c.lamp[0], abs=1e-6)
        assert t["lamp_sd"] == pytest.approx(c.lamp[1], abs=1e-6)
        assert t["delta_pairs"] == pytest.approx(c.paired.mean, abs=1e-6)
        assert t["delta_pairs_lo"] == pytest.approx(c.paired.lo, abs=1e-6)
        assert t["delta_pairs_hi"] == pytest.approx(c.paired.hi, abs=1e-6)
        assert (t["pairs"], t["lamp_wins"]) == (c.paired.n, c.paired.wins) and t["pairs"] == 30
        assert (t["cells_done"], t["cells"], t["digits"], t["seeds"]) == (30, 30, 10, 3)
        # class level by hand: each digit's mean difference over its three seeds, then over digits
        by = {(r["unit"], r["seed"], r["lamp"]): r["auroc"] for r in rows if r["batch_size"] == t["batch_size"]}
        per_digit = [sum(by[(u, s, True)] - by[(u, s, False)] for s in (0, 1, 2)) / 3 for u in map(str, range(10))]
        cl = paired(per_digit)
        assert t["digits_paired"] == 10
        assert t["delta_digits"] == pytest.approx(cl.mean, abs=1e-6)
        assert t["delta_digits_lo"] == pytest.approx(cl.lo, abs=1e-6)
        assert t["verdict"] == report.verdict(c.paired, c.by_unit, unit="digit")
    assert bd.markdown == report.table1_markdown(rows)


def test_only_the_class_runs_count(queue, tmp_path):
    """A run of the grid that finished before the start does not count until a session of the class
    is handed it (the queue never trains a stored run again); other runs are never counted; a reset
    empties the board; a restart keeps the grid and the hand-outs."""
    exp = ce.Experiment(TINY, (3,), (0,), (8,), start=0.0)
    early = list(exp.configs((3, 0, 8)))
    wait_all(queue, queue.submit_runs(early + [TINY.with_train(epochs=2)], session="earlier class"))
    time.sleep(0.05)
    board = ce.ClassBoard(queue.store)
    board.start(ce.Experiment(TINY, (3,), (0,), (8,), start=time.time()))
    assert board.coverage(queue) == {(3, 0, 8): ce.MISSING} and board.counted_configs() == []
    assert board.board(queue).runs == 0 and board.board(queue).table[0]["pairs"] == 0
    assert board.assign("s1", queue) == (3, 0, 8)
    assert board.coverage(queue) == {(3, 0, 8): ce.HANDED}
    n_slices = len(queue.slices)
    views = board.train("s1", queue)
    assert all(v.status == DONE for v in views) and len(queue.slices) == n_slices     # nothing trained
    assert board.coverage(queue) == {(3, 0, 8): ce.DONE}
    assert {run_key(c) for c in board.counted_configs()} == {run_key(c) for c in early}

    again = ce.ClassBoard(RunStore(queue.store.root))                      # a restarted server
    assert again.experiment == board.experiment and again.cell_of("s1") == (3, 0, 8)
    assert again.coverage(queue) == {(3, 0, 8): ce.DONE}
    saved = json.loads((queue.store.root / ce.STATE_NAME).read_text())
    assert saved["experiment"]["digits"] == [3] and "s1" in saved["given"]

    board.reset()
    assert board.coverage(queue) == {(3, 0, 8): ce.MISSING} and board.cell_of("s1") is None
    board.end()
    assert board.experiment is None and not (queue.store.root / ce.STATE_NAME).exists()


def test_a_broken_state_file_is_reported_in_one_line(tmp_path):
    store = RunStore(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / ce.STATE_NAME).write_text("{not json")
    with pytest.warns(UserWarning):
        board = ce.ClassBoard(store)
    assert board.experiment is None and "could not be read" in board.load_error
    assert "\n" not in board.load_error


def test_the_protocol_and_grid_are_checked_with_one_line_each():
    with pytest.raises(LampError, match="digit data set") as e:
        ce.Experiment(TINY.with_data(dataset="folder", data_root="x.zip"), (1,), (0,), (8,), 0.0)
    assert "\n" not in str(e.value)
    with pytest.raises(LampError, match="at least one digit"):
        ce.Experiment(TINY, (), (0,), (8,), 0.0)
    with pytest.raises(LampError, match="digits are 0-9"):
        ce.Experiment(TINY, (11,), (0,), (8,), 0.0)
    with pytest.raises(LampError, match="at least one batch size"):
        ce.Experiment(TINY, (1,), (0,), (), 0.0)
    with pytest.raises(LampError, match="step mode"):
        ce.Experiment(TINY, (1,), (0,), (8,), 0.0, mode="fast")
    exp = ce.lesson_experiment()
    assert len(exp.cells()) == 60 and exp.batch_sizes == (32, 128)
    base, lamp = exp.configs((8, 0, 32))
    # the lesson's default comparison is a cell of the lesson's grid, run key for run key
    from lamp_core import lesson
    assert run_key(base) == run_key(lesson.DEFAULT_CONFIG.with_train(lamp=False, seed=0))
    assert run_key(lamp) == run_key(lesson.DEFAULT_CONFIG.with_train(lamp=True, seed=0))
    assert lesson.exercise("class_experiment").page == "Class results"


def test_the_teacher_is_recognised_by_the_servers_code(monkeypatch):
    monkeypatch.delenv(ce.TEACHER_CODE_ENV, raising=False)
    assert not ce.is_teacher("") and not ce.is_teacher("anything")
    monkeypatch.setenv(ce.TEACHER_CODE_ENV, "owl42")
    assert ce.is_teacher("owl42") and ce.is_teacher(" owl42 ")
    assert not ce.is_teacher("owl") and not ce.is_teacher(None)


def test_table_and_figure_from_rows_match_report_with_partial_data():
    """Rows as report.row_of writes them, some cells missing: the table equals report.cells, the
    class-level interval is stats.paired over per-digit means (report's `by_unit`), and the figure
    draws both with n."""
    exp = ce.Experiment(TINY, (0, 1, 2), (0, 1), (8, 32), 0.0)
    rows = []
    for d in (0, 1, 2):
        for s in (0, 1):
            for b in (8, 32):
                if (d, s, b) == (2, 1, 32):
                    continue                                   # one cell not done yet
                for lamp in (False, True):
                    auroc = 0.8 + 0.03 * d + 0.01 * s + (0.004 * (d + 1) if lamp else 0.0) - 0.001 * (b == 32)
                    rows.append({"batch_size": b, "unit": str(d), "seed": s, "lamp": lamp, "auroc": auroc,
                                 "base_loss": "l2", "val_score": None})
    table = ce.table1(rows, exp, converged={32: {"delta": 0.001, "delta_lo": -0.002, "delta_hi": 0.004, "pairs": 30}},
                      paper={32: {"l2": 0.9, "lamp": 0.91}})
    cs = report.cells(rows, cell_fields=["batch_size"])
    t32 = table[0]
    assert t32["batch_size"] == 32 and t32["pairs"] == cs[(32,)].paired.n == 5
    assert t32["delta_pairs"] == pytest.approx(cs[(32,)].paired.mean, abs=1e-6)
    assert t32["delta_digits"] == pytest.approx(paired([0.004, 0.008, 0.012]).mean, abs=1e-6)
    assert t32["delta_digits_lo"] == pytest.approx(paired([0.004, 0.008, 0.012]).lo, abs=1e-6)
    assert t32["paper_delta"] == pytest.approx(0.01) and t32["converged_pairs"] == 30
    assert table[1]["paper_delta"] is None and table[1]["converged_delta"] is None
    shown = ce.display_table(table)
    assert "(n=5 pairs)" in shown[0]["Δ over pairs [95% CI]"] and "(n=3 digits)" in shown[0]["Δ over digits [95% CI]"]
    assert shown[0]["LAMP wins"] == "5 of 5" and shown[0]["L2 AUROC"].endswith("(n=2 seeds)")
    fig = ce.fig_delta_vs_batch(table)
    names = [t.name for t in fig.data]
    assert names == ["class, over pairs", "class, over digits", "lab, converged", "paper"]
    pairs = fig.data[0]
    assert list(pairs.text) == ["n=5", "n=6"] and pairs.error_y.array[0] > 0
    assert fig.layout.xaxis.type == "log"
    empty = ce.table1([], exp)
    assert all(t["pairs"] == 0 and t["base_auroc"] is None for t in empty)
    assert ce.display_table(empty)[0]["Δ over pairs [95% CI]"] == "–"
    assert empty[0]["verdict"] == report.verdict(paired([]), paired([]), unit="digit")


# ----------------------------------------------------------------------------- the page

def _page():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(str(APP / "app_pages" / "class_results.py"), default_timeout=60)


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.subheader]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


def _store() -> RunStore:
    from lamp_core.store import default_root
    return RunStore(default_root())


def _server_queue():
    from lamp_core.jobs import _QUEUES
    from lamp_core.store import default_root
    return next((q for q in list(_QUEUES) if q.store.root == default_root() and not q._closed), None)


def _widgets(at):
    return [*at.selectbox, *at.number_input, *at.multiselect, *at.radio, *at.toggle, *at.button,
            *at.text_input, *at.get("time_input")]


def test_the_page_without_an_experiment_says_so_and_queues_nothing(monkeypatch):
    monkeypatch.delenv(ce.TEACHER_CODE_ENV, raising=False)
    at = _page().run()
    assert not at.exception and at.title[0].value == "Class results"
    assert "No class experiment is running" in _texts(at)
    assert "Teacher controls are off on this server" in _texts(at)
    assert not [w.label for w in _widgets(at) if not w.help]
    q = _server_queue()
    assert q is None or not q.jobs(session=None)


def _run_until(at, done, what: str, deadline_s: float = 120):
    return conftest.run_until(at, done, what, deadline_s, poll_s=0.3)


def test_two_sessions_are_handed_different_cells_and_the_board_counts_both(monkeypatch):
    monkeypatch.delenv(ce.TEACHER_CODE_ENV, raising=False)
    exp = ce.Experiment(TINY, (0, 1), (0,), (8,), start=time.time() - 1)
    ce.ClassBoard(_store()).start(exp)                # as a teacher's earlier session left it on disk
    a, b = _page().run(), _page().run()
    assert not a.exception and not b.exception
    assert "Your cell: digit 0 · seed 0 · batch 8." in _texts(a)
    assert "Your cell: digit 1 · seed 0 · batch 8." in _texts(b)
    q = _server_queue()
    assert q is None or not q.jobs(session=None)              # arriving hands out a cell, trains nothing
    assert "Teacher" in [e.label for e in a.expander] and not a.get("time_input")   # no teacher controls
    a.button(key="class_train").click().run()
    b.button(key="class_train").click().run()
    _run_until(a, lambda at: "Your cell is done" in _texts(at), "session A's cell")
    _run_until(b, lambda at: "Your cell is done" in _texts(at), "session B's cell")
    a.run()
    metrics = {m.label: m.value for m in a.metric}
    assert metrics["cells done"] == "2 of 2" and metrics["runs counted"] == "4"
    # the board says whether the class's models had finished learning (lamp_core.convergence)
    assert "Batch 8: the models are **" in _texts(a)
    rows = report.rows_from_store(all_configs(exp), _store())
    cs = report.cells(rows, cell_fields=["batch_size"])
    table = a.dataframe[-1].value
    assert table.iloc[0]["Δ over pairs [95% CI]"].startswith(f"{cs[(8,)].paired.mean:+.3f}")
    assert "(n=2 pairs)" in table.iloc[0]["Δ over pairs [95% CI]"]
    fig = json.loads(a.get("plotly_chart")[0].proto.spec)
    assert any(t.get("name") == "class, over pairs" for t in fig["data"])
    labels = [d.label for d in a.get("download_button")]
    assert {"class_table1.csv", "Download class_delta_by_batch_size (HTML)"} <= set(labels)
    # neither page names the other session: only its own cell and the aggregate
    assert b.session_state["_session_id"] not in _texts(a)
    assert "Train the next cell" in [x.label for x in a.button]


def test_the_teacher_code_unlocks_the_controls_that_set_and_reset_the_grid(monkeypatch):
    monkeypatch.setenv(ce.TEACHER_CODE_ENV, "owl42")
    at = _page().run()
    at.text_input(key="class_code").set_value("owl").run()
    at.button(key="class_unlock").click().run()
    assert "not this server's teacher code" in _texts(at) and not at.multiselect
    at.text_input(key="class_code").set_value("owl42").run()
    at.button(key="class_unlock").click().run()
    assert not at.exception and at.multiselect
    assert not [w.label for w in _widgets(at) if not w.help]
    assert "60 cells, 120 runs" in _texts(at)                   # the lesson's grid by default
    at.multiselect(key="class_digits").set_value([2, 5]).run()
    at.number_input(key="class_seeds").set_value(2).run()
    at.multiselect(key="class_sizes").set_value([32]).run()
    assert "4 cells, 8 runs" in _texts(at)
    at.button(key="class_start_btn").click().run()
    assert not at.exception
    exp = ce.ClassBoard(_store()).experiment
    assert (exp.digits, exp.seeds, exp.batch_sizes) == ((2, 5), (0, 1), (32,))
    assert exp.protocol.train.epochs == 5                       # the lesson's default protocol
    assert "Your cell: digit 2 · seed 0 · batch 32." in _texts(at)
    first_start = exp.start
    time.sleep(0.01)
    at.button(key="class_reset").click().run()
    assert ce.ClassBoard(_store()).experiment.start > first_start
    at.multiselect(key="class_digits").set_value([]).run()
    at.button(key="class_start_btn").click().run()
    assert "at least one digit" in _texts(at)
    q = _server_queue()
    assert q is None or not q.jobs(session=None)              # setting up trains nothing
