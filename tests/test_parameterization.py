"""The parameterisation resolver: the one answer train and configuration share."""

from __future__ import annotations

import pytest

from fred_jax import configuration, parameterization


def _config(**fields):
    config = configuration.defaults()
    config.update_from_flattened_dict(fields)
    return config


def test_fred_keeps_k_coefficients_with_the_configured_lr():
    r = parameterization.resolve(_config(k=64, lr=1e6, transform="dct"), (32, 32))
    assert r == parameterization.Resolved(transform="dct", k=64, k_field="k", lr=1e6,
                                          lr_convention="torch_dct")


def test_pixel_keeps_every_value_with_lr_pixel_as_given():
    config = _config(parameterization="pixel", k=64, lr_pixel=0.1, transform="dwt")
    r = parameterization.resolve(config, (28, 28))
    assert r == parameterization.Resolved(transform="identity", k=784, k_field=None, lr=0.1,
                                          lr_convention="orthonormal", lr_field="lr_pixel")


def test_unknown_parameterization_is_refused():
    with pytest.raises(ValueError, match=r"parameterization must be one of \('fred', 'pixel'"):
        parameterization.resolve(_config(parameterization="latent"), (32, 32))


def test_validate_uses_the_resolver_for_k():
    facts = configuration.validate(_config(parameterization="pixel", k=10**6, ipc=1,
                                           dataset="mnist", data_dir="/nonexistent-on-purpose"),
                                   dataset=_Shape((28, 28, 1), 10))
    assert (facts["k"], facts["instances_per_class"]) == (784, 1)


class _Shape:
    """A stand-in for a loaded dataset: only the shape and the classes are read."""

    def __init__(self, image_shape, num_classes):
        self.image_shape, self.num_classes = image_shape, num_classes
