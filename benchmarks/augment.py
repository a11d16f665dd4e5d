"""Cost of DSA (fred_jax.augment) per call, next to one ConvNet-sized convolution for scale.

Prints milliseconds per call (median over --repeats different keys, after one compiling call)
for image batches [N, 32, 32, 3], forward and forward+backward (gradient w.r.t. the images), per op
and for the random single-strategy call ("S", one op drawn per call, so its mean averages over the
ops drawn), with shared ("siamese") and per-image parameters, and for vmap over 10 classes with
different keys (which evaluates every branch of the switch and selects). The reference row is one
3x3 convolution 3 -> 128 channels ("SAME") on the same batch, the first layer of the reference
ConvNet; the whole ConvNet forward pass on 32x32 inputs has about 14x its FLOPs. Recorded by
``benchmarks/harness.py`` (results: ``benchmarks/RESULTS.md``).

    python benchmarks/augment.py [--sizes 256,16] [--repeats 10]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from fred_jax import augment

import harness


def _time(fn, keys: jax.Array, *args, repeats: int) -> harness.Timing:
    """Timing of `fn(keys[i], *args)` over `repeats` keys, after one compiling call."""
    return harness.timeit(lambda i: fn(keys[i], *args), repeats)


def _fwd_bwd(f):
    """jit of (f(x), d (sum f(x)^2 / 2) / dx): the backward pass a loss on the output needs."""

    def run(key, x):
        out, vjp = jax.vjp(lambda z: f(key, z), x)
        return out, vjp(out)[0]

    return jax.jit(run)


def _rows(n: int, repeats: int):
    keys = jax.random.split(jax.random.PRNGKey(0), repeats + 1)
    x = jax.random.normal(jax.random.PRNGKey(1), (n, 32, 32, 3))

    kernel = jax.random.normal(jax.random.PRNGKey(3), (3, 3, 3, 128)) * 0.1

    def conv(_, z):
        return jax.lax.conv_general_dilated(z, kernel, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    cases = [("conv 3x3 3->128 (reference)", conv)]
    for siamese in (True, False):
        tag = "siamese" if siamese else "per-image"
        for op in augment.OPS:
            cases.append((f"{op:<8s} {tag}", lambda k, z, op=op, s=siamese: augment.apply_op(
                k, z, op, siamese=s)))
        cases.append((f"S(all 6) {tag}", lambda k, z, s=siamese: augment.dsa(k, z, siamese=s)))
    for name, f in cases:
        fwd = _time(jax.jit(f), keys, x, repeats=repeats)
        both = _time(_fwd_bwd(f), keys, x, repeats=repeats)
        yield name, fwd, both

    classes = 10
    class_keys = jax.vmap(lambda k: jax.random.split(k, classes))(keys)
    xc = jnp.broadcast_to(x, (classes,) + x.shape)
    vm = jax.vmap(augment.dsa)
    fwd = _time(jax.jit(vm), class_keys, xc, repeats=repeats)
    both = _time(_fwd_bwd(vm), class_keys, xc, repeats=repeats)
    yield f"S vmap {classes} classes (x{classes} images)", fwd, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,16", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind})")
    with harness.Record("augment", settings={"repeats": args.repeats}) as record:
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"\n[{n}, 32, 32, 3]          forward ms   fwd+bwd ms")
            for name, fwd, both in _rows(n, args.repeats):
                print(f"  {name:<34s} {1e3 * fwd.median:9.3f}  {1e3 * both.median:9.3f}",
                      flush=True)
                record.add(batch=n, case=name, fwd_median_ms=1e3 * fwd.median,
                           fwd_iqr_ms=1e3 * fwd.iqr, fwd_bwd_median_ms=1e3 * both.median,
                           fwd_bwd_iqr_ms=1e3 * both.iqr)


if __name__ == "__main__":
    main()
