"""Benchmark: peak memory of loading an uploaded zip (`lamp_core.data.load`, dataset "folder").

Each case is built as a zip in a temporary folder, then loaded in a fresh subprocess that
reports its peak resident size (resource.getrusage ru_maxrss) before and after the load, so
each number is one upload's cost on its own. Target: peak under 1.5 GB for any upload up to the
app's 200 MB limit. Cases:

  flat-png-36mp    the issue's adversarial zip: 40 flat 6000x5999 RGB PNGs (each under the
                   36 MP cap, about 120 kB compressed), at the app's upload size of 64 px
  flat-rgba-36mp   the same with an alpha channel (the costliest decode: compositing)
  photos-jpeg      about 190 MB of 2048x1536 JPEG photos-like images at 256 px (draft decoding)
  textures-png     about 190 MB of 1024x1024 RGB PNG textures at 256 px
  budget-filling   about 600 colour images at 256 px: decoded total near the default budget
  over-budget      the same with more images: refused before decoding, with the reason

With `--before REV` the first case is also loaded with the data code of git revision REV (its
lamp_core exported to a temporary folder), to record what the change saved.

    python bench/upload_memory.py [--cases a,b] [--before REV] [--out bench/results/upload_memory]
    python bench/upload_memory.py --render     # rewrite the .md from the recorded .json
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parent.parent
TARGET_MB = 1536
UPLOAD_LIMIT_MB = 200

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: kB
import torch, numpy, PIL.Image
import lamp_core
assert lamp_core.__file__.startswith(sys.argv[1]), "lamp_core was not imported from the code under test"
from lamp_core.config import DataConfig
from lamp_core.data import DataError, load
base = rss_mb()
t0 = time.perf_counter()
out = {"baseline_mb": round(base, 1)}
try:
    ds = load(DataConfig(dataset="folder", data_root=sys.argv[2], image_size=int(sys.argv[3])))
    out.update(loaded=True, summary=ds.summary(),
               tensor_mb=round(sum(t.numel() * 4 for t in (ds.train, ds.test)) / 2**20, 1))
except DataError as exc:
    out.update(loaded=False, refused=str(exc))
out.update(seconds=round(time.perf_counter() - t0, 2), peak_mb=round(rss_mb(), 1))
print(json.dumps(out))
"""


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _texture(rng: np.random.Generator, w: int, h: int, blur: float) -> Image.Image:
    """Smoothed noise at a quarter of the size, scaled up and noised: photo-like, compresses poorly."""
    small = Image.fromarray(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(blur))
    big = np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.int16)
    big = big + rng.integers(-12, 13, big.shape, dtype=np.int16)
    return Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))


def _split_names(n: int) -> list[str]:
    """Split layout: 60% train/normal, 20% test/normal, 20% test/anomalous."""
    n_train, n_test_normal = int(n * 0.6), int(n * 0.2)
    return ([f"train/normal/{i:04d}" for i in range(n_train)]
            + [f"test/normal/{i:04d}" for i in range(n_test_normal)]
            + [f"test/anomalous/{i:04d}" for i in range(n - n_train - n_test_normal)])


def _write(path: Path, names: list[str], blobs: list[bytes], ext: str) -> Path:
    # PNG and JPEG are compressed already: store them, as zip tools do for such files
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i, name in enumerate(names):
            zf.writestr(zipfile.ZipInfo(f"{name}.{ext}", date_time=(2024, 1, 1, 0, 0, 0)), blobs[i % len(blobs)])
    return path


def build_case(name: str, folder: Path, rng: np.random.Generator) -> tuple[Path, int]:
    """-> (zip path, image size to load at)."""
    path = folder / f"{name}.zip"
    if name in ("flat-png-36mp", "flat-rgba-36mp"):
        mode = "RGB" if name == "flat-png-36mp" else "RGBA"
        colours = [(200, 30, 30, 255), (30, 200, 30, 128), (30, 30, 200, 255), (128, 128, 128, 64)]
        blobs = [_png(Image.new(mode, (6000, 5999), c[: len(mode)])) for c in colours]
        return _write(path, _split_names(40), blobs, "png"), 64
    if name == "photos-jpeg":
        blobs = [_jpeg(_texture(rng, 2048, 1536, 1.5)) for _ in range(8)]
        count = int(190 * 2**20 / np.mean([len(b) for b in blobs]))
        return _write(path, _split_names(count), blobs, "jpg"), 256
    if name == "textures-png":
        blobs = [_png(_texture(rng, 1024, 1024, 1.0)) for _ in range(6)]
        count = int(190 * 2**20 / np.mean([len(b) for b in blobs]))
        return _write(path, _split_names(count), blobs, "png"), 256
    if name in ("budget-filling", "over-budget"):
        blobs = [_png(_texture(rng, 256, 256, 1.0)) for _ in range(10)]
        return _write(path, _split_names(600 if name == "budget-filling" else 700), blobs, "png"), 256
    raise SystemExit(f"unknown case {name!r}")


def measure(code_root: Path, zip_path: Path, size: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(code_root), str(zip_path), str(size)],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        return {"loaded": False, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}",
                "exit_code": r.returncode}
    return json.loads(r.stdout.strip().splitlines()[-1])


def export_revision(rev: str, dest: Path) -> Path:
    """`git archive REV lamp_core` into dest: the data code as it was at REV."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "lamp_core"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


CASES = ("flat-png-36mp", "flat-rgba-36mp", "photos-jpeg", "textures-png", "budget-filling", "over-budget")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    p.add_argument("--before", metavar="REV", help="also load the first case with lamp_core from this git revision")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "upload_memory"))
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the recorded .json")
    a = p.parse_args()
    out = Path(a.out)
    if a.render:
        report = json.loads(out.with_suffix(".json").read_text())
        a.before = report.get("before")
        out.with_suffix(".md").write_text(render_md(report, a))
        return 0
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="upload-bench-") as tmp:
        tmp = Path(tmp)
        names = [c for c in a.cases.split(",") if c]
        for i, name in enumerate(names):
            t0 = time.perf_counter()
            path, size = build_case(name, tmp, rng)
            zip_mb = path.stat().st_size / 2**20
            print(f"{name}: {zip_mb:.1f} MB zip built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            runs = [("current", REPO)]
            if a.before and i == 0:
                runs.insert(0, (f"before ({a.before})", export_revision(a.before, Path(tempfile.mkdtemp(dir=tmp)))))
            for code, root in runs:
                res = measure(root, path, size)
                res.update(case=name, code=code, zip_mb=round(zip_mb, 1), image_size=size)
                print(json.dumps(res), file=sys.stderr)
                rows.append(res)
            path.unlink()
    current = [r for r in rows if r["code"] == "current"]
    worst = max((r.get("peak_mb", float("inf")) for r in current), default=0.0)
    report = {"bench": "upload_memory", "before": a.before, "target_peak_mb": TARGET_MB, "worst_peak_mb": worst,
              "meets_target": worst < TARGET_MB and all("peak_mb" in r for r in current),
              "python": platform.python_version(), "machine": platform.machine(), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_md(report, a))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    return 0


def render_md(report: dict, a: argparse.Namespace) -> str:
    lines = [
        "# Peak memory of loading an upload",
        "",
        f"Command: `python bench/upload_memory.py{' --before ' + a.before if a.before else ''}`"
        f" (Python {report['python']}, {report['machine']}). Each load runs in a fresh subprocess;",
        "peak = its maximum resident size (ru_maxrss), baseline = the same after importing torch and",
        "lamp_core, before the load. Default budget for decoded images: 512 MB.",
        f"Target: peak under {TARGET_MB} MB for any upload up to {UPLOAD_LIMIT_MB} MB. "
        f"Worst peak with the current code: **{report['worst_peak_mb']:.0f} MB**"
        f" ({'meets' if report['meets_target'] else 'misses'} the target).",
    ]
    for case in dict.fromkeys(r["case"] for r in report["rows"]):
        pair = {r["code"].split(" ")[0]: r for r in report["rows"] if r["case"] == case and "peak_mb" in r}
        if "before" in pair and "current" in pair:
            b, c = pair["before"], pair["current"]
            lines.append(f"\n{case}: peak {b['peak_mb']:.0f} MB before, {c['peak_mb']:.0f} MB now "
                         f"({b['peak_mb'] / c['peak_mb']:.1f}x less); above the baseline "
                         f"{b['peak_mb'] - b['baseline_mb']:.0f} MB before, {c['peak_mb'] - c['baseline_mb']:.0f} MB now.")
    lines += [
        "",
        "Times are wall-clock on a machine shared with other jobs (2 cores): read them as rough.",
        "",
        "| case | code | zip (MB) | size (px) | outcome | decoded tensors (MB) | baseline (MB) | peak (MB) | time (s) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if r.get("loaded"):
            s = r["summary"]
            outcome = f"loaded {s['train_normal']} + {s['test_normal'] + s['test_anomalous']} images"
        elif "refused" in r:
            outcome = "refused: " + r["refused"].replace("|", "/")
        else:
            outcome = "failed: " + r.get("error", "?").replace("|", "/")
        lines.append(f"| {r['case']} | {r['code']} | {r['zip_mb']} | {r['image_size']} | {outcome} | "
                     f"{r.get('tensor_mb', '')} | {r.get('baseline_mb', '')} | {r.get('peak_mb', '')} | {r.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
