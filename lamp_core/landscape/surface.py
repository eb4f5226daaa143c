"""A loss surface as plain data: the grid, its values, its files, and the landscape options' checks.

A grid point (x_i, y_j) is the loss at theta + x_i*d1 + y_j*d2 (paper Fig. 1 and 3, after Li et
al. 2018), stored at `values[j, i]` (rows follow y, columns follow x, as plotly and numpy image
convention expect). A 1-D line has ny = 1 and y = [0]. Points not computed yet are NaN: grids
are filled coarse-to-fine (`refinement_order`), and `Surface.displayable` draws the finest
complete sub-lattice while the rest is still running.

Nothing here computes a loss: see `grid` (surfaces), `loss` and `fast` (evaluators) and
`sharpness`.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..config import BN_MODES, METHODS, METRICS, ConfigError, LandscapeConfig, check_options
from ..files import atomic_write

__all__ = ["BN_MODES", "METHODS", "METRICS", "MAX_GRID_POINTS", "Surface", "empty_surface", "grid_coordinates",
           "landscape_key", "refinement_order", "validate_landscape"]

MAX_GRID_POINTS = 201 * 201
HOW_FIELDS = ("method", "workers")   # LandscapeConfig fields that change no value (not in the key)


@dataclass
class Surface:
    """A loss surface: values[j, i] is the loss at theta + x[i]*d1 + y[j]*d2 (NaN = not computed)."""

    x: np.ndarray                  # (nx,) coordinates along direction 1 (or t for interpolation)
    y: np.ndarray                  # (ny,) coordinates along direction 2; [0.] for a 1-D line
    values: np.ndarray             # (ny, nx) float64
    metric: str                    # one of METRICS
    seed: int                      # seed of the directions
    bn_mode: str                   # "eval" | "batch"
    center: float                  # the metric at the trained weights (1.0 for the *_rel metrics)
    sharpness: dict[str, float] = field(default_factory=dict)
    complete: bool = False         # False while only a coarse part of the grid is filled
    kind: str = "plane"            # "plane", "line" or "interpolation"
    scale: float = 1.0             # the divisor applied to raw losses (the raw centre for *_rel)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def copy(self) -> "Surface":
        return replace(self, x=self.x.copy(), y=self.y.copy(), values=self.values.copy(),
                       sharpness=dict(self.sharpness))

    def fraction_done(self) -> float:
        return float(np.isfinite(self.values).mean()) if self.values.size else 1.0

    def displayable(self) -> "Surface":
        """The finest fully computed sub-lattice (every s-th point per axis, ends included).

        While the coarse-to-fine computation runs, the missing points are NaN; a plotted surface
        with NaN holes shows nothing, so figures draw this sub-grid instead.
        """
        ny, nx = self.values.shape
        done = np.isfinite(self.values)
        # finest stride first: a coarser lattice is complete as soon as a finer one is, so going
        # coarse-first returned the coarse grid even for a finished surface
        for s in reversed(_strides(max(nx, ny))):
            ix, iy = _lattice(nx, s), _lattice(ny, s)
            if done[np.ix_(iy, ix)].all():
                if len(ix) == nx and len(iy) == ny:
                    return self
                return replace(self, x=self.x[ix], y=self.y[iy], values=self.values[np.ix_(iy, ix)],
                               sharpness=dict(self.sharpness))
        return self   # no complete sub-lattice (not computed coarse-to-fine): draw it with its gaps

    def summary(self) -> dict:
        """Plain numbers for a table or JSON: metric, centre, min and max of the computed values,
        completeness, grid size, and the sharpness numbers."""
        vals = self.values[np.isfinite(self.values)]
        return {"metric": self.metric, "center": self.center, "min": float(vals.min()) if vals.size else None,
                "max": float(vals.max()) if vals.size else None, "complete": self.complete,
                "grid": [int(len(self.x)), int(len(self.y))], **self.sharpness}

    # -- persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        keys = sorted(self.sharpness)
        return {
            "x": np.asarray(self.x, dtype=np.float64), "y": np.asarray(self.y, dtype=np.float64),
            "values": np.asarray(self.values, dtype=np.float64), "metric": np.array(self.metric),
            "seed": np.array(int(self.seed)), "bn_mode": np.array(self.bn_mode),
            "center": np.array(float(self.center)), "complete": np.array(bool(self.complete)),
            "kind": np.array(self.kind), "scale": np.array(float(self.scale)),
            "sharpness_keys": np.array(keys, dtype=str),
            "sharpness_values": np.array([float(self.sharpness[k]) for k in keys], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "Surface":
        keys = [str(k) for k in a["sharpness_keys"].tolist()]
        vals = [float(v) for v in np.asarray(a["sharpness_values"]).tolist()]
        return cls(x=np.asarray(a["x"], dtype=np.float64), y=np.asarray(a["y"], dtype=np.float64),
                   values=np.asarray(a["values"], dtype=np.float64), metric=str(a["metric"]),
                   seed=int(a["seed"]), bn_mode=str(a["bn_mode"]), center=float(a["center"]),
                   sharpness=dict(zip(keys, vals)), complete=bool(a["complete"]),
                   kind=str(a["kind"]) if "kind" in a else "plane",
                   scale=float(a["scale"]) if "scale" in a else 1.0)

    def save(self, path) -> None:
        """Write an .npz (plain arrays and strings only: loads with allow_pickle=False), atomically."""
        buf = io.BytesIO()
        np.savez(buf, **self.to_arrays())
        atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, path) -> "Surface":
        with np.load(path, allow_pickle=False) as npz:
            return cls.from_arrays({k: npz[k] for k in npz.files})

    def to_csv(self) -> str:
        """One row per grid point: x, y, value (empty where not computed)."""
        lines = ["x,y,value"]
        for j, yv in enumerate(self.y):
            for i, xv in enumerate(self.x):
                v = self.values[j, i]
                lines.append(f"{xv:.9g},{yv:.9g}," + (f"{v:.12g}" if np.isfinite(v) else ""))
        return "\n".join(lines) + "\n"


def _strides(n: int) -> list[int]:
    """Coarse-to-fine strides: the coarsest keeps >= 5 points per axis, the last is 1."""
    s = 1
    while (n - 1) // (2 * s) >= 4:
        s *= 2
    out = []
    while s >= 1:
        out.append(s)
        s //= 2
    return out


def _lattice(n: int, s: int) -> list[int]:
    idx = list(range(0, n, s))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return idx


def refinement_order(nx: int, ny: int) -> list[list[tuple[int, int]]]:
    """Grid points (i, j) grouped by level, coarse first; every point appears exactly once."""
    done = np.zeros((ny, nx), dtype=bool)
    levels = []
    for s in _strides(max(nx, ny)):
        level = []
        for j in _lattice(ny, s):
            for i in _lattice(nx, s):
                if not done[j, i]:
                    done[j, i] = True
                    level.append((i, j))
        if level:
            levels.append(level)
    return levels


def validate_landscape(cfg: LandscapeConfig) -> None:
    """Raise ConfigError naming the field and the fix (bounds and choices: config's option specs)."""
    if cfg.nx < 1 or cfg.ny < 1:
        raise ConfigError(f"grid {cfg.nx}x{cfg.ny} is empty: use at least 1 point per axis (e.g. 21x21)")
    if cfg.nx * cfg.ny > MAX_GRID_POINTS:
        raise ConfigError(f"grid {cfg.nx}x{cfg.ny} has more than {MAX_GRID_POINTS} points: use a smaller grid")
    check_options("landscape", cfg)


def landscape_key(cfg: LandscapeConfig) -> str:
    """Store name of a surface: depends on everything that changes its values.

    Not on how they are computed: `method` (both evaluators give the same values to ~1e-7) and
    `workers` (grid points in parallel or one after another give identical values).
    """
    d = asdict(cfg)
    for how in HOW_FIELDS:
        d.pop(how)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return "landscape-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def grid_coordinates(cfg: LandscapeConfig) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-cfg.span, cfg.span, cfg.nx) if cfg.nx > 1 else np.zeros(1)
    y = np.linspace(-cfg.span, cfg.span, cfg.ny) if cfg.ny > 1 else np.zeros(1)
    return x, y


def empty_surface(cfg: LandscapeConfig) -> Surface:
    """The grid of `cfg` with nothing computed yet (every value NaN, centre unknown)."""
    gx, gy = grid_coordinates(cfg)
    return Surface(x=gx, y=gy, values=np.full((len(gy), len(gx)), np.nan), metric=cfg.metric,
                   seed=cfg.seed, bn_mode=cfg.bn_mode, center=float("nan"), complete=False,
                   kind="line" if cfg.ny == 1 else "plane")
