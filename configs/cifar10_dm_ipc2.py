"""FreD + DM on CIFAR-10 at a budget of 2 images per class: the official FreD setting.

    python -m fred_jax.main --config configs/cifar10_dm_ipc2.py --workdir runs/cifar10_dm_ipc2

Hyper-parameters of sdh0818/FreD ``DM/scripts/run_DM_FreD.sh``: ConvNetD3, k=64 DCT
coefficients per channel (32 instances per class), coefficient lr 1e6 with momentum 0.5 on the
unnormalised DCT (``lr_convention="torch_dct"`` reproduces it exactly on our orthonormal
coefficients: about 244 per coefficient, 61 for the DC term), 20000 iterations, DSA, real
batch 256 per class (``main_DM_FreD.py`` default), evaluation of 5 ConvNets (script num_eval)
for 1000 epochs every 2000 iterations (``main_DM_FreD.py``). Paper (FreD, NeurIPS 2023, Table 2,
DM, ConvNet, IPC 2 = 61.44k parameters): 55.9 +- 0.4 % with FreD, 34.6 +- 0.5 % vanilla DM.
Pixel baseline at this budget: ``--config.parameterization=pixel`` (2 images per class, lr 1.0,
the ``lr_img`` default of the original DM code, VICO-UoE/DatasetCondensation ``main_DM.py``).

Provenance of every value below: "official <file>:<line>" (sdh0818/FreD at 9f35a7a), "paper", or
"ours" (no official value). Fields not set here keep ``configuration.defaults()`` and only steer
the implementation (conv_impl, dm.chunk, logging, checkpoints), not the numbers.
"""

from fred_jax import configuration


def get_config():
    config = configuration.defaults()  # every field documented in fred_jax/configuration.py
    config.dataset = "cifar10"  # official DM/scripts/run_DM_FreD.sh:3 dst
    config.ipc = 2  # official run_DM_FreD.sh:5 -> budget 2 images per class = 61440 floats
    config.k = 64  # official run_DM_FreD.sh:14 msz_per_channel -> 2 * 1024 // 64 = 32 per class
    config.objective = "dm"  # official DM/main_DM_FreD.py (distribution matching)
    config.transform = "dct"  # official main_DM_FreD.py:41 DCT-II (frequency_transforms.py)
    config.mask_kind = "evr"  # official main_DM_FreD.py:75-97: top-k explained variance ratio
    config.model = "ConvNetD3"  # official run_DM_FreD.sh:4 net
    config.num_iterations = 20000  # official run_DM_FreD.sh:12 Iteration
    config.lr = 1e6  # official run_DM_FreD.sh:15 lr_freq (unnormalised-DCT units, lr_convention)
    config.momentum = 0.5  # official run_DM_FreD.sh:16 mom_freq
    config.lr_pixel = 1.0  # ours for the pixel baseline: lr_img of the original DM code
    config.dsa_strategy = "color_crop_cutout_flip_scale_rotate"  # official main_DM_FreD.py:143
    config.dm.batch_real = 256  # official main_DM_FreD.py:141 batch_real
    config.eval.every = 2000  # official main_DM_FreD.py:178 eval_it_pool step
    config.eval.models = "ConvNetD3"  # official run_DM_FreD.sh:7 eval_mode S: the net itself
    config.eval.num_eval = 5  # official run_DM_FreD.sh:11 num_eval
    config.eval.epochs = 1000  # official main_DM_FreD.py:138 epoch_eval_train
    config.eval.lr = 0.01  # official main_DM_FreD.py:140 lr_net (evaluate_synset's rate)
    config.eval.batch_size = 256  # official main_DM_FreD.py:142 batch_train
    config.eval.dsa = True  # official: evaluate_synset trains with DSA when DSA is on (:164)
    return config
