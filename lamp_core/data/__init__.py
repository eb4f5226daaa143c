"""Data sources. Every source returns one `ADDataset` (see common.py) from a `DataConfig`.

Sources: `digits` (scikit-learn's 8x8 digits, the smallest), `mnist` / `fashion-mnist` (IDX
files; `MNIST_SUBSET_DIR` is the offline MNIST subset shipped in assets/, see mnist.py),
`mvtec` and `folder` (a folder or a .zip, see folder.py). `content_hash` names an upload by its bytes, so its runs keep their identity.
"""
from __future__ import annotations

import dataclasses
import functools

from ..config import DataConfig, validate_data
from .common import ABNORMAL, IMG_EXTENSIONS, NORMAL, ADDataset, DataError, content_hash
from .digits import load_digits_dataset
from .folder import load_folder_dataset, load_mvtec_dataset
from .mnist import MNIST_SUBSET_DIR, load_mnist_dataset

__all__ = ["ABNORMAL", "IMG_EXTENSIONS", "MNIST_SUBSET_DIR", "NORMAL", "ADDataset",
           "DataError", "content_hash", "load"]

_LOADERS = {
    "digits": load_digits_dataset,
    "mnist": load_mnist_dataset,
    "fashion-mnist": load_mnist_dataset,
    "mvtec": load_mvtec_dataset,
    "folder": load_folder_dataset,
}


def load(cfg: DataConfig, *, cached: bool = True) -> ADDataset:
    """Load the data set a config names. With `cached` (the default) a recent identical config
    is answered from memory: the result is a fresh `ADDataset` whose tensors are shared with
    other callers, so treat them as read-only. `cached=False` always reads and decodes again."""
    validate_data(cfg)
    if not cached:
        return _LOADERS[cfg.dataset](cfg)
    ds = _load_cached(cfg)
    # a new record with its own lists: a caller that appends a note does not change the cache
    return dataclasses.replace(ds, test_groups=list(ds.test_groups), test_names=list(ds.test_names),
                               notes=list(ds.notes))


@functools.lru_cache(maxsize=8)
def _load_cached(cfg: DataConfig) -> ADDataset:
    return _LOADERS[cfg.dataset](cfg)
