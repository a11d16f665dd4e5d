"""The official code's side of ``benchmarks/side_by_side.py`` (runs under ``.venv-ref``).

A worker: reads one JSON request per line on stdin (``{"work": name}``), runs that piece of work
once with the official functions (``DM/utils.py``: ``epoch``, ``get_network``, ``DiffAugment``,
``get_images``; the DM iteration as ``DM/main_DM_FreD.py``'s loop body; the TM iteration as
``TM/main_TM_FreD.py``'s, with ``TM/utils.py`` and ``TM/reparam_module.py``; the DC iteration
as ``DC/main_DC_FreD.py``'s, with ``DC/utils.py``), and answers one
JSON line with its wall and CPU seconds and the process's peak RSS so far. Setup (data,
networks, optimisers) happens on a work's first request, which the driver treats as warm-up; the
data of the DM and evaluation works is made only when one of them is first asked for, so a
worker started for ``tm_iteration`` alone holds nothing else (its peak RSS is the TM work's,
plus the interpreter and torch). Same shapes as the JAX side: CIFAR-10, ConvNet, DSA on, random
normalised images (the cost does not depend on their values).
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


class TMIteration:
    """One iteration of ``TM/main_TM_FreD.py``'s loop body at CIFAR-10 ipc=1 (``run_TM_FreD.sh``:
    ConvNetD3, msz_per_channel 64 -> 16 instances per class, batch_syn 0 -> all 160 images per
    student step, lr_freq 1e8, mom_freq 0.5; ``hyper_params.py``: lr_teacher 0.01, lr_lr 1e-7),
    by default under ``torch.autograd.set_detect_anomaly(True)`` as ``main`` sets it (a
    debugging mode that costs time: ``anomaly=False`` measures the same work without it).
    Random frequencies, a low-pass mask and random start/target parameters: the cost does not
    depend on them."""

    def __init__(self, num_syn: int, syn_steps: int, anomaly: bool):
        self.u, self.rm, ft = reference.official("TM", "utils", "reparam_module",
                                                 "frequency_transforms")
        torch.autograd.set_detect_anomaly(anomaly)
        self.dct = ft.DCT(resolution=32, device="cpu")
        self.syn_steps = syn_steps
        self.dsa_param = self.u.ParamDiffAug()
        self.dsa_strategy = "color_crop_cutout_flip_scale_rotate"
        g = torch.Generator().manual_seed(0)
        self.freq = self.dct.forward(torch.randn(num_syn, 3, 32, 32, generator=g))
        self.freq.requires_grad = True
        self.mask = torch.zeros_like(self.freq)
        self.mask[..., :8, :8] = 1.0  # k = 64 kept frequencies per channel
        self.label_syn = torch.arange(10).repeat_interleave(num_syn // 10)
        self.opt_freq = torch.optim.SGD([self.freq], lr=1e8, momentum=0.5)
        self.syn_lr = torch.tensor(0.01).requires_grad_(True)
        self.opt_lr = torch.optim.SGD([self.syn_lr], lr=1e-7, momentum=0.5)
        net = self.u.get_network("ConvNetD3", 3, 10, (32, 32), dist=False)
        self.start = [p.detach().clone() for p in net.parameters()]
        self.target = [p + 0.01 * torch.randn(p.shape, generator=g) for p in self.start]

    def iteration(self):
        """Fresh ``ReparamModule`` student; decode as ``SynSet.get``; ``syn_steps`` steps of
        DSA (per image, no seed) + cross-entropy + ``autograd.grad(create_graph=True)`` on the
        whole set; normalised parameter distance; backward; both SGD steps; ``syn_lr`` clip."""
        u = self.u
        student_net = self.rm.ReparamModule(u.get_network("ConvNetD3", 3, 10, (32, 32),
                                                          dist=False))
        student_net.train()
        num_params = sum(np.prod(p.size()) for p in student_net.parameters())
        target_params = torch.cat([p.reshape(-1) for p in self.target], 0)
        student_params = [torch.cat([p.reshape(-1) for p in self.start], 0).requires_grad_(True)]
        starting_params = torch.cat([p.reshape(-1) for p in self.start], 0)
        syn_images = self.dct.inverse(self.mask * self.freq)
        criterion = torch.nn.CrossEntropyLoss()
        indices_chunks = []
        for _ in range(self.syn_steps):
            if not indices_chunks:
                indices_chunks = list(torch.split(torch.randperm(len(syn_images)),
                                                  len(syn_images)))
            these = indices_chunks.pop()
            x = u.DiffAugment(syn_images[these], self.dsa_strategy, param=self.dsa_param)
            ce_loss = criterion(student_net(x, flat_param=student_params[-1]),
                                self.label_syn[these])
            grad = torch.autograd.grad(ce_loss, student_params[-1], create_graph=True)[0]
            student_params.append(student_params[-1] - self.syn_lr * grad)
        param_loss = torch.nn.functional.mse_loss(student_params[-1], target_params,
                                                  reduction="sum") / num_params
        param_dist = torch.nn.functional.mse_loss(starting_params, target_params,
                                                  reduction="sum") / num_params
        grand_loss = param_loss / param_dist
        self.opt_freq.zero_grad()
        self.opt_lr.zero_grad()
        grand_loss.backward()
        self.opt_freq.step()
        self.opt_lr.step()
        self.syn_lr.data = self.syn_lr.data.clip(min=0.001)


class DCIteration:
    """One iteration of ``DC/main_DC_FreD.py``'s loop body, method DC (no DSA, as
    ``run_DC_FreD.sh``): ConvNetD3, ``num_per_class = ipc * 1024 / k`` instances per class
    (``SynSet``), batch_syn 0 (all of a class's instances), batch_real 256, lr_net 0.01,
    batch_train 256, coefficient SGD lr 1e3 momentum 0.5; ``outer``/``inner`` steps (0: the
    official ``get_loops(ipc)``). Per outer step: per class ``get_images``, the real gradient
    (detached), the synthetic gradient with ``create_graph=True``, ``match_loss``; backward and
    the coefficient step; then, except after the last, ``inner`` epochs of ``epoch('train')``
    on the decoded set. Random real images (300 per class), frequencies and a mask of ``k``
    positions per channel: the cost does not depend on them."""

    def __init__(self, ipc: int, k: int, outer: int, inner: int, batch_real: int):
        self.u, ft = reference.official("DC", "utils", "frequency_transforms")
        self.dct = ft.DCT(resolution=32, device="cpu")
        self.n = ipc * 32 * 32 // k
        self.outer, self.inner = (outer, inner) if outer else self.u.get_loops(ipc)
        self.args = argparse.Namespace(device="cpu", dis_metric="ours", dsa=False,
                                       dc_aug_param=None, batch_real=batch_real,
                                       batch_train=256, lr_net=0.01)
        g = torch.Generator().manual_seed(0)
        self.x_real = torch.randn(10 * 300, 3, 32, 32, generator=g)
        self.indices_class = [list(range(c * 300, (c + 1) * 300)) for c in range(10)]
        self.freq = self.dct.forward(torch.randn(10 * self.n, 3, 32, 32, generator=g))
        self.freq.requires_grad = True
        self.mask = torch.zeros(self.freq.shape)
        self.mask.view(10 * self.n, 3, -1)[..., :k] = 1.0
        self.label_syn = torch.arange(10).repeat_interleave(self.n)
        self.opt = torch.optim.SGD([self.freq], lr=1e3, momentum=0.5)

    def get(self, indices, need_copy=False):
        """``SynSet.get``: decoded images of ``indices``."""
        freq = self.freq[indices].detach().clone() if need_copy else self.freq[indices]
        return self.dct.inverse(self.mask[indices] * freq), self.label_syn[indices]

    def iteration(self):
        u, args = self.u, self.args
        net = u.get_network("ConvNetD3", 3, 10, (32, 32))
        net.train()
        net_parameters = list(net.parameters())
        optimizer_net = torch.optim.SGD(net.parameters(), lr=args.lr_net)
        optimizer_net.zero_grad()
        criterion = torch.nn.CrossEntropyLoss()
        for ol in range(self.outer):
            loss = torch.tensor(0.0)
            for c in range(10):
                img_real = u.get_images(self.x_real, self.indices_class, c, args.batch_real)
                lab_real = torch.ones((img_real.shape[0],), dtype=torch.long) * c
                img_syn, lab_syn = self.get(range(c * self.n, (c + 1) * self.n))
                gw_real = torch.autograd.grad(criterion(net(img_real), lab_real), net_parameters)
                gw_real = list((_.detach().clone() for _ in gw_real))
                gw_syn = torch.autograd.grad(criterion(net(img_syn), lab_syn), net_parameters,
                                             create_graph=True)
                loss += u.match_loss(gw_syn, gw_real, args)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if ol == self.outer - 1:
                break
            image_syn_train, label_syn_train = self.get(range(10 * self.n), need_copy=True)
            trainloader = torch.utils.data.DataLoader(
                u.TensorDataset(image_syn_train, label_syn_train), batch_size=args.batch_train,
                shuffle=True, num_workers=0)
            for _ in range(self.inner):
                u.epoch("train", trainloader, net, optimizer_net, criterion, args, aug=False)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--num_syn", type=int, default=160)
    p.add_argument("--num_test", type=int, default=10000)
    p.add_argument("--batch_real", type=int, default=256)
    p.add_argument("--syn_steps", type=int, default=10, help="student steps of tm_iteration")
    p.add_argument("--no_anomaly", action="store_true",
                   help="tm_iteration without main_TM_FreD.py's set_detect_anomaly(True)")
    p.add_argument("--dc", default="", help="ipc,k,outer,inner of the dc_* works (outer 0: "
                                            "get_loops(ipc))")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    made = {}

    def works() -> Works:
        if "works" not in made:
            made["works"] = Works(a.num_syn, a.num_test, a.batch_real)
        return made["works"]

    def tm() -> TMIteration:
        if "tm" not in made:
            made["tm"] = TMIteration(a.num_syn, a.syn_steps, not a.no_anomaly)
        return made["tm"]

    def dc() -> DCIteration:
        if "dc" not in made:
            ipc, k, outer, inner = (int(v) for v in a.dc.split(","))
            made["dc"] = DCIteration(ipc, k, outer, inner, a.batch_real)
        return made["dc"]

    run = {"eval_epoch_1seed": lambda: works().eval_epoch(1),
           "eval_epoch_5seeds": lambda: works().eval_epoch(5),
           "test_pass": lambda: works().test_pass(), "dm_iteration": lambda: works().dm_iteration(),
           "tm_iteration": lambda: tm().iteration(),
           "tm_iteration_no_anomaly": lambda: tm().iteration()}  # started with --no_anomaly
    for name in ("dc_ipc1", "dc_ipc2", "dc_ipc10"):  # started with --dc
        run[name] = lambda: dc().iteration()
    print(json.dumps({"ready": True, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        with harness.Stopwatch() as sw:
            run[req["work"]]()
        print(json.dumps({"wall": sw.wall, "cpu": sw.cpu, "peak_rss_mb": harness.peak_rss_mib()}),
              flush=True)


if __name__ == "__main__":
    main()
