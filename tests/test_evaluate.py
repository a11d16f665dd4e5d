"""Tests for fred_jax.evaluate: schedule, seed vmapping, coresets, and a real-MNIST run."""

import os
import types

import jax
import numpy as np
import pytest

from fred_jax import classifier, coreset
from fred_jax import evaluate as ev

C = 3


def _tiny(n_per_class: int, seed: int, shape=(8, 8, 3)):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per_class).astype(np.int32)
    x = rng.normal(size=(len(y), *shape)).astype(np.float32) + y[:, None, None, None]
    return x, y


@pytest.fixture(scope="module")
def tiny_runs():
    """ConvNetBN (batch_stats path) on 24 images, batch 8 (a scan over 3 batches; the MNIST test
    covers a smaller last batch), DSA on: both seeds at once, then each seed alone."""
    x, y = _tiny(8, 0)
    xt, yt = _tiny(10, 1)
    keys = ev.seed_keys(jax.random.key(3), 2)
    # two DSA ops keep compilation short; the per-seed op choice and parameters still differ
    kw = dict(num_classes=C, epochs=4, lr=0.05, batch_size=8, test_batch_size=16,
              dsa_strategy="crop_flip", progress=False, return_state=True)
    both = ev.train_seeds(keys, "ConvNetBN", x, y, xt, yt, **kw)
    alone = [ev.train_seeds(keys[i:i + 1], "ConvNetBN", x, y, xt, yt, **kw) for i in range(2)]
    return both, alone


def test_lr_schedule_matches_reference():
    # reference: for ep in range(E + 1): train; if ep == E // 2 + 1: lr *= 0.1
    lrs = [ev.lr_at_epoch(ep, 10, 1.0) for ep in range(11)]
    assert lrs == [1.0] * 7 + [0.1] * 4
    lrs = [ev.lr_at_epoch(ep, 1000, 0.01) for ep in range(1001)]
    assert lrs.index(0.01 * 0.1) == 502 and len(lrs) - 502 == 499


def test_training_uses_schedule(tiny_runs):
    both, _ = tiny_runs
    assert both["lr_per_epoch"] == pytest.approx([0.05] * 4 + [0.005])  # E=4: drop after ep 3
    assert both["train_epochs_run"] == 5 and len(both["train_loss"]) == 5


def test_vmapped_seeds_equal_seeds_one_at_a_time(tiny_runs):
    both, alone = tiny_runs
    for i, one in enumerate(alone):
        for a, b in zip(jax.tree.leaves(both["state"]), jax.tree.leaves(one["state"])):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b[0]), rtol=1e-4, atol=1e-5)
        assert one["accs"] == [both["accs"][i]]
    # different seeds really differ (own init, shuffling and augmentation)
    p = jax.tree.leaves(both["state"].params)[0]
    assert not np.allclose(p[0], p[1])


def test_piecewise_gradient_equals_whole_batch():
    """CPU pieces (here 4 images, the last piece padded) give the batch's loss, count, gradient."""
    import jax.numpy as jnp
    import optax

    from fred_jax import models

    model = models.get("ConvNetD1", C, (8, 8, 3), conv_impl="tapgrad")
    params = models.init(model, jax.random.key(0), (8, 8, 3))["params"]
    x, y = _tiny(3, 2)  # 9 images

    def whole(p):
        logits = model.apply({"params": p}, x, train=True)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce, jnp.sum(jnp.argmax(logits, -1) == y)

    (loss, correct), grads = jax.value_and_grad(whole, has_aux=True)(params)
    loss_p, correct_p, grads_p = classifier.piecewise_loss_grad(model, params, jnp.asarray(x),
                                                                jnp.asarray(y), 4)
    np.testing.assert_allclose(loss_p, loss, rtol=1e-5)
    assert int(correct_p) == int(correct)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_p)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_inference_in_pieces_equals_whole_batch():
    """Test-time pieces (4 images, the last padded) give the whole batch's logits, for an
    instance-norm and a BatchNorm network (inference mode: running statistics)."""
    import jax.numpy as jnp

    from fred_jax import models

    x, _ = _tiny(3, 2)  # 9 images
    for name in ("ConvNet", "ConvNetBN"):
        model = models.get(name, C, (8, 8, 3))
        variables = models.init(model, jax.random.key(0), (8, 8, 3))
        fn = lambda xb: model.apply(variables, xb, train=False)  # noqa: E731
        whole = fn(jnp.asarray(x))
        pieces = jax.jit(lambda xb: classifier.in_pieces(fn, xb, 4))(jnp.asarray(x))
        assert pieces.shape == whole.shape == (9, C)
        np.testing.assert_allclose(pieces, whole, rtol=1e-5, atol=1e-6)
    assert classifier.in_pieces(lambda xb: xb * 2, jnp.ones((3, 2)), 0).shape == (3, 2)


def test_result_fields(tiny_runs):
    both, _ = tiny_runs
    accs = np.asarray(both["accs"])
    assert both["mean"] == pytest.approx(accs.mean()) and both["std"] == pytest.approx(accs.std())
    assert both["num_test"] == 30 and both["num_seeds"] == 2
    assert all(0.0 <= a <= 100.0 for a in accs)


def test_input_validation():
    x, y = _tiny(2, 0)
    with pytest.raises(ValueError, match="labels must lie"):
        ev.train_and_test(jax.random.key(0), "ConvNet", x, y + 5, x, y, num_classes=C,
                          epochs=1, lr=0.01, progress=False)
    with pytest.raises(ValueError, match="integer"):
        ev.train_and_test(jax.random.key(0), "ConvNet", x, y.astype(np.float32), x, y,
                          num_classes=C, epochs=1, lr=0.01, progress=False)
    with pytest.raises(ValueError, match="eval mode"):
        ev.eval_pool("Q")


def test_eval_pools():
    assert ev.eval_pool("S", "ConvNetBN") == ("ConvNet",)
    assert ev.eval_pool("S", "ResNet18") == ("ResNet18",)
    assert ev.eval_pool("M") == ("ConvNet", "AlexNet", "VGG11", "ResNet18")
    assert len(ev.eval_pool("N")) == 5 and ev.eval_pool("W")[0] == "ConvNetW32"


def _fake_dataset():
    x, y = _tiny(6, 2)
    return types.SimpleNamespace(x_train=x, y_train=y, x_test=x, y_test=y, num_classes=C)


def test_coreset_random_ipc_per_class():
    ds = _fake_dataset()
    x, y = coreset.coreset(jax.random.key(0), ds, 4, "random")
    np.testing.assert_array_equal(y, np.repeat(np.arange(C), 4))
    assert x.shape == (12, 8, 8, 3)
    # distinct images, each really from its class
    rows = {xi.tobytes(): yi for xi, yi in zip(ds.x_train, ds.y_train)}
    assert len({xi.tobytes() for xi in x}) == 12
    assert all(rows[xi.tobytes()] == yi for xi, yi in zip(x, y))
    x2, _ = coreset.coreset(jax.random.key(0), ds, 4, "random")
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="fewer than"):
        coreset.coreset(jax.random.key(0), ds, 7, "random")


def test_herding_select_greedy_mean_matching():
    f = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])  # mean 3.2
    # t=1: closest to 3.2 is 3; t=2: (3 + f)/2 closest to 3.2 -> f=2 (2.5) over 10 (6.5);
    # t=3: (5 + f)/3 -> f=10 gives 5.0, f=1 gives 2.0, f=0 gives 1.67 -> 1 (|1.2| < |1.8|)
    np.testing.assert_array_equal(coreset.herding_select(f, 3), [3, 2, 1])
    np.testing.assert_array_equal(np.sort(coreset.herding_select(f, 5)), np.arange(5))


def test_coreset_herding_ipc_per_class():
    ds = _fake_dataset()
    x, y = coreset.coreset(jax.random.key(0), ds, 2, "herding", herding_model="ConvNetW32",
                      progress=False)
    np.testing.assert_array_equal(y, np.repeat(np.arange(C), 2))
    assert len({xi.tobytes() for xi in x}) == 6


@pytest.mark.skipif(not os.environ.get("FRED_DATA_DIR"), reason="needs FRED_DATA_DIR")
def test_mnist_ten_random_images_per_class_well_above_chance():
    from fred_jax import data

    ds = data.load("mnist")
    x, y = coreset.coreset(jax.random.key(0), ds, 10, "random")
    # ConvNetW32 (the reference ConvNet at width 32): testing 2 x 10k images stays cheap on CPU
    r = ev.train_and_test(jax.random.key(1), "ConvNetW32", x, y, ds.x_test, ds.y_test,
                          num_classes=10, epochs=20, lr=0.01, num_seeds=2, progress=False)
    assert r["num_test"] == 10000
    # measured 71.0% and 74.0% for the two seeds; chance is 10%
    assert min(r["accs"]) > 50.0


def test_dc_augmentation_trains_on_the_augmented_batch():
    """One epoch of one full batch with ``dc_strategy``: equal to one SGD step (momentum buffer
    from zero, coupled weight decay) on ``dc_augment.augment`` of the permuted batch under the
    batch key of the module docstring, and different from training without augmentation."""
    import jax.numpy as jnp
    import optax

    from fred_jax import dc_augment, models

    x, y = _tiny(4, 0)
    key = ev.seed_keys(jax.random.key(5), 1)
    kw = dict(num_classes=C, epochs=0, lr=0.1, dsa=False, progress=False, return_state=True)
    aug = ev.train_seeds(key, "ConvNetD1", x, y, x, y, dc_strategy="crop_scale_rotate", **kw)
    plain = ev.train_seeds(key, "ConvNetD1", x, y, x, y, **kw)
    assert aug["augmentation"] == "dc:crop_scale_rotate" and plain["augmentation"] == "none"

    model = models.get("ConvNetD1", C, x.shape[1:], conv_impl="lax")
    params = models.init(model, jax.random.fold_in(key[0], 0), x.shape[1:])["params"]
    ek = jax.random.fold_in(jax.random.fold_in(key[0], 1), 0)
    perm = jax.random.permutation(jax.random.fold_in(ek, 0), len(x))
    xb = dc_augment.augment(jax.random.fold_in(ek, 1), jnp.asarray(x)[perm], "crop_scale_rotate")

    def loss(p):
        logits = model.apply({"params": p}, xb, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[perm]).mean()

    grads = jax.grad(loss)(params)
    want = jax.tree.map(lambda p, g: p - 0.1 * (g + 5e-4 * p), params, grads)
    got, base = jax.tree.leaves(aug["state"].params), jax.tree.leaves(plain["state"].params)
    for a, b in zip(got, jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(got, base))


def test_dsa_and_dc_augmentation_exclude_each_other():
    x, y = _tiny(2, 0)
    with pytest.raises(ValueError, match="exclude each other"):
        ev.train_and_test(jax.random.key(0), "ConvNet", x, y, x, y, num_classes=C, epochs=1,
                          lr=0.01, dc_strategy="crop_scale_rotate", progress=False)
    with pytest.raises(ValueError, match="unknown DC augmentation"):
        ev.train_and_test(jax.random.key(0), "ConvNet", x, y, x, y, num_classes=C, epochs=1,
                          lr=0.01, dsa=False, dc_strategy="crop_flip", progress=False)


@pytest.mark.skipif(not os.environ.get("FRED_DATA_DIR"), reason="needs FRED_DATA_DIR (MNIST)")
def test_evaluate_command_any_set_with_ranking_and_robustness(tmp_path):
    """``python -m fred_jax.evaluate`` on a plain NCHW .npz (as torch code saves images), with
    DD-Ranking scores and on-the-fly corruptions: one JSON with all three, and the robustness
    run's clean accuracies are those of the same networks' test set."""
    import json
    import subprocess
    import sys

    from fred_jax import data

    ds = data.load("mnist")
    idx = np.concatenate([np.flatnonzero(ds.y_train == c)[:1] for c in range(10)])
    np.savez(tmp_path / "set.npz", images=np.moveaxis(ds.x_train[idx], -1, 1),
             labels=ds.y_train[idx])
    common = [sys.executable, "-m", "fred_jax.evaluate", "--synset", str(tmp_path / "set.npz"),
              "--dataset", "mnist", "--models", "MLP", "--num_eval", "2", "--epochs", "2",
              "--noprogress"]
    out = tmp_path / "out" / "results.json"
    run = subprocess.run(common + ["--dd_ranking", "--budget_ipc", "1", "--full_accuracy", "97",
                                   "--robustness", "corrupt", "--corruptions", "gaussian_noise",
                                   "--severities", "1,5", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    accs = res["results"]["MLP"]["accs"]
    assert len(accs) == 2 and res["config"]["format"] == "npz"
    assert res["robustness"]["MLP"]["sets"]["clean"]["0"]["accs"] == accs
    assert sorted(res["robustness"]["MLP"]["sets"]["gaussian_noise"]) == ["1", "5"]
    rank = res["dd_ranking"]["MLP"]
    assert rank["ior_per_seed"] == pytest.approx(
        [a - r for a, r in zip(accs, rank["random_accs"])])
    assert rank["hlr"] == pytest.approx(97 - np.mean(accs)) and 0 <= rank["ddrs"] <= 1
    assert (tmp_path / "out" / "robustness_MLP.png").stat().st_size > 1000
    bad = subprocess.run(common + ["--dd_ranking"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "pass --budget_ipc" in bad.stderr
