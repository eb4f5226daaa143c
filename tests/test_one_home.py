"""One authority per idea: each of these is written once, and these checks fail if a second copy
comes back (read from the source where that is the cheap check, else from behaviour).

    the LAMP element                  lamp_core.losses.lamp_map
    the model's forward description   lamp_core.models.forward_spec (and tile / untile)
    usable cores, the thread policy   lamp_core.threads
    the config sections               lamp_core.config.RUN_SECTIONS / SECTIONS
    the default image size            lamp_core.config.DEFAULT_IMAGE_SIZE
    the data-set cache                lamp_core.data.load
    a configuration's label           lamp_core.sweep.describe
    finishing a run (evaluate, store)  lamp_core.runner.finish_run
    which runs may share a stack      lamp_core.stack.stack_key (loaded data), stack_signature (config)
    a run's optimizer steps           lamp_core.run_types.steps_per_epoch / planned_steps
                                      (lamp_core.lesson re-exports it)
    the repository on sys.path        nowhere: lamp_core is the installed package
    the test and bench helpers        HELPER_HOMES below (starting the app, browser choices, polls)
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from lamp_core.config import LampError

PKG = REPO / "lamp_core"


def sources(root: Path = PKG) -> dict[str, str]:
    return {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))}


def where(pattern: str, root: Path = PKG) -> list[str]:
    return [name for name, text in sources(root).items() if re.search(pattern, text)]


def test_the_lamp_element_is_written_once():
    assert where(r"log1p\(") == ["lamp_core/losses.py"]
    assert sources()["lamp_core/losses.py"].count("log1p(") == 1


def test_the_forward_pass_is_described_once():
    from lamp_core.landscape import UnsupportedModel as FromLandscape
    from lamp_core.models import ConvAutoencoder, PatchAutoencoder, UnsupportedModel, forward_spec
    # nothing but models.py walks the module's blocks or tiles patches
    assert where(r"\.(encoder|decoder|head)\b(?!\.py)") == ["lamp_core/models.py"]
    assert where(r"permute\(0, 2, 4, 1, 3, 5\)|permute\(0, 3, 1, 4, 2, 5\)") == ["lamp_core/models.py"]
    assert where(r"isinstance\([^)]*(ConvAutoencoder|PatchAutoencoder)") == ["lamp_core/models.py"]
    # the one guard: an unknown model is a one-line LampError, the one the fast evaluator raises
    assert FromLandscape is UnsupportedModel and issubclass(UnsupportedModel, LampError)
    with pytest.raises(UnsupportedModel) as err:
        forward_spec(torch.nn.Conv2d(1, 1, 3))
    assert "\n" not in str(err.value)
    # the module's forward is the description's
    inner = ConvAutoencoder(1, 16, depth=2, width=4, latent_channels=4).eval()
    model = PatchAutoencoder(inner, 2)
    spec = forward_spec(model)
    assert spec.prefix == "inner." and spec.patches == 2 and spec.layers is inner.layers
    names = {n for n, _ in model.named_parameters()}
    assert all(spec.prefix + layer.conv_name + ".weight" in names for layer in spec.layers)


def test_usable_cores_and_the_thread_policy_live_in_threads():
    assert where(r"sched_getaffinity|omp_set_num_threads") == ["lamp_core/threads.py"]
    # the C library's own calls: threads (OpenMP, MKL) and heap (malloc), nowhere else
    assert where(r"ctypes") == ["lamp_core/heap.py", "lamp_core/threads.py"]
    assert where(r"malloc_trim|mallopt") == ["lamp_core/heap.py"]
    assert where(r"ctypes|malloc_trim\(|mallopt\(", REPO / "app") == []
    defined = [name for name, text in sources().items()
               if re.search(r"^def (usable_cores|usable_cpus|single_threaded_caller|single_threaded_worker)\(", text, re.M)]
    assert defined == ["lamp_core/threads.py"]


def _dict_literals(text: str):
    return [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Dict)]


def test_the_config_sections_are_declared_once():
    from lamp_core import config, sweep
    for name, text in {**sources(), **sources(REPO / "app")}.items():
        if name == "lamp_core/config.py":
            continue
        for d in _dict_literals(text):
            values = {getattr(v, "id", None) for v in d.values}
            assert not values & {"DataConfig", "ModelConfig", "TrainConfig", "LandscapeConfig"}, name
    assert sweep.RUN_SECTIONS is config.RUN_SECTIONS
    assert config.SECTIONS == {**config.RUN_SECTIONS, "landscape": config.LandscapeConfig}


def test_the_default_image_size_is_declared_once():
    from lamp_core import lesson
    from lamp_core.config import DEFAULT_IMAGE_SIZE, DATASETS, option_spec
    for name, text in {**sources(), **sources(REPO / "app")}.items():
        if name == "lamp_core/config.py":
            continue
        for d in _dict_literals(text):
            keys = {getattr(k, "value", None) for k in d.keys}
            assert not ({"digits", "mvtec"} <= keys and all(isinstance(getattr(v, "value", None), int) for v in d.values)), name
    assert set(DEFAULT_IMAGE_SIZE) == set(DATASETS) and lesson.IMAGE_SIZE is DEFAULT_IMAGE_SIZE
    assert lesson.UPLOAD_IMAGE_SIZE == DEFAULT_IMAGE_SIZE["folder"]       # the upload page's size is the folder default
    assert option_spec("data.image_size").default == DEFAULT_IMAGE_SIZE["digits"]


def test_one_data_set_cache():
    from lamp_core.config import DataConfig, RunConfig
    from lamp_core.sweep import _load_all
    # no module but the data package keeps data sets by their config
    assert where(r"(dict|OrderedDict)\[DataConfig") == ["lamp_core/data/__init__.py"]
    assert "_data" not in re.findall(r"self\.(_data)\b", sources()["lamp_core/jobs.py"])
    cfg = RunConfig(data=DataConfig(normal_class=6, image_size=16))
    a, b = _load_all([cfg, cfg.with_train(seed=1)])
    assert a.train is b.train                                             # one decode, shared


def test_a_configurations_label_is_written_once():
    sys.path.insert(0, str(REPO / "app"))
    import lab_state
    from lamp_core.lesson import DEFAULT_CONFIG
    from lamp_core.sweep import describe
    for cfg in (DEFAULT_CONFIG, DEFAULT_CONFIG.with_train(lamp=True, seed=2).with_model(width=8)):
        assert lab_state.describe(cfg) == describe(cfg, comparison=True)
    assert lab_state.describe(DEFAULT_CONFIG).startswith("MNIST subset, normal 8 · 28 px · L2 · adam")


def _calls(text: str) -> set[str]:
    """Names called in `text` (f(...) and x.f(...) both give f)."""
    return {getattr(n.func, "id", None) or getattr(n.func, "attr", None)
            for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call)}


def _defs(text: str) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_finishing_a_run_is_written_once():
    # a trained run is evaluated by runner.finish_run alone (the app's workers call it) and filed
    # by runner.file_run alone (the queue and the sweep's Ray driver, which own the store, call it)
    workers, jobs = sources()["lamp_core/workers.py"], sources()["lamp_core/jobs.py"]
    assert "finish_run" in _calls(workers) and "file_run" in _calls(jobs)
    assert not _calls(jobs) & {"evaluate", "put"}, "jobs.py evaluates or stores a run itself"
    assert "evaluate" not in _calls(workers)          # (its put()s are its inbox's)
    for text in (workers, jobs):
        assert not [n for n in _defs(text) if "evaluat" in n]
    assert where(r"\bevaluate\(result\.model\(") == ["lamp_core/runner.py"]
    assert where(r"\bstore\.put\(") == ["lamp_core/runner.py"]


def test_which_runs_may_share_a_stack_is_decided_in_stack():
    from lamp_core.lesson import DEFAULT_CONFIG
    from lamp_core.stack import stack_signature
    assert [n for n, t in sources().items() if {"stack_key", "stack_signature"} & _defs(t)] == ["lamp_core/stack.py"]
    for name in ("lamp_core/jobs.py", "lamp_core/sweep.py"):
        tree = ast.parse(sources()[name])
        assert "stack_signature" in _calls(sources()[name]), name
        # no config-to-config comparison of the fields stack_signature covers, no key tuple of them
        fields = {"model", "image_size", "batch_size", "device"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                assert not all(isinstance(x, ast.Attribute) and x.attr in fields for x in sides), (name, ast.unparse(node))
            if isinstance(node, ast.Tuple):
                attrs = {e.attr for e in node.elts if isinstance(e, ast.Attribute)}
                assert len(attrs & fields) < 2, (name, ast.unparse(node))
    # the Ray driver's signature refines the queue's (same network and batch, and data of one size)
    a, b = DEFAULT_CONFIG, DEFAULT_CONFIG.with_train(seed=3, lamp=True)
    assert stack_signature(a) == stack_signature(b) and stack_signature(a, data_size=True) == stack_signature(b, data_size=True)
    assert stack_signature(a) != stack_signature(a.with_train(batch_size=7))
    c = a.with_data(max_train=100)
    assert stack_signature(a) == stack_signature(c) and stack_signature(a, data_size=True) != stack_signature(c, data_size=True)


def test_a_runs_steps_are_counted_once():
    from lamp_core import lesson
    from lamp_core.data import peek
    from lamp_core.run_types import UNKNOWN_TRAIN_IMAGES, planned_steps, steps_per_epoch
    # no module counts steps by hand (ceil division of images by a batch) or guesses a set's size
    counting = where(r"-\(-\w+\s*//\s*(max\(|min\(|self\.batch|\w*batch)")
    assert set(counting) == {"lamp_core/run_types.py"}, counting
    assert not where(r"max_train\s+or\s+\d")
    assert [n for n, t in sources().items() if re.search(r"^def planned_steps\(", t, re.M)] == ["lamp_core/run_types.py"]
    # the lesson counts with the one function, not a copy
    assert lesson.steps_per_epoch is steps_per_epoch
    cfg = lesson.DEFAULT_CONFIG
    assert planned_steps(cfg, 123) == lesson.total_steps(cfg, 123)
    # one documented fallback: the app's default cap, used only where the set is neither loaded nor capped
    assert UNKNOWN_TRAIN_IMAGES == cfg.data.max_train
    unloaded = cfg.with_data(max_train=None, normal_class=3, image_size=20)
    assert peek(unloaded.data) is None
    assert planned_steps(unloaded) == steps_per_epoch(UNKNOWN_TRAIN_IMAGES, cfg.train.batch_size) * cfg.train.epochs
    assert planned_steps(unloaded.with_data(max_train=40)) == steps_per_epoch(40, cfg.train.batch_size) * cfg.train.epochs


def test_the_queue_finishes_its_runs_through_finish_run(tmp_path, monkeypatch):
    """Behaviour, not just source: the queue's finished run is runner.finish_run's record (made
    in the worker, here a thread so the spy sees it), filed by runner.file_run in the server."""
    from lamp_core import runner
    from lamp_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from lamp_core.jobs import DONE, JobQueue
    from lamp_core.store import RunStore
    seen = []
    real_finish, real_file = runner.finish_run, runner.file_run

    def spy_finish(result, dataset, store=None):
        rec = real_finish(result, dataset, store)
        seen.append(("finish", result.config.key(), store))
        return rec

    def spy_file(record, store):
        seen.append(("file", record.result.config.key(), store))
        real_file(record, store)
    monkeypatch.setattr(runner, "finish_run", spy_finish)
    monkeypatch.setattr(runner, "file_run", spy_file)
    cfg = RunConfig(data=DataConfig(normal_class=1, image_size=16, max_train=8, max_test=20),
                    model=ModelConfig(width=4, latent_channels=4), train=TrainConfig(epochs=1, batch_size=4))
    q = JobQueue(RunStore(tmp_path / "runs"), devices=["cpu"], workers="thread")
    try:
        view = q.wait(q.submit_run(cfg).id, 120)
    finally:
        q.close()
    assert view.status == DONE and view.result.evaluation is not None and not view.result.cached
    assert seen == [("finish", cfg.key(), None), ("file", cfg.key(), q.store)] and q.store.has(cfg)


# scripts that other work in progress converts; drop a name here when its script loses the insert
NOT_YET: set[str] = set()


def test_no_script_puts_the_repository_on_sys_path():
    """lamp_core is installed (editable, by `make test` / `make app`): a script needs sys.path only
    for its own siblings (bench/app_server.py, app/lab_state.py)."""
    root_insert = re.compile(r"sys\.path\.insert\(0, str\((ROOT|REPO|Path\(__file__\)\.resolve\(\)\.parent\.parent)\)\)")
    bad = [p.name for p in sorted((REPO / "bench").glob("*.py"))
           if p.name not in NOT_YET and root_insert.search(p.read_text(encoding="utf-8"))]
    assert not bad, f"these put the repository root on sys.path: {bad}"
    for page in sorted((REPO / "app" / "app_pages").glob("*.py")):
        text = page.read_text(encoding="utf-8")
        if "sys.path.insert" in text and page.name != "class_results.py":
            assert "only the main script's folder on sys.path" in text, page.name


# helpers of the tests and bench scripts, each defined in one file only
HELPER_HOMES = {"free_port": "bench/app_server.py", "wait_healthy": "bench/app_server.py",
                "launch": "bench/app_server.py", "choose": "bench/app_server.py",
                "until": "tests/conftest.py"}     # (run_until: the page tests wrap conftest's with their deadline)


def test_test_and_bench_helpers_have_one_home():
    found: dict[str, list[str]] = {}
    for root in (REPO / "tests", REPO / "bench"):
        for name, text in sources(root).items():
            for node in ast.parse(text).body:           # module-level functions (a page's method may share a name)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in HELPER_HOMES:
                    found.setdefault(node.name, []).append(name)
    assert {k: sorted(set(v)) for k, v in found.items()} == {k: [v] for k, v in HELPER_HOMES.items()}
