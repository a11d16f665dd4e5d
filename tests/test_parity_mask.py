"""Parity of the class masks and initial coefficients with the official ``SynSet.init`` /
``init_mask`` (golden file from ``benchmarks/parity/ref_mask.py``).

Our ``synset.from_real`` gets the same images in the official order. Compared per case: the
kept positions (official kept positions that ours misses, summed over the 10 classes; must be
0) and the kept coefficients of classes 0 and 1 (ours times ``transforms.torch_dct_scale``).
The row note gives the same count for the old orthonormal ranking (``evr_orthonormal``).
The real-data cases read CIFAR-10 / MNIST from ``$FRED_DATA_DIR`` and skip without it.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity_util
from fred_jax import synset, transforms

PIECE = "mask"
TOL = 1e-5  # coefficients, float32, relative to the largest reference value
CASES = {"rand32": "random", "cifar_n16_k64": "cifar10", "cifar_n40_k256": "cifar10",
         "mnist_n16_k49": "mnist", "mnist_n32_k49": "mnist"}


def _random_images(seed: int, n: int) -> np.ndarray:
    """The reference script's ``random_images`` ``[10 * n, 32, 32, 3]``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((10 * n, 32, 32, 3)).astype(np.float32)


def _images(g: dict, case: str) -> np.ndarray:
    """``[C, n, H, W, ch]`` in the official order."""
    order = g[f"{case}_order"]
    c, n = order.shape
    if CASES[case] == "random":
        x = _random_images(int(g[f"{case}_seed"]), n)
    else:
        x, _ = parity_util.load_real(CASES[case], parity_util.data_dir())
    return x[order.reshape(-1)].reshape(c, n, *x.shape[1:])


def _wrong(syn: synset.SynSet, ref_mask: np.ndarray) -> int:
    """Official kept positions that ours does not keep, summed over classes (both keep k per
    class, so this is also the number of ours that the official does not keep)."""
    ours = np.zeros(ref_mask.shape, bool).reshape(len(ref_mask), -1)
    np.put_along_axis(ours, np.asarray(syn.indices), True, axis=1)
    return int(np.sum(ref_mask.reshape(len(ref_mask), -1) & ~ours))


def case_rows(g: dict, case: str) -> list[parity_util.Row]:
    real = _images(g, case)
    ref_mask, ref_kept = g[f"{case}_mask"], g[f"{case}_kept"]
    k = int(ref_mask[0].sum())
    syn = synset.from_real(real, k=k)
    old = synset.from_real(real, k=k, mask_kind="evr_orthonormal")
    c, n = real.shape[:2]
    keep = ref_kept.shape[0]
    scale = transforms.torch_dct_scale(real.shape[2:4]).reshape(-1)[np.asarray(syn.indices)]
    ours = np.asarray(syn.coeffs)[:keep] * scale[:keep, None, :, None]  # [keep, n, k, ch]
    shape = "x".join(map(str, real.shape[2:]))
    label = f"{case} ({shape}, n{n}, k{k})"
    old_wrong = _wrong(old, ref_mask)
    return [
        parity_util.Row(PIECE, f"{label} kept positions", _wrong(syn, ref_mask), 0,
                        f"{c} classes; old evr_orthonormal ranking: {old_wrong} of "
                        f"{c * k} positions wrong"),
        parity_util.compare(PIECE, f"{label} kept coefficients", ours,
                            np.swapaxes(ref_kept, 2, 3), TOL,
                            f"classes 0-{keep - 1}, ours x torch_dct_scale"),
    ]


def rows() -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    cases = [c for c in CASES if CASES[c] == "random" or parity_util.data_dir()]
    return [r for case in cases for r in case_rows(g, case)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_masks_and_coefficients_match_official(case):
    if CASES[case] != "random" and parity_util.data_dir() is None:
        pytest.skip("real-data parity needs FRED_DATA_DIR (folder with mnist/ and cifar10/)")
    parity_util.assert_rows(case_rows(parity_util.load_golden(PIECE), case))
