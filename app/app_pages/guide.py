"""Guide: the lab guide for a session, with the app's real defaults filled in
(`lamp_core.lesson_notes.render_guide` over assets/lab_guide.md).

The teacher notes (expected numbers and answers) are not on the students' page: a server started
for a teacher (`make app TEACHER=1`, i.e. LAMP_TEACHER=1) offers them as a download here, and
`lamp notes` prints them anywhere.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for lab_state), when run alone
import streamlit as st

import lab_state
from lamp_core.lesson_notes import render_guide, render_notes

lab_state.setup("Lab guide")
guide = render_guide()
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
