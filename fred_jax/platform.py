"""Backend policy: every "auto" choice of the library, resolved in one place from the backend
and the device mesh.

Which convolution implementation, whether seeds / experts / classes run one after another
(``lax.map``) or vmapped, and how many images a gradient piece or an embedding chunk holds are
speed choices, not part of the method: every choice gives the same numbers up to float
rounding. They differ between backends because XLA:CPU and accelerators reward opposite
layouts:

- XLA:CPU (2 compute-bound cores, a 32 MB L3 cache): vmapped convolutions with per-item kernels
  become grouped convolutions that run far slower than separate ones, and XLA:CPU's own
  kernel-gradient convolution is two orders of magnitude slower inside loops. So seeds and
  classes run in a ``lax.map``, classifier training uses ``tapgrad`` convolutions (``lax``
  forward, gradients as forward convolutions and per-tap matmuls), second-order objectives
  ``im2col`` (every derivative a patch matmul), DM ``tapgrad``, and gradients / embeddings go
  in cache-sized pieces (:data:`CPU_PIECE` images for classifier training and for DC's first-
  order parts, the real-batch gradients and the network training, which take ``conv_train``,
  :data:`CPU_INFER_PIECE` for testing, :data:`CPU_DM_CHUNK` real images per DM embedding pass,
  :data:`CPU_TM_GRAD_CHUNK` per TM student gradient piece); experts train
  :data:`CPU_EXPERTS_PARALLEL` at a time. Measured in ``benchmarks/`` (see RESULTS.md).
- GPU / TPU: one small network leaves the device mostly idle, so everything that can run at
  once does: whole batches (chunk 0), vmapped seeds, classes and experts
  (:data:`ACCELERATOR_EXPERTS_PARALLEL` at a time), ``lax`` convolutions (the vendor kernels).
- A device mesh (``jax.sharding.Mesh``, also of simulated CPU devices) splits the stacked axis
  over the devices, which needs it vmapped: on any backend, with a mesh, seeds, classes and
  experts are vmapped (:func:`fred_jax.sharding.sharded_vmap`) and gradients whole.

Inference (testing a trained network) has no backward pass and always uses ``lax``.

A config field left at "auto" (``conv_impl="auto"``, or None for ``dm.chunk``,
``tm.grad_chunk``, ``tm.experts.parallel``) takes the policy's value (:func:`resolve`); a set
value wins. Tests simulate a backend with ``policy(backend="gpu")``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform as _host
from typing import Any

BACKENDS = ("cpu", "gpu", "tpu")

CPU_PIECE = 8
"""Images per gradient piece of classifier training on CPU: a piece's activations (4 MB for the
first ConvNet layer) stay in cache. 8 beat 16 and 32 by 5-30 % on a 2-core AMD EPYC
(``benchmarks/evaluate.py --pieces 8,16,32``, ``benchmarks/RESULTS.md``)."""
CPU_INFER_PIECE = 32
"""Images per forward pass when testing on CPU (forward only: 8-32 about equal, the whole
256-image batch 1.7-1.9x slower; ``benchmarks/evaluate.py --infer_pieces 32,256``)."""
CPU_DM_CHUNK = 32
"""Real images per DM embedding pass on CPU (``benchmarks/step_time.py``)."""
CPU_TM_GRAD_CHUNK = 10
"""Images per piece of a TM student gradient on CPU (``benchmarks/step_time_tm.py``: 5-16 about
equal, 20 about 10 % slower and 50 MB more at syn_steps 10)."""
CPU_EXPERTS_PARALLEL = 2
"""Experts trained at once on CPU (one already keeps both cores busy)."""
ACCELERATOR_EXPERTS_PARALLEL = 10
"""Experts trained at once on a GPU / TPU (rounded up to a multiple of the mesh size)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """The resolved choices for one backend and mesh (see the module docstring).

    Convolution implementations (``fred_jax.conv.CONV_IMPLS`` names): ``conv_dm``, ``conv_dc``,
    ``conv_tm`` for the distillation networks of each objective, ``conv_train`` for classifier
    training (evaluation, experts), ``conv_infer`` for testing. ``seeds_in_loop``: evaluation
    seeds and experts one after another (``lax.map``) instead of vmapped; ``classes_in_loop``:
    DM and DC classes likewise. Sizes, 0 meaning the whole batch: ``train_piece`` (images per
    gradient piece of classifier training), ``infer_piece`` (images per forward pass when
    testing), ``dm_chunk`` (real images per DM embedding pass and
    smallest synthetic piece), ``tm_grad_chunk`` (images per TM student gradient piece);
    ``experts_parallel``: experts trained at once.
    """

    backend: str
    meshed: bool
    conv_dm: str
    conv_dc: str
    conv_tm: str
    conv_train: str
    conv_infer: str
    seeds_in_loop: bool
    classes_in_loop: bool
    train_piece: int
    infer_piece: int
    dm_chunk: int
    tm_grad_chunk: int
    experts_parallel: int

    def distill_conv(self, objective: str) -> str:
        """Convolution implementation of ``objective``'s distillation network."""
        return {"dm": self.conv_dm, "dc": self.conv_dc, "tm": self.conv_tm}[objective]


def policy(backend: str | None = None, mesh: Any = None) -> Policy:
    """The policy of ``backend`` (None: ``jax.default_backend()``) with ``mesh`` (None: one
    device; a ``jax.sharding.Mesh``, or anything with ``size``, splits the stacked axes)."""
    if backend is None:
        import jax

        backend = jax.default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    meshed = mesh is not None
    if backend == "cpu":
        loop = not meshed
        return Policy(backend, meshed, conv_dm="tapgrad", conv_dc="im2col", conv_tm="im2col",
                      conv_train="tapgrad", conv_infer="lax", seeds_in_loop=loop,
                      classes_in_loop=loop, train_piece=CPU_PIECE if loop else 0,
                      infer_piece=CPU_INFER_PIECE if loop else 0,
                      dm_chunk=CPU_DM_CHUNK, tm_grad_chunk=CPU_TM_GRAD_CHUNK,
                      experts_parallel=CPU_EXPERTS_PARALLEL)
    devices = int(mesh.size) if meshed else 1
    parallel = -(-ACCELERATOR_EXPERTS_PARALLEL // devices) * devices
    return Policy(backend, meshed, conv_dm="lax", conv_dc="lax", conv_tm="lax",
                  conv_train="lax", conv_infer="lax", seeds_in_loop=False,
                  classes_in_loop=False, train_piece=0, infer_piece=0, dm_chunk=0,
                  tm_grad_chunk=0, experts_parallel=parallel)


def resolve(value: Any, auto: Any) -> Any:
    """A config value, or ``auto`` (the policy's) where it is None or ``"auto"``."""
    return auto if value is None or value == "auto" else value


COMPILATION_CACHE_BYTES = 4 << 30
"""Size bound of the persistent compilation cache; least recently used programs go first."""


def _host_fingerprint() -> str:
    """Short hash of what an XLA:CPU executable is specialised to: machine, CPU model and
    instruction-set flags, jaxlib. JAX's own cache key has the XLA flags but not the host CPU, so
    a cache folder shared between machines (an NFS home) would otherwise hand an AVX-512 program
    to an AVX2-only CPU."""
    import jaxlib

    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "model name", "Features", "CPU part")):
                    flags += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        flags = _host.processor()
    text = "|".join((_host.machine(), flags, jaxlib.__version__))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compilation_cache_dir(setting: str) -> str | None:
    """The folder of the persistent compilation cache for the config value ``setting``:
    ``"auto"`` = ``$XDG_CACHE_HOME/fred_jax/xla`` (``~/.cache``), ``""`` = off, else a path;
    one sub-folder per host fingerprint (:func:`_host_fingerprint`)."""
    if not setting:
        return None
    root = setting
    if setting == "auto":
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        root = os.path.join(base, "fred_jax", "xla")
    return os.path.join(os.path.abspath(os.path.expanduser(root)), _host_fingerprint())


def _private_dir(path: str) -> None:
    """Create ``path`` (mode 0700) or check that an existing one is ours and writable by us
    only: a cached executable is native code that the next run loads."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    for folder in (path, os.path.dirname(path)):
        st = os.stat(folder)
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise PermissionError(f"compilation cache {folder} belongs to another user; set "
                                  "--config.compilation_cache to a folder of yours or ''")
        if st.st_mode & 0o022:
            raise PermissionError(f"compilation cache {folder} is writable by others; "
                                  f"chmod go-w {folder}, or set --config.compilation_cache")


def enable_compilation_cache(setting: str) -> str | None:
    """Keep compiled XLA programs in :func:`compilation_cache_dir` so that a later process
    running the same programs (same shapes, flags, jaxlib and host) loads instead of compiling.
    Entries are written under JAX's file lock (the size bound turns it on), so runs may share
    the folder. Returns the folder, or None when ``setting`` is ``""``."""
    path = compilation_cache_dir(setting)
    if path is None:
        return None
    import jax

    _private_dir(path)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)
    return path


__all__ = ["ACCELERATOR_EXPERTS_PARALLEL", "BACKENDS", "COMPILATION_CACHE_BYTES", "CPU_DM_CHUNK",
           "CPU_EXPERTS_PARALLEL", "CPU_INFER_PIECE", "CPU_PIECE", "CPU_TM_GRAD_CHUNK", "Policy",
           "compilation_cache_dir", "enable_compilation_cache", "policy", "resolve"]
