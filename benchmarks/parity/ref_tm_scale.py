"""Golden file for TM at the real scale: ``ITERATIONS`` consecutive iterations of the official
``TM/main_TM_FreD.py`` loop body (CIFAR-10 ipc 1: 10 classes x 16 instances = 160 synthetic
images, k = 64 per channel, ConvNet width 128 depth 3, ``syn_steps`` on the whole set with DSA,
``expert_epochs`` 2, ``max_start_epoch`` 5, the official rates: ``lr_freq`` 1e8 with momentum
0.5, ``lr_teacher`` 0.01, ``lr_lr`` 1e-7 with momentum 0.5, ``syn_lr`` clipped at 1e-3), in
float64: the official SynSet (its ``get``, optimiser, zero_grad and step) and the official
ReparamModule student, with the coefficients, ``syn_lr`` and both momentum buffers carried over.

Inputs from seeds: the frequency set as ``ref_dm.freq_synset`` builds it (Gaussian images, k
positions per class), and one expert trajectory of ``EPOCHS + 1`` timestamps:
``parity_util.synthetic_state`` for epoch 0 and ``parity_util.synthetic_walk`` after it (the
test rebuilds both; only the ``state_dict`` names/shapes/kinds are stored).

Recorded (the official code's own random numbers, for the test to inject): per iteration the
start epoch (``np.random.randint``), per student step the ``torch.randperm`` of the batch, the
DSA op index (``torch.randint``) and the op's draws (``torch.rand``/``torch.randint``; the
other ops' entries are zero). Outputs per iteration: loss, gradients (kept coefficients and
``syn_lr``), and after the step the kept coefficients, ``syn_lr`` and both momentum buffers.

float64: the default dtype is float64, so the DCT, the images, the network and the DSA draws
are float64; the official ``rand_scale``/``rand_rotate`` build their affine matrices with
``dtype=torch.float``, which the script makes float64 too (``utils.torch.float``; with float32
matrices the grid carries float32 rounding, ~1e-6 of the augmented images, which the
cancellations of the gradient w.r.t. the images amplify to ~1e-3). Anomaly detection (the
official ``set_detect_anomaly(True)``) is left off: it changes no number, only the time.

syn_steps: the official value is 50, but the official student keeps every step's graph,
about 1.3 GB per step in float64 here (peak RSS 5 GB with 4 steps, measured), ~65 GB for 50;
the stored golden uses ``TM_SCALE_STEPS`` (default 4). Iterations: ``TM_SCALE_ITERATIONS``
(default 3).

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_tm_scale.py`` (about 15
minutes on 2 busy cores).
"""

from __future__ import annotations

import os
import resource
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import reference

sys.path.insert(0, os.path.join(reference.ROOT, "tests"))
import parity_util  # noqa: E402

NUM_CLASSES, N, K, CH, SIDE, WIDTH = 10, 16, 64, 3, 32, 128
# syn_steps: 50 is the official value; the official student keeps every step's graph (about
# 1.3 GB per step in float64 at this scale: ~65 GB for 50), so the stored golden uses fewer.
SYN_STEPS = int(os.environ.get("TM_SCALE_STEPS", 4))
EXPERT_EPOCHS, MAX_START, EPOCHS = 2, 5, 6
LR_FREQ, MOM_FREQ, LR_TEACHER, LR_LR = 1e8, 0.5, 0.01, 1e-7
ITERATIONS = int(os.environ.get("TM_SCALE_ITERATIONS", 3))
SEED, EXPERT_SEED = 2022, 7
STRATEGY = "color_crop_cutout_flip_scale_rotate"
OPS = STRATEGY.split("_")
NAMES = {"color": ("brightness", "saturation", "contrast"), "crop": ("x", "y"),
         "cutout": ("x", "y"), "flip": ("flip",), "scale": ("x", "y"), "rotate": ("angle",)}


class Recorder:
    """Keeps every ``torch.rand``/``randint``/``randperm`` result (flattened, in order)."""

    def __init__(self):
        self.draws: list[tuple[str, np.ndarray]] = []
        self._orig = {n: getattr(torch, n) for n in ("rand", "randint", "randperm")}

    def __enter__(self):
        for name, fn in self._orig.items():
            def wrapped(*a, _fn=fn, _name=name, **k):
                out = _fn(*a, **k)
                self.draws.append((_name, out.detach().clone().reshape(-1).numpy()))
                return out
            setattr(torch, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, fn in self._orig.items():
            setattr(torch, name, fn)


class Float64Torch(types.ModuleType):
    """``torch`` with ``torch.float`` = float64, as ``utils.torch`` of the official module."""

    float = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def kinds_of(state: dict) -> list[str]:
    out = []
    for name, v in state.items():
        if name.startswith("classifier"):
            out.append("linear" if name.endswith("weight") else "bias")
        elif v.ndim == 4:
            out.append("conv")
        else:
            conv_bias = name.endswith("bias") and (int(name.split(".")[1]) % 4 == 0)
            out.append("bias" if conv_bias else
                       "norm_weight" if name.endswith("weight") else "norm_bias")
    return out


def split_steps(draws: list, steps: int) -> dict[str, np.ndarray]:
    """Per step: the permutation, the op index and the op's draws (zeros for other ops)."""
    out = {"perm": np.zeros((steps, NUM_CLASSES * N), np.int64), "op": np.zeros(steps, np.int64)}
    for op in OPS:
        for name in NAMES[op]:
            out[f"{op}_{name}"] = np.zeros((steps, NUM_CLASSES * N))
    it = iter(draws)
    for s in range(steps):
        kind, perm = next(it)
        assert kind == "randperm", kind
        out["perm"][s] = perm
        kind, op = next(it)
        assert kind == "randint" and op.size == 1, (kind, op.shape)
        out["op"][s] = int(op[0])
        name = OPS[int(op[0])]
        for field in NAMES[name]:
            _, value = next(it)
            out[f"{name}_{field}"][s] = value
    assert next(it, None) is None
    return out


def main() -> None:
    torch.set_default_dtype(torch.float64)
    utils, rm, ft, tm_main = reference.official("TM", "utils", "reparam_module",
                                                "frequency_transforms", "main_TM_FreD")
    utils.torch = Float64Torch("torch")  # the DSA ops' dtype=torch.float: float64 too
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    np.random.seed(SEED)

    # The synthetic set (ref_dm.freq_synset, float64) inside an official SynSet.
    images = torch.tensor(rng.normal(size=(NUM_CLASSES * N, CH, SIDE, SIDE)))
    dct = ft.DCT(resolution=SIDE, device="cpu")
    indices = np.stack([np.concatenate([[0], 1 + rng.choice(SIDE * SIDE - 1, K - 1,
                                                               replace=False)])
                        for _ in range(NUM_CLASSES)]).astype(np.int32)
    synset = tm_main.SynSet.__new__(tm_main.SynSet)
    synset.dct = dct
    synset.freq_syn = dct.forward(images).detach().requires_grad_(True)
    synset.mask = torch.zeros_like(synset.freq_syn)
    for c in range(NUM_CLASSES):
        h, w = np.unravel_index(indices[c], (SIDE, SIDE))
        synset.mask[c * N:(c + 1) * N, :, h, w] = 1.0
    synset.label_syn = torch.repeat_interleave(torch.arange(NUM_CLASSES), N)
    synset.optimizers = torch.optim.SGD([synset.freq_syn], lr=LR_FREQ, momentum=MOM_FREQ)
    freq0 = synset.freq_syn.detach().clone()

    # One expert: official ConvNet state_dict names, synthetic values.
    net = utils.get_network("ConvNet", CH, NUM_CLASSES, (SIDE, SIDE), dist=False)
    names = list(net.state_dict())
    shapes = [tuple(v.shape) for v in net.state_dict().values()]
    kinds = kinds_of(net.state_dict())
    start_state = parity_util.synthetic_state(names, shapes, kinds, EXPERT_SEED)
    walk = parity_util.synthetic_walk(start_state, EPOCHS, EXPERT_SEED)
    buffer = [[[torch.tensor(v, dtype=torch.float64) for v in s.values()] for s in walk]]

    syn_lr = torch.tensor(LR_TEACHER).requires_grad_(True)
    optimizer_lr = torch.optim.SGD([syn_lr], lr=LR_LR, momentum=0.5)
    dsa_param = utils.ParamDiffAug()
    out: dict[str, np.ndarray] = {}
    expert_idx = 0
    for it in range(ITERATIONS):
        t0 = time.time()
        # --- main_TM_FreD.py, the loop body after evaluation (args.load_all False, one expert)
        student_net = rm.ReparamModule(utils.get_network("ConvNet", CH, NUM_CLASSES,
                                                         (SIDE, SIDE), dist=False))
        student_net.train()
        num_params = sum([np.prod(p.size()) for p in (student_net.parameters())])
        expert_trajectory = buffer[expert_idx]
        start_epoch = np.random.randint(0, MAX_START)
        starting_params = expert_trajectory[start_epoch]
        target_params = expert_trajectory[start_epoch + EXPERT_EPOCHS]
        target_params = torch.cat([p.data.reshape(-1) for p in target_params], 0)
        student_params = [torch.cat([p.data.reshape(-1) for p in starting_params], 0)
                          .requires_grad_(True)]
        starting_params = torch.cat([p.data.reshape(-1) for p in starting_params], 0)
        image_syn, label_syn = synset.get()
        syn_images = image_syn
        y_hat = label_syn
        indices_chunks = []
        criterion = nn.CrossEntropyLoss()
        with Recorder() as rec:
            for step in range(SYN_STEPS):
                if not indices_chunks:
                    perm = torch.randperm(len(syn_images))
                    indices_chunks = list(torch.split(perm, len(syn_images)))
                these_indices = indices_chunks.pop()
                x = syn_images[these_indices]
                this_y = y_hat[these_indices]
                x = utils.DiffAugment(x, STRATEGY, param=dsa_param)
                x = student_net(x, flat_param=student_params[-1])
                ce_loss = criterion(x, this_y)
                grad = torch.autograd.grad(ce_loss, student_params[-1], create_graph=True)[0]
                student_params.append(student_params[-1] - syn_lr * grad)
        param_loss = torch.tensor(0.0)
        param_dist = torch.tensor(0.0)
        param_loss += F.mse_loss(student_params[-1], target_params, reduction="sum")
        param_dist += F.mse_loss(starting_params, target_params, reduction="sum")
        param_loss /= num_params
        param_dist /= num_params
        param_loss /= param_dist
        grand_loss = param_loss
        synset.optim_zero_grad()
        optimizer_lr.zero_grad()
        grand_loss.backward()
        out[f"it{it}:loss"] = grand_loss
        out[f"it{it}:grad_freq"] = kept(synset.freq_syn.grad, indices)
        out[f"it{it}:grad_lr"] = syn_lr.grad.clone()
        synset.optim_step()
        optimizer_lr.step()
        syn_lr.data = syn_lr.data.clip(min=0.001)
        # --- state after the iteration
        out[f"it{it}:start_epoch"] = np.int64(start_epoch)
        for k, v in split_steps(rec.draws, SYN_STEPS).items():
            out[f"it{it}:{k}"] = v
        out[f"it{it}:freq"] = kept(synset.freq_syn, indices)
        out[f"it{it}:freq_momentum"] = kept(
            synset.optimizers.state[synset.freq_syn]["momentum_buffer"], indices)
        out[f"it{it}:syn_lr"] = syn_lr.detach().clone()
        out[f"it{it}:lr_momentum"] = optimizer_lr.state[syn_lr]["momentum_buffer"].clone()
        out[f"it{it}:seconds"] = np.float64(time.time() - t0)
        out[f"it{it}:peak_rss_gb"] = np.float64(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
        print(f"iteration {it}: start epoch {start_epoch}, loss {grand_loss.item():.6f}, "
              f"grad_lr {syn_lr.grad.item():.6g}, {time.time() - t0:.0f} s, peak RSS "
              f"{out[f'it{it}:peak_rss_gb']:.1f} GB", flush=True)
        # Written after every iteration: the first ones are usable while the rest run.
        reference.save_golden(
            "tm_scale", indices=indices, freq0=kept(freq0, indices),
            settings=np.array([SYN_STEPS, EXPERT_EPOCHS, MAX_START, EPOCHS, LR_FREQ, MOM_FREQ,
                               LR_TEACHER, LR_LR, it + 1]),
            names=np.array(names),
            shapes=np.array([list(s) + [-1] * (4 - len(s)) for s in shapes]),
            kinds=np.array(kinds), expert_seed=np.int64(EXPERT_SEED), **out)


def kept(x: torch.Tensor, indices: np.ndarray) -> np.ndarray:
    """``[C, n, k, ch]``: the entries of ``x [C*n, ch, H, W]`` at each class's kept positions."""
    flat = reference.to_np(x).reshape(NUM_CLASSES, N, CH, -1)
    return np.stack([np.moveaxis(flat[c][:, :, indices[c]], 1, -1) for c in range(NUM_CLASSES)])


if __name__ == "__main__":
    main()
