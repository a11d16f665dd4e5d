"""fred_jax.sharding: helpers in this (1-device) process; the real DM, TM, evaluation and
expert-training steps and an orbax round trip on 8 simulated CPU devices in a subprocess
(XLA_FLAGS must be set before jax starts), each against the 1-device result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType

from fred_jax import configuration, train
from fred_jax import sharding as sh

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict:
    """JSON report of tests/sharding_worker.py run with 8 simulated CPU devices."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    tmp = tmp_path_factory.mktemp("eight_devices")
    proc = subprocess.run([sys.executable, str(HERE / "sharding_worker.py"), "--devices", "8",
                           "--tmp", str(tmp)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _agree(step: dict) -> None:
    """Same loss and, after two steps, the same learnables as on one device; the state comes
    back replicated over all 8 devices (the step's out_shardings)."""
    np.testing.assert_allclose(*step["loss"], rtol=1e-5)
    assert step["diff"] <= 1e-5 * step["change"]
    assert step["specs"] == ["P()"] and step["mesh_devices"] == [8]


def test_dm_step_agrees_with_one_device(eight_devices):
    dm = eight_devices["dm"]
    assert eight_devices["devices"] == 8
    _agree(dm)
    # Per-device FLOPs against the same (class-vmapped) program on 1 device: 10 classes on 8
    # devices are 2 (padded) classes per device, plus the replicated decoding, fresh network
    # and sampling of the real batch.
    assert 0.15 < dm["flops_ratio"] < 0.3


def test_tm_step_with_8_trajectories_agrees_with_one_device(eight_devices):
    tm = eight_devices["tm"]
    _agree(tm)
    assert tm["flops_ratio"] < 0.2  # one student of 8 per device (~1/8 of the work)


def test_evaluation_seeds_agree_with_one_device(eight_devices):
    ev = eight_devices["eval"]  # 5 seeds on 8 devices
    assert ev["diff"] <= 1e-5 * ev["scale"]
    np.testing.assert_allclose(*ev["loss"], rtol=1e-5)
    np.testing.assert_allclose(*ev["accs"], atol=100 / 40)  # at most one of 40 test images
    assert len(set(ev["accs"][1])) > 1  # the seeds differ


def test_expert_training_agrees_with_one_device(eight_devices):
    ex = eight_devices["experts"]  # 3 experts on 8 devices
    assert ex["diff"] <= 1e-4 * ex["change"]


def test_orbax_round_trip_of_sharded_state(eight_devices):
    ck = eight_devices["checkpoint"]
    assert ck["record"] == {"devices": 8} and ck["step"] == 1 and ck["diff"] == 0.0
    # restored with the template's layout: onto the mesh, onto one device, 1 device -> mesh
    assert ck["layouts"] == [True, True, True] and ck["mesh_devices"] == [8]


def test_padded_axis_through_jit_shardings(eight_devices):
    b = eight_devices["boundary"]
    assert b["spec"] == "P('data',)" and b["shard_rows"] == [2]
    assert b["values"] == [2.0 * i for i in range(10)]
    assert eight_devices["constrain_diff"] < 1e-4
    assert eight_devices["value_errors"] == 4  # bad in_axes, sizes, nothing mapped, uneven put


def test_num_devices_config():
    """One device keeps the unsharded programs (mesh None); bad counts are config errors."""
    config = configuration.defaults()
    mesh = train.device_mesh(config)  # 0: all devices
    assert mesh is None if jax.device_count() == 1 else mesh.size == jax.device_count()
    config.num_devices = 1
    assert train.device_mesh(config) is None
    config.num_devices = jax.device_count() + 1
    with pytest.raises(configuration.ConfigError,
                       match=r"config.num_devices: num_devices=\d+ but only \d+ devices"):
        train.device_mesh(config)
    config.num_devices = -1
    with pytest.raises(configuration.ConfigError, match="config.num_devices: must be >= 0"):
        configuration.validate(config)


def test_make_mesh():
    mesh = sh.make_mesh()
    assert mesh.size == jax.device_count() and mesh.axis_names == ("data",)
    assert mesh.axis_types == (AxisType.Auto,)
    assert sh.make_mesh(1, axis_name="seeds").axis_names == ("seeds",)
    for bad in (0, -1, jax.device_count() + 1):
        with pytest.raises(ValueError):
            sh.make_mesh(bad)


def test_pad_leading():
    tree = {"a": jnp.arange(5.0), "b": jnp.arange(10).reshape(5, 2)}
    padded, mask = sh.pad_leading(tree, 4)
    np.testing.assert_array_equal(padded["a"], [0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(padded["b"][5:], tree["b"][:3])
    np.testing.assert_array_equal(mask, [1, 1, 1, 1, 1, 0, 0, 0])
    same, mask = sh.pad_leading(tree, 5)
    assert same["a"].shape == (5,) and bool(mask.all())
    one, _ = sh.pad_leading(jnp.ones((1, 3)), 8)
    assert one.shape == (8, 3)
    assert sh.padded_size(10, 8) == 16 and sh.padded_size(16, 8) == 16
    with pytest.raises(ValueError):
        sh.pad_leading({"a": jnp.ones(3), "b": jnp.ones(4)}, 2)
    with pytest.raises(ValueError):
        sh.padded_size(0, 8)


def test_sharded_vmap_one_device_is_vmap():
    mesh = sh.make_mesh(1)
    f = lambda x, w: jnp.sum(x * w)
    x, w = jnp.arange(12.0).reshape(4, 3), jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(jax.jit(sh.sharded_vmap(f, mesh, (0, None)))(x, w),
                               jax.vmap(f, (0, None))(x, w))
    np.testing.assert_allclose(sh.sharded_vmap(f, None, (0, None))(x, w), x @ w)


def test_host_slice_partitions():
    for n, count in ((10, 3), (2, 4), (0, 2), (16, 4)):
        parts = [sh.host_slice(n, p, count) for p in range(count)]
        assert sum((list(range(n))[s] for s in parts), []) == list(range(n))
        sizes = [s.stop - s.start for s in parts]
        assert max(sizes) - min(sizes) <= 1
    assert sh.host_slice(10) == slice(0, 10)  # one process: everything
    with pytest.raises(ValueError):
        sh.host_slice(10, 3, 3)
    with pytest.raises(ValueError):
        sh.host_slice(-1)


def test_single_process_helpers(monkeypatch):
    for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
              "TPU_WORKER_HOSTNAMES", "FRED_DISTRIBUTED"):
        monkeypatch.delenv(k, raising=False)
    assert sh.maybe_initialize_distributed() is False
    with pytest.raises(ValueError):
        sh.maybe_initialize_distributed(coordinator_address="127.0.0.1:1234")
    assert sh.is_main_process()
    mesh = sh.make_mesh()
    x = np.arange(6.0).reshape(3, 2)
    g = sh.global_array_from_host_local(x, mesh)
    np.testing.assert_array_equal(sh.to_host(g), x)
    r = sh.replicate({"x": x}, mesh)["x"]
    assert r.sharding.is_fully_replicated
    np.testing.assert_array_equal(sh.to_host(sh.shard_leading(x, mesh)), x)
