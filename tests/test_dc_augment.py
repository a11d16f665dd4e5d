"""Tests for fred_jax.dc_augment (the reference's DC augmentation): each op with fixed
parameters, the rotation against scipy itself, the sampler's ranges, and jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from fred_jax import dc_augment as D

P = D.DCAugParams()


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).standard_normal((6, 28, 28, 2)).astype(np.float32)


def test_crop_window_and_mean_fill(batch):
    img, fill = jnp.asarray(batch[0]), jnp.asarray([0.25, -0.5])
    np.testing.assert_array_equal(D.crop(img, jnp.array([4, 4]), 4, fill), img)
    out = np.asarray(D.crop(img, jnp.array([1, 6]), 4, fill))  # shift rows +3, columns -2
    np.testing.assert_array_equal(out[3:, :26], batch[0][:25, 2:])
    np.testing.assert_array_equal(out[:3], np.broadcast_to(fill, (3, 28, 2)))
    np.testing.assert_array_equal(out[:, 26:], np.broadcast_to(fill, (28, 2, 2)))


def test_scale_nearest_and_zero_canvas(batch):
    img = jnp.asarray(batch[0])
    np.testing.assert_array_equal(D.scale(img, jnp.array([28, 28])), img)
    # shrink to 22 x 33: rows 3..24 hold the image (canvas 33, offsets 5 and 2), zero elsewhere
    out = np.asarray(D.scale(img, jnp.array([22, 33])))
    # torch: float32 product (11 * float32(28 / 22) rounds to 14.0; in float64 it is below 14)
    f32 = lambda a: np.arange(*a).astype(np.float32)  # noqa: E731
    src_r = np.minimum(np.floor(f32((22,)) * np.float32(28 / 22)).astype(int), 27)
    src_c = np.minimum(np.floor(f32((2, 30)) * np.float32(28 / 33)).astype(int), 27)
    assert src_r[11] == 14
    np.testing.assert_array_equal(out[3:25], batch[0][src_r][:, src_c])
    assert not out[:3].any() and not out[25:].any()


@pytest.mark.parametrize("angle", [-45, -17, 0, 30, 44])
def test_rotate_equals_scipy(batch, angle):
    img = batch[1]
    cval = float(img.mean())
    ref = ndimage.rotate(np.moveaxis(img, -1, 0), angle=angle, axes=(-2, -1), cval=cval)
    r, c = (ref.shape[-2] - 28) // 2, (ref.shape[-1] - 28) // 2
    ref = np.moveaxis(ref[:, r:r + 28, c:c + 28], 0, -1)
    ours = D.rotate(jnp.asarray(img), jnp.int32(angle), jnp.float32(cval), 45)
    np.testing.assert_allclose(ours, ref, atol=2e-6 * np.abs(ref).max())
    if angle:
        assert (np.asarray(ours) == np.float32(cval)).sum() > 0  # corners outside the image


def test_sample_ranges():
    draw = D.sample(jax.random.key(0), (4000, 28, 28, 1), "crop_scale_rotate")
    assert set(np.unique(draw.op)) == {0, 1, 2} and draw.noise is None
    assert np.asarray(draw.offset).min() == 0 and np.asarray(draw.offset).max() == 7
    assert np.asarray(draw.size).min() == 22 and np.asarray(draw.size).max() == 33
    assert np.asarray(draw.angle).min() == -45 and np.asarray(draw.angle).max() == 44
    noisy = D.sample(jax.random.key(0), (3, 8, 8, 2), "crop_noise")
    assert noisy.noise.shape == (3, 8, 8, 2)


def test_apply_one_op_per_image(batch):
    x = jnp.asarray(batch)
    draw = D.Draw(op=jnp.array([0, 1, 2, 0, 1, 2]), offset=jnp.full((6, 2), 2),
                  size=jnp.full((6, 2), 30), angle=jnp.full((6,), 10), noise=None)
    out = np.asarray(jax.jit(D.apply, static_argnums=(2,))(x, draw, "crop_scale_rotate"))
    mean = batch.mean((0, 1, 2))
    np.testing.assert_allclose(out[0], D.crop(x[0], jnp.array([2, 2]), 4, mean), atol=1e-6)
    np.testing.assert_array_equal(out[1], D.scale(x[1], jnp.array([30, 30])))
    np.testing.assert_allclose(out[2], D.rotate(x[2], 10, jnp.mean(mean), 45), atol=1e-6)
    noisy = D.apply(x, draw._replace(op=jnp.ones(6, int), noise=jnp.ones_like(x)), "crop_noise")
    np.testing.assert_allclose(noisy, batch + 0.001, atol=1e-6)


def test_augment_under_jit_and_vmap(batch):
    x = jnp.asarray(batch)
    aug = jax.jit(D.augment, static_argnums=(2,))
    a, b = aug(jax.random.key(1), x, "crop_scale_rotate"), aug(jax.random.key(2), x,
                                                               "crop_scale_rotate")
    assert a.shape == x.shape and not np.allclose(a, b)
    np.testing.assert_array_equal(aug(jax.random.key(1), x, "crop_scale_rotate"), a)
    keys = jax.random.split(jax.random.key(3), 2)
    many = jax.jit(jax.vmap(lambda k: D.augment(k, x, "crop_scale_rotate")))(keys)
    np.testing.assert_allclose(many[1], aug(keys[1], x, "crop_scale_rotate"), atol=1e-6)
    np.testing.assert_array_equal(D.augment(jax.random.key(0), x, ""), x)


def test_strategy_and_params_validation():
    assert D.parse_strategy("none") == () and D.parse_strategy("crop_noise") == ("crop", "noise")
    with pytest.raises(ValueError, match="flip"):
        D.parse_strategy("crop_flip")
    with pytest.raises(ValueError, match="scale"):
        D.DCAugParams(scale=1.5)
    with pytest.raises(ValueError, match="float images"):
        D.augment(jax.random.key(0), jnp.zeros((2, 8, 8), jnp.float32))
