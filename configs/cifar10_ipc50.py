"""FreD + TM, CIFAR-10, 50 images per class.

Paper (FreD, NeurIPS 2023, Table 1, TM, ConvNetD3): 75.8 +- 0.1 % (pixel TM/MTT: 71.6 +- 0.2 %)
test accuracy, with x4 decoded instances per image of budget.

    python -m fred_jax.experts --config configs/cifar10_ipc50.py   # once: the experts
    python -m fred_jax.main --config configs/cifar10_ipc50.py --workdir runs/cifar10_ipc50
    # pixel TM baseline: add --config.parameterization=pixel

k from the paper: Table 1's "increment of decoded instances" x4 gives k = 1024 / 4 = 256
(200 instances per class; no official script has this setting). The coefficient rate has no
official value: ours, the CIFAR-10 ipc=1 script's 1e8.

Everything else (and the derivation of the coefficient-rate rescale for our orthonormal
DCT) is documented in ``configs/cifar10_ipc1.py``; this file overrides what differs.
"""

import os

from fred_jax import configuration


def get_config():
    base = os.path.join(os.path.dirname(__file__), "cifar10_ipc1.py")
    config = configuration.from_file(base)
    config.ipc = 50  # budget: 50 images per class
    config.k = 256  # paper Table 1 (x4 instances) -> 50 * 1024 // 256 = 200 instances/class
    config.lr = 1e8  # ours (no official value): the official ipc=1 lr_freq
    config.tm.syn_steps = 30  # official TM/hyper_params.py:2 SYN_STEPS[CIFAR10][50]
    config.tm.max_start_epoch = 40  # official TM/hyper_params.py:10 MAX_START_EPOCH[CIFAR10][50]
    config.tm.lr_lr = 1e-5  # official TM/hyper_params.py:14 LR_LR[CIFAR10][50]
    config.tm.lr_teacher = 1e-3  # official TM/hyper_params.py:18 LR_TEACHER[CIFAR10][50]
    return config
