"""LAMP Lab engine: reconstruction-based anomaly detection and loss amplification (LAMP).

Never imports streamlit; the app and the `lamp` command both stand on this package.

What a notebook needs, from one place (README, "Use it from Python"):

    from lamp_core import RunConfig, DataConfig, TrainConfig, load, train, evaluate

* configuration: `RunConfig` and its sections `DataConfig`, `ModelConfig`, `TrainConfig`,
  `LandscapeConfig`; `run_key` (a run's identity); `LampError` (every error a user can fix);
* data: `load(DataConfig) -> ADDataset`;
* training and scores: `train(cfg, data) -> TrainResult`, `evaluate(model, data) -> Evaluation`;
* runs through the store: `run_config(cfg, store=RunStore())`, `compare_configs(cfg)` (the base
  and the LAMP config of one seed);
* `figures`: the plotly figures of the paper (ROC curves, histograms, reconstructions, ...);
* `DEFAULT_CONFIG`: the lab's default comparison (`lamp_core.lesson`).

`lamp_core.train` and `lamp_core.evaluate` are the functions; their modules' other names are
imported as before (`from lamp_core.train import TrainResult`). The names are imported here at
once, not looked up on first use: `train` and `evaluate` share their names with their modules,
and a lazy lookup would find the module once anything had imported it. Nothing inside lamp_core
imports from this file (tests/test_layout.py): it stands above every module it exports from.
"""
from . import figures
from .config import DataConfig, LampError, LandscapeConfig, ModelConfig, RunConfig, TrainConfig, run_key
from .data import ADDataset, load
from .evaluate import Evaluation, evaluate
from .lesson import DEFAULT_CONFIG
from .run_types import TrainResult
from .runner import RunRecord, compare_configs, run_config
from .store import RunStore
from .train import train

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CONFIG", "ADDataset", "DataConfig", "Evaluation", "LampError", "LandscapeConfig", "ModelConfig",
    "RunConfig", "RunRecord", "RunStore", "TrainConfig", "TrainResult", "compare_configs", "evaluate", "figures",
    "load", "run_config", "run_key", "train",
]

