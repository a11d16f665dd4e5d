"""Evaluation throughput: training epochs per second with 5 seeds vs 1 seed, test images per second.

Trains ConvNet on 160 CIFAR-10-sized images (32x32x3, random normalised pixels, 10 classes; the
protocol's batch of 256 holds them all, so one epoch is one SGD step per seed) with the full
evaluation protocol (DSA on every batch), all seeds in one program (see ``fred_jax.evaluate``:
vmapped, or one after another on XLA:CPU). Reports, per seed count, the
compile time (first epoch), the median (and IQR) seconds per epoch over the timed epochs,
epochs per second and seed-epochs per second, then the test pass (``--num_test`` images, all
seeds, 256-image chunks as in evaluate: median seconds per pass over ``--test_reps`` passes,
images per second), and peak memory (process max RSS, which covers every configuration run so
far; device memory stats where the backend has them). ``--conv_impl auto`` is evaluate's
default for the backend. Recorded by ``benchmarks/harness.py``; measured numbers:
``benchmarks/RESULTS.md``.

    python benchmarks/evaluate.py [--epochs 10] [--seeds 1,5] [--conv_impl auto,lax]

A compute-bound 2-core CPU gives no parallel speed-up across seeds (one seed already keeps both
cores busy); the "5 seeds in well under 5x" property needs an accelerator.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from fred_jax import augment, classifier, evaluate, platform

import harness


def bench(model: str, seeds: int, conv_impl: str, epochs: int, num_train: int, num_test: int,
          dsa: bool, test_reps: int) -> dict:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(num_train, 32, 32, 3)), jnp.float32)
    y = jnp.asarray(np.arange(num_train) % 10, jnp.int32)
    progs = classifier.programs(model, 10, (32, 32, 3), conv_impl, num_train, 256,
                                augment.STRATEGY if dsa else None, augment.DSAParams(), 0.9,
                                5e-4, None)
    keys = evaluate.seed_keys(jax.random.key(0), seeds)
    lr = jnp.float32(0.01)
    state = [None]

    def epoch(i):
        if i == 0:
            state[0] = progs.init(keys)
        state[0], loss, _ = progs.epoch(state[0], keys, jnp.int32(i), lr, x, y)
        return loss

    train = harness.timeit(epoch, epochs)

    chunk, chunks = 256, max(1, num_test // 256)
    xt = jnp.asarray(rng.normal(size=(chunk, 32, 32, 3)), jnp.float32)
    yt = jnp.asarray(np.arange(chunk) % 10, jnp.int32)
    valid = jnp.ones(chunk, bool)
    test = harness.timeit(lambda _: [progs.test(state[0], xt, yt, valid) for _ in range(chunks)],
                          test_reps)
    return {"model": model, "seeds": seeds, "conv_impl": conv_impl,
            "compile_s": train.compile_s, "epoch_median_s": train.median,
            "epoch_iqr_s": train.iqr, "epoch_cpu_median_s": train.cpu_median,
            "epochs_per_s": 1 / train.median, "seed_epochs_per_s": seeds / train.median,
            "test_compile_s": test.compile_s, "test_pass_median_s": test.median,
            "test_pass_iqr_s": test.iqr,
            "test_images_per_s": chunks * chunk / test.median,
            "test_seed_images_per_s": seeds * chunks * chunk / test.median}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ConvNet")
    p.add_argument("--seeds", default="1,5", help="comma-separated seed counts")
    p.add_argument("--conv_impl", default="auto", help="comma-separated: auto, lax, im2col")
    p.add_argument("--epochs", type=int, default=10, help="timed epochs (after one warm-up)")
    p.add_argument("--num_train", type=int, default=160)
    p.add_argument("--num_test", type=int, default=2048)
    p.add_argument("--no_dsa", action="store_true")
    p.add_argument("--test_reps", type=int, default=3, help="timed test passes (after one)")
    a = p.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    rows = []
    impls = [platform.resolve(i, platform.policy().conv_train) for i in a.conv_impl.split(",")]
    settings = {k: getattr(a, k) for k in ("model", "epochs", "num_train", "num_test",
                                           "test_reps")}
    with harness.Record("evaluate", settings={**settings, "dsa": not a.no_dsa}) as record:
        for impl in impls:
            for s in (int(v) for v in a.seeds.split(",")):
                r = record.add(bench(a.model, s, impl, a.epochs, a.num_train, a.num_test,
                                     not a.no_dsa, a.test_reps))
                rows.append(r)
                print(f"{r['model']} {impl:6s} seeds={s}: compile+first epoch "
                      f"{r['compile_s']:.1f} s, {r['epochs_per_s']:.2f} epochs/s "
                      f"({r['seed_epochs_per_s']:.2f} seed-epochs/s), test "
                      f"{r['test_images_per_s']:.0f} images/s "
                      f"({r['test_seed_images_per_s']:.0f} seed-images/s)", flush=True)
    for impl in impls:
        by = {r["seeds"]: r for r in rows if r["conv_impl"] == impl}
        if 1 in by and len(by) > 1:
            for s, r in sorted(by.items()):
                if s > 1:
                    ratio = by[1]["epochs_per_s"] / r["epochs_per_s"]
                    print(f"{impl}: {s} seeds take {ratio:.2f}x the time of 1 seed per epoch")
    print(f"peak RSS {harness.peak_rss_mib():.0f} MiB")
    device = harness.device_peak_mib()
    print("device memory stats: not available on this backend" if device is None
          else f"device peak bytes in use {device:.0f} MiB")


if __name__ == "__main__":
    main()
