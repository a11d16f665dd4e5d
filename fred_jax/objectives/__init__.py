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

``build(config, problem)`` picks the module by ``config.objective``; every objective module
(:data:`NAMES`) exposes ``build(config, problem) -> Objective`` and a ``loss`` function on
decoded images, and owns its config section ``config.<name>``: ``defaults()`` and
``check(config)`` live in the JAX-free ``<name>_config`` module (re-exported by the objective),
which :mod:`fred_jax.configuration` composes. Adding an objective = those two modules plus its
name in :data:`NAMES`, :func:`modules` and the configuration's sections.

This package loads the objective modules and the protocol (``base``), which need JAX, on first
use, so that the configuration (and every config file) reads the sections without JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

NAMES = ("dm", "dc", "tm")
"""The objectives: ``fred_jax.objectives.<name>`` with its section in ``<name>_config``."""

_PROTOCOL = ("Apply", "Metrics", "Objective", "Problem", "Update", "single_step")

SECOND_ORDER = frozenset({"dc", "tm"})
"""Objectives that differentiate through network gradients (the matching network trains)."""


def default_conv_impl(objective: str) -> str:
    """``config.conv_impl = "auto"``: the backend policy's choice for ``objective``
    (:class:`fred_jax.platform.Policy`: on XLA:CPU ``im2col`` for second-order objectives,
    ``tapgrad`` for DM; ``lax`` on GPU/TPU)."""
    from fred_jax import platform

    return platform.policy().distill_conv(objective)


def conv_impl(config: Any) -> str:
    """The distillation networks' convolution implementation for ``config``."""
    value = config.conv_impl
    return default_conv_impl(config.objective) if value == "auto" else value


def modules() -> dict[str, Any]:
    """Objective name -> module with ``build(config, problem)`` and ``loss`` (imports JAX)."""
    from fred_jax.objectives import dc, dm, tm

    return {"dm": dm, "dc": dc, "tm": tm}


def build(config: Any, problem: Problem) -> Objective:
    """The objective ``config.objective`` for ``problem``."""
    if config.objective not in NAMES:
        raise ValueError(f"unknown objective {config.objective!r}; expected one of {NAMES}")
    return modules()[config.objective].build(config, problem)


def __getattr__(name: str) -> Any:
    """The protocol (``Problem``, ``Objective``, ...) and the objective modules, on first use."""
    if name in _PROTOCOL:
        from fred_jax.objectives import base

        return getattr(base, name)
    if name in NAMES:  # not via modules(): its `from ... import` asks this function first
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Apply", "Metrics", "NAMES", "Objective", "Problem", "SECOND_ORDER", "Update", "build",
           "conv_impl", "dc", "default_conv_impl", "dm", "modules", "single_step", "tm"]
