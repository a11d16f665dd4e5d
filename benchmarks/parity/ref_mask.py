"""Golden file for the mask piece: the official ``SynSet.init`` (sampling, DCT, ``init_mask``'s
explained-variance ranking) on chosen images, random and real (CIFAR-10, MNIST train splits
from ``$FRED_DATA_DIR``, default ``../shared/data``).

The official init draws ``np.random.permutation(indices_class[c])[:n]`` per class; giving it
exactly n images per class makes it keep all of them. The script replays that permutation (same
NumPy seed) to store the images' dataset indices in the official order, so the coefficients can
be compared instance by instance. Stored per case: ``<case>_order [C, n]`` (dataset indices;
the random case stores its generator seed instead of images), ``<case>_mask [C, H, W]`` (the
official kept positions) and ``<case>_kept [2, n, ch, k]`` (official coefficients of classes 0
and 1 at the kept positions, row-major order). Images are never stored.

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_mask.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

import reference

sys.path.insert(0, os.path.join(reference.ROOT, "tests"))
import parity_util  # noqa: E402

SEED = 0
CLASSES = 10
KEEP = 2
# (case, dataset, ipc, k): n = ipc * d // k instances per class.
CASES = (("rand32", "random", 1, 64), ("cifar_n16_k64", "cifar10", 1, 64),
         ("cifar_n40_k256", "cifar10", 10, 256), ("mnist_n16_k49", "mnist", 1, 49),
         ("mnist_n32_k49", "mnist", 2, 49))


def random_images(seed: int, n: int) -> np.ndarray:
    """The random case's images ``[CLASSES * n, 32, 32, 3]`` (class-major), rebuilt by the test."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((CLASSES * n, 32, 32, 3)).astype(np.float32)


def _official_init(main_mod, images_nchw: np.ndarray, n: int, ipc: int, k: int, tmp: str):
    """Run the official ``SynSet.init``; returns (synset, permutation order per class)."""
    ch, side = images_nchw.shape[1], images_nchw.shape[2]
    args = argparse.Namespace(
        log_path=f"{tmp}/log.txt", save_path=tmp, channel=ch, num_classes=CLASSES,
        im_size=(side, side), device="cpu", ipc=ipc, lr_freq=1e6, mom_freq=0.5,
        msz_per_channel=k)
    syn = main_mod.SynSet(args)
    assert syn.num_per_class == n, (syn.num_per_class, n)
    indices_class = [list(range(c * n, (c + 1) * n)) for c in range(CLASSES)]
    np.random.seed(SEED)
    order = np.stack([np.random.permutation(indices_class[c])[:n] for c in range(CLASSES)])
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    syn.init(torch.from_numpy(images_nchw), None, indices_class)
    return syn, order


def main() -> None:
    main_mod = reference.official("DM", "main_DM_FreD")
    root = os.environ.get("FRED_DATA_DIR", os.path.join(reference.ROOT, "..", "shared", "data"))
    rng = np.random.default_rng(SEED)
    out: dict[str, np.ndarray] = {}
    for case, dataset, ipc, k in CASES:
        t0 = time.time()
        if dataset == "random":
            n = ipc * 32 * 32 // k
            out[f"{case}_seed"] = np.int64(SEED + 7)
            images = random_images(SEED + 7, n)
            picked = np.arange(CLASSES * n).reshape(CLASSES, n)
        else:
            x, y = parity_util.load_real(dataset, root)
            n = ipc * x.shape[1] * x.shape[2] // k
            picked = np.stack([np.sort(rng.choice(np.flatnonzero(y == c), n, replace=False))
                               for c in range(CLASSES)])
            images = x[picked.reshape(-1)]
        with tempfile.TemporaryDirectory() as tmp:
            syn, order = _official_init(
                main_mod, np.ascontiguousarray(np.moveaxis(images, -1, 1)), n, ipc, k, tmp)
        # order holds positions in the class-major image stack; map them to dataset indices.
        out[f"{case}_order"] = picked.reshape(-1)[order]
        mask = (syn.mask[::n, 0] > 0).numpy()  # [C, H, W]
        freq = syn.freq_syn.detach().numpy()
        ch, side = freq.shape[1], freq.shape[2]
        freq = freq.reshape(CLASSES, n, ch, side * side)
        out[f"{case}_mask"] = mask
        out[f"{case}_kept"] = np.stack(
            [freq[c][..., mask[c].reshape(-1)] for c in range(KEEP)])
        print(f"  {case}: official init {time.time() - t0:.1f} s")
    reference.save_golden("mask", **out)


if __name__ == "__main__":
    main()
