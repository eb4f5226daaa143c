"""lamp_core.references reads the recorded studies; these tests hold its numbers to the markdown
reports the same studies wrote, so a page quoting them and the reports cannot drift apart."""
from __future__ import annotations

import re
import sys

import pytest

from lamp_core import references as R
from lamp_core.stats import fmt_ms

ROOT = R.REPO


def _table1_section(reading_title: str) -> dict[str, list[str]]:
    """The rows of one of table1.md's tables, by first cell: {"L2": [cells per batch size], ...}."""
    text = R.TABLE1_MD.read_text()
    section = text.split(f"## LAMP reading: {reading_title}", 1)[1].split("## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("reading,title", [("default", "max over sample, detached, eps 0.1"),
                                           ("previous", "max over batch, detached, eps 0.01")])
def test_converged_table1_reproduces_the_markdown(reading, title):
    md = _table1_section(title)
    sizes = [int(b) for b in md["Loss"]]
    t = R.converged_table1(reading)
    assert list(t) == sizes                       # same batch sizes, same (descending) order
    for i, b in enumerate(sizes):
        v = t[b]
        assert fmt_ms(v["l2"], v["l2_sd"]) == md["L2"][i]
        assert fmt_ms(v["lamp"], v["lamp_sd"]) == md["L2-LAMP"][i]
        assert f"{v['delta']:+.3f} [{v['delta_lo']:+.3f}, {v['delta_hi']:+.3f}]" == md["Δ LAMP − base [95% CI]"][i]
        assert f"{v['wins']}/{v['pairs']}" == md["LAMP wins / pairs"][i]
        assert v["pairs"] == v["seeds"] * v["classes"]


def test_converged_table1_batch_128_and_recipe():
    v = R.converged_table1()[128]
    # the headline of table1.md: +0.006 [+0.002, +0.010], 28 of 40 pairs
    assert (round(v["l2"], 3), round(v["lamp"], 3)) == (0.936, 0.943)
    assert (round(v["delta"], 3), round(v["delta_lo"], 3), round(v["delta_hi"], 3)) == (0.006, 0.002, 0.010)
    assert (v["wins"], v["pairs"], v["seeds"], v["classes"]) == (28, 40, 4, 10)
    # the recipe stated in table1.md: 20 epochs of 1000 images, steps per run by batch size
    text = R.TABLE1_MD.read_text()
    steps = dict(re.findall(r"(\d+): (\d+)", text.split("Optimiser steps per run by batch size:")[1].split(".")[0]))
    for b, w in R.converged_table1().items():
        assert w["steps"] == int(steps[str(b)]) and w["epochs"] == 20 and w["max_train"] == 1000


def test_converged_table1_rejects_unknown_reading():
    with pytest.raises(ValueError, match="unknown LAMP reading"):
        R.converged_table1("nonsense")
    with pytest.raises(ValueError, match="no LAMP runs"):
        R.converged_table1(("fixed", False, 0.5))


def test_paper_table1_matches_the_markdown_and_the_paper():
    md = _table1_section("max over sample, detached, eps 0.1")
    sizes = [int(b) for b in md["Loss"]]
    p = R.paper_table1()
    assert list(p) == sizes
    assert [f"{p[b]['l2']:.3f}" for b in sizes] == md["paper: L2"]
    assert [f"{p[b]['lamp']:.3f}" for b in sizes] == md["paper: L2-LAMP"]
    # and the paper's own text, where the repository holds it (../shared/paper/lamp-paper.md)
    paper = ROOT.parent / "shared" / "paper" / "lamp-paper.md"
    if paper.is_file():
        table = paper.read_text().split("**Table 1.**", 1)[1].split("</table>", 1)[0]
        for b in sizes:
            assert f"{p[b]['l2']:.3f}" in table and f"{p[b]['lamp']:.3f}" in table


def _landscape_md_rows() -> dict[tuple[int, str], list[str]]:
    rows = {}
    for line in R.LANDSCAPE_MD.read_text().splitlines():
        m = re.match(r"\| (\d+) \| (own|l2) \| (.*) \|$", line)
        if m:
            rows[(int(m[1]), m[2])] = [c.strip() for c in m[3].split("|")]
    return rows


def test_landscape_verdict_reproduces_the_markdown():
    v = R.landscape_verdict()
    md = _landscape_md_rows()
    assert set(md) == {(b, m) for b, ms in v["by_batch"].items() for m in ms}
    for (b, m), cells in md.items():
        s = v["by_batch"][b][m]
        assert str(s["pairs"]) == cells[0]
        assert f"{s['lambda_max']:.2f}× [{s['lambda_max_lo']:.2f}, {s['lambda_max_hi']:.2f}]" == cells[1]
        assert f"{s['trace']:.2f}× [{s['trace_lo']:.2f}, {s['trace_hi']:.2f}]" == cells[2]
        r = "radius_increase"
        assert f"{s[r]:+.3f} [{s[r + '_lo']:+.3f}, {s[r + '_hi']:+.3f}]" == cells[3]
        assert f"{s['lambda_max_steeper']}/{s['pairs']}, {s['trace_steeper']}/{s['pairs']}, " \
               f"{s[r + '_steeper']}/{s['pairs']}" == cells[4]
    # the notes' headline: batch 128, own λmax 8.52×, L2 λmax 0.71×
    assert round(v["by_batch"][128]["own"]["lambda_max"], 2) == 8.52
    assert round(v["by_batch"][128]["l2"]["lambda_max"], 2) == 0.71
    assert v["steeper_in_own"] and v["flatter_in_l2"]
    o = v["overall"]
    assert (o["own"]["lambda_max_steeper"], o["own"]["pairs"]) == (18, 18)
    assert (o["l2"]["lambda_max_steeper"], o["l2"]["pairs"]) == (0, 18)
    assert (len(v["classes"]), len(v["seeds"]), v["batch_sizes"], v["epochs"]) == (3, 2, [128, 16, 4], 20)


def test_bench_landscape_study_formats_the_same_numbers():
    sys.path.insert(0, str(ROOT / "bench"))
    import landscape_study
    table = landscape_study.summary(landscape_study.read_rows(R.LANDSCAPE_CSV))
    assert table in R.LANDSCAPE_MD.read_text()


def test_verdict_summary_names_the_study():
    text = R.verdict_summary(R.landscape_verdict())
    assert text.startswith("converged study (3 classes × 2 seeds × 3 batch sizes, 20 epochs)")
    assert "own loss λmax 8.52-12.64× the base's (LAMP steeper in 18 of 18 pairs)" in text
    assert "L2 λmax 0.68-0.76×" in text and "0 of 18" in text


def _quick(base_l, lamp_l, base_t, lamp_t, epochs=3):
    return {"base": {"lambda_max": base_l, "trace": base_t}, "lamp": {"lambda_max": lamp_l, "trace": lamp_t},
            "epochs": epochs}


def test_landscape_sentence_agrees_and_disagrees():
    v = R.landscape_verdict()
    agree_own = R.landscape_sentence("own", _quick(1.0, 9.0, 10.0, 80.0), v)
    assert agree_own.startswith("Here, as in the converged study, LAMP's minimum is steeper in its own loss")
    agree_l2 = R.landscape_sentence("l2", _quick(2.0, 1.0, 10.0, 7.0), v)
    assert agree_l2.startswith("Here, as in the converged study, LAMP's minimum is flatter in plain L2")
    assert "λmax 0.50×, trace 0.70×" in agree_l2
    disagree = R.landscape_sentence("l2", _quick(1.0, 1.5, 10.0, 12.0, epochs=2), v)
    assert disagree.startswith("Here LAMP's minimum is steeper in plain L2")
    assert "unlike the converged study" in disagree and "0 of 18 pairs" in disagree
    assert "trained for 2 epochs" in disagree and "not a finding" in disagree
    mixed = R.landscape_sentence("own", _quick(1.0, 2.0, 10.0, 5.0), v)
    assert "steeper in one number and flatter in the other" in mixed and "unlike" in mixed
    rel = R.landscape_sentence("own_rel", _quick(1.0, 2.0, 10.0, 20.0), v)
    assert "not compared" in rel and '"own"' in rel and '"l2"' in rel
    saddle = R.landscape_sentence("l2", _quick(-13.5, 5.0, 23.1, 20.0, epochs=2), v)
    assert saddle.startswith("These weights are not at a minimum of plain L2 (base λmax -13.5, trace 23.1")
    assert "LAMP λmax" not in saddle and "trained for 2 epochs" in saddle and "cannot be compared" in saddle


# ----------------------------------------------------------------------------- batch-size study

def _study_md_rows() -> dict[str, list[str]]:
    """The "all ten" row of each batch-1024 regime's table in batch_size_study.md, by regime."""
    text = R.BATCH_STUDY_MD.read_text()
    out = {}
    for title, regime in (("Paper-level regime", "paper_level"), ("Converged regime", "converged")):
        if f"## {title}" not in text:
            continue
        section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        row = next(line for line in section.splitlines() if line.startswith("| all ten |"))
        out[regime] = [c.strip() for c in row.strip().strip("|").split("|")]
    return out


def test_batch_size_study_reproduces_the_markdown():
    md = _study_md_rows()
    study = R.batch_size_study()
    assert "paper_level" in md                       # the regime the README quotes
    for regime, cells in md.items():
        v = study[regime][1024]
        assert cells[1] == fmt_ms(v["l2"], v["l2_sd"]) and cells[2] == fmt_ms(v["lamp"], v["lamp_sd"])
        assert cells[3] == f"{v['delta']:+.3f} [{v['delta_lo']:+.3f}, {v['delta_hi']:+.3f}]"
        assert cells[4] == f"{v['delta']:+.3f} [{v['delta_class_lo']:+.3f}, {v['delta_class_hi']:+.3f}] ({v['classes']})"
        assert cells[5] == f"{v['wins']}/{v['pairs']}" and cells[6] == v["verdict"]


def test_batch_size_study_paper_level_recipe():
    v = R.batch_size_study()["paper_level"][1024]
    # chosen on digits 0-4 (bench/results/batch_size_study_epochs.json): its epochs and learning rate
    import json
    chosen = json.loads((R.REPO / "bench" / "results" / "batch_size_study_epochs.json").read_text())
    assert (v["epochs"], v["lr"]) == (chosen["epochs"], chosen["lr"])
    assert v["classes"] == 10 and v["seeds"] >= 5 and v["pairs"] == v["classes"] * v["seeds"]
    assert v["train_images"][0] > 5000                # whole classes, not the 1000-image protocol


def test_study_sentence_words_the_paper_against_both_intervals():
    v = {"l2": 0.68, "lamp": 0.64, "delta": -0.04, "delta_lo": -0.06, "delta_hi": -0.02, "delta_class_lo": -0.07,
         "delta_class_hi": 0.06, "pairs": 50, "wins": 8, "classes": 10, "verdict": "lower", "epochs": 4, "lr": 5e-4,
         "steps": (24, 28), "train_images": (5421, 6742)}
    paper = {"l2": 0.658, "lamp": 0.712}
    text = R.study_regime_sentence("paper_level", 1024, v, paper)
    assert "24-28 steps" in text and "L2 0.680 (paper 0.658)" in text
    assert "[-0.060, -0.020] over 50 pairs, class-level [-0.070, +0.060] over 10 digits: lower" in text
    assert text.endswith("the paper's +0.054 lies inside the class-level interval")
    assert R.study_regime_sentence("paper_level", 1024, {**v, "delta_class_hi": 0.0}, paper).endswith(
        "lies outside both intervals")
    assert "paper" not in R.study_regime_sentence("step_matched", 1024, {**v, "steps": (160, 160)})
