"""Step time of the DM step, TM step and evaluation epoch at 1, 2, 4, 8 devices.

    python benchmarks/scaling.py                         # simulated CPU devices, small sizes
    python benchmarks/scaling.py --devices 1,2,4,8 --workloads dm,tm,eval --repeats 5
    python benchmarks/scaling.py --platform native --size full   # real GPUs / TPU chips

Each device count runs in its own subprocess: with ``--platform cpu`` (default) the child sets
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before jax starts; with ``native`` it
uses the first N real devices. The child takes the mesh a run with ``num_devices=N`` takes
(``fred_jax.sharding.mesh_for``: None, i.e. the plain 1-device programs, for N = 1) and times,
after one compiling call, the median of ``--repeats`` calls of the library's own programs:

- dm:   ``fred_jax.train.create(config, dataset, mesh).step_fn``, one distillation iteration
        of FreD + DM (fresh ConvNet, DSA, real batch sampled inside the step), classes split
        over the mesh;
- tm:   the same for FreD + TM with ``--trajectories`` expert trajectories per iteration
        (fake experts: random walks written to a temporary folder), trajectories split over
        the mesh (``fred_jax.objectives.tm.sharded_loss``);
- eval: one training epoch of ``fred_jax.evaluate.train_seeds`` (``--seeds`` networks, seeds
        split over the mesh), measured as the mean over ``--repeats`` epochs.

It also prints XLA's FLOP count of the compiled per-device program (dm, tm): the share of the
work one device does, which is what turns into speed on real accelerators. The work not on a
parallel axis (decoding, the fresh network, sampling) is replicated, so DM's per-device FLOPs
fall less than 1/N. XLA's cost analysis counts the body of a loop once: the 1-device DM
program, which loops over the classes (``lax.map``), is undercounted, so compare DM's FLOPs
from 2 devices on (TM's student steps are a loop at every device count alike).

What simulated CPU devices can and cannot show: all N "devices" are threads of one process on
the same few physical cores (2 on the development machine), so the total arithmetic is the same
(or more, with padding) and there is *no speedup to expect*; collectives are memory copies.
What the numbers do show is that the sharded programs compile and run at every device count,
how the per-device FLOPs fall with N (ceil(items/N) items per device), and the overhead of the
sharded program (padding, all-reduce of the gradient, dispatch, and for DM the vmapped class
axis instead of the 1-device program's class-by-class loop) relative to 1 device. Real
scaling needs real devices: run with ``--platform native`` on a multi-GPU host or TPU VM.

Inputs are random arrays of the real shapes (no dataset is read). ``--size small`` (default)
shrinks the networks and batches so that a run takes a few minutes on 2 CPU cores;
``--size full`` uses the reference sizes (ConvNet width 128, depth 3, CIFAR-10 32x32x3, FreD
ipc 1 with k=64 (16 instances per class), DM real batch 256 per class, TM 20 student steps,
evaluation batch 256 on 500 images). Recorded by ``benchmarks/harness.py``; measured numbers:
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import harness

SIZES = {
    "small": dict(model="ConvNetW32", classes=10, shape=(16, 16, 3), dm_k=128, batch_real=16,
                  tm_k=256, tm_steps=2, trajectories=8, seeds=8, eval_images=64,
                  eval_batch=32),
    "full": dict(model="ConvNet", classes=10, shape=(32, 32, 3), dm_k=64, batch_real=256,
                 tm_k=64, tm_steps=20, trajectories=8, seeds=8, eval_images=500,
                 eval_batch=256),
}


def child(args: argparse.Namespace) -> dict:
    """Time the workloads on the mesh of ``args.child`` devices (runs in the subprocess)."""
    import jax
    import numpy as np

    from fred_jax import configuration, data, evaluate, expert_store, models, sharding, train
    from fred_jax.objectives import tm

    cfg = dict(SIZES[args.size])
    for name in ("trajectories", "seeds"):
        if getattr(args, name):
            cfg[name] = getattr(args, name)
    mesh = sharding.mesh_for(args.child)
    shape, classes = tuple(cfg["shape"]), cfg["classes"]
    cpu = jax.default_backend() == "cpu"
    conv_impl = "im2col" if cpu else "lax"  # second-order gradients (TM), vmapped seeds
    rng = np.random.default_rng(0)
    n = max(cfg["batch_real"], cfg["eval_images"] // classes)
    y = rng.permutation(np.repeat(np.arange(classes), n)).astype(np.int32)
    x = rng.normal(size=(len(y), *shape)).astype(np.float32)
    ds = data.Dataset(name="random", num_classes=classes,
                      class_names=tuple(map(str, range(classes))), image_shape=shape,
                      mean=np.zeros(shape[-1], np.float32), std=np.ones(shape[-1], np.float32),
                      x_train=x, y_train=y, x_test=x, y_test=y)
    out: dict = {"devices": 1 if mesh is None else mesh.size, "backend": jax.default_backend()}

    def timed(setup) -> dict:
        state = [setup.state]

        def call(_):
            state[0] = setup.step_fn(state[0])[0]
            return state[0]

        t = harness.timeit(call, args.repeats)
        cost = setup.step_fn.lower(setup.state).compile().cost_analysis()  # cached executable
        return {"step_s": t.median, "step_iqr_s": t.iqr, "compile_s": t.compile_s,
                "flops": cost.get("flops") if isinstance(cost, dict) else None}

    def config_for(objective: str, k: int):
        config = configuration.defaults()
        config.update_from_flattened_dict({
            "dataset": "random", "objective": objective, "model": cfg["model"], "ipc": 1,
            "k": k, "dm.batch_real": cfg["batch_real"], "lr": 1.0,
            "lr_convention": "orthonormal", "num_devices": args.child,
            "conv_impl": "lax" if objective == "dm" else conv_impl})
        return config

    if "dm" in args.workloads:
        out["dm"] = timed(train.create(config_for("dm", cfg["dm_k"]), ds, mesh))

    if "tm" in args.workloads:
        config = config_for("tm", cfg["tm_k"])
        config.tm = tm.defaults()
        net = models.get(cfg["model"], classes, shape, conv_impl=conv_impl)
        num_params, _ = expert_store.param_unraveler(net, shape)
        with tempfile.TemporaryDirectory() as folder:
            config.tm.update_from_flattened_dict({
                "syn_steps": cfg["tm_steps"], "max_start_epoch": 2, "expert_epochs": 2,
                "num_trajectories": cfg["trajectories"], "grad_chunk": 20 if cpu else 0,
                "experts.dir": folder, "experts.epochs": 3})
            for i in range(2):
                walk = np.cumsum(0.01 * rng.normal(size=(4, num_params)), axis=0)
                np.save(expert_store.expert_path(folder, i), walk.astype(np.float32))
            with open(os.path.join(folder, expert_store.META_FILE), "w") as f:
                json.dump({**expert_store.expert_settings(config, num_params), "epochs": 3}, f)
            setup = train.create(config, ds, mesh)
        out["tm"] = timed(setup)

    if "eval" in args.workloads:
        n = cfg["eval_images"]
        keys = evaluate.seed_keys(jax.random.key(0), cfg["seeds"])
        kw = dict(num_classes=classes, lr=0.01, batch_size=cfg["eval_batch"], conv_impl=conv_impl,
                  test_batch_size=n, mesh=mesh, progress=False)
        with harness.Stopwatch() as compiling:
            evaluate.train_seeds(keys, cfg["model"], x[:n], y[:n], x[:n], y[:n], epochs=0,
                                 **kw)  # compiles
        res = evaluate.train_seeds(keys, cfg["model"], x[:n], y[:n], x[:n], y[:n],
                                   epochs=args.repeats - 1, **kw)
        out["eval"] = {"step_s": res["train_seconds"] / args.repeats,
                       "compile_s": compiling.wall, "flops": None}
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
    settings = {k: getattr(args, k) for k in ("platform", "size", "repeats", "trajectories",
                                              "seeds")}
    with harness.Record("scaling", settings=settings) as record:
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
                record.add(devices=r["devices"], backend=r["backend"], workload=w, **r[w])
                flops = r[w]["flops"]
                print(f"{r['backend']:>4} x{r['devices']}  {w:<4}  step "
                      f"{1e3 * r[w]['step_s']:9.1f} ms  compile {r[w]['compile_s']:6.1f} s"
                      + (f"  GFLOP/device {flops / 1e9:8.3f}" if flops else ""), flush=True)
        if args.platform == "cpu":
            print("simulated devices share the same CPU cores: expect no speedup; the per-device "
                  "FLOPs show how the work is split (see the module docstring)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
