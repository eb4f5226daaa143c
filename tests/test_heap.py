"""lamp_core.heap: a trim gives freed heap pages back, and the Trimmer bounds how often it runs."""
import ctypes
import sys

import pytest

from lamp_core import heap


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap.glibc() is None, reason="glibc only")
def test_a_trim_hands_freed_pages_in_the_middle_of_the_heap_back():
    libc = heap.glibc()
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunk = 100 * 1024                   # below glibc's mmap threshold: carved from the heap
    blocks = [libc.malloc(chunk) for _ in range(600)]
    for b in blocks:
        ctypes.memset(b, 1, chunk)       # touched: resident
    pin = libc.malloc(chunk)             # above them all, so the heap cannot shrink from its top
    ctypes.memset(pin, 1, chunk)
    for b in blocks:
        libc.free(b)
    held = _rss_mb()
    assert heap.trim()
    after = _rss_mb()
    libc.free(pin)
    assert held - after > 30, f"the trim gave back {held - after:.1f} MB of about 58 MB freed"


def test_the_trimmer_trims_at_most_every_interval(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1) or True)
    clock = [1000.0]
    monkeypatch.setattr(heap.time, "monotonic", lambda: clock[0])
    t = heap.Trimmer(30.0)
    assert not t.maybe()                 # just made: nothing to give back yet
    clock[0] += 29.9
    assert not t.maybe()
    clock[0] += 0.2
    assert t.maybe() and t.trims == 1
    assert not t.maybe()
    clock[0] += 31
    assert t.maybe() and t.trims == 2 and len(calls) == 2
