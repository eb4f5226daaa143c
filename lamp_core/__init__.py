"""LAMP Lab engine: reconstruction-based anomaly detection and loss amplification (LAMP).

Never imports streamlit; the app and the `lamp` command both stand on this package.
"""
__version__ = "0.1.0"
