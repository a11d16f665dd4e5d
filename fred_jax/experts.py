"""Expert trajectories for trajectory matching (MTT ``buffer.py``, as used by FreD).

An expert is a network trained on the real training set from a fresh initialisation; its
trajectory is the flat parameter vector after every epoch, epoch 0 being the initialisation.
Reference defaults: ConvNet, SGD with lr 0.01, no momentum, no weight decay, batch 256, DSA on
the real images with per-image parameters (the reference calls ``DiffAugment`` without a seed,
which is its non-siamese mode), 50 epochs, 100 experts.

Storage: one ``expert_00007.npy`` per expert (``[epochs + 1, P]``, written atomically) and
``experts.json`` with the settings, see :mod:`fred_jax.expert_store`. A run whose TM experts are
missing calls :func:`prepare` before it loads its data.

Several experts train at once with the classifier trainer of :mod:`fred_jax.classifier`:
their states are stacked on a leading axis and one jitted program runs an epoch of all of them,
vmapped (with a device mesh, ``config.num_devices``, split over the devices, so
``tm.experts.parallel`` should be a multiple of the device count) or, where the backend policy
says so (:mod:`fred_jax.platform`: XLA:CPU without a mesh), one after another inside that
program. ``tm.experts.parallel`` None: the policy's count. Every random choice of expert ``i``
derives from ``fold_in(key, i)`` only (initialisation ``fold_in(k, 0)``, epoch ``e``'s order
``fold_in(fold_in(k, 1), e)``, step ``t``'s augmentation ``fold_in(fold_in(k, 2), t)``), so a
resumed, differently grouped or differently sharded run produces the same experts (up to float
rounding). Multi-host: every process trains, process 0 writes the files, and the others wait
for them at the end.

Command line (:func:`fred_jax.cli.experts_command`; settings from the config's ``tm.experts``
section plus ``dataset``, ``zca``, ``model`` and ``dsa_strategy``)::

    python -m fred_jax.experts --config configs/cifar10_ipc1.py
    python -m fred_jax.experts --config configs/mnist_ipc1.py --config.tm.experts.num_experts=4
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from fred_jax import augment, classifier, data, models, platform, sharding
from fred_jax.checks import ConfigError
from fred_jax.expert_store import (FORMAT_VERSION, atomic_write, check_settings,
                                   completed_experts, expert_path, flatten_params,
                                   missing_experts_message, param_unraveler, read_meta,
                                   write_meta)

# ----------------------------------------------------------------------------- training


TEST_BATCH = 500
"""Test images per batch of an expert's final accuracy."""


@functools.lru_cache(maxsize=8)
def _flat_program(mesh: Any) -> Callable:
    """Jitted stacked params -> ``[E, P]`` flat vectors (expert axis split over ``mesh``)."""
    return jax.jit(sharding.sharded_vmap(flatten_params, mesh))


def train_experts(
    key: jax.Array,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int,
    expert_dir: str,
    dataset: str,
    num_experts: int,
    model_name: str = "ConvNet",
    epochs: int = 50,
    lr: float = 0.01,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    dsa: bool = True,
    dsa_strategy: str = augment.STRATEGY,
    zca: bool = False,
    seed: int = 0,
    parallel: int | None = None,
    conv_impl: str | None = None,
    mesh: Any = None,
    progress: bool = True,
    replay: dict | None = None,
) -> dict:
    """Train the missing experts ``0 .. num_experts-1`` into ``expert_dir``, ``parallel`` at a
    time (split over ``mesh`` if given); returns the folder's metadata (settings, ``test_acc``
    and ``seconds`` per expert). ``parallel`` / ``conv_impl`` None (or ``"auto"``): the backend
    policy's (:mod:`fred_jax.platform`).

    ``key`` must be ``jax.random.key(seed)`` or derived from it; ``dataset``, ``zca`` and
    ``seed`` are recorded so that users can check what the experts were trained on. Expert
    ``i``'s file appears only once it is complete; rerunning skips complete experts.
    ``replay``: instead of drawing from ``key``, expert ``i`` starts from ``params`` (stacked
    over experts) and replays ``perm [E, epochs, N]`` and the DSA draws ``dsa``
    (:func:`fred_jax.classifier.given_schedule`): the parity tests replay the official code's.
    """
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train, np.int32)
    x_test = np.asarray(x_test, np.float32)
    y_test = np.asarray(y_test, np.int32)
    if x_train.ndim != 4 or len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"need x [N, H, W, C] with matching labels, got x_train "
                         f"{x_train.shape}, y_train {y_train.shape}, x_test {x_test.shape}, "
                         f"y_test {y_test.shape}")
    policy = platform.policy(mesh=mesh)
    parallel = int(platform.resolve(parallel, policy.experts_parallel))
    for name, value in (("num_experts", num_experts), ("epochs", epochs),
                        ("batch_size", batch_size), ("parallel", parallel)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if batch_size > len(x_train):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(x_train)} training images")
    image_shape = x_train.shape[1:]
    conv_impl = platform.resolve(conv_impl, policy.conv_train)
    model = models.get(model_name, num_classes, image_shape, conv_impl=conv_impl)
    num_params, _ = param_unraveler(model, image_shape)
    settings = {
        "dataset": dataset, "model": model_name, "zca": bool(zca), "num_params": num_params,
        "epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
        "batch_size": batch_size, "dsa": bool(dsa),
        "dsa_strategy": dsa_strategy if dsa else "", "seed": seed,
    }
    os.makedirs(expert_dir, exist_ok=True)
    meta = read_meta(expert_dir)
    if meta is None:
        meta = {"format_version": FORMAT_VERSION, **settings, "test_acc": {}, "seconds": {}}
    check_settings(meta, settings, expert_dir)
    done = set(completed_experts(expert_dir, epochs, num_params))
    todo = [i for i in range(num_experts) if i not in done]
    if not todo:
        return meta

    progs = classifier.programs(model_name, num_classes, image_shape, conv_impl, len(x_train),
                                batch_size, dsa_strategy if dsa else None, augment.DSAParams(),
                                float(momentum), float(weight_decay), mesh,
                                schedule=classifier.expert_schedule, given=replay is not None)
    flat = _flat_program(mesh)
    main = sharding.is_main_process()
    progress = progress and main
    xs, ys, lr = jnp.asarray(x_train), jnp.asarray(y_train), jnp.float32(lr)

    for g in range(0, len(todo), parallel):
        group = todo[g : g + parallel]
        t0 = time.time()
        keys = jnp.stack([jax.random.fold_in(key, i) for i in group])
        if replay is None:
            state = progs.init(keys)
        else:
            pick = np.asarray(group)
            state = progs.reset(classifier.TrainState(
                jax.tree.map(lambda a: jnp.asarray(a)[pick], replay["params"]), {}, None))
            keys = jax.tree.map(lambda a: jnp.asarray(a)[pick],
                                {"perm": replay["perm"], "dsa": replay["dsa"]})
        traj = np.empty((len(group), epochs + 1, num_params), np.float32)
        traj[:, 0] = sharding.to_host(flat(state.params))
        bar = tqdm(total=epochs, disable=not progress, unit="epoch",
                   desc=f"experts {group[0]}-{group[-1]} of {num_experts}")
        for e in range(epochs):
            state, loss, _ = progs.epoch(state, keys, jnp.int32(e), lr, xs, ys)
            traj[:, e + 1] = sharding.to_host(flat(state.params))
            bar.update()
            bar.set_postfix(loss=f"{float(jnp.mean(loss)):.3f}")
        bar.close()
        acc = classifier.count_correct(progs.test, state, x_test, y_test, TEST_BATCH) / len(
            x_test)
        seconds = (time.time() - t0) / len(group)
        for j, i in enumerate(group):
            if main:
                atomic_write(expert_path(expert_dir, i), lambda f, j=j: np.save(f, traj[j]))
            meta["test_acc"][str(i)] = float(acc[j])
            meta["seconds"][str(i)] = round(seconds, 1)
        if main:
            write_meta(expert_dir, meta)
        if progress:
            print(f"experts {group}: test accuracy {[round(float(a), 4) for a in acc]}")
    if jax.process_count() > 1:  # the files exist for every process once this returns
        multihost_utils.sync_global_devices("fred_jax.experts.train_experts")
    return meta


def train_from_config(config: Any, progress: bool = True) -> dict:
    """Load the config's dataset (``dataset``, ``data_dir``, ``zca``) and train the experts of
    its ``tm.experts`` section for ``config.model`` with DSA ``config.dsa_strategy`` on the
    devices of ``config.num_devices``."""
    e = config.tm.experts
    ds = data.load(config.dataset, data_dir=config.data_dir or None, zca=bool(config.zca),
                   norm_stats=config.norm_stats)
    return train_experts(
        jax.random.key(int(e.seed)), ds.x_train, ds.y_train, ds.x_test, ds.y_test,
        num_classes=ds.num_classes, expert_dir=e.dir, dataset=config.dataset,
        num_experts=int(e.num_experts), model_name=config.model, epochs=int(e.epochs),
        lr=float(e.lr), momentum=float(e.momentum), weight_decay=float(e.weight_decay),
        batch_size=int(e.batch_size), dsa=bool(e.dsa), dsa_strategy=config.dsa_strategy,
        zca=bool(config.zca), seed=int(e.seed), parallel=e.parallel,
        conv_impl=e.conv_impl,
        mesh=sharding.mesh_for(int(config.num_devices)),
        progress=progress,
    )


def prepare(config: Any, progress: bool = True) -> None:
    """Make sure a TM run finds its experts, before it loads its data: when ``tm.experts.dir``
    holds fewer than ``tm.experts.num_experts`` complete experts, train the missing ones if
    ``tm.train_experts_if_missing`` (this loads the dataset); otherwise raise ConfigError,
    saying how to create them, only when it holds none (a smaller pool is used as it is).
    Nothing for other objectives."""
    if config.objective != "tm":
        return
    e = config.tm.experts
    meta = read_meta(e.dir)
    done = 0 if meta is None else len(
        completed_experts(e.dir, int(meta["epochs"]), int(meta["num_params"])))
    if done >= int(e.num_experts):
        return
    if config.tm.train_experts_if_missing:
        train_from_config(config, progress)
    elif not done:
        raise ConfigError(missing_experts_message(config))


if __name__ == "__main__":  # run as a script this file is __main__, not fred_jax.experts
    from fred_jax import cli

    cli.experts_command()
