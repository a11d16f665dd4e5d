"""Shared by every test module: the persistent compilation cache (``fred_jax.platform``), so a
rerun of the suite, and each xdist worker after the first, loads the programs another process
already compiled. ``FRED_TEST_COMPILATION_CACHE=""`` turns it off; a folder sets it."""

import os

from fred_jax import platform

platform.enable_compilation_cache(os.environ.get("FRED_TEST_COMPILATION_CACHE", "auto"))
