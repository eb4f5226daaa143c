"""Start the real app for browser-driven scripts and tests (the latency benchmark, the soak, the
docs' screenshots, tests/test_browser.py): the one place that starts `streamlit run`, waits for it
and picks a select box option in a real browser.

`serving(prefix)` does that with a fresh temporary run store and stops the app and removes the
store afterwards. `start(store)` runs `streamlit run app/streamlit_app.py` on a free loopback port with its own run
store and cache, and returns once `/_stcore/health` answers (never after a fixed delay).
`launch` and `wait_healthy` are its two steps, for callers that set the environment themselves.
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


def launch(port: int, env: dict, output=subprocess.DEVNULL) -> subprocess.Popen:
    """`streamlit run app/streamlit_app.py` on 127.0.0.1:`port` with `env`; returns at once."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py"), "--server.port",
         str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT if output is subprocess.PIPE else output)


def wait_healthy(proc: subprocess.Popen, port: int, timeout_s: float = 90) -> str:
    """The app's URL once `/_stcore/health` answers; RuntimeError (with the app's output where it
    was piped) when it exits first or is not healthy within `timeout_s`."""
    url = f"http://127.0.0.1:{port}"
    end = time.time() + timeout_s
    while time.time() < end:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"streamlit exited early (exit code {proc.returncode}):\n{out}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return url
        except OSError:
            pass
        time.sleep(0.2)   # polling interval of the health check, not a wait on the app's state
    raise RuntimeError(f"{url}/_stcore/health not healthy after {timeout_s:.0f} s")


def start(store: Path, timeout_s: float = 90, output=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = launch(port, dict(os.environ, LAMP_STORE=str(store), LAMP_CACHE=str(store.parent / "cache")), output)
    try:
        return proc, wait_healthy(proc, port, timeout_s)
    except RuntimeError as exc:
        proc.kill()
        raise SystemExit(str(exc).splitlines()[0]) from None


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit select box labelled `label` (a playwright page)."""
    from playwright.sync_api import expect
    box = page.get_by_role("combobox", name=label, exact=True)
    expect(box).to_be_visible(timeout=90_000)
    box.click()
    box.fill(option)                     # the combobox filters its options as one types
    page.get_by_role("option", name=option, exact=True).first.click()


@contextlib.contextmanager
def serving(prefix: str, output=subprocess.DEVNULL):
    """Yield (url, run store folder) of an app started on a fresh temporary store; clean up after.
    `output`: where the server's stdout and stderr go (an open file, or discarded)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    proc, url = start(tmp / "runs", output=output)
    try:
        yield url, tmp / "runs"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
