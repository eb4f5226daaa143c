"""The Loss landscape page under AppTest: the coarse picture is drawn while the refined grid is
computed, and the converged study's verdict sits beside the quick model's sharpness.

AppTest does not fire the page's `run_every` timer, so the test calls `at.run()` in a loop, as
tests/test_app_pages.py does. To see a coarse picture deterministically (a 9x9 grid of a tiny
model refines in well under a second), the surface computation is held at its first, coarse
report until the test has seen that picture on the page.
"""
from __future__ import annotations

import json
import threading

import numpy as np

from test_app_pages import page, run_until, texts


def _drawn(at) -> dict[str, tuple[int, int]]:
    """The surfaces in the page's 3-D figure: name -> shape of the drawn grid."""
    charts = at.get("plotly_chart")
    if not charts:
        return {}
    fig = json.loads(charts[0].proto.spec)
    return {t["name"]: _shape(t["z"]) for t in fig["data"] if t.get("type") == "surface"}


def _shape(z) -> tuple[int, ...]:
    # plotly writes numpy arrays as typed arrays: {"dtype", "bdata", "shape": "5, 5"}
    if isinstance(z, dict) and "shape" in z:
        return tuple(int(n) for n in str(z["shape"]).split(","))
    return np.asarray(z).shape


def test_coarse_picture_appears_before_the_refined_one(monkeypatch):
    # the gate below patches this process's compute_surface: the queue's worker must be a thread here
    monkeypatch.setenv("LAMP_WORKERS", "thread")
    from lamp_core import surfaces as surfaces_mod
    real = surfaces_mod.compute_surface
    gates = [threading.Event(), threading.Event()]
    calls: list[int] = []

    def held(result, data, cfg, *, on_progress=None, should_stop=None):
        gate = gates[len(calls)] if len(calls) < len(gates) else None
        calls.append(1)

        def report(surface):
            on_progress(surface)
            if gate is not None and not surface.complete:
                gate.wait(timeout=30)   # keep the coarse picture up until the test has looked
        return real(result, data, cfg, on_progress=report if on_progress else None, should_stop=should_stop)

    monkeypatch.setattr(surfaces_mod, "compute_surface", held)
    try:
        at = page("landscape").run()
        at.select_slider(key="ls_grid").set_value(9)      # 9x9: a 5x5 coarse level, then the rest
        at.select_slider(key="ls_images").set_value(16)
        at.button(key="compute").click()
        # the first surface's coarse grid is drawn while the second has no point yet
        run_until(at, lambda a: list(_drawn(a).values()) == [(5, 5)], "the first coarse picture", deadline_s=60)
        first = next(iter(_drawn(at)))
        assert at.session_state["_busy_landscape"]
        assert "Still to come" in texts(at) and "% computed" in at.get("plotly_chart")[0].proto.spec
        gates[0].set()
        # then the second one's coarse grid beside the first one's refined grid
        run_until(at, lambda a: len(_drawn(a)) == 2 and sorted(_drawn(a).values()) == [(5, 5), (9, 9)],
                  "the second coarse picture beside the first refined one", deadline_s=60)
        assert _drawn(at)[first] == (9, 9)
        gates[1].set()
        run_until(at, lambda a: not a.session_state["_busy_landscape"] and a.dataframe
                  and set(_drawn(a).values()) == {(9, 9)}, "both refined surfaces", deadline_s=60)
        # the quick pair's sharpness, the converged study beside it, and whether they agree
        text = texts(at)
        assert "For comparison, the converged study" in text and "landscape_study.csv" in text
        assert "converged study" in text.split("landscape_study.md", 1)[1]      # the sentence
        assert len(at.dataframe) == 2 and list(at.dataframe[1].value["metric"])[:2] == ["own", "l2"]
    finally:
        for g in gates:
            g.set()
