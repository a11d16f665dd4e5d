"""Golden file for the DM objective: the official FreD DM loss (``DM/main_DM_FreD.py``, ConvNet
``embed``, no augmentation) and its gradient w.r.t. the kept frequency coefficients.

Inputs (NumPy, fixed seed): a frequency set built like the official ``SynSet`` (``freq =
DCT.forward(images)``, unnormalised torch-dct coefficients, a 0/1 class mask with k kept
positions shared by the class's instances and channels, decoded as ``DCT.inverse(mask *
freq)``), real batches, and the weights of an official ConvNet (width 128, depth 3). Also
provides :func:`freq_synset` and :func:`kept` for ``ref_dc.py`` and ``ref_tm.py``.

Stored: ``indices [C, k]`` (flat spatial positions), ``freq_kept [C, n, k, ch]`` (the official
coefficients at those positions), ``syn_images`` (decoded, NCHW), ``real [C, B, ch, H, W]``,
the ConvNet ``state_dict`` under ``w:``, ``loss`` and ``grad_freq [C, n, k, ch]`` (the gradient
of ``freq_syn`` at the kept positions).
"""

from __future__ import annotations

import numpy as np
import torch

import reference

NUM_CLASSES, N_PER_CLASS, K, CH, SIDE, BATCH_REAL = 3, 4, 64, 3, 32, 16


def freq_synset(dct_cls, rng: np.random.Generator, num_classes: int = NUM_CLASSES,
                n: int = N_PER_CLASS, k: int = K):
    """``(freq [C*n, ch, H, W] leaf tensor, mask, indices [C, k])`` as the official SynSet
    holds them: ``freq = DCT.forward(images)`` of Gaussian images, k positions per class (the
    DC component always, the rest uniform), the mask 1 there for every instance and channel."""
    images = torch.tensor(rng.normal(size=(num_classes * n, CH, SIDE, SIDE)), dtype=torch.float)
    dct = dct_cls(resolution=SIDE, device="cpu")
    freq = dct.forward(images).detach().requires_grad_(True)
    indices = np.stack([np.concatenate([[0], 1 + rng.choice(SIDE * SIDE - 1, k - 1, replace=False)])
                        for _ in range(num_classes)]).astype(np.int32)
    mask = torch.zeros_like(freq)
    for c in range(num_classes):
        h, w = np.unravel_index(indices[c], (SIDE, SIDE))
        mask[c * n:(c + 1) * n, :, h, w] = 1.0
    return dct, freq, mask, indices


def kept(x: torch.Tensor, indices: np.ndarray, n: int = N_PER_CLASS) -> np.ndarray:
    """``[C, n, k, ch]``: the entries of ``x [C*n, ch, H, W]`` at each class's kept positions."""
    x = reference.to_np(x)
    flat = x.reshape(len(indices), n, CH, -1)
    return np.stack([np.moveaxis(flat[c][:, :, indices[c]], 1, -1) for c in range(len(indices))])


def main() -> None:
    utils, ft = reference.official("DM", "utils", "frequency_transforms")
    rng = np.random.default_rng(20231)
    torch.manual_seed(20231)
    dct, freq, mask, indices = freq_synset(ft.DCT, rng)
    real = rng.normal(size=(NUM_CLASSES, BATCH_REAL, CH, SIDE, SIDE)).astype(np.float32)
    net = utils.get_network("ConvNet", CH, NUM_CLASSES, (SIDE, SIDE))
    net.train()
    for p in net.parameters():
        p.requires_grad = False

    # main_DM_FreD.py, ConvNet branch, dsa off, batch_syn 0.
    syn = dct.inverse(mask * freq)
    loss = torch.tensor(0.0)
    for c in range(NUM_CLASSES):
        output_real = net.embed(torch.tensor(real[c])).detach()
        output_syn = net.embed(syn[c * N_PER_CLASS:(c + 1) * N_PER_CLASS])
        loss += torch.sum((torch.mean(output_real, dim=0) - torch.mean(output_syn, dim=0)) ** 2)
    loss.backward()

    reference.save_golden(
        "dm", indices=indices, freq_kept=kept(freq, indices), syn_images=syn, real=real,
        loss=loss, grad_freq=kept(freq.grad, indices),
        **{f"w:{name}": v for name, v in net.state_dict().items()})


if __name__ == "__main__":
    main()
