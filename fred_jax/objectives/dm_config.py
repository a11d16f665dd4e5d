"""The ``config.dm`` section of distribution matching (:mod:`fred_jax.objectives.dm`): its
defaults and its checks. JAX-free, so configs load without JAX."""

from __future__ import annotations

from typing import Any

import ml_collections

from fred_jax import checks


def defaults() -> ml_collections.ConfigDict:
    """The ``config.dm`` section (every field commented)."""
    c = ml_collections.ConfigDict()
    c.batch_real = 256  # real images per class per iteration
    c.chunk = ml_collections.config_dict.placeholder(int)  # real images per embedding pass
    # (0: the whole class batch); None = auto (fred_jax.platform: 32 on CPU, 0 on GPU/TPU)
    return c


def check(config: Any) -> None:
    """Raise ConfigError naming the ``config.dm`` field that cannot run."""
    checks.require_positive(config, ("dm.batch_real",))
    if config.dm.chunk is not None and int(config.dm.chunk) < 0:
        checks.fail("dm.chunk", f"must be >= 0 (0: the whole class batch) or None (auto), got "
                                f"{config.dm.chunk}")
