"""Tests for fred_jax.conv: the im2col and tapgrad kernels against lax, values and first- and
second-order derivatives, every layout the networks use (strided, 1x1, 1-3 spatial dims)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fred_jax import conv


def _normal(seed, shape):
    """Test inputs from numpy: no PRNG compilation."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize(
    "x_shape,k_shape,stride,pad",
    [
        ((2, 9, 9, 3), (3, 3, 3, 5), 1, 1),
        ((2, 9, 8, 4), (3, 3, 4, 6), 2, 1),  # ResNet downsampling conv, odd size
        ((2, 8, 8, 4), (1, 1, 4, 6), 2, 0),  # ResNet shortcut
        ((2, 7, 7, 1), (5, 5, 1, 3), 1, 2),
        ((2, 4, 6, 6, 2), (3, 3, 3, 2, 3), 1, 1),  # 3-D
    ],
)
def test_conv_impls_agree(x_shape, k_shape, stride, pad):
    x = _normal(3, x_shape)
    k = _normal(4, k_shape)
    strides = (stride,) * (len(k_shape) - 2)
    jitted = jax.jit(conv.conv, static_argnames=("strides", "padding", "impl"))
    a = jitted(x, k, strides=strides, padding=pad, impl="lax")
    b = jitted(x, k, strides=strides, padding=pad, impl="im2col")
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "x_shape,k_shape,stride,pad",
    [
        ((2, 7, 7, 3), (3, 3, 3, 4), 1, 1),
        ((2, 9, 8, 3), (3, 3, 3, 4), 2, 1),  # strided, odd size: rows the forward never reads
        ((2, 9, 8, 4), (3, 3, 4, 3), 2, 1),  # more input than output channels
        ((2, 8, 8, 3), (1, 1, 3, 4), 2, 0),
        ((2, 11, 11, 2), (5, 5, 2, 3), 2, 0),
        ((2, 6, 6, 1), (3, 3, 1, 2), 1, 3),  # padding > k - 1 (1-channel ConvNet quirk)
        ((2, 9, 3), (3, 3, 2), 2, 1),  # 1-D
        ((1, 4, 5, 6, 2), (3, 3, 3, 2, 3), 1, 1),  # 3-D
    ],
)
@pytest.mark.parametrize("impl", ["tapgrad", "im2col"])
def test_custom_vjp_first_and_second_derivatives_equal_lax(x_shape, k_shape, stride, pad, impl):
    """The tapgrad and im2col custom VJPs give lax's values and first- and second-order
    gradients (x64), through both input-gradient rules (fewer and more input channels)."""
    strides = (stride,) * (len(k_shape) - 2)

    def f(impl):
        return lambda x, k: jnp.sum(jnp.sin(conv.conv(x, k, strides=strides, padding=pad,
                                                      impl=impl)))

    def second(impl):
        return jax.grad(lambda x, k: jnp.sum(jax.grad(f(impl), 1)(x, k) ** 2), (0, 1))

    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(1), x_shape, jnp.float64)
        k = jax.random.normal(jax.random.key(2), k_shape, jnp.float64)
        for order in (f, lambda i: jax.grad(f(i), (0, 1)), second):
            want, got = order("lax")(x, k), order(impl)(x, k)
            for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
                np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)


def test_unknown_impl_is_refused_and_models_names_the_same_impls():
    from fred_jax import models

    x, k = _normal(5, (1, 4, 4, 2)), _normal(6, (3, 3, 2, 2))
    with pytest.raises(ValueError,
                       match=r"conv_impl must be one of \('lax', 'im2col', 'tapgrad'\), got 'fft'"):
        conv.conv(x, k, strides=(1, 1), padding=1, impl="fft")
    assert models.CONV_IMPLS is conv.CONV_IMPLS
