"""The real fred_jax steps on a mesh of simulated CPU devices, against one device.

    python tests/sharding_worker.py --devices 8 --tmp DIR

XLA_FLAGS must be set before jax starts, and the rest of the suite runs in one single-device
pytest process, so tests/test_sharding.py runs this script and reads the JSON line it prints.
On a toy dataset (10 classes: uneven over 8 devices) it runs, once with ``mesh=None`` (the
plain 1-device programs) and once on a mesh of all devices: a DM step and a TM step through
``train.create(...).step_fn`` (TM with 8 expert trajectories from fake experts under DIR), an
evaluation (``evaluate.train_seeds``, 5 seeds) and expert training
(``experts.train_experts``, 3 experts); it reports the largest differences, the per-device
FLOPs from XLA's cost analysis (evidence that the work is split), and an orbax checkpoint round
trip of the sharded state (save on the mesh, restore onto the mesh and onto one device, and a
1-device checkpoint onto the mesh).
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--tmp", required=True, help="folder for experts and checkpoints")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.devices}")
    os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np

    from fred_jax import (checkpoint, configuration, data, evaluate, expert_store, experts, models,
                          train)
    from fred_jax import sharding as sh
    from fred_jax.objectives import tm

    assert jax.device_count() == args.devices, jax.devices()
    mesh = sh.make_mesh()
    out: dict = {"devices": jax.device_count()}

    def maxdiff(a, b) -> float:
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    def scale(a) -> float:
        return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(a))

    num_classes, shape = 10, (8, 8, 3)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(num_classes), 8).astype(np.int32)
    x = (rng.normal(size=(len(y), *shape)) + 0.3 * y[:, None, None, None]).astype(np.float32)
    ds = data.Dataset(name="toy", num_classes=num_classes,
                      class_names=tuple(map(str, range(num_classes))), image_shape=shape,
                      mean=np.zeros(3, np.float32), std=np.ones(3, np.float32),
                      x_train=x, y_train=y, x_test=x[::2], y_test=y[::2])

    def config_for(objective):
        config = configuration.defaults()
        config.update_from_flattened_dict({
            "dataset": "toy", "objective": objective, "model": "ConvNetD1", "ipc": 1, "k": 16,
            "lr": 10.0, "lr_convention": "orthonormal", "dsa_strategy": "color_flip",
            "dm.batch_real": 8, "conv_impl": "lax" if objective == "dm" else "im2col"})
        return config

    def compare(config, name, flops_reference=None):
        """One and two steps of train.create's step on one device and on the mesh; per-device
        FLOPs of the mesh's program over those of the 1-device program or, if given, of
        ``flops_reference``'s (XLA counts a loop body once, so compare loop-free axes)."""
        single, sharded = train.create(config, ds), train.create(config, ds, mesh)
        compiled = [s.step_fn.lower(s.state).compile() for s in (single, sharded)]
        reference = compiled[0] if flops_reference is None else flops_reference
        (a1, ma), (b1, mb) = compiled[0](single.state), compiled[1](sharded.state)
        a2, b2 = compiled[0](a1)[0], compiled[1](b1)[0]  # outputs fit the inputs' layout
        change = jax.tree.map(lambda u, v: np.asarray(u) - np.asarray(v),
                              a2.learnable, single.state.learnable)
        out[name] = {
            "loss": [float(ma["loss"]), float(mb["loss"])],
            "diff": maxdiff(a2.learnable, b2.learnable), "change": scale(change),
            "flops_ratio": (compiled[1].cost_analysis()["flops"]
                            / reference.cost_analysis()["flops"]),
            "specs": sorted({str(v.sharding.spec) for v in jax.tree.leaves(b2)}),
            "mesh_devices": sorted({len(v.sharding.device_set) for v in jax.tree.leaves(b2)}),
        }
        return single, sharded, a1, b1

    # DM on one device loops over the classes (lax.map); on a 1-device mesh they are vmapped
    # as on 8 devices, the FLOP reference for the split of the class axis.
    config = config_for("dm")
    vmapped = train.create(config, ds, sh.make_mesh(1))
    dm_single, dm_sharded, dm_a1, dm_b1 = compare(
        config, "dm", vmapped.step_fn.lower(vmapped.state).compile())

    # TM: 8 trajectories per step from 2 fake experts (random walks from real inits).
    config = config_for("tm")
    config.dsa_strategy = ""  # DSA on a mesh: DM above (siamese), evaluation below (per image)
    config.lr = 1000.0  # two steps move the coefficients ~1e-2, far above float32's ulp of ~1
    config.tm = tm.defaults()
    config.tm.update_from_flattened_dict({
        "syn_steps": 2, "max_start_epoch": 2, "expert_epochs": 1, "num_trajectories": 8,
        "lr_lr": 1e-3, "grad_chunk": 0, "experts.epochs": 2,
        "experts.dir": os.path.join(args.tmp, "tm_experts")})
    student = models.get("ConvNetD1", num_classes, shape, conv_impl="im2col")
    p, _ = expert_store.param_unraveler(student, shape)
    os.makedirs(config.tm.experts.dir)
    for i in range(2):
        start = expert_store.flatten_params(models.init(student, jax.random.key(i), shape)["params"])
        walk = np.cumsum(0.01 * rng.normal(size=(2, p)), axis=0)
        np.save(expert_store.expert_path(config.tm.experts.dir, i),
                np.concatenate([[start], start + walk]).astype(np.float32))
    with open(os.path.join(config.tm.experts.dir, expert_store.META_FILE), "w") as f:
        json.dump({**expert_store.expert_settings(config, p), "epochs": 2, "seed": 0}, f)
    compare(config, "tm")

    # Orbax: the sharded DM state saved on the mesh, restored onto the mesh and onto one
    # device; the 1-device state restored onto the mesh.
    ckpt = checkpoint.Checkpointer(os.path.join(args.tmp, "ckpt_mesh"))
    ckpt.save(1, dm_b1, {"devices": mesh.size})
    on_mesh, record = ckpt.restore(dm_sharded.state)
    on_one, _ = ckpt.restore(dm_single.state)
    ckpt.close()
    ckpt = checkpoint.Checkpointer(os.path.join(args.tmp, "ckpt_one"))
    ckpt.save(1, dm_a1, {"devices": 1})
    one_on_mesh, _ = ckpt.restore(dm_sharded.state)
    ckpt.close()

    def same_layout(restored, template):
        return all(r.sharding.is_equivalent_to(t.sharding, r.ndim) for r, t in
                   zip(jax.tree.leaves(restored), jax.tree.leaves(template)))

    out["checkpoint"] = {
        "record": record, "step": int(on_mesh.step),
        "diff": max(maxdiff(on_mesh, dm_b1), maxdiff(on_one, dm_b1),
                    maxdiff(one_on_mesh, dm_a1)),
        "layouts": [same_layout(on_mesh, dm_sharded.state), same_layout(on_one, dm_single.state),
                    same_layout(one_on_mesh, dm_sharded.state)],
        "mesh_devices": sorted({len(v.sharding.device_set) for v in jax.tree.leaves(on_mesh)}),
    }

    # Evaluation: 5 seeds (uneven over 8 devices) with DSA, one epoch and the test pass.
    kw = dict(num_classes=num_classes, epochs=1, lr=0.01, batch_size=16,
              dsa_strategy="color_flip", return_state=True, progress=False)
    keys = evaluate.seed_keys(jax.random.key(3), 5)
    one = evaluate.train_seeds(keys, "ConvNetD1", x, y, x[::2], y[::2], **kw)
    many = evaluate.train_seeds(keys, "ConvNetD1", x, y, x[::2], y[::2], mesh=mesh, **kw)
    out["eval"] = {"diff": maxdiff(one["state"].params, many["state"].params),
                   "scale": scale(one["state"].params),
                   "loss": [one["train_loss"], many["train_loss"]],
                   "accs": [one["accs"], many["accs"]]}

    # Expert training: 3 experts at once (uneven over 8 devices), one short epoch.
    trajs = []
    for m in (None, mesh):
        folder = os.path.join(args.tmp, f"experts_{0 if m is None else m.size}")
        experts.train_experts(jax.random.key(0), x, y, x[::2], y[::2], num_classes=num_classes,
                              expert_dir=folder, dataset="toy", num_experts=3,
                              model_name="ConvNetD1", epochs=1, batch_size=40, dsa=False,
                              parallel=3, conv_impl="im2col", mesh=m, progress=False)
        trajs.append(np.stack([np.load(expert_store.expert_path(folder, i)) for i in range(3)]))
    out["experts"] = {"diff": maxdiff(*trajs), "change": scale(trajs[0][:, 1] - trajs[0][:, 0])}

    # jit boundary: a padded leading axis enters and leaves sharded via in/out_shardings.
    (v, mask) = sh.pad_leading(jnp.arange(10.0), mesh.size)
    f = jax.jit(lambda v: 2 * v, in_shardings=sh.leading(mesh), out_shardings=sh.leading(mesh))
    w = f(sh.shard_leading(v, mesh))
    out["boundary"] = {"spec": str(w.sharding.spec),
                       "shard_rows": sorted({s.data.shape[0] for s in w.addressable_shards}),
                       "values": np.asarray(w[mask]).tolist()}

    # constrain inside jit on an uneven axis (XLA pads internally).
    real = jax.random.normal(jax.random.key(1), (num_classes, 6, *shape))
    g = jax.jit(lambda r: jnp.sin(sh.constrain(r, mesh)).sum((1, 2, 3, 4)))
    out["constrain_diff"] = maxdiff(g(real), jnp.sin(real).sum((1, 2, 3, 4)))

    # argument checks of the multi-device path (1 device falls back to jax.vmap)
    errors = 0
    for bad in (lambda: sh.sharded_vmap(jnp.sum, mesh, (1,))(real),
                lambda: sh.sharded_vmap(jnp.add, mesh, (0, 0))(real, real[:5]),
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
