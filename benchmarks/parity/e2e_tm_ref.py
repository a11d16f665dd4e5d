"""Runs inside ``.venv-ref`` (torch): the official expert training, TM loop and evaluator, for
the end-to-end TM agreement check of ``benchmarks/parity/e2e_tm.py``.

    .venv-ref/bin/python benchmarks/parity/e2e_tm_ref.py buffer --out /tmp/e2e_tm/buffers
    .venv-ref/bin/python benchmarks/parity/e2e_tm_ref.py distill --buffers /tmp/e2e_tm/buffers \\
        --out /tmp/e2e_tm/ref --iterations 100
    .venv-ref/bin/python benchmarks/parity/e2e_tm_ref.py evaluate --npz set.npz --out res.json

``buffer`` calls the unmodified ``TM/buffer.py`` ``main(args)`` (plain SGD lr 0.01, no momentum,
no weight decay, DSA, batch 256) on a fixed class-balanced subset of CIFAR-10 (the first
``--per_class`` training images of each class, in file order); all its experts go into one
``replay_buffer_0.pt`` (``save_interval`` = ``--experts``). Its per-epoch test accuracies (on the
first ``--test_per_class`` test images of each class; 0: the whole test set, for every
subcommand) are parsed from its log into ``test_acc.json``. On a CPU-only machine
the official ``p.detach().cpu()`` returns the parameter itself, so every saved timestamp would
be the final network; ``Tensor.cpu`` is made to copy, as it does from a GPU.

``distill`` calls the unmodified ``TM/main_TM_FreD.main(args)`` with the arguments its
``__main__`` block would build (``--load_all`` off: it walks the shuffled buffer in order),
``num_eval 0`` and ``eval_it`` past the last iteration, so it evaluates nothing. Only
``get_dataset`` is replaced (the same subset). Recorded from outside, without changing the
loop: the TM loss of every iteration (``torch.nn.functional.mse_loss`` wrapped: the loss is
``||student - target||^2 / ||start - target||^2``, the two sums it computes), the final
coefficients through the ``SynSet`` instance, and ``syn_lr`` through its SGD optimiser.
``torch.eye`` returns one cached identity (``SynSet.init_mask`` builds a fresh 1024 x 1024
identity for every frequency of every class and only reads it: same masks, minutes less). The loop
updates at ``it = 0 .. Iteration``, so ``--iterations N`` passes ``--Iteration N-1``. Writes
``synset.npz``: ``images`` (NHWC, normalised), ``labels``, ``syn_lr``, ``loss``, ``mask``,
``seconds``.

``evaluate``: the official ``TM/utils.evaluate_synset`` (lr = the set's learned ``syn_lr``
unless ``--lr``), ``--seeds`` fresh networks seeded with ``set_seed(seed)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_dm_ref  # noqa: E402  (CIFAR-10 loading, normalised as the official get_dataset)
import reference  # noqa: E402

MODEL = "ConvNetW32"
STRATEGY = "color_crop_cutout_flip_scale_rotate"


def subset(split: str, per_class: int):
    """The first ``per_class`` images of each CIFAR-10 class of ``split`` (0: all): (NCHW
    tensor, labels)."""
    import torch

    x, y = e2e_dm_ref.load_cifar10(split)
    if not per_class:
        return x, y
    idx = np.concatenate([np.flatnonzero(y.numpy() == c)[:per_class] for c in range(10)])
    return x[torch.from_numpy(idx)].contiguous(), y[torch.from_numpy(idx)].contiguous()


def testloader_for(test_per_class: int):
    import torch

    utils = sys.modules["utils"]
    dst_test = utils.TensorDataset(*subset("test", test_per_class))
    return dst_test, torch.utils.data.DataLoader(dst_test, batch_size=256, shuffle=False,
                                                 num_workers=0)


def get_dataset_for(per_class: int, test_per_class: int):
    """A stand-in for the official TM ``get_dataset`` (CIFAR10 branch) on the subsets."""
    def get_dataset(dataset, data_path, batch_size=1, subset_name="imagenette", args=None):
        if dataset != "CIFAR10":
            raise SystemExit(f"error: this harness loads CIFAR10 only, got {dataset}")
        dst_train = e2e_dm_ref.LabelledImages(*subset("train", per_class))
        dst_test, testloader = testloader_for(test_per_class)
        names = [str(c) for c in range(10)]
        class_map = {c: c for c in range(10)}
        return (3, (32, 32), 10, names, list(e2e_dm_ref.MEAN), list(e2e_dm_ref.STD), dst_train,
                dst_test, testloader, None, class_map, class_map)
    return get_dataset


@contextlib.contextmanager
def copying_cpu():
    """``Tensor.cpu`` returns a copy, as it does for a tensor on a GPU."""
    import torch

    original = torch.Tensor.cpu
    torch.Tensor.cpu = lambda self, *a, **k: original(self, *a, **k).clone()
    try:
        yield
    finally:
        torch.Tensor.cpu = original


def buffer(out: str, per_class: int, test_per_class: int, experts: int, epochs: int,
           seed: int) -> None:
    utils, buf = reference.official("TM", "utils", "buffer")
    buf.get_dataset = get_dataset_for(per_class, test_per_class)
    args = argparse.Namespace(
        dataset="CIFAR10", subset="imagenette", model=MODEL, num_experts=experts,
        lr_teacher=0.01, batch_train=256, batch_real=256, batch_test=128, dsa="True",
        dsa_strategy=STRATEGY, data_path=out, buffer_path=out, train_epochs=epochs, zca=False,
        decay=False, mom=0.0, l2=0.0, save_interval=experts, res="", seed=seed)
    utils.set_seed(seed)  # as its __main__ block
    start = time.perf_counter()
    with copying_cpu():
        buf.main(args)
    seconds = time.perf_counter() - start
    with open(os.path.join(out, f"log#CIFAR10_NO_ZCA_{MODEL}.txt")) as f:
        rows = re.findall(r"Itr: (\d+)\tEpoch: (\d+)\tTrain Acc: [0-9.]+\tTest Acc: ([0-9.]+)",
                          f.read())
    acc = [[None] * epochs for _ in range(experts)]
    for i, e, a in rows:
        acc[int(i)][int(e)] = 100.0 * float(a)
    with open(os.path.join(out, "test_acc.json"), "w") as f:
        json.dump({"test_acc": acc, "seconds": seconds, "per_class": per_class,
                   "experts": experts, "epochs": epochs, "seed": seed}, f, indent=1)
    print(f"official buffer: {experts} experts x {epochs} epochs in {seconds:.0f} s; "
          f"last-epoch test accuracy {[a[-1] for a in acc]}")


def distill(buffers: str, out: str, iterations: int, per_class: int, test_per_class: int,
            syn_steps: int, k: int, seed: int) -> None:
    import torch

    if iterations < 1:
        raise SystemExit("error: --iterations must be >= 1")
    tm = reference.official("TM", "main_TM_FreD")
    tm.get_dataset = get_dataset_for(per_class, test_per_class)
    utils = sys.modules["utils"]
    work = tempfile.mkdtemp(prefix="ref_tm_", dir=out)
    args = argparse.Namespace(
        dataset="CIFAR10", subset="imagenette", model=MODEL, ipc=1, eval_mode="S", num_eval=0,
        eval_it=iterations + 1, epoch_eval_train=0, Iteration=iterations - 1, lr_init=0.01,
        batch_real=256, batch_train=256, dsa="True", dsa_strategy=STRATEGY,
        data_path=os.path.join(work, "data"), buffer_path=buffers, zca=False, load_all=False,
        no_aug=False, max_files=None, max_experts=None, force_save=False, seed=seed,
        sh_file="run_TM_FreD.sh", FLAG="e2e", save_path=work, syn_steps=syn_steps,
        expert_epochs=2, max_start_epoch=5, lr_lr=1e-7, lr_teacher=1e-2, batch_syn=0,
        msz_per_channel=k, lr_freq=1e8, mom_freq=0.5)
    # what main_TM_FreD's __main__ block does before main(args)
    utils.set_seed(args.seed)
    args = tm.load_default(args)
    args.save_path = os.path.join(work, args.FLAG)
    os.makedirs(args.save_path, exist_ok=True)
    args.log_path = os.path.join(args.save_path, "log.txt")

    sums, synsets, optimisers = [], [], []
    mse = torch.nn.functional.mse_loss
    sgd = torch.optim.SGD

    def recording_mse(a, b, *rest, **kw):
        value = mse(a, b, *rest, **kw)
        sums.append(float(value.detach()))
        return value

    class RecordingSGD(sgd):
        def __init__(self, params, *a, **kw):
            super().__init__(params, *a, **kw)
            optimisers.append(self)

    class RecordingSynSet(tm.SynSet):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            synsets.append(self)

    eye, eyes = torch.eye, {}

    def cached_eye(n, *a, **kw):  # init_mask builds eye(1024) for each of 1024 x 10 rows;
        if n < 256 or a or set(kw) - {"device"}:  # it only reads it: one copy, same values
            return eye(n, *a, **kw)
        return eyes.setdefault(n, eye(n))

    syn_cls = tm.SynSet
    torch.nn.functional.mse_loss, torch.optim.SGD, tm.SynSet, torch.eye = \
        recording_mse, RecordingSGD, RecordingSynSet, cached_eye
    cwd = os.getcwd()
    start = time.perf_counter()
    try:
        tm.main(args)
    finally:
        torch.nn.functional.mse_loss, torch.optim.SGD, tm.SynSet, torch.eye = \
            mse, sgd, syn_cls, eye
        os.chdir(cwd)
    seconds = time.perf_counter() - start
    losses = np.array(sums[0::2]) / np.array(sums[1::2])  # student-target / start-target
    syn_lr = float(optimisers[-1].param_groups[0]["params"][0].detach())
    images, labels = synsets[0].get(need_copy=True)
    path = os.path.join(out, "synset.npz")
    np.savez(path, images=reference.to_np(images).transpose(0, 2, 3, 1).astype(np.float32),
             labels=reference.to_np(labels).astype(np.int32), syn_lr=np.float64(syn_lr),
             loss=losses, mask=reference.to_np(synsets[0].mask).transpose(0, 2, 3, 1),
             seconds=np.float64(seconds), iterations=np.int64(iterations))
    print(f"wrote {path}: {images.shape[0]} images, {iterations} iterations in {seconds:.0f} s, "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, syn_lr {syn_lr:.5f}")


def evaluate(npz: str, out: str, seeds: int, epochs: int, lr: float | None,
             test_per_class: int) -> None:
    import torch

    utils = reference.official("TM", "utils")
    d = np.load(npz)
    images = torch.from_numpy(np.ascontiguousarray(d["images"].transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(d["labels"].astype(np.int64))
    lr = float(d["syn_lr"]) if lr is None else lr
    _, testloader = testloader_for(test_per_class)
    log_dir = tempfile.mkdtemp(prefix="ref_eval_", dir=os.path.dirname(os.path.abspath(out)))
    args = argparse.Namespace(device="cpu", lr_net=lr, epoch_eval_train=epochs, batch_train=256,
                              dsa=True, dsa_strategy=STRATEGY, dsa_param=utils.ParamDiffAug(),
                              dc_aug_param=None, dataset="CIFAR10",
                              log_path=os.path.join(log_dir, "log.txt"))
    accs, times = [], []
    for s in range(seeds):
        utils.set_seed(s)
        net = utils.get_network(MODEL, 3, 10, (32, 32))
        t = time.perf_counter()
        _, _, acc = utils.evaluate_synset(s, net, images.clone(), labels.clone(), testloader,
                                          args)
        times.append(time.perf_counter() - t)
        accs.append(100.0 * float(acc))
        print(f"seed {s}: test accuracy {accs[-1]:.2f} % ({times[-1]:.0f} s)", flush=True)
    result = {"evaluator": "official TM evaluate_synset", "npz": npz, "accs": accs,
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
    b = sub.add_parser("buffer", help="official buffer.py -> <out>/CIFAR10_NO_ZCA/<model>/")
    b.add_argument("--out", required=True)
    b.add_argument("--per_class", type=int, default=100)
    b.add_argument("--experts", type=int, default=2)
    b.add_argument("--epochs", type=int, default=7)
    b.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("distill", help="official TM loop -> <out>/synset.npz")
    d.add_argument("--buffers", required=True, help="--out of the buffer step")
    d.add_argument("--out", required=True)
    d.add_argument("--iterations", type=int, default=100)
    d.add_argument("--per_class", type=int, default=100)
    d.add_argument("--syn_steps", type=int, default=10)
    d.add_argument("--k", type=int, default=256, help="msz_per_channel (official CIFAR-10: 64)")
    d.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate", help="official evaluate_synset on an .npz set")
    e.add_argument("--npz", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--seeds", type=int, default=3)
    e.add_argument("--epochs", type=int, default=300)
    e.add_argument("--lr", type=float, default=None, help="default: the set's syn_lr")
    for sp in (b, d, e):
        sp.add_argument("--test_per_class", type=int, default=0,
                        help="test images per class (the first ones; 0: all 1000)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.cmd == "buffer":
        os.makedirs(a.out, exist_ok=True)
        buffer(a.out, a.per_class, a.test_per_class, a.experts, a.epochs, a.seed)
    elif a.cmd == "distill":
        os.makedirs(a.out, exist_ok=True)
        distill(a.buffers, a.out, a.iterations, a.per_class, a.test_per_class, a.syn_steps,
                a.k, a.seed)
    else:
        evaluate(a.npz, a.out, a.seeds, a.epochs, a.lr, a.test_per_class)


if __name__ == "__main__":
    main()
