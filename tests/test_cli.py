"""The `lamp train` command: exit codes, stdout and stderr. Two tests run it as a user does (a
subprocess of `python -m lamp_core`); the others call `lamp_core.cli.main` in this process, which
runs the same code without paying for a fresh interpreter and torch import each time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import MNIST_DIR, MVTEC_DIR, REPO, blob_image, layout_files, needs_mnist, needs_mvtec, png_bytes, write_zip
from lamp_core.cli import main


def lamp_process(*args: str, cwd: Path, env_extra: dict | None = None, timeout: int = 300
                 ) -> subprocess.CompletedProcess:
    """`python -m lamp_core ARGS` in a fresh process, as the console script runs it."""
    # one torch thread: small models train faster so on a loaded machine (the flags are what is tested)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "lamp_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def one_thread():
    """Torch on one thread while a test trains (restored after): these tiny models train faster
    so, by far, on a machine other processes load (this test process owns its setting)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def lamp(capsys, monkeypatch, one_thread):
    """Run `lamp ARGS` in this process (cwd and environment set as given): exit code, stdout, stderr.
    argparse's errors exit through SystemExit, as in the shell."""
    def run(*args: str, cwd: Path, env_extra: dict | None = None) -> Result:
        monkeypatch.chdir(cwd)
        for k, v in (env_extra or {}).items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return run


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_compare_on_digits_prints_both_aurocs_and_writes_nothing(tmp_path):
    """The real console entry (python -m lamp_core) in a fresh process."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    r = lamp_process("train", "--compare", "--dataset", "digits", "--normal-class", "8", "--epochs", "1",
                     "--max-train", "60", "--max-test", "120", "--json",
             cwd=work, env_extra={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"base", "lamp"}
    for side in out.values():
        assert 0.0 <= side["auroc"] <= 1.0 and side["seconds"] > 0 and side["pixel_auroc"] is None
    assert out["base"]["config"]["train"]["lamp"] is False and out["lamp"]["config"]["train"]["lamp"] is True
    assert _snapshot(work) == set()          # nothing written where the user did not ask
    assert not list(home.rglob("*.pt"))


def test_human_table_and_store_reuse(lamp, tmp_path):
    store = tmp_path / "store"
    args = ("train", "--compare", "--epochs", "2", "--max-train", "40", "--max-test", "120", "--store", str(store))
    first = lamp(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "auroc" in first.stdout and "lamp - base" in first.stdout
    again = lamp(*args, "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["lamp"]["cached"] is True


def test_progress_bar_on_stderr(lamp, tmp_path):
    r = lamp("train", "--epochs", "2", "--max-train", "40", "--progress", "always", cwd=tmp_path)
    assert r.returncode == 0 and "epoch 2/2" in r.stderr


def test_save_checkpoint_loads_with_weights_only(lamp, tmp_path):
    import torch
    r = lamp("train", "--epochs", "1", "--max-train", "20", "--save", str(tmp_path / "m.pt"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ckpt["config"]["train"]["epochs"] == 1


@pytest.mark.slow
@needs_mnist
def test_mnist_compare_from_idx_folder(lamp, tmp_path):
    r = lamp("train", "--compare", "--dataset", "mnist", "--data-root", str(MNIST_DIR), "--normal-class", "3",
             "--max-train", "300", "--max-test", "600", "--epochs", "4", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["base"]["auroc"] > 0.5 and out["lamp"]["auroc"] > 0.5


@pytest.mark.slow
@needs_mvtec
def test_mvtec_grid_reports_pixel_auroc(lamp, tmp_path):
    r = lamp("train", "--dataset", "mvtec", "--data-root", str(MVTEC_DIR), "--category", "grid",
             "--image-size", "32", "--epochs", "1", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 0 <= out["auroc"] <= 1 and 0 <= out["pixel_auroc"] <= 1


@pytest.mark.parametrize("layout", ["mvtec", "split", "unsplit"])
def test_zip_in_each_layout(lamp, tmp_path, layout):
    path = write_zip(tmp_path / f"{layout}.zip", layout_files(layout), prefix="myset/")
    r = lamp("train", "--dataset", "folder", "--data-root", str(path), "--image-size", "16", "--epochs", "2",
             "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 0 <= out["auroc"] <= 1 and (out["pixel_auroc"] is not None) == (layout == "mvtec")


def _hostile_zips(tmp: Path) -> dict[str, Path]:
    slip = layout_files("split")
    slip["../../escaped.png"] = png_bytes(blob_image(0))
    link = tmp / "link.zip"
    write_zip(link, layout_files("unsplit"))
    with zipfile.ZipFile(link, "a") as zf:
        info = zipfile.ZipInfo("normal/l.png")
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "/etc/passwd")
    bomb = layout_files("split")
    bomb["train/normal/z.bmp"] = b"\0" * (4 << 20)
    no_anom = {k: v for k, v in layout_files("split").items() if "anomalous" not in k}
    (tmp / "text.zip").write_text("not a zip")
    return {"slip": write_zip(tmp / "slip.zip", slip), "link": link, "bomb": write_zip(tmp / "bomb.zip", bomb),
            "no_anomalous": write_zip(tmp / "noanom.zip", no_anom), "not_zip": tmp / "text.zip",
            "missing": tmp / "missing.zip"}


def test_hostile_inputs_exit_2_with_one_line(lamp, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    zips = _hostile_zips(inputs)
    work = tmp_path / "work"
    work.mkdir()
    before = _snapshot(tmp_path)
    for name, path in zips.items():
        r = lamp("train", "--dataset", "folder", "--data-root", str(path), "--image-size", "16", "--epochs", "1",
                 cwd=work)
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lamp: error:"), (name, r.stderr)
        assert "Traceback" not in r.stderr
    assert _snapshot(tmp_path) == before     # nothing extracted or written anywhere
    assert not (tmp_path.parent / "escaped.png").exists()


@pytest.mark.parametrize("args", [
    ("--dataset", "nope"),
    ("--eps", "1.5"),
    ("--batch-size", "0"),
    ("--normal-class", "12"),
    ("--kernel-size", "4"),
    ("--image-size", "30", "--patches", "4"),
    ("--lr", "abc"),
    ("--dataset", "mnist", "--data-root", "/nonexistent/dir"),
    ("--dataset", "mvtec"),
])
def test_bad_options_exit_2_with_one_line(lamp, tmp_path, args):
    r = lamp("train", "--epochs", "1", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_bad_option_in_a_real_process_is_one_line_exit_2(tmp_path):
    r = lamp_process("train", "--epochs", "1", "--lr", "abc", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "--lr" in r.stderr


def test_diverged_model_is_one_line_exit_2_not_a_scikit_learn_traceback(lamp, tmp_path):
    # lr 1e30 with SGD sends the weights to inf/NaN in the first steps: no score can be ranked
    r = lamp("train", "--epochs", "1", "--max-train", "20", "--optimizer", "sgd", "--lr", "1e30", cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert r.stderr.startswith("lamp: error:") and r.stderr.count("\n") == 1
    assert "NaN or inf" in r.stderr and "a lower learning rate" in r.stderr


def test_flags_are_generated_from_the_option_specs(lamp, tmp_path):
    from lamp_core.cli import build_parser, config_from_args
    from lamp_core.config import RunConfig, option_spec, option_specs
    a = build_parser().parse_args(["train", "--loss", "ssim", "--no-detach-max", "--data-seed", "4", "--seed", "2",
                                   "--no-download", "--max-train", "64", "--dataset", "mvtec"])
    cfg = config_from_args(a)
    assert (cfg.train.base_loss, cfg.train.detach_max, cfg.data.seed, cfg.train.seed) == ("ssim", False, 4, 2)
    assert (cfg.data.download, cfg.data.max_train, cfg.data.image_size) == (False, 64, 64)  # mvtec: 64 px
    assert config_from_args(build_parser().parse_args(["train"])) == RunConfig()   # flag defaults = field defaults
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for section in ("data", "model", "train"):
        for spec in option_specs(section):
            if spec.flag:
                assert spec.flag in help_text, spec.name
    spec = option_spec("train.eps")
    assert (spec.min, spec.max, spec.min_open, spec.kind) == (0.0, 1.0, True, float) and "eq. 2" in spec.help
    r = lamp("train", "--eps", "1.5", cwd=tmp_path)        # the spec's bound, in the spec's words
    assert r.returncode == 2 and "eps 1.5 must lie strictly between 0 and 1" in r.stderr


@pytest.mark.parametrize("flag, want", [([], True), (["--stack"], True), (["--no-stack"], False)])
def test_sweep_stack_flag_reaches_run_sweep(lamp, tmp_path, monkeypatch, flag, want):
    from types import SimpleNamespace

    from lamp_core import cli_sweep
    seen = {}

    def run_sweep(configs, store, **kw):
        seen.update(kw, n=len(configs))
        return SimpleNamespace(ok=[], trained=0, failed=0)
    monkeypatch.setattr(cli_sweep, "run_sweep", run_sweep)
    r = lamp("sweep", "--store", str(tmp_path / "s"), "--dataset", "digits", "--seeds", "0-1", "--lamp", "both",
             "--epochs", "1", "--max-train", "16", "--quiet", *flag, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert seen["stack"] is want and seen["n"] == 4
    assert seen["memory_budget_mb"] is None                 # the planner's default budget


def test_sweep_stack_memory_budget_reaches_run_sweep_or_is_one_line(lamp, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from lamp_core import cli_sweep
    seen = {}

    def run_sweep(configs, store, **kw):
        seen.update(kw)
        return SimpleNamespace(ok=[], trained=0, failed=0)
    monkeypatch.setattr(cli_sweep, "run_sweep", run_sweep)
    args = ("sweep", "--store", str(tmp_path / "s"), "--dataset", "digits", "--epochs", "1", "--max-train", "16",
            "--quiet", "--stack-memory-mb")
    assert lamp(*args, "512", cwd=tmp_path).returncode == 0 and seen["memory_budget_mb"] == 512.0
    for bad in ("0", "-3", "lots", "inf"):
        r = lamp(*args, bad, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
        assert "megabytes above 0" in r.stderr
