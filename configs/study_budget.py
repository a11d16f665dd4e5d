"""Figure 9 study (FreD, NeurIPS 2023, Section 4.3): budget allocation, k against |F|.

    python -m fred_jax.sweep --config configs/study_budget.py --workdir runs/study_budget_ipc1 \\
        --sweep k=16,32,64,128,256,512 --baseline parameterization=pixel
    # the larger budgets of the figure: --set ipc=10 and --set ipc=50 (one --workdir each)

Paper: FreD with DM on CIFAR-10, accuracy against the kept dimensions per channel k at several
budgets (IPC=1, #Params=30.72k, ... IPC=50, #Params=1536k), vanilla DM as a dashed line. Each
class stores ``ipc * 1024 // k`` instances, so small k means many coarse instances and large k
few detailed ones: small k wins at IPC=1, large k at IPC=50. The k values of the figure are not
in our copy of the paper; the powers of two above are ours (k=1024 would be one full DCT per
image). Every other value is the official DM script's (``cifar10_dm_ipc2.py``). The sweep draws
accuracy against k (log scale) with the pixel baseline dashed. CPU-scale version on MNIST:
README, "Studies (Figures 8a, 8b, 9)".
"""

import os

from fred_jax import configuration


def get_config():
    config = configuration.from_file(os.path.join(os.path.dirname(__file__), "cifar10_dm_ipc2.py"))
    config.ipc = 1  # paper Figure 9: IPC=1 (#Params=30.72k); --set ipc=10 / ipc=50 for the others
    config.k = 64  # official run_DM_FreD.sh:14 msz_per_channel; the sweep replaces it
    config.objective = "dm"  # paper Figure 9 caption: "FreD with DM"
    config.lr_pixel = 1.0  # ours for the pixel baseline: lr_img of the original DM code
    return config
