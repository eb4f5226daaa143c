"""Image sets on disk or in a zip: the MVTec AD layout and a user's own folders.

Accepted layouts (inside the folder or zip, optionally wrapped in one top folder):

  (a) MVTec AD:  [CATEGORY/]train/good/*, [CATEGORY/]test/good|<defect>/*,
                 [CATEGORY/]ground_truth/<defect>/<stem>_mask.png or <stem>.png
  (b) split:     train/normal/*, test/normal/*, test/anomalous/*, optional masks/<stem>[_mask].png
  (c) unsplit:   normal/*, anomalous/*; a seeded `test_fraction` of the normal images is
                 held out for testing (all anomalous images are test images)

Labels follow anomalib: NORMAL=0, ABNORMAL=1. Files that are not images are skipped with a
note; images that do not decode (truncated, corrupt, over the pixel limit) are skipped with a
note naming them. The caps (`max_train`, `max_test`) and the unsplit layout's test share are
drawn, seeded, among the image files before decoding, so only the chosen images are decoded; an
unreadable one among them is skipped, leaving one image fewer. Images are decoded one at a time
within the memory budget of images.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..config import DataConfig
from .common import (ABNORMAL, NORMAL, ADDataset, DataError, Reader, is_image_name, list_files, split_val,
                     stratified_cap, strip_common_root)
from .images import check_budget, decode_image, stack_uint8

LAYOUT_MARKERS = ("train", "test", "ground_truth", "normal", "anomalous", "masks")


@dataclass
class _Item:
    rel: str                      # path inside the folder or zip
    label: int = NORMAL
    group: str = "normal"         # class or defect type, shown per test image
    mask: str | None = None       # path of its pixel mask, where one exists


def _subfolders(files: dict[str, Reader], prefix: str) -> list[str]:
    base = prefix + "/" if prefix else ""
    return sorted({rel[len(base):].split("/", 1)[0] for rel in files
                   if rel.startswith(base) and "/" in rel[len(base):]})


def detect_layout(files: dict[str, Reader]) -> str:
    tops = {rel.split("/", 1)[0] for rel in files if "/" in rel}
    if "train" in tops and any(rel.startswith("train/good/") for rel in files):
        return "mvtec"
    if "train" in tops and any(rel.startswith("train/normal/") for rel in files):
        return "split"
    if "normal" in tops:
        return "unsplit"
    return "unknown"


def _mvtec_categories(files: dict[str, Reader]) -> list[str]:
    """Top folders that are MVTec categories (hold CATEGORY/train/good/)."""
    return [c for c in _subfolders(files, "") if any(r.startswith(f"{c}/train/good/") for r in files)]


def _layout_error(where: str, files: dict[str, Reader] | None = None) -> DataError:
    """Why no layout matched: a set of anomalous images without normal ones (anomalous/ alone,
    or test/ without train/) is one of the accepted layouts less its normal images, so it is
    told to add those rather than to pick a layout."""
    tops = {rel.split("/", 1)[0] for rel in files or {} if "/" in rel and is_image_name(rel)}
    if "anomalous" in tops:
        return DataError(f"{where}: no normal images, only anomalous/: add a normal/ folder of normal images "
                         "beside it (the model learns only from normal images)")
    if "test" in tops:
        return DataError(f"{where}: no normal training images, only test/: add train/normal/ (or train/good/ "
                         "for MVTec) beside it (the model learns only from normal images)")
    return DataError(
        f"{where}: no known layout found; use train/good + test/<type> (MVTec), "
        "train/normal + test/normal + test/anomalous, or normal/ + anomalous/")


def _open(cfg: DataConfig, what: str) -> tuple[dict[str, Reader], str]:
    if not cfg.data_root:
        wanted = "the folder that holds the categories" if what == "mvtec" else "a folder or a .zip of your images"
        raise DataError(f"the {what} data set needs a data root: give {wanted}")
    return strip_common_root(list_files(cfg.data_root), LAYOUT_MARKERS), Path(cfg.data_root).name


def load_folder_dataset(cfg: DataConfig) -> ADDataset:
    files, name = _open(cfg, "folder")
    layout = detect_layout(files)
    if layout == "split":
        return _split(files, cfg, name)
    if layout == "unsplit":
        return _unsplit(files, cfg, name)
    if layout == "mvtec" or _mvtec_categories(files):
        return load_mvtec_files(files, cfg, name)
    raise _layout_error(name, files)


def load_mvtec_dataset(cfg: DataConfig) -> ADDataset:
    files, name = _open(cfg, "mvtec")
    return load_mvtec_files(files, cfg, name)


def load_mvtec_files(files: dict[str, Reader], cfg: DataConfig, name: str) -> ADDataset:
    """One MVTec category: the root itself, or the chosen (or only) CATEGORY/ inside it."""
    if detect_layout(files) == "mvtec":
        return _mvtec(files, cfg, cfg.category or name)
    cats = _mvtec_categories(files)
    if not cats:
        raise DataError(f"{name}: no MVTec category (CATEGORY/train/good/) found: check the folder")
    if cfg.category is None:
        if len(cats) > 1:
            raise DataError(f"{name} holds several categories ({', '.join(cats)}): choose one as the category")
        category = cats[0]
    elif cfg.category in cats:
        category = cfg.category
    else:
        raise DataError(f"category {cfg.category!r} not found in {name}: choose one of {', '.join(cats)}")
    sub = {rel[len(category) + 1:]: r for rel, r in files.items() if rel.startswith(category + "/")}
    return _mvtec(sub, cfg, category)


def _images_in(files: dict[str, Reader], prefix: str, notes: list[str]) -> list[str]:
    """Image files directly inside folder `prefix` (non-recursive), sorted; others get a note."""
    out = []
    for rel in sorted(files):
        if rel.startswith(prefix + "/") and "/" not in rel[len(prefix) + 1:]:
            if is_image_name(rel):
                out.append(rel)
            else:
                notes.append(f"skipped {rel}: not an image file")
    return out


def _find_mask(files: dict[str, Reader], folder: str, rel: str) -> str | None:
    stem = PurePosixPath(rel).stem
    for cand in (f"{folder}/{stem}_mask.png", f"{folder}/{stem}.png"):
        if cand in files:
            return cand
    return None


def _mvtec(files: dict[str, Reader], cfg: DataConfig, name: str) -> ADDataset:
    notes: list[str] = []
    train = [_Item(r) for r in _images_in(files, "train/good", notes)]
    test = []
    for group in _subfolders(files, "test"):
        label = NORMAL if group == "good" else ABNORMAL
        for r in _images_in(files, f"test/{group}", notes):
            mask = None if label == NORMAL else _find_mask(files, f"ground_truth/{group}", r)
            test.append(_Item(r, label, group, mask))
    return _assemble(files, cfg, f"mvtec/{name}", train, test, notes)


def _split(files: dict[str, Reader], cfg: DataConfig, name: str) -> ADDataset:
    notes: list[str] = []
    train = [_Item(r) for r in _images_in(files, "train/normal", notes)]
    test = [_Item(r) for r in _images_in(files, "test/normal", notes)]
    test += [_Item(r, ABNORMAL, "anomalous", _find_mask(files, "masks", r))
             for r in _images_in(files, "test/anomalous", notes)]
    return _assemble(files, cfg, name, train, test, notes)


def _unsplit(files: dict[str, Reader], cfg: DataConfig, name: str) -> ADDataset:
    notes: list[str] = []
    normal = _images_in(files, "normal", notes)
    anomalous = _images_in(files, "anomalous", notes)
    if len(normal) < 2:
        raise DataError(f"{name}: normal/ needs at least 2 images (one to train, one to test); add some")
    perm = np.random.default_rng(cfg.seed).permutation(len(normal))
    n_test = min(len(normal) - 1, max(1, int(round(len(normal) * cfg.test_fraction))))
    test_set = set(perm[:n_test].tolist())
    train = [_Item(r) for i, r in enumerate(normal) if i not in test_set]
    test = [_Item(normal[i]) for i in sorted(test_set)]
    test += [_Item(r, ABNORMAL, "anomalous", _find_mask(files, "masks", r)) for r in anomalous]
    return _assemble(files, cfg, name, train, test, notes)


def _why(notes: list[str]) -> str:
    """The first skipped file's reason, to end an error with."""
    skipped = [n for n in notes if n.startswith("skipped")]
    return f" ({skipped[0]}{f'; {len(skipped) - 1} more skipped' if len(skipped) > 1 else ''})" if skipped else ""


def _assemble(files: dict[str, Reader], cfg: DataConfig, name: str, train: list[_Item], test: list[_Item],
              notes: list[str]) -> ADDataset:
    if not train:
        raise DataError(f"{name}: no readable normal training images; add some{_why(notes)}")
    labels = np.array([it.label for it in test], dtype=np.int64)
    if not (labels == NORMAL).any():
        raise DataError(f"{name}: no normal test images; add some")
    if not (labels == ABNORMAL).any():
        raise DataError(f"{name}: no anomalous test images; add some")
    test = [test[i] for i in stratified_cap(labels, cfg.max_test, cfg.seed)]
    if cfg.max_train is not None and len(train) > cfg.max_train:
        pick = np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.max_train])
        train = [train[i] for i in pick]
    anomalous = [it for it in test if it.label == ABNORMAL]
    with_masks = all(it.mask is not None for it in anomalous)
    if not with_masks and any(it.mask is not None for it in anomalous):
        notes.append("pixel metrics off: some anomalous images have no mask")

    size, n_masks = cfg.image_size, len(test) if with_masks else 0
    # refuse before decoding anything when even grey images would not fit
    check_budget(name, len(train) + len(test), cfg.channels or 1, size, n_masks)
    decoder = _Decoder(files, cfg, name, len(train) + len(test), n_masks, notes)
    train_arrays = [a for a in map(decoder.image, train) if a is not None]
    kept = [(it, a) for it, a in zip(test, map(decoder.image, test)) if a is not None]
    if not train_arrays:
        raise DataError(f"{name}: no readable normal training images{_why(notes)}")
    test = [it for it, _ in kept]
    labels = np.array([it.label for it in test], dtype=np.int64)
    for label, what in ((NORMAL, "normal"), (ABNORMAL, "anomalous")):
        if not (labels == label).any():
            raise DataError(f"{name}: no readable {what} test images{_why(notes)}")

    masks_t = None
    if with_masks:
        masks = [np.zeros((1, size, size), np.uint8) if it.mask is None else decoder.mask(it.mask) for it in test]
        if all(m is not None for m in masks):
            masks_t = stack_uint8(masks, 1, size, is_mask=True)
    channels = cfg.channels or (3 if decoder.colour else 1)
    train_t, val_t = split_val(stack_uint8(train_arrays, channels, size), cfg.val_fraction, cfg.seed)
    return ADDataset(
        name=name, train=train_t, val=val_t, test=stack_uint8([a for _, a in kept], channels, size),
        test_labels=torch.from_numpy(labels), test_masks=masks_t, test_groups=[it.group for it in test],
        test_names=[it.rel for it in test], notes=notes,
    ).check()


class _Decoder:
    """Decodes one image at a time to uint8 (C, size, size), noting what it skips and whether
    any image is in colour (which, with automatic channels, triples the budget's count)."""

    def __init__(self, files: dict[str, Reader], cfg: DataConfig, name: str, n_images: int, n_masks: int,
                 notes: list[str]):
        self.files, self.cfg, self.name, self.notes = files, cfg, name, notes
        self.n_images, self.n_masks = n_images, n_masks
        self.colour = False
        self.masks_failed = False

    def image(self, item: _Item) -> np.ndarray | None:
        try:
            arr, grey = decode_image(self.files[item.rel](), item.rel, self.cfg.image_size, self.cfg.channels)
        except DataError as exc:
            self.notes.append(f"skipped: {exc}")
            return None
        if not grey and not self.colour and self.cfg.channels == 0:
            self.colour = True
            check_budget(self.name, self.n_images, 3, self.cfg.image_size, self.n_masks, colour=True)
        return arr

    def mask(self, rel: str) -> np.ndarray | None:
        if self.masks_failed:
            return None
        try:
            return decode_image(self.files[rel](), rel, self.cfg.image_size, 1, is_mask=True)[0]
        except DataError as exc:
            self.notes.append(f"pixel metrics off: {exc}")
            self.masks_failed = True
            return None
