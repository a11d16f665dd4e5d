"""Distribution matching (DM; Zhao & Bilen, WACV 2023) on decoded synthetic images.

Per class c: ``|| mean_i embed(aug(real_c,i)) - mean_j embed(aug(syn_c,j)) ||^2`` through a
network freshly initialised every iteration (features before the classifier), summed over
classes. The real and the synthetic batch of a class share one DSA key (siamese), classes use
different keys, and the real embeddings carry no gradient.

The layout is the backend policy's (:mod:`fred_jax.platform`, ``classes_in_loop``). On XLA:CPU
without a device mesh the network sees the flattened classes. The real images go ``chunk`` at a
time through one ``lax.map`` that augments each chunk with its class's key (siamese DSA draws one
parameter set per key, so a chunk gets its class's transform) and sums its embeddings; the sums
are divided at the end (the same mean, but a chunk's activations stay in the CPU cache). The
synthetic images, augmented class by class (``lax.map``: a vmapped ``lax.switch`` would evaluate
every DSA branch), are embedded in at most ``MAX_SYN_PIECES`` unrolled pieces of at least
``chunk`` images: unrolled because XLA:CPU's convolution gradients are slow inside loops, in
pieces because whole-set activations (tens of MB per layer for 160 CIFAR images) spill the L3
cache of a small CPU; at CIFAR-10 shapes this is markedly faster than 256-image passes with
vmapped classes (``benchmarks/step_time.py``, ``benchmarks/RESULTS.md``). On GPU/TPU, and with
a mesh, every side
is a vmap over the class axis (split over the mesh's devices) and ``dm.chunk`` is unused.
BatchNorm networks see all classes' real images in one batch and all synthetic images in
another, like the reference, except over a mesh (BatchNorm statistics per class there).

Reference: VICO-UoE/DatasetCondensation ``main_DM.py`` and sdh0818/FreD ``DM/main_DM_FreD.py``.
Settings: the ``config.dm`` section (:mod:`fred_jax.objectives.dm_config`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fred_jax import augment, data, platform, sharding
from fred_jax.objectives.base import Objective, Problem, single_step
from fred_jax.objectives.dm_config import check, defaults


MAX_SYN_PIECES = 8
"""Most unrolled synthetic-side pieces per DM step without a mesh (bounds the program size)."""


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
    in_loop: bool | None = None,
) -> jax.Array:
    """DM loss summed over classes.

    real: ``[C, B, *spatial, ch]``; syn: ``[C, n, *spatial, ch]`` (differentiable); key: this
    iteration's augmentation key, split into one key per class; strategy: DSA strategy
    (``""``/``"none"``: no augmentation); chunk: real images per embedding pass without a mesh
    (0: ``B``; otherwise the largest divisor of ``B`` not above it) and the smallest
    synthetic piece (0: all ``C * n`` at once); ignored for BatchNorm networks. in_loop: the
    class-flattened chunked path above (True) or a vmap over classes split over ``mesh``
    (False); None: the backend policy's ``classes_in_loop`` (:mod:`fred_jax.platform`).
    """
    if real.shape[0] != syn.shape[0] or real.shape[2:] != syn.shape[2:]:
        raise ValueError(f"real {real.shape} and syn {syn.shape} must be [C, *, *image]")
    use_dsa = bool(augment.parse_strategy(strategy))
    keys = jax.random.split(key, real.shape[0])

    def augment_(k, x):
        return augment.dsa(k, x, strategy, dsa_params, siamese=True) if use_dsa else x

    real = jax.lax.stop_gradient(real)
    if in_loop is None:
        in_loop = platform.policy(mesh=mesh).classes_in_loop
    num_classes, batch = real.shape[:2]
    n = syn.shape[1]
    if "batch_stats" in variables and mesh is None:
        # Semantics, not speed: the reference's one BatchNorm batch of all classes' augmented
        # images (split over a mesh, each class has its own statistics).
        def class_means(x):
            x = jax.lax.map(lambda a: augment_(*a), (keys, x))
            feats = embed(model, variables, x.reshape(-1, *x.shape[2:]))
            return feats.reshape(num_classes, x.shape[1], -1).mean(axis=1)

        mean_real, mean_syn = class_means(real), class_means(syn)
    elif in_loop:
        size = chunk_size(batch, chunk if chunk > 0 else batch)
        sums = jax.lax.map(
            lambda a: embed(model, variables, augment_(*a)).sum(axis=0),
            (jnp.repeat(keys, batch // size, axis=0), real.reshape(-1, size, *real.shape[2:])))
        mean_real = sums.reshape(num_classes, -1, sums.shape[-1]).sum(axis=1) / batch
        syn = jax.lax.map(lambda a: augment_(*a), (keys, syn)).reshape(-1, *syn.shape[2:])
        total = syn.shape[0]
        size = max(chunk if chunk > 0 else total, -(-total // MAX_SYN_PIECES))
        feats = jnp.concatenate([embed(model, variables, syn[i:i + size])
                                 for i in range(0, total, size)])
        mean_syn = feats.reshape(num_classes, n, -1).mean(axis=1)
    else:
        def class_mean(k, x):
            return embed(model, variables, augment_(k, x)).mean(axis=0)

        mean_real = sharding.sharded_vmap(class_mean, mesh)(keys, real)
        mean_syn = sharding.sharded_vmap(class_mean, mesh)(keys, syn)
    return jnp.sum((mean_real - mean_syn) ** 2)


def build(config: Any, problem: Problem) -> Objective:
    """DM objective: every iteration a fresh ``problem.model``, ``config.dm.batch_real`` real
    images per class, DSA ``config.dsa_strategy``, one optimiser step on the coefficients."""
    batch_real = int(config.dm.batch_real)
    policy = platform.policy(mesh=problem.mesh)
    chunk = int(platform.resolve(config.dm.chunk, policy.dm_chunk))
    strategy = config.dsa_strategy
    model, shape = problem.model, problem.image_shape

    def loss_fn(learnable, key):
        k_net, k_real, k_aug = jax.random.split(key, 3)
        variables = model.init(k_net, jnp.zeros((1, *shape), jnp.float32))
        idx = data.sample_per_class(k_real, problem.class_index, batch_real)
        real = problem.x_train[idx]
        syn = problem.decode(learnable["coeffs"])
        value = loss(model, variables, real, syn, k_aug, strategy=strategy, mesh=problem.mesh,
                     chunk=chunk, in_loop=policy.classes_in_loop)
        return value, {"loss_per_class": value / problem.num_classes}

    return Objective(name="dm", update=single_step(loss_fn))


__all__ = ["MAX_SYN_PIECES", "build", "check", "chunk_size", "defaults", "embed", "loss"]
