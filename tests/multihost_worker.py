"""One process of a two-process jax.distributed run on localhost (CPU, gloo collectives).

    JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=I \
        python tests/multihost_worker.py --local-devices 2 --config CFG --workdir DIR

Run by tests/test_multihost.py, one per process id. First ``fred_jax.main``'s ``main`` as the
command line runs it (it initialises jax.distributed from the environment): a DM distillation
of a toy dataset (``fred_jax.data.load`` returns it) on a mesh over both processes, with
evaluation and orbax checkpoints in the shared DIR, then again with more iterations (a resume
from the checkpoint); the files this process opened for writing in DIR (checkpoints aside) are
recorded. Then the multi-host path of fred_jax.sharding: a mesh over both processes, global
arrays built from host-local parts, a cross-process psum, sharded_vmap under jit, and fetching
results. Prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import builtins
import io
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--local-devices", type=int, default=2)
    parser.add_argument("--config", required=True, help="config file for fred_jax.main")
    parser.add_argument("--workdir", required=True, help="shared workdir of both processes")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.local_devices}")
    os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np
    from absl import flags
    from jax.sharding import PartitionSpec as P

    from fred_jax import data
    from fred_jax import main as fred_main
    from fred_jax import sharding as sh

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8).astype(np.int32)
    x = (rng.normal(size=(len(y), 8, 8, 1)) + y[:, None, None, None]).astype(np.float32)
    toy = data.Dataset(name="mnist", num_classes=3, class_names=("a", "b", "c"),
                       image_shape=(8, 8, 1), mean=np.zeros(1, np.float32),
                       std=np.ones(1, np.float32), x_train=x, y_train=y, x_test=x, y_test=y)
    data.load = lambda *a, **k: toy
    written = _WriteRecorder(os.path.abspath(args.workdir))
    flags.FLAGS(["main", f"--config={args.config}", f"--workdir={args.workdir}",
                 "--allow_changes=num_iterations"])
    fred_main.main(["main"])  # first thing: jax.distributed.initialize() from the environment
    fred_main._CONFIG.value.num_iterations *= 2
    fred_main.main(["main"])  # resumes from the last checkpoint
    builtins.open = io.open = written.real_open

    initialised = sh.maybe_initialize_distributed()
    mesh = sh.make_mesh()
    n = 4 * mesh.size
    full = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    part = sh.host_slice(n)
    x = sh.global_array_from_host_local(full[part], mesh)

    total = jax.jit(jnp.sum, out_shardings=sh.replicated(mesh))(x)
    psum = jax.jit(jax.shard_map(lambda v: jax.lax.psum(v.sum(), "data"), mesh=mesh,
                                 in_specs=P("data"), out_specs=P()))(x)
    rows = sh.replicate(full[:5], mesh)
    norms = jax.jit(sh.sharded_vmap(lambda r, s: s * jnp.sum(r ** 2), mesh, in_axes=(0, None)))(
        rows, sh.replicate(jnp.float32(2.0), mesh))
    print("RESULT " + json.dumps({
        "written": sorted(set(written.paths)),
        "initialised": initialised,
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "main": sh.is_main_process(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "slice": [part.start, part.stop],
        "total": float(sh.to_host(total)),
        "psum": float(sh.to_host(psum)),
        "gathered": sh.to_host(x).tolist() == full.tolist(),
        "norms": sh.to_host(norms).tolist(),
    }), flush=True)
    jax.distributed.shutdown()


class _WriteRecorder:
    """Replace ``open`` (builtins and io) and ``os.replace`` by ones that note the files under
    ``root`` opened for writing or renamed into place (atomic writes), checkpoints (written by
    every process through orbax) aside."""

    def __init__(self, root: str):
        self.paths: list[str] = []
        self.real_open = builtins.open
        real_replace = os.replace

        def note(file) -> None:
            rel = os.path.relpath(os.path.abspath(file), root)
            if not rel.startswith(("..", "checkpoints")):
                self.paths.append(rel.removesuffix(".tmp"))  # atomic writes: the target

        def recording_open(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
                note(file)
            return self.real_open(file, mode, *args, **kwargs)

        def recording_replace(src, dst, *args, **kwargs):
            note(dst)
            return real_replace(src, dst, *args, **kwargs)

        builtins.open = io.open = recording_open
        os.replace = recording_replace


if __name__ == "__main__":
    main()
