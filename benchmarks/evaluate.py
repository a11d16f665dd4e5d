"""Evaluation throughput: training epochs per second with 5 seeds vs 1 seed, test images per second.

Trains ConvNet on 160 CIFAR-10-sized images (32x32x3, random normalised pixels, 10 classes; the
protocol's batch of 256 holds them all, so one epoch is one SGD step per seed) with the full
evaluation protocol (DSA on every batch), all seeds in one program (see ``fred_jax.evaluate``:
vmapped, or one after another on XLA:CPU). Reports, per seed count, the
compile time (first epoch), the median (and IQR) seconds per epoch over the timed epochs,
epochs per second and seed-epochs per second, then the test pass (``--num_test`` images, all
seeds, 256-image chunks as in evaluate: median seconds per pass over ``--test_reps`` passes,
images per second), and peak memory (max RSS of the measuring process, which covers the
configurations it ran so far; device memory stats where the backend has them).
``--conv_impl auto`` is evaluate's default for the backend. Recorded by ``benchmarks/harness.py``; measured numbers:
``benchmarks/RESULTS.md``.

    python benchmarks/evaluate.py [--epochs 10] [--seeds 1,5] [--conv_impl auto,lax]
    python benchmarks/evaluate.py --pieces 8,16,32 --infer_pieces 32,256   # CPU piece sizes

``--pieces`` / ``--infer_pieces``: images per gradient piece of training and per forward pass
of testing (``fred_jax.platform.CPU_PIECE`` / ``CPU_INFER_PIECE``; "auto" the policy's), each
combination measured in a fresh process (two programs alive in one process slow each other
down on XLA:CPU, which would bias the comparison).

A compute-bound 2-core CPU gives no parallel speed-up across seeds (one seed already keeps both
cores busy); the "5 seeds in well under 5x" property needs an accelerator.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

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
    p.add_argument("--pieces", default="auto", help="comma-separated training piece sizes")
    p.add_argument("--infer_pieces", default="auto", help="comma-separated test piece sizes")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:  # one piece combination, rows as JSON lines (see the module docstring)
        for piece, name in ((a.pieces, "CPU_PIECE"), (a.infer_pieces, "CPU_INFER_PIECE")):
            if piece != "auto":
                setattr(platform, name, int(piece))
        for impl in a.conv_impl.split(","):
            for s in (int(v) for v in a.seeds.split(",")):
                row = bench(a.model, s, platform.resolve(impl, platform.policy().conv_train),
                            a.epochs, a.num_train, a.num_test, not a.no_dsa, a.test_reps)
                print(json.dumps({**row, "piece": platform.policy().train_piece,
                                  "infer_piece": platform.policy().infer_piece,
                                  "peak_rss_mib_so_far": round(harness.peak_rss_mib()),
                                  "device_peak_mib": harness.device_peak_mib()}), flush=True)
        return
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    rows = []
    impls = [platform.resolve(i, platform.policy().conv_train) for i in a.conv_impl.split(",")]
    settings = {k: getattr(a, k) for k in ("model", "epochs", "num_train", "num_test",
                                           "test_reps")}
    with harness.Record("evaluate", settings={**settings, "dsa": not a.no_dsa}) as record:
        for piece in a.pieces.split(","):
            for infer in a.infer_pieces.split(","):
                out = subprocess.run(
                    [sys.executable, __file__, "--one", "--pieces", piece, "--infer_pieces", infer,
                     "--conv_impl", ",".join(impls), "--seeds", a.seeds, "--model", a.model,
                     "--epochs", str(a.epochs), "--num_train", str(a.num_train), "--num_test",
                     str(a.num_test), "--test_reps", str(a.test_reps)]
                    + (["--no_dsa"] if a.no_dsa else []),
                    check=True, capture_output=True, text=True).stdout
                for line in out.splitlines():
                    if not line.startswith("{"):
                        continue
                    r = record.add(json.loads(line))
                    rows.append(r)
                    impl, s = r["conv_impl"], r["seeds"]
                    print(f"{r['model']} {impl:6s} seeds={s} pieces {r['piece']}/"
                          f"{r['infer_piece']}: compile+first epoch "
                          f"{r['compile_s']:.1f} s, {r['epochs_per_s']:.2f} epochs/s "
                          f"({r['seed_epochs_per_s']:.2f} seed-epochs/s), test "
                          f"{r['test_images_per_s']:.0f} images/s "
                          f"({r['test_seed_images_per_s']:.0f} seed-images/s)", flush=True)
    for group in sorted({(r["conv_impl"], r["piece"], r["infer_piece"]) for r in rows}):
        by = {r["seeds"]: r for r in rows
              if (r["conv_impl"], r["piece"], r["infer_piece"]) == group}
        for s, r in sorted(by.items()):
            if s > 1 and 1 in by:
                ratio = by[1]["epochs_per_s"] / r["epochs_per_s"]
                print(f"{group[0]} pieces {group[1]}/{group[2]}: {s} seeds take {ratio:.2f}x "
                      f"the time of 1 seed per epoch")
    print(f"peak RSS {max(r['peak_rss_mib_so_far'] for r in rows):.0f} MiB")
    device = [r["device_peak_mib"] for r in rows if r["device_peak_mib"] is not None]
    print(f"device peak bytes in use {max(device):.0f} MiB" if device
          else "device memory stats: not available on this backend")


if __name__ == "__main__":
    main()
