"""One classifier trainer: epochs of shuffled batches with augmentation and PyTorch-style SGD,
several networks at once, and one padded test loop. Used by evaluation
(:mod:`fred_jax.evaluate`), expert trajectories (:mod:`fred_jax.experts`) and DC's inner
training (:func:`fred_jax.objectives.dc.train_network`).

- Epoch (:func:`epoch_fn`): a permutation of the training set, ``num_train // batch_size`` full
  batches in a ``lax.scan`` and, when the size is not a multiple, one smaller last batch (a
  PyTorch ``DataLoader(shuffle=True, drop_last=False)``), mean cross-entropy per batch. The
  permutation key and one key per batch come from a key ``schedule`` (:func:`eval_schedule`,
  :func:`expert_schedule`, :func:`split_schedule`), so each caller keeps its documented keys.
- Augmentation per training batch (:func:`augmenter`): DSA with per-image parameters, or the DC
  augmentation of :mod:`fred_jax.dc_augment`, or none.
- SGD (:func:`sgd`): ``torch.optim.SGD(momentum, weight_decay)`` with dampening 0 and no
  Nesterov, as optax: coupled weight decay (``add_decayed_weights``: ``g + wd * p``), then
  heavy-ball momentum (``trace``: ``buf = momentum * buf + g``), then ``p - lr * buf`` with
  ``lr`` a traced argument, so a learning-rate schedule does not recompile. Re-creating the
  PyTorch optimiser (which resets the momentum) is re-initialising the optax state.
- Gradient over pieces (:func:`piecewise_loss_grad`): on XLA:CPU a batch's gradient is summed
  over sequential pieces of ``platform.Policy.train_piece`` images (a piece's activations stay
  in cache); the same numbers for per-sample-normalised networks, so BatchNorm networks always
  take the whole batch.
- Several networks (seeds, experts) at once (:func:`programs`): states stacked on a leading
  axis; :func:`map_stacked` runs them one after another in one program (``lax.map``) where the
  backend policy says so (XLA:CPU without a mesh: vmapped convolutions with per-network kernels
  become slow grouped convolutions) and vmapped, split over a device mesh, elsewhere.
- Test accuracy (:func:`count_correct`): fixed-size batches (the last one padded and masked) so
  the test program compiles once, each batch's forward pass in pieces of
  ``platform.Policy.infer_piece`` images (:func:`in_pieces`); BatchNorm in inference mode;
  ``lax`` convolutions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fred_jax import augment, dc_augment, models, platform, sharding

Schedule = Callable[[jax.Array, jax.Array, int], tuple[jax.Array, jax.Array]]
"""``(network key, epoch, num_batches) -> (permutation key, batch keys [num_batches])``."""


class TrainState(NamedTuple):
    """One network's training state (stacked on a leading axis for several networks)."""

    params: Any
    batch_stats: Any  # {} for architectures without BatchNorm
    opt_state: Any  # the optax state of :func:`sgd` (momentum buffers)


def sgd(momentum: float, weight_decay: float) -> optax.GradientTransformation:
    """``torch.optim.SGD(momentum, weight_decay)`` without its learning rate (see
    :func:`apply_sgd`): ``g + wd * p``, then ``buf = momentum * buf + g``."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.trace(decay=momentum) if momentum else optax.identity(),
    )


def apply_sgd(tx: optax.GradientTransformation, params: Any, opt_state: Any, grads: Any,
              lr: Any) -> tuple[Any, Any]:
    """One step of :func:`sgd` ``tx`` with learning rate ``lr`` (traced or not)."""
    direction, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, jax.tree.map(lambda d: -lr * d, direction)), opt_state


def piecewise_loss_grad(model: Any, params: Any, x: jax.Array, y: jax.Array, piece: int):
    """Mean cross-entropy, correct count and gradient of a batch, summed over sequential pieces
    of ``piece`` images (``lax.scan``; the last piece padded with zero-weight images): the same
    numbers as one pass for per-sample networks, faster on CPU (cache)."""
    n = x.shape[0]
    count = -(-n // piece)
    pad = count * piece - n
    w = jnp.concatenate([jnp.ones(n, x.dtype), jnp.zeros(pad, x.dtype)]).reshape(count, piece)
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    y = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])

    def piece_sums(p, xb, yb, wb):
        logits = model.apply({"params": p}, xb, train=True)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(wb * ce), jnp.sum(wb * (jnp.argmax(logits, -1) == yb))

    def body(acc, xyw):
        (ce, correct), g = jax.value_and_grad(piece_sums, has_aux=True)(params, *xyw)
        return jax.tree.map(jnp.add, acc, (ce, correct, g)), None

    dt = jnp.result_type(x.dtype, *(p.dtype for p in jax.tree.leaves(params)))  # x64 runs
    zeros = (jnp.zeros((), dt), jnp.zeros((), dt), jax.tree.map(jnp.zeros_like, params))
    (ce, correct, grads), _ = jax.lax.scan(
        body, zeros, (x.reshape(count, piece, *x.shape[1:]), y.reshape(count, piece), w))
    return ce / n, correct.astype(jnp.int32), jax.tree.map(lambda g: g / n, grads)


def in_pieces(fn: Callable[[jax.Array], jax.Array], x: jax.Array, piece: int) -> jax.Array:
    """``fn(x)`` for a per-sample ``fn``, computed over sequential pieces of ``piece`` images
    (``lax.map``; the last piece padded, its extra rows dropped) where ``piece`` > 0 and the
    batch is larger: on XLA:CPU a piece's activations stay in cache (``platform``)."""
    n = x.shape[0]
    if not piece or n <= piece:
        return fn(x)
    count = -(-n // piece)
    x = jnp.concatenate([x, jnp.zeros((count * piece - n, *x.shape[1:]), x.dtype)])
    out = jax.lax.map(fn, x.reshape(count, piece, *x.shape[1:]))
    return out.reshape(count * piece, *out.shape[2:])[:n]


def augmenter(dsa_strategy: str | None, dsa_params: augment.DSAParams = augment.DSAParams(),
              dc_strategy: str | None = None,
              given: bool = False) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(key, batch) -> batch``: DSA ``dsa_strategy`` with per-image parameters, else the DC
    augmentation ``dc_strategy``, else the identity (None / "" for none). ``given``: DSA
    takes given draws instead of a key (:func:`fred_jax.augment.dsa_given`; per-image draws
    for a full batch, the first ones used by a smaller last batch)."""
    if dsa_strategy and given:
        return lambda draws, x: augment.dsa_given(
            jax.tree.map(lambda a: a[: x.shape[0]] if a.ndim else a, draws), x, dsa_strategy,
            dsa_params, siamese=False)
    if dsa_strategy:
        return lambda key, x: augment.dsa(key, x, dsa_strategy, dsa_params, siamese=False)
    if dc_strategy:
        return lambda key, x: dc_augment.augment(key, x, dc_strategy)
    return lambda key, x: x


def step_fn(model: Any, tx: optax.GradientTransformation, augment_fn: Callable, *,
            uses_batch_stats: bool, piece: int) -> Callable:
    """``(state, x, y, key, lr) -> (state, loss sum, correct count)``: one SGD step on the
    augmented batch (gradient over pieces of ``piece`` images where ``piece`` > 0, the batch
    is larger and the network has no BatchNorm)."""

    def step(state: TrainState, x, y, key, lr):
        # In the networks' precision (float64 networks in x64 runs; a no-op in float32).
        x = augment_fn(key, x.astype(jax.tree.leaves(state.params)[0].dtype))

        def loss_fn(params):
            if uses_batch_stats:
                logits, updates = model.apply(
                    {"params": params, "batch_stats": state.batch_stats}, x, train=True,
                    mutable=["batch_stats"])
                new_bs = updates["batch_stats"]
            else:
                logits, new_bs = model.apply({"params": params}, x, train=True), {}
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, (new_bs, jnp.sum(jnp.argmax(logits, -1) == y))

        n = x.shape[0]
        if uses_batch_stats or not piece or n <= piece:
            (loss, (new_bs, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params)
        else:
            loss, correct, grads = piecewise_loss_grad(model, state.params, x, y, piece)
            new_bs = {}
        params, opt_state = apply_sgd(tx, state.params, state.opt_state, grads, lr)
        return TrainState(params, new_bs, opt_state), loss * n, correct

    return step


def eval_schedule(key: jax.Array, epoch: jax.Array, num_batches: int):
    """Evaluation keys: epoch key ``ek = fold_in(fold_in(key, 1), epoch)``, permutation
    ``fold_in(ek, 0)``, batch ``b`` ``fold_in(ek, b + 1)``."""
    ek = jax.random.fold_in(jax.random.fold_in(key, 1), epoch)
    return jax.random.fold_in(ek, 0), jax.vmap(
        lambda b: jax.random.fold_in(ek, b + 1))(jnp.arange(num_batches))


def expert_schedule(key: jax.Array, epoch: jax.Array, num_batches: int):
    """Expert keys: permutation ``fold_in(fold_in(key, 1), epoch)``, batch ``b``
    ``fold_in(fold_in(key, 2), epoch * num_batches + b)`` (steps counted over all epochs)."""
    aug = jax.random.fold_in(key, 2)
    return jax.random.fold_in(jax.random.fold_in(key, 1), epoch), jax.vmap(
        lambda b: jax.random.fold_in(aug, epoch * num_batches + b))(jnp.arange(num_batches))


def split_schedule(key: jax.Array, epoch: jax.Array, num_batches: int):
    """DC inner-training keys (``key`` is the epoch's): ``k_perm, k_aug = split(key)``, batch
    keys ``split(k_aug, num_batches)``."""
    del epoch
    k_perm, k_aug = jax.random.split(key)
    return k_perm, jax.random.split(k_aug, num_batches)


def given_schedule(given: Any, epoch: jax.Array, num_batches: int):
    """Replayed choices instead of keys (the parity tests replay the official code's): ``given``
    holds ``perm [epochs, N]`` (the order of each epoch) and ``dsa``, the augmentation draws
    ``[epochs, num_batches, ...]`` (:func:`augmenter` ``given``; None: no augmentation)."""
    draws = jax.tree.map(lambda a: a[epoch], given["dsa"])
    return given["perm"][epoch], draws if draws is not None else jnp.zeros(num_batches)


def epoch_fn(step: Callable, num_train: int, batch_size: int, schedule: Schedule,
             permute: Callable = jax.random.permutation) -> Callable:
    """``(state, key, epoch, lr, x [N, ...], y [N]) -> (state, mean loss, accuracy)``: one epoch
    of :func:`step_fn` ``step`` over shuffled batches (module docstring) of one network.
    ``permute(perm_key, N)``: the epoch's order (given orders: the identity on the key)."""
    num_full, remainder = divmod(num_train, batch_size)
    num_batches = num_full + bool(remainder)

    def epoch(state: TrainState, key, epoch, lr, x, y):
        perm_key, batch_keys = schedule(key, epoch, num_batches)
        perm = permute(perm_key, num_train)

        def body(st, b_key):
            b, k = b_key
            idx = jax.lax.dynamic_slice_in_dim(perm, b * batch_size, batch_size)
            st, loss, correct = step(st, x[idx], y[idx], k, lr)
            return st, (loss, correct)

        loss_sum = jnp.zeros((), jnp.float32)
        correct = jnp.zeros((), jnp.int32)
        if num_full:
            state, (losses, corrects) = jax.lax.scan(
                body, state, (jnp.arange(num_full),
                              jax.tree.map(lambda a: a[:num_full], batch_keys)))
            loss_sum, correct = losses.sum(), corrects.sum()
        if remainder:
            idx = perm[num_full * batch_size:]
            state, loss, c = step(state, x[idx], y[idx],
                                  jax.tree.map(lambda a: a[num_full], batch_keys), lr)
            loss_sum, correct = loss_sum + loss, correct + c
        return state, loss_sum / num_train, correct / num_train

    return epoch


def map_stacked(fn: Any, mesh: Any, in_axes: int | None | Sequence[int | None] = 0, *,
                in_loop: bool | None = None) -> Any:
    """``fn`` over the leading (seed or expert) axis of the arguments whose ``in_axes`` is 0,
    the others shared: ``lax.map`` where ``in_loop`` (None: the backend policy's
    ``seeds_in_loop``), else :func:`fred_jax.sharding.sharded_vmap` (split over ``mesh``).
    Use inside jit."""
    if in_loop is None:
        in_loop = platform.policy(mesh=mesh).seeds_in_loop
    if not in_loop:
        return sharding.sharded_vmap(fn, mesh, in_axes=in_axes)

    def mapped(*args):
        axes = tuple(in_axes) if isinstance(in_axes, Sequence) else (in_axes,) * len(args)

        def one(stacked):
            items = iter(stacked)
            return fn(*(next(items) if ax == 0 else a for a, ax in zip(args, axes)))

        return jax.lax.map(one, tuple(a for a, ax in zip(args, axes) if ax == 0))

    return mapped


class Programs(NamedTuple):
    """Jitted programs of one training setting over stacked networks."""

    init: Callable  # keys [S] -> TrainState [S]
    epoch: Callable  # (state, keys [S], epoch, lr, x, y) -> (state, loss [S], accuracy [S])
    test: Callable  # (state, x [B], y [B], valid [B]) -> correct [S]
    reset: Callable  # state -> state with fresh optimiser states (momentum reset)
    uses_batch_stats: bool


@functools.lru_cache(maxsize=32)
def programs(model_name: str, num_classes: int, image_shape: tuple[int, ...], conv_impl: str,
             num_train: int, batch_size: int, dsa_strategy: str | None,
             dsa_params: augment.DSAParams, momentum: float, weight_decay: float, mesh: Any,
             dc_strategy: str | None = None, schedule: Schedule = eval_schedule,
             given: bool = False) -> Programs:
    """Jitted programs for ``model_name`` trained with ``conv_impl`` convolutions on
    ``num_train`` images (cached: compile once). Network ``i`` of the stacked keys initialises
    from ``fold_in(key_i, 0)``; its epochs follow ``schedule``. Layout and gradient pieces are
    the backend policy's for ``mesh``. ``given``: ``epoch`` takes, instead of keys, replayed
    orders and draws (:func:`given_schedule`) with a leading network axis."""
    policy = platform.policy(mesh=mesh)
    model = models.get(model_name, num_classes, image_shape, conv_impl=conv_impl)
    uses_bs = "batch_stats" in jax.eval_shape(
        lambda k: models.init(model, k, image_shape), jax.random.key(0))
    tx = sgd(momentum, weight_decay)
    step = step_fn(model, tx, augmenter(dsa_strategy, dsa_params, dc_strategy, given),
                   uses_batch_stats=uses_bs, piece=policy.train_piece)
    epoch_one = (epoch_fn(step, num_train, batch_size, given_schedule, lambda p, n: p) if given
                 else epoch_fn(step, num_train, batch_size, schedule))

    def init_one(key):
        variables = models.init(model, jax.random.fold_in(key, 0), image_shape)
        params = variables["params"]
        return TrainState(params, variables.get("batch_stats", {}), tx.init(params))

    # Inference has no backward pass: the policy's convolutions (same parameters).
    test_model = models.get(model_name, num_classes, image_shape, conv_impl=policy.conv_infer)

    def test_one(state: TrainState, x, y, valid):
        x = x.astype(jax.tree.leaves(state.params)[0].dtype)  # float64 networks (x64 runs)
        variables = {"params": state.params}
        if uses_bs:
            variables["batch_stats"] = state.batch_stats
        logits = in_pieces(lambda xb: test_model.apply(variables, xb, train=False), x,
                           policy.infer_piece)
        return jnp.sum((jnp.argmax(logits, -1) == y) & valid)

    def reset(state: TrainState) -> TrainState:
        return state._replace(opt_state=tx.init(state.params))

    init = jax.jit(sharding.sharded_vmap(init_one, mesh))
    epoch = jax.jit(map_stacked(epoch_one, mesh, (0, 0, None, None, None, None),
                                in_loop=policy.seeds_in_loop), donate_argnums=0)
    test = jax.jit(map_stacked(test_one, mesh, (0, None, None, None),
                               in_loop=policy.seeds_in_loop))
    return Programs(init, epoch, test, reset, uses_bs)


def count_correct(test: Callable, state: Any, x: np.ndarray, y: np.ndarray,
                  batch_size: int) -> np.ndarray:
    """Correct predictions ``[S]`` of the stacked networks of ``state`` on ``(x, y)`` with the
    ``test`` program, in batches of ``min(batch_size, N)`` (the last one padded and masked, so
    every call has one shape)."""
    n = len(x)
    batch = min(batch_size, n)
    correct = None
    for s in range(0, n, batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        valid = np.arange(batch) < len(xb)
        if len(xb) < batch:
            pad = batch - len(xb)
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad,), yb.dtype)])
        c = test(state, jnp.asarray(xb), jnp.asarray(yb), jnp.asarray(valid))
        correct = c if correct is None else correct + c
    return np.asarray(sharding.to_host(correct))


__all__ = ["Programs", "Schedule", "TrainState", "apply_sgd", "augmenter", "count_correct",
           "epoch_fn", "eval_schedule", "expert_schedule", "given_schedule", "in_pieces",
           "map_stacked", "piecewise_loss_grad", "programs", "sgd", "split_schedule", "step_fn"]
