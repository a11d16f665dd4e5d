"""Evaluation throughput: training epochs per second with 5 seeds vs 1 seed, test images per second.

Trains ConvNet on 160 CIFAR-10-sized images (32x32x3, random normalised pixels, 10 classes; the
protocol's batch of 256 holds them all, so one epoch is one SGD step per seed) with the full
evaluation protocol (DSA on every batch), all seeds in one program (see ``fred_jax.evaluate``:
vmapped, or one after another on XLA:CPU). Reports, per seed count, the
compile time (first epoch), steady-state epochs per second and seed-epochs per second, then test
images per second (all seeds, 256-image chunks as in evaluate), and peak memory (process max
RSS, which covers every configuration run so far; device memory stats where the backend has
them). ``--conv_impl auto`` is evaluate's default (tapgrad on CPU, lax elsewhere).

    python benchmarks/evaluate.py [--epochs 10] [--seeds 1,5] [--conv_impl auto,lax]

Measured on the quiet 2-core CPU (AMD EPYC, XLA:CPU), 2026-11-24:

    conv_impl / seed layout         1 seed epochs/s   5 seeds epochs/s   5 seeds / 1 seed
    tapgrad, lax.map, pieces of 32        2.39              0.47              5.04x
    tapgrad, lax.map, whole batch         1.64              0.40              4.05x
    im2col, vmap (before)                 0.86              0.13              6.79x
    lax, vmap (before)                    1.74              0.05             35.6x

A compute-bound 2-core CPU gives no parallel speed-up across seeds (one seed already keeps both
cores busy); the "5 seeds in well under 5x" property needs an accelerator.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from fred_jax import augment, evaluate


def bench(model: str, seeds: int, conv_impl: str, epochs: int, num_train: int, num_test: int,
          dsa: bool) -> dict:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(num_train, 32, 32, 3)), jnp.float32)
    y = jnp.asarray(np.arange(num_train) % 10, jnp.int32)
    progs = evaluate._programs(model, 10, (32, 32, 3), conv_impl, num_train, 256,
                               augment.STRATEGY if dsa else None, augment.DSAParams(), 0.9,
                               5e-4, None)
    keys = evaluate.seed_keys(jax.random.key(0), seeds)
    lr = jnp.float32(0.01)
    t0 = time.perf_counter()
    state = progs.init(keys)
    state, loss, _ = progs.epoch(state, keys, jnp.int32(0), lr, x, y)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for ep in range(1, epochs + 1):
        state, loss, _ = progs.epoch(state, keys, jnp.int32(ep), lr, x, y)
    jax.block_until_ready(loss)
    train_s = time.perf_counter() - t0

    chunk, chunks = 256, max(1, num_test // 256)
    xt = jnp.asarray(rng.normal(size=(chunk, 32, 32, 3)), jnp.float32)
    yt = jnp.asarray(np.arange(chunk) % 10, jnp.int32)
    valid = jnp.ones(chunk, bool)
    jax.block_until_ready(progs.test(state, xt, yt, valid))
    t0 = time.perf_counter()
    for _ in range(chunks):
        c = progs.test(state, xt, yt, valid)
    jax.block_until_ready(c)
    test_s = time.perf_counter() - t0
    return {"model": model, "seeds": seeds, "conv_impl": conv_impl, "compile_s": compile_s,
            "epochs_per_s": epochs / train_s, "seed_epochs_per_s": seeds * epochs / train_s,
            "test_images_per_s": chunks * chunk / test_s,
            "test_seed_images_per_s": seeds * chunks * chunk / test_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ConvNet")
    p.add_argument("--seeds", default="1,5", help="comma-separated seed counts")
    p.add_argument("--conv_impl", default="auto", help="comma-separated: auto, lax, im2col")
    p.add_argument("--epochs", type=int, default=10, help="timed epochs (after one warm-up)")
    p.add_argument("--num_train", type=int, default=160)
    p.add_argument("--num_test", type=int, default=2048)
    p.add_argument("--no_dsa", action="store_true")
    a = p.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    rows = []
    impls = [evaluate.default_conv_impl() if i == "auto" else i for i in a.conv_impl.split(",")]
    for impl in impls:
        for s in (int(v) for v in a.seeds.split(",")):
            r = bench(a.model, s, impl, a.epochs, a.num_train, a.num_test, not a.no_dsa)
            rows.append(r)
            print(f"{r['model']} {impl:6s} seeds={s}: compile+first epoch {r['compile_s']:.1f} s, "
                  f"{r['epochs_per_s']:.2f} epochs/s ({r['seed_epochs_per_s']:.2f} seed-epochs/s),"
                  f" test {r['test_images_per_s']:.0f} images/s "
                  f"({r['test_seed_images_per_s']:.0f} seed-images/s)", flush=True)
    for impl in impls:
        by = {r["seeds"]: r for r in rows if r["conv_impl"] == impl}
        if 1 in by and len(by) > 1:
            for s, r in sorted(by.items()):
                if s > 1:
                    ratio = by[1]["epochs_per_s"] / r["epochs_per_s"]
                    print(f"{impl}: {s} seeds take {ratio:.2f}x the time of 1 seed per epoch")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    stats = jax.devices()[0].memory_stats()
    if stats:
        print(f"device peak bytes in use {stats.get('peak_bytes_in_use', 0) / 2**20:.0f} MiB")
    else:
        print("device memory stats: not available on this backend")


if __name__ == "__main__":
    main()
