"""Evaluation protocol: train fresh networks on a (synthetic or coreset) set, test on real data.

Faithful to the reference ``evaluate_synset`` of VICO-UoE/DatasetCondensation (utils.py), which
MTT, DM and FreD reuse:

- ``for ep in range(Epoch + 1)``: the loop trains ``epochs + 1`` epochs (0 .. epochs);
- SGD with momentum 0.9 and *coupled* weight decay 5e-4 (``torch.optim.SGD(weight_decay=...)``:
  ``g = grad + wd * p; buf = momentum * buf + g; p -= lr * buf``), on all parameters;
- ``lr_schedule = [Epoch // 2 + 1]``: *after* epoch ``epochs // 2 + 1`` the learning rate is
  multiplied by 0.1 and the optimiser is re-created, which also resets the momentum buffer.
  So epochs ``0 .. epochs//2 + 1`` run at ``lr`` and the remaining ``epochs//2 - 1`` (for even
  ``epochs``) at ``0.1 * lr``; see :func:`lr_at_epoch`;
- a ``DataLoader(batch_size=256, shuffle=True)``: a fresh permutation every epoch, a smaller last
  batch when the set size is not a multiple of the batch size (``drop_last=False``), mean
  cross-entropy per batch;
- DSA (``DiffAugment`` with ``seed=-1``: per-image parameters, one op of the strategy per batch)
  on every training batch; or, instead (``dc_strategy``, the official method DC without DSA:
  ``crop_scale_rotate`` on MNIST, ``DC/utils.py`` ``get_daparam``), the DC augmentation of
  :mod:`fred_jax.dc_augment` (one op per image); no augmentation at test time;
- test accuracy of the final network (BatchNorm in inference mode); mean and population std
  (``np.std``) over the seeds. Accuracies are reported in percent, like the papers' tables.

Seeds train at the same time: parameters and momentum are stacked on a leading seed axis and
one compiled program runs an epoch of every seed (each seed's epoch is a ``lax.scan`` over its
batches). On accelerators, and over a device mesh (:func:`fred_jax.sharding.sharded_vmap`), the
seeds are ``vmap``-ped. On XLA:CPU without a mesh they run one after another inside that program
(``lax.map``, :func:`seeds_in_loop`): vmapped convolutions with per-seed kernels become grouped
convolutions, which XLA:CPU runs far slower than separate ones, and a 2-core CPU is already
saturated by one seed. Each seed has its own initialisation, shuffling and augmentation keys, so
the result equals training the seeds one at a time. Python runs once per epoch; compiled
programs are cached per configuration.

CPU specifics: training convolutions default to ``conv_impl="tapgrad"`` (:func:`default_conv_impl`;
``lax`` forward, gradients as forward convolutions and per-tap matmuls, because XLA:CPU's own
kernel-gradient convolution is ~150x slower inside loops), and each batch's gradient is summed
over pieces of :data:`CPU_PIECE` images (same numbers for per-sample-normalised networks; not for
BatchNorm ones, which use the whole batch) so that a piece's activations stay in cache. Testing
has no backward pass and uses ``lax`` convolutions. Measured with ``benchmarks/evaluate.py``
(ConvNet, 160 CIFAR-sized images, DSA, quiet 2-core CPU): one seed 2.39 epochs/s, five seeds
0.47 epochs/s (5.0x one seed's time: the CPU is compute bound, so seeds cost linear time there);
before, with vmapped ``im2col`` convolutions, 0.86 and 0.13 epochs/s (6.8x), and with vmapped
``lax`` convolutions 1.74 and 0.05 epochs/s (36x). Batching seeds saves time on accelerators,
where one small-batch network leaves the device mostly idle.

Key derivation (explicit, so one seed can be re-run alone): seed ``i`` of ``key`` is
``fold_in(key, i)`` (:func:`seed_keys`); from a seed key, the initialisation key is
``fold_in(k, 0)``, epoch ``e``'s key is ``fold_in(fold_in(k, 1), e)``, its permutation key
``fold_in(ek, 0)`` and batch ``b``'s augmentation key ``fold_in(ek, b + 1)``.

Coreset baselines (:func:`coreset`): ``random`` (``ipc`` images per class uniformly without
replacement) and ``herding`` (greedy herding, Welling 2009, as used for coresets by Castro et al.
2018 / iCaRL: per class, repeatedly add the image whose inclusion brings the mean of the selected
L2-normalised embeddings closest to the class mean embedding). The reference code ships no
herding implementation; the DC paper uses embeddings of a trained ConvNet. Here the embedding is
that of a ConvNet (``features=True``, the classifier input) initialised from ``key`` and, with
``herding_epochs > 0``, first trained on the full training set with this module's protocol.

CLI::

    python -m fred_jax.evaluate --synset export.npz --models ConvNet,AlexNet --num_eval 5 \\
        --epochs 1000 --lr 0.01 --out results.json
    python -m fred_jax.evaluate --coreset random --ipc 10 --dataset cifar10 --epochs 300 \\
        --out random_ipc10.json
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from fred_jax import augment, dc_augment, models, sharding

EVAL_MODES: dict[str, tuple[str, ...]] = {
    "M": ("ConvNet", "AlexNet", "VGG11", "ResNet18"),
    "W": ("ConvNetW32", "ConvNetW64", "ConvNetW128", "ConvNetW256"),
    "D": ("ConvNetD1", "ConvNetD2", "ConvNetD3", "ConvNetD4"),
    "A": ("ConvNetAS", "ConvNetAR", "ConvNetAL"),
    "P": ("ConvNetNP", "ConvNetMP", "ConvNetAP"),
    "N": ("ConvNetNN", "ConvNetBN", "ConvNetLN", "ConvNetIN", "ConvNetGN"),
}
"""Architecture pools of the reference ``get_eval_pool`` ('S' is resolved by :func:`eval_pool`).
'M' is the cross-architecture set of the FreD/MTT tables."""

CORESET_METHODS = ("random", "herding")
LR_DECAY = 0.1


def eval_pool(mode: str, model: str = "ConvNet") -> tuple[str, ...]:
    """Architectures evaluated in ``mode``; 'S' is the distillation architecture ``model`` with
    BatchNorm stripped (``ConvNetBN`` -> ``ConvNet``), as in the reference."""
    if mode == "S":
        return (model[: model.index("BN")] if "BN" in model else model,)
    if mode not in EVAL_MODES:
        raise ValueError(f"unknown eval mode {mode!r}; choose from S, {', '.join(EVAL_MODES)}")
    return EVAL_MODES[mode]


def lr_at_epoch(epoch: int, epochs: int, lr: float) -> float:
    """Learning rate of (0-based) training epoch ``epoch`` of ``epochs + 1``: ``lr`` up to and
    including epoch ``epochs // 2 + 1``, then ``0.1 * lr`` (reference ``lr_schedule``)."""
    return lr if epoch <= epochs // 2 + 1 else lr * LR_DECAY


def default_conv_impl() -> str:
    """Convolution implementation for training evaluation networks: ``tapgrad`` on CPU (XLA:CPU's
    own convolution gradients are slow inside loops), ``lax`` elsewhere."""
    return "tapgrad" if jax.default_backend() == "cpu" else "lax"


def resolve_conv_impl(conv_impl: str | None) -> str:
    """``conv_impl`` itself, or for None / ``"auto"`` the backend's :func:`default_conv_impl`."""
    return default_conv_impl() if conv_impl in (None, "auto") else conv_impl


CPU_PIECE = 32  # images per gradient piece on CPU: a piece's activations stay in cache


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

    zeros = (jnp.zeros((), x.dtype), jnp.zeros((), x.dtype), jax.tree.map(jnp.zeros_like, params))
    (ce, correct, grads), _ = jax.lax.scan(
        body, zeros, (x.reshape(count, piece, *x.shape[1:]), y.reshape(count, piece), w))
    return ce / n, correct.astype(jnp.int32), jax.tree.map(lambda g: g / n, grads)


def seeds_in_loop(mesh: Any) -> bool:
    """Whether seeds run one after another inside each compiled epoch (``lax.map``) rather than
    vmapped: on XLA:CPU without a mesh, where vmapped convolutions become slow grouped ones."""
    return mesh is None and jax.default_backend() == "cpu"


def map_stacked(fn: Any, mesh: Any, in_axes: int | None | Sequence[int | None] = 0) -> Any:
    """``fn`` over the leading (seed or expert) axis of the arguments whose ``in_axes`` is 0,
    the others shared: ``lax.map`` where :func:`seeds_in_loop`, else
    :func:`fred_jax.sharding.sharded_vmap` (split over ``mesh``). Use inside jit."""
    if not seeds_in_loop(mesh):
        return sharding.sharded_vmap(fn, mesh, in_axes=in_axes)

    def mapped(*args):
        axes = tuple(in_axes) if isinstance(in_axes, Sequence) else (in_axes,) * len(args)

        def one(stacked):
            items = iter(stacked)
            return fn(*(next(items) if ax == 0 else a for a, ax in zip(args, axes)))

        return jax.lax.map(one, tuple(a for a, ax in zip(args, axes) if ax == 0))

    return mapped


def seed_keys(key: jax.Array, num_seeds: int) -> jax.Array:
    """Keys of seeds ``0 .. num_seeds - 1``: ``fold_in(key, i)``, stacked ``[num_seeds]``."""
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_seeds))


class TrainState(NamedTuple):
    """Per-seed training state (stacked on a leading seed axis when vmapped)."""

    params: Any
    batch_stats: Any  # {} for architectures without BatchNorm
    momentum: Any  # SGD momentum buffers, same tree as params


class _Programs(NamedTuple):
    init: Any
    epoch: Any
    test: Any
    uses_batch_stats: bool


def _sgd(params, momentum_buf, grads, lr, momentum: float, weight_decay: float):
    """``torch.optim.SGD(momentum, weight_decay)`` (dampening 0, no Nesterov), one step."""
    buf = jax.tree.map(lambda m, g, p: momentum * m + g + weight_decay * p,
                       momentum_buf, grads, params)
    return jax.tree.map(lambda p, m: p - lr * m, params, buf), buf


@functools.lru_cache(maxsize=32)
def _programs(model_name: str, num_classes: int, image_shape: tuple[int, ...], conv_impl: str,
              num_train: int, batch_size: int, dsa_strategy: str | None,
              dsa_params: augment.DSAParams, momentum: float, weight_decay: float,
              mesh: Any, dc_strategy: str | None = None) -> _Programs:
    """Jitted init / epoch / test functions for one configuration (cached: compile once).
    ``dsa_strategy`` / ``dc_strategy``: the training batches' augmentation (at most one)."""
    model = models.get(model_name, num_classes, image_shape, conv_impl=conv_impl)
    uses_bs = "batch_stats" in jax.eval_shape(
        lambda k: models.init(model, k, image_shape), jax.random.key(0))
    num_full, remainder = divmod(num_train, batch_size)

    def init_one(key):
        variables = models.init(model, jax.random.fold_in(key, 0), image_shape)
        params = variables["params"]
        return TrainState(params, variables.get("batch_stats", {}),
                          jax.tree.map(jnp.zeros_like, params))

    def step(state: TrainState, x, y, key, lr):
        if dsa_strategy is not None:
            x = augment.dsa(key, x, dsa_strategy, dsa_params, siamese=False)
        elif dc_strategy is not None:
            x = dc_augment.augment(key, x, dc_strategy)

        def loss_fn(params):
            if uses_bs:
                logits, updates = model.apply(
                    {"params": params, "batch_stats": state.batch_stats}, x, train=True,
                    mutable=["batch_stats"])
                new_bs = updates["batch_stats"]
            else:
                logits, new_bs = model.apply({"params": params}, x, train=True), {}
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, (new_bs, jnp.sum(jnp.argmax(logits, -1) == y))

        n = x.shape[0]
        if uses_bs or piece is None or n <= piece:
            (loss, (new_bs, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params)
        else:
            loss, correct, grads = piecewise_loss_grad(model, state.params, x, y, piece)
            new_bs = {}
        params, buf = _sgd(state.params, state.momentum, grads, lr, momentum, weight_decay)
        return TrainState(params, new_bs, buf), loss * x.shape[0], correct

    piece = CPU_PIECE if seeds_in_loop(mesh) else None

    def epoch_one(state: TrainState, key, epoch, lr, x_train, y_train):
        ek = jax.random.fold_in(jax.random.fold_in(key, 1), epoch)
        perm = jax.random.permutation(jax.random.fold_in(ek, 0), num_train)

        def body(st, b):
            idx = jax.lax.dynamic_slice_in_dim(perm, b * batch_size, batch_size)
            st, loss, correct = step(st, x_train[idx], y_train[idx],
                                     jax.random.fold_in(ek, b + 1), lr)
            return st, (loss, correct)

        loss_sum = jnp.zeros((), jnp.float32)
        correct = jnp.zeros((), jnp.int32)
        if num_full:
            state, (losses, corrects) = jax.lax.scan(body, state, jnp.arange(num_full))
            loss_sum, correct = losses.sum(), corrects.sum()
        if remainder:
            idx = perm[num_full * batch_size:]
            state, loss, c = step(state, x_train[idx], y_train[idx],
                                  jax.random.fold_in(ek, num_full + 1), lr)
            loss_sum, correct = loss_sum + loss, correct + c
        return state, loss_sum / num_train, correct / num_train

    # Inference has no backward pass: plain lax convolutions (same parameters) are fastest.
    test_model = models.get(model_name, num_classes, image_shape, conv_impl="lax")

    def test_one(state: TrainState, x, y, valid):
        variables = {"params": state.params}
        if uses_bs:
            variables["batch_stats"] = state.batch_stats
        logits = test_model.apply(variables, x, train=False)
        return jnp.sum((jnp.argmax(logits, -1) == y) & valid)

    init = jax.jit(sharding.sharded_vmap(init_one, mesh))
    epoch = jax.jit(map_stacked(epoch_one, mesh, (0, 0, None, None, None, None)),
                    donate_argnums=0)
    test = jax.jit(map_stacked(test_one, mesh, (0, None, None, None)))
    return _Programs(init, epoch, test, uses_bs)


def _check_set(name: str, x, y, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 4:
        raise ValueError(f"{name}: images must be [N, *spatial, C], got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name}: labels must be [N] = [{x.shape[0]}], got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integer class indices, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got "
                         f"[{y.min()}, {y.max()}]")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: images must be floating point (normalised), got {x.dtype}")
    return x.astype(np.float32, copy=False), y.astype(np.int32, copy=False)


def train_seeds(keys: jax.Array, model_name: str, x_train, y_train, x_test, y_test, *,
                num_classes: int, epochs: int, lr: float, batch_size: int = 256,
                momentum: float = 0.9, weight_decay: float = 5e-4, dsa: bool = True,
                dsa_strategy: str = augment.STRATEGY,
                dsa_params: augment.DSAParams = augment.DSAParams(), dc_strategy: str = "",
                conv_impl: str | None = None, test_batch_size: int = 256, mesh: Any = None,
                progress: bool = True, return_state: bool = False) -> dict:
    """Train one network per key in ``keys [S]`` at the same time, then test each.

    See :func:`train_and_test` (which calls this with :func:`seed_keys`). ``return_state`` adds
    the final stacked :class:`TrainState` under ``"state"``.
    """
    start = time.perf_counter()
    x_train, y_train = _check_set("train set", x_train, y_train, num_classes)
    x_test, y_test = _check_set("test set", x_test, y_test, num_classes)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"train images {x_train.shape[1:]} and test images "
                         f"{x_test.shape[1:]} differ in shape")
    if len(x_train) == 0 or len(x_test) == 0:
        raise ValueError("train and test sets must be non-empty")
    if epochs < 0 or lr <= 0 or batch_size < 1 or test_batch_size < 1:
        raise ValueError(f"need epochs >= 0, lr > 0, batch sizes >= 1; got epochs={epochs}, "
                         f"lr={lr}, batch_size={batch_size}, test_batch_size={test_batch_size}")
    keys = jnp.asarray(keys)
    if keys.ndim == 0 or keys.shape[0] < 1:
        raise ValueError(f"keys must be a non-empty stack of seed keys, got shape {keys.shape}")
    num_seeds = keys.shape[0]
    conv_impl = resolve_conv_impl(conv_impl)
    if conv_impl == "lax" and seeds_in_loop(mesh):
        warnings.warn("conv_impl='lax' trains inside loops on XLA:CPU, where its kernel "
                      "gradients are ~150x slower; 'tapgrad' gives the same numbers fast",
                      stacklevel=2)
    strategy = augment.parse_strategy(dsa_strategy) if dsa else ()
    dc_ops = dc_augment.parse_strategy(dc_strategy)
    if strategy and dc_ops:
        raise ValueError(f"DSA ({'_'.join(strategy)!r}) and DC augmentation ({dc_strategy!r}) "
                         f"exclude each other (the reference mutes DC augmentation under DSA); "
                         f"turn one off")
    progs = _programs(model_name, num_classes, tuple(x_train.shape[1:]), conv_impl,
                      len(x_train), batch_size, "_".join(strategy) or None, dsa_params,
                      float(momentum), float(weight_decay), mesh,
                      dc_strategy="_".join(dc_ops) or None)

    xs, ys = jnp.asarray(x_train), jnp.asarray(y_train)
    state = progs.init(keys)
    losses, accs, lrs = [], [], []
    bar = tqdm(range(epochs + 1), desc=f"{model_name} x{num_seeds}", disable=not progress,
               leave=False, dynamic_ncols=True)
    for ep in bar:
        ep_lr = lr_at_epoch(ep, epochs, lr)
        if ep > 0 and ep_lr != lrs[-1]:  # reference re-creates the optimiser: momentum reset
            state = state._replace(momentum=jax.tree.map(jnp.zeros_like, state.momentum))
        state, loss, acc = progs.epoch(state, keys, jnp.int32(ep), jnp.float32(ep_lr), xs, ys)
        losses.append(loss)
        accs.append(acc)
        lrs.append(ep_lr)
        if progress and (ep % max(1, epochs // 50) == 0 or ep == epochs):
            bar.set_postfix(loss=f"{float(jnp.mean(loss)):.3f}", lr=f"{ep_lr:.3g}")
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - start

    correct = jnp.zeros((num_seeds,), jnp.int32)
    for i in range(0, len(x_test), test_batch_size):
        xb, yb = x_test[i:i + test_batch_size], y_test[i:i + test_batch_size]
        valid = np.arange(test_batch_size) < len(xb)
        if len(xb) < test_batch_size:
            pad = test_batch_size - len(xb)
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad,), yb.dtype)])
        correct = correct + progs.test(state, jnp.asarray(xb), jnp.asarray(yb),
                                       jnp.asarray(valid))
    test_accs = 100.0 * sharding.to_host(correct) / len(x_test)
    losses, accs = sharding.to_host((losses, accs))  # seed-sharded over a multi-host mesh
    result = {
        "model": model_name,
        "accs": [float(a) for a in test_accs],
        "mean": float(np.mean(test_accs)),
        "std": float(np.std(test_accs)),
        "seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "num_seeds": num_seeds,
        "epochs": epochs,
        "train_epochs_run": epochs + 1,
        "lr": lr,
        "augmentation": ("dsa:" + "_".join(strategy) if strategy
                         else "dc:" + "_".join(dc_ops) if dc_ops else "none"),
        "conv_impl": conv_impl,
        "num_train": len(x_train),
        "num_test": len(x_test),
        "train_loss": [float(v) for v in np.mean(np.stack(losses), axis=1)],
        "train_acc": [float(v) for v in 100.0 * np.mean(np.stack(accs), axis=1)],
        "lr_per_epoch": lrs,
    }
    if return_state:
        result["state"] = state
    return result


def train_and_test(key: jax.Array, model_name: str, x_train, y_train, x_test, y_test, *,
                   num_classes: int, epochs: int, lr: float, num_seeds: int = 5,
                   batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4,
                   dsa: bool = True, dsa_strategy: str = augment.STRATEGY,
                   dsa_params: augment.DSAParams = augment.DSAParams(),
                   dc_strategy: str = "", conv_impl: str | None = None,
                   test_batch_size: int = 256, mesh: Any = None, progress: bool = True) -> dict:
    """Train ``num_seeds`` fresh ``model_name`` networks on ``(x_train, y_train)`` with the
    reference protocol (module docstring) at the same time, and test them on ``(x_test, y_test)``.

    Images: normalised float ``[N, *spatial, C]``; labels: int class indices ``[N]``.
    Returns a dict with ``accs`` (test accuracy per seed, percent), ``mean``, ``std``,
    ``seconds`` (wall time, compilation included), ``train_seconds``, per-epoch ``train_loss``,
    ``train_acc`` (mean over seeds) and ``lr_per_epoch``, and the configuration. ``mesh``: a
    ``jax.sharding.Mesh`` over which the seeds are split (None: one device); the results agree
    with one device up to float rounding. ``conv_impl``: a ``models.CONV_IMPLS`` name, or None
    / ``"auto"`` for :func:`default_conv_impl`. ``dc_strategy``: DC augmentation ops
    (:mod:`fred_jax.dc_augment`, e.g. ``"crop_scale_rotate"``; ``""`` none) instead of DSA
    (needs ``dsa=False``).
    """
    return train_seeds(seed_keys(key, num_seeds), model_name, x_train, y_train, x_test, y_test,
                       num_classes=num_classes, epochs=epochs, lr=lr, batch_size=batch_size,
                       momentum=momentum, weight_decay=weight_decay, dsa=dsa,
                       dsa_strategy=dsa_strategy, dsa_params=dsa_params,
                       dc_strategy=dc_strategy, conv_impl=conv_impl,
                       test_batch_size=test_batch_size, mesh=mesh, progress=progress)


def evaluate_synset(key: jax.Array, x_syn, y_syn, dataset, *, models: Sequence[str] = ("ConvNet",),
                    mode: str | None = None, distill_model: str = "ConvNet", epochs: int,
                    lr: float, num_eval: int = 5, **kwargs) -> dict[str, dict]:
    """Evaluate a synthetic set on the test split of ``dataset`` (a :class:`fred_jax.data.Dataset`
    or anything with ``num_classes``, ``x_test``, ``y_test``) for each architecture.

    ``mode`` (S/M/W/D/A/P/N, see :data:`EVAL_MODES`) replaces ``models`` by the reference pool;
    'S' uses ``distill_model``. ``x_syn``: ``[N, *spatial, C]`` or class-major
    ``[C, n, *spatial, C]`` (then ``y_syn`` may be None). Other keyword arguments go to
    :func:`train_and_test`. Returns ``{model_name: result}``; model ``j`` uses
    ``fold_in(key, j)``.
    """
    names = eval_pool(mode, distill_model) if mode is not None else tuple(models)
    if not names:
        raise ValueError("no architectures to evaluate")
    x_syn = np.asarray(x_syn)
    image_ndim = np.ndim(dataset.x_test) - 1
    if x_syn.ndim == image_ndim + 2:
        c, n = x_syn.shape[:2]
        if y_syn is None:
            y_syn = np.repeat(np.arange(c, dtype=np.int32), n)
        x_syn = x_syn.reshape(c * n, *x_syn.shape[2:])
    if y_syn is None:
        raise ValueError("y_syn is required for a flat [N, ...] synthetic set")
    results = {}
    for j, name in enumerate(names):
        results[name] = train_and_test(
            jax.random.fold_in(key, j), name, x_syn, y_syn, dataset.x_test, dataset.y_test,
            num_classes=dataset.num_classes, epochs=epochs, lr=lr, num_seeds=num_eval,
            **kwargs)
    return results


# --------------------------------------------------------------------------------- coresets




def coreset(key: jax.Array, dataset, ipc: int, method: str = "random", *,
            herding_model: str = "ConvNet", herding_epochs: int = 0, herding_lr: float = 0.01,
            conv_impl: str | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``ipc`` real training images per class of ``dataset``, class-major: ``(x [C*ipc, ...],
    y [C*ipc])``.

    ``random``: uniform without replacement (class ``c`` uses ``fold_in(key, c)``).
    ``herding``: greedy herding (:func:`herding_select`) on L2-normalised ``herding_model``
    embeddings; the network is initialised from ``key`` and, if ``herding_epochs > 0``, trained
    on the full training set first (protocol of :func:`train_and_test`, one seed, with DSA).
    """
    if method not in CORESET_METHODS:
        raise ValueError(f"unknown coreset method {method!r}; choose from {CORESET_METHODS}")
    if ipc < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    labels = np.asarray(dataset.y_train)
    members = [np.flatnonzero(labels == c) for c in range(dataset.num_classes)]
    small = [c for c, m in enumerate(members) if len(m) < ipc]
    if small:
        raise ValueError(f"classes {small} have fewer than ipc={ipc} training images")
    if method == "random":
        chosen = [m[np.asarray(jax.random.permutation(jax.random.fold_in(key, c), len(m)))[:ipc]]
                  for c, m in enumerate(members)]
    else:
        feats = embed(key, dataset, herding_model, epochs=herding_epochs, lr=herding_lr,
                      conv_impl=conv_impl, progress=progress)
        feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        chosen = [m[herding_select(feats[m], ipc)] for m in members]
    idx = np.concatenate(chosen)
    return np.asarray(dataset.x_train)[idx], labels[idx].astype(np.int32)


def embed(key: jax.Array, dataset, model_name: str = "ConvNet", *, epochs: int = 0,
          lr: float = 0.01, conv_impl: str | None = None, batch_size: int = 256,
          progress: bool = True) -> np.ndarray:
    """Embeddings ``[N_train, F]`` (classifier input) of ``dataset.x_train`` under a
    ``model_name`` network initialised from seed 0 of ``key``; trained on the full training set
    for ``epochs + 1`` epochs first if ``epochs > 0``."""
    x_train = np.asarray(dataset.x_train, np.float32)
    model = models.get(model_name, dataset.num_classes, x_train.shape[1:], conv_impl="lax")
    keys = seed_keys(key, 1)
    if epochs > 0:
        state = train_seeds(keys, model_name, x_train, dataset.y_train, dataset.x_test,
                            dataset.y_test, num_classes=dataset.num_classes, epochs=epochs,
                            lr=lr, conv_impl=conv_impl, progress=progress,
                            return_state=True)["state"]
        state = jax.tree.map(lambda v: v[0], state)
        variables = {"params": state.params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
    else:
        variables = models.init(model, jax.random.fold_in(keys[0], 0), x_train.shape[1:])
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False, features=True))
    out = [np.asarray(apply(variables, jnp.asarray(x_train[i:i + batch_size])))
           for i in tqdm(range(0, len(x_train), batch_size), desc="embed", leave=False,
                         disable=not progress)]
    return np.concatenate(out)


def herding_select(features, m: int) -> np.ndarray:
    """Greedy herding: indices (in selection order) of ``m`` rows of ``features [n, F]`` whose
    running mean tracks the mean ``mu`` of all rows: step ``t`` (1-based) picks the unselected
    row ``i`` minimising ``|| mu - (sum of selected + f_i) / t ||``."""
    features = jnp.asarray(features, jnp.float32)
    n = features.shape[0]
    if features.ndim != 2 or not 1 <= m <= n:
        raise ValueError(f"herding needs features [n, F] and 1 <= m <= n; got shape "
                         f"{features.shape}, m={m}")
    return np.asarray(_herding(features, m))


@functools.partial(jax.jit, static_argnums=1)
def _herding(features: jax.Array, m: int) -> jax.Array:
    mu = features.mean(0)

    def body(t, carry):
        total, taken, chosen = carry
        dist = jnp.sum((mu - (total + features) / (t + 1)) ** 2, axis=-1)
        i = jnp.argmin(jnp.where(taken, jnp.inf, dist))
        return total + features[i], taken.at[i].set(True), chosen.at[t].set(i)

    init = (jnp.zeros_like(mu), jnp.zeros(features.shape[0], bool), jnp.zeros(m, jnp.int32))
    return jax.lax.fori_loop(0, m, body, init)[2]


# -------------------------------------------------------------------------------------- CLI


def format_table(results: dict[str, dict]) -> str:
    """Plain-text table: model, mean +- std (percent), per-seed accuracies, seconds."""
    rows = [("model", "acc (%)", "per seed", "seconds")]
    for name, r in results.items():
        rows.append((name, f"{r['mean']:.2f} +- {r['std']:.2f}",
                     " ".join(f"{a:.2f}" for a in r["accs"]), f"{r['seconds']:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("synset", None, "export .npz written by fred_jax.synset.save")
    flags.DEFINE_enum("coreset", None, list(CORESET_METHODS), "evaluate a coreset baseline")
    flags.DEFINE_integer("ipc", 10, "images per class of the coreset")
    flags.DEFINE_string("dataset", None, "dataset of the coreset (a synset names its own)")
    flags.DEFINE_string("data_dir", None, "dataset files (default: $FRED_DATA_DIR)")
    flags.DEFINE_boolean("zca", False, "ZCA-whitened data (a synset's export decides itself)")
    flags.DEFINE_list("models", ["ConvNet"], "architectures to train")
    flags.DEFINE_string("mode", None, "reference eval mode S/M/W/D/A/P/N (overrides --models)")
    flags.DEFINE_string("distill_model", "ConvNet", "architecture of mode S")
    flags.DEFINE_integer("num_eval", 5, "seeds per architecture (trained at the same time)")
    flags.DEFINE_integer("epochs", 1000, "training epochs E (the loop runs E + 1, lr x0.1 "
                         "after epoch E//2 + 1)")
    flags.DEFINE_float("lr", None, "learning rate (default: the synset's learned 'syn_lr' "
                       "if it has one, else 0.01)")
    flags.DEFINE_integer("batch_size", 256, "training batch size")
    flags.DEFINE_boolean("dsa", True, "DSA augmentation on every training batch")
    flags.DEFINE_string("dsa_strategy", augment.STRATEGY, "DSA strategy")
    flags.DEFINE_string("dc_augment", "", "DC augmentation ops instead of DSA (needs --nodsa), "
                        "e.g. crop_scale_rotate as the official DC evaluates MNIST")
    flags.DEFINE_enum("conv_impl", "auto", ["auto", *models.CONV_IMPLS],
                      "convolution implementation (auto: im2col on CPU, lax elsewhere)")
    flags.DEFINE_integer("seed", 0, "PRNG seed")
    flags.DEFINE_integer("herding_epochs", 0, "epochs to train the herding embedding network "
                         "on the full training set (0: randomly initialised)")
    flags.DEFINE_string("out", None, "JSON file for the results")
    flags.DEFINE_boolean("progress", True, "progress bars")
    flags.DEFINE_boolean("verbose", False, "show the traceback of an error")


EXPORT_FIELDS = ("coeffs", "indices", "labels", "meta")
"""Arrays of an export ``.npz`` (``fred_jax.synset.save``)."""


def load_export(path: str) -> tuple[Any, dict]:
    """``fred_jax.synset.load(path)`` for a command line: ValueError or FileNotFoundError with
    one clear line for a file that is missing, not an export or holds a non-finite set."""
    import os
    import zipfile

    from fred_jax import synset as synset_lib

    what = "an export .npz written by fred_jax (synset_best.npz or synset_last.npz of a workdir)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; expected {what}")
    if not zipfile.is_zipfile(path):
        kind = "a .npy array" if path.endswith(".npy") else "not an .npz archive"
        raise ValueError(f"{path}: {kind}, expected {what}")
    with np.load(path, allow_pickle=False) as z:
        missing = [name for name in EXPORT_FIELDS if name not in z.files]
        if missing:
            raise ValueError(f"{path}: an .npz without the export fields {missing} (has "
                             f"{sorted(z.files)}); expected {what}")
        finite = bool(np.isfinite(z["coeffs"]).all())
    if not finite:
        raise ValueError(f"{path}: the synthetic set holds non-finite coefficients (a diverged "
                         f"run); distil again with a lower learning rate")
    try:
        return synset_lib.load(path)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a readable export ({e}); expected {what}") from None


def _main(argv: Sequence[str]) -> None:
    from absl import flags

    from fred_jax import configuration

    del argv
    configuration.run_command(_run_cli, flags.FLAGS.verbose)


def _run_cli() -> None:
    from absl import flags

    from fred_jax import data

    f = flags.FLAGS
    if (f.synset is None) == (f.coreset is None):
        raise ValueError("give exactly one of --synset and --coreset")
    key = jax.random.key(f.seed)
    lr = f.lr
    config: dict[str, Any] = {k: f[k].value for k in (
        "synset", "coreset", "ipc", "dataset", "zca", "models", "mode", "distill_model",
        "num_eval", "epochs", "batch_size", "dsa", "dsa_strategy", "dc_augment", "conv_impl",
        "seed", "herding_epochs")}
    if f.synset is not None:
        from fred_jax import synset as synset_lib

        syn, meta = load_export(f.synset)
        x, y = synset_lib.flat(syn)
        name = str(meta["dataset"])
        zca = bool(meta.get("zca", False))
        if lr is None and meta.get("syn_lr") is not None:
            lr = float(meta["syn_lr"])
        dataset = data.load(name, data_dir=f.data_dir, zca=zca,
                            norm_stats=meta.get("norm_stats", "dataset"))
        config.update(dataset=name, zca=zca)
    else:
        if f.dataset is None:
            raise ValueError("--coreset needs --dataset")
        dataset = data.load(f.dataset, data_dir=f.data_dir, zca=f.zca)
        x, y = coreset(jax.random.fold_in(key, 1), dataset, f.ipc, f.coreset,
                       herding_epochs=f.herding_epochs, conv_impl=f.conv_impl,
                       progress=f.progress)
    lr = 0.01 if lr is None else lr
    config.update(lr=lr, num_train=int(len(x)))
    results = evaluate_synset(jax.random.fold_in(key, 2), x, y, dataset, models=f.models,
                              mode=f.mode, distill_model=f.distill_model, epochs=f.epochs,
                              lr=lr, num_eval=f.num_eval, batch_size=f.batch_size, dsa=f.dsa,
                              dsa_strategy=f.dsa_strategy, dc_strategy=f.dc_augment,
                              conv_impl=f.conv_impl, progress=f.progress)
    print(format_table(results))
    if f.out:
        with open(f.out, "w") as fh:
            json.dump({"config": config, "results": results}, fh, indent=1)
        print(f"wrote {f.out}")


if __name__ == "__main__":
    from fred_jax import configuration

    _define_flags()
    configuration.run_app(_main)
