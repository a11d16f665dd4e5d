"""Image datasets through tensorflow-datasets, normalised, with a per-class index.

`load(name)` returns a `Dataset` of channels-last float32 images normalised as in the official
DC/DM/MTT code ((x/255 - mean)/std, `norm_stats` says whose mean/std), int32 labels and,
optionally, ZCA whitening as in MTT (kornia `ZCAWhitening(eps=0.1)` fitted on the normalised
train split, applied to both splits).

Where the pixels come from
- `mnist`, `fashion_mnist`, `cifar10`, `cifar100`, `svhn` and `tiny_imagenet` are built once from
  their original files by the tfds builder `fred_local` (one builder config per dataset) into an
  array_record tfds dataset under `tfds_dir` (default: tfds's data dir, `$TFDS_DATA_DIR` or
  `~/tensorflow_datasets`). Every load reads that tfds data source, so the originals are needed
  only for the first build. The originals (`_FILES`, `_LAYOUTS`) come from:
  * `data_dir/<name>/` when a data dir is given (`data_dir=` or `$FRED_DATA_DIR`): offline, the
    files must be there; their size and sha256 are checked. CIFAR-10 there is either the
    original `cifar-10-python.tar.gz` or the lossless re-encoding `x_{train,test}.npy.xz` +
    `cifar10_labels.npz` (rows sorted by (label, original file name)); the tarball is brought
    into the same order, so both give identical arrays.
  * otherwise a download on first use with tfds's `DownloadManager` (size and sha256 checked,
    cached in `<tfds_dir>/downloads/fred_local/`, progress bars) from the canonical URLs, or from
    a mirror: `mirror=` or `$FRED_DATA_MIRROR`, a base URL laid out like a data dir
    (`<mirror>/<name>/<file>`, e.g. `python -m http.server` run in a data dir). A download that
    fails its checksum or loses its connection is removed and retried once; a failure raises
    `DownloadError` naming the URL, the file, its checksum and where to put it by hand. tfds
    moves a download into place only once it is complete and checked, and writes the built
    dataset to a temporary folder renamed at the end, so an interrupted run leaves nothing a
    later run would trust.
  Formats: MNIST/Fashion-MNIST idx `.gz`; CIFAR python-version tarballs (CIFAR-100: fine labels,
  original order); SVHN cropped `{train,test}_32x32.mat` (scipy.io; label 10 is digit 0);
  Tiny-ImageNet `tiny-imagenet-200.zip` (classes in sorted wnid order, `val` as test; only an
  md5 is published for it, checked after the download).
- The 128x128 ImageNet subsets of the paper (`IMAGENET_SUBSETS`: `imagenette`, `imagewoof`,
  `imagefruit`, `imageyellow`, `imagemeow`, `imagesquawk`) are ILSVRC-2012 classes by id, label =
  position in the official list (FreD `TM/utils.py` Config), from tfds `imagenet2012` (which
  needs the ImageNet tars in tfds's manual dir): train and the 50 val images per class as test.
  `imagenette_fastai` is the fast.ai Imagenette (tfds `imagenette/full-size-v2`, not the paper's
  data). Both are squashed to 128x128 as the official `Resize((128, 128))` does on tensors
  (`resize_bilinear`: bilinear, half-pixel centres, no antialiasing, aspect ratio not kept; its
  `CenterCrop(128)` is then a no-op). These read what is prepared in `tfds_dir` and let tfds
  download only with `download=True`.

Record layout of `fred_local` (measured, CIFAR-10 train, 50000 images, busy 2-core machine)
- one example per record, `Tensor(uint8)` default encoding (int64 lists): build 47 s, read 9.5 s;
- one example per record, `Encoding.BYTES`: build 6.5 s, read 9 s (per-example proto decode);
- `_CHUNK` examples per record, `Encoding.BYTES`: build 2.3 s, read 3 s.
So a record holds a chunk: features `image` uint8 `[n, H, W, C]` and `label` (a sequence of
`ClassLabel` with the class names), in the order described above, read back with one batched
`__getitems__`. Whole `load("cifar10")`: about 15 s of CPU time cold (7-8 s of it the xz decode of
the originals) and 2.3 s warm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import io
import lzma
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_CHUNK = 1000  # examples per array_record record of the local builder
_BUILDER = "fred_local"  # name of the local builder (and of its download folder)
_ZCA_REGULARIZATION = 0.1  # kornia ZCAWhitening(eps=0.1) in the MTT code

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

_MIRROR_ENV = "FRED_DATA_MIRROR"


class _File(NamedTuple):
    """One original file: canonical URL (None: not published, local only), size, checksum."""

    url: str | None
    size: int
    sha256: str | None
    md5: str | None = None  # only where no sha256 is published (Tiny-ImageNet)


_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the URL tfds uses
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"

# Sizes and sha256: MNIST, Fashion-MNIST and SVHN as in the checksum files tfds ships for its own
# builders (checked by tests/test_download.py); CIFAR python tarballs as published by keras and
# torchvision (md5 as on the CIFAR page); the CIFAR-10 re-encoding of ../shared/data; Tiny-ImageNet
# has only its published md5.
_FILES: dict[str, dict[str, _File]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": _File(
            _MNIST_URL + "train-images-idx3-ubyte.gz", 9912422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": _File(
            _MNIST_URL + "train-labels-idx1-ubyte.gz", 28881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": _File(
            _MNIST_URL + "t10k-images-idx3-ubyte.gz", 1648877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": _File(
            _MNIST_URL + "t10k-labels-idx1-ubyte.gz", 4542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": _File(
            _FASHION_URL + "train-images-idx3-ubyte.gz", 26421880,
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": _File(
            _FASHION_URL + "train-labels-idx1-ubyte.gz", 29515,
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": _File(
            _FASHION_URL + "t10k-images-idx3-ubyte.gz", 4422102,
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": _File(
            _FASHION_URL + "t10k-labels-idx1-ubyte.gz", 5148,
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
    "cifar10": {
        "cifar-10-python.tar.gz": _File(
            _CIFAR_URL + "cifar-10-python.tar.gz", 170498071,
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
        "x_train.npy.xz": _File(
            None, 101199252, "2d8eba4546ac66664cf2d1d7d29f76df4005eb9d2159ded08b30f3963393b658"),
        "x_test.npy.xz": _File(
            None, 20311132, "e52a2b21ad79cb101c85ea47e3a28ea83fcf1adf82702159e90a486f148b1c24"),
        "cifar10_labels.npz": _File(
            None, 257480, "8478936ca7375d21ee689b9882bc2508dbf76be0f6d4720074d1f099019c4b85"),
    },
    "cifar100": {
        "cifar-100-python.tar.gz": _File(
            _CIFAR_URL + "cifar-100-python.tar.gz", 169001437,
            "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
    },
    "svhn": {
        "train_32x32.mat": _File(
            _SVHN_URL + "train_32x32.mat", 182040794,
            "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8"),
        "test_32x32.mat": _File(
            _SVHN_URL + "test_32x32.mat", 64275384,
            "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b"),
    },
    "tiny_imagenet": {
        "tiny-imagenet-200.zip": _File(
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip", 248100043, None,
            md5="90528d7ca1a48142e341f4ef8d21d0de"),
    },
}

# Complete sets of original files a data dir may hold per dataset; the first is downloaded.
_LAYOUTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "mnist": (tuple(_MNIST_FILES.values()),),
    "fashion_mnist": (tuple(_MNIST_FILES.values()),),
    "cifar10": (("cifar-10-python.tar.gz",),
                ("x_train.npy.xz", "x_test.npy.xz", "cifar10_labels.npz")),
    "cifar100": (("cifar-100-python.tar.gz",),),
    "svhn": (("train_32x32.mat", "test_32x32.mat"),),
    "tiny_imagenet": (("tiny-imagenet-200.zip",),),
}

_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# ILSVRC-2012 class ids of the 128x128 subsets, in the label order of the official FreD/MTT code
# (FreD `TM/utils.py` Config).
IMAGENET_SUBSETS = {
    "imagenette": (0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
    "imagewoof": (193, 182, 258, 162, 155, 167, 159, 273, 207, 229),
    "imagefruit": (953, 954, 949, 950, 951, 957, 952, 945, 943, 948),
    "imageyellow": (309, 986, 954, 951, 987, 779, 599, 291, 72, 11),
    "imagemeow": (281, 282, 283, 284, 285, 291, 292, 290, 289, 287),
    "imagesquawk": (84, 130, 88, 144, 145, 22, 96, 9, 100, 89),
}


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static description of one named dataset."""

    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    local: bool  # built by FredLocal from the original files (data_dir or download)
    tfds_name: str | None = None  # standard tfds builder (name/config)
    splits: tuple[str, str] = ("train", "test")
    class_names: tuple[str, ...] | None = None  # None: taken from the tfds features


_DIGITS = tuple(str(i) for i in range(10))

_SPECS: dict[str, _Spec] = {
    "mnist": _Spec((28, 28, 1), (0.1307,), (0.3081,), 10, True, class_names=_DIGITS),
    "fashion_mnist": _Spec((28, 28, 1), (0.2861,), (0.3530,), 10, True,
                           class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "cifar10": _Spec((32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 10, True,
                     class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck")),
    "cifar100": _Spec((32, 32, 3), (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), 100, True,
                      class_names=_CIFAR100_CLASSES),
    "svhn": _Spec((32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 10, True,
                  class_names=_DIGITS),
    "tiny_imagenet": _Spec((64, 64, 3), _IMAGENET_MEAN, _IMAGENET_STD, 200, True),
    **{
        name: _Spec((128, 128, 3), _IMAGENET_MEAN, _IMAGENET_STD, 10, False,
                    tfds_name="imagenet2012", splits=("train", "validation"))
        for name in IMAGENET_SUBSETS
    },
    "imagenette_fastai": _Spec((128, 128, 3), _IMAGENET_MEAN, _IMAGENET_STD, 10, False,
                               tfds_name="imagenette/full-size-v2", splits=("train", "validation")),
}

NAMES = tuple(_SPECS)

NORM_STATS = ("dataset", "cifar10")
"""Whose mean/std `load` normalises with: the dataset's own, or CIFAR-10's (the official TM code
normalises CIFAR-100 with CIFAR-10's statistics, `TM/utils.py` get_dataset)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test image set, normalised channels-last float32.

    `zca` is the [D, D] whitening matrix (D = H*W*C, row-major over (H, W, C)) and `zca_mean`
    the [D] mean it centres with, when loaded with `zca=True`: whitened = (x - zca_mean) @ zca.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mean: np.ndarray
    std: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    zca: np.ndarray | None = None
    zca_mean: np.ndarray | None = None
    norm_stats: str = "dataset"  # whose mean/std normalised it (`load`'s argument)

    def class_index(self) -> ClassIndex:
        """Per-class index of the train split."""
        return class_index(self.y_train, self.num_classes)

    def take_per_class(self, n: int, seed: int = 0) -> Dataset:
        """The same dataset with `n` random train images per class (class-major order)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        rng = np.random.default_rng(seed)
        picks = []
        for c in range(self.num_classes):
            members = np.flatnonzero(self.y_train == c)
            if len(members) < n:
                raise ValueError(f"class {c} has {len(members)} train images, fewer than n={n}")
            picks.append(rng.choice(members, n, replace=False))
        idx = np.concatenate(picks)
        return dataclasses.replace(self, x_train=self.x_train[idx], y_train=self.y_train[idx])


class ClassIndex(NamedTuple):
    """Train indices per class: `indices[c, :counts[c]]` are the members of class c.

    Rows are padded to the largest class by repeating the class's own members, so every entry is
    a valid index of that class.
    """

    indices: jax.Array  # int32 [C, max_count]
    counts: jax.Array  # int32 [C]


def class_index(labels, num_classes: int) -> ClassIndex:
    """Builds the padded per-class index of `labels` (int [N] in [0, num_classes))."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    counts = np.array([len(m) for m in members], np.int32)
    if (counts == 0).any():
        raise ValueError(f"classes without examples: {np.flatnonzero(counts == 0).tolist()}")
    width = int(counts.max())
    indices = np.stack([np.resize(m, width) for m in members]).astype(np.int32)
    return ClassIndex(jnp.asarray(indices), jnp.asarray(counts))


@functools.partial(jax.jit, static_argnames="n")
def sample_per_class(key: jax.Array, index: ClassIndex, n: int) -> jax.Array:
    """int32 [C, n]: for each class, n distinct random members (with repeats only if n > count).

    Like the reference's `np.random.permutation(indices_class[c])[:n]`, as one jit-able top-k
    over random scores, valid entries always ranked above the padding.
    """
    width = index.indices.shape[1]
    if not 1 <= n <= width:
        raise ValueError(f"n must be in [1, {width}] (largest class), got {n}")
    scores = jax.random.uniform(key, index.indices.shape)
    valid = jnp.arange(width)[None, :] < index.counts[:, None]
    scores = jnp.where(valid, scores + 1.0, scores)
    _, pos = jax.lax.top_k(scores, n)
    return jnp.take_along_axis(index.indices, pos, axis=1)


def denormalise(x, mean, std) -> jax.Array:
    """Normalised channels-last images back to [0, 1] pixels (for pictures)."""
    return jnp.clip(jnp.asarray(x) * jnp.asarray(std) + jnp.asarray(mean), 0.0, 1.0)


def normalise(pixels: np.ndarray, mean, std) -> np.ndarray:
    """Channels-last pixels in [0, 255] (uint8, or float after a resize) -> float32
    (x/255 - mean)/std."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    x = pixels.astype(np.float32)
    x *= 1.0 / (255.0 * std)
    x -= mean / std
    return x


def zca_fit(x: np.ndarray,
            regularization: float = _ZCA_REGULARIZATION) -> tuple[np.ndarray, np.ndarray]:
    """ZCA whitening of `x [N, ...]` as kornia's `ZCAWhitening(eps=regularization)` fits it.

    Returns (mean [D], matrix [D, D]) with whitened = (x_flat - mean) @ matrix, where
    matrix = U diag(1/sqrt(S + regularization)) U^T from the unbiased covariance U S U^T.
    """
    flat = x.reshape(len(x), -1)
    if len(flat) < 2:
        raise ValueError("zca_fit needs at least 2 examples")
    mean = flat.mean(axis=0, dtype=np.float64)
    cov = np.zeros((flat.shape[1],) * 2, np.float64)
    for i in range(0, len(flat), 10000):
        block = flat[i:i + 10000] - mean.astype(np.float32)
        cov += block.T @ block
    cov /= len(flat) - 1
    s, u = np.linalg.eigh(cov)
    s = np.clip(s, 0.0, None)
    matrix = (u / np.sqrt(s + regularization)) @ u.T
    return mean.astype(np.float32), matrix.astype(np.float32)


def zca_apply(x: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Whitens `x [N, ...]` with a `zca_fit` result; same shape, float32."""
    flat = x.reshape(len(x), -1)
    out = np.empty(flat.shape, np.float32)
    for i in range(0, len(flat), 10000):
        out[i:i + 10000] = (flat[i:i + 10000] - mean) @ matrix
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------- local originals

class DownloadError(OSError):
    """An original file could not be downloaded; the message says where to put it by hand."""


def _data_root(data_dir: str | os.PathLike | None) -> Path | None:
    """The data dir of local originals: `data_dir`, else `$FRED_DATA_DIR`, else None."""
    root = data_dir if data_dir is not None else os.environ.get("FRED_DATA_DIR")
    return Path(root).expanduser().resolve() if root else None


def _mismatch(path: Path, expected: _File) -> str | None:
    """Why `path` is not the expected original file (size or checksum); None when it is."""
    size = path.stat().st_size
    if size != expected.size:
        return f"{size} bytes, expected {expected.size}"
    algorithm, digest = ("sha256", expected.sha256) if expected.sha256 else ("md5", expected.md5)
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    if h.hexdigest() != digest:
        return f"{algorithm} {h.hexdigest()}, expected {digest}"
    return None


def _local_sources(name: str, folder: Path) -> dict[str, Path]:
    """The first complete layout of original files in `folder`, checked.

    Raises FileNotFoundError naming the missing files, ValueError on a size or checksum mismatch.
    """
    layouts = _LAYOUTS[name]
    present = [sum((folder / f).is_file() for f in layout) for layout in layouts]
    complete = [layout for layout, n in zip(layouts, present) if n == len(layout)]
    if not complete:
        closest = layouts[int(np.argmax(present))]
        missing = [str(folder / f) for f in closest if not (folder / f).is_file()]
        raise FileNotFoundError(
            f"{name}: missing original files {missing}; expected in {folder}: "
            + " or ".join(str(sorted(layout)) for layout in layouts))
    paths = {f: folder / f for f in complete[0]}
    for fname, path in paths.items():
        why = _mismatch(path, _FILES[name][fname])
        if why:
            raise ValueError(f"{name}: checksum mismatch for {path}: {why}")
    return paths


def _download_error(name: str, fname: str, url: str, cause: str) -> DownloadError:
    expected = _FILES[name][fname]
    checksum = f"sha256 {expected.sha256}" if expected.sha256 else f"md5 {expected.md5}"
    layout = _LAYOUTS[name][0]
    return DownloadError(
        f"{name}: could not download {url} ({cause}). Expected file {fname!r}: "
        f"{expected.size} bytes, {checksum}. To go on without the network, put "
        f"{' '.join(layout)} by hand into <folder>/{name}/ and set FRED_DATA_DIR=<folder> "
        f"(or config.data_dir); or set {_MIRROR_ENV} to a base URL that serves {name}/{fname}.")


def _fetch(name: str, fname: str, mirror: str | None, download_dir: Path) -> Path:
    """Downloads one original file with tfds's DownloadManager (checksum-checked, cached).

    A download that fails its checksum or loses its connection is removed and tried once more;
    tfds's unfinished `*.tmp.*` folders of a failed attempt are removed too.
    """
    import requests
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    expected = _FILES[name][fname]
    url = f"{mirror.rstrip('/')}/{name}/{fname}" if mirror else expected.url
    url_infos = {} if expected.sha256 is None else {url: tfds.download.checksums.UrlInfo(
        size=tfds.core.utils.Size(expected.size), checksum=expected.sha256, filename=fname)}
    folder = download_dir / _BUILDER
    cached = folder / tfds.download.resource.get_dl_fname(url, expected.sha256)
    if not cached.exists():
        try:  # fail fast when unreachable (tfds's own retries back off for minutes)
            requests.head(url, timeout=30, allow_redirects=True).close()
        except (requests.ConnectionError, requests.Timeout) as e:
            raise _download_error(name, fname, url, f"unreachable: {type(e).__name__}") from e
    for _ in range(2):
        before = set(folder.glob("*.tmp.*")) if folder.is_dir() else set()
        manager = tfds.download.DownloadManager(
            download_dir=download_dir, url_infos=url_infos, dataset_name=_BUILDER)
        try:
            path = Path(manager.download(url))
            why = None if expected.sha256 else _mismatch(path, expected)
            if why is None:
                return path
            for stale in (path, path.with_name(path.name + ".INFO")):
                stale.unlink(missing_ok=True)
            cause = f"downloaded file has {why}; removed"
        except NonMatchingChecksumError:
            cause = "checksum mismatch; download removed"
        except requests.exceptions.ChunkedEncodingError as e:
            cause = f"connection dropped: {e}"
        except (tfds.download.DownloadError, requests.RequestException) as e:
            _remove_new(folder, before)
            raise _download_error(name, fname, url, str(e)) from e
        except BaseException:
            _remove_new(folder, before)
            raise
        _remove_new(folder, before)
    raise _download_error(name, fname, url, f"{cause}, twice")


def _remove_new(folder: Path, before: set[Path]) -> None:
    """Removes the tfds temporary download folders that appeared since `before`."""
    import shutil

    if folder.is_dir():
        for tmp in set(folder.glob("*.tmp.*")) - before:
            shutil.rmtree(tmp, ignore_errors=True)


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST format), gzip-compressed."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not a uint8 idx file (magic {magic:#x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_cifar_tarball(path: Path, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 [N, 32, 32, 3], labels)} from a CIFAR python-version tarball.

    CIFAR-10 rows are sorted by (label, original file name), the order of the lossless
    re-encoding `x_*.npy.xz` (whose source lost the batch order), so both layouts give identical
    arrays; CIFAR-100 keeps the file order (torchvision's) with the fine labels.
    """
    import pickle

    import tensorflow_datasets as tfds

    if name == "cifar10":
        members = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key, meta, names_key = b"labels", "batches.meta", b"label_names"
    else:
        members = {"train": ["train"], "test": ["test"]}
        label_key, meta, names_key = b"fine_labels", "meta", b"fine_label_names"
    wanted = {m for ms in members.values() for m in ms} | {meta}
    batches = {}
    # The file passed its checksum (or is a local original the user put there), so its
    # pickles are the published ones.
    with open(path, "rb") as f:  # an open file: tfds would open a path with tf.io.gfile
        for member, fobj in tfds.download.iter_archive(f, tfds.download.ExtractMethod.TAR_STREAM):
            if os.path.basename(member) in wanted:
                batches[os.path.basename(member)] = pickle.load(fobj, encoding="bytes")
    if set(batches) != wanted:
        raise ValueError(f"{path}: members {sorted(wanted - set(batches))} not found")
    class_names = tuple(n.decode() for n in batches[meta][names_key])
    if class_names != _SPECS[name].class_names:
        raise ValueError(f"{path}: class names {class_names} differ from {name}'s")
    out = {}
    for split, ms in members.items():
        x = np.concatenate([np.asarray(batches[m][b"data"], np.uint8) for m in ms])
        x = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([np.asarray(batches[m][label_key], np.int64) for m in ms])
        if name == "cifar10":
            files = [f for m in ms for f in batches[m][b"filenames"]]
            order = sorted(range(len(y)), key=lambda i: (y[i], files[i]))
            x, y = x[order], y[order]
        out[split] = (np.ascontiguousarray(x), y)
    return out


def _read_svhn(paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SVHN cropped `.mat` files: X uint8 [32, 32, 3, N], y in 1..10 (10 is the digit 0)."""
    from scipy import io as sio

    out = {}
    for split in ("train", "test"):
        mat = sio.loadmat(paths[f"{split}_32x32.mat"])
        x = np.ascontiguousarray(np.asarray(mat["X"], np.uint8).transpose(3, 0, 1, 2))
        out[split] = (x, np.asarray(mat["y"], np.int64).reshape(-1) % 10)
    return out


def _read_originals(name: str, paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 [N, H, W, C], int labels [N])} from one layout of original files."""
    if name in ("mnist", "fashion_mnist"):
        f = {k: paths[v] for k, v in _MNIST_FILES.items()}
        return {s: (_read_idx(f[f"{s}_images"])[..., None], _read_idx(f[f"{s}_labels"]))
                for s in ("train", "test")}
    if name in ("cifar10", "cifar100") and _LAYOUTS[name][0][0] in paths:  # the tarball
        return _read_cifar_tarball(paths[_LAYOUTS[name][0][0]], name)
    if name == "cifar10":
        labels = np.load(paths["cifar10_labels.npz"])
        out = {}
        for s in ("train", "test"):
            with lzma.open(paths[f"x_{s}.npy.xz"]) as fx:
                out[s] = (np.load(fx), labels[f"y_{s}"])
        return out
    if name == "svhn":
        return _read_svhn(paths)
    if name == "tiny_imagenet":
        return _read_tiny_imagenet(paths["tiny-imagenet-200.zip"])
    raise ValueError(f"no local reader for {name}")


def _read_tiny_imagenet(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and val splits of the official zip; classes in sorted wnid order (ImageFolder)."""
    from PIL import Image

    def decode(zf: zipfile.ZipFile, member: str) -> np.ndarray:
        with Image.open(io.BytesIO(zf.read(member))) as im:
            return np.asarray(im.convert("RGB"))

    with zipfile.ZipFile(path) as zf:
        wnids = sorted(zf.read("tiny-imagenet-200/wnids.txt").decode().split())
        label_of = {w: i for i, w in enumerate(wnids)}
        train = sorted(m for m in zf.namelist()
                       if m.startswith("tiny-imagenet-200/train/") and m.endswith(".JPEG"))
        val_labels = {}
        for line in zf.read("tiny-imagenet-200/val/val_annotations.txt").decode().splitlines():
            fields = line.split("\t")
            val_labels[f"tiny-imagenet-200/val/images/{fields[0]}"] = label_of[fields[1]]
        val = sorted(val_labels)
        return {
            "train": (np.stack([decode(zf, m) for m in train]),
                      np.array([label_of[m.split("/")[2]] for m in train])),
            "test": (np.stack([decode(zf, m) for m in val]),
                     np.array([val_labels[m] for m in val])),
        }


@functools.cache
def _local_builder_cls():
    """The tfds builder class for the local originals (defined lazily: importing tfds is slow)."""
    import tensorflow_datasets as tfds

    class FredLocal(tfds.core.GeneratorBasedBuilder):
        """Datasets built from their original files (data dir or download), in chunks."""

        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n) for n, s in _SPECS.items() if s.local]

        # Set before building (prepared data needs neither): checked local originals, or None
        # to download them (from `mirror` when set) into tfds's download dir.
        sources: dict[str, Path] | None = None
        mirror: str | None = None
        # No checksums file: `_fetch` hands the checksums of `_FILES` to its DownloadManager.
        # (Also avoids tfds 4.9.10's code_path lookup, which imports the `importlib_resources`
        # backport for builders defined inside a package.)
        code_path = None

        def _info(self):
            name = self.builder_config.name
            spec = _SPECS[name]
            names = spec.class_names or tuple(str(i) for i in range(spec.num_classes))
            features = tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(None, *spec.image_shape), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.Sequence(tfds.features.ClassLabel(names=names)),
            })
            return tfds.core.DatasetInfo(
                builder=self, features=features, disable_shuffling=True,
                description=f"{name}: up to {_CHUNK} examples per record (fred_jax.data order).",
                metadata=tfds.core.MetadataDict(checksums={
                    f: e.sha256 or f"md5:{e.md5}" for f, e in _FILES[name].items()}))

        def _split_generators(self, dl_manager):
            name = self.builder_config.name
            sources = self.sources or {
                f: _fetch(name, f, self.mirror, Path(dl_manager.download_dir))
                for f in _LAYOUTS[name][0]}
            splits = _read_originals(name, sources)
            return {s: self._generate_examples(*xy) for s, xy in splits.items()}

        def _generate_examples(self, x, y) -> Iterator:
            for i in range(0, len(x), _CHUNK):
                yield i, {"image": x[i:i + _CHUNK], "label": y[i:i + _CHUNK].astype(np.int64)}

    return FredLocal


def _read_local(name: str, data_dir, tfds_dir, mirror) -> tuple[tuple[str, ...], dict]:
    builder = _local_builder_cls()(config=name, data_dir=tfds_dir, file_format="array_record")
    if not builder.is_prepared():
        root = _data_root(data_dir)
        if root is not None:
            builder.sources = _local_sources(name, root / name)
        builder.mirror = mirror if mirror is not None else os.environ.get(_MIRROR_ENV) or None
        builder.download_and_prepare()
    out = {}
    with _damaged_cache_says_where(name, builder):
        for split in ("train", "test"):
            source = builder.as_data_source(split)
            records = source.__getitems__(list(range(len(source))))
            out[split] = (np.concatenate([r["image"] for r in records]),
                          np.concatenate([r["label"] for r in records]))
    return tuple(builder.info.features["label"].feature.names), out


@contextlib.contextmanager
def _damaged_cache_says_where(name: str, builder) -> Iterator[None]:
    """A prepared copy that fails to read (a truncated or corrupted array_record file: Riegeli
    hash errors and the like) becomes one message naming the folder to delete."""
    try:
        yield
    except Exception as e:
        raise ValueError(f"{name}: the prepared copy in {builder.data_dir} is damaged "
                         f"({' '.join(str(e).split())[:200]}); delete that folder to rebuild "
                         f"it") from e


def is_prepared(name: str, tfds_dir: str | os.PathLike | None = None) -> bool:
    """Whether `name` is already built in the tfds data dir (then no original file is read)."""
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    tfds_dir = None if tfds_dir is None else os.fspath(tfds_dir)
    if _SPECS[name].local:
        builder = _local_builder_cls()(config=name, data_dir=tfds_dir, file_format="array_record")
    else:
        import tensorflow_datasets as tfds

        builder = tfds.builder(_SPECS[name].tfds_name, data_dir=tfds_dir,
                               file_format="array_record")
    return bool(builder.is_prepared())


# ----------------------------------------------------------------------------- standard tfds

def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] interpolation matrix of torch's bilinear resize along one axis
    (align_corners=False: source = (i + 0.5) * n_in / n_out - 0.5, clamped at 0; no antialias)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), hi), frac)
    return weights


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Channels-last `image [H, W, C]` resized to `size` (h, w) -> float32, as torchvision's
    `Resize(size)` on a float tensor (F.interpolate bilinear, align_corners=False, no antialias).

    The official TM code applies it after ToTensor+Normalize; the weights of each output pixel
    sum to 1, so resizing pixels first and normalising after gives the same values.
    """
    rows = _bilinear_weights(image.shape[0], size[0]).astype(np.float32)
    cols = _bilinear_weights(image.shape[1], size[1]).astype(np.float32)
    return np.einsum("ih,hwc,jw->ijc", rows, image.astype(np.float32), cols, optimize=True)


def _read_tfds(name: str, tfds_dir, download: bool) -> tuple[tuple[str, ...], dict]:
    import tensorflow_datasets as tfds

    spec = _SPECS[name]
    builder = tfds.builder(spec.tfds_name, data_dir=tfds_dir, file_format="array_record")
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"{name}: tfds dataset {spec.tfds_name!r} is not prepared in {builder.data_dir}; "
                f"pass download=True to let tfds fetch and prepare it"
                + (" (imagenet2012 needs the ImageNet tars in tfds's manual_dir)"
                   if spec.tfds_name == "imagenet2012" else ""))
        builder.download_and_prepare()
    wanted = IMAGENET_SUBSETS[name] if spec.tfds_name == "imagenet2012" else None
    remap = None if wanted is None else {c: i for i, c in enumerate(wanted)}
    with _damaged_cache_says_where(name, builder):
        out = _read_tfds_splits(builder, spec, remap, tfds)
    if remap is None:
        names = tuple(builder.info.features["label"].names)
    else:
        all_names = builder.info.features["label"].names
        names = tuple(all_names[c] for c in wanted)
    return names, out


def _read_tfds_splits(builder, spec, remap, tfds) -> dict:
    """Train and test arrays of a prepared standard tfds dataset (subset classes remapped,
    images squashed to the spec's size)."""
    res = spec.image_shape[0]
    image_feature = builder.info.features["image"]
    out = {}
    for split, key in zip(spec.splits, ("train", "test")):
        source = builder.as_data_source(
            split, decoders={"image": tfds.decode.SkipDecoding()} if remap is not None else None)
        xs, ys = [], []
        for start in range(0, len(source), 4096):
            for r in source.__getitems__(list(range(start, min(start + 4096, len(source))))):
                label = int(r["label"])
                if remap is not None:
                    if label not in remap:
                        continue
                    label = remap[label]
                image = r["image"]
                if isinstance(image, bytes):
                    image = image_feature.decode_example_np(image)
                xs.append(resize_bilinear(image, (res, res)))
                ys.append(label)
        out[key] = (np.stack(xs), np.array(ys))
    return out


# ----------------------------------------------------------------------------- entry point

def load(name: str, *, data_dir: str | os.PathLike | None = None, zca: bool = False,
         tfds_dir: str | os.PathLike | None = None, download: bool = False,
         mirror: str | None = None, norm_stats: str = "dataset") -> Dataset:
    """Loads a named dataset as normalised float32 `[N, H, W, C]` arrays through tfds.

    Args:
      name: one of `NAMES`.
      data_dir: folder holding `<name>/` with the original files; default `$FRED_DATA_DIR`.
        Given, the originals are read from there (offline); unset, they are downloaded. Only
        used the first time a dataset is built into `tfds_dir`.
      zca: whiten train and test with ZCA fitted on the normalised train split (MTT).
      tfds_dir: tfds data dir for the prepared datasets and downloads; default tfds's own.
      download: allow tfds to download and prepare the standard tfds datasets (the ImageNet
        subsets); the original files of the others are always downloaded when needed.
      mirror: base URL serving `<name>/<file>` instead of the canonical URLs; default
        `$FRED_DATA_MIRROR`.
      norm_stats: one of `NORM_STATS`: "dataset" normalises with the dataset's own mean/std,
        "cifar10" with CIFAR-10's (what the official TM code does for CIFAR-100).
    """
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    if norm_stats not in NORM_STATS:
        raise ValueError(f"norm_stats must be one of {NORM_STATS}, got {norm_stats!r}")
    spec = _SPECS[name]
    stats = spec if norm_stats == "dataset" else _SPECS[norm_stats]
    if len(stats.mean) != spec.image_shape[-1]:
        raise ValueError(f"norm_stats={norm_stats!r} has {len(stats.mean)} channels, {name} has "
                         f"{spec.image_shape[-1]}")
    tfds_dir = None if tfds_dir is None else os.fspath(tfds_dir)
    if spec.local:
        class_names, splits = _read_local(name, data_dir, tfds_dir, mirror)
    else:
        class_names, splits = _read_tfds(name, tfds_dir, download)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    for split, x in (("train", x_train), ("test", x_test)):
        if x.shape[1:] != spec.image_shape:
            raise ValueError(f"{name} {split}: images {x.shape[1:]}, expected {spec.image_shape}")
    mean = np.asarray(stats.mean, np.float32)
    std = np.asarray(stats.std, np.float32)
    x_train, x_test = normalise(x_train, mean, std), normalise(x_test, mean, std)
    zca_mean = zca_matrix = None
    if zca:
        zca_mean, zca_matrix = zca_fit(x_train)
        x_train = zca_apply(x_train, zca_mean, zca_matrix)
        x_test = zca_apply(x_test, zca_mean, zca_matrix)
    return Dataset(
        name=name, num_classes=spec.num_classes, class_names=tuple(class_names),
        image_shape=spec.image_shape, mean=mean, std=std,
        x_train=x_train, y_train=y_train.astype(np.int32),
        x_test=x_test, y_test=y_test.astype(np.int32),
        zca=zca_matrix, zca_mean=zca_mean, norm_stats=norm_stats)
