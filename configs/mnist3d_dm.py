"""FreD + DM on 3D MNIST (16x16x16 voxels) at a budget of 1 volume per class: the official
3-D setting (FreD paper Table 4, IPC 1 = 40.96k parameters: 54.9 +- 0.5 % with FreD, 42.5 +- 0.9
% vanilla DM, 17.2 +- 0.5 % random real volumes).

    python -m fred_jax.main --config configs/mnist3d_dm.py --workdir runs/mnist3d_dm

Needs Kaggle's ``full_dataset_vectors.h5`` in ``$FRED_DATA_DIR/mnist3d/`` (fred_jax.mnist3d; not
downloadable without a Kaggle login). Hyper-parameters of sdh0818/FreD
``3D-MNIST/scripts/run_DM_FreD.sh`` and ``3D-MNIST/main_DM_FreD.py`` (cited per field below as
"official <file>:<line>", sdh0818/FreD at 9f35a7a): Conv3DNet (our ConvNet3D, width 64, first
conv padding 3), k=512 DCT coefficients per channel (8 instances per class), lr 1e6 with
momentum 0.5 on the unnormalised DCT, 1000 iterations, no augmentation anywhere (neither in
matching nor in evaluation), the volumes not normalised. IPC 10 and 50 of Table 4: override
``--config.ipc`` (the official script only has IPC 1; k stays 512). Pixel baseline at this
budget: ``--config.parameterization=pixel`` (lr_pixel 1.0 is ours: the official 3-D code has
no vanilla DM script).
"""

from fred_jax import configuration


def get_config():
    config = configuration.defaults()  # every field documented in fred_jax/configuration.py
    config.dataset = "mnist3d"  # official run_DM_FreD.sh:3 dst (utils.py:71 the Kaggle h5)
    config.ipc = 1  # official run_DM_FreD.sh:5 -> budget 1 volume per class = 40960 floats
    config.k = 512  # official run_DM_FreD.sh:14 msz_per_channel -> 4096 // 512 = 8 per class
    config.objective = "dm"  # official main_DM_FreD.py:116 --method DM (distribution matching)
    config.transform = "dct"  # official main_DM_FreD.py:25 3-D DCT-II (frequency_transforms.py)
    config.lr_convention = "torch_dct"  # official frequency_transforms.py:6 DCT norm=None
    config.mask_kind = "evr"  # official main_DM_FreD.py:70-97: top-k explained variance ratio
    config.model = "ConvNet3D"  # official run_DM_FreD.sh:4 net Conv3DNet (utils.py:107 w64 d3)
    config.num_iterations = 1000  # official run_DM_FreD.sh:12 Iteration
    config.lr = 1e6  # official run_DM_FreD.sh:15 lr_freq (unnormalised-DCT units)
    config.momentum = 0.5  # official run_DM_FreD.sh:16 mom_freq
    config.lr_pixel = 1.0  # ours for the pixel baseline: lr_img of the original DM code
    config.dsa_strategy = ""  # official main_DM_FreD.py:129 dsa_strategy commented out; the
    # matching loop (:226-241) embeds real and synthetic volumes without augmentation
    config.dm.batch_real = 256  # official main_DM_FreD.py:127 batch_real
    config.eval.every = 200  # official main_DM_FreD.py:123 eval_it (eval_it_pool, :162)
    config.eval.models = "ConvNet3D"  # official main_DM_FreD.py:165 model_eval_pool
    config.eval.num_eval = 5  # official run_DM_FreD.sh:11 num_eval
    config.eval.epochs = 500  # official main_DM_FreD.py:124 epoch_eval_train
    config.eval.lr = 0.01  # official main_DM_FreD.py:126 lr_net (utils.py:196-210: SGD
    # momentum 0.9, wd 5e-4, x0.1 after Epoch//2)
    config.eval.batch_size = 256  # official main_DM_FreD.py:128 batch_train
    config.eval.dsa = False  # official utils.py:207 epoch(..., aug=False): no augmentation
    config.eval.dc_augment = ""  # official utils.py:86 "no augmentation"
    config.seed = 0  # official main_DM_FreD.py:135 seed
    return config
