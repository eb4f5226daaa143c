"""Process-wide job queue for the app: a fair scheduler of training runs and loss landscapes.

The app keeps one `JobQueue` per server process (Streamlit's `st.cache_resource`), so every
browser session of a class shares it. The rules:

* **Identity.** A run job is keyed by `config.run_key(cfg)`, the same key the run store files it
  under, so a configuration anyone asked for is one job, and a finished one comes from the store
  at submission (never queued, never trained twice, also after a restart).
* **Fair turns.** Work is cut into slices: up to `slice_s` seconds of training (runs are
  resumable `stack.RunSlot`s, so a slice may end mid-epoch), or one landscape computation, or one
  generic task. Turns go round-robin over the sessions that have work: each turn takes the
  session's oldest runnable job. A session therefore waits for at most one slice of each other
  session's work before its own job starts, however long those jobs are.
* **Stacks.** A training slice trains the chosen run together with compatible runs (same
  `stack.stack_key`) of this and other sessions, grouped by `stack.plan_stacks` (which stacks only
  where it pays and fits the memory budget). $LAMP_STACK=0 turns stacking off: one run per slice.
  Progress, results and Stop are per run; a run leaves its stack without stopping the others.
* **Back to back.** When a slice's run will finish well within `slice_s`, the slice also takes
  the runs the next turns would pick, as long as their estimated rest fits the time left, and
  the worker trains them one after another (`_followers`; $LAMP_BACK_TO_BACK=0 turns it off):
  short runs pay the round trip to the worker once per slice, not once each. The turn order is
  kept: a follower counts as its session's turn when it starts.
* **Sharing and Stop.** Every job records which sessions asked for it. `cancel(id, session)`
  withdraws that session's request; the job stops only when nobody wants it any more. A stopped
  run keeps its partial history; partial runs are never stored.
* **Position and ETA.** After every slice and submission the queue simulates its round-robin
  with each job's remaining work (steps left x the measured seconds per run-step; ignoring
  stacking, so the ETA is an upper estimate) and stores each waiting job's position and ETA.
  A kind of run not trained here yet is predicted by the worker's calibration (seconds per
  value, measured on digit-sized and on upload-sized images; a batch larger than the training
  set counts the set), scaled by how far off the calibration was on the same data set at any
  batch size, else on any data.
  A session that clicked in the last minute and waits for nothing is expected to click again
  with the work of its last click (in a class, sessions keep coming back and take their turns
  first; a click that joined a queued job brought no work), and a session that opened the lab in
  the last minute and has not clicked yet with the median work of the class's recent clicks.
  A scale learned from finished jobs corrects the time a job waits behind other sessions (the
  median of actual / simulated wait over the last ETA_RATIO_SAMPLES whose estimate came from
  measured speeds, within ETA_SCALE_BOUNDS); the job's own work, and its session's jobs ahead of
  it, are not scaled.
  The pages add their own latency (a poll interval and a typical page run).
* **A cap per session.** A session may have at most `max_per_session` ($LAMP_MAX_QUEUED, default
  40) unfinished jobs; more raises `QueueFull` with one line to show.
* **Landscapes** are jobs too: the run is trained first (as a run job, in slices, stackable),
  then the surface is computed in one slice. The app's grids take tens of seconds; a large grid
  holds its worker until done (a surface computation cannot yet be resumed).

Workers (`lamp_core.workers`): by default one worker process per device (each CUDA GPU, else
the CPU); Ray actors with $LAMP_RAY_ADDRESS; threads of this process with $LAMP_WORKERS=thread.
This process keeps the scheduling: one dispatcher thread per device picks a slice under the lock
and hands it to its worker, which trains (plain `lamp_core` code, never Streamlit) and streams
progress back; pages read `JobView` snapshots when they poll. After every slice a run's
checkpoint comes back with the reply, so a worker that dies is restarted and its runs go on from
their last finished slice (nothing lost, nothing trained twice); a run in the slice of
MAX_WORKER_DEATHS dead workers fails with the reason. Workers never write the run store: the
server files finished runs and surfaces. Generic tasks (`submit`, closures) run in the
dispatcher thread of this process. `tests/test_jobs.py` and `tests/test_workers.py` drive it
without Streamlit. This module is longer than most because the scheduler, its records and its
estimates are one idea that shares one lock.
"""
from __future__ import annotations

import atexit
import itertools
import os
import statistics
import threading
import time
import traceback
import weakref
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .config import LampError, LandscapeConfig, RunConfig, run_key
from .store import RunStore
from .threads import single_threaded_caller, usable_cores  # noqa: F401  (the app imports the caller's from here)
from .workers import (RunOutcome, RunSliceRequest, SliceJob, SurfaceRequest, WorkerDied, WorkerError, connect_ray,
                      error_text, make_worker, on_device, ray_devices, worker_kind)

QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"
FINAL = (DONE, STOPPED, FAILED)
MAX_FINISHED = 512          # finished jobs kept in memory (their results also live in the store)
MAX_BACK_TO_BACK = 16      # runs one slice may train one after another after its first group
MAX_FINISHED_RESULTS = 64  # finished runs and surfaces whose results stay in memory (the rest: the store)
MAX_REPLACED = 64           # stopped/failed jobs kept after a resubmission replaced them
DEFAULT_SESSION = "-"       # the requester of calls that name no session (scripts, tests)
SIM_MAX_TURNS = 20_000      # bound on the ETA simulation's work per update
MAX_WORKER_DEATHS = 3       # a run in the slice of this many dead workers fails (it likely kills them)
ETA_LEARN_MIN_S = 2.0       # jobs with a shorter first ETA do not teach the ETA scale (too noisy)
ETA_RATIO_SAMPLES = 50      # the ETA scale is the median of the last this many jobs' actual / first ETA
ETA_RATIO_MIN_SAMPLES = 5   # below this many, no scale (1)
ETA_SCALE_BOUNDS = (0.5, 2.0)
MAX_COST_KEYS = 256         # kinds of run (and data sets) whose measured speed the ETAs keep
ARRIVAL_WINDOW_S = 60.0     # a session that clicked this recently and waits for nothing will click again
CLICK_GAP_S = 1.0           # submissions this close together are one click (a comparison's runs)
MAX_RECENT_SESSIONS = 1000  # sessions whose last click the ETAs remember
RECENT_CLICKS = 50          # clicks whose median work a session that has not clicked yet is expected to bring
MAX_TRAINED_KEYS = 100_000  # run keys `trained` counts (about 100 B each; the store is the record)
DEFAULT_MAX_STACK = 24      # runs offered to one slice at most (stack.DEFAULT_MAX_STACK)

ReportFn = Callable[..., None]                     # report(progress, message, **partial)
WorkFn = Callable[[ReportFn, Callable[[], bool]], Any]


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class QueueFull(LampError):
    """A session asked for more unfinished jobs than the per-session cap allows."""


# ----------------------------------------------------------------------------- landscapes
# The one place this module calls the landscape code ("train first, then cut" lives there).

def _landscape():
    from . import surfaces         # cached_surface, surface_for_run, landscape_key
    return surfaces


# ----------------------------------------------------------------------------- records

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
    position: int | None             # 1 = next to get a turn; None once running or finished
    eta_s: float | None              # estimated seconds until done (upper estimate); None when final
    wanted_by: int                   # sessions that asked for it and have not pressed Stop


@dataclass(eq=False)
class Job:
    id: int
    key: str
    kind: str                        # "run", "surface" or "task"
    label: str
    order: int                       # submission order (a session's jobs run oldest first)
    cfg: RunConfig | None = None
    lcfg: LandscapeConfig | None = None
    work: WorkFn | None = None       # a task's (or a surface's) work, run as one slice
    needs: "Job | None" = None       # a surface's run job, while the run is not finished
    requesters: set[str] = field(default_factory=set)   # session ids and "job:<id>" tokens
    status: str = QUEUED
    progress: float = 0.0
    message: str = "queued"
    partial: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    cached: bool = False
    evicted: bool = False            # done, and its result let go: the store has it (_trim)
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    ckpt: dict[str, Any] | None = None   # RunSlot.checkpoint() after its last finished slice
    steps: int = 0                   # training steps done (from the worker's last reply)
    steps_total: int = 0             # 0 until its first slice: then planned_steps counts
    steps_per_epoch: int = 0
    deaths: int = 0                  # worker deaths while it was in the slice
    worker: Any = None               # the worker it is in a slice on (to send Stop to)
    in_slice: bool = False           # a worker is advancing it now
    follows: bool = False            # reserved to follow a slice's group, not started yet
    position: int | None = None
    eta_s: float | None = None
    # (its first simulated ETA, when, the part of it that was its session's own work): to learn the scale
    eta_first: tuple[float, float, float] | None = None
    eta_context: dict[str, Any] | None = None      # the queue as its first ETA saw it ($LAMP_ETA_LOG)
    eta_measured: bool = False       # its first ETA came from measured speeds, not the calibration
    stop_flag: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done_event: threading.Event = field(default_factory=threading.Event)

    def view(self) -> JobView:
        with self.lock:
            wanted = sum(1 for r in self.requesters if not r.startswith("job:"))
            return JobView(self.id, self.key, self.kind, self.label, self.status, self.progress,
                           self.message, dict(self.partial), self.result, self.error, self.cached,
                           self.queued_at, self.started_at, self.finished_at, self.position,
                           self.eta_s, wanted)

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
            self.work = self.ckpt = self.needs = self.worker = None     # drop closures and weights
            self.position = self.eta_s = None
        self.done_event.set()


def _phase(job: Job) -> int:
    """The step within its epoch a run is at (0 before its first slice): a stack's runs draw
    batches of one shape, and the last batch of an epoch may be smaller."""
    return job.steps % job.steps_per_epoch if job.steps_per_epoch else 0


def _warm_up() -> None:
    """Build one optimizer while the queue is idle: the first one in a process imports
    torch._dynamo (seconds on a loaded CPU, longer while a server renders pages), which would
    otherwise delay the first Train click."""
    import torch
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def default_devices() -> list[str]:
    """One worker per CUDA GPU, else one for the CPU."""
    import torch
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def _describe(cfg: RunConfig) -> str:
    loss = f"{cfg.train.base_loss}{' LAMP' if cfg.train.lamp else ''}"
    return f"{loss}, batch {cfg.train.batch_size}, seed {cfg.train.seed}"


class JobQueue:
    """Fair background jobs with one worker per device; see the module docstring."""

    def __init__(self, store: RunStore | None = None, devices: list[str] | None = None, *,
                 slice_s: float | None = None, max_per_session: int | None = None,
                 stacking: bool | None = None, max_stack: int | None = None, threads: int | None = None,
                 memory_budget_mb: float | None = None, workers: str | None = None,
                 back_to_back: bool | None = None):
        self.store = store if store is not None else RunStore()
        self.worker_kind = worker_kind(workers)
        # torch threads of each worker ($LAMP_THREADS, default one): the lesson's expected numbers
        # were measured on one thread, so a student's run reproduces them, and on a small class
        # server the other cores stay with the page scripts. A worker computes (its calibration)
        # right after setting its count, so no page thread can change it (lamp_core.threads).
        self.threads = threads or int(_env_float("LAMP_THREADS", 0)) or 1
        if self.worker_kind == "ray" and not devices:
            connect_ray(os.environ.get("LAMP_RAY_ADDRESS") or "local")
            devices = ray_devices(self.threads)
        self.devices = list(devices) if devices else default_devices()
        self.slice_s = slice_s if slice_s is not None else _env_float("LAMP_SLICE_S", 2.0)
        self.max_per_session = max_per_session or int(_env_float("LAMP_MAX_QUEUED", 40))
        self.stacking = stacking if stacking is not None else os.environ.get("LAMP_STACK", "1") != "0"
        self.max_stack = max_stack
        # short runs of the next turns trained back to back in one slice (`_followers`; LAMP_BACK_TO_BACK=0: off)
        self.back_to_back = (back_to_back if back_to_back is not None
                             else os.environ.get("LAMP_BACK_TO_BACK", "1") != "0")
        # most estimated training memory of one stack (LAMP_STACK_MEMORY_MB; None: plan_stacks' default)
        env_budget = _env_float("LAMP_STACK_MEMORY_MB", 0)
        self.memory_budget_mb = memory_budget_mb or (env_budget if env_budget > 0 else None)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._live: list[Job] = []                       # unfinished jobs, oldest first
        self._sessions: dict[str, tuple[int, int]] = {}   # session -> (its last turn, its arrival)
        self._turns = itertools.count(1)
        self._by_key: OrderedDict[str, Job] = OrderedDict()
        self._by_id: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._step_s = 0.01                              # measured seconds per run-step (EMA), any run
        # ETAs: a worker's calibration (overhead, seconds per input value of a step) predicts a
        # run's step before it has trained; measured seconds per run-step of each kind of run
        # (network, image, batch, LAMP) and per evaluation of each data set replace it after
        self._calibration: tuple[float, float] | None = None
        self._ratio = 1.0                                # measured / calibrated step seconds (EMA)
        # the same ratio per data set (and image size): the calibration times 28x28 digits, and
        # its error depends on the images (4-6x high on the 64x64 colour example upload, 1.6x on
        # the digits), far less on the batch size; a data set's first measured run corrects its
        # runs at every other batch size
        self._data_ratio: OrderedDict[str, float] = OrderedDict()
        # actual wait / first simulated ETA of recently finished jobs (`_retire`): the ETAs shown
        # are the simulation times their median (`_eta_scale_now`)
        self._eta_ratios: deque = deque(maxlen=ETA_RATIO_SAMPLES)
        self._step_cost: OrderedDict[tuple, float] = OrderedDict()
        self._eval_cost: OrderedDict[str, float] = OrderedDict()
        self._point_s = 0.05                             # measured seconds per landscape point (EMA)
        self._point_measured = False                     # a surface has been computed here
        # session -> (time of its last click, the work in seconds that click submitted): the ETA
        # simulation expects a recently active session that waits for nothing to click again
        # (work None: it opened a page and has not clicked yet)
        self._clicks: OrderedDict[str, tuple[float, float | None]] = OrderedDict()
        self._click_work: deque = deque(maxlen=RECENT_CLICKS)   # (session, work) of the class's last clicks
        # $LAMP_ETA_LOG: a file that gets one JSON line per finished job (`_log_eta`)
        self._eta_log: str | None = os.environ.get("LAMP_ETA_LOG") or None
        self._slice_span = (0.0, 0.0)                    # perf_counter when the current slice began and ends
        self.slices: deque = deque(maxlen=2000)          # [session, kind, [job ids], t0, t1]: for tests and benches
        self.trained: Counter = Counter()                # run key -> times trained to completion here
        self.steps_trained = 0                           # run-steps the workers reported done
        self._holding = 0                                # submit_runs in progress
        self._closed = False
        self._handles: dict[str, Any] = {}               # device -> its worker, once started
        self.worker_errors: deque = deque(maxlen=20)     # why a worker could not (re)start
        self.worker_threads: dict[str, int] = {}         # device -> torch threads its worker computed on
        self._workers = [threading.Thread(target=self._worker, args=(dev,), name=f"lamp-dispatch-{dev}",
                                          daemon=True) for dev in self.devices]
        for w in self._workers:
            w.start()
        _QUEUES.add(self)

    # ------------------------------------------------------------------ submitting

    def submit(self, key: str, work: WorkFn, *, kind: str = "task", label: str = "",
               ready: Callable[[], Any] | None = None, session: str = DEFAULT_SESSION) -> JobView:
        """Queue `work(report, should_stop)` under `key` as one slice, or join the job that
        already has that key. `ready()` (called in the caller's thread) may return a finished
        result, e.g. from the run store; the job is then done at once and never queued."""
        return self._view(self._submit(key, kind, label or key, session, ready, work=work))

    def submit_run(self, cfg: RunConfig, *, session: str = DEFAULT_SESSION) -> JobView:
        """Train and evaluate one config, through the run store."""
        return self.submit_runs([cfg], session=session)[0]

    def submit_runs(self, cfgs: list[RunConfig], *, session: str = DEFAULT_SESSION) -> list[JobView]:
        """Several runs at once (a comparison's seeds x losses): all queued or, when they would
        take the session over its cap, none (QueueFull)."""
        with self._lock:
            new = sum(1 for c in cfgs if self._would_add(f"run:{run_key(c)}", session))
            self._check_cap(session, new)
            self._holding += 1            # workers wait until all are in, so they can share a stack
        try:
            return [self._view(self._submit_run(c, session)) for c in cfgs]
        finally:
            with self._lock:
                self._holding -= 1
                self._wake.notify_all()

    def submit_surface(self, cfg: RunConfig, lcfg: LandscapeConfig, *,
                       session: str = DEFAULT_SESSION) -> JobView:
        """The loss surface of a run, training the run first (as a run job) when the store lacks
        it. Progress: training steps, then the share of grid points computed;
        `partial["surface"]` holds the latest (coarse, then refined) partial surface."""
        land = _landscape()
        key = f"surface:{run_key(cfg)}:{land.landscape_key(lcfg)}"

        def ready():
            return land.cached_surface(cfg, lcfg, self.store)

        loss = f"{cfg.train.base_loss}{' LAMP' if cfg.train.lamp else ''}"
        with self._lock:
            self._check_cap(session, int(self._would_add(key, session)))
        job = self._submit(key, "surface", f"landscape {loss}, batch {cfg.train.batch_size}", session,
                           ready, lcfg=lcfg, cfg=cfg)
        return self._view(job)

    def _submit_run(self, cfg: RunConfig, session: str) -> Job:
        def ready():
            from .runner import RunRecord
            stored = self.store.get(cfg)        # an unreadable entry is skipped there (None)
            return None if stored is None else RunRecord(stored.result, stored.evaluation, cached=True)
        return self._submit(f"run:{run_key(cfg)}", "run", _describe(cfg), session, ready, cfg=cfg)

    def _would_add(self, key: str, session: str) -> bool:
        job = self._by_key.get(key)
        return not (job is not None and (job.status == DONE or job.status not in FINAL and session in job.requesters))

    def _check_cap(self, session: str, new: int) -> None:
        # caller holds self._lock
        if new <= 0:
            return
        mine = sum(1 for j in self._live if session in j.requesters)
        if mine + new > self.max_per_session:
            raise QueueFull(f"you already have {mine} unfinished jobs and the limit is {self.max_per_session} "
                            "per session: wait for some to finish or stop them")

    def _submit(self, key: str, kind: str, label: str, session: str, ready, **fields) -> Job:
        with self._lock:
            job = self._by_key.get(key)
            if job is not None and job.status not in (STOPPED, FAILED):
                self._by_key.move_to_end(key)
                if job.status not in FINAL:
                    self._want(job, session)
                    self._note_click(session, job, joined=True)
                    self._estimate()
                return job
        cached = ready() if ready is not None else None
        with self._lock:
            job = self._by_key.get(key)          # another session may have raced us here
            if job is not None and job.status not in (STOPPED, FAILED):
                if job.status not in FINAL:
                    self._want(job, session)
                return job
            job = Job(id=next(self._ids), key=key, kind=kind, label=label, order=0, **fields)
            self._by_key[key] = job
            self._by_id[job.id] = job
            if cached is not None:
                job.cached = True
                job.started_at = job.queued_at
                job._finish(DONE, result=cached, message="from the run store")
            else:
                if kind == "surface" and not self.store.has(job.cfg):
                    # train first, as a run job that this surface asks for (it can share a stack)
                    job.needs = self._submit_run_locked(job.cfg, f"job:{job.id}")
                job.order = next(self._ids)
                self._live.append(job)
                self._want(job, session)
                self._note_click(session, job)
                self._estimate()
                self._wake.notify_all()
            self._trim()
            return job

    def _submit_run_locked(self, cfg: RunConfig, requester: str) -> Job:
        # caller holds self._lock; a store hit was checked by the caller (store.has)
        key = f"run:{run_key(cfg)}"
        job = self._by_key.get(key)
        if job is None or job.status in (STOPPED, FAILED) or (job.status == DONE and not self.store.has(cfg)):
            job = Job(id=next(self._ids), key=key, kind="run", label=_describe(cfg), order=next(self._ids), cfg=cfg)
            self._by_key[key] = job
            self._by_id[job.id] = job
            self._live.append(job)
        if job.status not in FINAL:
            job.requesters.add(requester)
        return job

    def _want(self, job: Job, session: str) -> None:
        # caller holds self._lock
        job.requesters.add(session)
        # never served: turn 0, so a newcomer goes before everyone who has had a turn
        self._sessions.setdefault(session, (0, next(self._ids)))

    # ------------------------------------------------------------------ reading and stopping

    def _view(self, job: Job) -> JobView | None:
        """The job's snapshot; a finished job whose result was let go (`_trim`) reads it from the
        store again (None in the odd case that the store lost it: the page asks to press again)."""
        view = job.view()
        if not (job.evicted and view.status == DONE):
            return view
        if job.kind == "surface":
            result = _landscape().cached_surface(job.cfg, job.lcfg, self.store)
        else:
            from .runner import RunRecord
            stored = self.store.get(job.cfg)
            result = None if stored is None else RunRecord(stored.result, stored.evaluation, cached=view.cached)
        return None if result is None else replace(view, result=result)

    def get(self, job_id: int) -> JobView | None:
        with self._lock:
            job = self._by_id.get(job_id)
        return None if job is None else self._view(job)

    def find(self, key: str) -> JobView | None:
        with self._lock:
            job = self._by_key.get(key)
        return None if job is None else self._view(job)

    def find_run(self, cfg: RunConfig) -> JobView | None:
        return self.find(f"run:{run_key(cfg)}")

    def jobs(self, session: str | None = None) -> list[JobView]:
        """Every job this process remembers, or the unfinished ones `session` asked for."""
        with self._lock:
            if session is None:
                jobs = list(self._by_id.values())
            else:
                jobs = [j for j in self._live if session in self._owners(j)]
        return [self._view(j) for j in jobs]

    def counts(self) -> dict[str, int]:
        """Unfinished jobs of the whole server: running (had a slice) and queued (waiting for their first)."""
        with self._lock:
            running = sum(1 for j in self._live if j.status == RUNNING)
            return {"running": running, "queued": len(self._live) - running,
                    "sessions": len({s for j in self._live for s in self._owners(j)})}

    def cancel(self, job_id: int, session: str | None = DEFAULT_SESSION) -> bool:
        """Withdraw `session`'s request for a job; the job stops (a queued one at once, a running
        one within a step) when nobody else wants it. session=None stops it for everyone.
        True when the job is stopping."""
        with self._lock:
            job = self._by_id.get(job_id)
            if job is None or job.status in FINAL:
                return False
            if session is None:
                job.requesters.clear()
            elif session not in job.requesters:
                return False
            job.requesters.discard(session)
            if job.requesters:
                self._estimate()
                return False
            self._stop_locked(job)
            self._estimate()
        return True

    def _stop_locked(self, job: Job) -> None:
        # caller holds self._lock; nobody wants `job` any more
        job.stop_flag.set()
        if job.in_slice and job.worker is not None:
            job.worker.stop(job.id)          # within a step, in whichever process trains it
        dep = job.needs
        if dep is not None and dep.status not in FINAL:
            dep.requesters.discard(f"job:{job.id}")
            if not dep.requesters:
                self._stop_locked(dep)
        if not job.in_slice:
            self._close_stopped(job)

    def _close_stopped(self, job: Job) -> None:
        # caller holds self._lock; the job is not in a slice: finish it here, from its checkpoint
        if job.ckpt is not None:
            from .runner import RunRecord
            from .stack import result_from_checkpoint
            job._finish(STOPPED, result=RunRecord(result_from_checkpoint(job.cfg, job.ckpt, stopped=True), None,
                                                  cached=False),
                        message="stopped; partial results kept")
        else:
            job._finish(STOPPED, message="stopped before it started")
        for handle in self._handles.values():
            handle.forget([job.id])          # a worker's cached slot of it
        self._retire(job)

    def wait(self, job_id: int, timeout: float | None = None) -> JobView | None:
        with self._lock:
            job = self._by_id.get(job_id)
        if job is None:
            return None
        job.done_event.wait(timeout)
        return self._view(job)

    def close(self, timeout: float = 30.0) -> None:
        """Stop every job and the workers (tests, and at interpreter exit: a worker thread
        killed inside a torch operation would abort the process)."""
        with self._lock:
            self._closed = True
            for job in list(self._live):
                job.stop_flag.set()
                if job.in_slice and job.worker is not None:
                    job.worker.stop(job.id)
                if not job.in_slice:
                    job._finish(STOPPED, message="stopped: the server shut down")
            self._live = [j for j in self._live if j.in_slice]
            self._wake.notify_all()
            started = dict(self._handles)
        # a dispatcher whose worker is still starting closes it itself when it is up
        for device, w in zip(self.devices, self._workers):
            if device in started:
                w.join(timeout=timeout)
        for handle in started.values():
            handle.close()

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Wait until every device's worker has started (a worker process imports torch and
        calibrates first: a few seconds); True when all have."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self._handles) == len(self.devices):
                    return True
            time.sleep(0.02)
        return False

    def worker_pids(self) -> dict[str, int | None]:
        """device -> the process id of its worker (the server's own for worker threads)."""
        with self._lock:
            return {d: h.pid for d, h in self._handles.items()}

    @property
    def worker_restarts(self) -> int:
        with self._lock:
            return sum(h.restarts for h in self._handles.values())

    # ------------------------------------------------------------------ choosing the next slice

    def _owners(self, job: Job) -> set[str]:
        # sessions a job works for: its own requesters and those of the surfaces that need it
        out = set()
        for r in job.requesters:
            if r.startswith("job:"):
                parent = self._by_id.get(int(r[4:]))
                if parent is not None:
                    out |= {s for s in parent.requesters if not s.startswith("job:")}
            else:
                out.add(r)
        return out

    def _turn_order(self) -> list[str]:
        # round-robin: the session served longest ago first (newcomers in arrival order)
        return sorted(self._sessions, key=self._sessions.__getitem__)

    def _runnable(self, job: Job, device: str) -> bool:
        if job.in_slice or job.status in FINAL or job.stop_flag.is_set():
            return False
        return job.kind != "surface" or job.needs is None or job.needs.status == DONE

    def _pick(self, device: str) -> tuple[str, Job] | None:
        # caller holds self._lock: the oldest runnable job of the next session in turn
        if self._holding:
            return None
        for session in self._turn_order():
            mine = [j for j in self._live if session in self._owners(j) and self._runnable(j, device)]
            if mine:
                self._sessions[session] = (next(self._turns), self._sessions[session][1])
                job = min(mine, key=lambda j: j.order)
                job.in_slice = True
                return session, job
        if len(self._sessions) > 10_000:          # forget idle sessions of a long-running server
            busy = {s for j in self._live for s in self._owners(j)}
            self._sessions = {s: v for s, v in self._sessions.items() if s in busy}
        return None

    def _stack_candidates(self, job: Job, session: str, device: str) -> list[Job]:
        # caller holds self._lock: runs that may join `job`'s slice, best first - this session's,
        # then runs already under way (they hold memory), then the others in turn order
        # from the configs only (nothing may load under the lock); _run_slice checks stack_key
        from .stack import stack_signature
        sig = stack_signature(job.cfg)
        turn = {s: i for i, s in enumerate(self._turn_order())}
        out = [j for j in self._live if j is not job and j.kind == "run" and self._runnable(j, device)
               and stack_signature(j.cfg) == sig]

        def rank(j: Job):
            owners = self._owners(j)
            return (session not in owners, j.ckpt is None,
                    min((turn.get(s, len(turn)) for s in owners), default=len(turn)), j.order)
        return sorted(out, key=rank)

    # ------------------------------------------------------------------ the workers

    def _start_worker(self, device: str):
        """Start the worker of `device`, retrying while it fails (and the queue is open)."""
        delay = 1.0
        while not self._closed:
            try:
                return make_worker(self.worker_kind, device, self.threads)
            except Exception as exc:  # noqa: BLE001 - say why, try again
                self.worker_errors.append(f"{device}: {error_text(exc).splitlines()[0]}")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        return None

    def _worker(self, device: str) -> None:
        # The dispatcher of one device: it picks slices under the lock and hands them to its
        # worker (a process, a Ray actor, or this thread). A worker thread sets its torch thread
        # count here; lamp_core.threads says why it still ends up on one thread in the app.
        if self.worker_kind == "thread":
            import torch
            torch.set_num_threads(self.threads)
            _warm_up()
        handle = self._start_worker(device)
        if handle is None:
            return
        with self._lock:
            if self._closed:                 # closed while it started: close() did not wait for it
                handle.close()
                return
            self._handles[device] = handle
            self._calibration = self._calibration or getattr(handle, "calibration", None)
        done_at = time.time()                # when the last slice's reply came ($LAMP_ETA_LOG)
        while True:
            with self._lock:
                picked = None
                waited = False
                while not self._closed:
                    picked = self._pick(device)
                    if picked is not None:
                        break
                    waited = True
                    self._wake.wait(timeout=1.0)
                if self._closed:
                    return
                session, job = picked
                job.worker = handle
                mates: list[Job] = []
                if job.kind == "run" and self.stacking:
                    # reserved now, released as soon as the worker says which ones it stacked;
                    # none where a stack cannot pay (on the CPU above a small step: stack.cpu_stack_cap),
                    # so the worker does not weigh dozens of runs it would train alone anyway
                    cap = (self.max_stack or DEFAULT_MAX_STACK) - 1
                    if not device.endswith(("cuda",)) and not device.startswith("cuda"):
                        from .stack import cpu_stack_cap
                        cap = min(cap, cpu_stack_cap(job.cfg, None, self.threads) - 1)
                    mates = [c for c in self._stack_candidates(job, session, device)
                             if _phase(c) == _phase(job)][:cap]
                    for c in mates:
                        c.in_slice, c.worker = True, handle
                then: list[tuple[str, Job]] = []
                if job.kind == "run" and self.back_to_back:
                    then = self._followers(job, mates, device)
                    for _, c in then:
                        c.in_slice, c.worker, c.follows = True, handle, True
            sent_at = time.time()
            try:
                if job.kind == "run":
                    self._run_slice(handle, session, job, mates, then)
                elif job.kind == "surface":
                    self._surface_slice(handle, session, job)
                else:
                    self._task_slice(session, job, device)
            except WorkerDied as exc:
                handle = self._worker_died(device, handle, [job, *mates, *(c for _, c in then)], exc)
                if handle is None:
                    return
            except Exception as exc:  # noqa: BLE001 - a dispatcher must survive anything
                self._fail([j for j in (job, *mates, *(c for _, c in then)) if j.in_slice], exc)
            replied_at = time.time()
            with self._lock:
                self._estimate()
                self._wake.notify_all()
                if self._eta_log:
                    # the worker's idle time between slices: the reply's filing, the estimate and the pick
                    self._write_eta_log({"slice": job.kind, "device": device, "sent": round(sent_at, 3),
                                         "replied": round(replied_at, 3), "idle_before": round(sent_at - done_at, 4),
                                         "queue_was_empty": waited, "runs": 1 + len(mates) + len(then)})
            done_at = replied_at

    def _worker_died(self, device: str, handle, jobs: list[Job], exc: Exception):
        """A worker died in a slice: restart it; its jobs go back to the queue from their last
        finished slice (their checkpoints), except one that has now killed MAX_WORKER_DEATHS
        workers, which fails with the reason."""
        with self._lock:
            for j in jobs:
                # a follower that had not started is not to blame
                if j.in_slice and not j.follows:
                    j.deaths += 1
                j.follows = False
        handle.restarts += 1
        try:
            handle.close()
        except Exception:  # noqa: BLE001 - it is dead already
            pass
        fresh = self._start_worker(device)
        with self._lock:
            if fresh is not None:
                fresh.restarts = handle.restarts
                self._handles[device] = fresh
            for j in jobs:
                if not j.in_slice:
                    continue
                j.in_slice, j.worker = False, None
                if j.deaths >= MAX_WORKER_DEATHS:
                    j._finish(FAILED, error=f"its worker died {j.deaths} times while training it "
                              f"(out of memory? last: {exc}); try a smaller batch or image size",
                              message="failed")
                    self._retire(j)
                elif j.stop_flag.is_set():
                    self._close_stopped(j)
                else:
                    j.message = "its worker restarted: going on from its last slice"
            self._wake.notify_all()
        return fresh

    def _followers(self, job: Job, mates: list[Job], device: str) -> list[tuple[str, Job]]:
        """Short runs to train back to back after `job`'s group in the same slice, in the order the
        next turns would take them (caller holds the lock). A run that finishes within its slice
        otherwise costs a round trip to the worker and a turn of the dispatcher each (about 30 ms
        against the 0.2 s of a 1-epoch digits run: bench/classroom.py --quick served 40 of them
        at 0.88 of their one-by-one speed); several in one slice pay it once. Only runs whose
        estimated rest fits the slice's time left after `job` are taken, and the first that does
        not fit ends the list, so no later run jumps the queue."""
        budget = self.slice_s - self._remaining(job)
        taken = {job.id, *(m.id for m in mates)}
        out: list[tuple[str, Job]] = []
        order = self._turn_order()          # `job`'s session had its turn just now: it is last
        while budget > 0 and len(out) < MAX_BACK_TO_BACK:
            added = False
            for s in order:
                mine = [j for j in self._live if j.kind == "run" and j.id not in taken
                        and s in self._owners(j) and self._runnable(j, device)]
                if not mine:
                    continue
                nxt = min(mine, key=lambda j: j.order)
                cost = self._remaining(nxt)
                if cost > budget or len(out) >= MAX_BACK_TO_BACK:
                    return out
                out.append((s, nxt))
                taken.add(nxt.id)
                budget -= cost
                added = True
            if not added:
                break
        return out

    def _run_slice(self, handle, session: str, job: Job, mates: list[Job],
                   then: list[tuple[str, Job]] = ()) -> None:
        offered = {j.id: j for j in (job, *mates)}
        followers = {c.id: (s, c) for s, c in then}
        every = {**offered, **{c.id: c for _, c in then}}
        request = RunSliceRequest([SliceJob(j.id, j.cfg, j.ckpt) for j in offered.values()], self.slice_s,
                                  stacking=self.stacking, max_stack=self.max_stack,
                                  memory_budget_mb=self.memory_budget_mb,
                                  then=[SliceJob(c.id, c.cfg, c.ckpt) for _, c in then])
        first_group = [True]
        streamed: list[RunOutcome] = []
        # the slice's record, kept as soon as its first group starts: runs that finish early are
        # final before the reply comes, and whoever reads `slices` then must find their slice
        record: list = []

        def on_event(event) -> None:
            if event[0] == "group":
                now, chosen = time.time(), set(event[1])
                with self._lock:
                    if first_group[0]:
                        first_group[0] = False
                        record.extend([session, "run", [i for i in every if i in chosen], t0, None])
                        self.slices.append(record)
                        for jid, j in offered.items():
                            if jid not in chosen:
                                j.in_slice, j.worker = False, None     # free for another slice
                    for jid in chosen:
                        j = every[jid]
                        j.follows = False
                        if jid in followers:
                            # a follower had its session's turn now (as `_pick` would have given it)
                            s = followers[jid][0]
                            if s in self._sessions:
                                self._sessions[s] = (next(self._turns), self._sessions[s][1])
                        with j.lock:
                            if j.status == QUEUED:
                                j.status, j.started_at = RUNNING, now
                            j.message = f"training on {handle.device}"
                    self._wake.notify_all()
            elif event[0] == "outcome":          # a run that finished before its slice's end
                streamed.append(event[1])
                self._after_slice(every[event[1].job_id], event[1])
            elif event[0] == "progress":
                j, p = every[event[1]], event[2]
                frac = p.get("step", 0) / max(p.get("steps_total", 0), 1)
                j.report(frac, f"epoch {p.get('epoch', 0)}/{p.get('epochs', 0)}, loss {p.get('loss', float('nan')):.4g}",
                         history=p.get("history", {}), loss=p.get("loss"))
                with self._lock:
                    self._mirror(j)

        t0 = time.perf_counter()
        with self._lock:
            self._slice_span = (t0, t0 + self.slice_s)
        reply = handle.run(request, on_event)
        t1 = time.perf_counter()
        self.worker_threads[handle.device] = reply.threads
        self.steps_trained += reply.steps_advanced + reply.then_steps
        if reply.steps_advanced:
            with self._lock:
                self._learn_speed(job.cfg, reply.seconds / reply.steps_advanced,
                                  [(every[o.job_id].cfg, o.eval_s) for o in (*streamed, *reply.outcomes)
                                   if o.eval_s])
        if record:
            record[4] = t1
        else:
            self.slices.append([session, "run", list(reply.group), t0, t1])
        for out in reply.outcomes:
            self._after_slice(every[out.job_id], out)
        # followers the slice had no time for (or that were stopped while they waited) go back
        with self._lock:
            for _, c in then:
                c.follows = False
                if c.in_slice:
                    c.in_slice, c.worker = False, None
                    if c.stop_flag.is_set():
                        self._close_stopped(c)
            self._wake.notify_all()

    def _after_slice(self, job: Job, out: RunOutcome) -> None:
        from .runner import file_run
        if out.status == "done":
            try:
                # evaluated by the worker, filed here (the store is the server's)
                file_run(out.record, self.store)
            except Exception as exc:  # noqa: BLE001
                self._fail([job], exc)
                return
        with self._lock:
            job.in_slice, job.worker = False, None
            job.steps, job.steps_total, job.steps_per_epoch = out.steps, out.steps_total, out.steps_per_epoch
            if out.status == "running":
                job.ckpt = out.checkpoint
                if job.stop_flag.is_set():       # Stop arrived after the worker's last check
                    self._close_stopped(job)
                else:
                    job.message = "waiting for its next turn (training)"
                return
            if out.status == "done":
                self.trained[job.key] += 1
                if len(self.trained) > MAX_TRAINED_KEYS:      # oldest first (dicts keep insertion order)
                    del self.trained[next(iter(self.trained))]
                job._finish(DONE, result=out.record, message="done")
            elif out.status == "stopped":
                job._finish(STOPPED, result=out.record, message="stopped; partial results kept")
            else:
                job._finish(FAILED, error=out.error, message="failed")
            self._retire(job)

    def _surface_slice(self, handle, session: str, job: Job) -> None:
        land = _landscape()
        stored = self.store.get(job.cfg)
        if stored is None:
            raise LampError("its trained run is not in the run store any more: ask for the landscape again")
        with job.lock:
            job.status, job.message = RUNNING, f"running on {handle.device}"
            job.started_at = job.started_at or time.time()

        def on_event(event) -> None:
            if event[0] == "surface":
                surface = event[2]
                done = surface.fraction_done()
                msg = ("sharpness numbers" if surface.complete and not surface.sharpness else
                       "done" if surface.complete else f"{done:.0%} of the grid")
                job.report(0.5 + 0.5 * (0.9 * done + (0.1 if surface.sharpness else 0.0)), msg, surface=surface)

        t0 = time.perf_counter()
        with self._lock:
            self._slice_span = (t0, t0 + self._estimate_task(job))
        reply = handle.run(SurfaceRequest(job.id, job.cfg, job.lcfg, stored.result), on_event)
        t1 = time.perf_counter()
        if reply.error is not None:
            raise WorkerError(reply.error)
        surf = reply.surface
        self._point_s = 0.7 * self._point_s + 0.3 * reply.seconds / max(job.lcfg.nx * job.lcfg.ny, 1)
        self._point_measured = True
        self.slices.append((session, "surface", [job.id], t0, t1))
        stopped = job.stop_flag.is_set() or not surf.complete
        if not stopped and surf.sharpness:
            land.save_surface(job.cfg, job.lcfg, surf, self.store)
        with self._lock:
            job.in_slice, job.worker = False, None
            if stopped:
                job._finish(STOPPED, result=surf, message="stopped; partial results kept")
            else:
                job._finish(DONE, result=surf, message="done")
            self._retire(job)

    def _mirror(self, run: Job) -> None:
        # a surface waiting for this run shows its training progress (first half of its bar)
        for r in list(run.requesters):
            if r.startswith("job:"):
                parent = self._by_id.get(int(r[4:]))
                if parent is not None and parent.status not in FINAL:
                    p = run.view()
                    with parent.lock:
                        parent.status = RUNNING if parent.status == QUEUED else parent.status
                        parent.started_at = parent.started_at or time.time()
                    parent.report(0.5 * p.progress, f"training first: {p.message}", history=p.partial.get("history", {}))

    def _task_slice(self, session: str, job: Job, device: str) -> None:
        # a generic task's closure runs here, in the dispatcher thread of the server process
        with job.lock:
            job.status, job.message = RUNNING, f"running on {device}"
            job.started_at = job.started_at or time.time()
        t0 = time.perf_counter()
        with self._lock:
            self._slice_span = (t0, t0 + self._estimate_task(job))
        try:
            with on_device(device):
                result = job.work(job.report, job.stop_flag.is_set)
        except Exception as exc:  # noqa: BLE001
            self._fail([job], exc)
            return
        t1 = time.perf_counter()
        self.slices.append((session, job.kind, [job.id], t0, t1))
        stopped = job.stop_flag.is_set() or bool(getattr(getattr(result, "result", None), "stopped", False))
        with self._lock:
            job.in_slice = False
            if stopped:
                job._finish(STOPPED, result=result, message="stopped; partial results kept")
            else:
                job._finish(DONE, result=result, message="done")
            self._retire(job)

    def _fail(self, jobs: list[Job], exc: Exception) -> None:
        if isinstance(exc, (LampError, WorkerError)):   # a user's problem in one line, or formatted already
            error = str(exc)
        else:
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        with self._lock:
            for job in jobs:
                job.in_slice = False
                if job.status not in FINAL:
                    job._finish(FAILED, error=error, message="failed")
                    self._retire(job)

    def _retire(self, job: Job) -> None:
        # caller holds self._lock: a job became final; surfaces that needed it follow it
        if job in self._live:
            self._live.remove(job)
        if job.status == DONE and job.eta_first is not None and self._eta_log:
            self._log_eta(job)
        if (job.status == DONE and job.eta_first is not None and job.eta_measured
                and job.eta_first[0] - job.eta_first[2] >= ETA_LEARN_MIN_S):
            # The simulation sees only the work queued now (no future clicks, no stacking), so
            # the time a job waits behind other sessions differs from it by a factor that depends
            # on the class. Learn it from finished jobs, (actual - own work) / (first estimate -
            # own work), as a median over the last ETA_RATIO_SAMPLES of any kind. Only the wait
            # is scaled: a factor learned while the class queues (up to 2) made the ETAs of a job
            # that nobody waits behind, such as a whole class sharing one run, 2.2x too long.
            # Only estimates made on measured speeds teach it: a first estimate from the
            # worker's calibration alone (a fresh server's first runs: 3.5x off in the soak) would
            # skew every ETA after it. (A per-kind moving average did: in a soak's log, per click,
            # it erred by 0.55 of the wait, the plain simulation by 0.35 and this median by 0.33.)
            predicted, at, own = job.eta_first
            self._eta_ratios.append(max(job.finished_at - at - own, 0.0) / (predicted - own))
        for other in list(self._live):
            if other.needs is job:
                if job.status == DONE:
                    other.needs = None
                elif not other.in_slice:
                    other._finish(job.status, error=job.error and f"training failed: {job.error}",
                                  message=f"training {job.status}")
                    self._retire(other)
        self._trim()

    def _eta_scale_now(self) -> float:
        # caller holds self._lock
        if len(self._eta_ratios) < ETA_RATIO_MIN_SAMPLES:
            return 1.0
        ratios = sorted(self._eta_ratios)
        mid = len(ratios) // 2
        median = ratios[mid] if len(ratios) % 2 else 0.5 * (ratios[mid - 1] + ratios[mid])
        return min(max(median, ETA_SCALE_BOUNDS[0]), ETA_SCALE_BOUNDS[1])

    def _speed_measured(self, job: Job) -> bool:
        # caller holds self._lock: was this job's estimate made on measured speeds (its kind of
        # run has trained here, or a surface has been computed), not the calibration alone?
        from .stack import stack_signature
        if job.kind == "run" and job.cfg is not None:
            return (stack_signature(job.cfg), job.cfg.train.lamp) in self._step_cost
        if job.kind == "surface":
            return self._point_measured and (job.needs is None or self._speed_measured(job.needs))
        return False

    def _log_eta(self, job: Job) -> None:
        # caller holds self._lock: one JSON line per finished job, for studying the estimate
        # offline (what it predicted first, what the queue looked like then, what it took)
        raw, at, own = job.eta_first
        rec = {"kind": _eta_kind(job), "id": job.id, "sessions": sorted(self._owners(job)) or sorted(job.requesters),
               "own_ahead": round(own, 3), "first_at": round(at, 3), "queued_at": round(job.queued_at, 3),
               "finished_at": round(job.finished_at, 3), "simulated": round(raw, 3), **(job.eta_context or {})}
        self._write_eta_log(rec)

    def _write_eta_log(self, rec: dict) -> None:
        # caller holds self._lock
        import json
        try:
            with open(self._eta_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
        except OSError as exc:                 # a log that cannot be written costs the queue nothing
            self.worker_errors.append(f"ETA log {self._eta_log}: {exc}")
            self._eta_log = None

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
        # a finished run's record (weights, scores, ROC: about 0.6 MB at the default) or surface
        # stays in memory for the most recent MAX_FINISHED_RESULTS only; older ones are read
        # from the store when asked for (`_view`), so the server's memory stops growing
        held = [j for j in self._by_key.values()
                if j.status == DONE and j.kind in ("run", "surface") and j.result is not None]
        for job in held[: max(0, len(held) - MAX_FINISHED_RESULTS)]:
            with job.lock:
                job.result, job.evicted = None, True

    # ------------------------------------------------------------------ positions and ETAs

    def _estimate_task(self, job: Job) -> float:
        if job.kind == "surface" and job.lcfg is not None:
            return self._point_s * job.lcfg.nx * job.lcfg.ny
        return self.slice_s

    def _remaining(self, job: Job) -> float:
        if job.kind != "run":
            return self._estimate_task(job)
        if job.steps_total:
            steps = max(job.steps_total - job.steps, 0)
        else:
            from .run_types import planned_steps
            steps = planned_steps(job.cfg)            # never loads: this runs under the queue's lock
        return max(steps * self._run_step_s(job.cfg) + self._test_pass_s(job.cfg), 0.05)

    # caller holds self._lock for the methods below, through _learn_speed
    def _image_shape(self, cfg: RunConfig) -> tuple[int, int]:
        channels = cfg.data.channels or (1 if cfg.data.dataset in ("digits", "mnist", "fashion-mnist") else 3)
        return channels, cfg.data.image_size

    def _calibrated_per_value(self, cfg: RunConfig) -> float:
        # caller checked that there is a calibration
        from .workers import calibrated_per_value
        return calibrated_per_value(self._calibration, *self._image_shape(cfg))

    def _calibrated_step_s(self, cfg: RunConfig) -> float:
        # one step of `cfg` as the worker's calibration predicts it
        return self._calibration[0] + self._calibrated_per_value(cfg) * self._values_per_step(cfg)

    def _values_per_step(self, cfg: RunConfig) -> int:
        # a batch larger than the training set is the whole set (batch 1024 on 60 uploaded
        # images trains on 60 a step: counting 1024 made its first estimate 75x too long)
        from .run_types import expected_train_images
        channels, size = self._image_shape(cfg)
        return min(cfg.train.batch_size, max(expected_train_images(cfg), 1)) * channels * size ** 2

    def _calibration_ratio(self, cfg: RunConfig) -> float:
        return self._data_ratio.get(repr(cfg.data), self._ratio)

    def _run_step_s(self, cfg: RunConfig) -> float:
        from .stack import stack_signature
        known = self._step_cost.get((stack_signature(cfg), cfg.train.lamp))
        if known is not None:
            return known
        if self._calibration is None:
            return self._step_s
        return self._calibrated_step_s(cfg) * self._calibration_ratio(cfg)

    def _test_pass_s(self, cfg: RunConfig) -> float:
        known = self._eval_cost.get(repr(cfg.data))
        if known is not None or self._calibration is None:
            return known or 0.0
        # a forward pass costs about a third of a training step; the test set size is a guess
        # until one evaluation of this data set has been timed
        from . import data as data_mod
        ds = data_mod.peek(cfg.data)
        images = len(ds.test) if ds is not None else (cfg.data.max_test or 2000)
        channels, size = self._image_shape(cfg)
        per_image = self._calibrated_per_value(cfg) * channels * size ** 2
        return per_image * images / 3 * self._calibration_ratio(cfg)

    def _learn_speed(self, cfg: RunConfig, run_step_s: float, evals: list[tuple[RunConfig, float]]) -> None:
        from .stack import stack_signature
        self._step_s = 0.7 * self._step_s + 0.3 * run_step_s
        ratio: list[tuple[OrderedDict, str, float]] = []
        if self._calibration is not None:
            predicted = self._calibrated_step_s(cfg)
            if predicted > 0:
                self._ratio = 0.8 * self._ratio + 0.2 * run_step_s / predicted
                ratio = [(self._data_ratio, repr(cfg.data), run_step_s / predicted)]
        for table, key, value in [(self._step_cost, (stack_signature(cfg), cfg.train.lamp), run_step_s), *ratio,
                                  *[(self._eval_cost, repr(c.data), e) for c, e in evals]]:
            old = table.get(key)
            table[key] = value if old is None else 0.5 * old + 0.5 * value
            table.move_to_end(key)
            while len(table) > MAX_COST_KEYS:
                table.popitem(last=False)

    def note_arrival(self, session: str) -> None:
        """A session opened its first page: in a class it is about to click (`_expected_clicks`)."""
        with self._lock:
            if session not in self._clicks:
                self._remember_click(session, time.time(), None)

    def _note_click(self, session: str, job: Job, joined: bool = False) -> None:
        # caller holds self._lock: the work a session's click submitted (a comparison's runs come
        # as several submissions within CLICK_GAP_S: one click). A click that joins a job already
        # queued adds no work: when a class presses the same Train, the 29 who join bring nothing.
        now = time.time()
        work = 0.0 if joined else self._work_with_needs(job)
        last = self._clicks.pop(session, None)
        if last is not None and last[1] is not None and now - last[0] <= CLICK_GAP_S:
            work += last[1]
            # the same click, grown: its entry is this session's latest (others may have clicked since)
            mine = [i for i, (s, _) in enumerate(self._click_work) if s == session]
            if mine:
                self._click_work[mine[-1]] = (session, work)
            else:
                self._click_work.append((session, work))
        else:
            self._click_work.append((session, work))
        self._remember_click(session, now, work)

    def _remember_click(self, session: str, at: float, work: float | None) -> None:
        # caller holds self._lock: a session's latest click, newest last, MAX_RECENT_SESSIONS at most
        self._clicks[session] = (at, work)
        while len(self._clicks) > MAX_RECENT_SESSIONS:
            self._clicks.popitem(last=False)

    def _expected_clicks(self, busy: set[str]) -> list[tuple[str, float]]:
        # caller holds self._lock: sessions that clicked within ARRIVAL_WINDOW_S and wait for
        # nothing now. In a class they come back with another click and, in the round-robin, take
        # turns before a long job queued now finishes; the simulation counts each as about to
        # submit the work of its last click, at the end of the turn order. (Expecting the busy
        # sessions to click again too, after their queued jobs, made the soak's first ETAs,
        # already too high when a class arrives at once, higher still: median error 0.62, 0.38
        # without; bench/results/class_soak_quick.md.)
        # A session that opened the lab and has not clicked yet (`note_arrival`) is expected to
        # bring a typical click: the median work of the class's recent clicks.
        now = time.time()
        typical = self._typical_click_work()
        return [(s, typical if work is None else work) for s, (t, work) in self._clicks.items()
                if s not in busy and now - t <= ARRIVAL_WINDOW_S]

    def _typical_click_work(self) -> float:
        # caller holds self._lock: the median work of the class's recent clicks (0 before any)
        return statistics.median(w for _, w in self._click_work) if self._click_work else 0.0

    def _work_with_needs(self, job: Job) -> float:
        # caller holds self._lock: a job's remaining work and that of the run it needs first
        return self._remaining(job) + (self._remaining(job.needs) if job.needs is not None else 0.0)

    def _estimate(self) -> None:
        """Simulate the round-robin (one turn = one slice of a session's oldest job), with the
        sessions expected to click again (`_expected_clicks`), and store each unfinished job's
        position (order of its first turn) and ETA. Caller holds the lock."""
        left = {j.id: self._remaining(j) for j in self._live}
        # The slice under way ends at `clock`. Its jobs' remaining work still counts from before it
        # began (a run's steps arrive with the slice's reply; a landscape is one slice), so the
        # slice's length comes off it here, once: a landscape under way was counted twice, and a
        # student who joined one 5 s before its end was told 55 s.
        now = time.perf_counter()
        began, ends = self._slice_span
        clock = max(ends - now, 0.0)
        covered = ends - began
        finish: dict[int, float] = {}
        for j in sorted((j for j in self._live if j.in_slice), key=lambda j: j.order):
            cut = min(left[j.id], covered)
            left[j.id] -= cut
            covered -= cut
            if left[j.id] <= 1e-9:
                finish[j.id] = clock
        owners = {j.id: self._owners(j) for j in self._live}
        queues = {s: sorted((j for j in self._live if s in owners[j.id]), key=lambda j: j.order)
                  for s in self._turn_order()}
        busy = {s for s, q in queues.items() if q}
        # each job's own work: its session's jobs up to it, which the round-robin serves first
        # (a comparison's sixth run waits for its first five), and the rest of the slice under
        # way when that is its session's; the rest of its ETA is waiting behind other sessions,
        # the part the learned scale corrects
        own: dict[int, float] = {}
        for q in queues.values():
            ahead = clock if q and q[0].in_slice else 0.0
            for j in q:
                ahead += left[j.id]
                own[j.id] = max(own.get(j.id, 0.0), ahead)
        # what the simulation starts from, for $LAMP_ETA_LOG's snapshot (written below when a job
        # gets its first ETA): replaying other simulations offline needs the queue, not a summary
        start = ({"clock": round(clock, 3), "queues": [[s, [[j.id, round(left[j.id], 3), j.kind,
                                                             j.needs.id if j.needs is not None else None]
                                                            for j in q]] for s, q in queues.items() if q],
                  "own": {j_id: round(v, 3) for j_id, v in own.items()},
                  "finished_at_start": sorted(finish),
                  "clicks": [[s, round(age, 2), None if w is None else round(w, 3)]
                             for stamp in (time.time(),)          # every age from one instant
                             for s, (t, w) in self._clicks.items()
                             if (age := stamp - t) <= 10 * ARRIVAL_WINDOW_S],
                  "click_work": [round(w, 3) for _, w in self._click_work], "slice_s": self.slice_s}
                 if self._eta_log else None)
        for n, (session, work) in enumerate(self._expected_clicks(busy)):
            expected = _ExpectedClick(id=-1 - n)
            left[expected.id] = work
            queues.pop(session, None)
            queues[session] = [expected]       # after everyone queued now
        context = ({"busy_sessions": len(busy), "expected_clicks": sum(1 for k in left if k < 0),
                    "queued_work": round(sum(v for k, v in left.items() if k >= 0), 3),
                    "expected_work": round(sum(v for k, v in left.items() if k < 0), 3)}
                   if self._eta_log else {})
        first_turn: dict[int, int] = {}
        turns = 0
        while turns < SIM_MAX_TURNS and any(queues.values()):
            turns_before = turns
            for s, q in queues.items():
                while q and q[0].id in finish:
                    q.pop(0)
                ready = [j for j in q if j.kind != "surface" or j.needs is None or j.needs.id in finish]
                if not ready:
                    continue
                j = ready[0]
                if j.status == QUEUED and not j.in_slice:
                    first_turn.setdefault(j.id, len(first_turn) + 1)
                d = min(self.slice_s, left[j.id]) if j.kind == "run" else left[j.id]
                clock += d
                left[j.id] -= d
                turns += 1
                if left[j.id] <= 1e-9:
                    finish[j.id] = clock
            if turns == turns_before:          # nothing can move (a surface whose run is not queued)
                break
        wall = time.time()
        scale = self._eta_scale_now()
        firsts = []
        for j in self._live:
            with j.lock:
                j.position = first_turn.get(j.id) if j.status == QUEUED else None
                raw = finish.get(j.id)
                mine = min(own.get(j.id, 0.0), raw or 0.0)
                if raw is not None and j.eta_first is None:
                    j.eta_first = (raw, wall, mine)
                    firsts.append(j.id)
                    j.eta_measured = self._speed_measured(j)
                    if self._eta_log:
                        j.eta_context = {"own_work": round(self._work_with_needs(j), 3), "scale": round(scale, 4),
                                         "measured": j.eta_measured, **context}
                j.eta_s = None if raw is None else mine + (raw - mine) * scale
        if start is not None and firsts:
            self._write_eta_log({"snapshot": round(wall, 3), "first": firsts, "scale": round(scale, 4), **start})


def _eta_kind(job: Job) -> str:
    """The kind of job whose waits the ETA scale learns together: a landscape, or a run by its batch
    size (a run's steps, and so how well its first estimate holds, follow its batch)."""
    if job.kind == "run" and job.cfg is not None:
        return f"run:batch {job.cfg.train.batch_size}"
    return job.kind


@dataclass
class _ExpectedClick:
    """The simulation's stand-in for a click a recently active session is expected to make."""
    id: int
    kind: str = "run"
    status: str = "expected"
    in_slice: bool = False
    needs: None = None


_QUEUES: "weakref.WeakSet[JobQueue]" = weakref.WeakSet()


@atexit.register
def close_all(timeout: float = 30.0) -> None:
    """Close every queue of this process (registered to run at exit)."""
    for q in list(_QUEUES):
        q.close(timeout)
