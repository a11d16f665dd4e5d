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


def first_order(model: nn.Module, conv: str | None = None, mesh: Any = None) -> nn.Module:
    """``model`` with the convolutions of first-order gradients (the real batch's gradient,
    network training): ``conv``, else the backend policy's ``conv_train``; the matching
    network's own (second-order) implementation is a speed choice for the synthetic side only.
    Models without a ``conv_impl`` field are returned as they are."""
    if conv is None:
        conv = platform.policy(mesh=mesh).conv_train
    return model.clone(conv_impl=conv) if hasattr(model, "conv_impl") else model


def real_gradient(model: nn.Module, params: Any, x: jax.Array, c: jax.Array,
                  piece: int) -> Any:
    """Gradient of the mean cross-entropy of one class's real batch ``x`` (label ``c``), summed
    over sequential pieces of ``piece`` images (0: one pass; the same mean up to float
    rounding): first order, so only one piece's activations are live at a time."""
    y = jnp.full(x.shape[:1], c, jnp.int32)
    if piece and x.shape[0] > piece:
        return classifier.piecewise_loss_grad(model, params, x, y, piece)[2]
    return jax.grad(lambda p: cross_entropy(model, p, x, y))(params)


def class_sum(term: Any, syn: jax.Array, shared: Any, operands: Any, *, in_loop: bool,
              mesh: Any = None) -> jax.Array:
    """``sum_c term(syn[c], shared, *operands[c])``, differentiable in ``syn`` only, its
    gradient computed class by class with the value (``lax.map`` where ``in_loop``, else vmapped
    over ``mesh``). Differentiating a map of the terms would keep every class's second-order
    residuals until the backward pass; here one class's are live at a time and the backward
    pass scales the stored gradient (images-sized). ``term`` closes over no traced value: the
    custom VJP takes them as arguments."""

    def each(fn, s, args):
        shared, ops = args
        if in_loop:
            return jax.lax.map(lambda a: fn(a[0], shared, *a[1]), (s, ops))
        return sharding.sharded_vmap(lambda s_c, sh, ops_c: fn(s_c, sh, *ops_c), mesh,
                                     in_axes=(0, None, 0))(s, shared, ops)

    @jax.custom_vjp
    def total(s, args):
        return each(term, s, args).sum()

    def fwd(s, args):
        values, grads = each(jax.value_and_grad(term), s, args)
        return values.sum(), grads

    total.defvjp(fwd, lambda grads, ct: (ct * grads, None))
    return total(syn, (shared, operands))


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
    real_model: nn.Module | None = None,
    real_piece: int | None = None,
) -> jax.Array:
    """Gradient-matching distance summed over classes.

    real ``[C, B, *image]`` (constant), syn ``[C, n, *image]`` (differentiable, second order
    through the synthetic gradients, :func:`class_sum`); labels are the class positions.
    ``strategy`` non-empty: DSA with one key per class shared by the real and synthetic batch.
    in_loop: classes one after another (``lax.map``) or vmapped (split over ``mesh``). The real
    gradients use ``real_model`` (same parameters; None: :func:`first_order` of ``model``) in
    pieces of ``real_piece`` images (:func:`real_gradient`). None: the backend policy's
    ``classes_in_loop`` / ``train_piece`` (:mod:`fred_jax.platform`).
    """
    if real.shape[0] != syn.shape[0] or real.shape[2:] != syn.shape[2:]:
        raise ValueError(f"real {real.shape} and syn {syn.shape} must be [C, *, *image]")
    use_dsa = bool(augment.parse_strategy(strategy))
    num_classes = real.shape[0]
    keys = jax.random.split(key, num_classes)
    policy = platform.policy(mesh=mesh)
    in_loop = policy.classes_in_loop if in_loop is None else in_loop
    real_piece = policy.train_piece if real_piece is None else real_piece
    real_model = first_order(model, mesh=mesh) if real_model is None else real_model
    grad_fn = jax.grad(lambda p, x, y: cross_entropy(model, p, x, y))

    def augment_(k, x):
        return augment.dsa(k, x, strategy, dsa_params, siamese=True) if use_dsa else x

    def real_grad(k, c, r):
        return real_gradient(real_model, params, augment_(k, r), c, real_piece)

    def syn_distance(s, p, k, c, g_real):
        s = augment_(k, s)
        return match_distance(g_real, grad_fn(p, s, jnp.full(s.shape[:1], c)))

    classes = jnp.arange(num_classes, dtype=jnp.int32)
    real = jax.lax.stop_gradient(real)
    # Class by class on CPU (lax.map): only the chosen DSA op runs (a vmapped lax.switch
    # evaluates every branch), and per-class weight gradients stay plain convolutions (a vmap
    # turns them into grouped convolutions, which XLA:CPU runs far slower).
    if in_loop:
        g_real = jax.lax.map(lambda a: real_grad(*a), (keys, classes, real))
    else:
        g_real = sharding.sharded_vmap(real_grad, mesh)(keys, classes, real)
    return class_sum(syn_distance, syn, params, (keys, classes, jax.lax.stop_gradient(g_real)),
                     in_loop=in_loop, mesh=mesh)


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
    piece: int = 0,
) -> Any:
    """``epochs`` epochs of plain SGD on ``(x [N, *image], y [N])`` with the classifier trainer
    (:mod:`fred_jax.classifier`): shuffled batches of ``batch_size`` (the last one smaller, as
    a PyTorch DataLoader without drop_last), DSA with per-image parameters when ``strategy`` is
    non-empty, each batch's gradient over pieces of ``piece`` images (0: whole). Epoch ``e``
    uses the ``e``-th of ``split(key, epochs)`` (:func:`fred_jax.classifier.split_schedule`)."""
    use_dsa = bool(augment.parse_strategy(strategy))
    tx = classifier.sgd(0.0, 0.0)
    step = classifier.step_fn(model, tx, classifier.augmenter(strategy if use_dsa else None,
                                                              dsa_params),
                              uses_batch_stats=False, piece=piece)
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
    first_order_conv: str | None = None,
) -> tuple[Any, Any, Any, dict]:
    """One DC iteration from the matching network's initial ``params``: ``outer`` times, a
    gradient-matching step on the coefficients (``batch_real`` real images per class, one
    ``apply``), then, except after the last, ``inner`` epochs of SGD on the decoded set.
    Returns ``(learnable, opt_state, params, metrics)`` with the network as the last outer step
    saw it; ``metrics["loss"]`` is the mean outer loss, ``"loss_per_class"`` the reference's
    ``loss_avg``. The real gradients and the network training are first order: they run
    :func:`first_order` of the model (``first_order_conv``, None: the policy's) in the
    policy's ``train_piece`` pieces."""
    model, num_classes = problem.model, problem.num_classes
    trainer = first_order(model, first_order_conv, problem.mesh)
    piece = platform.policy(mesh=problem.mesh).train_piece

    def match_step(learnable, opt_state, params, key):
        k_real, k_aug = jax.random.split(key)
        idx = data.sample_per_class(k_real, problem.class_index, batch_real)
        real = problem.x_train[idx]

        def loss_fn(learnable):
            syn = problem.decode(learnable["coeffs"])
            return loss(model, params, real, syn, k_aug, strategy=strategy, mesh=problem.mesh,
                        real_model=trainer, real_piece=piece)

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
        params = train_network(trainer, params, x, y, k_train, epochs=inner, lr=lr_net,
                               batch_size=batch_train, strategy=strategy, piece=piece)
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
    iteration a freshly initialised ``problem.model`` and :func:`iteration` (first-order parts
    with ``config.conv_impl`` where it is set, else the policy's ``conv_train``)."""
    cfg = config.dc
    if cfg.outer_loop:
        outer, inner = int(cfg.outer_loop), int(cfg.inner_loop)
    else:
        outer, inner = loops(problem.ipc)
    settings = dict(outer=outer, inner=inner, batch_real=int(cfg.batch_real),
                    lr_net=float(cfg.lr_net), batch_train=int(cfg.batch_train),
                    strategy=config.dsa_strategy,
                    first_order_conv=platform.resolve(config.get("conv_impl"), None))
    model, shape = problem.model, problem.image_shape

    def update(learnable, opt_state, key, apply):
        k_net, k_loop = jax.random.split(key)
        params = model.init(k_net, jnp.zeros((1, *shape), jnp.float32))["params"]
        learnable, opt_state, _, metrics = iteration(problem, params, learnable, opt_state,
                                                     k_loop, apply, **settings)
        return learnable, opt_state, metrics

    return Objective(name="dc", update=update)
