"""Tests for fred_jax.augment (DSA): formulas, sampler, siamese semantics, gradients, jit/vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from fred_jax import augment as A

H = W = 8
P = A.DSAParams()


@pytest.fixture(scope="module")
def img():
    return jax.random.normal(jax.random.PRNGKey(0), (H, W, 3))


@pytest.fixture(scope="module")
def dsa_jit():
    return jax.jit(A.dsa, static_argnames=("strategy", "params", "siamese"))


@pytest.fixture(scope="module")
def op_jit():
    return jax.jit(A.apply_op, static_argnames=("op", "params", "siamese"))


# ---------------------------------------------------------------- deterministic ops, fixed params


def test_color_formulas(img):
    x = np.asarray(img)
    np.testing.assert_allclose(A.brightness(img, 0.3), x + 0.3, rtol=1e-6)
    m = x.mean(-1, keepdims=True)
    np.testing.assert_allclose(A.saturation(img, 1.7), (x - m) * 1.7 + m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(A.saturation(img, 0.0), np.broadcast_to(m, x.shape), atol=1e-6)
    np.testing.assert_allclose(A.contrast(img, 0.6), (x - x.mean()) * 0.6 + x.mean(), atol=1e-6)


def test_flip(img):
    np.testing.assert_array_equal(A.flip(img, True), np.asarray(img)[:, ::-1])
    np.testing.assert_array_equal(A.flip(img, False), img)


@pytest.mark.parametrize("tx,ty", [(2, -1), (-3, 3), (0, 0)])
def test_translate_shifts_with_zero_fill(img, tx, ty):
    out = np.asarray(A.translate(img, jnp.int32(tx), jnp.int32(ty), (3, 3)))
    x = np.asarray(img)
    expect = np.zeros_like(x)
    for i in range(H):
        for j in range(W):
            if 0 <= i + tx < H and 0 <= j + ty < W:
                expect[i, j] = x[i + tx, j + ty]
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("ox,oy,rows,cols", [(0, 8, (0, 2), (6, 8)), (4, 3, (2, 6), (1, 5))])
def test_cutout_region(img, ox, oy, rows, cols):
    out = np.asarray(A.cutout(img, jnp.int32(ox), jnp.int32(oy), (4, 4)))
    expect = np.asarray(img).copy()
    expect[rows[0]:rows[1], cols[0]:cols[1]] = 0
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("align", [True, False])
def test_scale_one_and_rotate_zero_are_identity(img, align):
    np.testing.assert_allclose(A.affine(img, A.scale_theta(1.0, 1.0), align), img, atol=1e-5)
    np.testing.assert_allclose(A.affine(img, A.rotate_theta(0.0), align), img, atol=1e-5)


@pytest.mark.parametrize("align", [True, False])
def test_rotate_90_is_rot90(img, align):
    """Reference comment: 90 degrees = anticlockwise quarter turn."""
    out = A.affine(img, A.rotate_theta(jnp.float32(math.pi / 2)), align)
    np.testing.assert_allclose(out, jnp.rot90(img), atol=1e-5)


def test_grid_sample_matches_scipy_bilinear_zero_padding(img):
    """Independent check: torch's align_corners=True mapping + scipy order-1 interpolation."""
    theta = A.rotate_theta(jnp.float32(0.4)) * 1.1 + jnp.array([[0, 0, 0.1], [0, 0, -0.2]])
    out = A.affine(img, theta, True)
    grid = np.asarray(A.affine_grid(theta, H, W, True))
    ix = (grid[..., 0] + 1) / 2 * (W - 1)
    iy = (grid[..., 1] + 1) / 2 * (H - 1)
    expect = np.stack([ndimage.map_coordinates(np.asarray(img)[..., c], [iy, ix], order=1,
                                               mode="grid-constant", cval=0.0)
                       for c in range(3)], axis=-1)
    np.testing.assert_allclose(out, expect, atol=1e-5)
    assert np.abs(expect).sum() > 0 and (np.asarray(out) == 0).any()  # some points fall outside


def test_scale_theta_samples_centre_zoom():
    """sx = 0.5 with align_corners=True samples x in [-0.5, 0.5]: a 2x zoom on the centre."""
    row = jnp.arange(9.0)[None, :, None] * jnp.ones((9, 1, 1))
    out = A.affine(row, A.scale_theta(0.5, 1.0), True)
    np.testing.assert_allclose(out[0, :, 0], np.linspace(2, 6, 9), atol=1e-5)


# ---------------------------------------------------------------- random ops and siamese semantics


def test_parameters_in_reference_ranges(op_jit):
    """Per-image crop shifts lie in [-4, 4] (32 * 0.125) and cutout holes are 16 x 16 (clipped)."""
    x = jnp.ones((64, 32, 32, 1))
    crop = np.asarray(op_jit(jax.random.PRNGKey(1), x, "crop", P, False))[..., 0]
    zr = (crop == 0).all(axis=2).sum(axis=1)  # zero rows per image
    zc = (crop == 0).all(axis=1).sum(axis=1)
    assert zr.max() == 4 and zc.max() == 4 and zr.min() == 0
    cut = np.asarray(op_jit(jax.random.PRNGKey(2), x, "cutout", P, False))[..., 0]
    holes = (cut == 0).sum(axis=(1, 2))
    assert holes.max() == 256 and holes.min() >= 64 and len(np.unique(holes)) > 3


@pytest.mark.parametrize("op", A.OPS)
def test_siamese_same_key_same_transform_across_batch_sizes(op_jit, op):
    x8 = jax.random.normal(jax.random.PRNGKey(1), (8, H, W, 3))
    x8 = x8.at[1].set(x8[0])
    changed = False
    for seed in (7, 8, 9):
        key = jax.random.PRNGKey(seed)
        out8 = op_jit(key, x8, op, P, True)
        out3 = op_jit(key, x8[:3], op, P, True)
        np.testing.assert_allclose(out3, out8[:3], atol=1e-6)
        np.testing.assert_allclose(out8[1], out8[0], atol=1e-6)  # same image, same transform
        changed |= not np.allclose(out8, x8)
    assert changed


@pytest.mark.parametrize("op", A.OPS)
def test_per_image_mode_differs_between_images(op_jit, op):
    x = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(1), (1, H, W, 3)), (8, H, W, 3))
    out = np.asarray(op_jit(jax.random.PRNGKey(3), x, op, P, False))
    distinct = {out[i].tobytes() for i in range(8)}
    assert len(distinct) > 1


def test_dsa_siamese_batch_sizes_and_choice_covers_all_ops(dsa_jit, op_jit):
    x8 = jax.random.normal(jax.random.PRNGKey(1), (8, H, W, 3))
    keys = jax.random.split(jax.random.PRNGKey(0), 60)
    idx = np.asarray(jax.vmap(lambda k: A.op_index(k, len(A.OPS)))(keys))
    assert set(idx) == set(range(len(A.OPS)))
    for op_i in range(len(A.OPS)):
        key = keys[int(np.argmax(idx == op_i))]
        out8 = dsa_jit(key, x8)
        np.testing.assert_allclose(dsa_jit(key, x8[:3]), out8[:3], atol=1e-6)
        expect = op_jit(jax.random.fold_in(key, 1), x8, A.OPS[op_i], P, True)
        np.testing.assert_allclose(out8, expect, atol=1e-6)


def test_mode_m_applies_all_ops_in_order(dsa_jit, op_jit):
    x = jax.random.normal(jax.random.PRNGKey(1), (8, H, W, 3))
    key = jax.random.PRNGKey(5)
    out = dsa_jit(key, x, "flip_crop", A.DSAParams(mode="M"))
    k = jax.random.fold_in(key, 1)
    expect = op_jit(jax.random.fold_in(k, 0), x, "flip", P, True)
    expect = op_jit(jax.random.fold_in(k, 1), expect, "crop", P, True)
    np.testing.assert_allclose(out, expect, atol=1e-6)


def test_none_strategy_and_validation():
    x = jnp.ones((2, 4, 4, 1))
    np.testing.assert_array_equal(A.dsa(jax.random.PRNGKey(0), x, "none"), x)
    with pytest.raises(ValueError, match="unknown DSA op"):
        A.dsa(jax.random.PRNGKey(0), x, "color_blur")
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        A.dsa(jax.random.PRNGKey(0), x[0])
    with pytest.raises(ValueError, match="floating"):
        A.dsa(jax.random.PRNGKey(0), x.astype(jnp.int32))
    with pytest.raises(ValueError, match="mode"):
        A.DSAParams(mode="X")


# ---------------------------------------------------------------- gradients, jit, vmap


@pytest.mark.parametrize("siamese", [True, False])
def test_gradient_matches_finite_differences(siamese):
    """Every op is affine in x for a fixed key, so for a quadratic loss central differences are
    exact up to rounding."""
    x = jax.random.normal(jax.random.PRNGKey(1), (3, H, W, 3))
    w = jax.random.normal(jax.random.PRNGKey(2), x.shape)
    v = jax.random.normal(jax.random.PRNGKey(3), x.shape)
    eps = 0.1

    @jax.jit
    def check(xx):
        rows = []
        for op in A.OPS:
            def loss(z, op=op):
                return jnp.sum(w * A.apply_op(jax.random.PRNGKey(4), z, op, P, siamese) ** 2)
            g = jax.grad(loss)(xx)
            fd = (loss(xx + eps * v) - loss(xx - eps * v)) / (2 * eps)
            rows.append(jnp.stack([jnp.vdot(g, v), fd, jnp.abs(g).sum()]))
        return jnp.stack(rows)

    res = np.asarray(check(x))
    for op, (analytic, fd, gnorm) in zip(A.OPS, res):
        assert gnorm > 0, op
        np.testing.assert_allclose(analytic, fd, rtol=1e-2, err_msg=op)


def test_jit_vmap_over_classes_with_different_keys(dsa_jit):
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 3, H, W, 3))
    keys = jax.random.split(jax.random.PRNGKey(9), 2)

    @jax.jit
    def value_and_grad(z):
        return jax.value_and_grad(lambda q: (lambda o: (jnp.sum(o ** 2), o))(
            jax.vmap(A.dsa)(keys, q)), has_aux=True)(z)

    (_, out), g = value_and_grad(xs)
    for c in range(2):
        np.testing.assert_allclose(out[c], dsa_jit(keys[c], xs[c]), atol=1e-5)
    assert g.shape == xs.shape and bool(jnp.isfinite(g).all()) and float(jnp.abs(g).sum()) > 0
