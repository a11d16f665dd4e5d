"""Convolution kernels: one channels-last N-D convolution, three implementations.

``conv(x, kernel, strides=..., padding=..., impl=...)`` cross-correlates ``[N, *spatial, in]``
with a ``[*k, in, out]`` kernel (1-3 spatial dims, symmetric zero padding, floor output size like
PyTorch). ``fred_jax.models.Conv`` builds its layers on it; the choice of implementation per use
is the backend's (``conv_impl`` in the configuration).

Implementations (``impl``), same parameters and the same numbers:
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
  kernel-gradient convolution is two orders of magnitude slower inside ``lax.scan``/``lax.map``
  loops than outside them (``benchmarks/RESULTS.md``); tapgrad has no such cliff, which lets CPU evaluation loop over seeds and gradient pieces.
Both custom VJPs take the input gradient of a layer with fewer input than output channels (the
RGB layer) as JAX's transpose of the patch matmul (27 values per pixel, not 1152).

"slices" (the im2col used here) beat ``lax.conv_general_dilated_patches`` + matmul and a sum of
per-tap matmuls; im2col is the fastest for second-order objectives and tapgrad for training
loops. The timings of every variant (``benchmarks/conv_impl.py``) and of their use in TM and
evaluation are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("lax", "im2col", "tapgrad")


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
    for RGB where the forward form would build 1152 (several times faster for that layer).
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
    transposed output gradient and the tap's input slice (:func:`_tap_kernel_grad`). Both rules
    are again built from ``_tapgrad_conv``, slices and matmuls, so second-order gradients (TM,
    DC) take the same fast path. Inside ``lax.scan``/``while`` loops XLA:CPU's native
    kernel-gradient convolution is two orders of magnitude slower than these matmuls
    (``benchmarks/RESULTS.md``).
    """
    return _lax_conv(x, kernel, strides, ((padding, padding),) * (kernel.ndim - 2))


def _tapgrad_fwd(x, kernel, strides, padding):
    return _tapgrad_conv(x, kernel, strides, padding), (x, kernel)


def _tap_kernel_grad(x: jax.Array, dy: jax.Array, ksize: tuple[int, ...],
                     strides: tuple[int, ...], padding: int) -> jax.Array:
    """Kernel gradient ``[*k, in, out]`` of a convolution of ``x`` at output gradient ``dy`` as
    row-major matmuls (a product contracting the leading axes of both operands costs XLA:CPU
    one transposing copy per call): with fewer input than output channels (the RGB layer), the
    patches of the channels-first input, ``[taps * in, pixels]``, times ``dy`` in one matmul;
    otherwise ``dy`` transposed once, times each tap's input slice."""
    nd = len(ksize)
    out = dy.shape[1:-1]
    cin, cout = x.shape[-1], dy.shape[-1]
    if cin < cout:
        xt = jnp.moveaxis(jnp.pad(x, [(0, 0)] + [(padding, padding)] * nd + [(0, 0)]), -1, 0)
        cols = []
        for offset in itertools.product(*(range(k) for k in ksize)):
            limit = (cin, x.shape[0],
                     *(o + st * (n - 1) + 1 for o, st, n in zip(offset, strides, out)))
            cols.append(lax.slice(xt, (0, 0, *offset), limit, (1, 1, *strides)).reshape(cin, -1))
        return jnp.dot(jnp.concatenate(cols), dy.reshape(-1, cout)).reshape(*ksize, cin, cout)
    # materialised: a transpose folded into the product sends it to Eigen instead of YNNPACK
    dyt = lax.optimization_barrier(dy.reshape(-1, cout).T)
    dk = jnp.stack([jnp.dot(dyt, c.reshape(-1, cin))
                    for c in _taps(x, ksize, strides, padding, out)])
    return dk.swapaxes(-1, -2).reshape(*ksize, cin, cout)


def _tapgrad_bwd(strides, padding, residuals, dy):
    x, kernel = residuals
    nd = kernel.ndim - 2
    dx = _input_grad(_tapgrad_conv, x.shape, kernel, strides, padding, dy)
    return dx, _tap_kernel_grad(x, dy, kernel.shape[:nd], strides, padding)


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
    """Kernel gradient ``[*k, in, out]`` of :func:`_im2col_conv`: patches^T dy, as the
    row-major matmuls of :func:`_tap_kernel_grad`."""
    return _tap_kernel_grad(x, dy, ksize, strides, padding)


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
