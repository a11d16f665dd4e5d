"""Expert trajectories for trajectory matching (MTT ``buffer.py``, as used by FreD).

An expert is a network trained on the real training set from a fresh initialisation; its
trajectory is the flat parameter vector after every epoch, epoch 0 being the initialisation.
Reference defaults: ConvNet, SGD with lr 0.01, no momentum, no weight decay, batch 256, DSA on
the real images with per-image parameters (the reference calls ``DiffAugment`` without a seed,
which is its non-siamese mode), 50 epochs, 100 experts.

Storage (streamable and resumable): one file per expert, ``expert_00007.npy``, a float32 array
``[epochs + 1, P]`` written atomically (temporary file + rename), so a file that exists is
complete. ``P`` is the length of ``jax.flatten_util.ravel_pytree(variables["params"])[0]``; its
order is the (sorted) pytree order, the same for both convolution implementations. Readers open
one expert at a time with ``np.load(mmap_mode="r")`` and read only the epochs they need.
``experts.json`` in the same folder records the training settings (checked on resume and when
loading) and each expert's final test accuracy and training time.

Several experts train at once: parameters, optimiser states, data orders and augmentation keys
are stacked on a leading axis and one jitted step (``vmap`` over experts) updates them all;
with a device mesh (``config.num_devices``, default all devices) that expert axis is split over
the devices (:func:`fred_jax.sharding.sharded_vmap`), so ``tm.experts.parallel`` should be a
multiple of the device count. Every random choice of expert ``i`` derives from
``fold_in(key, i)`` only, so a resumed, differently grouped or differently sharded run produces
the same experts (up to float rounding). Multi-host: every process trains, process 0 writes the
files, and the others wait for them at the end.

Command line (settings from the config's ``tm.experts`` section plus ``dataset``, ``zca``,
``model`` and ``dsa_strategy``; see ``configs/cifar10_ipc1.py``)::

    python -m fred_jax.experts --config configs/cifar10_ipc1.py
    python -m fred_jax.experts --config configs/mnist_ipc1.py --config.tm.experts.num_experts=4
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.flatten_util import ravel_pytree
from tqdm import tqdm

from fred_jax import augment, data, evaluate, models, sharding

META_FILE = "experts.json"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- flat parameters


def flatten_params(params: Any) -> jax.Array:
    """Flat vector ``[P]`` of a parameter pytree (``ravel_pytree`` order)."""
    return ravel_pytree(params)[0]


def param_unraveler(
    model: nn.Module, image_shape: tuple[int, ...]
) -> tuple[int, Callable[[jax.Array], Any]]:
    """``(P, unravel)`` for ``model``'s ``params`` collection, from shapes only (no init run).

    ``unravel(vec)`` rebuilds the pytree from a flat ``[P]`` vector stored by this module; it is
    pure and differentiable, so trajectory matching can take SGD steps on flat vectors.
    """
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *image_shape)))
    if set(variables) != {"params"}:
        raise ValueError(
            f"expert trajectories need a model with only a 'params' collection, got "
            f"{sorted(variables)} (BatchNorm variants are not supported)"
        )
    leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
    shapes = [leaf.shape for leaf in leaves]
    sizes = [math.prod(s) for s in shapes]
    offsets = np.cumsum([0, *sizes]).tolist()

    def unravel(vec: jax.Array) -> Any:
        parts = [vec[o : o + n].reshape(s) for o, n, s in zip(offsets, sizes, shapes)]
        return jax.tree_util.tree_unflatten(treedef, parts)

    return offsets[-1], unravel


# ----------------------------------------------------------------------------- storage


def expert_path(expert_dir: str, index: int) -> str:
    """File of expert ``index``."""
    return os.path.join(expert_dir, f"expert_{index:05d}.npy")


def read_meta(expert_dir: str) -> dict | None:
    """The folder's ``experts.json`` as a dict, or None when there is none."""
    path = os.path.join(expert_dir, META_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_meta(expert_dir: str, meta: dict) -> None:
    _atomic_write(os.path.join(expert_dir, META_FILE),
                  lambda f: json.dump(meta, f, indent=1, sort_keys=True), "w")


def completed_experts(expert_dir: str, epochs: int, num_params: int) -> list[int]:
    """Indices of the experts whose file exists with shape ``[epochs + 1, num_params]``."""
    if not os.path.isdir(expert_dir):
        return []
    done = []
    for name in sorted(os.listdir(expert_dir)):
        if not (name.startswith("expert_") and name.endswith(".npy")):
            continue
        arr = np.load(os.path.join(expert_dir, name), mmap_mode="r")
        if arr.shape == (epochs + 1, num_params) and arr.dtype == np.float32:
            done.append(int(name[len("expert_") : -len(".npy")]))
    return done


def check_settings(meta: dict, expected: dict, where: str) -> None:
    """Raise a ValueError naming every setting in ``expected`` that ``meta`` contradicts."""
    wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: stored {a!r} vs requested {b!r}" for k, (a, b) in wrong.items())
        raise ValueError(f"experts in {where} were trained with other settings ({detail}); use "
                         "another experts.dir or matching settings")


class ExpertBuffer:
    """Read-only view of the complete experts in a folder, one memory-mapped file at a time.

    ``expected`` (optional) are settings, e.g. ``{"model": "ConvNet", "dataset": "cifar10"}``,
    that ``experts.json`` must match.
    """

    def __init__(self, expert_dir: str, expected: dict | None = None):
        meta = read_meta(expert_dir)
        if meta is None:
            raise FileNotFoundError(f"no {META_FILE} in {expert_dir!r}: no experts there")
        check_settings(meta, expected or {}, expert_dir)
        self.expert_dir = expert_dir
        self.meta = meta
        self.epochs = int(meta["epochs"])
        self.num_params = int(meta["num_params"])
        self.indices = completed_experts(expert_dir, self.epochs, self.num_params)
        if not self.indices:
            raise FileNotFoundError(f"no complete expert files in {expert_dir!r}")

    def __len__(self) -> int:
        return len(self.indices)

    def trajectory(self, i: int) -> np.ndarray:
        """Memory-mapped ``[epochs + 1, P]`` trajectory of the i-th complete expert."""
        return np.load(expert_path(self.expert_dir, self.indices[i]), mmap_mode="r")

    def sample(
        self, rng: np.random.Generator, num: int, max_start_epoch: int, expert_epochs: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``num`` random (expert, start epoch t < max_start_epoch) pairs:
        ``(start [num, P], target [num, P])`` = epochs ``t`` and ``t + expert_epochs``."""
        if not 1 <= max_start_epoch or max_start_epoch - 1 + expert_epochs > self.epochs:
            raise ValueError(
                f"max_start_epoch={max_start_epoch} and expert_epochs={expert_epochs} need "
                f"epochs up to {max_start_epoch - 1 + expert_epochs}, but the experts in "
                f"{self.expert_dir!r} have {self.epochs}"
            )
        starts, targets = [], []
        for _ in range(num):
            traj = self.trajectory(int(rng.integers(len(self))))
            t = int(rng.integers(max_start_epoch))
            starts.append(np.asarray(traj[t]))
            targets.append(np.asarray(traj[t + expert_epochs]))
        return np.stack(starts), np.stack(targets)


# ----------------------------------------------------------------------------- training


def _optimizer(lr: float, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    """PyTorch SGD: decay added to the gradient, then (heavy-ball) momentum, then lr."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.sgd(lr, momentum=momentum or None),
    )


def make_train_step(
    model: nn.Module, tx: optax.GradientTransformation, *, dsa: bool, dsa_strategy: str,
    mesh: Any = None,
) -> Callable:
    """Jitted ``(params, opt_state, x [E, B, ...], y [E, B], keys [E]) -> (params, opt_state,
    loss [E])``: one SGD step of E experts at once (vmap, split over ``mesh`` if given; on CPU
    without a mesh one after another in one program, with the gradient in cache-sized pieces,
    as in :mod:`fred_jax.evaluate`), DSA per image when ``dsa``."""
    in_loop = evaluate.seeds_in_loop(mesh)

    def one(params, opt_state, x, y, key):
        if dsa:
            x = augment.dsa(key, x, dsa_strategy, siamese=False)

        def loss_fn(p):
            logits = model.apply({"params": p}, x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        if in_loop and x.shape[0] > evaluate.CPU_PIECE:
            loss, _, grads = evaluate.piecewise_loss_grad(model, params, x, y, evaluate.CPU_PIECE)
        else:
            loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(evaluate.map_stacked(one, mesh), donate_argnums=(0, 1))


def make_correct_count(model: nn.Module, mesh: Any = None) -> Callable:
    """Jitted ``(params [E, ...], x [B, ...], y [B], valid [B]) -> correct [E]`` (experts
    split over ``mesh`` if given)."""

    def one(params, x, y, valid):
        pred = jnp.argmax(model.apply({"params": params}, x), axis=-1)
        return jnp.sum((pred == y) & valid)

    return jax.jit(evaluate.map_stacked(one, mesh, (0, None, None, None)))


class _Programs(NamedTuple):
    tx: optax.GradientTransformation
    init: Callable  # keys [E] -> stacked params
    step: Callable
    count: Callable
    flat: Callable  # stacked params -> [E, P]


@functools.lru_cache(maxsize=8)
def _programs(model: nn.Module, image_shape: tuple[int, ...], lr: float, momentum: float,
              weight_decay: float, dsa: bool, dsa_strategy: str, mesh: Any) -> _Programs:
    """Jitted functions of one training setting (expert axis split over ``mesh`` if given),
    cached so that repeated or resumed runs in one process compile once."""
    tx = _optimizer(lr, momentum, weight_decay)
    return _Programs(
        tx=tx,
        init=jax.jit(sharding.sharded_vmap(
            lambda k: models.init(model, k, image_shape)["params"], mesh)),
        step=make_train_step(model, tx, dsa=dsa, dsa_strategy=dsa_strategy, mesh=mesh),
        count=make_correct_count(model, mesh),
        flat=jax.jit(sharding.sharded_vmap(flatten_params, mesh)),
    )


def test_accuracy(count_fn: Callable, params: Any, x: np.ndarray, y: np.ndarray,
                  batch: int = 500) -> np.ndarray:
    """Test accuracy ``[E]`` of stacked params; fixed-size (padded) batches compile once."""
    n = len(x)
    batch = min(batch, n)
    correct = 0
    for s in range(0, n, batch):
        xb, yb = x[s : s + batch], y[s : s + batch]
        valid = np.ones(batch, bool)
        if len(xb) < batch:
            pad = batch - len(xb)
            valid[len(xb) :] = False
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
        correct = correct + sharding.to_host(count_fn(params, xb, yb, valid))
    return correct / n


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
    parallel: int = 2,
    conv_impl: str | None = None,
    mesh: Any = None,
    progress: bool = True,
) -> dict:
    """Train the missing experts ``0 .. num_experts-1`` into ``expert_dir``, ``parallel`` at a
    time (split over ``mesh`` if given); returns the folder's metadata (settings, ``test_acc``
    and ``seconds`` per expert).

    ``key`` must be ``jax.random.key(seed)`` or derived from it; ``dataset``, ``zca`` and
    ``seed`` are recorded so that users can check what the experts were trained on. Expert
    ``i``'s file appears only once it is complete; rerunning skips complete experts.
    """
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train, np.int32)
    x_test = np.asarray(x_test, np.float32)
    y_test = np.asarray(y_test, np.int32)
    if x_train.ndim != 4 or len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"need x [N, H, W, C] with matching labels, got x_train "
                         f"{x_train.shape}, y_train {y_train.shape}, x_test {x_test.shape}, "
                         f"y_test {y_test.shape}")
    for name, value in (("num_experts", num_experts), ("epochs", epochs),
                        ("batch_size", batch_size), ("parallel", parallel)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if batch_size > len(x_train):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(x_train)} training images")
    image_shape = x_train.shape[1:]
    conv_impl = evaluate.resolve_conv_impl(conv_impl)
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

    tx, init, step, count, flat = _programs(model, image_shape, float(lr), float(momentum),
                                            float(weight_decay), bool(dsa), dsa_strategy, mesh)
    main = sharding.is_main_process()
    progress = progress and main
    n = len(x_train)
    batches = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]  # last may be short

    for g in range(0, len(todo), parallel):
        group = todo[g : g + parallel]
        t0 = time.time()
        keys = jnp.stack([jax.random.fold_in(key, i) for i in group])
        init_keys, data_keys, aug_keys = (jax.vmap(lambda k, j=j: jax.random.fold_in(k, j))(keys)
                                          for j in range(3))
        params = init(init_keys)
        opt_state = jax.vmap(tx.init)(params)
        traj = np.empty((len(group), epochs + 1, num_params), np.float32)
        traj[:, 0] = sharding.to_host(flat(params))
        bar = tqdm(total=epochs * len(batches), disable=not progress, unit="step",
                   desc=f"experts {group[0]}-{group[-1]} of {num_experts}")
        for e in range(epochs):
            perms = np.asarray(jax.vmap(
                lambda k, e=e: jax.random.permutation(jax.random.fold_in(k, e), n))(data_keys))
            for b, (s0, s1) in enumerate(batches):
                idx = perms[:, s0:s1]
                step_keys = jax.vmap(
                    lambda k, t=e * len(batches) + b: jax.random.fold_in(k, t))(aug_keys)
                params, opt_state, loss = step(params, opt_state, x_train[idx], y_train[idx],
                                               step_keys)
                bar.update()
            traj[:, e + 1] = sharding.to_host(flat(params))
            bar.set_postfix(epoch=e + 1, loss=f"{float(jnp.mean(loss)):.3f}")
        bar.close()
        acc = test_accuracy(count, params, x_test, y_test)
        seconds = (time.time() - t0) / len(group)
        for j, i in enumerate(group):
            if main:
                _atomic_write(expert_path(expert_dir, i), lambda f, j=j: np.save(f, traj[j]))
            meta["test_acc"][str(i)] = float(acc[j])
            meta["seconds"][str(i)] = round(seconds, 1)
        if main:
            _write_meta(expert_dir, meta)
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
        zca=bool(config.zca), seed=int(e.seed), parallel=int(e.parallel),
        conv_impl=e.conv_impl,
        mesh=sharding.mesh_for(int(config.num_devices)),
        progress=progress,
    )


def main(argv: list[str]) -> None:
    from absl import flags

    from fred_jax import configuration

    del argv
    sharding.maybe_initialize_distributed()
    config = _CONFIG.value
    meta = configuration.run_command(lambda: train_from_config(config), flags.FLAGS.verbose)
    if not sharding.is_main_process():
        return
    accs = [meta["test_acc"][k] for k in sorted(meta["test_acc"], key=int)]
    print(f"{len(accs)} experts in {config.tm.experts.dir}: test accuracy mean "
          f"{np.mean(accs):.4f}, min {np.min(accs):.4f}, max {np.max(accs):.4f} "
          f"(per expert: {os.path.join(config.tm.experts.dir, META_FILE)})")


if __name__ == "__main__":
    from absl import flags
    from ml_collections import config_flags

    from fred_jax import configuration

    _CONFIG = config_flags.DEFINE_config_file("config", None, "config file with a tm section")
    flags.DEFINE_boolean("verbose", False, "show the traceback of an error")
    configuration.run_app(main)
