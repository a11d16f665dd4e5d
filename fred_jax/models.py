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
``batchnorm`` = torch ``BatchNorm2d`` (:class:`BatchNorm`: normalises by the biased batch
variance, updates the running variance with the unbiased one, momentum 0.1; a ``batch_stats``
collection). eps 1e-5 everywhere. Pooling is
non-overlapping with floor sizes like torch, written as crop + reshape + mean/max.

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

Convolution implementations (``conv_impl``), same parameters and the same numbers:
- ``"lax"``: ``jax.lax.conv_general_dilated``; JAX's own derivatives.
- ``"im2col"``: explicit patch extraction (padding + one strided slice per kernel tap,
  concatenated on the channel axis) followed by one matmul with the reshaped kernel, with a
  custom VJP: the input gradient is again a patch convolution (of the output gradient, with the
  flipped kernel), the kernel gradient one matmul patches^T dy whose own VJP is two patch
  convolutions. Every order of derivative (trajectory matching: grad of a loss that contains
  SGD steps on the network) stays slices, concatenations and row-major matmuls; on XLA:CPU the
  transposed/dilated convolutions that lax.conv differentiates into are slow, and JAX's own
  transposes of the patch matmul made transposed products and col2im scatters.
- ``"tapgrad"``: ``lax`` forward with a custom VJP (input gradient as a forward convolution,
  kernel gradient as one matmul per tap; second order goes through the same rules). XLA:CPU's
  kernel-gradient convolution is ~150x slower inside ``lax.scan``/``lax.map`` loops than outside
  them; tapgrad has no such cliff, which lets CPU evaluation loop over seeds and gradient pieces.
Both custom VJPs take the input gradient of a layer with fewer input than output channels (the
RGB layer) as JAX's transpose of the patch matmul (27 values per pixel, not 1152).

Measured on this machine (XLA:CPU, quiet, 2026-11-24; best of 3 runs), ConvNet 3x32x32, 10
classes, ``python benchmarks/conv_impl.py --repeats 3 --variants
lax,tapgrad,im2col,im2col/autodiff``:

    impl              | 2nd-order: grad wrt 32 images  | fwd+bwd wrt params, batch 256
                      | of 2 SGD steps + param distance|
                      | compile s  run s  run CPU s    | compile s  run s  run CPU s
    lax               |    4.93    1.56     2.82       |    2.34    1.67     3.11
    tapgrad           |    4.95    1.02     1.85       |    2.01    1.14     2.14
    im2col            |    3.66    0.59     1.09       |    1.95    1.03     1.99
    im2col, JAX's VJP |    3.53    0.73     1.38       |    2.07    1.19     2.22

and earlier, on the machine shared with ~10 other processes (wall times inflated; im2col
variants with JAX's own derivatives):

    impl              | compile s  run s  run CPU s    | compile s  run s  run CPU s
    lax               |   29.3     7.76     2.87       |   14.1     8.86     3.53
    im2col (slices)   |   15.3     3.81     1.55       |   11.2     6.68     2.28
    im2col (patches)  |   26.7    13.51     4.50       |   27.6    24.39     8.50
    im2col (shiftsum) |   36.1     6.98     2.80       |   15.3     7.74     3.67

"slices" beats ``lax.conv_general_dilated_patches`` + matmul ("patches", itself a grouped
convolution) and a sum of per-tap matmuls ("shiftsum"). At TM shapes the custom VJP took an
iteration (``benchmarks/step_time_tm.py``, syn_steps 10) from 19.5-20.5 s to 16.2-16.4 s. In
CPU evaluation loops tapgrad is as fast as im2col or faster (``benchmarks/evaluate.py``: 5 seeds
0.46 vs 0.41 epochs/s), so evaluation keeps tapgrad.
Instance norm is written directly (:class:`InstanceNorm`) rather than with ``nn.GroupNorm``:
that alone took the im2col second-order step from 1.95 to 1.54 CPU s.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("lax", "im2col", "tapgrad")
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


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: Sequence[int],
    padding: int,
    impl: str = "lax",
) -> jax.Array:
    """N-D convolution (cross-correlation) of channels-last ``x`` with a ``[*k, in, out]`` kernel.

    Symmetric zero padding ``padding`` on every spatial axis, floor output size like PyTorch.
    """
    nd = kernel.ndim - 2
    if not 1 <= nd <= 3 or x.ndim != nd + 2:
        raise ValueError(
            f"conv: need a [*k, in, out] kernel with 1-3 spatial dims and an input of rank "
            f"{nd + 2}, got kernel {kernel.shape} and input {x.shape}"
        )
    strides = tuple(strides)
    if impl == "lax":
        return _lax_conv(x, kernel, strides, ((padding, padding),) * nd)
    if impl == "im2col":
        return _im2col_conv(x, kernel, strides, padding)
    if impl == "tapgrad":
        return _tapgrad_conv(x, kernel, strides, padding)
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")


def _lax_conv(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
) -> jax.Array:
    """Channels-last ``lax.conv_general_dilated`` with a ``[*k, in, out]`` kernel."""
    spatial = "DHW"[-(kernel.ndim - 2):]
    return lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))


def _taps(x: jax.Array, ksize: tuple[int, ...], strides: tuple[int, ...], padding: int,
          out: Sequence[int]) -> list[jax.Array]:
    """One strided slice of the padded input per kernel tap: ``[N, *out, in]`` each."""
    nd = len(ksize)
    if padding:
        x = jnp.pad(x, [(0, 0)] + [(padding, padding)] * nd + [(0, 0)])
    cols = []
    for offset in itertools.product(*(range(k) for k in ksize)):
        limit = (x.shape[0], *(o + st * (n - 1) + 1 for o, st, n in zip(offset, strides, out)),
                 x.shape[-1])
        cols.append(lax.slice(x, (0, *offset, 0), limit, (1, *strides, 1)))
    return cols


def _patches(x: jax.Array, ksize: tuple[int, ...], strides: tuple[int, ...], padding: int,
             out: Sequence[int]) -> jax.Array:
    """``[N, *out, taps * in]``: the taps of :func:`_taps` concatenated, channels (tap, in)."""
    cols = _taps(x, ksize, strides, padding, out)
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _input_grad(conv_fn: Callable[..., jax.Array], x_shape: Sequence[int], kernel: jax.Array,
                strides: tuple[int, ...], padding: int, dy: jax.Array) -> jax.Array:
    """Input gradient of a convolution with ``kernel`` at output gradient ``dy``.

    Usually a forward convolution (``conv_fn``) of ``dy`` dilated by the strides (``lax.pad``
    interior), padded by k - 1 - padding (negative: cropped) plus, high, the input rows a
    strided forward pass never reached, with the flipped, transposed kernel. When the input has
    fewer channels than the output (a network's first layer), JAX's transpose of the patch
    matmul instead: dy @ kernel^T, then the patches summed back (col2im), 27 values per pixel
    for RGB where the forward form would build 1152. For 160 CIFAR images the RGB layer's input
    gradient took 14 ms this way against 86-90 ms for ``lax`` and the forward form.
    """
    if x_shape[-1] < dy.shape[-1]:
        zeros = jnp.zeros(x_shape, dy.dtype)
        return jax.vjp(lambda x: _patch_matmul(x, kernel, strides, padding), zeros)[1](dy)[0]
    nd = kernel.ndim - 2
    ksize, out = kernel.shape[:nd], dy.shape[1:-1]
    rest = [s + 2 * padding - k - st * (o - 1) for s, k, st, o in
            zip(x_shape[1:-1], ksize, strides, out)]
    config = [(0, 0, 0), *((k - 1 - padding, k - 1 - padding + r, st - 1)
                           for k, r, st in zip(ksize, rest, strides)), (0, 0, 0)]
    flipped = jnp.flip(kernel, tuple(range(nd))).swapaxes(-1, -2)
    return conv_fn(lax.pad(dy, jnp.zeros((), dy.dtype), config), flipped, (1,) * nd, 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _tapgrad_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                  padding: int) -> jax.Array:
    """``lax`` convolution whose derivatives avoid XLA:CPU's slow backward convolutions.

    Input gradient: a forward convolution of the (dilated, for strides) output gradient with
    the flipped, transposed kernel. Kernel gradient: one matmul per kernel tap between the
    tap's input slice and the output gradient. Both rules are again built from ``_tapgrad_conv``,
    slices and matmuls, so second-order gradients (TM, DC) take the same fast path. Inside
    ``lax.scan``/``while`` loops XLA:CPU's native kernel-gradient convolution was ~150x slower
    than these matmuls (16x16x128 -> 128 convolution, batch 32: 14.7 s vs 0.12 s for 5 steps).
    """
    return _lax_conv(x, kernel, strides, ((padding, padding),) * (kernel.ndim - 2))


def _tapgrad_fwd(x, kernel, strides, padding):
    return _tapgrad_conv(x, kernel, strides, padding), (x, kernel)


def _tapgrad_bwd(strides, padding, residuals, dy):
    x, kernel = residuals
    nd = kernel.ndim - 2
    dx = _input_grad(_tapgrad_conv, x.shape, kernel, strides, padding, dy)
    # Kernel gradient: per tap, contract the tap's input slice with dy over batch and space.
    contract = tuple(range(nd + 1))
    dk = jnp.stack([lax.dot_general(c, dy, ((contract, contract), ((), ())))
                    for c in _taps(x, kernel.shape[:nd], strides, padding, dy.shape[1:-1])])
    return dx, dk.reshape(kernel.shape)


_tapgrad_conv.defvjp(_tapgrad_fwd, _tapgrad_bwd)


def _patch_matmul(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                  padding: int) -> jax.Array:
    """Convolution as pad + one strided slice per kernel tap + concat + a single matmul.

    Patch channels are ordered (tap, in-channel), matching ``kernel.reshape(-1, out)``.
    """
    nd = kernel.ndim - 2
    ksize = kernel.shape[:nd]
    out = [(s + 2 * padding - k) // st + 1 for s, k, st in zip(x.shape[1:-1], ksize, strides)]
    if min(out) < 1:
        raise ValueError(f"conv: input {x.shape} (padded) is smaller than the kernel {ksize}")
    return jnp.dot(_patches(x, ksize, strides, padding, out),
                   kernel.reshape(-1, kernel.shape[-1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _im2col_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                 padding: int) -> jax.Array:
    """Patch-matmul convolution whose derivatives are again patch matmuls in row-major layout.

    Input gradient: :func:`_input_grad`. Kernel gradient: :func:`_im2col_kernel_grad`
    (patches^T dy), whose own VJP is two forward convolutions. So every order of derivative is
    slices, concatenations and plain matmuls; JAX's own transposes of the patch matmul
    produced transposed [patches, pixels] products and col2im scatters that, at TM shapes on
    XLA:CPU, cost about as much as the matmuls (``benchmarks/step_time_tm.py``).
    """
    return _patch_matmul(x, kernel, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _im2col_kernel_grad(x: jax.Array, dy: jax.Array, ksize: tuple[int, ...],
                        strides: tuple[int, ...], padding: int) -> jax.Array:
    """Kernel gradient ``[*k, in, out]`` of :func:`_im2col_conv`: patches^T dy, one matmul."""
    contract = tuple(range(len(ksize) + 1))
    dk = lax.dot_general(_patches(x, ksize, strides, padding, dy.shape[1:-1]), dy,
                         ((contract, contract), ((), ())))
    return dk.reshape(*ksize, x.shape[-1], dy.shape[-1])


def _im2col_kernel_grad_fwd(x, dy, ksize, strides, padding):
    return _im2col_kernel_grad(x, dy, ksize, strides, padding), (x, dy)


def _im2col_kernel_grad_bwd(ksize, strides, padding, residuals, ct):
    # <ct, patches(x)^T dy> is bilinear: its x-gradient is the input gradient of a convolution
    # with kernel ct at output gradient dy, its dy-gradient the convolution of x with ct.
    x, dy = residuals
    return (_input_grad(_im2col_conv, x.shape, ct, strides, padding, dy),
            _im2col_conv(x, ct, strides, padding))


_im2col_kernel_grad.defvjp(_im2col_kernel_grad_fwd, _im2col_kernel_grad_bwd)


def _im2col_fwd(x, kernel, strides, padding):
    return _im2col_conv(x, kernel, strides, padding), (x, kernel)


def _im2col_bwd(strides, padding, residuals, dy):
    x, kernel = residuals
    nd = kernel.ndim - 2
    return (_input_grad(_im2col_conv, x.shape, kernel, strides, padding, dy),
            _im2col_kernel_grad(x, dy, kernel.shape[:nd], strides, padding))


_im2col_conv.defvjp(_im2col_fwd, _im2col_bwd)


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
        kernel = self.param(
            "kernel", _torch_uniform(fan_in), (*self.kernel_size, in_ch, self.features)
        )
        y = conv(
            x,
            kernel,
            strides=(self.strides,) * len(self.kernel_size),
            padding=self.padding,
            impl=self.impl,
        )
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
    ``GroupNorm(C, C)``), written directly: cheaper derivatives (see the module docstring).
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
            x = Conv(
                self.width,
                (3,) * self.ndim,
                padding=3 if quirk and d == 0 else 1,
                impl=self.conv_impl,
                name=f"conv{d}",
            )(x)
            x = _norm(self.norm, x, train, f"norm{d}")
            x = act(x)
            x = _pool(x, self.pooling, 2)
        x = _flatten(x)
        if features:
            return x
        return Dense(self.num_classes, name="classifier")(x)


class MLP(nn.Module):
    """Three linear layers (128, 128, classes) with ReLU on the flattened input."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, features: bool = False) -> jax.Array:
        _check_input(x, 2)
        x = nn.relu(Dense(128, name="fc_1")(_flatten(x)))
        x = nn.relu(Dense(128, name="fc_2")(x))
        if features:
            return x
        return Dense(self.num_classes, name="fc_3")(x)


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
        if features:
            return x
        return Dense(self.num_classes, name="fc_3")(x)


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
        if features:
            return x
        return Dense(self.num_classes, name="fc")(x)


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
        if features:
            return x
        return Dense(self.num_classes, name="classifier")(x)


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
        if features:
            return x
        return Dense(self.num_classes, name="classifier")(x)


def _check_input(x: jax.Array, ndim: int) -> None:
    if x.ndim != ndim + 2:
        raise ValueError(
            f"expected input [N, {'D, ' if ndim == 3 else ''}H, W, C] of rank {ndim + 2}, "
            f"got shape {x.shape}"
        )


# ----------------------------------------------------------------------------- registry

_CONVNET_VARIANTS: dict[str, dict[str, Any]] = {
    "ConvNet": {},
    **{f"ConvNetD{d}": {"depth": d} for d in range(1, 6)},
    **{f"ConvNetW{w}": {"width": w} for w in (32, 64, 128, 256, 512)},
    "ConvNetAS": {"act": "sigmoid"},
    "ConvNetAR": {"act": "relu"},
    "ConvNetAL": {"act": "leakyrelu"},
    "ConvNetNN": {"norm": "none"},
    "ConvNetBN": {"norm": "batchnorm"},
    "ConvNetLN": {"norm": "layernorm"},
    "ConvNetIN": {"norm": "instancenorm"},
    "ConvNetGN": {"norm": "groupnorm"},
    "ConvNetNP": {"pooling": "none"},
    "ConvNetMP": {"pooling": "maxpooling"},
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
    {"ConvNetBN", "AlexNetBN", "VGG11BN", "ResNet18BN", "ResNet18BN_AP"}
)
"""Architectures with a ``batch_stats`` collection (apply with ``mutable=["batch_stats"]``)."""


def get(
    name: str, num_classes: int, image_shape: Sequence[int], *, conv_impl: str = "lax"
) -> nn.Module:
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
