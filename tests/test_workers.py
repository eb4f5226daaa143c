"""The app's workers: training in a child process (the default), a worker killed in the middle
of a stack (its runs go on from their last finished slice: nothing lost, nothing trained twice),
a run that keeps killing its worker, resuming a run bit for bit from its checkpoint, and the same
queue on a local Ray instance; worker processes fork from a frozen heap."""
from __future__ import annotations

import gc
import os
import signal

import pytest
from conftest import until
import torch

from lamp_core import data as data_mod
from lamp_core import stack
from lamp_core.config import DataConfig, LandscapeConfig, ModelConfig, RunConfig, TrainConfig
from lamp_core.jobs import DONE, FAILED, JobQueue
from lamp_core.run_types import planned_steps
from lamp_core.store import RunStore
from lamp_core.workers import ThreadWorker, WorkerDied, _context

TINY = RunConfig(data=DataConfig(image_size=16, max_train=24, max_test=40),
                 model=ModelConfig(width=4, latent_channels=4), train=TrainConfig(epochs=2, batch_size=8))


def test_a_checkpoint_resumes_a_run_bit_for_bit():
    cfg = TINY.with_train(epochs=5, seed=3, lamp=True)
    data = data_mod.load(cfg.data)
    whole = stack.RunSlot(cfg, data)
    stack.train_slots([whole])
    first = stack.RunSlot(cfg, data)
    stack.train_slots([first], max_steps=7)          # mid-epoch: 3 steps per epoch
    moved = stack.RunSlot(cfg, data).restore(first.checkpoint())
    stack.train_slots([moved])
    a, b = whole.result(), moved.result()
    assert b.steps == a.steps == planned_steps(cfg)
    assert a.history == b.history
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    partial = stack.result_from_checkpoint(cfg, first.checkpoint(), stopped=True)
    assert partial.steps == 7 and partial.stopped and len(partial.history["loss"]) == 2


def test_worker_processes_fork_from_a_frozen_heap():
    # the forkserver froze what torch and lamp_core created (lamp_core.worker_preload), so a
    # worker's garbage collector never writes to those pages and they stay shared with it
    with _context().Pool(1) as pool:
        assert pool.apply(gc.get_freeze_count) > 10_000


def test_a_worker_killed_in_a_stack_loses_and_repeats_nothing(tmp_path):
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.3, workers="process")
    try:
        cfgs = [TINY.with_train(epochs=200, seed=s) for s in range(4)]   # a few seconds: killed mid-way
        views = q.submit_runs(cfgs, session="class")
        pid = None
        until(lambda: q.worker_pids().get("cpu"), "the worker process")
        pid = q.worker_pids()["cpu"]
        assert pid != os.getpid()
        # at least one finished slice with the four runs stacked, and the worker in its next one
        until(lambda: any(len(s[2]) == 4 for s in q.slices) and q.counts()["running"] == 4
              and all(0 < q.get(v.id).progress < 0.7 for v in views),
              lambda: f"a stack of four under way ({q.counts()}, {[q.get(v.id).progress for v in views]}, "
              f"{[len(s[2]) for s in q.slices]}, {list(q.worker_errors)})")
        os.kill(pid, signal.SIGKILL)
        finals = [q.wait(v.id, timeout=120) for v in views]
        assert [f.status for f in finals] == [DONE] * 4, [f.error for f in finals]
        assert q.worker_restarts == 1 and q.worker_pids()["cpu"] not in (None, pid)
        assert sorted(q.trained.values()) == [1] * 4
        # nothing trained twice: the steps the workers reported are exactly the runs' steps
        # (a run started over from its beginning would count its first slices again)
        assert q.steps_trained == sum(planned_steps(c, 24) for c in cfgs)
        for f, c in zip(finals, cfgs):
            assert f.result.result.steps == planned_steps(c, 24) and len(f.result.result.history["loss"]) == 200
            assert q.store.has(c)
    finally:
        q.close()


class _Fragile(ThreadWorker):
    """A worker that dies whenever it starts training the run with seed 13 (first in its slice, or
    back to back after another run), as one that runs out of memory on it would."""

    def run(self, request, on_event):
        handed = [*getattr(request, "jobs", []), *getattr(request, "then", [])]
        fatal = {j.job_id for j in handed if getattr(j, "cfg", None) is not None and j.cfg.train.seed == 13}

        def dying(event):
            on_event(event)
            if event[0] == "group" and fatal & set(event[1]):
                raise WorkerDied("killed (test)")
        return super().run(request, dying)


def test_a_run_that_keeps_killing_its_worker_fails_and_the_others_finish(tmp_path, monkeypatch):
    monkeypatch.setattr("lamp_core.jobs.make_worker", lambda kind, device, threads: _Fragile(device, threads))
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], slice_s=0.2, workers="thread", stacking=False)
    try:
        bad = q.submit_run(TINY.with_train(seed=13), session="a")
        good = q.submit_run(TINY.with_train(seed=14), session="b")
        b, g = q.wait(bad.id, timeout=60), q.wait(good.id, timeout=60)
        assert b.status == FAILED and "worker died 3 times" in b.error and "\n" not in b.error
        assert g.status == DONE
        assert q.worker_restarts == 3
    finally:
        q.close()


@pytest.mark.ray
@pytest.mark.slow
def test_the_queue_on_a_local_ray_instance(tmp_path, monkeypatch, ray_instance):
    ray = ray_instance
    monkeypatch.delenv("LAMP_WORKERS", raising=False)
    monkeypatch.setenv("LAMP_RAY_ADDRESS", "auto")
    q = JobQueue(RunStore(tmp_path / "runs"), slice_s=0.3)          # the kind follows the address
    try:
        assert q.worker_kind == "ray" and q.devices == ["ray:0:cpu", "ray:1:cpu"]
        cfgs = [TINY.with_train(epochs=30, seed=s) for s in range(3)]
        views = q.submit_runs(cfgs, session="a")
        surf = q.submit_surface(TINY, LandscapeConfig(nx=3, ny=3, n_images=8, hessian_iters=2, hutchinson_samples=2, radius_directions=1), session="b")
        until(lambda: any(q.get(v.id).progress > 0.1 for v in views), "training under way")
        victim = next(d for d in q.devices if q.worker_pids().get(d))
        ray.kill(q._handles[victim]._actor, no_restart=True)
        finals = [q.wait(v.id, timeout=180) for v in views]
        assert [f.status for f in finals] == [DONE] * 3, [f.error for f in finals]
        s = q.wait(surf.id, timeout=180)
        assert s.status == DONE and s.result.complete and s.result.sharpness
        assert sorted(q.trained.values()) == [1] * 4      # three runs and the surface's run
        assert all(q.store.has(c) for c in cfgs)          # the server filed every run
    finally:
        q.close()
