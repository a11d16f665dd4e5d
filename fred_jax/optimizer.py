"""The optimiser of the learnables, and the unit of the coefficients' learning rate.

Every learnable leaf is updated by optax (``optax.multi_transform``): SGD with momentum on the
coefficients, scaled per coefficient by :func:`coefficient_lr_scale`, and the objective's own
optimiser on every extra leaf (e.g. TM's ``syn_lr``).

Learning rate of the coefficients. The official FreD code optimises coefficients of the
*unnormalised* DCT-II of torch-dct (``norm=None``): per axis of length N,
``X_k = 2 sum_n x_n cos(pi k (2n+1) / 2N)``, i.e. ``s_0 = 2 sqrt(N)`` and ``s_k = sqrt(2N)``
times our orthonormal coefficient; a 2-D coefficient ``(k1, k2)`` is scaled by
``s = s_k1(H) * s_k2(W)``. With ``c_ref = s c``, ``dL/dc = s dL/dc_ref``, so an SGD(+momentum)
step of rate ``lr_ref`` on ``c_ref`` is, in our coordinates, a step of rate ``lr_ref / s^2`` per
coefficient. ``lr_convention = "torch_dct"`` applies exactly that per-coefficient factor, so
``config.lr`` is the reference's value (DM 1e6, DC 1e3 on 32x32: 1e6 / 64^2 = 244 for most
coefficients, 61 for the DC term). ``"orthonormal"``: ``config.lr`` is used as is (pixels,
other transforms). Which convention a run uses: ``fred_jax.parameterization.resolve``.
``tests/test_objectives.py`` checks the equivalence on a toy problem.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fred_jax import transforms
from fred_jax.parameterization import LR_CONVENTIONS

PyTree = Any


def coefficient_lr_scale(
    indices: np.ndarray, image_shape: Sequence[int], transform: str, convention: str
) -> np.ndarray:
    """Per-coefficient factor ``[C, 1, k, 1]`` on the coefficient learning rate (module doc)."""
    indices = np.asarray(indices)
    if convention == "orthonormal":
        return np.ones((indices.shape[0], 1, indices.shape[1], 1), np.float32)
    if convention != "torch_dct":
        raise ValueError(f"lr_convention must be one of {LR_CONVENTIONS}, got {convention!r}")
    if transform != "dct":
        raise ValueError(f"lr_convention 'torch_dct' needs transform 'dct', got {transform!r}")
    s = transforms.torch_dct_scale(tuple(image_shape[:-1])).reshape(-1)[indices]
    return (1.0 / s**2).astype(np.float32)[:, None, :, None]


def _scale_by_array(scale: np.ndarray) -> optax.GradientTransformation:
    """Multiply every update leaf elementwise by the constant ``scale`` (broadcast)."""
    scale = jnp.asarray(scale)

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u: u * scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(
    lr: float,
    momentum: float,
    lr_scale: np.ndarray,
    extra_optimisers: dict[str, optax.GradientTransformation],
) -> optax.GradientTransformation:
    """SGD (reference momentum) on ``"coeffs"`` scaled per coefficient by ``lr_scale``;
    ``extra_optimisers[name]`` on every other learnable leaf ``name``."""
    coeffs_tx = optax.chain(
        _scale_by_array(lr_scale), optax.sgd(lr, momentum=momentum if momentum else None)
    )
    txs = {"coeffs": coeffs_tx, **extra_optimisers}
    return optax.multi_transform(txs, {name: name for name in txs})


def make_apply(
    tx: optax.GradientTransformation,
) -> Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]:
    """``apply(learnable, opt_state, grads) -> (learnable, opt_state)``: one optax step (the
    ``fred_jax.objectives.Apply`` that objectives call)."""

    def apply(learnable, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, learnable)
        return optax.apply_updates(learnable, updates), opt_state

    return apply
