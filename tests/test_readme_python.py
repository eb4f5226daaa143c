"""The README's "Use it from Python" block runs as written, and the names it (and a notebook)
imports from `lamp_core` are the engine's own."""
from __future__ import annotations

import re

from conftest import REPO


def readme_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Use it from Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section shows one Python block"
    return blocks[0]


def test_readme_python_block_runs(tmp_path, monkeypatch, capsys):
    block = readme_block()
    # the tiny config the block promises: seconds, so the suite can afford it
    assert 'DataConfig(dataset="digits", image_size=16)' in block and "TrainConfig(epochs=1)" in block
    monkeypatch.chdir(tmp_path)            # roc.html lands here; the store is the test's own ($LAMP_STORE)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert 0.0 <= float(capsys.readouterr().out.split()[-1]) <= 1.0
    assert ns["result"].epochs_done == 1 and (tmp_path / "roc.html").is_file()
    runs = ns["runs"]
    assert [r.result.config.train.lamp for r in runs.values()] == [False, True]
    assert all(r.evaluation is not None and not r.cached for r in runs.values())
    # asked again, both come from the store
    assert all(ns["run_config"](r.result.config, store=ns["store"]).cached for r in runs.values())


def test_public_names_are_the_engines_own():
    import sys

    import lamp_core
    from lamp_core import config, data, lesson, runner, store
    from lamp_core.train import TrainResult

    missing = [name for name in lamp_core.__all__ if not hasattr(lamp_core, name)]
    assert not missing, missing
    # one object per idea: the package's names are the modules' own objects, not copies; train
    # and evaluate are the functions although modules of those names exist
    assert lamp_core.train is sys.modules["lamp_core.train"].train and lamp_core.TrainResult is TrainResult
    assert lamp_core.evaluate is sys.modules["lamp_core.evaluate"].evaluate
    assert lamp_core.RunConfig is config.RunConfig and lamp_core.load is data.load
    assert lamp_core.run_config is runner.run_config and lamp_core.RunStore is store.RunStore
    assert lamp_core.DEFAULT_CONFIG is lesson.DEFAULT_CONFIG
    assert lamp_core.figures is sys.modules["lamp_core.figures"]
