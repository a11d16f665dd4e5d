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
