"""Handing freed heap memory back to the operating system (glibc only; a no-op elsewhere).

glibc keeps what a process frees inside its heap for reuse, and a long-lived process whose
allocations vary in size (the app server's page runs, a worker that trains every batch size and
computes landscapes) ends up holding free space that no later allocation fits: the process's
memory only grows. `malloc_trim(0)` gives the free pages inside the heap back (glibc >= 2.8 also
releases pages in the middle of the heap, not only at its top).

Measured on a worker process that trained 121 runs of the class's mix (digits 2-9, batch 4-1024,
base and LAMP): 990 MB resident with 102 MB of it free heap; one trim took it to 889 MB, and
the next run's allocations come back from the system at page-fault cost (a few ms).
"""
from __future__ import annotations

import ctypes
import functools
import time


@functools.lru_cache(maxsize=1)
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim and mallopt), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt       # noqa: B018 - glibc has both; musl and macOS do not
    except (OSError, AttributeError):
        return None
    return libc


def limit(arenas: int, mmap_threshold_bytes: int) -> bool:
    """For a process whose threads allocate: at most `arenas` malloc arenas (glibc makes up to 8
    per core, each keeping what was freed in it), and blocks over `mmap_threshold_bytes` on pages
    of their own, returned when freed (glibc otherwise raises its threshold to the largest block
    freed, up to 32 MB, and carves such blocks from the heap between long-lived objects). Not for
    a training process: its activations would pay page faults on every step. False where not glibc."""
    libc = glibc()
    if libc is None:
        return False
    libc.mallopt(-8, arenas)                  # M_ARENA_MAX: arenas made from now on
    libc.mallopt(-3, mmap_threshold_bytes)    # M_MMAP_THRESHOLD: fixed, no longer dynamic
    return True


def trim() -> bool:
    """Give the heap's free pages back to the system now; False where that cannot be done."""
    libc = glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class Trimmer:
    """Trim at most every `every_s` seconds: a caller that finishes a piece of work calls `maybe()`,
    so a busy process trims between pieces of work (never inside one) at a bounded cost."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last = time.monotonic()
        self.trims = 0

    def maybe(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return False
        self._last = now
        if trim():
            self.trims += 1
            return True
        return False
