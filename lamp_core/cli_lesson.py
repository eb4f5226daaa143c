"""`lamp lesson`: the lesson's measured numbers and the documents rendered from them.

    lamp lesson measure [--parts default_comparison,landscape,batch_size,upload] [--store DIR]
        train every exercise over its seeds and write assets/expected_results.json
    lamp lesson notes [--out FILE]     the teacher notes (for the teacher, not on the students' pages)
    lamp lesson guide [--out FILE]     the lab guide with the app's real defaults filled in

`lamp notes` is the short form of `lamp lesson notes`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import LampError
from .files import atomic_write


def register(sub) -> None:
    """Add `lamp lesson` and its short form `lamp notes` to the `lamp` command's subparsers."""
    add_arguments(sub.add_parser("lesson", help="the lesson: measure its exercises, print the teacher notes or "
                                                "the guide"))
    add_notes_arguments(sub.add_parser("notes", help="print the teacher notes (short for `lamp lesson notes`)"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="lesson_command", required=True, parser_class=type(p))
    m = sub.add_parser("measure", help="train every exercise over its seeds; write the expected results")
    from .lesson_measure import PARTS
    m.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)} (default: all)")
    m.add_argument("--store", help="run store folder to reuse (default: a fresh temporary one, so every run trains)")
    m.add_argument("--out", help="JSON file to write (default: assets/expected_results.json in the repository)")
    m.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the app's job-queue worker trains on one thread once a page "
                        "has run, and a run's last digits depend on the thread count, so one thread reproduces "
                        "the app's numbers exactly)")
    for name, what in (("notes", "the teacher notes"), ("guide", "the lab guide")):
        q = sub.add_parser(name, help=f"print {what} rendered from the measured numbers")
        q.add_argument("--out", help="write to this file instead of printing")
    p.set_defaults(func=run)


def add_notes_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="write to this file instead of printing")
    p.set_defaults(func=run, lesson_command="notes")


def run(a: argparse.Namespace) -> int:
    from . import lesson
    if a.lesson_command == "measure":
        from .lesson_measure import PARTS, measure
        parts = [x.strip() for x in a.parts.split(",") if x.strip()]
        unknown = [x for x in parts if x not in PARTS]
        if unknown:
            raise LampError(f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS)}")
        if a.threads is not None and a.threads < 1:
            raise LampError(f"--threads {a.threads} must be at least 1")
        out = Path(a.out) if a.out else lesson.expected_path()
        measure(out, store_dir=a.store, threads=a.threads, parts=parts)
        print(f"wrote {out}")
        return 0
    from .lesson_notes import render_guide, render_notes
    try:
        text = render_notes() if a.lesson_command == "notes" else render_guide()
    except FileNotFoundError as exc:
        raise LampError(str(exc)) from None
    if a.out:
        out = Path(a.out)
        if out.is_dir():
            raise LampError(f"--out {out} is a folder: name a file, e.g. {out / 'teacher_notes.md'}")
        if not out.parent.is_dir():
            raise LampError(f"--out {out}: folder {out.parent} does not exist: create it or name another file")
        atomic_write(out, text.encode())
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
