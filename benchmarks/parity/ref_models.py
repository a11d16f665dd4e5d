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

Inputs far from every kink: a ReLU (or leaky ReLU) input within float32 rounding of 0, or a
max-pool window whose two largest entries lie within rounding of each other, makes the gradient
discontinuous at the test input, and float32 code on another instruction set (other kernels,
other summation order) can land on the other side. So each case gets its own input ``x``: the
shared draw, nudged (Adam on a hinge loss, the network fixed) until every such site of the
official network in train mode keeps a margin, measured in float64 at the stored float32 input
by intercepting ``torch.nn.functional`` (every ReLU, leaky ReLU and max-pool of DM/networks.py
and Conv3DNet goes through it, the functional ResNet ones included). Margin of a site:
``|pre-activation|``, or the gap between a window's maximum and runner-up, over the RMS of that
layer's input; the case's ``kink_margin`` is the smallest over all sites, units and windows.
Windows whose two largest entries are exactly equal in float64 are left out: ReLU zeros (zero
gradient whichever wins) and the outer ring of a first convolution fed only by padding and its
bias (the same arithmetic on the same numbers, and the same gradient whichever wins).

Margin rule: ``kink_margin >= max(MARGIN, SAFETY * kink_f32_error)``. ``kink_f32_error`` is the
largest deviation of torch's float32 values at the sites from float64, on the same scale: the
accumulated rounding of the whole forward pass (unit roundoff 6e-8 per operation, grown by the
fan-in sums and the depth). Another float32 implementation (XLA on AVX2 or AVX-512) is off from
float64 by the same order, so two of them differ by about twice that, and a margin ten times
the error keeps every site on the same side; ``MARGIN`` (1e-4) is the floor for the shallow
cases, whose error is smaller still. The nudge stops at ``HEADROOM`` times the rule, so that
storing ``x`` in float32 and the error's own change cannot undo it. Float64 gradients (``gx64``, ``gval64``) are stored for the deepest
cases (``FLOAT64``), for an exact-math check.

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_models.py [--jobs 2]``.
"""

from __future__ import annotations

import contextlib
import copy
import math
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
MARGIN = 1e-4  # smallest kink distance over the layer's RMS (tests/test_parity_models.py)
SAFETY = 10  # ... and at least this many times the float32 forward error at the kink sites
HEADROOM = 1.2  # the nudge stops at this multiple of the rule (float32 storage, error drift)
NUDGE_STEPS = 400
PERTURBATIONS = 3  # inputs x (1 + 1e-7 noise) for the float32 sensitivity
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
FLOAT64 = ("ResNet18",)  # architecture prefixes (the deepest) with float64 rows


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


@contextlib.contextmanager
def _kink_sites(store: list):
    """Record the input of every ReLU, leaky ReLU and 2-D max-pool called while active (the
    modules and the functional calls of the official networks all go through these)."""
    F = torch.nn.functional
    relu, leaky, pool = F.relu, F.leaky_relu, F.max_pool2d

    def rec_relu(inp, *args, **kw):
        store.append(("relu", inp.clone(), None, None))
        return relu(inp, *args, **kw)

    def rec_leaky(inp, *args, **kw):
        store.append(("relu", inp.clone(), None, None))
        return leaky(inp, *args, **kw)

    def rec_pool(inp, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 return_indices=False):
        if padding or dilation != 1 or ceil_mode:
            raise NotImplementedError("max-pool margin only for unpadded, undilated windows")
        store.append(("pool", inp.clone(), kernel_size, stride or kernel_size))
        return pool(inp, kernel_size, stride, padding, dilation, ceil_mode, return_indices)

    F.relu, F.leaky_relu, F.max_pool2d = rec_relu, rec_leaky, rec_pool
    try:
        yield
    finally:
        F.relu, F.leaky_relu, F.max_pool2d = relu, leaky, pool


def _site_margins(store: list) -> list[torch.Tensor]:
    """Per recorded site, the margin of each unit (ReLU) or window (max-pool) over the RMS of
    the site's input (see the module docstring)."""
    out = []
    for kind, t, kernel, stride in store:
        scale = t.detach().pow(2).mean().sqrt()
        if kind == "relu":
            out.append(t.abs().flatten() / scale)
            continue
        windows = torch.nn.functional.unfold(t.flatten(0, 1)[:, None], kernel, stride=stride)
        top = windows.topk(2, dim=1).values
        tied = top[:, 0].detach() == top[:, 1].detach()
        out.append(((top[:, 0] - top[:, 1]) / scale)[~tied])
    return out


def _train_copy(net: torch.nn.Module, dtype) -> torch.nn.Module:
    """A train-mode copy in ``dtype`` with frozen parameters (its running statistics move)."""
    out = copy.deepcopy(net).to(dtype).train()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def kink_margin(net: torch.nn.Module, x: np.ndarray) -> tuple[float, float]:
    """Smallest kink margin of ``net`` in train mode at the float32 input ``x``, in float64,
    and the largest deviation of the float32 forward pass from float64 at those sites."""
    sites: dict = {}
    for dtype in (torch.float64, torch.float32):
        sites[dtype] = []
        with torch.no_grad(), _kink_sites(sites[dtype]):
            _train_copy(net, dtype)(torch.from_numpy(x).to(dtype))
    margins = [float(m.min()) for m in _site_margins(sites[torch.float64]) if m.numel()]
    if not margins:  # no ReLU or max-pool (sigmoid networks): nothing can flip
        return math.inf, 0.0
    error = max(float((a[1].double() - b[1]).abs().max() / b[1].pow(2).mean().sqrt())
                for a, b in zip(sites[torch.float32], sites[torch.float64]))
    return min(margins), error


def nudge(net: torch.nn.Module, x: np.ndarray, case: str) -> np.ndarray:
    """``x`` moved until every kink site of ``net`` (train mode) has ``HEADROOM`` times the
    margin the rule asks: Adam on ``sum(relu(2 * rule - margin)^2)`` over the input, in
    float32 (rounding is far below the rule; :func:`kink_margin` checks in float64). The
    float32 error, hence the rule, moves with ``x``: it is measured again after each round."""
    if math.isinf(kink_margin(net, x)[0]):
        return x.copy()
    work = _train_copy(net, torch.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    for _ in range(3):
        rule = max(MARGIN, SAFETY * kink_margin(net, xt.detach().numpy())[1])
        opt = torch.optim.Adam([xt], lr=rule)
        for _ in range(NUDGE_STEPS):
            store: list = []
            with _kink_sites(store):
                work(xt)
            margins = [m for m in _site_margins(store) if m.numel()]
            if min(float(m.detach().min()) for m in margins) >= HEADROOM * rule:
                break
            opt.zero_grad()
            (sum(torch.relu(2 * rule - m).pow(2).sum() for m in margins) / rule**2).backward()
            opt.step()
        else:
            raise RuntimeError(f"{case}: no input with kink margin {HEADROOM * rule:.2g} after "
                               f"{NUDGE_STEPS} steps")
        out = xt.detach().numpy().copy()
        margin, error = kink_margin(net, out)
        if margin >= max(MARGIN, SAFETY * error):
            return out
    raise RuntimeError(f"{case}: the float32 error keeps outgrowing the nudged margin")


def _backward(net: torch.nn.Module, x: np.ndarray, wo: np.ndarray):
    """Train-mode logits, input gradient and flat parameter gradients of ``sum(logits * wo)``."""
    net.train()
    net.zero_grad()
    xt = torch.from_numpy(x).requires_grad_(True)
    logits = net(xt)
    (logits * torch.from_numpy(wo)).sum().backward()
    grads = {n: p.grad.reshape(-1).numpy().copy() for n, p in net.named_parameters()}
    return logits.detach().numpy(), xt.grad.numpy(), grads


def _inputs() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The shared input draw per shape (each case nudges its own copy) and ``wo``."""
    rng = np.random.default_rng(SEED)
    base = {name: rng.standard_normal((BATCH, *shape)).astype(np.float32)
            for name, shape in SHAPES.items()}
    return base, rng.standard_normal((BATCH, 10)).astype(np.float32)


def run_case(arch: str, shape_name: str) -> dict[str, np.ndarray]:
    """The golden arrays of one case ``<arch>@<shape_name>`` (keys prefixed by the case)."""
    base, wo = _inputs()
    case = f"{arch}@{shape_name}"
    out: dict[str, np.ndarray] = {}
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
    for attempt in range(3):  # a draw whose kinks resist the nudge is replaced by another
        start = base[shape_name] if attempt == 0 else np.random.default_rng(
            [SEED, seed, attempt]).standard_normal(base[shape_name].shape).astype(np.float32)
        try:
            x = nudge(net, start, case)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    margin, f32_error = kink_margin(net, x)
    if margin < max(MARGIN, SAFETY * f32_error):
        raise RuntimeError(f"{case}: kink margin {margin:.3g} < max({MARGIN}, {SAFETY} x "
                           f"float32 error {f32_error:.2g}) after the nudge")
    out[f"{case}:x"] = x
    out[f"{case}:kink_margin"] = np.float64(margin)
    out[f"{case}:kink_f32_error"] = np.float64(f32_error)
    if any(k.startswith("running_") for k in kinds.values()):
        net.eval()
        with torch.no_grad():
            out[f"{case}:eval_logits"] = net(torch.from_numpy(x)).numpy()
    net64 = copy.deepcopy(net).double()
    logits, gx, grads = _backward(net, x, wo)
    for n, v in net.state_dict().items():
        if kinds[n].startswith("running_"):
            out[f"{case}:rs:{n}"] = v.numpy().copy()
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
    # Empirical check of the margin: how far 1e-7 relative input noise moves these float32
    # gradients (a site within rounding of its kink would flip a unit's derivative).
    sens = 0.0
    for k in range(PERTURBATIONS):
        noise = np.random.default_rng([seed, 1000 + k]).standard_normal(x.shape)
        _, gxp, gp = _backward(net, (x * (1 + 1e-7 * noise)).astype(np.float32), wo)
        floor = 1e-2 * max(np.abs(v).max() for v in grads.values())
        sens = max(sens, np.abs(gxp - gx).max() / np.abs(gx).max(),
                   *(np.abs(gp[n] - grads[n]).max() / max(np.abs(grads[n]).max(), floor)
                     for n in learn))
    out[f"{case}:sensitivity"] = np.float64(sens)
    if arch.startswith(FLOAT64):  # float64 reference for the exact-math check
        _, gx64, g64 = _backward(net64, x.astype(np.float64), wo.astype(np.float64))
        out[f"{case}:gx64"] = gx64
        out[f"{case}:gval64"] = np.stack([g64[n][i] for n, i in zip(learn, gidx)])
    print(f"  {case}: {sum(v.size for v in grads.values())} parameters, kink margin "
          f"{margin:.3g} (float32 forward error {f32_error:.2g}), float32 gradient "
          f"sensitivity {sens:.2g}", flush=True)
    return out


def _cached_case(case: tuple[str, str], cache: str) -> dict[str, np.ndarray] | None:
    """:func:`run_case` through ``cache`` (a folder): a finished case is loaded, not rerun; an
    unfinished one is claimed (``<case>.claim``) so that concurrent invocations share the work;
    None for a case another invocation has claimed."""
    name = f"{case[0]}@{case[1]}"
    path = os.path.join(cache, f"{name}.npz")
    if not os.path.exists(path):
        try:
            os.close(os.open(os.path.join(cache, f"{name}.claim"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return None
        arrays = run_case(*case)
        np.savez(path + ".tmp.npz", **arrays)
        os.replace(path + ".tmp.npz", path)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _run_case(args: tuple[tuple[str, str], str]) -> dict[str, np.ndarray] | None:
    case, cache = args
    return _cached_case(case, cache) if cache else run_case(*case)


def main(argv: list[str]) -> None:
    """All cases into the golden file (``--jobs N``: N processes, the deep cases first;
    ``--cache DIR``: finished cases kept there, so a rerun or a concurrent invocation resumes);
    with case names as arguments, only those, printed and not saved (to try a change)."""
    import argparse
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="only these <arch>@<shape>, not saved")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cache", default="", help="folder for finished cases (resumable)")
    args = parser.parse_args(argv)
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    todo = [c for c in CASES if not args.cases or f"{c[0]}@{c[1]}" in args.cases]
    order = sorted(todo, key=lambda c: not c[0].startswith(("ResNet", "VGG")))
    work = [(c, args.cache) for c in order]
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            done = dict(zip(order, pool.imap(_run_case, work)))
    else:
        done = {c: _run_case(w) for c, w in zip(order, work)}
    missing = [f"{c[0]}@{c[1]}" for c in todo if done[c] is None]
    if missing:
        print(f"claimed by another invocation, rerun when it is done: {', '.join(missing)}")
        return
    out: dict[str, np.ndarray] = {"wo": _inputs()[1]}
    for c in todo:  # file order: CASES
        out.update(done[c])
    if not args.cases:
        reference.save_golden("models", **out)

if __name__ == "__main__":
    main(sys.argv[1:])
