"""The `lamp` command: train (and compare), landscape, sweep, lesson (and notes), app.

Bad input never ends in a traceback: every error a user can fix is a `LampError` (data, config,
or a diverged model's NaN scores) or an argparse error, printed as one line on stderr with exit
code 2. The flags of config fields are generated from their option specs (`lamp_core.config`):
name, type, choices, default and help are declared once, next to the field (`lamp_core.cli_common`).

`lamp train` and `lamp app` live here; `landscape`, `sweep` and `lesson` in their own modules,
each registering its subcommands with `register(sub)`. Those modules and this one share their
helpers through `cli_common`, so none of them imports this module back.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import cli_landscape, cli_lesson, cli_sweep
# the shared helpers; re-exported from here, where bench scripts and tests import them
from .cli_common import (OneLineParser, ProgressBar, add_option, add_run_arguments, add_section_options,  # noqa: F401
                         config_from_args, dest_of, fail, progress_enabled, run_script, section_from_args)
from .config import LampError
from .files import atomic_write

# the subcommands implemented in their own modules, in the order `lamp --help` lists them
COMMAND_MODULES = (cli_landscape, cli_sweep, cli_lesson)


# ----------------------------------------------------------------------------- lamp train

def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--compare", action="store_true",
                   help="train the base and the LAMP model from the same weights and batches")
    o.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    o.add_argument("--store", help="run store folder: reuse finished runs and keep new ones there")
    o.add_argument("--save", help="write the checkpoint (or, with --compare, PREFIX-base.pt and "
                   "PREFIX-lamp.pt) to this path")
    o.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")


def run_train(a: argparse.Namespace) -> int:
    from . import data as data_mod
    from .config import validate
    from .report import run_summary
    from .runner import compare_configs, run_config
    from .store import RunStore

    cfg = config_from_args(a)
    store = RunStore(a.store) if a.store else None
    validate(cfg)
    dataset = data_mod.load(cfg.data)  # load once, fail early on bad data
    if not a.json:
        s = dataset.summary()
        print(f"data: {s['name']}: {s['train_normal']} normal training images, {s['test_normal']} normal "
              f"and {s['test_anomalous']} anomalous test images, {s['channels']}x{s['image_size']}x{s['image_size']}"
              + (", with masks" if s["has_masks"] else ""))
        for note in dataset.notes[:5]:
            print(f"note: {note}")
    configs = dict(zip(("base", "lamp"), compare_configs(cfg))) if a.compare else {"run": cfg}
    records = {}
    for name, c in configs.items():
        bar = ProgressBar(name, progress_enabled(a.progress))
        records[name] = run_config(c, store=store, on_progress=bar)
        bar.close()
    if a.save:
        import torch
        for name, rec in records.items():
            path = Path(a.save) if name == "run" else Path(f"{a.save}-{name}.pt")
            path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            torch.save(rec.result.to_checkpoint(), buf)
            atomic_write(path, buf.getvalue())     # as every file the engine writes (lamp_core.files)
    if a.json:
        out = {k: run_summary(v) for k, v in records.items()}
        print(json.dumps(out["run"] if "run" in out else out))
        return 0
    _print_table({k: run_summary(v) for k, v in records.items()})
    return 0


def _print_table(rows: dict[str, dict[str, Any]]) -> None:
    def fmt(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
    keys = ("auroc", "pixel_auroc", "average_precision", "f1_max", "final_loss", "epochs_done", "seconds")
    names = list(rows)
    print(f"{'':>18}" + "".join(f"{n:>12}" for n in names))
    for k in keys:
        print(f"{k:>18}" + "".join(f"{fmt(rows[n][k]):>12}" for n in names))
    if "base" in rows and "lamp" in rows and rows["base"]["auroc"] is not None and rows["lamp"]["auroc"] is not None:
        diff = rows["lamp"]["auroc"] - rows["base"]["auroc"]
        verdict = "LAMP higher" if diff > 0 else ("equal" if diff == 0 else "LAMP lower (base wins here)")
        print(f"AUROC lamp - base: {diff:+.4f} ({verdict}; one seed, so no spread: see `lamp sweep`)")


# ----------------------------------------------------------------------------- lamp app

def run_app(a: argparse.Namespace) -> int:
    script = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    if not script.is_file():
        return fail(f"the app is not installed next to lamp_core ({script} missing): run from a clone")
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(a.port),
           "--server.headless", "true" if a.headless else "false", "--browser.gatherUsageStats", "false"]
    return subprocess.call(cmd, env=os.environ.copy())


# ----------------------------------------------------------------------------- entry point

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lamp", description="LAMP Lab: loss amplification for anomaly detection")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("train", help="train a run, or with --compare the base and LAMP pair")
    add_train_arguments(p)
    p.set_defaults(func=run_train)
    for command in COMMAND_MODULES:
        command.register(sub)
    p = sub.add_parser("app", help="start the Streamlit lab")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.set_defaults(func=run_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LampError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        sys.stderr.write("lamp: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
