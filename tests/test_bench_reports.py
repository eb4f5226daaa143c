"""The science reports in bench/: the ablation's choose-on-half, report-on-the-other rule, Table 1's
split by LAMP reading and its power column, on hand-made rows whose answers are known."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lamp_core import report as rep
from lamp_core import stats
from lamp_core.config import RunConfig

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import ablation  # noqa: E402
import reproduce_table1  # noqa: E402


def row(unit, seed, lamp, auroc, *, max_over="batch", detach=True, eps=0.01, bs=128):
    r = rep.row_of(RunConfig())
    r.update(unit=str(unit), seed=seed, lamp=lamp, auroc=auroc, batch_size=bs, max_over=max_over,
             detach_max=detach, eps=eps, key=f"{unit}-{seed}-{lamp}-{max_over}-{detach}-{eps}-{bs}")
    return r


def ablation_rows():
    """Two readings: 'sample' is clearly better on classes 0-4 and worse on 5-9; 'batch' the
    opposite. A rule that peeks at 5-9 would pick 'batch'."""
    rows = []
    for unit in range(10):
        for seed in range(3):
            jitter = 0.001 * ((unit * 3 + seed) % 5)
            rows.append(row(unit, seed, False, 0.90 + jitter))
            chooser = unit < 5
            rows.append(row(unit, seed, True, 0.90 + jitter + (0.02 if chooser else -0.01) + 0.0005 * seed,
                            max_over="sample", eps=0.1))
            rows.append(row(unit, seed, True, 0.90 + jitter + (0.005 if chooser else 0.03) - 0.0005 * seed,
                            max_over="batch", eps=0.01))
    return rows


def test_ablation_chooses_on_the_choosing_classes_and_reports_the_others():
    variants = rep.lamp_variants(ablation_rows())
    text = "\n".join(ablation.selection_section(variants, ["max_over", "detach_max", "eps"],
                                                ["0", "1", "2", "3", "4"], ("sample", True, 0.1)))
    assert "**Chosen: max over sample, detach True, eps 0.1.**" in text
    held = [ln for ln in text.splitlines() if ln.startswith("- Held out, chosen reading")]
    assert len(held) == 1
    assert "Δ -0.0" in held[0] and "wins 0/15" in held[0]      # reported where it loses, not hidden
    # the previous default (batch, detached, 0.01) is shown beside it on the same held-out classes
    assert any(ln.startswith("- Held out, engine's default before") and "Δ +0.0295" in ln
               for ln in text.splitlines())


def test_ranked_lines_carry_spread_and_detectable_effect():
    variants = rep.lamp_variants(ablation_rows())
    cs = rep.cells(variants, cell_fields=["max_over", "detach_max", "eps"], protocol="test")
    lines = ablation.ranked_lines(cs, ("batch", True, 0.01))
    assert lines[0].startswith("- max over batch") and "(the engine's default)" in lines[0]
    p = cs[("batch", True, 0.01)].paired
    assert f"sd {p.sd:.4f}, MDE {p.mde:.4f}" in lines[0]


def test_table1_splits_rows_by_reading_with_the_same_base_runs():
    rows = ablation_rows()
    parts = reproduce_table1.by_reading(rows)
    assert [k for k, _ in parts] == [("sample", True, 0.1), ("batch", True, 0.01)]
    for k, rs in parts:
        assert sum(1 for r in rs if not r["lamp"]) == 30
        assert {reproduce_table1.reading_of(r) for r in rs if r["lamp"]} == {k}
    assert reproduce_table1.reading_text(("fixed", False, 0.3)) == "max over fixed, eps 0.3"


@pytest.mark.parametrize("sd, effect, units", [(0.012, 0.006, 10), (0.012, 0.003, 10), (0.02, 0.01, 5)])
def test_seeds_needed_is_the_first_seed_count_whose_mde_reaches_the_effect(sd, effect, units):
    n = reproduce_table1.seeds_needed(sd, effect, units=units)
    assert stats.minimum_detectable_effect(sd, n * units) <= effect
    assert n == 2 or stats.minimum_detectable_effect(sd, (n - 1) * units) > effect


def test_table2_training_check_judges_on_the_validation_curve(tmp_path):
    """Three base settings with known histories: one whose validation score has settled (trained,
    although its training loss still falls: memorisation), one whose validation score still falls,
    one stuck far above the best fit. Runs without a validation curve fall back to the loss."""
    import reproduce_table2
    from lamp_core.evaluate import Evaluation
    from lamp_core.store import RunStore
    from lamp_core.train import TrainResult

    store = RunStore(tmp_path)
    ev = Evaluation(labels=[0, 1], scores=[0.1, 0.2], auroc=1.0, average_precision=1.0, fpr=[0, 1],
                    tpr=[0, 1], thresholds=[0.2, 0.1], f1_max=1.0, f1_threshold=0.2)
    epochs = [float(e) for e in range(10, 101, 10)]
    falling_loss = [100.0 / e for e in range(1, 101)]                   # falls 25% over the last quarter
    settings = {
        ("adam", 1e-3): {"loss": falling_loss, "val_epoch": epochs, "val_score": [0.5] + [0.2] * 9},
        ("adam", 1e-4): {"loss": falling_loss, "val_epoch": epochs,
                         "val_score": [1.0 - 0.05 * i for i in range(10)]},   # 0.70 -> 0.55: still improving
        ("sgd", 1e-3): {"loss": [50.0] * 100, "val_epoch": epochs, "val_score": [0.9] * 10},
        ("sgd", 1e-4): {"loss": falling_loss},                                 # no validation curve
    }
    configs = []
    for (opt, lr), history in settings.items():
        cfg = RunConfig().with_data(dataset="mvtec", category="grid").with_train(optimizer=opt, lr=lr, epochs=100)
        configs.append(cfg)
        store.put(TrainResult(config=cfg, state_dict={}, in_channels=1, image_size=28, history=history,
                              epochs_done=100, steps=100), ev)
    text = reproduce_table2.training_check(configs, str(tmp_path))
    verdict = {ln.split("|")[3].strip() + " " + ln.split("|")[4].strip(): ln.rsplit("|", 2)[1].strip()
               for ln in text.splitlines() if ln.startswith("| grid")}
    assert verdict == {"Adam 0.001": "yes", "Adam 0.0001": "no: still improving", "SGD 0.001": "no: stuck high",
                       "SGD 0.0001": "no: still improving"}
    assert "**1 of 4**" in text and "3 of 4 settings recorded that validation curve" in text


def run_bench(script: str, args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """`python bench/SCRIPT.py ARGS` in this process: its `__main__` block's call, `run_script(main)`,
    with sys.argv set as the shell sets it (a fresh interpreter would cost a torch import each)."""
    import importlib

    from lamp_core.cli import run_script
    mod = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [str(BENCH / f"{script}.py"), *args])
    capsys.readouterr()
    try:
        code = run_script(mod.main, script)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def test_a_report_from_an_empty_store_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """--report-only on a store without the spec's runs: exit 2, one line, no table replaced."""
    out = tmp_path / "table2"
    code, err = run_bench("reproduce_table2", ["--store", str(tmp_path / "empty"), "--report-only",
                                               "--out", str(out)], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "no finished run of this spec" in err
    assert not list(tmp_path.glob("table2*"))


def test_a_gpu_benchmark_without_a_gpu_is_one_line(capsys, monkeypatch):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = run_bench("classroom", ["--device", "cuda", "--quick", "--no-record"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err and err.strip().count("\n") == 0
    assert "no CUDA GPU" in err


def test_table1_timing_refuses_a_store_that_holds_grid_runs(tmp_path, monkeypatch):
    """A timing of runs found in the store would be no timing: refused before any training, and
    nothing written; the grid is the issue's 360 runs."""
    import table1_timing
    from lamp_core.config import ConfigError

    cfgs = table1_timing.grid("mnist-root", list(range(10)), [0, 1, 2])
    assert len(cfgs) == 360 and len({c.key() for c in cfgs}) == 360
    assert {c.train.batch_size for c in cfgs} == {1024, 128, 32, 16, 4, 1}

    class Holding:
        def __init__(self, _root):
            pass

        def has(self, cfg):
            return cfg.train.batch_size == 1024

    monkeypatch.setattr(table1_timing, "RunStore", Holding)
    monkeypatch.setattr(table1_timing, "run_sweep", lambda *a, **k: pytest.fail("trained despite the store"))
    out = tmp_path / "timing"
    monkeypatch.setattr(sys, "argv", ["table1_timing.py", "--store", str(tmp_path / "s"), "--out", str(out)])
    with pytest.raises(ConfigError, match="already holds 60 of the grid's 360 runs"):
        table1_timing.main()
    assert not list(tmp_path.glob("timing*"))


def test_a_report_is_written_again_from_the_recorded_csv_without_a_store(tmp_path):
    """--from-csv: the spec's rows are read from <out>.csv (matched by run key); the report gets
    both intervals; the CSV is left as it was and no figure is written."""
    from lamp_core.sweep import SweepSpec, expand
    cfgs = [c for c in expand(SweepSpec.load(BENCH / "specs" / "table1_converged.json"))
            if c.train.batch_size == 128 and c.train.seed < 2 and c.data.normal_class < 3
            and (not c.train.lamp or c.train.max_over == "sample")]
    rows = []
    for c in cfgs:
        r = rep.row_of(c)
        r.update(auroc=0.9 + 0.01 * c.train.lamp * c.data.normal_class + 0.001 * c.train.seed, steps=160, seconds=1.0)
        rows.append(r)
    out = tmp_path / "t1"
    out.with_suffix(".csv").write_text(rep.to_csv(rows))
    before = out.with_suffix(".csv").read_text()
    assert reproduce_table1.main(["--from-csv", "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert f"Runs: 12 finished of {len(expand(SweepSpec.load(BENCH / 'specs' / 'table1_converged.json')))}" in md
    # class means of LAMP − L2: 0, 0.01, 0.02 -> class-level +0.010 over 3 classes
    assert "| Δ class-level [95% CI] | +0.010 [" in md and "over 3, includes 0" in md
    assert out.with_suffix(".csv").read_text() == before and not out.with_suffix(".html").exists()


def test_table2_from_csv_keeps_the_recorded_training_check(tmp_path):
    import reproduce_table2
    md = tmp_path / "t2.md"
    md.write_text("# T\n\n## Did the base models train? (x)\n\ntable\nmore\n\n## Notes\n\nn\n")
    assert reproduce_table2.recorded_section(md, "Did the base models train? (x)") == "table\nmore\n"
    assert reproduce_table2.recorded_section(md, "absent") == "" and \
        reproduce_table2.recorded_section(tmp_path / "none.md", "x") == ""


# ----------------------------------------------------------------------------- the batch-size study

def test_batch_size_study_runs_are_the_issues_regimes():
    import batch_size_study as B
    from lamp_core.config import run_key
    kw = dict(paper_epochs=8, converged_epochs=60, matched_steps=[160])
    paper = B.regime_configs("paper_level", range(10), range(5), **kw)
    assert len(paper) == 100 and {c.train.batch_size for c in paper} == {1024}
    assert all(c.data.max_train is None and c.data.seed == c.train.seed and c.train.epochs == 8 for c in paper)
    conv = B.regime_configs("converged", range(10), range(5), **kw)
    assert all(c.train.eval_every_epoch and c.train.epochs == 60 for c in conv)
    matched = B.regime_configs("step_matched", range(10), range(5), **kw)
    steps = {(c.train.batch_size, c.train.epochs * -(-c.data.max_train // c.train.batch_size)) for c in matched}
    assert steps == {(1024, 160), (128, 160)} and {c.data.max_train for c in matched} == {B.MATCHED_IMAGES}
    with pytest.raises(Exception, match="multiple of 40"):
        B.regime_configs("step_matched", [0], [0], **dict(kw, matched_steps=[100]))
    # the 40-epoch check is the converged Table 1's runs but for the epochs (same keys at 20 epochs)
    check = B.regime_configs("epoch_check", range(10), range(5), **kw)
    table1 = {r["key"] for r in rep.rows_from_csv(BENCH / "results" / "table1.csv")}
    assert len(check) == 120 and all(run_key(c.with_train(epochs=20)) in table1 for c in check)
    with pytest.raises(Exception, match="choose-epochs"):
        B.regime_configs("paper_level", [0], [0], **dict(kw, paper_epochs=None))


def test_batch_size_study_chooses_the_epochs_closest_to_the_paper():
    import batch_size_study as B
    got = B.choose_epochs([[0.55, 0.62, 0.66, 0.70, 0.91], [0.57, 0.64, 0.67, 0.72, 0.93]])
    assert got["epochs"] == 3 and got["l2"] == pytest.approx(0.665) and got["within"]
    assert got["first_epoch_at_target"] == 5
    assert not B.choose_epochs([[0.9, 0.95]])["within"]


def test_batch_size_study_keeps_the_engines_learning_rate_unless_only_another_lands_at_the_paper():
    import batch_size_study as B
    steep = [[0.47, 0.58, 0.69, 0.82]]             # 1e-3: whole epochs step over 0.658
    slow = [[0.45, 0.52, 0.60, 0.655, 0.74]]       # 5e-4: epoch 4 lands within 0.02
    got = B.choose_setting({1e-3: steep, 5e-4: slow})
    assert got["lr"] == 5e-4 and got["epochs"] == 4 and got["within"]
    assert set(got["by_lr"]) == {"0.001", "0.0005"} and not got["by_lr"]["0.001"]["within"]
    # the engine's rate is kept when it lands, even if another lands closer
    got = B.choose_setting({1e-3: [[0.5, 0.645]], 5e-4: [[0.5, 0.657]]})
    assert got["lr"] == 1e-3 and got["epochs"] == 2
    assert B.parse_lrs("0.001, 5e-4") == [1e-3, 5e-4]
    for bad in ("abc", "", "0.001,-1", "nan"):
        with pytest.raises(Exception, match="positive learning rates"):
            B.parse_lrs(bad)
    paper = B.regime_configs("paper_level", [0], [0, 1], paper_epochs=4, converged_epochs=20, matched_steps=[160],
                             paper_lr=5e-4)
    assert {c.train.lr for c in paper} == {5e-4} and len(paper) == 4


def test_batch_size_study_report_has_both_intervals_and_the_paper():
    import batch_size_study as B
    rows = []
    for regime, bs, epochs, steps in (("paper_level", 1024, 8, 48), ("converged", 1024, 3, 18),
                                      ("step_matched", 1024, 32, 160), ("step_matched", 128, 4, 160)):
        for d in range(10):
            for s in range(3):
                for lamp in (False, True):
                    a = 0.66 + 0.01 * d / 9 + 0.002 * s + (0.01 * (d % 3) if lamp else 0.0)
                    rows.append({"normal_class": d, "seed": s, "data_seed": s, "batch_size": bs, "train_images": 6000,
                                 "epochs": epochs, "steps": steps, "regime": regime, "loss": "l2", "lamp": lamp,
                                 "auroc": a, "auroc_curve": json.dumps([a - 0.1, a - 0.05, a])
                                 if regime == "converged" else ""})
    md = B.report([{k: str(v) for k, v in r.items()} for r in rows], None, None)
    assert "## Paper-level regime (batch 1024, 8 epochs, learning rate 0.001)" in md and "0-4 (chose the epochs)" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| all ten |"))
    assert "+0.009 [" in line and "(10)" in line and "0.658 → 0.712, +0.054" in line
    assert "Where the curve stands" in md and "| 3 | 18 |" in md
    assert "L2 at batch 1024 − L2 at batch 128" in md
    assert "Reproducibility" not in md        # the curves stop before the paper-level epochs
    # the verdict paragraph: each regime with both intervals, the paper's gain against them
    verdict = md.split("## Verdict on the paper's batch-size claim", 1)[1].split("\n## ", 1)[0]
    assert "In the paper's regime (L2 0.667, 30 pairs over 10 digits), LAMP − L2 is +0.009 [" in verdict
    assert "Trained to convergence" in verdict and verdict.count("lies above both intervals") == 2
    # batch 1024 and 128 have the same L2 at 160 steps in these rows: level, so "fewer steps"
    assert "At equal steps (160), L2 at batch 1024 minus L2 at batch 128 is +0.000" in verdict
    assert "reflects its fewer steps" in verdict and "is not reproduced on this data" in verdict
    assert "Measured: the recorded runs' own training seconds" not in md      # these rows carry no seconds


def test_batch_size_study_verdict_says_when_an_interval_reaches_the_paper():
    import batch_size_study as B
    rows = [{"unit": str(d), "seed": s, "lamp": lamp, "auroc": 0.66 + (0.06 + 0.01 * ((d + s) % 3) if lamp else 0),
             "val_score": None, "regime": "paper_level", "batch_size": 1024, "epochs": 4, "steps": 24,
             "train_images": 6000, "lr": 5e-4, "curve": None}
            for d in range(10) for s in range(3) for lamp in (False, True)]
    by = {g: [r for r in rows if r["regime"] == g] for g in B.REGIMES}
    text = " ".join(B._verdict_lines(by))
    assert "higher" in text and "lies below both intervals" in text and "LAMP gains more" in text
