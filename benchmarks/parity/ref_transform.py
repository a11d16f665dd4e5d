"""Golden file for the transform piece: the official torch-dct DCT (``norm=None``) forward and
inverse, the official ``SynSet.get`` decode, and 1 and 3 SGD steps of the official coefficient
optimiser (``SynSet.optimizers``: SGD, lr_freq, mom_freq) under a fixed loss.

Loss on the decoded images ``x``: ``sum(w * x) + lam / 2 * ||x - target||^2`` with fixed ``w``,
``target`` and ``lam`` (stored), so the gradient changes between steps and momentum matters;
``lam`` keeps lr 1e6 (the official DM value) stable.

The official ``init_mask`` draws the masks of classes 0-9, so the SynSets have 10 classes; classes
are independent (class masks, elementwise loss), so only classes ``0..KEEP-1`` are stored. ``w`` and
``target`` are not stored: the test rebuilds them from ``wt_seed`` with the same NumPy calls.

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_transform.py``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

import reference

SEED = 0
LR, MOMENTUM, LAM = 1e6, 0.5, 1e-3
# (name, channels, side, classes, ipc, k): CIFAR-shaped and MNIST-shaped SynSets.
CASES = (("c32", 3, 32, 10, 1, 64), ("m28", 1, 28, 10, 1, 49))
KEEP = 2


def weights(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The loss's fixed ``w`` and ``target`` (NCHW float32), rebuilt by the test."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    return w, rng.standard_normal(shape).astype(np.float32)


def _synset(main, tmp: str, ch: int, side: int, classes: int, ipc: int, k: int):
    args = argparse.Namespace(
        log_path=f"{tmp}/log.txt", save_path=tmp, channel=ch, num_classes=classes,
        im_size=(side, side), device="cpu", ipc=ipc, lr_freq=LR, mom_freq=MOMENTUM,
        msz_per_channel=k)
    return main.SynSet(args)


def main() -> None:
    main_mod = reference.official("DM", "main_DM_FreD")
    ft = reference.official("DM", "frequency_transforms")
    rng = np.random.default_rng(SEED)
    out: dict[str, np.ndarray] = {"lr": np.float64(LR), "momentum": np.float64(MOMENTUM),
                                  "lam": np.float64(LAM), "wt_seed": np.int64(SEED + 1)}
    # Plain forward / inverse of random images and random coefficients (NCHW).
    for name, shape in (("t32", (6, 3, 32, 32)), ("t28", (5, 1, 28, 28))):
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.standard_normal(shape).astype(np.float32)
        dct = ft.DCT(resolution=shape[-1], device="cpu")
        with torch.no_grad():
            out[f"{name}_x"], out[f"{name}_y"] = x, y
            out[f"{name}_fwd"] = dct.forward(torch.from_numpy(x))
            out[f"{name}_inv"] = dct.inverse(torch.from_numpy(y))
    # SynSet: init on random "real" images, decode, then SGD steps on the fixed loss.
    for name, ch, side, classes, ipc, k in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            syn = _synset(main_mod, tmp, ch, side, classes, ipc, k)
            n = syn.num_per_class
            real = torch.from_numpy(
                rng.standard_normal((classes * n, ch, side, side)).astype(np.float32))
            indices_class = [list(range(c * n, (c + 1) * n)) for c in range(classes)]
            np.random.seed(SEED)
            torch.manual_seed(SEED)
            syn.init(real, None, indices_class)
            w, target = weights(SEED + 1, (classes * n, ch, side, side))
            keep = slice(0, KEEP * n)
            out[f"{name}_n"] = np.int64(n)
            mask = syn.mask[:KEEP * n:n, 0] > 0  # [KEEP, side, side]
            freq = syn.freq_syn[keep].detach().reshape(KEEP, n, ch, side * side)
            out[f"{name}_mask"] = mask
            # Kept coefficients [KEEP, n, ch, k] in row-major position order.
            out[f"{name}_kept0"] = torch.stack(
                [freq[c][..., mask[c].reshape(-1)] for c in range(KEEP)])
            out[f"{name}_decoded0"] = syn.get(need_copy=True)[0][keep]
            wt, tt = torch.from_numpy(w), torch.from_numpy(target)
            for step in range(1, 4):
                syn.optim_zero_grad()
                img, _ = syn.get()
                loss = torch.sum(wt * img) + LAM / 2 * torch.sum((img - tt) ** 2)
                loss.backward()
                syn.optim_step()
                if step in (1, 3):
                    out[f"{name}_decoded{step}"] = syn.get(need_copy=True)[0][keep]
    reference.save_golden("transform", **out)


if __name__ == "__main__":
    main()
