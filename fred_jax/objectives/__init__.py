"""Distillation objectives and the small protocol the training loop drives them through.

An objective turns the decoded synthetic set and the real data into updates of the learnable
leaves. The loop (``fred_jax.train``) owns the learnable pytree ``{"coeffs": [C, n, k, ch],
...}``, the optax state and the keys; an objective supplies

- ``update(learnable, opt_state, key, apply) -> (learnable, opt_state, metrics)``: one
  distillation iteration, pure and jit-able. ``apply(learnable, opt_state, grads) ->
  (learnable, opt_state)`` is the loop's optax step (one optimiser update of every leaf);
  single-gradient objectives call it once (see :func:`single_step`), DC calls it once per
  outer step. ``metrics`` is a dict of scalars; ``"loss"`` is required (the loop stops on a
  non-finite loss).
- ``extra_learnables``: leaves besides ``"coeffs"`` (TM: ``{"syn_lr": ...}``), each trained by
  its own optax transformation in ``extra_optimisers`` (same keys).

``build(config, problem)`` picks the module by ``config.objective``; every module in
``MODULES`` exposes ``build(config, problem) -> Objective`` and a ``loss`` function on decoded
images. Adding an objective (TM) = one module with those two functions plus one line in
``MODULES``.
"""

from __future__ import annotations

from typing import Any

import jax

from fred_jax.objectives import dc, dm, tm
from fred_jax.objectives.base import Apply, Metrics, Objective, Problem, Update, single_step

MODULES = {"dm": dm, "dc": dc, "tm": tm}
"""Objective name -> module with ``build(config, problem)`` and ``loss``."""

NAMES = tuple(MODULES)

SECOND_ORDER = frozenset({"dc", "tm"})
"""Objectives that differentiate through network gradients (the matching network trains)."""


def default_conv_impl(objective: str) -> str:
    """``config.conv_impl = "auto"``: on XLA:CPU ``im2col`` for second-order objectives (its
    custom VJP keeps every derivative a patch matmul) and ``tapgrad`` for DM (``lax`` forward,
    cheaper input gradient of the RGB layer); ``lax`` on GPU/TPU."""
    if jax.default_backend() != "cpu":
        return "lax"
    return "im2col" if objective in SECOND_ORDER else "tapgrad"


def conv_impl(config: Any) -> str:
    """The distillation networks' convolution implementation for ``config``."""
    value = config.conv_impl
    return default_conv_impl(config.objective) if value == "auto" else value


def build(config: Any, problem: Problem) -> Objective:
    """The objective ``config.objective`` for ``problem``."""
    if config.objective not in MODULES:
        raise ValueError(f"unknown objective {config.objective!r}; expected one of {NAMES}")
    return MODULES[config.objective].build(config, problem)


__all__ = ["Apply", "Metrics", "Objective", "Problem", "Update", "build", "conv_impl", "dc",
           "default_conv_impl", "dm", "tm", "single_step", "MODULES", "NAMES", "SECOND_ORDER"]
