"""Runs inside ``.venv-ref`` (torch): the official FreD DM loop and the official evaluator, for
the end-to-end agreement check of ``benchmarks/parity/e2e_dm.py``.

    .venv-ref/bin/python benchmarks/parity/e2e_dm_ref.py distill --out /tmp/e2e/ref --updates 200
    .venv-ref/bin/python benchmarks/parity/e2e_dm_ref.py evaluate --npz set.npz --out res.json

``distill`` calls the unmodified ``DM/main_DM_FreD.main()`` with the arguments of
``DM/scripts/run_DM_FreD.sh`` (ConvNet, k=64, lr_freq 1e6, mom_freq 0.5, DSA, batch_real 256).
Only its ``get_dataset`` is replaced (torchvision cannot download here: CIFAR-10 is read from
``$FRED_DATA_DIR`` with NumPy and normalised like ``ToTensor + Normalize``), with
``num_eval 0`` so that its evaluation at iteration 0 trains nothing. The official loop runs
``for it in range(Iteration + 1)`` and updates at every ``it``, so ``--updates N`` passes
``--Iteration N-1``. Writes ``synset.npz``: ``images`` (NHWC float32, normalised), ``labels``,
``loss_iters`` / ``loss`` (the per-class mean loss the official log prints every 10 iterations),
``mask`` and ``seconds``.

``evaluate`` trains ``--seeds`` fresh official ConvNets on a set with the official
``evaluate_synset`` (DSA, SGD lr 0.01, batch 256, ``--epochs``), seeding torch/NumPy with
``set_seed(seed)`` before each network, and writes the test accuracies as JSON.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)  # official get_dataset, CIFAR10
STD = (0.2023, 0.1994, 0.2010)


def data_dir() -> str:
    path = os.environ.get("FRED_DATA_DIR", "/work/shared/data")
    if not os.path.isdir(os.path.join(path, "cifar10")):
        raise SystemExit(f"error: no cifar10/ under {path}: set FRED_DATA_DIR")
    return os.path.join(path, "cifar10")


def load_cifar10(split: str):
    """Normalised NCHW float32 torch images and int64 labels, as ToTensor + Normalize give."""
    import torch

    folder = data_dir()
    with lzma.open(os.path.join(folder, f"x_{split}.npy.xz")) as f:
        x = np.load(f)
    y = np.load(os.path.join(folder, "cifar10_labels.npz"))[f"y_{split}"].astype(np.int64)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0)
    t = (t - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return t.contiguous(), torch.from_numpy(y)


class LabelledImages:
    """``dst[i] -> (image [3, 32, 32], int label)``, what ``datasets.CIFAR10`` yields."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels.tolist()

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __len__(self):
        return len(self.labels)


def get_dataset(dataset, data_path, batch_size=1, subset="imagenette", args=None):
    """Stand-in for the official ``get_dataset`` (CIFAR10 branch), same return values."""
    import torch

    if dataset != "CIFAR10":
        raise SystemExit(f"error: this harness loads CIFAR10 only, got {dataset}")
    utils = sys.modules["utils"]
    dst_train = LabelledImages(*load_cifar10("train"))
    dst_test = utils.TensorDataset(*load_cifar10("test"))
    testloader = torch.utils.data.DataLoader(dst_test, batch_size=256, shuffle=False,
                                             num_workers=0)
    class_names = [str(c) for c in range(10)]
    return 3, (32, 32), 10, class_names, list(MEAN), list(STD), dst_train, dst_test, testloader


def distill(out: str, updates: int, seed: int) -> None:
    import torch

    if updates < 1:
        raise SystemExit("error: --updates must be >= 1")
    dm = reference.official("DM", "main_DM_FreD")
    dm.get_dataset = get_dataset
    work = tempfile.mkdtemp(prefix="ref_dm_", dir=out)
    flag = "e2e"
    sys.argv = ["main_DM_FreD.py", "--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", "1",
                "--sh_file", "run_DM_FreD.sh", "--eval_mode", "S",
                "--data_path", os.path.join(work, "data"), "--save_path", work,
                "--num_eval", "0", "--Iteration", str(updates - 1), "--batch_syn", "0",
                "--msz_per_channel", "64", "--lr_freq", "1e6", "--mom_freq", "0.5",
                "--seed", str(seed), "--FLAG", flag]
    cwd = os.getcwd()
    os.chdir(os.path.join(reference.reference_root(), "DM"))  # it copies ./scripts/<sh_file>
    start = time.perf_counter()
    try:
        dm.main()
    finally:
        os.chdir(cwd)
    seconds = time.perf_counter() - start
    run = os.path.join(work, flag)
    res = torch.load(os.path.join(run, "res_DM_CIFAR10_ConvNet_1ipc.pt"), weights_only=False)
    images, labels = res["data"][-1][0]
    with open(os.path.join(run, "log.txt")) as f:
        rows = re.findall(r"iter = (\d+), loss = ([0-9.eE+-]+)", f.read())
    mask = torch.load(os.path.join(run, "mask.pt"), weights_only=False)
    path = os.path.join(out, "synset.npz")
    np.savez(path, images=reference.to_np(images).transpose(0, 2, 3, 1).astype(np.float32),
             labels=reference.to_np(labels).astype(np.int32),
             loss_iters=np.array([int(i) for i, _ in rows]),
             loss=np.array([float(v) for _, v in rows]),
             mask=reference.to_np(mask).transpose(0, 2, 3, 1).astype(np.float32),
             seconds=np.float64(seconds), updates=np.int64(updates))
    print(f"wrote {path}: {images.shape[0]} images, {updates} updates in {seconds:.0f} s")


def evaluate(npz: str, out: str, seeds: int, epochs: int, lr: float) -> None:
    import torch

    utils = reference.official("DM", "utils")
    d = np.load(npz)
    images = torch.from_numpy(np.ascontiguousarray(d["images"].transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(d["labels"].astype(np.int64))
    dst_test = utils.TensorDataset(*load_cifar10("test"))
    testloader = torch.utils.data.DataLoader(dst_test, batch_size=256, shuffle=False,
                                             num_workers=0)
    log_dir = tempfile.mkdtemp(prefix="ref_eval_", dir=os.path.dirname(os.path.abspath(out)))
    args = argparse.Namespace(device="cpu", lr_net=lr, epoch_eval_train=epochs, batch_train=256,
                              dsa=True, dsa_strategy="color_crop_cutout_flip_scale_rotate",
                              dsa_param=utils.ParamDiffAug(), dc_aug_param=None,
                              log_path=os.path.join(log_dir, "log.txt"))
    accs, times = [], []
    for s in range(seeds):
        utils.set_seed(s)
        net = utils.get_network("ConvNet", 3, 10, (32, 32))
        t = time.perf_counter()
        _, _, acc = utils.evaluate_synset(s, net, images.clone(), labels.clone(), testloader,
                                          args)
        times.append(time.perf_counter() - t)
        accs.append(100.0 * float(acc))
        print(f"seed {s}: test accuracy {accs[-1]:.2f} % ({times[-1]:.0f} s)", flush=True)
    result = {"evaluator": "official evaluate_synset", "npz": npz, "accs": accs,
              "mean": float(np.mean(accs)), "std": float(np.std(accs)), "seeds": seeds,
              "epochs": epochs, "lr": lr, "seconds": float(sum(times)),
              "seconds_per_seed": times}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"official evaluator: {result['mean']:.2f} +- {result['std']:.2f} % -> {out}")


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("distill", help="official DM loop -> <out>/synset.npz")
    d.add_argument("--out", required=True)
    d.add_argument("--updates", type=int, default=200, help="synthetic-set updates")
    d.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate", help="official evaluate_synset on an .npz set")
    e.add_argument("--npz", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--seeds", type=int, default=3)
    e.add_argument("--epochs", type=int, default=300)
    e.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.cmd == "distill":
        os.makedirs(a.out, exist_ok=True)
        distill(a.out, a.updates, a.seed)
    else:
        evaluate(a.npz, a.out, a.seeds, a.epochs, a.lr)


if __name__ == "__main__":
    main()
