"""Import-only stand-in (see the package docstring)."""
from _standin import placeholder


def __getattr__(name):
    return placeholder("torchvision.datasets", name)
