"""Screenshots of every page of the app, taken from the real app in headless Chromium.

Starts `streamlit run app/streamlit_app.py` with a fresh run store, walks through the pages the
way a student would (train the default comparison, compute the landscapes, upload the example
zip, ...), waits on visible text, and saves small palette PNGs to docs/screenshots/.

    .venv/bin/python docs/make_screenshots.py
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from app_server import CHROMIUM, CHROMIUM_ARGS as ARGS, serving  # noqa: E402
OUT = REPO / "docs" / "screenshots"
WIDTH = 1400          # saved width in pixels: the browser's, so the pictures show what a 1400-px window shows
LONG = 900_000        # ms: training and landscapes on a busy 2-core machine


def goto(page, link: str, heading: str | None = None) -> None:
    """Open a page from the sidebar and wait until its title shows (a click on a button of the
    old page while the new one loads would be lost)."""
    from playwright.sync_api import expect
    page.get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name=heading or link, exact=True)).to_be_visible(timeout=60_000)


def settle(page) -> None:
    """Wait until the script run has finished (no "Running..." status, no stale elements) and
    every image has loaded, so a picture never shows a page half-way through a rerun."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')"
        " && !document.querySelector('[data-stale=true]')"
        " && Array.from(document.images).every(i => i.complete)", timeout=LONG, polling=200)


def save(page, name: str) -> None:
    """Screenshot -> downscaled 256-colour PNG (a few hundred KB at most)."""
    settle(page)
    page.mouse.move(700, 5)                     # no tooltip from the last click in the picture
    page.evaluate("document.activeElement && document.activeElement.blur()")
    png = page.screenshot()
    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.width != WIDTH:
        img = img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.LANCZOS)
    img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    OUT.mkdir(parents=True, exist_ok=True)
    img.save(OUT / f"{name}.png", optimize=True)
    print(f"saved docs/screenshots/{name}.png ({(OUT / f'{name}.png').stat().st_size // 1024} KiB)")


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    with serving("lamp-shots-") as (url, _store):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            plots = page.locator(".js-plotly-plot")

            page.set_viewport_size({"width": 1400, "height": 1500})
            page.goto(url)
            expect(page.get_by_role("heading", name="Loss curves")).to_be_visible(timeout=60_000)
            expect(plots.first).to_be_visible(timeout=60_000)
            save(page, "loss_curves")
            page.set_viewport_size({"width": 1400, "height": 1000})

            goto(page, "Train & compare")
            page.get_by_role("button", name="Train base and LAMP").click()
            expect(page.get_by_text("LAMP training loss")).to_be_visible(timeout=LONG)   # live curves
            page.get_by_role("heading", name="Progress").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(page, "train_progress")
            expect(page.get_by_text("Reconstructions (paper Fig. 4)")).to_be_visible(timeout=LONG)
            page.get_by_role("heading", name="Detection").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(page, "train_compare_results")
            page.get_by_role("heading", name="Reconstructions (paper Fig. 4)").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(page, "train_compare_reconstructions")
            page.get_by_role("heading", name="Results").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(page, "train_compare_table")
            # another normal class: the results shown are flagged as the old settings'
            box = page.get_by_role("combobox", name="Normal class", exact=True)
            box.click()
            box.fill("3")                      # the combobox filters its options as one types
            page.get_by_role("option", name="3", exact=True).first.click()
            expect(page.get_by_text("The results below are for")).to_be_visible(timeout=LONG)
            page.get_by_text("The results below are for").evaluate("e => e.scrollIntoView({block: 'center'})")
            save(page, "stale_notice")
            box = page.get_by_role("combobox", name="Normal class", exact=True)
            box.click()
            box.fill("8")                      # the combobox filters its options as one types
            page.get_by_role("option", name="8", exact=True).first.click()
            expect(page.get_by_text("The results below are for")).to_have_count(0, timeout=LONG)

            goto(page, "Loss landscape")
            page.get_by_role("button", name="Compute landscapes").click()
            expect(page.get_by_text("Sharpness at the trained weights")).to_be_visible(timeout=LONG)
            expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=LONG)
            page.set_viewport_size({"width": 1400, "height": 1400})
            page.get_by_role("heading", name="Loss landscape").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(page, "landscape")
            page.set_viewport_size({"width": 1400, "height": 1000})

            goto(page, "Batch size")
            # the runs at batch 32 come from the store; the contours start only on the button
            page.get_by_role("button", name="Train batch 32").click()
            expect(page.get_by_text("✓ contour LAMP @ 32")).to_be_visible(timeout=LONG)
            expect(plots).to_have_count(2, timeout=LONG)
            save(page, "batch_size")

            goto(page, "Your data")
            page.locator("input[type=file]").set_input_files(str(REPO / "assets" / "example_upload.zip"))
            expect(page.get_by_text("Validation report")).to_be_visible(timeout=LONG)
            expect(page.get_by_role("button", name="Use this data on Train & compare")).to_be_visible(timeout=LONG)
            expect(page.locator("[data-testid=stImage] img").first).to_be_visible(timeout=LONG)
            page.get_by_text("Layout:").evaluate("e => e.scrollIntoView({block: 'start'})")
            save(page, "your_data")

            goto(page, "Guide", heading="Lab guide")
            save(page, "guide")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
