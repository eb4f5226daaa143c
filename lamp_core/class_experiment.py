"""The class experiment: a class of sessions reproduces the paper's Table 1 together.

One student's quick run is noisy (seeds differ by about as much as LAMP's effect), so no student
can see the paper's result alone; thirty students can, if their runs are put together. The
teacher sets a grid (digits × seeds × batch sizes) and a protocol (the lesson's default by
default); each session is handed one cell of the grid (its digit is the normal class, its seed
and batch size as named), trains that cell's base and LAMP runs with the usual button, and the
board aggregates every finished cell into Table 1 with `lamp_core.report` (the function that
writes bench/results/table1.md).

* **Hand-outs.** Round-robin over the cells the class has neither finished nor handed out yet,
  in the order seed, digit, batch size: the first twenty hand-outs of a 10 × 3 × 2 grid complete
  seed 0 for every digit at both sizes, so the table has whole columns early. Once every
  unfinished cell has been handed out, the one handed out least often goes again; two sessions
  with one cell ask the job queue for the same `run_key`s, so it trains once
  (`JobQueue.submit_runs`).
* **Whose runs count.** A run of the grid's configs counts when it finished after the start time
  the teacher set (the mtime of its `evaluation.json`, which the store writes last), or when a
  session of the class was handed it after the start and the store already held it: the queue
  never trains a stored run again, and the same config and seed train the same run. Other runs in
  the store (other settings, uploads, earlier classes) are never read.
* **Privacy.** The board holds cells and run keys, never who trained what beyond a session's own
  cell; the protocol must be a digit data set, so no upload enters it.
* **State.** One `ClassBoard` per server process and run store (the app keeps it in
  `st.cache_resource`, like the job queue), lock-protected, persisted as
  `<run store>/class_experiment.json` so a restart keeps the class's grid, its start time and
  its hand-outs. It never calls Streamlit; the job queue never calls it.
* **The teacher** is recognised by a code: a server started with `LAMP_TEACHER_CODE=<code>`
  (e.g. `LAMP_TEACHER_CODE=owl42 make app`) unlocks the Class results page's teacher controls in
  a browser session that enters that code. Without the variable nobody can set up or reset the
  board from the browser (a class server is shared by every student, so a server-wide switch
  like the Guide's `TEACHER=1` would hand every student the reset button).
"""
from __future__ import annotations

import hmac
import json
import math
import os
import threading
import time
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from . import lesson, report
from .config import LampError, RunConfig, run_key, validate
from .files import atomic_write
from .stats import fmt_ms, paired

if TYPE_CHECKING:
    from .jobs import JobQueue, JobView
    from .store import RunStore

STATE_NAME = "class_experiment.json"          # beside the runs, in the run store's folder
TEACHER_CODE_ENV = "LAMP_TEACHER_CODE"
# The board lives as long as the server, so its per-session and per-run memories are bounded:
MAX_SESSIONS = 1000     # sessions whose hand-out is remembered (most recent hand-outs; ~100 B each)
MAX_ROWS = 4096         # report rows kept in memory (least recently asked first out; ~2 KB each)
DIGIT_DATASETS = ("digits", "mnist", "fashion-mnist")
DONE, RUNNING, HANDED, MISSING = "done", "running", "handed out", "missing"
STATES = (DONE, RUNNING, HANDED, MISSING)

Cell = tuple[int, int, int]                   # (digit, seed, batch size)


def teacher_code() -> str:
    """The teacher code this server was started with ($LAMP_TEACHER_CODE), or "" (no teacher)."""
    return os.environ.get(TEACHER_CODE_ENV, "").strip()


def is_teacher(code: str | None) -> bool:
    """Whether `code` is this server's teacher code (constant-time compare; never true without one)."""
    expected = teacher_code()
    return bool(expected) and code is not None and hmac.compare_digest(code.strip().encode(), expected.encode())


# ----------------------------------------------------------------------------- the teacher's settings

def _ints(values: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError):
        raise LampError(f"the class experiment's {what} must be whole numbers, not {list(values)!r}") from None
    if not out:
        raise LampError(f"the class experiment needs at least one {what[:-1] if what.endswith('s') else what}: "
                        f"choose some {what}")
    return out


@dataclass(frozen=True)
class Experiment:
    """The grid and protocol the teacher set: each cell (digit, seed, batch size) is one pair of
    runs, the protocol with that digit as the normal class, that seed, at that batch size
    (`lesson.batch_size_config` in `mode`), once as the base loss and once with LAMP."""

    protocol: RunConfig
    digits: tuple[int, ...]
    seeds: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    start: float                                  # epoch seconds: runs finished before it do not count
    mode: str = "same_epochs"

    def __post_init__(self) -> None:
        d = self.protocol.data
        if d.dataset not in DIGIT_DATASETS:
            raise LampError(f"the class experiment hands out digits, so its protocol needs a digit data set "
                            f"(MNIST, Fashion-MNIST or the built-in digits), not {d.dataset!r}: use the lesson's "
                            "default or train such settings on Train & compare first")
        object.__setattr__(self, "digits", _ints(self.digits, "digits"))
        object.__setattr__(self, "seeds", _ints(self.seeds, "seeds"))
        object.__setattr__(self, "batch_sizes", _ints(self.batch_sizes, "batch sizes"))
        if not all(0 <= x <= 9 for x in self.digits):
            raise LampError(f"digits are 0-9, not {list(self.digits)}: choose the digits again")
        if min(self.seeds) < 0 or min(self.batch_sizes) < 1:
            raise LampError("seeds must be 0 or more and batch sizes 1 or more: choose them again")
        if self.mode not in lesson.STEP_MODES:
            raise LampError(f"unknown step mode {self.mode!r}: choose one of {', '.join(lesson.STEP_MODES)}")
        validate(self.protocol)
        object.__setattr__(self, "start", float(self.start))

    def cells(self) -> list[Cell]:
        """Every cell, in hand-out order: seed, then digit, then batch size (see the module doc)."""
        return [(d, s, b) for s in self.seeds for d in self.digits for b in self.batch_sizes]

    def configs(self, cell: Cell) -> tuple[RunConfig, RunConfig]:
        """The cell's (base, LAMP) runs: same seed, so same initial weights and batches (a pair)."""
        digit, seed, bs = cell
        cfg = self.protocol.with_data(normal_class=int(digit))
        cfg = lesson.batch_size_config(cfg, int(bs), self.mode)       # type: ignore[arg-type]
        return cfg.with_train(lamp=False, seed=int(seed)), cfg.with_train(lamp=True, seed=int(seed))

    def loss_name(self) -> str:
        return report.LOSS_NAME.get(self.protocol.train.base_loss, self.protocol.train.base_loss)

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol.to_dict(), "digits": list(self.digits), "seeds": list(self.seeds),
                "batch_sizes": list(self.batch_sizes), "start": self.start, "mode": self.mode}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Experiment":
        return cls(RunConfig.from_dict(d["protocol"]), tuple(d["digits"]), tuple(d["seeds"]),
                   tuple(d["batch_sizes"]), float(d["start"]), d.get("mode", "same_epochs"))


def lesson_experiment(start: float | None = None, **changes: Any) -> Experiment:
    """The lesson's class experiment (lesson.CLASS_GRID over lesson.DEFAULT_CONFIG), starting now."""
    grid = {**lesson.CLASS_GRID, **changes}
    return Experiment(grid.pop("protocol", lesson.DEFAULT_CONFIG), start=time.time() if start is None else start,
                      **grid)


# ----------------------------------------------------------------------------- Table 1 of a class

def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def table1(rows: Sequence[dict[str, Any]], exp: Experiment, *, done_cells: Sequence[Cell] = (),
           converged: dict[int, dict] | None = None, paper: dict[int, dict] | None = None) -> list[dict[str, Any]]:
    """The board's Table 1, one row per batch size of the grid (descending, as the paper's), with
    numbers only (the CSV the teacher downloads): from `report.cells` over the counted runs'
    `report.row_of` rows, the computation of `report.table1_markdown`: mean ± std over seeds, Δ
    with its pair-level interval (every (digit, seed) pair) and its class-level one
    (`Cell.by_unit`: each digit's mean Δ over its seeds, then a t-interval over digits; digits
    differ in how much LAMP helps, so this is the interval a new digit falls in), wins, and
    `report.verdict`'s words; plus the cells done and the paper's and the lab's converged Δ."""
    cs = report.cells(rows, cell_fields=["batch_size"], protocol="test") if rows else {}
    per_size = len(exp.digits) * len(exp.seeds)
    out = []
    for b in sorted(exp.batch_sizes, reverse=True):
        c = cs.get((b,))
        here = [r for r in rows if r["batch_size"] == b]
        p = c.paired if c else paired([])
        cl = c.by_unit if c else paired([])
        per_seed = Counter(r["seed"] for r in here if not r["lamp"])
        conv = (converged or {}).get(b) or {}
        pap = (paper or {}).get(b)
        out.append({
            "batch_size": b, "cells_done": sum(1 for cell in done_cells if cell[2] == b), "cells": per_size,
            "digits": len({r["unit"] for r in here}), "seeds": len(per_seed),
            "digits_per_seed": " ".join(f"{s}:{n}" for s, n in sorted(per_seed.items())),
            "base_auroc": _num(c.base[0]) if c else None, "base_sd": _num(c.base[1]) if c else None,
            "lamp_auroc": _num(c.lamp[0]) if c else None, "lamp_sd": _num(c.lamp[1]) if c else None,
            "delta_pairs": _num(p.mean), "delta_pairs_lo": _num(p.lo), "delta_pairs_hi": _num(p.hi),
            "pairs": p.n, "lamp_wins": p.wins,
            "delta_digits": _num(cl.mean), "delta_digits_lo": _num(cl.lo), "delta_digits_hi": _num(cl.hi),
            "digits_paired": cl.n, "verdict": report.verdict(p, cl, unit="digit"),
            "paper_delta": _num(pap["lamp"] - pap["l2"]) if pap else None,
            "converged_delta": _num(conv.get("delta", math.nan)), "converged_delta_lo": _num(conv.get("delta_lo", math.nan)),
            "converged_delta_hi": _num(conv.get("delta_hi", math.nan)), "converged_pairs": conv.get("pairs"),
        })
    return out


def _ci(mean, lo, hi) -> str:
    if mean is None:
        return "–"
    return f"{mean:+.3f}" + ("" if lo is None else f" [{lo:+.3f}, {hi:+.3f}]")


def display_table(table: Sequence[dict[str, Any]], loss_name: str = "L2") -> list[dict[str, str]]:
    """`table1`'s rows worded for the page, with the n beside every number."""
    out = []
    for t in table:
        def ms(arm: str) -> str:
            m, s = t[f"{arm}_auroc"], t[f"{arm}_sd"]
            n = t["seeds"]
            return "–" if m is None else f"{fmt_ms(m, math.nan if s is None else s)} (n={n} seed{'' if n == 1 else 's'})"
        out.append({
            "batch size": str(t["batch_size"]),
            "cells done": f"{t['cells_done']} of {t['cells']}",
            f"{loss_name} AUROC": ms("base"),
            f"{loss_name}-LAMP AUROC": ms("lamp"),
            "Δ over pairs [95% CI]": _ci(t["delta_pairs"], t["delta_pairs_lo"], t["delta_pairs_hi"])
            + (f" (n={t['pairs']} pairs)" if t["pairs"] else ""),
            "Δ over digits [95% CI]": _ci(t["delta_digits"], t["delta_digits_lo"], t["delta_digits_hi"])
            + (f" (n={t['digits_paired']} digits)" if t["digits_paired"] else ""),
            "LAMP wins": f"{t['lamp_wins']} of {t['pairs']}" if t["pairs"] else "–",
            "LAMP against the base": t["verdict"],
            "paper Δ": _ci(t["paper_delta"], None, None),
            "lab converged Δ [95% CI]": _ci(t["converged_delta"], t["converged_delta_lo"], t["converged_delta_hi"])
            + (f" (n={t['converged_pairs']} pairs)" if t["converged_pairs"] else ""),
        })
    return out


def fig_delta_vs_batch(table: Sequence[dict[str, Any]], *, loss_name: str = "L2", title: str | None = None):
    """Δ = LAMP − base AUROC against batch size (log axis): the class's pair-level and class-level
    (over digits) means with their 95% intervals as error bars, n beside each point, and the
    lab's converged Δ (with its interval) and the paper's Δ as references. No Streamlit."""
    import plotly.graph_objects as go

    fig = go.Figure()

    def bars(ys, los, his):
        return dict(type="data", symmetric=False, visible=True, thickness=1.5, width=5,
                    array=[0.0 if h is None else h - y for y, h in zip(ys, his)],
                    arrayminus=[0.0 if lo is None else y - lo for y, lo in zip(ys, los)])

    series = (("delta_pairs", "pairs", "class, over pairs", "#ef553b", 1.0),
              ("delta_digits", "digits_paired", "class, over digits", "#ab63fa", 1.12))
    for field, n_field, name, color, shift in series:
        pts = [t for t in table if t[field] is not None]
        if not pts:
            continue
        ys = [t[field] for t in pts]
        # the digit-level points sit a little to the right so the two sets of bars never overlap
        fig.add_trace(go.Scatter(
            x=[t["batch_size"] * shift for t in pts], y=ys, name=name, mode="markers+text",
            marker=dict(size=9, color=color), text=[f"n={t[n_field]}" for t in pts], textposition="middle right",
            textfont=dict(size=10, color=color), customdata=[t["batch_size"] for t in pts],
            error_y=bars(ys, [t[f"{field}_lo"] for t in pts], [t[f"{field}_hi"] for t in pts]),
            hovertemplate="batch %{customdata}<br>Δ %{y:+.4f} (%{text})<extra>" + name + "</extra>"))
    conv = [t for t in table if t["converged_delta"] is not None]
    if conv:
        ys = [t["converged_delta"] for t in conv]
        fig.add_trace(go.Scatter(
            x=[t["batch_size"] * 0.89 for t in conv], y=ys, name="lab, converged", mode="markers",
            marker=dict(size=8, symbol="diamond-open", color="#636efa"), customdata=[t["batch_size"] for t in conv],
            error_y=bars(ys, [t["converged_delta_lo"] for t in conv], [t["converged_delta_hi"] for t in conv]),
            hovertemplate="batch %{customdata}<br>Δ %{y:+.4f}<extra>lab, converged</extra>"))
    pap = [t for t in table if t["paper_delta"] is not None]
    if pap:
        fig.add_trace(go.Scatter(x=[t["batch_size"] for t in pap], y=[t["paper_delta"] for t in pap], name="paper",
                                 mode="markers", marker=dict(size=10, symbol="x-thin-open", color="#555",
                                                             line=dict(width=2)),
                                 hovertemplate="batch %{x}<br>Δ %{y:+.4f}<extra>paper (one number)</extra>"))
    fig.add_hline(y=0, line_dash="dot", line_color="#999")
    sizes = sorted({t["batch_size"] for t in table})
    span = [math.log10(sizes[0]) - 0.3, math.log10(sizes[-1]) + 0.3] if sizes else None
    fig.update_layout(
        title=title or f"LAMP − {loss_name} AUROC against batch size (the class's runs)",
        xaxis=dict(type="log", tickmode="array", tickvals=sizes, ticktext=[str(s) for s in sizes], range=span,
                   title="batch size (log scale)"),
        yaxis_title=f"Δ AUROC, LAMP − {loss_name} (95% CI)", template="plotly_white", height=420,
        legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"), margin=dict(t=60, l=60, r=20, b=50))
    return fig


# ----------------------------------------------------------------------------- the board

@dataclass
class Board:
    """What the page shows, computed from the board's state at one moment."""
    experiment: Experiment
    coverage: dict[Cell, str]                 # every cell's state (DONE, RUNNING, HANDED, MISSING)
    counts: dict[str, int]                    # cells per state
    runs: int                                 # counted runs (two per done cell)
    rows: list[dict[str, Any]]                # report.row_of of every counted run
    table: list[dict[str, Any]]               # `table1`
    markdown: str = ""                        # report.table1_markdown(rows): the same computation
    keys: tuple[str, ...] = field(default_factory=tuple)   # the counted runs' keys (what the numbers depend on)


class ClassBoard:
    """The process-wide class experiment of one run store; every method is thread-safe."""

    def __init__(self, store: "RunStore"):
        self.store = store
        self.path = store.root / STATE_NAME
        self._lock = threading.RLock()
        self._exp: Experiment | None = None
        self._given: dict[str, Cell] = {}         # session -> its current cell (MAX_SESSIONS at most)
        self._handed: Counter = Counter()        # cell -> times handed out since the start
        self._claimed: dict[str, float] = {}      # run key -> when a session was handed it done
        # run key -> its report row (a stored run never changes), MAX_ROWS at most
        self._rows: OrderedDict[str, dict] = OrderedDict()
        self._memo: tuple | None = None           # (keys, experiment, table, markdown)
        self.load_error: str | None = None
        self._load()

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            d = json.loads(self.path.read_text(encoding="utf-8"))
            exp = Experiment.from_dict(d["experiment"])
            given = {s: tuple(int(x) for x in c) for s, c in d.get("given", {}).items()}
            handed = Counter({tuple(int(x) for x in c[:3]): int(c[3]) for c in d.get("handed", [])})
            claimed = {str(k): float(v) for k, v in d.get("claimed", {}).items()}
        except Exception as exc:  # noqa: BLE001 - a broken file must not take the page down
            self.load_error = (f"the saved class experiment ({self.path}) could not be read "
                               f"({type(exc).__name__}: {exc}): the teacher can start a new one")
            warnings.warn(self.load_error, stacklevel=2)
            return
        self._exp, self._given, self._handed, self._claimed = exp, given, handed, claimed

    def _save(self) -> None:
        # caller holds the lock
        if self._exp is None:
            self.path.unlink(missing_ok=True)
            return
        d = {"version": 1, "experiment": self._exp.to_dict(),
             "given": {s: list(c) for s, c in self._given.items()},
             "handed": [[*c, n] for c, n in sorted(self._handed.items())],
             "claimed": self._claimed}
        atomic_write(self.path, json.dumps(d, indent=1))

    # ------------------------------------------------------------------ the teacher

    @property
    def experiment(self) -> Experiment | None:
        with self._lock:
            return self._exp

    def start(self, exp: Experiment) -> None:
        """Set up a (new) class experiment: its grid, protocol and start; hand-outs begin again."""
        with self._lock:
            self._exp = exp
            self._given.clear()
            self._handed.clear()
            self._claimed.clear()
            self._memo = None
            self.load_error = None
            self._save()

    def reset(self, start: float | None = None) -> None:
        """Empty the board: the same grid and protocol, counting runs from `start` (now) on, and
        every cell handed out afresh."""
        with self._lock:
            if self._exp is None:
                raise LampError("there is no class experiment to reset: start one first")
            from dataclasses import replace
            self.start(replace(self._exp, start=time.time() if start is None else float(start)))

    def end(self) -> None:
        """Remove the class experiment (its runs stay in the store)."""
        with self._lock:
            self._exp = None
            self._given.clear()
            self._handed.clear()
            self._claimed.clear()
            self._memo = None
            self._save()

    # ------------------------------------------------------------------ whose runs count

    def finished_at(self, cfg: RunConfig) -> float | None:
        """When a stored run finished (its evaluation.json, written last, marks it complete)."""
        if not self.store.has(cfg):
            return None
        try:
            return (self.store.folder(cfg) / "evaluation.json").stat().st_mtime
        except OSError:
            return None

    def _counts(self, cfg: RunConfig) -> bool:
        # caller holds the lock
        t = self.finished_at(cfg)
        return t is not None and (t >= self._exp.start or run_key(cfg) in self._claimed)

    def _cell_done(self, cell: Cell) -> bool:
        return all(self._counts(c) for c in self._exp.configs(cell))

    def _state(self, cell: Cell, queue: "JobQueue | None") -> str:
        if self._cell_done(cell):
            return DONE
        if queue is not None:
            from .jobs import FINAL
            for c in self._exp.configs(cell):
                v = queue.find_run(c)
                if v is not None and v.status not in FINAL:
                    return RUNNING
        return HANDED if self._handed.get(cell) else MISSING

    def coverage(self, queue: "JobQueue | None" = None) -> dict[Cell, str]:
        with self._lock:
            if self._exp is None:
                return {}
            return {cell: self._state(cell, queue) for cell in self._exp.cells()}

    # ------------------------------------------------------------------ the students

    def cell_of(self, session: str) -> Cell | None:
        """The cell this session was handed (None before its first hand-out)."""
        with self._lock:
            return self._given.get(session) if self._exp is not None else None

    def is_done(self, cell: Cell) -> bool:
        with self._lock:
            return self._exp is not None and self._cell_done(cell)

    def assign(self, session: str, queue: "JobQueue | None" = None) -> Cell | None:
        """The session's cell: the one it holds while that is unfinished, else the next one,
        round-robin over the cells nobody finished or holds (then the least handed out, so a
        cell two sessions hold trains once). None when there is no experiment or the grid is done."""
        with self._lock:
            if self._exp is None:
                return None
            cur = self._given.get(session)
            if cur is not None and cur in self._exp.cells() and not self._cell_done(cur):
                return cur
            order = {c: i for i, c in enumerate(self._exp.cells())}
            todo = [c for c in order if not self._cell_done(c)]
            if not todo:
                if self._given.pop(session, None) is not None:
                    self._save()
                return None

            def running(c: Cell) -> bool:      # someone trains it already (another page, an earlier hand-out)
                return queue is not None and self._state(c, queue) == RUNNING
            cell = min(todo, key=lambda c: (self._handed.get(c, 0), running(c), order[c]))
            self._handed[cell] += 1
            self._given.pop(session, None)            # re-inserted: the oldest hand-out is first out
            self._given[session] = cell
            for old in list(self._given)[:max(0, len(self._given) - MAX_SESSIONS)]:
                del self._given[old]                  # a forgotten session is handed a cell afresh
            self._save()
            return cell

    def train(self, session: str, queue: "JobQueue") -> list["JobView"]:
        """Queue the session's cell (base and LAMP) on the job queue, as the session; a run the
        store already holds comes back done at once and is claimed for the class (see the module
        doc). Raises LampError (e.g. QueueFull) with one line for the page."""
        cell = self.assign(session, queue)
        if cell is None:
            raise LampError("the class experiment has no cell left to train: every cell is done")
        with self._lock:
            cfgs = list(self._exp.configs(cell))
            start = self._exp.start
        views = queue.submit_runs(cfgs, session=session)      # outside the lock: a store hit loads a run
        now = time.time()
        with self._lock:
            if self._exp is not None and self._exp.start == start and now >= start:
                for c, v in zip(cfgs, views):
                    if v.status == "done" and v.result is not None and getattr(v.result, "evaluation", None):
                        self._claimed.setdefault(run_key(c), now)
                self._save()
        return views

    # ------------------------------------------------------------------ the board

    def counted_configs(self) -> list[RunConfig]:
        """The runs the board counts: both runs of every done cell, in hand-out order."""
        with self._lock:
            if self._exp is None:
                return []
            return [c for cell in self._exp.cells() if self._cell_done(cell) for c in self._exp.configs(cell)]

    def rows(self, configs: Sequence[RunConfig]) -> list[dict[str, Any]]:
        """`report.rows_from_store` of these configs, each loaded once per process."""
        keys = [run_key(c) for c in configs]
        with self._lock:
            missing = [c for c, k in zip(configs, keys) if k not in self._rows]
        loaded = report.rows_from_store(missing, self.store)     # outside the lock: loads checkpoints
        with self._lock:
            for r in loaded:
                self._rows[r["key"]] = r
            out = [self._rows[k] for k in keys if k in self._rows]
            for k in keys:
                if k in self._rows:
                    self._rows.move_to_end(k)
            while len(self._rows) > MAX_ROWS:
                self._rows.popitem(last=False)
            return out

    def board(self, queue: "JobQueue | None" = None, *, converged: dict | None = None,
              paper: dict | None = None) -> Board | None:
        """The board now: coverage, the counted runs' rows, Table 1 (memoised while the counted
        runs are the same). None without an experiment."""
        with self._lock:
            exp = self._exp
            if exp is None:
                return None
            coverage = self.coverage(queue)
        done = [c for c, s in coverage.items() if s == DONE]
        cfgs = [c for cell in done for c in exp.configs(cell)]
        rows = self.rows(cfgs)
        keys = tuple(sorted(r["key"] for r in rows))
        memo = self._memo
        refs = (repr(converged), repr(paper))
        if memo is not None and memo[0] == keys and memo[1] == exp and memo[2] == refs:
            table, markdown = memo[3], memo[4]
        else:
            table = table1(rows, exp, done_cells=done, converged=converged, paper=paper)
            markdown = report.table1_markdown(rows, loss=exp.protocol.train.base_loss) if rows else ""
            self._memo = (keys, exp, refs, table, markdown)
        counts = Counter(coverage.values())
        return Board(exp, coverage, {s: counts.get(s, 0) for s in STATES}, len(rows), rows, table, markdown, keys)
