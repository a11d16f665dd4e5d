"""Parity of DSA (``fred_jax.augment``) with the official ``DiffAugment`` (DM/utils.py), every op
with the official code's own random draws (golden file from ``benchmarks/parity/ref_dsa.py``):
siamese (one parameter set for the batch) and per image, CIFAR- (4x3x32x32) and MNIST-shaped
(6x1x28x28) batches, and the whole strategy in mode "M".

The official scale/rotate use ``F.affine_grid``/``F.grid_sample`` with torch's default
``align_corners=False`` (DM, DC); ours default to True (the TM code's setting). For square
images both conventions give the same centred pixel map: the rows for ``align_corners=True``
measure it, the ones with False are the exact configuration of the official DM code.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parity_util
from fred_jax import augment

PIECE = "dsa"
TOL = 1e-5  # relative to the largest reference value
# Bilinear resampling (scale, rotate) of unit-variance noise: float32 rounding of the sampling
# coordinates (~1e-6 px) times local slopes of up to ~5 per pixel gives up to ~6e-6.
TOL_AFFINE = 2e-5
SHAPES = ("c32", "m28")
MODES = ("siamese", "perimage")
NAMES = {"color": ("brightness", "saturation", "contrast"), "crop": ("x", "y"),
         "cutout": ("x", "y"), "flip": ("flip",), "scale": ("x", "y"), "rotate": ("angle",)}


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.asarray(x), 1, -1)


def _draws(g: dict, prefix: str, op: str, siamese: bool) -> dict[str, np.ndarray]:
    """The official draws of ``op`` (element 0 of each in siamese mode, as the official
    ``theta[:] = theta[0]``)."""
    return {n: g[f"{prefix}_{op}_{n}"][0] if siamese else g[f"{prefix}_{op}_{n}"]
            for n in NAMES[op]}


def _params(align_corners: bool) -> augment.DSAParams:
    return dataclasses.replace(augment.DSAParams(), align_corners=align_corners)


def op_rows(g: dict, shape: str, mode: str) -> list[parity_util.Row]:
    x = jnp.asarray(_nhwc(g[f"{shape}_x"]))
    siamese = mode == "siamese"
    case = f"{shape}_{mode}"
    size = "x".join(map(str, g[f"{shape}_x"].shape))
    rows = []
    for op in NAMES:
        ref = _nhwc(g[f"{case}_{op}"])
        for ac in ((False, True) if op in ("scale", "rotate") else (True,)):
            ours = augment.apply_draws(x, op, _draws(g, case, op, siamese), _params(ac), siamese)
            note = f"align_corners={ac} (official DM: False)" if op in ("scale", "rotate") else ""
            rows.append(parity_util.compare(
                PIECE, f"{op} {mode} {size}" + (f" ac={ac}" if note else ""), ours, ref,
                TOL_AFFINE if note else TOL, note))
    # Mode "M": all ops in order through our dsa's op sequence, with the official draws.
    y = x
    for op in NAMES:
        y = augment.apply_draws(y, op, _draws(g, f"{case}_M", op, siamese), _params(False),
                                siamese)
    rows.append(parity_util.compare(PIECE, f"all ops (mode M) {mode} {size}", y,
                                    _nhwc(g[f"{case}_M"]), TOL_AFFINE,
                                    "color, crop, cutout, flip, scale, rotate"))
    return rows


def rows() -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    return [r for s in SHAPES for m in MODES for r in op_rows(g, s, m)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_ops_match_official(shape, mode):
    parity_util.assert_rows(op_rows(parity_util.load_golden(PIECE), shape, mode))


def test_draw_names_match_sampler():
    """``sample_draws`` returns exactly the draws the official ops make, with their shapes."""
    x = jnp.zeros((5, 32, 32, 3))
    for op, names in NAMES.items():
        for siamese in (True, False):
            d = augment.sample_draws(jax.random.PRNGKey(0), op, x, siamese=siamese)
            assert tuple(sorted(d)) == tuple(sorted(names))
            assert all(v.shape == (() if siamese else (5,)) for v in d.values())
