"""Stand-in for torchvision.utils: ``make_grid`` returns a blank picture (the official
``init_mask`` draws the masks with it), ``save_image`` does nothing."""
import torch


def make_grid(tensor, *args, **kwargs):
    return torch.zeros(3, 1, 1)


def save_image(*args, **kwargs):
    return None
