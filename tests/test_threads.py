"""What torch does with thread counts, as lamp_core.threads says, and what it means for the queue's
worker: if torch changes its behaviour, these fail before the module's docstring misleads."""
from __future__ import annotations

import threading

import torch

from lamp_core.jobs import JobQueue
from lamp_core.store import RunStore
from lamp_core.threads import single_threaded_caller, usable_cores


def _count_after_another_thread_sets_one(compute_first: bool) -> int:
    """A thread sets 2 threads, another thread then sets 1: the count the first one computes with."""
    set_two, other_done, seen = threading.Event(), threading.Event(), []

    def worker():
        torch.set_num_threads(2)
        if compute_first:
            torch.get_num_threads()          # torch initialises this thread now, at 2
        set_two.set()
        other_done.wait()
        seen.append(torch.get_num_threads())

    def other():
        set_two.wait()
        torch.set_num_threads(1)
        other_done.set()
    before = torch.get_num_threads()
    try:
        threads = [threading.Thread(target=worker), threading.Thread(target=other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        torch.set_num_threads(before)
    return seen[0]


def test_a_thread_takes_the_process_wide_count_at_its_first_operation():
    # set, but not computed yet: another thread's later setting wins
    assert _count_after_another_thread_sets_one(compute_first=False) == 1
    # computed once: the thread keeps its own count, whatever other threads set later
    assert _count_after_another_thread_sets_one(compute_first=True) == 2


def test_a_worker_thread_keeps_its_count_whatever_the_page_threads_set(tmp_path):
    """The app's order: the worker sets its count at start and computes at once (its calibration),
    so a page thread calling single_threaded_caller() before the worker's first job cannot change
    it (torch fixes a thread's count at its first operation); the default count is one."""
    before = torch.get_num_threads()
    try:
        for threads, expected in ((2, 2), (None, 1)):
            q = JobQueue(RunStore(tmp_path / f"runs{threads}"), devices=["cpu"], threads=threads, workers="thread")
            try:
                assert q.wait_ready(60)
                page = threading.Thread(target=single_threaded_caller)
                page.start()
                page.join()
                v = q.submit("count", lambda report, should_stop: torch.get_num_threads(), session="s")
                assert q.wait(v.id, timeout=60).result == expected
            finally:
                q.close()
    finally:
        torch.set_num_threads(before)


def test_usable_cores_is_at_least_one():
    assert usable_cores() >= 1
