"""Trajectory matching (MTT, Cazenavette et al. 2022), the objective of FreD's headline results.

Given an expert trajectory ``theta*`` (flat parameter vectors per epoch, see
:mod:`fred_jax.expert_store`), start a student at ``theta*_t`` (t random below ``max_start_epoch``),
take ``syn_steps`` SGD steps with the learnable rate ``syn_lr`` on mini-batches of the decoded
synthetic set, and return

    ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2,   M = expert_epochs.

As in the reference (``distill.py`` / FreD ``main_TM_FreD.py``): every inner step applies DSA
with per-image parameters (the reference calls ``DiffAugment`` without a seed, its non-siamese
mode), the cross-entropy is the batch mean, and the gradient flows into the images and into
``syn_lr`` through all the steps (second order). Mini-batches: with ``batch_syn = N`` (default,
the reference's ``batch_syn=0``) every step uses the whole set; otherwise each step takes the
next ``batch_syn`` indices of a stream of random permutations (the reference takes chunks of one
permutation at a time, so it differs only when ``batch_syn`` does not divide N, where its last
chunk is smaller).

Memory: the steps run in ``lax.scan``; under ``remat`` each step's augmentation and each piece
of its gradient are ``jax.checkpoint``-ed, so the backward pass keeps per step only its inputs
(the parameter vector, ``4 P`` bytes = 1.3 MB for the CIFAR ConvNet, the augmented batch and a
running gradient sum per piece) and recomputes the activations when it needs them; without
remat every step's activations (hundreds of MB per step at the CIFAR-10 ipc=1 budget) would
stay alive. ``grad_chunk`` splits each step's gradient into sequential pieces of that many
images, so only one piece's activations are alive at a time (less memory, and faster on CPU
thanks to cache locality; measured in ``benchmarks/step_time_tm.py``). Left at None (auto), the
backend policy (:mod:`fred_jax.platform`) picks pieces of 10 on XLA:CPU and whole batches on
GPU/TPU; ``config.conv_impl = "auto"`` gives the student ``im2col`` convolutions on XLA:CPU
(every order of derivative stays a patch matmul) and ``lax`` on GPU/TPU.

Several trajectories per outer step: pass ``start``/``target`` of shape ``[T, P]``; they are
vmapped and the loss is their mean (:func:`sharded_loss` splits them over a device mesh).

The learnable rate has its own optimiser (SGD, momentum 0.5, ``lr_lr``) and is clipped to
``>= MIN_SYN_LR`` after each update (reference: ``syn_lr.data.clip(min=0.001)``); it starts at
``lr_teacher`` and its final value is the learning rate that evaluation uses.

Settings: the ``config.tm`` section (:mod:`fred_jax.objectives.tm_config`: ``defaults``,
``check``). Building the objective reads the stored experts and never trains them
(:func:`fred_jax.experts.prepare` does, before the run loads its data).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fred_jax import augment, expert_store, platform, sharding
from fred_jax.expert_store import param_unraveler
from fred_jax.objectives.base import Objective, Problem, single_step
from fred_jax.objectives.tm_config import MIN_SYN_LR, check, defaults

LR_MOMENTUM = 0.5


def batch_indices(key: jax.Array, n: int, batch: int, steps: int) -> jax.Array:
    """``int32[steps, batch]``: consecutive chunks of a stream of random permutations of n."""
    if not 1 <= batch <= n:
        raise ValueError(f"batch_syn must be in [1, {n}], got {batch}")
    num_perm = math.ceil(steps * batch / n)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, num_perm))
    return perms.reshape(-1)[: steps * batch].reshape(steps, batch).astype(jnp.int32)


def student_trajectory(
    model: nn.Module,
    images: jax.Array,
    labels: jax.Array,
    syn_lr: jax.Array,
    start: jax.Array,
    key: jax.Array,
    *,
    syn_steps: int,
    batch_syn: int | None = None,
    dsa: bool = True,
    dsa_strategy: str = augment.STRATEGY,
    dsa_params: augment.DSAParams = augment.DSAParams(),
    remat: bool = True,
    grad_chunk: int = 0,
    draws: Any = None,
) -> jax.Array:
    """Final student parameters ``[P]`` after ``syn_steps`` SGD steps from ``start [P]`` on
    ``images [N, ...]`` / ``labels [N]`` with rate ``syn_lr`` (differentiable in all three).

    grad_chunk: images per piece when summing each step's gradient over sequential pieces of
    the batch (0: one piece). Same result; with remat the backward pass holds one piece's
    activations at a time, which on CPU is also faster (cache). The last piece is padded with
    zero-weight images.
    draws: given augmentation random numbers instead of ``key``'s, a pytree with a leading
    ``syn_steps`` axis in the layout of :func:`fred_jax.augment.given_draws_layout` (image i of
    the batch gets draw i); replays another implementation's choices (parity tests).
    """
    n = images.shape[0]
    _, unravel = param_unraveler(model, images.shape[1:])
    start = start.astype(jnp.result_type(start, images, syn_lr))  # float32 experts, x64 runs
    batch = n if batch_syn is None or batch_syn == 0 else batch_syn
    if grad_chunk < 0:
        raise ValueError(f"grad_chunk must be >= 0, got {grad_chunk}")
    size = batch if grad_chunk == 0 else min(grad_chunk, batch)
    pieces = -(-batch // size)
    pad = pieces * size - batch
    weight = jnp.concatenate([jnp.ones(batch, images.dtype), jnp.zeros(pad, images.dtype)])
    aug_key, batch_key = jax.random.split(key)
    step_keys = jax.random.split(aug_key, syn_steps) if draws is None else draws
    full = batch == n
    idx = jnp.zeros((syn_steps, 0), jnp.int32) if full else batch_indices(
        batch_key, n, batch, syn_steps)

    def augment_batch(step_key, ix):
        x, y = (images, labels) if full else (images[ix], labels[ix])
        if dsa and draws is not None:
            x = augment.dsa_given(step_key, x, dsa_strategy, dsa_params, siamese=False)
        elif dsa:
            x = augment.dsa(step_key, x, dsa_strategy, dsa_params, siamese=False)
        return x, y

    def chunk_grad(theta, acc, x, y, w):
        def ce_sum(th):
            logits = model.apply({"params": unravel(th)}, x, train=True)
            return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))

        return acc + jax.grad(ce_sum)(theta)

    if remat:
        # Residuals of a step: its inputs only (parameters, augmentation key/indices and, per
        # chunk, the running sum and the augmented piece); activations are recomputed.
        augment_batch = jax.checkpoint(augment_batch)
        chunk_grad = jax.checkpoint(chunk_grad)

    def step(theta, inputs):
        x, y = augment_batch(*inputs)
        if pad:
            x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
            y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
        split = (x.reshape(pieces, size, *x.shape[1:]), y.reshape(pieces, size),
                 weight.reshape(pieces, size))
        total, _ = jax.lax.scan(lambda acc, xyw: (chunk_grad(theta, acc, *xyw), None),
                                jnp.zeros_like(theta), split)
        return theta - syn_lr * (total / batch), None

    final, _ = jax.lax.scan(step, start, (step_keys, idx))
    return final


def loss(
    model: nn.Module,
    images: jax.Array,
    labels: jax.Array,
    syn_lr: jax.Array,
    start: jax.Array,
    target: jax.Array,
    key: jax.Array,
    *,
    syn_steps: int,
    batch_syn: int | None = None,
    dsa: bool = True,
    dsa_strategy: str = augment.STRATEGY,
    dsa_params: augment.DSAParams = augment.DSAParams(),
    remat: bool = True,
    grad_chunk: int = 0,
    draws: Any = None,
) -> jax.Array:
    """Trajectory-matching loss (scalar) of the decoded synthetic set.

    model: the student architecture (only a ``params`` collection, e.g. ConvNet).
    images ``[N, H, W, C]``, labels ``[N]`` int: the decoded synthetic set (flattened).
    syn_lr: scalar learnable student learning rate.
    start, target: expert parameters at epochs t and t+M, ``[P]`` or ``[T, P]`` (T
      trajectories, vmapped, loss averaged).
    key: randomness of the augmentation and mini-batches (one per outer iteration).
    batch_syn: student mini-batch size, None or 0 for the whole set.
    grad_chunk: images per sequential piece of each step's gradient (0: whole batch); see
      ``student_trajectory``.
    draws: given augmentation draws instead of ``key``'s (``student_trajectory``; with a
      leading ``T`` axis for ``[T, P]`` vectors).
    """
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"tm needs images [N, H, W, C] and labels [N], got {images.shape} "
                         f"and {labels.shape}")
    if syn_steps < 1:
        raise ValueError(f"syn_steps must be >= 1, got {syn_steps}")
    if start.shape != target.shape or start.ndim not in (1, 2):
        raise ValueError(f"start and target must both be [P] or [T, P], got {start.shape} "
                         f"and {target.shape}")
    num_params, _ = param_unraveler(model, images.shape[1:])
    if start.shape[-1] != num_params:
        raise ValueError(f"expert vectors have {start.shape[-1]} parameters but the student "
                         f"{type(model).__name__} on {images.shape[1:]} has {num_params}")

    def one(s, t, k, d):
        final = student_trajectory(
            model, images, labels, syn_lr, s, k, syn_steps=syn_steps, batch_syn=batch_syn,
            dsa=dsa, dsa_strategy=dsa_strategy, dsa_params=dsa_params, remat=remat,
            grad_chunk=grad_chunk, draws=d)
        s, t = s.astype(final.dtype), t.astype(final.dtype)  # stored float32, run maybe float64
        return jnp.sum((final - t) ** 2) / jnp.sum((s - t) ** 2)

    if start.ndim == 1:
        return one(start, target, key, draws)
    keys = jax.random.split(key, start.shape[0])
    return jnp.mean(jax.vmap(one)(start, target, keys, draws))


def sharded_loss(mesh: Any, model: nn.Module, images: jax.Array, labels: jax.Array,
                 syn_lr: jax.Array, start: jax.Array, target: jax.Array, key: jax.Array,
                 **kwargs: Any) -> jax.Array:
    """:func:`loss` with the trajectory axis of ``start``/``target [T, P]`` split over ``mesh``
    (:func:`fred_jax.sharding.sharded_vmap`: each device runs ceil(T / devices) students, the
    gradients w.r.t. the replicated images and rate are summed over devices). Same value as
    ``loss``: trajectory i gets the i-th of ``jax.random.split(key, T)``, as in ``loss``.
    mesh None, one trajectory or ``[P]`` vectors: plain :func:`loss`."""
    if mesh is None or mesh.size == 1 or start.ndim == 1 or start.shape[0] == 1:
        return loss(model, images, labels, syn_lr, start, target, key, **kwargs)

    draws = kwargs.pop("draws", None)

    def one(s, t, k, d):
        return loss(model, images, labels, syn_lr, s, t, k, draws=d, **kwargs)

    keys = jax.random.split(key, start.shape[0])
    return jnp.mean(sharding.sharded_vmap(one, mesh)(start, target, keys, draws))


def lr_optimizer(lr_lr: float) -> optax.GradientTransformation:
    """Optimiser of the learnable student rate: SGD with momentum 0.5 (reference)."""
    return optax.sgd(lr_lr, momentum=LR_MOMENTUM)


def clip_lr(syn_lr: jax.Array) -> jax.Array:
    """Keep the learnable rate ``>= MIN_SYN_LR`` (applied after every update)."""
    return jnp.maximum(syn_lr, MIN_SYN_LR)


def build(config: Any, problem: Problem) -> Objective:
    """TM objective: per iteration ``config.tm.num_trajectories`` random (expert, start) pairs
    from the stored experts, the student ``problem.model`` (``config.model`` with
    ``config.conv_impl``), DSA ``config.dsa_strategy``; one optimiser step on the coefficients
    and on the learnable rate ``syn_lr`` (then clipped). With ``problem.mesh`` the expert pool
    is replicated over the mesh and the trajectories of a step are split over it
    (:func:`sharded_loss`)."""
    check(config)
    t = config.tm
    model, shape = problem.model, problem.image_shape
    num_params, _ = param_unraveler(model, shape)
    pool = expert_store.load_pool(config, num_params)
    pool = jnp.asarray(pool) if problem.mesh is None else sharding.replicate(pool, problem.mesh)
    num_experts = pool.shape[0]
    syn_steps, batch_syn = int(t.syn_steps), int(t.batch_syn) or None
    grad_chunk = int(platform.resolve(t.grad_chunk,
                                      platform.policy(mesh=problem.mesh).tm_grad_chunk))
    max_start, m, count = int(t.max_start_epoch), int(t.expert_epochs), int(t.num_trajectories)
    strategy = config.dsa_strategy
    use_dsa = bool(augment.parse_strategy(strategy))
    labels = jnp.repeat(jnp.arange(problem.num_classes, dtype=jnp.int32),
                        problem.instances_per_class)
    if batch_syn is not None and batch_syn > labels.shape[0]:
        raise ValueError(f"config.tm.batch_syn={batch_syn} exceeds the {labels.shape[0]} "
                         "synthetic instances")

    def loss_fn(learnable, key):
        if isinstance(key, dict):  # given choices instead of a key (the parity tests replay
            # the official code's): ``expert``, ``start_epoch`` [T], ``dsa`` (the draws of
            # ``student_trajectory`` per trajectory, leading axis T)
            e, start_epoch, k_tm, draws = (key["expert"], key["start_epoch"],
                                           jax.random.key(0), key["dsa"])
        else:
            k_expert, k_epoch, k_tm = jax.random.split(key, 3)
            e = jax.random.randint(k_expert, (count,), 0, num_experts)
            start_epoch = jax.random.randint(k_epoch, (count,), 0, max_start)
            draws = None
        start, target = pool[e, start_epoch], pool[e, start_epoch + m]
        images = problem.decode(learnable["coeffs"]).reshape(-1, *shape)
        value = sharded_loss(problem.mesh, model, images, labels, learnable["syn_lr"], start,
                             target, k_tm, syn_steps=syn_steps, batch_syn=batch_syn,
                             dsa=use_dsa, dsa_strategy=strategy if use_dsa else augment.STRATEGY,
                             grad_chunk=grad_chunk, draws=draws)
        return value, {"syn_lr": learnable["syn_lr"]}

    step = single_step(loss_fn)

    def update(learnable, opt_state, key, apply):
        learnable, opt_state, metrics = step(learnable, opt_state, key, apply)
        return {**learnable, "syn_lr": clip_lr(learnable["syn_lr"])}, opt_state, metrics

    return Objective(
        name="tm", update=update,
        extra_learnables={"syn_lr": jnp.asarray(float(t.lr_teacher), jnp.float32)},
        extra_optimisers={"syn_lr": lr_optimizer(float(t.lr_lr))},
    )


__all__ = ["MIN_SYN_LR", "batch_indices", "build", "check", "clip_lr", "defaults", "loss",
           "lr_optimizer", "sharded_loss", "student_trajectory"]
