"""Loss landscapes and sharpness of trained autoencoders (paper §1, §2.1, Fig. 1 and Fig. 3).

The paper's claim is about shape: LAMP (eq. 1-2) and small batches make the loss landscape
steeper around the trained weights. This package cuts the landscape the way the paper's
reference [1] (Li et al. 2018, "Visualizing the loss landscape of neural nets") does, and puts
numbers on it. One idea per module:

    surface.py     `Surface` (grid, values, files), coarse-to-fine order, option checks, store key
    directions.py  filter-normalised random directions, theta + a*d1 + b*d2
    loss.py        what a point's loss is (metrics, BN modes, evaluation images), the per-point loop
    fast.py        `FastEvaluator`: the same values with fewer operations (sub-pixel convs, folded BN)
    grid.py        `compute_surface` (coarse-to-fine, points in parallel), `interpolate`
    sharpness.py   top Hessian eigenvalue, Hutchinson trace, mean relative increase at a radius

This is science code: it takes a trained run and a data set and returns plain data. Training a
run first and caching surfaces in the run store is orchestration, in `lamp_core.surfaces`.
"""
from __future__ import annotations

from .directions import direction_names, directions, point_params, random_direction
from .fast import FastEvaluator, FastEvaluatorMismatch, UnsupportedModel
from .grid import (PROGRESS_EVERY_S, PointPool, ProgressFn, StopFn, compute_surface, interpolate, make_evaluator,
                   resolve_workers)
from .loss import LoopEvaluator, batch_stat_model, evaluation_images, evaluation_model, raw_loss
from .sharpness import compute_sharpness, hessian_operator, hutchinson_trace, radius_increase, top_eigenvalue
from .surface import (BN_MODES, MAX_GRID_POINTS, METHODS, METRICS, Surface, empty_surface, grid_coordinates,
                      landscape_key, refinement_order, validate_landscape)

__all__ = [
    "BN_MODES", "MAX_GRID_POINTS", "METHODS", "METRICS", "PROGRESS_EVERY_S", "FastEvaluator",
    "FastEvaluatorMismatch", "LoopEvaluator", "PointPool", "ProgressFn", "StopFn", "Surface", "UnsupportedModel",
    "batch_stat_model", "compute_sharpness", "compute_surface", "direction_names", "directions", "empty_surface",
    "evaluation_images", "evaluation_model", "grid_coordinates", "hessian_operator", "hutchinson_trace",
    "interpolate", "landscape_key", "make_evaluator", "point_params", "radius_increase", "random_direction",
    "raw_loss", "refinement_order", "resolve_workers", "top_eigenvalue", "validate_landscape",
]
