"""How far off is a job's first ETA before its kind of run has trained here? (issue 18)

Before a kind of run (network, image shape, batch size, loss) has trained on a server, the queue
predicts its steps from the worker's calibration (`lamp_core.workers.calibrate`). In the class
soak, the first batch-1024 and batch-128 clicks on the example upload were estimated at 313 s and
39 s a run while they trained in about 7 s: hundreds of seconds of phantom work that every other
session's ETA waited behind for minutes. This bench trains, on one queue with its process worker
as the app runs it, the default comparison's run and the Batch size page's sizes on the digits,
then the example upload (60 normal training images, 3x64x64) at the same sizes, one after
another, each alone, and records for each: the estimate of its whole run made at its submission
(what the queue's simulation starts from), the same estimate by the formula before this change
(batch not capped at the training set, one seconds-per-value figure for every image shape, one
correction ratio for every data set), and the seconds it took (submission to done).

    nice -n 10 .venv/bin/python bench/eta_first_estimates.py [--record bench/results/eta_first_estimates]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent    # for paths only: lamp_core is the installed package
SIZES = (16, 128, 1024)


def before_estimate(q, cfg) -> float:
    """The estimate of a whole run as the queue made it before: calibration (overhead, seconds per
    value at 1x28x28) x the configured batch, scaled by one ratio for all data; the test pass from
    `max_test` or 2000 images. Only for a kind of run not trained yet (else both read the
    measured step)."""
    from lamp_core.run_types import planned_steps
    from lamp_core.stack import stack_signature
    known = q._step_cost.get((stack_signature(cfg), cfg.train.lamp))
    channels, size = q._image_shape(cfg)
    overhead, per_value = q._calibration[0], q._calibration[1]
    values = cfg.train.batch_size * channels * size ** 2
    step = known if known is not None else (overhead + per_value * values) * q._ratio
    test = q._eval_cost.get(repr(cfg.data))
    if test is None:
        test = per_value * channels * size ** 2 * (cfg.data.max_test or 2000) / 3 * q._ratio
    return planned_steps(cfg) * step + test


def measure() -> dict:
    from lamp_core import lesson
    from lamp_core.config import DataConfig
    from lamp_core.jobs import DONE, FINAL, JobQueue
    from lamp_core.run_types import planned_steps
    from lamp_core.store import RunStore
    upload = replace(lesson.DEFAULT_CONFIG, data=DataConfig(
        dataset="folder", data_root=str(ROOT / "assets" / "example_upload.zip"), image_size=lesson.UPLOAD_IMAGE_SIZE))
    n_upload = lesson.train_images(upload)                 # loads it here, as the Your data page does
    upload = upload.with_train(epochs=lesson.budget_epochs(n_upload, upload.train.batch_size))
    lesson.train_images(lesson.DEFAULT_CONFIG)
    cases = [("digits", lesson.DEFAULT_CONFIG)] + \
        [("digits", lesson.batch_size_config(lesson.DEFAULT_CONFIG, b)) for b in SIZES] + \
        [("upload", upload)] + [("upload", lesson.batch_size_config(upload, b)) for b in SIZES]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        q = JobQueue(RunStore(Path(d) / "runs"), workers="process")
        try:
            deadline = time.time() + 120
            while q._calibration is None and time.time() < deadline:
                time.sleep(0.05)
            calibration = q._calibration
            for data, cfg in cases:
                with q._lock:
                    before = before_estimate(q, cfg)
                t0 = time.time()
                v = q.submit_run(cfg)
                with q._lock:
                    now = q._remaining(q._by_id[v.id])
                while q.get(v.id).status not in FINAL:
                    time.sleep(0.02)
                took = time.time() - t0
                assert q.get(v.id).status == DONE, q.get(v.id).error
                rows.append({"data": data, "batch": cfg.train.batch_size, "steps": planned_steps(cfg),
                             "estimate_s": round(now, 2), "estimate_before_s": round(before, 2),
                             "took_s": round(took, 2), "ratio": round(now / took, 2),
                             "ratio_before": round(before / took, 2)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            q.close()

    def off(key):                      # how many times off, either way: 2 for half or double
        return [max(r[key], 1 / r[key]) for r in rows]
    return {"rows": rows, "calibration": [float(f"{c:.3g}") for c in calibration],
            "upload_train_images": n_upload,
            "median_times_off": round(statistics.median(off("ratio")), 2),
            "median_times_off_before": round(statistics.median(off("ratio_before")), 2),
            "worst_times_off": round(max(off("ratio")), 2),
            "worst_times_off_before": round(max(off("ratio_before")), 2)}


def write_md(res: dict, path: Path) -> None:
    lines = ["# eta_first_estimates", "",
             "Command: `nice -n 10 .venv/bin/python bench/eta_first_estimates.py --record bench/results/eta_first_estimates`",
             "", "Each run alone on one queue with its process worker, in this order; the estimate is of the whole run, "
             "made at its submission (the first run of each data set has no measured speed of that data; the others "
             "have the measured speeds of the runs before them, not of their own batch size).", "",
             f"Calibration (overhead s, s per value at 1x28x28, at 3x64x64): {res['calibration']}; the upload has "
             f"{res['upload_train_images']} training images.", "",
             "| data | batch | steps | estimate (s) | before (s) | took (s) | estimate / took | before / took |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['data']} | {r['batch']} | {r['steps']} | {r['estimate_s']} | {r['estimate_before_s']} | "
                     f"{r['took_s']} | {r['ratio']} | {r['ratio_before']} |")
    lines += ["", f"Median times off (either way): **{res['median_times_off']}** now, {res['median_times_off_before']} "
              f"before; worst {res['worst_times_off']} now, {res['worst_times_off_before']} before.", ""]
    path.with_suffix(".md").write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", type=Path, default=None, help="write <path>.json and <path>.md")
    a = ap.parse_args(argv)
    res = measure()
    if a.record:
        write_md(res, a.record)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
