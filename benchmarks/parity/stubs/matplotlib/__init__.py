"""Import-only stand-in for matplotlib (the official code draws mask pictures with it)."""
from . import pyplot  # noqa: F401
