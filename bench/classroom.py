"""A class on one server: N sessions share the app's job queue (`lamp_core.jobs.JobQueue`).

One session first submits a long job (a long comparison); then N sessions (default 30) each
submit the default comparison of the app (base + LAMP x 3 seeds) with their own normal class or
eps (sessions with the same class share their base runs, as students on one server do). The
queue serves everything with fair turns and stacking; the same runs are also timed one by one
(`train()` + `evaluate()`, the best single-run path) in the same process, so the ratios compare
like with like on this machine:

* `throughput_ratio`: the sum of every job's one-by-one time (each session's comparison counted
  in full, as if it ran alone) / the wall time the queue took to serve them all;
* `short_wait_ratio`: the wait of the first short job (submitted just after the long one) until
  its first slice / its own one-by-one time;
* `lost` (submitted runs never finished and stored) and `duplicated` (runs trained more than once);
* `peak_rss_mb`: the process's peak resident memory.

    nice -n 10 .venv/bin/python bench/classroom.py [--sessions 30] [--quick] [--json]

`--quick` (digits, 6 sessions, 1 epoch) finishes in under a minute on a quiet 2-core machine.
Results are appended to bench/results/classroom.json and rendered to classroom.md, with the
machine's load average (the CPUs are shared: a loaded machine slows both sides of each ratio).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "app"))    # the app's lab_defaults (lamp_core is installed)
OUT = REPO / "bench" / "results"
TARGETS = {"throughput_ratio": 2.5, "short_wait_ratio": 3.0}


def class_configs(sessions: int, quick: bool, epochs: int | None = None, device: str = "cpu"):
    """(long job configs, {session: comparison configs}) for the simulated class."""
    from lamp_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from lab_defaults import DEFAULT_CONFIG, DEFAULT_SEEDS     # the app's default comparison
    from results import seed_configs

    base = DEFAULT_CONFIG
    if quick:
        base = RunConfig(data=DataConfig(dataset="digits", normal_class=8, image_size=28),
                         model=ModelConfig(), train=TrainConfig(epochs=1, batch_size=32))
    if epochs:
        base = base.with_train(epochs=epochs)
    base = base.with_train(device=device)       # both sides train where the queue's worker does
    epses = (0.01, 0.05, 0.1)
    per_session = {}
    for i in range(sessions):
        cfg = base.with_data(normal_class=i % 10).with_train(eps=epses[(i // 10) % len(epses)])
        per_session[f"s{i:02d}"] = [c for cs in seed_configs(cfg, DEFAULT_SEEDS).values() for c in cs]
    long_cfg = base.with_train(epochs=base.train.epochs * 10)
    long_job = [c for cs in seed_configs(long_cfg, 2).values() for c in cs]
    return long_job, per_session


def in_own_thread(fn, *args, threads: int | None = None):
    """fn(*args) in a fresh thread at the queue's thread count (`threads`; JobQueue's default:
    $LAMP_THREADS, else one), as the queue's worker trains. The
    main thread stays on one thread, like the app's page threads: an OpenMP team of several
    threads left in another thread slows a worker's training about 2x (lamp_core.jobs._worker),
    and a thread's team ends with the thread."""
    import threading

    import torch
    out = {}

    def run():
        torch.set_num_threads(threads or int(os.environ.get("LAMP_THREADS", 0) or 0) or 1)
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            out["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def one_by_one(cfgs) -> dict[str, float]:
    """Seconds to train and evaluate each distinct run alone (run_key -> s)."""
    from lamp_core import data as data_mod
    from lamp_core.config import run_key
    from lamp_core.evaluate import evaluate
    from lamp_core.train import train
    out: dict[str, float] = {}
    for c in cfgs:
        k = run_key(c)
        if k in out:
            continue
        ds = data_mod.load(c.data)
        t0 = time.perf_counter()
        res = train(c, ds)
        evaluate(res.model(), ds)
        out[k] = time.perf_counter() - t0
    return out


def serve(long_job, per_session, *, stacking: bool, slice_s: float, device: str = "cpu") -> dict:
    """Submit the long job, then every session's comparison; wait until all are served."""
    from lamp_core.config import run_key
    from lamp_core.jobs import DONE, JobQueue
    from lamp_core.store import RunStore

    store_dir = Path(tempfile.mkdtemp(prefix="lamp-classroom-"))
    q = JobQueue(RunStore(store_dir), devices=["cuda:0" if device == "cuda" else "cpu"], stacking=stacking,
                 slice_s=slice_s)
    try:
        q.wait_ready()           # a server starts its workers before the class arrives
        t0 = time.perf_counter()
        long_views = q.submit_runs(long_job, session="long")
        while not q.slices and time.perf_counter() - t0 < 600:      # the long job has the worker
            time.sleep(0.01)
        submitted = {}
        for s, cfgs in per_session.items():
            submitted[s] = (time.perf_counter(), q.submit_runs(cfgs, session=s))
        ids = [v.id for v in long_views] + [v.id for _, vs in submitted.values() for v in vs]
        ends = {}
        for i in ids:
            v = q.wait(i, timeout=3600)
            ends[i] = v
        wall = time.perf_counter() - t0
        slices = list(q.slices)
        first_session = next(iter(submitted))
        sub_t, sub_views = submitted[first_session]
        mine = {v.id for v in sub_views}
        first_slice = min((s[3] for s in slices if mine & set(s[2])), default=float("nan"))
        unique = {run_key(c) for c in long_job} | {run_key(c) for cs in per_session.values() for c in cs}
        lost = sum(1 for v in ends.values() if v.status != DONE)
        not_stored = len([k for k in unique if not (store_dir / k / "evaluation.json").is_file()])
        return {
            "wall_s": wall, "first_short_wait_s": first_slice - sub_t, "first_session": first_session,
            "lost": lost + not_stored, "duplicated": sum(max(0, n - 1) for n in q.trained.values()),
            "trained_runs": sum(q.trained.values()), "unique_runs": len(unique),
            "slices": len(slices), "largest_stack": max((len(s[2]) for s in slices), default=0),
            "mean_stack": round(sum(len(s[2]) for s in slices if s[1] == "run") /
                                max(sum(1 for s in slices if s[1] == "run"), 1), 2),
            "long_done_s": max(ends[v.id].finished_at for v in long_views) - min(v.queued_at for v in long_views),
        }
    finally:
        q.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=None, help="sessions in the class (default 30; 8 with --quick)")
    ap.add_argument("--quick", action="store_true", help="digits, 1 epoch, 6 sessions: under a minute on a quiet machine")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    ap.add_argument("--no-stack", action="store_true", help="serve without stacking (LAMP_STACK=0)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of each session's comparison (default: the app's)")
    ap.add_argument("--slice-s", type=float, default=2.0, help="the queue's time slice (s)")
    ap.add_argument("--sample", type=int, default=None,
                    help="time only this many distinct short runs one by one (seeded), the rest get their mean "
                         "(default: all with --quick, 20 otherwise)")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/results/classroom.*")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the server's one worker device")
    args = ap.parse_args()
    from lamp_core.train import resolve_device
    resolve_device(args.device)       # a GPU asked for and absent: one line (ConfigError), no work
    sessions = args.sessions or (6 if args.quick else 30)
    if args.sample is None and not args.quick:
        args.sample = 20
    load_before = os.getloadavg()
    from lamp_core.threads import single_threaded_caller
    single_threaded_caller()          # as the app's page threads (see in_own_thread)
    long_job, per_session = class_configs(sessions, args.quick, args.epochs, args.device)
    from lamp_core.config import run_key

    # warm up (imports, first optimizer, data) so neither side pays it
    in_own_thread(one_by_one, [long_job[0].with_train(epochs=1, seed=99)])
    print(f"serving {sessions} sessions x {len(next(iter(per_session.values())))} runs + a long job of "
          f"{len(long_job)} runs ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    served = serve(long_job, per_session, stacking=not args.no_stack, slice_s=args.slice_s, device=args.device)
    t_serve = time.perf_counter() - t
    print(f"served in {served['wall_s']:.0f} s; now one by one ...", file=sys.stderr, flush=True)
    shorts = [c for cs in per_session.values() for c in cs]
    if args.sample:
        # time a seeded sample of the distinct short runs alone and give the others their mean
        # (all short runs share data size, batch and epochs: their one-by-one times differ by noise)
        import random
        distinct = list({run_key(c): c for c in shorts}.values())
        picked = random.Random(0).sample(distinct, min(args.sample, len(distinct)))
        alone = in_own_thread(one_by_one, long_job + picked)
        mean_short = sum(alone[run_key(c)] for c in picked) / len(picked)
        for c in distinct:
            alone.setdefault(run_key(c), mean_short)
        sampled = len(picked)
    else:
        alone = in_own_thread(one_by_one, long_job + shorts)
        sampled = len({run_key(c) for c in shorts})
    job_alone = {s: sum(alone[run_key(c)] for c in cs) for s, cs in per_session.items()}
    long_alone = sum(alone[run_key(c)] for c in long_job)
    total_alone = long_alone + sum(job_alone.values())
    first = served["first_session"]
    result = {
        "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": " ".join(["nice -n 10" if os.nice(0) >= 10 else "", ".venv/bin/python bench/classroom.py",
                             *sys.argv[1:]]).strip(),
        "quick": args.quick, "sessions": sessions, "stacking": not args.no_stack, "slice_s": args.slice_s,
        "runs_per_session": len(next(iter(per_session.values()))), "long_job_runs": len(long_job),
        "throughput_ratio": round(total_alone / served["wall_s"], 3),
        "short_wait_ratio": round(served["first_short_wait_s"] / job_alone[first], 3),
        "lost": served["lost"], "duplicated": served["duplicated"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "served_wall_s": round(served["wall_s"], 2), "one_by_one_total_s": round(total_alone, 2),
        "one_by_one_unique_s": round(sum(alone.values()), 2), "one_by_one_measured_short_runs": sampled,
        "first_short_wait_s": round(served["first_short_wait_s"], 3),
        "first_short_alone_s": round(job_alone[first], 3), "long_alone_s": round(long_alone, 2),
        "long_served_s": round(served["long_done_s"], 2),
        "unique_runs": served["unique_runs"], "trained_runs": served["trained_runs"],
        "slices": served["slices"], "largest_stack": served["largest_stack"], "mean_stack": served["mean_stack"],
        "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(), "python": platform.python_version(), "bench_s": round(time.perf_counter() - t, 1),
        "serve_phase_s": round(t_serve, 1), "device": device_name(args.device),
    }
    if not args.no_record:
        record(result)
    print(render_md([result]))
    if args.json:
        print(json.dumps(result))
    return 0


def device_name(device: str) -> str:
    if device == "cuda":
        import torch
        return f"cuda ({torch.cuda.get_device_name()})"
    return "cpu"


def record(result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "classroom.json"
    runs = []
    if path.is_file():
        try:
            runs = json.loads(path.read_text()).get("runs", [])
        except (ValueError, AttributeError):
            runs = []
    runs.append(result)
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    (OUT / "classroom.md").write_text(render_md(runs))


def render_md(runs: list[dict]) -> str:
    lines = [
        "# A class on one server (bench/classroom.py)", "",
        "N sessions each submit the app's default comparison (base + LAMP x 3 seeds) with their own",
        "normal class or eps, after one long job was submitted first; one process, one worker (the CPU, or",
        "the GPU where the command says `--device cuda`), the app's `JobQueue`. One-by-one times are",
        "`train()` + `evaluate()` of each run alone on the same device, measured in the same run (a",
        "session's comparison counts all its runs, as if it ran alone). Targets:",
        f"throughput >= {TARGETS['throughput_ratio']}, short wait <= {TARGETS['short_wait_ratio']}, "
        "nothing lost or duplicated.", "",
        "The full run times a seeded sample of the distinct short runs one by one and gives the others",
        "their mean (column *measured*); the long job's runs are always timed.", "",
        "| when (UTC) | command | load 1m before/after | sessions x runs (+ long) | measured alone | throughput ratio | "
        "short wait ratio (wait / alone) | lost / duplicated | served wall / one-by-one sum | unique runs "
        "(trained) | slices, mean / largest stack | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['when_utc']} | `{r['command']}` | {r['load_average_1m_before_after'][0]} / "
            f"{r['load_average_1m_before_after'][1]} | {r['sessions']} x {r['runs_per_session']} (+ {r['long_job_runs']}) | "
            f"{r.get('one_by_one_measured_short_runs', 'all')} of {r['unique_runs'] - r['long_job_runs']} | "
            f"{r['throughput_ratio']:.2f} | {r['short_wait_ratio']:.2f} ({r['first_short_wait_s']:.1f} s / "
            f"{r['first_short_alone_s']:.1f} s) | {r['lost']} / {r['duplicated']} | {r['served_wall_s']:.0f} s / "
            f"{r['one_by_one_total_s']:.0f} s | {r['unique_runs']} ({r['trained_runs']}) | {r['slices']}, "
            f"{r['mean_stack']} / {r['largest_stack']} | {r['peak_rss_mb']:.0f} MB |")
    lines += ["", "Where the throughput comes from: sessions that share a normal class share their base runs",
              "(one run key), so fewer runs train than the sessions asked for; compatible runs of all",
              "sessions train as stacks (`lamp_core/stack.py`), which pays most at small batches. The short",
              "wait is bounded by one time slice of the long job (fair turns), whatever the long job's length.",
              "",
              "On the 2-core CPU the ceiling is the sharing: the app's comparison trains at batch 32, where",
              "stacking was measured not to pay (0.82-1.03x), so its runs train one at a time, and the",
              "sessions' shared base runs make the one-by-one sum 1.39x the unique runs' time. Rows before",
              "19:00 on 2026-11-29 were measured while the benchmark's main thread held an OpenMP team of two",
              "threads, which slows the worker's training about 2.2x (bench/results/thread_contention.md);",
              "the queue's callers now compute on one thread."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from lamp_core.cli import run_script
    sys.exit(run_script(main, "classroom"))
