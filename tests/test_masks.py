"""Tests for fred_jax.masks: the paper's EVR rule and the ablation selectors."""

import jax
import numpy as np
import pytest

from fred_jax import masks, transforms

SPATIAL = (4, 6)


@pytest.fixture(scope="module")
def coeffs():
    # Per-position scales make EVR and amplitude orderings distinct and tie-free.
    rng = np.random.default_rng(0)
    scale = rng.permutation(np.arange(1, 25)).reshape(SPATIAL)[None, :, :, None]
    return (rng.normal(size=(9,) + SPATIAL + (3,)) * scale).astype(np.float32)


def _top(score, k):
    flat = np.asarray(score).reshape(-1)
    out = np.zeros(flat.shape, bool)
    out[np.argsort(-flat, kind="stable")[:k]] = True
    return out.reshape(score.shape)


def test_evr_matches_numpy(coeffs):
    c64 = coeffs.astype(np.float64)
    m = c64.mean(axis=-1)  # channel average, [N, *spatial]
    var = ((m - m.mean(axis=0)) ** 2).mean(axis=0)  # variance over the instances
    ref = var / var.sum()
    evr = masks.explained_variance_ratio(coeffs)
    assert evr.shape == SPATIAL
    np.testing.assert_allclose(evr, ref, rtol=1e-5)
    assert float(evr.sum()) == pytest.approx(1.0, abs=1e-6)


def test_evr_zero_variance_is_zero_and_ties_take_lowest_index():
    one = np.ones((1,) + SPATIAL + (2,), np.float32)
    np.testing.assert_array_equal(masks.explained_variance_ratio(one), 0.0)
    mask = np.asarray(masks.select(one, 5)).reshape(-1)
    np.testing.assert_array_equal(np.flatnonzero(mask), np.arange(5))


@pytest.mark.parametrize("kind", masks.KINDS)
def test_exactly_k(coeffs, kind):
    for k in (1, 7) + ((24,) if kind in ("evr", "band_stop") else ()):
        mask = masks.select(coeffs, k, kind, key=jax.random.key(0))
        assert mask.shape == SPATIAL and mask.dtype == bool
        assert int(mask.sum()) == k


def test_evr_and_amplitude_pick_the_top_scores(coeffs):
    k = 7
    m = coeffs.astype(np.float64).mean(-1)
    np.testing.assert_array_equal(masks.select(coeffs, k, "evr_orthonormal"),
                                  _top(m.var(axis=0), k))
    amp = np.abs(coeffs.astype(np.float64)).mean(axis=(0, 3))
    np.testing.assert_array_equal(masks.select(coeffs, k, "amplitude"), _top(amp, k))


def test_frequency_orderings():
    c = np.zeros((2, 4, 4, 1), np.float32)
    pos = lambda m: set(map(tuple, np.argwhere(np.asarray(m))))  # noqa: E731
    assert pos(masks.select(c, 1, "low_pass")) == {(0, 0)}
    assert pos(masks.select(c, 3, "low_pass")) == {(0, 0), (0, 1), (1, 0)}
    assert pos(masks.select(c, 1, "high_pass")) == {(3, 3)}
    # Hartley spectra wrap: index 3 of 4 is frequency 1, like index 1.
    assert pos(masks.select(c, 5, "low_pass", transform="dft")) == {
        (0, 0), (0, 1), (0, 3), (1, 0), (3, 0)
    }
    assert pos(masks.select(c, 1, "high_pass", transform="dft")) == {(2, 2)}
    # band_stop keeps the 2 lowest and the 2 highest, dropping the middle band.
    assert pos(masks.select(c, 4, "band_stop")) == {(0, 0), (0, 1), (3, 3), (3, 2)}


def test_random_needs_key_and_is_reproducible(coeffs):
    with pytest.raises(ValueError, match="key"):
        masks.select(coeffs, 3, "random")
    a = masks.select(coeffs, 6, "random", key=jax.random.key(1))
    b = masks.select(coeffs, 6, "random", key=jax.random.key(1))
    c = masks.select(coeffs, 6, "random", key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_select_is_jittable(coeffs):
    f = jax.jit(masks.select, static_argnums=(1, 2))
    np.testing.assert_array_equal(f(coeffs, 5, "evr"), masks.select(coeffs, 5))


def test_class_masks(coeffs):
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    cm = masks.class_masks(coeffs, labels, 3, k=5)
    assert cm.shape == (3,) + SPATIAL and cm.dtype == bool
    np.testing.assert_array_equal(cm.reshape(3, -1).sum(axis=1), 5)
    for c in range(3):
        np.testing.assert_array_equal(cm[c], masks.select(coeffs[labels == c], 5))
    # Shared across channels: permuting channels leaves the masks unchanged.
    np.testing.assert_array_equal(masks.class_masks(coeffs[..., ::-1], labels, 3, k=5), cm)
    key = jax.random.key(3)
    rnd = masks.class_masks(coeffs, labels, 3, k=5, kind="random", key=key)
    np.testing.assert_array_equal(
        rnd[2], masks.select(coeffs[labels == 2], 5, "random", jax.random.fold_in(key, 2))
    )


def test_errors(coeffs):
    with pytest.raises(ValueError, match="k must be"):
        masks.select(coeffs, 0)
    with pytest.raises(ValueError, match="k must be"):
        masks.select(coeffs, 25)
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.select(coeffs, 3, "median")
    with pytest.raises(ValueError, match="no instances"):
        masks.class_masks(coeffs, np.zeros(9, int), 2, k=3)
    with pytest.raises(ValueError, match="do not match"):
        masks.class_masks(coeffs, np.zeros(4, int), 1, k=3)


def test_evr_ranks_the_official_unnormalised_dct_variance(coeffs):
    """``evr`` on dct ranks the variance of torch-dct's unnormalised coefficients (ours times
    ``torch_dct_scale``: x2 on the first row and column, x4 at DC); ``evr_orthonormal`` ranks
    ours as they are; other transforms have no official scaling."""
    k = 7
    m = coeffs.astype(np.float64).mean(-1)
    scaled = m.var(axis=0) * transforms.torch_dct_scale(SPATIAL) ** 2
    evr = masks.select(coeffs, k)
    orth = masks.select(coeffs, k, "evr_orthonormal")
    np.testing.assert_array_equal(evr, _top(scaled, k))
    np.testing.assert_array_equal(orth, _top(m.var(axis=0), k))
    # Std 0.9 on the first row and column, 1 elsewhere: scaled, their variance is 1.62 (x2)
    # or 3.24 (DC, x4) against 1, so evr keeps only them; evr_orthonormal keeps the rest.
    std = np.ones(SPATIAL)
    std[0, :] = std[:, 0] = 0.9
    edge = np.asarray(std < 1)
    x = (np.random.default_rng(1).normal(size=(400,) + SPATIAL + (1,)) * std[..., None])
    assert np.all(edge[np.asarray(masks.select(x.astype(np.float32), k))])
    assert not np.any(edge[np.asarray(masks.select(x.astype(np.float32), k, "evr_orthonormal"))])
    np.testing.assert_allclose(
        masks.explained_variance_ratio(coeffs, transforms.torch_dct_scale(SPATIAL)),
        scaled / scaled.sum(), rtol=1e-5)
    for t in ("dwt", "dft", "identity"):
        np.testing.assert_array_equal(masks.select(coeffs, k, transform=t), orth)
