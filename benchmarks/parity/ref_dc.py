"""Golden file for the DC objective (official FreD ``DC/main_DC_FreD.py`` + ``DC/utils.py``), no
augmentation (method DC):

1. ``match_loss`` with ``dis_metric='ours'`` on given gradient lists (``ml_real:<i>``,
   ``ml_syn:<i>``; a conv, its bias, a norm scale, a linear weight and a 3-axis layernorm
   weight): ``ml_layer [L]`` (``distance_wb`` per list entry) and ``ml_total``.
2. One outer step's loss (per class: ``match_loss`` between the network's loss gradient on a real
   batch and on the class's decoded synthetic instances, summed) and its gradient w.r.t. the
   kept coefficients, for a ConvNet of width 32, depth 3 (weights under ``w:``): ``loss``,
   ``grad_freq``, and the class-0 gradients ``gw_real0:<name>``/``gw_syn0:<name>``.
3. A whole outer iteration (``OUTER`` outer steps, ``INNER`` inner epochs of SGD ``LR_NET`` on the
   decoded set in one batch, coefficient SGD ``LR_FREQ`` with momentum ``MOM_FREQ``), the same
   real batch at every outer step: ``it_settings`` (those six numbers), ``it_losses
   [OUTER]``, ``it_loss_avg`` (the official
   ``loss_avg``), ``it_freq_kept`` (the coefficients after it) and the trained network ``it:``.

The synthetic set is built as in ``ref_dm.py`` (width 32 keeps the file small; the computation
is the same for any width).
"""

from __future__ import annotations

import copy
import types

import numpy as np
import torch
import torch.nn as nn

import reference
from ref_dm import BATCH_REAL, CH, N_PER_CLASS, NUM_CLASSES, SIDE, freq_synset, kept

WIDTH, DEPTH = 32, 3
OUTER, INNER, LR_NET, BATCH_TRAIN, LR_FREQ, MOM_FREQ = 2, 2, 0.01, 256, 1e3, 0.5
ML_SHAPES = [(8, 3, 3, 3), (8,), (8,), (5, 72), (4, 6, 6)]


def class_loss(utils, net, args, criterion, img_real, img_syn, c):
    """One class's term of the outer loss, as in main_DC_FreD.py (returns gw_real, gw_syn too)."""
    params = list(net.parameters())
    lab_real = torch.ones((img_real.shape[0],), dtype=torch.long) * c
    lab_syn = torch.ones((img_syn.shape[0],), dtype=torch.long) * c
    gw_real = torch.autograd.grad(criterion(net(img_real), lab_real), params)
    gw_real = list(_.detach().clone() for _ in gw_real)
    gw_syn = torch.autograd.grad(criterion(net(img_syn), lab_syn), params, create_graph=True)
    return utils.match_loss(gw_syn, gw_real, args), gw_real, gw_syn


def main() -> None:
    utils, networks, ft = reference.official("DC", "utils", "networks", "frequency_transforms")
    args = types.SimpleNamespace(dis_metric="ours", device="cpu", dsa=False)
    rng = np.random.default_rng(20232)
    torch.manual_seed(20232)
    out = {}

    # 1. match_loss on given lists.
    ml_real = [torch.tensor(rng.normal(size=s), dtype=torch.float) for s in ML_SHAPES]
    ml_syn = [torch.tensor(rng.normal(size=s), dtype=torch.float) + 0.5 * r for s, r in
              zip(ML_SHAPES, ml_real)]
    out["ml_layer"] = np.array([float(utils.distance_wb(r, s)) for r, s in zip(ml_real, ml_syn)])
    out["ml_total"] = utils.match_loss(ml_syn, ml_real, args)
    out.update({f"ml_real:{i}": r for i, r in enumerate(ml_real)})
    out.update({f"ml_syn:{i}": s for i, s in enumerate(ml_syn)})

    # 2. One outer step's loss and gradient.
    dct, freq, mask, indices = freq_synset(ft.DCT, rng)
    real = rng.normal(size=(NUM_CLASSES, BATCH_REAL, CH, SIDE, SIDE)).astype(np.float32)
    net = networks.ConvNet(CH, NUM_CLASSES, WIDTH, DEPTH, "relu", "instancenorm", "avgpooling",
                           (SIDE, SIDE))
    net.train()
    net0 = copy.deepcopy(net.state_dict())
    criterion = nn.CrossEntropyLoss()
    syn = dct.inverse(mask * freq)
    loss = torch.tensor(0.0)
    for c in range(NUM_CLASSES):
        term, gw_real, gw_syn = class_loss(utils, net, args, criterion, torch.tensor(real[c]),
                                           syn[c * N_PER_CLASS:(c + 1) * N_PER_CLASS], c)
        loss += term
        if c == 0:
            names = list(net.state_dict())
            out.update({f"gw_real0:{n}": v for n, v in zip(names, gw_real)})
            out.update({f"gw_syn0:{n}": v for n, v in zip(names, gw_syn)})
    loss.backward()
    out.update(indices=indices, freq_kept=kept(freq, indices), syn_images=syn.detach(), real=real,
               loss=loss, grad_freq=kept(freq.grad, indices))
    out.update({f"w:{n}": v for n, v in net0.items()})

    # 3. A whole outer iteration (main_DC_FreD.py's loop body, batch_syn 0, no BatchNorm).
    freq = freq.detach().clone().requires_grad_(True)
    optimizer_freq = torch.optim.SGD([freq], lr=LR_FREQ, momentum=MOM_FREQ)
    optimizer_net = torch.optim.SGD(net.parameters(), lr=LR_NET)
    label_syn = torch.repeat_interleave(torch.arange(NUM_CLASSES), N_PER_CLASS)
    losses = []
    for ol in range(OUTER):
        syn = dct.inverse(mask * freq)
        loss = torch.tensor(0.0)
        for c in range(NUM_CLASSES):
            loss += class_loss(utils, net, args, criterion, torch.tensor(real[c]),
                               syn[c * N_PER_CLASS:(c + 1) * N_PER_CLASS], c)[0]
        optimizer_freq.zero_grad()
        loss.backward()
        optimizer_freq.step()
        losses.append(loss.item())
        if ol == OUTER - 1:
            break
        image_syn = dct.inverse(mask * freq).detach()
        loader = torch.utils.data.DataLoader(utils.TensorDataset(image_syn, label_syn),
                                             batch_size=BATCH_TRAIN, shuffle=True, num_workers=0)
        for _ in range(INNER):
            utils.epoch("train", loader, net, optimizer_net, criterion, args, aug=False)
    out.update(it_losses=np.array(losses, np.float32),
               it_loss_avg=np.float32(sum(losses) / (NUM_CLASSES * OUTER)),
               it_freq_kept=kept(freq, indices),
               it_settings=np.array([OUTER, INNER, LR_NET, BATCH_TRAIN, LR_FREQ, MOM_FREQ]))
    out.update({f"it:{n}": v for n, v in net.state_dict().items()})
    reference.save_golden("dc", **out)


if __name__ == "__main__":
    main()
