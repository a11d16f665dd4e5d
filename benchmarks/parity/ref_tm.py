"""Golden file for the TM objective: the official FreD student loop (``TM/main_TM_FreD.py``: a
``ReparamModule`` ConvNet on a flat parameter vector, ``syn_steps`` SGD steps with the learnable
``syn_lr`` on the whole decoded set, ``batch_syn = 0``, DSA off), its normalised parameter
distance to the target, and the gradients w.r.t. the kept coefficients and ``syn_lr``.

Inputs: the frequency set of ``ref_dm.py``'s :func:`freq_synset` (``N_SYN`` per class); the
start parameters are an official ConvNet's initialisation (width ``WIDTH``, depth 3), the target
the same network after ``EXPERT_STEPS`` plain SGD steps on a Gaussian "real" batch (an expert
segment). The seed is one whose student keeps every ReLU input >= ``MIN_MARGIN`` from 0 in
float64 (checked here, :func:`relu_margin`): nearer inputs make float32 results (ours and the
official) jump between two states, see ``tests/test_parity_tm.py``. Stored: the start and target
as ``state_dict``s under ``start:`` / ``target:``, ``settings`` (syn_steps, syn_lr),
``relu_margin``, ``loss``, ``grad_freq [C, n, k, ch]``, ``grad_lr``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

import reference
from ref_dm import CH, NUM_CLASSES, SIDE, freq_synset, kept

SYN_STEPS, SYN_LR, EXPERT_STEPS, EXPERT_LR = 4, 0.01, 10, 0.01
# Small (6 images, width 16: ~0.5M ReLU inputs over the steps, not 8M) so that a seed exists
# whose ReLU inputs all keep MIN_MARGIN from 0 (seed 74: 1.5e-5; see relu_margin).
N_SYN, WIDTH, DEPTH, SEED, MIN_MARGIN = 2, 16, 3, 74, 1e-5


def named_flat(reparam, flat: torch.Tensor) -> dict[str, np.ndarray]:
    """A ``ReparamModule`` flat vector as the wrapped module's ``state_dict`` names -> arrays."""
    parts = flat.detach().split(reparam._param_numels)
    return {f"{mn.removeprefix('module.')}.{n}": reference.to_np(p).reshape(s)
            for (mn, n), p, s in zip(reparam._param_infos, parts, reparam._param_shapes)}


def expert_pair(rm, networks, rng: np.random.Generator):
    """``(student_net, start, target)``: a ``ReparamModule`` ConvNet (WIDTH, DEPTH, torch's
    initialisation) and its flat parameters before and after EXPERT_STEPS plain SGD steps on a
    fixed Gaussian batch (an expert segment)."""
    net = networks.ConvNet(CH, NUM_CLASSES, WIDTH, DEPTH, "relu", "instancenorm", "avgpooling",
                           (SIDE, SIDE))
    student_net = rm.ReparamModule(net)
    student_net.train()
    starting = student_net.flat_param.detach().clone()
    x_real = torch.tensor(rng.normal(size=(64, CH, SIDE, SIDE)), dtype=torch.float)
    y_real = torch.tensor(rng.integers(0, NUM_CLASSES, 64))
    target = starting.clone().requires_grad_(True)
    for _ in range(EXPERT_STEPS):
        loss = nn.functional.cross_entropy(student_net(x_real, flat_param=target), y_real)
        grad = torch.autograd.grad(loss, target)[0]
        target = (target - EXPERT_LR * grad).detach().requires_grad_(True)
    return student_net, starting, target.detach()


def student_loss(student_net, image_syn, y_hat, syn_lr, starting, target_params):
    """main_TM_FreD.py's loop body (``batch_syn = 0``, no DSA): the normalised distance of the
    student after SYN_STEPS steps to the target, differentiable in images and ``syn_lr``."""
    criterion = nn.CrossEntropyLoss()
    num_params = starting.numel()
    batch_syn = len(image_syn)
    student_params = [starting.clone().requires_grad_(True)]
    indices_chunks = []
    for _ in range(SYN_STEPS):
        if not indices_chunks:
            indices_chunks = list(torch.split(torch.randperm(len(image_syn)), batch_syn))
        these = indices_chunks.pop()
        x = student_net(image_syn[these], flat_param=student_params[-1])
        ce_loss = criterion(x, y_hat[these])
        grad = torch.autograd.grad(ce_loss, student_params[-1], create_graph=True)[0]
        student_params.append(student_params[-1] - syn_lr * grad)
    param_loss = nn.functional.mse_loss(student_params[-1], target_params, reduction="sum")
    param_dist = nn.functional.mse_loss(starting, target_params, reduction="sum")
    return (param_loss / num_params) / (param_dist / num_params)


def relu_margin(student_net, image_syn, y_hat, starting) -> float:
    """``min |ReLU input|`` over every student step's forward pass, in float64. The gradients
    are second order through ReLU masks: an input within float32 rounding of 0 lets a float32
    run land on either side, a discrete jump of ~1e-3 in the coefficient gradient."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda _, inp: seen.append(inp[0].abs().min().item()))
             for m in student_net.modules() if isinstance(m, nn.ReLU)]
    images, theta = image_syn.detach().double(), starting.double().requires_grad_(True)
    for _ in range(SYN_STEPS):
        ce = nn.functional.cross_entropy(student_net(images, flat_param=theta), y_hat)
        theta = (theta - SYN_LR * torch.autograd.grad(ce, theta)[0]).detach().requires_grad_(True)
    for h in hooks:
        h.remove()
    return min(seen)


def main() -> None:
    ft, rm, networks = reference.official("TM", "frequency_transforms", "reparam_module",
                                          "networks")
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    dct, freq, mask, indices = freq_synset(ft.DCT, rng, n=N_SYN)
    student_net, starting, target_params = expert_pair(rm, networks, rng)

    syn_lr = torch.tensor(SYN_LR).requires_grad_(True)
    image_syn = dct.inverse(mask * freq)
    y_hat = torch.repeat_interleave(torch.arange(NUM_CLASSES), N_SYN)
    margin = relu_margin(student_net, image_syn, y_hat, starting)
    if margin < MIN_MARGIN:
        raise SystemExit(f"ReLU margin {margin:.3g} < {MIN_MARGIN:g}: ill-conditioned inputs")
    grand_loss = student_loss(student_net, image_syn, y_hat, syn_lr, starting, target_params)
    grand_loss.backward()

    reference.save_golden(
        "tm", indices=indices, freq_kept=kept(freq, indices, N_SYN), syn_images=image_syn.detach(),
        settings=np.array([SYN_STEPS, SYN_LR]), relu_margin=np.float64(margin),
        loss=grand_loss, grad_freq=kept(freq.grad, indices, N_SYN), grad_lr=syn_lr.grad,
        **{f"start:{k}": v for k, v in named_flat(student_net, starting).items()},
        **{f"target:{k}": v for k, v in named_flat(student_net, target_params).items()})


if __name__ == "__main__":
    main()
