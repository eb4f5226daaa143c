"""`lamp landscape`: a tiny --compare run end to end, and bad input as one line with exit code 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lamp_core.cli import main
from lamp_core.landscape import Surface


@pytest.fixture(autouse=True)
def one_thread():
    """Torch on one thread while a test trains (restored after): far faster for these tiny models
    on a loaded machine. Grid points still run in parallel on the pool's own threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(argv: list[str]) -> int:
    """main() as the shell sees it: argparse errors exit via SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


TINY = ["--max-train", "24", "--max-test", "40", "--width", "4", "--latent-channels", "4", "--epochs", "1",
        "--batch-size", "8", "--nx", "5", "--ny", "3", "--images", "8", "--hessian-iters", "3",
        "--hutchinson-samples", "2", "--progress", "never"]


def test_compare_writes_npz_html_and_prints_both_sharpness_numbers(tmp_path, capsys):
    out = tmp_path / "figs"
    code = main(["landscape", "--compare", *TINY, "--out", str(out), "--json", "--store", str(tmp_path / "store")])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["surfaces"]) == {"base", "lamp"}
    for side in res["surfaces"].values():
        assert side["metric"] == "l2" and side["complete"] and side["grid"] == [5, 3]
        for key in ("top_eigenvalue", "hessian_trace", "radius_increase"):
            assert np.isfinite(side[key])
    base, lamp = Surface.load(out / "base.npz"), Surface.load(out / "lamp.npz")
    assert base.values.shape == lamp.values.shape == (3, 5)
    assert not np.allclose(base.values, lamp.values)      # two different trained models
    html = (out / "landscape.html").read_text()
    assert html.count("Plotly.newPlot") == 2 and "base" in html and "lamp" in html
    assert (out / "base.csv").read_text().startswith("x,y,value\n")
    # the runs and surfaces went into the store: a second call gives the same numbers
    assert main(["landscape", "--compare", *TINY, "--out", str(out), "--json",
                 "--store", str(tmp_path / "store")]) == 0
    assert json.loads(capsys.readouterr().out)["surfaces"] == res["surfaces"]


def test_single_run_table_in_own_metric(tmp_path, capsys, monkeypatch):
    from lamp_core import surfaces
    seen = []

    def compute_surface(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)
    real = surfaces.compute_surface
    monkeypatch.setattr(surfaces, "compute_surface", compute_surface)
    threads = torch.get_num_threads()
    code = main(["landscape", *TINY, "--ny", "1", "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s")])
    text = capsys.readouterr().out
    assert code == 0
    # torch's process-wide thread count is never changed (the pool's threads set their own)
    assert seen == [threads] and torch.get_num_threads() == threads
    assert "metric own" in text and "top_eigenvalue" in text and "increase@0.25" in text
    assert (tmp_path / "o" / "run.npz").is_file() and (tmp_path / "o" / "landscape.html").is_file()
    assert Surface.load(tmp_path / "o" / "run.npz").kind == "line"


@pytest.mark.parametrize("args,needle", [
    (["--nx", "0"], "grid 0x3"),
    (["--span", "0"], "span"),
    (["--images", "0"], "n_images"),
    (["--metric", "l3"], "--metric"),
    (["--bn-mode", "train"], "--bn-mode"),
    (["--radius", "-1"], "radius"),
    (["--epochs", "-1"], "epochs"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    assert run_cli(["landscape", *TINY, "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o" / "run.npz").exists()


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = run_cli(["landscape", *TINY, "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--out" in err
