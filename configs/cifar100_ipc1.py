"""FreD + TM, CIFAR-100, 1 image per class.

Paper (FreD, TM, ConvNetD3): 34.6 +- 0.4 % test accuracy (pixel TM/MTT: 24.3 +- 0.3)
(mean: official README results table; +- and baseline: see ``configs/cifar10_ipc1.py``).

    python -m fred_jax.experts --config configs/cifar100_ipc1.py   # once: the experts
    python -m fred_jax.main --config configs/cifar100_ipc1.py --workdir runs/cifar100_ipc1
    # pixel TM baseline: add --config.parameterization=pixel

k = 64 and lr = 1e8 as for CIFAR-10 ipc=1 (same image size; no official script for CIFAR-100).

Everything else (and the derivation of the coefficient-rate rescale for our orthonormal
DCT) is documented in ``configs/cifar10_ipc1.py``; this file overrides what differs.
"""

import os

from fred_jax import configuration


def get_config():
    base = os.path.join(os.path.dirname(__file__), "cifar10_ipc1.py")
    config = configuration.from_file(base)
    config.dataset = "cifar100"  # 100 classes, 32x32x3
    config.tm.syn_steps = 50  # official hyper_params.py SYN_STEPS[CIFAR100][1]
    config.tm.max_start_epoch = 15  # official hyper_params.py MAX_START_EPOCH[CIFAR100][1]
    config.tm.lr_lr = 1e-5  # official hyper_params.py LR_LR[CIFAR100][1]
    config.tm.lr_teacher = 1e-2  # official hyper_params.py LR_TEACHER[CIFAR100][1]
    config.tm.experts.dir = "experts/cifar100_ConvNetD3"  # experts of this dataset
    return config
