"""Frequency-domain synthetic set (FreD's memory): kept coefficients plus their positions.

Budget: ``ipc`` images per class of ``d = prod(spatial)`` values per channel. Keeping ``k``
coefficients per channel gives ``n = ipc * d // k`` instances per class, all sharing one class
mask of ``k`` spatial frequencies. Only ``coeffs [C, n, k, ch]`` is trained; ``indices [C, k]``
(sorted, row-major flat positions in the spatial grid) are fixed at init. The identity
transform with ``k = d`` is the plain pixel baseline through the same code path.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import zipfile
from typing import Any, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from fred_jax import idc, safeio
from fred_jax import masks as masks_lib
from fred_jax import transforms

FORMAT_VERSION = 1


@flax.struct.dataclass
class SynSet:
    """Synthetic set in the frequency domain.

    coeffs: ``[C, n, k, ch]`` float32, the only trainable leaf: differentiate and optimise
      ``synset.coeffs`` and rebuild with ``synset.replace(coeffs=...)``.
    indices: ``[C, k]`` int32, sorted flat positions kept per class (fixed).
    transform: transform name (static). image_shape: ``spatial + (ch,)`` (static).
    """

    coeffs: jax.Array
    indices: jax.Array
    transform: str = flax.struct.field(pytree_node=False)
    image_shape: tuple = flax.struct.field(pytree_node=False)

    @property
    def num_classes(self) -> int:
        return self.coeffs.shape[0]

    @property
    def n(self) -> int:
        """Instances per class."""
        return self.coeffs.shape[1]

    @property
    def k(self) -> int:
        """Kept coefficients per channel and instance."""
        return self.coeffs.shape[2]

    def images(self) -> jax.Array:
        """Decoded images ``[C, n, *spatial, ch]``."""
        return decode(self.coeffs, self.indices, self.transform, self.image_shape)

    def labels(self) -> jax.Array:
        """Class-major labels ``[C * n]`` int32 matching ``flat``."""
        return jnp.repeat(jnp.arange(self.num_classes, dtype=jnp.int32), self.n)


def instances_per_class(ipc: int, spatial_shape: Sequence[int], k: int) -> int:
    """Instances per class ``n = ipc * d // k`` that fit the budget of ``ipc`` images."""
    d = math.prod(spatial_shape)
    if ipc < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    if not 1 <= k <= d:
        raise ValueError(
            f"k must be in [1, d={d}] for spatial shape {tuple(spatial_shape)}, got k={k}"
        )
    n = ipc * d // k
    if n < 1:
        raise ValueError(f"ipc={ipc}, d={d}, k={k} gives n = ipc*d//k = {n} < 1 instance")
    return n


def init(
    key: jax.Array,
    images: Any,
    labels: Any,
    num_classes: int,
    *,
    ipc: int,
    k: int,
    transform: str = "dct",
    mask_kind: str = "evr",
) -> SynSet:
    """Initialise from real data: per class draw n real images (without replacement, key
    ``fold_in(split(key)[0], class)``), transform them, build the class mask from those n
    instances (``masks.class_masks`` with ``split(key)[1]``), keep the k coefficients.

    images: normalised ``[N, *spatial, ch]`` (NumPy or JAX); labels: ``[N]`` ints.
    """
    if not isinstance(images, (np.ndarray, jax.Array)):
        images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim not in (4, 5):
        raise ValueError(f"images must be [N, H, W, C] or [N, D, H, W, C], got {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels {labels.shape} do not match images {images.shape}")
    spatial = images.shape[1:-1]
    if transform == idc.TRANSFORM and k != idc.kept_per_channel(spatial):
        raise ValueError(f"transform {idc.TRANSFORM!r} stores k = d / {idc.FACTOR}^ndim = "
                         f"{idc.kept_per_channel(spatial)} values per channel, got k={k}")
    n = instances_per_class(ipc, spatial, k)
    sample_key, mask_key = jax.random.split(key)

    picks = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if members.size < n:
            raise ValueError(f"class {c} has {members.size} images, init needs n={n}")
        sel = jax.random.choice(jax.random.fold_in(sample_key, c), members.size, (n,), False)
        picks.append(members[np.asarray(sel)])
    real = np.asarray(images[np.stack(picks)], dtype=np.float32)  # [C, n, *spatial, ch]
    return from_real(real, k=k, transform=transform, mask_kind=mask_kind, key=mask_key)


def from_real(
    real: Any, *, k: int, transform: str = "dct", mask_kind: str = "evr",
    key: Optional[jax.Array] = None,
) -> SynSet:
    """The frequency memory of given real images ``[C, n, *spatial, ch]``: transform them, build
    each class's mask from its n instances (``masks.class_masks``; ``key`` for ``random``), keep
    the k coefficients. The official ``SynSet.init`` after its sampling (the parity tests feed
    both the same images)."""
    real = np.asarray(real, dtype=np.float32)
    if transform == idc.TRANSFORM:  # IDC: downsampled real images, no mask (fred_jax.idc)
        coeffs, indices = idc.init_from_real(real)
        return SynSet(coeffs=jnp.asarray(coeffs), indices=jnp.asarray(indices),
                      transform=transform, image_shape=tuple(int(s) for s in real.shape[2:]))
    num_classes, n = real.shape[:2]
    t = transforms.get(transform, real.ndim - 3)
    freq = np.asarray(t.forward(real)).reshape((num_classes * n,) + real.shape[2:])
    mask = masks_lib.class_masks(
        freq, np.repeat(np.arange(num_classes), n), num_classes, k, mask_kind,
        key=key, transform=transform,
    )
    indices = np.stack([np.flatnonzero(m) for m in np.asarray(mask).reshape(num_classes, -1)])
    flat_freq = freq.reshape(num_classes, n, -1, real.shape[-1])
    coeffs = np.take_along_axis(flat_freq, indices[:, None, :, None], axis=2)
    return SynSet(
        coeffs=jnp.asarray(coeffs, jnp.float32),
        indices=jnp.asarray(indices, jnp.int32),
        transform=transform,
        image_shape=tuple(int(s) for s in real.shape[2:]),
    )


# Largest gathered basis (``C * k * d`` values) that ``decode`` builds per call.
_MAX_ROWS = 16 * 2**20


def decode_method(transform: str, image_shape: Sequence[int], num_classes: int, k: int) -> str:
    """Which ``decode`` path runs: "matmul" or "scatter" (see ``decode``)."""
    spatial = tuple(image_shape)[:-1]
    d = math.prod(spatial)
    if transform != "identity" and k <= sum(spatial) and num_classes * k * d <= _MAX_ROWS:
        return "matmul"
    return "scatter"


def decode(
    coeffs: jax.Array, indices: jax.Array, transform: str, image_shape: Sequence[int]
) -> jax.Array:
    """Images ``[C, n, *spatial, ch]`` from kept coefficients ``[C, n, k, ch]``.

    Pure, jit-able and differentiable in ``coeffs``. Two exact paths, chosen statically
    from the shapes (``decode_method``):
    - "matmul": gather the k basis images of each class (``transforms.basis_rows``,
      ``[C, k, d]``) and decode with one batched matmul; costs ``~ipc*d^2`` per class and
      channel, independent of k.
    - "scatter": put the coefficients into a zero spectrum and apply the separable inverse
      transform; costs ``~n*d*sum(spatial)``. Used for the identity transform (pure
      scatter), when k > sum(spatial), or when the gathered basis would exceed 16M values.
    At CIFAR-10 shapes (k=64) the matmul is about twice as fast as the scatter, forward and
    backward, for the DCT and the DWT; both paths agree to float rounding
    (``tests/test_synset.py``).
    """
    return _decode(coeffs, indices, transform, tuple(int(s) for s in image_shape))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _decode(
    coeffs: jax.Array, indices: jax.Array, transform: str, image_shape: tuple[int, ...]
) -> jax.Array:
    spatial, ch = image_shape[:-1], image_shape[-1]
    c, n, k, ch_in = coeffs.shape
    if ch_in != ch or indices.shape != (c, k):
        raise ValueError(
            f"coeffs {coeffs.shape} / indices {indices.shape} do not match image_shape "
            f"{image_shape}"
        )
    if transform == idc.TRANSFORM:
        return idc.decode(coeffs, indices, image_shape)
    if decode_method(transform, image_shape, c, k) == "matmul":
        rows = transforms.basis_rows(transform, spatial, indices, coeffs.dtype)  # [C, k, d]
        a = jnp.swapaxes(coeffs, 2, 3).reshape(c, n * ch, k)
        x = jnp.matmul(a, rows, precision=jax.lax.Precision.HIGHEST)
        return jnp.moveaxis(x.reshape((c, n, ch) + spatial), 2, -1)
    return _decode_scatter(coeffs, indices, transform, spatial)


def _decode_scatter(
    coeffs: jax.Array, indices: jax.Array, transform: str, spatial: tuple[int, ...]
) -> jax.Array:
    c, n, _, ch = coeffs.shape
    d = math.prod(spatial)
    full = jax.vmap(lambda co, ix: jnp.zeros((n, d, ch), coeffs.dtype).at[:, ix].set(co))(
        coeffs, indices
    )
    full = full.reshape((c, n) + spatial + (ch,))
    return transforms.get(transform, len(spatial)).inverse(full)


def flat(synset: SynSet) -> tuple[jax.Array, jax.Array]:
    """``(x [C*n, *spatial, ch], y [C*n] int32)``, class-major."""
    x = synset.images()
    return x.reshape((-1,) + x.shape[2:]), synset.labels()


def save(
    path: str | os.PathLike,
    synset: SynSet,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    dataset: str,
    **extra: Any,
) -> None:
    """Write the compact export ``.npz`` (uncompressed, exact): float32 coeffs, int16 or
    int32 indices, int16 per-instance labels, and a JSON string with the transform name,
    image shape, normalisation, dataset and ``extra`` (JSON-serialisable). Its size is
    ``C*n*k*ch*4 + C*k*2 (or 4) + C*n*2`` bytes plus a small header: it grows with k and
    not with the image size. Written atomically (``fred_jax.safeio.atomic_write``)."""
    d = math.prod(synset.image_shape[:-1])
    idx_dtype = np.int16 if d <= np.iinfo(np.int16).max + 1 else np.int32
    meta = {
        "format_version": FORMAT_VERSION,
        "transform": synset.transform,
        "image_shape": list(synset.image_shape),
        "mean": [float(v) for v in np.ravel(mean)],
        "std": [float(v) for v in np.ravel(std)],
        "dataset": dataset,
        "extra": extra,
    }
    buf = io.BytesIO()
    np.savez(
        buf,
        coeffs=np.asarray(synset.coeffs, dtype=np.float32),
        indices=np.asarray(synset.indices).astype(idx_dtype),
        labels=np.asarray(synset.labels(), dtype=np.int16),
        meta=np.array(json.dumps(meta)),
    )
    safeio.atomic_write(path, buf.getvalue())  # whole or not at all; errors name the path


EXPORT_FIELDS = ("coeffs", "indices", "labels", "meta")
EXPORT_WHAT = "an export .npz written by fred_jax (synset_best.npz or synset_last.npz of a workdir)"
_EXPORT_TODO = ("use an export written by fred_jax, or write it again (rerunning the run's "
                "command rewrites synset_last.npz)")
_MAX_META_CHARS = 2**20


def load(path: str | os.PathLike) -> tuple[SynSet, dict]:
    """Read an export written by ``save``: ``(SynSet, meta)``. ``meta`` has ``mean``, ``std``
    (float32 arrays), ``dataset``, ``labels`` ([C*n] int32) and the saved ``extra`` keys.

    Verified before it is trusted: the metadata, then, before anything else is decompressed
    (``fred_jax.safeio.read_npz``), the declared sizes, the shapes against the metadata and
    the byte budget of the decoded images; then finite values, the kept positions (in range,
    unique per class) and the class-major labels. Anything else is refused with one line
    naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; expected {EXPORT_WHAT}")
    if not zipfile.is_zipfile(path):
        kind = "a .npy array" if path.endswith(".npy") else "not an .npz archive"
        raise ValueError(f"{path}: {kind}, expected {EXPORT_WHAT}")
    names = safeio.npz_names(path)
    missing = [name for name in EXPORT_FIELDS if name not in names]
    if missing:
        raise ValueError(f"{path}: an .npz without the export fields {missing} (has "
                         f"{sorted(names)}); expected {EXPORT_WHAT}")
    meta = _export_meta(path, safeio.read_npz(path, names=("meta",), check=functools.partial(
        _check_meta_header, path))["meta"])
    arrays = safeio.read_npz(path, names=EXPORT_FIELDS[:3],
                             check=functools.partial(_check_headers, path, meta))
    coeffs, indices, labels = arrays["coeffs"], arrays["indices"], arrays["labels"]
    _check_export(path, meta, coeffs, indices.astype(np.int64), labels)
    synset = SynSet(
        coeffs=jnp.asarray(coeffs.astype(np.float32)),
        indices=jnp.asarray(indices.astype(np.int32)),
        transform=meta["transform"],
        image_shape=tuple(meta["image_shape"]),
    )
    out = {
        **meta["extra"],
        "mean": np.asarray(meta["mean"], np.float32),
        "std": np.asarray(meta["std"], np.float32),
        "dataset": meta["dataset"],
        "labels": labels.astype(np.int32),
    }
    return synset, out


def _bad(path: str, what: str) -> ValueError:
    return safeio.refuse(path, what, _EXPORT_TODO)


def _check_meta_header(path: str, headers: dict) -> None:
    dtype, shape = headers["meta"]
    if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * _MAX_META_CHARS:
        raise _bad(path, f"meta must be one JSON string of at most {_MAX_META_CHARS} "
                         f"characters, got {dtype} {shape}")


def _check_headers(path: str, meta: dict, headers: dict) -> None:
    """Refuse, before any array is decompressed, an export whose arrays disagree with each
    other or with the metadata, or whose decoded images would exceed the byte budget."""
    (cd, cs), (idd, ids), (ld, ls) = (headers[n] for n in EXPORT_FIELDS[:3])
    if cd.kind != "f" or len(cs) != 4 or min(cs) < 1:
        raise _bad(path, f"coeffs must be float [C, n, k, ch], got {cd} {cs}")
    c, n, k, ch = cs
    image_shape = tuple(meta["image_shape"])
    d = math.prod(image_shape[:-1])
    if ch != image_shape[-1] or k > d:
        raise _bad(path, f"coeffs {cs} do not fit image_shape {image_shape} (need ch "
                         f"{image_shape[-1]} and k <= {d})")
    if idd.kind not in "iu" or ids != (c, k):
        raise _bad(path, f"indices must be integer [C, k] = [{c}, {k}], got {idd} {ids}")
    if ld.kind not in "iu" or ls != (c * n,):
        raise _bad(path, f"labels must be integer [C * n] = [{c * n}], got {ld} {ls}")
    budget, decoded = safeio.max_set_bytes(), c * n * d * ch * 4
    if decoded > budget:
        raise safeio.over_budget(path, f"decoding {c} x {n} images of shape {image_shape}",
                                 decoded, budget)


def _export_meta(path: str, raw: np.ndarray) -> dict:
    """The metadata of an export, with its fields' types checked."""
    try:
        meta = json.loads(str(raw))
    except (ValueError, RecursionError):  # RecursionError: nested past the decoder's limit
        raise _bad(path, "its metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise _bad(path, "its metadata is not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"unsupported export format {meta.get('format_version')!r} (this "
                         f"version reads format {FORMAT_VERSION})")
    shape = meta.get("image_shape")
    if (not isinstance(shape, list) or len(shape) not in (3, 4)
            or not all(type(s) is int and 1 <= s <= 2**16 for s in shape)):
        raise _bad(path, f"image_shape must be [*spatial, ch] (2 or 3 spatial axes), got "
                         f"{shape!r}")
    if meta.get("transform") not in transforms.NAMES + (idc.TRANSFORM,):
        raise _bad(path, f"unknown transform {meta.get('transform')!r}")
    for field in ("mean", "std"):
        values = meta.get(field)
        if (not isinstance(values, list) or len(values) not in (1, shape[-1])
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                or (field == "std" and min(values) <= 0)):
            raise _bad(path, f"{field} must be {shape[-1]} finite numbers"
                             f"{' > 0' if field == 'std' else ''}, got {values!r}")
    extra = meta.get("extra")
    if not isinstance(meta.get("dataset"), str) or not isinstance(extra, dict):
        raise _bad(path, "its metadata lacks a dataset name or the extra fields")
    lr = extra.get("syn_lr")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise _bad(path, f"syn_lr must be a finite learning rate > 0, got {lr!r}")
    return meta


def _check_export(path: str, meta: dict, coeffs: np.ndarray, indices: np.ndarray,
                  labels: np.ndarray) -> None:
    """Finite values, kept positions and labels (the shapes passed ``_check_headers``)."""
    c, n, k, _ = coeffs.shape
    spatial = tuple(meta["image_shape"][:-1])
    d = math.prod(spatial)
    if not np.isfinite(coeffs).all():
        raise ValueError(f"{path}: the synthetic set holds non-finite coefficients (a diverged "
                         f"run); distil again with a lower learning rate")
    if indices.size and (indices.min() < 0 or indices.max() >= d):
        raise _bad(path, f"kept positions (indices) must lie in [0, {d}), got "
                         f"[{indices.min()}, {indices.max()}]")
    if k > 1 and not (np.diff(np.sort(indices, axis=1), axis=1) > 0).all():
        raise _bad(path, "a class keeps the same position (indices) twice")
    if meta["transform"] == idc.TRANSFORM and not (
            k == idc.kept_per_channel(spatial) and (indices == idc.positions(spatial)).all()):
        raise _bad(path, f"an {idc.TRANSFORM!r} export must keep the {idc.TRANSFORM} "
                         f"low-resolution positions")
    if not np.array_equal(labels, np.repeat(np.arange(c), n)):
        raise _bad(path, f"labels must be the class-major [0] * {n} + ... + [{c - 1}] * {n} "
                         f"of its coefficients")
