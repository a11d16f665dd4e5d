"""The official code's side of ``benchmarks/side_by_side.py`` (runs under ``.venv-ref``).

A worker: reads one JSON request per line on stdin (``{"work": name}``), runs that piece of work
once with the official functions (``DM/utils.py``: ``epoch``, ``get_network``, ``DiffAugment``,
``get_images``; the DM iteration as ``DM/main_DM_FreD.py``'s loop body), and answers one JSON line
with its wall and CPU seconds. Setup (data, networks, optimisers) happens on a work's first
request, which the driver treats as warm-up. Same shapes as the JAX side: CIFAR-10, ConvNet,
DSA on, random normalised images (the cost does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

import reference

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402  (benchmarks/harness.py: stdlib only at import)


def make_args(utils):
    return argparse.Namespace(device="cpu", dsa=True, dsa_param=utils.ParamDiffAug(),
                              dsa_strategy="color_crop_cutout_flip_scale_rotate", batch_train=256,
                              lr_net=0.01, epoch_eval_train=1000)


class Works:
    def __init__(self, num_syn: int, num_test: int, batch_real: int):
        self.u, ft = reference.official("DM", "utils", "frequency_transforms")
        self.dct = ft.DCT(resolution=32, device="cpu")
        self.args = make_args(self.u)
        g = torch.Generator().manual_seed(0)
        self.x_syn = torch.randn(num_syn, 3, 32, 32, generator=g)
        self.y_syn = torch.arange(num_syn) % 10
        self.x_test = torch.randn(num_test, 3, 32, 32, generator=g)
        self.y_test = torch.arange(num_test) % 10
        self.x_real = torch.randn(10 * 300, 3, 32, 32, generator=g)
        self.indices_class = [list(range(c * 300, (c + 1) * 300)) for c in range(10)]
        self.batch_real = batch_real
        self.state = {}

    def _trainer(self, seed: int):
        u = self.u
        torch.manual_seed(seed)
        net = u.get_network("ConvNet", 3, 10, (32, 32))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
        loader = torch.utils.data.DataLoader(u.TensorDataset(self.x_syn, self.y_syn),
                                             batch_size=256, shuffle=True, num_workers=0)
        return net, opt, loader

    def eval_epoch(self, seeds: int):
        """One evaluation training epoch (``evaluate_synset``'s loop body) per seed, serially."""
        key = f"eval{seeds}"
        if key not in self.state:
            self.state[key] = [self._trainer(s) for s in range(seeds)]
        crit = torch.nn.CrossEntropyLoss()
        for net, opt, loader in self.state[key]:
            self.u.epoch("train", loader, net, opt, crit, self.args, aug=True)

    def test_pass(self):
        """``epoch('test', ...)`` over the test set, batch 256 (as ``evaluate_synset``)."""
        if "test" not in self.state:
            net, opt, _ = self._trainer(0)
            loader = torch.utils.data.DataLoader(self.u.TensorDataset(self.x_test, self.y_test),
                                                 batch_size=256, shuffle=False, num_workers=0)
            self.state["test"] = (net, opt, loader)
        net, opt, loader = self.state["test"]
        self.u.epoch("test", loader, net, opt, torch.nn.CrossEntropyLoss(), self.args, aug=False)

    def dm_iteration(self):
        """One DM iteration as the official loop body: fresh net, per class decode
        (``dct.inverse(mask * freq)`` as ``SynSet.get``), DSA on both sides with one seed, embed,
        squared mean distance, one SGD step on the synthetic frequencies."""
        u = self.u
        if "dm" not in self.state:
            freq = self.dct.forward(self.x_syn).requires_grad_(True)
            mask = torch.zeros_like(freq)
            mask[..., :8, :8] = 1.0  # k = 64 kept frequencies per channel
            self.state["dm"] = (freq, mask, torch.optim.SGD([freq], lr=1e6, momentum=0.5))
        freq, mask, opt = self.state["dm"]
        net = u.get_network("ConvNet", 3, 10, (32, 32))
        net.train()
        for p in net.parameters():
            p.requires_grad = False
        n = freq.shape[0] // 10
        loss = torch.tensor(0.0)
        for c in range(10):
            img_real = u.get_images(self.x_real, self.indices_class, c, self.batch_real)
            img_syn = self.dct.inverse(mask[c * n:(c + 1) * n] * freq[c * n:(c + 1) * n])
            seed = int(time.time() * 1000) % 100000
            img_real = u.DiffAugment(img_real, self.args.dsa_strategy, seed=seed,
                                     param=self.args.dsa_param)
            img_syn = u.DiffAugment(img_syn, self.args.dsa_strategy, seed=seed,
                                    param=self.args.dsa_param)
            out_real = net.embed(img_real).detach()
            out_syn = net.embed(img_syn)
            loss = loss + torch.sum((out_real.mean(0) - out_syn.mean(0)) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--num_syn", type=int, default=160)
    p.add_argument("--num_test", type=int, default=10000)
    p.add_argument("--batch_real", type=int, default=256)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    works = Works(a.num_syn, a.num_test, a.batch_real)
    run = {"eval_epoch_1seed": lambda: works.eval_epoch(1),
           "eval_epoch_5seeds": lambda: works.eval_epoch(5),
           "test_pass": works.test_pass, "dm_iteration": works.dm_iteration}
    print(json.dumps({"ready": True, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        with harness.Stopwatch() as sw:
            run[req["work"]]()
        print(json.dumps({"wall": sw.wall, "cpu": sw.cpu}), flush=True)


if __name__ == "__main__":
    main()
