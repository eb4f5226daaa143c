"""MNIST and Fashion-MNIST in the paper's protocol (§3.1): train on class k of the training
split, test on the whole test split (k normal, the other nine anomalous).

The IDX files are parsed here (a few lines of numpy, no pickle). `data_root` is read as it is
(the folder itself, or its `raw/`, `MNIST/raw/` or `FashionMNIST/raw/`); without it the files
are downloaded once into the user cache through torchvision where there is a network.

Offline MNIST: the repository ships a compact subset, `MNIST_SUBSET_DIR` (assets/mnist_subset:
1000 training images per digit and a 200-per-digit test set, 2.0 MB, made from the original
files by assets/make_mnist_subset.py). It is four IDX files like the originals, so it is read by
naming its folder, `DataConfig(dataset="mnist", data_root=str(MNIST_SUBSET_DIR))`, or on the
command line `--dataset mnist --data-root assets/mnist_subset`: no network, about 0.1 s.
It is not a silent fallback for `dataset="mnist"` without a data root: then a run's
configuration would name different data depending on whether the download worked. Test images
of the subset are named by their index in the original t10k file (from source_indices.npz).
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataConfig
from .common import ABNORMAL, NORMAL, ADDataset, DataError, split_val, stratified_cap

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TV_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
MAX_IDX_ITEMS = 1_000_000
MNIST_SUBSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "mnist_subset"
SUBSET_INDEX_FILE = "source_indices.npz"   # int32 arrays `train`, `test`: indices in the full files


def cache_dir() -> Path:
    """Where downloads go: $LAMP_CACHE, else ~/.cache/lamp-lab."""
    return Path(os.environ.get("LAMP_CACHE", Path.home() / ".cache" / "lamp-lab")).expanduser()


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 8:
                raise DataError(f"{path.name} is not an unsigned-byte IDX file: use the original MNIST files")
            ndim = head[3]
            dims = [int.from_bytes(fh.read(4), "big") for _ in range(ndim)]
            if not dims or dims[0] > MAX_IDX_ITEMS or any(d > 4096 for d in dims[1:]):
                raise DataError(f"{path.name} has implausible dimensions {dims}: use the original files")
            count = int(np.prod(dims))
            data = np.frombuffer(fh.read(count), dtype=np.uint8)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path.name} could not be read ({exc}): download it again") from None
    if data.size != count:
        raise DataError(f"{path.name} is truncated: download it again")
    return data.reshape(dims)


def _locate(cfg: DataConfig) -> dict[str, Path]:
    if cfg.data_root:
        root = Path(cfg.data_root).expanduser()
        found = {k: _find(root, v) for k, v in FILES.items()}
        missing = [FILES[k] for k, v in found.items() if v is None]
        if missing:
            raise DataError(f"{cfg.dataset}: {', '.join(missing)} not found in {root}: "
                            "put the four IDX files (.gz or not) there, or leave the data root empty to download")
        return found
    root = cache_dir() / "datasets"
    found = {k: _find(root / TV_FOLDER[cfg.dataset], v) for k, v in FILES.items()}
    if all(found.values()):
        return found
    if not cfg.download:
        raise DataError(f"{cfg.dataset} is not in {root}: allow the download, or give the folder of the "
                        f"IDX files as data root (offline MNIST subset: {_subset_hint()})")
    try:
        import torchvision
        kind = torchvision.datasets.MNIST if cfg.dataset == "mnist" else torchvision.datasets.FashionMNIST
        kind(root=str(root), train=True, download=True)
        kind(root=str(root), train=False, download=True)
    except Exception as exc:  # noqa: BLE001 - any network failure ends in the same advice
        raise DataError(
            f"{cfg.dataset} could not be downloaded ({type(exc).__name__}): give the folder of the four IDX "
            f"files as data root (--data-root DIR), or use the offline MNIST subset ({_subset_hint()})"
        ) from None
    return {k: _find(root / TV_FOLDER[cfg.dataset], v) for k, v in FILES.items()}


def _subset_hint() -> str:
    try:
        return f"data root {MNIST_SUBSET_DIR.relative_to(Path.cwd())}"
    except ValueError:
        return f"data root {MNIST_SUBSET_DIR}"


def _source_indices(paths: dict[str, Path]) -> tuple[np.ndarray, np.ndarray] | None:
    """(train, test) indices into the original files when the folder is a subset, else None."""
    index_file = paths["test_images"].parent / SUBSET_INDEX_FILE
    if not index_file.is_file():
        return None
    try:
        with np.load(index_file, allow_pickle=False) as z:
            return z["train"], z["test"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{index_file.name} could not be read ({type(exc).__name__}): "
                        "rebuild the subset with assets/make_mnist_subset.py") from None


def load_mnist_dataset(cfg: DataConfig) -> ADDataset:
    paths = _locate(cfg)
    x_train, y_train = read_idx(paths["train_images"]), read_idx(paths["train_labels"])
    x_test, y_test = read_idx(paths["test_images"]), read_idx(paths["test_labels"])
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"{cfg.dataset}: image and label files disagree in length: use matching files")
    source = _source_indices(paths)
    if source is not None and (len(source[0]) != len(x_train) or len(source[1]) != len(x_test)):
        raise DataError(f"{SUBSET_INDEX_FILE} does not match the IDX files beside it: "
                        "rebuild the subset with assets/make_mnist_subset.py")
    k = cfg.normal_class
    rng = np.random.default_rng(cfg.seed)
    train_idx = np.flatnonzero(y_train == k)
    if cfg.max_train is not None:
        train_idx = np.sort(rng.permutation(train_idx)[: cfg.max_train])
    labels = np.where(y_test == k, NORMAL, ABNORMAL).astype(np.int64)
    test_idx = stratified_cap(labels, cfg.max_test, cfg.seed)

    def prepare(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)
        if cfg.image_size != x.shape[-1]:
            x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                              align_corners=False, antialias=True).clamp(0, 1)
        return x.repeat(1, 3, 1, 1) if cfg.channels == 3 else x

    train, val = split_val(prepare(x_train[train_idx]), cfg.val_fraction, cfg.seed)
    original_test = source[1] if source is not None else np.arange(len(x_test))
    return ADDataset(
        name=f"{cfg.dataset}{' subset' if source is not None else ''} (normal: {k})",
        train=train, val=val,
        test=prepare(x_test[test_idx]),
        test_labels=torch.from_numpy(labels[test_idx]),
        test_groups=[str(int(c)) for c in y_test[test_idx]],
        test_names=[f"t10k[{original_test[i]}]" for i in test_idx],
    ).check()
