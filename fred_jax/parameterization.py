"""How the stored set is parameterised: the one place that turns ``config.parameterization``
into a transform, a number of kept values per channel and a learning rate.

JAX-free, so that ``fred_jax.configuration`` checks a config with it before anything is
imported or loaded, and ``fred_jax.train`` builds the run from the same answer.

- ``"fred"``: ``config.transform`` keeping ``config.k`` coefficients per channel, trained
  with ``config.lr`` in ``config.lr_convention`` (the paper's method).
- ``"pixel"``: the identity transform keeping all ``d`` values per channel (the plain image
  baseline at the same budget), trained with ``config.lr_pixel`` as given ("orthonormal").
- ``"idc"``: IDC's multi-formation (Kim et al. 2022, factor :data:`IDC_FACTOR`): images stored
  at 1/factor of every spatial size and decoded by (bi/tri)linear upsampling
  (``fred_jax.idc``), so ``k = d / factor^ndim`` and a budget buys ``factor^ndim`` times the
  instances; trained with ``config.lr_pixel`` ("orthonormal"); ``mask_kind`` does not apply.

A further parameterisation is one more entry of :data:`RULES`: a function of the config and
the spatial shape returning :class:`Resolved` (e.g. IDC's multi-formation: a transform that
decodes by upsampling, k = d / factor^ndim stored values, the pixel learning rate).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

LR_CONVENTIONS = ("torch_dct", "orthonormal")
"""Units of the coefficient learning rate (``fred_jax.optimizer.coefficient_lr_scale``)."""


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What a parameterisation means for one image shape.

    transform: ``fred_jax.transforms`` name of the stored coefficients. k: kept values per
    channel and instance (``1 <= k <= d`` for a valid config). k_field: the config field k
    comes from (None: the parameterisation fixes it). lr, lr_convention: the coefficients'
    learning rate and its unit (:data:`LR_CONVENTIONS`); lr_field: the config field lr comes
    from (what a message tells the user to change).
    """

    transform: str
    k: int
    k_field: str | None
    lr: float
    lr_convention: str
    lr_field: str = "lr"


def _fred(config: Any, spatial_shape: tuple[int, ...]) -> Resolved:
    del spatial_shape
    return Resolved(transform=config.transform, k=int(config.k), k_field="k",
                    lr=float(config.lr), lr_convention=config.lr_convention)


def _pixel(config: Any, spatial_shape: tuple[int, ...]) -> Resolved:
    return Resolved(transform="identity", k=math.prod(spatial_shape), k_field=None,
                    lr=float(config.lr_pixel), lr_convention="orthonormal",
                    lr_field="lr_pixel")


IDC_FACTOR = 2
"""IDC's multi-formation factor (its code's default ``--factor 2``)."""


def _idc(config: Any, spatial_shape: tuple[int, ...]) -> Resolved:
    if any(s % IDC_FACTOR for s in spatial_shape):
        raise ValueError(f"parameterization 'idc' divides every spatial size by {IDC_FACTOR}, "
                         f"got {spatial_shape}")
    return Resolved(transform="idc",
                    k=math.prod(spatial_shape) // IDC_FACTOR ** len(spatial_shape),
                    k_field=None, lr=float(config.lr_pixel), lr_convention="orthonormal",
                    lr_field="lr_pixel")


RULES: dict[str, Callable[[Any, tuple[int, ...]], Resolved]] = {
    "fred": _fred, "pixel": _pixel, "idc": _idc}
"""Parameterisation name -> ``rule(config, spatial_shape)``."""

PARAMETERIZATIONS = tuple(RULES)


def resolve(config: Any, spatial_shape: Sequence[int]) -> Resolved:
    """``config.parameterization`` for images of ``spatial_shape`` (without channels)."""
    if config.parameterization not in RULES:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got "
                         f"{config.parameterization!r}")
    return RULES[config.parameterization](config, tuple(int(s) for s in spatial_shape))
