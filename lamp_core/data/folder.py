"""Image sets on disk or in a zip: the MVTec AD layout and a user's own folders.

Accepted layouts (inside the folder or zip, optionally wrapped in one top folder):

  (a) MVTec AD:  [CATEGORY/]train/good/*, [CATEGORY/]test/good|<defect>/*,
                 [CATEGORY/]ground_truth/<defect>/<stem>_mask.png or <stem>.png
  (b) split:     train/normal/*, test/normal/*, test/anomalous/*, optional masks/<stem>[_mask].png
  (c) unsplit:   normal/*, anomalous/*; a seeded `test_fraction` of the normal images is
                 held out for testing (all anomalous images are test images)

Labels follow anomalib: NORMAL=0, ABNORMAL=1. Files that are not images are skipped with a
note; images that do not decode are skipped with a note naming them.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..config import DataConfig
from .common import (ABNORMAL, NORMAL, ADDataset, DataError, Reader, image_is_grey, is_image_name,
                     list_files, open_image, split_val, stratified_cap, strip_common_root, to_array)

LAYOUT_MARKERS = ("train", "test", "ground_truth", "normal", "anomalous", "masks")


def _children(files: dict[str, Reader], prefix: str) -> dict[str, Reader]:
    """Image files directly inside folder `prefix` (non-recursive), sorted by name."""
    out = {}
    for rel, reader in files.items():
        if rel.startswith(prefix + "/") and "/" not in rel[len(prefix) + 1:]:
            out[rel] = reader
    return dict(sorted(out.items()))


def _subfolders(files: dict[str, Reader], prefix: str) -> list[str]:
    base = prefix + "/" if prefix else ""
    return sorted({rel[len(base):].split("/", 1)[0] for rel in files
                   if rel.startswith(base) and "/" in rel[len(base):]})


class _Decoder:
    """Decodes images to arrays, collects notes on what was skipped, decides the channel count."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.notes: list[str] = []

    def images(self, files: dict[str, Reader]) -> list[tuple[str, object]]:
        out = []
        for rel, reader in files.items():
            if not is_image_name(rel):
                self.notes.append(f"skipped {rel}: not an image file")
                continue
            try:
                out.append((rel, open_image(reader(), rel)))
            except DataError as exc:
                self.notes.append(f"skipped {exc}")
        return out

    def channels_for(self, imgs: list) -> int:
        if self.cfg.channels:
            return self.cfg.channels
        return 1 if all(image_is_grey(im) for _, im in imgs) else 3

    def stack(self, imgs: list, channels: int, *, is_mask: bool = False) -> torch.Tensor:
        size = self.cfg.image_size
        if not imgs:
            return torch.zeros(0, 1 if is_mask else channels, size, size)
        arrs = [to_array(im, size, 1 if is_mask else channels, is_mask=is_mask) for _, im in imgs]
        return torch.from_numpy(np.stack(arrs))


def detect_layout(files: dict[str, Reader]) -> str:
    tops = {rel.split("/", 1)[0] for rel in files if "/" in rel}
    if "train" in tops and any(rel.startswith("train/good/") for rel in files):
        return "mvtec"
    if "train" in tops and any(rel.startswith("train/normal/") for rel in files):
        return "split"
    if "normal" in tops:
        return "unsplit"
    return "unknown"


def _layout_error(where: str) -> DataError:
    return DataError(
        f"{where}: no known layout found; use train/good + test/<type> (MVTec), "
        "train/normal + test/normal + test/anomalous, or normal/ + anomalous/")


def load_folder_dataset(cfg: DataConfig) -> ADDataset:
    if not cfg.data_root:
        raise DataError("the folder data set needs --data-root: a folder or a .zip of your images")
    files = strip_common_root(list_files(cfg.data_root), LAYOUT_MARKERS)
    layout = detect_layout(files)
    name = Path(cfg.data_root).name
    if layout == "mvtec":
        return _mvtec(files, cfg, name)
    if layout == "split":
        return _split(files, cfg, name)
    if layout == "unsplit":
        return _unsplit(files, cfg, name)
    # a folder of several MVTec categories: take the chosen (or only) one
    cats = [c for c in _subfolders(files, "") if any(r.startswith(f"{c}/train/good/") for r in files)]
    if cats:
        return load_mvtec_from_files(files, cfg, name, cats)
    raise _layout_error(name)


def load_mvtec_dataset(cfg: DataConfig) -> ADDataset:
    if not cfg.data_root:
        raise DataError("the mvtec data set needs --data-root: the folder that holds the categories")
    files = strip_common_root(list_files(cfg.data_root), LAYOUT_MARKERS)
    name = Path(cfg.data_root).name
    if detect_layout(files) == "mvtec":  # the root is itself one category
        return _mvtec(files, cfg, cfg.category or name)
    cats = [c for c in _subfolders(files, "") if any(r.startswith(f"{c}/train/good/") for r in files)]
    if not cats:
        raise DataError(f"{cfg.data_root}: no MVTec category (CATEGORY/train/good/) found: check the path")
    return load_mvtec_from_files(files, cfg, name, cats)


def load_mvtec_from_files(files, cfg: DataConfig, name: str, cats: list[str]) -> ADDataset:
    if cfg.category is None:
        if len(cats) > 1:
            raise DataError(f"{name} holds several categories ({', '.join(cats)}): choose one with --category")
        category = cats[0]
    elif cfg.category in cats:
        category = cfg.category
    else:
        raise DataError(f"category {cfg.category!r} not found in {name}: choose one of {', '.join(cats)}")
    sub = {rel[len(category) + 1:]: r for rel, r in files.items() if rel.startswith(category + "/")}
    return _mvtec(sub, cfg, category)


def _find_mask(files: dict[str, Reader], folder: str, stem: str) -> str | None:
    for cand in (f"{folder}/{stem}_mask.png", f"{folder}/{stem}.png"):
        if cand in files:
            return cand
    return None


def _mvtec(files: dict[str, Reader], cfg: DataConfig, name: str) -> ADDataset:
    dec = _Decoder(cfg)
    train = dec.images(_children(files, "train/good"))
    test_items: list[tuple[str, object, int, str]] = []
    for group in _subfolders(files, "test"):
        label = NORMAL if group == "good" else ABNORMAL
        for rel, im in dec.images(_children(files, f"test/{group}")):
            test_items.append((rel, im, label, group))
    masks = []
    for rel, _, label, group in test_items:
        if label == NORMAL:
            masks.append(None)
            continue
        mask_rel = _find_mask(files, f"ground_truth/{group}", PurePosixPath(rel).stem)
        masks.append(mask_rel)
    return _assemble(dec, cfg, f"mvtec/{name}", train, test_items, masks, files)


def _split(files: dict[str, Reader], cfg: DataConfig, name: str) -> ADDataset:
    dec = _Decoder(cfg)
    train = dec.images(_children(files, "train/normal"))
    test_items = [(r, im, NORMAL, "normal") for r, im in dec.images(_children(files, "test/normal"))]
    test_items += [(r, im, ABNORMAL, "anomalous") for r, im in dec.images(_children(files, "test/anomalous"))]
    masks = [None if lab == NORMAL else _find_mask(files, "masks", PurePosixPath(r).stem)
             for r, _, lab, _ in test_items]
    return _assemble(dec, cfg, name, train, test_items, masks, files)


def _unsplit(files: dict[str, Reader], cfg: DataConfig, name: str) -> ADDataset:
    dec = _Decoder(cfg)
    normal = dec.images(_children(files, "normal"))
    anomalous = dec.images(_children(files, "anomalous"))
    if len(normal) < 2:
        raise DataError(f"{name}: normal/ needs at least 2 readable images (one to train, one to test)")
    perm = np.random.default_rng(cfg.seed).permutation(len(normal))
    n_test = min(len(normal) - 1, max(1, int(round(len(normal) * cfg.test_fraction))))
    test_set = set(perm[:n_test].tolist())
    train = [normal[i] for i in range(len(normal)) if i not in test_set]
    test_items = [(normal[i][0], normal[i][1], NORMAL, "normal") for i in sorted(test_set)]
    test_items += [(r, im, ABNORMAL, "anomalous") for r, im in anomalous]
    masks = [None if lab == NORMAL else _find_mask(files, "masks", PurePosixPath(r).stem)
             for r, _, lab, _ in test_items]
    return _assemble(dec, cfg, name, train, test_items, masks, files)


def _assemble(dec: _Decoder, cfg: DataConfig, name: str, train: list, test_items: list,
              mask_paths: list, files: dict[str, Reader]) -> ADDataset:
    if not train:
        raise DataError(f"{name}: no readable normal training images; add some"
                        + (f" ({dec.notes[0]})" if dec.notes else ""))
    labels = np.array([lab for _, _, lab, _ in test_items], dtype=np.int64)
    if not (labels == NORMAL).any():
        raise DataError(f"{name}: no normal test images; add some")
    if not (labels == ABNORMAL).any():
        raise DataError(f"{name}: no anomalous test images; add some")
    keep = stratified_cap(labels, cfg.max_test, cfg.seed)
    test_items = [test_items[i] for i in keep]
    mask_paths = [mask_paths[i] for i in keep]
    labels = labels[keep]
    if cfg.max_train is not None and len(train) > cfg.max_train:
        pick = np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.max_train])
        train = [train[i] for i in pick]
    channels = dec.channels_for(train + [(r, im) for r, im, _, _ in test_items])
    train_t = dec.stack(train, channels)
    test_t = dec.stack([(r, im) for r, im, _, _ in test_items], channels)

    masks_t = None
    anomalous_masks = [m for m, lab in zip(mask_paths, labels) if lab == ABNORMAL]
    if anomalous_masks and all(m is not None for m in anomalous_masks):
        size = cfg.image_size
        arrs = []
        for m in mask_paths:
            if m is None:
                arrs.append(np.zeros((1, size, size), np.float32))
                continue
            try:
                arrs.append(to_array(open_image(files[m](), m), size, 1, is_mask=True))
            except DataError as exc:
                dec.notes.append(f"pixel metrics off: {exc}")
                arrs = None
                break
        if arrs is not None:
            masks_t = torch.from_numpy(np.stack(arrs))
    elif any(m is not None for m in anomalous_masks):
        dec.notes.append("pixel metrics off: some anomalous images have no mask")

    train_t, val_t = split_val(train_t, cfg.val_fraction, cfg.seed)
    return ADDataset(
        name=name, train=train_t, val=val_t, test=test_t, test_labels=torch.from_numpy(labels),
        test_masks=masks_t, test_groups=[g for _, _, _, g in test_items],
        test_names=[r for r, _, _, _ in test_items], notes=dec.notes,
    ).check()
