"""Benchmark: memory of the app's worker process and its forkserver, with and without the frozen
heap (`lamp_core/worker_preload.py`: the forkserver `gc.freeze()`s what torch and lamp_core
created before it forks a worker; $LAMP_WORKER_FREEZE=0 leaves it out).

Each case starts the real app server (`bench/app_server.py`: `streamlit run`, fresh run store),
opens Train & compare as one session (a client of Streamlit's own protocol, `bench/class_soak.py`)
and reads the proportional set size (PSS, /proc/<pid>/smaps_rollup) of the server, the forkserver
and the worker twice: when the worker is ready (calibrated, warmed up on the default data), and
after the session trained the lesson's default comparison (base and LAMP x 3 seeds). PSS counts
each shared page once over the processes that map it, so the sum is what they hold together;
pages a worker copied from the forkserver count twice, which is what the freeze saves. (In a
plain Python parent instead of the app server, a worker copies far fewer of those pages, and the
freeze made no difference there.) The cases alternate (frozen, not frozen, frozen, ...) in one run.

    python bench/worker_memory.py [--repeats 2] [--out bench/results/worker_memory]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
OUT = REPO / "bench" / "results" / "worker_memory"
CASES = ("frozen", "not frozen")
PROCESSES = ("server", "forkserver", "worker")


def memory_by_process(server_pid: int) -> dict[str, float]:
    """PSS (MB) of the server, its forkserver and its worker."""
    import class_soak as cs
    return {k: v for k, v in cs.memory_by_kind(cs.descendants(server_pid)).items() if k in PROCESSES}


def run_case(case: str) -> dict:
    import class_soak as cs
    from app_server import serving
    os.environ["LAMP_WORKER_FREEZE"] = "1" if case == "frozen" else "0"
    out: dict = {"case": case}
    with serving("lamp-worker-memory-") as (url, _store):
        pid = cs._server_pid(url)

        async def session() -> None:
            log: list = []
            page = cs.Page(url, 0, log)
            await page.open("train_compare")
            end = time.time() + 300
            while "worker" not in memory_by_process(pid) and time.time() < end:
                await asyncio.sleep(0.5)
            await asyncio.sleep(5.0)                       # its calibration and warm-up end
            out["ready"] = memory_by_process(pid)
            job = cs.Job(0, "default", time.time())
            if not await page.click("Train base and LAMP"):
                raise SystemExit("no Train base and LAMP button on the page")
            await cs.track(page, job, time.time() + 600)
            if job.t_done is None:
                raise SystemExit(f"the comparison did not finish: {job.last_seen}")
            await asyncio.sleep(3.0)
            out["trained"] = memory_by_process(pid)
            await page.close()
        asyncio.run(session())
    for phase in ("ready", "trained"):
        out[phase]["forkserver_and_worker"] = round(out[phase].get("forkserver", 0) + out[phase].get("worker", 0), 1)
        out[phase]["all"] = round(sum(out[phase].get(k, 0) for k in PROCESSES), 1)
    return out


def summarize(results: list[dict]) -> dict:
    s: dict = {}
    for phase in ("ready", "trained"):
        for part in ("forkserver_and_worker", "all"):
            med = {c: round(statistics.median(r[phase][part] for r in results if r["case"] == c), 1) for c in CASES}
            s[f"{phase}_{part}"] = {"frozen_mb": med["frozen"], "not_frozen_mb": med["not frozen"],
                                    "saved_mb": round(med["not frozen"] - med["frozen"], 1),
                                    "ratio": round(med["frozen"] / med["not frozen"], 3)}
    return s


def render_md(rec: dict) -> str:
    lines = ["# Worker memory: the forkserver's frozen heap", "",
             f"Command: `{rec['command']}` ({rec['when']}, {rec['machine']}). See the docstring of "
             "`bench/worker_memory.py`: PSS (MB) under the real app server, one session, median of the "
             "repeats, cases alternated in one run.", "",
             "| when | processes | frozen (shipped) | not frozen | saved | ratio |", "|---|---|---|---|---|---|"]
    for phase, when in (("ready", "worker ready"), ("trained", "after the default comparison")):
        for part, label in (("forkserver_and_worker", "forkserver + worker"), ("all", "server + forkserver + worker")):
            x = rec["summary"][f"{phase}_{part}"]
            lines.append(f"| {when} | {label} | {x['frozen_mb']} | {x['not_frozen_mb']} | {x['saved_mb']} | {x['ratio']} |")
    lines += ["", "Each case (server / forkserver / worker, MB):", ""]
    for r in rec["results"]:
        lines.append(f"- {r['case']}: ready " + " / ".join(str(r["ready"].get(k)) for k in PROCESSES)
                     + ", trained " + " / ".join(str(r["trained"].get(k)) for k in PROCESSES))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
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
