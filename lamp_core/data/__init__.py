"""Data sources. Every source returns one `ADDataset` (see common.py) from a `DataConfig`.

Sources: `digits` (scikit-learn's 8x8 digits, the smallest), `mnist` / `fashion-mnist` (IDX
files; `MNIST_SUBSET_DIR` is the offline MNIST subset shipped in assets/, see mnist.py),
`mvtec` and `folder` (a folder or a .zip, see folder.py; decoded one image at a time within
the memory budget of images.py). `content_hash` names an upload by its bytes, so its runs keep
their identity after a restart.

`load` is the process's one data-set cache: the pages, the job queue, sweeps and training all
load through it, so none decodes the same set twice and none keeps a cache of its own. Its
memory is bounded twice for a server that a whole class shares: it remembers at most one decode
budget of tensors (`decoded_budget_bytes()`, least recently used first out) and at most
`MAX_CACHED_SETS` sets whatever their size (so many tiny sets cannot pile up records), and image sets are
decoded one at a time in the process, so two uploads arriving together cannot double the peak.
Besides, a set some caller still holds (a queued run's, a sweep's) is answered with that caller's
tensors whatever its size, through weak references only: it costs no memory that the caller does
not hold already, and a set larger than the budget is not decoded again while it is in use.
"""
from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict

from ..config import DataConfig, validate_data
from .common import ABNORMAL, IMG_EXTENSIONS, NORMAL, ADDataset, DataError, content_hash
from .digits import load_digits_dataset
from .folder import load_folder_dataset, load_mvtec_dataset
from .images import decoded_budget_bytes
from .mnist import MNIST_SUBSET_DIR, load_mnist_dataset

__all__ = ["ABNORMAL", "IMG_EXTENSIONS", "MNIST_SUBSET_DIR", "NORMAL", "ADDataset", "DataError", "content_hash",
           "clear_cache", "decoded_budget_bytes", "load", "peek"]

_LOADERS = {
    "digits": load_digits_dataset,
    "mnist": load_mnist_dataset,
    "fashion-mnist": load_mnist_dataset,
    "mvtec": load_mvtec_dataset,
    "folder": load_folder_dataset,
}
_DECODED_SOURCES = ("mvtec", "folder")   # image files decoded one by one (the memory-heavy ones)

# The recent sets, least recently used first: at most one decode budget of tensors (default 512 MB,
# $LAMP_DECODE_BUDGET_MB) and at most MAX_CACHED_SETS sets, whichever bound is reached first.
MAX_CACHED_SETS = 64
_cache: OrderedDict[DataConfig, ADDataset] = OrderedDict()
# every set a caller still holds: a handed-out record keeps its source alive (`_source`), nothing else does
_in_use: "weakref.WeakValueDictionary[DataConfig, ADDataset]" = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()
_decode_lock = threading.Lock()


def load(cfg: DataConfig, *, cached: bool = True) -> ADDataset:
    """Load the data set a config names. With `cached` (the default) a recent identical config
    is answered from memory: the result is a fresh `ADDataset` whose tensors are shared with
    other callers, so treat them as read-only. `cached=False` always reads and decodes again."""
    validate_data(cfg)
    if cached and (hit := _lookup(cfg)) is not None:
        return hit
    if cfg.dataset in _DECODED_SOURCES:
        with _decode_lock:
            # another thread may have decoded the same set while this one waited
            if cached and (hit := _lookup(cfg)) is not None:
                return hit
            ds = _LOADERS[cfg.dataset](cfg)
    else:
        ds = _LOADERS[cfg.dataset](cfg)
    if not cached:
        return _own_record(ds)
    with _cache_lock:
        _remember(cfg, ds)
        return _hand_out(cfg, ds)


def _own_record(ds: ADDataset) -> ADDataset:
    # a new record with its own lists: a caller that appends a note does not change the cache
    return dataclasses.replace(ds, test_groups=list(ds.test_groups), test_names=list(ds.test_names),
                               notes=list(ds.notes))


def _nbytes(ds: ADDataset) -> int:
    return sum(t.numel() * t.element_size() for t in (ds.train, ds.val, ds.test, ds.test_labels, ds.test_masks)
               if t is not None)


def _lookup(cfg: DataConfig) -> ADDataset | None:
    with _cache_lock:
        ds = _cache.get(cfg)
        if ds is not None:
            _cache.move_to_end(cfg)
        else:
            ds = _in_use.get(cfg)
            if ds is None:
                return None
        return _hand_out(cfg, ds)


def _hand_out(cfg: DataConfig, ds: ADDataset) -> ADDataset:
    """A caller's own record of the cached `ds`, which keeps `ds` findable while the caller holds
    it (a weak index: `ds` is freed with the last record). Caller holds _cache_lock."""
    out = _own_record(ds)
    out._source = ds               # type: ignore[attr-defined]
    _in_use[cfg] = ds
    return out


def peek(cfg: DataConfig) -> ADDataset | None:
    """The data set of `cfg` where the cache or a caller holds it, else None: never loads, never
    copies (for estimates that must not decode anything, such as the job queue's waiting times).
    The record is the cache's own: read it, do not change it."""
    with _cache_lock:
        ds = _cache.get(cfg)
        return _in_use.get(cfg) if ds is None else ds


def _remember(cfg: DataConfig, ds: ADDataset) -> None:
    """Keep `ds` among the recent sets, evicting the oldest beyond the byte budget or beyond
    MAX_CACHED_SETS sets. Caller holds _cache_lock."""
    limit = decoded_budget_bytes()
    if _nbytes(ds) > limit:
        return
    _cache[cfg] = ds
    _cache.move_to_end(cfg)
    while len(_cache) > MAX_CACHED_SETS or sum(_nbytes(d) for d in _cache.values()) > limit:
        _cache.popitem(last=False)


def clear_cache() -> None:
    """Forget every remembered data set (their memory is freed once no caller holds them); the
    next `load` of any config decodes again."""
    with _cache_lock:
        _cache.clear()
        _in_use.clear()
