"""Process-wide background job queue for the app: training runs and loss landscapes.

The app keeps one `JobQueue` per server process (Streamlit's `st.cache_resource`), so every
browser session shares it: a lab server with one GPU trains for everyone in turn, and a
configuration anyone has asked for is trained once. The rules:

* One worker thread per device (the CPU, or each CUDA GPU). A worker only runs plain
  `lamp_core` code; it never calls Streamlit and never touches a session's state. It writes
  progress, partial results (loss history, partial surfaces) and the final result into the
  job's record under the record's lock; pages read `Job.view()` snapshots when they poll.
* Identical work shares one job: submitting a key that is queued, running or done returns the
  existing job. Finished training runs come from the run store (`lamp_core.store.RunStore`)
  at submission time, without waiting in the queue, so they show at once and are never
  trained twice - also not after a restart.
* `cancel()` sets the job's stop flag; the training loop checks it every step
  (`should_stop`), so Stop takes effect within one step. A stopped or failed job is not
  reused: asking again queues a fresh one.

Nothing here knows about pages; `tests/test_jobs.py` drives it without Streamlit.
"""
from __future__ import annotations

import atexit
import itertools
import threading
import time
import traceback
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import LampError, LandscapeConfig, RunConfig
from .store import RunStore

QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"
FINAL = (DONE, STOPPED, FAILED)
MAX_FINISHED = 512          # finished jobs kept in memory (their results also live in the store)
MAX_REPLACED = 64           # stopped/failed jobs kept after a resubmission replaced them

# A job's work: fn(report, should_stop) -> result. `report(progress, message, **partial)`.
ReportFn = Callable[..., None]
WorkFn = Callable[[ReportFn, Callable[[], bool]], Any]


@dataclass(frozen=True)
class JobView:
    """An immutable snapshot of a job, safe to read from any thread."""
    id: int
    key: str
    kind: str
    label: str
    status: str
    progress: float                  # 0..1
    message: str
    partial: dict[str, Any]
    result: Any
    error: str | None
    cached: bool                     # True when the result came from the run store
    queued_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.status in FINAL


@dataclass
class Job:
    id: int
    key: str
    kind: str
    label: str
    work: WorkFn | None
    status: str = QUEUED
    progress: float = 0.0
    message: str = "queued"
    partial: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    cached: bool = False
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    stop_flag: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done_event: threading.Event = field(default_factory=threading.Event)

    def view(self) -> JobView:
        with self.lock:
            return JobView(self.id, self.key, self.kind, self.label, self.status, self.progress,
                           self.message, dict(self.partial), self.result, self.error, self.cached,
                           self.queued_at, self.started_at, self.finished_at)

    def report(self, progress: float | None = None, message: str | None = None, **partial: Any) -> None:
        with self.lock:
            if progress is not None:
                self.progress = max(0.0, min(1.0, float(progress)))
            if message is not None:
                self.message = message
            self.partial.update(partial)

    def _finish(self, status: str, *, result: Any = None, error: str | None = None, message: str = "") -> None:
        with self.lock:
            self.status, self.result, self.error = status, result, error
            self.finished_at = time.time()
            if status == DONE:
                self.progress = 1.0
            self.message = message or status
            self.work = None                 # drop the closure (and whatever data it holds)
        self.done_event.set()


def default_devices() -> list[str]:
    """One worker per CUDA GPU, else one for the CPU (or Apple's MPS)."""
    import torch
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


class JobQueue:
    """Background jobs with one worker thread per device; see the module docstring."""

    def __init__(self, store: RunStore | None = None, devices: list[str] | None = None):
        self.store = store if store is not None else RunStore()
        self.devices = list(devices) if devices else default_devices()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[Job] = []
        self._by_key: OrderedDict[str, Job] = OrderedDict()
        self._by_id: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._workers = [threading.Thread(target=self._worker, args=(dev,), name=f"lamp-worker-{dev}",
                                          daemon=True) for dev in self.devices]
        for w in self._workers:
            w.start()
        _QUEUES.add(self)

    # ------------------------------------------------------------------ submitting

    def submit(self, key: str, work: WorkFn, *, kind: str = "task", label: str = "",
               ready: Callable[[], Any] | None = None) -> JobView:
        """Queue `work` under `key`, or return the job that already has that key.

        `ready()` is called first (in the caller's thread) and may return a finished result,
        e.g. from the run store; the job is then done at once and never queued.
        """
        with self._lock:
            job = self._by_key.get(key)
            if job is not None and job.status not in (STOPPED, FAILED):
                self._by_key.move_to_end(key)
                return job.view()
        cached = None
        if ready is not None:
            try:
                cached = ready()
            except Exception:  # noqa: BLE001 - an unreadable cache entry means "train it"
                cached = None
        with self._lock:
            job = self._by_key.get(key)          # another session may have raced us here
            if job is not None and job.status not in (STOPPED, FAILED):
                return job.view()
            job = Job(id=next(self._ids), key=key, kind=kind, label=label or key, work=work)
            self._by_key[key] = job
            self._by_id[job.id] = job
            if cached is not None:
                job.cached = True
                job.started_at = job.queued_at
                job._finish(DONE, result=cached, message="from the run store")
            else:
                self._pending.append(job)
                self._wake.notify()
            self._trim()
            return job.view()

    def submit_run(self, cfg: RunConfig) -> JobView:
        """Train and evaluate one config (`runner.run_config`), through the run store."""
        from .runner import RunRecord, run_config

        def ready():
            stored = self.store.get(cfg)
            return None if stored is None else RunRecord(stored.result, stored.evaluation, cached=True)

        def work(report: ReportFn, should_stop):
            def on_progress(p: dict[str, Any]) -> None:
                steps = max(p.get("steps_total", 0), 1)
                report(p.get("step", 0) / steps,
                       f"epoch {p.get('epoch', 0)}/{p.get('epochs', 0)}, loss {p.get('loss', float('nan')):.4g}",
                       history=p.get("history", {}), loss=p.get("loss"))
            return run_config(cfg, store=self.store, on_progress=on_progress, should_stop=should_stop)

        loss = f"{cfg.train.base_loss}{' LAMP' if cfg.train.lamp else ''}"
        return self.submit(f"run:{cfg.key()}", work, kind="run", ready=ready,
                           label=f"{loss}, batch {cfg.train.batch_size}, seed {cfg.train.seed}")

    def submit_surface(self, cfg: RunConfig, lcfg: LandscapeConfig) -> JobView:
        """The loss surface of a run (`landscape.surface_for_run`), training the run first when
        the store lacks it. Progress: training steps, then the share of grid points computed;
        `partial["surface"]` holds the latest (coarse, then refined) partial surface."""
        from . import landscape
        from .runner import run_config

        def ready():
            return landscape.cached_surface(cfg, lcfg, self.store)

        def work(report: ReportFn, should_stop):
            base = 0.0                               # share of the progress bar used by training
            if not self.store.has(cfg):
                base = 0.5
                def on_train(p: dict[str, Any]) -> None:
                    steps = max(p.get("steps_total", 0), 1)
                    report(base * p.get("step", 0) / steps,
                           f"training first: epoch {p.get('epoch', 0)}/{p.get('epochs', 0)}",
                           history=p.get("history", {}))
                record = run_config(cfg, store=self.store, on_progress=on_train, should_stop=should_stop)
                if record.result.stopped:
                    return None

            def on_progress(surface) -> None:
                done = surface.fraction_done()
                msg = ("sharpness numbers" if surface.complete and not surface.sharpness else
                       "done" if surface.complete else f"{done:.0%} of the grid")
                report(base + (1 - base) * (0.9 * done + (0.1 if surface.sharpness else 0.0)), msg,
                       surface=surface)
            return landscape.surface_for_run(cfg, lcfg, self.store, on_progress=on_progress,
                                             should_stop=should_stop)

        key = f"surface:{cfg.key()}:{landscape.landscape_key(lcfg)}"
        loss = f"{cfg.train.base_loss}{' LAMP' if cfg.train.lamp else ''}"
        return self.submit(key, work, kind="surface", ready=ready,
                           label=f"landscape {loss}, batch {cfg.train.batch_size}")

    # ------------------------------------------------------------------ reading and stopping

    def get(self, job_id: int) -> JobView | None:
        with self._lock:
            job = self._by_id.get(job_id)
        return None if job is None else job.view()

    def find(self, key: str) -> JobView | None:
        with self._lock:
            job = self._by_key.get(key)
        return None if job is None else job.view()

    def jobs(self) -> list[JobView]:
        with self._lock:
            jobs = list(self._by_id.values())
        return [j.view() for j in jobs]

    def cancel(self, job_id: int) -> bool:
        """Ask a job to stop; a queued job is dropped at once. False when it had finished."""
        with self._lock:
            job = self._by_id.get(job_id)
            if job is None or job.status in FINAL:
                return False
            job.stop_flag.set()
            if job.status == QUEUED and job in self._pending:
                self._pending.remove(job)
                job._finish(STOPPED, message="stopped before it started")
        return True

    def wait(self, job_id: int, timeout: float | None = None) -> JobView | None:
        with self._lock:
            job = self._by_id.get(job_id)
        if job is None:
            return None
        job.done_event.wait(timeout)
        return job.view()

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float = 30.0) -> None:
        """Stop every job and the workers (tests, and at interpreter exit: a worker thread
        killed inside a torch operation would abort the process)."""
        with self._lock:
            self._closed = True
            for job in self._pending:
                job.stop_flag.set()
                job._finish(STOPPED, message="stopped: the server shut down")
            self._pending.clear()
            for job in self._by_id.values():
                job.stop_flag.set()
            self._wake.notify_all()
        for w in self._workers:
            w.join(timeout=timeout)

    # ------------------------------------------------------------------ the workers

    def _worker(self, device: str) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                job = self._pending.pop(0)
                with job.lock:
                    job.status, job.started_at, job.message = RUNNING, time.time(), f"running on {device}"
            self._run(job, device)

    def _run(self, job: Job, device: str) -> None:
        work = job.work
        try:
            with _on_device(device):
                result = work(job.report, job.stop_flag.is_set)
        except LampError as exc:            # a problem the user can fix: one line, no traceback
            job._finish(FAILED, error=str(exc), message="failed")
            return
        except Exception as exc:  # noqa: BLE001 - a worker must survive any job's failure
            job._finish(FAILED, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}",
                        message="failed")
            return
        stopped = job.stop_flag.is_set() or bool(getattr(getattr(result, "result", None), "stopped", False))
        if stopped:
            job._finish(STOPPED, result=result, message="stopped; partial results kept")
        else:
            job._finish(DONE, result=result, message="done")

    def _trim(self) -> None:
        # caller holds self._lock; forget the oldest finished jobs beyond MAX_FINISHED, and
        # stopped/failed jobs that a fresh job with the same key has replaced beyond a few
        finished = [k for k, j in self._by_key.items() if j.status in FINAL]
        for k in finished[: max(0, len(finished) - MAX_FINISHED)]:
            job = self._by_key.pop(k)
            self._by_id.pop(job.id, None)
        replaced = [i for i, j in self._by_id.items() if self._by_key.get(j.key) is not j]
        for i in replaced[: max(0, len(replaced) - MAX_REPLACED)]:
            del self._by_id[i]


_QUEUES: "weakref.WeakSet[JobQueue]" = weakref.WeakSet()


@atexit.register
def close_all(timeout: float = 30.0) -> None:
    """Close every queue of this process (registered to run at exit)."""
    for q in list(_QUEUES):
        q.close(timeout)


class _on_device:
    """Make `device` the current CUDA device of this worker thread (no-op on the CPU)."""

    def __init__(self, device: str):
        self.device = device
        self._ctx = None

    def __enter__(self):
        if self.device.startswith("cuda:"):
            import torch
            self._ctx = torch.cuda.device(int(self.device.split(":", 1)[1]))
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
        return False

