"""The whole app in a real headless Chromium: `streamlit run` as a subprocess, driven by
playwright, the default comparison run end to end on the built-in digits.

Skips when /usr/bin/chromium is absent, unless LAMP_REQUIRE_BROWSER=1 (CI), where it fails.
Waits only on visible text and the health endpoint, never on fixed sleeps.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOT_DIR = Path(os.environ.get("LAMP_SCREENSHOT_DIR", REPO / ".pytest_cache" / "screenshots"))

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_browser() -> None:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("LAMP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing but LAMP_REQUIRE_BROWSER=1: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); set LAMP_REQUIRE_BROWSER=1 to fail")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("LAMP_REQUIRE_BROWSER") == "1":
            pytest.fail("playwright is missing but LAMP_REQUIRE_BROWSER=1: pip install playwright")
        pytest.skip("playwright not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py"),
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_healthy(proc: subprocess.Popen, port: int, timeout_s: float = 60) -> None:
    end = time.time() + timeout_s
    url = f"http://127.0.0.1:{port}/_stcore/health"
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited early:\n{proc.stdout.read().decode(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)   # polling interval of the health check, not a wait on the app's state
    raise AssertionError(f"{url} not healthy after {timeout_s}s")


@pytest.fixture
def app_url(tmp_path):
    _require_browser()
    env = dict(os.environ, LAMP_STORE=str(tmp_path / "runs"), LAMP_CACHE=str(tmp_path / "cache"),
               PYTHONUNBUFFERED="1")
    port = free_port()
    proc = start_app(port, env)
    try:
        wait_healthy(proc, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_default_comparison_end_to_end_in_chromium(app_url):
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url)
            # the default page: Fig. 2 with the equations
            expect(page.get_by_role("heading", name="Loss curves")).to_be_visible(timeout=60_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            # the default comparison, end to end
            page.get_by_role("link", name="Train & compare").click()
            expect(page.get_by_role("heading", name="Train & compare")).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Train base and LAMP").click()
            expect(page.get_by_text("base AUROC")).to_be_visible(timeout=300_000)
            expect(page.get_by_text("LAMP AUROC")).to_be_visible()
            expect(page.get_by_text("Reconstructions (paper Fig. 4)")).to_be_visible()
            # the ROC figure is drawn, with the AUROC in its legend
            expect(page.locator(".js-plotly-plot").filter(has_text="ROC curves")).to_be_visible(timeout=30_000)
            # the ROC figure downloads as a self-contained HTML file
            with page.expect_download(timeout=60_000) as dl:
                page.get_by_role("button", name="Download roc (HTML)").click()
            html = Path(dl.value.path()).read_text(encoding="utf-8")
            assert "plotly" in html.lower() and "AUROC" in html
            page.screenshot(path=str(SCREENSHOT_DIR / "browser_train_compare.png"), full_page=False)
        finally:
            browser.close()
