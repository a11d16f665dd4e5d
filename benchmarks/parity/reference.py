"""Runs inside the reference environment (``.venv-ref``, torch): imports the official FreD code
from ``$FRED_REF`` (default ``../shared/reference/FreD``) and writes golden files.

Each ``ref_<piece>.py`` script of this folder builds its inputs with NumPy from a fixed seed (or
from real images under ``$FRED_DATA_DIR``), runs the official functions on them, and stores
inputs and outputs in ``tests/golden/<piece>.npz`` through :func:`save_golden`. The tests
``tests/test_parity_<piece>.py`` then run fred_jax on the same inputs, without torch.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(ROOT, "tests", "golden")


def reference_root() -> str:
    """The official code's folder: ``$FRED_REF`` or ``../shared/reference/FreD``."""
    path = os.environ.get("FRED_REF", os.path.join(ROOT, "..", "shared", "reference", "FreD"))
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.join(path, "DM")):
        raise SystemExit(f"error: no official FreD code at {path}: set FRED_REF")
    return path


def official(folder: str, *modules: str):
    """Import ``modules`` (e.g. ``"utils"``, ``"networks"``) from ``$FRED_REF/<folder>``, with
    the import-only stand-ins for torchvision/kornia/matplotlib. The official folders reuse module
    names (``utils``, ``networks``), so importing from a second folder drops the first's."""
    for name in ("utils", "networks", "frequency_transforms", "reparam_module", "hyper_params"):
        sys.modules.pop(name, None)
    stubs = os.path.join(HERE, "stubs")
    src = os.path.join(reference_root(), folder)
    for p in (src, stubs):
        if p in sys.path:
            sys.path.remove(p)
    sys.path[:0] = [src, stubs]
    out = [importlib.import_module(m) for m in modules]
    return out[0] if len(out) == 1 else out


def reference_commit() -> str:
    """The official code's identity for the golden file's provenance (its README's commit)."""
    try:
        return subprocess.run(["git", "-C", reference_root(), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "sdh0818/FreD@9f35a7a"


def to_np(x) -> np.ndarray:
    """A torch tensor (or anything array-like) as a NumPy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def save_golden(piece: str, **arrays) -> str:
    """Write ``tests/golden/<piece>.npz`` atomically (temp file + rename)."""
    import torch

    os.makedirs(GOLDEN, exist_ok=True)
    path = os.path.join(GOLDEN, f"{piece}.npz")
    tmp = path + ".tmp.npz"
    meta = {"torch": torch.__version__, "reference": reference_commit()}
    np.savez_compressed(tmp, **{k: to_np(v) for k, v in arrays.items()},
                        **{f"meta_{k}": np.asarray(v) for k, v in meta.items()})
    os.replace(tmp, path)
    size = os.path.getsize(path)
    print(f"wrote {os.path.relpath(path, ROOT)} ({size / 1e3:.0f} kB, {len(arrays)} arrays)")
    return path
