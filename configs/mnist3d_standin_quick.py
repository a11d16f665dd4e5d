"""CPU-scale FreD vs pixel on the generated 3D MNIST stand-in (NOT Table 4 data): the official
3-D settings of ``mnist3d_dm.py`` with a short schedule.

    python -m fred_jax.main --config configs/mnist3d_standin_quick.py --workdir runs/mnist3d_quick

Data: ``mnist3d_standin`` (fred_jax.mnist3d), voxelised MNIST digits in the Kaggle layout,
generated on first use from ``$FRED_DATA_DIR/mnist/`` into tfds's data dir; its accuracies say
that the 3-D pipeline works end to end offline, not what the paper measured. Budget 1 volume
per class, k=512 (8 instances per class) as official; ``baselines="pixel"`` distils the pixel
baseline at the same budget after it. Every override below is ours, chosen for speed.
"""

import os

from fred_jax import configuration


def get_config():
    config = configuration.from_file(os.path.join(os.path.dirname(__file__), "mnist3d_dm.py"))
    config.dataset = "mnist3d_standin"  # generated from the MNIST originals, labelled as such
    config.baselines = "pixel"  # then the pixel baseline at the same budget, printed beside
    config.num_iterations = 100  # official 1000
    config.dm.batch_real = 32  # real volumes per class per iteration (official 256)
    config.eval.every = 0  # evaluate once, at the end (official every 200)
    config.eval.num_eval = 2  # seeds (official 5)
    config.eval.epochs = 100  # training epochs (official 500)
    config.log_every = 10
    config.checkpoint_every = 50
    return config
