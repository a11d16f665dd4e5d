"""Time ConvNet convolutions on XLA:CPU: ``lax`` vs the ``im2col`` formulations.

Prints a table of (compile s, run s) per implementation for
- ``2nd-order``: grad w.r.t. 32 CIFAR-shaped input images of a trajectory-matching style loss
  (two SGD steps of ConvNet on those images, then the squared distance to a target parameter
  vector), i.e. a gradient through gradients;
- ``fwd+bwd b256``: first-order loss gradient w.r.t. the parameters at batch 256.

im2col candidates: ``im2col`` (pad + one strided slice per tap, concat, one matmul, with the
custom VJP of ``fred_jax.conv`` whose derivatives are again patch matmuls), ``autodiff`` (the
same forward with JAX's own derivatives), ``patches`` (``lax.conv_general_dilated_patches`` +
matmul) and ``shiftsum`` (sum over taps of slice @ kernel[tap], no patch tensor). Columns:
compile wall seconds (first call), median run wall seconds over ``--repeats`` runs, and median
run process CPU seconds (all threads; the fairer comparison when other jobs share the
machine). Recorded by ``benchmarks/harness.py`` (results: ``benchmarks/RESULTS.md``).

    python benchmarks/conv_impl.py [--repeats 5] [--batch 256] [--syn 32]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from unittest import mock

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from fred_jax import conv, models

import harness


def patches_conv(x, kernel, strides, padding):
    """im2col via conv_general_dilated_patches (channel-major patch layout)."""
    nd = kernel.ndim - 2
    spatial = "DHW"[-nd:]
    p = lax.conv_general_dilated_patches(
        x, kernel.shape[:nd], strides, [(padding, padding)] * nd,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
    )
    k = jnp.moveaxis(kernel, -2, 0).reshape(-1, kernel.shape[-1])
    return jnp.dot(p, k)


def shiftsum_conv(x, kernel, strides, padding):
    """Sum over kernel taps of (strided slice) @ kernel[tap]; no patch tensor."""
    nd = kernel.ndim - 2
    ksize = kernel.shape[:nd]
    x = jnp.pad(x, [(0, 0)] + [(padding, padding)] * nd + [(0, 0)])
    out = [(s - k) // st + 1 for s, k, st in zip(x.shape[1:1 + nd], ksize, strides)]
    y = 0.0
    for off in itertools.product(*(range(k) for k in ksize)):
        limit = (x.shape[0], *(o + st * (n - 1) + 1 for o, st, n in zip(off, strides, out)),
                 x.shape[-1])
        y = y + jnp.dot(lax.slice(x, (0, *off, 0), limit, (1, *strides, 1)), kernel[off])
    return y


VARIANTS = {
    "lax": ("lax", None),
    "tapgrad": ("tapgrad", None),
    "im2col": ("im2col", None),
    "im2col/autodiff": ("im2col", conv._patch_matmul),
    "im2col/patches": ("im2col", patches_conv),
    "im2col/shiftsum": ("im2col", shiftsum_conv),
}


def bench(impl, repeats, batch, syn):
    shape = (32, 32, 3)
    model = models.get("ConvNet", 10, shape, conv_impl=impl)
    params = models.init(model, jax.random.key(0), shape)["params"]
    flat, unravel = ravel_pytree(params)
    target = flat + 0.01
    kx, ky = jax.random.split(jax.random.key(1))
    x_syn = jax.random.normal(kx, (syn, *shape))
    y_syn = jax.random.randint(ky, (syn,), 0, 10)
    x_big = jax.random.normal(kx, (batch, *shape))
    y_big = jax.random.randint(ky, (batch,), 0, 10)

    def ce(p, x, y):
        logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def tm_loss(x):
        w = flat
        for _ in range(2):
            w = w - 0.01 * ravel_pytree(jax.grad(ce)(unravel(w), x, y_syn))[0]
        return jnp.sum((w - target) ** 2)

    second_fn, first_fn = jax.jit(jax.grad(tm_loss)), jax.jit(jax.value_and_grad(ce))
    second = harness.timeit(lambda _: second_fn(x_syn), repeats)
    first = harness.timeit(lambda _: first_fn(params, x_big, y_big), repeats)
    return second, first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--syn", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    print(f"ConvNet 3x32x32, {jax.devices()[0].platform}; median of {args.repeats} runs")
    print(f"{'':16s} | {'2nd-order, ' + str(args.syn) + ' images':^26s} | "
          f"{'fwd+bwd, batch ' + str(args.batch):^26s}")
    print(f"{'impl':16s} | {'compile':>8s} {'run':>8s} {'run CPU':>8s} | "
          f"{'compile':>8s} {'run':>8s} {'run CPU':>8s}")
    settings = {"repeats": args.repeats, "batch": args.batch, "syn": args.syn}
    with harness.Record("conv_impl", settings=settings) as record:
        for name in args.variants.split(","):
            impl, alt = VARIANTS[name]
            patch = (mock.patch.object(conv, "_im2col_conv", alt) if alt
                     else contextlib.nullcontext())
            with patch:
                second, first = bench(impl, args.repeats, args.batch, args.syn)
            cols = [(t.compile_s, t.median, t.cpu_median) for t in (second, first)]
            print(f"{name:16s} | " + " | ".join(" ".join(f"{v:8.2f}" for v in c) for c in cols),
                  flush=True)
            record.add(impl=name, **second.figures(prefix="second_order_"),
                       **first.figures(prefix="fwd_bwd_"))


if __name__ == "__main__":
    main()
