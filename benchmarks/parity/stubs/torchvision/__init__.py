"""Import-only stand-in for torchvision: the official modules import it at the top, the parity
harness never calls it (datasets are fed as tensors)."""
from . import datasets, transforms, utils  # noqa: F401
