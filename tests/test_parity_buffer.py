"""Official expert buffers (``fred_jax.official_buffers``) read without torch: the files under
``tests/golden/official_buffer/`` were written by the official ``TM/buffer.py`` itself
(``benchmarks/parity/ref_buffer.py``: 2 experts x 2 epochs of ``ConvNetW32``, one per file).
Each saved timestamp, converted to our layout, must give the official network's logits on the
stored probe batch (``tests/golden/buffer.npz``): a wrong parameter order, transpose or
flatten permutation would not. Also: the converter against the test suite's own
``state_dict`` converter for every architecture without BatchNorm, the command-line import into
a store that TM reads, and the refusals (another architecture, a CPU-written buffer whose
timestamps are all the final network).
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parity_util
from fred_jax import expert_store, models, official_buffers

PIECE = "buffer"
TOL = 1e-5  # logits, float32 on both sides
FOLDER = os.path.join(parity_util.GOLDEN, "official_buffer", "CIFAR10_NO_ZCA", "ConvNetW32")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (32, 32, 3)
MNIST_CASES = ("ConvNet", "ConvNetLN", "MLP", "LeNet")  # 1-channel layouts worth a second look


def _model(name: str = "ConvNetW32", classes: int = 10):
    return models.get(name, classes, SHAPE)


def _experts() -> list[np.ndarray]:
    model = _model()
    return [t for f in official_buffers.buffer_files(FOLDER)
            for t in official_buffers.read_buffer(f, model, SHAPE)]


def rows() -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    model = _model()
    _, unravel = expert_store.param_unraveler(model, SHAPE)
    x = jnp.asarray(np.moveaxis(g["x"], 1, -1))
    apply = jax.jit(lambda v: model.apply({"params": unravel(v)}, x))
    out = []
    for i, traj in enumerate(_experts()):
        for e in range(traj.shape[0]):
            out.append(parity_util.compare(
                PIECE, f"expert {i} epoch {e} logits", apply(jnp.asarray(traj[e])),
                g["logits"][i, e], TOL, "official replay_buffer_*.pt read without torch"))
    return out


def test_official_buffer_logits():
    g = parity_util.load_golden(PIECE)
    experts = _experts()
    count, epochs = (int(v) for v in g["settings"][:2])
    assert len(experts) == count
    assert all(t.shape == (epochs + 1, expert_store.param_unraveler(_model(), SHAPE)[0])
               for t in experts)
    parity_util.assert_rows(rows())


def _torch_state(arch: str, case: str, g: dict) -> dict:
    names, shapes, kinds = (g[f"{arch}@{case}:{k}"] for k in ("names", "shapes", "kinds"))
    return parity_util.synthetic_state([str(n) for n in names], shapes, [str(k) for k in kinds],
                                       int(g[f"{arch}@{case}:seed"]))


def test_converter_matches_state_dict_converter():
    """Every architecture without BatchNorm in the models golden: the flat official vector
    (``parameters()`` order) through our index equals the test suite's converter."""
    g = parity_util.load_golden("models")
    cases = sorted({k.split(":")[0] for k in g if k.endswith(":names")})
    checked = 0
    for c in cases:
        arch, data = c.split("@")
        if arch in models.BATCHNORM_ARCHS or data == "voxel" or (
                data == "mnist" and arch not in MNIST_CASES):
            continue
        shape = tuple(np.moveaxis(g[f"x@{data}"], 1, -1).shape[1:])
        model = models.get(arch, 10, shape)
        state = _torch_state(arch, data, g)
        torch_flat = np.concatenate([np.ravel(v) for v in state.values()])
        _, index, _ = official_buffers.torch_to_ours(model, shape)
        ref = parity_util.model_variables_from_torch(arch, state)["params"]
        ours = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(ref)])
        np.testing.assert_array_equal(torch_flat[index], ours, err_msg=c)
        checked += 1
    assert checked >= 10


def test_wrong_architecture_is_refused():
    path = official_buffers.buffer_files(FOLDER)[0]
    with pytest.raises(ValueError, match="do not fit the architecture"):
        official_buffers.read_buffer(path, _model("ConvNet"), SHAPE)


def test_cpu_written_buffer_is_refused():
    """On a machine without a GPU the official buffer.py saves the final network at every
    epoch (``p.detach().cpu()`` aliases the parameter); such a trajectory is refused."""
    model = _model()
    _, index, layout = official_buffers.torch_to_ours(model, SHAPE)
    final = [np.ones(leaf.torch_shape, np.float32) for leaf in layout]
    with pytest.raises(ValueError, match="without a GPU"):
        official_buffers.trajectory_to_ours([final, final, final], index, layout, "expert")


def test_command_line_import_feeds_tm(tmp_path):
    """``python -m fred_jax.experts --from_official`` writes a store that TM's pool reads;
    rerunning it changes nothing."""
    store = str(tmp_path / "experts")
    cmd = [sys.executable, "-m", "fred_jax.experts", "--config",
           os.path.join(ROOT, "configs", "cifar10_ipc1.py"), "--config.model=ConvNetW32",
           f"--config.tm.experts.dir={store}", "--config.tm.max_start_epoch=1",
           f"--from_official={FOLDER}"]
    for _ in range(2):
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert "2 official experts x 2 epochs" in out.stdout
    from fred_jax import configuration

    config = configuration.from_file(os.path.join(ROOT, "configs", "cifar10_ipc1.py"))
    config.model, config.tm.experts.dir, config.tm.max_start_epoch = "ConvNetW32", store, 1
    num_params = expert_store.param_unraveler(_model(), SHAPE)[0]
    pool = expert_store.load_pool(config, num_params)
    experts = _experts()
    assert pool.shape == (2, 3, num_params)
    np.testing.assert_array_equal(pool, np.stack(experts))
    assert expert_store.read_meta(store)["official_files"] == ["replay_buffer_0.pt",
                                                                "replay_buffer_1.pt"]
