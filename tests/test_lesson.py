"""The lesson agrees with itself: one default, exercises as data, numbers measured and rendered.

These tests fail when a page, the guide or the teacher notes drift from the settings the app runs
or from the numbers `lamp lesson measure` recorded in assets/expected_results.json.
"""
from __future__ import annotations

import json
import math
import re
import sys

import pytest

from conftest import REPO
from lamp_core import lesson
from lamp_core.config import RunConfig, run_key
from lamp_core.convergence import (CONVERGED_RATE_MAX, LEARNING_RATE, STILL_LEARNING, TRAINED, UNKNOWN,
                                   last_quarter_drop, training_status)
from lamp_core.lesson_measure import config_of

EXPECTED = lesson.load_expected()


# ----------------------------------------------------------------------------- steps and budgets

def test_steps_follow_training():
    assert lesson.steps_per_epoch(500, 32) == 16          # the last batch is smaller, not dropped
    assert lesson.steps_per_epoch(500, 1024) == 1         # the batch is capped at the training set
    assert lesson.steps_per_epoch(0, 32) == 0


def test_same_steps_mode_gives_every_size_the_default_steps():
    n = lesson.train_images(lesson.DEFAULT_CONFIG)
    target = lesson.total_steps(lesson.DEFAULT_CONFIG, n)
    for bs in lesson.BATCH_SIZES:
        same_epochs = lesson.batch_size_config(lesson.DEFAULT_CONFIG, bs, "same_epochs", n)
        same_steps = lesson.batch_size_config(lesson.DEFAULT_CONFIG, bs, "same_steps", n)
        assert same_epochs.train.epochs == lesson.DEFAULT_CONFIG.train.epochs
        steps = lesson.total_steps(same_steps, n)
        # rounding up to whole epochs: at most one epoch's steps more than the target
        assert target <= steps < target + lesson.steps_per_epoch(n, bs), (bs, steps, target)
    # at the default's own size both modes are the default comparison's runs
    assert run_key(lesson.batch_size_config(lesson.DEFAULT_CONFIG, lesson.DEFAULT_CONFIG.train.batch_size,
                                            "same_steps", n)) == run_key(lesson.DEFAULT_CONFIG)
    with pytest.raises(ValueError, match="step mode"):
        lesson.batch_size_config(lesson.DEFAULT_CONFIG, 4, "same_time", n)


def test_budget_gives_small_sets_the_default_steps_within_a_cap():
    target = lesson.default_steps()
    e = lesson.budget_epochs(60, 32)                      # the example upload's size
    assert lesson.steps_per_epoch(60, 32) * e >= target
    assert lesson.budget_epochs(100_000, 32) == lesson.MIN_EPOCHS
    assert lesson.budget_epochs(2000, 2000) * 2000 <= max(lesson.MAX_IMAGE_PASSES, 2000 * lesson.MIN_EPOCHS)


def test_exercises_are_built_from_the_one_default():
    for ex in lesson.EXERCISES.values():
        if ex.config is not None:
            assert ex.config == lesson.DEFAULT_CONFIG, ex.key
        assert ex.questions and ex.observe
    assert lesson.exercise("default_comparison").seeds == tuple(range(lesson.DEFAULT_SEEDS))
    with pytest.raises(KeyError, match="unknown exercise"):
        lesson.exercise("nope")


def test_the_app_reads_the_lesson_default():
    sys.path.insert(0, str(REPO / "app"))
    import lab_defaults
    assert lab_defaults.DEFAULT_CONFIG is lesson.DEFAULT_CONFIG
    assert lab_defaults.DEFAULT_SEEDS == lesson.DEFAULT_SEEDS
    # no cap on test images: the default's identity is the same from every page and command
    assert lesson.DEFAULT_CONFIG.data.max_test is None


# ----------------------------------------------------------------------------- the training indicator

def test_indicator_reads_the_fall_per_images_seen():
    flat = [10.0] * 8
    assert training_status({"loss": flat}, 1000).state == TRAINED
    falling = [100, 50, 30, 20, 15, 12, 10, 8.0]
    s = training_status({"loss": falling}, 1000)
    assert s.state == STILL_LEARNING and s.learning
    assert "Still learning" in s.sentence() and "not a finding" in s.sentence()
    # the same fall over ten times the images is slower learning
    assert training_status({"loss": falling}, 1000).rate == pytest.approx(
        10 * training_status({"loss": falling}, 10_000).rate)
    assert training_status({"loss": [5.0, 4.0]}, 100).state == UNKNOWN
    assert last_quarter_drop([4, 3, 2, 1]) == pytest.approx(0.5)


def test_indicator_prefers_held_out_scores():
    hist = {"loss": [100, 50, 30, 20, 15, 12, 10, 8.0], "val_epoch": [2, 4, 6, 8], "val_score": [1.0, 1.0, 1.0, 1.0]}
    s = training_status(hist, 1000)
    assert s.curve == "validation score" and s.state == TRAINED


def test_indicator_thresholds_match_their_calibration():
    path = REPO / "bench" / "results" / "convergence_calibration.json"
    summary = json.loads(path.read_text())["summary"]
    # every converged run reads "trained", the quick default's runs "still learning"
    assert summary["converged_rate_max"] <= CONVERGED_RATE_MAX < LEARNING_RATE
    assert summary["CONVERGED_RATE_MAX"] == CONVERGED_RATE_MAX and summary["LEARNING_RATE"] == LEARNING_RATE
    assert summary["converged_trained"] == summary["converged_runs"]


# ----------------------------------------------------------------------------- measured numbers

def test_expected_results_hold_the_issue_format():
    assert EXPECTED is not None, "assets/expected_results.json missing: run `lamp lesson measure`"
    e = EXPECTED["default_comparison"]
    RunConfig.from_dict(e["config"])
    assert isinstance(e["seeds"], list) and len(e["seeds"]) == lesson.DEFAULT_SEEDS
    assert len(e["base_auroc"]) == len(e["lamp_auroc"]) == len(e["seeds"])
    # recorded from the very default the app runs
    assert run_key(config_of(e)) == run_key(lesson.DEFAULT_CONFIG.with_train(seed=e["seeds"][0]))
    assert e["seeds"] == list(lesson.exercise("default_comparison").seeds)
    for mode in lesson.STEP_MODES:
        sizes = EXPECTED["batch_size"][mode]
        assert sorted(map(int, sizes)) == sorted(lesson.BATCH_SIZES)
        for bs, entry in sizes.items():
            assert run_key(config_of(entry)) == run_key(
                lesson.batch_size_config(lesson.DEFAULT_CONFIG, int(bs), mode).with_train(seed=entry["seeds"][0]))


def test_default_comparison_retrained_lands_within_its_recorded_spread():
    """Seed 0 of the default comparison, retrained from app/lab_defaults.py, lands within the spread
    the notes quote."""
    sys.path.insert(0, str(REPO / "app"))
    from lab_defaults import DEFAULT_CONFIG

    from lamp_core.runner import run_config
    e = EXPECTED["default_comparison"]
    for name, key in (("base", "base_auroc"), ("LAMP", "lamp_auroc")):
        cfg = DEFAULT_CONFIG.with_train(lamp=name == "LAMP", seed=e["seeds"][0], device="cpu")
        got = run_config(cfg).evaluation.auroc
        vals = e[key]
        spread = max(vals) - min(vals)
        lo, hi = min(vals) - spread, max(vals) + spread
        assert lo <= got <= hi, f"{name}: retrained {got:.4f} outside the recorded {vals}"


# ----------------------------------------------------------------------------- rendered documents

def test_teacher_notes_are_the_rendered_measurement():
    from lamp_core.lesson_notes import NOTES_PATH, render_notes
    assert NOTES_PATH.read_text(encoding="utf-8") == render_notes(), \
        "assets/teacher_notes.md drifted: run `lamp lesson notes --out assets/teacher_notes.md`"


def test_teacher_notes_quote_the_default_comparison():
    notes = (REPO / "assets" / "teacher_notes.md").read_text(encoding="utf-8")
    e = EXPECTED["default_comparison"]
    for b, l in zip(e["base_auroc"], e["lamp_auroc"]):
        assert f"{b:.3f} | {l:.3f}" in notes
    d = lesson.DEFAULT_CONFIG
    assert f"{d.train.epochs} epochs" in notes and f"batch {d.train.batch_size}" in notes
    assert f"{lesson.train_images(d)} of its training" in notes


def test_guide_states_the_real_defaults():
    from lamp_core.lesson_notes import render_guide
    g = render_guide()
    assert "{" not in g and "}" not in g.replace("\\}", "")
    d = lesson.DEFAULT_CONFIG
    assert f"{lesson.train_images(d)} training images, {d.train.epochs} epochs at batch {d.train.batch_size}" in g
    assert f"{lesson.default_steps()} optimizer steps per model" in g
    # no setting the app does not run ("10 epochs", "1000 images", "10,000-image")
    for stale in ("10,000-image", "1000 normal training"):
        assert stale not in g


def test_teacher_notes_are_not_on_the_students_guide(monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.delenv("LAMP_TEACHER", raising=False)
    at = AppTest.from_file(str(REPO / "app" / "app_pages" / "guide.py"), default_timeout=60).run()
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert not any("teacher" in lab.lower() for lab in labels), labels
    monkeypatch.setenv("LAMP_TEACHER", "1")
    at = AppTest.from_file(str(REPO / "app" / "app_pages" / "guide.py"), default_timeout=60).run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert any("teacher notes" in lab.lower() for lab in labels), labels


def test_lamp_notes_prints_the_notes_and_refuses_bad_output(tmp_path, capsys):
    """`lamp notes` through `lamp_core.cli.main` in this process (argparse's errors exit through
    SystemExit, as in the shell): a fresh interpreter per command would cost a torch import each,
    and tests/test_cli.py runs the real console entry in a subprocess."""
    from lamp_core.cli import main

    def lamp(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = lamp("notes")
    assert code == 0, err
    assert out == (REPO / "assets" / "teacher_notes.md").read_text(encoding="utf-8")
    code, _, err = lamp("notes", "--out", str(tmp_path / "missing" / "notes.md"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    code, _, err = lamp("lesson", "measure", "--parts", "everything")
    assert code == 2 and "unknown part" in err and "Traceback" not in err


def test_notes_numbers_come_from_the_measurement():
    """Every AUROC-like number (0.xxx) in the notes is one the renderer computed: rendering with
    other measurements changes them."""
    from lamp_core.lesson_notes import render_notes
    shifted = json.loads(json.dumps(EXPECTED))
    shifted["default_comparison"]["base_auroc"] = [0.5, 0.5, 0.5]
    assert render_notes(shifted) != render_notes(EXPECTED)
    assert "0.500 | " in render_notes(shifted)


# ----------------------------------------------------------------------------- pages: untouched widgets

def _press_and_cancel(at, key):
    """Press a page's queue button, read what it queued, and stop it (the test checks identity, not training)."""
    from test_app_pages import server_queue
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    q = server_queue()
    sid = at.session_state["_session_id"]
    for v in q.jobs(session=sid):
        q.cancel(v.id, sid)
    return at


def test_train_compare_untouched_widgets_train_the_default_runs():
    from streamlit.testing.v1 import AppTest
    sys.path.insert(0, str(REPO / "app"))
    import results
    at = AppTest.from_file(str(REPO / "app" / "app_pages" / "train_compare.py"), default_timeout=60).run()
    at = _press_and_cancel(at, "train")
    want = [run_key(c) for cs in results.seed_configs(lesson.DEFAULT_CONFIG, lesson.DEFAULT_SEEDS).values() for c in cs]
    assert at.session_state["compare"]["identity"] == want


def test_landscape_untouched_widgets_cut_the_default_runs():
    from streamlit.testing.v1 import AppTest
    sys.path.insert(0, str(REPO / "app"))
    import results
    at = AppTest.from_file(str(REPO / "app" / "app_pages" / "landscape.py"), default_timeout=60).run()
    at = _press_and_cancel(at, "compute")
    cfgs = {n: cs[0] for n, cs in results.seed_configs(lesson.DEFAULT_CONFIG, 1).items()}
    key = at.session_state["landscape"]["key"]
    assert key.startswith("|".join(run_key(c) for c in cfgs.values()))
    assert repr(lesson.DEFAULT_LANDSCAPE) in key


def test_docs_state_the_lesson_default():
    """docs/app.md's Defaults paragraph names the values the app runs (a test, since it is prose)."""
    text = (REPO / "docs" / "app.md").read_text(encoding="utf-8")
    para = " ".join(text[text.index("## Defaults"):text.index("## Settings")].split())
    d = lesson.DEFAULT_CONFIG
    for phrase in (f"digit {d.data.normal_class} normal", f"a seeded {d.data.max_train} of",
                   f"{d.data.image_size} px", f"Adam {d.train.lr:.0e}".replace("e-0", "e-"), f"batch {d.train.batch_size}",
                   f"{d.train.epochs} epochs ({lesson.default_steps()} optimizer steps per model)",
                   f"seeds 0-{lesson.DEFAULT_SEEDS - 1}"):
        assert phrase in para, phrase
    assert d.data.max_test is None and "all 2,000 test images" in para


def test_the_shipped_default_is_the_studys_choice_and_agrees_with_the_converged_lab():
    """bench/results/quick_default_study.md: the default's row agrees on all three verdicts, on
    the classes it was chosen on, on the classes that confirm it, and on all ten."""
    md = (REPO / "bench" / "results" / "quick_default_study.md").read_text(encoding="utf-8")
    d = lesson.DEFAULT_CONFIG
    spec = f"({d.data.max_train}, {d.train.epochs}, {d.train.batch_size}, {d.train.lr:g})"
    for section in ("chosen on classes 0-4", "confirmed on classes 5-9", "all ten classes"):
        block = md.split(f"## {section}")[1].split("##")[0]
        row = next(line for line in block.splitlines() if spec in line)
        assert row.rstrip(" |").endswith("auroc, own_steeper, l2_flatter"), (section, row)
        assert f"| {30 if section == 'all ten classes' else 15} |" in row


def test_a_damaged_measurement_is_one_line(tmp_path):
    from lamp_core.config import LampError
    bad = tmp_path / "expected_results.json"
    bad.write_text("{not json")
    with pytest.raises(LampError, match="not valid JSON.*lamp lesson measure"):
        lesson.load_expected(bad)
