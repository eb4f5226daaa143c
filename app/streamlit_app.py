"""LAMP Lab: the interactive lab for loss amplification in reconstruction-based anomaly detection.

Start it with `make app` (or `streamlit run app/streamlit_app.py`). Pages live in app_pages/, one
short file each; what they share (job queue, current settings, downloads) is in lab_state.py.
"""
import sys
import time
from pathlib import Path

# once: Streamlit runs this script again on every rerun, and an insert each time grew
# sys.path by an entry per page run for as long as the server lived
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import streamlit as st

import lab_state
from lamp_core.jobs import single_threaded_caller

# Pages compute little (figures, previews); training runs in the job queue's workers, which must
# not share the cores with OpenMP teams of these script threads (lamp_core.jobs.JobQueue._worker).
single_threaded_caller()
st.set_page_config(page_title="LAMP Lab", page_icon=":material/biotech:", layout="wide")
PAGES = Path(__file__).resolve().parent / "app_pages"
nav = st.navigation([
    st.Page(PAGES / "loss_curves.py", title="Loss curves", icon=":material/show_chart:", default=True),
    st.Page(PAGES / "train_compare.py", title="Train & compare", icon=":material/model_training:"),
    st.Page(PAGES / "landscape.py", title="Loss landscape", icon=":material/landscape:"),
    st.Page(PAGES / "batch_size.py", title="Batch size", icon=":material/tune:"),
    st.Page(PAGES / "your_data.py", title="Your data", icon=":material/upload_file:"),
    st.Page(PAGES / "class_results.py", title="Class results", icon=":material/groups:"),
    st.Page(PAGES / "guide.py", title="Guide", icon=":material/menu_book:"),
])
st.sidebar.markdown("**LAMP Lab** · loss amplification for anomaly detection")
started = time.perf_counter()
nav.run()
# the page's own latency, which its ETAs add (a run that st.rerun cuts short raises out of
# nav.run and is not counted)
lab_state.note_page_run(time.perf_counter() - started)
