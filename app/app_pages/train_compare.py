"""Train & compare (paper Fig. 4 and the ROC): base and LAMP from the same initial weights."""
import math
import sys
from pathlib import Path

# Streamlit puts only the main script's folder on sys.path: app/ when streamlit_app.py runs this page,
# app/app_pages/ when the page is run alone (`streamlit run` on it, AppTest.from_file). So app/ is
# added here for lab_state and results; lamp_core itself is the installed package.
if str(Path(__file__).resolve().parents[1]) not in sys.path:     # once (a page runs on every rerun)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import streamlit as st

import lab_state
import results
from lamp_core import figures, lesson
from lamp_core.config import (BASE_LOSSES, DEFAULT_DETACH_MAX, DEFAULT_EPS, DEFAULT_IMAGE_SIZE, DEFAULT_MAX_OVER,
                              MAX_OVER, OPTIMIZERS, LampError, ModelConfig, RunConfig, TrainConfig, DataConfig,
                              run_key, validate)
from lamp_core import data as data_mod
from lamp_core.data import MNIST_SUBSET_DIR
from lamp_core.data.mnist import FILES as IDX_FILES
from lamp_core.evaluate import NORMAL_PERCENTILE, confusion_at
from lamp_core.jobs import DONE

# Widgets of config options take their bounds, choices and help from lamp_core.config's option
# specs (`lab_state.spec_range` / `spec_help`). Limits of the page's own are narrower on purpose
# and say why where they are set: a number widget cannot exclude a bound (lr, eps > 0), and a
# lesson's sensible range is not the engine's (epochs, width, seeds).
q = lab_state.setup("Train & compare")
st.caption("Two autoencoders, identical except for the loss: same data, same initial weights, same "
           "batches in the same order. One is trained on the base loss, the other on its LAMP version.")
ss = st.session_state
cur = lab_state.current_config()

# ----------------------------------------------------------------------------- data
SOURCES = {"mnist": "MNIST", "digits": "Built-in digits (smallest)", "fashion-mnist": "Fashion-MNIST",
           "mvtec": "MVTec-layout folder", "folder": "Uploaded zip"}
st.subheader("Data")
c1, c2, c3 = st.columns(3)
source = c1.selectbox("Data source", list(SOURCES), format_func=SOURCES.get, key="source",
                      index=list(SOURCES).index(cur.data.dataset),
                      help="MNIST (default) reads IDX files: the offline subset shipped with the lab (1,000 "
                           "training images per digit, 2,000 test images), or a folder of full files. Digits "
                           "ship with scikit-learn (1,797 8×8 images, the smallest and fastest). Fashion-MNIST "
                           "reads IDX files; MVTec-layout folders come from the data root (LAMP_DATA_ROOT); "
                           "'Uploaded zip' uses the set validated on the Your data page.")
data_kw: dict = {"dataset": source}
root = lab_state.data_root()
# where the page looks for data, in words: never "None" when no data root is set
ROOT_WORDS = f"the data root ({root})" if root is not None else "the data root (none set: LAMP_DATA_ROOT)"
# what a source lacks here, said once below instead of a Train button that can only fail
missing: str | None = None
can_download = False


def idx_in_cache(dataset: str) -> bool:
    """Whether the download cache already holds this data set's IDX files: the loader itself is
    asked, with the download off, so this can never try the network."""
    try:
        data_mod.load(DataConfig(dataset=dataset, download=False, max_train=1, max_test=2))
    except LampError:
        return False
    return True


if source in ("digits", "mnist", "fashion-mnist"):
    lo, hi = lab_state.spec_range("data.normal_class")
    data_kw["normal_class"] = c2.selectbox("Normal class", list(range(lo, hi + 1)), index=cur.data.normal_class - lo,
                                           help=lab_state.spec_help("data.normal_class", "The other nine are the "
                                                                    "anomalies (the paper's one-class protocol, §3.1)."))
if source in ("mnist", "fashion-mnist"):
    SUBSET = "offline subset (shipped with the lab)"
    DOWNLOAD = "(download into the cache)"
    found = lab_state.find_folders("idx")
    options = ([SUBSET] if source == "mnist" else []) + found + [DOWNLOAD]
    now = cur.data.data_root if cur.data.dataset == source else None
    at = (0 if now == str(MNIST_SUBSET_DIR) or now is None else
          next((i for i, f in enumerate(options) if root is not None and now == str(root / f)), 0))
    choice = c3.selectbox("IDX folder", options, index=at, key=f"idx_{source}",
                          help=f"The offline MNIST subset, or folders under {ROOT_WORDS} holding "
                               "train-images-idx3-ubyte files (Fashion-MNIST uses the same file names). "
                               "Downloading needs a network.")
    data_kw["data_root"] = (str(MNIST_SUBSET_DIR) if choice == SUBSET else
                            str(root / choice) if choice in found else None)
    cc1, cc2 = st.columns(2)
    # untouched, these give the lesson's default (lamp_core.lesson): the runs a page trains are the
    # runs every other page and session finds in the store; empty means "all images" (no cap)
    same = cur.data.dataset == source
    max_train = cc1.number_input(
        "Max training images (empty: all)", lab_state.spec_range("data.max_train")[0], None,
        cur.data.max_train if same else lesson.DEFAULT_CONFIG.data.max_train, 100, key=f"maxtr_{source}",
        help=lab_state.spec_help("data.max_train", "A seeded subset of the normal class keeps CPU training short; "
                                 "the offline subset has 1,000 per digit."))
    max_test = cc2.number_input(
        "Max test images (empty: all)", lab_state.spec_range("data.max_test")[0], None,
        cur.data.max_test if same else lesson.DEFAULT_CONFIG.data.max_test, 100, key=f"maxte_{source}",
        help=lab_state.spec_help("data.max_test", "The offline subset has 2,000."))
    data_kw["max_train"] = None if max_train is None else int(max_train)
    data_kw["max_test"] = None if max_test is None else int(max_test)
    if choice == DOWNLOAD and not idx_in_cache(source):
        name = SOURCES[source]
        where = (f"none under the data root {root}" if root is not None else
                 "no data root is set (LAMP_DATA_ROOT)")
        missing = (f"{name} needs its IDX files ({', '.join(IDX_FILES.values())}, .gz or not): {where}, and "
                   "the download cache does not hold them. Set LAMP_DATA_ROOT to a folder holding them and restart "
                   "the app, or download them below where this server reaches the network"
                   + (", or choose the offline subset as IDX folder." if source == "mnist" else "."))
        can_download = True
elif source == "mvtec":
    found = lab_state.find_folders("mvtec")
    if not found:
        missing = ("MVTec-layout data needs a data root: set LAMP_DATA_ROOT to the folder that holds your "
                   "categories (each with train/good/) and restart the app, or upload a zip on the **Your data** "
                   "page." if root is None else
                   f"No MVTec-layout category (a folder with train/good/) under the data root {root}: put your "
                   "categories there, or set LAMP_DATA_ROOT to the folder that holds them and restart the app.")
    else:
        choice = c2.selectbox("Category", found, help="Category folders under the data root: each holds "
                              "train/good, test/<type> and optionally ground_truth/<type> masks.")
        data_kw["data_root"] = str(root / choice)
        data_kw["category"] = Path(choice).name
elif source == "folder":
    up = lab_state.upload()
    if up is None:
        missing = "No validated upload in this session yet: upload a zip on the **Your data** page first."
    else:
        c2.markdown(f"Using **{up['name']}** ({up['summary']['train_normal']} training images)")
        data_kw["data_root"] = up["path"]
if missing:
    # said once, here; the rest of the page (a Train button that could only fail, six identical
    # run errors) is not drawn until the data exists
    st.info(missing)
    if can_download and st.button(f"Download {SOURCES[source]}", key="download_idx",
                                  help="Fetch the IDX files into the download cache (needs a network). "
                                       "Once they are there, this page trains on them."):
        with st.spinner(f"Downloading {SOURCES[source]}…"):
            try:
                data_mod.load(DataConfig(dataset=source, max_train=1, max_test=2))
            except LampError:
                st.error(f"{SOURCES[source]} could not be downloaded from this server: set LAMP_DATA_ROOT to a "
                         "folder holding its IDX files and restart the app.")
                st.stop()
        st.rerun()
    st.stop()
default_size = cur.data.image_size if cur.data.dataset == source else DEFAULT_IMAGE_SIZE[source]
size_lo, size_hi = lab_state.spec_range("data.image_size")
data_kw["image_size"] = c3.number_input("Image size (px)", size_lo, size_hi, default_size, 4,
                                        key=f"size_{source}",
                                        help=lab_state.spec_help("data.image_size", "28 matches MNIST; the network "
                                                                 "has 4 blocks up to 32 px and 6 above (paper §3.1)."))

# ----------------------------------------------------------------------------- training
st.subheader("Training")
t = cur.train
c1, c2, c3, c4 = st.columns(4)
base_loss = c1.selectbox("Base loss", BASE_LOSSES, index=BASE_LOSSES.index(t.base_loss),
                         format_func=str.upper,
                         help=lab_state.spec_help("train.base_loss", "L2 is the squared error, L1 the absolute error, "
                                                  "SSIM (1 − SSIM)/2. LAMP amplifies whichever you choose."))
optimizer = c2.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(t.optimizer),
                         help=lab_state.spec_help("train.optimizer", "The paper's Table 2 uses all three."))
# lr > 0 has no closed bound a widget could take: the page offers 1e-5 to 1
lr = c3.number_input("Learning rate", 1e-5, 1.0, t.lr, format="%g", step=1e-4,
                     help=lab_state.spec_help("train.lr", "The step size of the optimizer, the same for base and LAMP."))
batch = c4.selectbox("Batch size", lab_state.BATCH_SIZES, index=lab_state.BATCH_SIZES.index(t.batch_size)
                     if t.batch_size in lab_state.BATCH_SIZES else 3,
                     help="Images per step (the paper's sizes). Capped at the number of training images.")
c1, c2, c3 = st.columns(3)
# at least 1 (the engine allows 0, an untrained model; a comparison of two would teach nothing), at most 500
epochs = c1.number_input("Epochs", 1, 500, t.epochs, help=lab_state.spec_help("train.epochs"))
seeds = c2.number_input("Seeds", 1, 10, int(ss.get("seeds", lab_state.DEFAULT_SEEDS)),
                        help="Train each loss with this many seeds (initial weights and batch order). Several "
                             "seeds show the spread: AUROC is reported as mean ± std over seeds. The runs of a "
                             "comparison train together as one stack where that pays (on a GPU; on a CPU at "
                             "batch sizes up to 16).")
seed0 = c3.number_input("First seed", 0, 10_000, t.seed,
                        help=lab_state.spec_help("train.seed", "Seeds run from this value upward."))
with st.expander("LAMP's open choices (paper eq. 2): defaults shown", expanded=True):
    c1, c2, c3 = st.columns(3)
    # ε in (0, 1) has open bounds a widget cannot take: the page offers 1e-6 to 0.5 (above, LAMP is
    # close to the base loss)
    eps = c1.number_input("ε", 1e-6, 0.5, t.eps, format="%g", step=1e-3,
                          help=lab_state.spec_help("train.eps", f"Default {DEFAULT_EPS:g}: the largest element "
                               f"contributes −log ε ≈ {-math.log(DEFAULT_EPS):.1f}. Smaller ε lets that one "
                               "element dominate. The defaults come from the converged ablation "
                               "(bench/results/ablation.md in the repository)."))
    max_over = c2.selectbox("max(B) taken over", MAX_OVER, index=MAX_OVER.index(t.max_over),
                            help=lab_state.spec_help("train.max_over", f"Default '{DEFAULT_MAX_OVER}'. 'sample': per "
                                 "image over C, H, W (LAMP then does not "
                                 "depend on the batch size). 'batch': over "
                                 "the whole batch's loss map (what a max over the batch's tensor gives when eq. 2 "
                                 "is coded as written; LAMP then depends on the batch size). 'fixed': the bound 1, "
                                 "which leaves small residuals almost un-amplified."))
    detach = c3.checkbox("Detach max from the gradient", t.detach_max,
                         help=lab_state.spec_help("train.detach_max", f"Default {DEFAULT_DETACH_MAX}. Ticked: max(B) "
                              "is a constant scale, a normaliser. Unticked: the gradient flows through max(B), the "
                              "literal autograd reading of eq. 2."))
with st.expander("Network"):
    c1, c2 = st.columns(2)
    # the engine takes any width and latent width from 1; the page offers a range that trains in class time
    width = c1.number_input("Width", 4, 128, cur.model.width, help=lab_state.spec_help("model.width", "Fewer is faster."))
    latent = c2.number_input("Latent channels", lab_state.spec_range("model.latent_channels")[0], 256,
                             cur.model.latent_channels,
                             help=lab_state.spec_help("model.latent_channels", "A narrower bottleneck generalises less."))

cfg = RunConfig(data=DataConfig(**data_kw),
                model=ModelConfig(width=int(width), latent_channels=int(latent)),
                train=TrainConfig(base_loss=base_loss, eps=float(eps), max_over=max_over, detach_max=detach,
                                  optimizer=optimizer, lr=float(lr), batch_size=int(batch), epochs=int(epochs),
                                  seed=int(seed0)))
st.caption(lab_state.describe(cfg))



def identity(cfg: RunConfig, seeds: int) -> list[str]:
    """What the results on this page belong to: the run keys of every run of the comparison."""
    return [run_key(c) for cs in results.seed_configs(cfg, seeds).values() for c in cs]


def train(cfg: RunConfig, seeds: int) -> None:
    """Queue (or load from the store) every run of the comparison; nothing happens without a click."""
    try:
        validate(cfg)
        if source == "folder" and cfg.data.data_root is None:
            raise LampError("no uploaded data: validate a zip on the Your data page first")
        cfgs = results.seed_configs(cfg, seeds)
        flat = [c for cs in cfgs.values() for c in cs]
        views = q.submit_runs(flat, session=lab_state.session_id())
        ids = iter(v.id for v in views)
        ss["compare"] = {"ids": {n: [next(ids) for _ in cs] for n, cs in cfgs.items()}, "epochs": int(cfg.train.epochs),
                         "identity": identity(cfg, seeds), "describe": f"{lab_state.describe(cfg)} · {seeds} seed(s)"}
        lab_state.set_current_config(cfg, seeds)
    except LampError as exc:
        st.error(lab_state.page_message(str(exc)))


if st.button("Train base and LAMP", type="primary", key="train",
             help="Queue every run (both losses, each seed) in the background; they train together as one "
                  "stack where that pays (a GPU, or a CPU at batch sizes up to 16). Runs trained before by "
                  "anyone on this server load from the run store at once."):
    train(cfg, int(seeds))

cmp = ss.get("compare")
if cmp and cmp.get("identity") != identity(cfg, int(seeds)):
    if lab_state.stale_notice(cmp["describe"], button="Train these settings", key="train_stale"):
        train(cfg, int(seeds))
        st.rerun()


def progress() -> bool:
    vs = {n: lab_state.views(ids) for n, ids in cmp["ids"].items()}
    busy = not all(lab_state.all_final(v) for v in vs.values())
    cols = st.columns(len(vs))
    for col, (name, vlist) in zip(cols, vs.items()):
        with col:
            for v in vlist:
                lab_state.show_job(v, label=f"{name}" + (f" · {v.label}" if v else ""))
    if busy:
        st.button("Stop", key="stop", help="Stop every run of this comparison after its current step (a run "
                  "another session also asked for goes on for them). The partial loss curves stay; nothing "
                  "partial is stored.",
                  on_click=lambda: [q.cancel(i, lab_state.session_id()) for ids in cmp["ids"].values() for i in ids])
    hist = {}
    for name, vlist in vs.items():
        v = vlist[0]
        if v is None:
            continue
        rec = v.result
        hist[name] = rec.result.history if rec is not None else v.partial.get("history", {})
    if any(h.get("loss") for h in hist.values()):
        sig = repr({n: h.get("loss") for n, h in hist.items()})
        st.plotly_chart(lab_state.memo_figure("history", sig, lambda: figures.fig_history(hist, epochs=cmp["epochs"])),
                        key="history")
    return busy


if cmp:
    st.subheader("Progress")
    lab_state.poll(progress, key="compare")
    vs = {n: lab_state.views(ids) for n, ids in cmp["ids"].items()}
    if lab_state.all_final([v for vl in vs.values() for v in vl]):
        recs = {n: [v.result for v in vl if v is not None and v.status == DONE and v.result.evaluation]
                for n, vl in vs.items()}
        if not all(recs.values()):
            st.warning("Stopped or failed before both losses finished: the loss curves above show how far "
                       "they got. Nothing partial was evaluated or stored; press Train to run again.")
        else:
            st.subheader("Detection")
            evs = {n: [r.evaluation for r in rl] for n, rl in recs.items()}
            mcols = st.columns(len(evs) + 1)
            for col, (n, el) in zip(mcols, evs.items()):
                col.metric(f"{n} AUROC", figures.format_auroc([e.auroc for e in el]),
                           help="Area under the ROC curve of the per-image mean-L2 score (1 = perfect, "
                                "0.5 = chance); mean ± std over seeds when several ran.")
            n_seeds = len(next(iter(evs.values())))
            st.caption(results.auroc_spread_note(n_seeds))
            # whether these models had finished learning, and the verdict worded as that and the
            # paired interval allow, beside the lab's converged result (lamp_core.convergence)
            status = results.training_summary(recs)
            show = st.warning if status.learning else st.success if status.state == "trained" else st.info
            show(status.sentence(),
                 icon=":material/hourglass_top:" if status.learning else ":material/check_circle:"
                 if status.state == "trained" else ":material/help:")
            for line in results.verdict_lines(recs, status):
                st.markdown(line)
            # the histograms, confusion matrices, grid and pixel AUROC show one run: the first seed
            first_seed = next(iter(recs.values()))[0].result.config.train.seed
            seed_note = results.first_seed_note(first_seed, n_seeds)
            pix = {n: el[0].pixel_auroc for n, el in evs.items() if el[0].pixel_auroc is not None}
            if pix:
                mcols[-1].metric(f"pixel AUROC (seed {first_seed})",
                                 " / ".join(f"{n} {v:.3f}" for n, v in pix.items()),
                                 help="AUROC of per-pixel squared error against the ground-truth masks.")
            left, right = st.columns([1, 1.4])
            with left:
                roc = figures.fig_roc(evs)
                st.plotly_chart(roc, key="roc")
                lab_state.download_figure(roc, "roc", key="dl_roc")

            @st.fragment
            def threshold_part() -> None:
                first = {n: el[0] for n, el in evs.items()}
                pct = st.slider("Threshold: percentile of normal test scores", 50.0, 100.0, NORMAL_PERCENTILE, 0.5,
                                key="threshold",
                                help="Each model flags an image as anomalous when its score is at or above this "
                                     "percentile of its own normal test scores: the same false-positive "
                                     "budget for both, whatever the scale of their scores (first seed). At "
                                     f"{NORMAL_PERCENTILE:g} the F1 is the table's f1_at_normal_p95.")
                thr = results.percentile_thresholds(first, pct)
                hist_fig = figures.fig_score_hist(first, thresholds=thr, title=f"Anomaly scores · {seed_note}",
                                                  threshold_label=f"threshold ({pct:g}th percentile of normal)")
                st.plotly_chart(hist_fig, key="hist")
                st.plotly_chart(figures.fig_confusion({n: confusion_at(e, thr[n]) for n, e in first.items()},
                                                      title=f"At the threshold · {seed_note}"),
                                key="confusion")
                lab_state.download_figure(hist_fig, "score_histograms", key="dl_hist")

            with right:
                threshold_part()
            st.subheader("Reconstructions (paper Fig. 4)")
            st.caption(f"Models of {seed_note}. Columns: normal and anomalous test images, from typical to "
                       "hardest by score. Every error map shares one colour scale. Masks are shown where the data "
                       "has them.")
            ex = results.recon_examples({n: rl[0] for n, rl in recs.items()})
            grid = figures.fig_recon_grid(ex["inputs"], ex["recons"], titles=ex["titles"], masks=ex["masks"])
            st.plotly_chart(grid, key="grid", theme=None)  # keep the figure's own colour scales
            lab_state.download_figure(grid, "reconstructions", key="dl_grid")
            st.subheader("Results")
            st.caption(results.metrics_note(next(iter(evs.values()))[0].labels))
            rows = [results.result_row(n, r) for n, rl in recs.items() for r in rl]
            # metrics first, so AUROC is on screen without scrolling the table sideways
            st.dataframe(rows, hide_index=True, column_order=results.ROW_ORDER)
            lab_state.download_table(rows, "lamp_comparison", key="dl_rows")
