"""One process of a two-process jax.distributed run on localhost (CPU, gloo collectives).

    JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=I \
        python tests/multihost_worker.py --local-devices 2

Run by tests/test_multihost.py, one per process id. Exercises the multi-host path of
fred_jax.sharding: initialisation from the environment, a mesh over both processes, global
arrays built from host-local parts, a cross-process psum, sharded_vmap under jit, and fetching
results; prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--local-devices", type=int, default=2)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.local_devices}")
    os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import PartitionSpec as P

    from fred_jax import sharding as sh

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


if __name__ == "__main__":
    main()
