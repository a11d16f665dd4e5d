"""Gradient matching (DC, Zhao et al. ICLR 2021; DSA, Zhao & Bilen ICML 2021) on decoded images.

One iteration, as in the reference: a fresh network; ``outer_loop`` times: per class, the
layer-wise distance between the network's loss gradient on a real batch and on the class's
synthetic instances (DSA with a shared key when augmentation is on), summed over classes, one
optimiser step on the coefficients; between outer steps the network trains ``inner_loop``
epochs of plain SGD (``lr_net``, batch ``batch_train``) on the decoded synthetic set.

Distance (reference ``match_loss`` with ``dis_metric='ours'``, ``distance_wb``): for each
parameter with >= 2 axes, one row per output unit (Flax keeps the output axis last; PyTorch
first), ``sum_rows 1 - <g_r, g_s> / (|g_r| |g_s| + 1e-6)``; 1-axis parameters (biases, norm
scales) contribute 0.

Reference: VICO-UoE/DatasetCondensation ``main.py``/``utils.py``, sdh0818/FreD ``DC/``.
BatchNorm matching networks are not supported (the reference freezes their statistics on a
real batch first); the section's check rejects them. Settings: the ``config.dc`` section
(:mod:`fred_jax.objectives.dc_config`: ``defaults``, ``LOOPS``, ``check``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fred_jax import augment, classifier, data, platform, sharding
from fred_jax.objectives.base import Apply, Objective, Problem
from fred_jax.objectives.dc_config import LOOPS, check, defaults


def loops(ipc: int) -> tuple[int, int]:
    """The reference (outer_loop, inner_loop) schedule for budget ``ipc``."""
    if ipc not in LOOPS:
        raise ValueError(
            f"DC has no reference loop schedule for ipc={ipc} (known: {sorted(LOOPS)}); "
            "set config.dc.outer_loop and config.dc.inner_loop"
        )
    return LOOPS[ipc]


def layer_distance(g_real: jax.Array, g_syn: jax.Array) -> jax.Array:
    """Reference ``distance_wb`` for one parameter in Flax layout (output axis last)."""
    if g_real.ndim < 2:
        return jnp.zeros((), g_real.dtype)
    rows_r = jnp.moveaxis(g_real, -1, 0).reshape(g_real.shape[-1], -1)
    rows_s = jnp.moveaxis(g_syn, -1, 0).reshape(g_syn.shape[-1], -1)
    dot = jnp.sum(rows_r * rows_s, axis=-1)
    norms = jnp.linalg.norm(rows_r, axis=-1) * jnp.linalg.norm(rows_s, axis=-1)
    return jnp.sum(1.0 - dot / (norms + 1e-6))


def match_distance(grads_real: Any, grads_syn: Any) -> jax.Array:
    """Sum of :func:`layer_distance` over matching parameter leaves."""
    leaves = jax.tree_util.tree_map(layer_distance, grads_real, grads_syn)
    return sum(jax.tree_util.tree_leaves(leaves), jnp.zeros(()))


def cross_entropy(model: nn.Module, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``model`` with ``params`` on ``(x, y)``."""
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def loss(
    model: nn.Module,
    params: Any,
    real: jax.Array,
    syn: jax.Array,
    key: jax.Array,
    *,
    strategy: str = "",
    dsa_params: augment.DSAParams = augment.DSAParams(),
    mesh: Any = None,
    in_loop: bool | None = None,
) -> jax.Array:
    """Gradient-matching distance summed over classes.

    real ``[C, B, *image]``, syn ``[C, n, *image]`` (differentiable, second order through the
    synthetic gradients); labels are the class positions. ``strategy`` non-empty: DSA with one
    key per class shared by the real and synthetic batch. in_loop: classes one after another
    (``lax.map``) or vmapped (split over ``mesh``); None: the backend policy's
    ``classes_in_loop`` (:mod:`fred_jax.platform`).
    """
    if real.shape[0] != syn.shape[0] or real.shape[2:] != syn.shape[2:]:
        raise ValueError(f"real {real.shape} and syn {syn.shape} must be [C, *, *image]")
    use_dsa = bool(augment.parse_strategy(strategy))
    num_classes = real.shape[0]
    keys = jax.random.split(key, num_classes)
    grad_fn = jax.grad(lambda p, x, y: cross_entropy(model, p, x, y))

    def augment_(k, x):
        return augment.dsa(k, x, strategy, dsa_params, siamese=True) if use_dsa else x

    def real_grad(k, c, r):
        return grad_fn(params, augment_(k, r), jnp.full(r.shape[:1], c))

    def syn_distance(c, s, g_real):
        return match_distance(g_real, grad_fn(params, s, jnp.full(s.shape[:1], c)))

    classes = jnp.arange(num_classes, dtype=jnp.int32)
    real = jax.lax.stop_gradient(real)
    if in_loop is None:
        in_loop = platform.policy(mesh=mesh).classes_in_loop
    if in_loop:
        # Class by class (lax.map): only the chosen DSA op runs (a vmapped lax.switch
        # evaluates every branch), and per-class weight gradients stay plain convolutions (a
        # vmap turns them into grouped convolutions, which XLA:CPU runs far slower).
        g_real = jax.lax.map(lambda a: real_grad(*a), (keys, classes, real))
        distances = jax.lax.map(
            lambda a: syn_distance(a[1], augment_(a[0], a[2]), a[3]),
            (keys, classes, syn, jax.lax.stop_gradient(g_real)))
    else:
        g_real = sharding.sharded_vmap(real_grad, mesh)(keys, classes, real)
        syn = sharding.sharded_vmap(augment_, mesh)(keys, syn)
        distances = sharding.sharded_vmap(syn_distance, mesh)(
            classes, syn, jax.lax.stop_gradient(g_real))
    return distances.sum()


def train_network(
    model: nn.Module,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    strategy: str = "",
    dsa_params: augment.DSAParams = augment.DSAParams(),
) -> Any:
    """``epochs`` epochs of plain SGD on ``(x [N, *image], y [N])`` with the classifier trainer
    (:mod:`fred_jax.classifier`): shuffled batches of ``batch_size`` (the last one smaller, as
    a PyTorch DataLoader without drop_last), DSA with per-image parameters when ``strategy`` is
    non-empty. Epoch ``e`` uses the ``e``-th of ``split(key, epochs)``
    (:func:`fred_jax.classifier.split_schedule`)."""
    use_dsa = bool(augment.parse_strategy(strategy))
    tx = classifier.sgd(0.0, 0.0)
    step = classifier.step_fn(model, tx, classifier.augmenter(strategy if use_dsa else None,
                                                              dsa_params),
                              uses_batch_stats=False, piece=0)
    epoch = classifier.epoch_fn(step, x.shape[0], batch_size, classifier.split_schedule)

    def body(state, k):
        return epoch(state, k, 0, lr, x, y)[0], None

    state = classifier.TrainState(params, {}, tx.init(params))
    state, _ = jax.lax.scan(body, state, jax.random.split(key, epochs))
    return state.params


def iteration(
    problem: Problem,
    params: Any,
    learnable: Any,
    opt_state: Any,
    key: jax.Array,
    apply: Apply,
    *,
    outer: int,
    inner: int,
    batch_real: int,
    lr_net: float,
    batch_train: int,
    strategy: str = "",
) -> tuple[Any, Any, Any, dict]:
    """One DC iteration from the matching network's initial ``params``: ``outer`` times, a
    gradient-matching step on the coefficients (``batch_real`` real images per class, one
    ``apply``), then, except after the last, ``inner`` epochs of SGD on the decoded set.
    Returns ``(learnable, opt_state, params, metrics)`` with the network as the last outer step
    saw it; ``metrics["loss"]`` is the mean outer loss, ``"loss_per_class"`` the reference's
    ``loss_avg``."""
    model, num_classes = problem.model, problem.num_classes

    def match_step(learnable, opt_state, params, key):
        k_real, k_aug = jax.random.split(key)
        idx = data.sample_per_class(k_real, problem.class_index, batch_real)
        real = problem.x_train[idx]

        def loss_fn(learnable):
            syn = problem.decode(learnable["coeffs"])
            return loss(model, params, real, syn, k_aug, strategy=strategy, mesh=problem.mesh)

        value, grads = jax.value_and_grad(loss_fn)(learnable)
        learnable, opt_state = apply(learnable, opt_state, grads)
        return learnable, opt_state, value

    def outer_step(carry, k):
        learnable, opt_state, params = carry
        k_match, k_train = jax.random.split(k)
        learnable, opt_state, value = match_step(learnable, opt_state, params, k_match)
        images = jax.lax.stop_gradient(problem.decode(learnable["coeffs"]))
        n = images.shape[1]
        x = images.reshape((num_classes * n,) + images.shape[2:])
        y = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), n)
        params = train_network(model, params, x, y, k_train, epochs=inner, lr=lr_net,
                               batch_size=batch_train, strategy=strategy)
        return (learnable, opt_state, params), value

    keys = jax.random.split(key, outer)
    (learnable, opt_state, params), values = jax.lax.scan(
        outer_step, (learnable, opt_state, params), keys[:-1])
    learnable, opt_state, last = match_step(learnable, opt_state, params, keys[-1])
    total = values.sum() + last
    return learnable, opt_state, params, {
        "loss": total / outer,
        "loss_per_class": total / (outer * num_classes),
    }


def build(config: Any, problem: Problem) -> Objective:
    """DC/DSA objective with the reference schedule (``config.dc.outer_loop``/``inner_loop``,
    0 = by ipc), ``config.dc.batch_real`` real images per class, network SGD ``config.dc.lr_net``
    with batch ``config.dc.batch_train``, DSA ``config.dsa_strategy`` ("" = plain DC): every
    iteration a freshly initialised ``problem.model`` and :func:`iteration`."""
    cfg = config.dc
    if cfg.outer_loop:
        outer, inner = int(cfg.outer_loop), int(cfg.inner_loop)
    else:
        outer, inner = loops(problem.ipc)
    settings = dict(outer=outer, inner=inner, batch_real=int(cfg.batch_real),
                    lr_net=float(cfg.lr_net), batch_train=int(cfg.batch_train),
                    strategy=config.dsa_strategy)
    model, shape = problem.model, problem.image_shape

    def update(learnable, opt_state, key, apply):
        k_net, k_loop = jax.random.split(key)
        params = model.init(k_net, jnp.zeros((1, *shape), jnp.float32))["params"]
        learnable, opt_state, _, metrics = iteration(problem, params, learnable, opt_state,
                                                     k_loop, apply, **settings)
        return learnable, opt_state, metrics

    return Objective(name="dc", update=update)
