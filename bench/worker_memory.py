"""Benchmark: memory of the app's worker process and its forkserver, with and without the frozen
heap (`lamp_core/worker_preload.py`: the forkserver `gc.freeze()`s what torch and lamp_core
created before it forks a worker).

Each case runs in a fresh subprocess that starts a `JobQueue` with one worker process on the CPU,
as the app server does, and reads the proportional set size (PSS, /proc/<pid>/smaps_rollup) of
the forkserver and the worker twice: when the worker is ready (after its calibration and its
warm-up on the default data), and after it trained the lesson's default comparison (base and
LAMP x 3 seeds). PSS counts each shared page once over the processes that map it, so the sum is
what the two hold together; pages a worker copied from the forkserver count twice, which is what
the freeze saves. "not frozen" is the same preload list without `lamp_core.worker_preload`.
The cases alternate (frozen, not frozen, frozen, ...) and the ratios are taken in one run.

    python bench/worker_memory.py [--repeats 2] [--out bench/results/worker_memory]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
OUT = REPO / "bench" / "results" / "worker_memory"
CASES = ("frozen", "not frozen")


def _pss_mb(pid: int) -> float:
    from class_soak import read_pss_mb
    return round(read_pss_mb(pid), 1)


def _parent_of(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2:].split()[1])


def child(case: str) -> dict:
    """One case in this (fresh) process: what the forkserver and the worker hold."""
    sys.path.insert(0, str(REPO))
    from lamp_core import workers
    from lamp_core.jobs import DONE, JobQueue
    from lamp_core.lesson import DEFAULT_CONFIG, seeds_of
    from lamp_core.store import RunStore
    if case == "not frozen":
        from multiprocessing import forkserver
        ctx = workers._context()                             # the shipped preload list, then without the freeze
        shipped = forkserver._forkserver._preload_modules    # noqa: SLF001 - the bench's one lever
        assert "lamp_core.worker_preload" in shipped
        ctx.set_forkserver_preload([m for m in shipped if m != "lamp_core.worker_preload"])
    out: dict = {"case": case}
    with tempfile.TemporaryDirectory() as tmp:
        q = JobQueue(RunStore(Path(tmp) / "runs"), devices=["cpu"], workers="process")
        try:
            if not q.wait_ready(timeout=300):
                raise SystemExit("the worker process did not start")
            worker = q.worker_pids()["cpu"]
            forkserver = _parent_of(worker)
            time.sleep(2.0)                                   # the worker's warm-up (default data) ends
            out["ready"] = {"forkserver": _pss_mb(forkserver), "worker": _pss_mb(worker)}
            cfgs = [DEFAULT_CONFIG.with_train(seed=s, lamp=lamp) for lamp in (False, True) for s in seeds_of(DEFAULT_CONFIG)]
            views = q.submit_runs(cfgs, session="bench")
            finals = [q.wait(v.id, timeout=600) for v in views]
            if not all(f is not None and f.status == DONE for f in finals):
                raise SystemExit(f"the comparison did not finish: {[getattr(f, 'status', None) for f in finals]}")
            out["trained"] = {"forkserver": _pss_mb(forkserver), "worker": _pss_mb(worker)}
        finally:
            q.close()
    for phase in ("ready", "trained"):
        out[phase]["both"] = round(sum(out[phase].values()), 1)
    return out


def run_case(case: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", case], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"case {case!r} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(results: list[dict]) -> dict:
    s: dict = {}
    for phase in ("ready", "trained"):
        med = {c: statistics.median(r[phase]["both"] for r in results if r["case"] == c) for c in CASES}
        s[phase] = {"frozen_mb": med["frozen"], "not_frozen_mb": med["not frozen"],
                    "saved_mb": round(med["not frozen"] - med["frozen"], 1),
                    "ratio": round(med["frozen"] / med["not frozen"], 3)}
    return s


def render_md(rec: dict) -> str:
    lines = ["# Worker memory: the forkserver's frozen heap", "",
             f"Command: `{rec['command']}` ({rec['when']}, {rec['machine']}). See the docstring of "
             "`bench/worker_memory.py`: PSS of the forkserver and the worker process together (MB), "
             "median of the repeats, cases alternated in one run.", "",
             "| phase | frozen (shipped) | not frozen | saved | ratio |", "|---|---|---|---|---|"]
    for phase, label in (("ready", "worker ready"), ("trained", "after the default comparison")):
        x = rec["summary"][phase]
        lines.append(f"| {label} | {x['frozen_mb']} | {x['not_frozen_mb']} | {x['saved_mb']} | {x['ratio']} |")
    lines += ["", "Each case (forkserver / worker, MB):", ""]
    for r in rec["results"]:
        lines.append(f"- {r['case']}: ready {r['ready']['forkserver']} / {r['ready']['worker']}, "
                     f"trained {r['trained']['forkserver']} / {r['trained']['worker']}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child)))
        return 0
    results = [run_case(case) for _ in range(a.repeats) for case in CASES]
    rec = {"command": "python bench/worker_memory.py" + (f" --repeats {a.repeats}" if a.repeats != 2 else ""),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.node()} {platform.machine()}", "results": results, "summary": summarize(results)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(rec, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(render_md(rec))
    print(render_md(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
