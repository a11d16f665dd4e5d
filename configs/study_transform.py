"""Figure 8b study (FreD, NeurIPS 2023, Section 4.3): which frequency transform.

    python -m fred_jax.sweep --config configs/study_transform.py --workdir runs/study_transform \\
        --variant transform=dct \\
        --variant transform=dft,lr_convention=orthonormal,lr=244.140625 \\
        --variant transform=dwt,mask_kind=low_pass,lr_convention=orthonormal,lr=244.140625 \\
        --baseline parameterization=pixel
    # the second budget: add --set ipc=10 (and another --workdir)

Paper: DCT, DFT and DWT all improve on the baseline, DCT the most; "for DWT, we utilize the
Haar wavelet function and low-pass filter instead of an EVR mask". Setting as Figure 8a
(``study_mask_kind.py``: CIFAR-10, DM, IPC=1 and 10, k=64). Our DFT is the real Hartley
transform (``fred_jax.transforms``; the paper does not say how it keeps DFT coefficients real),
our DWT the multi-level orthonormal Haar pyramid.

Learning rate of the non-DCT variants. ``lr=1e6`` is in the official unit, the unnormalised
torch-dct DCT-II, in which a coefficient at (u, v) of an H x W image is ``s = s_u(H) s_v(W)``
times our orthonormal one (``s_0(N) = 2 sqrt(N)``, ``s_k(N) = sqrt(2N)``); SGD at rate ``lr``
there is SGD at ``lr / s^2`` here (``fred_jax.optimizer``, ``lr_convention="torch_dct"``). That
rescaling is DCT-specific, so DFT and DWT run with ``lr_convention="orthonormal"`` and the rate
the DCT gives most of its coefficients (u, v > 0): ``lr / (4 H W)`` = 1e6 / 4096 = 244.140625
on 32 x 32 (1e6 / 3136 = 318.88 on MNIST's 28 x 28). The DCT's first row and column get half
of it and the DC term a quarter; the orthonormal transforms have no such per-coefficient scale.
A control that changes only the rate convention, not the transform (ours, not in the paper):
``--variant transform=dct,lr_convention=orthonormal,lr=244.140625``.
"""

import os

from fred_jax import configuration


def get_config():
    config = configuration.from_file(os.path.join(os.path.dirname(__file__),
                                                  "study_mask_kind.py"))
    config.transform = "dct"  # official main_DM_FreD.py:41; variants set dft / dwt
    config.mask_kind = "evr"  # official rule; paper: low_pass for dwt (set by its variant)
    config.lr_convention = "torch_dct"  # ours: official unit for dct; the variants' orthonormal
    # rate is lr / (4 H W) = 244.140625 (derived above)
    return config
