"""FreD + TM, ImageNette (10 ImageNet classes at 128x128), 1 image per class.

Paper (FreD, TM, ConvNetD5): 66.8 % test accuracy (mean from the results table of the official
README, sdh0818/FreD; the paper's +- could not be verified offline).

    python -m fred_jax.experts --config configs/imagenette_ipc1.py   # once: the experts
    python -m fred_jax.main --config configs/imagenette_ipc1.py --workdir runs/imagenette_ipc1
    # pixel TM baseline: add --config.parameterization=pixel

k, lr (with momentum 0.5, 15000 iterations, evaluation every 500) come from the official
``ImageNet-abcde/scripts/run_TM_FreD.sh``, which is written for the GLaD subsets ImageNet-A..E at
128x128 and ipc=1; the official code has no script for ImageNette & co., so it is the closest
official setting. syn_steps, max_start_epoch, lr_lr and lr_teacher are the ``ImageNet`` entries of
the official ``hyper_params.py`` (identical in ``TM/`` and ``ImageNet-abcde/``).

Data as in the official TM code: the 10 ILSVRC-2012 classes of its ``imagenette`` list (by class
id; train, and the 50 val images per class as test), squashed to 128x128 by bilinear resizing
without antialiasing (fred_jax.data; tfds ``imagenet2012``, which needs the ImageNet tars). The
fast.ai Imagenette split is ``imagenette_fastai`` (not the paper's data).

Everything else (and the derivation of the coefficient-rate rescale for our orthonormal
DCT) is documented in ``configs/cifar10_ipc1.py``; this file overrides what differs.
"""

import os

from fred_jax import configuration


def get_config():
    base = os.path.join(os.path.dirname(__file__), "cifar10_ipc1.py")
    config = configuration.from_file(base)
    config.dataset = "imagenette"  # 10 ILSVRC classes by id, 128x128x3 (official TM data)
    config.k = 2048  # official ImageNet-abcde run_TM_FreD.sh msz_per_channel: 8 instances/class
    config.lr = 1e9  # official ImageNet-abcde run_TM_FreD.sh lr_freq (rescaled for 128x128)
    config.model = "ConvNetD5"  # depth 5 for 128x128 (reference)
    config.eval.models = "ConvNetD5"  # the reference evaluates a pool (eval_mode M); ConvNetD5 here
    config.tm.syn_steps = 20  # official hyper_params.py SYN_STEPS[ImageNet][1]
    config.tm.max_start_epoch = 10  # official hyper_params.py MAX_START_EPOCH[ImageNet][1]
    config.tm.lr_lr = 1e-6  # official hyper_params.py LR_LR[ImageNet][1]
    config.tm.lr_teacher = 1e-2  # official hyper_params.py LR_TEACHER[ImageNet][1]
    config.tm.experts.dir = "experts/imagenette_ConvNetD5"  # experts of this subset
    return config
