"""FreD + TM, CIFAR-10, 50 images per class.

Paper (FreD, TM, ConvNetD3): 75.8 +- 0.1 % (pixel TM/MTT: 71.6 +- 0.2 %) test accuracy
(mean: official README results table; +- and baseline: see ``configs/cifar10_ipc1.py``).

    python -m fred_jax.experts --config configs/cifar10_ipc50.py   # once: the experts
    python -m fred_jax.main --config configs/cifar10_ipc50.py --workdir runs/cifar10_ipc50
    # pixel TM baseline: add --config.parameterization=pixel

k for ipc > 1 is our choice (the official scripts give k only for CIFAR-10 ipc=1 and
ImageNet-A..E at ipc=1; the paper's values were not reachable offline): k = d/4 at ipc 10 and
d/2 at ipc 50, i.e. 4x and 2x as many instances as images.

Everything else (and the derivation of the coefficient-rate rescale for our orthonormal
DCT) is documented in ``configs/cifar10_ipc1.py``; this file overrides what differs.
"""

import os

from fred_jax import configuration


def get_config():
    base = os.path.join(os.path.dirname(__file__), "cifar10_ipc1.py")
    config = configuration.from_file(base)
    config.ipc = 50  # budget: 50 images per class
    config.k = 512  # kept coefficients per channel -> 50 * 1024 // 512 = 100 instances/class
    config.tm.syn_steps = 30  # official hyper_params.py SYN_STEPS[CIFAR10][50]
    config.tm.max_start_epoch = 40  # official hyper_params.py MAX_START_EPOCH[CIFAR10][50]
    config.tm.lr_lr = 1e-5  # official hyper_params.py LR_LR[CIFAR10][50]
    config.tm.lr_teacher = 1e-3  # official hyper_params.py LR_TEACHER[CIFAR10][50]
    return config
