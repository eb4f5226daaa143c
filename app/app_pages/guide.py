"""Guide: the lab guide for a session (assets/lab_guide.md), and the teacher notes as a separate download
(assets/teacher_notes.md: expected numbers, timings and answers, kept off the students' page)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app/ (for lab_state), when run alone
import streamlit as st

import lab_state

lab_state.setup("Lab guide")
guide = lab_state.ASSETS / "lab_guide.md"
st.markdown(guide.read_text(encoding="utf-8"))
st.download_button("Download the guide (Markdown)", guide.read_bytes(), file_name="lamp_lab_guide.md",
                   mime="text/markdown", key="dl_guide", help="The same guide as a file, to print or hand out.")
notes = lab_state.ASSETS / "teacher_notes.md"
st.download_button("Download the teacher notes (Markdown)", notes.read_bytes(), file_name="lamp_lab_teacher_notes.md",
                   mime="text/markdown", key="dl_teacher_notes", on_click="ignore",
                   help="For the teacher: what each exercise should show, with measured numbers, timings and the "
                        "answers to the guide's questions. Not shown on this page, so students can find out first.")
