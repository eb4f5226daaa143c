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
* **Sharing and Stop.** Every job records which sessions asked for it. `cancel(id, session)`
  withdraws that session's request; the job stops only when nobody wants it any more. A stopped
  run keeps its partial history; partial runs are never stored.
* **Position and ETA.** After every slice and submission the queue simulates its round-robin
  with each job's remaining work (steps left x the measured seconds per run-step; ignoring
  stacking, so the ETA is an upper estimate) and stores each waiting job's position and ETA.
* **A cap per session.** A session may have at most `max_per_session` ($LAMP_MAX_QUEUED, default
  40) unfinished jobs; more raises `QueueFull` with one line to show.
* **Landscapes** are jobs too: the run is trained first (as a run job, in slices, stackable),
  then the surface is computed in one slice. The app's grids take tens of seconds; a large grid
  holds its worker until done (a surface computation cannot yet be resumed).

Workers: one thread per device (each CUDA GPU, else the CPU); a worker runs plain `lamp_core`
code, never Streamlit, and writes progress into the job's record under a lock; pages read
`JobView` snapshots when they poll. `tests/test_jobs.py` drives it without Streamlit.
This module is longer than most because the scheduler, its records and its estimates are one
idea that shares one lock.
"""
from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
import traceback
import weakref
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import LampError, LandscapeConfig, RunConfig, run_key
from .store import RunStore
from .threads import single_threaded_caller, usable_cores  # noqa: F401  (the app imports the caller's from here)

QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"
FINAL = (DONE, STOPPED, FAILED)
MAX_FINISHED = 512          # finished jobs kept in memory (their results also live in the store)
MAX_REPLACED = 64           # stopped/failed jobs kept after a resubmission replaced them
DEFAULT_SESSION = "-"       # the requester of calls that name no session (scripts, tests)
SIM_MAX_TURNS = 20_000      # bound on the ETA simulation's work per update

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
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    slot: Any = None                 # stack.RunSlot once the run has had a slice
    device: str | None = None        # where its slot lives
    in_slice: bool = False           # a worker is advancing it now
    position: int | None = None
    eta_s: float | None = None
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
            self.work = self.slot = self.needs = None     # drop closures, weights and data
            self.position = self.eta_s = None
        self.done_event.set()


def _phase(job: Job) -> int:
    """The step within its epoch a run is at (0 before its first slice)."""
    slot = job.slot
    return 0 if slot is None or not slot.steps_per_epoch else slot.steps % slot.steps_per_epoch


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
    """Fair background jobs with one worker thread per device; see the module docstring."""

    def __init__(self, store: RunStore | None = None, devices: list[str] | None = None, *,
                 slice_s: float | None = None, max_per_session: int | None = None,
                 stacking: bool | None = None, max_stack: int | None = None, threads: int | None = None,
                 memory_budget_mb: float | None = None):
        self.store = store if store is not None else RunStore()
        # torch threads of each worker (LAMP_THREADS, else the usable cores); see _worker
        self.threads = threads or int(_env_float("LAMP_THREADS", 0)) or usable_cores()
        self.devices = list(devices) if devices else default_devices()
        self.slice_s = slice_s if slice_s is not None else _env_float("LAMP_SLICE_S", 2.0)
        self.max_per_session = max_per_session or int(_env_float("LAMP_MAX_QUEUED", 40))
        self.stacking = stacking if stacking is not None else os.environ.get("LAMP_STACK", "1") != "0"
        self.max_stack = max_stack
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
        self._step_s = 0.01                              # measured seconds per run-step (EMA)
        self._point_s = 0.05                             # measured seconds per landscape point (EMA)
        self._slice_end = 0.0                            # perf_counter when the current slice ends
        self.slices: deque = deque(maxlen=2000)          # (session, kind, [job ids], t0, t1): for tests and benches
        self.trained: Counter = Counter()                # run key -> times trained to completion here
        self._holding = 0                                # submit_runs in progress
        self._closed = False
        self._workers = [threading.Thread(target=self._worker, args=(dev,), name=f"lamp-worker-{dev}",
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
        return self._submit(key, kind, label or key, session, ready, work=work).view()

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
            return [self._submit_run(c, session).view() for c in cfgs]
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

        def work(report: ReportFn, should_stop):
            def on_progress(surface) -> None:
                done = surface.fraction_done()
                msg = ("sharpness numbers" if surface.complete and not surface.sharpness else
                       "done" if surface.complete else f"{done:.0%} of the grid")
                report(0.5 + 0.5 * (0.9 * done + (0.1 if surface.sharpness else 0.0)), msg, surface=surface)
            return land.surface_for_run(cfg, lcfg, self.store, on_progress=on_progress, should_stop=should_stop)

        loss = f"{cfg.train.base_loss}{' LAMP' if cfg.train.lamp else ''}"
        with self._lock:
            self._check_cap(session, int(self._would_add(key, session)))
        job = self._submit(key, "surface", f"landscape {loss}, batch {cfg.train.batch_size}", session,
                           ready, work=work, lcfg=lcfg, cfg=cfg)
        return job.view()

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

    def get(self, job_id: int) -> JobView | None:
        with self._lock:
            job = self._by_id.get(job_id)
        return None if job is None else job.view()

    def find(self, key: str) -> JobView | None:
        with self._lock:
            job = self._by_key.get(key)
        return None if job is None else job.view()

    def find_run(self, cfg: RunConfig) -> JobView | None:
        return self.find(f"run:{run_key(cfg)}")

    def jobs(self, session: str | None = None) -> list[JobView]:
        """Every job this process remembers, or the unfinished ones `session` asked for."""
        with self._lock:
            if session is None:
                jobs = list(self._by_id.values())
            else:
                jobs = [j for j in self._live if session in self._owners(j)]
        return [j.view() for j in jobs]

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
        dep = job.needs
        if dep is not None and dep.status not in FINAL:
            dep.requesters.discard(f"job:{job.id}")
            if not dep.requesters:
                self._stop_locked(dep)
        if not job.in_slice:
            self._close_stopped(job)

    def _close_stopped(self, job: Job) -> None:
        # caller holds self._lock; the job is not in a slice: finish it here
        if job.slot is not None:
            from .runner import RunRecord
            job.slot.stop()
            job._finish(STOPPED, result=RunRecord(job.slot.result(), None, cached=False),
                        message="stopped; partial results kept")
        else:
            job._finish(STOPPED, message="stopped before it started")
        self._retire(job)

    def wait(self, job_id: int, timeout: float | None = None) -> JobView | None:
        with self._lock:
            job = self._by_id.get(job_id)
        if job is None:
            return None
        job.done_event.wait(timeout)
        return job.view()

    def close(self, timeout: float = 30.0) -> None:
        """Stop every job and the workers (tests, and at interpreter exit: a worker thread
        killed inside a torch operation would abort the process)."""
        with self._lock:
            self._closed = True
            for job in list(self._live):
                job.stop_flag.set()
                if not job.in_slice:
                    job._finish(STOPPED, message="stopped: the server shut down")
            self._live = [j for j in self._live if j.in_slice]
            self._wake.notify_all()
        for w in self._workers:
            w.join(timeout=timeout)

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
        if job.device is not None and job.device != device:
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
            return (session not in owners, j.slot is None,
                    min((turn.get(s, len(turn)) for s in owners), default=len(turn)), j.order)
        return sorted(out, key=rank)

    # ------------------------------------------------------------------ the workers

    def _worker(self, device: str) -> None:
        # Set here, in the worker thread. torch's thread count is not simply per thread
        # (lamp_core.threads): this call also sets a process-wide value, and a thread takes that
        # value at its first torch operation, overwriting what it set before. The worker runs
        # none before its first job, and in the app a page thread has called
        # `single_threaded_caller()` by then (it sets the process-wide value to 1), so in practice
        # the worker trains on one thread once a page has run; `lamp lesson measure` measures on
        # one thread for that reason. The page threads compute on one thread on purpose: beside
        # another thread's OpenMP team of several threads, a worker's training step ran about
        # 2.2x slower (bench/results/thread_contention.md: 0.31 s per run alone or beside a
        # one-thread caller, 0.68 s beside a caller that used all cores).
        import torch
        torch.set_num_threads(self.threads)
        _warm_up()
        while True:
            with self._lock:
                picked = None
                while not self._closed:
                    picked = self._pick(device)
                    if picked is not None:
                        break
                    self._wake.wait(timeout=1.0)
                if self._closed:
                    return
                session, job = picked
                candidates = self._stack_candidates(job, session, device) if job.kind == "run" else []
            try:
                if job.kind == "run":
                    self._run_slice(session, job, candidates, device)
                else:
                    self._task_slice(session, job, device)
            except Exception as exc:  # noqa: BLE001 - a worker must survive anything
                self._fail([job], exc)
            with self._lock:
                self._estimate()
                self._wake.notify_all()

    def _dataset(self, cfg: RunConfig):
        from . import data as data_mod     # the process's one data-set cache
        return data_mod.load(cfg.data)

    def _run_slice(self, session: str, job: Job, candidates: list[Job], device: str) -> None:
        from . import stack
        try:
            main_data = self._dataset(job.cfg)
        except Exception as exc:  # noqa: BLE001 - e.g. an upload that no longer loads
            self._fail([job], exc)
            return
        group = [job]
        if self.stacking and candidates:
            items, mates = [(job.cfg, main_data)], []
            key = stack.stack_key(job.cfg, main_data)
            for c in candidates:
                try:
                    cd = self._dataset(c.cfg)
                except Exception:  # noqa: BLE001 - that run fails in its own turn, with its message
                    continue
                # same stack key, and at the same step of its epoch: a stack's runs draw batches of
                # one shape, and the last batch of an epoch may be smaller
                if stack.stack_key(c.cfg, cd) == key and _phase(c) == _phase(job):
                    items.append((c.cfg, cd))
                    mates.append(c)
            plan = stack.plan_stacks(items, max_stack=self.max_stack, memory_budget_mb=self.memory_budget_mb)
            first = next(g for g in plan if 0 in g)
            with self._lock:
                for i in first:
                    if i and self._runnable(mates[i - 1], device):
                        mates[i - 1].in_slice = True
                        group.append(mates[i - 1])
        now = time.time()
        for j in group:
            try:
                if j.slot is None:
                    j.slot = stack.RunSlot(j.cfg, self._dataset(j.cfg), device)
                    j.device = device
            except Exception as exc:  # noqa: BLE001
                self._fail([j], exc)
                continue
            with j.lock:
                if j.status == QUEUED:
                    j.status, j.started_at = RUNNING, now
                j.message = f"training on {device}"
        group = [j for j in group if j.status not in FINAL]
        by_slot = {id(j.slot): j for j in group}

        def on_progress(slot, p: dict[str, Any]) -> None:
            j = by_slot[id(slot)]
            steps = max(p.get("steps_total", 0), 1)
            frac = p.get("step", 0) / steps
            j.report(frac, f"epoch {p.get('epoch', 0)}/{p.get('epochs', 0)}, loss {p.get('loss', float('nan')):.4g}",
                     history=p.get("history", {}), loss=p.get("loss"))
            self._mirror(j)

        steps_before = sum(j.slot.steps for j in group)
        t0 = time.perf_counter()
        with self._lock:
            self._slice_end = t0 + self.slice_s
        try:
            with _on_device(device):
                stack.train_slots([j.slot for j in group], deadline=t0 + self.slice_s, on_progress=on_progress,
                                  should_stop=lambda slot: by_slot[id(slot)].stop_flag.is_set())
        except Exception as exc:  # noqa: BLE001
            self._fail(group, exc)
            return
        t1 = time.perf_counter()
        advanced = sum(j.slot.steps for j in group) - steps_before
        if advanced:
            self._step_s = 0.7 * self._step_s + 0.3 * (t1 - t0) / advanced
        self.slices.append((session, "run", [j.id for j in group], t0, t1))
        for j in group:
            self._after_slice(j, device)

    def _after_slice(self, job: Job, device: str) -> None:
        from .runner import RunRecord, finish_run
        slot = job.slot
        if job.stop_flag.is_set() or slot.stopped:
            slot.stop()
            with self._lock:
                job.in_slice = False
                job._finish(STOPPED, result=RunRecord(slot.result(), None, cached=False),
                            message="stopped; partial results kept")
                self._retire(job)
            return
        if not slot.finished:
            with self._lock:
                job.in_slice = False
                job.message = "waiting for its next turn" + (" (training)" if slot.steps else "")
            return
        result = slot.result()
        try:
            with _on_device(device):
                # evaluated and filed as every trained run is (a stopped one was handled above)
                record = finish_run(result, slot.data, self.store)
        except Exception as exc:  # noqa: BLE001
            self._fail([job], exc)
            return
        with self._lock:
            self.trained[job.key] += 1
            job.in_slice = False
            job._finish(DONE, result=record, message="done")
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
        with job.lock:
            job.status, job.message = RUNNING, f"running on {device}"
            job.started_at = job.started_at or time.time()
        t0 = time.perf_counter()
        with self._lock:
            self._slice_end = t0 + self._estimate_task(job)
        try:
            with _on_device(device):
                result = job.work(job.report, job.stop_flag.is_set)
        except Exception as exc:  # noqa: BLE001
            self._fail([job], exc)
            return
        t1 = time.perf_counter()
        if job.kind == "surface" and job.lcfg is not None:
            self._point_s = 0.7 * self._point_s + 0.3 * (t1 - t0) / max(job.lcfg.nx * job.lcfg.ny, 1)
        self.slices.append((session, job.kind, [job.id], t0, t1))
        stopped = job.stop_flag.is_set() or bool(getattr(getattr(result, "result", None), "stopped", False))
        with self._lock:
            job.in_slice = False
            if stopped or (job.kind == "surface" and not getattr(result, "complete", True)):
                job._finish(STOPPED, result=result, message="stopped; partial results kept")
            else:
                job._finish(DONE, result=result, message="done")
            self._retire(job)

    def _fail(self, jobs: list[Job], exc: Exception) -> None:
        if isinstance(exc, LampError):            # a problem the user can fix: one line, no traceback
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
        for other in list(self._live):
            if other.needs is job:
                if job.status == DONE:
                    other.needs = None
                elif not other.in_slice:
                    other._finish(job.status, error=job.error and f"training failed: {job.error}",
                                  message=f"training {job.status}")
                    self._retire(other)
        self._trim()

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

    # ------------------------------------------------------------------ positions and ETAs

    def _estimate_task(self, job: Job) -> float:
        if job.kind == "surface" and job.lcfg is not None:
            return self._point_s * job.lcfg.nx * job.lcfg.ny
        return self.slice_s

    def _remaining(self, job: Job) -> float:
        if job.kind != "run":
            return self._estimate_task(job)
        if job.slot is not None:
            steps = max(job.slot.steps_total - job.slot.steps, 0)
        else:
            from .run_types import planned_steps
            steps = planned_steps(job.cfg)            # never loads: this runs under the queue's lock
        return max(steps * self._step_s, 0.05)

    def _estimate(self) -> None:
        """Simulate the round-robin (one turn = one slice of a session's oldest job) and store
        each unfinished job's position (order of its first turn) and ETA. Caller holds the lock."""
        left = {j.id: self._remaining(j) for j in self._live}
        owners = {j.id: self._owners(j) for j in self._live}
        queues = {s: sorted((j for j in self._live if s in owners[j.id]), key=lambda j: j.order)
                  for s in self._turn_order()}
        now = time.perf_counter()
        clock = max(self._slice_end - now, 0.0)
        first_turn: dict[int, int] = {}
        finish: dict[int, float] = {}
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
        for j in self._live:
            with j.lock:
                j.position = first_turn.get(j.id) if j.status == QUEUED else None
                j.eta_s = finish.get(j.id)


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
