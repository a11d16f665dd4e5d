"""Step time of the sharded DM step, TM step and evaluation epoch at 1, 2, 4, 8 devices.

    python benchmarks/scaling.py                         # simulated CPU devices, small sizes
    python benchmarks/scaling.py --devices 1,2,4,8 --workloads dm,tm,eval --repeats 5
    python benchmarks/scaling.py --platform native --size full   # real GPUs / TPU chips

Each device count runs in its own subprocess: with ``--platform cpu`` (default) the child sets
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before jax starts; with ``native`` it
uses the first N real devices. Each child builds a 1-D mesh (``fred_jax.sharding.make_mesh``)
and times, after one compiling call, the median of ``--repeats`` calls of:

- dm:   value and gradient of ``fred_jax.objectives.dm.loss`` (fresh ConvNet, DSA) w.r.t. the
        synthetic images, classes split over the mesh;
- tm:   value and gradient of the trajectory-matching loss w.r.t. the synthetic images and the
        student rate, ``--trajectories`` expert trajectories split over the mesh (students
        built with ``fred_jax.objectives.tm.student_trajectory``);
- eval: one training epoch of ``fred_jax.evaluate.train_seeds`` (``--seeds`` networks, seeds
        split over the mesh), measured as the mean over ``--repeats`` epochs.

It also prints XLA's FLOP count of the compiled per-device program (dm, tm): the share of the
work one device does, which is what turns into speed on real accelerators.

What simulated CPU devices can and cannot show: all N "devices" are threads of one process on
the same few physical cores (2 on the development machine), so the total arithmetic is the same
(or more, with padding) and there is *no speedup to expect*; collectives are memory copies.
What the numbers do show is that the sharded program compiles and runs at every device count,
that the per-device FLOPs fall as 1/N (ceil(items/N) items per device), and the overhead of
the sharded program (padding, all-reduce of the gradient, dispatch) relative to 1 device.
Real scaling needs real devices: run with ``--platform native`` on a multi-GPU host or TPU VM.

Inputs are random arrays of the real shapes (no dataset is read). ``--size small`` (default)
shrinks the networks and batches so that a run takes about a minute on 2 CPU cores;
``--size full`` uses the reference sizes (ConvNet width 128, depth 3, CIFAR-10 32x32x3, DM
real batch 256 per class, TM ipc 10 with 20 student steps, evaluation batch 256 on 500 images).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = {
    "small": dict(model="ConvNetW32", classes=10, shape=(16, 16, 3), batch_real=16, n_syn=2,
                  tm_images=10, tm_steps=2, trajectories=8, seeds=8, eval_images=64,
                  eval_batch=32),
    "full": dict(model="ConvNet", classes=10, shape=(32, 32, 3), batch_real=256, n_syn=10,
                 tm_images=100, tm_steps=20, trajectories=8, seeds=8, eval_images=500,
                 eval_batch=256),
}


def child(args: argparse.Namespace) -> dict:
    """Time the workloads on a mesh of ``args.child`` devices (runs in the subprocess)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fred_jax import evaluate, models, sharding
    from fred_jax.experts import param_unraveler
    from fred_jax.objectives import dm, tm

    cfg = dict(SIZES[args.size])
    for name in ("trajectories", "seeds"):
        if getattr(args, name):
            cfg[name] = getattr(args, name)
    mesh = sharding.make_mesh(args.child)
    shape, classes = tuple(cfg["shape"]), cfg["classes"]
    conv_impl = "im2col" if jax.default_backend() == "cpu" else "lax"  # as the TM docs advise
    net = models.get(cfg["model"], classes, shape, conv_impl=conv_impl)
    key = jax.random.key(0)
    out: dict = {"devices": mesh.size, "backend": jax.default_backend()}

    def timed(fn, *inputs) -> tuple[float, float, float | None]:
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*inputs).compile()
        jax.block_until_ready(compiled(*inputs))
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*inputs))
            times.append(time.perf_counter() - t0)
        cost = compiled.cost_analysis()
        flops = cost.get("flops") if isinstance(cost, dict) else None
        return statistics.median(times), compile_s, flops

    if "dm" in args.workloads:
        variables = models.init(net, key, shape)
        real = jax.random.normal(key, (classes, cfg["batch_real"], *shape))
        syn = jax.random.normal(jax.random.fold_in(key, 1), (classes, cfg["n_syn"], *shape))

        def dm_step(syn, real, variables, k):
            return jax.value_and_grad(
                lambda s: dm.loss(net, variables, real, s, k, mesh=mesh))(syn)

        inputs = sharding.replicate((syn, real, variables, key), mesh)
        out["dm"] = dict(zip(("step_s", "compile_s", "flops"), timed(dm_step, *inputs)))

    if "tm" in args.workloads:
        num_params, _ = param_unraveler(net, shape)
        t = cfg["trajectories"]
        start = 0.01 * jax.random.normal(key, (t, num_params))
        target = start + 0.01 * jax.random.normal(jax.random.fold_in(key, 2), (t, num_params))
        images = jax.random.normal(jax.random.fold_in(key, 3), (cfg["tm_images"], *shape))
        labels = jnp.arange(cfg["tm_images"], dtype=jnp.int32) % classes

        def tm_step(images, syn_lr, start, target, k):
            def loss(images, syn_lr):
                def one(s, g, kk):
                    final = tm.student_trajectory(net, images, labels, syn_lr, s, kk,
                                                  syn_steps=cfg["tm_steps"])
                    return jnp.sum((final - g) ** 2) / jnp.sum((s - g) ** 2)

                keys = jax.random.split(k, start.shape[0])
                return sharding.sharded_vmap(one, mesh)(start, target, keys).mean()

            return jax.value_and_grad(loss, argnums=(0, 1))(images, syn_lr)

        inputs = sharding.replicate((images, jnp.float32(0.01), start, target, key), mesh)
        out["tm"] = dict(zip(("step_s", "compile_s", "flops"), timed(tm_step, *inputs)))

    if "eval" in args.workloads:
        n = cfg["eval_images"]
        x = np.asarray(jax.random.normal(key, (n, *shape)))
        y = np.arange(n, dtype=np.int32) % classes
        keys = evaluate.seed_keys(key, cfg["seeds"])
        kw = dict(num_classes=classes, lr=0.01, batch_size=cfg["eval_batch"], conv_impl=conv_impl,
                  test_batch_size=n, mesh=mesh, progress=False)
        t0 = time.perf_counter()
        evaluate.train_seeds(keys, cfg["model"], x, y, x, y, epochs=0, **kw)  # compiles
        compile_s = time.perf_counter() - t0
        res = evaluate.train_seeds(keys, cfg["model"], x, y, x, y, epochs=args.repeats - 1, **kw)
        out["eval"] = {"step_s": res["train_seconds"] / args.repeats, "compile_s": compile_s,
                       "flops": None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    parser.add_argument("--workloads", default="dm,tm,eval", help="subset of dm,tm,eval")
    parser.add_argument("--platform", choices=("cpu", "native"), default="cpu",
                        help="cpu: simulated CPU devices; native: the machine's real devices")
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trajectories", type=int, default=0, help="TM: 0 = size default")
    parser.add_argument("--seeds", type=int, default=0, help="eval: 0 = size default")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workloads = tuple(w for w in args.workloads.split(",") if w)
    if set(args.workloads) - {"dm", "tm", "eval"} or args.repeats < 1:
        parser.error("workloads must be a subset of dm,tm,eval and repeats >= 1")
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return

    results = []
    for n in (int(v) for v in args.devices.split(",")):
        env = dict(os.environ)
        if args.platform == "cpu":
            env["JAX_PLATFORMS"] = "cpu"
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                                + f" --xla_force_host_platform_device_count={n}")
        cmd = [sys.executable, __file__, "--child", str(n), "--workloads",
               ",".join(args.workloads), "--platform", args.platform, "--size", args.size,
               "--repeats", str(args.repeats), "--trajectories", str(args.trajectories),
               "--seeds", str(args.seeds)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{n} devices failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))
        r = results[-1]
        for w in args.workloads:
            flops = r[w]["flops"]
            print(f"{r['backend']:>4} x{r['devices']}  {w:<4}  step {1e3 * r[w]['step_s']:9.1f} ms"
                  f"  compile {r[w]['compile_s']:6.1f} s"
                  + (f"  GFLOP/device {flops / 1e9:8.3f}" if flops else ""), flush=True)
    if args.platform == "cpu":
        print("simulated devices share the same CPU cores: expect no speedup; the per-device "
              "FLOPs show how the work is split (see the module docstring)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
