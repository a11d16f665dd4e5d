"""Orthonormal linear transforms over the spatial axes of channels-last arrays.

Every transform acts on the ``ndim`` spatial axes just before the channel axis, so
``[..., H, W, C]`` (ndim=2) or ``[..., D, H, W, C]`` (ndim=3) with any leading axes.
All are real, linear and orthonormal: ``inverse(forward(x)) == x`` and
``||forward(x)|| == ||x||`` (Parseval), so the inverse is the transpose of the forward map.

Names
- ``dct``: DCT-II with the orthonormal scaling, equal to ``scipy.fft.dctn(norm="ortho")``.
  Coefficient ``(0, 0)`` is the DC term; frequency grows with the index.
- ``dft``: the separable discrete Hartley transform, a real orthonormal DFT basis:
  per axis ``H[k, n] = cas(2 pi k n / N) / sqrt(N)`` with ``cas = cos + sin``; the
  matrix is symmetric and its own inverse. Coefficient ``k`` along an axis has frequency
  ``min(k, N - k)`` (the spectrum wraps around like the FFT's).
- ``dwt``: multi-level orthonormal Haar wavelet transform in the standard (Mallat) pyramid
  layout. Each level applies the 1-D Haar step (averages in the first half, details in
  the second) along every spatial axis of the current low-pass block, which is the leading
  corner of half the size. Levels: as many as the sizes allow, i.e. while every spatial size
  of the low-pass block is even (32 -> 5 levels, 28 -> 2 levels); sizes must be even.
- ``identity``: pixels (the plain-image baseline through the same code path).

Implementation: separable matrix products with cached per-axis matrices, in
``Precision.HIGHEST`` so that accelerators do not fall back to reduced-precision matmuls
(a float32 round trip stays within 1e-5). The matrices take the input dtype, so float64
works under ``jax.experimental.enable_x64``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

NAMES = ("dct", "dft", "dwt", "identity")

_HIGHEST = jax.lax.Precision.HIGHEST


class Transform(NamedTuple):
    """A named orthonormal transform over ``ndim`` spatial axes (before channels)."""

    name: str
    ndim: int
    forward: Callable[[jax.Array], jax.Array]
    inverse: Callable[[jax.Array], jax.Array]


@functools.lru_cache(maxsize=None)
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``[n, n]`` (float64): ``y = M @ x``, ``x = M.T @ y``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    m.setflags(write=False)
    return m


def torch_dct_scale(spatial_shape: Sequence[int]) -> np.ndarray:
    """``s`` per spatial frequency, shape ``spatial_shape`` (float64): the official code's
    unnormalised DCT-II coefficient (torch-dct ``norm=None``) divided by our orthonormal one.
    Per axis of length N, ``X_k = 2 sum_n x_n cos(pi k (2n+1) / 2N)``, so ``s_0 = 2 sqrt(N)``
    and ``s_k = sqrt(2N)``; a coefficient at ``(k1, k2, ...)`` is scaled by the product."""
    s = np.ones((), np.float64)
    for n in spatial_shape:
        axis = np.full(n, math.sqrt(2.0 * n))
        axis[0] = 2.0 * math.sqrt(n)
        s = np.multiply.outer(s, axis)
    return s


@functools.lru_cache(maxsize=None)
def hartley_matrix(n: int) -> np.ndarray:
    """Orthonormal discrete Hartley matrix ``[n, n]`` (float64), symmetric and involutory."""
    a = 2.0 * np.pi * np.outer(np.arange(n), np.arange(n)) / n
    m = (np.cos(a) + np.sin(a)) / math.sqrt(n)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=None)
def haar_matrix(n: int) -> np.ndarray:
    """One orthonormal Haar step ``[n, n]`` (n even): pair sums first, pair differences second."""
    if n % 2:
        raise ValueError(f"haar step needs an even size, got {n}")
    m = np.zeros((n, n))
    h = n // 2
    r = np.arange(h)
    s = 1.0 / math.sqrt(2.0)
    m[r, 2 * r] = s
    m[r, 2 * r + 1] = s
    m[h + r, 2 * r] = s
    m[h + r, 2 * r + 1] = -s
    m.setflags(write=False)
    return m


def dwt_levels(spatial_shape: Sequence[int]) -> int:
    """Number of Haar levels used for ``spatial_shape``: halve while every size is even."""
    sizes = list(spatial_shape)
    levels = 0
    while all(s % 2 == 0 and s >= 2 for s in sizes):
        sizes = [s // 2 for s in sizes]
        levels += 1
    if levels == 0:
        raise ValueError(f"dwt needs even spatial sizes, got {tuple(spatial_shape)}")
    return levels


def _apply(x: jax.Array, mat: np.ndarray, axis: int, transpose: bool) -> jax.Array:
    """Multiply ``mat`` (or its transpose) along ``axis`` of ``x``."""
    m = jnp.asarray(mat.T if transpose else mat, dtype=x.dtype)
    y = jnp.tensordot(m, x, axes=((1,), (axis,)), precision=_HIGHEST)
    return jnp.moveaxis(y, 0, axis % x.ndim)


def _spatial_axes(x: jax.Array, ndim: int) -> tuple[int, ...]:
    if x.ndim < ndim + 1:
        raise ValueError(
            f"expected an array [..., {ndim} spatial axes, channels], got shape {x.shape}"
        )
    return tuple(range(x.ndim - 1 - ndim, x.ndim - 1))


def _separable(matrix_fn: Callable[[int], np.ndarray], ndim: int, inverse: bool):
    def fn(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        for ax in _spatial_axes(x, ndim):
            x = _apply(x, matrix_fn(x.shape[ax]), ax, transpose=inverse)
        return x

    return fn


def _block(x: jax.Array, axes: tuple[int, ...], sizes: Sequence[int]) -> tuple:
    idx = [slice(None)] * x.ndim
    for ax, s in zip(axes, sizes):
        idx[ax] = slice(0, s)
    return tuple(idx)


def _dwt(ndim: int, inverse: bool):
    def fn(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        axes = _spatial_axes(x, ndim)
        full = [x.shape[a] for a in axes]
        levels = dwt_levels(full)
        block_sizes = [[s >> lvl for s in full] for lvl in range(levels)]
        if inverse:
            block_sizes = block_sizes[::-1]
        for sizes in block_sizes:
            idx = _block(x, axes, sizes)
            b = x[idx]
            for ax, s in zip(axes, sizes):
                b = _apply(b, haar_matrix(s), ax, transpose=inverse)
            x = x.at[idx].set(b)
        return x

    return fn


def _identity(x: jax.Array) -> jax.Array:
    return jnp.asarray(x)


def get(name: str, ndim: int = 2) -> Transform:
    """Return the transform ``name`` (one of ``NAMES``) over ``ndim`` (2 or 3) spatial axes.

    ``forward``/``inverse`` are jitted (one compile per input shape when called eagerly;
    inlined when called inside another jitted function)."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    if name not in NAMES:
        raise ValueError(f"unknown transform {name!r}; expected one of {NAMES}")
    return _get(name, ndim)


@functools.lru_cache(maxsize=None)
def _get(name: str, ndim: int) -> Transform:
    if name == "dct":
        fwd, inv = _separable(dct_matrix, ndim, False), _separable(dct_matrix, ndim, True)
    elif name == "dft":
        fwd = inv = _separable(hartley_matrix, ndim, False)
    elif name == "dwt":
        fwd, inv = _dwt(ndim, False), _dwt(ndim, True)
    else:
        fwd = inv = _identity
    fwd = jax.jit(fwd)
    inv = fwd if inv is fwd else jax.jit(inv)
    return Transform(name=name, ndim=ndim, forward=fwd, inverse=inv)


@functools.lru_cache(maxsize=None)
def _mallat_1d(n: int, levels: int) -> np.ndarray:
    """1-D Haar matrix with ``levels`` pyramid levels ``[n, n]``."""
    out = np.eye(n)
    for lvl in range(levels):
        step = np.eye(n)
        s = n >> lvl
        step[:s, :s] = haar_matrix(s)
        out = step @ out
    return out


@functools.lru_cache(maxsize=None)
def _factor_tables(name: str, spatial_shape: tuple[int, ...]):
    """Per-axis tables ``[L, N_a, N_a]`` and a level ``[d]`` per flat position such that the
    basis image of position ``p`` is the outer product over axes ``a`` of
    ``table_a[level[p], i_a(p)]``. Separable transforms have L = 1. For the Mallat Haar
    layout a position belongs to the pyramid level m where it first leaves the low-pass
    block (the last level for the final low-pass block); its basis image is the outer
    product of rows of the 1-D m-level Haar matrices."""
    d = math.prod(spatial_shape)
    if name in ("dct", "dft", "identity"):
        mat = {"dct": dct_matrix, "dft": hartley_matrix, "identity": np.eye}[name]
        tables = tuple(np.asarray(mat(s))[None] for s in spatial_shape)
        return tables, np.zeros((d,), np.int32)
    if name != "dwt":
        raise ValueError(f"unknown transform {name!r}; expected one of {NAMES}")
    levels = dwt_levels(spatial_shape)
    tables = tuple(
        np.stack([_mallat_1d(s, m) for m in range(1, levels + 1)]) for s in spatial_shape
    )
    grids = np.meshgrid(*[np.arange(s) for s in spatial_shape], indexing="ij")
    level = np.full(spatial_shape, levels)
    for m in range(levels, 0, -1):
        outside = np.zeros(spatial_shape, bool)
        for g, s in zip(grids, spatial_shape):
            outside |= g >= (s >> m)
        inside_prev = np.ones(spatial_shape, bool)
        for g, s in zip(grids, spatial_shape):
            inside_prev &= g < (s >> (m - 1))
        level = np.where(outside & inside_prev, m, level)
    return tables, (level.reshape(-1) - 1).astype(np.int32)


def basis_rows(
    name: str, spatial_shape: Sequence[int], indices: jax.Array, dtype=jnp.float32
) -> jax.Array:
    """Basis images ``[..., d]`` (flattened row-major) of the flat coefficient positions
    ``indices [...]``: row ``r`` is what a unit coefficient at ``indices[r]`` decodes to.
    Built from per-axis factors (outer products), without the dense ``[d, d]`` basis;
    jitted (static ``name``, ``spatial_shape``, ``dtype``); ``indices`` may be traced."""
    spatial_shape = tuple(int(s) for s in spatial_shape)
    return _basis_rows(name, spatial_shape, jnp.asarray(indices), jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _basis_rows(
    name: str, spatial_shape: tuple[int, ...], indices: jax.Array, dtype: jnp.dtype
) -> jax.Array:
    tables, level = _factor_tables(name, spatial_shape)
    lvl = jnp.asarray(level)[indices]
    subs = jnp.unravel_index(indices, spatial_shape)
    out = None
    for a, (table, sub) in enumerate(zip(tables, subs)):
        f = jnp.asarray(table, dtype)[lvl, sub]  # [..., N_a]
        if out is None:
            out = f
        else:
            out = (out[..., :, None] * f[..., None, :]).reshape(indices.shape + (-1,))
    return out


@functools.lru_cache(maxsize=16)
def _basis(name: str, spatial_shape: tuple[int, ...]) -> np.ndarray:
    d = math.prod(spatial_shape)
    if name == "identity":
        out = np.eye(d)
    elif name in ("dct", "dft"):
        mat = dct_matrix if name == "dct" else hartley_matrix
        out = np.ones((1, 1))
        for s in spatial_shape:
            out = np.kron(out, mat(s))
    elif name == "dwt":
        # Forward map on flattened images: apply every level to the identity's columns.
        x = np.eye(d).reshape(spatial_shape + (d,))
        for lvl in range(dwt_levels(spatial_shape)):
            sizes = [s >> lvl for s in spatial_shape]
            idx = tuple(slice(0, s) for s in sizes)
            b = x[idx]
            for ax, s in enumerate(sizes):
                b = np.moveaxis(np.tensordot(haar_matrix(s), b, axes=((1,), (ax,))), 0, ax)
            x[idx] = b
        out = x.reshape(d, d)
    else:
        raise ValueError(f"unknown transform {name!r}; expected one of {NAMES}")
    out.setflags(write=False)
    return out


def basis(name: str, spatial_shape: Sequence[int]) -> np.ndarray:
    """Dense basis ``[d, d]`` (float64 NumPy, d = prod(spatial_shape)): row j is the image
    (flattened row-major) that the j-th unit coefficient decodes to. It is also the forward
    matrix on flattened images: ``coeffs_flat = basis @ x_flat`` and ``x_flat = basis.T @
    coeffs_flat``. Memory is d^2 (cached): meant for small grids, not 128x128 images."""
    return _basis(name, tuple(int(s) for s in spatial_shape))
