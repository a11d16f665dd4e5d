"""The DC augmentation (Zhao et al., ICLR 2021) that the official code uses to evaluate DC
without DSA, in pure JAX (jit- and vmap-able).

Faithful to the reference ``augment`` / ``get_daparam`` (sdh0818/FreD ``DC/utils.py:487-567``,
from VICO-UoE/DatasetCondensation) for channels-last normalised images ``[N, H, W, C]``. Each
image of a batch gets ONE op, drawn uniformly from the strategy's ops
(``np.random.permutation(augs)[0]``), with its own parameters:

- crop: pad ``crop`` pixels on each side with the batch's per-channel mean, then take the
  ``H x W`` window at offsets ``(r, c)``, each uniform in ``[0, 2 * crop)`` (the reference
  ``np.random.permutation(crop * 2)[0]``: shifts ``-crop .. crop - 1``, asymmetric);
- scale: ``h = int(U(1 - s, 1 + s) * H)``, ``w = int(U(1 - s, 1 + s) * H)`` (both from ``H``,
  as in the reference), nearest-neighbour resize (``F.interpolate`` default: source index
  ``min(floor(i * float32(in / out)), in - 1)``), centred on a zero canvas of side
  ``max(h, w, H, W)``, centre ``H x W`` crop (zero fill in normalised units);
- rotate: ``scipy.ndimage.rotate(angle, axes=(H, W), cval=mean of the channel means)`` with its
  defaults (``reshape=True``, cubic spline ``order=3`` with the mirror-boundary prefilter,
  ``mode='constant'``), then the centre ``H x W`` crop; the angle is an integer in
  ``[-rotate, rotate)`` degrees (``np.random.randint(-rotate, rotate)``);
- noise: ``x + noise * N(0, 1)`` per pixel.

The means are those of the batch before augmentation (the reference computes them first).
Rotation is exact, not approximated: the spline prefilter is the inverse of the cubic B-spline
sampling matrix with mirror boundaries (what scipy's recursive filter computes), applied as two
small matmuls, and the per-angle sampling positions, tap indices and the in/out-of-image test are
tabulated in float64 with scipy's formulas (``rotation_tables``), so only the tap weights and
sums run in float32. Measured against scipy: at most 3.5e-7 relative
(``tests/test_parity_dcaug.py``).

Where the reference uses it (``get_daparam``): method DC (no DSA) evaluation on MNIST
(``crop_scale_rotate``), and for ConvNetBN evaluation networks (``crop_noise``); either way the
evaluation then trains for 1000 epochs instead of 300 (``DC/main_DC_FreD.py:226-232``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

OPS = ("crop", "scale", "rotate", "noise")
MNIST_STRATEGY = "crop_scale_rotate"  # reference get_daparam: dataset MNIST
BATCHNORM_STRATEGY = "crop_noise"  # reference get_daparam: model_eval ConvNetBN


@dataclasses.dataclass(frozen=True)
class DCAugParams:
    """Reference ``get_daparam`` magnitudes (hashable: a static jit argument)."""

    crop: int = 4  # pixels of mean padding on each side
    scale: float = 0.2  # relative size range: U(1 - scale, 1 + scale)
    rotate: int = 45  # integer degrees in [-rotate, rotate)
    noise: float = 0.001  # std of the additive Gaussian noise

    def __post_init__(self):
        if self.crop < 1 or self.rotate < 1 or not 0 < self.scale < 1 or self.noise < 0:
            raise ValueError(f"DCAugParams needs crop >= 1, rotate >= 1, 0 < scale < 1, "
                             f"noise >= 0; got {self}")


class Draw(NamedTuple):
    """Sampled parameters of a batch of ``N`` images (one op per image)."""

    op: jax.Array  # [N] int: index of the op in the strategy
    offset: jax.Array  # [N, 2] int: crop window offsets (row, col) in [0, 2 * crop)
    size: jax.Array  # [N, 2] int: scaled (h, w)
    angle: jax.Array  # [N] int: rotation in degrees, in [-rotate, rotate)
    noise: jax.Array | None  # [N, H, W, C] standard normal; None when the strategy has no noise


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Op names of a ``_``-separated strategy; ``""``, ``"none"`` and ``"None"`` mean none."""
    if strategy in ("", "none", "None"):
        return ()
    ops = tuple(strategy.split("_"))
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        raise ValueError(f"unknown DC augmentation op(s) {unknown} in {strategy!r}; known: {OPS}")
    return ops


# ----------------------------------------------------------------------------------------------
# Deterministic ops on one image [H, W, C].


def crop(img: jax.Array, offset: jax.Array, pad: int, fill: jax.Array) -> jax.Array:
    """``H x W`` window at ``offset`` (row, col) of ``img`` padded by ``pad`` with ``fill [C]``."""
    h, w, c = img.shape
    canvas = jnp.broadcast_to(fill.astype(img.dtype), (h + 2 * pad, w + 2 * pad, c))
    canvas = jax.lax.dynamic_update_slice(canvas, img, (pad, pad, 0))
    return jax.lax.dynamic_slice(canvas, (offset[0], offset[1], 0), (h, w, c))


def _nearest_source(i: jax.Array, in_size: int, out_size: jax.Array) -> jax.Array:
    """PyTorch's nearest-neighbour source index of output index ``i`` (float32 arithmetic)."""
    ratio = jnp.float32(in_size) / out_size.astype(jnp.float32)
    src = jnp.minimum(jnp.floor(i.astype(jnp.float32) * ratio).astype(jnp.int32), in_size - 1)
    return jnp.where(out_size == in_size, i, src)


def scale(img: jax.Array, size: jax.Array) -> jax.Array:
    """Reference ``scalefun``: nearest resize to ``size = (h, w)``, centred on a zero canvas of
    side ``max(h, w, H, W)``, centre ``H x W`` crop."""
    h, w, _ = img.shape
    sh, sw = size[0], size[1]
    side = jnp.maximum(jnp.maximum(sh, sw), max(h, w))
    rows = jnp.arange(h) + (side - h) // 2 - (side - sh) // 2  # row inside the resized image
    cols = jnp.arange(w) + (side - w) // 2 - (side - sw) // 2
    valid = ((rows >= 0) & (rows < sh))[:, None] & ((cols >= 0) & (cols < sw))[None, :]
    src_r = jnp.clip(_nearest_source(rows, h, sh), 0, h - 1)
    src_c = jnp.clip(_nearest_source(cols, w, sw), 0, w - 1)
    out = img[src_r[:, None], src_c[None, :]]
    return jnp.where(valid[..., None], out, jnp.zeros((), img.dtype))


def _spline_prefilter(n: int) -> np.ndarray:
    """Inverse of the cubic B-spline sampling matrix ``(1, 4, 1) / 6`` with mirror boundaries:
    the exact result of scipy's ``spline_filter1d(order=3, mode='mirror' or 'constant')``."""
    b = np.zeros((n, n))
    for i in range(n):
        b[i, i] += 4.0 / 6.0
        for j in (i - 1, i + 1):
            b[i, -j if j < 0 else (2 * n - 2 - j if j >= n else j)] += 1.0 / 6.0
    return np.linalg.inv(b)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """scipy's mirror index map (``d c b | a b c d | c b a``), for ``-n < idx < 2n - 1``."""
    idx = np.where(idx < 0, -idx, idx)
    return np.where(idx >= n, 2 * n - 2 - idx, idx)


class RotationTables(NamedTuple):
    """Per angle ``a`` in ``[-rotate, rotate)`` (index ``a + rotate``) and output pixel: the
    4 row and 4 column taps of the cubic spline (mirrored indices), their fractional position,
    and whether the sampling point lies inside the image (else the output is ``cval``)."""

    rows: np.ndarray  # [A, H, W, 4] int32
    cols: np.ndarray  # [A, H, W, 4] int32
    frac: np.ndarray  # [A, H, W, 2] float32: (row, col) position minus its floor
    inside: np.ndarray  # [A, H, W] bool


@functools.lru_cache(maxsize=8)
def rotation_tables(h: int, w: int, rotate: int) -> RotationTables:
    """Tables of ``scipy.ndimage.rotate(reshape=True, order=3, mode='constant')`` followed by
    the reference's centre crop, computed in float64 with scipy's formulas (its
    ``cosdg``/``sindg`` rotation matrix, output shape, offset and the pull mapping
    ``R @ o + offset``)."""
    from scipy import special

    rows, cols, frac, inside = [], [], [], []
    for angle in range(-rotate, rotate):
        c, s = special.cosdg(angle), special.sindg(angle)
        rot = np.array([[c, s], [-s, c]])
        bounds = rot @ np.array([[0, 0, h, h], [0, w, 0, w]])
        out_shape = (np.ptp(bounds, axis=1) + 0.5).astype(int)
        offset = (np.array([h, w]) - 1) / 2 - rot @ ((out_shape - 1) / 2)
        oy, ox = np.meshgrid(np.arange(h) + (out_shape[0] - h) // 2,
                             np.arange(w) + (out_shape[1] - w) // 2, indexing="ij")
        py = oy * rot[0, 0] + ox * rot[0, 1] + offset[0]
        px = oy * rot[1, 0] + ox * rot[1, 1] + offset[1]
        inside.append((py >= 0) & (py <= h - 1) & (px >= 0) & (px <= w - 1))
        fy, fx = np.floor(py), np.floor(px)
        taps = np.arange(-1, 3)
        rows.append(_mirror(np.clip(fy[..., None] + taps, -1, h), h))
        cols.append(_mirror(np.clip(fx[..., None] + taps, -1, w), w))
        frac.append(np.stack([py - fy, px - fx], axis=-1))
    return RotationTables(np.asarray(rows, np.int32), np.asarray(cols, np.int32),
                          np.asarray(frac, np.float32), np.asarray(inside))


def _cubic_weights(f: jax.Array) -> jax.Array:
    """Cubic B-spline weights ``[..., 4]`` of the taps at ``-1, 0, 1, 2`` from a point at
    fractional offset ``f`` in ``[0, 1)`` past tap 0."""
    g = 1.0 - f
    return jnp.stack([g ** 3 / 6.0, (4.0 - 6.0 * f ** 2 + 3.0 * f ** 3) / 6.0,
                      (4.0 - 6.0 * g ** 2 + 3.0 * g ** 3) / 6.0, f ** 3 / 6.0], axis=-1)


def rotate(img: jax.Array, angle: jax.Array, cval: jax.Array, max_angle: int) -> jax.Array:
    """Reference ``rotatefun``: rotate by the integer ``angle`` (degrees, in
    ``[-max_angle, max_angle)``) with scipy's cubic spline, outside ``cval``, centre crop."""
    h, w, _ = img.shape
    tables = rotation_tables(h, w, max_angle)
    i = angle + max_angle
    hp = jax.lax.Precision.HIGHEST
    coef = jnp.einsum("ij,jkc,lk->ilc", jnp.asarray(_spline_prefilter(h), img.dtype), img,
                      jnp.asarray(_spline_prefilter(w), img.dtype), precision=hp)
    rows, cols = jnp.asarray(tables.rows)[i], jnp.asarray(tables.cols)[i]  # [H, W, 4]
    frac = jnp.asarray(tables.frac)[i]
    wy, wx = _cubic_weights(frac[..., 0]), _cubic_weights(frac[..., 1])  # [H, W, 4]
    taps = coef[rows[..., :, None], cols[..., None, :]]  # [H, W, 4, 4, C]
    out = jnp.einsum("hwabc,hwa,hwb->hwc", taps, wy, wx, precision=hp)
    return jnp.where(jnp.asarray(tables.inside)[i][..., None], out, cval.astype(img.dtype))


# ----------------------------------------------------------------------------------------------
# A batch [N, H, W, C].


def sample(key: jax.Array, shape: tuple[int, ...], strategy: str,
           params: DCAugParams = DCAugParams()) -> Draw:
    """Per-image op and parameters for a batch of ``shape = (N, H, W, C)``, as the reference
    draws them (distributions, not its NumPy stream)."""
    ops = parse_strategy(strategy)
    if not ops:
        raise ValueError("sample needs a strategy with at least one op")
    n, h = shape[0], shape[1]
    k_op, k_off, k_size, k_angle, k_noise = jax.random.split(key, 5)
    op = jax.random.randint(k_op, (n,), 0, len(ops))
    offset = jax.random.randint(k_off, (n, 2), 0, 2 * params.crop)
    u = jax.random.uniform(k_size, (n, 2), minval=1.0 - params.scale, maxval=1.0 + params.scale)
    size = jnp.floor(u * h).astype(jnp.int32)
    angle = jax.random.randint(k_angle, (n,), -params.rotate, params.rotate)
    noise = jax.random.normal(k_noise, shape) if "noise" in ops else None
    return Draw(op, offset, size, angle, noise)


def apply(x: jax.Array, draw: Draw, strategy: str,
          params: DCAugParams = DCAugParams()) -> jax.Array:
    """Apply image ``i``'s op ``draw.op[i]`` of ``strategy`` with its drawn parameters (the
    reference ``augment`` given the same draws). ``x``: normalised ``[N, H, W, C]``."""
    ops = parse_strategy(strategy)
    if not ops:
        return x
    mean = jnp.mean(x, axis=(0, 1, 2))  # per channel, before augmentation
    outs = {}
    if "crop" in ops:
        outs["crop"] = jax.vmap(lambda im, o: crop(im, o, params.crop, mean))(x, draw.offset)
    if "scale" in ops:
        outs["scale"] = jax.vmap(scale)(x, draw.size)
    if "rotate" in ops:
        cval = jnp.mean(mean)
        outs["rotate"] = jax.vmap(lambda im, a: rotate(im, a, cval, params.rotate))(
            x, draw.angle)
    if "noise" in ops:
        outs["noise"] = x + jnp.asarray(params.noise, x.dtype) * draw.noise.astype(x.dtype)
    out = x
    for i, op in enumerate(ops):
        out = jnp.where((draw.op == i)[:, None, None, None], outs[op], out)
    return out


def augment(key: jax.Array, x: jax.Array, strategy: str = MNIST_STRATEGY,
            params: DCAugParams = DCAugParams()) -> jax.Array:
    """DC augmentation of the batch ``x [N, H, W, C]``: one random op of ``strategy`` per image
    with its own random parameters (``sample`` then ``apply``)."""
    x = jnp.asarray(x)
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"DC augmentation expects float images [N, H, W, C], got {x.dtype} "
                         f"{x.shape}")
    if not parse_strategy(strategy):
        return x
    return apply(x, sample(key, x.shape, strategy, params), strategy, params)
