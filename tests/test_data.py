"""Data sources: the built-in digits, real MNIST / MVTec / hazelnut, the three folder layouts as
folders and zips, and untrusted input (escapes, links, caps, bombs, corrupt files, odd modes)."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (HAZELNUT_DIR, MNIST_DIR, MVTEC_DIR, REPO, blob_image, layout_files, needs_hazelnut, needs_mnist,
                      needs_mvtec, png_bytes, write_dir, write_zip)
from lamp_core.config import DataConfig
from lamp_core.data import ABNORMAL, MNIST_SUBSET_DIR, NORMAL, DataError, load
from lamp_core.data import common, images


def _check_unit(ds):
    for t in (ds.train, ds.test):
        assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 1


def test_digits_default_protocol():
    ds = load(DataConfig())
    assert ds.train.shape[1:] == (1, 28, 28)
    assert (ds.test_labels == NORMAL).sum() > 0 and (ds.test_labels == ABNORMAL).sum() > 0
    # normal test images are exactly the normal class
    groups = np.array(ds.test_groups)
    assert set(groups[ds.test_labels.numpy() == NORMAL]) == {"8"}
    assert "8" not in set(groups[ds.test_labels.numpy() == ABNORMAL])
    _check_unit(ds)
    # decoded afresh, not answered from the cache: the split itself is deterministic
    again = load(DataConfig(seed=0, image_size=28), cached=False)
    assert again.test is not ds.test and torch.equal(again.test, ds.test)
    assert torch.equal(again.train, ds.train)
    other_seed = load(DataConfig(seed=1), cached=False)
    assert not torch.equal(other_seed.test[: len(ds.test)], ds.test[: len(other_seed.test)])


def test_cached_load_hands_out_its_own_record():
    first = load(DataConfig(normal_class=2))
    first.notes.append("a caller's remark")
    assert load(DataConfig(normal_class=2)).notes == []


def test_digits_caps_val_and_channels():
    ds = load(DataConfig(normal_class=3, max_train=40, max_test=100, val_fraction=0.25, channels=3, image_size=32))
    assert ds.train.shape[0] + ds.val.shape[0] == 40 and ds.val.shape[0] == 10
    assert ds.test.shape[0] <= 101 and ds.test.shape[1:] == (3, 32, 32)


@needs_mnist
def test_mnist_from_idx_files_follows_the_paper_protocol():
    ds = load(DataConfig(dataset="mnist", data_root=str(MNIST_DIR), normal_class=3, max_train=200))
    assert ds.train.shape == (200, 1, 28, 28)
    assert ds.test.shape[0] == 10_000                       # the whole test split
    assert int((ds.test_labels == NORMAL).sum()) == 1010    # the 3s of t10k
    _check_unit(ds)


def test_mnist_subset_loads_offline_with_per_class_counts(monkeypatch):
    import torchvision

    def no_network(*a, **k):
        raise AssertionError("the bundled subset must not touch the network")
    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    for k in (0, 5):
        ds = load(DataConfig(dataset="mnist", data_root=str(MNIST_SUBSET_DIR), normal_class=k, download=False),
                  cached=False)
        assert ds.train.shape == (1000, 1, 28, 28)
        assert ds.test.shape == (2000, 1, 28, 28)
        groups = np.array(ds.test_groups)
        # stratified: 200 of every digit, the normal one labelled NORMAL
        assert {g: int((groups == g).sum()) for g in set(groups)} == {str(d): 200 for d in range(10)}
        assert set(groups[ds.test_labels.numpy() == NORMAL]) == {str(k)}
        assert int((ds.test_labels == ABNORMAL).sum()) == 1800
        _check_unit(ds)


@needs_mnist
def test_mnist_subset_is_the_same_images_as_the_full_files():
    from lamp_core.data.mnist import SUBSET_INDEX_FILE, read_idx
    with np.load(MNIST_SUBSET_DIR / SUBSET_INDEX_FILE, allow_pickle=False) as z:
        train_idx, test_idx = z["train"], z["test"]
    for split, idx in (("train", train_idx), ("t10k", test_idx)):
        sub_x = read_idx(MNIST_SUBSET_DIR / f"{split}-images-idx3-ubyte.gz")
        sub_y = read_idx(MNIST_SUBSET_DIR / f"{split}-labels-idx1-ubyte.gz")
        full_x = read_idx(MNIST_DIR / f"{split}-images-idx3-ubyte.gz")
        full_y = read_idx(MNIST_DIR / f"{split}-labels-idx1-ubyte.gz")
        assert np.array_equal(sub_x, full_x[idx]) and np.array_equal(sub_y, full_y[idx])
        assert np.all(np.diff(idx) > 0)      # distinct images in their original order
    ds = load(DataConfig(dataset="mnist", data_root=str(MNIST_SUBSET_DIR), normal_class=7))
    first = int(ds.test_names[0][len("t10k["):-1])
    assert np.array_equal((ds.test[0, 0].numpy() * 255).round(), read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[first])


def test_mnist_subset_script_is_deterministic(tmp_path):
    """The script writes the same bytes twice (from tiny stand-in IDX files)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_mnist_subset", REPO / "assets" / "make_mnist_subset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for split, n in (("train", 30), ("t10k", 20)):
        labels = np.tile(np.arange(10, dtype=np.uint8), n // 10)
        mod.write_gz(src / f"{split}-images-idx3-ubyte.gz", mod.idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        mod.write_gz(src / f"{split}-labels-idx1-ubyte.gz", mod.idx_bytes(labels))
    mod.TRAIN_PER_CLASS, mod.TEST_PER_CLASS = 2, 1
    a, b = tmp_path / "a", tmp_path / "b"
    mod.build(src, a)
    mod.build(src, b)
    for f in sorted(a.iterdir()):
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    ds = load(DataConfig(dataset="mnist", data_root=str(a), normal_class=4, download=False))
    assert ds.train.shape[0] == 2 and ds.test.shape[0] == 10


def test_mnist_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match="not found in"):
        load(DataConfig(dataset="mnist", data_root=str(tmp_path)))


def test_mnist_offline_without_files_is_a_clear_error(monkeypatch):
    import torchvision

    def no_network(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    with pytest.raises(DataError, match="--data-root"):
        load(DataConfig(dataset="mnist", normal_class=1))


@needs_mvtec
def test_mvtec_grid_with_masks():
    ds = load(DataConfig(dataset="mvtec", data_root=str(MVTEC_DIR), category="grid", image_size=64))
    assert ds.test_masks is not None and ds.test_masks.shape[0] == ds.test.shape[0]
    normal = ds.test_labels == NORMAL
    assert ds.test_masks[normal].sum() == 0 and ds.test_masks[~normal].sum() > 0
    assert ds.channels == 1   # grid is greyscale
    _check_unit(ds)


@needs_mvtec
def test_mvtec_unknown_category_lists_the_known_ones():
    with pytest.raises(DataError, match="grid"):
        load(DataConfig(dataset="mvtec", data_root=str(MVTEC_DIR), category="bottle"))


@needs_hazelnut
def test_hazelnut_masks_without_suffix_and_rgb():
    ds = load(DataConfig(dataset="mvtec", data_root=str(HAZELNUT_DIR), image_size=32))
    assert ds.channels == 3 and ds.train.shape[0] == 28
    assert ds.test_masks is not None and int((ds.test_labels == ABNORMAL).sum()) == 17


@pytest.mark.parametrize("layout", ["mvtec", "split", "unsplit"])
@pytest.mark.parametrize("as_zip", [False, True])
def test_folder_layouts(make_layout, layout, as_zip):
    path = make_layout(layout, as_zip=as_zip)
    ds = load(DataConfig(dataset="folder", data_root=str(path), image_size=16))
    assert ds.train.shape[0] >= 5 and (ds.test_labels == ABNORMAL).sum() == 4
    assert (ds.test_masks is not None) == (layout == "mvtec")
    _check_unit(ds)


def test_zip_slip_is_refused(tmp_path):
    files = layout_files("split")
    files["../evil.png"] = png_bytes(blob_image(1))
    path = write_zip(tmp_path / "evil.zip", files)
    with pytest.raises(DataError, match="escape"):
        load(DataConfig(dataset="folder", data_root=str(path), image_size=16))
    assert not (tmp_path.parent / "evil.png").exists()


def test_absolute_path_in_zip_is_refused(tmp_path):
    path = tmp_path / "abs.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("/etc/normal.png"), png_bytes(blob_image(1)))
    with pytest.raises(DataError, match="escape"):
        load(DataConfig(dataset="folder", data_root=str(path), image_size=16))


def test_symlink_in_zip_is_refused(tmp_path):
    files = layout_files("unsplit")
    path = write_zip(tmp_path / "link.zip", files)
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("normal/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="link"):
        load(DataConfig(dataset="folder", data_root=str(path), image_size=16))


def test_symlink_in_folder_is_refused(tmp_path):
    root = write_dir(tmp_path / "set", layout_files("unsplit"))
    os.symlink("/etc/hostname", root / "normal" / "sneaky.png")
    with pytest.raises(DataError, match="link"):
        load(DataConfig(dataset="folder", data_root=str(root), image_size=16))


def test_file_count_and_size_caps(tmp_path, monkeypatch):
    path = write_zip(tmp_path / "many.zip", layout_files("split"))
    monkeypatch.setattr(common, "MAX_FILES", 5)
    with pytest.raises(DataError, match="more than 5"):
        load(DataConfig(dataset="folder", data_root=str(path), image_size=16, seed=1))
    monkeypatch.setattr(common, "MAX_FILES", 20_000)
    monkeypatch.setattr(common, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(DataError, match="MiB"):
        load(DataConfig(dataset="folder", data_root=str(path), image_size=16, seed=2))


def test_zip_bomb_ratio_is_refused(tmp_path):
    files = layout_files("split")
    files["train/normal/zeros.bmp"] = b"\0" * (4 << 20)   # 4 MiB of zeros deflate ~1000x
    path = write_zip(tmp_path / "bomb.zip", files)
    with pytest.raises(DataError, match="bomb"):
        load(DataConfig(dataset="folder", data_root=str(path), image_size=16))


def test_pixel_bomb_is_skipped_with_a_note_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 16 * 16)   # the 16x16 set passes, a 32x32 image is a "bomb"
    files = layout_files("split")
    files["train/normal/huge.png"] = png_bytes(np.zeros((32, 32), np.uint8))
    root = write_dir(tmp_path / "set", files)
    ds = load(DataConfig(dataset="folder", data_root=str(root), image_size=16), cached=False)
    assert ds.train.shape[0] == 8
    (note,) = [n for n in ds.notes if "huge.png" in n]
    assert "pixel limit" in note and "32x32" in note


def test_pixel_limit_is_not_set_process_wide():
    """Importing the data package leaves Pillow's own limit alone (checked in a fresh process)."""
    code = ("from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import lamp_core.data; "
            "assert Image.MAX_IMAGE_PIXELS == before, Image.MAX_IMAGE_PIXELS")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_corrupt_and_non_images_are_skipped_with_notes(tmp_path):
    files = layout_files("split")
    files["train/normal/broken.png"] = b"\x89PNG\r\n\x1a\nnot really"
    files["train/normal/readme.txt"] = b"hello"
    root = write_dir(tmp_path / "set", files)
    ds = load(DataConfig(dataset="folder", data_root=str(root), image_size=16))
    assert any("broken.png" in n for n in ds.notes)
    assert any("readme.txt" in n for n in ds.notes)
    assert ds.train.shape[0] == 8


def test_modes_and_mixed_sizes_are_converted(tmp_path):
    files = layout_files("split")
    pal = Image.fromarray(blob_image(3, 20)).convert("P")
    rgba = Image.fromarray(np.dstack([blob_image(4, 24)] * 3 + [np.full((24, 24), 128, np.uint8)]), "RGBA")
    deep = Image.fromarray(blob_image(5, 12).astype(np.uint16) * 257)  # mode I;16
    for name, img in (("pal", pal), ("rgba", rgba), ("deep", deep)):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        files[f"train/normal/{name}.png"] = buf.getvalue()
    root = write_dir(tmp_path / "set", files)
    ds = load(DataConfig(dataset="folder", data_root=str(root), image_size=16))
    assert ds.train.shape == (11, 3, 16, 16)   # RGBA forces colour for the whole set
    _check_unit(ds)
    grey = load(DataConfig(dataset="folder", data_root=str(root), image_size=16, channels=1))
    assert grey.train.shape[1] == 1


@pytest.mark.parametrize("drop,msg", [("train/normal/", "no readable normal training"),
                                      ("test/anomalous/", "no anomalous test"),
                                      ("test/normal/", "no normal test")])
def test_missing_splits_are_named(tmp_path, drop, msg):
    files = {k: v for k, v in layout_files("split").items() if not k.startswith(drop)}
    if drop == "train/normal/":
        files["train/normal/x.txt"] = b"not an image"
    root = write_dir(tmp_path / "set", files)
    with pytest.raises(DataError, match=msg):
        load(DataConfig(dataset="folder", data_root=str(root), image_size=16))


def test_unknown_layout_and_bad_paths(tmp_path):
    root = write_dir(tmp_path / "odd", {"pics/a.png": png_bytes(blob_image(0))})
    with pytest.raises(DataError, match="no known layout"):
        load(DataConfig(dataset="folder", data_root=str(root), image_size=16))
    with pytest.raises(DataError, match="does not exist"):
        load(DataConfig(dataset="folder", data_root=str(tmp_path / "nope"), image_size=16))
    (tmp_path / "notzip.zip").write_bytes(b"plain text")
    with pytest.raises(DataError, match="neither a folder nor a zip"):
        load(DataConfig(dataset="folder", data_root=str(tmp_path / "notzip.zip"), image_size=16))


@pytest.mark.parametrize("prefix,msg", [
    ("anomalous/", "no normal images, only anomalous/: add a normal/ folder"),
    ("test/anomalous/", "no normal training images, only test/: add train/normal/")])
def test_a_zip_of_anomalous_images_only_asks_for_normal_images(tmp_path, prefix, msg):
    """Only anomalous images is an accepted layout less its normal images: the message says to
    add them, in one line, not that the layout is unknown."""
    files = {f"{prefix}{i:03d}.png": png_bytes(blob_image(200 + i, anomalous=True)) for i in range(3)}
    path = write_zip(tmp_path / "anomalous_only.zip", files, prefix="my_set/")
    with pytest.raises(DataError, match=msg) as info:
        load(DataConfig(dataset="folder", data_root=str(path), image_size=16))
    assert "no known layout" not in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("anomalous_only.zip: ")


def test_truncated_images_are_named_as_truncated(tmp_path):
    good = png_bytes(blob_image(0, 64))
    files = {f"normal/{i}.png": good[: len(good) // 2] for i in range(3)}
    files["anomalous/a.png"] = png_bytes(blob_image(1, 16, True))
    root = write_dir(tmp_path / "set", files)
    with pytest.raises(DataError) as err:
        load(DataConfig(dataset="folder", data_root=str(root), image_size=16))
    msg = str(err.value)
    assert "truncated" in msg and "normal/" in msg and ".png" in msg and "\n" not in msg
    # one truncated image among readable ones: skipped with a note that says so
    files = layout_files("split")
    files["train/normal/cut.png"] = good[: len(good) // 2]
    ds = load(DataConfig(dataset="folder", data_root=str(write_dir(tmp_path / "s2", files)), image_size=16))
    assert any("cut.png" in n and "truncated" in n for n in ds.notes) and ds.train.shape[0] == 8


def test_decoded_budget_refuses_with_a_one_line_reason(tmp_path, monkeypatch):
    root = write_dir(tmp_path / "set", layout_files("split"))     # 15 grey 16x16 images
    monkeypatch.setenv(images.BUDGET_ENV, "0.01")                  # 10 kB < 15 x 16 x 16 x 4 bytes
    with pytest.raises(DataError) as err:
        load(DataConfig(dataset="folder", data_root=str(root), image_size=16), cached=False)
    msg = str(err.value)
    assert "budget" in msg and "smaller image size" in msg and "\n" not in msg
    monkeypatch.setenv(images.BUDGET_ENV, "0.02")                  # grey fits (15 kB), colour (45 kB) does not
    assert load(DataConfig(dataset="folder", data_root=str(root), image_size=16), cached=False).channels == 1
    files = layout_files("split")
    files["train/normal/colour.png"] = png_bytes(np.dstack([blob_image(9)] * 3))
    colour_root = write_dir(tmp_path / "colour", files)
    with pytest.raises(DataError, match="colour images"):
        load(DataConfig(dataset="folder", data_root=str(colour_root), image_size=16), cached=False)
    grey = load(DataConfig(dataset="folder", data_root=str(colour_root), image_size=16, channels=1), cached=False)
    assert grey.train.shape[1] == 1
    monkeypatch.setenv(images.BUDGET_ENV, "lots")
    with pytest.raises(DataError, match="positive number"):
        load(DataConfig(dataset="folder", data_root=str(root), image_size=16), cached=False)


def test_large_images_are_resized_as_pillow_would():
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).filter(
        __import__("PIL.ImageFilter", fromlist=["GaussianBlur"]).GaussianBlur(4))
    expected = np.asarray(big.resize((32, 32), Image.BILINEAR, reducing_gap=3.0)).transpose(2, 0, 1)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    arr, grey = images.decode_image(buf.getvalue(), "big.png", 32)
    assert not grey and arr.shape == (3, 32, 32) and np.array_equal(arr, expected)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=95)
    jpeg, _ = images.decode_image(buf.getvalue(), "big.jpg", 32)   # decoded at reduced scale (draft)
    assert np.abs(jpeg.astype(int) - expected).mean() < 3
    # transparent pixels end up black, whatever colour they hide
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 255                       # red everywhere, but only the left half opaque
    rgba[:, :32, 3] = 255
    arr, _ = images.decode_image(png_bytes(rgba, "RGBA"), "alpha.png", 16, 3)
    assert arr[0, :, :6].min() == 255 and arr[0, :, 10:].max() == 0


def test_content_hash_is_the_sha256_of_the_bytes(tmp_path):
    import hashlib
    from lamp_core.data import content_hash
    blob = os.urandom(3 << 20) + b"tail"
    (tmp_path / "up.zip").write_bytes(blob)
    assert content_hash(tmp_path / "up.zip") == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize("kw", [dict(dataset="folder"), dict(dataset="mvtec"),
                                dict(dataset="folder", data_root="/nonexistent/upload.zip")])
def test_messages_read_well_in_the_browser_and_the_terminal(kw, tmp_path):
    with pytest.raises(DataError) as err:
        load(DataConfig(image_size=16, **kw))
    msg = str(err.value)
    assert "\n" not in msg and "pass " not in msg and "--" not in msg and ": give " in msg


def test_cache_holds_at_most_one_decode_budget(monkeypatch):
    import lamp_core.data as data
    data.clear_cache()
    one = load(DataConfig(normal_class=1))
    size = data._nbytes(one)
    monkeypatch.setenv(images.BUDGET_ENV, str(2.5 * size / (1 << 20)))   # room for two such sets
    for k in (1, 2, 3):
        load(DataConfig(normal_class=k))
    assert list(c.normal_class for c in data._cache) == [2, 3]          # the oldest went first
    assert load(DataConfig(normal_class=3)).test is data._cache[DataConfig(normal_class=3)].test
    data.clear_cache()
    assert not data._cache



def test_a_set_in_use_is_shared_whatever_its_size_and_forgotten_with_its_last_holder(monkeypatch):
    """Over the budget a set is not remembered, but while a caller holds it (a queued run, a
    sweep) another load gets its tensors instead of a second decode; then it is gone."""
    import gc

    import lamp_core.data as data
    data.clear_cache()
    monkeypatch.setenv(images.BUDGET_ENV, "0.001")                      # smaller than any set
    cfg = DataConfig(normal_class=4, image_size=16)
    held = load(cfg)
    assert cfg not in data._cache and data.peek(cfg).train is held.train
    again = load(cfg)
    assert again.train is held.train and again is not held             # shared tensors, own record
    del held, again
    gc.collect()
    assert data.peek(cfg) is None                                       # nothing keeps it alive
    assert load(cfg, cached=False) is not None and data.peek(cfg) is None
    data.clear_cache()