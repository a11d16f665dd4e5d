"""Tests for fred_jax.synset: budget, init, decode, export."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fred_jax import masks, synset, transforms

C = 3


def _data(spatial, ch, per_class=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(C * per_class,) + spatial + (ch,)).astype(np.float32)
    y = np.repeat(np.arange(C), per_class).astype(np.int32)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


@pytest.fixture(scope="module")
def data2d():
    return _data((8, 8), 3)


def _match_real(decoded, real, labels, c, project):
    """Indices of the real images of class c whose projection equals ``decoded``."""
    members = np.flatnonzero(labels == c)
    close = [np.allclose(decoded, project(real[i]), atol=1e-5) for i in members]
    return members[np.asarray(close)]


def test_instances_per_class():
    assert synset.instances_per_class(1, (32, 32), 64) == 16
    assert synset.instances_per_class(10, (28, 28), 784) == 10
    assert synset.instances_per_class(2, (8, 8, 8), 100) == 10
    with pytest.raises(ValueError, match="k must be in"):
        synset.instances_per_class(1, (8, 8), 65)
    with pytest.raises(ValueError, match="k must be in"):
        synset.instances_per_class(1, (8, 8), 0)
    with pytest.raises(ValueError, match="ipc must be"):
        synset.instances_per_class(0, (8, 8), 4)


@pytest.mark.parametrize("transform", transforms.NAMES)
def test_init_decode_is_projection_of_sampled_reals(data2d, transform):
    x, y = data2d
    k = 16
    s = synset.init(jax.random.key(0), x, y, C, ipc=1, k=k, transform=transform)
    n = 4
    assert s.coeffs.shape == (C, n, k, 3) and s.coeffs.dtype == jnp.float32
    assert s.indices.shape == (C, k) and s.indices.dtype == jnp.int32
    assert (np.diff(np.asarray(s.indices), axis=1) > 0).all()  # sorted, unique
    decoded = np.asarray(synset.decode(s.coeffs, s.indices, s.transform, s.image_shape))
    assert decoded.shape == (C, n, 8, 8, 3)
    b = transforms.basis(transform, (8, 8))  # coeffs_flat = b @ x_flat
    for c in range(C):
        keep = np.zeros(64, bool)
        keep[np.asarray(s.indices[c])] = True

        def project(img):
            flat = img.reshape(64, 3)
            return (b.T @ ((b @ flat) * keep[:, None])).reshape(img.shape)

        found = [_match_real(decoded[c, i], x, y, c, project) for i in range(n)]
        assert all(len(f) == 1 for f in found)
        found = [int(f[0]) for f in found]
        assert len(set(found)) == n
        # The class mask is the EVR mask of exactly these sampled instances.
        freq = np.einsum("ed,ndc->nec", b, x[found].reshape(n, 64, 3)).reshape(n, 8, 8, 3)
        ref = masks.select(freq, k, transform=transform)
        np.testing.assert_array_equal(keep.reshape(8, 8), ref)


def test_identity_full_k_is_the_pixel_baseline(data2d):
    x, y = data2d
    s = synset.init(jax.random.key(1), x, y, C, ipc=2, k=64, transform="identity")
    assert s.n == 2 and synset.decode_method("identity", s.image_shape, C, 64) == "scatter"
    xs, ys = synset.flat(s)
    np.testing.assert_array_equal(ys, np.repeat(np.arange(C), 2))
    for img, c in zip(np.asarray(xs), np.asarray(ys)):
        assert any(np.array_equal(img, x[i]) for i in np.flatnonzero(y == c))


@pytest.mark.parametrize(
    "transform,shape,k,method",
    [(name, (8, 12, 2), 5, "matmul") for name in ("dct", "dft", "dwt")]
    + [("identity", (8, 12, 2), 5, "scatter"), ("dct", (8, 12, 2), 30, "scatter"),
       ("dwt", (4, 8, 4, 1), 5, "matmul")],
)
def test_decode_matches_dense_basis_and_gradient_is_adjoint(transform, shape, k, method):
    spatial, ch = shape[:-1], shape[-1]
    d, n = math.prod(spatial), 3
    assert synset.decode_method(transform, shape, C, k) == method
    rng = np.random.default_rng(0)
    coeffs = rng.normal(size=(C, n, k, ch)).astype(np.float32)
    idx = np.sort([rng.choice(d, k, replace=False) for _ in range(C)]).astype(np.int32)
    b = transforms.basis(transform, spatial)  # row j: image of unit coefficient j
    out = synset.decode(jnp.asarray(coeffs), jnp.asarray(idx), transform, shape)
    ref = np.einsum("cnkh,ckd->cndh", coeffs, b[idx]).reshape((C, n) + shape)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # Orthonormal decode: the gradient of <w, decode(c)> is the forward transform of w
    # (basis @ w), gathered at the kept positions.
    w = rng.normal(size=(C, n) + shape).astype(np.float32)
    g = jax.grad(lambda c: jnp.sum(synset.decode(c, jnp.asarray(idx), transform, shape) * w))(
        jnp.asarray(coeffs))
    fw = np.einsum("ed,cndh->cneh", b, w.reshape(C, n, d, ch))
    np.testing.assert_allclose(g, np.take_along_axis(fw, idx[:, None, :, None], axis=2),
                               atol=1e-5)


def test_init_3d():
    x, y = _data((4, 4, 4), 1, per_class=5)
    s = synset.init(jax.random.key(2), x, y, C, ipc=1, k=16, transform="dct")
    assert s.coeffs.shape == (C, 4, 16, 1) and s.image_shape == (4, 4, 4, 1)
    assert s.images().shape == (C, 4, 4, 4, 4, 1)


def test_init_other_mask_kinds(data2d):
    x, y = data2d
    s = synset.init(jax.random.key(3), x, y, C, ipc=1, k=16, mask_kind="low_pass")
    low = np.flatnonzero(masks.select(np.zeros((1, 8, 8, 1)), 16, "low_pass"))
    np.testing.assert_array_equal(s.indices, np.tile(low, (C, 1)))
    r = synset.init(jax.random.key(3), x, y, C, ipc=1, k=16, mask_kind="random")
    assert not np.array_equal(r.indices[0], r.indices[1])


def test_init_errors(data2d):
    x, y = data2d
    with pytest.raises(ValueError, match="class 0 has 6 images, init needs n=8"):
        synset.init(jax.random.key(0), x, y, C, ipc=2, k=16)
    with pytest.raises(ValueError, match="do not match"):
        synset.init(jax.random.key(0), x, y[:3], C, ipc=1, k=16)
    with pytest.raises(ValueError, match="images must be"):
        synset.init(jax.random.key(0), x[..., 0], y, C, ipc=1, k=16)
    with pytest.raises(ValueError, match="do not match image_shape"):
        synset.decode(jnp.zeros((C, 2, 4, 3)), jnp.zeros((C, 4), jnp.int32), "dct", (8, 8, 1))


def _synset(spatial, n, k, ch=3, transform="dct"):
    rng = np.random.default_rng(0)
    d = math.prod(spatial)
    return synset.SynSet(
        coeffs=jnp.asarray(rng.normal(size=(C, n, k, ch)).astype(np.float32)),
        indices=jnp.asarray(np.sort([rng.choice(d, k, replace=False) for _ in range(C)]),
                            jnp.int32),
        transform=transform,
        image_shape=tuple(spatial) + (ch,),
    )


def test_save_load_round_trip(tmp_path):
    s = _synset((8, 8), n=4, k=16)
    path = tmp_path / "syn.npz"
    synset.save(path, s, mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7), dataset="toy", step=7,
                hparams={"lr": 1e3})
    t, meta = synset.load(path)
    np.testing.assert_array_equal(t.coeffs, s.coeffs)
    np.testing.assert_array_equal(t.indices, s.indices)
    assert t.indices.dtype == jnp.int32 and t.coeffs.dtype == jnp.float32
    assert t.transform == "dct" and t.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(meta["mean"], np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(meta["std"], np.float32([0.5, 0.6, 0.7]))
    np.testing.assert_array_equal(meta["labels"], np.repeat(np.arange(C), 4))
    assert meta["dataset"] == "toy" and meta["step"] == 7 and meta["hparams"] == {"lr": 1e3}
    np.testing.assert_array_equal(t.images(), s.images())
    with np.load(path) as z:  # plain arrays, no pickles
        assert z["indices"].dtype == np.int16
        assert json.loads(str(z["meta"]))["transform"] == "dct"


def test_export_size_grows_with_k_not_image_size(tmp_path):
    def size(s):
        p = tmp_path / "s.npz"
        synset.save(p, s, mean=(0.0,) * 3, std=(1.0,) * 3, dataset="toy")
        return os.path.getsize(p)

    small_k, big_k = size(_synset((16, 16), 8, 16)), size(_synset((16, 16), 8, 64))
    assert big_k - small_k >= C * 8 * 48 * 3 * 4
    small_img, big_img = size(_synset((8, 8), 8, 16)), size(_synset((64, 64), 8, 16))
    assert abs(big_img - small_img) < 64  # header text only
    assert big_img < 0.05 * C * 8 * 64 * 64 * 3 * 4  # far below the dense images


def test_from_real_keeps_the_given_images_and_their_class_masks():
    real = np.random.default_rng(3).normal(size=(2, 4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(synset.from_real(real, k=64).images(), real, atol=1e-5)
    part = synset.from_real(real, k=10)
    assert part.coeffs.shape == (2, 4, 10, 3)
    for c in range(2):
        freq = transforms.get("dct").forward(jnp.asarray(real[c]))
        want = np.flatnonzero(np.asarray(masks.select(freq, 10)))
        np.testing.assert_array_equal(np.asarray(part.indices[c]), want)
        np.testing.assert_allclose(np.asarray(part.coeffs[c]),
                                   np.asarray(freq).reshape(4, 64, 3)[:, want], atol=1e-6)
