"""Class results: the class reproduces the paper's Table 1 together (lamp_core.class_experiment).

Each session is handed one digit × seed × batch-size cell of the teacher's grid and trains its base
and LAMP runs with a button (nothing trains without a click); the board shows, live as cells
finish, the grid's coverage and Table 1 from the class's runs only (`report.cells`, the code of
bench/results/table1.md): mean AUROC per batch size, the paired difference with its 95% interval
over pairs and over digits, pairs won, n everywhere, and Δ against batch size beside the paper's
Table 1 and the lab's converged one. Students see their own cell and the aggregate, nothing of
another session.

The teacher: a server started with LAMP_TEACHER_CODE=<code> (e.g. `LAMP_TEACHER_CODE=owl42 make
app`) unlocks the teacher's controls at the bottom of this page for a browser session that enters
the code: set the grid (digits, seeds, batch sizes), the protocol (the lesson's default, or the
settings the teacher last trained on Train & compare), the step mode and the start time; reset or
end the board. The board is saved in the run store's folder (class_experiment.json), so a restart
keeps it.
"""
import datetime
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:     # once (a page runs on every rerun)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for lab_state), when run alone
import streamlit as st

import lab_state
from lamp_core import class_experiment as ce
from lamp_core import lesson, references
from lamp_core.config import LampError
from lamp_core.jobs import DONE, FINAL

q = lab_state.setup("Class results")
ss = st.session_state
sid = lab_state.session_id()


@st.cache_resource(show_spinner=False)
def _board_for(store_root: str) -> ce.ClassBoard:
    # one board per server process and run store, like the job queue (lab_state._queue_for): keyed
    # by the store root only, so one entry; no max_entries, as evicting it would drop the class's state
    return ce.ClassBoard(lab_state.queue().store)


board = _board_for(str(q.store.root))
DATA_NAME = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "digits": "built-in digits"}
SYMBOL = {ce.DONE: "✓ done", ce.RUNNING: "▶ training", ce.HANDED: "· handed out", ce.MISSING: ""}


def _references() -> tuple[dict | None, dict | None, list[str]]:
    """The lab's converged Table 1 and the paper's (read from bench/results by lamp_core.references)."""
    notes = []
    try:
        conv = references.converged_table1()
    except (OSError, ValueError) as exc:
        conv = None
        notes.append(f"The lab's converged Table 1 is not available here ({str(exc).splitlines()[0]}).")
    try:
        paper = references.paper_table1()
    except (OSError, ValueError) as exc:
        paper = None
        notes.append(f"The paper's Table 1 is not available here ({str(exc).splitlines()[0]}).")
    return conv, paper, notes


CONV, PAPER, REF_NOTES = _references()


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe(exp: ce.Experiment) -> str:
    d, t = exp.protocol.data, exp.protocol.train
    images = f"{d.max_train:,} training images per digit" if d.max_train else "all training images of each digit"
    return (f"{DATA_NAME.get(d.dataset, d.dataset)}, {images}, {d.image_size} px, {t.base_loss.upper()} and LAMP, "
            f"{t.optimizer} lr {t.lr:g}, {plural(t.epochs, 'epoch')} at batch {t.batch_size} "
            f"({lesson.STEP_MODES[exp.mode].split(' (')[0]} at the other sizes)")


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S on %d %b")


def cell_text(cell) -> str:
    d, s, b = cell
    return f"digit {d} · seed {s} · batch {b}"


# ----------------------------------------------------------------------------- the student's cell

def train_cell() -> None:
    """Hand this session its cell (the next one when its cell is done) and queue its two runs."""
    ss.pop("class_msg", None)
    try:
        cell = board.assign(sid, q)
        if cell is None:
            ss["class_msg"] = "Every cell of the class's grid is done: nothing is left to train."
            return
        views = board.train(sid, q)
        ss.setdefault("class_jobs", {})[str(cell)] = [v.id for v in views]
    except LampError as exc:
        ss["class_msg"] = lab_state.page_message(str(exc).splitlines()[0])


def your_cell(exp: ce.Experiment) -> bool:
    """This session's cell: what it is, its training, its result. True while its runs train."""
    # handed out here too, not only on arrival: the teacher may start or reset the board while this
    # page is open (a hand-out trains nothing)
    cell = board.cell_of(sid) or board.assign(sid, q)
    if cell is None:
        st.caption("Every cell of the grid is done: there is nothing left to hand out.")
        return False
    st.markdown(f"**Your cell: {cell_text(cell)}.** Digit {cell[0]} is the normal class; you train the base "
                f"{exp.loss_name()} model and its LAMP twin from the same initial weights (seed {cell[1]}) at "
                f"batch {cell[2]}.")
    if ss.get("class_msg"):
        st.error(ss["class_msg"])
    vs = lab_state.views(ss.get("class_jobs", {}).get(str(cell), []))
    busy = bool(vs) and not lab_state.all_final(vs)
    if board.is_done(cell):
        rows = {r["lamp"]: r for r in board.rows(list(exp.configs(cell)))}
        if len(rows) == 2:
            b, la = rows[False]["auroc"], rows[True]["auroc"]
            st.success(f"Your cell is done: {exp.loss_name()} AUROC {b:.3f}, LAMP {la:.3f}, Δ {la - b:+.3f}. One "
                       "pair is one noisy reading; the class's table below is what answers the question.",
                       icon=":material/check_circle:")
        st.button("Train the next cell", key="class_next", type="primary", on_click=train_cell,
                  help="Take the next cell nobody has trained yet and queue its two runs.")
    elif busy:
        for v, name in zip(vs, (exp.loss_name(), "LAMP")):
            lab_state.show_job(v, label=f"{name} @ {cell_text(cell)}")
    else:
        bad = [v for v in vs if v is not None and v.status in FINAL and v.status != DONE]
        if bad:
            st.caption(f"■ {len(bad)} of your cell's runs stopped or failed; train it again.")
        st.button("Train my cell", key="class_train", type="primary", on_click=train_cell,
                  help="Queue your cell's base and LAMP runs on the server's shared queue (a run another session "
                       "already trains or finished is shared, never trained twice).")
    return busy


# ----------------------------------------------------------------------------- the board

def coverage_table(exp: ce.Experiment, coverage: dict) -> list[dict]:
    """One row per digit, one column per (seed, batch size): the cell's state, no names."""
    out = []
    for d in exp.digits:
        row = {"digit": str(d)}
        for s in exp.seeds:
            for b in exp.batch_sizes:
                row[f"seed {s} · batch {b}"] = SYMBOL[coverage[(d, s, b)]]
        out.append(row)
    return out


def uneven_seeds(table: list[dict]) -> str:
    """A sentence when some seed has fewer digits done than another at a batch size (its mean then
    averages other digits), else ""."""
    def counts(t):    # "0:10 1:4" -> {10, 4}
        return {x.split(":")[1] for x in t["digits_per_seed"].split()}
    uneven = [t for t in table if len(counts(t)) > 1]
    if not uneven:
        return ""
    return ("Until every seed has every digit, seed means average different digits (seed: digits done; "
            + "; ".join(f"batch {t['batch_size']}: {t['digits_per_seed']}" for t in uneven) + "). ")


def show_board() -> bool:
    """The class's board, live. True while any cell of the grid trains (polls faster then)."""
    exp = board.experiment
    if exp is None:
        st.info("No class experiment is running on this server. When the teacher starts one, this page hands "
                "you one cell of the class's grid to train and shows the class's Table 1 as cells finish.",
                icon=":material/groups:")
        return False
    st.caption(f"**The class experiment.** {plural(len(exp.digits), 'digit')} × {plural(len(exp.seeds), 'seed')} "
               f"× {plural(len(exp.batch_sizes), 'batch size')} ({', '.join(map(str, exp.batch_sizes))}) = "
               f"{len(exp.cells())} cells of two runs each. Protocol: {describe(exp)}. Only runs of this grid "
               f"that finished after {when(exp.start)} count (and runs the store already held when a student was "
               "handed their cell after that).")
    busy = your_cell(exp)
    bd = board.board(q, converged=CONV, paper=PAPER)
    c, total = bd.counts, len(bd.coverage)
    cols = st.columns(5)
    cols[0].metric("cells done", f"{c[ce.DONE]} of {total}", help="Both runs of the cell finished and count.")
    cols[1].metric("training", c[ce.RUNNING], help="Cells whose runs are queued or training now.")
    cols[2].metric("handed out", c[ce.HANDED], help="Cells handed to a session that has not trained them (yet).")
    cols[3].metric("missing", c[ce.MISSING], help="Cells nobody has been handed yet.")
    cols[4].metric("runs counted", bd.runs, help="Runs on the board: two per done cell.")
    with st.expander("Coverage of the grid", expanded=False):
        st.dataframe(coverage_table(exp, bd.coverage), hide_index=True)
    name = exp.loss_name()
    st.subheader("The class's Table 1")
    st.dataframe(ce.display_table(bd.table, name), hide_index=True)
    st.caption(
        f"Per batch size: mean ± std over seeds of each seed's AUROC averaged over the digits done (n seeds); Δ = "
        f"LAMP − {name}, paired by digit and seed (same initial weights and batches), with a 95% t-interval "
        "over pairs, and over digits (each digit's mean Δ over its seeds, n digits: digits differ in how much "
        "LAMP helps, so this one is wider and answers \"on a new digit\"); wins = pairs where LAMP's AUROC is "
        "higher. " + uneven_seeds(bd.table) + "The paper gives one number per cell (no interval); the lab's converged runs are L2 on MNIST trained to "
          "convergence.")
    fig = lab_state.memo_figure("class_delta", (bd.keys, exp, bd.counts[ce.DONE]),
                                lambda: ce.fig_delta_vs_batch(bd.table, loss_name=name))
    st.plotly_chart(fig, key="class_fig")
    if REF_NOTES:
        st.caption(" ".join(REF_NOTES))
    notes = []
    if exp.protocol.train.base_loss != "l2":
        notes.append(f"The references are L2's; this protocol's base loss is {name}.")
    if exp.protocol.data.dataset != "mnist":
        notes.append(f"The references are on MNIST; this protocol uses {DATA_NAME.get(exp.protocol.data.dataset)}.")
    if CONV:
        epochs = {v.get("epochs") for v in CONV.values()} - {None}
        if epochs and exp.protocol.train.epochs < min(epochs):
            notes.append(f"The class's models train {plural(exp.protocol.train.epochs, 'epoch')}, the lab's converged "
                         f"ones {min(epochs)}: compare the sign and the interval of Δ, not the level of AUROC.")
    if notes:
        st.caption(" ".join(notes))
    for line in training_lines(exp, bd):
        st.caption(line)
    if bd.markdown:
        with st.expander("Table 1 as lamp_core.report writes it", expanded=False):
            st.markdown(bd.markdown)
    return busy or c[ce.RUNNING] > 0


def training_lines(exp: ce.Experiment, bd) -> list[str]:
    """Whether the class's models had finished learning, per batch size (lamp_core.convergence):
    judged on the first done cell of each size (every cell of a size shares the recipe), read once
    per set of counted runs. A difference between models that are still learning is not a finding."""
    import results
    memo = st.session_state.setdefault("_class_training", {})
    if memo.get("keys") != bd.keys:
        lines = []
        for b in exp.batch_sizes:
            cell = next((c for c, state in bd.coverage.items() if state == ce.DONE and c[2] == b), None)
            if cell is None:
                continue
            recs = [q.store.get(c) for c in exp.configs(cell)]
            if any(r is None for r in recs):
                continue
            status = results.training_summary({"cell": recs})
            lines.append(f"Batch {b}: the models are **{status.state}**. {status.sentence()}")
        memo.update(keys=bd.keys, lines=lines)
    return memo["lines"]


def poll_board() -> None:
    """Draw the board in a fragment that reruns every POLL_S while cells train, and every
    5 × POLL_S otherwise (other students may start training, or the teacher a new experiment);
    a change between the two reruns the page once, as lab_state.poll does."""
    flag = "_busy_class"

    @st.fragment(run_every=lab_state.POLL_S if ss.get(flag) else 5 * lab_state.POLL_S)
    def body() -> None:
        busy = bool(show_board())
        was = bool(ss.get(flag, False))
        ss[flag] = busy
        if busy != was:
            st.rerun(scope="app")

    body()


if board.load_error:
    st.warning(lab_state.page_message(board.load_error), icon=":material/warning:")
if board.experiment is not None and board.cell_of(sid) is None:
    board.assign(sid, q)          # each session is handed its cell on arrival (nothing trains)
poll_board()

# Exports: a snapshot of the board at this page's last full run (outside the polling fragment,
# so a download button's file is never dropped by a rerun while the teacher clicks it).
snapshot = board.board(q, converged=CONV, paper=PAPER)
if snapshot is not None and snapshot.runs:
    st.caption(f"**Export** (the board as of {time.strftime('%H:%M:%S')}; reload the page for a newer one): the "
               "table with numbers only, and the figure.")
    lab_state.download_table(snapshot.table, "class_table1", key="dl_class")
    lab_state.download_figure(ce.fig_delta_vs_batch(snapshot.table, loss_name=snapshot.experiment.loss_name()),
                              "class_delta_by_batch_size", key="dl_class_fig")


# ----------------------------------------------------------------------------- the teacher

def unlock() -> None:
    if ce.is_teacher(ss.get("class_code")):
        ss["class_teacher"] = True
        ss.pop("class_teacher_msg", None)
    else:
        ss["class_teacher_msg"] = ("That is not this server's teacher code: type the LAMP_TEACHER_CODE the server "
                                   "was started with.")


def start_experiment() -> None:
    ss.pop("class_teacher_msg", None)
    protocol = lesson.DEFAULT_CONFIG if ss.get("class_protocol", "lesson") == "lesson" else lab_state.current_config()
    t = ss.get("class_start") or datetime.datetime.now().time()
    start = datetime.datetime.combine(datetime.date.today(), t).timestamp()
    try:
        exp = ce.Experiment(protocol, tuple(ss.get("class_digits") or ()),
                            tuple(lesson.seeds_of(protocol, int(ss.get("class_seeds", 1)))),
                            tuple(ss.get("class_sizes") or ()), start, ss.get("class_mode", "same_epochs"))
    except LampError as exc:
        ss["class_teacher_msg"] = lab_state.page_message(str(exc).splitlines()[0])
        return
    board.start(exp)


def reset_board() -> None:
    ss.pop("class_teacher_msg", None)
    try:
        board.reset()
    except LampError as exc:
        ss["class_teacher_msg"] = str(exc).splitlines()[0]


def recorded_minutes(exp_protocol, sizes, mode: str, n_cells_per_size: int) -> float | None:
    """Training minutes of the grid on the lab's 2-core CPU, from the seconds per run that
    `lamp lesson measure` recorded at each batch size (the lesson default only; training alone,
    without evaluation or stacking); None where not recorded."""
    if exp_protocol != lesson.DEFAULT_CONFIG:
        return None
    rec = ((lesson.load_expected() or {}).get("batch_size") or {}).get(mode) or {}
    total = 0.0
    for b in sizes:
        secs = (rec.get(str(b)) or {}).get("train_seconds")
        if not secs:
            return None
        per_run = [x for arm in ("base", "lamp") for x in secs.get(arm, [])]
        total += sum(per_run) / len(per_run) * 2 * n_cells_per_size
    return total / 60


def teacher_controls() -> None:
    exp = board.experiment
    grid = lesson.CLASS_GRID if exp is None else {"digits": exp.digits, "seeds": exp.seeds,
                                                  "batch_sizes": exp.batch_sizes, "mode": exp.mode}
    st.multiselect("Digits", list(range(10)), default=list(grid["digits"]), key="class_digits",
                   help="The normal classes of the grid: the paper's Table 1 averages all ten.")
    st.number_input("Seeds", 1, 10, len(grid["seeds"]), key="class_seeds",
                    help="Seeds per digit and batch size, from the protocol's own seed up: more seeds, more pairs.")
    st.multiselect("Batch sizes", list(lesson.BATCH_SIZES), default=list(grid["batch_sizes"]), key="class_sizes",
                   help="Columns of the class's Table 1 (the paper's are 1, 4, 16, 32, 128, 1024; small ones train "
                        "many more steps).")
    st.radio("Protocol", ["lesson", "mine"], key="class_protocol", horizontal=True,
             format_func={"lesson": "the lesson's default",
                          "mine": "the settings you last trained on Train & compare"}.get,
             help="Every cell trains these settings with its own digit, seed and batch size.")
    st.radio("Training length at other batch sizes", list(lesson.STEP_MODES), key="class_mode",
             index=list(lesson.STEP_MODES).index(grid["mode"]), format_func=lesson.STEP_MODES.get, horizontal=True,
             help="Same epochs is the paper's Table 1; same steps gives every size the protocol's optimizer steps.")
    # the default is fixed when the controls first open: a default that moved with every rerun
    # would give the widget a new identity and drop the teacher's choice
    opened = ss.setdefault("class_opened", datetime.datetime.now().time().replace(second=0, microsecond=0))
    st.time_input("Count runs finished from (today, server time)", value=opened, key="class_start", step=60,
                  help="Runs of the grid that finished before this time (an earlier class, a rehearsal) do not count.")
    digits, sizes = ss.get("class_digits") or [], ss.get("class_sizes") or []
    n_cells = len(digits) * int(ss.get("class_seeds", 1)) * len(sizes)
    protocol = lesson.DEFAULT_CONFIG if ss.get("class_protocol", "lesson") == "lesson" else lab_state.current_config()
    minutes = recorded_minutes(protocol, sizes, ss.get("class_mode", "same_epochs"),
                               len(digits) * int(ss.get("class_seeds", 1)))
    st.caption(f"{n_cells} cells, {2 * n_cells} runs"
               + (f", about {minutes:.0f} min of training on the lab's 2-core CPU (seconds per run recorded by "
                  "`lamp lesson measure`, without evaluation)" if minutes is not None else "") + ".")
    c1, c2, c3 = st.columns(3)
    c1.button("Start a new class experiment" if exp else "Start the class experiment", key="class_start_btn",
              type="primary", on_click=start_experiment,
              help="Set this grid and protocol; the board starts empty and sessions are handed cells afresh.")
    if exp is not None:
        c2.button("Reset the board", key="class_reset", on_click=reset_board,
                  help="Keep the grid; count only runs that finish (or are handed out) from now on.")
        c3.button("End the class experiment", key="class_end", on_click=board.end,
                  help="Remove the grid from this server (its runs stay in the run store).")
    if ss.get("class_teacher_msg"):
        st.error(ss["class_teacher_msg"])


with st.expander("Teacher", expanded=bool(ss.get("class_teacher"))):
    if not ce.teacher_code():
        st.caption(f"Teacher controls are off on this server: start it with {ce.TEACHER_CODE_ENV}=<a code> (e.g. "
                   f"`{ce.TEACHER_CODE_ENV}=owl42 make app`) and enter the code here to set up a class experiment.")
    elif not ss.get("class_teacher"):
        st.text_input("Teacher code", type="password", key="class_code",
                      help=f"The {ce.TEACHER_CODE_ENV} this server was started with.")
        st.button("Unlock the teacher's controls", key="class_unlock", on_click=unlock,
                  help="Only this browser session gets the controls.")
        if ss.get("class_teacher_msg"):
            st.error(ss["class_teacher_msg"])
    else:
        teacher_controls()
