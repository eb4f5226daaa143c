"""Build assets/example_upload.zip: a small upload in the "split" layout from the built-in
digits (scikit-learn), so students can try the Your data page without their own images.

    train/normal/*.png      digit 8, 28x28 grey PNGs (normal)
    test/normal/*.png       held-out eights
    test/anomalous/*.png    other digits
    README.txt              not an image: the validation report lists it as skipped

Run: .venv/bin/python assets/make_example_zip.py   (deterministic: same bytes every time)
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "example_upload.zip"
NORMAL_DIGIT, N_TRAIN, N_TEST_NORMAL, N_TEST_ANOMALOUS, SIZE = 8, 60, 20, 40, 28
README = (b"Example upload for LAMP Lab: digit 8 is normal, other digits are anomalous.\n"
          b"Layout: train/normal, test/normal, test/anomalous (see the Your data page).\n")


def png(img8: np.ndarray) -> bytes:
    """8x8 digit in [0, 16] -> 28x28 8-bit grey PNG."""
    im = Image.fromarray((img8 / 16.0 * 255).astype(np.uint8), "L").resize((SIZE, SIZE), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def build(path: Path = OUT) -> Path:
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.default_rng(0)
    normal = rng.permutation(np.flatnonzero(digits.target == NORMAL_DIGIT))
    other = rng.permutation(np.flatnonzero(digits.target != NORMAL_DIGIT))[:N_TEST_ANOMALOUS]
    entries = [(f"train/normal/{i:04d}.png", digits.images[i]) for i in normal[:N_TRAIN]]
    entries += [(f"test/normal/{i:04d}.png", digits.images[i]) for i in normal[N_TRAIN:N_TRAIN + N_TEST_NORMAL]]
    entries += [(f"test/anomalous/{i:04d}_digit{digits.target[i]}.png", digits.images[i]) for i in other]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, img in entries:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), png(img))
        zf.writestr(zipfile.ZipInfo("README.txt", date_time=(2024, 1, 1, 0, 0, 0)), README)
    return path


if __name__ == "__main__":
    p = build()
    print(f"wrote {p.name} ({p.stat().st_size // 1024} KiB)")
