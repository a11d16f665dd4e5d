"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen 2021) in pure JAX.

A faithful port of the reference `DiffAugment` / `ParamDiffAug` (VICO-UoE/DatasetCondensation,
utils.py) for channels-last normalised images `[N, H, W, C]`:

- color: brightness `x + (u - 0.5) * 1.0`, then saturation `(x - mean_c) * (2u) + mean_c` (mean
  over channels per pixel), then contrast `(x - mean) * (u + 0.5) + mean` (mean per image);
- crop: translate by an integer shift in `[-s, s]`, `s = int(H * 0.125 + 0.5)`, zero fill;
- cutout: zero a `int(H * 0.5 + 0.5)` square centred at a random offset (clipped to the image);
- flip: horizontal flip with probability 0.5;
- scale: affine `diag(sx, sy)`, `sx, sy ~ U(1/1.2, 1.2)`;
- rotate: affine rotation by `U(-15, 15)` degrees (90 = anticlockwise quarter turn).

Scale and rotate use `affine_grid` + bilinear `grid_sample` with zero padding, as in PyTorch.

Siamese semantics: with `siamese=True` (the reference's "batchmode", used in distillation where
the real and the synthetic batch share a seed) every image gets the same parameters, drawn from
`key` alone, so batches of different sizes given the same key get the same transformation. With
`siamese=False` (training networks in evaluation) each image gets its own parameters. In both
cases the single-strategy mode "S" picks one op per call for the whole batch, like the reference.

Every op is affine in the images for a fixed key, so gradients flow to the images exactly.
Each random op is `sample_draws` (the raw uniform/integer numbers, as the reference's
`torch.rand`/`torch.randint`) followed by `apply_draws` (the reference's formulas), so a caller can
apply an op with given draws (the parity tests use the official code's own).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

STRATEGY = "color_crop_cutout_flip_scale_rotate"
OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
MODES = ("S", "M")


@dataclasses.dataclass(frozen=True)
class DSAParams:
    """Reference `ParamDiffAug` defaults (hashable, so it can be a static jit argument).

    mode: "S" applies one randomly chosen op of the strategy per call (reference default),
    "M" applies all ops of the strategy in order. `align_corners`: the official DM/DC code calls
    `F.affine_grid`/`F.grid_sample` with torch's default False, its TM code passes True; for
    square images both give the same centred pixel map (measured against the official DM ops:
    within 6e-6 either way, float32 rounding; `tests/test_parity_dsa.py`).
    """

    mode: str = "S"
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    align_corners: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"DSAParams.mode must be one of {MODES}, got {self.mode!r}")
        if self.ratio_scale < 1.0:
            raise ValueError(f"DSAParams.ratio_scale must be >= 1, got {self.ratio_scale}")


# ----------------------------------------------------------------------------------------------
# Deterministic ops on one image [H, W, C] with scalar parameters (vmapped over the batch below).


def brightness(img: jax.Array, b: jax.Array) -> jax.Array:
    """Add the offset `b` to every value."""
    return img + b


def saturation(img: jax.Array, s: jax.Array) -> jax.Array:
    """Scale each pixel's deviation from its channel mean by `s`."""
    m = jnp.mean(img, axis=-1, keepdims=True)
    return (img - m) * s + m


def contrast(img: jax.Array, c: jax.Array) -> jax.Array:
    """Scale the deviation from the image mean by `c`."""
    m = jnp.mean(img)
    return (img - m) * c + m


def translate(img: jax.Array, tx: jax.Array, ty: jax.Array, pad: tuple[int, int]) -> jax.Array:
    """`out[i, j] = img[i + tx, j + ty]`, zero outside; needs `|tx| <= pad[0]`, `|ty| <= pad[1]`."""
    h, w, c = img.shape
    padded = jnp.pad(img, ((pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    return jax.lax.dynamic_slice(padded, (pad[0] + tx, pad[1] + ty, 0), (h, w, c))


def cutout(img: jax.Array, ox: jax.Array, oy: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Zero rows `[ox - size//2, ox - size//2 + size)` x the same for columns (clipped)."""
    h, w, _ = img.shape
    r = jnp.arange(h) - (ox - size[0] // 2)
    q = jnp.arange(w) - (oy - size[1] // 2)
    hole = ((r >= 0) & (r < size[0]))[:, None] & ((q >= 0) & (q < size[1]))[None, :]
    return jnp.where(hole[..., None], jnp.zeros((), img.dtype), img)


def flip(img: jax.Array, f: jax.Array) -> jax.Array:
    """Mirror the width axis when `f` is true."""
    return jnp.where(f, img[:, ::-1], img)


def affine_grid(theta: jax.Array, h: int, w: int, align_corners: bool) -> jax.Array:
    """PyTorch `F.affine_grid` for one `[2, 3]` matrix: normalised points `[h, w, 2]` as (x, y)."""
    if align_corners:
        xs, ys = jnp.linspace(-1.0, 1.0, w), jnp.linspace(-1.0, 1.0, h)
    else:
        xs, ys = (2.0 * jnp.arange(w) + 1.0) / w - 1.0, (2.0 * jnp.arange(h) + 1.0) / h - 1.0
    base = jnp.stack(jnp.broadcast_arrays(xs[None, :], ys[:, None], jnp.ones((h, w))), axis=-1)
    return base @ theta.T


def grid_sample(img: jax.Array, grid: jax.Array, align_corners: bool) -> jax.Array:
    """PyTorch `F.grid_sample` (bilinear, zero padding) of `img [H, W, C]` at `grid [h, w, 2]`.

    Four gathers with bilinear weights; out-of-image corners get weight 0. Linear in `img`.
    """
    h, w, c = img.shape
    gx, gy = grid[..., 0], grid[..., 1]
    if align_corners:
        ix, iy = (gx + 1.0) * 0.5 * (w - 1), (gy + 1.0) * 0.5 * (h - 1)
    else:
        ix, iy = ((gx + 1.0) * w - 1.0) * 0.5, ((gy + 1.0) * h - 1.0) * 0.5
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    fx, fy = ix - x0, iy - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    flat = img.reshape(h * w, c)
    out = jnp.zeros(grid.shape[:-1] + (c,), img.dtype)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
            idx = jnp.clip(yy, 0, h - 1) * w + jnp.clip(xx, 0, w - 1)
            weight = jnp.where(inside, wy * wx, 0.0).astype(img.dtype)
            out = out + flat[idx] * weight[..., None]
    return out


def affine(img: jax.Array, theta: jax.Array, align_corners: bool = True) -> jax.Array:
    """Resample one image through the `[2, 3]` affine map `theta` (output -> input coordinates)."""
    h, w, _ = img.shape
    return grid_sample(img, affine_grid(theta, h, w, align_corners), align_corners)


def scale_theta(sx: jax.Array, sy: jax.Array) -> jax.Array:
    """Reference `rand_scale` matrix `[[sx, 0, 0], [0, sy, 0]]`."""
    z = jnp.zeros_like(sx)
    return jnp.stack([jnp.stack([sx, z, z]), jnp.stack([z, sy, z])])


def rotate_theta(angle: jax.Array) -> jax.Array:
    """Reference `rand_rotate` matrix for `angle` in radians (positive = anticlockwise)."""
    c, s, z = jnp.cos(angle), jnp.sin(angle), jnp.zeros_like(angle)
    return jnp.stack([jnp.stack([c, -s, z]), jnp.stack([s, c, z])])


# ----------------------------------------------------------------------------------------------
# Random ops on a batch [N, H, W, C].


def _per_batch(fn: Callable, x: jax.Array, *args: jax.Array, siamese: bool) -> jax.Array:
    """vmap `fn(img, *args)` over the batch; shared (unbatched) args in siamese mode."""
    return jax.vmap(fn, in_axes=(0,) + (None if siamese else 0,) * len(args))(x, *args)


def _uniform(key: jax.Array, n: int, siamese: bool) -> jax.Array:
    return jax.random.uniform(key, () if siamese else (n,))


def _randint(key: jax.Array, n: int, lo: int, hi: int, siamese: bool) -> jax.Array:
    """Integers in `[lo, hi)` like `torch.randint(lo, hi)`."""
    return jax.random.randint(key, () if siamese else (n,), lo, hi)


def _crop_pad(x: jax.Array, p: DSAParams) -> tuple[int, int]:
    return int(x.shape[1] * p.ratio_crop_pad + 0.5), int(x.shape[2] * p.ratio_crop_pad + 0.5)


def _cutout_size(x: jax.Array, p: DSAParams) -> tuple[int, int]:
    return int(x.shape[1] * p.ratio_cutout + 0.5), int(x.shape[2] * p.ratio_cutout + 0.5)


def sample_draws(key: jax.Array, op: str, x: jax.Array, params: DSAParams = DSAParams(),
                 siamese: bool = True) -> dict[str, jax.Array]:
    """The raw random numbers that op `op` draws for the batch `x` (scalars when `siamese`,
    else `[N]`), named as in `apply_draws`; the reference's `torch.rand`/`torch.randint` values.

    - color: `brightness`, `saturation`, `contrast` ~ U[0, 1);
    - crop: integer shifts `x`, `y` in `[-s, s]`; cutout: integer centres `x`, `y` in
      `[0, H + 1 - size % 2)` (resp. W);
    - flip: `flip` ~ U[0, 1); scale: `x`, `y` ~ U[0, 1); rotate: `angle` ~ U[0, 1).
    """
    n, h, w, _ = x.shape
    if op == "color":
        kb, ks, kc = jax.random.split(key, 3)
        return {"brightness": _uniform(kb, n, siamese), "saturation": _uniform(ks, n, siamese),
                "contrast": _uniform(kc, n, siamese)}
    kx, ky = jax.random.split(key)
    if op == "crop":
        sh, sw = _crop_pad(x, params)
        return {"x": _randint(kx, n, -sh, sh + 1, siamese),
                "y": _randint(ky, n, -sw, sw + 1, siamese)}
    if op == "cutout":
        size = _cutout_size(x, params)
        return {"x": _randint(kx, n, 0, h + (1 - size[0] % 2), siamese),
                "y": _randint(ky, n, 0, w + (1 - size[1] % 2), siamese)}
    if op == "flip":
        return {"flip": _uniform(key, n, siamese)}
    if op == "scale":
        return {"x": _uniform(kx, n, siamese), "y": _uniform(ky, n, siamese)}
    if op == "rotate":
        return {"angle": _uniform(key, n, siamese)}
    raise ValueError(f"unknown DSA op {op!r}; known: {OPS}")


def apply_draws(x: jax.Array, op: str, draws: dict[str, jax.Array],
                params: DSAParams = DSAParams(), siamese: bool = True) -> jax.Array:
    """Apply op `op` to the batch `x [N, H, W, C]` with the given raw draws (see
    `sample_draws`: scalars shared by the batch when `siamese`, else one per image). Maps them
    to the op's parameters with the reference's formulas; the parity tests feed it the official
    code's own draws."""
    dt = x.dtype
    d = {k: jnp.asarray(v) for k, v in draws.items()}
    if op == "color":
        x = _per_batch(brightness, x, ((d["brightness"] - 0.5) * params.brightness).astype(dt),
                       siamese=siamese)
        x = _per_batch(saturation, x, (d["saturation"] * params.saturation).astype(dt),
                       siamese=siamese)
        return _per_batch(contrast, x, (d["contrast"] + params.contrast).astype(dt),
                          siamese=siamese)
    if op == "crop":
        pad = _crop_pad(x, params)
        return _per_batch(lambda im, a, b: translate(im, a, b, pad), x, d["x"], d["y"],
                          siamese=siamese)
    if op == "cutout":
        size = _cutout_size(x, params)
        return _per_batch(lambda im, a, b: cutout(im, a, b, size), x, d["x"], d["y"],
                          siamese=siamese)
    if op == "flip":
        return _per_batch(flip, x, d["flip"] < params.prob_flip, siamese=siamese)
    if op == "scale":
        r = params.ratio_scale
        sx, sy = (d[a] * (r - 1.0 / r) + 1.0 / r for a in ("x", "y"))
        theta = (scale_theta if siamese else jax.vmap(scale_theta))(sx, sy)
        return _affine_batch(x, theta, params.align_corners, siamese)
    if op == "rotate":
        angle = (d["angle"] - 0.5) * 2.0 * params.ratio_rotate / 180.0 * math.pi
        theta = (rotate_theta if siamese else jax.vmap(rotate_theta))(angle)
        return _affine_batch(x, theta, params.align_corners, siamese)
    raise ValueError(f"unknown DSA op {op!r}; known: {OPS}")


def _affine_batch(x: jax.Array, theta: jax.Array, align_corners: bool, siamese: bool) -> jax.Array:
    """`affine` over a batch. With one shared `theta` the batch is sampled as a single
    `[H, W, N*C]` image: contiguous rows make the gradient's scatter-add cheaper on CPU."""
    if not siamese:
        return jax.vmap(lambda im, t: affine(im, t, align_corners))(x, theta)
    n, h, w, c = x.shape
    img = jnp.transpose(x, (1, 2, 0, 3)).reshape(h, w, n * c)
    out = affine(img, theta, align_corners).reshape(h, w, n, c)
    return jnp.transpose(out, (2, 0, 1, 3))


def _random_op(op: str) -> Callable:
    def fn(key: jax.Array, x: jax.Array, p: DSAParams, siamese: bool) -> jax.Array:
        return apply_draws(x, op, sample_draws(key, op, x, p, siamese), p, siamese)

    return fn


_RANDOM_OPS = {op: _random_op(op) for op in OPS}


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Op names of a `_`-separated strategy; `""`, `"none"` and `"None"` mean no augmentation."""
    if strategy in ("", "none", "None"):
        return ()
    ops = tuple(strategy.split("_"))
    unknown = [o for o in ops if o not in _RANDOM_OPS]
    if unknown:
        raise ValueError(f"unknown DSA op(s) {unknown} in strategy {strategy!r}; known: {OPS}")
    return ops


def op_index(key: jax.Array, num_ops: int) -> jax.Array:
    """Index of the op that single-strategy mode applies for `key` (int32 scalar)."""
    return jax.random.randint(jax.random.fold_in(key, 0), (), 0, num_ops)


def apply_op(key: jax.Array, x: jax.Array, op: str, params: DSAParams = DSAParams(),
             siamese: bool = True) -> jax.Array:
    """Apply one named op with random parameters drawn from `key`."""
    parse_strategy(op)
    return _RANDOM_OPS[op](key, x, params, siamese)


def dsa(key: jax.Array, x: jax.Array, strategy: str = STRATEGY, params: DSAParams = DSAParams(),
        siamese: bool = True) -> jax.Array:
    """Differentiable siamese augmentation of normalised images `x [N, H, W, C]`.

    Mode "S" (default) applies one op of `strategy`, chosen from `key` via `lax.switch` (so it
    compiles once); mode "M" applies all of them in order. `siamese=True` shares one parameter set
    over the batch, drawn from `key` only (the same key gives the same transform for a real and a
    synthetic batch of different sizes); `siamese=False` draws parameters per image. Under an outer
    vmap with different keys, `lax.switch` evaluates all branches and selects.
    """
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"dsa expects images [N, H, W, C], got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"dsa expects floating-point (normalised) images, got {x.dtype}")
    ops = parse_strategy(strategy)
    if not ops:
        return x
    op_key = jax.random.fold_in(key, 1)
    if params.mode == "M":
        for i, op in enumerate(ops):
            x = _RANDOM_OPS[op](jax.random.fold_in(op_key, i), x, params, siamese)
        return x
    branches = [lambda k, v, op=op: _RANDOM_OPS[op](k, v, params, siamese) for op in ops]
    if len(branches) == 1:
        return branches[0](op_key, x)
    return jax.lax.switch(op_index(key, len(ops)), branches, op_key, x)


def given_draws_layout(strategy: str, n: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the given-draws pytree of :func:`dsa_given` for a batch of ``n``: ``op`` (the
    index of the op that mode "S" applies) and ``<op>_<name>`` for every draw of every op of
    the strategy (per image)."""
    out: dict[str, tuple[int, ...]] = {"op": ()}
    for op in parse_strategy(strategy):
        for name in _DRAW_NAMES[op]:
            out[f"{op}_{name}"] = (n,)
    return out


_DRAW_NAMES = {"color": ("brightness", "saturation", "contrast"), "crop": ("x", "y"),
               "cutout": ("x", "y"), "flip": ("flip",), "scale": ("x", "y"), "rotate": ("angle",)}


def dsa_given(draws: dict[str, jax.Array], x: jax.Array, strategy: str = STRATEGY,
              params: DSAParams = DSAParams(), siamese: bool = False) -> jax.Array:
    """:func:`dsa` mode "S" with given random numbers instead of a key: ``draws["op"]`` picks
    the op of ``strategy`` and ``draws["<op>_<name>"]`` are its raw draws (layout:
    :func:`given_draws_layout`; the draws of the ops not picked are ignored). Replays another
    implementation's random choices, e.g. the official code's in the parity tests."""
    ops = parse_strategy(strategy)
    if not ops:
        return x
    branches = [lambda v, op=op: apply_draws(
        v, op, {n: draws[f"{op}_{n}"] for n in _DRAW_NAMES[op]}, params, siamese) for op in ops]
    return jax.lax.switch(jnp.asarray(draws["op"], jnp.int32), branches, x)

