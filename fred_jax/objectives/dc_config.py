"""The ``config.dc`` section of gradient matching (:mod:`fred_jax.objectives.dc`): its
defaults, the reference loop schedule and the checks. JAX-free, so configs load without JAX."""

from __future__ import annotations

from typing import Any

import ml_collections

from fred_jax import checks

LOOPS: dict[int, tuple[int, int]] = {
    1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10),
    2: (1, 1), 11: (10, 50), 51: (50, 10),
}
"""ipc -> (outer_loop, inner_loop) of the reference ``get_loops`` (FreD adds ipc 2, 11, 51)."""


def defaults() -> ml_collections.ConfigDict:
    """The ``config.dc`` section (every field commented)."""
    c = ml_collections.ConfigDict()
    c.batch_real = 256  # real images per class per outer step
    c.batch_train = 256  # batch size when training the network on the synthetic set
    c.lr_net = 0.01  # SGD rate of the network between outer steps
    c.outer_loop = 0  # outer steps per iteration; 0 = reference schedule by ipc
    c.inner_loop = 0  # network epochs between outer steps; 0 = reference schedule by ipc
    return c


def check(config: Any) -> None:
    """Raise ConfigError naming the ``config.dc`` field (or, for a DC run, the matching network)
    that cannot run."""
    checks.require_positive(config, ("dc.batch_real", "dc.batch_train"))
    if config.objective != "dc":
        return
    from fred_jax import models  # deferred: configs load without JAX

    if config.model in models.BATCHNORM_ARCHS:
        checks.fail("model", f"{config.model} has BatchNorm, which DC matching does not support "
                             "here")
    if not config.dc.outer_loop and int(config.ipc) not in LOOPS:
        checks.fail("dc.outer_loop", f"no reference loop schedule for ipc={config.ipc} (known: "
                                     f"{sorted(LOOPS)}); set dc.outer_loop and dc.inner_loop")
    if bool(config.dc.outer_loop) != bool(config.dc.inner_loop):
        checks.fail("dc.inner_loop", "set both dc.outer_loop and dc.inner_loop, or neither")
