"""Golden file for the expert trajectories: the official ``TM/buffer.py`` ``main`` itself (its
epoch loop: ``utils.epoch`` with plain SGD lr 0.01, no momentum, no weight decay, DSA per image,
batch 256, the parameters saved after every epoch), one expert of ``EPOCHS`` epochs of the
official ConvNet (width 128) on a fixed class-balanced subset of the real CIFAR-10 training set
(``$FRED_DATA_DIR``, normalised as ``get_dataset``), in float64 (``replay.float64``: the
official ``epoch`` casts its images with ``.float()``, which is made to mean float64).

Replaced: the data loading (``get_dataset``: the subset, no torchvision), the initial weights
(``get_network`` returns the ConvNet with ``parity_util.synthetic_state(SEED)``), and the copy on
``Tensor.cpu`` (as on a GPU; see ``ref_buffer.py``). Recorded (``replay.py``): the order of every
training epoch and every ``DiffAugment`` call's op and draws. Stored: the subset's indices, the
recorded choices, and the official saved parameters of epochs 1.. as flat vectors in
``parameters()`` order (``epoch<e>``, rounded to float32 as our store keeps them), with the
weights' names/shapes/kinds and seed.

Run under ``.venv-ref``: ``FRED_DATA_DIR=... .venv-ref/bin/python
benchmarks/parity/ref_experts.py``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import torch

import reference
import replay
from ref_buffer import copying_cpu

SEED, PER_CLASS, TEST_PER_CLASS, EPOCHS, CLASSES = 11, 30, 4, 2, 10


def subset(y: np.ndarray, per_class: int, skip: int = 0) -> np.ndarray:
    """The first ``per_class`` indices of each class after ``skip`` of them (sorted)."""
    return np.sort(np.concatenate([np.flatnonzero(y == c)[skip:skip + per_class]
                                   for c in range(CLASSES)]))


def main() -> None:
    utils, buffer = reference.official("TM", "utils", "buffer")
    root = replay.parity_util.data_dir()
    if root is None:
        raise SystemExit("error: set FRED_DATA_DIR (folder with cifar10/)")
    x, y = replay.parity_util.load_real("cifar10", root)
    train_idx, test_idx = subset(y, PER_CLASS), subset(y, TEST_PER_CLASS, skip=PER_CLASS)

    def tensors(idx):
        return (torch.tensor(np.moveaxis(x[idx], -1, 1).copy()), torch.tensor(y[idx]))

    train, test = utils.TensorDataset(*tensors(train_idx)), utils.TensorDataset(*tensors(test_idx))
    testloader = torch.utils.data.DataLoader(test, batch_size=128, shuffle=False, num_workers=0)
    class_map = {c: c for c in range(CLASSES)}
    buffer.get_dataset = lambda *a, **k: (3, (32, 32), CLASSES, [str(c) for c in range(CLASSES)],
                                          None, None, train, test, testloader, None, class_map,
                                          class_map)
    official_get_network = buffer.get_network
    weights: dict = {}

    def get_network(*a, **k):
        net = official_get_network(*a, **k)
        weights.update(replay.load_synthetic(net, SEED))
        return net

    buffer.get_network = get_network
    log = replay.Log()
    buffer.TensorDataset = log.dataset_class(utils.TensorDataset)
    utils.DiffAugment = log.wrap_diffaugment(utils.DiffAugment)
    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(
            dataset="CIFAR10", subset="imagenette", model="ConvNet", num_experts=1,
            lr_teacher=0.01, batch_train=256, batch_real=256, batch_test=128, dsa="True",
            dsa_strategy="color_crop_cutout_flip_scale_rotate", data_path=tmp, buffer_path=tmp,
            train_epochs=EPOCHS, zca=False, decay=False, mom=0.0, l2=0.0, save_interval=1,
            res="", seed=SEED)
        utils.set_seed(SEED)
        with copying_cpu(), replay.float64(utils):
            buffer.main(args)
        (expert,) = torch.load(os.path.join(tmp, "CIFAR10_NO_ZCA", "ConvNet",
                                            "replay_buffer_0.pt"))
    flat = [torch.cat([p.reshape(-1) for p in ts]).numpy().astype(np.float32) for ts in expert]
    initial = np.concatenate([np.ravel(v) for v in replay.parity_util.synthetic_state(
        [str(n) for n in weights["names"]], weights["shapes"],
        [str(k) for k in weights["kinds"]], SEED).values()])
    assert np.array_equal(flat[0], initial), "epoch 0 is not the injected initialisation"
    reference.save_golden(
        "experts", train_idx=train_idx, settings=np.array([EPOCHS, 256, 0.01]),
        **{f"w:{k}": v for k, v in weights.items()},
        **{f"epoch{e}": flat[e] for e in range(1, EPOCHS + 1)},
        **replay.layout(log, EPOCHS, len(train_idx), 256))


if __name__ == "__main__":
    main()
