"""Golden file for the evaluation protocol: the official ``evaluate_synset`` of ``TM/utils.py``
and of ``DM/utils.py`` (they differ only in where the test pass sits and what they return; the
DM DSA resamples with ``align_corners=False``, the TM one with True), ``EPOCHS`` epochs (the
loop runs ``EPOCHS + 1``; lr x0.1 and a new optimiser, so no momentum, after epoch
``EPOCHS // 2 + 1``), SGD momentum 0.9, weight decay 5e-4, batch 256, on a class-balanced set of
real CIFAR-10 training images with the official ConvNet (width 128) from
``parity_util.synthetic_state(SEED)``, once without augmentation and once with DSA, in float64
(``replay.float64``: the official ``epoch`` casts its images with ``.float()``, made float64).

Recorded (``replay.py``): each epoch's order and each ``DiffAugment`` call's op and draws.
Stored per case (``tm_none``, ``tm_dsa``, ``dm_none``, ``dm_dsa``): the train loss per epoch (from
``epoch``), the final test accuracy, the logits of the returned network on the test images and,
for the TM cases, the final parameters (flat, ``parameters()`` order, rounded to float32; the
DM ones would add 2.5 MB for the same loop).

Run under ``.venv-ref``: ``FRED_DATA_DIR=... .venv-ref/bin/python
benchmarks/parity/ref_evaluator.py``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import torch

import reference
import replay
from ref_experts import subset

SEED, PER_CLASS, TEST_PER_CLASS, EPOCHS, CLASSES, LR = 5, 10, 20, 4, 10, 0.01


def run(folder: str, dsa: bool, x_train, y_train, x_test, y_test, tmp: str) -> dict:
    utils = reference.official(folder, "utils")
    with replay.float64(utils):
        return _run(utils, folder, dsa, x_train.double(), y_train, x_test.double(), y_test, tmp)


def _run(utils, folder: str, dsa: bool, x_train, y_train, x_test, y_test, tmp: str) -> dict:
    net = utils.get_network("ConvNet", 3, CLASSES, (32, 32))
    weights = replay.load_synthetic(net, SEED)
    log = replay.Log()
    utils.TensorDataset = log.dataset_class(utils.TensorDataset)
    utils.DiffAugment = log.wrap_diffaugment(utils.DiffAugment)
    losses = []
    official_epoch = utils.epoch

    def epoch(mode, *a, **k):
        out = official_epoch(mode, *a, **k)
        if mode == "train":
            losses.append(out[0])
        return out

    utils.epoch = epoch
    test = torch.utils.data.TensorDataset(x_test, y_test)
    testloader = torch.utils.data.DataLoader(test, batch_size=128, shuffle=False, num_workers=0)
    args = argparse.Namespace(
        lr_net=LR, epoch_eval_train=EPOCHS, batch_train=256, dsa=dsa,
        dsa_strategy="color_crop_cutout_flip_scale_rotate", dsa_param=utils.ParamDiffAug(),
        dc_aug_param=None, device="cpu", dataset="CIFAR10",
        log_path=os.path.join(tmp, f"log_{folder}_{dsa}.txt"))
    torch.manual_seed(SEED)
    result = utils.evaluate_synset(0, net, x_train, y_train, testloader, args)
    net.eval()
    with torch.no_grad():
        logits = net(x_test)
    case = f"{folder.lower()}_{'dsa' if dsa else 'none'}"
    out = {f"{case}:train_loss": np.array(losses), f"{case}:acc_test": np.float64(result[2]),
           f"{case}:logits": logits,
           **{f"{case}:{k}": v for k, v in replay.layout(log, EPOCHS + 1, len(y_train),
                                                         256).items()}}
    if folder == "TM":
        out[f"{case}:params"] = torch.cat([p.detach().reshape(-1) for p in net.parameters()]
                                          ).numpy().astype(np.float32)
    return out, weights


def main() -> None:
    root = replay.parity_util.data_dir()
    if root is None:
        raise SystemExit("error: set FRED_DATA_DIR (folder with cifar10/)")
    x, y = replay.parity_util.load_real("cifar10", root)
    train_idx, test_idx = subset(y, PER_CLASS), subset(y, TEST_PER_CLASS, skip=PER_CLASS)

    def tensors(idx):
        return torch.tensor(np.moveaxis(x[idx], -1, 1).copy()), torch.tensor(y[idx])

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in ("TM", "DM"):
            for dsa in (False, True):
                case, weights = run(folder, dsa, *tensors(train_idx), *tensors(test_idx), tmp)
                out.update(case)
    reference.save_golden("evaluator", train_idx=train_idx, test_idx=test_idx,
                          settings=np.array([EPOCHS, LR, 256]),
                          **{f"w:{k}": v for k, v in weights.items()}, **out)


if __name__ == "__main__":
    main()
