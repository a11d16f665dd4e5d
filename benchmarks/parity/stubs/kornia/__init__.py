"""Import-only stand-in for kornia (the official TM utils import it for ZCA, which FreD refuses)."""
from _standin import placeholder


def __getattr__(name):
    return placeholder("kornia", name)
