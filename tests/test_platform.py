"""The backend policy (fred_jax.platform): every field on simulated cpu / gpu / tpu backends,
with and without a mesh; the CPU values are the ones the library used before the policy
existed; config "auto" fields resolve through it."""

import types

import jax
import pytest

from fred_jax import configuration, objectives, platform
from fred_jax.objectives import tm_config

MESH = types.SimpleNamespace(size=4)  # the policy reads only the mesh's size

CPU = dict(backend="cpu", meshed=False, conv_dm="tapgrad", conv_dc="im2col", conv_tm="im2col",
           conv_train="tapgrad", conv_infer="lax", seeds_in_loop=True, classes_in_loop=True,
           train_piece=8, infer_piece=32, dm_chunk=32, tm_grad_chunk=10,
           experts_parallel=2)
"""Before the policy: objectives.default_conv_impl (tapgrad DM, im2col DC/TM on CPU),
evaluate.default_conv_impl (tapgrad), seeds_in_loop (CPU without a mesh), CPU_PIECE = 32,
dm.chunk = 32, tm.grad_chunk = 20, tm.experts.parallel = 2. Since the speed issue: training
pieces of 8 images, tests in pieces of 32, TM gradients in pieces of 10."""

ACCELERATOR = dict(meshed=False, conv_dm="lax", conv_dc="lax", conv_tm="lax", conv_train="lax",
                   conv_infer="lax", seeds_in_loop=False, classes_in_loop=False, train_piece=0,
                   infer_piece=0, dm_chunk=0, tm_grad_chunk=0, experts_parallel=10)


def fields(p: platform.Policy) -> dict:
    return {f: getattr(p, f) for f in platform.Policy.__dataclass_fields__}


def test_cpu_is_the_former_behaviour():
    assert fields(platform.policy("cpu")) == CPU
    # with a mesh the stacked axes are vmapped (split over devices), gradients whole; the
    # convolutions and the config defaults stay the CPU's
    assert fields(platform.policy("cpu", MESH)) == {
        **CPU, "meshed": True, "seeds_in_loop": False, "classes_in_loop": False,
        "train_piece": 0, "infer_piece": 0}


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_accelerators_take_whole_batches_vmapped_lax(backend):
    assert fields(platform.policy(backend)) == {**ACCELERATOR, "backend": backend}
    meshed = {**ACCELERATOR, "backend": backend, "meshed": True, "experts_parallel": 12}
    assert fields(platform.policy(backend, MESH)) == meshed  # 10 rounded up to 4 devices
    assert platform.policy(backend, types.SimpleNamespace(size=5)).experts_parallel == 10


def test_this_backend_and_errors():
    assert platform.policy() == platform.policy(jax.default_backend())
    with pytest.raises(ValueError, match="unknown backend 'metal'"):
        platform.policy("metal")
    assert platform.policy("gpu").distill_conv("tm") == "lax"
    assert [platform.policy("cpu").distill_conv(o) for o in ("dm", "dc", "tm")] == [
        "tapgrad", "im2col", "im2col"]


def test_config_auto_fields_resolve_through_the_policy():
    config = configuration.defaults()
    config.tm = tm_config.defaults()
    assert config.dm.chunk is None and config.tm.grad_chunk is None
    assert config.tm.experts.parallel is None and config.conv_impl == "auto"
    cpu, gpu = platform.policy("cpu"), platform.policy("gpu")
    assert platform.resolve(config.dm.chunk, cpu.dm_chunk) == 32
    assert platform.resolve(config.tm.grad_chunk, gpu.tm_grad_chunk) == 0
    assert platform.resolve(config.tm.experts.parallel, gpu.experts_parallel) == 10
    config.dm.chunk = 0  # a set value (0: whole batch) wins over the policy
    assert platform.resolve(config.dm.chunk, cpu.dm_chunk) == 0
    config.objective = "dc"
    assert objectives.conv_impl(config) == platform.policy().conv_dc


@pytest.mark.parametrize("field,value,message", [
    ("dm.chunk", -1, r"config.dm.chunk: must be >= 0"),
    ("tm.grad_chunk", -2, r"grad_chunk must be >= 0"),
    ("tm.experts.parallel", 0, r"config.tm.experts.parallel: must be >= 1"),
])
def test_auto_fields_are_still_checked(field, value, message):
    config = configuration.defaults()
    config.tm = tm_config.defaults()
    config.objective = "dm"
    section, name = field.rsplit(".", 1)
    node = config
    for part in section.split("."):
        node = node[part]
    configuration.validate(config, dataset=types.SimpleNamespace(image_shape=(32, 32, 3),
                                                                 num_classes=10))
    node[name] = value
    with pytest.raises(configuration.ConfigError, match=message):
        configuration.validate(config, dataset=types.SimpleNamespace(image_shape=(32, 32, 3),
                                                                     num_classes=10))


_CACHE_PROBE = """
import sys
import jax, jax.numpy as jnp
from jax import monitoring
from fred_jax import platform
events = []
monitoring.register_event_listener(lambda e, **kw: events.append(e.rsplit("/", 1)[-1]))
platform.enable_compilation_cache(sys.argv[1])
jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((4, 4))).block_until_ready()
print(events.count("compile_requests_use_cache"), events.count("cache_hits"))
"""


def _cache_hits(setting: str, env: dict | None = None) -> tuple[int, int]:
    """(programs compiled through the cache, programs loaded from it) in a new process."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CACHE_PROBE, setting], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    requests, hits = out.stdout.split()[-2:]
    return int(requests), int(hits)


def test_compilation_cache_is_loaded_by_a_second_process(tmp_path):
    """The first process compiles and stores; a second with the same program loads it; a
    process with other XLA flags (another instruction set) does not see those entries."""
    folder = str(tmp_path / "xla")
    programs, hits = _cache_hits(folder)
    assert programs >= 1 and hits == 0
    assert _cache_hits(folder) == (programs, programs)
    assert _cache_hits(folder, {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}) == (programs, 0)
    assert _cache_hits("")[1] == 0


def test_compilation_cache_folder(tmp_path, monkeypatch):
    """Per-host sub-folder of the named or default folder; "" turns the cache off; a folder
    that others may write to is refused (its programs are native code the next run loads)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    auto = platform.compilation_cache_dir("auto")
    assert auto.startswith(str(tmp_path / "home" / "fred_jax" / "xla"))
    assert platform.compilation_cache_dir(str(tmp_path / "c")).startswith(str(tmp_path / "c"))
    assert platform.compilation_cache_dir("") is None
    assert platform.enable_compilation_cache("") is None
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by others"):
        platform._private_dir(str(shared / "sub"))


def test_compilation_cache_is_a_free_config_field():
    """Turning the cache on or off changes no number, so a resumed run may change it."""
    from fred_jax import provenance

    assert configuration.defaults().compilation_cache == "auto"
    assert "compilation_cache" in provenance.FREE_FIELDS
