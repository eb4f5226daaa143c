"""Data sources. Every source returns one `ADDataset` (see common.py) from a `DataConfig`."""
from __future__ import annotations

import functools

from ..config import DataConfig, validate_data
from .common import ABNORMAL, IMG_EXTENSIONS, NORMAL, ADDataset, DataError
from .digits import load_digits_dataset
from .folder import load_folder_dataset, load_mvtec_dataset
from .mnist import load_mnist_dataset

__all__ = ["ABNORMAL", "IMG_EXTENSIONS", "NORMAL", "ADDataset", "DataError", "load"]

_LOADERS = {
    "digits": load_digits_dataset,
    "mnist": load_mnist_dataset,
    "fashion-mnist": load_mnist_dataset,
    "mvtec": load_mvtec_dataset,
    "folder": load_folder_dataset,
}


def load(cfg: DataConfig) -> ADDataset:
    """Load (and remember) the data set a config names. The returned tensors are shared:
    treat them as read-only."""
    validate_data(cfg)
    return _load_cached(cfg)


@functools.lru_cache(maxsize=8)
def _load_cached(cfg: DataConfig) -> ADDataset:
    return _LOADERS[cfg.dataset](cfg)
