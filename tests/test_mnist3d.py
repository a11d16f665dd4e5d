"""fred_jax.mnist3d: the Kaggle 3D MNIST reader (on small files in its layout) and the
generated stand-in (on small MNIST-format files, and on the real MNIST when FRED_DATA_DIR is
set)."""

import gzip
import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from fred_jax import datasets, mnist3d

_DATA = os.environ.get("FRED_DATA_DIR")


def _write_kaggle(path: Path, n_train: int = 6, n_test: int = 4, **override) -> dict:
    """An h5 file in the Kaggle layout (float64 vectors, int64 labels, as published)."""
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.uniform(0, 1, (n_train, 4096)),
              "y_train": np.arange(n_train) % 10,
              "X_test": rng.uniform(0, 1, (n_test, 4096)),
              "y_test": (np.arange(n_test) + 3) % 10}
    arrays.update(override)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f.create_dataset(key, data=value)
    return arrays


def test_reader_shapes_dtypes_labels_and_no_normalisation(tmp_path):
    arrays = _write_kaggle(tmp_path / "f.h5")
    splits = mnist3d.read_h5(tmp_path / "f.h5")
    x, y = splits["train"]
    assert x.shape == (6, 16, 16, 16, 1) and x.dtype == np.float32
    assert y.dtype == np.int32 and list(y) == [0, 1, 2, 3, 4, 5]
    assert list(splits["test"][1]) == [3, 4, 5, 6]
    np.testing.assert_array_equal(x.reshape(6, -1), arrays["X_train"].astype(np.float32))
    assert splits["test"][0].shape == (4, 16, 16, 16, 1)


def test_reader_axis_order_is_the_official_c_order_reshape(tmp_path):
    vol = np.zeros((16, 16, 16))
    vol[1, 2, 3] = 0.25  # hand-built: one voxel at (axis0, axis1, axis2) = (1, 2, 3)
    vol[15, 0, 7] = 1.0
    row = np.zeros(4096)
    row[1 * 256 + 2 * 16 + 3] = 0.25  # C order: index = a0 * 256 + a1 * 16 + a2
    row[15 * 256 + 7] = 1.0
    _write_kaggle(tmp_path / "f.h5", X_train=np.stack([row, row[::-1]]), y_train=np.array([7, 1]))
    x, y = mnist3d.read_h5(tmp_path / "f.h5")["train"]
    np.testing.assert_array_equal(x[0, ..., 0], vol)
    # the official prepare_points: tensor.reshape((N, 16, 16, 16)) then unsqueeze(1) (NCDHW)
    official = np.stack([row, row[::-1]]).reshape(2, 16, 16, 16)[:, None]
    np.testing.assert_array_equal(np.moveaxis(official, 1, -1), x)
    assert list(y) == [7, 1]


def test_reader_errors_before_reading(tmp_path):
    with pytest.raises(FileNotFoundError, match="kaggle.com/datasets/daavoo/3d-mnist"):
        mnist3d.read_h5(tmp_path / "absent.h5")
    _write_kaggle(tmp_path / "a.h5", y_test=None)
    with pytest.raises(ValueError, match=r"missing datasets \['y_test'\]"):
        mnist3d.read_h5(tmp_path / "a.h5")
    _write_kaggle(tmp_path / "b.h5", X_test=np.zeros((4, 4000)))
    with pytest.raises(ValueError, match=r"X_test has shape \(4, 4000\), expected \[N, 4096\]"):
        mnist3d.read_h5(tmp_path / "b.h5")
    _write_kaggle(tmp_path / "c.h5", y_train=np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"y_train has shape \(5,\), expected \(6,\)"):
        mnist3d.read_h5(tmp_path / "c.h5")
    _write_kaggle(tmp_path / "d.h5", y_train=np.array([0, 1, 2, 10, 4, 5]))
    with pytest.raises(ValueError, match=r"labels in \[0, 10\]"):
        mnist3d.read_h5(tmp_path / "d.h5")


def _idx(array: np.ndarray) -> bytes:
    magic = (0x08 << 8) | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _fake_mnist(folder: Path, monkeypatch, n_train: int = 30, n_test: int = 20) -> dict:
    """MNIST-format originals: class c is a bar at row 4 + 2c (label = bar position),
    registered as `mnist`'s files (the stand-in checks them like any original)."""
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % 10
        x = np.zeros((n, 28, 28), np.uint8)
        for i, c in enumerate(y):
            x[i, 4 + 2 * c:6 + 2 * c, 4:24] = 255
        images, labels = mnist3d.MNIST_FILES[split]
        for name, payload in ((images, _idx(x)), (labels, _idx(y))):
            (folder / name).write_bytes(payload)
            monkeypatch.setitem(datasets.SPECS["mnist"].files, name, datasets.File(
                None, len(payload), hashlib.sha256(payload).hexdigest()))
        out[split] = (x, y)
    return out


def test_standin_is_deterministic_labelled_and_in_the_kaggle_layout(tmp_path, monkeypatch):
    digits = _fake_mnist(tmp_path / "mnist", monkeypatch)
    a = mnist3d.make_standin(tmp_path / "mnist", tmp_path / "a" / "s.h5", n_train=12, n_test=8)
    b = mnist3d.make_standin(tmp_path / "mnist", tmp_path / "b" / "s.h5", n_train=12, n_test=8)
    assert sorted(os.listdir(tmp_path / "a")) == ["s.h5"]  # no temporary file left
    with h5py.File(a, "r") as f:
        assert f["X_train"].shape == (12, 4096) and f["X_test"].shape == (8, 4096)
        assert "NOT the Kaggle" in f.attrs["note"]
    sa, sb = mnist3d.read_h5(a), mnist3d.read_h5(b)
    for split, n in (("train", 12), ("test", 8)):
        np.testing.assert_array_equal(sa[split][0], sb[split][0])
        np.testing.assert_array_equal(sa[split][1], digits[split][1][:n])
        x = sa[split][0]
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert np.all(x.reshape(n, -1).max(axis=1) > 0.5)
    c = mnist3d.make_standin(tmp_path / "mnist", tmp_path / "c.h5", 12, 8, seed=1)
    assert not np.array_equal(mnist3d.read_h5(c)["train"][0], sa["train"][0])


def test_voxelise_extrudes_rotates_and_keeps_the_mass():
    digit = np.zeros((1, 28, 28), np.uint8)
    digit[0, 7:21, 7:21] = 255  # a 14x14 square: exactly 8x8 voxels after the area resize
    vol = mnist3d.voxelise(digit, seed=0)[0]
    half = np.random.default_rng(0).uniform(2.0, 4.0, 1)[0]
    z = np.arange(16.0) - 7.5
    slab_mass = 64 * np.sum(0.5 * (np.tanh(z + half) - np.tanh(z - half)))
    assert vol.sum() == pytest.approx(slab_mass, rel=0.02)  # trilinear resampling inside the box
    assert not np.allclose(vol, vol[::-1, :, ::-1])  # rotated: not the symmetric slab
    np.testing.assert_allclose(mnist3d.area_resize_matrix(28, 16).sum(axis=1), 1.0)
    np.testing.assert_allclose(mnist3d.area_resize_matrix(28, 16)[0, :2], [4 / 7, 3 / 7])


def test_locate_needs_a_data_dir_and_generates_the_standin_once(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="mnist3d/full_dataset_vectors.h5"):
        mnist3d.locate("mnist3d", None)
    assert mnist3d.locate("mnist3d", tmp_path) == tmp_path / "mnist3d" / mnist3d.FILE
    _fake_mnist(tmp_path / "data" / "mnist", monkeypatch)
    calls = []
    make = mnist3d.make_standin
    monkeypatch.setattr(mnist3d, "make_standin",
                        lambda src, out: calls.append(src) or make(src, out, 20, 10))
    path = mnist3d.locate(mnist3d.STANDIN, tmp_path / "data", tmp_path / "cache")
    assert path == tmp_path / "cache" / "mnist3d_standin" / mnist3d.STANDIN_FILE
    stamp = path.stat().st_mtime_ns
    assert mnist3d.locate(mnist3d.STANDIN, tmp_path / "data", tmp_path / "cache") == path
    assert path.stat().st_mtime_ns == stamp and calls == [tmp_path / "data" / "mnist"]
    assert mnist3d.read_h5(path)["train"][0].shape == (20, 16, 16, 16, 1)
    given = tmp_path / "data" / "mnist3d_standin" / mnist3d.STANDIN_FILE
    given.parent.mkdir()
    given.write_bytes(path.read_bytes())
    assert mnist3d.locate(mnist3d.STANDIN, tmp_path / "data", tmp_path / "cache") == given


@pytest.mark.skipif(not (_DATA and (Path(_DATA) / "mnist").is_dir()),
                    reason="real data: set FRED_DATA_DIR to a folder with mnist/")
def test_standin_statistics_on_real_mnist(tmp_path):
    path = mnist3d.make_standin(Path(_DATA) / "mnist", tmp_path / "s.h5", n_train=1000,
                                n_test=300)
    splits = mnist3d.read_h5(path)
    x, y = splits["train"]
    xt, yt = splits["test"]
    # measured once (seed 0): mean voxel 0.0488, 8.4% of voxels above 0.2
    assert x.mean() == pytest.approx(0.0488, abs=0.002)
    assert (x > 0.2).mean() == pytest.approx(0.084, abs=0.004)
    # learnable but not trivial: nearest class centroid on flattened volumes
    centroids = np.stack([x[y == c].reshape(-1, 4096).mean(0) for c in range(10)])
    dist = ((xt.reshape(-1, 4096)[:, None] - centroids[None]) ** 2).sum(-1)
    accuracy = float((dist.argmin(1) == yt).mean())
    assert 0.45 < accuracy < 0.85
