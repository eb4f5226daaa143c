"""A simulated class fills the class experiment's grid on one server's job queue.

N sessions (default 30) share one `JobQueue` and one `ClassBoard` (lamp_core.class_experiment),
as students on the Class results page do: each is handed a cell on arrival and presses "Train my
cell"; whenever a session's cell is done it presses "Train the next cell", until the board has
nothing left to hand out. Near the end, every unfinished cell is already held by someone, so
idle sessions are handed cells others hold and share their jobs (trained once). Records the wall
time from the first click to a complete grid, the runs trained (and any trained twice), the
hand-outs, and the board's Table 1 (the page's table, and `report.table1_markdown` on the same
runs) into bench/results/class_board.md.

    nice -n 19 .venv/bin/python bench/class_board.py [--sessions 30] [--batch-sizes 32,128] [--seeds 3]
    nice -n 19 .venv/bin/python bench/class_board.py --quick      # tiny digits protocol, seconds

The protocol is the lesson's default (`lesson.DEFAULT_CONFIG`: MNIST subset, 500 images, 5 epochs
at batch 32, same epochs at the other sizes); the default grid is the lesson's (`lesson.CLASS_GRID`:
10 digits × 3 seeds × batch 32 and 128 = 60 cells, 120 runs).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent    # for paths only: lamp_core is the installed package
OUT = REPO / "bench" / "results" / "class_board.md"


def md_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def simulate(args) -> dict:
    from lamp_core import class_experiment as ce
    from lamp_core import lesson, references, report
    from lamp_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from lamp_core.jobs import FINAL, JobQueue, single_threaded_caller
    from lamp_core.store import RunStore

    single_threaded_caller()           # the main thread is a page thread: the worker owns the cores
    protocol = lesson.DEFAULT_CONFIG
    if args.quick:
        protocol = RunConfig(data=DataConfig(dataset="digits", image_size=16, max_train=24, max_test=40),
                             model=ModelConfig(width=4, latent_channels=4), train=TrainConfig(epochs=1, batch_size=8))
    sizes = tuple(int(b) for b in args.batch_sizes.split(",")) if args.batch_sizes else (
        (8, 16) if args.quick else lesson.CLASS_GRID["batch_sizes"])
    store_root = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="class-board-")) / "runs"
    store = RunStore(store_root)
    queue = JobQueue(store)
    board = ce.ClassBoard(store)
    exp = ce.Experiment(protocol, tuple(range(10)), tuple(lesson.seeds_of(protocol, args.seeds)), sizes,
                        start=time.time(), mode=lesson.CLASS_GRID["mode"])
    board.start(exp)
    sessions = [f"student{i:02d}" for i in range(args.sessions)]
    for s in sessions:
        board.assign(s, queue)         # arriving on the page hands out a cell
    jobs: dict[str, list[int]] = {}
    handed = Counter()
    clicks = 0
    t0 = time.perf_counter()
    finished: set[str] = set()
    while len(finished) < len(sessions):
        for s in sessions:
            if s in finished:
                continue
            views = [queue.get(i) for i in jobs.get(s, [])]
            if views and not all(v is None or v.status in FINAL for v in views):
                continue                # still training: the student waits
            if board.assign(s, queue) is None:
                finished.add(s)         # "every cell of the grid is done"
                continue
            cell = board.cell_of(s)
            jobs[s] = [v.id for v in board.train(s, queue)]   # the click
            handed[cell] += 1
            clicks += 1
        time.sleep(0.2)                 # a page polls; not a wait on the result
    wall = time.perf_counter() - t0
    coverage = board.coverage(queue)
    try:
        conv = references.converged_table1()
    except (OSError, ValueError):
        conv = None
    try:
        paper = references.paper_table1()
    except (OSError, ValueError):
        paper = None
    bd = board.board(queue, converged=conv, paper=paper)
    cfgs = [c for cell in exp.cells() for c in exp.configs(cell)]
    rows = report.rows_from_store(cfgs, store)
    queue.close()
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall_s": wall, "sessions": len(sessions),
        "cells": len(exp.cells()), "done": sum(1 for v in coverage.values() if v == ce.DONE),
        "runs": len(cfgs), "trained": len(queue.trained), "trained_twice": sum(1 for n in queue.trained.values() if n > 1),
        "clicks": clicks, "shared_cells": sum(1 for n in handed.values() if n > 1),
        "slices": len(queue.slices), "largest_stack": max((len(s[2]) for s in queue.slices), default=0),
        "table": ce.display_table(bd.table, exp.loss_name()), "numbers": bd.table,
        "markdown": report.table1_markdown(rows), "same_as_report": bd.markdown == report.table1_markdown(rows),
        "protocol": protocol, "sizes": sizes, "seeds": exp.seeds, "store": str(store_root),
    }


def render(res: dict, command: str, load_before, load_after) -> str:
    p = res["protocol"]
    # a load above the cores means other processes took CPU time from this one: say so beside the wall time
    shared = ("" if max(load_before, load_after) <= (os.cpu_count() or 1) else
              " (the CPUs were shared with other processes, so the wall time is longer than on a quiet machine)")
    what = (f"{p.data.dataset}, {p.data.max_train or 'all'} training images per digit, {p.data.image_size} px, "
            f"{p.train.epochs} epochs at batch {p.train.batch_size} (same epochs at the other sizes), "
            f"{p.train.base_loss.upper()} and LAMP (max over {p.train.max_over}, eps {p.train.eps})")
    return f"""# A simulated class fills the class experiment (bench/class_board.py)

{res['sessions']} sessions share one job queue and one class board (`lamp_core/class_experiment.py`), as
students on the Class results page do: each is handed a cell on arrival and presses *Train my cell*, then
*Train the next cell* whenever its cell is done, until nothing is left to hand out. One process, one worker
(the CPU), the app's `JobQueue` with its defaults (2 s slices, stacking where it pays).

* when: {res['when']}; command: `{command}`
* machine: {platform.machine()}, {os.cpu_count()} CPUs; load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}{shared}
* protocol: {what}
* grid: 10 digits × seeds {', '.join(map(str, res['seeds']))} × batch sizes {', '.join(map(str, res['sizes']))} =
  {res['cells']} cells, {res['runs']} runs

| wall time, first click to a complete grid | cells done | runs trained (twice) | clicks | cells two sessions trained (shared) | slices, largest stack |
|---|---|---|---|---|---|
| {res['wall_s']:.0f} s ({res['wall_s'] / 60:.1f} min) | {res['done']} of {res['cells']} | {res['trained']} ({res['trained_twice']}) | {res['clicks']} | {res['shared_cells']} | {res['slices']}, {res['largest_stack']} |

A cell handed to two sessions (the end of the lesson, when every unfinished cell is held) is asked for
under the same run keys, so the queue trains it once: "runs trained" counts each run key trained to
completion, "(twice)" those trained more than once.

## The board's Table 1 (what the Class results page shows)

{md_table(res['table'])}

## The same runs through `lamp_core.report.table1_markdown`

The board's markdown equals it: {res['same_as_report']}.

{res['markdown']}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch-sizes", default="", help="comma-separated (default: the lesson's class grid)")
    ap.add_argument("--quick", action="store_true", help="tiny digits protocol: seconds, for a smoke test")
    ap.add_argument("--store", default="", help="run store folder (default: a fresh temporary one)")
    ap.add_argument("--no-write", action="store_true", help="print, do not write bench/results/class_board.md")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    res = simulate(args)
    command = "nice -n 19 .venv/bin/python bench/class_board.py " + " ".join(sys.argv[1:])
    text = render(res, command.strip(), load_before, os.getloadavg()[0])
    if args.no_write or args.quick:
        print(text)
    else:
        OUT.write_text(text)
        print(text)
        print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
