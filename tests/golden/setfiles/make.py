"""Writes the torch files of tests/test_setfiles.py; run with the reference env (CPU torch):

    .venv-ref/bin/python tests/golden/setfiles/make.py
"""
import os

import numpy as np
import torch

os.chdir(os.path.dirname(os.path.abspath(__file__)))
g = torch.Generator().manual_seed(0)
img = torch.randn(6, 3, 4, 5, generator=g)  # NCHW, 2 classes x 3, as the official TM code saves
lab = torch.tensor([0, 0, 0, 1, 1, 1])
torch.save(img, "images_best.pt")
torch.save(lab, "labels_best.pt")
big = torch.randn(4, 3, 5, 4, generator=g)
view = big.transpose(2, 3)[1:]  # non-contiguous, with a storage offset
torch.save(view, "strided.pt")
torch.save(img.to(torch.bfloat16), "bf16.pt")
data_save = [[(img.clone(), lab.clone())], [(img.clone() * 2, lab.clone())]]  # DM/DC res_*.pt
torch.save({"data": data_save, "accs_all_exps": {"ConvNet": [0.4, 0.5]}},
           "res_DM_CIFAR10_ConvNet_1ipc.pt")
np.savez("expected.npz", images=img.numpy(), labels=lab.numpy(),
         strided=view.contiguous().numpy(), bf16=img.to(torch.bfloat16).float().numpy())
print("torch", torch.__version__)
