"""The dataset table (fred_jax.datasets): its facts, its readers, and that it needs no JAX."""

import subprocess
import sys

import pytest

from fred_jax import configuration, data, datasets, sources


@pytest.mark.parametrize("name,shape,classes,first,last", [
    ("mnist", (28, 28, 1), 10, "0", "9"),
    ("cifar10", (32, 32, 3), 10, "airplane", "truck"),
    ("cifar100", (32, 32, 3), 100, "apple", "worm"),
])
def test_shapes_classes_and_names(name, shape, classes, first, last):
    spec = datasets.SPECS[name]
    assert (spec.image_shape, spec.num_classes, spec.source) == (shape, classes, "local")
    assert (spec.class_names[0], spec.class_names[-1]) == (first, last)
    assert configuration.DATASETS[name] == (shape, classes)


def test_cifar10_statistics_and_files():
    spec = datasets.SPECS["cifar10"]
    assert spec.mean == (0.4914, 0.4822, 0.4465) and spec.std == (0.2023, 0.1994, 0.2010)
    assert spec.layouts[0] == ("cifar-10-python.tar.gz",)
    tarball = spec.files["cifar-10-python.tar.gz"]
    assert (tarball.url, tarball.size) == (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", 170498071)


def test_configuration_and_loader_read_the_same_objects():
    assert set(configuration.DATASETS) == set(datasets.NAMES)
    for name, spec in datasets.SPECS.items():
        assert configuration.DATASETS[name][0] is spec.image_shape
    assert configuration.NORM_STATS is datasets.NORM_STATS is data.NORM_STATS
    assert configuration.LOCAL_DATASETS is datasets.LOCAL_NAMES
    assert datasets.LOCAL_NAMES == ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn",
                                    "tiny_imagenet")
    assert data.NAMES is datasets.NAMES and data.IMAGENET_SUBSETS is datasets.IMAGENET_SUBSETS
    assert data.DownloadError is sources.DownloadError and data.is_prepared is sources.is_prepared


def test_imports_no_jax_tfds_or_other_fred_jax_module():
    code = ("import sys, fred_jax.datasets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jax', 'numpy', 'tensorflow_datasets', 'fred_jax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['fred_jax', 'fred_jax.datasets']"


def test_spatial_dims_of_any_length_and_bad_rows_refused():
    volume = datasets.Spec((16, 16, 16, 1), 10, (0.0,), (1.0,), "tfds", tfds_name="x")
    assert volume.image_shape[:-1] == (16, 16, 16)
    with pytest.raises(ValueError, match="one value per channel"):
        datasets.Spec((32, 32, 3), 10, (0.5,), (0.5,), "tfds", tfds_name="x")
    with pytest.raises(ValueError, match="source must be one of"):
        datasets.Spec((32, 32, 3), 10, (0.5,) * 3, (0.5,) * 3, "ftp")
    with pytest.raises(ValueError, match="layouts"):
        datasets.Spec((28, 28, 1), 10, (0.5,), (0.5,), "local",
                      files={"a": datasets.File(None, 1, "0")}, layouts=(("b",),))
