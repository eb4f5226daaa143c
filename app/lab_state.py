"""What every page of the app shares: the process-wide job queue, the session's current
configuration, uploads, downloads and the sidebar.

Each page calls `setup()` first, so a page runs on its own (under `AppTest.from_file` or as
the entry script) exactly as it does inside `st.navigation`. Everything that is not Streamlit
glue lives in `lamp_core` (jobs, store, figures); this file only wires it to the session.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from lamp_core.config import OptionSpec, RunConfig, option_spec
from lamp_core.jobs import DONE, FINAL, QUEUED, JobQueue, JobView
from lamp_core.store import RunStore, default_root
from lamp_core.sweep import describe as describe_config

from lab_defaults import BATCH_LANDSCAPE, BATCH_SIZES, DEFAULT_CONFIG, DEFAULT_LANDSCAPE, DEFAULT_SEEDS  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
POLL_S = float(os.environ.get("LAMP_POLL_S", "1.0"))  # how often a running page looks at its jobs (s)
# a page whose polling fragment has not run for this long, while the last full run started it, has
# lost its timer: the sidebar's fragment reruns the page (`poll_stalled`)
STALL_S = max(5.0, 5 * POLL_S)


def data_root() -> Path | None:
    """The folder the app offers MNIST / Fashion-MNIST / MVTec-layout data from:
    $LAMP_DATA_ROOT, else `data/` in the repository (git ignores it)."""
    env = os.environ.get("LAMP_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    return REPO / "data" if (REPO / "data").is_dir() else None


def max_upload_mb() -> int:
    """The largest accepted upload in MB ($LAMP_MAX_UPLOAD_MB, default 200)."""
    try:
        return max(1, int(os.environ.get("LAMP_MAX_UPLOAD_MB", "200")))
    except ValueError:
        return 200


def find_folders(kind: str, max_depth: int = 3) -> list[str]:
    """Folders under the data root (relative paths) that hold `kind` data: "idx" (MNIST-style
    IDX files) or "mvtec" (a category: train/good/)."""
    root = data_root()
    if root is None or not root.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if kind == "idx" and any(f.startswith("train-images-idx3-ubyte") for f in filenames):
            out.append(here.relative_to(root).as_posix())
        if kind == "mvtec" and (here / "train" / "good").is_dir():
            out.append(here.relative_to(root).as_posix())
            dirnames[:] = []
    return out


# No max_entries on purpose: keyed by the run store's folder only (one $LAMP_STORE per process, so
# one entry), and evicting a queue would orphan its running jobs.
@st.cache_resource(show_spinner=False)
def _queue_for(store_root: str) -> JobQueue:
    _keep_heap_small()
    _stacks_on_signal()
    _deliver_finished_runs_first()
    return JobQueue(RunStore(store_root))


def _stacks_on_signal() -> None:
    """`kill -USR1 <server pid>` writes every thread's Python stack to the server's stderr: what a
    page that stopped answering is waiting for, without stopping the class's server."""
    import faulthandler
    import signal
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (AttributeError, ValueError, RuntimeError, OSError):    # no SIGUSR1 here (Windows)
        pass


def _deliver_finished_runs_first() -> None:
    """Work around a race in Streamlit's AppSession that froze pages under load.

    A session's script runner stops when a run ends with nothing queued. A fragment's timer
    that fires just then finds it stopped, so AppSession starts a new runner at once, and from
    then on ignores every event of the old one still waiting on the event loop: the end of the
    run that just finished (its elements, its `auto_rerun` messages, its script_finished) never
    reaches the browser. The page then stays on its progress view with no timer to poll it
    (bench/class_soak.py lost 3-8 jobs per soak this way, all on pages whose last full run was
    cut after the sidebar). The old runner queued all of its run's events before it stopped,
    so starting the new runner one loop turn later, behind them, delivers them first."""
    try:
        from streamlit.runtime.app_session import AppSession
        create = AppSession._create_scriptrunner
    except (ImportError, AttributeError):            # another Streamlit: the watchdog remains
        return
    if not getattr(create, "lamp_deferred", False):
        AppSession._create_scriptrunner = start_fragment_runners_late(create)


def start_fragment_runners_late(create: Callable) -> Callable:
    """`AppSession._create_scriptrunner` that, for a fragment's rerun while the session still holds
    its finished runner, starts the new runner one event-loop turn later (see above)."""
    def create_after_pending_events(self, initial_rerun_data) -> None:
        stale = getattr(self, "_scriptrunner", None)
        loop = getattr(self, "_event_loop", None)
        if stale is None or loop is None or not getattr(initial_rerun_data, "fragment_id", None):
            create(self, initial_rerun_data)          # no finished run to lose: as Streamlit does
            return

        def later() -> None:
            if getattr(getattr(self, "_state", None), "name", "") == "SHUTDOWN_REQUESTED":
                return                                # the tab closed meanwhile
            runner = self._scriptrunner
            if runner is not None and runner is not stale and runner.request_rerun(initial_rerun_data):
                return                                # a newer runner (a full rerun) took it
            create(self, initial_rerun_data)
        loop.call_soon(later)

    create_after_pending_events.lamp_deferred = True
    return create_after_pending_events


MALLOC_TRIM_S = 30.0      # how often the server hands freed heap back to the OS
MMAP_THRESHOLD_BYTES = 256 * 1024   # larger blocks get their own pages, returned when freed


def _keep_heap_small() -> None:
    """A long-running server whose page scripts run in many threads: glibc gives threads their
    own malloc arenas (up to 8 per core) and keeps what Python frees in them, so the server's
    memory only grows over a lab (issue: +61 MB over the last half of a soak). Two arenas, and a
    malloc_trim every MALLOC_TRIM_S, hand freed memory back. A fixed mmap threshold keeps the
    large short-lived buffers of a page run (a figure's JSON, a message, an image) out of the
    heap: glibc raises its threshold to the largest block freed (up to 32 MB), after which such
    buffers are carved from the heap between long-lived objects, and the heap's free space grew
    from 90 to 111 MB over the last half of a 30-minute soak while the live heap stayed at
    270-280 MB. No-op where libc is not glibc."""
    import threading
    import time
    from lamp_core.heap import limit, trim
    if not limit(arenas=2, mmap_threshold_bytes=MMAP_THRESHOLD_BYTES):
        return

    def keeper() -> None:
        while True:
            time.sleep(MALLOC_TRIM_S)
            trim()
    threading.Thread(target=keeper, name="lamp-malloc-trim", daemon=True).start()


def queue() -> JobQueue:
    """The one job queue of this server process (per run-store folder)."""
    return _queue_for(str(default_root()))


def session_id() -> str:
    """This browser session's name in the job queue (fair turns, the cap, Stop are per session)."""
    return st.session_state.setdefault("_session_id", uuid.uuid4().hex[:12])


def setup(title: str | None = None) -> JobQueue:
    """Call first on every page: shared state and the live sidebar."""
    ss = st.session_state
    ss["_full_run_at"] = time.time()
    ss["_page_polls"] = False            # poll() sets it when this run starts a polling fragment
    ss.setdefault("config", DEFAULT_CONFIG.to_dict())
    ss.setdefault("seeds", DEFAULT_SEEDS)
    arriving = "_session_id" not in ss
    q = queue()
    if arriving:                         # a student who opens the lab clicks soon (the queue's ETAs)
        q.note_arrival(session_id())
    with st.sidebar:
        # poll often while this session has work, rarely when idle (30 idle sessions polling every
        # second would take CPU time from the training worker)
        busy = bool(q.jobs(session=session_id()))
        st.fragment(run_every=POLL_S if busy else 5 * POLL_S)(_sidebar)()
        st.caption(f"Run store: `{_short(q.store.root)}`", help="Finished runs and landscapes are kept here "
                   "and never trained twice. Set LAMP_STORE to move it.")
    if title:
        st.title(title)
    return q


def poll_stalled(state, now: float) -> bool:
    """True when the page's last full run started its polling fragment (`poll`) but neither that
    fragment nor a full run has run for STALL_S: the page lost its timer and freezes on its
    progress view. The backstop for `_deliver_finished_runs_first`, should another Streamlit drop
    a run's end some other way."""
    if not state.get("_page_polls"):
        return False
    return now - max(state.get("_polled_at", 0.0), state.get("_full_run_at", 0.0)) > STALL_S


def _sidebar() -> None:
    """The server's queue and this session's jobs (drawn in a polling fragment by setup()). Also
    the page's watchdog: it reruns a page whose polling stalled (`poll_stalled`)."""
    if poll_stalled(st.session_state, time.time()):
        st.rerun(scope="app")
    q = queue()
    c = q.counts()
    st.caption(f"Worker{'s' if len(q.devices) > 1 else ''}: {', '.join(q.devices)} · "
               f"{c['running']} running · {c['queued']} queued",
               help="Every session on this server shares the workers. Turns go round-robin over the "
                    "sessions that wait, a slice of about two seconds each, so a short job never waits "
                    "for a long one to finish.")
    mine = q.jobs(session=session_id())
    if mine:
        st.caption("**Your jobs**")
        for v in mine[:8]:
            st.caption(job_line(v))
        if len(mine) > 8:
            st.caption(f"… and {len(mine) - 8} more")


def job_line(v: JobView) -> str:
    """One line about a job: its state, its place in the queue and when it should be done."""
    eta = eta_text(v.eta_s)
    shared = f" · shared with {v.wanted_by - 1} other session{'s' if v.wanted_by > 2 else ''}" \
        if v.wanted_by > 1 else ""
    if v.status == QUEUED:
        where = f"queued, position {v.position}" if v.position else "queued"
        return f"{v.label}: {where}{eta}{shared}"
    if v.status in FINAL:
        return f"{v.label}: {v.status}"
    return f"{v.label}: {v.progress:.0%}{eta}{shared}"


def _seconds(s: float) -> str:
    """A wait as a student reads it. Whole minutes from 90 s on showed "2 min" for anything
    between 90 and 150 s: an error of up to 40% before the estimate itself is wrong (in the
    soak, 85 s read as "2 min"). Seconds to 3 min (in steps of 5 s past a minute), then minutes
    to one decimal up to 10 min, whole minutes beyond."""
    if s < 60:
        return f"{s:.0f} s"
    if s < 180:
        return f"{5 * round(s / 5):.0f} s"
    return f"{s / 60:.1f} min" if s < 600 else f"{s / 60:.0f} min"


RECENT_PAGE_RUNS = 10      # full page runs whose durations this session remembers


def note_page_run(seconds: float) -> None:
    """Remember how long this session's last full page runs took (streamlit_app.py times each)."""
    runs = st.session_state.setdefault("_page_run_s", [])
    runs.append(seconds)
    del runs[:-RECENT_PAGE_RUNS]


def shown_eta(eta_s: float | None) -> float | None:
    """The queue's ETA (until the job is done in the queue) as the wait until the results are on
    this page: plus a poll interval (the page looks every POLL_S) and the median of the session's
    recent full page runs (when the job ends, the page runs once more to draw the results). The
    longest run instead overshot by 40-120% in the soak's last phase (bench/class_soak.py)."""
    if not eta_s:
        return None
    runs = sorted(st.session_state.get("_page_run_s") or [0.0])
    return eta_s + POLL_S + runs[len(runs) // 2]


def eta_text(eta_s: float | None, form: str = " · about {} left") -> str:
    shown = shown_eta(eta_s)
    return form.format(_seconds(shown)) if shown else ""


def _short(p: Path) -> str:
    try:
        return "~/" + str(p.relative_to(Path.home()))
    except ValueError:
        return str(p)


def current_config() -> RunConfig:
    """The configuration last trained on Train & compare (the default until Train is pressed)."""
    return RunConfig.from_dict(st.session_state.get("config", DEFAULT_CONFIG.to_dict()))


def set_current_config(cfg: RunConfig, seeds: int) -> None:
    st.session_state["config"] = cfg.to_dict()
    st.session_state["seeds"] = int(seeds)


def spec_help(name: str, more: str = "") -> str:
    """A widget's help: its option's one sentence from `lamp_core.config` (as `lamp --help` shows
    it), then what the page adds."""
    text = option_spec(name).help
    return f"{text[0].upper()}{text[1:]}." + (f" {more}" if more else "")


def spec_range(name: str) -> tuple[int | float | None, int | float | None]:
    """(min, max) of an option for a number widget, from `lamp_core.config` (None where unbounded).
    Closed bounds only: a widget cannot exclude its bound (lr > 0), so such options keep their own."""
    spec: OptionSpec = option_spec(name)
    if spec.min_open or spec.max_open:
        raise ValueError(f"{name} has an open bound: give its widget limits of its own")
    cast = spec.kind if spec.kind in (int, float) else float
    return (None if spec.min is None else cast(spec.min)), (None if spec.max is None else cast(spec.max))


def describe(cfg: RunConfig) -> str:
    """The label of the comparison a page trains from `cfg` (base and LAMP over seeds): the one
    configuration label, `lamp_core.sweep.describe`, without what differs between those runs."""
    return describe_config(cfg, comparison=True)


# ----------------------------------------------------------------------------- polling

def poll(render: Callable[[], bool], *, key: str) -> None:
    """Draw `render()` (which returns True while its work is still running) inside a fragment
    that reruns itself every POLL_S seconds while busy. A fragment's timer is fixed when the
    whole page runs, so a change between busy and idle reruns the page once: the finished
    results replace the progress view when the work ends.

    Polling starts in the page run that submitted the work, not one rerun later: a session with
    unfinished jobs in the queue polls at once. A page whose browser never heard its timer (a
    run's end dropped under load) is rerun by the sidebar's fragment (`poll_stalled`)."""
    flag = f"_busy_{key}"
    # (the flag itself is only the fragment's to set: forcing it here while another page's job
    # keeps the session busy would rerun this page forever)
    active = bool(st.session_state.get(flag)) or bool(queue().jobs(session=session_id()))
    if active:
        st.session_state["_page_polls"] = True

    @st.fragment(run_every=POLL_S if active else None)
    def body() -> None:
        st.session_state["_polled_at"] = time.time()
        busy = bool(render())
        was = bool(st.session_state.get(flag, False))
        st.session_state[flag] = busy
        if busy != was:
            st.rerun(scope="app")

    body()


def views(ids: list[int]) -> list[JobView | None]:
    q = queue()
    return [q.get(i) for i in ids]


def all_final(vs: list[JobView | None]) -> bool:
    return all(v is None or v.status in FINAL for v in vs)


def show_job(v: JobView | None, *, label: str | None = None) -> None:
    """One line of progress for a job."""
    if v is None:
        st.caption("(job forgotten: press the button again; finished runs load from the store)")
        return
    name = label or v.label
    if v.status == DONE:
        st.caption(f"✓ {name}: {'from the run store' if v.cached else 'done'}")
    elif v.status in ("stopped", "failed"):
        st.caption(f"■ {name}: {v.status}")
        if v.error:
            st.error(page_message(v.error.splitlines()[0]))
    elif v.status == QUEUED:
        eta = eta_text(v.eta_s, ", done in about {}")
        st.progress(0.0, text=f"{name}: waiting, position {v.position or '?'} in the queue{eta}")
    else:
        eta = eta_text(v.eta_s)
        shared = f" · shared with {v.wanted_by - 1} other session(s)" if v.wanted_by > 1 else ""
        st.progress(v.progress, text=f"{name}: {v.message}{eta}{shared}")


# Engine messages are written for the terminal too; the page words them for the browser.
PAGE_WORDING = (
    ("pass a folder or a .zip", "upload a .zip archive"),
    (" (--data-root DIR)", ""),
    ("--data-root", "the data root"),
)


def page_message(text: str, names: dict[str, str] | None = None) -> str:
    """An engine message as the page shows it: browser wording, server paths replaced by the
    names the user knows (e.g. a temporary upload path by the uploaded file's name)."""
    for path, name in (names or {}).items():
        text = text.replace(path, name)
    for cli, page in PAGE_WORDING:
        text = text.replace(cli, page)
    return text


def stale_notice(shown: str, *, button: str, key: str) -> bool:
    """One visible notice that the results below belong to other settings (`shown` describes
    them), with a button to train the current ones. True when that button was pressed."""
    st.warning(f"The results below are for **{shown}**, not for the settings above, which have changed "
               "since. Train the current settings to see theirs.", icon=":material/history:")
    return st.button(button, key=key, type="primary",
                     help="Queue the current settings (finished runs load from the run store at once).")


MAX_MEMO_FIGURES = 8   # figures memoised per session (a plotly figure is up to a few MB)


def memo_figure(key: str, inputs: Any, build: Callable[[], Any]):
    """Rebuild a figure only when its inputs change: a polling page redraws every POLL_S, but
    live loss curves change once per epoch, and building plotly figures costs CPU that the
    training worker needs. One figure per key and session; the keys are literals of the pages
    (three today), and at most MAX_MEMO_FIGURES are kept, least recently built first out."""
    slot = st.session_state.setdefault("_figure_memo", {})
    hit = slot.get(key)
    if hit is not None and hit[0] == inputs:
        return hit[1]
    fig = build()
    slot.pop(key, None)
    slot[key] = (inputs, fig)
    while len(slot) > MAX_MEMO_FIGURES:
        del slot[next(iter(slot))]
    return fig


# ----------------------------------------------------------------------------- downloads

# Download buttons never rerun the page (on_click="ignore"): a rerun re-registers every button's
# file, and a second click within a second of the first used to reach a file the rerun had
# dropped ("MediaFileStorageError: Deferred file ... not found"). Tables are small and given as
# bytes (their file id is their content hash, stable across reruns); a figure's HTML carries
# plotly.js (about 4.7 MB), so it is made on click rather than held in memory for every session.

def download_figure(fig, name: str, *, key: str) -> None:
    """A download button for one figure as a self-contained HTML file (made on click)."""
    st.download_button(f"Download {name} (HTML)", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                       file_name=f"{name}.html", mime="text/html", key=key, on_click="ignore",
                       help="The interactive figure as one HTML file that opens offline in any browser.")


def download_table(rows: list[dict[str, Any]], name: str, *, key: str) -> None:
    """CSV and JSON download buttons for a list of flat result rows."""
    c1, c2 = st.columns(2)
    c1.download_button(f"{name}.csv", data=_csv(rows).encode(), file_name=f"{name}.csv", mime="text/csv",
                       key=key + "_csv", on_click="ignore",
                       help="One row per run: settings and metrics, for a spreadsheet.")
    c2.download_button(f"{name}.json", data=json.dumps(rows, indent=1).encode(), file_name=f"{name}.json",
                       mime="application/json", key=key + "_json", on_click="ignore",
                       help="The same rows as JSON.")


def _csv(rows: list[dict[str, Any]]) -> str:
    import csv
    buf = io.StringIO()
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- uploads

def upload_dir() -> Path:
    """A private (0700) folder for uploads beside the run store: `<store>/uploads/`."""
    d = queue().store.root / "uploads"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def save_upload(data: bytes) -> Path:
    """Write an uploaded zip (already size-checked) as `<store>/uploads/<sha256>.zip`: named by its
    content, so its path (the runs' data_root, and so their run keys) is the same after a restart
    or a second upload of the same bytes, and its runs are found in the store. The engine reads
    it member by member in memory, never extracting it."""
    digest = hashlib.sha256(data).hexdigest()
    path = upload_dir() / f"{digest}.zip"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return path


def discard_upload(path: Path) -> None:
    Path(path).unlink(missing_ok=True)


def upload() -> dict | None:
    """The validated upload of this session: {"path", "name", "summary"} or None."""
    up = st.session_state.get("upload")
    if up and Path(up["path"]).is_file():
        return up
    return None
