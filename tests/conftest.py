"""Shared fixtures: tiny image sets made on the fly, paths to the real data beside the repo, and
an isolated cache/store so no test writes into the user's home."""
from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
MNIST_DIR = SHARED_DATA / "mnist"
MVTEC_DIR = SHARED_DATA / "mvtec_ad"
HAZELNUT_DIR = SHARED_DATA / "hazelnut_toy"

# `make test` runs the suite in two processes (pytest-xdist) on a 2-core machine. Each computes on
# one thread, so two of them do not oversubscribe the cores: set before any test module imports
# torch, which reads it when its thread pool starts, and inherited by the servers and worker
# processes the tests start. Tests of thread counts set their own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="real MNIST files not beside the repo (../shared/data/mnist)")
needs_mvtec = pytest.mark.skipif(not (MVTEC_DIR / "grid" / "train" / "good").is_dir(),
                                 reason="MVTec grid subset not beside the repo (../shared/data/mvtec_ad)")
needs_hazelnut = pytest.mark.skipif(not (HAZELNUT_DIR / "hazelnut").is_dir(),
                                    reason="hazelnut toy set not beside the repo (../shared/data/hazelnut_toy)")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache and run store, never ~/.cache."""
    cache = tmp_path_factory.mktemp("lamp-cache")
    monkeypatch.setenv("LAMP_CACHE", str(cache))
    monkeypatch.setenv("LAMP_STORE", str(cache / "runs"))
    # The page tests (AppTest) run the queue's worker as a thread of the test process: they test
    # the pages, and a worker process per test would cost seconds each. The shipped default, worker
    # processes, is what tests/test_jobs.py, tests/test_workers.py and the real-browser tests
    # (their servers are started with LAMP_WORKERS=process) run on.
    monkeypatch.setenv("LAMP_WORKERS", "thread")
    yield


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance (2 CPUs) per test process for the tests that need a running one:
    starting Ray costs seconds of CPU."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def import_lab_state():
    """app/lab_state.py, imported as the pages import it (from the app folder, which is not a package)."""
    import importlib
    import sys
    sys.path.insert(0, str(REPO / "app"))
    try:
        return importlib.import_module("lab_state")
    finally:
        sys.path.remove(str(REPO / "app"))


def until(cond, what, timeout: float = 90) -> None:
    """Poll `cond()` until it holds or the deadline (a deadline, not a timing: the test fails with
    `what`, or `what()` when it is a callable that describes the state)."""
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def run_until(at, done, what: str, deadline_s: float = 90, poll_s: float = 0.4):
    """Rerun an AppTest page until `done(at)` or the deadline: AppTest does not fire a fragment's
    run_every timer, so background work is followed as a browser's timer would follow it."""
    end = time.time() + deadline_s
    while time.time() < end:
        at.run()
        assert not at.exception, at.exception[0].message
        if done(at):
            return at
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def blob_image(seed: int, size: int = 16, anomalous: bool = False) -> np.ndarray:
    """A smooth 'normal' pattern; anomalous ones carry a bright square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = 100 + 40 * np.sin(xx / 3.0 + rng.uniform(0, 0.3)) + rng.normal(0, 3, (size, size))
    if anomalous:
        r, c = rng.integers(2, size - 6, 2)
        img[r:r + 4, c:c + 4] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def layout_files(layout: str, n_normal: int = 8, n_anom: int = 4, size: int = 16) -> dict[str, bytes]:
    """In-memory files for the three accepted folder layouts."""
    files: dict[str, bytes] = {}
    if layout == "mvtec":
        for i in range(n_normal):
            files[f"train/good/{i:03d}.png"] = png_bytes(blob_image(i, size))
        for i in range(3):
            files[f"test/good/{i:03d}.png"] = png_bytes(blob_image(100 + i, size))
        for i in range(n_anom):
            files[f"test/crack/{i:03d}.png"] = png_bytes(blob_image(200 + i, size, True))
            files[f"ground_truth/crack/{i:03d}_mask.png"] = png_bytes(
                (blob_image(200 + i, size, True) > 240).astype(np.uint8) * 255)
    elif layout == "split":
        for i in range(n_normal):
            files[f"train/normal/{i:03d}.png"] = png_bytes(blob_image(i, size))
        for i in range(3):
            files[f"test/normal/{i:03d}.png"] = png_bytes(blob_image(100 + i, size))
        for i in range(n_anom):
            files[f"test/anomalous/{i:03d}.png"] = png_bytes(blob_image(200 + i, size, True))
    elif layout == "unsplit":
        for i in range(n_normal):
            files[f"normal/{i:03d}.png"] = png_bytes(blob_image(i, size))
        for i in range(n_anom):
            files[f"anomalous/{i:03d}.png"] = png_bytes(blob_image(200 + i, size, True))
    else:
        raise ValueError(layout)
    return files


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            zf.writestr(prefix + rel, data)
    return path


@pytest.fixture
def make_layout(tmp_path):
    """make_layout(layout, as_zip=False, **kw) -> path of a tiny image set in that layout."""
    def make(layout: str, as_zip: bool = False, **kw) -> Path:
        files = layout_files(layout, **kw)
        if as_zip:
            return write_zip(tmp_path / f"{layout}.zip", files, prefix=f"{layout}_set/")
        return write_dir(tmp_path / layout, files)
    return make
