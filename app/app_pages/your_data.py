"""Your data: upload a zip of images, see a validation report, then train on it."""
import sys
from pathlib import Path

# Streamlit puts only the main script's folder on sys.path: app/ when streamlit_app.py runs this page,
# app/app_pages/ when the page is run alone (`streamlit run` on it, AppTest.from_file). So app/ is
# added here for lab_state and results; lamp_core itself is the installed package.
if str(Path(__file__).resolve().parents[1]) not in sys.path:     # once (a page runs on every rerun)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import streamlit as st

import lab_state
import results
from lamp_core import data as data_mod
from lamp_core.config import DataConfig, LampError
from lamp_core.lesson import UPLOAD_IMAGE_SIZE, budget_epochs, default_steps, steps_per_epoch

lab_state.setup("Your data")
st.markdown("""
Upload a **.zip** of images in one of these layouts (optionally inside one top folder):

| layout | folders |
|---|---|
| MVTec AD | `train/good/`, `test/good/`, `test/<defect>/`, optional `ground_truth/<defect>/<name>_mask.png` |
| split | `train/normal/`, `test/normal/`, `test/anomalous/`, optional `masks/<name>_mask.png` |
| unsplit | `normal/`, `anomalous/` (a share of the normal images is held out for testing) |

Training uses normal images only; the test set needs both kinds. The archive is read in memory,
never unpacked; files that are not images are skipped and listed below.
""")
example = lab_state.ASSETS / "example_upload.zip"
if example.is_file():
    # what the example holds, counted from the archive itself (the engine's own reading of it)
    ex = data_mod.load(DataConfig(dataset="folder", data_root=str(example), image_size=UPLOAD_IMAGE_SIZE)).summary()
    st.download_button("Download the example zip", example.read_bytes(), file_name="example_upload.zip",
                       mime="application/zip", key="dl_example",
                       help=f"{ex['train_normal']} normal eights to train on, {ex['test_normal']} held-out eights and "
                            f"{ex['test_anomalous']} other digits to test on, in the split layout, plus a README that "
                            "the report lists as skipped.")

limit = lab_state.max_upload_mb()
c1, c2 = st.columns([3, 1])
up = c1.file_uploader("Zip archive", type=["zip"], key="zip", max_upload_size=limit,
                      help=f"At most {limit} MB. Nothing trains until you press the "
                           "button below the report.")
size_lo, size_hi = lab_state.spec_range("data.image_size")
size = c2.number_input("Image size (px)", size_lo, size_hi, UPLOAD_IMAGE_SIZE, 4, key="up_size",
                       help=lab_state.spec_help("data.image_size", "For training, and for this report."))

if up is not None:
    raw = up.getvalue()
    if len(raw) > limit << 20:
        st.error(f"{up.name} is {len(raw) >> 20} MB, over the {limit} MB limit: "
                 "upload fewer or smaller images.")
        st.stop()
    path = lab_state.save_upload(raw)
    cfg = DataConfig(dataset="folder", data_root=str(path), image_size=int(size))
    try:
        with st.spinner("Reading the archive..."):
            ds = data_mod.load(cfg)
    except LampError as exc:
        lab_state.discard_upload(path)
        st.error(lab_state.page_message(str(exc), {str(path): up.name, path.name: up.name}))
        st.stop()
    s = ds.summary()
    st.subheader("Validation report")
    cols = st.columns(5)
    cols[0].metric("train (normal)", s["train_normal"])
    cols[1].metric("test normal", s["test_normal"])
    cols[2].metric("test anomalous", s["test_anomalous"])
    cols[3].metric("image", f"{s['image_size']} px · {'grey' if s['channels'] == 1 else 'RGB'}",
                   help="After resizing. Grey when every image is grey, else RGB.")
    cols[4].metric("masks", "yes" if s["has_masks"] else "no",
                   help="Pixel masks for every anomalous test image turn on pixel AUROC and mask overlays.")
    groups = sorted(set(ds.test_groups))
    if groups:
        st.caption("Test groups: " + ", ".join(f"{g} ({ds.test_groups.count(g)})" for g in groups))
    layout, outside = results.files_outside_layout(path)
    stats = results.original_image_stats(path)
    st.caption(f"Layout: **{layout}** · stored as " + ", ".join(f"{k} ({n})" for k, n in stats[:6])
               + (" …" if len(stats) > 6 else "") + f" · resized to {s['image_size']}×{s['image_size']}")
    notes = [lab_state.page_message(n, {str(path): up.name, path.name: up.name}) for n in ds.notes]
    notes += [f"ignored {f}: not inside one of the {layout} layout's folders" for f in outside]
    if notes:
        with st.expander(f"Skipped or noted: {len(notes)}", expanded=True):
            st.markdown("\n".join(f"- {n}" for n in notes[:200]) + (
                f"\n- … and {len(notes) - 200} more" if len(notes) > 200 else ""))
    else:
        st.caption("Nothing was skipped.")

    def thumbs(x, label: str) -> None:
        if len(x) == 0:
            return
        imgs = [np.clip(t.permute(1, 2, 0).numpy(), 0, 1) for t in x[:8]]
        imgs = [im[..., 0] if im.shape[-1] == 1 else im for im in imgs]
        st.image(imgs, caption=[label] * len(imgs), width=72)

    thumbs(ds.train, "train")
    labels = ds.test_labels.numpy()
    thumbs(ds.test[np.flatnonzero(labels == 0)], "test normal")
    thumbs(ds.test[np.flatnonzero(labels == 1)], "test anomalous")
    in_use = lab_state.upload()
    if in_use is not None and (in_use["path"] != str(path) or in_use.get("image_size") != int(size)):
        st.warning(f"Train & compare still uses **{in_use['name']}** at {in_use.get('image_size', '?')} px, not "
                   f"this report's {up.name} at {int(size)} px: press the button below to use this one.",
                   icon=":material/history:")
    if st.button("Use this data on Train & compare", type="primary", key="use_upload",
                 help="Makes 'Uploaded zip' the data source there, with this image size."):
        st.session_state["upload"] = {"path": str(path), "name": up.name, "summary": s, "image_size": int(size)}
        cur = lab_state.current_config()
        # a training budget that fits the data: the default comparison's number of optimizer steps,
        # so a set of a hundred images is not stopped after a handful of steps (lamp_core.lesson)
        epochs = budget_epochs(s["train_normal"], cur.train.batch_size)
        lab_state.set_current_config(cur.with_data(dataset="folder", data_root=str(path), image_size=int(size),
                                                   category=None, max_train=None, max_test=None)
                                     .with_train(epochs=epochs),
                                     st.session_state.get("seeds", lab_state.DEFAULT_SEEDS))
        steps = steps_per_epoch(s["train_normal"], cur.train.batch_size) * epochs
        st.success(f"{up.name} is ready: open **Train & compare** and press Train. Its {s['train_normal']} "
                   f"training images get {epochs} epochs at batch {cur.train.batch_size} ({steps} optimizer steps; "
                   f"the default comparison takes {default_steps()}).")
else:
    in_use = lab_state.upload()
    if in_use is not None:
        st.caption(f"Train & compare uses **{in_use['name']}** (validated earlier in this session). Upload "
                   "another zip to replace it.")
