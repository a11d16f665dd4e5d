"""Multi-device checks of fred_jax.sharding, run in a subprocess with simulated CPU devices.

    python tests/sharding_worker.py --devices 8

XLA_FLAGS must be set before jax starts, and the rest of the suite runs in one single-device
pytest process, so tests/test_sharding.py runs this script and reads the JSON line it prints:
for each parallel workload, the largest difference between the sharded result (meshes of
all devices, on uneven axes) and plain ``jax.vmap`` on one device, plus per-device
FLOPs from XLA's cost analysis (evidence that the work is really split).
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=8)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.devices}")
    os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np

    from fred_jax import models
    from fred_jax import sharding as sh

    assert jax.device_count() == args.devices, jax.devices()
    out: dict = {"devices": jax.device_count()}

    def maxdiff(a, b) -> float:
        return max(float(jnp.max(jnp.abs(x - y))) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    def scale(a) -> float:
        return max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(a))

    # DM-like step: per-class || mean embed(real) - mean embed(syn) ||^2 with one fresh net,
    # summed over 10 classes, gradient w.r.t. the synthetic images (the class axis).
    num_classes, shape = 10, (8, 8, 3)
    net = models.ConvNet(num_classes, width=4, depth=1)
    params = models.init(net, jax.random.key(0), shape)
    real = jax.random.normal(jax.random.key(1), (num_classes, 6, *shape))
    syn = jax.random.normal(jax.random.key(2), (num_classes, 2, *shape))

    def class_loss(r, s, variables):
        e = lambda x: net.apply(variables, x, features=True).mean(0)
        return jnp.sum((e(r) - e(s)) ** 2)

    def dm_step(vmap):
        def loss(s, r, variables):
            return vmap(class_loss, in_axes=(0, 0, None))(r, s, variables).sum()
        return jax.jit(jax.value_and_grad(loss))

    ref_step = dm_step(jax.vmap).lower(syn, real, params).compile()
    ref = ref_step(syn, real, params)
    mesh = sh.make_mesh()
    inputs = sh.replicate((syn, real, params), mesh)
    step = dm_step(lambda f, in_axes: sh.sharded_vmap(f, mesh, in_axes)).lower(*inputs).compile()
    got = step(*inputs)
    out["dm"] = {"scale": scale(ref), "diff": maxdiff(ref, got),
                 "flops_ratio": step.cost_analysis()["flops"] / ref_step.cost_analysis()["flops"],
                 "grad_spec": str(got[1].sharding.spec)}

    # Evaluation-like: 5 seeds (uneven on 8 devices), each initialises its own softmax
    # classifier from its key and takes 3 SGD steps on the same data; seeds mapped, data not.
    x = jax.random.normal(jax.random.key(3), (32, *shape)).reshape(32, -1)
    y = jax.random.randint(jax.random.key(4), (32,), 0, num_classes)
    keys = jax.random.split(jax.random.key(5), 5)

    def train_seed(key, x, y):
        p = 0.1 * jax.random.normal(key, (x.shape[1], num_classes))

        def xent(p):
            logp = jax.nn.log_softmax(x @ p)
            return -jnp.take_along_axis(logp, y[:, None], 1).mean()

        p, _ = jax.lax.scan(lambda p, _: (p - 0.1 * jax.grad(xent)(p), None), p, None, length=3)
        return xent(p), ((x @ p).argmax(-1) == y).mean(), p

    ref = jax.jit(jax.vmap(train_seed, in_axes=(0, None, None)))(keys, x, y)
    got = jax.jit(sh.sharded_vmap(train_seed, mesh, in_axes=(0, None, None)))(
        keys, *sh.replicate((x, y), mesh))
    out["seeds"] = {"diff": maxdiff(ref, got), "scale": scale(ref),
                    "losses": np.asarray(got[0]).tolist()}

    # TM-like: 5 trajectories (mapped) of 3 remat'd SGD steps of a student on closed-over,
    # replicated images with a learnable rate; a keyed lax.switch per step stands for DSA.
    # Gradient w.r.t. the images and the rate (replicated: summed over devices).
    images = jax.random.normal(jax.random.key(6), (6, 5))
    targets = jax.nn.one_hot(jnp.arange(6) % 3, 3)
    start = jax.random.normal(jax.random.key(7), (5, 15))
    target = start + 0.1 * jax.random.normal(jax.random.key(8), (5, 15))

    def tm_loss(vmap, images, lr, start, target):
        def one(s, t, k):
            def step(theta, kk):
                x = jax.lax.switch(jax.random.randint(kk, (), 0, 2),
                                   [lambda v: v, lambda v: jnp.flip(v, 1)], images)
                ce = lambda th: jnp.mean((jnp.tanh(x @ th.reshape(5, 3)) - targets) ** 2)
                return theta - lr * jax.grad(ce)(theta), None

            final, _ = jax.lax.scan(jax.checkpoint(step), s, jax.random.split(k, 3))
            return jnp.sum((final - t) ** 2) / jnp.sum((s - t) ** 2)

        keys = jax.random.split(jax.random.key(9), start.shape[0])
        return vmap(one)(start, target, keys).mean()

    grad = jax.value_and_grad(tm_loss, argnums=(1, 2))
    ref = jax.jit(lambda *a: grad(jax.vmap, *a))(images, 0.5, start, target)
    got = jax.jit(lambda *a: grad(lambda f: sh.sharded_vmap(f, mesh), *a))(
        *sh.replicate((images, jnp.float32(0.5), start, target), mesh))
    out["tm"] = {"diff": maxdiff(ref, got), "scale": scale(ref)}

    # jit boundary: a padded leading axis enters and leaves sharded via in/out_shardings.
    (v, mask) = sh.pad_leading(jnp.arange(10.0), mesh.size)
    f = jax.jit(lambda v: 2 * v, in_shardings=sh.leading(mesh), out_shardings=sh.leading(mesh))
    w = f(sh.shard_leading(v, mesh))
    out["boundary"] = {"spec": str(w.sharding.spec),
                       "shard_rows": sorted({s.data.shape[0] for s in w.addressable_shards}),
                       "values": np.asarray(w[mask]).tolist()}

    # constrain inside jit on an uneven axis (XLA pads internally).
    g = jax.jit(lambda r: jnp.sin(sh.constrain(r, mesh)).sum((1, 2, 3, 4)))
    out["constrain_diff"] = maxdiff(g(real), jnp.sin(real).sum((1, 2, 3, 4)))

    # argument checks of the multi-device path (1 device falls back to jax.vmap)
    errors = 0
    for bad in (lambda: sh.sharded_vmap(jnp.sum, mesh, (1,))(real),
                lambda: sh.sharded_vmap(jnp.add, mesh, (0, 0))(real, syn[:5]),
                lambda: sh.sharded_vmap(jnp.sum, mesh, None)(real),
                lambda: sh.shard_leading(real, mesh)):
        try:
            bad()
        except ValueError:
            errors += 1
    out["value_errors"] = errors
    print(json.dumps(out))


if __name__ == "__main__":
    main()
