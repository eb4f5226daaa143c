"""What every `lamp` subcommand shares: the one-line error contract and the option flags.

Bad input never ends in a traceback: every error a user can fix is a `LampError` or an argparse
error, printed as one line on stderr with exit code 2 (`OneLineParser`, `fail`). The flags of
config fields are generated from their option specs (`lamp_core.config`): name, type, choices,
default and help are declared once, next to the field.

Its own module, below `lamp_core.cli` and the command modules (`cli_landscape`, `cli_sweep`,
`cli_lesson`), so that the commands import these helpers and `cli` imports the commands, with no
module importing its own importer.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .config import DEFAULT_IMAGE_SIZE, SECTIONS, LampError, OptionSpec, RunConfig, option_specs


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
    data = section_from_args(a, "data", image_size=a.data_image_size or DEFAULT_IMAGE_SIZE[a.data_dataset])
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
