"""FreD + TM, CIFAR-10, 10 images per class.

Paper (FreD, TM, ConvNetD3): 70.3 +- 0.3 % (pixel TM/MTT: 65.3 +- 0.7 %) test accuracy
(mean: official README results table; +- and baseline: see ``configs/cifar10_ipc1.py``).

    python -m fred_jax.experts --config configs/cifar10_ipc10.py   # once: the experts
    python -m fred_jax.main --config configs/cifar10_ipc10.py --workdir runs/cifar10_ipc10
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
    config.ipc = 10  # budget: 10 images per class
    config.k = 256  # kept coefficients per channel -> 10 * 1024 // 256 = 40 instances/class
    config.tm.syn_steps = 40  # official hyper_params.py SYN_STEPS[CIFAR10][10]
    config.tm.max_start_epoch = 15  # official hyper_params.py MAX_START_EPOCH[CIFAR10][10]
    config.tm.lr_lr = 1e-5  # official hyper_params.py LR_LR[CIFAR10][10]
    config.tm.lr_teacher = 1e-2  # official hyper_params.py LR_TEACHER[CIFAR10][10]
    return config
