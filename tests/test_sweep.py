"""Sweeps: spec expansion, resuming through the run store, progress, and the `lamp sweep` command."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lamp_core.runner as runner_mod
import lamp_core.stack as stack_mod
from lamp_core.cli import main
from lamp_core.config import ConfigError, DataConfig, RunConfig, TrainConfig
from lamp_core.data import load
from lamp_core.store import RunStore
from lamp_core.sweep import (SweepProgress, SweepSpec, base_of, describe, expand, parse_int_list, run_sweep)

REPO = Path(__file__).resolve().parent.parent

TINY = RunConfig(data=DataConfig(dataset="digits", max_train=16, max_test=30),
                 train=TrainConfig(epochs=1, batch_size=8, device="cpu"))


def tiny_spec(**grid) -> SweepSpec:
    return SweepSpec(name="t", base=TINY, grids=[grid])


@pytest.fixture
def count_trainings(monkeypatch):
    """Counts runs whose training starts (a RunSlot is built for each: alone or in a stack)."""
    calls = []
    real = stack_mod.RunSlot

    class CountingSlot(real):
        def __init__(self, cfg, data, *a, **kw):
            calls.append(cfg.key())
            super().__init__(cfg, data, *a, **kw)
    monkeypatch.setattr(stack_mod, "RunSlot", CountingSlot)
    return calls


@pytest.fixture
def stack_sizes(monkeypatch):
    """Records the size of every stack train_slots is given."""
    sizes = []
    real = stack_mod.train_slots

    def recording(slots, **kw):
        sizes.append(len(slots))
        return real(slots, **kw)
    monkeypatch.setattr(stack_mod, "train_slots", recording)
    return sizes


def two_per_stack() -> float:
    """A memory budget that fits two TINY runs per stack."""
    return 2.5 * stack_mod.run_memory_mb(TINY, load(TINY.data))


# ----------------------------------------------------------------------------- expansion

def test_expand_is_the_product_in_grid_order():
    cfgs = expand(tiny_spec(**{"train.seed": [0, 1], "train.batch_size": [8, 4], "train.lamp": [False, True]}))
    assert len(cfgs) == 8
    assert [(c.train.seed, c.train.batch_size, c.train.lamp) for c in cfgs[:3]] == [
        (0, 8, False), (0, 8, True), (0, 4, False)]
    assert len({c.key() for c in cfgs}) == 8


def test_base_runs_are_shared_across_lamp_variants():
    # eps x max_over x detach only change LAMP runs: the base run is filed once
    grid = {"train.lamp": [False, True], "train.eps": [0.01, 0.1], "train.max_over": ["sample", "fixed"],
            "train.detach_max": [False, True]}
    cfgs = expand(tiny_spec(**grid))
    base = [c for c in cfgs if not c.train.lamp]
    lamp = [c for c in cfgs if c.train.lamp]
    assert len(base) == 1
    # fixed bound: nothing to detach, so fixed runs once per eps -> 2*2 (sample) + 2 (fixed)
    assert len(lamp) == 6
    assert all(base_of(c) == base[0] for c in lamp)


def test_section_axis_sets_fields_together_and_unions_grids():
    spec = SweepSpec.from_dict({
        "base": TINY.to_dict(),
        "grid": [{"data": [{"normal_class": 1, "max_train": 12}, {"normal_class": 2}]},
                 {"data.normal_class": [1], "data.max_train": [12]}]})
    cfgs = expand(spec)
    assert [(c.data.normal_class, c.data.max_train) for c in cfgs] == [(1, 12), (2, 16)]  # union, deduped


@pytest.mark.parametrize("grid, words", [
    ({"train.batchsize": [1]}, "unknown sweep axis"),
    ({"train.batch_size": 4}, "non-empty list"),
    ({"train.batch_size": [0]}, "batch size 0"),
    ({"model.kernel_size": [4]}, "odd"),
])
def test_bad_specs_name_the_problem(grid, words):
    with pytest.raises(ConfigError, match=words):
        expand(SweepSpec.from_dict({"base": TINY.to_dict(), "grid": grid}))


def test_spec_files_json_and_toml(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"name": "j", "grid": {"train.seed": [0, 1]}}))
    (tmp_path / "s.toml").write_text('name = "t"\n[grid]\n"train.seed" = [0, 1, 2]\n')
    assert len(expand(SweepSpec.load(tmp_path / "s.json"))) == 2
    assert len(expand(SweepSpec.load(tmp_path / "s.toml"))) == 3
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        SweepSpec.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="not found"):
        SweepSpec.load(tmp_path / "missing.json")


def test_bench_specs_expand_to_the_documented_grids():
    from lamp_core.config import run_key
    t1 = expand(SweepSpec.load(REPO / "bench/specs/table1_converged.json"))
    # classes x batch sizes x (L2 + two LAMP readings) x 3 seeds, plus a 4th seed at batch 128 and
    # a 4th and 5th at batch 32 (where the pairs needed the power)
    assert len(t1) == 10 * 6 * 3 * 3 + 10 * 3 * (1 + 2)
    ab = expand(SweepSpec.load(REPO / "bench/specs/ablation_converged.json"))
    assert len(ab) == 30 * (1 + 2 * 2 * 4 + 4)  # base, sample/batch x detach x 4 eps, fixed x 4 eps
    shared = {run_key(c) for c in t1} & {run_key(c) for c in ab}
    assert len(shared) == 3 * 10 * 3      # L2 and both LAMP readings at batch 128 (seeds 0-2) are reused
    assert len(expand(SweepSpec.load(REPO / "bench/specs/table2_trained.json"))) == 3 * 2 * 9 * 2 * 2


def test_parse_int_list():
    assert parse_int_list("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_int_list("1024,128") == [1024, 128]
    with pytest.raises(ConfigError, match="integers"):
        parse_int_list("a,b")


def test_describe_is_short_and_specific():
    c = TINY.with_train(lamp=True, max_over="batch", detach_max=True, eps=0.01, seed=2)
    assert describe(c) == ("digits, normal 8 · 28 px · L2 LAMP (max over batch, eps 0.01, detached) · adam lr 0.001 · "
                           "batch 8 · 1 epochs · seed 2")
    # the label of a comparison (the app's pages): what its base and LAMP runs over seeds share
    assert describe(c, comparison=True) == "digits, normal 8 · 28 px · L2 · adam lr 0.001 · batch 8 · 1 epochs"
    # network options where they differ from the defaults; an upload filed by its content hash
    other = c.with_model(kernel_size=5, patches=2).with_data(dataset="folder", data_root=f"/s/uploads/{'0' * 64}.zip")
    assert describe(other).startswith("your upload · 28 px") and describe(other).endswith("kernel size 5 · patches 2")


# ----------------------------------------------------------------------------- running and resuming

@pytest.mark.parametrize("stack", [False, True])
def test_sweep_resumes_after_a_kill_and_redoes_nothing_finished(tmp_path, count_trainings, stack):
    cfgs = expand(tiny_spec(**{"train.seed": [0, 1], "train.lamp": [False, True]}))
    store = RunStore(tmp_path / "store")
    budget = two_per_stack() if stack else None          # stacked: two stacks of two runs
    started_before_kill = 3 if not stack else 4           # the kill comes in the second stack
    # "kill" in the middle of the third run: should_stop turns true once its training has begun
    out1 = run_sweep(cfgs, store, should_stop=lambda: len(count_trainings) >= started_before_kill,
                     stack=stack, memory_budget_mb=budget)
    assert out1.stopped and out1.trained == 2 and len(store.configs()) == 2   # the stopped run is not stored
    out2 = run_sweep(cfgs, store, stack=stack, memory_budget_mb=budget)
    redo = len(count_trainings)
    assert not out2.stopped and out2.trained == 2 and redo == started_before_kill + 2
    # the two finished runs were not trained again; the interrupted ones were redone
    assert sorted(count_trainings[:2] + count_trainings[started_before_kill:]) == sorted(c.key() for c in cfgs)
    out3 = run_sweep(cfgs, store, stack=stack)
    assert out3.trained == 0 and len(count_trainings) == redo
    assert [r.cached for r in out3.runs] == [True] * 4
    assert [r.evaluation.auroc for r in out3.runs] == [r.evaluation.auroc for r in out2.runs]


def test_sweeps_stack_by_default_and_stack_false_trains_one_by_one(tmp_path, stack_sizes):
    cfgs = expand(tiny_spec(**{"train.seed": [0, 1], "train.lamp": [False, True],
                               "train.batch_size": [8, 4]}))
    stacked = run_sweep(cfgs, RunStore(tmp_path / "a"))
    assert sorted(stack_sizes) == [4, 4]                 # one stack per batch size
    del stack_sizes[:]
    alone = run_sweep(cfgs, RunStore(tmp_path / "b"), stack=False)
    assert stack_sizes == [1] * 8
    assert stacked.trained == alone.trained == 8
    for a, b in zip(stacked.runs, alone.runs):
        assert a.config == b.config and a.steps == b.steps
        assert abs(a.evaluation.auroc - b.evaluation.auroc) < 1e-3
        assert max(abs(x - y) for x, y in zip(a.evaluation.scores, b.evaluation.scores)) < 1e-3


def test_paired_runs_share_initial_weights_and_batches(tmp_path):
    base, lamp = expand(tiny_spec(**{"train.lamp": [False, True]}))
    out = run_sweep([base, lamp], RunStore(tmp_path))
    b, l = (r.evaluation for r in out.runs)
    assert out.runs[0].steps == out.runs[1].steps == 2
    # same weights and batches, different loss: the reconstructions (and so scores) differ
    assert b.scores != l.scores
    again = run_sweep([base, lamp], RunStore(tmp_path / "other"))
    assert again.runs[0].evaluation.scores == b.scores                   # deterministic per seed


def test_progress_reports_done_running_left_and_eta(tmp_path):
    cfgs = expand(tiny_spec(**{"train.seed": [0, 1, 2]}))
    buf = io.StringIO()
    store = RunStore(tmp_path)
    run_sweep(cfgs[:1], store)
    run_sweep(cfgs, store, progress=SweepProgress(len(cfgs), stream=buf))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("sweep: 1/3 done (1 cached, 0 failed), 0 running, 2 left, ETA -")
    assert "2/3 done (1 cached, 0 failed), 0 running, 1 left, ETA " in lines[1] and "ETA -" not in lines[1]
    assert lines[2].startswith("sweep: 3/3 done") and "0 left" in lines[2]


def test_a_broken_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    cfgs = expand(tiny_spec(**{"train.seed": [0, 1]}))
    real = runner_mod.evaluate

    def flaky(model, data):
        if flaky.n == 0:
            flaky.n += 1
            raise ValueError("Input contains NaN")
        return real(model, data)
    flaky.n = 0
    monkeypatch.setattr(runner_mod, "evaluate", flaky)
    out = run_sweep(cfgs, RunStore(tmp_path))
    assert out.failed == 1 and out.runs[0].error.startswith("ValueError") and out.runs[1].evaluation


# ----------------------------------------------------------------------------- the command

def test_cli_sweep_writes_reports_and_resumes(tmp_path, capsys):
    args = ["sweep", "--store", str(tmp_path / "s"), "--dataset", "digits", "--classes", "1,2",
            "--lamp", "both", "--seeds", "0-1", "--epochs", "1", "--max-train", "16", "--max-test", "30",
            "--batch-sizes", "8,4", "--out", str(tmp_path / "r" / "t1"), "--quiet"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["runs"] == 16 and first["trained"] == 16
    md = (tmp_path / "r" / "t1.md").read_text()
    assert "| Loss | 8 | 4 |" in md and "| L2-LAMP |" in md and "wins" in md
    assert len((tmp_path / "r" / "t1.csv").read_text().splitlines()) == 17
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["trained"] == 0
    assert main(args[:-3] + ["--dry-run"]) == 0
    assert "16 runs, 16 done, 0 to do" in capsys.readouterr().out
    # a report from the store alone, for a bigger grid that is only partly done
    partial = args[:-1] + ["--seeds", "0-2", "--report-only"]
    partial[partial.index("--out") + 1] = str(tmp_path / "r" / "part")
    assert main(partial) == 0
    assert json.loads(capsys.readouterr().out)["in_store"] == 16
    assert "16 of 24 runs in the store" in (tmp_path / "r" / "part.md").read_text()


@pytest.mark.parametrize("extra, words", [
    (["--batch-sizes", "big"], "cannot read 'big' as integers"),
    (["--losses", "l3"], "unknown base loss 'l3'"),
    (["--spec", "nowhere.json"], "not found"),
    (["--dataset", "mnist", "--data-root", "nowhere", "--no-download", "--classes", "1"], "nowhere"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, extra, words):
    assert main(["sweep", "--store", str(tmp_path), "--epochs", "1"] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err


@pytest.mark.slow
def test_a_really_killed_sweep_resumes(tmp_path, capsys):
    """SIGKILL a `lamp sweep` process mid-way; the rerun trains only what was not stored (the rerun
    calls `lamp_core.cli.main` in this process: it reads the store the killed process left)."""
    store = tmp_path / "store"
    # two batch sizes: two stacks of four runs, stored as each stack ends (one run at a time
    # without stacking)
    args = ["sweep", "--store", str(store), "--dataset", "digits",
            "--classes", "0-1", "--lamp", "both", "--epochs", "4", "--max-train", "64", "--max-test", "40",
            "--batch-sizes", "4,8", "--out", str(tmp_path / "r"), "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lamp_core", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(store.glob("*/evaluation.json"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(store.glob("*/evaluation.json")))
    assert 1 <= done < 8, "the sweep finished before it could be killed: make the runs longer"
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["runs"] == 8 and summary["trained"] == 8 - done
    assert f"{done} already in" in err


def test_settings_report_splits_by_image_size(tmp_path):
    """A sweep over image sizes gets one line per size (pooled, the sizes' difference would hide)."""
    from lamp_core import report as rep
    from lamp_core.cli_sweep import write_report
    rows = []
    for size, gain in ((128, 0.02), (256, -0.03)):
        for seed in range(3):
            for lamp in (False, True):
                r = rep.row_of(RunConfig().with_data(image_size=size).with_train(seed=seed, lamp=lamp))
                r.update(auroc=0.6 + 0.01 * seed + (gain if lamp else 0.0), unit="grid")
                rows.append(r)
    write_report(rows, str(tmp_path / "out"), "settings", title="sizes")
    md = (tmp_path / "out.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| 128 ") or ln.startswith("| 256 ")]
    assert "| image_size |" in md and len(lines) == 2
    assert "+0.020" in lines[0] and "-0.030" in lines[1]


def test_table2_resolution_spec_expands_to_its_grid():
    cfgs = expand(SweepSpec.load(REPO / "bench/specs/table2_resolution.json"))
    assert len(cfgs) == 3 * 2 * 2 and {c.data.image_size for c in cfgs} == {128, 256}


def test_data_seed_run_ties_each_runs_data_seed_to_its_seed_and_is_opt_in(tmp_path):
    """`"data.seed": "run"`: each seed draws its own training subset; a LAMP run and its base share
    it; without the option every run keeps data seed 0 and its key."""
    from lamp_core.config import run_key
    from lamp_core.sweep import DATA_SEED_FROM_RUN, tie_data_seed
    plain = expand(tiny_spec(**{"train.seed": [0, 1, 2], "train.lamp": [False, True]}))
    assert {c.data.seed for c in plain} == {0}
    tied_base = TINY.with_data(seed=DATA_SEED_FROM_RUN)
    tied = expand(SweepSpec(name="t", base=tied_base, grids=[{"train.seed": [0, 1, 2], "train.lamp": [False, True]}]))
    assert sorted((c.train.seed, c.data.seed) for c in tied) == [(0, 0), (0, 0), (1, 1), (1, 1), (2, 2), (2, 2)]
    # seed 0's runs are the plain sweep's runs (same key), the others are new runs
    assert {run_key(c) for c in tied if c.train.seed == 0} == {run_key(c) for c in plain if c.train.seed == 0}
    assert tie_data_seed(TINY.with_train(seed=3)).data.seed == 3
    # as an axis value too, and from a spec file
    axis = expand(tiny_spec(**{"train.seed": [4], "data.seed": ["run"]}))
    assert [c.data.seed for c in axis] == [4]
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"base": {"data": {"dataset": "digits", "max_train": 16, "seed": "run"}},
                             "grid": {"train.seed": [5, 6]}}))
    assert sorted(c.data.seed for c in expand(SweepSpec.load(f))) == [5, 6]
    # each seed's training subset differs (digits: max_train of a class's training images)
    d0, d1 = (load(c.data) for c in sorted(tied, key=lambda c: c.train.seed) if not c.train.lamp
              and c.train.seed in (0, 1))
    assert d0.train.shape == d1.train.shape and not (d0.train == d1.train).all()
