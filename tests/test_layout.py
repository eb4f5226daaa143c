"""Layout rules a reader relies on, checked on the source, drawn from every import statement in
lamp_core (module-level, function-level and TYPE_CHECKING ones alike):

* no import cycle: every module can be read knowing only the modules below it;
* no upward import: each module sits in one layer (LAYERS) and imports only from its own layer
  or below: science never reaches orchestration, and nothing reaches the command line;
* lamp_core never imports the app or the benchmarks (they stand on it, not it on them), and
  imports nothing through importlib, so these statements are the whole graph;
* every third-party import of lamp_core is a declared dependency, with requirements.txt and
  pyproject.toml naming the same floors.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from conftest import REPO

PKG = REPO / "lamp_core"
ROOT = ""   # the package itself (lamp_core/__init__.py), the public face

# Lowest first. A module may import from its own layer and the layers before it. A package's
# modules (data.*, landscape.*) sit in the package's layer.
LAYERS: list[tuple[str, str, set[str]]] = [
    ("foundation", "plain Python and numpy/SciPy, no torch: options and their checks, atomic files, "
                   "statistics over seeds and over a run's recorded curve, freed heap handed back",
     {"config", "files", "stats", "convergence", "heap"}),
    ("science", "the paper's maths: data in; trained models, scores and loss surfaces out; knows "
                "nothing of stores, queues, reports or commands",
     {"data", "losses", "models", "run_types", "stack", "train", "evaluate", "landscape", "threads"}),
    ("orchestration", "runs named by their configs: stored, trained on demand, queued, swept, "
                      "reported, drawn, and the lesson built from them",
     {"store", "runner", "surfaces", "sweep", "workers", "jobs", "report", "figures", "landscape_figures",
      "lesson", "lesson_measure", "lesson_notes", "references", "class_experiment"}),
    ("interface", "the `lamp` command and the package's public names: they call everything below, and "
                  "nothing below calls them",
     {"cli_common", "cli", "cli_landscape", "cli_sweep", "cli_lesson", "__main__", ROOT}),
]
# import name -> distribution name, where they differ
DIST = {"sklearn": "scikit-learn", "PIL": "pillow", "pytorch_msssim": "pytorch-msssim"}


def _module_file(name: str) -> Path:
    path = PKG.joinpath(*name.split(".")) if name else PKG
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_module(name: str) -> bool:
    return _module_file(name).is_file()


def _all_modules() -> list[str]:
    """Every module of lamp_core by dotted name under it; the package itself is ROOT ("")."""
    out = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        out.append(".".join(parts))
    return out


def _tree(name: str) -> ast.AST:
    return ast.parse(_module_file(name).read_text(encoding="utf-8"))


def _imports(name: str) -> tuple[set[str], set[str], list[str]]:
    """(lamp_core modules, third-party top-level names, imports that leave the package) of module
    `name`, from import statements at any depth of its file. `from X import a` counts as an import
    of X.a where that is a module, else of X: names taken from a package's namespace (its
    __init__) are an import of the package."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner, outer, outside = set(), set(), []

    def from_names(mod: str, names: list[str]) -> None:
        for alias in names:
            sub = f"{mod}.{alias}" if mod else alias
            inner.add(sub if _is_module(sub) else mod)

    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            if node.level - 1 > len(base):
                outside.append(f"{'.' * node.level}{node.module or ''}")
                continue
            base = base[: len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
            if node.module and not _is_module(mod):
                outside.append(mod)
                continue
            from_names(mod, [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.module:
            top, _, rest = node.module.partition(".")
            if top == "lamp_core":
                from_names(rest, [a.name for a in node.names])
            else:
                outer.add(top)
        elif isinstance(node, ast.Import):
            for a in node.names:
                top, _, rest = a.name.partition(".")
                if top == "lamp_core":
                    inner.add(rest)
                else:
                    outer.add(top)
    inner.discard(name)
    return inner, outer, outside


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m)[0] for m in _all_modules()}


def _layer_of(name: str) -> int:
    top = name.split(".")[0] if name else ROOT
    for i, (_, _, members) in enumerate(LAYERS):
        if top in members:
            return i
    raise AssertionError(f"lamp_core.{name} sits in no layer: add it to LAYERS in tests/test_layout.py")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a cycle's members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_are_found():
    # the checker itself: a two-module cycle, a three-module one, and a clean chain
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_function_level_imports_are_in_the_graph():
    graph = _graph()
    assert "stack" in graph["train"] and "run_types" in graph["stack"]
    assert "runner" in graph["sweep"]             # imported inside functions only
    assert "store" in graph["report"]             # imported under TYPE_CHECKING only
    assert "cli_sweep" in graph["cli"] and "cli" not in graph["cli_sweep"]


def test_lamp_core_has_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles in lamp_core: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_module_imports_upward():
    graph = _graph()
    bad = [f"lamp_core.{m or '__init__'} ({LAYERS[_layer_of(m)][0]}) imports lamp_core.{d or '__init__'} "
           f"({LAYERS[_layer_of(d)][0]})"
           for m, deps in sorted(graph.items()) for d in sorted(deps) if _layer_of(d) > _layer_of(m)]
    assert not bad, "\n".join(bad)


def test_every_layer_member_exists():
    modules = {m.split(".")[0] if m else ROOT for m in _all_modules()}
    for name, _, members in LAYERS:
        assert members <= modules, f"{name}: no module {sorted(members - modules)}"


def test_science_reaches_no_orchestration():
    # the layer rule, read transitively: nothing science imports, at any distance, is above it
    graph = _graph()
    science = LAYERS[1][2]
    for start in [m for m in graph if m.split(".")[0] in science]:
        seen, todo = set(), [start]
        while todo:
            mod = todo.pop()
            if mod not in seen:
                seen.add(mod)
                todo += list(graph.get(mod, ()))
        bad = sorted(m for m in seen if _layer_of(m) > 1)
        assert not bad, f"{start} reaches {bad}"


def test_lamp_core_never_imports_the_app_or_the_benchmarks():
    # the app and bench scripts import their siblings by bare name (`import lab_state`)
    theirs = {"app", "bench"} | {p.stem for d in ("app", "bench") for p in (REPO / d).rglob("*.py")}
    theirs -= set(sys.stdlib_module_names)
    for mod in _all_modules():
        _, outer, outside = _imports(mod)
        assert not outside, f"lamp_core.{mod or '__init__'} imports {outside}, outside the package"
        assert not outer & theirs, f"lamp_core.{mod or '__init__'} imports {sorted(outer & theirs)}"


def test_no_module_imports_through_importlib():
    # an import_module call is an edge this graph cannot see: the command modules register
    # themselves (cli.COMMAND_MODULES), the package imports its names with import statements
    for mod in _all_modules():
        for node in ast.walk(_tree(mod)):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                assert called not in {"import_module", "__import__"}, f"lamp_core.{mod} calls {called}"


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
