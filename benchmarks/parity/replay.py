"""Recording the official training loops' random choices (reference side, torch): the order in
which a ``DataLoader(shuffle=True)`` visits its dataset, and every ``DiffAugment`` call's op and
draws, in the layout the tests replay with (``fred_jax.classifier.given_schedule``: ``perm
[epochs, N]``; ``dsa``: ``op [epochs, batches]`` and ``<op>_<name> [epochs, batches, batch]``,
zero where an op was not drawn or a batch is smaller). Also the official ConvNet's weights from
``parity_util.synthetic_state`` (the tests rebuild them from the seed).
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

import numpy as np
import torch

import reference

sys.path.insert(0, os.path.join(reference.ROOT, "tests"))
import parity_util  # noqa: E402

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
NAMES = {"color": ("brightness", "saturation", "contrast"), "crop": ("x", "y"),
         "cutout": ("x", "y"), "flip": ("flip",), "scale": ("x", "y"), "rotate": ("angle",)}


def state_kinds(state: dict) -> list[str]:
    """``parity_util.STATE_KINDS`` of an official ConvNet ``state_dict``."""
    kinds, last_conv = [], False
    for name, v in state.items():
        if name.startswith("classifier"):
            kinds.append("linear" if name.endswith("weight") else "bias")
        elif v.ndim == 4:
            kinds.append("conv")
            last_conv = True
            continue
        elif name.endswith("bias") and last_conv:
            kinds.append("bias")
        else:
            kinds.append("norm_weight" if name.endswith("weight") else "norm_bias")
        last_conv = False
    return kinds


def load_synthetic(net, seed: int) -> dict[str, np.ndarray]:
    """Put ``parity_util.synthetic_state(seed)`` into ``net``; returns names/shapes/kinds."""
    state = net.state_dict()
    names = list(state)
    shapes = [tuple(v.shape) for v in state.values()]
    kinds = state_kinds(state)
    values = parity_util.synthetic_state(names, shapes, kinds, seed)
    net.load_state_dict({k: torch.tensor(v) for k, v in values.items()})
    return {"names": np.array(names), "kinds": np.array(kinds), "seed": np.int64(seed),
            "shapes": np.array([list(s) + [-1] * (4 - len(s)) for s in shapes])}


class Log:
    """Order of dataset reads and DiffAugment draws, per call."""

    def __init__(self):
        self.reads: list[int] = []
        self.calls: list[tuple[int, list[np.ndarray], int]] = []  # (op, draws, batch size)

    def dataset_class(self, base):
        log = self

        class Recording(base):
            def __getitem__(self, index):
                log.reads.append(int(index))
                return super().__getitem__(index)

        return Recording

    def wrap_diffaugment(self, fn):
        def wrapped(x, strategy="", seed=-1, param=None):
            draws: list[np.ndarray] = []
            orig = (torch.rand, torch.randint)

            def rec(f):
                def g(*a, **k):
                    out = f(*a, **k)
                    draws.append(out.detach().clone().reshape(-1).numpy())
                    return out
                return g

            torch.rand, torch.randint = rec(orig[0]), rec(orig[1])
            try:
                out = fn(x, strategy, seed=seed, param=param)
            finally:
                torch.rand, torch.randint = orig
            self.calls.append((int(draws[0][0]), draws[1:], x.shape[0]))
            return out

        return wrapped


def layout(log: Log, epochs: int, n: int, batch: int) -> dict[str, np.ndarray]:
    """The recorded choices as ``perm`` and ``dsa:*`` arrays (module doc)."""
    batches = -(-n // batch)
    assert len(log.reads) == epochs * n, (len(log.reads), epochs, n)
    out = {"perm": np.array(log.reads, np.int64).reshape(epochs, n)}
    if not log.calls:
        return out
    assert len(log.calls) == epochs * batches, (len(log.calls), epochs, batches)
    out["dsa:op"] = np.zeros((epochs, batches), np.int64)
    for op in OPS:
        for name in NAMES[op]:
            out[f"dsa:{op}_{name}"] = np.zeros((epochs, batches, batch))
    for i, (op, draws, size) in enumerate(log.calls):
        e, b = divmod(i, batches)
        out["dsa:op"][e, b] = op
        name = OPS[op]
        assert len(draws) == len(NAMES[name]), (name, len(draws))
        for field, d in zip(NAMES[name], draws):
            assert d.size == size
            out[f"dsa:{name}_{field}"][e, b, :size] = d
    return out


class Float64Torch(types.ModuleType):
    """``torch`` with ``torch.float`` = float64 (the official DSA ops build their affine
    matrices with ``dtype=torch.float``), to stand in for ``utils.torch``."""

    float = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def float64(utils):
    """The official training loop in float64: default dtype float64, ``Tensor.float()`` (the
    official ``epoch`` casts its images with it) and ``torch.float`` in ``utils`` mean float64.
    Only dtypes change: the same operations in the same order."""
    previous, tensor_float, module_torch = torch.get_default_dtype(), torch.Tensor.float, utils.torch
    torch.set_default_dtype(torch.float64)
    torch.Tensor.float = lambda self, *a, **k: self.double()
    utils.torch = Float64Torch("torch")
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
        torch.Tensor.float = tensor_float
        utils.torch = module_torch
