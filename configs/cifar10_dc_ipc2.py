"""FreD + DC (gradient matching) on CIFAR-10 at a budget of 2 images per class: official setting.

    python -m fred_jax.main --config configs/cifar10_dc_ipc2.py --workdir runs/cifar10_dc_ipc2

Hyper-parameters of sdh0818/FreD ``DC/scripts/run_DC_FreD.sh``: ConvNetD3, k=32 DCT
coefficients per channel (64 instances per class), coefficient lr 1e3 with momentum 0.5 on the
unnormalised DCT (``lr_convention="torch_dct"``), 1000 iterations, method DC (no augmentation
while distilling; ``--config.dsa_strategy=color_crop_cutout_flip_scale_rotate`` gives the
official method DSA, which also evaluates with DSA for 1000 epochs, ``main_DC_FreD.py:220-221``:
add ``--config.eval.dsa=True --config.eval.epochs=1000``),
the reference loop schedule for ipc 2 (1 outer step, 1 inner epoch: FreD's ``get_loops``, as in
the official ``DM/utils.py``), network lr 0.01, real batch 256 per class (``main_DC_FreD.py``
defaults); evaluation of 5 ConvNets for 300 epochs without augmentation every 500 iterations
(``main_DC_FreD.py``: method DC has no DSA, and ``get_daparam`` gives CIFAR-10 no DC
augmentation). Paper (FreD, NeurIPS 2023, Table 2, DC, ConvNet, IPC 2 = 61.44k parameters):
45.3 +- 0.5 % with FreD, 31.4 +- 0.2 % vanilla DC.
Provenance of each value: the comment on its line ("official <file>:<line>", sdh0818/FreD at
9f35a7a); the rest is inherited from ``cifar10_dm_ipc2.py`` (same dataset, ipc, ConvNetD3,
momentum 0.5, 5 evaluation seeds, evaluation lr 0.01 and batch 256, all official there).
Pixel baseline: ``--config.parameterization=pixel`` (lr 0.1 as in the DC code).
"""

import os

from fred_jax import configuration


def get_config():
    config = configuration.from_file(os.path.join(os.path.dirname(__file__), "cifar10_dm_ipc2.py"))
    config.objective = "dc"  # official DC/main_DC_FreD.py (gradient matching, method DC)
    config.k = 32  # official DC/scripts/run_DC_FreD.sh:14 msz_per_channel -> 64 per class
    config.num_iterations = 1000  # official run_DC_FreD.sh:12 Iteration
    config.lr = 1e3  # official run_DC_FreD.sh:15 lr_freq (unnormalised-DCT units)
    config.momentum = 0.5  # official run_DC_FreD.sh:16 mom_freq
    config.lr_pixel = 0.1  # ours for the pixel baseline: lr_img of the original DC code
    config.dsa_strategy = ""  # official main_DC_FreD.py:163: method DC -> no DSA while distilling
    config.dc.batch_real = 256  # official main_DC_FreD.py:141 batch_real
    config.dc.batch_train = 256  # official main_DC_FreD.py:142 batch_train
    config.dc.lr_net = 0.01  # official main_DC_FreD.py:140 lr_net
    config.dc.outer_loop = 0  # official get_loops(ipc) (DC/utils.py:389-416): ipc 2 -> 1, 1
    config.dc.inner_loop = 0  # (0 = that reference schedule)
    config.eval.every = 500  # official main_DC_FreD.py:178 eval_it_pool step
    config.eval.dsa = False  # official main_DC_FreD.py:163,226: no DSA, get_daparam instead
    config.eval.dc_augment = ""  # official DC/utils.py:550-567 get_daparam: 'none' for CIFAR-10
    config.eval.epochs = 300  # official main_DC_FreD.py:229-232: 300 without augmentation
    return config
