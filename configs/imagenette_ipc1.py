"""FreD + TM, ImageNette (10 ImageNet classes at 128x128), 1 image per class.

Paper (FreD, TM, ConvNetD5): 66.8 +- 0.4 % test accuracy.

    python -m fred_jax.experts --config configs/imagenette_ipc1.py   # once: the experts
    python -m fred_jax.main --config configs/imagenette_ipc1.py --workdir runs/imagenette_ipc1
    # pixel TM baseline: add --config.parameterization=pixel

From the official ImageNet-abcde/ code (script and hyper_params.py).

Everything else (and the derivation of the coefficient-rate rescale for our orthonormal
DCT) is documented in ``configs/cifar10_ipc1.py``; this file overrides what differs.
"""

import os

from fred_jax import configuration


def get_config():
    base = os.path.join(os.path.dirname(__file__), "cifar10_ipc1.py")
    config = configuration.from_file(base)
    config.dataset = "imagenette"  # 10 classes, 128x128x3 (tfds; needs download)
    config.k = 2048  # msz_per_channel of ImageNet-abcde/scripts/run_TM_FreD.sh: 8 instances/class
    config.lr = 1e9  # lr_freq of the same script (rescaled for 128x128)
    config.model = "ConvNetD5"  # depth 5 for 128x128 (reference)
    config.eval.models = "ConvNetD5"  # the reference evaluates a pool (eval_mode M); ConvNetD5 here
    config.tm.syn_steps = 20  # SYN_STEPS[ImageNet][1]
    config.tm.max_start_epoch = 10  # MAX_START_EPOCH[ImageNet][1]
    config.tm.lr_lr = 1e-6  # LR_LR[ImageNet][1]
    config.tm.lr_teacher = 1e-2  # LR_TEACHER[ImageNet][1]
    config.tm.experts.dir = "experts/imagenette_ConvNetD5"  # experts of this subset
    return config
