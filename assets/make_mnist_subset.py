"""Build assets/mnist_subset/: a compact, offline MNIST for the lab's default data.

From the four original MNIST IDX files it keeps, with a fixed seed,

    1000 training images per digit      (10,000 of the 60,000; drawn per class)
    200 test images per digit           (2,000 of the 10,000; stratified by digit)

and writes them in MNIST's own format (gzipped IDX, the original file names), so the ordinary
MNIST reader takes the folder as it is: `DataConfig(dataset="mnist", data_root=<this folder>)`.
`source_indices.npz` (two int32 arrays, `train` and `test`, read with allow_pickle=False) records
which original image each one is, so anyone can check the subset against the full files.
Kept images stay in their original order. The output is byte-identical on every run (seeded
draw, gzip with mtime 0 and no stored name).

Rerun (needs the full files, e.g. ../shared/data/mnist beside the repo):

    .venv/bin/python assets/make_mnist_subset.py [--source DIR]

Source and licence: assets/MNIST_SOURCE.md.
"""
from __future__ import annotations

import argparse
import gzip
import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "mnist_subset"
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "mnist"
SEED = 20240601
TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) -> uint8 array of its dimensions."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        head = fh.read(4)
        assert head[:3] == b"\0\0\x08", f"{path.name} is not an unsigned-byte IDX file"
        dims = [int.from_bytes(fh.read(4), "big") for _ in range(head[3])]
        return np.frombuffer(fh.read(), dtype=np.uint8).reshape(dims)


def idx_bytes(arr: np.ndarray) -> bytes:
    """uint8 array -> IDX bytes: magic 0x0000 08 <ndim>, big-endian dimensions, the data."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_gz(path: Path, data: bytes) -> None:
    # mtime=0 and an empty stored name make the bytes independent of when and where this ran
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    path.write_bytes(buf.getvalue())


def per_class(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `n` images of each class, drawn without replacement."""
    picks = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c in range(10)]
    return np.sort(np.concatenate(picks)).astype(np.int32)


def build(source: Path, out: Path = OUT) -> dict[str, int]:
    full = {k: read_idx(source / v) for k, v in FILES.items()}
    rng = np.random.default_rng(SEED)
    train_idx = per_class(full["train_labels"], TRAIN_PER_CLASS, rng)
    test_idx = per_class(full["test_labels"], TEST_PER_CLASS, rng)
    out.mkdir(parents=True, exist_ok=True)
    for key, idx in (("train_images", train_idx), ("train_labels", train_idx),
                     ("test_images", test_idx), ("test_labels", test_idx)):
        write_gz(out / FILES[key], idx_bytes(full[key][idx]))
    buf = io.BytesIO()
    np.savez_compressed(buf, train=train_idx, test=test_idx)
    # np.savez stamps zip entries with the current time; rewrite them with a fixed one
    (out / "source_indices.npz").write_bytes(_fixed_time_zip(buf.getvalue()))
    return {"train": len(train_idx), "test": len(test_idx),
            "bytes": sum(p.stat().st_size for p in out.iterdir())}


def _fixed_time_zip(blob: bytes) -> bytes:
    import zipfile
    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                         src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                    help="folder with the four original MNIST .gz files (default ../shared/data/mnist)")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default assets/mnist_subset)")
    a = ap.parse_args(argv)
    missing = [v for v in FILES.values() if not (a.source / v).is_file()]
    if missing:
        print(f"{', '.join(missing)} not found in {a.source}: give the folder of the original "
              "MNIST files with --source", file=sys.stderr)
        return 2
    info = build(a.source, a.out)
    print(f"wrote {a.out}: {info['train']} training and {info['test']} test images, {info['bytes']:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
