"""Configuration checks shared by :mod:`fred_jax.configuration` and the objectives' own config
sections (``fred_jax.objectives.*_config``): the error they raise and the field rules.

The bottom layer: imports nothing from ``fred_jax`` and no JAX, so configs load without JAX and
every module may use it.
"""

from __future__ import annotations

from typing import Any, NoReturn, Sequence


class ConfigError(ValueError):
    """A configuration that cannot run; the message says which field and why."""


MAX_LR = 1e12
"""Largest accepted learning rate: the official rates go up to 1e8 (TM, unnormalised DCT);
1e30 only makes the synthetic set explode."""


def fail(field: str, message: str) -> NoReturn:
    """Raise :class:`ConfigError` for the dotted ``field`` (from the config root)."""
    raise ConfigError(f"config.{field}: {message}")


def lookup(config: Any, field: str) -> Any:
    """The value of a dotted field, from the config root."""
    value = config
    for part in field.split("."):
        value = value[part]
    return value


def require_positive(config: Any, fields: Sequence[str]) -> None:
    """Raise ConfigError naming the first dotted field (from the config root) that is < 1."""
    for field in fields:
        value = lookup(config, field)
        if int(value) < 1:
            fail(field, f"must be >= 1, got {value}")


def require_one_of(config: Any, field: str, choices: Sequence[Any]) -> None:
    """Raise ConfigError unless the dotted ``field`` is one of ``choices``."""
    value = lookup(config, field)
    if value not in choices:
        fail(field, f"{value!r} is not one of {tuple(choices)}")
