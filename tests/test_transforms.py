"""Tests for fred_jax.transforms: orthonormality, references, gradients, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft

from fred_jax import transforms

# dwt needs even sizes; (8, 12) gives 2 Haar levels, (4, 8, 4) gives 2.
SHAPES = {2: (2, 8, 12, 3), 3: (2, 4, 8, 4, 2)}
CASES = [(name, nd) for name in transforms.NAMES for nd in (2, 3)]


def _x(nd, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=SHAPES[nd]).astype(dtype)


@pytest.mark.parametrize("name,nd", CASES)
def test_round_trip_and_parseval(name, nd):
    t = transforms.get(name, nd)
    x = _x(nd)
    f = t.forward(x)
    assert f.shape == x.shape and f.dtype == jnp.float32
    np.testing.assert_allclose(t.inverse(f), x, atol=1e-5, rtol=0)
    np.testing.assert_allclose(jnp.sum(f**2), np.sum(x.astype(np.float64) ** 2), rtol=1e-5)


@pytest.mark.parametrize("name,nd", CASES)
def test_basis_matches_forward_and_is_orthonormal(name, nd):
    spatial = SHAPES[nd][1:-1]
    b = transforms.basis(name, spatial)
    d = b.shape[0]
    np.testing.assert_allclose(b @ b.T, np.eye(d), atol=1e-12)
    x = _x(nd)
    f = np.asarray(transforms.get(name, nd).forward(x))
    np.testing.assert_allclose(f[1, ..., 0].reshape(-1), b @ x[1, ..., 0].reshape(-1), atol=1e-5)
    idx = np.array([[0, d - 1, 5], [d // 2, 1, 7]])
    rows = transforms.basis_rows(name, spatial, jnp.asarray(idx))
    assert rows.shape == (2, 3, d)
    np.testing.assert_allclose(rows, b[idx], atol=1e-6)


@pytest.mark.parametrize("nd", [2, 3])
def test_dct_equals_scipy(nd):
    x = _x(nd)
    ref = scipy.fft.dctn(x, axes=tuple(range(1, 1 + nd)), norm="ortho")
    np.testing.assert_allclose(transforms.get("dct", nd).forward(x), ref, atol=1e-5)


@pytest.mark.parametrize("nd", [2, 3])
def test_dft_is_separable_hartley(nd):
    x = _x(nd).astype(np.float64)
    ref = x
    for ax in range(1, 1 + nd):
        f = np.fft.fft(ref, axis=ax)
        ref = (f.real - f.imag) / np.sqrt(x.shape[ax])
    out = transforms.get("dft", nd).forward(x.astype(np.float32))
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_dwt_levels_and_known_values():
    assert transforms.dwt_levels((32, 32)) == 5
    assert transforms.dwt_levels((28, 28)) == 2
    assert transforms.dwt_levels((8, 12)) == 2
    with pytest.raises(ValueError, match="even"):
        transforms.dwt_levels((7, 7))
    # A constant image has only the coarsest scaling coefficient: mean * sqrt(d).
    x = np.full((1, 8, 8, 1), 3.0, np.float32)
    f = np.array(transforms.get("dwt").forward(x))[0, ..., 0]
    assert f[0, 0] == pytest.approx(3.0 * 8)
    f[0, 0] = 0
    np.testing.assert_allclose(f, 0, atol=1e-5)
    # One level on a 2x2 image: [[a, b], [c, d]] -> sums/differences / 2.
    y = np.array([1.0, 2.0, 3.0, 5.0], np.float32).reshape(1, 2, 2, 1)
    g = np.asarray(transforms.get("dwt").forward(y))[0, ..., 0]
    np.testing.assert_allclose(g, [[11 / 2, -3 / 2], [-5 / 2, 1 / 2]], atol=1e-6)


@pytest.mark.parametrize("name,nd", [(name, 2) for name in transforms.NAMES] + [("dwt", 3)])
def test_inverse_gradient_matches_finite_differences(name, nd):
    with jax.enable_x64(True):
        t = transforms.get(name, nd)
        w = jnp.asarray(_x(nd, seed=1, dtype=np.float64))
        c = jnp.asarray(_x(nd, seed=2, dtype=np.float64))
        loss = jax.jit(lambda c: jnp.sum(jnp.sin(t.inverse(c)) * w))
        g = jax.jit(jax.grad(loss))(c)
        assert g.dtype == jnp.float64
        eps = 1e-5
        for v in (_x(nd, seed=3, dtype=np.float64), _x(nd, seed=4, dtype=np.float64)):
            fd = (loss(c + eps * v) - loss(c - eps * v)) / (2 * eps)
            assert float(jnp.vdot(g, v)) == pytest.approx(float(fd), rel=1e-7, abs=1e-8)


@pytest.mark.parametrize("name", transforms.NAMES)
def test_jit_and_vmap(name):
    t = transforms.get(name, 2)
    x = _x(2)[None].repeat(2, axis=0)  # [2, 2, H, W, C]: two leading axes
    ref = t.forward(x)
    np.testing.assert_allclose(jax.jit(t.forward)(x), ref, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(t.forward)(x), ref, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(t.inverse))(ref), x, atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="unknown transform"):
        transforms.get("fft")
    with pytest.raises(ValueError, match="ndim"):
        transforms.get("dct", 1)
    with pytest.raises(ValueError, match="spatial"):
        transforms.get("dct", 3).forward(jnp.zeros((4, 4, 3)))
