"""Parity of the DM objective with the official FreD code (``tests/golden/dm.npz``, written by
``benchmarks/parity/ref_dm.py``): the loss of :func:`fred_jax.objectives.dm.loss` on the same
decoded set, real batches and ConvNet weights, and its gradient w.r.t. the kept coefficients.

Coordinates: the official code learns unnormalised torch-dct coefficients ``f = s * c`` (``s =
transforms.torch_dct_scale``), ours the orthonormal ``c``, so ``c = f / s`` and ``dL/dc = s *
dL/df``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import parity_util
from fred_jax import models, objectives, synset, transforms
from fred_jax.objectives import dm

PIECE = "dm"
TOL_LOSS, TOL_GRAD = 1e-5, 1e-4


def nhwc(x: np.ndarray) -> np.ndarray:
    """Channels-first (official) to channels-last (ours)."""
    return np.moveaxis(x, -3, -1)


def coefficient_inputs(g: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """``(coeffs [C, n, k, ch], indices [C, k], s [C, 1, k, 1], image_shape)`` of ours from the
    official kept coefficients of a golden file."""
    indices = g["indices"]
    image_shape = nhwc(g["syn_images"]).shape[1:]
    s = transforms.torch_dct_scale(image_shape[:-1]).reshape(-1)[indices][:, None, :, None]
    return (g["freq_kept"] / s).astype(np.float32), indices, s, image_shape


@functools.lru_cache(maxsize=None)
def _ours(conv_impl: str, chunk: int) -> tuple[float, np.ndarray, np.ndarray]:
    g = parity_util.load_golden(PIECE)
    coeffs, indices, _, image_shape = coefficient_inputs(g)
    num_classes = indices.shape[0]
    model = models.get("ConvNet", num_classes, image_shape, conv_impl=conv_impl)
    variables = {"params": parity_util.convnet_params_from_torch(parity_util.torch_state(g))}
    real = jnp.asarray(nhwc(g["real"]))

    def loss(c):
        syn = synset.decode(c, jnp.asarray(indices), "dct", image_shape)
        return dm.loss(model, variables, real, syn, jax.random.key(0), strategy="none",
                       chunk=chunk), syn

    (value, syn), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(jnp.asarray(coeffs))
    return float(value), np.asarray(syn), np.asarray(grad)


def rows() -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    _, _, s, _ = coefficient_inputs(g)
    syn_ref = nhwc(g["syn_images"]).reshape(*g["freq_kept"].shape[:2], -1)
    out = []
    for impl, chunk in ((objectives.default_conv_impl("dm"), 0), ("lax", 4)):
        value, syn, grad = _ours(impl, chunk)
        tag = f"conv_impl={impl}, chunk={chunk}"
        if chunk == 0:
            out.append(parity_util.compare(PIECE, "decoded synthetic images", syn.reshape(
                syn_ref.shape), syn_ref, 1e-5, "DCT.inverse(mask*freq) vs decode(freq/s)"))
        out.append(parity_util.compare(PIECE, f"loss ({tag})", value, g["loss"], TOL_LOSS,
                                       "sum_c sqnorm(mean embed real - mean embed syn)"))
        out.append(parity_util.compare(PIECE, f"grad coeffs ({tag})", grad, s * g["grad_freq"],
                                       TOL_GRAD, "ours = s * official grad of freq_syn"))
    return out


def test_dm_loss_matches_official():
    parity_util.assert_rows([r for r in rows() if not r.quantity.startswith("grad")])


def test_dm_gradient_matches_official():
    parity_util.assert_rows([r for r in rows() if r.quantity.startswith("grad")])
