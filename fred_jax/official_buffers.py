"""Expert trajectories written by the official code (MTT / FreD ``TM/buffer.py``) as experts of
our store (:mod:`fred_jax.expert_store`), read without torch.

The official format: ``<buffer_path>/<dataset>[_NO_ZCA]/<model>/replay_buffer_<n>.pt``, n = 0,
1, ... (the official TM script reads them in that order until a number is missing), each a
``torch.save`` of a list of experts; an expert is a list of ``train_epochs + 1`` timestamps
(epoch 0 is the initialisation); a timestamp is the list ``[p.detach().cpu() for p in
net.parameters()]``, one tensor per parameter in torch's registration order (weight before bias,
layer by layer), each in torch's layout. A timestamp given as one flat vector in that order
(``ReparamModule.flat_param``) is accepted too. The files are read with
:func:`fred_jax.setfiles.read_torch`.

Conversion (:func:`torch_layout`, :func:`torch_to_ours`): our parameters of the same
architecture in their creation order are torch's registration order; per leaf, convolution
weights ``[out, in, *k]`` become ``kernel [*k, in, out]``, linear weights ``[out, in]`` become
``kernel [in, out]``, the first linear layer's inputs reordered from torch's NC(D)HW flatten to
our channels-last one, LayerNorm's ``[C, H, W]`` -> ``[H, W, C]``; then the leaves go into the
(sorted) pytree order of our flat vectors. Every shape is checked against the architecture, so a
buffer of another model, width, dataset or class count is refused with what differs.

Official quirk: on a CPU-only machine ``p.detach().cpu()`` is the parameter itself, not a copy,
so every timestamp the official ``buffer.py`` saves there is the final network (on a GPU
``.cpu()`` copies). Such a buffer has identical epochs; the import refuses it.

Command line (:func:`fred_jax.cli.experts_command`): settings (dataset, model, ``tm.experts``
lr/momentum/...) from the config, which must describe how the buffers were trained::

    python -m fred_jax.experts --config configs/cifar10_ipc1.py \\
        --from_official ../buffers/CIFAR10_NO_ZCA/ConvNetD3
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fred_jax import setfiles
from fred_jax.expert_store import (FORMAT_VERSION, atomic_write, check_settings,
                                   completed_experts, expert_path, param_unraveler, read_meta,
                                   write_meta)

BUFFER_NAME = re.compile(r"replay_buffer_(\d+)\.pt$")


class Leaf(NamedTuple):
    """One parameter: our pytree path and shape, torch's shape, and how to convert it."""

    path: tuple[str, ...]
    shape: tuple[int, ...]
    torch_shape: tuple[int, ...]
    kind: str  # "conv", "linear", "linear_flatten", "moved" (channels first -> last), "same"


def _creation_order(model: Any, image_shape: tuple[int, ...]) -> list[tuple[tuple, tuple]]:
    """``(path, shape)`` of ``model``'s parameters in the order the model creates them."""
    order: list[tuple[tuple, tuple]] = []

    def walk(tree, prefix=()):
        for k, v in tree.items():
            if isinstance(v, dict) or hasattr(v, "items"):
                walk(v, (*prefix, k))
            else:
                order.append(((*prefix, k), tuple(v.shape)))

    def init(key, x):
        variables = model.init(key, x)
        walk(variables["params"])
        return variables

    jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, *image_shape), jnp.float32))
    return order


def torch_layout(model: Any, image_shape: tuple[int, ...]) -> list[Leaf]:
    """The official parameters of ``model``'s architecture on ``image_shape`` inputs, in torch's
    ``parameters()`` order, with our path and shape for each."""
    spatial = len(image_shape) - 1
    channels = image_shape[-1]
    leaves, flattened = [], False
    for path, shape in _creation_order(model, tuple(image_shape)):
        if path[-1] == "kernel" and len(shape) >= 3:
            leaves.append(Leaf(path, shape, (shape[-1], shape[-2], *shape[:-2]), "conv"))
            channels = shape[-1]
        elif path[-1] == "kernel" and len(shape) == 2:
            kind = "linear" if flattened else "linear_flatten"
            leaves.append(Leaf(path, shape, (shape[1], shape[0]), kind))
            flattened = True
        elif len(shape) == spatial + 1 and len(shape) > 1:  # LayerNorm over (spatial, C)
            leaves.append(Leaf(path, shape, (shape[-1], *shape[:-1]), "moved"))
        else:
            leaves.append(Leaf(path, shape, shape, "same"))
    return leaves


def _to_ours(leaf: Leaf, value: np.ndarray, spatial: int, channels: int) -> np.ndarray:
    """One torch parameter (torch layout) in our layout."""
    if leaf.kind == "conv":
        return np.moveaxis(value, (0, 1), (-1, -2))
    if leaf.kind == "moved":
        return np.moveaxis(value, 0, -1)
    if leaf.kind == "linear":
        return value.T
    if leaf.kind == "linear_flatten":  # input features: torch (C, *S) -> ours (*S, C)
        out, feat = value.shape
        side = round((feat // channels) ** (1.0 / spatial))
        if channels * side**spatial != feat:
            raise ValueError(f"cannot split {feat} classifier inputs into {channels} channels "
                             f"x {spatial} equal sides")
        v = value.reshape(out, channels, *(side,) * spatial)
        return np.moveaxis(v, (0, 1), (-1, -2)).reshape(feat, out)
    return value


def torch_to_ours(model: Any, image_shape: tuple[int, ...]) -> tuple[int, np.ndarray, list]:
    """``(P, index, layout)``: ``ours = torch_flat[index]`` maps an official flat vector
    (``ReparamModule`` order) to our flat vector (:func:`fred_jax.expert_store.flatten_params`
    order); ``layout`` is :func:`torch_layout`'s."""
    layout = torch_layout(model, image_shape)
    spatial = len(image_shape) - 1
    channels, offset, ours = image_shape[-1], 0, {}
    for leaf in layout:
        n = math.prod(leaf.torch_shape)
        ids = np.arange(offset, offset + n, dtype=np.int64).reshape(leaf.torch_shape)
        ours[leaf.path] = _to_ours(leaf, ids, spatial, channels)
        if leaf.kind == "conv":
            channels = leaf.shape[-1]
        offset += n
    num_params, _ = param_unraveler(model, tuple(image_shape))
    if offset != num_params:
        raise AssertionError(f"{offset} torch parameters vs {num_params} of ours")
    tree: dict = {}
    for path, ids in ours.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = ids
    index = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(tree)])
    return num_params, index, layout


def trajectory_to_ours(timestamps: Any, index: np.ndarray, layout: list[Leaf],
                       where: str) -> np.ndarray:
    """One official expert (a list of timestamps) as our ``[epochs + 1, P]`` float32 array."""
    if not isinstance(timestamps, (list, tuple)) or len(timestamps) < 2:
        raise ValueError(f"{where}: an expert must be a list of at least 2 timestamps (epoch 0 "
                         f"and later), got {type(timestamps).__name__}")
    shapes = [leaf.torch_shape for leaf in layout]
    rows = []
    for e, ts in enumerate(timestamps):
        if isinstance(ts, np.ndarray) and ts.ndim == 1:
            flat = ts
            if flat.size != index.size:
                raise ValueError(f"{where}, epoch {e}: a flat vector of {flat.size} parameters, "
                                 f"the architecture has {index.size}")
        else:
            got = [tuple(np.shape(t)) for t in ts] if isinstance(ts, (list, tuple)) else None
            if got != shapes:
                first = next((i for i, (a, b) in enumerate(zip(got or [], shapes)) if a != b),
                             None if got is None else min(len(got), len(shapes)))
                detail = (f"{type(ts).__name__}" if got is None else
                          f"{len(got)} tensors, tensor {first}: "
                          f"{got[first] if first < len(got) else 'missing'} vs "
                          f"{shapes[first] if first < len(shapes) else 'none'} "
                          f"({'/'.join(layout[min(first, len(layout) - 1)].path)})")
                raise ValueError(f"{where}, epoch {e}: parameters do not fit the "
                                 f"architecture ({len(shapes)} tensors expected; got {detail})")
            flat = np.concatenate([np.ravel(t) for t in ts])
        rows.append(np.asarray(flat, np.float32)[index])
    traj = np.stack(rows)
    if not np.isfinite(traj).all():
        raise ValueError(f"{where}: non-finite parameters (a diverged expert)")
    if np.array_equal(traj[0], traj[-1]):
        raise ValueError(f"{where}: epoch 0 equals epoch {len(traj) - 1}: every timestamp is the "
                         "same network, as the official buffer.py writes on a machine without "
                         "a GPU (p.detach().cpu() does not copy there); retrain on a GPU")
    return traj


def buffer_files(folder: str) -> list[str]:
    """``replay_buffer_0.pt``, ``_1``, ... in ``folder``, in the official order (up to the
    first missing number, as the official TM script reads them)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder")
    files, n = [], 0
    while os.path.isfile(os.path.join(folder, f"replay_buffer_{n}.pt")):
        files.append(os.path.join(folder, f"replay_buffer_{n}.pt"))
        n += 1
    if not files:
        found = sorted(f for f in os.listdir(folder) if BUFFER_NAME.search(f))
        raise FileNotFoundError(f"{folder}: no replay_buffer_0.pt" +
                                (f" (found {found[:3]})" if found else ""))
    return files


def read_buffer(path: str, model: Any, image_shape: tuple[int, ...]) -> list[np.ndarray]:
    """The experts of one official ``replay_buffer_<n>.pt`` as ``[epochs + 1, P]`` arrays."""
    _, index, layout = torch_to_ours(model, tuple(image_shape))
    obj = setfiles.read_torch(path)
    if not isinstance(obj, (list, tuple)) or not obj:
        raise ValueError(f"{path}: expected a non-empty list of experts (official buffer.py), "
                         f"got {type(obj).__name__}")
    return [trajectory_to_ours(t, index, layout, f"{path}, expert {i}")
            for i, t in enumerate(obj)]


def import_buffers(folder: str, expert_dir: str, model: Any, image_shape: tuple[int, ...],
                   settings: dict) -> dict:
    """Write the experts of every official buffer in ``folder`` into our store ``expert_dir``
    as experts ``0, 1, ...`` (file by file, expert by expert); returns the folder's metadata.

    ``settings``: what the experts were trained with, as :func:`fred_jax.expert_store.
    expert_settings` names it (the official files do not record it). Rerunning skips the experts
    already written; a store with other settings or epochs is refused.
    """
    files = buffer_files(folder)
    num_params, _ = param_unraveler(model, tuple(image_shape))
    os.makedirs(expert_dir, exist_ok=True)
    meta = read_meta(expert_dir)
    index, done = 0, None
    for path in files:
        for traj in read_buffer(path, model, image_shape):
            epochs = traj.shape[0] - 1
            want = {**settings, "num_params": num_params, "epochs": epochs}
            if meta is None:
                meta = {"format_version": FORMAT_VERSION, **want, "seed": None,
                        "source": "official buffer.py", "official_files": [], "test_acc": {},
                        "seconds": {}}
            check_settings(meta, want, expert_dir)
            if done is None:
                done = set(completed_experts(expert_dir, epochs, num_params))
            if index not in done:
                atomic_write(expert_path(expert_dir, index), lambda f, t=traj: np.save(f, t))
            index += 1
        name = os.path.basename(path)
        if name not in meta.setdefault("official_files", []):
            meta["official_files"].append(name)
        write_meta(expert_dir, meta)
    return meta


def import_from_config(config: Any, folder: str) -> dict:
    """:func:`import_buffers` into ``config.tm.experts.dir`` with the config's settings
    (``dataset``, ``model``, ``zca``, ``dsa_strategy`` and ``tm.experts``)."""
    from fred_jax import datasets, models
    from fred_jax.expert_store import expert_settings

    spec = datasets.SPECS[config.dataset]
    model = models.get(config.model, spec.num_classes, spec.image_shape)
    return import_buffers(folder, config.tm.experts.dir, model, spec.image_shape,
                          expert_settings(config))


__all__ = ["Leaf", "buffer_files", "import_buffers", "import_from_config", "read_buffer",
           "torch_layout", "torch_to_ours", "trajectory_to_ours"]
