"""Image datasets through tensorflow-datasets, normalised, with a per-class index.

`load(name)` returns a `Dataset` of channels-last float32 images normalised as in the official
DC/DM/MTT code ((x/255 - mean)/std), int32 labels and, optionally, ZCA whitening as in MTT
(kornia `ZCAWhitening(eps=0.1)` fitted on the normalised train split, applied to both splits).

Where the pixels come from
- `mnist`, `fashion_mnist`, `cifar10` work offline. The original files (layouts of
  `../shared/data`, see its README) are read from `data_dir`, default `$FRED_DATA_DIR`, and built
  once by the tfds builder `fred_local` (one builder config per dataset) into an array_record
  tfds dataset under `tfds_dir` (default: tfds's data dir, `$TFDS_DATA_DIR` or
  `~/tensorflow_datasets`). Every load reads that tfds data source. The sha256 of the originals
  is checked only when building, so later loads skip the hashing (and need no originals).
- `tiny_imagenet` is not in the tfds catalogue: `fred_local` builds it from the official
  `tiny-imagenet-200.zip` in `<data_dir>/tiny_imagenet/` (classes in sorted wnid order, the
  `val` split as test; no published checksum, so only its presence is checked).
- `cifar100`, `svhn` (tfds `svhn_cropped`) and `imagenette` (tfds `imagenette/full-size-v2`, the
  fast.ai subset, whose sorted labels equal the reference's class order) use standard tfds
  builders. `imagewoof`, `imagefruit`, `imageyellow`, `imagemeow`, `imagesquawk` are the ImageNet
  class ids of the official FreD/MTT code (`IMAGENET_SUBSETS`, label = position in that list)
  taken from tfds `imagenet2012`, which needs the ImageNet tars in tfds's manual dir. These read
  what is prepared in `tfds_dir` and let tfds download only with `download=True`. The 128x128
  subsets are resized (shorter side 128, bilinear) and centre-cropped like the reference's
  torchvision transforms.

Record layout of `fred_local` (measured, CIFAR-10 train, 50000 images, busy 2-core machine)
- one example per record, `Tensor(uint8)` default encoding (int64 lists): build 47 s, read 9.5 s;
- one example per record, `Encoding.BYTES`: build 6.5 s, read 9 s (per-example proto decode);
- `_CHUNK` examples per record, `Encoding.BYTES`: build 2.3 s, read 3 s.
So a record holds a chunk: features `image` uint8 `[n, H, W, C]` and `label` (a sequence of
`ClassLabel` with the class names), in the original order, read back with one batched
`__getitems__`. Whole `load("cifar10")`: about 15 s of CPU time cold (7-8 s of it the xz decode of
the originals) and 2.3 s warm.
"""

from __future__ import annotations

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
_ZCA_REGULARIZATION = 0.1  # kornia ZCAWhitening(eps=0.1) in the MTT code

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# sha256 of the original files (../shared/data/README.md). None: no published sha256 known, the
# file is only required to exist.
_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "cifar10": {
        "x_train.npy.xz": "2d8eba4546ac66664cf2d1d7d29f76df4005eb9d2159ded08b30f3963393b658",
        "x_test.npy.xz": "e52a2b21ad79cb101c85ea47e3a28ea83fcf1adf82702159e90a486f148b1c24",
        "cifar10_labels.npz": "8478936ca7375d21ee689b9882bc2508dbf76be0f6d4720074d1f099019c4b85",
    },
    "tiny_imagenet": {"tiny-imagenet-200.zip": None},
}

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# ImageNet class ids of the 128x128 subsets, in the label order of the official FreD/MTT code.
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
    local: bool  # built by FredLocal from original files in data_dir
    tfds_name: str | None = None  # standard tfds builder (name/config)
    splits: tuple[str, str] = ("train", "test")
    class_names: tuple[str, ...] | None = None  # None: taken from the tfds features


_SPECS: dict[str, _Spec] = {
    "mnist": _Spec((28, 28, 1), (0.1307,), (0.3081,), 10, True,
                   class_names=tuple(str(i) for i in range(10))),
    "fashion_mnist": _Spec((28, 28, 1), (0.2861,), (0.3530,), 10, True,
                           class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "cifar10": _Spec((32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 10, True,
                     class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck")),
    "cifar100": _Spec((32, 32, 3), (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), 100, False,
                      tfds_name="cifar100"),
    "svhn": _Spec((32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 10, False,
                  tfds_name="svhn_cropped"),
    "tiny_imagenet": _Spec((64, 64, 3), _IMAGENET_MEAN, _IMAGENET_STD, 200, True),
    "imagenette": _Spec((128, 128, 3), _IMAGENET_MEAN, _IMAGENET_STD, 10, False,
                        tfds_name="imagenette/full-size-v2", splits=("train", "validation")),
    **{
        name: _Spec((128, 128, 3), _IMAGENET_MEAN, _IMAGENET_STD, 10, False,
                    tfds_name="imagenet2012", splits=("train", "validation"))
        for name in IMAGENET_SUBSETS if name != "imagenette"
    },
}

NAMES = tuple(_SPECS)


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
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
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


def normalise(x_uint8: np.ndarray, mean, std) -> np.ndarray:
    """uint8 channels-last pixels -> float32 (x/255 - mean)/std."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    x = x_uint8.astype(np.float32)
    x *= 1.0 / (255.0 * std)
    x -= mean / std
    return x


def zca_fit(x: np.ndarray, regularization: float = _ZCA_REGULARIZATION) -> tuple[np.ndarray, np.ndarray]:
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

def _source_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    root = data_dir if data_dir is not None else os.environ.get("FRED_DATA_DIR")
    if not root:
        raise FileNotFoundError(
            f"{name}: no data directory: pass data_dir=... or set FRED_DATA_DIR to the folder "
            f"that holds {name}/ with {sorted(_SHA256[name])}")
    return Path(root).expanduser().resolve() / name


def _check_sources(name: str, folder: Path) -> None:
    """Raises FileNotFoundError naming the missing files, ValueError on a checksum mismatch."""
    expected = _SHA256[name]
    missing = [folder / f for f in expected if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{name}: missing original files {[str(p) for p in missing]}; expected in {folder}: "
            f"{sorted(expected)} (layout of ../shared/data/README.md)")
    for fname, digest in expected.items():
        if digest is None:
            continue
        h = hashlib.sha256()
        with open(folder / fname, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        if h.hexdigest() != digest:
            raise ValueError(
                f"{name}: checksum mismatch for {folder / fname}: sha256 {h.hexdigest()}, "
                f"expected {digest}")


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


def _read_originals(name: str, folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 [N, H, W, C], int labels [N])} from the original files."""
    if name in ("mnist", "fashion_mnist"):
        f = {k: folder / v for k, v in _MNIST_FILES.items()}
        return {s: (_read_idx(f[f"{s}_images"])[..., None], _read_idx(f[f"{s}_labels"]))
                for s in ("train", "test")}
    if name == "cifar10":
        labels = np.load(folder / "cifar10_labels.npz")
        out = {}
        for s in ("train", "test"):
            with lzma.open(folder / f"x_{s}.npy.xz") as fx:
                out[s] = (np.load(fx), labels[f"y_{s}"])
        return out
    if name == "tiny_imagenet":
        return _read_tiny_imagenet(folder / "tiny-imagenet-200.zip")
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
        """Original files of MNIST, Fashion-MNIST, CIFAR-10 and Tiny-ImageNet, in chunks."""

        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n) for n, s in _SPECS.items() if s.local]

        source_dir: Path | None = None  # set before building; prepared data needs none
        # No download checksums file. (Also avoids tfds 4.9.10's code_path lookup, which
        # imports the `importlib_resources` backport for builders defined inside a package.)
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
                description=f"{name}: up to {_CHUNK} examples per record, original order.",
                metadata=tfds.core.MetadataDict(sha256=_SHA256[name]))

        def _split_generators(self, dl_manager):
            splits = _read_originals(self.builder_config.name, self.source_dir)
            return {s: self._generate_examples(*xy) for s, xy in splits.items()}

        def _generate_examples(self, x, y) -> Iterator:
            for i in range(0, len(x), _CHUNK):
                yield i, {"image": x[i:i + _CHUNK], "label": y[i:i + _CHUNK].astype(np.int64)}

    return FredLocal


def _read_local(name: str, data_dir, tfds_dir) -> tuple[tuple[str, ...], dict]:
    builder = _local_builder_cls()(config=name, data_dir=tfds_dir, file_format="array_record")
    if not builder.is_prepared():
        builder.source_dir = _source_dir(name, data_dir)
        _check_sources(name, builder.source_dir)
        builder.download_and_prepare()
    out = {}
    for split in ("train", "test"):
        source = builder.as_data_source(split)
        records = source.__getitems__(list(range(len(source))))
        out[split] = (np.concatenate([r["image"] for r in records]),
                      np.concatenate([r["label"] for r in records]))
    return tuple(builder.info.features["label"].feature.names), out


# ----------------------------------------------------------------------------- standard tfds

def _resize_center_crop(image: np.ndarray, res: int) -> np.ndarray:
    """torchvision `Resize(res)` (shorter side to res, bilinear) then `CenterCrop(res)`."""
    from PIL import Image

    h, w = image.shape[:2]
    if h <= w:
        size = (int(res * w / h), res)
    else:
        size = (res, int(res * h / w))
    im = Image.fromarray(image).convert("RGB").resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - res) / 2.0)), int(round((size[1] - res) / 2.0))
    return np.asarray(im.crop((left, top, left + res, top + res)))


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
                if image.shape[:2] != (res, res):
                    image = _resize_center_crop(image, res)
                xs.append(image)
                ys.append(label)
        out[key] = (np.stack(xs), np.array(ys))
    if remap is None:
        names = tuple(builder.info.features["label"].names)
    else:
        all_names = builder.info.features["label"].names
        names = tuple(all_names[c] for c in wanted)
    return names, out


# ----------------------------------------------------------------------------- entry point

def load(name: str, *, data_dir: str | os.PathLike | None = None, zca: bool = False,
         tfds_dir: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """Loads a named dataset as normalised float32 `[N, H, W, C]` arrays through tfds.

    Args:
      name: one of `NAMES`.
      data_dir: folder holding `<name>/` with the original files (offline datasets); default
        `$FRED_DATA_DIR`. Only read the first time a dataset is built into `tfds_dir`.
      zca: whiten train and test with ZCA fitted on the normalised train split (MTT).
      tfds_dir: tfds data dir for the prepared datasets; default tfds's own.
      download: allow tfds to download and prepare the non-local datasets.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    spec = _SPECS[name]
    tfds_dir = None if tfds_dir is None else os.fspath(tfds_dir)
    if spec.local:
        class_names, splits = _read_local(name, data_dir, tfds_dir)
    else:
        class_names, splits = _read_tfds(name, tfds_dir, download)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    for split, x in (("train", x_train), ("test", x_test)):
        if x.shape[1:] != spec.image_shape:
            raise ValueError(f"{name} {split}: images {x.shape[1:]}, expected {spec.image_shape}")
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
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
        zca=zca_matrix, zca_mean=zca_mean)
