"""Image datasets, normalised, with a per-class index.

`load(name)` returns a `Dataset` of channels-last float32 images normalised as in the official
DC/DM/MTT code ((x/255 - mean)/std, `norm_stats` says whose mean/std), int32 labels and,
optionally, ZCA whitening as in MTT (kornia `ZCAWhitening(eps=0.1)` fitted on the normalised
train split, applied to both splits).

What is known about each name (shape, classes, statistics, original files) is the table of
`fred_jax.datasets`. Where the pixels come from:
- the `local` datasets (`mnist`, `fashion_mnist`, `cifar10`, `cifar100`, `svhn`,
  `tiny_imagenet`): their original files, from a data dir (`data_dir=` or `$FRED_DATA_DIR`) or
  downloaded (`mirror=` or `$FRED_DATA_MIRROR`), built once into tfds; see `fred_jax.sources`.
- The 128x128 ImageNet subsets of the paper (`IMAGENET_SUBSETS`: `imagenette`, `imagewoof`,
  `imagefruit`, `imageyellow`, `imagemeow`, `imagesquawk`) are ILSVRC-2012 classes by id, label =
  position in the official list (FreD `TM/utils.py` Config), from tfds `imagenet2012` (which
  needs the ImageNet tars in tfds's manual dir): train and the 50 val images per class as test.
  `imagenette_fastai` is the fast.ai Imagenette (tfds `imagenette/full-size-v2`, not the paper's
  data). Both are squashed to 128x128 as the official `Resize((128, 128))` does on tensors
  (`resize_bilinear`: bilinear, half-pixel centres, no antialiasing, aspect ratio not kept; its
  `CenterCrop(128)` is then a no-op). These read what is prepared in `tfds_dir` and let tfds
  download only with `download=True`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# NAMES, NORM_STATS, IMAGENET_SUBSETS, DownloadError and is_prepared are also read from here.
from fred_jax.datasets import IMAGENET_SUBSETS, NAMES, NORM_STATS, SPECS
from fred_jax.sources import DownloadError, damaged_cache_says_where, is_prepared, read_local

_ZCA_REGULARIZATION = 0.1  # kornia ZCAWhitening(eps=0.1) in the MTT code


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test image set, normalised channels-last float32.

    `zca` is the [D, D] whitening matrix (D = H*W*C, row-major over (H, W, C)) and `zca_mean`
    the [D] mean it centres with, when loaded with `zca=True`: whitened = (x - zca_mean) @ zca.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]
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

    def _random_per_class(self, n: int, seed: int, keep_some: bool = False) -> np.ndarray:
        """Train indices of `n` random images of every class, class-major (NumPy `seed`);
        `keep_some`: each class must also keep at least one image beside them."""
        rng = np.random.default_rng(seed)
        picks = []
        for c in range(self.num_classes):
            members = np.flatnonzero(self.y_train == c)
            if len(members) < n + keep_some:
                raise ValueError(
                    f"class {c} has {len(members)} train images; holding out {n} would leave "
                    f"none to distil from" if keep_some else
                    f"class {c} has {len(members)} train images, fewer than n={n}")
            picks.append(rng.choice(members, n, replace=False))
        return np.concatenate(picks)

    def take_per_class(self, n: int, seed: int = 0) -> Dataset:
        """The same dataset with `n` random train images per class (class-major order)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        idx = self._random_per_class(n, seed)
        return dataclasses.replace(self, x_train=self.x_train[idx], y_train=self.y_train[idx])

    def split_validation(self, per_class: int, seed: int = 0
                         ) -> tuple[Dataset, tuple[np.ndarray, np.ndarray]]:
        """`(rest, (x_val, y_val))`: `per_class` random train images of every class held out
        (class-major), and the dataset without them (train order otherwise kept). Model
        selection on the held-out images leaves the test set for the final number only."""
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        idx = self._random_per_class(per_class, seed, keep_some=True)
        keep = np.ones(len(self.y_train), bool)
        keep[idx] = False
        rest = dataclasses.replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep])
        return rest, (self.x_train[idx], self.y_train[idx])


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


# ----------------------------------------------------------------------------- standard tfds

def bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
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
    rows = bilinear_weights(image.shape[0], size[0]).astype(np.float32)
    cols = bilinear_weights(image.shape[1], size[1]).astype(np.float32)
    return np.einsum("ih,hwc,jw->ijc", rows, image.astype(np.float32), cols, optimize=True)


def _read_tfds(name: str, tfds_dir, download: bool) -> tuple[tuple[str, ...], dict]:
    import tensorflow_datasets as tfds

    spec = SPECS[name]
    builder = tfds.builder(spec.tfds_name, data_dir=tfds_dir, file_format="array_record")
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"{name}: tfds dataset {spec.tfds_name!r} is not prepared in {builder.data_dir}; "
                f"pass download=True to let tfds fetch and prepare it"
                + (" (imagenet2012 needs the ImageNet tars in tfds's manual_dir)"
                   if spec.tfds_name == "imagenet2012" else ""))
        builder.download_and_prepare()
    wanted = IMAGENET_SUBSETS[name] if spec.source == "imagenet_subset" else None
    remap = None if wanted is None else {c: i for i, c in enumerate(wanted)}
    with damaged_cache_says_where(name, builder):
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
      mirror: base URL (http://, https:// or file:///<folder>) serving `<name>/<file>`
        instead of the canonical URLs; default `$FRED_DATA_MIRROR`.
      norm_stats: one of `NORM_STATS`: "dataset" normalises with the dataset's own mean/std,
        "cifar10" with CIFAR-10's (what the official TM code does for CIFAR-100).
    """
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    if norm_stats not in NORM_STATS:
        raise ValueError(f"norm_stats must be one of {NORM_STATS}, got {norm_stats!r}")
    spec = SPECS[name]
    stats = spec if norm_stats == "dataset" else SPECS[norm_stats]
    if len(stats.mean) != spec.image_shape[-1]:
        raise ValueError(f"norm_stats={norm_stats!r} has {len(stats.mean)} channels, {name} has "
                         f"{spec.image_shape[-1]}")
    tfds_dir = None if tfds_dir is None else os.fspath(tfds_dir)
    if spec.source == "mnist3d":
        from fred_jax import mnist3d, sources

        splits = mnist3d.read_h5(mnist3d.locate(name, sources.data_root(data_dir), tfds_dir))
        class_names = spec.class_names
    elif spec.local:
        class_names, splits = read_local(name, data_dir, tfds_dir, mirror)
    else:
        class_names, splits = _read_tfds(name, tfds_dir, download)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    for split, x in (("train", x_train), ("test", x_test)):
        if x.shape[1:] != spec.image_shape:
            raise ValueError(f"{name} {split}: images {x.shape[1:]}, expected {spec.image_shape}")
    mean = np.asarray(stats.mean, np.float32)
    std = np.asarray(stats.std, np.float32)
    if spec.source != "mnist3d":  # 3D MNIST holds floats already, used as they are
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
