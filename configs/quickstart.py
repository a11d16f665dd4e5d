"""Quickstart: FreD + DM on real MNIST, distilled and evaluated in a few minutes on a CPU.

    python -m fred_jax.main --config configs/quickstart.py --workdir runs/quickstart

Budget 1 image per class (7840 stored floats); FreD keeps k=98 DCT coefficients per image, so
each class gets 8 instances. A small ConvNet (width 32) matches and is evaluated (2 seeds,
300 epochs) to fit the time; 200 iterations instead of 20000. Measured (2-core CPU shared
with other jobs, load ~10): test accuracy 79.6 +- 0.5 %, 235 CPU-seconds in all (data,
compilation, 200 iterations, evaluation), i.e. about 2-4 minutes on a quiet 2-core machine.
The paper-scale MNIST setting is configs/mnist_dm_ipc2.py. Pixel baseline at the same budget
(1 image per class): add ``--config.parameterization=pixel``.
"""

from fred_jax import configuration


def get_config():
    config = configuration.defaults()
    config.dataset = "mnist"  # real MNIST from $FRED_DATA_DIR
    config.ipc = 1  # budget: 1 image per class
    config.k = 98  # kept DCT coefficients per image -> 784 // 98 = 8 instances per class
    config.model = "ConvNetW32"  # narrow ConvNet: ~12x fewer FLOPs than width 128
    config.num_iterations = 200  # distillation iterations (reference: 20000)
    config.dm.batch_real = 128  # real images per class per iteration (reference: 256)
    config.eval.every = 0  # evaluate once, at the end
    config.eval.models = "ConvNetW32"  # evaluate on the matching architecture
    config.eval.num_eval = 2  # seeds
    config.eval.epochs = 300  # training epochs (reference: 1000)
    config.log_every = 20  # metric rows every 20 iterations
    config.checkpoint_every = 100  # resumable every 100 iterations
    return config
