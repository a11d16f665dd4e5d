"""DM and DC objectives, the learning-rate convention of the official (unnormalised DCT) code."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.fft

from fred_jax import configuration, data, models, objectives, optimizer, synset, transforms
from fred_jax.objectives import dc, dm

C, H, CH = 3, 8, 2
SHAPE = (H, H, CH)
STRATEGY = "color_crop_flip"  # cheap ops: compile time dominates these tests


@pytest.fixture(scope="module")
def net():
    model = models.ConvNet(C, width=8, depth=2)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)))
    return model, variables


def _images(key, *lead):
    return jax.random.normal(jax.random.PRNGKey(key), (*lead, *SHAPE))


# ----------------------------------------------------------------------------- lr convention


def test_torch_dct_scale_matches_unnormalised_dct():
    x = np.random.default_rng(0).normal(size=(6, 5))
    ratio = scipy.fft.dctn(x, type=2, norm=None) / scipy.fft.dctn(x, type=2, norm="ortho")
    np.testing.assert_allclose(ratio, transforms.torch_dct_scale((6, 5)), rtol=1e-10)


def test_lr_convention_reproduces_sgd_on_unnormalised_coefficients():
    """SGD+momentum with lr_ref on torch-dct (norm=None) coefficients == our optimiser with
    lr_convention='torch_dct' on orthonormal kept coefficients: same images every step."""
    rng = np.random.default_rng(1)
    num_classes, n, k, lr_ref, momentum = 2, 3, 10, 30.0, 0.5
    x0 = jnp.asarray(rng.normal(size=(num_classes, n, *SHAPE)), jnp.float32)
    target = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
    indices = np.stack([np.sort(rng.choice(H * H, k, replace=False)) for _ in range(num_classes)])
    mask = np.zeros((num_classes, 1, H * H, 1), np.float32)
    for c in range(num_classes):
        mask[c, 0, indices[c]] = 1.0
    mask = jnp.asarray(mask.reshape(num_classes, 1, H, H, 1))
    s = jnp.asarray(transforms.torch_dct_scale((H, H)), jnp.float32)[..., None]
    dct = transforms.get("dct")

    def loss_images(x):
        return jnp.sum(jnp.sin(x) * target) + 0.1 * jnp.sum(x**4)

    # Reference: full unnormalised spectrum, masked, decoded by its exact inverse.
    c_ref = dct.forward(x0) * s
    buf = jnp.zeros_like(c_ref)
    grad_ref = jax.jit(jax.grad(lambda c: loss_images(dct.inverse(mask * c / s))))

    # Ours: kept orthonormal coefficients only.
    coeffs = jnp.take_along_axis(
        dct.forward(x0).reshape(num_classes, n, H * H, CH), jnp.asarray(indices)[:, None, :, None],
        axis=2)
    tx = optimizer.make_optimizer(
        lr_ref, momentum, optimizer.coefficient_lr_scale(indices, SHAPE, "dct", "torch_dct"), {})
    learnable = {"coeffs": coeffs}
    opt_state = tx.init(learnable)
    apply = jax.jit(optimizer.make_apply(tx))

    def decode(co):
        return synset.decode(co, jnp.asarray(indices), "dct", SHAPE)

    grad_ours = jax.jit(jax.grad(lambda l: loss_images(decode(l["coeffs"]))))
    for _ in range(4):
        g = grad_ref(c_ref)
        buf = momentum * buf + g
        c_ref = c_ref - lr_ref * buf
        learnable, opt_state = apply(learnable, opt_state, grad_ours(learnable))
        np.testing.assert_allclose(decode(learnable["coeffs"]), dct.inverse(mask * c_ref / s),
                                   rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(dct.inverse(mask * c_ref / s) - dct.inverse(mask * dct.forward(x0))).max()) > 0.1


def test_lr_convention_errors():
    idx = np.zeros((1, 4), np.int32)
    with pytest.raises(ValueError, match="needs transform 'dct'"):
        optimizer.coefficient_lr_scale(idx, SHAPE, "dwt", "torch_dct")
    with pytest.raises(ValueError, match="lr_convention"):
        optimizer.coefficient_lr_scale(idx, SHAPE, "dct", "torch")
    np.testing.assert_array_equal(
        optimizer.coefficient_lr_scale(idx, SHAPE, "dwt", "orthonormal"), 1)


def test_auto_conv_impl_per_objective():
    """"auto" resolves per objective on this CPU backend; explicit names are kept."""
    config = configuration.defaults()
    assert config.conv_impl == "auto"
    got = {}
    for name in objectives.NAMES:
        config.objective = name
        got[name] = objectives.conv_impl(config)
    assert got == {"dm": "tapgrad", "dc": "im2col", "tm": "im2col"}
    config.conv_impl = "lax"
    assert objectives.conv_impl(config) == "lax"


# ----------------------------------------------------------------------------- DM


@pytest.mark.parametrize("chunk", [0, 4])
def test_dm_loss_matches_direct_sum(net, chunk):
    """Chunked real embeddings (6 images, chunk 4 -> passes of 3) give the same loss."""
    model, variables = net
    real, syn = _images(1, C, 6), _images(2, C, 2)
    got = jax.jit(lambda r, s: dm.loss(model, variables, r, s, jax.random.PRNGKey(3),
                                       strategy="", chunk=chunk))(real, syn)
    emb = jax.jit(lambda x: model.apply(variables, x, features=True))
    want = sum(float(jnp.sum((emb(real[c]).mean(0) - emb(syn[c]).mean(0)) ** 2))
               for c in range(C))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_dm_batchnorm_normalises_all_classes_together():
    """BatchNorm matching networks see every class's real images in one batch and every
    synthetic image in another (the reference), whatever ``chunk`` says."""
    model = models.ConvNet(C, width=8, depth=2, norm="batchnorm")
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, *SHAPE)))
    real, syn = 3.0 + _images(1, C, 4), _images(2, C, 2)
    got = jax.jit(lambda r, s: dm.loss(model, variables, r, s, jax.random.PRNGKey(3),
                                       strategy="", chunk=2))(real, syn)

    def means(x):
        feats = dm.embed(model, variables, x.reshape(-1, *SHAPE))
        return feats.reshape(C, x.shape[1], -1).mean(1)

    per_class = sum(float(jnp.sum((dm.embed(model, variables, real[c]).mean(0)
                                   - dm.embed(model, variables, syn[c]).mean(0)) ** 2))
                    for c in range(C))
    want = float(jnp.sum((means(real) - means(syn)) ** 2))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert abs(per_class - want) > 1e-3 * want  # per-class statistics would differ


def test_dm_chunks_keep_augmented_loss_and_gradient(net):
    """With DSA on, chunking the real side (6 -> passes of 2, each augmented with its class's
    key) and the synthetic side (3C images -> unrolled pieces of 2 and a remainder) changes
    neither the loss nor the gradient."""
    model, variables = net
    real, syn = _images(1, C, 6), _images(2, C, 3)
    key = jax.random.PRNGKey(5)

    def value_and_grad(chunk):
        return jax.jit(jax.value_and_grad(lambda s: dm.loss(
            model, variables, real, s, key, strategy=STRATEGY, chunk=chunk)))(syn)

    (whole, g_whole), (chunked, g_chunked) = value_and_grad(0), value_and_grad(2)
    assert float(whole) > 1e-3
    np.testing.assert_allclose(float(chunked), float(whole), rtol=1e-5)
    np.testing.assert_allclose(g_chunked, g_whole, rtol=1e-4, atol=1e-7)


def test_dm_chunk_size():
    assert [dm.chunk_size(256, c) for c in (1, 32, 48, 300)] == [1, 32, 32, 256]
    assert dm.chunk_size(6, 4) == 3


def test_dm_siamese_dsa_and_gradient_only_to_syn(net):
    model, variables = net
    real = _images(1, C, 4)
    key = jax.random.PRNGKey(7)
    loss_fn = jax.jit(lambda r, s: dm.loss(model, variables, r, s, key, strategy=STRATEGY))
    # The same images on both sides with a shared per-class key: identical augmentation.
    assert float(loss_fn(real, real)) < 1e-8
    syn = _images(2, C, 4)
    g_real, g_syn = jax.jit(jax.grad(loss_fn, (0, 1)))(real, syn)
    assert float(jnp.abs(g_real).max()) == 0.0
    assert float(jnp.abs(g_syn).max()) > 0.0


# ----------------------------------------------------------------------------- DC


def _distance_wb_reference(gwr, gws):
    """NumPy port of the reference distance_wb on PyTorch-layout gradients."""
    shape = gwr.shape
    if len(shape) == 1:
        return 0.0
    gwr = gwr.reshape(shape[0], -1)
    gws = gws.reshape(shape[0], -1)
    return np.sum(1 - np.sum(gwr * gws, -1)
                  / (np.linalg.norm(gwr, axis=-1) * np.linalg.norm(gws, axis=-1) + 1e-6))


def test_layer_distance_matches_reference_layout():
    rng = np.random.default_rng(0)
    conv_r, conv_s = rng.normal(size=(2, 3, 3, 4, 5))  # flax [kh, kw, in, out]
    dense_r, dense_s = rng.normal(size=(2, 7, 6))  # flax [in, out]
    bias_r, bias_s = rng.normal(size=(2, 5))
    for fr, fs, torch_perm in ((conv_r, conv_s, (3, 2, 0, 1)), (dense_r, dense_s, (1, 0))):
        want = _distance_wb_reference(fr.transpose(torch_perm), fs.transpose(torch_perm))
        np.testing.assert_allclose(float(dc.layer_distance(jnp.asarray(fr), jnp.asarray(fs))),
                                   want, rtol=1e-5)
    assert float(dc.layer_distance(jnp.asarray(bias_r), jnp.asarray(bias_s))) == 0.0
    tree_r = {"a": jnp.asarray(conv_r), "b": jnp.asarray(bias_r)}
    np.testing.assert_allclose(float(dc.match_distance(tree_r, tree_r)), 0.0, atol=1e-5)


def test_dc_loss_per_class_and_second_order(net):
    model, variables = net
    params = variables["params"]
    real, syn = _images(1, C, 6), _images(2, C, 2)
    key = jax.random.PRNGKey(0)
    loss_fn = jax.jit(lambda s: dc.loss(model, params, real, s, key, strategy=""))
    grad_fn = jax.jit(jax.grad(lambda p, x, c: dc.cross_entropy(
        model, p, x, jnp.full((x.shape[0],), c))))
    distance = jax.jit(dc.match_distance)
    want = sum(float(distance(grad_fn(params, real[c], c), grad_fn(params, syn[c], c)))
               for c in range(C))
    np.testing.assert_allclose(float(loss_fn(syn)), want, rtol=1e-4)
    grad = jax.jit(jax.grad(loss_fn))(syn)
    assert grad.shape == syn.shape and float(jnp.abs(grad).max()) > 0


def test_dc_schedule():
    assert dc.loops(1) == (1, 1) and dc.loops(10) == (10, 50) and dc.loops(50) == (50, 10)
    assert dc.loops(2) == (1, 1) and dc.loops(11) == (10, 50) and dc.loops(51) == (50, 10)
    with pytest.raises(ValueError, match="no reference loop schedule"):
        dc.loops(3)


def test_train_network_fits_the_synthetic_set(net):
    model, variables = net
    x = _images(4, 2 * C)
    y = jnp.arange(2 * C) % C
    before = float(dc.cross_entropy(model, variables["params"], x, y))
    params = jax.jit(lambda p: dc.train_network(model, p, x, y, jax.random.PRNGKey(0), epochs=20,
                                                lr=0.1, batch_size=4))(variables["params"])
    assert float(dc.cross_entropy(model, params, x, y)) < 0.5 * before


# ----------------------------------------------------------------------------- built objectives


@pytest.fixture(scope="module")
def problem(net):
    model, _ = net
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(C * 10, *SHAPE)), jnp.float32)
    y = jnp.asarray(np.repeat(np.arange(C), 10), jnp.int32)
    init = synset.init(jax.random.PRNGKey(0), x, y, C, ipc=1, k=16, transform="dct")

    def decode(coeffs):
        return synset.decode(coeffs, init.indices, "dct", SHAPE)

    prob = objectives.Problem(decode=decode, x_train=x, y_train=y,
                              class_index=data.class_index(y, C), model=model, num_classes=C,
                              image_shape=SHAPE, ipc=1, instances_per_class=init.n)
    return prob, init


def _config(objective):
    cfg = ml_collections.ConfigDict({
        "objective": objective, "dsa_strategy": "flip",
        "dm": {"batch_real": 8, "chunk": 4},
        "dc": {"batch_real": 8, "batch_train": 4, "lr_net": 0.01, "outer_loop": 2,
               "inner_loop": 1},
    })
    return cfg


@pytest.mark.parametrize("name", ["dm", "dc"])
def test_built_objective_update_decreases_nothing_breaks(problem, name):
    prob, init = problem
    objective = objectives.build(_config(name), prob)
    tx = optimizer.make_optimizer(1.0, 0.5, np.ones((C, 1, init.k, 1), np.float32), {})
    learnable = {"coeffs": init.coeffs}
    opt_state = tx.init(learnable)
    update = jax.jit(lambda l, o, k: objective.update(l, o, k, optimizer.make_apply(tx)))
    new, _, metrics = update(learnable, opt_state, jax.random.PRNGKey(1))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
    assert new["coeffs"].shape == init.coeffs.shape
    assert float(jnp.abs(new["coeffs"] - init.coeffs).max()) > 0


def test_unknown_objective(problem):
    with pytest.raises(ValueError, match="unknown objective"):
        objectives.build(_config("kd"), problem[0])
