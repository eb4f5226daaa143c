"""Where the app's training and landscapes run: worker processes, Ray actors, or threads.

The job queue (`lamp_core.jobs`) keeps the scheduling in the app server: fair turns, stacking
across sessions, Stop, sharing, positions and the run store. It hands each slice of work to the
worker of a device through one small interface (`run`, `stop`, `forget`, `close`), and the
worker answers with what happened. Three kinds of worker give that interface:

* ``process`` (the app's default): one child process per device (each CUDA GPU, else the
  CPU). Page scripts and training no longer share an interpreter lock or a heap, and a crash or
  an out-of-memory kill in training takes down one worker, which the queue restarts.
* ``ray``: one Ray actor per GPU of a cluster (or per `threads` CPUs where it has none), for a
  course larger than one server ($LAMP_RAY_ADDRESS; docs/app.md).
* ``thread``: a thread of the server process, as before (tests, and $LAMP_WORKERS=thread).

All three run the same `SliceRunner`. A worker is a cache, never the authority: after every
slice it returns each run's `RunSlot.checkpoint()` (weights, optimizer state, data order,
counters; about 1 MB for the default model) and the queue sends the checkpoint with the next
slice. A worker that died therefore costs the slice it was in, and its runs go on from their
last finished slice on the restarted worker (`RunSlot.restore` resumes bit-identically). The
runner keeps the slots it trained in memory and reuses one when its step count matches the
checkpoint, so the usual slice restores nothing.

Workers never touch the run store: a finished run comes back evaluated and the server files it,
and a landscape's worker gets the trained run in its request. So the store is one folder on the
server, also with Ray workers on other machines (they need the data, not the store).
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import queue as queue_mod
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import LampError, LandscapeConfig, RunConfig
from .heap import Trimmer

WORKER_KINDS = ("process", "ray", "thread")
DEFAULT_WORKERS = "process"
MAX_CACHED_SLOTS = 64          # slots a worker keeps between slices (the checkpoint is the truth)
PROGRESS_EVENT_S = 0.2         # at most this often a run's progress crosses to the server, between epochs
THEN_MIN_LEFT_S = 0.05         # a slice starts a waiting run of `then` only with this much time left
SURFACE_EVENT_S = 0.3          # at most this often a partial surface crosses to the server
START_TIMEOUT_S = 120.0        # a worker process that has not said hello by then is broken
HEAP_TRIM_S = 30.0             # a worker process gives its freed heap back at most this often


class WorkerDied(RuntimeError):
    """The worker stopped answering (killed, crashed, out of memory): its slice is lost, not its runs."""


# ----------------------------------------------------------------------------- requests and replies

@dataclass
class SliceJob:
    """One run offered to a slice, with where it stands (None: it has not started)."""
    job_id: int
    cfg: RunConfig
    checkpoint: dict[str, Any] | None = None


@dataclass
class RunSliceRequest:
    """Train jobs[0] for up to slice_s seconds; the other jobs may join its stack. `then`: runs to
    train one after another in the slice's time that is left, once everything trained so far has
    finished (short runs back to back: one round trip to the worker for several, see jobs.py)."""
    jobs: list[SliceJob]
    slice_s: float
    stacking: bool = True
    max_stack: int | None = None
    memory_budget_mb: float | None = None
    then: list[SliceJob] = field(default_factory=list)


@dataclass
class SurfaceRequest:
    """Cut the loss surface of a trained run (one slice: a surface cannot yet be resumed)."""
    job_id: int
    cfg: RunConfig
    lcfg: LandscapeConfig
    run: Any                       # runner.RunRecord's TrainResult of the finished run


@dataclass
class RunOutcome:
    job_id: int
    status: str                    # "running", "done", "stopped" or "failed"
    checkpoint: dict[str, Any] | None = None   # where it stands (running, and stopped with steps)
    record: Any = None             # runner.RunRecord: evaluated when done, partial when stopped
    error: str | None = None
    steps: int = 0
    steps_total: int = 0
    steps_per_epoch: int = 0
    eval_s: float = 0.0            # seconds its evaluation took (done runs)


@dataclass
class SliceReply:
    group: list[int] = field(default_factory=list)        # the job ids that trained together
    outcomes: list[RunOutcome] = field(default_factory=list)
    steps_advanced: int = 0        # of the first group (jobs[0]'s): what the speed model learns from
    seconds: float = 0.0
    then_steps: int = 0            # steps of the runs of `then` trained after it
    surface: Any = None            # a SurfaceRequest's Surface (complete, or partial when stopped)
    error: str | None = None       # a SurfaceRequest that failed
    threads: int = 0               # torch threads the worker computed on


def error_text(exc: BaseException) -> str:
    """A user's problem (LampError) in one line; anything else with its type and a short trace."""
    if isinstance(exc, LampError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"


# ----------------------------------------------------------------------------- the work itself

class SliceRunner:
    """Runs slices on one device. Lives in a worker process, a Ray actor or a server thread;
    `emit(event)` carries progress to the server: ("group", ids), ("progress", id, dict) and
    ("surface", id, fraction, message, surface)."""

    def __init__(self, device: str):
        self.device = device
        self._slots: OrderedDict[int, Any] = OrderedDict()    # job id -> stack.RunSlot
        self._stops: set[int] = set()
        self._lock = threading.Lock()

    def stop(self, job_id: int) -> None:
        """Stop this job within a step if it is in the slice now (any thread may call this)."""
        with self._lock:
            self._stops.add(job_id)

    def forget(self, job_ids: list[int]) -> None:
        with self._lock:
            for i in job_ids:
                self._slots.pop(i, None)
                self._stops.discard(i)

    def _stopping(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._stops

    def run(self, request, emit: Callable[[tuple], None]) -> SliceReply:
        import torch
        reply = self._surface(request, emit) if isinstance(request, SurfaceRequest) else self._train(request, emit)
        reply.threads = torch.get_num_threads()
        return reply

    def _slot(self, job: SliceJob, data):
        from .stack import RunSlot
        with self._lock:
            slot = self._slots.get(job.job_id)
        steps = 0 if job.checkpoint is None else job.checkpoint["steps"]
        if slot is not None and slot.steps == steps and not slot.stopped:
            return slot
        slot = RunSlot(job.cfg, data, self.device)
        if job.checkpoint is not None:
            slot.restore(job.checkpoint)
        return slot

    def _train(self, req: RunSliceRequest, emit) -> SliceReply:
        reply = SliceReply()
        deadline = time.perf_counter() + req.slice_s
        self._train_group(req.jobs[0], req.jobs[1:], req, deadline, emit, reply, first=True)
        for job in req.then:
            # only once everything so far has finished, and with time left for a useful piece
            if (any(o.status == "running" for o in reply.outcomes)
                    or deadline - time.perf_counter() < THEN_MIN_LEFT_S):
                break
            if not self._stopping(job.job_id):      # stopped while it waited: the server closes it
                self._train_group(job, [], req, deadline, emit, reply, first=False)
        return reply

    def _train_group(self, main: SliceJob, others: list[SliceJob], req: RunSliceRequest, deadline: float,
                     emit, reply: SliceReply, *, first: bool) -> None:
        from . import data as data_mod
        from . import stack
        from .runner import finish_run
        try:
            main_data = data_mod.load(main.cfg.data)
            main_slot = self._slot(main, main_data)
        except Exception as exc:  # noqa: BLE001 - e.g. an upload that no longer loads: that run fails
            if first:
                reply.group = [main.job_id]
            reply.outcomes.append(RunOutcome(main.job_id, "failed", error=error_text(exc)))
            emit(("group", [main.job_id]))
            return
        group = [(main, main_slot)]
        if req.stacking and others:
            items, mates = [(main.cfg, main_data)], []
            key = stack.stack_key(main.cfg, main_data)
            for job in others:
                try:
                    d = data_mod.load(job.cfg.data)
                except Exception:  # noqa: BLE001 - that run fails in its own turn, with its message
                    continue
                if stack.stack_key(job.cfg, d) == key:
                    items.append((job.cfg, d))
                    mates.append((job, d))
            plan = stack.plan_stacks(items, max_stack=req.max_stack, memory_budget_mb=req.memory_budget_mb)
            lead = next(g for g in plan if 0 in g)
            for i in lead:
                if i:
                    job, d = mates[i - 1]
                    try:
                        group.append((job, self._slot(job, d)))
                    except Exception:  # noqa: BLE001 - it fails in its own turn
                        continue
        ids = [j.job_id for j, _ in group]
        if first:
            reply.group = ids
        emit(("group", ids))
        by_slot = {id(s): j.job_id for j, s in group}
        last_emit: dict[int, tuple[float, int]] = {}

        def on_progress(slot, p: dict[str, Any]) -> None:
            # at a new epoch (the curves grow), at the end, else at most every PROGRESS_EVENT_S
            jid = by_slot[id(slot)]
            now, epoch = time.perf_counter(), p.get("epoch", 0)
            t_last, epoch_last = last_emit.get(jid, (0.0, -1))
            if (epoch != epoch_last or now - t_last >= PROGRESS_EVENT_S
                    or p.get("step", 0) >= p.get("steps_total", 0)):
                last_emit[jid] = (now, epoch)
                emit(("progress", jid, p))

        slots = [s for _, s in group]
        before = sum(s.steps for s in slots)
        t0 = time.perf_counter()
        try:
            stack.train_slots(slots, deadline=deadline, on_progress=on_progress,
                              should_stop=lambda s: self._stopping(by_slot[id(s)]))
        except Exception as exc:  # noqa: BLE001 - every run of the stack fails with the message
            for j, _ in group:
                self.forget([j.job_id])
                reply.outcomes.append(RunOutcome(j.job_id, "failed", error=error_text(exc)))
            return
        if first:
            reply.seconds = time.perf_counter() - t0
            reply.steps_advanced = sum(s.steps for s in slots) - before
        else:
            reply.then_steps += sum(s.steps for s in slots) - before
        for job, slot in group:
            out = RunOutcome(job.job_id, "running", steps=slot.steps, steps_total=slot.steps_total,
                             steps_per_epoch=slot.steps_per_epoch)
            if self._stopping(job.job_id) or slot.stopped:
                slot.stop()
                out.status = "stopped"
                out.checkpoint = slot.checkpoint() if slot.steps else None
                out.record = finish_run(slot.result(), slot.data, None)     # partial: never evaluated
            elif slot.finished:
                try:
                    t_eval = time.perf_counter()
                    out.record = finish_run(slot.result(), slot.data, None)  # the server files it
                    out.status, out.eval_s = "done", time.perf_counter() - t_eval
                except Exception as exc:  # noqa: BLE001
                    out.status, out.error = "failed", error_text(exc)
            else:
                out.checkpoint = slot.checkpoint()
            if out.status == "running":
                with self._lock:          # the reader thread's forget() edits it too
                    self._slots[job.job_id] = slot
                    self._slots.move_to_end(job.job_id)
            else:
                self.forget([job.job_id])
            if req.then and out.status != "running":
                # with runs to follow, a finished one goes to the server now: it files it (on
                # another core) while this worker trains the next, instead of after the slice
                emit(("outcome", out))
            else:
                reply.outcomes.append(out)
        with self._lock:
            while len(self._slots) > MAX_CACHED_SLOTS:
                self._slots.popitem(last=False)

    def _surface(self, req: SurfaceRequest, emit) -> SliceReply:
        from .surfaces import surface_of_result
        last = [0.0]

        def on_progress(surface) -> None:
            now = time.perf_counter()
            if surface.complete or now - last[0] >= SURFACE_EVENT_S:
                last[0] = now
                emit(("surface", req.job_id, surface))

        reply = SliceReply(group=[req.job_id])
        t0 = time.perf_counter()
        try:
            reply.surface = surface_of_result(req.run, req.lcfg, on_progress=on_progress,
                                              should_stop=lambda: self._stopping(req.job_id))
        except Exception as exc:  # noqa: BLE001
            reply.error = error_text(exc)
        reply.seconds = time.perf_counter() - t0
        self.forget([req.job_id])
        return reply


CALIBRATION_IMAGES = ((1, 28), (3, 64))    # (channels, size): the digits, and the app's upload size


def calibrate(device: str = "cpu") -> tuple[float, float, float]:
    """Seconds per training step of the default autoencoder as `overhead + per_value * values`
    (values = batch x channels x pixels of one step), from a few steps at two batch sizes on
    random 28x28 digits-like images, and the seconds per value at the app's upload shape
    (3 x 64 x 64, batch 8): per value, a 64x64 colour image trains about 4x faster than a digit
    (per-layer costs spread over more pixels), so one figure made the example upload's first
    estimates 4-6x too long. The queue's first ETAs come from it, before any run has reported its
    own speed (about 0.4 s, once per worker start). Returns (overhead, per_value at 1x28x28,
    per_value at 3x64x64)."""
    import torch

    from .config import ModelConfig, TrainConfig
    from .losses import training_loss
    from .models import build_model
    train_cfg = TrainConfig()

    def seconds_per_step(channels: int, size: int, batch: int) -> float:
        model = build_model(ModelConfig(), channels, size).to(device)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        x = torch.rand(batch, channels, size, size, device=device)
        for i in range(5):
            if i == 2:
                if device.startswith("cuda"):
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            training_loss(x, model(x), train_cfg).backward()
            opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t0) / 3

    (c, size), (big_c, big_size) = CALIBRATION_IMAGES
    small, large = seconds_per_step(c, size, 8), seconds_per_step(c, size, 64)
    per_value = max(large - small, 1e-9) / ((64 - 8) * c * size * size)
    overhead = max(small - 8 * c * size * size * per_value, 0.0)
    big = seconds_per_step(big_c, big_size, 8)
    per_value_big = max(big - overhead, 1e-9) / (8 * big_c * big_size * big_size)
    return overhead, per_value, per_value_big


def calibrated_per_value(calibration: tuple, channels: int, size: int) -> float:
    """Seconds per value of one training step for images of `channels` x `size`^2, from a
    `calibrate` tuple: interpolated between its two image shapes on log scales (held at the
    nearer one outside them); a 2-tuple (overhead, per_value) has one figure for every shape."""
    if len(calibration) < 3:
        return calibration[1]
    (c0, s0), (c1, s1) = CALIBRATION_IMAGES
    lo, hi = math.log(c0 * s0 * s0), math.log(c1 * s1 * s1)
    at = min(max(math.log(max(channels * size * size, 1)), lo), hi)
    w = (at - lo) / (hi - lo)
    return math.exp((1 - w) * math.log(calibration[1]) + w * math.log(calibration[2]))


# ----------------------------------------------------------------------------- three kinds of worker

class ThreadWorker:
    """Runs the slices in the calling (dispatcher) thread of the server process."""
    kind = "thread"

    def __init__(self, device: str, threads: int):
        self.device, self.threads = device, threads
        self.runner = SliceRunner(device)
        self.restarts = 0
        with on_device(device):
            self.calibration = calibrate(device)

    @property
    def pid(self) -> int:
        return os.getpid()

    def run(self, request, on_event) -> SliceReply:
        with on_device(self.device):
            return self.runner.run(request, on_event)

    def stop(self, job_id: int) -> None:
        self.runner.stop(job_id)

    def forget(self, job_ids: list[int]) -> None:
        self.runner.forget(job_ids)

    def restart(self) -> None:
        self.restarts += 1

    def close(self) -> None:
        pass


def _dumps(msg) -> bytes:
    # Plain pickle, not multiprocessing's ForkingPickler (Connection.send): with torch imported,
    # that one moves every tensor through its own shared-memory segment and a file descriptor
    # handed over a socket. A run's weights (about 20 tensors) then cost 9.3-9.8 ms per message
    # against 2.7-4.8 ms as bytes (measured here, forkserver, 740 KB), paid on the worker's path
    # at every run's end and every slice's checkpoint. Both ends are this package's own
    # processes: nothing a user supplied is ever unpickled here.
    return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)


def _loads(data: bytes):
    return pickle.loads(data)


def _process_main(conn, device: str, threads: int) -> None:
    """A worker process: a reader thread takes Stop and forget at once; slices run in order."""
    import torch
    torch.set_num_threads(threads)
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)
    runner = SliceRunner(device)
    inbox: queue_mod.Queue = queue_mod.Queue()
    send_lock = threading.Lock()

    def send(msg) -> None:
        with send_lock:
            conn.send_bytes(_dumps(msg))

    def reader() -> None:
        while True:
            try:
                msg = _loads(conn.recv_bytes())
            except (EOFError, OSError):          # the server went away: finish and leave
                inbox.put(None)
                return
            if msg[0] == "stop":
                runner.stop(msg[1])
            elif msg[0] == "forget":
                runner.forget(msg[1])
            else:
                inbox.put(msg)

    threading.Thread(target=reader, name="lamp-worker-reader", daemon=True).start()
    # every batch size and the landscapes allocate buffers of many sizes; glibc keeps what they
    # free inside the heap (about 100 MB after the class's mix), so the worker trims between slices
    heap = Trimmer(HEAP_TRIM_S)
    send(("hello", calibrate(device)))          # (torch._dynamo, which its first optimizer needs, is preloaded)
    _warm_data()
    while True:
        msg = inbox.get()
        if msg is None or msg[0] == "close":
            return
        try:
            reply = runner.run(msg[1], lambda event: send(("event", event)))
            send(("reply", reply))
        except BaseException as exc:  # noqa: BLE001 - the server decides; the process lives on
            send(("error", error_text(exc)))
        heap.maybe()                              # after the reply: the server files it meanwhile


def _warm_data() -> None:
    """Load the lesson's default data set now, while the worker waits for its first slice: the
    first Train click of a class is on it, and a fresh process decodes it in about a second."""
    try:
        from . import data as data_mod
        from .lesson import DEFAULT_CONFIG
        data_mod.load(DEFAULT_CONFIG.data)
    except Exception:  # noqa: BLE001 - only a warm-up: the run itself will say what is wrong
        pass


_CONTEXT = None


def _context():
    """Worker processes fork from a small forkserver that has imported torch and lamp_core once:
    a restart takes a fraction of a second, and the server's threads and CUDA state never reach
    a worker (plain fork would copy them)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = mp.get_context("forkserver")
        # torch._dynamo: a process's first optimizer step imports it (about 1 s), once here instead
        # of in every worker start and restart
        # lamp_core.worker_preload last: it freezes what the others created ($LAMP_WORKER_FREEZE=0: not)
        freeze = ["lamp_core.worker_preload"] if os.environ.get("LAMP_WORKER_FREEZE", "1") != "0" else []
        ctx.set_forkserver_preload(["torch", "torch._dynamo", "lamp_core.stack", "lamp_core.surfaces",
                                    "lamp_core.runner", *freeze])
        _CONTEXT = ctx
    return _CONTEXT


class ProcessWorker:
    """One child process that runs the slices of one device; restarted when it dies."""
    kind = "process"

    def __init__(self, device: str, threads: int):
        self.device, self.threads = device, threads
        self.restarts = 0
        self._send_lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._start()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        ctx = _context()
        parent, child = ctx.Pipe()
        env_threads = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.threads)    # the child's OpenMP team, from its start
        try:
            proc = ctx.Process(target=_process_main, args=(child, self.device, self.threads),
                               name=f"lamp-worker-{self.device}", daemon=True)
            proc.start()
        finally:
            if env_threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = env_threads
        child.close()
        self._proc, self._conn = proc, parent
        deadline = time.monotonic() + START_TIMEOUT_S
        while not parent.poll(0.2):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise WorkerDied(f"the worker process for {self.device} did not start")
        kind, self.calibration = _loads(parent.recv_bytes())
        assert kind == "hello"

    def _send(self, msg) -> None:
        with self._send_lock:
            self._conn.send_bytes(_dumps(msg))

    def run(self, request, on_event) -> SliceReply:
        try:
            self._send(("run", request))
            while True:
                if not self._conn.poll(0.5):
                    if not self._proc.is_alive():
                        raise WorkerDied(f"the worker process for {self.device} died (exit code {self._proc.exitcode})")
                    continue
                kind, payload = _loads(self._conn.recv_bytes())
                if kind == "event":
                    on_event(payload)
                elif kind == "reply":
                    return payload
                else:                              # the runner itself failed: not the process
                    raise WorkerError(payload)
        except (EOFError, OSError, BrokenPipeError) as exc:
            raise WorkerDied(f"the worker process for {self.device} died: {exc}") from None

    def stop(self, job_id: int) -> None:
        try:
            self._send(("stop", job_id))
        except (OSError, BrokenPipeError):
            pass                                   # a dead worker stops nothing; its slice is lost anyway

    def forget(self, job_ids: list[int]) -> None:
        try:
            self._send(("forget", list(job_ids)))
        except (OSError, BrokenPipeError):
            pass

    def restart(self) -> None:
        self.restarts += 1
        self._kill()
        self._start()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    def close(self) -> None:
        try:
            self._send(("close",))           # it leaves after its slice (the queue stopped every job)
            self._proc.join(timeout=1)
        except (OSError, BrokenPipeError, AttributeError):
            pass
        self._kill()


class _RayRunner:
    """The body of a Ray actor: a SliceRunner whose events come back with the reply."""

    def __init__(self, device: str, threads: int):
        import torch
        torch.set_num_threads(threads)
        if device == "cuda":
            device = "cuda:0"               # Ray shows the actor its own GPU as device 0
        self.runner = SliceRunner(device)
        self.calibration = calibrate(device)
        self.heap = Trimmer(HEAP_TRIM_S)

    def run(self, request) -> tuple[list, SliceReply]:
        events: list = []
        reply = self.runner.run(request, events.append)
        self.heap.maybe()                   # between slices, as a worker process does
        return events, reply

    def stop(self, job_id: int) -> None:
        self.runner.stop(job_id)

    def forget(self, job_ids: list[int]) -> None:
        self.runner.forget(job_ids)

    def ping(self) -> tuple[int, tuple[float, float]]:
        return os.getpid(), self.calibration


def connect_ray(address: str) -> Any:
    """Join the Ray cluster at `address` ("auto", "ray://host:10001", or "local" for a fresh
    local instance), once per process."""
    try:
        import ray
    except ImportError:
        raise LampError("LAMP_RAY_ADDRESS needs Ray: pip install 'lamp-lab[ray]', or unset it") from None
    if not ray.is_initialized():
        init: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
        if address and address != "local":
            init["address"] = address
        try:
            ray.init(**init)
        except ConnectionError as exc:
            raise LampError(f"cannot reach the Ray cluster at {address}: {exc}; check LAMP_RAY_ADDRESS") from None
    return ray


def ray_devices(threads: int) -> list[str]:
    """One worker per GPU of the cluster; without GPUs, one per `threads` CPUs."""
    import ray
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return [f"ray:{i}:cuda" for i in range(gpus)]
    return [f"ray:{i}:cpu" for i in range(max(1, int(res.get("CPU", 1)) // max(threads, 1)))]


class RayWorker:
    """One Ray actor (one GPU, or `threads` CPUs) that runs the slices; restarted when it dies.
    Its progress reaches the server at the end of each slice (slices are a few seconds)."""
    kind = "ray"

    def __init__(self, device: str, threads: int):
        self.device, self.threads = device, threads
        self.restarts = 0
        self._actor = None
        self._pid = None
        self._start()

    @property
    def pid(self) -> int | None:
        return self._pid

    def _start(self) -> None:
        import ray
        on_gpu = self.device.endswith(":cuda")
        cls = ray.remote(num_cpus=0 if on_gpu else self.threads, num_gpus=1 if on_gpu else 0,
                         max_concurrency=2, max_restarts=0)(_RayRunner)
        self._actor = cls.remote("cuda" if on_gpu else "cpu", self.threads)
        try:
            self._pid, self.calibration = ray.get(self._actor.ping.remote(), timeout=START_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - no node could host it
            raise WorkerDied(f"the Ray worker {self.device} did not start: {exc}") from None

    def run(self, request, on_event) -> SliceReply:
        import ray
        try:
            events, reply = ray.get(self._actor.run.remote(request))
        except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError,
                ray.exceptions.ActorUnavailableError) as exc:
            raise WorkerDied(f"the Ray worker {self.device} died: {type(exc).__name__}") from None
        for event in events:
            on_event(event)
        return reply

    def stop(self, job_id: int) -> None:
        self._actor.stop.remote(job_id)

    def forget(self, job_ids: list[int]) -> None:
        self._actor.forget.remote(list(job_ids))

    def restart(self) -> None:
        import ray
        self.restarts += 1
        try:
            ray.kill(self._actor, no_restart=True)
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        self._start()

    def close(self) -> None:
        import ray
        if not ray.is_initialized():       # Ray shut down first: its actors went with it
            return
        try:
            ray.kill(self._actor, no_restart=True)
        except Exception:  # noqa: BLE001
            pass


def make_worker(kind: str, device: str, threads: int):
    return {"process": ProcessWorker, "ray": RayWorker, "thread": ThreadWorker}[kind](device, threads)


def worker_kind(requested: str | None = None) -> str:
    """The kind of worker: `requested`, else $LAMP_WORKERS, else ray when $LAMP_RAY_ADDRESS is
    set, else worker processes."""
    kind = requested or os.environ.get("LAMP_WORKERS") or ("ray" if os.environ.get("LAMP_RAY_ADDRESS") else DEFAULT_WORKERS)
    if kind not in WORKER_KINDS:
        raise LampError(f"LAMP_WORKERS={kind!r} is not a kind of worker: use one of {', '.join(WORKER_KINDS)}")
    return kind


class WorkerError(RuntimeError):
    """The runner failed outside a run's own handling; the message is formatted already."""


class on_device:
    """Make `device` the current CUDA device of the calling thread (no-op on the CPU)."""

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
