"""The app's fair job queue without Streamlit: sharing, store hits, progress, fairness between
sessions, positions and ETAs, the per-session cap, shared Stop, per-run Stop inside a stack, and
nothing lost or trained twice.

Fairness is checked on the order of slices the queue records (`JobQueue.slices`), never on
wall-clock thresholds; a gate task holds the single worker where a test needs a frozen queue.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import replace

import pytest
from conftest import until

from lamp_core.config import DataConfig, LandscapeConfig, ModelConfig, RunConfig, TrainConfig, run_key
from lamp_core.jobs import DONE, FAILED, QUEUED, RUNNING, STOPPED, JobQueue, QueueFull
from lamp_core.store import RunStore

TINY = RunConfig(data=DataConfig(image_size=16, max_train=24, max_test=40),
                 model=ModelConfig(width=4, latent_channels=4), train=TrainConfig(epochs=2, batch_size=8))
LONG = TINY.with_train(epochs=3000)


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2, workers="process")   # as shipped
    yield q
    q.close()


def hold_worker(q: JobQueue):
    """A task that keeps the only worker busy until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def work(report, should_stop):
        started.set()
        gate.wait(30)
    v = q.submit("gate", work, session="gatekeeper")
    assert started.wait(10)
    return gate, v


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
    a = queue.submit_run(TINY, session="A")
    b = queue.submit_run(TINY, session="B")
    assert a.id == b.id and a.key == f"run:{run_key(TINY)}"
    done = queue.wait(a.id, timeout=60)
    assert done.status == DONE and done.progress == 1.0 and not done.cached
    assert 0.0 <= done.result.evaluation.auroc <= 1.0
    assert queue.store.has(TINY)
    assert queue.submit_run(TINY, session="C").id == a.id      # the same finished job, no new training
    # a base run with other (unused) LAMP options is the same run: the store's identity
    assert queue.submit_run(TINY.with_train(eps=0.3)).id == a.id


def test_finished_run_comes_from_the_store_at_once(tmp_path):
    store = RunStore(tmp_path / "runs")
    q1 = JobQueue(store, devices=["cpu"])
    first = q1.wait(q1.submit_run(TINY).id, timeout=60)
    q1.close()
    q2 = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"])   # a "restarted" server
    try:
        v = q2.submit_run(TINY)
        assert v.status == DONE and v.cached             # done on return: never queued
        assert v.result.evaluation.auroc == pytest.approx(first.result.evaluation.auroc)
        assert not q2.slices
    finally:
        q2.close()


def test_generic_job_reports_progress_and_partials(queue):
    gate = threading.Event()

    def work(report, should_stop):
        report(0.5, "half", partial_value=41)
        gate.wait(10)
        return 42

    v = queue.submit("k1", work)
    until(lambda: queue.get(v.id).progress >= 0.5, "progress")
    mid = queue.get(v.id)
    assert mid.status == RUNNING and mid.message == "half" and mid.partial["partial_value"] == 41
    gate.set()
    end = queue.wait(v.id, timeout=60)
    assert end.status == DONE and end.result == 42


def test_a_short_job_waits_at_most_one_slice_of_a_long_one(queue):
    long = queue.submit_run(LONG, session="A")
    until(lambda: queue.slices, "the long job's first slice")
    n0 = len(queue.slices)
    # another batch size: it cannot join the long job's stack, so only fair turns can help it
    short = queue.submit_run(TINY.with_train(batch_size=4, seed=7), session="B")
    assert queue.get(short.id).position == 1
    done = queue.wait(short.id, timeout=60)
    assert done.status == DONE
    assert queue.get(long.id).status == RUNNING          # the long job was submitted first, still running
    slices = list(queue.slices)
    first_b = next(i for i, s in enumerate(slices) if short.id in s[2])
    # after the submission: at most the long job's slice then in progress, then the short job's turn
    assert first_b - n0 <= 1
    # and the two sessions alternate while both have work
    owners = [s[0] for s in slices[first_b - 1:] if short.id in s[2] or long.id in s[2]]
    b_turns = [i for i, o in enumerate(owners) if o == "B"]
    assert all(b - a == 2 for a, b in zip(b_turns, b_turns[1:]))
    assert queue.cancel(long.id, "A")


def test_positions_and_etas_follow_the_round_robin(queue):
    gate, _ = hold_worker(queue)
    a1 = queue.submit_run(TINY.with_train(seed=1), session="A")
    a2 = queue.submit_run(TINY.with_train(seed=2), session="A")
    b1 = queue.submit_run(TINY.with_train(seed=3), session="B")
    c1 = queue.submit_run(TINY.with_train(seed=4), session="C")
    pos = {n: queue.get(v.id).position for n, v in dict(a1=a1, a2=a2, b1=b1, c1=c1).items()}
    assert pos == {"a1": 1, "b1": 2, "c1": 3, "a2": 4}      # one turn per session, then A again
    etas = [queue.get(v.id).eta_s for v in (a1, b1, c1, a2)]
    assert all(e is not None and e > 0 for e in etas) and etas == sorted(etas)
    assert queue.counts()["queued"] == 5 - 1 and queue.counts()["sessions"] == 4
    mine = queue.jobs(session="A")
    assert {v.id for v in mine} == {a1.id, a2.id}
    gate.set()
    for v in (a1, a2, b1, c1):
        end = queue.wait(v.id, 60)
        assert end.status == DONE and end.position is None and end.eta_s is None


def test_a_session_that_clicked_a_moment_ago_is_expected_to_click_again(tmp_path):
    """In a class, sessions keep coming back: a session that clicked within ARRIVAL_WINDOW_S and
    waits for nothing now takes turns with one more click of its last click's work in the ETA
    simulation; after the window it no longer does, and a busy session never does."""
    import lamp_core.jobs as J
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2, workers="thread")
    try:
        gate, _ = hold_worker(q)
        a = q.submit_run(TINY.with_train(epochs=200, seed=1), session="A")
        assert q.cancel(a.id, "A")                   # A clicked, then pressed Stop: it waits for nothing
        b = q.submit_run(TINY.with_train(epochs=200, seed=2), session="B")
        with_a = q.get(b.id).eta_s
        t, work = q._clicks["A"]
        assert work > 0
        q._clicks["A"] = (t - J.ARRIVAL_WINDOW_S - 1, work)       # a minute later
        q.submit_run(TINY.with_train(seed=3), session="C")        # any submission estimates again
        without_a = q.get(b.id).eta_s
        # B's 200 epochs take many turns; A's expected click of the same size takes a turn
        # between each of them, so B's ETA is about twice what it is without A
        assert with_a > 1.5 * without_a, (with_a, without_a)
        # B is busy: it is not expected to click again, so aging its click changes nothing
        t, work = q._clicks["B"]
        q._clicks["B"] = (t - J.ARRIVAL_WINDOW_S - 1, work)
        q.submit_run(TINY.with_train(seed=4), session="D")
        assert q.get(b.id).eta_s == pytest.approx(without_a, rel=0.2)
        gate.set()
    finally:
        q.close()


def test_a_click_that_joins_a_queued_job_brings_no_work_and_a_new_session_a_typical_click(tmp_path):
    """A class pressing the same Train: the sessions that join the first one's job add nothing, so
    the ETA simulation expects nothing more of them; a session that has just opened the lab and not
    clicked yet is expected to click with the median work of the class's recent clicks."""
    import lamp_core.jobs as J
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2, workers="thread")
    try:
        gate, _ = hold_worker(q)
        q._click_work.clear()                             # the gate is the test's, not a class's click
        a = q.submit_run(TINY.with_train(epochs=200, seed=1), session="A")
        joined = q.submit_run(TINY.with_train(epochs=200, seed=1), session="B")
        assert joined.id == a.id
        assert q._clicks["A"][1] > 0 and q._clicks["B"][1] == 0.0
        alone = q.get(a.id).eta_s
        q.note_arrival("N")                               # opened the lab, has not clicked
        q.note_arrival("A")                               # known already: its click is kept
        assert q._clicks["N"][1] is None and q._clicks["A"][1] > 0
        with q._lock:
            q._estimate()
        # the class's clicks so far: A's 200 epochs and B's join (nothing), median half of A's;
        # N's expected click of that much takes turns between A's, so A's ETA grows by about half
        assert q._typical_click_work() == pytest.approx(q._clicks["A"][1] / 2)
        assert q.get(a.id).eta_s > 1.3 * alone, (q.get(a.id).eta_s, alone)
        t, _ = q._clicks["N"]
        q._clicks["N"] = (t - J.ARRIVAL_WINDOW_S - 1, None)   # a minute later N has not come
        with q._lock:
            q._estimate()
        assert q.get(a.id).eta_s == pytest.approx(alone, rel=0.1)
        gate.set()
    finally:
        q.close()


def test_a_click_of_several_runs_stays_one_click_when_another_session_clicks_in_between(tmp_path):
    """A comparison's runs arrive as several submissions within CLICK_GAP_S; in a class another
    session's click can land between them, and each click must keep its own work."""
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2, workers="thread")
    try:
        gate, _ = hold_worker(q)
        q._click_work.clear()                             # the gate is the test's, not a class's click
        q.submit_run(TINY.with_train(epochs=200, seed=1), session="A")
        q.submit_run(TINY.with_train(epochs=20, seed=2), session="B")
        q.submit_run(TINY.with_train(epochs=200, seed=3), session="A")
        works = dict(q._click_work)
        assert len(q._click_work) == 2 and works["A"] == pytest.approx(q._clicks["A"][1])
        assert works["A"] > 5 * works["B"] > 0
        gate.set()
    finally:
        q.close()


def test_the_learned_scale_stretches_only_the_wait_behind_other_sessions(tmp_path):
    """A job's ETA is its own work, with its session's jobs ahead of it, plus the wait behind other
    sessions' work times the learned scale: a scale learned while a class queued (up to 2) no
    longer doubles the ETA of a job that hardly waits for anyone (the class sharing one run)."""
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2, workers="thread")
    try:
        gate, _ = hold_worker(q)
        a1 = q.submit_run(TINY.with_train(epochs=50, seed=1), session="A")
        a2 = q.submit_run(TINY.with_train(epochs=50, seed=2), session="A")
        b = q.submit_run(TINY.with_train(epochs=50, seed=3), session="B")
        with q._lock:
            work = {v.id: q._remaining(q._by_id[v.id]) for v in (a1, a2, b)}
            q._estimate()
        own = {a1.id: work[a1.id], a2.id: work[a1.id] + work[a2.id], b.id: work[b.id]}
        raw = {i: q.get(i).eta_s for i in own}              # no scale learned yet: the simulation
        with q._lock:
            q._eta_ratios.extend([2.0] * 10)                # waits ran twice the simulation
            q._estimate()
        for i in own:
            assert raw[i] >= own[i]
            assert q.get(i).eta_s == pytest.approx(own[i] + 2.0 * (raw[i] - own[i]), rel=1e-3)   # the slice in progress ages
        # A's second run waits mostly for A's first (its own session's: not stretched)
        assert own[a2.id] > raw[a2.id] - own[a2.id] > 0
        gate.set()
    finally:
        q.close()


def test_the_slice_under_way_counts_once_in_the_etas(tmp_path):
    """The slice a worker is on ends at a known time; its job's remaining work, counted from
    before the slice began, must not be added again (a landscape under way was: a student who
    joined one seconds before its end was told it would take its whole length once more)."""
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=30.0, workers="thread")
    try:
        gate, held = hold_worker(q)                       # a task: one slice of about slice_s
        b = q.submit_run(TINY.with_train(epochs=5, seed=1), session="B")
        with q._lock:
            q._estimate()
            began, ends = q._slice_span
            rest = ends - __import__("time").perf_counter()
            own_b = q._remaining(q._by_id[b.id])
        assert 25.0 < rest <= 30.0
        # B waits for the rest of the gate's slice, then trains: not for a second slice_s
        assert q.get(b.id).eta_s == pytest.approx(rest + own_b, abs=1.0)
        assert q.get(held.id).eta_s == pytest.approx(rest, abs=1.0)
        gate.set()
    finally:
        q.close()


def test_the_eta_log_keeps_each_finished_job_and_the_queue_its_first_eta_saw(tmp_path, monkeypatch):
    """$LAMP_ETA_LOG: a line per finished job (first ETA, when, what it took), for each
    estimate that gave a job its first ETA the queue the simulation started from, so other
    simulations can be replayed offline against what the jobs took, and a line per slice."""
    import json
    log = tmp_path / "eta.jsonl"
    monkeypatch.setenv("LAMP_ETA_LOG", str(log))
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2, workers="thread")
    try:
        gate, _ = hold_worker(q)
        a = q.submit_run(TINY.with_train(seed=1), session="A")
        b = q.submit_run(TINY.with_train(seed=2), session="B")
        gate.set()
        for v in (a, b):
            assert q.wait(v.id, 60).status == DONE
    finally:
        q.close()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    jobs = {r["id"]: r for r in lines if "kind" in r}
    snaps = [r for r in lines if "snapshot" in r]
    assert {a.id, b.id} <= set(jobs)
    assert jobs[b.id]["finished_at"] > jobs[b.id]["first_at"] and jobs[b.id]["sessions"] == ["B"]
    snap_b = next(r for r in snaps if b.id in r["first"])
    queued = {s: [j[0] for j in js] for s, js in snap_b["queues"]}
    assert queued["B"] == [b.id] and queued["A"] == [a.id]     # A's run waits ahead of B's
    assert snap_b["snapshot"] == pytest.approx(jobs[b.id]["first_at"], abs=0.01)
    # and a line per slice: when it went to the worker, when the reply came, the idle time before it
    slices = [r for r in lines if "slice" in r]
    assert [r["slice"] for r in slices].count("run") >= 1        # hold_worker's task is a slice too
    assert all(r["replied"] >= r["sent"] and r["idle_before"] >= 0 for r in slices)
    assert [r["sent"] for r in slices] == sorted(r["sent"] for r in slices)


def test_a_session_cannot_queue_more_than_its_cap(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], max_per_session=3)
    try:
        gate, _ = hold_worker(q)
        q.submit_runs([TINY.with_train(seed=s) for s in (1, 2)], session="A")
        with pytest.raises(QueueFull, match="limit is 3 per session") as exc:
            q.submit_runs([TINY.with_train(seed=s) for s in (3, 4)], session="A")
        assert "\n" not in str(exc.value)
        assert len(q.jobs(session="A")) == 2                 # all or nothing: neither was queued
        q.submit_run(TINY.with_train(seed=3), session="A")
        q.submit_run(TINY.with_train(seed=1), session="A")    # asking again for one it has: no new work
        with pytest.raises(QueueFull):
            q.submit_run(TINY.with_train(seed=9), session="A")
        q.submit_runs([TINY.with_train(seed=s) for s in (5, 6, 7)], session="B")   # others unaffected
        # joining another session's queued job counts against the cap too
        with pytest.raises(QueueFull):
            q.submit_run(TINY.with_train(seed=5), session="A")
        gate.set()
    finally:
        q.close()


def test_a_shared_job_stops_only_when_everyone_who_asked_pressed_stop(queue):
    gate, _ = hold_worker(queue)
    v = queue.submit_run(LONG, session="A")
    assert queue.submit_run(LONG, session="B").id == v.id
    assert queue.get(v.id).wanted_by == 2
    assert not queue.cancel(v.id, "C")                      # never asked: no effect
    assert not queue.cancel(v.id, "A")                      # B still wants it
    assert queue.get(v.id).status == QUEUED and queue.get(v.id).wanted_by == 1
    gate.set()
    until(lambda: queue.get(v.id).status == RUNNING, "the shared job to start")
    assert queue.cancel(v.id, "B")
    end = queue.wait(v.id, 30)
    assert end.status == STOPPED and end.result.result.stopped and end.result.evaluation is None
    assert not queue.store.has(LONG)                        # partial runs are never stored
    again = queue.submit_run(LONG, session="A")             # asking again queues a fresh job
    assert again.id != v.id
    queue.cancel(again.id, "A")


def test_stop_ends_one_run_of_a_stack_and_its_mates_go_on(queue):
    keep = TINY.with_train(epochs=100, seed=1)      # long enough to be running when b has its first epoch
    drop = TINY.with_train(epochs=3000, seed=2, lamp=True)
    a = queue.submit_run(keep, session="A")
    b = queue.submit_run(drop, session="B")
    until(lambda: any(a.id in s[2] and b.id in s[2] for s in queue.slices)
          and queue.get(b.id).partial.get("history", {}).get("loss"), "a slice with both runs, one epoch in")
    assert queue.get(a.id).status == RUNNING
    assert queue.cancel(b.id, "B")
    assert queue.wait(b.id, 30).status == STOPPED
    end = queue.wait(a.id, 60)
    assert end.status == DONE and end.result.result.epochs_done == 100 and not end.result.result.stopped
    assert queue.store.has(keep) and not queue.store.has(drop)
    progress = queue.get(b.id)
    assert 0 < progress.progress < 1 and progress.result.result.history["loss"]   # its own partial history


def test_a_class_of_sessions_loses_and_duplicates_nothing(queue):
    sessions = {f"s{i}": [TINY.with_data(normal_class=i % 3).with_train(lamp=bool(k), seed=k % 2)
                          for k in range(3)] for i in range(4)}
    views = {s: queue.submit_runs(cfgs, session=s) for s, cfgs in sessions.items()}
    unique = {run_key(c) for cfgs in sessions.values() for c in cfgs}
    assert len({v.id for vs in views.values() for v in vs}) == len(unique)   # shared configs share a job
    for vs in views.values():
        for v in vs:
            assert queue.wait(v.id, 120).status == DONE
    assert all(queue.store.has(c) for cfgs in sessions.values() for c in cfgs)
    assert sorted(queue.trained.values()) == [1] * len(unique)            # each trained exactly once
    stacked = max(len(s[2]) for s in queue.slices)
    assert stacked > 1                                                     # compatible runs shared slices


def test_stacking_can_be_switched_off(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], stacking=False)
    try:
        vs = q.submit_runs([TINY.with_train(seed=s) for s in range(3)])
        for v in vs:
            assert q.wait(v.id, 60).status == DONE
        assert {len(s[2]) for s in q.slices} == {1}
    finally:
        q.close()


@pytest.mark.parametrize("back_to_back", [True, False])
def test_short_runs_of_the_next_turns_train_back_to_back_in_one_slice(tmp_path, back_to_back):
    """Runs that finish well within a slice go to the worker together, one after another in the
    order of the turns (one round trip, not one each); switched off, each has its own slice."""
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=30, stacking=False,
                 back_to_back=back_to_back)
    try:
        gate, _ = hold_worker(q)
        runs = {s: q.submit_run(TINY.with_train(seed=i), session=s) for i, s in enumerate("ABCD")}
        gate.set()
        for v in runs.values():
            assert q.wait(v.id, 60).status == DONE
        # a slice is recorded when its reply is in, after the runs it streamed were filed
        until(lambda: q.counts()["running"] == 0 and any(s[1] == "run" for s in q.slices), "the slice recorded")
        run_slices = [s for s in q.slices if s[1] == "run"]
        assert len(run_slices) == (1 if back_to_back else 4)
        assert sorted(runs, key=lambda s: q.get(runs[s].id).started_at) == list("ABCD")   # turn order kept
        assert sorted(q.trained.values()) == [1] * 4 and all(q.store.has(TINY.with_train(seed=i)) for i in range(4))
    finally:
        q.close()


def test_a_run_stopped_while_it_waits_to_follow_is_closed_and_the_slice_goes_on(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=30, stacking=False)
    try:
        gate, _ = hold_worker(q)
        a = q.submit_run(TINY.with_train(seed=1, epochs=200), session="A")    # about a second
        b = q.submit_run(TINY.with_train(seed=2), session="B")
        c = q.submit_run(TINY.with_train(seed=3), session="C")
        gate.set()
        until(lambda: q.get(a.id).status == RUNNING, "A's run under way")
        assert q.cancel(b.id, "B")                       # B follows A in the slice: stopped before it starts
        assert q.wait(b.id, 60).status == STOPPED and q.wait(c.id, 60).status == DONE
        assert q.wait(a.id, 60).status == DONE and not q.store.has(TINY.with_train(seed=2))
        until(lambda: any(s[1] == "run" for s in q.slices), "the slice recorded")
        assert len([s for s in q.slices if s[1] == "run"]) == 1      # A, then C, in A's slice
    finally:
        q.close()


def test_the_stack_memory_budget_splits_a_group_of_runs(tmp_path, monkeypatch):
    """LAMP_STACK_MEMORY_MB caps a stack's estimated memory: a budget of two runs' worth trains
    four compatible runs as stacks of two."""
    from lamp_core.data import load
    from lamp_core.stack import run_memory_mb
    per_run = run_memory_mb(TINY, load(TINY.data))
    monkeypatch.setenv("LAMP_STACK_MEMORY_MB", str(2.5 * per_run))
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"])
    try:
        assert q.memory_budget_mb == 2.5 * per_run
        vs = q.submit_runs([TINY.with_train(seed=s) for s in range(4)])
        for v in vs:
            assert q.wait(v.id, 60).status == DONE
        assert max(len(s[2]) for s in q.slices) == 2
    finally:
        q.close()


def test_a_landscape_trains_its_run_first_then_computes(queue):
    lcfg = LandscapeConfig(nx=3, ny=3, n_images=8, hessian_iters=2, hutchinson_samples=2, radius_directions=1)
    v = queue.submit_surface(TINY, lcfg, session="A")
    run = queue.find_run(TINY)
    assert run is not None and run.status in (QUEUED, RUNNING)   # the run is a job of its own
    end = queue.wait(v.id, 120)
    assert end.status == DONE and end.result.complete and end.result.sharpness
    assert queue.get(run.id).status == DONE and queue.store.has(TINY)
    kinds = [s[1] for s in queue.slices]
    assert kinds.index("run") < kinds.index("surface")
    assert queue.submit_surface(TINY, lcfg, session="B").status == DONE     # done on return


def test_stopping_a_landscape_withdraws_its_training(queue):
    gate, _ = hold_worker(queue)
    v = queue.submit_surface(LONG, LandscapeConfig(nx=3, ny=3, n_images=8), session="A")
    run = queue.find_run(LONG)
    assert queue.cancel(v.id, "A")
    assert queue.get(v.id).status == STOPPED and queue.get(run.id).status == STOPPED
    gate.set()


def test_failing_job_reports_one_line_and_worker_survives(queue):
    bad = TINY.with_data(dataset="folder", data_root="/nonexistent/upload.zip")
    v = queue.wait(queue.submit_run(bad).id, timeout=30)
    assert v.status == FAILED and "does not exist" in v.error and "\n" not in v.error
    ok = queue.wait(queue.submit("after", lambda r, s: "fine").id, timeout=60)
    assert ok.status == DONE and ok.result == "fine"


def test_unexpected_exception_is_kept_with_its_type(queue):
    def boom(report, should_stop):
        raise RuntimeError("kaboom")

    v = queue.wait(queue.submit("boom", boom).id, timeout=60)
    assert v.status == FAILED and v.error.startswith("RuntimeError: kaboom")


def test_replaced_stopped_jobs_are_forgotten_beyond_a_cap(queue, monkeypatch):
    import lamp_core.jobs as jobs_mod
    monkeypatch.setattr(jobs_mod, "MAX_REPLACED", 2)
    gate, blocker = hold_worker(queue)
    ids = []
    for _ in range(5):
        v = queue.submit("same", lambda r, s: None)
        queue.cancel(v.id)                                          # stopped while queued
        ids.append(v.id)
    gate.set()
    queue.wait(blocker.id, timeout=60)
    kept = [i for i in ids if queue.get(i) is not None]
    assert kept == ids[-3:]        # the current one (last) and the two most recent replaced ones


def test_workers_train_at_the_queues_thread_count_and_callers_on_one(tmp_path):
    """A worker thread sets its torch thread count when it starts and keeps it where no other
    thread sets one before its first operation (lamp_core.threads); a worker process trains on
    the queue's count (one by default), whatever the server's threads do; the app's page threads
    compute on one thread, so no second multi-thread OpenMP team slows a worker down
    (bench/results/thread_contention.md)."""
    import torch

    from lamp_core.jobs import single_threaded_caller
    for threads in (1, 3):
        q = JobQueue(RunStore(tmp_path / f"runs{threads}"), devices=["cpu"], threads=threads, workers="thread")
        try:
            v = q.submit("count", lambda report, should_stop: torch.get_num_threads(), session="s")
            assert q.wait(v.id, timeout=30).result == threads
        finally:
            q.close()
    for threads in (None, 2):
        q = JobQueue(RunStore(tmp_path / f"proc{threads}"), devices=["cpu"], threads=threads, workers="process")
        try:
            v = q.submit_run(TINY, session="s")
            assert q.wait(v.id, timeout=60).status == DONE
            assert q.worker_threads == {"cpu": threads or 1}
            assert q.worker_pids()["cpu"] != os.getpid()
        finally:
            q.close()
    before, seen = torch.get_num_threads(), []

    def page():
        single_threaded_caller()
        seen.append(torch.get_num_threads())
    t = threading.Thread(target=page)
    t.start()
    t.join()
    assert seen == [1] and torch.get_num_threads() == before     # only the calling thread changed


def test_etas_come_from_the_calibration_then_from_what_each_kind_of_run_measured(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], workers="thread")
    try:
        until(lambda: q._calibration is not None, "the worker's calibration")
        overhead, per_value, per_value_upload = q._calibration
        assert overhead >= 0 and per_value > 0 and per_value_upload > 0
        small, big = TINY.with_train(batch_size=4), TINY.with_train(batch_size=16)
        other_data = replace(TINY, data=replace(TINY.data, image_size=20))
        with q._lock:
            q._calibration, q._ratio = (0.01, 1e-6), 1.0
            assert q._run_step_s(small) == pytest.approx(0.01 + 1e-6 * 4 * 16 * 16)
            assert q._run_step_s(big) == pytest.approx(0.01 + 1e-6 * 16 * 16 * 16)
            # a batch larger than the training set (24 images) trains on the whole set a step
            assert q._run_step_s(TINY.with_train(batch_size=1024)) == pytest.approx(0.01 + 1e-6 * 24 * 16 * 16)
            q._learn_speed(big, 0.5, [(big, 2.0)])             # measured: this kind of run, this data
            assert q._run_step_s(big) == 0.5 and q._test_pass_s(big) == 2.0
            # other batch sizes of the same data follow the calibration, scaled by how far off it
            # was on this data; other data by how far off it was on any (a moving average)
            off_here = 0.5 / (0.01 + 1e-6 * 16 ** 3)
            assert q._ratio == pytest.approx(0.8 + 0.2 * off_here)
            assert q._run_step_s(small) == pytest.approx((0.01 + 1e-6 * 4 * 16 * 16) * off_here)
            assert q._run_step_s(other_data) == pytest.approx((0.01 + 1e-6 * 8 * 20 * 20) * q._ratio)
        # waits in a class differ from the simulation: learned from finished jobs, actual / first
        # estimate, as a median of any kind, bounded; only estimates made on measured speeds teach it
        from lamp_core.jobs import ETA_RATIO_MIN_SAMPLES, ETA_SCALE_BOUNDS, Job

        def finished(i, took, measured=True):
            j = Job(id=900 + i, key=f"k{i}", kind="surface", label="x", order=0)
            j.eta_first, j.eta_measured = (10.0, 1000.0, 0.0), measured
            j._finish(DONE)
            j.finished_at = 1000.0 + took
            return j
        with q._lock:
            q._retire(finished(0, 50.0, measured=False))           # the calibration's guess: ignored
            assert q._eta_scale_now() == 1.0 and not q._eta_ratios
            for i, took in enumerate([20.0, 5.0, 15.0, 12.0][: ETA_RATIO_MIN_SAMPLES - 1]):
                q._retire(finished(i + 1, took))
            assert q._eta_scale_now() == 1.0                       # too few yet
            q._retire(finished(9, 14.0))
            assert q._eta_scale_now() == pytest.approx(1.4)        # median of 2, 0.5, 1.5, 1.2, 1.4
            for i in range(60):                                    # a run of slow jobs: bounded
                q._retire(finished(100 + i, 100.0))
            assert q._eta_scale_now() == ETA_SCALE_BOUNDS[1] and len(q._eta_ratios) < 60
            assert q._speed_measured(Job(id=1, key="r", kind="run", label="r", order=0, cfg=big))
            assert not q._speed_measured(Job(id=2, key="s", kind="run", label="s", order=0, cfg=small))
    finally:
        q.close()


def test_the_calibration_per_value_follows_the_image_shape():
    # a 3x64x64 image trains faster per value than a 1x28x28 digit: a calibration has both, and
    # shapes between them are interpolated on log scales, shapes outside held at the nearer one
    from lamp_core.workers import calibrated_per_value
    cal = (0.01, 4e-6, 1e-6)
    assert calibrated_per_value(cal, 1, 28) == pytest.approx(4e-6)
    assert calibrated_per_value(cal, 3, 64) == pytest.approx(1e-6)
    assert calibrated_per_value(cal, 1, 16) == pytest.approx(4e-6)
    assert calibrated_per_value(cal, 3, 128) == pytest.approx(1e-6)
    halfway_values = math.sqrt(28 * 28 * 3 * 64 * 64)   # halfway between the shapes, on a log scale
    assert calibrated_per_value(cal, 1, round(math.sqrt(halfway_values))) == pytest.approx(2e-6, rel=0.02)
    assert calibrated_per_value((0.01, 4e-6), 3, 64) == 4e-6   # one figure: every shape


def test_old_finished_results_leave_memory_and_come_back_from_the_store(tmp_path, monkeypatch):
    monkeypatch.setattr("lamp_core.jobs.MAX_FINISHED_RESULTS", 1)
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], workers="thread")
    try:
        first, second = (q.wait(q.submit_run(TINY.with_train(seed=s), session="a").id, 60) for s in (1, 2))
        assert first.status == second.status == DONE
        old = q._by_id[first.id]
        assert old.result is None and old.evicted                # only the newest result is held
        assert q._by_id[second.id].result is not None
        again = q.get(first.id)                                   # read back from the store
        assert again.status == DONE and again.result.evaluation.auroc == first.result.evaluation.auroc
        assert again.result.result.history == first.result.result.history
        assert q.submit_run(TINY.with_train(seed=1), session="b").result.evaluation.auroc == first.result.evaluation.auroc
    finally:
        q.close()
