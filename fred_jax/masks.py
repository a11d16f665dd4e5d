"""Frequency masks: which k spatial-frequency coefficients each class keeps.

Coefficients are ``[N, *spatial, ch]`` (the output of a transform from ``fred_jax.transforms``).
A mask is ``bool[*spatial]`` with exactly ``k`` True entries, shared by all channels and all
instances of a class (the paper's rule). Selection is a ranking of the ``d = prod(spatial)``
flat (row-major) positions; the first ``k`` are kept. Ties are broken by the lower flat index
(stable sort; ``high_pass`` is the exact reverse of the ``low_pass`` ranking), so every
selector is deterministic given its inputs (and key, for ``random``).

Kinds
- ``evr`` (default, the paper's): highest explained-variance ratio, see
  ``explained_variance_ratio``. For the ``dct`` transform the variance is that of the official
  code's coefficients, the UNNORMALISED DCT-II of torch-dct (``norm=None``): our orthonormal
  variance times ``s(u, v)^2`` (``transforms.torch_dct_scale``: x2 on the first row and column,
  x4 at DC), so FreD keeps exactly the official frequencies. Other transforms have no official
  ranking and use their own coefficients.
- ``evr_orthonormal``: the explained-variance ratio of the orthonormal coefficients as they are
  (differs from ``evr`` only for ``dct``; an ablation, not the paper's rule).
- ``low_pass``: smallest normalised frequency radius ``sum_a (f_a / N_a)^2``, where the
  frequency along axis ``a`` of index ``i`` is ``i`` (dct, dwt, identity layouts: low index =
  coarse) or ``min(i, N_a - i)`` for ``dft`` (Hartley spectra wrap around).
- ``high_pass``: largest radius first (the reverse ranking of ``low_pass``).
- ``band_stop``: drops a middle band: keeps the ``ceil(k/2)`` lowest and the ``floor(k/2)``
  highest frequencies of the ``low_pass`` ranking.
- ``random``: a uniformly random set of k positions (needs ``key``).
- ``amplitude``: highest mean absolute coefficient over instances and channels.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fred_jax import transforms

KINDS = ("evr", "evr_orthonormal", "low_pass", "high_pass", "band_stop", "random", "amplitude")
_FREQUENCY_KINDS = ("low_pass", "high_pass", "band_stop")


def explained_variance_ratio(coeffs: jax.Array, scale: Optional[np.ndarray] = None) -> jax.Array:
    """EVR ``[*spatial]`` of coefficients ``[N, *spatial, ch]``: the variance over the N
    instances of the channel-averaged coefficient, divided by the sum of these variances.
    ``scale [*spatial]`` multiplies each coefficient first (its variance by ``scale^2``): the
    official DCT ranking is ``scale = transforms.torch_dct_scale(spatial)``.
    All zeros when the total variance is zero (e.g. N = 1)."""
    coeffs = jnp.asarray(coeffs)
    if coeffs.ndim < 3:
        raise ValueError(f"coeffs must be [N, *spatial, ch], got shape {coeffs.shape}")
    var = jnp.var(jnp.mean(coeffs, axis=-1), axis=0)
    if scale is not None:
        var = var * jnp.asarray(np.square(scale), var.dtype)
    total = jnp.sum(var)
    return jnp.where(total > 0, var / jnp.where(total > 0, total, 1.0), 0.0)


def _radius(spatial_shape: Sequence[int], transform: str) -> np.ndarray:
    """Squared normalised frequency radius per flat position, ``[d]`` float64."""
    grids = np.meshgrid(*[np.arange(s) for s in spatial_shape], indexing="ij")
    r = np.zeros(spatial_shape)
    for g, s in zip(grids, spatial_shape):
        f = np.minimum(g, s - g) if transform == "dft" else g
        r = r + (f / s) ** 2
    return r.reshape(-1)


def _ranking(
    coeffs: jax.Array, k: int, kind: str, key: Optional[jax.Array], transform: str
) -> jax.Array:
    """Flat positions ``[d]`` in the order the selector keeps them."""
    spatial = coeffs.shape[1:-1]
    d = math.prod(spatial)
    if kind in ("evr", "evr_orthonormal"):
        official = kind == "evr" and transform == "dct"
        scale = transforms.torch_dct_scale(spatial) if official else None
        ratio = explained_variance_ratio(coeffs, scale)
        return jnp.argsort(-ratio.reshape(-1), stable=True)
    if kind == "amplitude":
        amp = jnp.mean(jnp.abs(coeffs), axis=(0, coeffs.ndim - 1))
        return jnp.argsort(-amp.reshape(-1), stable=True)
    if kind == "random":
        return jax.random.permutation(key, d)
    low = np.argsort(_radius(spatial, transform), kind="stable")
    if kind == "low_pass":
        return jnp.asarray(low)
    if kind == "high_pass":
        return jnp.asarray(low[::-1].copy())
    # band_stop: the lowest ceil(k/2), then the highest floor(k/2), then the middle band.
    n_low = (k + 1) // 2
    n_high = k - n_low
    kept = np.concatenate([low[:n_low], low[d - n_high :]])
    return jnp.asarray(np.concatenate([kept, low[n_low : d - n_high]]))


def select(
    coeffs: jax.Array,
    k: int,
    kind: str = "evr",
    key: Optional[jax.Array] = None,
    *,
    transform: str = "dct",
) -> jax.Array:
    """Mask ``bool[*spatial]`` with exactly ``k`` True for coefficients ``[N, *spatial, ch]``.

    ``transform`` matters for the frequency-ordered kinds (low_pass, high_pass, band_stop),
    where ``dft`` indices wrap around, and for ``evr`` (the official scaling of ``dct``).
    Jit-able with static ``k``, ``kind``, ``transform``."""
    coeffs = jnp.asarray(coeffs)
    if coeffs.ndim < 3:
        raise ValueError(f"coeffs must be [N, *spatial, ch], got shape {coeffs.shape}")
    spatial = coeffs.shape[1:-1]
    d = math.prod(spatial)
    if not 1 <= k <= d:
        raise ValueError(f"k must be in [1, {d}] for spatial shape {spatial}, got {k}")
    if kind not in KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; expected one of {KINDS}")
    if kind == "random" and key is None:
        raise ValueError("mask kind 'random' needs a PRNG key")
    if kind not in _FREQUENCY_KINDS + ("evr",):
        transform = "dct"  # unused: one compiled version for every transform
    return _select(coeffs, k, kind, key, transform)


@functools.partial(jax.jit, static_argnums=(1, 2, 4))
def _select(
    coeffs: jax.Array, k: int, kind: str, key: Optional[jax.Array], transform: str
) -> jax.Array:
    d = math.prod(coeffs.shape[1:-1])
    order = _ranking(coeffs, k, kind, key, transform)
    mask = jnp.zeros((d,), dtype=bool).at[order[:k]].set(True)
    return mask.reshape(coeffs.shape[1:-1])


def class_masks(
    coeffs: jax.Array,
    labels: jax.Array,
    num_classes: int,
    k: int,
    kind: str = "evr",
    key: Optional[jax.Array] = None,
    *,
    transform: str = "dct",
) -> jax.Array:
    """One mask per class, ``bool[C, *spatial]``, each from that class's instances of
    ``coeffs [N, *spatial, ch]``; ``random`` uses ``fold_in(key, class)``."""
    coeffs = np.asarray(coeffs)
    labels = np.asarray(labels)
    if labels.shape != coeffs.shape[:1]:
        raise ValueError(f"labels {labels.shape} do not match coeffs {coeffs.shape}")
    out = []
    for c in range(num_classes):
        members = coeffs[labels == c]
        if members.shape[0] == 0:
            raise ValueError(f"class {c} has no instances")
        ckey = None if key is None else jax.random.fold_in(key, c)
        out.append(select(members, k, kind, ckey, transform=transform))
    return jnp.stack(out)
