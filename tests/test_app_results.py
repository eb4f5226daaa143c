"""The app's plain helpers (app/results.py): seeds, thresholds, example picking, upload layout."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
import results  # noqa: E402

from lamp_core.config import RunConfig, TrainConfig, run_key  # noqa: E402


def test_seed_configs_pair_base_and_lamp_and_ignore_lamp_options_for_base():
    cfg = RunConfig(train=TrainConfig(seed=5, eps=0.2, max_over="batch", detach_max=True))
    pairs = results.seed_configs(cfg, 3)
    assert [c.train.seed for c in pairs["base"]] == [5, 6, 7] == [c.train.seed for c in pairs["LAMP"]]
    assert all(c.train.lamp for c in pairs["LAMP"]) and not any(c.train.lamp for c in pairs["base"])
    assert pairs["LAMP"][0].train.eps == 0.2 and pairs["LAMP"][0].train.max_over == "batch"
    # changing a LAMP-only option leaves the base run's identity (its store and queue key) unchanged
    other = results.seed_configs(cfg.with_train(eps=0.01, max_over="sample"), 1)
    assert run_key(other["base"][0]) == run_key(pairs["base"][0])
    assert run_key(other["LAMP"][0]) != run_key(pairs["LAMP"][0])


def test_lamp_below_base_threshold_and_readings():
    assert 0.019 < results.lamp_below_base_up_to(0.01) < 0.021     # -log(1 - 0.99 B) < B below B = 0.02
    assert results.lamp_below_base_up_to(0.5) is None               # below everywhere at eps 0.5
    assert results.fixed_equals_sample(1.0, 0.01) and not results.fixed_equals_sample(0.5, 0.01)


def test_auroc_spread_note_names_the_seeds():
    assert "3 seeds" in results.auroc_spread_note(3) and "One seed" in results.auroc_spread_note(1)


def test_percentile_thresholds_use_each_models_normal_scores():
    class Ev:
        def __init__(self, scores, labels):
            self.scores, self.labels = scores, labels
    evs = {"a": Ev([1, 2, 3, 4, 100], [0, 0, 0, 0, 1]), "b": Ev([10, 20, 30, 40, 1], [0, 0, 0, 0, 1])}
    thr = results.percentile_thresholds(evs, 50)
    assert thr == {"a": 2.5, "b": 25.0}


def test_pick_examples_spreads_over_the_ranking_of_each_group():
    labels = [0] * 10 + [1] * 3
    scores = list(range(13))
    idx = results.pick_examples(labels, scores, k=4)
    assert idx[:4] == [0, 3, 6, 9] and idx[4:] == [10, 11, 12]


def test_files_outside_layout_lists_ignored_files(tmp_path):
    for rel in ("set/train/normal/a.png", "set/test/normal/b.png", "set/test/anomalous/c.png", "set/notes.txt"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    layout, outside = results.files_outside_layout(tmp_path)
    assert layout == "split" and outside == ["notes.txt"]


def test_example_zip_is_reproducible(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "assets"))
    import make_example_zip
    built = make_example_zip.build(tmp_path / "ex.zip").read_bytes()
    shipped = (Path(make_example_zip.__file__).parent / "example_upload.zip").read_bytes()
    assert built == shipped
    assert np.frombuffer(built[:4], np.uint8).tolist() == [0x50, 0x4B, 3, 4]


def test_loss_curves_sentence_follows_the_reading_of_max():
    """With *sample* the page said "With the fixed bound…": the sentence now names the reading,
    and its numbers are those of the sample curves (max B over the plotted range)."""
    from lamp_core.losses import loss_curves
    fixed = results.lamp_vs_base_sentence(0.1, "fixed", 0.5)
    assert fixed.startswith("With the fixed bound") and f"{results.lamp_below_base_up_to(0.1):.2g}" in fixed
    sample = results.lamp_vs_base_sentence(0.1, "sample", 0.5)
    assert sample.startswith("With *sample*") and "fixed bound" not in sample
    for base, name in (("l1", "L1"), ("l2", "L2")):
        top = max(loss_curves(base, eps=0.1, residual_range=0.5, max_over="sample")["base"])
        assert f"{name}, max B = {top:.2g} and so slope {0.9 / top:.2g} at B = 0" in sample
    # at ±0.5 the slope at 0 is (1 - eps)/max B > 1: LAMP lies above its base everywhere, as drawn
    c = loss_curves("l2", eps=0.1, residual_range=0.5, max_over="sample")
    b, lamp = np.asarray(c["base"]), np.asarray(c["lamp"])
    assert (lamp[b > 0] > b[b > 0]).all() and sample.count("**above** its base on the whole range") == 2
    # at ±1 the largest value is the bound 1: the sample reading crosses where the fixed one does
    at_one = results.lamp_vs_base_sentence(0.1, "sample", 1.0)
    cross = results.lamp_below_base_up_to(0.1, "l1", max_over="sample", residual_range=1.0)
    assert f"below about {cross:.2g}" in at_one and cross == pytest.approx(results.lamp_below_base_up_to(0.1),
                                                                        abs=1e-3)


def test_one_run_figures_name_their_seed_and_titles_skip_repeated_groups():
    assert results.first_seed_note(0, 3) == "seed 0, the first of 3 seeds"
    assert results.first_seed_note(5, 1) == "seed 5"
    assert results.example_title(1, "scratch_and_sticker") == "anomalous (scratch_and_sticker)"
    assert results.example_title(0, "normal") == "normal"            # an upload's normal/ folder
    assert results.example_title(1, "anomalous") == "anomalous" and results.example_title(0, None) == "normal"


def test_metrics_note_gives_this_test_sets_chance_levels():
    """MNIST one-class: 10% normal. Average precision's chance level is the anomalous share
    (0.9, not 0.5); flagging everything has F1 2·0.9/1.9; a random ranking at the 95th
    percentile of normal scores has recall 0.05 and precision 0.9."""
    note = results.metrics_note([0] * 200 + [1] * 1800)
    assert "0.90 here, not 0.5" in note
    assert f"{2 * 0.9 / 1.9:.3f}" in note and f"about {2 * 0.9 * 0.05 / 0.95:.2f}" in note
    assert "f1_at_normal_p95" in note and "95th percentile" in note
    assert "0.50 here" in results.metrics_note([0, 1])
