"""Reference network family of the DC/DSA/DM/MTT code, in Flax linen.

Names, layer layouts and parameter counts follow ``utils.get_network`` and
``networks.py`` of the official dataset-condensation code (VICO-UoE/DatasetCondensation and the
MTT fork), including its quirks for 1-channel 28x28 inputs: ConvNet and VGG pad their first conv
by 3 (28 -> 32), AlexNet pads by 4 and LeNet by 2, so a 1x28x28 ConvNet has 317706 parameters.
``ConvNet3D`` is the official 3D-MNIST ``Conv3DNet`` (``3D-MNIST/networks.py``, built by its
``get_network``): width 64, depth 3, instance norm, ReLU, average pooling, first conv padding 3
(16^3 -> 20^3 -> 10 -> 5 -> 2, 512 features), 228618 parameters for 16^3 volumes and 10 classes.
Parameter counts for 3x32x32 and 10 classes match the official code (ConvNet 320010, AlexNet
1872202, VGG11 9231114, ResNet18 11173962, ResNet18BN_AP 11250762, LeNet 62006, MLP 411146).

Initialisation is PyTorch's default (``kaiming_uniform(a=sqrt(5))``): weights and biases of
convolutions and linear layers ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); norm scales 1, offsets 0.
Normalisation: ``instancenorm`` = torch ``GroupNorm(C, C)`` (per-sample, per-channel, affine),
``groupnorm`` = 4 groups, ``layernorm`` over (spatial, channel) with per-element affine,
``batchnorm`` = torch ``BatchNorm2d`` (:class:`BatchNorm`, a ``batch_stats`` collection).
eps 1e-5 everywhere. Pooling is non-overlapping with floor sizes like torch,
written as crop + reshape + mean/max.

Usage::

    model = get("ConvNet", num_classes=10, image_shape=(32, 32, 3))
    variables = init(model, key, (32, 32, 3))
    logits = model.apply(variables, x)                      # [N, 10]
    embed = model.apply(variables, x, features=True)        # [N, 2048], the classifier input
    # BatchNorm variants in training mode:
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])

A flat parameter vector for trajectory matching: ``jax.flatten_util.ravel_pytree(params)``
returns ``(vector, unravel)``; leaf order is the (sorted, deterministic) pytree order, identical
for every convolution implementation.

Convolutions (``conv_impl``: same parameters, same numbers) are :mod:`fred_jax.conv`'s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from fred_jax.conv import CONV_IMPLS, conv  # CONV_IMPLS also read from here (configuration)

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTIVATIONS = ("relu", "sigmoid", "leakyrelu")
POOLINGS = ("avgpooling", "maxpooling", "none")


# ----------------------------------------------------------------------------- primitives


def _torch_uniform(fan_in: int) -> Callable[..., jax.Array]:
    """PyTorch's default init for conv/linear weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv(nn.Module):
    """Convolution with PyTorch default init and a choice of implementation.

    Parameters ``kernel [*k, in, out]`` and ``bias [out]`` (as ``flax.linen.Conv``).
    """

    features: int
    kernel_size: tuple[int, ...]
    strides: int = 1
    padding: int = 0
    use_bias: bool = True
    impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_ch = x.shape[-1]
        fan_in = in_ch * math.prod(self.kernel_size)
        kernel = self.param("kernel", _torch_uniform(fan_in),
                            (*self.kernel_size, in_ch, self.features))
        y = conv(x, kernel, strides=(self.strides,) * len(self.kernel_size),
                 padding=self.padding, impl=self.impl)
        if self.use_bias:
            y = y + self.param("bias", _torch_uniform(fan_in), (self.features,))
        return y


class Dense(nn.Module):
    """Linear layer with PyTorch default init; parameters ``kernel [in, out]``, ``bias [out]``."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", _torch_uniform(fan_in), (fan_in, self.features))
        bias = self.param("bias", _torch_uniform(fan_in), (self.features,))
        return jnp.dot(x, kernel) + bias


def _pool(x: jax.Array, kind: str, window: int) -> jax.Array:
    """Non-overlapping ``window``^nd pooling (stride = window, floor) over all spatial axes.

    Written as crop + reshape + reduce: same numbers as reduce_window, cheaper derivatives.
    """
    if kind == "none" or window == 1:
        return x
    n, *size, c = x.shape
    out = [s // window for s in size]
    if min(out) < 1:
        raise ValueError(f"pool: spatial size {tuple(size)} is smaller than the window {window}")
    x = x[(slice(None), *(slice(0, o * window) for o in out))]
    shape = [n]
    for o in out:
        shape += [o, window]
    x = x.reshape(*shape, c)
    axes = tuple(range(2, 2 * len(out) + 1, 2))
    if kind == "avgpooling":
        return x.mean(axis=axes)
    if kind == "maxpooling":
        return x.max(axis=axes)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")


def _activation(kind: str) -> Callable[[jax.Array], jax.Array]:
    if kind == "relu":
        return nn.relu
    if kind == "sigmoid":
        return nn.sigmoid
    if kind == "leakyrelu":
        return lambda x: nn.leaky_relu(x, negative_slope=0.01)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {kind!r}")


class InstanceNorm(nn.Module):
    """Per-sample, per-channel normalisation over the spatial axes with a per-channel affine.

    Same numbers and parameters (``scale``, ``bias``) as ``nn.GroupNorm(group_size=1)`` (torch
    ``GroupNorm(C, C)``), written directly: its derivatives are cheaper, which speeds up the
    second-order objectives (``benchmarks/conv_impl.py``).
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        axes = tuple(range(1, x.ndim - 1))
        centred = x - x.mean(axes, keepdims=True)
        var = jnp.mean(centred * centred, axes, keepdims=True)
        return centred * (lax.rsqrt(var + self.epsilon) * scale) + bias


class BatchNorm(nn.Module):
    """torch ``BatchNorm2d``/``3d`` semantics over all axes but the channel axis: in training
    mode it normalises with the batch mean and biased variance and moves the running averages
    (``batch_stats`` ``mean``, ``var``) by ``momentum`` towards the batch mean and the UNBIASED
    batch variance (torch's rule; Flax's ``nn.BatchNorm`` uses the biased one, a factor
    (m-1)/m for m values per channel: 7% for ResNet18's last 4x4 maps at batch 1); in eval mode
    it normalises with the running averages. Parameters ``scale``, ``bias``."""

    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if not train:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = x.mean(axes)
            var = jnp.mean(jnp.square(x - mean), axes)
            if not self.is_initializing():
                m = math.prod(x.shape[:-1])
                unbiased = var * (m / max(m - 1, 1))
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        return (x - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias


def _norm(kind: str, x: jax.Array, train: bool, name: str) -> jax.Array:
    """Apply the reference normalisation ``kind`` to channels-last ``x`` (identity for 'none')."""
    if kind == "none":
        return x
    if kind == "instancenorm":
        return InstanceNorm(name=name)(x)
    if kind == "groupnorm":
        return nn.GroupNorm(num_groups=4, epsilon=1e-5, name=name)(x)
    if kind == "layernorm":
        axes = tuple(range(1, x.ndim))
        return nn.LayerNorm(epsilon=1e-5, reduction_axes=axes, feature_axes=axes, name=name)(x)
    if kind == "batchnorm":
        return BatchNorm(name=name)(x, train)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


# ----------------------------------------------------------------------------- architectures


class ConvNet(nn.Module):
    """ConvNet of DC/DM/MTT: depth x [conv3 -> norm -> act -> pool], then a linear classifier.

    N-D: 2-D images ``[N, H, W, C]`` or 3-D volumes ``[N, D, H, W, C]`` (``ndim``). The first conv
    of a 1-channel input pads by 3 (reference quirk that maps 28x28 to 32x32; the official
    3D-MNIST Conv3DNet does the same, 16^3 -> 20^3), others by 1.
    """

    num_classes: int
    width: int = 128
    depth: int = 3
    act: str = "relu"
    norm: str = "instancenorm"
    pooling: str = "avgpooling"
    ndim: int = 2
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        _check_input(x, self.ndim)
        act = _activation(self.act)
        quirk = x.shape[-1] == 1
        for d in range(self.depth):
            x = Conv(self.width, (3,) * self.ndim, padding=3 if quirk and d == 0 else 1,
                     impl=self.conv_impl, name=f"conv{d}")(x)
            x = _pool(act(_norm(self.norm, x, train, f"norm{d}")), self.pooling, 2)
        x = _flatten(x)
        return x if features else Dense(self.num_classes, name="classifier")(x)


class MLP(nn.Module):
    """Three linear layers (128, 128, classes) with ReLU on the flattened input."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        _check_input(x, 2)
        x = nn.relu(Dense(128, name="fc_1")(_flatten(x)))
        x = nn.relu(Dense(128, name="fc_2")(x))
        return x if features else Dense(self.num_classes, name="fc_3")(x)


class LeNet(nn.Module):
    """LeNet-5: conv5(6) -> maxpool -> conv5(16) -> maxpool -> 120 -> 84 -> classes."""

    num_classes: int
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        _check_input(x, 2)
        pad = 2 if x.shape[-1] == 1 else 0
        x = nn.relu(Conv(6, (5, 5), padding=pad, impl=self.conv_impl, name="conv0")(x))
        x = _pool(x, "maxpooling", 2)
        x = nn.relu(Conv(16, (5, 5), impl=self.conv_impl, name="conv1")(x))
        x = _pool(x, "maxpooling", 2)
        x = nn.relu(Dense(120, name="fc_1")(_flatten(x)))
        x = nn.relu(Dense(84, name="fc_2")(x))
        return x if features else Dense(self.num_classes, name="fc_3")(x)


class AlexNet(nn.Module):
    """The reference's small AlexNet (128-192-256-192-192 channels), optional BatchNorm."""

    num_classes: int
    norm: str = "none"
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        _check_input(x, 2)
        first_pad = 4 if x.shape[-1] == 1 else 2
        layers = ((128, 5, first_pad, True), (192, 5, 2, True), (256, 3, 1, False),
                  (192, 3, 1, False), (192, 3, 1, True))
        for i, (width, k, pad, pool) in enumerate(layers):
            x = Conv(width, (k, k), padding=pad, impl=self.conv_impl, name=f"conv{i}")(x)
            x = nn.relu(_norm(self.norm, x, train, f"norm{i}"))
            if pool:
                x = _pool(x, "maxpooling", 2)
        x = _flatten(x)
        return x if features else Dense(self.num_classes, name="fc")(x)


VGG_CFG = {"VGG11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")}


class VGG(nn.Module):
    """VGG of the reference: conv3 -> norm (instance or batch) -> ReLU, 'M' = 2x2 max pool."""

    num_classes: int
    cfg: tuple = VGG_CFG["VGG11"]
    norm: str = "instancenorm"
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        _check_input(x, 2)
        one_channel = x.shape[-1] == 1
        for i, v in enumerate(self.cfg):
            if v == "M":
                x = _pool(x, "maxpooling", 2)
                continue
            pad = 3 if one_channel and i == 0 else 1
            x = Conv(v, (3, 3), padding=pad, impl=self.conv_impl, name=f"conv{i}")(x)
            x = nn.relu(_norm(self.norm, x, train, f"norm{i}"))
        x = _flatten(x)
        return x if features else Dense(self.num_classes, name="classifier")(x)


class BasicBlock(nn.Module):
    """ResNet basic block. ``ap``: stride-2 conv replaced by stride-1 conv + 2x2 avg pool."""

    planes: int
    stride: int = 1
    norm: str = "instancenorm"
    ap: bool = False
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv_stride = 1 if self.ap else self.stride
        out = Conv(self.planes, (3, 3), strides=conv_stride, padding=1, use_bias=False,
                   impl=self.conv_impl, name="conv1")(x)
        out = nn.relu(_norm(self.norm, out, train, "bn1"))
        if self.ap and self.stride != 1:
            out = _pool(out, "avgpooling", 2)
        out = Conv(self.planes, (3, 3), padding=1, use_bias=False, impl=self.conv_impl,
                   name="conv2")(out)
        out = _norm(self.norm, out, train, "bn2")
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.planes:
            shortcut = Conv(self.planes, (1, 1), strides=conv_stride, use_bias=False,
                            impl=self.conv_impl, name="shortcut_conv")(x)
            if self.ap:
                shortcut = _pool(shortcut, "avgpooling", 2)
            shortcut = _norm(self.norm, shortcut, train, "shortcut_norm")
        return nn.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 of the reference (CIFAR stem: conv3, no max pool), instance or batch norm.

    ``ap=False``: final 4x4 average pool, 512 features. ``ap=True`` (ResNet18_AP): downsampling
    by average pooling, no final pooling, 512*4*4 features for 32x32 (512*3*3 for 28x28).
    """

    num_classes: int
    norm: str = "instancenorm"
    ap: bool = False
    conv_impl: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        _check_input(x, 2)
        x = Conv(64, (3, 3), padding=1, use_bias=False, impl=self.conv_impl, name="conv1")(x)
        x = nn.relu(_norm(self.norm, x, train, "bn1"))
        for stage, planes in enumerate((64, 128, 256, 512)):
            for b in range(2):
                stride = 2 if stage > 0 and b == 0 else 1
                x = BasicBlock(planes, stride, self.norm, self.ap, self.conv_impl,
                               name=f"layer{stage + 1}_{b}")(x, train)
        if not self.ap:
            x = _pool(x, "avgpooling", 4)
        x = _flatten(x)
        return x if features else Dense(self.num_classes, name="classifier")(x)


def _check_input(x: jax.Array, ndim: int) -> None:
    if x.ndim != ndim + 2:
        raise ValueError(f"expected input [N, {'D, ' if ndim == 3 else ''}H, W, C] of rank "
                         f"{ndim + 2}, got shape {x.shape}")


# ----------------------------------------------------------------------------- registry

_CONVNET_VARIANTS: dict[str, dict[str, Any]] = {
    "ConvNet": {},
    **{f"ConvNetD{d}": {"depth": d} for d in range(1, 6)},
    **{f"ConvNetW{w}": {"width": w} for w in (32, 64, 128, 256, 512)},
    "ConvNetAS": {"act": "sigmoid"}, "ConvNetAR": {"act": "relu"},
    "ConvNetAL": {"act": "leakyrelu"},
    "ConvNetNN": {"norm": "none"}, "ConvNetBN": {"norm": "batchnorm"},
    "ConvNetLN": {"norm": "layernorm"}, "ConvNetIN": {"norm": "instancenorm"},
    "ConvNetGN": {"norm": "groupnorm"},
    "ConvNetNP": {"pooling": "none"}, "ConvNetMP": {"pooling": "maxpooling"},
    "ConvNetAP": {"pooling": "avgpooling"},
}

_OTHERS: dict[str, Callable[[int, str], nn.Module]] = {
    "MLP": lambda c, impl: MLP(c),
    "LeNet": lambda c, impl: LeNet(c, conv_impl=impl),
    "AlexNet": lambda c, impl: AlexNet(c, conv_impl=impl),
    "AlexNetBN": lambda c, impl: AlexNet(c, norm="batchnorm", conv_impl=impl),
    "VGG11": lambda c, impl: VGG(c, conv_impl=impl),
    "VGG11BN": lambda c, impl: VGG(c, norm="batchnorm", conv_impl=impl),
    "ResNet18": lambda c, impl: ResNet18(c, conv_impl=impl),
    "ResNet18BN": lambda c, impl: ResNet18(c, norm="batchnorm", conv_impl=impl),
    "ResNet18_AP": lambda c, impl: ResNet18(c, ap=True, conv_impl=impl),
    "ResNet18BN_AP": lambda c, impl: ResNet18(c, norm="batchnorm", ap=True, conv_impl=impl),
}

ARCHS: tuple[str, ...] = (*_CONVNET_VARIANTS, "ConvNet3D", *_OTHERS)
"""All architecture names accepted by :func:`get`."""

BATCHNORM_ARCHS: frozenset[str] = frozenset(
    {"ConvNetBN", "AlexNetBN", "VGG11BN", "ResNet18BN", "ResNet18BN_AP"})
"""Architectures with a ``batch_stats`` collection (apply with ``mutable=["batch_stats"]``)."""


def get(name: str, num_classes: int, image_shape: Sequence[int], *,
        conv_impl: str = "lax") -> nn.Module:
    """Build architecture ``name`` for inputs of ``image_shape`` (``(H, W, C)``; ConvNet3D:
    ``(D, H, W, C)``) and ``num_classes`` outputs, with convolutions by ``conv_impl``."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose from {ARCHS}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
    ndim = 3 if name == "ConvNet3D" else 2
    image_shape = tuple(image_shape)
    if len(image_shape) != ndim + 1 or min(image_shape) < 1:
        want = "(D, H, W, C)" if ndim == 3 else "(H, W, C)"
        raise ValueError(f"{name} needs image_shape {want}, got {image_shape}")
    if name == "ConvNet3D":
        return ConvNet(num_classes, width=64, ndim=3, conv_impl=conv_impl)
    if name in _CONVNET_VARIANTS:
        return ConvNet(num_classes, conv_impl=conv_impl, **_CONVNET_VARIANTS[name])
    return _OTHERS[name](num_classes, conv_impl)


def init(model: nn.Module, key: jax.Array, image_shape: Sequence[int]) -> dict:
    """Initialise ``model`` for single inputs of ``image_shape``; returns the variables dict
    (``params``, plus ``batch_stats`` for BatchNorm variants)."""
    x = jnp.zeros((1, *image_shape), jnp.float32)
    return dict(_jit_init(model, key, x))


@functools.partial(jax.jit, static_argnums=0)
def _jit_init(model: nn.Module, key: jax.Array, x: jax.Array) -> dict:
    """One compilation per (model, input shape): modules are hashable dataclasses."""
    return model.init(key, x)
