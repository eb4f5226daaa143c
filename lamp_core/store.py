"""On-disk run store: finished runs (and their landscapes) keyed by the config's hash.

Layout under the root ($LAMP_STORE, else runs/ in the user cache: $LAMP_CACHE or ~/.cache/lamp-lab):

    <key>/config.json       the RunConfig as JSON (human-readable; the key is its hash)
    <key>/checkpoint.pt     TrainResult.to_checkpoint(), tensors and builtins only
    <key>/evaluation.json   Evaluation.to_dict()
    <key>/<name>.npz        artifacts such as loss surfaces

Every file is written with `files.atomic_write` (a temporary name in the same folder, fsync,
os.replace), so a reader never sees half a file and a crash leaves no corrupt entry. Checkpoints
load with weights_only=True (no pickle code runs). An unreadable entry is skipped with a warning.
Only complete, unstopped runs are stored: a stopped run is partial and must not stand in for
the configuration it was asked for.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RunConfig, canonical, run_key
from .evaluate import Evaluation
from .files import atomic_write, cache_root
from .run_types import TrainResult


def default_root() -> Path:
    """$LAMP_STORE, else the folder runs/ of the user cache (files.cache_root)."""
    env = os.environ.get("LAMP_STORE")
    if env:
        return Path(env).expanduser()
    return cache_root() / "runs"


@dataclass
class StoredRun:
    result: TrainResult
    evaluation: Evaluation


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    def folder(self, cfg: RunConfig) -> Path:
        # filed by the canonical config: a base run is found whatever its (unused) LAMP fields say
        return self.root / run_key(cfg)

    def has(self, cfg: RunConfig) -> bool:
        f = self.folder(cfg)
        return (f / "checkpoint.pt").is_file() and (f / "evaluation.json").is_file()

    def put(self, result: TrainResult, evaluation: Evaluation) -> None:
        if result.stopped:
            return
        folder = self.folder(result.config)
        buf = io.BytesIO()
        torch.save(result.to_checkpoint(), buf)
        atomic_write(folder / "config.json", json.dumps(result.config.to_dict(), indent=1).encode())
        atomic_write(folder / "checkpoint.pt", buf.getvalue())
        # evaluation last: its presence marks the entry complete (see has())
        atomic_write(folder / "evaluation.json", json.dumps(evaluation.to_dict()).encode())

    def get(self, cfg: RunConfig) -> StoredRun | None:
        if not self.has(cfg):
            return None
        folder = self.folder(cfg)
        try:
            ckpt = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
            result = TrainResult.from_checkpoint(ckpt)
            evaluation = Evaluation.from_dict(json.loads((folder / "evaluation.json").read_text()))
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is skipped, never fatal
            warnings.warn(f"run store: skipped unreadable entry {folder.name} ({type(exc).__name__}: {exc})",
                          stacklevel=2)
            return None
        if canonical(result.config) != canonical(cfg):
            warnings.warn(f"run store: entry {folder.name} holds another config; skipped", stacklevel=2)
            return None
        return StoredRun(result, evaluation)

    def save_arrays(self, cfg: RunConfig, name: str, arrays: dict[str, Any]) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        path = self.folder(cfg) / f"{name}.npz"
        atomic_write(path, buf.getvalue())
        return path

    def load_arrays(self, cfg: RunConfig, name: str) -> dict[str, np.ndarray] | None:
        path = self.folder(cfg) / f"{name}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"run store: skipped unreadable {path.name} in {path.parent.name} ({exc})",
                          stacklevel=2)
            return None

    def configs(self) -> list[RunConfig]:
        """Configs of every complete entry (unreadable ones skipped with a warning)."""
        out = []
        if not self.root.is_dir():
            return out
        for folder in sorted(self.root.iterdir()):
            if not (folder / "evaluation.json").is_file():
                continue
            try:
                out.append(RunConfig.from_dict(json.loads((folder / "config.json").read_text())))
            except Exception as exc:  # noqa: BLE001
                warnings.warn(f"run store: skipped unreadable entry {folder.name} ({exc})", stacklevel=2)
        return out
