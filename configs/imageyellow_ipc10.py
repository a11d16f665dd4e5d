"""FreD + TM, imageyellow (ImageNet subset, 128x128), 10 image(s) per class.

Paper (FreD, TM, ConvNetD5): 69.2 % test accuracy (mean from the results table of the official
README, sdh0818/FreD; the paper's +- could not be verified offline).

    python -m fred_jax.experts --config configs/imageyellow_ipc10.py   # once: the experts
    python -m fred_jax.main --config configs/imageyellow_ipc10.py --workdir runs/imageyellow_ipc10
    # pixel TM baseline: add --config.parameterization=pixel

Everything else (and the derivation of the coefficient-rate rescale for our orthonormal
DCT) is documented in ``configs/imagenette_ipc10.py``; this file overrides what differs.
"""

import os

from fred_jax import configuration


def get_config():
    base = os.path.join(os.path.dirname(__file__), "imagenette_ipc10.py")
    config = configuration.from_file(base)
    config.dataset = "imageyellow"  # 10 ILSVRC classes by id, 128x128x3 (official TM data)
    config.tm.experts.dir = "experts/imageyellow_ConvNetD5"  # experts of this subset
    return config
