"""Expert trajectories: storage format, resume, grouping invariance, sampling, settings checks."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from fred_jax import expert_store, experts, models

SHAPE = (8, 8, 3)
NUM_CLASSES = 3
MODEL = "ConvNetD1"
KW = dict(num_classes=NUM_CLASSES, dataset="toy", model_name=MODEL, epochs=2, lr=0.05,
          batch_size=16, dsa=True, seed=0, progress=False)


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(NUM_CLASSES), 14).astype(np.int32)  # 42 = 16 + 16 + 10 per epoch
    x = (rng.normal(size=(len(y), *SHAPE)) + y[:, None, None, None]).astype(np.float32)
    return x, y, x[::3], y[::3]


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """3 experts trained 2 at a time."""
    folder = str(tmp_path_factory.mktemp("experts"))
    meta = experts.train_experts(jax.random.key(0), *toy, expert_dir=folder, num_experts=3,
                                 parallel=2, **KW)
    return folder, meta


def test_files_and_meta(trained):
    folder, meta = trained
    model = models.get(MODEL, NUM_CLASSES, SHAPE)
    p, unravel = expert_store.param_unraveler(model, SHAPE)
    assert set(os.listdir(folder)) == {expert_store.META_FILE} | {
        f"expert_{i:05d}.npy" for i in range(3)}  # nothing temporary left behind
    trajs = [np.load(expert_store.expert_path(folder, i)) for i in range(3)]
    for traj in trajs:
        assert traj.shape == (3, p) and traj.dtype == np.float32
        assert np.all(np.isfinite(traj))
        assert not np.allclose(traj[0], traj[1]) and not np.allclose(traj[1], traj[2])
    assert not np.allclose(trajs[0][0], trajs[1][0])  # different initialisations
    # epoch 0 is the initialisation of expert 0: fold_in(fold_in(key, 0), 0)
    init = models.init(model, jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 0), 0),
                       SHAPE)["params"]
    np.testing.assert_array_equal(trajs[0][0], np.asarray(expert_store.flatten_params(init)))
    # unravel inverts the flat layout
    back = expert_store.flatten_params(unravel(jax.numpy.asarray(trajs[0][2])))
    np.testing.assert_array_equal(np.asarray(back), trajs[0][2])
    with open(os.path.join(folder, expert_store.META_FILE)) as f:
        on_disk = json.load(f)
    assert on_disk == meta and on_disk["num_params"] == p and on_disk["model"] == MODEL
    assert sorted(meta["test_acc"]) == ["0", "1", "2"]
    assert all(0.0 <= a <= 1.0 for a in meta["test_acc"].values())
    # the toy classes are separable by brightness: trained experts beat chance
    assert np.mean(list(meta["test_acc"].values())) > 1.0 / NUM_CLASSES


def test_resume_retrains_only_missing_and_grouping_does_not_matter(trained, toy, tmp_path):
    folder, meta = trained
    copy = str(tmp_path / "copy")
    shutil.copytree(folder, copy)
    before = {i: os.path.getmtime(expert_store.expert_path(copy, i)) for i in (0, 2)}
    os.remove(expert_store.expert_path(copy, 1))
    experts.train_experts(jax.random.key(0), *toy, expert_dir=copy, num_experts=3, parallel=1,
                          **KW)
    assert {i: os.path.getmtime(expert_store.expert_path(copy, i)) for i in (0, 2)} == before
    np.testing.assert_allclose(np.load(expert_store.expert_path(copy, 1)),
                               np.load(expert_store.expert_path(folder, 1)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="lr: stored 0.05 vs requested 0.1"):
        experts.train_experts(jax.random.key(0), *toy, expert_dir=copy, num_experts=3,
                              **{**KW, "lr": 0.1})


def test_buffer_sampling(trained):
    folder, meta = trained
    buffer = expert_store.ExpertBuffer(folder, {"model": MODEL, "dataset": "toy"})
    assert len(buffer) == 3 and buffer.epochs == 2
    trajs = [np.load(expert_store.expert_path(folder, i)) for i in range(3)]
    start, target = buffer.sample(np.random.default_rng(0), 5, max_start_epoch=1,
                                  expert_epochs=2)
    assert start.shape == target.shape == (5, meta["num_params"])
    for s, t in zip(start, target):
        i = [j for j in range(3) if np.array_equal(trajs[j][0], s)]
        assert len(i) == 1 and np.array_equal(trajs[i[0]][2], t)
    with pytest.raises(ValueError, match="epochs up to 3"):
        buffer.sample(np.random.default_rng(0), 1, max_start_epoch=2, expert_epochs=2)
    with pytest.raises(ValueError, match="model: stored"):
        expert_store.ExpertBuffer(folder, {"model": "ConvNet"})
    with pytest.raises(FileNotFoundError, match="no experts"):
        expert_store.ExpertBuffer(os.path.join(folder, "nowhere"))
