"""One code path from 1 CPU to a TPU pod: a 1-D device mesh over the data-parallel axis.

Every parallel axis of fred_jax is a *mapped* axis of independent work items: the classes
(DM, DC), the expert trajectories of one step (TM), the seeds (evaluation) and the experts
(expert training). Each is written as ``jax.vmap(per_item_fn)``; :func:`sharded_vmap` is the
drop-in replacement that lays that axis out over the mesh (``NamedSharding`` constraints on the
mapped inputs and outputs inside the caller's ``jax.jit``; XLA's SPMD partitioner then splits
the per-item work, its gradient included, and inserts the all-reduce for replicated
arguments). State enters the jitted step replicated (:func:`replicate`), so the only change at
a call site is ``jax.vmap(f, in_axes)`` -> ``sharded_vmap(f, mesh, in_axes)``.

Uneven axes (10 classes on 8 devices, 5 seeds on 8 devices) are padded, not shrunk to the
largest divisor: the mapped inputs are padded to a multiple of the device count with copies of
real items (so padded work is always finite and well defined), and the padded outputs are
dropped *before* the caller reduces them. Results therefore equal the 1-device result up to
float reassociation, every device is used, and the time per step is ceil(n / devices) items,
the same as the largest-divisor mesh would give.

The mesh uses ``AxisType.Auto`` (sharding propagation by XLA's partitioner), not the
``Explicit`` default of ``jax.make_mesh``, so code written for one device needs no
sharding-in-types annotations.

Multi-host: :func:`maybe_initialize_distributed` must run before anything touches a device.
Host-identical values (the initial synthetic set, network parameters, a fully loaded dataset)
become global arrays with :func:`replicate` / :func:`shard_leading`; values each host loaded
only a part of become global arrays with :func:`global_array_from_host_local` (the part is
given by :func:`host_slice`). Only :func:`is_main_process` writes logs, PNGs and exports.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

PyTree = Any


def make_mesh(num_devices: int | None = None, axis_name: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (None: all of them, all hosts).

    In a multi-process run the mesh must span every process, so ``num_devices`` must then be
    None or the global device count.
    """
    available = jax.device_count()
    if num_devices is None:
        num_devices = available
    if not isinstance(num_devices, (int, np.integer)) or num_devices < 1:
        raise ValueError(f"num_devices must be a positive int or None, got {num_devices!r}")
    if num_devices > available:
        raise ValueError(
            f"num_devices={num_devices} but only {available} devices are available "
            f"({jax.default_backend()}); on CPU simulate more with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N set before jax starts")
    if jax.process_count() > 1 and num_devices != available:
        raise ValueError(
            f"a multi-process run ({jax.process_count()} processes) must use all {available} "
            f"devices, got num_devices={num_devices}")
    if num_devices == available:  # jax.make_mesh orders devices for the interconnect
        return jax.make_mesh((available,), (axis_name,), axis_types=(AxisType.Auto,))
    return Mesh(np.asarray(jax.devices()[:num_devices]), (axis_name,),
                axis_types=(AxisType.Auto,))


def mesh_for(num_devices: int = 0) -> Mesh | None:
    """The mesh of a run's ``num_devices`` setting (0: all devices of all hosts), or None when
    that is a single device, so that 1-device runs keep the plain (unsharded) programs."""
    mesh = make_mesh(num_devices or None)
    return None if mesh.size == 1 else mesh


def _axis(mesh: Mesh) -> str:
    if len(mesh.axis_names) != 1:
        raise ValueError(f"expected a 1-D mesh, got axes {mesh.axis_names}")
    return mesh.axis_names[0]


def named(mesh: Mesh, *spec: str | None) -> NamedSharding:
    """``NamedSharding(mesh, PartitionSpec(*spec))``."""
    return NamedSharding(mesh, PartitionSpec(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device."""
    return named(mesh)


def leading(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading axis over the mesh's (single) axis."""
    return named(mesh, _axis(mesh))


def _put(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Place host-identical values as global arrays (each process fills its own devices)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(one, tree)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Copy a pytree of host-identical values onto every device of the mesh."""
    return _put(tree, replicated(mesh))


def shard_leading(tree: PyTree, mesh: Mesh) -> PyTree:
    """Split the leading axis of every leaf over the mesh (host-identical values).

    The leading size must be a multiple of the device count: pad first with
    :func:`pad_leading` (jit inputs and outputs cannot be unevenly sharded).
    """
    d = mesh.size
    for x in jax.tree.leaves(tree):
        if np.ndim(x) == 0 or np.shape(x)[0] % d:
            raise ValueError(
                f"leading axis of shape {np.shape(x)} is not a multiple of the {d} devices; "
                "pad it with pad_leading first")
    return _put(tree, leading(mesh))


def constrain(tree: PyTree, mesh: Mesh, *spec: str | None) -> PyTree:
    """Inside jit: ask XLA to lay out every leaf as ``spec`` (uneven sizes are allowed here).

    Default spec: the leading axis over the mesh, e.g. for the real batch of a step.
    """
    sharding = named(mesh, *spec) if spec else leading(mesh)
    return jax.lax.with_sharding_constraint(tree, sharding)


def padded_size(n: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= n."""
    if n < 1 or multiple < 1:
        raise ValueError(f"need n >= 1 and multiple >= 1, got n={n}, multiple={multiple}")
    return math.ceil(n / multiple) * multiple


def pad_leading(tree: PyTree, multiple: int) -> tuple[PyTree, jax.Array]:
    """Pad every leaf's leading axis (common size n) to a multiple of ``multiple``.

    Padding repeats real items cyclically (item i of the padding is item i mod n), so work done
    on padded items is as well defined as on real ones. Returns (padded tree, bool mask [m]
    that is True for the n real items).
    """
    n = _leading_size(tree)
    m = padded_size(n, multiple)
    mask = jnp.arange(m) < n
    if m == n:
        return tree, mask
    idx = jnp.arange(m) % n
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), tree), mask


def _leading_size(tree: PyTree) -> int:
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(tree)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"all mapped leaves need the same leading axis, got sizes {sizes}")
    return sizes.pop()


def sharded_vmap(fn: Callable, mesh: Mesh | None, in_axes: int | None | Sequence[int | None] = 0
                 ) -> Callable:
    """``jax.vmap(fn, in_axes)`` with the mapped axis split over ``mesh``; use inside jit.

    in_axes: 0 or None for all positional arguments, or one 0/None per argument (each applies
    to the whole argument pytree; static values belong in a closure / functools.partial).
    Outputs are stacked on axis 0 as with vmap. Mapped inputs are padded to a multiple of the
    device count (see :func:`pad_leading`) and padded outputs dropped, so the result equals
    ``jax.vmap(fn, in_axes)`` for any mapped size. Gradients flow to mapped and unmapped
    (replicated) arguments alike. ``mesh`` None or of size 1: plain ``jax.vmap``.

    Why sharding constraints and not ``jax.shard_map``: per-item functions close over traced,
    replicated values (TM's images and learnable rate, DM's network), and in JAX 0.10 a
    ``shard_map`` body rejects some of those programs (a closed-over scalar broadcast inside a
    scan: "Context mesh ... Manual ... should match the mesh of sharding"; a vmapped
    ``lax.switch`` in a rematerialised scan under ``check_vma``). The constraints keep the
    program unchanged and leave the partitioning to XLA; tests/test_sharding.py checks the
    per-device FLOPs (1/devices of the work) and the agreement with one device.
    """
    if mesh is None or mesh.size == 1:
        return jax.vmap(fn, in_axes=in_axes)
    _axis(mesh)

    def wrapped(*args):
        axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"in_axes has {len(axes)} entries for {len(args)} arguments")
        if any(a not in (0, None) for a in axes):
            raise ValueError(f"sharded_vmap maps axis 0 or nothing per argument, got {axes}")
        mapped = [a for a, ax in zip(args, axes) if ax == 0]
        if not mapped:
            raise ValueError("sharded_vmap needs at least one mapped argument")
        n = _leading_size(mapped)
        padded, _ = pad_leading(mapped, mesh.size)
        it = iter(constrain(padded, mesh))
        args = tuple(next(it) if ax == 0 else a for a, ax in zip(args, axes))
        out = constrain(jax.vmap(fn, in_axes=axes)(*args), mesh)
        return jax.tree.map(lambda y: y[:n], out)

    return wrapped


# ---------------------------------------------------------------------------- multi-host

def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "1"))
    except ValueError:
        return 1


def maybe_initialize_distributed(coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
    """Call ``jax.distributed.initialize`` when this is one process of a multi-process run.

    Must run before any device is touched. Multi-process means, in this order:
    explicit arguments (all three) or JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES +
    JAX_PROCESS_ID in the environment; a SLURM job step with more than one task; an Open MPI
    launch with more than one rank; a Cloud TPU pod slice (TPU_WORKER_HOSTNAMES lists more
    than one host, or FRED_DISTRIBUTED=1 as set by launch/tpu_run.sh). In the last three JAX
    detects coordinator, count and id itself. Returns True if the runtime is (now) initialised.
    """
    if jax.distributed.is_initialized():
        return True
    explicit = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in explicit) and any(v is None for v in explicit):
        raise ValueError("give coordinator_address, num_processes and process_id together, "
                         f"got {explicit}")
    env = os.environ
    if coordinator_address is None and all(
            k in env for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")):
        coordinator_address = env["JAX_COORDINATOR_ADDRESS"]
        num_processes = int(env["JAX_NUM_PROCESSES"])
        process_id = int(env["JAX_PROCESS_ID"])
    if coordinator_address is not None:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
        return True
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if (("SLURM_JOB_ID" in env and _env_int("SLURM_NTASKS") > 1)
            or _env_int("OMPI_COMM_WORLD_SIZE") > 1
            or len(hosts) > 1 or env.get("FRED_DISTRIBUTED") == "1"):
        jax.distributed.initialize()
        return True
    return False


def is_main_process() -> bool:
    """True on the process that writes logs, images, exports (process 0)."""
    return jax.process_index() == 0


def host_slice(n: int, process_index: int | None = None, process_count: int | None = None
               ) -> slice:
    """This host's contiguous part of ``range(n)`` (sizes differ by at most one).

    For splitting real data or classes between hosts; every index belongs to one host.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    p = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= p < count:
        raise ValueError(f"process_index {p} not in [0, {count})")
    base, extra = divmod(n, count)
    start = p * base + min(p, extra)
    return slice(start, start + base + (p < extra))


def global_array_from_host_local(tree: PyTree, mesh: Mesh, *spec: str | None,
                                 global_shape: tuple[int, ...] | None = None) -> PyTree:
    """Assemble global arrays from each host's local part (default: split leading axis).

    Each process passes its own rows (e.g. ``x[host_slice(len(x))]``, equal sizes per host
    when the axis is sharded); the global leading size is the sum over hosts. With a
    replicated spec (``spec`` = (None,)) each host passes the full value.
    """
    sharding = named(mesh, *spec) if spec else leading(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), global_shape),
        tree)


def to_host(tree: PyTree) -> PyTree:
    """Numpy copies of (possibly multi-host sharded) arrays, the same on every process."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
