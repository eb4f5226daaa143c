"""Layout rules a reader relies on, checked on the source: the science modules import no
orchestration (store, runner, jobs, sweep), and every third-party import of lamp_core is a
declared dependency, with requirements.txt and pyproject.toml naming the same floors."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from conftest import REPO

PKG = REPO / "lamp_core"
SCIENCE = ["losses", "models", "train", "evaluate", "landscape"]
ORCHESTRATION = {"store", "runner", "jobs", "sweep", "surfaces", "cli", "cli_landscape", "cli_sweep"}
# import name -> distribution name, where they differ
DIST = {"sklearn": "scikit-learn", "PIL": "pillow", "pytorch_msssim": "pytorch-msssim"}


def _module_file(name: str) -> Path:
    path = PKG.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(name: str) -> tuple[set[str], set[str]]:
    """(lamp_core modules, third-party top-level names) that module `name` imports (any depth in the file)."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner, outer = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            mod = ".".join(base + ([node.module] if node.module else []))
            targets = [mod] if node.module else []
            targets += [f"{mod}.{a.name}".lstrip(".") for a in node.names]
            inner |= {t for t in targets if t and _module_file(t).is_file()}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top == "lamp_core":
                inner.add(node.module.partition(".")[2])
            else:
                outer.add(top)
        elif isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top == "lamp_core":
                    inner.add(a.name.partition(".")[2])
                else:
                    outer.add(top)
    return {m for m in inner if m}, outer


def _all_modules() -> list[str]:
    out = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        if parts:
            out.append(".".join(parts))
    return out


def test_science_modules_import_no_orchestration():
    for start in SCIENCE:
        seen, todo = set(), [start]
        while todo:
            mod = todo.pop()
            if mod in seen:
                continue
            seen.add(mod)
            todo += list(_imports(mod)[0])
        bad = {m for m in seen if m.split(".")[0] in ORCHESTRATION}
        assert not bad, f"{start} reaches {sorted(bad)}"


def test_every_third_party_import_is_declared():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in project["dependencies"]]
    extras = [re.split(r"[<>=!~ ;\[]", d)[0].lower() for ds in project["optional-dependencies"].values() for d in ds]
    std = set(sys.stdlib_module_names)
    for mod in _all_modules():
        for top in _imports(mod)[1] - std:
            dist = DIST.get(top, top).lower()
            # ray is imported only inside the Ray executor, which says how to install the extra
            assert dist in declared or (dist == "ray" and dist in extras), f"lamp_core.{mod} imports {top}"
    assert "pytest" not in declared and "hypothesis" not in declared and "pytorch-msssim" not in declared


def test_requirements_name_the_floors_pyproject_declares():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floors = dict(re.match(r"([A-Za-z0-9_.-]+)(.*)", d).groups() for d in project["dependencies"])
    lines = [ln.split("#")[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    pins = dict(re.match(r"([A-Za-z0-9_.-]+)(.*)", ln).groups() for ln in lines if ln)
    assert set(pins) == set(floors), "requirements.txt and pyproject.toml list different runtime packages"
    for name, spec in pins.items():
        if spec.startswith("=="):              # the pinned torch pair must satisfy the floor
            want = tuple(int(x) for x in floors[name].removeprefix(">=").split("."))
            assert tuple(int(x) for x in spec[2:].split(".")) >= want, name
        else:
            assert spec == floors[name], name
