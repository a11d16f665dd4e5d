"""Tests of fred_jax.data on the real MNIST/CIFAR-10 originals in FRED_DATA_DIR and small arrays."""

import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from fred_jax import data

_DATA = os.environ.get("FRED_DATA_DIR")
needs_data = pytest.mark.skipif(
    not _DATA or not Path(_DATA, "mnist").is_dir() or not Path(_DATA, "cifar10").is_dir(),
    reason="real data: set FRED_DATA_DIR to a folder with mnist/ and cifar10/ (../shared/data)")

_MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
_MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def mnist(tfds_dir):
    return data.load("mnist", tfds_dir=tfds_dir)


@pytest.fixture(scope="module")
def cifar10(tfds_dir):
    return data.load("cifar10", tfds_dir=tfds_dir)


@needs_data
def test_mnist_shapes_counts_and_normalisation(mnist):
    assert mnist.image_shape == (28, 28, 1) and mnist.num_classes == 10
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int32
    assert np.bincount(mnist.y_train).tolist() == _MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == _MNIST_TEST_COUNTS
    # The reference's mean/std (0.1307, 0.3081) are the train pixel statistics.
    assert abs(float(mnist.x_train.mean())) < 2e-3
    assert abs(float(mnist.x_train.std()) - 1.0) < 2e-3
    pixels = np.asarray(data.denormalise(mnist.x_test[:50], mnist.mean, mnist.std)) * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=2e-3)
    assert pixels.min() == 0 and round(float(pixels.max())) == 255


@needs_data
def test_mnist_warm_load_reads_the_built_tfds_dataset(mnist, tfds_dir, monkeypatch):
    monkeypatch.delenv("FRED_DATA_DIR")  # the prepared tfds dataset needs no originals
    again = data.load("mnist", tfds_dir=tfds_dir)
    np.testing.assert_array_equal(again.y_train, mnist.y_train)
    np.testing.assert_array_equal(again.x_test, mnist.x_test)
    assert (Path(tfds_dir) / "fred_local" / "mnist" / "1.0.0").is_dir()


@needs_data
def test_cifar10_counts_and_published_mean(cifar10):
    assert cifar10.x_train.shape == (50000, 32, 32, 3) and cifar10.x_test.shape == (10000, 32, 32, 3)
    assert cifar10.x_train.dtype == np.float32 and cifar10.y_test.dtype == np.int32
    assert np.bincount(cifar10.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar10.y_test).tolist() == [1000] * 10
    assert cifar10.class_names[0] == "airplane" and cifar10.class_names[9] == "truck"
    raw_mean = (cifar10.x_train.reshape(-1, 3).mean(0, dtype=np.float64) * cifar10.std
                + cifar10.mean) * 255
    np.testing.assert_allclose(raw_mean, [125.307, 122.950, 113.865], atol=2e-3)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'.*mnist, fashion_mnist, cifar10"):
        data.load("cifar11")


def test_tfds_only_dataset_never_downloads_by_default(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load("cifar100", tfds_dir=tmp_path)


@needs_data
def test_missing_files_say_where_and_what(tmp_path):
    (tmp_path / "src" / "mnist").mkdir(parents=True)
    shutil.copy(Path(_DATA, "mnist", "t10k-labels-idx1-ubyte.gz"), tmp_path / "src" / "mnist")
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist", data_dir=tmp_path / "src", tfds_dir=tmp_path / "tfds")
    message = str(err.value)
    assert str(tmp_path / "src" / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert "t10k-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message


def test_no_data_dir_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("FRED_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="FRED_DATA_DIR"):
        data.load("mnist", tfds_dir=tmp_path)


@needs_data
def test_checksum_mismatch(tmp_path):
    src = tmp_path / "src" / "mnist"
    src.mkdir(parents=True)
    for f in Path(_DATA, "mnist").glob("*.gz"):
        (src / f.name).symlink_to(f.resolve())
    corrupted = src / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(corrupted.read_bytes())
    corrupted.unlink()
    payload[-1] ^= 0xFF
    corrupted.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="checksum mismatch.*t10k-labels-idx1-ubyte.gz"):
        data.load("mnist", data_dir=tmp_path / "src", tfds_dir=tmp_path / "tfds")
    assert not (tmp_path / "tfds" / "fred_local" / "mnist" / "1.0.0").exists()


def test_class_index_pads_with_own_members():
    labels = np.array([2, 0, 2, 1, 2, 0])
    index = data.class_index(labels, 3)
    assert index.counts.tolist() == [2, 1, 3]
    assert index.indices.shape == (3, 3) and index.indices.dtype == np.int32
    np.testing.assert_array_equal(labels[np.asarray(index.indices)], [[0] * 3, [1] * 3, [2] * 3])
    with pytest.raises(ValueError, match="without examples: \\[3\\]"):
        data.class_index(labels, 4)


def test_sample_per_class_small():
    labels = np.array([2, 0, 2, 1, 2, 0])
    index = data.class_index(labels, 3)
    picks = np.asarray(data.sample_per_class(jax.random.key(0), index, 2))
    assert picks.shape == (3, 2) and picks.dtype == np.int32
    np.testing.assert_array_equal(labels[picks], [[0, 0], [1, 1], [2, 2]])
    assert sorted(picks[0]) == [1, 5]  # both members of class 0, no repeat
    with pytest.raises(ValueError, match="n must be in"):
        data.sample_per_class(jax.random.key(0), index, 4)


@needs_data
def test_sample_per_class_on_mnist(mnist):
    index = mnist.class_index()
    assert np.asarray(index.counts).tolist() == _MNIST_TRAIN_COUNTS
    draw = jax.jit(data.sample_per_class, static_argnames="n")
    a = np.asarray(draw(jax.random.key(1), index, 64))
    b = np.asarray(draw(jax.random.key(2), index, 64))
    assert a.shape == (10, 64)
    np.testing.assert_array_equal(mnist.y_train[a], np.repeat(np.arange(10)[:, None], 64, 1))
    assert all(len(set(row)) == 64 for row in a)
    assert not np.array_equal(a, b)


@needs_data
def test_take_per_class(mnist):
    small = mnist.take_per_class(3, seed=0)
    assert small.x_train.shape == (30, 28, 28, 1)
    assert small.y_train.tolist() == np.repeat(np.arange(10), 3).tolist()
    assert small.x_test is mnist.x_test
    again = mnist.take_per_class(3, seed=0)
    np.testing.assert_array_equal(small.x_train, again.x_train)


def test_zca_whitens_a_small_random_set():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 12)) * 3.0
    x = (rng.normal(size=(4000, 12)) @ mixing + 5.0).astype(np.float32).reshape(4000, 2, 2, 3)
    mean, matrix = data.zca_fit(x, regularization=1e-6)
    white = data.zca_apply(x, mean, matrix).reshape(4000, -1)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(12), atol=1e-3)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-5)
    # The reference's regularisation 0.1 shrinks eigenvalue s of the covariance to s / (s + 0.1).
    mean, matrix = data.zca_fit(x)
    s, u = np.linalg.eigh(np.cov(x.reshape(4000, -1), rowvar=False))
    expected = (u * (s / (s + 0.1))) @ u.T
    white = data.zca_apply(x, mean, matrix).reshape(4000, -1)
    np.testing.assert_allclose(np.cov(white, rowvar=False), expected, atol=1e-3)


def test_tiny_imagenet_zip_layout_builds(tmp_path):
    """A two-class stand-in for the official tiny-imagenet-200.zip goes through the tfds builder."""
    import io
    import zipfile

    from PIL import Image

    def jpeg(value):
        buf = io.BytesIO()
        Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(buf, "JPEG", quality=95)
        return buf.getvalue()

    (tmp_path / "src" / "tiny_imagenet").mkdir(parents=True)
    root = "tiny-imagenet-200"
    with zipfile.ZipFile(tmp_path / "src" / "tiny_imagenet" / "tiny-imagenet-200.zip", "w") as zf:
        zf.writestr(f"{root}/wnids.txt", "n09999999\nn01000000\n")
        for wnid, value in (("n01000000", 40), ("n09999999", 200)):
            for i in range(3):
                zf.writestr(f"{root}/train/{wnid}/images/{wnid}_{i}.JPEG", jpeg(value))
        zf.writestr(f"{root}/val/images/val_0.JPEG", jpeg(200))
        zf.writestr(f"{root}/val/images/val_1.JPEG", jpeg(40))
        zf.writestr(f"{root}/val/val_annotations.txt",
                    "val_0.JPEG\tn09999999\t0\t0\t63\t63\nval_1.JPEG\tn01000000\t0\t0\t63\t63\n")
    ds = data.load("tiny_imagenet", data_dir=tmp_path / "src", tfds_dir=tmp_path / "tfds")
    assert ds.x_train.shape == (6, 64, 64, 3) and ds.num_classes == 200
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [1, 0]
    pixels = np.asarray(data.denormalise(ds.x_test, ds.mean, ds.std)) * 255
    np.testing.assert_allclose(pixels.mean(axis=(1, 2, 3)), [200, 40], atol=2)


def test_resize_center_crop_like_torchvision():
    image = np.zeros((100, 150, 3), np.uint8)
    image[:, 75:] = 255
    out = data._resize_center_crop(image, 64)
    assert out.shape == (64, 64, 3)
    assert out[:, :28].max() == 0 and out[:, 36:].min() == 255  # resized to 64x96, crop 16..80
