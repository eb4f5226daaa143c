"""Walk the lesson as a new user would and hold what the app shows against what the notes say.

Starts the real app on a fresh, empty run store, drives headless Chromium through the exercises
with untouched widgets (Train & compare's default comparison; Batch size at 128 and 1024 in both
step modes; the Loss landscape's default cut), reads what the pages show (the AUROC metrics, and
the pages' own CSV downloads for the batch-size and sharpness tables), and compares every number
with assets/expected_results.json, from which the teacher notes are rendered. Writes
bench/results/lesson_walk.json and .md: one row per number, "notes say / app gives / agree".

    .venv/bin/python bench/lesson_walk.py          # about 4-8 minutes on 2 cores
    .venv/bin/python bench/lesson_walk.py --compare-only   # the table again from the last walk's record

Numbers agree when they round to the same 3 decimals (AUROC) or are within 2% (sharpness, whose
power iteration and probes run on the same weights, but in another process).
"""
from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))   # its sibling app_server, also when imported
from app_server import CHROMIUM, CHROMIUM_ARGS as ARGS, serving  # noqa: E402

from lamp_core import lesson  # noqa: E402
from lamp_core.files import atomic_write  # noqa: E402

OUT = REPO / "bench" / "results" / "lesson_walk"
LONG = 900_000


def _download_csv(page, name: str) -> list[dict]:
    with page.expect_download(timeout=LONG) as dl:
        page.get_by_role("button", name=f"{name}.csv").click()
    return list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))


def walk() -> dict:
    from playwright.sync_api import expect, sync_playwright
    got: dict = {"batch_size": {}}
    t_start = time.perf_counter()
    with serving("lamp-walk-") as (url, _store):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True).new_page()
            # 1. Train & compare, untouched
            page.goto(url + "/train_compare")
            page.get_by_role("button", name="Train base and LAMP").click()
            expect(page.locator(".js-plotly-plot").filter(has_text="ROC curves")).to_be_visible(timeout=LONG)
            got["metric_text"] = {n: page.get_by_test_id("stMetric").filter(has_text=f"{n} AUROC").inner_text()
                                  .splitlines()[-1] for n in ("base", "LAMP")}
            got["indicator"] = page.get_by_text("Still learning:", exact=False).first.inner_text() \
                if page.get_by_text("Still learning:", exact=False).count() else \
                page.get_by_text("Trained:", exact=False).first.inner_text()
            rows = _download_csv(page, "lamp_comparison")
            got["default_comparison"] = {n: {int(r["seed"]): float(r["auroc"]) for r in rows if r["loss"] == n}
                                         for n in ("base", "LAMP")}
            # 2. Loss landscape, untouched (the default comparison's seed-0 models, from the store)
            page.goto(url + "/landscape")
            page.get_by_role("button", name="Compute landscapes").click()
            expect(page.get_by_text("Sharpness at the trained weights")).to_be_visible(timeout=LONG)
            expect(page.get_by_role("button", name="sharpness.csv")).to_be_visible(timeout=LONG)
            got["landscape_l2"] = {r["loss"]: {k: float(v) for k, v in r.items() if k != "loss" and v not in ("", None)}
                                   for r in _download_csv(page, "sharpness")}
            # 3. Batch size, untouched, in both modes: train 128 and 1024 on their buttons
            page.goto(url + "/batch_size")
            for mode_label in ("same epochs", "same number of steps"):
                page.get_by_text(mode_label, exact=False).first.click()
                for size in (128, 1024):
                    handle = page.get_by_role("slider").first
                    sizes = list(lesson.BATCH_SIZES)
                    current = int(handle.get_attribute("aria-valuetext") or handle.get_attribute("aria-valuenow"))
                    key = "ArrowRight" if sizes.index(size) > sizes.index(current) else "ArrowLeft"
                    for _ in range(abs(sizes.index(size) - sizes.index(current))):
                        handle.press(key)
                    button = page.get_by_role("button", name=f"Train batch {size}")
                    expect(button).to_be_visible(timeout=60_000)
                    button.click()
                    expect(page.get_by_text(f"✓ LAMP @ {size}: 3 of 3 seeds", exact=False)).to_be_visible(timeout=LONG)
                    expect(page.get_by_text(f"✓ contour LAMP @ {size}", exact=False)).to_be_visible(timeout=LONG)
                expect(page.get_by_role("button", name="auroc_by_batch_size.csv")).to_be_visible(timeout=LONG)
                rows = _download_csv(page, "auroc_by_batch_size")
                got["batch_size"][mode_label] = rows
            browser.close()
    got["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    return got


def compare(got: dict, exp: dict) -> list[dict]:
    rows = []

    def add(what, notes, app, agree):
        rows.append({"exercise": what, "notes say": notes, "app gives": app, "agree": bool(agree)})

    e = exp["default_comparison"]
    for name, key in (("base", "base_auroc"), ("LAMP", "lamp_auroc")):
        notes = [round(v, 3) for v in e[key]]
        app = [round(got["default_comparison"][name][s], 3) for s in e["seeds"]]
        add(f"default comparison, digit {lesson.DEFAULT_CONFIG.data.normal_class}, {name} AUROC per seed "
            f"{e['seeds']}", notes, app, notes == app)
        m, sd = statistics.mean(e[key]), statistics.stdev(e[key])
        shown = got["metric_text"][name]            # "0.818 ± 0.005 (n=3)": the page adds the seed count
        add(f"default comparison, {name} AUROC mean ± std (metric on the page)", f"{m:.3f} ± {sd:.3f}", shown,
            shown.split(" (")[0] == f"{m:.3f} ± {sd:.3f}" and f"(n={len(e['seeds'])})" in shown)
    add("default comparison, training indicator", e["overall_status"], got["indicator"].split(":")[0].split(".")[0],
        got["indicator"].lower().startswith(e["overall_status"]))
    modes = {"same epochs": "same_epochs", "same number of steps": "same_steps"}
    for label, mode in modes.items():
        for size in (128, 1024):
            entry = exp["batch_size"][mode][str(size)]
            for name, key in (("base", "base_auroc"), ("LAMP", "lamp_auroc")):
                notes = [round(v, 3) for v in entry[key]]
                app_rows = {int(r["seed"]): float(r["auroc"]) for r in got["batch_size"][label]
                            if int(r["batch_size"]) == size and r["name"] == name}
                app = [round(app_rows[s], 3) for s in entry["seeds"] if s in app_rows]
                add(f"batch size {size}, {label}, {name} AUROC per seed", notes, app, notes == app)
    L = exp["landscape"]["l2"]
    for name, key in (("base", "base"), ("LAMP", "lamp")):
        for field in ("top_eigenvalue", "hessian_trace"):
            notes = L[key][field]
            app = got["landscape_l2"].get(name, {}).get(field)
            add(f"landscape (metric l2), {name} {field}", f"{notes:,.0f}", "-" if app is None else f"{app:,.0f}",
                app is not None and abs(app - notes) <= 0.02 * abs(notes))
    return rows


def main() -> int:
    exp = lesson.load_expected()
    if exp is None:
        print("error: assets/expected_results.json is missing: run `lamp lesson measure` first", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    if "--compare-only" in sys.argv:           # recompute the table from the last walk's record
        got = json.loads(OUT.with_suffix(".json").read_text())["app"]
        for k in ("default_comparison",):
            got[k] = {n: {int(s): v for s, v in per.items()} for n, per in got[k].items()}
    else:
        got = walk()
    rows = compare(got, exp)
    atomic_write(OUT.with_suffix(".json"), (json.dumps({"rows": rows, "app": got}, indent=1, default=str) + "\n").encode())
    md = ["# The lesson walked as a new user: notes say / app gives", "",
          "Command: `.venv/bin/python bench/lesson_walk.py`: the real app on a fresh, empty run store, headless "
          "Chromium, untouched widgets; the pages' metrics and their own CSV downloads against "
          f"assets/expected_results.json (what the teacher notes are rendered from). Walk took {got['wall_seconds']:.0f} s.",
          "", "| exercise | notes say | app gives | agree |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['exercise']} | {r['notes say']} | {r['app gives']} | {'yes' if r['agree'] else 'NO'} |")
    md += ["", f"{sum(r['agree'] for r in rows)} of {len(rows)} rows agree.", ""]
    atomic_write(OUT.with_suffix(".md"), "\n".join(md).encode())
    print("\n".join(md))
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
