"""The app's background job queue: sharing, store hits, progress, stop, failures, no Streamlit."""
from __future__ import annotations

import threading
import time

import pytest

from lamp_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lamp_core.jobs import DONE, FAILED, QUEUED, RUNNING, STOPPED, JobQueue
from lamp_core.store import RunStore

TINY = RunConfig(data=DataConfig(image_size=16, max_train=24, max_test=40),
                 model=ModelConfig(width=4, latent_channels=4), train=TrainConfig(epochs=2, batch_size=8))


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"])
    yield q
    q.close()


def test_jobs_and_figures_never_import_streamlit():
    import ast

    import lamp_core.figures
    import lamp_core.jobs
    for mod in (lamp_core.jobs, lamp_core.figures):
        tree = ast.parse(open(mod.__file__).read())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "streamlit"], mod.__name__


def test_run_job_completes_and_identical_configs_share_it(queue):
    a = queue.submit_run(TINY)
    b = queue.submit_run(TINY)
    assert a.id == b.id
    done = queue.wait(a.id, timeout=60)
    assert done.status == DONE and done.progress == 1.0 and not done.cached
    assert 0.0 <= done.result.evaluation.auroc <= 1.0
    assert queue.store.has(TINY)
    # asked again: the same finished job, no new training
    assert queue.submit_run(TINY).id == a.id


def test_finished_run_comes_from_the_store_at_once(tmp_path):
    store = RunStore(tmp_path / "runs")
    q1 = JobQueue(store, devices=["cpu"])
    first = q1.wait(q1.submit_run(TINY).id, timeout=60)
    q1.close()
    q2 = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"])   # a "restarted" server
    try:
        t = time.perf_counter()
        v = q2.submit_run(TINY)
        assert v.status == DONE and v.cached             # done on return: never queued
        assert time.perf_counter() - t < 5
        assert v.result.evaluation.auroc == pytest.approx(first.result.evaluation.auroc)
    finally:
        q2.close()


def test_generic_job_reports_progress_and_partials(queue):
    gate = threading.Event()

    def work(report, should_stop):
        report(0.5, "half", partial_value=41)
        gate.wait(10)
        return 42

    v = queue.submit("k1", work)
    deadline = time.time() + 10
    while queue.get(v.id).progress < 0.5 and time.time() < deadline:
        time.sleep(0.01)
    mid = queue.get(v.id)
    assert mid.status == RUNNING and mid.message == "half" and mid.partial["partial_value"] == 41
    gate.set()
    end = queue.wait(v.id, timeout=10)
    assert end.status == DONE and end.result == 42


def test_cancel_stops_a_running_training_and_a_queued_job(queue):
    slow = TINY.with_train(epochs=500)
    running = queue.submit_run(slow)
    waiting = queue.submit_run(slow.with_train(seed=1))
    deadline = time.time() + 30
    while queue.get(running.id).progress == 0 and time.time() < deadline:
        time.sleep(0.02)
    assert queue.get(waiting.id).status == QUEUED     # one worker: the second waits its turn
    assert queue.cancel(waiting.id)
    assert queue.get(waiting.id).status == STOPPED
    assert queue.cancel(running.id)
    end = queue.wait(running.id, timeout=30)
    assert end.status == STOPPED
    assert end.result.result.stopped and end.result.evaluation is None
    assert not queue.store.has(slow)                  # partial runs are never stored
    # asking again after a stop queues a fresh job
    again = queue.submit_run(slow)
    assert again.id != running.id
    queue.cancel(again.id)


def test_failing_job_reports_one_line_and_worker_survives(queue):
    bad = TINY.with_data(dataset="folder", data_root="/nonexistent/upload.zip")
    v = queue.wait(queue.submit_run(bad).id, timeout=30)
    assert v.status == FAILED and "does not exist" in v.error and "\n" not in v.error
    ok = queue.wait(queue.submit("after", lambda r, s: "fine").id, timeout=10)
    assert ok.status == DONE and ok.result == "fine"


def test_unexpected_exception_is_kept_with_its_type(queue):
    def boom(report, should_stop):
        raise RuntimeError("kaboom")

    v = queue.wait(queue.submit("boom", boom).id, timeout=10)
    assert v.status == FAILED and v.error.startswith("RuntimeError: kaboom")


def test_replaced_stopped_jobs_are_forgotten_beyond_a_cap(queue, monkeypatch):
    import lamp_core.jobs as jobs_mod
    monkeypatch.setattr(jobs_mod, "MAX_REPLACED", 2)
    gate = threading.Event()
    blocker = queue.submit("block", lambda r, s: gate.wait(10))   # keeps the worker busy
    ids = []
    for _ in range(5):
        v = queue.submit("same", lambda r, s: None)
        queue.cancel(v.id)                                          # stopped while queued
        ids.append(v.id)
    gate.set()
    queue.wait(blocker.id, timeout=10)
    kept = [i for i in ids if queue.get(i) is not None]
    assert kept == ids[-3:]        # the current one (last) and the two most recent replaced ones
