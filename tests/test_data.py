"""Tests of fred_jax.data on the real MNIST/CIFAR-10 originals in FRED_DATA_DIR and small arrays."""

import hashlib
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from fred_jax import data, datasets

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
        data.load("imagenette_fastai", tfds_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="imagenet2012 needs the ImageNet tars"):
        data.load("imagenette", tfds_dir=tmp_path)


@needs_data
def test_missing_files_say_where_and_what(tmp_path):
    (tmp_path / "src" / "mnist").mkdir(parents=True)
    shutil.copy(Path(_DATA, "mnist", "t10k-labels-idx1-ubyte.gz"), tmp_path / "src" / "mnist")
    with pytest.raises(FileNotFoundError) as err:
        data.load("mnist", data_dir=tmp_path / "src", tfds_dir=tmp_path / "tfds")
    message = str(err.value)
    assert str(tmp_path / "src" / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert "t10k-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message


def test_a_data_dir_without_the_dataset_stays_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("FRED_DATA_DIR", str(tmp_path / "src"))
    with pytest.raises(FileNotFoundError) as err:
        data.load("cifar10", tfds_dir=tmp_path / "tfds", mirror="http://127.0.0.1:9")
    message = str(err.value)
    assert str(tmp_path / "src" / "cifar10" / "cifar-10-python.tar.gz") in message
    assert "['cifar10_labels.npz', 'x_test.npy.xz', 'x_train.npy.xz']" in message


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


def test_tiny_imagenet_zip_layout_builds(tmp_path, monkeypatch):
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
    payload = (tmp_path / "src" / "tiny_imagenet" / "tiny-imagenet-200.zip").read_bytes()
    monkeypatch.setitem(datasets.SPECS["tiny_imagenet"].files, "tiny-imagenet-200.zip",
                        datasets.File(None, len(payload), None,
                                      md5=hashlib.md5(payload).hexdigest()))  # only an md5 known
    ds = data.load("tiny_imagenet", data_dir=tmp_path / "src", tfds_dir=tmp_path / "tfds")
    assert ds.x_train.shape == (6, 64, 64, 3) and ds.num_classes == 200
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [1, 0]
    pixels = np.asarray(data.denormalise(ds.x_test, ds.mean, ds.std)) * 255
    np.testing.assert_allclose(pixels.mean(axis=(1, 2, 3)), [200, 40], atol=2)


def _torch_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Per-pixel re-derivation of torch's upsample_bilinear2d (align_corners=False, no
    antialias): source = (dst + 0.5) * in / out - 0.5 clamped at 0, neighbour clamped at the
    last pixel."""
    in_h, in_w = image.shape[:2]

    def source(i, n_in, n_out):
        s = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = int(s)
        return lo, lo + (lo < n_in - 1), s - lo

    out = np.zeros((out_h, out_w, image.shape[2]))
    for i in range(out_h):
        y0, y1, ly = source(i, in_h, out_h)
        for j in range(out_w):
            x0, x1, lx = source(j, in_w, out_w)
            out[i, j] = ((1 - ly) * ((1 - lx) * image[y0, x0] + lx * image[y0, x1])
                         + ly * ((1 - lx) * image[y1, x0] + lx * image[y1, x1]))
    return out


@pytest.mark.parametrize("shape, size", [((10, 13, 3), (4, 6)), ((3, 4, 3), (7, 9)),
                                         ((37, 50, 3), (16, 16)), ((16, 16, 3), (16, 16))])
def test_resize_bilinear_is_torchs_squash(shape, size):
    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    out = data.resize_bilinear(image, size)
    assert out.shape == (*size, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, _torch_bilinear(image.astype(np.float64), *size), atol=1e-3)


def test_resize_bilinear_values_of_torch_and_squash():
    # torch.nn.functional.interpolate(x, (3, 2), mode="bilinear", align_corners=False) of
    # [[0, 1, 4], [9, 16, 25]], computed with torch 2 (no antialias: torchvision 0.12 Resize).
    x = (np.arange(6, dtype=np.float32).reshape(2, 3, 1)) ** 2
    np.testing.assert_allclose(data.resize_bilinear(x, (3, 2))[..., 0],
                               [[0.25, 3.25], [5.5, 13.0], [10.75, 22.75]], atol=1e-5)
    image = np.zeros((100, 150, 3), np.uint8)
    image[:, 50:] = 255
    out = data.resize_bilinear(image, (128, 128))  # squashed: the edge stays at 1/3 of the width
    assert out[:, :42].max() == 0 and out[:, 43:].min() == 255  # (a centre crop puts it at 32)
    np.testing.assert_allclose(out[:, 42], (42.5 * 150 / 128 - 0.5 - 49) * 255, rtol=1e-5)


# The official lists (FreD TM/utils.py, class Config), copied as data.
_OFFICIAL_SUBSETS = {
    "imagenette": [0, 217, 482, 491, 497, 566, 569, 571, 574, 701],
    "imagewoof": [193, 182, 258, 162, 155, 167, 159, 273, 207, 229],
    "imagemeow": [281, 282, 283, 284, 285, 291, 292, 290, 289, 287],
    "imagesquawk": [84, 130, 88, 144, 145, 22, 96, 9, 100, 89],
    "imagefruit": [953, 954, 949, 950, 951, 957, 952, 945, 943, 948],
    "imageyellow": [309, 986, 954, 951, 987, 779, 599, 291, 72, 11],
}


def test_imagenet_subsets_are_the_official_class_ids():
    assert {k: list(v) for k, v in data.IMAGENET_SUBSETS.items()} == _OFFICIAL_SUBSETS
    for name in _OFFICIAL_SUBSETS:
        spec = datasets.SPECS[name]
        assert (spec.tfds_name, spec.splits, spec.image_shape) == (
            "imagenet2012", ("train", "validation"), (128, 128, 3))
    assert datasets.SPECS["imagenette_fastai"].tfds_name == "imagenette/full-size-v2"


def test_imagenet_subsets_match_the_official_source():
    """Against the official TM/utils.py itself when it is at hand ($FRED_REF)."""
    import ast

    ref = Path(os.environ.get("FRED_REF", Path(__file__).parents[2] / "shared/reference/FreD"))
    if not (ref / "TM" / "utils.py").is_file():
        pytest.skip(f"official code not found at {ref}")
    tree = ast.parse((ref / "TM" / "utils.py").read_text())
    config = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    lists = {t.id: ast.literal_eval(a.value) for a in config.body if isinstance(a, ast.Assign)
             for t in a.targets if isinstance(a.value, ast.List)}
    assert {k: list(v) for k, v in data.IMAGENET_SUBSETS.items()} == lists


def test_imagenet_subset_keeps_official_ids_in_list_order_and_squashes(monkeypatch):
    """`_read_tfds` on a stand-in for tfds imagenet2012: filter by class id, label = position in
    the official list, every image squashed to 128x128."""
    import types

    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    shapes = [(90, 120), (140, 100), (128, 128), (60, 61), (200, 150)]
    records = {split: [{"image": rng.integers(0, 256, (*hw, 3), np.uint8), "label": label}
                       for hw, label in zip(shapes, labels)]
               for split, labels in (("train", [217, 5, 0, 701, 999]),
                                     ("validation", [701, 1, 482, 2, 3]))}

    class Source:
        def __init__(self, rows):
            self.rows = rows

        def __len__(self):
            return len(self.rows)

        def __getitems__(self, idx):
            return [self.rows[i] for i in idx]

    builder = types.SimpleNamespace(
        is_prepared=lambda: True,
        as_data_source=lambda split, decoders=None: Source(records[split]),
        info=types.SimpleNamespace(features={
            "image": None, "label": types.SimpleNamespace(names=[f"c{i}" for i in range(1000)])}))
    monkeypatch.setattr(tfds, "builder", lambda name, **kwargs: (
        builder if name == "imagenet2012" else pytest.fail(name)))
    names, splits = data._read_tfds("imagenette", None, download=False)
    assert names == tuple(f"c{i}" for i in _OFFICIAL_SUBSETS["imagenette"])
    x, y = splits["train"]
    assert y.tolist() == [1, 0, 9] and x.shape == (3, 128, 128, 3) and x.dtype == np.float32
    for out, i in zip(x, (0, 2, 3)):
        np.testing.assert_allclose(out, data.resize_bilinear(records["train"][i]["image"],
                                                             (128, 128)), atol=1e-4)
    assert splits["test"][1].tolist() == [9, 2]
