"""Tests for fred_jax.models: reference parameter counts, shapes, BatchNorm, conv impls in a
ConvNet (the kernels themselves: tests/test_conv.py)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fred_jax import models

CIFAR = (32, 32, 3)
MNIST = (28, 28, 1)

# Official DC/DSA/DM/MTT code (torch), 10 classes.
PINNED_CIFAR = {
    "ConvNet": 320010,
    "ConvNetBN": 320010,
    "ConvNetD4": 452490,
    "ConvNetW64": 86282,
    "AlexNet": 1872202,
    "VGG11": 9231114,
    "ResNet18": 11173962,
    "ResNet18BN_AP": 11250762,
    "LeNet": 62006,
    "MLP": 411146,
}
# Derived by hand from the reference layer definitions.
DERIVED_CIFAR = {
    "ConvNetNN": 319242,  # ConvNet minus 3 x (128 scale + 128 offset)
    "ConvNetLN": 663306,  # + LayerNorm([128, h, w]) affine at 32, 16, 8
    "ConvNetNP": 1610250,  # classifier on 128 * 32 * 32
    "ConvNetW32": 24714,
    "ResNet18_AP": 11250762,
    "ResNet18BN": 11173962,
    "VGG11BN": 9231114,
    "AlexNetBN": 1874122,  # + 2 x (128 + 192 + 256 + 192 + 192)
}
VOXELS = (16, 16, 16, 1)  # 3D-MNIST
PINNED_MNIST = {
    "ConvNet": 317706,  # first conv pads by 3: 28 -> 32
    "MLP": 118282,  # 784 -> 128 -> 128 -> 10
    "LeNet": 61706,  # first conv pads by 2
    "AlexNet": 1865802,  # first conv pads by 4: 28 -> 32
    "ResNet18_AP": 11213770,  # classifier on 512 * 3 * 3
}


def _normal(seed, shape):
    """Test inputs from numpy: no PRNG compilation."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _shape_of(name):
    return VOXELS if name == "ConvNet3D" else CIFAR


def _abstract_variables(model, shape):
    x = jnp.zeros((1, *shape), jnp.float32)
    return jax.eval_shape(lambda k: model.init(k, x), jax.random.key(0))


def _num_params(name, shape, num_classes=10):
    variables = _abstract_variables(models.get(name, num_classes, shape), shape)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("name,count", sorted({**PINNED_CIFAR, **DERIVED_CIFAR}.items()))
def test_param_counts_cifar(name, count):
    assert _num_params(name, CIFAR) == count


@pytest.mark.parametrize("name,count", sorted(PINNED_MNIST.items()))
def test_param_counts_mnist(name, count):
    assert _num_params(name, MNIST) == count


@pytest.mark.parametrize("name", models.ARCHS)
def test_every_arch_traces_with_right_shapes(name):
    """Every architecture builds; logits [N, C] and features [N, F] (F = classifier input)."""
    shape = _shape_of(name)
    model = models.get(name, 7, shape)
    variables = _abstract_variables(model, shape)
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    feats = jax.eval_shape(lambda v, x: model.apply(v, x, features=True), variables, x)
    assert logits.shape == (2, 7)
    assert feats.ndim == 2 and feats.shape[0] == 2
    head = [v for k, v in variables["params"].items() if k in ("classifier", "fc", "fc_3")]
    assert len(head) == 1 and head[0]["kernel"].shape == (feats.shape[1], 7)
    assert ("batch_stats" in variables) == (name in models.BATCHNORM_ARCHS)
    if name in models.BATCHNORM_ARCHS:
        logits, updates = jax.eval_shape(
            lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x
        )
        assert logits.shape == (2, 7)
        assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
            variables["batch_stats"]
        )


def test_convnet_feature_sizes():
    def feat_dim(name, shape):
        model = models.get(name, 10, shape)
        x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
        out = jax.eval_shape(lambda v, x: model.apply(v, x, features=True),
                             _abstract_variables(model, shape), x)
        return out.shape[1]

    assert feat_dim("ConvNet", CIFAR) == 2048
    assert feat_dim("ConvNet", MNIST) == 2048
    assert feat_dim("ConvNetD4", (64, 64, 3)) == 2048
    assert feat_dim("ConvNetD5", (128, 128, 3)) == 2048
    assert feat_dim("ResNet18", CIFAR) == 512
    assert feat_dim("VGG11", CIFAR) == 512
    assert feat_dim("AlexNet", CIFAR) == 3072
    assert feat_dim("MLP", CIFAR) == 128


def test_get_validates():
    with pytest.raises(ValueError, match="unknown architecture"):
        models.get("ConvNetX", 10, CIFAR)
    with pytest.raises(ValueError, match="conv_impl"):
        models.get("ConvNet", 10, CIFAR, conv_impl="fft")
    with pytest.raises(ValueError, match="image_shape"):
        models.get("ConvNet", 10, (32, 32))
    with pytest.raises(ValueError, match="image_shape"):
        models.get("ConvNet3D", 10, CIFAR)
    with pytest.raises(ValueError, match="num_classes"):
        models.get("ConvNet", 0, CIFAR)


@pytest.fixture(scope="module")
def convnet():
    """ConvNet on 2 CIFAR-shaped images with both conv impls sharing one parameter set."""
    lax_model = models.get("ConvNet", 10, CIFAR)
    im2col_model = models.get("ConvNet", 10, CIFAR, conv_impl="im2col")
    variables = models.init(lax_model, jax.random.key(0), CIFAR)
    x = _normal(1, (2, *CIFAR))
    return lax_model, im2col_model, variables, x


def test_init_matches_pytorch_default(convnet):
    _, _, variables, _ = convnet
    params = variables["params"]
    assert set(variables) == {"params"}
    for name, fan_in in (("conv0", 27), ("conv1", 1152), ("classifier", 2048)):
        bound = 1 / math.sqrt(fan_in)
        for leaf in (params[name]["kernel"], params[name]["bias"]):
            leaf = np.asarray(leaf)
            assert np.abs(leaf).max() <= bound
        kernel = np.asarray(params[name]["kernel"])
        assert np.abs(kernel).max() > 0.95 * bound  # uniform fills its range
        assert abs(kernel.std() - bound / math.sqrt(3)) < 0.05 * bound
    np.testing.assert_array_equal(params["norm0"]["scale"], np.ones(128))
    np.testing.assert_array_equal(params["norm0"]["bias"], np.zeros(128))
    other = models.init(convnet[0], jax.random.key(1), CIFAR)["params"]
    assert not np.allclose(other["conv0"]["kernel"], params["conv0"]["kernel"])


def test_im2col_equals_lax_convnet(convnet):
    lax_model, im2col_model, variables, x = convnet
    y = jnp.array([3, 7])

    def loss(model):
        def f(params, x):
            logits = model.apply({"params": params}, x)
            return -jnp.mean(jnp.take_along_axis(nn.log_softmax(logits), y[:, None], 1))

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))

    (l_lax, (gp_lax, gx_lax)) = loss(lax_model)(variables["params"], x)
    (l_col, (gp_col, gx_col)) = loss(im2col_model)(variables["params"], x)
    np.testing.assert_allclose(l_col, l_lax, rtol=1e-5)
    np.testing.assert_allclose(gx_col, gx_lax, rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(gp_col), jax.tree.leaves(gp_lax)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    feats = jax.jit(lambda v, x: im2col_model.apply(v, x, features=True))(variables, x)
    assert feats.shape == (2, 2048)


def test_instancenorm_matches_groupnorm():
    x = 2.0 + 3.0 * _normal(5, (2, 5, 6, 4))
    ref = nn.GroupNorm(num_groups=None, group_size=1, epsilon=1e-5)
    params = {"params": {"scale": jnp.arange(1.0, 5.0), "bias": jnp.arange(4.0)}}
    np.testing.assert_allclose(
        models.InstanceNorm().apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("kind", ["avgpooling", "maxpooling"])
def test_pool_matches_reduce_window(kind):
    x = _normal(4, (2, 7, 9, 3))
    ours = models._pool(x, kind, 2)
    pool = nn.avg_pool if kind == "avgpooling" else nn.max_pool
    np.testing.assert_allclose(ours, pool(x, (2, 2), strides=(2, 2)), rtol=1e-6)


def test_batchnorm_train_and_eval():
    shape = (16, 16, 3)
    model = models.get("ConvNetBN", 4, shape)
    variables = models.init(model, jax.random.key(0), shape)
    assert set(variables) == {"params", "batch_stats"}
    x = 3.0 + 2.0 * _normal(1, (4, *shape))

    @jax.jit
    def train_step(variables, x):
        return model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                           capture_intermediates=lambda mdl, _: mdl.name == "norm0")

    logits, updates = train_step(variables, x)
    assert logits.shape == (4, 4)
    # Train mode normalises with the batch statistics: per-channel mean ~0 after norm0.
    normed = updates["intermediates"]["norm0"]["__call__"][0]
    np.testing.assert_allclose(normed.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    mean0 = np.asarray(updates["batch_stats"]["norm0"]["mean"])
    assert not np.allclose(mean0, 0.0)  # running mean moved towards the batch mean
    new_vars = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    eval_logits = jax.jit(model.apply)(new_vars, x)
    assert eval_logits.shape == (4, 4)
    assert not np.allclose(eval_logits, logits, atol=1e-4)  # running averages != batch stats


def test_convnet3d_is_the_official_conv3dnet():
    """Official 3D-MNIST Conv3DNet: width 64, first conv pads by 3 (16^3 -> 20^3), 512
    features, 228618 parameters (3D-MNIST/networks.py + utils.get_network)."""
    shape = VOXELS
    assert _num_params("ConvNet3D", shape) == 228618
    model = models.get("ConvNet3D", 10, shape)
    variables = models.init(model, jax.random.key(0), shape)
    x = _normal(1, (2, *shape))
    logits, feats = jax.jit(
        lambda v, x: (model.apply(v, x), model.apply(v, x, features=True))
    )(variables, x)
    assert logits.shape == (2, 10)
    assert feats.shape == (2, 64 * 2 * 2 * 2)
    assert np.isfinite(np.asarray(logits)).all()
    assert variables["params"]["conv0"]["kernel"].shape == (3, 3, 3, 1, 64)
