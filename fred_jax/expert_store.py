"""Expert trajectories on disk: the file format, its metadata and the pool TM samples from.

Storage (streamable and resumable): one file per expert, ``expert_00007.npy``, a float32 array
``[epochs + 1, P]`` written atomically (temporary file + rename), so a file that exists is
complete. ``P`` is the length of ``jax.flatten_util.ravel_pytree(variables["params"])[0]``; its
order is the (sorted) pytree order, the same for both convolution implementations. Readers open
one expert at a time with ``np.load(mmap_mode="r")`` and read only the epochs they need.
``experts.json`` in the same folder records the training settings (checked on resume and when
loading) and each expert's final test accuracy and training time.

Training writes here (:mod:`fred_jax.experts`); trajectory matching reads
(:mod:`fred_jax.objectives.tm`, through :func:`load_pool`), and the configuration checks a
folder's ``experts.json`` against the config before any data is read (:func:`check_stored`).
Reading never trains: :func:`fred_jax.experts.prepare` does, when the run asks for it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fred_jax.checks import ConfigError

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
    variables = jax.eval_shape(model.init, jax.random.key(0),
                               jnp.zeros((1, *image_shape), jnp.float32))
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


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it to ``path``: a
    file that exists is complete."""
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


def write_meta(expert_dir: str, meta: dict) -> None:
    """Replace the folder's ``experts.json`` by ``meta`` (atomically)."""
    atomic_write(os.path.join(expert_dir, META_FILE),
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


# ----------------------------------------------------------------------------- TM's pool


def expert_settings(config: Any, num_params: int | None = None) -> dict:
    """Settings that stored experts must match to be used with ``config``."""
    e = config.tm.experts
    out = {"dataset": config.dataset, "model": config.model, "zca": bool(config.zca),
           "lr": float(e.lr), "momentum": float(e.momentum),
           "weight_decay": float(e.weight_decay), "batch_size": int(e.batch_size),
           "dsa": bool(e.dsa), "dsa_strategy": config.dsa_strategy if e.dsa else ""}
    if num_params is not None:
        out["num_params"] = num_params
    return out


def missing_experts_message(config: Any) -> str:
    """How to create the experts that ``config`` needs."""
    e = config.tm.experts
    return (f"no expert trajectories for {config.dataset}/{config.model} in "
            f"{e.dir!r}. Create them with\n  python -m fred_jax.experts --config "
            f"<this config file>   (trains {e.num_experts} experts x {e.epochs} epochs; "
            f"--config.tm.experts.num_experts=N for fewer)\nor set "
            f"config.tm.train_experts_if_missing=True, or point config.tm.experts.dir at "
            f"existing experts.")


def _check_epochs(config: Any, epochs: int) -> None:
    """ConfigError unless experts of ``epochs`` epochs reach every target TM draws."""
    t = config.tm
    need = int(t.max_start_epoch) - 1 + int(t.expert_epochs)
    if need > epochs:
        raise ConfigError(f"config.tm needs expert epochs up to {need}, the experts in "
                          f"{t.experts.dir!r} have {epochs}")


def check_stored(config: Any) -> None:
    """ConfigError when ``config.tm.experts.dir`` holds experts (its ``experts.json``) trained
    with other settings than ``config`` asks for, or too few epochs; nothing when it holds none
    yet. Reads only the metadata, so the configuration can check it before any data."""
    meta = read_meta(config.tm.experts.dir)
    if meta is None:
        return
    try:
        check_settings(meta, expert_settings(config), config.tm.experts.dir)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_epochs(config, int(meta["epochs"]))


def load_pool(config: Any, num_params: int) -> np.ndarray:
    """``[E, max_start_epoch + expert_epochs, P]``: the epochs TM can use of each stored
    expert (E = all or ``max_experts``), read one memory-mapped file at a time. A ConfigError
    says how to create the experts when there are none (this never trains them:
    :func:`fred_jax.experts.prepare` does)."""
    t = config.tm
    try:
        buffer = ExpertBuffer(t.experts.dir, expert_settings(config, num_params))
    except FileNotFoundError as e:
        raise ConfigError(f"{e}\n{missing_experts_message(config)}") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_epochs(config, buffer.epochs)
    rows = int(t.max_start_epoch) + int(t.expert_epochs)
    count = len(buffer) if not int(t.max_experts) else min(len(buffer), int(t.max_experts))
    return np.stack([np.asarray(buffer.trajectory(i)[:rows]) for i in range(count)])
