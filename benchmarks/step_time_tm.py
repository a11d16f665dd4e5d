"""Trajectory matching: time per distillation iteration and peak memory vs ``syn_steps``.

CIFAR-10 shapes of the paper's headline setting (FreD, ipc=1, k=64 DCT coefficients per channel:
16 instances per class, 160 synthetic 32x32x3 images), student ConvNet (depth 3, width 128,
instance norm, im2col convolutions), DSA on every student step, whole synthetic set per step
(batch_syn=0), gradient in pieces of 10 images (``config.tm.grad_chunk``). One
iteration = decode -> ``syn_steps`` second-order SGD steps of the student -> loss -> gradient
w.r.t. the coefficients and the learnable rate -> optimiser updates (coefficients: SGD momentum
0.5 with the torch-dct rescale; rate: SGD momentum 0.5, clipped), i.e. what ``fred_jax.train``
jits for ``objective="tm"``.

Every setting runs in its own process, so the peak resident memory (``ru_maxrss``, including
compilation) belongs to that setting alone. Also reported: XLA's compiled temp-buffer size, the
compile time, and wall and CPU seconds per iteration (median over ``--iters`` runs after
``--warmup`` untimed ones, at least 1). CPU seconds (all threads) measure the work whatever the
load; on a quiet 2-core machine the wall time lies between cpu/2 and cpu. The load average is
printed because on a shared machine the wall time depends on it. Recorded by
``benchmarks/harness.py``; measured numbers (time linear in syn_steps, peak RSS growing by the
per-step residuals only): ``benchmarks/RESULTS.md``.

    python benchmarks/step_time_tm.py                      # syn_steps 10, 20, 50
    python benchmarks/step_time_tm.py --syn_steps 10 --iters 3 --grad_chunk 0 --conv_impl lax
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import harness


def build(syn_steps: int, conv_impl: str, remat: bool, grad_chunk: int):
    """``(step, learnable, opt_state)``: one TM iteration at the headline shapes as a pure
    function ``step(learnable, opt_state, key) -> (learnable, opt_state, loss)`` (not jitted)
    and its first inputs. Random images, start and target (the cost does not depend on them)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fred_jax import expert_store, models, optimizer, synset
    from fred_jax.objectives import tm

    shape, num_classes, ipc, k = (32, 32, 3), 10, 1, 64
    rng = np.random.default_rng(0)
    real = rng.normal(size=(num_classes * 20, *shape)).astype(np.float32)
    labels = np.repeat(np.arange(num_classes), 20)
    syn = synset.init(jax.random.key(0), real, labels, num_classes, ipc=ipc, k=k)
    model = models.get("ConvNet", num_classes, shape, conv_impl=conv_impl)
    start = expert_store.flatten_params(models.init(model, jax.random.key(1), shape)["params"])
    target = start + 0.01 * jax.random.normal(jax.random.key(2), start.shape)
    y = syn.labels()
    tx = optimizer.make_optimizer(
        1e8, 0.5,
        optimizer.coefficient_lr_scale(np.asarray(syn.indices), shape, "dct", "torch_dct"),
        {"syn_lr": tm.lr_optimizer(1e-7)})
    learnable = {"coeffs": syn.coeffs, "syn_lr": jnp.asarray(0.01, jnp.float32)}
    opt_state = tx.init(learnable)
    apply = optimizer.make_apply(tx)

    def step(learnable, opt_state, key):
        def loss_fn(l):
            x = synset.decode(l["coeffs"], syn.indices, "dct", shape).reshape(-1, *shape)
            return tm.loss(model, x, y, l["syn_lr"], start, target, key, syn_steps=syn_steps,
                           remat=remat, grad_chunk=grad_chunk)

        value, grads = jax.value_and_grad(loss_fn)(learnable)
        learnable, opt_state = apply(learnable, opt_state, grads)
        return {**learnable, "syn_lr": tm.clip_lr(learnable["syn_lr"])}, opt_state, value

    return step, learnable, opt_state


def one(syn_steps: int, iters: int, warmup: int, conv_impl: str, remat: bool,
        grad_chunk: int) -> dict:
    """Measure one setting in this process."""
    import jax

    step, learnable, opt_state = build(syn_steps, conv_impl, remat, grad_chunk)
    with harness.Stopwatch() as compiling:
        compiled = jax.jit(step).lower(learnable, opt_state, jax.random.key(3)).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    carry = [learnable, opt_state, None]

    def call(i):
        carry[0], carry[1], carry[2] = compiled(carry[0], carry[1], jax.random.key(4 + i))
        return carry

    timing = harness.timeit(call, iters, warmup - 1, first_is_compile=False)
    return {
        "syn_steps": syn_steps, "conv_impl": conv_impl, "remat": remat,
        "grad_chunk": grad_chunk, "iters": iters, "warmup": warmup,
        "wall_s": timing.median, "wall_iqr_s": timing.iqr, "cpu_s": timing.cpu_median,
        "compile_s": compiling.wall, "xla_temp_mb": temp / 2**20,
        "peak_rss_mb": harness.peak_rss_mib(), "loss": float(carry[2]),
        "backend": jax.default_backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--syn_steps", default="10,20,50", help="comma-separated settings")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per setting")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (>= 1)")
    parser.add_argument("--conv_impl", default="im2col", choices=("im2col", "lax", "tapgrad"))
    parser.add_argument("--grad_chunk", type=int, default=10, help="config.tm.grad_chunk")
    parser.add_argument("--no_remat", action="store_true", help="disable rematerialisation")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1 or args.iters < 1:
        parser.error("need --warmup >= 1 and --iters >= 1")
    if args.one:
        print(json.dumps(one(int(args.syn_steps), args.iters, args.warmup, args.conv_impl,
                             not args.no_remat, args.grad_chunk)))
        return
    rows = []
    settings = {k: getattr(args, k) for k in ("iters", "warmup", "conv_impl", "grad_chunk")}
    with harness.Record("step_time_tm", settings={**settings, "remat": not args.no_remat},
                        note="peak_rss_mb: each setting's own process") as record:
        for s in (int(v) for v in args.syn_steps.split(",")):
            load = harness.load_average()
            cmd = [sys.executable, os.path.abspath(__file__), "--one", "--syn_steps", str(s),
                   "--iters", str(args.iters), "--warmup", str(args.warmup), "--conv_impl",
                   args.conv_impl, "--grad_chunk", str(args.grad_chunk)]
            if args.no_remat:
                cmd.append("--no_remat")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["load_before"], row["load_after"] = load, harness.load_average()
            rows.append(record.add(row))
            print(json.dumps(row), flush=True)
    print(f"\n{'syn_steps':>9} {'s/it wall':>10} {'s/it cpu':>9} {'compile s':>9} "
          f"{'peak RSS MB':>11} {'XLA temp MB':>11} {'load':>9}")
    for r in rows:
        print(f"{r['syn_steps']:>9} {r['wall_s']:>10.1f} {r['cpu_s']:>9.1f} {r['compile_s']:>9.1f} "
              f"{r['peak_rss_mb']:>11.0f} {r['xla_temp_mb']:>11.0f} "
              f"{r['load_before']:>4.1f}-{r['load_after']:<4.1f}")


if __name__ == "__main__":
    main()
