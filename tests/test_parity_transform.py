"""Parity of the frequency transform, the decode and the coefficient optimiser with the official
FreD code (golden file from ``benchmarks/parity/ref_transform.py``).

- ``t32``/``t28``: the official torch-dct DCT (``norm=None``) equals our orthonormal DCT times
  ``transforms.torch_dct_scale`` (forward), and its inverse equals ours of the coefficients
  divided by that scale.
- ``c32``/``m28``: the official ``SynSet.get`` (``dct.inverse(mask * freq)``) equals our
  ``synset.decode`` of the kept coefficients (divided by the scale), and after 1 and 3 steps of
  the official SGD (lr 1e6, momentum 0.5) on a fixed loss our ``optimizer.make_optimizer`` with
  ``coefficient_lr_scale(..., "torch_dct")`` gives the same decoded images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import parity_util
from fred_jax import optimizer, synset, transforms

PIECE = "transform"
TOL = 1e-5  # float32, relative to the largest reference value


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.asarray(x), -3, -1)


def _weights(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The reference script's ``weights``: the loss's ``w`` and ``target`` (NCHW)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    return w, rng.standard_normal(shape).astype(np.float32)


def _transform_rows(g: dict) -> list[parity_util.Row]:
    rows = []
    t = transforms.get("dct")
    for name in ("t32", "t28"):
        x, y = _nhwc(g[f"{name}_x"]), _nhwc(g[f"{name}_y"])
        scale = transforms.torch_dct_scale(x.shape[1:3])[..., None]
        fwd = np.asarray(t.forward(jnp.asarray(x))) * scale
        inv = np.asarray(t.inverse(jnp.asarray((y / scale).astype(np.float32))))
        shape = "x".join(map(str, g[f"{name}_x"].shape))
        rows.append(parity_util.compare(PIECE, f"dct forward {shape}", fwd,
                                        _nhwc(g[f"{name}_fwd"]), TOL, "ours x torch_dct_scale"))
        rows.append(parity_util.compare(PIECE, f"dct inverse {shape}", inv,
                                        _nhwc(g[f"{name}_inv"]), TOL, "ours of coeffs / scale"))
    return rows


def _synset_rows(g: dict, name: str) -> list[parity_util.Row]:
    mask = g[f"{name}_mask"]  # [C, H, W]
    kept = g[f"{name}_kept0"]  # [C, n, ch, k]
    c, n, ch, k = kept.shape
    spatial = mask.shape[1:]
    image_shape = (*spatial, ch)
    indices = np.stack([np.flatnonzero(m) for m in mask.reshape(c, -1)]).astype(np.int32)
    scale = transforms.torch_dct_scale(spatial).reshape(-1)[indices]  # [C, k]
    coeffs = np.swapaxes(kept, 2, 3) / scale[:, None, :, None]  # [C, n, k, ch]
    params = {"coeffs": jnp.asarray(coeffs, jnp.float32)}
    idx = jnp.asarray(indices)

    total = int(g[f"{name}_n"]) * 10
    w, target = _weights(int(g["wt_seed"]), (total, ch, *spatial))
    w, target = (jnp.asarray(_nhwc(a[: c * n]).reshape(c, n, *image_shape)) for a in (w, target))
    lam = float(g["lam"])

    def decoded(p):
        return synset.decode(p["coeffs"], idx, "dct", image_shape)

    def loss(p):
        x = decoded(p)
        return jnp.sum(w * x) + lam / 2 * jnp.sum((x - target) ** 2)

    lr_scale = optimizer.coefficient_lr_scale(indices, image_shape, "dct", "torch_dct")
    tx = optimizer.make_optimizer(float(g["lr"]), float(g["momentum"]), lr_scale, {})
    state = tx.init(params)
    shape = "x".join(map(str, image_shape))
    rows = []

    def ref(step):
        return _nhwc(g[f"{name}_decoded{step}"]).reshape(c, n, *image_shape)

    rows.append(parity_util.compare(PIECE, f"decode {shape} n{n} k{k}", decoded(params), ref(0),
                                    TOL, "official SynSet.get vs synset.decode"))
    grad = jax.jit(jax.grad(loss))
    for step in range(1, 4):
        updates, state = tx.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        if step in (1, 3):
            rows.append(parity_util.compare(
                PIECE, f"SGD step {step} {shape}", decoded(params), ref(step), TOL,
                f"lr {g['lr']:.0e} mom {g['momentum']}, lr_convention torch_dct"))
    return rows


def rows() -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    return _transform_rows(g) + _synset_rows(g, "c32") + _synset_rows(g, "m28")


def test_dct_matches_official():
    parity_util.assert_rows(_transform_rows(parity_util.load_golden(PIECE)))


def test_decode_and_sgd_match_official_cifar_shape():
    parity_util.assert_rows(_synset_rows(parity_util.load_golden(PIECE), "c32"))


def test_decode_and_sgd_match_official_mnist_shape():
    parity_util.assert_rows(_synset_rows(parity_util.load_golden(PIECE), "m28"))
