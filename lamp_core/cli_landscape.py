"""`lamp landscape`: the loss surface and sharpness numbers of a trained run (paper Fig. 1, 3).

Takes the same run options as `lamp train`; the run comes from the run store, or is trained
(and stored) first. `--compare` does the base and the LAMP run of that config side by side, in
one metric (default l2, the common yardstick) and on one colour/height scale. Writes, into
--out (default ./landscape-out): <name>.npz (Surface.save), <name>.csv and landscape.html
(3-D surfaces and contours), each written atomically, and prints each model's sharpness numbers
(or one JSON object). Grid points run in parallel, one per usable core (`landscape.grid`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .cli_common import (ProgressBar, add_run_arguments, add_section_options, config_from_args, fail,
                         progress_enabled, section_from_args)
from .config import LampError, LandscapeConfig, validate
from .files import atomic_write

DEFAULT_OUT = "landscape-out"


def register(sub) -> None:
    """Add `lamp landscape` to the `lamp` command's subparsers."""
    p = sub.add_parser("landscape", help="loss landscapes of trained runs (paper Fig. 1, 3)")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    add_section_options(p.add_argument_group("landscape"), "landscape", metric={
        "default": None, "help": "own = the run's training loss, l2 = plain L2, *_rel = divided by the centre "
                                 "(default: own, or l2 with --compare)"})
    o = p.add_argument_group("output")
    o.add_argument("--compare", action="store_true", help="base and LAMP runs side by side, one scale")
    o.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})")
    o.add_argument("--store", help="run store folder (default: $LAMP_STORE or the user cache)")
    o.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    o.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress on stderr (auto: when stderr is a terminal)")


def landscape_config(a: argparse.Namespace) -> LandscapeConfig:
    from .landscape import validate_landscape
    cfg = section_from_args(a, "landscape", metric=a.landscape_metric or ("l2" if a.compare else "own"))
    validate_landscape(cfg)
    return cfg


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run(a: argparse.Namespace) -> int:
    from . import data as data_mod
    from .landscape_figures import fig_contour, fig_line, fig_surface_3d
    from .runner import compare_configs, run_config
    from .store import RunStore
    from .surfaces import surface_for_run

    cfg = config_from_args(a)
    validate(cfg)
    lcfg = landscape_config(a)
    out = Path(a.out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"cannot create the output folder {out} ({exc.strerror}): choose another --out")
    data_mod.load(cfg.data)  # fail early on bad data, before any training
    store = RunStore(a.store) if a.store else RunStore()
    configs = dict(zip(("base", "lamp"), compare_configs(cfg))) if a.compare else {"run": cfg}
    show = progress_enabled(a.progress)
    surfaces = {}
    for name, c in configs.items():
        bar = ProgressBar(name, show)
        record = run_config(c, store=store, on_progress=bar)   # trains and stores it when missing
        bar.close()
        if record.result.diverged:
            raise LampError(f"the {name} run diverged (loss NaN/inf): lower the learning rate or eps")

        def progress(s, name=name):
            if show:
                sys.stderr.write(f"\r{name:>5} landscape {s.fraction_done():4.0%}")
                sys.stderr.flush()
        surfaces[name] = surface_for_run(c, lcfg, store, on_progress=progress)
        if show:
            sys.stderr.write("\n")
    files = []
    try:
        for name, s in surfaces.items():
            s.save(out / f"{name}.npz")
            atomic_write(out / f"{name}.csv", s.to_csv())
            files += [str(out / f"{name}.npz"), str(out / f"{name}.csv")]
        if lcfg.ny == 1:
            figs = [fig_line(surfaces)]
        else:
            figs = [fig_surface_3d(surfaces), fig_contour(surfaces)]
        html = ["<html><head><meta charset='utf-8'><title>LAMP Lab loss landscape</title></head><body>"]
        for k, f in enumerate(figs):
            html.append(f.to_html(full_html=False, include_plotlyjs=(k == 0)))
        html.append("</body></html>")
        atomic_write(out / "landscape.html", "\n".join(html))
        files.append(str(out / "landscape.html"))
    except OSError as exc:
        return fail(f"cannot write into {out} ({exc.strerror}): choose another --out")
    summary = {name: s.summary() for name, s in surfaces.items()}
    if a.json:
        print(json.dumps({"landscape": {k: v for k, v in vars(lcfg).items()}, "surfaces": summary,
                          "files": files}))
        return 0
    keys = ("center", "min", "max", "top_eigenvalue", "hessian_trace", "hessian_trace_se", "radius_increase")
    names = list(summary)
    print(f"metric {lcfg.metric}, BN {lcfg.bn_mode}, {lcfg.nx}x{lcfg.ny} points over [-{lcfg.span:g}, "
          f"{lcfg.span:g}], {lcfg.n_images} images, direction seed {lcfg.seed}")
    print(f"{'':>18}" + "".join(f"{n:>14}" for n in names))
    for k in keys:
        label = f"increase@{lcfg.radius:g}" if k == "radius_increase" else k
        print(f"{label:>18}" + "".join(f"{_fmt(summary[n].get(k)):>14}" for n in names))
    print(f"wrote {', '.join(files)}")
    return 0
