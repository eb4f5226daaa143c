"""Start the real app for browser-driven scripts (the latency benchmark, the docs' screenshots).

`serving(prefix)` does that with a fresh temporary run store and stops the app and removes the
store afterwards. `start(store)` runs `streamlit run app/streamlit_app.py` on a free loopback port with its own run
store and cache, and returns once `/_stcore/health` answers (never after a fixed delay).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(store: Path, timeout_s: float = 90) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, LAMP_STORE=str(store), LAMP_CACHE=str(store.parent / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py"), "--server.port",
         str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + timeout_s
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"streamlit did not become healthy within {timeout_s:.0f} s")


@contextlib.contextmanager
def serving(prefix: str):
    """Yield (url, run store folder) of an app started on a fresh temporary store; clean up after."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    proc, url = start(tmp / "runs")
    try:
        yield url, tmp / "runs"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
