"""FreD + TM, CIFAR-10, 10 images per class.

Paper (FreD, NeurIPS 2023, Table 1, TM, ConvNetD3): 70.3 +- 0.3 % (pixel TM/MTT: 65.3 +- 0.7 %)
test accuracy, with x6.4 decoded instances per image of budget.

    python -m fred_jax.experts --config configs/cifar10_ipc10.py   # once: the experts
    python -m fred_jax.main --config configs/cifar10_ipc10.py --workdir runs/cifar10_ipc10
    # pixel TM baseline: add --config.parameterization=pixel

k from the paper: Table 1's "increment of decoded instances" x6.4 gives k = 1024 / 6.4 = 160
(64 instances per class; no official script has this setting). The coefficient rate has no
official value: ours, the CIFAR-10 ipc=1 script's 1e8.

Everything else (and the derivation of the coefficient-rate rescale for our orthonormal
DCT) is documented in ``configs/cifar10_ipc1.py``; this file overrides what differs.
"""

import os

from fred_jax import configuration


def get_config():
    base = os.path.join(os.path.dirname(__file__), "cifar10_ipc1.py")
    config = configuration.from_file(base)
    config.ipc = 10  # budget: 10 images per class
    config.k = 160  # paper Table 1 (x6.4 instances) -> 10 * 1024 // 160 = 64 instances/class
    config.lr = 1e8  # ours (no official value): the official ipc=1 lr_freq
    config.tm.syn_steps = 40  # official TM/hyper_params.py:2 SYN_STEPS[CIFAR10][10]
    config.tm.max_start_epoch = 15  # official TM/hyper_params.py:10 MAX_START_EPOCH[CIFAR10][10]
    config.tm.lr_lr = 1e-5  # official TM/hyper_params.py:14 LR_LR[CIFAR10][10]
    config.tm.lr_teacher = 1e-2  # official TM/hyper_params.py:18 LR_TEACHER[CIFAR10][10]
    return config
