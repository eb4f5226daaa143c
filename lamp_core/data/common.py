"""What every data source shares: the `ADDataset` result, the one error type, safe reading of
untrusted folders and zip archives, seeded caps and splits, and an upload's content hash.

Uploads are untrusted. A zip is read member by member in memory and never extracted, so nothing
is written anywhere; entries that would escape the archive (`..`, absolute paths, links) are
refused, as are archives over the file-count or size caps and members whose compression ratio
marks a zip bomb. Decoding the images themselves, within a memory budget, is images.py's job.
"""
from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import torch

from ..config import LampError

NORMAL, ABNORMAL = 0, 1
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

MAX_FILES = 20_000                    # entries in one folder or archive
MAX_TOTAL_BYTES = 1 << 30             # 1 GiB of (uncompressed) files
MAX_FILE_BYTES = 64 << 20             # 64 MiB for one image file
MAX_COMPRESSION_RATIO = 200           # deflated images rarely shrink 2x; 200x is a bomb


class DataError(LampError):
    """A data problem a user can act on; the message names the file or folder and the fix."""


@dataclass
class ADDataset:
    """Normal training images and a labelled test set, all float32 in [0, 1], (N, C, H, W)."""

    name: str
    train: torch.Tensor                       # (N, C, H, W) normal images only
    test: torch.Tensor                        # (M, C, H, W)
    test_labels: torch.Tensor                 # (M,) int64: NORMAL=0, ABNORMAL=1
    test_masks: torch.Tensor | None = None    # (M, 1, H, W) float 0/1 where pixel masks exist
    val: torch.Tensor | None = None           # normal images held out of train for validation
    test_groups: list[str] = field(default_factory=list)  # per test image: class or defect type
    test_names: list[str] = field(default_factory=list)   # per test image: file or index
    notes: list[str] = field(default_factory=list)        # skipped files and other remarks

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.shape[-1])

    def summary(self) -> dict:
        labels = self.test_labels
        return {
            "name": self.name,
            "train_normal": int(self.train.shape[0]),
            "val_normal": int(self.val.shape[0]) if self.val is not None else 0,
            "test_normal": int((labels == NORMAL).sum()),
            "test_anomalous": int((labels == ABNORMAL).sum()),
            "channels": self.channels,
            "image_size": self.image_size,
            "has_masks": self.test_masks is not None,
            "skipped": len(self.notes),
        }

    def check(self) -> "ADDataset":
        if self.train.shape[0] == 0:
            raise DataError(f"{self.name}: no normal training images were found; add some")
        if not bool((self.test_labels == NORMAL).any()):
            raise DataError(f"{self.name}: the test set has no normal images; add some")
        if not bool((self.test_labels == ABNORMAL).any()):
            raise DataError(f"{self.name}: the test set has no anomalous images; add some")
        return self


# ----------------------------------------------------------------------------- file trees

def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks (an upload's identity: the same
    bytes give the same name after a restart, whatever temporary path they arrived under)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


Reader = Callable[[], bytes]


def list_files(root: str | os.PathLike) -> dict[str, Reader]:
    """Relative POSIX path -> reader, for a folder or a .zip; all safety checks happen here."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist: give an existing folder or .zip file")
    if path.is_dir():
        return _list_dir(path)
    if zipfile.is_zipfile(path):
        return _list_zip(path)
    raise DataError(f"{path} is neither a folder nor a zip archive: pass a folder or a .zip")


def _list_dir(root: Path) -> dict[str, Reader]:
    files: dict[str, Reader] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                raise DataError(f"{Path(dirpath, name)} is a link; links are refused: copy the files instead")
        for name in filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise DataError(f"{p} is a link; links are refused: copy the file instead")
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if len(files) >= MAX_FILES:
                raise DataError(f"{root} holds more than {MAX_FILES} files: use a smaller set")
            if total > MAX_TOTAL_BYTES:
                raise DataError(f"{root} holds more than {MAX_TOTAL_BYTES >> 20} MiB: use a smaller set")
            files[p.relative_to(root).as_posix()] = (lambda p=p: _read_capped_file(p))
    return files


def _read_capped_file(p: Path) -> bytes:
    with open(p, "rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{p.name} is larger than {MAX_FILE_BYTES >> 20} MiB: shrink the image")
    return data


def _list_zip(path: Path) -> dict[str, Reader]:
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path.name} is not a readable zip archive ({exc}): re-create the archive") from None
    if len(infos) > MAX_FILES:
        raise DataError(f"{path.name} holds more than {MAX_FILES} entries: use a smaller set")
    files: dict[str, Reader] = {}
    total = 0
    for info in infos:
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if name.startswith(("/", "\\")) or pure.is_absolute() or ".." in pure.parts or (
                len(name) > 1 and name[1] == ":"):
            raise DataError(f"{path.name}: entry {name!r} would escape the archive; such archives are refused")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(f"{path.name}: entry {name!r} is a link; links are refused: zip the files themselves")
        if info.is_dir():
            continue
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise DataError(f"{path.name} unpacks to more than {MAX_TOTAL_BYTES >> 20} MiB: use a smaller set")
        if info.file_size > MAX_FILE_BYTES:
            raise DataError(f"{path.name}: {name} unpacks to more than {MAX_FILE_BYTES >> 20} MiB: shrink it")
        if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            raise DataError(f"{path.name}: {name} is compressed {info.file_size // info.compress_size}x, "
                            "a decompression bomb; such archives are refused")
        files[pure.as_posix()] = (lambda info=info: _read_zip_member(zf, info))
    return files


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # The header's sizes can lie: read at most the cap plus one byte, whatever it claims.
    with zf.open(info) as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{info.filename} unpacks to more than {MAX_FILE_BYTES >> 20} MiB: shrink it")
    return data


def strip_common_root(files: dict[str, Reader], markers: tuple[str, ...]) -> dict[str, Reader]:
    """Descend into single wrapping folders (a zip of `myset/...`) until a marker folder shows."""
    files = {k: v for k, v in files.items() if not _is_junk(k)}
    while files:
        tops = {k.split("/", 1)[0] for k in files}
        if len(tops) != 1 or any(k.count("/") == 0 for k in files):
            break
        (top,) = tops
        if top in markers:
            break
        files = {k.split("/", 1)[1]: v for k, v in files.items()}
    return files


def _is_junk(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


def is_image_name(rel: str) -> bool:
    return rel.lower().endswith(IMG_EXTENSIONS)


def stratified_cap(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded subsample of at most `cap`, keeping each label's share (at least 1)."""
    idx = np.arange(len(labels))
    if cap is None or cap >= len(labels):
        return idx
    rng = np.random.default_rng(seed)
    keep = []
    for lab in np.unique(labels):
        members = idx[labels == lab]
        share = max(1, round(cap * len(members) / len(labels)))
        keep.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(keep))


def split_val(train: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hold out a seeded share of the normal training images for validation."""
    if fraction <= 0:
        return train, None
    n_val = max(1, int(round(len(train) * fraction)))
    if n_val >= len(train):
        raise DataError(f"validation share {fraction} leaves no training images: lower it")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 7919))
    return train[perm[n_val:]], train[perm[:n_val]]
