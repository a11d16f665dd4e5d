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

The training itself is :mod:`fred_jax.classifier` (epochs, SGD, gradient pieces, padded test
batches). Seeds train at the same time: states are stacked on a leading seed axis and one
compiled program runs an epoch of every seed, vmapped (split over a device mesh) or, where the
backend policy says so (:mod:`fred_jax.platform`: XLA:CPU without a mesh), one after another
inside that program. Each seed has its own initialisation, shuffling and augmentation keys, so
the result equals training the seeds one at a time. Python runs once per epoch; compiled
programs are cached per configuration. Speed: ``benchmarks/evaluate.py``.

Key derivation (explicit, so one seed can be re-run alone): seed ``i`` of ``key`` is
``fold_in(key, i)`` (:func:`seed_keys`); from a seed key, the initialisation key is
``fold_in(k, 0)``, epoch ``e``'s key is ``fold_in(fold_in(k, 1), e)``, its permutation key
``fold_in(ek, 0)`` and batch ``b``'s augmentation key ``fold_in(ek, b + 1)``
(:func:`fred_jax.classifier.eval_schedule`).

Coreset baselines: :mod:`fred_jax.coreset`; command line (``python -m fred_jax.evaluate``):
:mod:`fred_jax.cli`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fred_jax import augment, classifier, dc_augment, platform, sharding

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


def seed_keys(key: jax.Array, num_seeds: int) -> jax.Array:
    """Keys of seeds ``0 .. num_seeds - 1``: ``fold_in(key, i)``, stacked ``[num_seeds]``."""
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_seeds))


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
                progress: bool = True, return_state: bool = False,
                extra_tests: Mapping[str, tuple[Any, Any]] | None = None,
                replay: Mapping[str, Any] | None = None) -> dict:
    """Train one network per key in ``keys [S]`` at the same time, then test each.

    See :func:`train_and_test` (which calls this with :func:`seed_keys`). ``return_state`` adds
    the final stacked :class:`fred_jax.classifier.TrainState` under ``"state"`` and, under
    ``"tester"``, ``tester(x, y) -> accs [S]`` (percent) testing the same networks on another
    set (shifted test sets) with the same compiled test program. ``extra_tests``: ``{name: (x,
    y)}`` tested by the same networks too, under ``"extra_tests"`` (accs, mean, std).
    ``replay``: start from ``params`` (stacked ``[S]``) and replay given epoch orders ``perm
    [S, epochs + 1, N]`` and DSA draws ``dsa`` (``[S, epochs + 1, batches, ...]``, see
    :func:`fred_jax.classifier.given_schedule`; None without augmentation) instead of drawing
    them from ``keys`` (the parity tests replay the official code's).
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
    policy = platform.policy(mesh=mesh)
    conv_impl = platform.resolve(conv_impl, policy.conv_train)
    if conv_impl == "lax" and policy.backend == "cpu" and policy.seeds_in_loop:
        warnings.warn("conv_impl='lax' trains inside loops on XLA:CPU, where its kernel "
                      "gradients are two orders of magnitude slower; 'tapgrad' gives the same numbers fast",
                      stacklevel=2)
    strategy = augment.parse_strategy(dsa_strategy) if dsa else ()
    dc_ops = dc_augment.parse_strategy(dc_strategy)
    if strategy and dc_ops:
        raise ValueError(f"DSA ({'_'.join(strategy)!r}) and DC augmentation ({dc_strategy!r}) "
                         f"exclude each other (the reference mutes DC augmentation under DSA); "
                         f"turn one off")
    progs = classifier.programs(model_name, num_classes, tuple(x_train.shape[1:]), conv_impl,
                                len(x_train), batch_size, "_".join(strategy) or None,
                                dsa_params, float(momentum), float(weight_decay), mesh,
                                dc_strategy="_".join(dc_ops) or None,
                                given=replay is not None)

    xs, ys = jnp.asarray(x_train), jnp.asarray(y_train)
    if replay is None:
        state = progs.init(keys)
    else:
        state = progs.reset(classifier.TrainState(replay["params"], {}, None))
        keys = {"perm": jnp.asarray(replay["perm"]), "dsa": replay["dsa"]}
    losses, accs, lrs = [], [], []
    bar = tqdm(range(epochs + 1), desc=f"{model_name} x{num_seeds}", disable=not progress,
               leave=False, dynamic_ncols=True)
    for ep in bar:
        ep_lr = lr_at_epoch(ep, epochs, lr)
        if ep > 0 and ep_lr != lrs[-1]:  # reference re-creates the optimiser: momentum reset
            state = progs.reset(state)
        state, loss, acc = progs.epoch(state, keys, jnp.int32(ep), jnp.float32(ep_lr), xs, ys)
        losses.append(loss)
        accs.append(acc)
        lrs.append(ep_lr)
        if progress and (ep % max(1, epochs // 50) == 0 or ep == epochs):
            bar.set_postfix(loss=f"{float(jnp.mean(loss)):.3f}", lr=f"{ep_lr:.3g}")
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - start

    def tester(x, y, name: str = "test set") -> np.ndarray:
        """Test accuracy (percent) of every trained network on ``(x, y)``."""
        x, y = _check_set(name, x, y, num_classes)
        return 100.0 * classifier.count_correct(progs.test, state, x, y, test_batch_size) / len(x)

    test_accs = tester(x_test, y_test)
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
    if extra_tests:  # e.g. a validation split: the same networks, accuracies per seed
        result["extra_tests"] = {}
        for name, (x, y) in extra_tests.items():
            a = tester(x, y, name)
            result["extra_tests"][name] = {"accs": [float(v) for v in a],
                                           "mean": float(np.mean(a)), "std": float(np.std(a))}
    if return_state:
        result["state"] = state
        result["tester"] = tester
    return result


def train_and_test(key: jax.Array, model_name: str, x_train, y_train, x_test, y_test, *,
                   num_classes: int, epochs: int, lr: float, num_seeds: int = 5,
                   batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4,
                   dsa: bool = True, dsa_strategy: str = augment.STRATEGY,
                   dsa_params: augment.DSAParams = augment.DSAParams(),
                   dc_strategy: str = "", conv_impl: str | None = None,
                   test_batch_size: int = 256, mesh: Any = None, progress: bool = True,
                   extra_tests: Mapping[str, tuple[Any, Any]] | None = None) -> dict:
    """Train ``num_seeds`` fresh ``model_name`` networks on ``(x_train, y_train)`` with the
    reference protocol (module docstring) at the same time, and test them on ``(x_test, y_test)``.

    Images: normalised float ``[N, *spatial, C]``; labels: int class indices ``[N]``.
    Returns a dict with ``accs`` (test accuracy per seed, percent), ``mean``, ``std``,
    ``seconds`` (wall time, compilation included), ``train_seconds``, per-epoch ``train_loss``,
    ``train_acc`` (mean over seeds) and ``lr_per_epoch``, and the configuration. ``mesh``: a
    ``jax.sharding.Mesh`` over which the seeds are split (None: one device); the results agree
    with one device up to float rounding. ``conv_impl``: a ``models.CONV_IMPLS`` name, or None
    / ``"auto"`` for the backend policy's (:mod:`fred_jax.platform`). ``dc_strategy``: DC
    augmentation ops (:mod:`fred_jax.dc_augment`, e.g. ``"crop_scale_rotate"``; ``""`` none)
    instead of DSA (needs ``dsa=False``).
    """
    return train_seeds(seed_keys(key, num_seeds), model_name, x_train, y_train, x_test, y_test,
                       num_classes=num_classes, epochs=epochs, lr=lr, batch_size=batch_size,
                       momentum=momentum, weight_decay=weight_decay, dsa=dsa,
                       dsa_strategy=dsa_strategy, dsa_params=dsa_params,
                       dc_strategy=dc_strategy, conv_impl=conv_impl,
                       test_batch_size=test_batch_size, mesh=mesh, progress=progress,
                       extra_tests=extra_tests)


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


if __name__ == "__main__":  # run as a script this file is __main__, not fred_jax.evaluate
    from fred_jax import cli

    cli.evaluate_command()
