"""The built-in default data: scikit-learn's `load_digits` (1,797 8x8 digits, ships with it).

One digit is normal, the other nine anomalous. A fixed, seeded, stratified split puts
`test_fraction` of all images into the test set; the normal digit's remaining images are the
training set (the paper's one-class protocol, §3.1, on a data set that needs no download).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataConfig
from .common import ABNORMAL, NORMAL, ADDataset, split_val, stratified_cap


def load_digits_dataset(cfg: DataConfig) -> ADDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0          # (1797, 8, 8) in [0, 1]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=cfg.test_fraction, random_state=cfg.seed, stratify=labels)
    k = cfg.normal_class
    train_idx = idx_train[labels[idx_train] == k]
    if cfg.max_train is not None:
        train_idx = np.random.default_rng(cfg.seed).permutation(train_idx)[: cfg.max_train]
    test_is_anomalous = (labels[idx_test] != k).astype(np.int64)
    idx_test = idx_test[stratified_cap(test_is_anomalous, cfg.max_test, cfg.seed)]

    def prepare(idx: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images[idx]).unsqueeze(1)       # (N, 1, 8, 8)
        x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=False)
        x = x.clamp(0, 1)
        return x.repeat(1, 3, 1, 1) if cfg.channels == 3 else x

    train, val = split_val(prepare(train_idx), cfg.val_fraction, cfg.seed)
    y = np.where(labels[idx_test] == k, NORMAL, ABNORMAL)
    return ADDataset(
        name=f"digits (normal: {k})",
        train=train, val=val,
        test=prepare(idx_test),
        test_labels=torch.from_numpy(y),
        test_groups=[str(d) for d in labels[idx_test]],
        test_names=[f"digits[{i}]" for i in idx_test],
    ).check()
