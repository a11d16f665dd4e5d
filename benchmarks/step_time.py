"""Milliseconds per distillation iteration at CIFAR-10 shapes, compile time apart, peak memory.

    python benchmarks/step_time.py                       # DM and DC, ConvNet, DSA on
    python benchmarks/step_time.py --objectives dm --iterations 20 --conv_impl lax

Setting (issue 4): 10 classes of 32x32x3 images, budget ipc=1 with k=64 kept DCT coefficients
per channel -> 16 instances per class, ConvNet (width 128, depth 3), DSA on, real batch 256 per
class for DM (and DC), the full jitted ``fred_jax.train`` step (decode, augmentation,
objective, optax update). The real images are random (no data needed): the cost does not
depend on their values. Reports the median and quartiles over ``--iterations`` timed steps
after one warm-up step, the process CPU time per step (on a shared machine, CPU time / cores
estimates the quiet-machine wall time), the compile time (lower + compile), XLA's temp buffer
size for the step, the process's peak RSS, and the 1-minute load average. Recorded by
``benchmarks/harness.py``; measured numbers: ``benchmarks/RESULTS.md``.

Where the 2.0 s of a DM iteration went on 2026-11-24 (quiet AMD EPYC, ``jax.profiler`` trace):
the real side (2560 images x 101.5 MFLOP forward) is one fused XLA/YNNPACK kernel per chunk,
80 x 20 ms = 1.6 s, i.e. ~160 GFLOP/s, of which the RGB layer (7% of the FLOPs, 40 GFLOP/s)
takes 5.7 ms per chunk: its 16 MB output per chunk is at the edge of the 32 MB L3 cache, and
DRAM moves ~6 GB/s here. The synthetic side (160 images, forward and input gradient) takes
~0.3 s. Tried without gain: Winograd F(2x2, 3x3) in plain XLA (16x16x128 layer, 32 images:
22.7 ms against lax's 11.2), bfloat16 operands (that layer's conv: 13.2 ms against 12.5 in
float32), smaller or larger chunks (8-64), rematerialised synthetic pieces, and the RGB
layer's instance-norm statistics computed from patch moments.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fred_jax import configuration, data, models, objectives, train

import harness


def cifar_like(num_per_class: int = 300, seed: int = 0) -> data.Dataset:
    """Random normalised 32x32x3 images, 10 classes."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), num_per_class).astype(np.int32)
    x = rng.normal(size=(y.size, 32, 32, 3)).astype(np.float32)
    return data.Dataset(name="cifar10_random", num_classes=10, class_names=tuple("0123456789"),
                        image_shape=(32, 32, 3), mean=np.zeros(3, np.float32),
                        std=np.ones(3, np.float32), x_train=x, y_train=y, x_test=x[:10],
                        y_test=y[:10])


def bench_config(objective: str, conv_impl: str) -> configuration.ml_collections.ConfigDict:
    config = configuration.defaults()
    config.dataset = "cifar10"
    config.objective = objective
    config.ipc, config.k = 1, 64
    config.model = "ConvNet"
    config.conv_impl = conv_impl
    return config


def bench(objective: str, conv_impl: str, iterations: int, dataset: data.Dataset) -> dict:
    config = bench_config(objective, conv_impl)
    configuration.validate(config, dataset=dataset)
    setup = train.create(config, dataset)
    with harness.Stopwatch() as compiling:
        compiled = setup.step_fn.lower(setup.state).compile()
    memory = compiled.memory_analysis()
    state, metrics = [setup.state], [None]

    def step(_):
        state[0], metrics[0] = compiled(state[0])
        return state[0], metrics[0]

    timing = harness.timeit(step, iterations, first_is_compile=False)
    q1, median, q3 = (1e3 * v for v in harness.quartiles(timing.wall))
    return {
        "objective": objective,
        "conv_impl": objectives.conv_impl(config),
        "instances_per_class": int(setup.problem.instances_per_class),
        "iterations_timed": iterations,
        "ms_per_iteration_median": round(float(median), 1),
        "ms_per_iteration_q1_q3": [round(float(q1), 1), round(float(q3), 1)],
        "cpu_ms_per_iteration_median": round(timing.cpu_median * 1e3, 1),
        "compile_seconds": round(compiling.wall, 2),
        "xla_temp_bytes": int(getattr(memory, "temp_size_in_bytes", -1)) if memory else None,
        "peak_rss_mib_so_far": round(harness.peak_rss_mib(), 1),
        "loss": float(metrics[0]["loss"]),
        "load_average_1min": harness.load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", default="dm,dc", help="comma-separated: dm, dc")
    parser.add_argument("--conv_impl", default="auto", choices=("auto", *models.CONV_IMPLS),
                        help="config.conv_impl (auto: the library's default for the backend)")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations each")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    args = parser.parse_args()
    dataset = cifar_like()
    results = []
    settings = {"conv_impl": args.conv_impl, "iterations": args.iterations}
    with harness.Record("step_time", settings=settings) as record:
        for objective in [o.strip() for o in args.objectives.split(",") if o.strip()]:
            result = record.add(bench(objective, args.conv_impl, args.iterations, dataset))
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
