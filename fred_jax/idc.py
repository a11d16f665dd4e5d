"""IDC's multi-formation (Kim et al. 2022, snu-mllab/Efficient-Dataset-Condensation) as a linear
decode of fred_jax's synthetic-set memory.

IDC stores ``ipc`` full-size images per class and decodes each into ``factor^ndim`` instances
(``Synthesizer.decode_zoom`` in ``condense.py``): it cuts the image into a ``factor x factor``
grid of crops and upsamples every crop to the full size with ``nn.Upsample(size, mode=
"bilinear")`` (align_corners=False; "trilinear" is its 3-D form). The same numbers are
``factor^ndim * ipc`` low-resolution images of ``d / factor^ndim`` values per channel, each
decoded by upsampling: a linear map. In fred_jax's terms (``fred_jax.synset``) that is

- ``k = d / factor^ndim`` stored values per channel and instance, so ``ipc`` images of budget
  buy ``n = ipc * d // k = factor^ndim * ipc`` instances (4x for factor 2 on images);
- ``indices [C, k]``: the flat row-major positions (in the full grid) of the leading block of
  the low-resolution shape, i.e. low-res pixel ``(i, j)`` sits at full-grid position ``(i, j)``,
  the same for every class (nothing is selected: all low-res positions are kept);
- basis image of low-res pixel ``(i, j)``: its upsampling footprint, the outer product over
  axes of column ``i`` (``j``) of the per-axis interpolation matrix (:func:`upsample_matrix`).

Initialisation: IDC's ``init="mix"`` fills crop ``q`` of stored image ``m`` with real image
``q * ipc + m`` of the class resized by ``F.interpolate(size=crop)``, whose default mode is
"nearest" (source index ``floor(i * factor)``: every ``factor``-th pixel, no averaging), and
decodes crop ``q`` of image ``m`` to instance ``q * ipc + m``; so instance ``t`` starts as the
nearest-neighbour downsampling of real image ``t`` (:func:`downsample`), and :func:`to_stored`
gives back IDC's stored tensor. (IDC's default ``init="random"`` would put full-size real images
into the stored tensor, which multi-formation then cuts into quarters; the FreD comparison uses
downsampled real images.) Sizes must be divisible by ``factor`` (IDC pads odd sizes with 0.5).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fred_jax import data, parameterization

TRANSFORM = "idc"
"""``SynSet.transform`` name of an IDC set (multi-formation factor :data:`FACTOR`)."""

FACTOR = parameterization.IDC_FACTOR
"""Multi-formation factor of IDC's published CIFAR/SVHN/MNIST runs (``-f 2``)."""

_HIGHEST = jax.lax.Precision.HIGHEST


def low_res_shape(spatial_shape: Sequence[int], factor: int = FACTOR) -> tuple[int, ...]:
    """Spatial shape of a stored low-resolution instance: every size divided by ``factor``."""
    spatial_shape = tuple(int(s) for s in spatial_shape)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if any(s % factor or s < factor for s in spatial_shape):
        raise ValueError(f"IDC factor {factor} needs spatial sizes divisible by it, got "
                         f"{spatial_shape}")
    return tuple(s // factor for s in spatial_shape)


def kept_per_channel(spatial_shape: Sequence[int], factor: int = FACTOR) -> int:
    """``k = d / factor^ndim``: stored values per channel of one instance."""
    return math.prod(low_res_shape(spatial_shape, factor))


@functools.lru_cache(maxsize=None)
def upsample_matrix(n_low: int, n_high: int) -> np.ndarray:
    """``[n_high, n_low]`` float64 linear interpolation along one axis as torch's
    ``nn.Upsample(size, mode="bilinear"/"trilinear")`` (align_corners=False): the resize
    weights of :func:`fred_jax.data.bilinear_weights`, cached read-only."""
    m = data.bilinear_weights(n_low, n_high)
    m.setflags(write=False)
    return m


def _spatial_axes(x, ndim: int) -> tuple[int, ...]:
    if x.ndim < ndim + 1:
        raise ValueError(f"expected [..., {ndim} spatial axes, channels], got shape {x.shape}")
    return tuple(range(x.ndim - 1 - ndim, x.ndim - 1))


def downsample(x, factor: int = FACTOR, ndim: int = 2) -> np.ndarray:
    """Channels-last ``x [..., *spatial, ch]`` resized to ``spatial / factor`` as IDC's init
    (``F.interpolate(size=...)``, mode "nearest"): every ``factor``-th pixel from the first."""
    x = np.asarray(x)
    axes = _spatial_axes(x, ndim)
    low_res_shape([x.shape[a] for a in axes], factor)
    index = [slice(None)] * x.ndim
    for a in axes:
        index[a] = slice(0, None, factor)
    return x[tuple(index)]


def upsample(x_low: jax.Array, factor: int = FACTOR, ndim: int = 2) -> jax.Array:
    """IDC's decode of low-res instances ``[..., *low, ch]`` to ``[..., *low * factor, ch]``:
    torch bilinear/trilinear upsampling (:func:`upsample_matrix`), one small matmul per axis.
    Pure and differentiable; keeps the input dtype."""
    x = jnp.asarray(x_low)
    for a in _spatial_axes(x, ndim):
        n = x.shape[a]
        m = jnp.asarray(upsample_matrix(n, n * factor), dtype=x.dtype)
        x = jnp.moveaxis(jnp.tensordot(m, x, axes=((1,), (a,)), precision=_HIGHEST), 0, a)
    return x


def positions(spatial_shape: Sequence[int], factor: int = FACTOR) -> np.ndarray:
    """``[k]`` int32 flat row-major full-grid positions of the low-res pixels (the leading
    block of :func:`low_res_shape`), in the low-res row-major order (sorted)."""
    spatial_shape = tuple(int(s) for s in spatial_shape)
    low = low_res_shape(spatial_shape, factor)
    grid = np.meshgrid(*[np.arange(s) for s in low], indexing="ij")
    return np.ravel_multi_index(tuple(g.reshape(-1) for g in grid), spatial_shape).astype(np.int32)


def basis(spatial_shape: Sequence[int], factor: int = FACTOR) -> np.ndarray:
    """Dense ``[k, d]`` float64: row ``r`` is the full-size image (flattened row-major) that a
    unit value at low-res pixel ``r`` (row-major) decodes to, its upsampling footprint."""
    spatial_shape = tuple(int(s) for s in spatial_shape)
    low = low_res_shape(spatial_shape, factor)
    out = np.ones((1, 1))
    for n_low, n in zip(low, spatial_shape):
        out = np.kron(out, upsample_matrix(n_low, n).T)
    return out


def basis_rows(spatial_shape: Sequence[int], indices: jax.Array, factor: int = FACTOR,
               dtype=jnp.float32) -> jax.Array:
    """Basis images ``[..., d]`` of full-grid positions ``indices [...]`` inside the low-res
    block (as ``transforms.basis_rows`` for the orthonormal transforms): outer products of the
    per-axis footprints, without the dense basis. ``indices`` may be traced."""
    spatial_shape = tuple(int(s) for s in spatial_shape)
    low = low_res_shape(spatial_shape, factor)
    subs = jnp.unravel_index(jnp.asarray(indices), spatial_shape)
    out = None
    for n_low, n, sub in zip(low, spatial_shape, subs):
        table = jnp.asarray(upsample_matrix(n_low, n).T, dtype)  # [n_low, n]
        f = table[sub]
        out = f if out is None else (out[..., :, None] * f[..., None, :]).reshape(
            sub.shape + (-1,))
    return out


def decode(coeffs: jax.Array, indices: jax.Array, image_shape: Sequence[int],
           factor: int = FACTOR) -> jax.Array:
    """Images ``[C, n, *spatial, ch]`` from stored low-res values ``coeffs [C, n, k, ch]`` at
    full-grid ``indices [C, k]`` (:func:`positions`): scatter into the low-res grid, then
    :func:`upsample`. Equal to the matmul with :func:`basis_rows` (:func:`decode_via_basis`)
    at ~1/10 of its cost on 32x32 images; pure, jit-able, differentiable in ``coeffs``."""
    image_shape = tuple(int(s) for s in image_shape)
    spatial, ch = image_shape[:-1], image_shape[-1]
    low = low_res_shape(spatial, factor)
    c, n, k, ch_in = coeffs.shape
    if ch_in != ch or indices.shape != (c, k):
        raise ValueError(f"coeffs {coeffs.shape} / indices {indices.shape} do not match "
                         f"image_shape {image_shape}")
    low_pos = jnp.ravel_multi_index(jnp.unravel_index(indices, spatial), low, mode="clip")
    grid = jax.vmap(lambda co, ix: jnp.zeros((n, math.prod(low), ch), coeffs.dtype)
                    .at[:, ix].set(co))(coeffs, low_pos)
    return upsample(grid.reshape((c, n) + low + (ch,)), factor, len(spatial))


def decode_via_basis(coeffs: jax.Array, indices: jax.Array, image_shape: Sequence[int],
                     factor: int = FACTOR) -> jax.Array:
    """:func:`decode` as one matmul per class with the gathered basis images ``[C, k, d]``
    (the form of ``synset.decode``'s "matmul" path)."""
    image_shape = tuple(int(s) for s in image_shape)
    spatial, ch = image_shape[:-1], image_shape[-1]
    c, n, k, _ = coeffs.shape
    rows = basis_rows(spatial, indices, factor, coeffs.dtype)
    a = jnp.swapaxes(coeffs, 2, 3).reshape(c, n * ch, k)
    x = jnp.matmul(a, rows, precision=_HIGHEST)
    return jnp.moveaxis(x.reshape((c, n, ch) + spatial), 2, -1)


def check_decode(image_shape: Sequence[int], factor: int = FACTOR, seed: int = 0) -> float:
    """Largest difference of :func:`decode`, :func:`decode_via_basis` and :func:`upsample`
    from the dense NumPy product with :func:`basis`, on random float64 values: 0 up to
    float64 rounding when the basis is the upsampling."""
    image_shape = tuple(int(s) for s in image_shape)
    spatial, ch = image_shape[:-1], image_shape[-1]
    low = low_res_shape(spatial, factor)
    k = math.prod(low)
    rng = np.random.default_rng(seed)
    coeffs = rng.standard_normal((2, 3, k, ch))
    indices = np.tile(positions(spatial, factor), (2, 1))
    dense = np.einsum("cnkh,kd->cndh", coeffs, basis(spatial, factor))
    dense = dense.reshape((2, 3) + spatial + (ch,))
    with jax.enable_x64(True):
        co, ix = jnp.asarray(coeffs), jnp.asarray(indices)
        outs = [decode(co, ix, image_shape, factor), decode_via_basis(co, ix, image_shape, factor),
                upsample(co.reshape((2, 3) + low + (ch,)), factor, len(spatial))]
        return float(max(np.max(np.abs(np.asarray(o) - dense)) for o in outs))


def init_from_real(real, factor: int = FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """IDC's memory of given real images ``[C, n, *spatial, ch]`` (instance ``t`` = real ``t``,
    IDC's "mix" init): ``(coeffs [C, n, k, ch] float32, indices [C, k] int32)``, the
    nearest-neighbour downsampled images (:func:`downsample`) at :func:`positions`."""
    real = np.asarray(real, dtype=np.float32)
    if real.ndim not in (5, 6):
        raise ValueError(f"real must be [C, n, H, W, ch] or [C, n, D, H, W, ch], got "
                         f"{real.shape}")
    spatial = real.shape[2:-1]
    c, n, ch = real.shape[0], real.shape[1], real.shape[-1]
    low = downsample(real, factor, len(spatial))
    coeffs = np.ascontiguousarray(low.reshape(c, n, -1, ch))
    indices = np.tile(positions(spatial, factor), (c, 1))
    return coeffs, indices


def to_stored(coeffs, image_shape: Sequence[int], factor: int = FACTOR) -> np.ndarray:
    """IDC's stored tensor of a set (channels-last ``[C, ipc, *spatial, ch]``): crop ``q``
    (row-major over the ``factor^ndim`` crop grid) of stored image ``m`` holds instance
    ``q * ipc + m``, as ``decode_zoom`` reads it. Same number of values as ``coeffs``."""
    coeffs = np.asarray(coeffs)
    image_shape = tuple(int(s) for s in image_shape)
    spatial, ch = image_shape[:-1], image_shape[-1]
    low = low_res_shape(spatial, factor)
    ndim = len(spatial)
    c, n = coeffs.shape[:2]
    crops = factor**ndim
    if n % crops:
        raise ValueError(f"{n} instances per class is not a multiple of {crops} crops")
    ipc = n // crops
    x = coeffs.reshape((c,) + (factor,) * ndim + (ipc,) + low + (ch,))
    # [C, q_0..q_{nd-1}, m, l_0..l_{nd-1}, ch] -> [C, m, q_0, l_0, q_1, l_1, ..., ch]
    order = [0, ndim + 1] + [a for i in range(ndim) for a in (1 + i, ndim + 2 + i)]
    return x.transpose(order + [x.ndim - 1]).reshape((c, ipc) + spatial + (ch,))
