"""The `lamp` command: train (and compare), landscape, sweep, app.

Bad input never ends in a traceback: every error a user can fix is a `LampError` (data, config,
or a diverged model's NaN scores) or an argparse error, printed as one line on stderr with exit
code 2. The flags of config fields are generated from their option specs (`lamp_core.config`):
name, type, choices, default and help are declared once, next to the field.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import SECTIONS, LampError, OptionSpec, RunConfig, option_specs

# Subcommands implemented in their own modules: name -> module exposing add_arguments(p), run(args)
EXTRA_COMMANDS = {
    "landscape": ("lamp_core.cli_landscape", "loss landscapes of trained runs (paper Fig. 1, 3)"),
    "sweep": ("lamp_core.cli_sweep", "grids of runs with statistics, locally or on Ray (Tables 1-2)"),
    "lesson": ("lamp_core.cli_lesson", "the lesson: measure its exercises, print the teacher notes or the guide"),
}
SIZE_DEFAULT = {"digits": 28, "mnist": 28, "fashion-mnist": 28, "mvtec": 64, "folder": 64}


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage + error; we print the error alone, on one line, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def fail(message: str, prog: str = "lamp") -> int:
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def run_script(main, prog: str) -> int:
    """A script's `main()` (the benchmarks in bench/) under the `lamp` command's contract: a
    LampError, e.g. a config asking for a GPU the machine lacks, is one line and exit code 2."""
    try:
        return int(main() or 0)
    except LampError as exc:
        return fail(str(exc), prog)


# ----------------------------------------------------------------------------- shared options
# Every flag of a config field is generated from its option spec (lamp_core.config): the name,
# type, choices, default and help are declared once, next to the field.

_SPEC_DEFAULT = object()


def dest_of(spec: OptionSpec) -> str:
    """The argparse destination of an option: its path with "_" ("train.seed" -> "train_seed")."""
    return spec.name.replace(".", "_")


def add_option(group, spec: OptionSpec, *, default: Any = _SPEC_DEFAULT, help: str | None = None) -> None:
    """Add the flag of one option, typed, bounded and explained by its spec."""
    default = spec.default if default is _SPEC_DEFAULT else default
    text = help or spec.help
    if spec.kind is bool:
        if spec.flag.startswith("--no-"):        # a switch that turns a default-on option off
            group.add_argument(spec.flag, dest=dest_of(spec), action="store_false", default=default, help=text)
        else:
            if default is not None and help is None:
                text += f" (default: {'on' if default else 'off'})"
            group.add_argument(spec.flag, dest=dest_of(spec), action=argparse.BooleanOptionalAction,
                               default=default, help=text)
        return
    if default is not None and help is None:
        text += " (default: %(default)s)"
    metavar = None if spec.choices else spec.flag.lstrip("-").upper().replace("-", "_")
    group.add_argument(spec.flag, dest=dest_of(spec), type=spec.kind, choices=spec.choices, default=default,
                       metavar=metavar, help=text)


def add_section_options(group, section: str, **overrides: dict[str, Any]) -> None:
    """Add the flags of every option of a config section that has one; `overrides` maps a field
    name to add_option keywords (a different default or help)."""
    for spec in option_specs(section):
        if spec.flag:
            add_option(group, spec, **overrides.get(spec.name.partition(".")[2], {}))


def section_from_args(a: argparse.Namespace, section: str, **fixed: Any):
    """The config dataclass of `section` from the parsed flags (fields without a flag: defaults)."""
    values = {spec.name.partition(".")[2]: getattr(a, dest_of(spec)) for spec in option_specs(section)
              if spec.flag and hasattr(a, dest_of(spec))}
    values.update(fixed)
    return SECTIONS[section](**values)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Every choice of a run: data, model, loss (with LAMP's three open choices), training."""
    add_section_options(p.add_argument_group("data"), "data", image_size={"default": None})
    add_section_options(p.add_argument_group("model"), "model")
    add_section_options(p.add_argument_group("loss and training"), "train")


def config_from_args(a: argparse.Namespace) -> RunConfig:
    data = section_from_args(a, "data", image_size=a.data_image_size or SIZE_DEFAULT[a.data_dataset])
    return RunConfig(data=data, model=section_from_args(a, "model"), train=section_from_args(a, "train"))


class ProgressBar:
    """A one-line progress bar on stderr (only when stderr is a terminal, or when forced)."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled, self.start = label, enabled, time.perf_counter()

    def __call__(self, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        total = max(info["steps_total"], 1)
        frac = min(info["step"] / total, 1.0)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label:>5} [{bar:<30}] {frac:4.0%} epoch {info['epoch']}/{info['epochs']} "
                         f"loss {info['loss']:.4g} {time.perf_counter() - self.start:5.1f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def progress_enabled(mode: str) -> bool:
    return mode == "always" or (mode == "auto" and sys.stderr.isatty())


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
            torch.save(rec.result.to_checkpoint(), path)
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
    for name, (module, help_text) in EXTRA_COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        sp = sub.add_parser(name, help=help_text)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
    from .cli_lesson import add_notes_arguments
    add_notes_arguments(sub.add_parser("notes", help="print the teacher notes (short for `lamp lesson notes`)"))
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
