"""A soak test of a lab session: many sessions against ONE real app server (issue 18, item 4).

The server is the app as it ships (`bench/app_server.start`: `streamlit run app/streamlit_app.py`
on a loopback port, fresh run store). Every session is a client of Streamlit's own websocket
protocol (`/_stcore/stream`, the BackMsg/ForwardMsg protobufs the browser speaks), driven from
one asyncio loop in this process. Each session does what the browser's frontend does for the app:
it reruns the page with its widget states, presses buttons (trigger values), sets select boxes
and the batch slider (their formatted option strings), uploads the example zip through the
server's upload endpoint and its file_uploader state, and reruns every polling fragment at the
interval the server asks for (`auto_rerun`). A page reload is a new websocket, a new session.
Why not browsers: 30 headless Chromium pages would spend the 2 shared cores on React rendering
that, in a real class, happens on the students' machines; they would slow the server's training
and make `train_slowdown` and `server_cpu_share` measure the browsers. The protocol clients load
the server exactly as browsers do (same messages, same reruns, same polling), at a few ms of
client CPU each.

The lab's mix (one plan per session, seeded, reshuffled round after round until the clicks end): the default comparison (Train & compare's "Train
base and LAMP"), other digits (the "Normal class" select box), a batch size (Batch size page,
"Train batch N"), landscapes ("Compute landscapes"), an upload for every third session (assets/
example_upload.zip on Your data, then "Use this data on Train & compare" and Train), Stop
buttons, and page reloads, with think times in between. After `--minutes` the sessions stop
clicking and wait for the queue to empty (`--drain` seconds at most, DRAIN_S by default: the
backlog of a saturated class takes minutes), then the poll phase (see `train_slowdown`); jobs
still outstanding then (a landscape clicked just before the clicks ended, queued behind the poll
phase's job) get up to END_DRAIN_S more, so `lost` counts work that never came, not work cut off
by the run's end.

Counting:
* `jobs`: clicks that submitted work (Train, Train batch N, Compute landscapes);
* `lost`: submitted jobs (not stopped by their session) whose result never appeared before the
  end: a job's result has appeared when a full run of its page, after the click, shows no
  progress bar (every job on the page final: ✓ or ■) and has stopped the page's polling, or the
  polling fragment's next run shows no progress bar either (`page_done_at`: on a loaded server
  a full run's fragment elements can be dropped from the send queue and redrawn by the fragment;
  `jobs_with_a_run_that_looked_done` counts the jobs where that happened). Split in `lost_unfinished` (the page still
  showed it queued/running at the end: throughput, not loss) and `lost_vanished` (the rest);
* `duplicated`: run keys stored more than once: a watcher scans the run store every 2 s and
  notes each run folder's evaluation.json identity (inode, mtime); the store writes it last and
  atomically (os.replace), so a second training of a key gives a new identity;
* `failed`: sessions whose page showed an exception or an error box (st.error) at least once;
* `rss_*_mb`: memory of the server process and its descendants (the forkserver and the worker
  processes) together: the sum of their proportional set sizes (PSS, /proc/<pid>/smaps_rollup),
  which counts each page once; a sum of VmRSS would count torch's shared libraries, and the pages a
  forked worker shares with its forkserver, once per process. Sampled every 2 s. The server's
  memory moves by ±15 MB from one sample to the next as pages build figures and drop them, so
  `rss_half_mb` is the mean of the samples in the MEMORY_WINDOW_S around the middle of the
  soak, `rss_end_mb` the mean of its last MEMORY_WINDOW_S, and `rss_growth_last_half_mb` end -
  half (`rss_growth_by_process_mb` splits it by process kind; `rss_growth_two_samples_mb`: the last sample minus the one nearest the middle, the noisy
  figure reported before); `rss_slope_last_half_mb_per_min` is the least-squares slope of all
  samples of the last half; `rss_clicks_end_mb` the sample when the clicks end;
  `memory_by_process_*` splits them; `server_mb_series` and `worker_mb_series` are the server's
  and the (CPU) worker's PSS every minute [minutes from the start, MB];
* `server_cpu_share`: CPU seconds of the Streamlit process over the soak's wall seconds, as a
  share of one core (/proc/<pid>/stat utime+stime); `tree_cpu_share` with its workers;
* `train_slowdown`: one fixed job, the default comparison (base + LAMP x 3 seeds, 6 runs), trained
  three times on this server in the same run: alone (a probe session on digit 0, before the
  class connects), in the poll phase (digit 1): after the clicks end and the queue has emptied
  (the probe's sidebar reads "0 running · 0 queued", or `--drain` s at most) every session asks
  for that same job (shared: trained once) and polls it every POLL_S, as a class watching one
  run does; and alone again (digit 2) once the class has gone and the queue is empty. No other
  session trains digits 0, 1 or 2; the subset's digits have the same number of images. The
  ratio of the 6 runs' own training seconds (the `seconds` their stack measured, from the
  store's checkpoints), polled / the mean of the two alone runs (`slowdown`): the machine's
  speed drifts over a soak, and the alone runs bracket the polled one;
  `train_slowdown_vs_first_alone` is polled / the first alone run, the figure of the soaks
  recorded before; `train_wall_slowdown` is polled / first alone for click-to-done;
* `eta_error_median`: for each finished job whose page showed an ETA in the first 5 s after the
  click ("about N s left" / "done in about N s"; the largest on the page, in a full or fragment
  run of the page that began after the click: `eta_since_click`), |ETA - actual| / actual,
  actual = click to the result appearing.

    nice -n 5 .venv/bin/python bench/class_soak.py --quick --json   # 30 sessions, 12 minutes
    .venv/bin/python bench/class_soak.py                            # 30 sessions, 30 minutes
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import platform
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
OUT = REPO / "bench" / "results"
ZIP = REPO / "assets" / "example_upload.zip"

TARGETS = {"lost": ("==", 0), "duplicated": ("==", 0), "failed": ("==", 0), "rss_peak_mb": ("<=", 2500),
           "rss_growth_last_half_mb": ("<=", 0), "train_slowdown": ("<=", 1.2), "eta_error_median": ("<=", 0.3)}
PROBE_ALONE, PROBE_SOAK, PROBE_ALONE_AFTER = 0, 1, 2   # digits only the probe trains
CLIENT_NICE = 10                        # the protocol clients' niceness once the server runs
# The quick run's length: the server fills its bounded caches and its sessions' pages for its
# first 6-8 minutes of a class (523 to 775 MB), so a 5-minute run ends while it still grows and
# cannot show whether memory holds still; from 12 minutes on, the last half is past the filling
QUICK_MINUTES = 12.0
# The poll phase is the class watching one run with nothing else queued, so it waits for the
# queue to empty. The class's mix saturates the 2 cores: each busy session has one job in the
# round-robin when the clicks stop, 400 s of work or more. The caps of 40 s (quick) and 180 s
# (full) this had before started the poll phase with that backlog still training: the job the
# class shares then waited behind it, its training shared the worker with it, and the soak's end
# window measured the backlog, none of which the poll phase is meant to measure.
DRAIN_S = 900.0
POLL_PHASE_S = 90.0                     # at most this long for the shared job of the poll phase
END_DRAIN_S = 120.0                     # then at most this long for jobs still outstanding

# ----------------------------------------------------------------------------- pure parts

_ETA = re.compile(r"(?:about|done in about)\s+(\d+(?:\.\d+)?)\s*(s|min)\b")


_COUNTS = re.compile(r"(\d+) running · (\d+) queued")
SIDEBAR = 1                  # the sidebar's root container: the first index of a delta's path


class FullRun(NamedTuple):
    """A full run of a page, as the client received it: its elements, the fragment timers it
    set (fragment id -> interval) and its place among the page's messages."""
    t: float
    elems: list
    armed: dict
    seq: int


class FragRun(NamedTuple):
    """A fragment run: which fragments it reran, how many elements and progress bars it drew."""
    seq: int
    fragment_ids: tuple
    n_elems: int
    n_progress: int


def parse_eta(text: str) -> float | None:
    """Seconds of the ETA in one line of the page ("… · about 12 s left", "…, done in about
    2 min"), None when the line shows none."""
    m = _ETA.search(text)
    if not m:
        return None
    return float(m.group(1)) * (60.0 if m.group(2) == "min" else 1.0)


def max_eta(texts) -> float | None:
    etas = [e for e in (parse_eta(t) for t in texts) if e is not None]
    return max(etas) if etas else None


def read_rss_mb(pid: int, proc: str = "/proc") -> float:
    """VmRSS of one process in MB (0 when it is gone)."""
    try:
        for line in Path(proc, str(pid), "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def read_pss_mb(pid: int, proc: str = "/proc") -> float:
    """Proportional set size of one process in MB: its private pages plus its share of the pages
    it shares (torch's libraries, pages a forked worker still shares with the forkserver). Summed
    over processes it counts each page once, where VmRSS sums count shared pages in every process
    that maps them. Falls back to VmRSS where smaps_rollup is missing (0 when the process is gone)."""
    try:
        for line in Path(proc, str(pid), "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return read_rss_mb(pid, proc)


def process_name(pid: int, proc: str = "/proc") -> str:
    """server, worker, forkserver or other: what a process of the app server's tree is."""
    try:
        cmd = Path(proc, str(pid), "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "streamlit" in cmd:
        return "server"
    if "forkserver" in cmd:
        return "forkserver"
    return "worker" if "python" in cmd else "other"


def memory_by_kind(pids: list[int]) -> dict[str, float]:
    """PSS (MB) of the given processes summed by what they are (`process_name`): server,
    forkserver, worker, other."""
    by_kind: dict[str, float] = {}
    names = {p: process_name(p) for p in pids}
    for p in pids:
        name = names[p]
        if names.get(parent_of(p)) == "forkserver":
            name = "worker"             # forked from it, so its command line is the forkserver's
        by_kind[name] = round(by_kind.get(name, 0.0) + read_pss_mb(p), 1)
    return by_kind


def parent_of(pid: int, proc: str = "/proc") -> int | None:
    try:
        raw = Path(proc, str(pid), "stat").read_text()
        return int(raw[raw.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def read_cpu_s(pid: int, proc: str = "/proc", hz: int | None = None) -> float:
    """utime + stime of one process in seconds, from /proc/<pid>/stat (0 when it is gone)."""
    hz = hz or os.sysconf("SC_CLK_TCK")
    try:
        raw = Path(proc, str(pid), "stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()     # the command may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / hz   # fields 14, 15 of stat(5), after pid and comm


def descendants(pid: int, proc: str = "/proc") -> list[int]:
    """pid and every process below it (worker processes, when the server has any)."""
    kids: dict[int, list[int]] = {}
    for d in Path(proc).iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
            ppid = int(raw[raw.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


class StoreWatcher:
    """Which run keys were stored more than once: each run folder's evaluation.json identity
    (inode, mtime_ns), noted at every scan; a change is a second store of that key."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.seen: dict[str, tuple[int, int]] = {}
        self.rewrites: dict[str, int] = {}

    def scan(self) -> None:
        if not self.root.is_dir():
            return
        for d in self.root.iterdir():
            try:
                st = (d / "evaluation.json").stat()
            except OSError:
                continue
            ident = (st.st_ino, st.st_mtime_ns)
            old = self.seen.get(d.name)
            if old is not None and old != ident:
                self.rewrites[d.name] = self.rewrites.get(d.name, 0) + 1
            self.seen[d.name] = ident

    @property
    def duplicated(self) -> int:
        return len(self.rewrites)


@dataclass
class Job:
    session: int
    what: str
    t_click: float
    eta_s: float | None = None
    t_done: float | None = None
    stopped: bool = False
    still_running: bool = False        # the last full run seen still showed a progress bar
    eta_stale_ignored: bool = False    # a fragment run from before the click showed another ETA
    looked_done: int = 0               # full runs that drew no progress bar while the page still polled
    last_seen: str = ""                # for a lost job: what its page showed last
    trail: list = field(default_factory=list)   # and its page's last protocol events


def count_jobs(jobs: list[Job]) -> dict:
    """lost (split), stopped and the ETA errors of a list of submitted jobs."""
    live = [j for j in jobs if not j.stopped]
    lost = [j for j in live if j.t_done is None]
    errs = [abs(j.eta_s - (j.t_done - j.t_click)) / (j.t_done - j.t_click)
            for j in live if j.t_done is not None and j.eta_s and j.t_done - j.t_click > 0.5]
    # (shown, actual, what was clicked, seconds after the first click): where the ETAs miss
    t0 = min((j.t_click for j in jobs), default=0.0)
    pairs = [(round(j.eta_s, 1), round(j.t_done - j.t_click, 1), j.what, round(j.t_click - t0))
             for j in live if j.t_done is not None and j.eta_s and j.t_done - j.t_click > 0.5]
    return {"jobs": len(jobs), "stopped": len(jobs) - len(live), "lost": len(lost),
            "lost_detail": [f"session {j.session} {j.what}: {j.last_seen}" for j in lost][:20],
            "lost_trails": [[f"session {j.session} {j.what}: events from its click on"] + j.trail
                            for j in lost][:5],
            "done_too_soon": [[f"session {j.session} {j.what}: ETA {j.eta_s:.0f} s, done after "
                               f"{j.t_done - j.t_click:.1f} s"] + j.trail for j in live if done_too_soon(j)][:5],
            "eta_and_actual_s": pairs,
            "lost_unfinished": sum(j.still_running for j in lost),
            "lost_vanished": sum(not j.still_running for j in lost),
            "eta_samples": len(errs),
            "eta_stale_fragment_ignored": sum(j.eta_stale_ignored for j in jobs),
            "jobs_with_a_run_that_looked_done": sum(j.looked_done > 0 for j in jobs),
            "eta_error_median": round(statistics.median(errs), 3) if errs else None}


def verdicts(result: dict) -> dict:
    out = {}
    for k, (op, target) in TARGETS.items():
        v = result.get(k)
        if v is None:
            out[k] = "n/a"
        else:
            ok = v == target if op == "==" else v <= target
            out[k] = f"{'meets' if ok else 'MISSES'} ({op} {target})"
    return out


# ----------------------------------------------------------------------------- protocol client

class Page:
    """One browser tab's worth of Streamlit protocol over one websocket."""

    def __init__(self, url: str, idx: int, log: list):
        self.url, self.idx, self.log = url, idx, log
        self.ws = None
        self.session_id = ""
        self.page = ""
        self.widgets: dict[str, object] = {}         # widget id -> WidgetState kept across reruns
        self.elements: dict[str, dict] = {}          # label -> {kind, id, options}
        self.run_elems: list = []                    # (kind, text) of the run in progress
        self.run_autoreruns: dict[str, float] = {}
        self.timers: dict[str, float] = {}            # fragment id -> interval
        self.next_fire: dict[str, float] = {}
        self.full_runs: list[FullRun] = []            # each finished full run, in order
        self.frag_runs: collections.deque = collections.deque(maxlen=4000)   # FragRun: each fragment run
        self.seq = 0                                 # messages read so far: orders runs within one flush
        self.run_fragment_ids: list[str] = []        # the fragments the run in progress reruns ([]: a full run)
        self.sidebar_fragments: set[str] = set()     # fragments drawn in the sidebar (the queue's caption)
        self.errors: list[str] = []
        self.queue_counts: tuple[float, int, int] | None = None   # (time, running, queued) of the sidebar
        self.running = False
        self.running_since = 0.0                     # when the rerun now awaited was sent
        self.last_msg_at = 0.0                       # when the server last sent anything
        self.frag_elems: list = []                   # (kind, text) of the latest fragment run
        self.frag_at = 0.0                           # when that fragment run finished
        self.closed_reason = ""                      # why the reader ended, if it did
        self.url_resp: asyncio.Future | None = None
        self.reader = None
        self.poller = None
        # the last protocol events (time, what): a lost job's detail shows how its page got there
        self.trail: collections.deque = collections.deque(maxlen=5000)

    def note(self, what: str) -> None:
        self.trail.append((time.time(), what))

    def trail_near(self, t: float, before: float = 3.0) -> list[str]:
        """This page's protocol events from `before` s ahead of `t` on, with each fragment's
        routine reruns (send, new_session, script_finished) folded into one count."""
        out, folded = [], collections.Counter()
        for x, w in self.trail:
            if x < t - before:
                continue
            parts = w.split()
            fid = (parts[-1] if w.startswith("send fragment") or (w.startswith("recv new_session") and len(parts) == 3)
                   else None)
            if fid or w == "recv script_finished 3":
                folded[fid or "finished"] += 1
                continue
            if folded:
                out.append("  (fragment runs: " + ", ".join(f"{k} x{v}" for k, v in folded.items()) + ")")
                folded.clear()
            out.append(f"{x - t:+.2f} {w}")
        if folded:
            out.append("  (fragment runs: " + ", ".join(f"{k} x{v}" for k, v in folded.items()) + ")")
        return out

    def state_text(self) -> str:
        """Where this client stands, for a lost job's detail: is it waiting for a rerun that never
        finished (a client or server stall), and what did its polling fragment show last (the
        queue's view, where the full run's text is only the click's)?"""
        now = time.time()
        frag = " | ".join(progress_texts(self.frag_elems)[:2])[:160]
        return (f"client: {'awaiting a rerun for %.0f s' % (now - self.running_since) if self.running else 'idle'}, "
                f"last message {now - self.last_msg_at:.0f} s ago, {len(self.timers)} polling timer(s)"
                f"{', reader ended: ' + self.closed_reason if self.closed_reason else ''}; "
                f"fragment: {frag or '-'}")

    async def open(self, page: str):
        import websockets
        ws_url = self.url.replace("http://", "ws://") + "/_stcore/stream"
        self.ws = await websockets.connect(ws_url, max_size=None, open_timeout=60, ping_interval=None)
        self.widgets, self.elements, self.timers, self.next_fire = {}, {}, {}, {}
        self.closed_reason = ""
        self.reader = asyncio.create_task(self._read())
        self.poller = asyncio.create_task(self._poll())
        await self.goto(page)

    async def close(self):
        for t in (self.reader, self.poller):
            if t:
                t.cancel()
        if self.ws:
            await self.ws.close()
        self.ws = None

    async def _send_rerun(self, triggers: dict | None = None, fragment: str = ""):
        from streamlit.proto.BackMsg_pb2 import BackMsg
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = ""
        cs.page_name = self.page
        for wid, st in self.widgets.items():
            cs.widget_states.widgets.append(st)
        for wid in (triggers or {}):
            w = cs.widget_states.widgets.add()
            w.id = wid
            w.trigger_value = True
        if fragment:
            cs.fragment_id = fragment
            cs.is_auto_rerun = True
        self.note(f"send {'fragment ' + fragment[:6] if fragment else 'full'}{' +trigger' if triggers else ''}")
        self.running, self.running_since = True, time.time()
        await self.ws.send(msg.SerializeToString())

    async def rerun_and_wait(self, triggers=None, timeout=120.0):
        n = len(self.full_runs)
        await self._send_rerun(triggers)
        end = time.time() + timeout
        while len(self.full_runs) == n and time.time() < end:
            await asyncio.sleep(0.1)
        if len(self.full_runs) == n:
            # the run that answers later is taken for the next request's: say so
            self.log.append(f"s{self.idx}: no full run of {self.page} within {timeout:g} s of a rerun")

    async def goto(self, page: str):
        self.page = page
        # another page's widgets and buttons are not on this one (a click on a stale button's id
        # would rerun with a trigger the page ignores)
        self.widgets, self.elements = {}, {}
        await self.rerun_and_wait()

    def find(self, kind: str, label: str | None = None, prefix: str | None = None) -> dict | None:
        for lab, e in self.elements.items():
            if e["kind"] == kind and (lab == label or (prefix and lab.startswith(prefix))):
                return e
        return None

    async def click(self, label=None, prefix=None) -> bool:
        b = self.find("button", label, prefix)
        if not b:
            return False
        await self.rerun_and_wait({b["id"]: True})
        return True

    async def choose(self, kind: str, label: str, value: str) -> bool:
        from streamlit.proto.WidgetStates_pb2 import WidgetState
        e = self.find(kind, label)
        if not e or value not in e["options"]:
            return False
        w = WidgetState(id=e["id"])
        if kind == "selectbox":
            w.string_value = value
        else:
            w.string_array_value.data.append(value)
        self.widgets[e["id"]] = w
        await self.rerun_and_wait()
        return True

    async def upload(self, path: Path) -> bool:
        """The browser's upload: ask for a URL, PUT the file there (with the XSRF cookie), rerun
        with the uploader's state."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.WidgetStates_pb2 import WidgetState
        e = self.find("file_uploader", "Zip archive")
        if not e:
            return False
        msg = BackMsg()
        msg.file_urls_request.request_id = f"r{self.idx}-{time.time()}"
        msg.file_urls_request.file_names.append(path.name)
        msg.file_urls_request.session_id = self.session_id
        self.url_resp = asyncio.get_running_loop().create_future()
        await self.ws.send(msg.SerializeToString())
        urls = await asyncio.wait_for(self.url_resp, 30)
        fu = urls.file_urls[0]
        data = path.read_bytes()
        ok = await asyncio.to_thread(_put_file, self.url, fu.upload_url, path.name, data)
        if not ok:
            self.log.append(f"s{self.idx}: upload PUT failed")
            return False
        w = WidgetState(id=e["id"])
        info = w.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = path.name, len(data), fu.file_id
        info.file_urls.CopyFrom(fu)
        self.widgets[e["id"]] = w
        await self.rerun_and_wait()
        return True

    async def _poll(self):
        # The browser fires each fragment's timer on its interval whether or not its last rerun
        # was answered (setInterval in the frontend's handleAutoRerun). Waiting for an answer
        # here hung a session for good: the server drops, without a reply, an auto-rerun of a
        # fragment a full run has just replaced ("does not exist anymore", app_session.py).
        while True:
            await asyncio.sleep(0.1)
            now = time.time()
            for fid, iv in list(self.timers.items()):
                if now >= self.next_fire.get(fid, now + iv):
                    self.next_fire[fid] = now + iv
                    await self._send_rerun(fragment=fid)
                    break
                self.next_fire.setdefault(fid, now + iv)

    async def _read(self):
        # a reader that ends (the server closed the socket, a protocol error) ends silently as a
        # task: note why, so a page that stops updating says so in a lost job's detail
        try:
            await self._read_messages()
            self.closed_reason = "the server closed the connection"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            self.closed_reason = f"{type(exc).__name__}: {str(exc)[:120]}"
            self.log.append(f"s{self.idx}: reader ended: {self.closed_reason}")

    async def _read_messages(self):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        async for raw in self.ws:
            m = ForwardMsg()
            m.ParseFromString(raw)
            self.last_msg_at = time.time()
            self.seq += 1
            kind = m.WhichOneof("type")
            if kind in ("new_session", "auto_rerun", "stop_auto_rerun", "script_finished"):
                self.note(f"recv {kind} " + (
                    ",".join(f[:6] for f in m.metadata.run.fragment_ids) if kind == "new_session" else
                    m.auto_rerun.fragment_id[:6] + f"@{m.auto_rerun.interval:g}" if kind == "auto_rerun" else
                    ",".join(f[:6] for f in m.stop_auto_rerun.fragment_ids) if kind == "stop_auto_rerun" else
                    str(m.script_finished)))
            if kind == "new_session":
                self.session_id = m.new_session.initialize.session_id or self.session_id
                self.run_elems, self.run_autoreruns = [], {}
                self.run_fragment_ids = list(m.metadata.run.fragment_ids)
                if not m.metadata.run.fragment_ids:
                    # as the browser (cleanupAutoReruns): a full run's start clears every
                    # fragment timer; its auto_rerun messages set the current ones again
                    self.timers, self.next_fire = {}, {}
            elif kind == "delta":
                if m.delta.fragment_id and m.metadata.delta_path[:1] == [SIDEBAR]:
                    self.sidebar_fragments.add(m.delta.fragment_id)
                if m.delta.WhichOneof("type") == "new_element":
                    self._element(m.delta.new_element)
            elif kind == "auto_rerun":
                # as the browser: the timer starts when the message arrives, not when the run ends
                fid, iv = m.auto_rerun.fragment_id, m.auto_rerun.interval
                self.run_autoreruns[fid] = iv
                if self.timers.get(fid) != iv:
                    self.timers[fid] = iv
                    self.next_fire[fid] = time.time() + iv
            elif kind == "stop_auto_rerun":
                for fid in m.stop_auto_rerun.fragment_ids:
                    self.timers.pop(fid, None)
                    self.next_fire.pop(fid, None)
            elif kind == "file_urls_response" and self.url_resp and not self.url_resp.done():
                self.url_resp.set_result(m.file_urls_response)
            elif kind == "script_finished":
                st = m.script_finished
                self.running = False
                if self.run_fragment_ids:
                    # a fragment run, ended (3) or cut (2: by a rerun, or rewritten so when the
                    # next run started before this one's messages were sent)
                    self.frag_runs.append(FragRun(self.seq, tuple(self.run_fragment_ids),
                                                  len(self.run_elems), len(progress_texts(self.run_elems))))
                if st == ForwardMsg.FINISHED_SUCCESSFULLY:
                    self.full_runs.append(FullRun(time.time(), list(self.run_elems), dict(self.run_autoreruns),
                                                  self.seq))
                    polls = page_polls(self.full_runs[-1], self.sidebar_fragments)
                    self.note(f"full run done: {len(progress_texts(self.run_elems))} progress bar(s)"
                              + (f", polling {','.join(f[:6] for f in polls)}" if polls else ""))
                elif st == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                    self.frag_elems, self.frag_at = list(self.run_elems), time.time()
                self.run_elems, self.run_autoreruns = [], {}

    def _element(self, el):
        kind = el.WhichOneof("type")
        text = ""
        if kind == "markdown":
            text = el.markdown.body
            m = _COUNTS.search(text)
            if m:
                self.queue_counts = (time.time(), int(m.group(1)), int(m.group(2)))
        elif kind == "text":
            text = el.text.body
        elif kind == "progress":
            text = el.progress.text
        elif kind == "alert":
            text = el.alert.body
            if el.alert.format == 1:
                self.errors.append(f"{self.page}: error box: {text[:200]}")
        elif kind == "exception":
            text = f"{el.exception.type}: {el.exception.message}"
            self.errors.append(f"{self.page}: exception: {text[:200]}")
        elif kind in ("button", "selectbox", "slider", "file_uploader"):
            w = getattr(el, kind)
            # st.select_slider arrives as a slider element (type SELECT_SLIDER) whose options are the
            # formatted labels; the soak finds it as "select_slider" (an int slider has no options)
            if kind == "slider" and w.options:
                kind = "select_slider"
            self.elements[w.label] = {"kind": kind, "id": w.id, "options": list(getattr(w, "options", []))}
            text = w.label
        self.run_elems.append((kind, text))


def _put_file(base: str, upload_url: str, name: str, data: bytes) -> bool:
    """PUT a file as the frontend does (multipart, XSRF cookie + header)."""
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string
    token = generate_xsrf_token_string()        # double-submit: the same token as cookie and header
    opener = urllib.request.build_opener()
    boundary = "----soak" + str(random.randrange(10 ** 12))
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/zip\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    url = upload_url if upload_url.startswith("http") else base + upload_url
    req = urllib.request.Request(url, data=body, method="PUT", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "X-Xsrftoken": token,
        "Cookie": f"_streamlit_xsrf={token}"})
    try:
        with opener.open(req, timeout=60) as r:
            return 200 <= r.status < 300
    except OSError as exc:
        print(f"upload PUT {url}: {exc}", file=sys.stderr)
        return False


def progress_texts(elems) -> list[str]:
    return [t for k, t in elems if k == "progress"]


def done_view(elems) -> list[str]:
    """The parts of a page run that say where its jobs stand: alerts, buttons, progress bars and
    the status captions (✓ done, ■ stopped, waiting, AUROC), 120 characters each."""
    marks = ("✓", "■", "AUROC", "waiting", "queued", "not been")
    return [f"{k}: {t[:120]}" for k, t in elems
            if k in ("alert", "button", "progress") or (k == "markdown" and any(m in t for m in marks))]


def done_too_soon(job: "Job") -> bool:
    """A job the page showed as done in under a third of its ETA and under 30 s: either the ETA
    was far too long or the page showed no progress bar while its work went on."""
    if job.eta_s is None or job.t_done is None:
        return False
    took = job.t_done - job.t_click
    return took < 30.0 and job.eta_s > 3 * took


def page_polls(run: FullRun, sidebar_fragments: set) -> set:
    """The page's own polling fragments that `run` left with a timer: the page still has work
    running (`lab_state.poll` stops its timer, by a full rerun, once every job is final). The
    sidebar's fragment polls on whether or not the page does, so it does not count."""
    return {f for f in run.armed if f not in sidebar_fragments}


def first_run_after(frag_runs, seq: int, fragments: set) -> FragRun | None:
    """The first run of one of `fragments` after message `seq` that drew anything (from the end:
    the runs a tracker asks about are recent, and a page keeps thousands)."""
    first = None
    for f in reversed(frag_runs):
        if f.seq <= seq:
            break
        if f.n_elems and fragments & set(f.fragment_ids):
            first = f
    return first


def page_done_at(runs: list, frag_runs, sidebar_fragments: set, t_click: float) -> tuple[FullRun | None, int]:
    """The full run that showed the click's result (None while undecided), and how many full
    runs before it only looked done.

    A full run after the click that draws no progress bar shows the result, unless it left
    the page's polling fragment with a timer. Then it only looked done: the fragment's progress
    bars, drawn in that full run, can be dropped from Streamlit's send queue (ForwardMsgQueue.clear)
    when the fragment's next run starts before the queue was sent, as it does on a loaded server,
    and that next run draws them again. The browser shows the fragment's redrawn view; in the
    sixth quick soak three of the five clicks shown done in under a third of their ETA were
    such runs. So such a run counts once the fragment's next run that drew anything, before the
    page's next full run, shows no progress bar either. If that run shows one, the full run only
    looked done; if the page's next full run comes first, the fragment's view never reached
    the page in between, and that next full run is judged in turn (under load a fragment's
    runs can all be dropped, each by the next, for seconds)."""
    looked_done = 0
    for i, run in enumerate(runs):
        if run.t < t_click or progress_texts(run.elems):
            continue
        polls = page_polls(run, sidebar_fragments)
        if not polls:
            return run, looked_done
        frag = first_run_after(frag_runs, run.seq, polls)
        full = runs[i + 1] if i + 1 < len(runs) else None
        if frag is not None and (full is None or frag.seq < full.seq):
            if not frag.n_progress:
                return run, looked_done
            looked_done += 1
        elif full is None:
            return None, looked_done            # wait for the next run that redraws the fragment
        elif progress_texts(full.elems):
            looked_done += 1
    return None, looked_done


def eta_since_click(runs: list, frag_elems: list, frag_at: float) -> float | None:
    """The largest ETA the page shows since the click: in its latest full run (`runs`: the click's
    own and those after it), and in its polling fragment's latest run only if that run finished
    after the click's (a page's script runs one at a time, so it also began after). An older
    fragment run is what the page showed before the click, possibly another page's, another
    job's ETA. The soaks recorded before this function counted it; `eta_stale_fragment_ignored`
    counts the jobs where that reading would differ."""
    if not runs:
        return None
    texts = progress_texts(runs[-1][1])
    if frag_at > runs[0][0]:
        texts += progress_texts(frag_elems)
    return max_eta(texts)


async def track(page: Page, job: Job, stop_at: float):
    """Wait for the job's result: a full run after the click without a progress bar."""
    start_runs = len(page.full_runs) - 1          # the click's own run counts
    eta_deadline = job.t_click + 5.0
    while time.time() < stop_at:
        runs = page.full_runs[max(start_runs, 0):]
        if job.eta_s is None and time.time() < eta_deadline + 1:
            job.eta_s = eta_since_click(runs, page.frag_elems, page.frag_at)
            # how often the fragment run from before the click would have given another ETA
            # (the soaks recorded before this check counted it)
            if runs and page.frag_at <= runs[0].t:
                stale = eta_since_click(runs, page.frag_elems, frag_at=math.inf)   # the old reading
                job.eta_stale_ignored = job.eta_stale_ignored or stale != job.eta_s
        shown, job.looked_done = page_done_at(runs, page.frag_runs, page.sidebar_fragments, job.t_click)
        if shown is not None:
            job.t_done = shown.t
            job.still_running = False
            if done_too_soon(job):
                # what the page showed when it looked done, and how it got there (the result's
                # `done_too_soon`): in the fifth quick soak a batch click with an ETA of 420 s
                # was counted done after 7.5 s
                job.trail = ["full run judged done: " + " | ".join(done_view(shown.elems))] + page.trail_near(job.t_click)
            return
        job.still_running = bool(runs and progress_texts(runs[-1].elems))
        job.last_seen = ((" | ".join(progress_texts(runs[-1].elems)[:2])[:160] if runs else
                          f"no full run of the page since the click ({len(page.full_runs)} in all)")
                         + " || " + page.state_text())
        await asyncio.sleep(0.25)
    job.trail = page.trail_near(job.t_click)       # lost: how its page got there


# ----------------------------------------------------------------------------- sessions

@dataclass
class Shared:
    url: str
    t_end_clicks: float
    t_end: float
    jobs: list = field(default_factory=list)
    log: list = field(default_factory=list)
    failed_sessions: dict = field(default_factory=dict)
    reloads: int = 0
    uploads_ok: int = 0
    uploads_tried: int = 0
    drained_s: float | None = None
    no_button: int = 0
    poll_phase: asyncio.Event = field(default_factory=asyncio.Event)


async def submit(page: Page, sh: Shared, idx: int, what: str, label=None, prefix=None, stop_after=None):
    t = time.time()
    if not await page.click(label, prefix):
        sh.no_button += 1       # the batch page hides "Train batch N" when N is trained or in progress
        return
    job = Job(idx, what, t)
    sh.jobs.append(job)
    tr = asyncio.create_task(track(page, job, sh.t_end))
    if stop_after is not None:
        await asyncio.sleep(stop_after)
        if job.t_done is None:
            stop = page.find("button", "Stop") or page.find("button", "Stop all")
            if stop:
                job.stopped = True
                await page.rerun_and_wait({stop["id"]: True})
    await tr


async def session(idx: int, sh: Shared, rng: random.Random, quick: bool):
    page = Page(sh.url, idx, sh.log)
    digits = [d for d in range(10) if d not in (PROBE_ALONE, PROBE_SOAK, PROBE_ALONE_AFTER)]
    try:
        await asyncio.sleep(rng.uniform(0, 20))         # the class arrives over 20 s
        await page.open("train_compare")
        if idx % 3 == 0:                                  # an upload for a third of the sessions
            sh.uploads_tried += 1
            await page.goto("your_data")
            if await page.upload(ZIP):
                if page.find("button", "Use this data on Train & compare"):
                    sh.uploads_ok += 1
                    await page.click("Use this data on Train & compare")
                    await page.goto("train_compare")
                    await submit(page, sh, idx, "upload", "Train base and LAMP")
        # the lab's mix, reshuffled round after round until the clicks end: a class keeps
        # working for the whole session (later rounds also hit the store, as a class does)
        base_acts = ["default", "digit", "batch", "landscape", "digit", "stop", "reload", "batch"]

        def rounds():
            while time.time() <= sh.t_end_clicks:
                acts = list(base_acts)
                rng.shuffle(acts)
                yield from acts
        for a in rounds():
            if time.time() > sh.t_end_clicks:
                break
            await asyncio.sleep(rng.uniform(5, 25))         # think time
            if time.time() > sh.t_end_clicks:
                break
            if a == "default":
                await page.goto("train_compare")
                await submit(page, sh, idx, a, "Train base and LAMP")
            elif a == "digit":
                await page.goto("train_compare")
                await page.choose("selectbox", "Normal class", str(rng.choice(digits)))
                await submit(page, sh, idx, a, "Train base and LAMP")
            elif a == "batch":
                await page.goto("batch_size")
                size = str(rng.choice([16, 32, 128, 1024] if quick else [1, 4, 16, 32, 128, 1024]))
                if not await page.choose("select_slider", "Batch size", size):
                    sh.log.append(f"s{idx}: no batch size slider with {size}")
                    continue
                await submit(page, sh, idx, a, f"Train batch {size}")
            elif a == "landscape":
                await page.goto("landscape")
                await submit(page, sh, idx, a, "Compute landscapes")
            elif a == "stop":
                await page.goto("train_compare")
                await page.choose("selectbox", "Normal class", str(rng.choice(digits)))
                await submit(page, sh, idx, a, "Train base and LAMP", stop_after=rng.uniform(1, 4))
            elif a == "reload":
                p = page.page
                await page.close()
                sh.reloads += 1
                await page.open(p)
        # stay connected (polling), as an open tab does, until the poll phase: then every session
        # asks for the same job (shared: trained once) and polls it every POLL_S
        while not sh.poll_phase.is_set() and time.time() < sh.t_end:
            await asyncio.sleep(0.5)
        if sh.poll_phase.is_set():
            await page.goto("train_compare")
            await page.choose("selectbox", "Normal class", str(PROBE_SOAK))
            await submit(page, sh, idx, "shared", "Train base and LAMP")
    except Exception as exc:  # noqa: BLE001 - a harness error is reported, not raised
        sh.log.append(f"s{idx}: harness error {type(exc).__name__}: {exc}")
    finally:
        if page.errors:
            sh.failed_sessions[idx] = page.errors[:3]
        await page.close()


async def queue_emptied(page: Page, since: float, seconds: float) -> None:
    """Wait until the page's sidebar, drawn after `since`, reads "0 running · 0 queued" (at most
    `seconds`)."""
    end = time.time() + seconds
    while time.time() < end:
        c = page.queue_counts
        if c and c[0] >= since and c[1] == 0 and c[2] == 0:
            return
        await asyncio.sleep(0.5)


async def probe_train(url: str, digit: int, sh_log: list, timeout: float, sh: Shared | None = None,
                      drain: float = 0.0) -> tuple[float, float | None]:
    """The probe session trains the default comparison on `digit`; (click, done time). With `sh`
    it stays connected through the soak, waits for the clicks to end and the queue to empty
    (its sidebar reads "0 running · 0 queued", at most `drain` s), then starts the poll phase.
    Without `sh`, a `drain` waits (at most that long) for the queue to empty before the click."""
    page = Page(url, -1, sh_log)
    await page.open("train_compare")
    if sh is None and drain:
        await queue_emptied(page, time.time(), drain)
    if sh is not None:
        while time.time() < sh.t_end_clicks:
            await asyncio.sleep(1)
        await queue_emptied(page, sh.t_end_clicks, drain)
        sh.drained_s = time.time() - sh.t_end_clicks
        sh.poll_phase.set()
        await asyncio.sleep(1.0)          # the sessions click; the probe's click is the last
        await page.goto("train_compare")
        timeout = sh.t_end - time.time()
    await page.choose("selectbox", "Normal class", str(digit))
    job = Job(-1, "probe", time.time())
    await page.click("Train base and LAMP")
    await track(page, job, time.time() + timeout)
    if page.errors:
        sh_log.append(f"probe errors: {page.errors[:2]}")
    await page.close()
    return job.t_click, job.t_done


def slowdown(alone: list[float], polled: list[float], alone_after: list[float]) -> float | None:
    """The polled job's training seconds over the mean of the same job's two alone runs, the
    one before the class and the one after it (None unless all three trained the same runs)."""
    if not alone or len(polled) != len(alone) or len(alone_after) != len(alone):
        return None
    return round(sum(polled) / ((sum(alone) + sum(alone_after)) / 2), 2)


def run_seconds(store: Path, digit: int) -> list[float]:
    """Training seconds of the stored runs of the default comparison on `digit` (from each
    checkpoint's own `seconds`)."""
    import torch
    out = []
    for d in store.iterdir():
        try:
            cfg = json.loads((d / "config.json").read_text())
            if cfg["data"]["dataset"] != "mnist" or cfg["data"]["normal_class"] != digit:
                continue
            ck = torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=False)
            s = ck.get("seconds") or ck.get("stack", {}).get("seconds")
            if s:
                out.append(float(s))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError):
            continue
    return out


# ----------------------------------------------------------------------------- the run

class Sampler(threading.Thread):
    def __init__(self, pid: int, watcher: StoreWatcher):
        super().__init__(daemon=True)
        self.pid, self.watcher = pid, watcher
        # (t, memory MB of the whole tree (PSS), server CPU s, tree CPU s, {kind: MB})
        self.samples: list[tuple[float, float, float, float, dict]] = []
        self.halt = threading.Event()

    def sample(self):
        pids = descendants(self.pid)
        by_kind = memory_by_kind(pids)
        self.samples.append((time.time(), sum(by_kind.values()), read_cpu_s(self.pid),
                             sum(read_cpu_s(p) for p in pids), by_kind))

    def run(self):
        while not self.halt.wait(2.0):
            self.sample()
            self.watcher.scan()


MEMORY_WINDOW_S = 120.0   # memory is compared as means over this many seconds of samples


def slice_idle(lines: list[dict]) -> dict:
    """What the queue's handoff costs the worker, from $LAMP_ETA_LOG's slice lines (the server
    writes one per slice): the worker's idle time before each slice that found work waiting (the
    reply's filing, the ETA simulation and the pick), and the share of such slices' time the
    worker spent in them."""
    slices = [r for r in lines if "slice" in r and not r.get("queue_was_empty")]
    if not slices:
        return {"slices_with_work_waiting": 0}
    idle = sorted(r["idle_before"] for r in slices)
    busy = sum(r["replied"] - r["sent"] for r in slices)
    return {"slices_with_work_waiting": len(slices), "idle_median_ms": round(1000 * statistics.median(idle), 1),
            "idle_p90_ms": round(1000 * idle[int(0.9 * (len(idle) - 1))], 1), "idle_total_s": round(sum(idle), 1),
            "busy_s": round(busy, 1), "worker_busy_share": round(busy / (busy + sum(idle)), 4)}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def in_window(samples: list, t0: float, t1: float) -> list:
    """The samples taken from t0 to t1; the one nearest the window's middle where none."""
    return [x for x in samples if t0 <= x[0] <= t1] or [nearest(samples, (t0 + t1) / 2)]


def window_mean(samples: list, t0: float, t1: float) -> float:
    """The mean memory (MB) of the samples taken from t0 to t1 (`in_window`)."""
    return statistics.fmean(x[1] for x in in_window(samples, t0, t1))


def window_mean_by_kind(samples: list, t0: float, t1: float) -> dict[str, float]:
    """`window_mean` per process kind (server, forkserver, worker): which process a change of
    the total comes from. A worker's memory follows the job it trains (a batch-1024 run holds
    its activations), a server's what its sessions' pages hold."""
    inside = [x[4] for x in in_window(samples, t0, t1)]
    kinds = sorted({k for by in inside for k in by})
    return {k: round(statistics.fmean(by.get(k, 0.0) for by in inside), 1) for k in kinds}


def nearest(samples: list, t: float) -> tuple:
    """The sample taken closest to time t."""
    return min(samples, key=lambda x: abs(x[0] - t))


def slope_per_minute(samples: list, t0: float) -> float | None:
    """Least-squares slope (MB per minute) of the memory samples taken from t0 on."""
    pts = [x for x in samples if x[0] >= t0]
    if len(pts) < 2 or len({x[0] for x in pts}) < 2:
        return None
    return 60.0 * statistics.linear_regression([x[0] for x in pts], [x[1] for x in pts]).slope


def memory_series(samples: list, kind: str, every_s: float = 60.0) -> list[list[float]]:
    """One process kind's memory every `every_s` seconds of a soak: [minutes, MB] pairs."""
    out, next_t = [], None
    for t, _, _, _, by_kind in samples:
        if next_t is None or t >= next_t:
            out.append([round((t - samples[0][0]) / 60, 1), by_kind.get(kind)])
            next_t = t + every_s
    return out


async def soak(url: str, store: Path, pid: int, sessions: int, minutes: float, drain: float, quick: bool,
               seed: int) -> dict:
    log: list = []
    watcher = StoreWatcher(store)
    sampler = Sampler(pid, watcher)
    # the first page view loads torch and the data into the server: done once, before measuring
    warm = Page(url, -2, log)
    await warm.open("train_compare")
    await warm.close()
    rss_before = sum(read_pss_mb(p) for p in descendants(pid))
    t0, t1 = await probe_train(url, PROBE_ALONE, log, 180)
    alone = run_seconds(store, PROBE_ALONE)

    sampler.sample()
    sampler.start()
    t_start = time.time()
    sh = Shared(url, t_start + minutes * 60, t_start + minutes * 60 + drain + POLL_PHASE_S + END_DRAIN_S)
    rng = random.Random(seed)
    tasks = [asyncio.create_task(session(i, sh, random.Random(rng.random()), quick)) for i in range(sessions)]

    pt = asyncio.create_task(probe_train(url, PROBE_SOAK, log, 0, sh, drain))
    await asyncio.gather(*tasks)
    p0, p1 = await pt
    t_stop = time.time()
    sampler.halt.set()
    sampler.join()
    sampler.sample()
    watcher.scan()
    during = run_seconds(store, PROBE_SOAK)
    # the same job alone again, now the class has gone: the machine's speed drifts over a soak
    # (the job alone took 7.7 to 10.1 s at the start of five soaks), so the polled job is compared
    # with the mean of the two alone runs that bracket it, not with one taken 40 minutes before
    await probe_train(url, PROBE_ALONE_AFTER, log, 180, drain=END_DRAIN_S)
    alone_after = run_seconds(store, PROBE_ALONE_AFTER)

    s = sampler.samples
    half_t = t_start + (t_stop - t_start) / 2
    half = nearest(s, half_t)
    half_mb = window_mean(s, half_t - MEMORY_WINDOW_S / 2, half_t + MEMORY_WINDOW_S / 2)
    end_mb = window_mean(s, s[-1][0] - MEMORY_WINDOW_S, s[-1][0])
    half_by = window_mean_by_kind(s, half_t - MEMORY_WINDOW_S / 2, half_t + MEMORY_WINDOW_S / 2)
    end_by = window_mean_by_kind(s, s[-1][0] - MEMORY_WINDOW_S, s[-1][0])
    slope = slope_per_minute(s, half_t)
    cpu = (s[-1][2] - s[0][2]) / max(t_stop - t_start, 1e-9)
    cpu_tree = (s[-1][3] - s[0][3]) / max(t_stop - t_start, 1e-9)
    res = {"sessions": sessions, "minutes": round((t_stop - t_start) / 60, 2),
           "click_minutes": minutes, "drain_s": drain}
    res.update(count_jobs(sh.jobs))
    res.update({
        "duplicated": watcher.duplicated, "failed": len(sh.failed_sessions),
        "rss_first_view_mb": round(rss_before, 1),
        "rss_start_mb": round(s[0][1], 1), "rss_peak_mb": round(max(x[1] for x in s), 1),
        "rss_half_mb": round(half_mb, 1), "rss_end_mb": round(end_mb, 1),
        "rss_growth_last_half_mb": round(end_mb - half_mb, 1),
        "rss_growth_two_samples_mb": round(s[-1][1] - half[1], 1),
        "rss_growth_by_process_mb": {k: round(v - half_by.get(k, 0.0), 1) for k, v in end_by.items()},
        "rss_slope_last_half_mb_per_min": None if slope is None else round(slope, 2),
        # where the growth happens: by the end of the clicks, or in the end phases (drain, and
        # the poll phase where every page loads one comparison's results)
        "rss_clicks_end_mb": round(nearest(s, sh.t_end_clicks)[1], 1),
        "server_mb_series": memory_series(s, "server"),
        "worker_mb_series": memory_series(s, "worker"),
        "train_seconds_alone": round(sum(alone), 2) if alone else None,
        "train_seconds_polled": round(sum(during), 2) if len(during) == len(alone) else None,
        "train_seconds_alone_after": round(sum(alone_after), 2) if len(alone_after) == len(alone) else None,
        "train_slowdown": slowdown(alone, during, alone_after),
        "train_slowdown_vs_first_alone": round(sum(during) / sum(alone), 2) if alone and len(during) == len(alone) else None,
        "probe_wall_alone_s": round(t1 - t0, 1) if t1 else None,
        "probe_wall_polled_s": round(p1 - p0, 1) if p1 else None,
        "train_wall_slowdown": round((p1 - p0) / (t1 - t0), 2) if p1 and t1 else None,
        "drain_used_s": round(sh.drained_s, 1) if sh.drained_s is not None else None,
        "no_button": sh.no_button,
        "server_cpu_share": round(cpu, 3), "tree_cpu_share": round(cpu_tree, 3),
        "memory_by_process_start_mb": s[0][4], "memory_by_process_half_mb": half[4],
        "memory_by_process_end_mb": s[-1][4],
        "uploads": f"{sh.uploads_ok}/{sh.uploads_tried}", "reloads": sh.reloads,
        "runs_stored": len(watcher.seen),
        "by_action": {a: sum(j.what == a for j in sh.jobs) for a in sorted({j.what for j in sh.jobs})},
        "failures": {str(k): v for k, v in sorted(sh.failed_sessions.items())},
        "harness_log": log[:30] + sh.log[:30],
        "load_avg_end": list(os.getloadavg()), "machine": f"{platform.node()} {os.cpu_count()} cpu",
    })
    if os.environ.get("LAMP_ETA_LOG"):                 # the server wrote its slices there too
        res["worker_between_slices"] = slice_idle(read_jsonl(Path(os.environ["LAMP_ETA_LOG"])))
    res["targets"] = verdicts(res)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"30 sessions, {QUICK_MINUTES:g} minutes of clicks")
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--drain", type=float, default=None,
                    help=f"seconds at most to wait, after the clicks, for the queue to empty (default {DRAIN_S:g})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--record", type=Path, default=None, help="write <path>.json and <path>.md")
    ap.add_argument("--slice-stats", type=Path, default=None, metavar="LOG",
                    help="print what the handoff between slices cost the worker, from a soak's $LAMP_ETA_LOG, and exit")
    a = ap.parse_args(argv)
    if a.slice_stats:
        if not a.slice_stats.is_file():
            ap.error(f"{a.slice_stats} is not a file: pass the LAMP_ETA_LOG a soak's server wrote")
        print(json.dumps(slice_idle(read_jsonl(a.slice_stats))))
        return 0
    minutes = a.minutes or (QUICK_MINUTES if a.quick else 30.0)
    drain = a.drain if a.drain is not None else DRAIN_S
    from app_server import serving
    log = tempfile.NamedTemporaryFile(prefix="lamp-soak-server-", suffix=".log", delete=False)
    with serving("lamp-soak-", output=log) as (url, store):
        pid = _server_pid(url)
        # In a class the 30 clients run on the students' machines. Here they share the server's
        # two cores, so once the server is up (at its own priority) the clients step back: they
        # take what the server and its workers leave, as the students' browsers would not.
        os.nice(CLIENT_NICE)
        res = asyncio.run(soak(url, store, pid, a.sessions, minutes, drain, a.quick, a.seed))
        res["client_nice"] = CLIENT_NICE
        if res.get("lost"):
            # what the server's threads are doing while a page waits for it (app/lab_state.py
            # registers the dump on SIGUSR1): kept beside the server's log, named on stderr
            os.kill(pid, signal.SIGUSR1)
            time.sleep(2)
            print(f"lost jobs: the server's thread stacks are in {log.name}", file=sys.stderr)
    log.close()
    if not res.get("lost"):
        os.unlink(log.name)
    res["quick"] = a.quick
    if a.record:
        a.record.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
        a.record.with_suffix(".md").write_text(render_md(res))
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}" + (f"   [{res['targets'][k]}]" if k in res.get("targets", {}) else ""))
    return 0


def _server_pid(url: str) -> int:
    """The pid of the streamlit process listening on url's port (bench/app_server keeps its
    Popen to itself): the process whose command line names app/streamlit_app.py and the port."""
    port = url.rsplit(":", 1)[1]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and port.encode() in cmd and int(d.name) != os.getpid():
                return int(d.name)
    raise SystemExit("server process not found")


def render_md(r: dict) -> str:
    lines = [f"# class_soak {'--quick' if r.get('quick') else ''}".strip(), "",
             f"Command: `nice -n 5 .venv/bin/python bench/class_soak.py{' --quick' if r.get('quick') else ''} "
             "--json` (or `--record bench/results/NAME`, which writes this table).", "",
             "Sessions are clients of Streamlit's websocket protocol against one real app server "
             "(`bench/app_server.py`), see the docstring of `bench/class_soak.py`.", "",
             "| metric | value | target |", "|---|---|---|"]
    for k, v in r.items():
        if k in ("targets", "harness_log", "failures", "by_action", "lost_trails", "done_too_soon", "server_mb_series",
                 "worker_mb_series"):
            continue
        lines.append(f"| {k} | {v} | {r['targets'].get(k, '')} |")
    lines += ["", f"by action: {r['by_action']}", "",
              "server process memory (PSS), [minutes, MB] every minute: "
              + json.dumps(r.get("server_mb_series", [])), "",
              "worker process memory (PSS), [minutes, MB] every minute: "
              + json.dumps(r.get("worker_mb_series", [])), "", "failures (first 3 per session):", "```",
              json.dumps(r["failures"], indent=1), "```", "", "harness log:", "```",
              *r["harness_log"], "```", "",
              "clicks the page showed done in under a third of their ETA (first 5, with their pages' events):", "```",
              json.dumps(r.get("done_too_soon", []), indent=1), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
