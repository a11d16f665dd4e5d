"""Distribution matching (DM; Zhao & Bilen, WACV 2023) on decoded synthetic images.

Per class c: ``|| mean_i embed(aug(real_c,i)) - mean_j embed(aug(syn_c,j)) ||^2`` through a
network freshly initialised every iteration (features before the classifier), summed over
classes. The real and the synthetic batch of a class share one DSA key (siamese), classes use
different keys, and the real embeddings carry no gradient. Without a device mesh the real
side runs class by class (``lax.map``: only the chosen DSA op, C times less activation memory)
and the synthetic side as one batched pass over all classes; with a mesh both are a vmap over
the class axis split over the devices.

The real embeddings are computed ``chunk`` images at a time (``lax.map``), summed, then divided:
the same mean, but the activations of a chunk stay in the CPU cache. At CIFAR-10 shapes
(2560 real images through ConvNet) a 2-core CPU took 2.8 s for 256-image passes and 1.6 s for
32-image chunks (``benchmarks/step_time.py``); accelerators prefer large chunks.

Reference: VICO-UoE/DatasetCondensation ``main_DM.py`` and sdh0818/FreD ``DM/main_DM_FreD.py``.
Deviation: a BatchNorm matching network normalises each class's batch on its own (the
reference concatenates the classes for BN variants); the default ConvNet (instance norm) is
unaffected.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fred_jax import augment, data, sharding
from fred_jax.objectives.base import Objective, Problem, single_step


def chunk_size(total: int, chunk: int) -> int:
    """The largest divisor of ``total`` that is at most ``chunk`` (>= 1)."""
    return max(d for d in range(1, min(total, chunk) + 1) if total % d == 0)


def embed(model: nn.Module, variables: Any, x: jax.Array) -> jax.Array:
    """Features ``[N, F]`` of ``x`` (BatchNorm variants in train mode, statistics discarded)."""
    if "batch_stats" in variables:
        out, _ = model.apply(variables, x, train=True, features=True, mutable=["batch_stats"])
        return out
    return model.apply(variables, x, train=False, features=True)


def loss(
    model: nn.Module,
    variables: Any,
    real: jax.Array,
    syn: jax.Array,
    key: jax.Array,
    *,
    strategy: str = augment.STRATEGY,
    dsa_params: augment.DSAParams = augment.DSAParams(),
    mesh: Any = None,
    chunk: int = 0,
) -> jax.Array:
    """DM loss summed over classes.

    real: ``[C, B, *spatial, ch]``; syn: ``[C, n, *spatial, ch]`` (differentiable); key: this
    iteration's augmentation key, split into one key per class; strategy: DSA strategy
    (``""``/``"none"``: no augmentation); chunk: real images per embedding pass (0: all ``B``;
    otherwise the largest divisor of ``B`` not above it; BatchNorm networks always use ``B`` so
    that the batch statistics are the class batch's).
    """
    if real.shape[0] != syn.shape[0] or real.shape[2:] != syn.shape[2:]:
        raise ValueError(f"real {real.shape} and syn {syn.shape} must be [C, *, *image]")
    use_dsa = bool(augment.parse_strategy(strategy))
    keys = jax.random.split(key, real.shape[0])

    def augment_(k, x):
        return augment.dsa(k, x, strategy, dsa_params, siamese=True) if use_dsa else x

    size = real.shape[1] if chunk <= 0 or "batch_stats" in variables else chunk_size(
        real.shape[1], chunk)

    def real_mean(k, r):
        r = augment_(k, r).reshape(-1, size, *r.shape[1:])
        sums = jax.lax.map(lambda x: embed(model, variables, x).sum(axis=0), r)
        return sums.sum(axis=0) / real.shape[1]

    def syn_mean(s):
        return embed(model, variables, s).mean(axis=0)

    real = jax.lax.stop_gradient(real)
    if mesh is None:
        # Real side class by class (lax.map): 256-image batches, only the chosen DSA op (a
        # vmapped lax.switch evaluates every branch), C times less activation memory. The
        # synthetic side is small: one batched pass over all classes.
        mean_real = jax.lax.map(lambda a: real_mean(*a), (keys, real))
        syn = jax.lax.map(lambda a: augment_(*a), (keys, syn))
        mean_syn = jax.vmap(syn_mean)(syn)
    else:
        mean_real = sharding.sharded_vmap(real_mean, mesh)(keys, real)
        syn = sharding.sharded_vmap(augment_, mesh)(keys, syn)
        mean_syn = sharding.sharded_vmap(syn_mean, mesh)(syn)
    return jnp.sum((jax.lax.stop_gradient(mean_real) - mean_syn) ** 2)


def build(config: Any, problem: Problem) -> Objective:
    """DM objective: every iteration a fresh ``problem.model``, ``config.dm.batch_real`` real
    images per class, DSA ``config.dsa_strategy``, one optimiser step on the coefficients."""
    batch_real, chunk = int(config.dm.batch_real), int(config.dm.chunk)
    strategy = config.dsa_strategy
    model, shape = problem.model, problem.image_shape

    def loss_fn(learnable, key):
        k_net, k_real, k_aug = jax.random.split(key, 3)
        variables = model.init(k_net, jnp.zeros((1, *shape), jnp.float32))
        idx = data.sample_per_class(k_real, problem.class_index, batch_real)
        real = problem.x_train[idx]
        syn = problem.decode(learnable["coeffs"])
        value = loss(model, variables, real, syn, k_aug, strategy=strategy, mesh=problem.mesh,
                     chunk=chunk)
        return value, {"loss_per_class": value / problem.num_classes}

    return Objective(name="dm", update=single_step(loss_fn))


__all__ = ["build", "chunk_size", "embed", "loss"]
