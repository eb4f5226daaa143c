"""Guide: the lab guide for a session, with the app's real defaults filled in
(`lamp_core.lesson_notes.render_guide` over assets/lab_guide.md).

The teacher notes (expected numbers and answers) are not on the students' page: a server started
for a teacher (`make app TEACHER=1`, i.e. LAMP_TEACHER=1) offers them as a download here, and
`lamp notes` prints them anywhere.
"""
import os
import sys
from pathlib import Path

# Streamlit puts only the main script's folder on sys.path: app/ when streamlit_app.py runs this page,
# app/app_pages/ when the page is run alone (`streamlit run` on it, AppTest.from_file). So app/ is
# added here for lab_state and results; lamp_core itself is the installed package.
if str(Path(__file__).resolve().parents[1]) not in sys.path:     # once (a page runs on every rerun)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import streamlit as st

import lab_state
from lamp_core.config import LampError
from lamp_core.lesson_notes import render_guide, render_notes

lab_state.setup("Lab guide")
try:
    guide = render_guide()
except LampError as exc:          # e.g. a damaged assets/expected_results.json: one line, no traceback
    st.error(str(exc))
    st.stop()
st.markdown(guide)
st.download_button("Download the guide (Markdown)", guide.encode(), file_name="lamp_lab_guide.md",
                   mime="text/markdown", key="dl_guide", on_click="ignore",
                   help="The same guide as a file, to print or hand out.")
if os.environ.get("LAMP_TEACHER", "").strip() not in ("", "0"):
    st.download_button("Download the teacher notes (Markdown)", render_notes().encode(),
                       file_name="lamp_lab_teacher_notes.md", mime="text/markdown", key="dl_teacher_notes",
                       on_click="ignore",
                       help="For the teacher (this server was started with TEACHER=1): what each exercise should "
                            "show, with the measured numbers and the answers to the guide's questions.")
