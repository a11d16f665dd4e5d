"""FreD + DM on CIFAR-10 at a budget of 11 images per class.

    python -m fred_jax.main --config configs/cifar10_dm_ipc11.py --workdir runs/cifar10_dm_ipc11

As ``cifar10_dm_ipc2.py`` (official DM script values) with ipc=11 (176 instances per class at
k=64). The official repository ships only the ipc=2 script and the paper gives no k for this
setting, so k=64 and lr 1e6 are ours (kept from ipc 2; the official DM ``get_loops`` and TM
``hyper_params.py`` do list ipc 11). Paper (FreD, NeurIPS 2023, Table 2, DM, ConvNet, IPC 11 =
337.92k parameters): 61.3 +- 0.8 % with FreD, 50.4 +- 0.4 % vanilla DM.
"""

import os

from fred_jax import configuration


def get_config():
    config = configuration.from_file(os.path.join(os.path.dirname(__file__), "cifar10_dm_ipc2.py"))
    config.ipc = 11  # paper Table 2 budget (HaBa's ipc 11) -> 176 instances per class
    config.k = 64  # ours (no official value at ipc 11): the official ipc 2 value
    return config
