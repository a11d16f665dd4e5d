"""Golden file for the models piece: forward and backward of every architecture that both the
official code (DM/networks.py via ``utils.get_network``; 3D-MNIST ``Conv3DNet``) and
``fred_jax.models`` have, on CIFAR-shaped (2x3x32x32), MNIST-shaped (2x1x28x28: the first-conv
padding quirks) and 3D-MNIST-shaped (2x1x16x16x16) inputs.

Weights are not stored: ``parity_util.synthetic_state`` fills the official ``state_dict`` from a
seed (the test rebuilds the same values from the stored names, shapes and kinds). BatchNorm
variants run in train mode (batch statistics, running averages updated); their eval-mode logits
with the synthetic running statistics are stored too. Loss: ``sum(logits * wo)`` with a fixed
``wo``. Stored per case ``<arch>@<shape>``: ``logits``, the input gradient ``gx`` and, per
parameter, 32 sampled entries of its gradient (``gidx``/``gval``, torch layout, flat) and its
full norm ``gnorm``; the updated running statistics ``rs:<name>`` for BatchNorm.

Conditioning: ``sensitivity`` is the largest relative change of these float32 gradients when the
input is multiplied by ``1 + 1e-7 * noise`` (3 draws). Where a ReLU or max-pool input sits within
float32 rounding of its kink, the gradient is discontinuous there and no float32 code can match
another to better than this; for those cases (sensitivity > 1e-4) the float64 gradients
(``gx64``, ``gval64``) are stored as well, for an exact-math check.

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_models.py``.
"""

from __future__ import annotations

import copy
import os
import sys
import zlib

import numpy as np
import torch

import reference

sys.path.insert(0, os.path.join(reference.ROOT, "tests"))
import parity_util  # noqa: E402

SEED = 0
BATCH = 2
SAMPLES = 32
PERTURBATIONS = 3  # inputs x (1 + 1e-7 noise) for the float32 sensitivity
SENSITIVE = 1e-4  # above it (the float32 gradient tolerance), float64 gradients are stored too
CONVNETS = ["ConvNet", *(f"ConvNetD{d}" for d in range(1, 6)),
            *(f"ConvNetW{w}" for w in (32, 64, 128, 256)),
            *(f"ConvNet{v}" for v in ("AS", "AR", "AL", "NN", "BN", "LN", "IN", "GN", "NP", "MP",
                                      "AP"))]
OTHERS = ["MLP", "LeNet", "AlexNet", "AlexNetBN", "VGG11", "VGG11BN", "ResNet18", "ResNet18BN",
          "ResNet18_AP", "ResNet18BN_AP"]
CASES = ([(a, "cifar") for a in CONVNETS + OTHERS]
         + [(a, "mnist") for a in ("ConvNet", "ConvNetBN", "ConvNetLN", "ConvNetNP", *OTHERS)]
         + [("ConvNet3D", "voxel")])
SHAPES = {"cifar": (3, 32, 32), "mnist": (1, 28, 28), "voxel": (1, 16, 16, 16)}


def _official(arch: str, shape: tuple[int, ...]) -> torch.nn.Module:
    if arch == "ConvNet3D":
        utils3d = reference.official("3D-MNIST", "utils")
        return utils3d.get_network("Conv3DNet", shape[0], 10, shape[1:])
    utils, networks = reference.official("DM", "utils", "networks")
    if arch == "ResNet18_AP":  # in networks.py, not in DM's get_network
        return networks.ResNet18_AP(shape[0], 10)
    return utils.get_network(arch, shape[0], 10, shape[1:])


def _kinds(net: torch.nn.Module) -> dict[str, str]:
    """``STATE_KINDS`` entry of every state_dict name, from its module's type."""
    out = {}
    for prefix, mod in net.named_modules():
        for leaf, value in list(mod.named_parameters(recurse=False)) + list(
                mod.named_buffers(recurse=False)):
            name = f"{prefix}.{leaf}" if prefix else leaf
            if leaf == "num_batches_tracked":
                out[name] = "count"
            elif leaf.startswith("running_"):
                out[name] = leaf
            elif isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d)):
                out[name] = "conv" if leaf == "weight" else "bias"
            elif isinstance(mod, torch.nn.Linear):
                out[name] = "linear" if leaf == "weight" else "bias"
            else:
                out[name] = "norm_weight" if leaf == "weight" else "norm_bias"
    return out


def _backward(net: torch.nn.Module, x: np.ndarray, wo: np.ndarray):
    """Train-mode logits, input gradient and flat parameter gradients of ``sum(logits * wo)``."""
    net.train()
    net.zero_grad()
    xt = torch.from_numpy(x).requires_grad_(True)
    logits = net(xt)
    (logits * torch.from_numpy(wo)).sum().backward()
    grads = {n: p.grad.reshape(-1).numpy().copy() for n, p in net.named_parameters()}
    return logits.detach().numpy(), xt.grad.numpy(), grads


def main() -> None:
    rng = np.random.default_rng(SEED)
    out: dict[str, np.ndarray] = {}
    for name, shape in SHAPES.items():
        out[f"x@{name}"] = rng.standard_normal((BATCH, *shape)).astype(np.float32)
    out["wo"] = rng.standard_normal((BATCH, 10)).astype(np.float32)
    for arch, shape_name in CASES:
        case = f"{arch}@{shape_name}"
        torch.manual_seed(SEED)
        net = _official(arch, SHAPES[shape_name])
        kinds = _kinds(net)
        names = list(net.state_dict())
        shapes = np.full((len(names), 5), -1, np.int64)
        for i, n in enumerate(names):
            shapes[i, : net.state_dict()[n].ndim] = net.state_dict()[n].shape
        seed = zlib.crc32(case.encode())
        state = parity_util.synthetic_state(names, shapes, [kinds[n] for n in names], seed)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        out[f"{case}:names"] = np.array(names)
        out[f"{case}:shapes"] = shapes
        out[f"{case}:kinds"] = np.array([kinds[n] for n in names])
        out[f"{case}:seed"] = np.int64(seed)
        bn = any(k.startswith("running_") for k in kinds.values())
        if bn:
            net.eval()
            with torch.no_grad():
                out[f"{case}:eval_logits"] = net(torch.from_numpy(out[f"x@{shape_name}"]))
        net64 = copy.deepcopy(net).double()
        x = out[f"x@{shape_name}"]
        logits, gx, grads = _backward(net, x, out["wo"])
        for n, v in net.state_dict().items():
            if kinds[n].startswith("running_"):
                out[f"{case}:rs:{n}"] = v.clone()
        out[f"{case}:logits"] = logits
        out[f"{case}:gx"] = gx
        learn = [n for n in names if n in grads]
        gidx = np.stack([np.random.default_rng([seed, i]).choice(
            grads[n].size, SAMPLES, replace=grads[n].size < SAMPLES)
            for i, n in enumerate(learn)]).astype(np.int64)
        out[f"{case}:gidx"] = gidx
        out[f"{case}:gval"] = np.stack([grads[n][i] for n, i in zip(learn, gidx)])
        out[f"{case}:gnorm"] = np.asarray(
            [np.linalg.norm(grads[n].astype(np.float64)) for n in learn], np.float32)
        # Conditioning: how far float32 rounding alone moves these gradients (a ReLU or
        # max-pool input within rounding of its kink flips a unit's derivative).
        sens = 0.0
        for k in range(PERTURBATIONS):
            noise = np.random.default_rng([seed, 1000 + k]).standard_normal(x.shape)
            _, gxp, gp = _backward(net, (x * (1 + 1e-7 * noise)).astype(np.float32), out["wo"])
            floor = 1e-2 * max(np.abs(v).max() for v in grads.values())
            sens = max(sens, np.abs(gxp - gx).max() / np.abs(gx).max(),
                       *(np.abs(gp[n] - grads[n]).max() / max(np.abs(grads[n]).max(), floor)
                         for n in learn))
        out[f"{case}:sensitivity"] = np.float64(sens)
        if sens > SENSITIVE:  # float64 reference for the exact-math check
            _, gx64, g64 = _backward(net64, x.astype(np.float64), out["wo"].astype(np.float64))
            out[f"{case}:gx64"] = gx64
            out[f"{case}:gval64"] = np.stack([g64[n][i] for n, i in zip(learn, gidx)])
        print(f"  {case}: {sum(v.size for v in grads.values())} parameters, "
              f"float32 gradient sensitivity {sens:.2g}")
    reference.save_golden("models", **out)


if __name__ == "__main__":
    main()
