"""Every cache of the server process is bounded and evicts (a class shares one Streamlit server
for hours): a static check of every `functools.lru_cache` / `functools.cache` and every
`st.cache_data` / `st.cache_resource` under app/ and lamp_core/, and behavioural checks that the
data-set cache, the class board and the figure memo evict beyond their bounds.

A new cache fails `test_every_cache_in_the_code_is_bounded` unless it has a finite bound or joins
ALLOWED_UNBOUNDED below with the reason its key space is tiny and fixed.
"""
from __future__ import annotations

import ast
import dataclasses
import time
import types
from pathlib import Path

import conftest
import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = (REPO / "app", REPO / "lamp_core")

# (file relative to the repo, function) -> why an unbounded lru_cache is fine there
ALLOWED_UNBOUNDED = {
    ("lamp_core/threads.py", "per_thread_setters"): "no arguments: one entry",
    ("lamp_core/config.py", "option_specs"): "key is a config section; unknown ones raise: 4 entries",
}
# st.cache_resource without max_entries is fine when keyed by the run store's folder alone (one
# per process; evicting the job queue or the class board would drop live state)
RESOURCE_KEYS_ALLOWED = (["store_root"],)


def _name(node: ast.AST) -> str:
    """'functools.lru_cache', 'st.cache_data', 'lru_cache' ... of a decorator (call or not)."""
    if isinstance(node, ast.Call):
        node = node.func
    return ast.unparse(node)


def _kw(call: ast.AST, name: str, pos: int | None = None) -> ast.AST | None:
    if not isinstance(call, ast.Call):
        return None
    for k in call.keywords:
        if k.arg == name:
            return k.value
    if pos is not None and len(call.args) > pos:
        return call.args[pos]
    return None


def _finite_int(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool) \
        and node.value > 0


def cache_problems(source: str, rel: str) -> tuple[list[str], int]:
    """(unbounded caches of one file as 'file:line function: why', number of caches seen)."""
    problems, seen = [], 0
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        where = f"{rel}:{fn.lineno} {fn.name}"
        for dec in fn.decorator_list:
            name = _name(dec).split(".")[-1]
            if name in ("lru_cache", "cache") and _name(dec).split(".")[0] in ("functools", "lru_cache", "cache"):
                seen += 1
                if name == "cache":
                    bounded = False
                elif isinstance(dec, ast.Call):
                    size = _kw(dec, "maxsize", 0)
                    # @lru_cache() takes the default maxsize of 128; @lru_cache(f) is the bare form
                    bounded = size is None and not dec.args or _finite_int(size)
                else:
                    bounded = True                  # bare @lru_cache: maxsize=128
                if not bounded and (rel, fn.name) not in ALLOWED_UNBOUNDED:
                    problems.append(f"{where}: {_name(dec)} without a finite maxsize")
            elif name == "cache_data":
                seen += 1
                if not _finite_int(_kw(dec, "max_entries")):
                    problems.append(f"{where}: st.cache_data without max_entries")
            elif name == "cache_resource":
                seen += 1
                params = [a.arg for a in fn.args.args]
                if not _finite_int(_kw(dec, "max_entries")) and params not in RESOURCE_KEYS_ALLOWED:
                    problems.append(f"{where}: st.cache_resource keyed by {params} without max_entries")
    return problems, seen


def test_every_cache_in_the_code_is_bounded():
    problems, seen = [], 0
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            p, n = cache_problems(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())
            problems += p
            seen += n
    assert not problems, "unbounded caches (give them a bound, or a reason in ALLOWED_UNBOUNDED):\n" + \
        "\n".join(problems)
    # not vacuous: today's caches (5 lru_caches, 2 cache_resources) are found
    assert seen >= 7, seen


def test_the_checker_flags_unbounded_caches():
    bad = """
import functools, streamlit as st
from functools import lru_cache, cache
@functools.lru_cache(maxsize=None)
def a(x): ...
@lru_cache(None)
def b(x): ...
@cache
def c(x): ...
@st.cache_data
def d(x): ...
@st.cache_data(ttl=60)
def e(x): ...
@st.cache_resource
def f(path): ...
"""
    good = """
import functools, streamlit as st
@functools.lru_cache(maxsize=8)
def a(x): ...
@functools.lru_cache
def b(x): ...
@functools.lru_cache()
def c(x): ...
@st.cache_data(max_entries=16)
def d(x): ...
@st.cache_resource(show_spinner=False)
def e(store_root): ...
"""
    problems, seen = cache_problems(bad, "x.py")
    assert seen == 6 and [p.split()[1].split(":")[0] for p in problems] == list("abcdef"), problems
    assert cache_problems(good, "x.py") == ([], 5)


def test_the_allowed_unbounded_caches_stay_tiny():
    from lamp_core import config, threads
    for section in config.SECTIONS:
        config.option_specs(section)
    with pytest.raises(config.ConfigError):
        config.option_specs("no-such-section")
    assert config.option_specs.cache_info().currsize <= len(config.SECTIONS) == 4
    assert threads.per_thread_setters.__wrapped__.__code__.co_argcount == 0      # no arguments: one entry


# ----------------------------------------------------------------------------- the data-set cache

def _digits(c: int, seed: int = 0):
    from lamp_core.config import DataConfig
    return DataConfig(dataset="digits", normal_class=c, image_size=8, max_train=10, max_test=10, seed=seed)


@pytest.fixture
def data_cache(monkeypatch):
    from lamp_core import data
    data.clear_cache()
    yield data
    data.clear_cache()


def test_the_data_set_cache_evicts_by_count(data_cache, monkeypatch):
    data = data_cache
    monkeypatch.setattr(data, "MAX_CACHED_SETS", 3)
    cfgs = [_digits(c) for c in range(7)]
    for cfg in cfgs:
        data.load(cfg)                  # the record is dropped at once: nothing holds it
        assert len(data._cache) <= 3
    assert list(data._cache) == cfgs[-3:]            # least recently used first out
    assert data.peek(cfgs[0]) is None                # evicted and held by nobody: forgotten
    data.load(cfgs[4])                               # a hit moves it to the end ...
    data.load(_digits(0, seed=1))
    assert list(data._cache) == [cfgs[6], cfgs[4], _digits(0, seed=1)]     # ... so cfgs[5] went


def test_the_data_set_cache_evicts_by_bytes(data_cache, monkeypatch):
    data = data_cache
    one = data._nbytes(data.load(_digits(0), cached=False))
    monkeypatch.setenv("LAMP_DECODE_BUDGET_MB", str(2.5 * one / (1 << 20)))    # room for two sets
    for c in range(6):
        data.load(_digits(c))
        assert sum(data._nbytes(d) for d in data._cache.values()) <= data.decoded_budget_bytes()
    assert len(data._cache) == 2
    assert data.MAX_CACHED_SETS <= 256               # the count bound itself is finite and modest


# ----------------------------------------------------------------------------- the class board

def test_the_class_board_forgets_old_sessions_and_rows(tmp_path, monkeypatch):
    from lamp_core import class_experiment as ce
    from lamp_core.config import ModelConfig, RunConfig, TrainConfig, run_key
    from lamp_core.store import RunStore

    monkeypatch.setattr(ce, "MAX_SESSIONS", 4)
    monkeypatch.setattr(ce, "MAX_ROWS", 3)
    tiny = RunConfig(data=dataclasses.replace(_digits(3), image_size=16), model=ModelConfig(width=4),
                     train=TrainConfig(epochs=1, batch_size=8))
    board = ce.ClassBoard(RunStore(tmp_path / "runs"))
    board.start(ce.Experiment(tiny, (3,), (0,), (8,), start=time.time()))
    for i in range(10):
        assert board.assign(f"s{i}") == (3, 0, 8)
    assert list(board._given) == ["s6", "s7", "s8", "s9"]
    assert board.cell_of("s0") is None and board.assign("s0") == (3, 0, 8)    # handed a cell afresh

    monkeypatch.setattr(ce.report, "rows_from_store", lambda cfgs, store: [{"key": run_key(c)} for c in cfgs])
    cfgs = [tiny.with_train(seed=s) for s in range(6)]
    assert [r["key"] for r in board.rows(cfgs)] == [run_key(c) for c in cfgs]   # all asked for come back
    assert list(board._rows) == [run_key(c) for c in cfgs[-3:]]


# ----------------------------------------------------------------------------- the figure memo

@pytest.fixture
def page_state(monkeypatch):
    """(app/lab_state, a fake `st` whose session_state is a plain dict): lab_state's session
    helpers, outside a Streamlit script run."""
    lab_state = conftest.import_lab_state()
    fake = types.SimpleNamespace(session_state={})
    monkeypatch.setattr(lab_state, "st", fake)
    return lab_state, fake


def test_the_figure_memo_keeps_few_figures_per_session(page_state):
    lab_state, fake = page_state
    for i in range(3 * lab_state.MAX_MEMO_FIGURES):
        assert lab_state.memo_figure(f"k{i}", i, lambda i=i: f"fig{i}") == f"fig{i}"
        assert lab_state.memo_figure("k0", 0, lambda: "rebuilt") in ("fig0", "rebuilt")
    assert len(fake.session_state["_figure_memo"]) <= lab_state.MAX_MEMO_FIGURES
    built = []
    assert lab_state.memo_figure("same", 1, lambda: built.append(1) or "a") == "a"
    assert lab_state.memo_figure("same", 1, lambda: built.append(1) or "b") == "a" and built == [1]


def test_the_shown_eta_adds_the_pages_own_latency_and_keeps_few_page_runs(page_state):
    """The queue's ETA ends when the job is done in the queue; a student sees the results a poll
    interval and a page run later, so the page adds both (its recent page runs, bounded)."""
    lab_state, fake = page_state
    assert lab_state.shown_eta(None) is None and lab_state.eta_text(0) == ""
    assert lab_state.shown_eta(10.0) == pytest.approx(10.0 + lab_state.POLL_S)     # no page run timed yet
    for s in [0.5] * (3 * lab_state.RECENT_PAGE_RUNS) + [9.0] * 4 + [2.5, 2.5]:
        lab_state.note_page_run(s)
    assert len(fake.session_state["_page_run_s"]) == lab_state.RECENT_PAGE_RUNS
    # the median of the last ten (four 0.5, two 2.5, four 9.0): 2.5; one slow page run does not count
    assert lab_state.shown_eta(10.0) == pytest.approx(10.0 + lab_state.POLL_S + 2.5)
    assert lab_state.eta_text(10.0) == f" · about {10 + lab_state.POLL_S + 2.5:.0f} s left"


@pytest.mark.parametrize("seconds,text", [(42.4, "42 s"), (86.0, "85 s"), (149.0, "150 s"), (181.0, "3.0 min"),
                                          (335.0, "5.6 min"), (1500.0, "25 min")])
def test_a_wait_reads_close_to_its_estimate(seconds, text):
    """No rounding that moves a wait by more than about 3% (whole minutes showed 85 s as 2 min)."""
    import lab_state
    assert lab_state._seconds(seconds) == text
