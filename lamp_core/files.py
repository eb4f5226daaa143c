"""Where LAMP Lab keeps files, and the one way it writes them.

Every file the engine writes (run store entries, surfaces, reports, CLI outputs) goes through
`atomic_write`: the bytes go to a temporary file in the same folder, are flushed to disk
(fsync), and the temporary file is moved over the target with `os.replace`. A reader never sees
half a file, and a crash or a full disk leaves the old file (or none), never a truncated one.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def cache_root() -> Path:
    """The user cache of LAMP Lab: $LAMP_CACHE, else ~/.cache/lamp-lab (downloads, the run store)."""
    return Path(os.environ.get("LAMP_CACHE", Path.home() / ".cache" / "lamp-lab")).expanduser()


def atomic_write(path: str | os.PathLike, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write `data` (bytes, or text in `encoding`) to `path` atomically; creates missing folders."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode(encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL: a fresh file of our own; mode 0o666 minus the umask, like any file the user writes
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings; [] when the file does not exist yet (a
    resumable study's first start)."""
    import csv
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv_rows(path: str | os.PathLike, rows, columns, *, lineterminator: str = "\r\n") -> Path:
    """Write rows (dicts) under `columns` atomically: missing fields empty, other fields left out,
    so a study can rewrite its whole CSV after every run and a kill never truncates it."""
    import csv
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator=lineterminator)
    w.writeheader()
    w.writerows(rows)
    return atomic_write(path, buf.getvalue().encode())
