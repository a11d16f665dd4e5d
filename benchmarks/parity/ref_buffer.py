"""Official expert buffers for the reader test: runs the official ``TM/buffer.py`` ``main`` (its
own argument defaults, ``ConvNetW32`` so the files stay small) on Gaussian CIFAR-shaped images,
2 experts x ``EPOCHS`` epochs, one expert per file (``save_interval=1``), and keeps what it
writes: ``tests/golden/official_buffer/CIFAR10_NO_ZCA/ConvNetW32/replay_buffer_{0,1}.pt``.
``tests/golden/buffer.npz`` holds a probe batch ``x`` (NCHW) and the official network's logits
on it at every saved timestamp of every expert (``logits [experts, epochs + 1, n, classes]``),
computed from the saved tensors, so the test checks our conversion through the network itself.

Only the data loading is replaced (``get_dataset``: no torchvision here). On a machine without a
GPU the official ``p.detach().cpu()`` returns the parameter itself (no copy), so every timestamp
would be the final network; this script makes ``Tensor.cpu`` copy, as it does from a GPU, where
the official buffers are made.

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_buffer.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile

import numpy as np
import torch

import reference

SEED, NUM_TRAIN, NUM_TEST, EPOCHS, EXPERTS, PROBE = 0, 300, 64, 2, 2, 4
MODEL, CLASSES, SIDE = "ConvNetW32", 10, 32
FOLDER = os.path.join(reference.GOLDEN, "official_buffer")


def fake_dataset(utils, rng):
    """``get_dataset``'s return values for Gaussian 3x32x32 images with 10 balanced labels."""
    def make(n):
        x = torch.tensor(rng.standard_normal((n, 3, SIDE, SIDE)), dtype=torch.float)
        y = torch.tensor(np.arange(n) % CLASSES)
        return utils.TensorDataset(x, y)

    train, test = make(NUM_TRAIN), make(NUM_TEST)
    testloader = torch.utils.data.DataLoader(test, batch_size=128, shuffle=False, num_workers=0)
    class_map = {c: c for c in range(CLASSES)}
    return (3, (SIDE, SIDE), CLASSES, [str(c) for c in range(CLASSES)], [0.0] * 3, [1.0] * 3,
            train, test, testloader, None, class_map, class_map)


@contextlib.contextmanager
def copying_cpu():
    """``Tensor.cpu`` returns a copy, as it does for a tensor on a GPU."""
    original = torch.Tensor.cpu
    torch.Tensor.cpu = lambda self, *a, **k: original(self, *a, **k).clone()
    try:
        yield
    finally:
        torch.Tensor.cpu = original


def main() -> None:
    utils, networks, buffer = reference.official("TM", "utils", "networks", "buffer")
    rng = np.random.default_rng(SEED)
    data = fake_dataset(utils, rng)
    buffer.get_dataset = lambda *a, **k: data
    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(
            dataset="CIFAR10", subset="imagenette", model=MODEL, num_experts=EXPERTS,
            lr_teacher=0.01, batch_train=256, batch_real=256, batch_test=128, dsa="True",
            dsa_strategy="color_crop_cutout_flip_scale_rotate", data_path=tmp, buffer_path=tmp,
            train_epochs=EPOCHS, zca=False, decay=False, mom=0.0, l2=0.0, save_interval=1,
            res="", seed=SEED)
        utils.set_seed(SEED)
        with copying_cpu():
            buffer.main(args)
        src = os.path.join(tmp, "CIFAR10_NO_ZCA", MODEL)
        dst = os.path.join(FOLDER, "CIFAR10_NO_ZCA", MODEL)
        shutil.rmtree(FOLDER, ignore_errors=True)
        os.makedirs(dst)
        names = sorted(f for f in os.listdir(src) if f.endswith(".pt"))
        for name in names:
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))
        print(f"official buffer files: {names}")

    x = torch.tensor(rng.standard_normal((PROBE, 3, SIDE, SIDE)), dtype=torch.float)
    net = utils.get_network(MODEL, 3, CLASSES, (SIDE, SIDE))
    logits = []
    for n in range(EXPERTS):
        for expert in torch.load(os.path.join(dst, f"replay_buffer_{n}.pt")):
            per_epoch = []
            for timestamp in expert:
                with torch.no_grad():
                    for p, v in zip(net.parameters(), timestamp):
                        p.copy_(v)
                    per_epoch.append(net(x).numpy())
            logits.append(np.stack(per_epoch))
    reference.save_golden("buffer", x=x, logits=np.stack(logits),
                          settings=np.array([EXPERTS, EPOCHS, NUM_TRAIN]))


if __name__ == "__main__":
    main()
