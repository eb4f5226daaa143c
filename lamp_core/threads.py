"""Usable cores and the thread policy: how many cores this process may use, and which threads
compute on how many torch threads. The job queue (`lamp_core.jobs`) and the landscape's point
pool (`lamp_core.landscape.grid`) both take them from here.

What PyTorch does (torch 2.x with its OpenMP backend, the build this lab installs; checked by
tests/test_threads.py, so a torch that behaves otherwise fails there first):

* `torch.set_num_threads(n)` sets two things: the calling thread's own OpenMP count (and MKL's
  thread-local one), and one process-wide value that torch keeps.
* A thread takes that process-wide value at its first torch operation that reads the count (a
  parallel operation, or `torch.get_num_threads()`: torch initialises each thread lazily), and
  this overwrites whatever the thread set for itself before then. From then on the thread keeps
  its own count: later calls in other threads do not change it.
* So the count is neither simply per thread nor simply process-wide: each thread's count is fixed
  at its first operation, from the last value any thread set before that moment.

The app. Its page threads call `single_threaded_caller()`, so that their own computations (the
figures' scores, reconstructions) run one OpenMP team of one thread and leave the other cores to
training (bench/results/thread_contention.md: a training step ran about 2.2x slower beside a
caller that used all cores). The queue's workers (`lamp_core.workers`: processes by default, or
threads of the server with $LAMP_WORKERS=thread) set their count when they start (one by default,
$LAMP_THREADS otherwise) and compute at once (a short calibration of the step time), so the
count is theirs from then on: a worker process is out of the page threads' reach anyway, and a
worker thread has taken its count before any page thread's call could reach it. One thread
reproduces the lesson's recorded numbers, measured on one thread by `lamp lesson measure` (a
run's last digits depend on the thread count).

The landscape's point pool. Its threads call `single_threaded_worker()`: it lets torch initialise
the thread first (so that torch's lazy initialisation cannot undo the setting later), then sets
the thread's own OpenMP and MKL counts to 1 through their C functions, found beside torch and
loaded with ctypes. That leaves torch's process-wide value alone, so the caller's threads and
threads started later keep torch's setting. Where those libraries are not found, the pool's
threads keep torch's count, and `resolve_workers` runs fewer points at once instead.
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):      # macOS, Windows
        return max(1, os.cpu_count() or 1)


def single_threaded_caller() -> None:
    """Make torch compute on one thread in the calling thread (the app's page threads), so the
    queue's worker does not share the cores with their OpenMP teams. This also sets torch's
    process-wide value to 1, which a thread that has not computed yet will take at its first
    operation (the module docstring says what that means for the queue's worker)."""
    import torch
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# Unbounded lru_cache on purpose: it takes no arguments, so it holds one entry (a tuple of at most
# three ctypes functions) for the life of the process.
@functools.lru_cache(maxsize=None)
def per_thread_setters() -> tuple:
    """C functions that set the calling thread's OpenMP and MKL thread counts, where found
    (libgomp or libiomp5, and MKL inside libtorch_cpu); () when OpenMP's is not found."""
    import torch
    found = []
    lib = Path(torch.__file__).parent / "lib"
    for pattern, symbol in (("libgomp*.so*", "omp_set_num_threads"), ("libiomp5*.so*", "omp_set_num_threads"),
                            ("libtorch_cpu.so", "MKL_Set_Num_Threads_Local")):
        for path in sorted(lib.glob(pattern)):
            try:
                fn = getattr(ctypes.CDLL(str(path)), symbol)
            except (OSError, AttributeError):
                continue
            fn.argtypes, fn.restype = [ctypes.c_int], (ctypes.c_int if "MKL" in symbol else None)
            found.append(fn)
            break
    # without OpenMP's setter, ATen would still split each operation: report no control at all
    return tuple(found) if any(f.__name__ == "omp_set_num_threads" for f in found) else ()


def single_threaded_worker() -> None:
    """Make the calling (pool worker) thread run torch operations on one thread, leaving torch's
    process-wide value and every other thread alone. A no-op where the setters are not found."""
    setters = per_thread_setters()
    if not setters:
        return
    import torch
    torch.get_num_threads()      # torch's lazy per-thread initialisation first: it would undo ours
    for set_threads in setters:
        set_threads(1)
