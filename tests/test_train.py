"""The distillation loop: resume equals an uninterrupted run, outputs, non-finite stop."""

import json
import os

import jax
import numpy as np
import pytest

from fred_jax import checkpoint, configuration, data, synset, train

C, H = 3, 8


@pytest.fixture(scope="module")
def dataset():
    """Three separable classes of 8x8 grey images (a bright row per class plus noise)."""
    rng = np.random.default_rng(0)

    def split(n):
        y = np.repeat(np.arange(C), n).astype(np.int32)
        x = rng.normal(0.0, 0.3, size=(C * n, H, H, 1)).astype(np.float32)
        x[np.arange(C * n), 2 * y + 1] += 2.0
        return x, y

    (x_train, y_train), (x_test, y_test) = split(40), split(20)
    return data.Dataset(name="toy", num_classes=C, class_names=("a", "b", "c"),
                        image_shape=(H, H, 1), mean=np.zeros(1, np.float32),
                        std=np.ones(1, np.float32), x_train=x_train, y_train=y_train,
                        x_test=x_test, y_test=y_test)


def small_config(**overrides):
    config = configuration.defaults()
    config.dataset = "toy"
    config.ipc, config.k = 1, 16  # 4 instances per class
    config.model = "MLP"
    config.num_iterations = 5
    config.lr, config.lr_convention = 1.0, "orthonormal"
    config.dsa_strategy = "color_flip"
    config.dm.batch_real = 8
    config.eval.models, config.eval.num_eval, config.eval.epochs = "MLP", 1, 2
    config.eval.every = 0
    config.log_every, config.checkpoint_every = 1, 2
    config.update_from_flattened_dict(overrides)
    return config


class Killed(Exception):
    pass


def _final_state(config, dataset, workdir):
    template = train.create(config, dataset).state
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    state, record = ckpt.restore(template)
    ckpt.close()
    return state, record


def test_killed_and_resumed_run_matches_uninterrupted(dataset, tmp_path):
    config = small_config()
    straight = train.run(config, str(tmp_path / "a"), dataset=dataset, progress=False)

    def kill_at_3(step, state, metrics):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train.run(config, str(tmp_path / "b"), dataset=dataset, callbacks=[kill_at_3],
                  progress=False)
    resumed = train.run(config, str(tmp_path / "b"), dataset=dataset, progress=False)

    state_a, _ = _final_state(config, dataset, str(tmp_path / "a"))
    state_b, record_b = _final_state(config, dataset, str(tmp_path / "b"))
    assert int(state_a.step) == int(state_b.step) == 5
    for a, b in zip(jax.tree_util.tree_leaves(state_a), jax.tree_util.tree_leaves(state_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert straight["accuracy"]["MLP"]["accs"] == resumed["accuracy"]["MLP"]["accs"]
    with open(tmp_path / "b" / "metrics.jsonl") as f:
        loss_steps = [row["step"] for row in map(json.loads, f) if "loss" in row]
    assert loss_steps == [1, 2, 3, 4, 5]  # the killed run's step 3 row was dropped on resume


def test_outputs(dataset, tmp_path):
    config = small_config(num_iterations=2)
    results = train.run(config, str(tmp_path), dataset=dataset, progress=False)
    for name in ("config.json", "results.json", "metrics.jsonl", "synset_best.npz",
                 "synset_last.npz", "synset_images.png", "synset_masks.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    assert os.listdir(tmp_path / "tensorboard")
    assert results["instances_per_class"] == 4 and results["k"] == 16
    assert results["budget_parameters"] == C * 4 * 16 == results["budget_limit"]
    assert set(results["accuracy"]["MLP"]) == {"mean", "std", "accs"}
    last, meta = synset.load(tmp_path / "synset_last.npz")
    assert last.coeffs.shape == (C, 4, 16, 1) and meta["dataset"] == "toy"
    assert json.loads((tmp_path / "config.json").read_text())["k"] == 16


def test_pixel_parameterization_same_budget(dataset, tmp_path):
    config = small_config(parameterization="pixel", num_iterations=1, **{"eval.num_eval": 0})
    results = train.run(config, str(tmp_path), dataset=dataset, progress=False)
    assert results["transform"] == "identity" and results["k"] == H * H
    assert results["instances_per_class"] == 1
    assert results["budget_parameters"] == results["budget_limit"] == C * H * H


def test_idc_parameterization_same_budget(dataset, tmp_path):
    """IDC through the same loop: half-resolution images, 4 instances per stored image, the
    export decodes to what the run's final state decodes to."""
    config = small_config(parameterization="idc", num_iterations=2, **{"eval.num_eval": 0})
    results = train.run(config, str(tmp_path), dataset=dataset, progress=False)
    assert results["transform"] == "idc" and results["k"] == (H // 2) ** 2
    assert results["instances_per_class"] == 4
    assert results["budget_parameters"] == results["budget_limit"] == C * H * H
    syn, _ = synset.load(os.path.join(str(tmp_path), "synset_last.npz"))
    images = np.asarray(syn.images())
    assert images.shape == (C, 4, H, H, 1) and np.isfinite(images).all()
    state, _ = _final_state(config, dataset, str(tmp_path))
    assert not np.allclose(np.asarray(state.learnable["coeffs"]), np.asarray(
        train.create(config, dataset).state.learnable["coeffs"]))


def test_validation_split_selects_without_the_test_set(dataset, tmp_path):
    """eval.validation_per_class: the held-out images leave the distilled data, every
    evaluation tests the same networks on them, and synset_best_validation.npz is the set of
    the best validation accuracy (synset_best.npz keeps the official test-set choice)."""
    held, rest = dataset.split_validation(5, seed=0)[1], dataset.split_validation(5, seed=0)[0]
    assert held[0].shape == (C * 5, H, H, 1) and np.array_equal(held[1], np.repeat(np.arange(C), 5))
    assert len(rest.y_train) == len(dataset.y_train) - C * 5
    assert not (rest.x_train[:, None] == held[0][None]).all(axis=(2, 3, 4)).any()
    config = small_config(num_iterations=4, **{"eval.every": 2, "eval.validation_per_class": 5})
    results = train.run(config, str(tmp_path), dataset=dataset, progress=False)
    history = results["history"]
    assert [h["step"] for h in history] == [2, 4]
    vals = [h["results"]["MLP"]["validation"] for h in history]
    assert all(len(v["accs"]) == 1 and 0 <= v["mean"] <= 100 for v in vals)
    best = max(range(2), key=lambda i: (vals[i]["mean"], -i))
    chosen = results["best_validation"]
    assert chosen["step"] == history[best]["step"]
    assert chosen["validation_mean"] == vals[best]["mean"]
    assert chosen["mean"] == history[best]["results"]["MLP"]["mean"]
    _, meta = synset.load(os.path.join(str(tmp_path), "synset_best_validation.npz"))
    assert meta["step"] == chosen["step"]
    with pytest.raises(configuration.ConfigError, match="eval.validation_per_class"):
        configuration.validate(small_config(**{"eval.validation_per_class": -1}), dataset=dataset)
    with pytest.raises(ValueError, match="would leave none"):
        dataset.split_validation(40)


def test_non_finite_loss_stops_with_a_message(dataset, tmp_path):
    config = small_config(lr=1e12, momentum=0.0, **{"eval.num_eval": 0})
    with pytest.raises(train.NonFiniteLossError,
                       match="at iteration 1: the synthetic set diverged"):
        train.run(config, str(tmp_path), dataset=dataset, progress=False)
