"""The app's default comparison, as the lesson defines it (`lamp_core.lesson`): tools without
Streamlit (the classroom benchmark, the expected-results measurement) use the very settings the
app does, and no page declares a default of its own."""
from __future__ import annotations

from lamp_core.lesson import (BATCH_LANDSCAPE, BATCH_SIZES, DEFAULT_CONFIG, DEFAULT_LANDSCAPE,  # noqa: F401
                              DEFAULT_SEEDS)
