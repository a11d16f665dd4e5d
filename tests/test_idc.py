"""fred_jax.idc: IDC's multi-formation (factor 2) as a linear decode of the synthetic set.

Expected arrays were produced once with torch 2.13 (``.venv-ref``):
``nn.Upsample(size, mode="bilinear"/"trilinear")`` and ``F.interpolate(x, size)`` (nearest),
the calls of IDC's ``condense.py`` (``Synthesizer.resize`` / ``init``)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fred_jax import idc, synset

# nn.Upsample(size=(4, 4), mode="bilinear")(tensor([[1, 2], [3, 5]]))
UP_2x2 = np.array([[1.0, 1.25, 1.75, 2.0],
                   [1.5, 1.8125, 2.4375, 2.75],
                   [2.5, 2.9375, 3.8125, 4.25],
                   [3.0, 3.5, 4.5, 5.0]])
# nn.Upsample(size=(6, 4), mode="bilinear")(tensor([[0, 4], [8, -4], [2, 6]]))
UP_3x2 = np.array([[0.0, 1.0, 3.0, 4.0],
                   [2.0, 2.0, 2.0, 2.0],
                   [6.0, 4.0, 0.0, -2.0],
                   [6.5, 4.5, 0.5, -1.5],
                   [3.5, 3.5, 3.5, 3.5],
                   [2.0, 3.0, 5.0, 6.0]])
# nn.Upsample(size=(4, 4, 4), mode="trilinear")(arange(8).reshape(2, 2, 2) ** 2)
UP_2x2x2 = np.array([
    [[0.0, 0.25, 0.75, 1.0], [1.0, 1.5, 2.5, 3.0], [3.0, 4.0, 6.0, 7.0],
     [4.0, 5.25, 7.75, 9.0]],
    [[4.0, 4.75, 6.25, 7.0], [6.0, 7.0, 9.0, 10.0], [10.0, 11.5, 14.5, 16.0],
     [12.0, 13.75, 17.25, 19.0]],
    [[12.0, 13.75, 17.25, 19.0], [16.0, 18.0, 22.0, 24.0], [24.0, 26.5, 31.5, 34.0],
     [28.0, 30.75, 36.25, 39.0]],
    [[16.0, 18.25, 22.75, 25.0], [21.0, 23.5, 28.5, 31.0], [31.0, 34.0, 40.0, 43.0],
     [36.0, 39.25, 45.75, 49.0]]])


def test_upsample_matches_torch_bilinear_and_trilinear():
    x = np.array([[1.0, 2.0], [3.0, 5.0]])[None, :, :, None]  # [1, 2, 2, 1]
    np.testing.assert_array_equal(np.asarray(idc.upsample(x))[0, ..., 0], UP_2x2)
    y = np.array([[0.0, 4.0], [8.0, -4.0], [2.0, 6.0]])[:, :, None]
    np.testing.assert_array_equal(np.asarray(idc.upsample(y))[..., 0], UP_3x2)
    z = (np.arange(8.0).reshape(2, 2, 2) ** 2)[..., None]
    np.testing.assert_array_equal(np.asarray(idc.upsample(z, ndim=3))[..., 0], UP_2x2x2)


def test_upsample_matrix_rows_sum_to_one_and_footprints_to_factor():
    m = idc.upsample_matrix(16, 32)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    # interior low-res pixels spread a total weight of 2 per axis (4 per 2-D footprint)
    np.testing.assert_allclose(m.sum(axis=0)[1:-1], 2.0)
    np.testing.assert_allclose(idc.basis((8, 8)).sum(axis=1).reshape(4, 4)[1:3, 1:3], 4.0)


def test_downsample_is_torch_nearest():
    a = np.arange(36.0).reshape(1, 6, 6, 1)
    np.testing.assert_array_equal(idc.downsample(a)[0, ..., 0],
                                  [[0, 2, 4], [12, 14, 16], [24, 26, 28]])
    b = np.arange(64.0).reshape(4, 4, 4, 1)
    np.testing.assert_array_equal(idc.downsample(b, ndim=3)[..., 0],
                                  [[[0, 2], [8, 10]], [[32, 34], [40, 42]]])


@pytest.mark.parametrize("image_shape, factor_instances", [((32, 32, 3), 4), ((28, 28, 1), 4),
                                                           ((16, 16, 16, 1), 8)])
def test_budget_buys_factor_power_ndim_instances(image_shape, factor_instances):
    spatial = image_shape[:-1]
    k = idc.kept_per_channel(spatial)
    assert k == math.prod(spatial) // factor_instances
    for ipc in (1, 2, 10):
        n = synset.instances_per_class(ipc, spatial, k)
        assert n == factor_instances * ipc
        assert n * k == ipc * math.prod(spatial)  # same stored floats as ipc images


def test_positions_are_the_leading_low_res_block():
    np.testing.assert_array_equal(idc.positions((4, 6)), [0, 1, 2, 6, 7, 8])
    p = idc.positions((4, 4, 4))
    np.testing.assert_array_equal(p, [0, 1, 4, 5, 16, 17, 20, 21])
    assert np.all(np.diff(p) > 0)


@pytest.mark.parametrize("image_shape", [(8, 6, 3), (32, 32, 3), (4, 4, 4, 1)])
def test_decode_through_the_basis_equals_upsampling(image_shape):
    assert idc.check_decode(image_shape) < 1e-12
    spatial, ch = image_shape[:-1], image_shape[-1]
    low = idc.low_res_shape(spatial)
    k = math.prod(low)
    coeffs = jax.random.normal(jax.random.PRNGKey(0), (3, 5, k, ch))
    indices = jnp.tile(jnp.asarray(idc.positions(spatial)), (3, 1))
    fast = idc.decode(coeffs, indices, image_shape)
    via_basis = idc.decode_via_basis(coeffs, indices, image_shape)
    direct = idc.upsample(coeffs.reshape((3, 5) + low + (ch,)), ndim=len(spatial))
    assert fast.shape == (3, 5) + tuple(image_shape)
    np.testing.assert_allclose(fast, via_basis, atol=2e-6)
    np.testing.assert_array_equal(fast, direct)


def test_decode_gradient_is_the_transposed_basis():
    image_shape = (8, 8, 1)
    k = idc.kept_per_channel(image_shape[:-1])
    indices = jnp.asarray(idc.positions(image_shape[:-1]))[None]
    w = jax.random.normal(jax.random.PRNGKey(1), (1, 1) + image_shape)
    g = jax.grad(lambda c: jnp.sum(idc.decode(c, indices, image_shape) * w))(
        jnp.zeros((1, 1, k, 1)))
    np.testing.assert_allclose(np.asarray(g)[0, 0, :, 0],
                               idc.basis((8, 8)) @ np.asarray(w).reshape(-1), atol=1e-5)


def test_init_from_real_is_the_downsampled_real_images():
    real = np.random.default_rng(0).standard_normal((2, 4, 8, 8, 3)).astype(np.float32)
    coeffs, indices = idc.init_from_real(real)
    assert coeffs.shape == (2, 4, 16, 3) and indices.shape == (2, 16)
    np.testing.assert_array_equal(coeffs.reshape(2, 4, 4, 4, 3), real[:, :, ::2, ::2])
    np.testing.assert_array_equal(indices[1], idc.positions((8, 8)))
    decoded = np.asarray(idc.decode(jnp.asarray(coeffs), jnp.asarray(indices), (8, 8, 3)))
    np.testing.assert_array_equal(decoded, np.asarray(idc.upsample(real[:, :, ::2, ::2])))


def _decode_zoom(stored: np.ndarray, factor: int) -> np.ndarray:
    """IDC's ``decode_zoom`` on one class's stored images ``[ipc, H, W, ch]`` (channels-last):
    crops in (i, j) row-major order, each upsampled, crop-major output order."""
    s = stored.shape[1] // factor
    crops = [stored[:, i * s:(i + 1) * s, j * s:(j + 1) * s]
             for i in range(factor) for j in range(factor)]
    return np.asarray(idc.upsample(np.concatenate(crops), factor))


def test_to_stored_is_idc_layout_and_decode_zoom_gives_the_same_instances():
    rng = np.random.default_rng(3)
    ipc, image_shape = 3, (8, 8, 2)
    coeffs = rng.standard_normal((2, 4 * ipc, 16, 2)).astype(np.float32)
    indices = np.tile(idc.positions((8, 8)), (2, 1))
    stored = idc.to_stored(coeffs, image_shape)
    assert stored.shape == (2, ipc, 8, 8, 2) and stored.size == coeffs.size
    # instance t = q * ipc + m is crop q of stored image m
    np.testing.assert_array_equal(stored[1, 2, 4:, :4], coeffs[1, 2 * ipc + 2].reshape(4, 4, 2))
    ours = np.asarray(idc.decode(jnp.asarray(coeffs), jnp.asarray(indices), image_shape))
    for c in range(2):
        np.testing.assert_allclose(ours[c], _decode_zoom(stored[c], 2), atol=1e-6)


def test_to_stored_3d_puts_crops_in_row_major_order():
    coeffs = np.arange(8 * 8, dtype=np.float32).reshape(1, 8, 8, 1)  # ipc 1, 8 crops of 2^3
    stored = idc.to_stored(coeffs, (4, 4, 4, 1))[0, 0, ..., 0]
    for q, (a, b, c) in enumerate(np.ndindex(2, 2, 2)):
        np.testing.assert_array_equal(stored[2 * a:2 * a + 2, 2 * b:2 * b + 2, 2 * c:2 * c + 2],
                                      coeffs[0, q, :, 0].reshape(2, 2, 2))


def test_sizes_not_divisible_by_the_factor_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        idc.low_res_shape((7, 8))
    with pytest.raises(ValueError, match="divisible"):
        idc.downsample(np.zeros((1, 5, 4, 1)))
    with pytest.raises(ValueError, match="multiple of 4"):
        idc.to_stored(np.zeros((1, 3, 4, 1)), (4, 4, 1))


def test_synset_init_decode_and_export_with_the_idc_transform(tmp_path):
    rng = np.random.default_rng(5)
    images = rng.standard_normal((40, 8, 8, 3)).astype(np.float32)
    labels = np.arange(40) % 2
    k = idc.kept_per_channel((8, 8))
    s = synset.init(jax.random.PRNGKey(0), images, labels, 2, ipc=2, k=k, transform=idc.TRANSFORM)
    assert s.coeffs.shape == (2, 8, 16, 3) and s.n == 4 * 2
    # every instance is the nearest-downsampled image of a distinct real member of its class
    low = idc.downsample(images).reshape(40, 16, 3)
    for c in range(2):
        hits = [int(np.flatnonzero((low == s.coeffs[c, t]).all(axis=(1, 2)))[0])
                for t in range(8)]
        assert len(set(hits)) == 8 and all(labels[h] == c for h in hits)
    np.testing.assert_array_equal(
        s.images(), idc.upsample(np.asarray(s.coeffs).reshape(2, 8, 4, 4, 3)))
    synset.save(tmp_path / "s.npz", s, mean=[0.0] * 3, std=[1.0] * 3, dataset="toy")
    back, meta = synset.load(tmp_path / "s.npz")
    assert back.transform == "idc" and meta["labels"].tolist() == [0] * 8 + [1] * 8
    np.testing.assert_array_equal(back.images(), s.images())
    with pytest.raises(ValueError, match="k=8"):
        synset.init(jax.random.PRNGKey(0), images, labels, 2, ipc=2, k=8, transform="idc")
