"""Trajectory matching: gradients vs finite differences, remat memory, trajectories, lr rules."""

import glob
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fred_jax import configuration, data, expert_store, experts, models, synset, train
from fred_jax.expert_store import flatten_params, param_unraveler
from fred_jax.objectives import tm as tm_lib

NUM_CLASSES = 3
SHAPE = (8, 8, 3)


def tiny_model(conv_impl="im2col", width=4, depth=1):
    return models.ConvNet(NUM_CLASSES, width=width, depth=depth, conv_impl=conv_impl)


@pytest.fixture(scope="module")
def problem64():
    """Float64 tiny problem: DCT synset (k=16 of 64, 4 instances per class), an 'expert' pair.
    Use it inside ``jax.enable_x64(True)``."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        real = rng.normal(size=(NUM_CLASSES * 6, *SHAPE))
        labels = np.repeat(np.arange(NUM_CLASSES), 6)
        syn = synset.init(jax.random.key(1), real, labels, NUM_CLASSES, ipc=1, k=16)
        model = tiny_model()
        start = flatten_params(models.init(model, jax.random.key(2), SHAPE)["params"])
        start = start.astype(jnp.float64)
        target = start + 0.05 * jax.random.normal(jax.random.key(3), start.shape, jnp.float64)
        coeffs = syn.coeffs.astype(jnp.float64)
        lr = jnp.asarray(0.05, jnp.float64)
    y = syn.labels()
    key = jax.random.key(4)

    def loss(c, lr, batch_syn, grad_chunk):
        x = synset.decode(c, syn.indices, "dct", SHAPE).reshape(-1, *SHAPE)
        return tm_lib.loss(model, x, y, lr, start, target, key, syn_steps=3, batch_syn=batch_syn,
                           grad_chunk=grad_chunk)

    return dict(loss=loss, coeffs=coeffs, lr=lr)


@pytest.mark.parametrize("batch_syn,grad_chunk", [(None, 0), (5, 2)])
def test_gradient_matches_finite_differences(problem64, batch_syn, grad_chunk):
    """d loss / d coefficients (through decode, DSA and 3 second-order SGD steps) and
    d loss / d syn_lr against central differences in float64; whole set and mini-batches of 5
    with the gradient in padded pieces of 2."""
    p = problem64
    with jax.enable_x64(True):
        vg = jax.jit(jax.value_and_grad(
            lambda c, lr: p["loss"](c, lr, batch_syn, grad_chunk), (0, 1)))
        f = lambda c, lr: float(vg(c, lr)[0])  # noqa: E731 (one compiled function for all)
        value, (g_c, g_lr) = vg(p["coeffs"], p["lr"])
        assert g_c.dtype == jnp.float64 and float(value) > 0
        eps = 1e-5
        v = jnp.asarray(np.random.default_rng(0).normal(size=p["coeffs"].shape))
        fd = (f(p["coeffs"] + eps * v, p["lr"]) - f(p["coeffs"] - eps * v, p["lr"])) / (2 * eps)
        np.testing.assert_allclose(float(jnp.vdot(g_c, v)), fd, rtol=1e-6)
        fd_lr = (f(p["coeffs"], p["lr"] + eps) - f(p["coeffs"], p["lr"] - eps)) / (2 * eps)
        np.testing.assert_allclose(float(g_lr), fd_lr, rtol=1e-6)
        assert abs(float(g_lr)) > 1e-6


def _temp_bytes(syn_steps, remat):
    """Compiled temp memory of the TM gradient (no execution)."""
    model = tiny_model(width=8, depth=2)
    shape = (16, 16, 3)
    p, _ = param_unraveler(model, shape)
    x = jax.ShapeDtypeStruct((20, *shape), jnp.float32)
    y = jax.ShapeDtypeStruct((20,), jnp.int32)
    vec = jax.ShapeDtypeStruct((p,), jnp.float32)
    lr = jax.ShapeDtypeStruct((), jnp.float32)

    def f(x, lr, y, s, t):
        return tm_lib.loss(model, x, y, lr, s, t, jax.random.key(0), syn_steps=syn_steps,
                           dsa=False, remat=remat)

    grad = jax.jit(jax.grad(f, argnums=(0, 1)))
    return grad.lower(x, lr, y, vec, vec).compile().memory_analysis().temp_size_in_bytes


def test_remat_keeps_memory_flat_in_syn_steps():
    with_remat = {s: _temp_bytes(s, True) for s in (10, 40)}
    # With remat a step keeps only its inputs (parameters, augmented batch, running sum):
    # measured 2.84 MB at 10 and 3.14 MB at 40 steps (10 KB per step). Without remat each
    # step's activations stay alive: 16.4 MB at 10 and 56.0 MB at 40 steps (1.3 MB per step;
    # not compiled here to keep the test fast).
    per_step = (with_remat[40] - with_remat[10]) / 30
    assert per_step < 200_000
    assert with_remat[40] < 1.5 * with_remat[10]


def test_trajectories_are_averaged_and_zero_at_target():
    model = tiny_model()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, *SHAPE)), jnp.float32)
    y = jnp.asarray(np.repeat(np.arange(NUM_CLASSES), 2), jnp.int32)
    starts = jnp.stack([flatten_params(models.init(model, jax.random.key(i), SHAPE)["params"])
                        for i in range(2)])
    key = jax.random.key(7)
    kw = dict(syn_steps=2, dsa=False)

    @jax.jit
    def run(lr):
        keys = jax.random.split(key, 2)
        finals = jax.vmap(lambda s, k: tm_lib.student_trajectory(model, x, y, lr, s, k, **kw))(
            starts, keys)
        targets = finals + 0.01
        both = tm_lib.loss(model, x, y, lr, starts, targets, key, grad_chunk=4, **kw)
        each = [tm_lib.loss(model, x, y, lr, starts[i], targets[i], keys[i], **kw)
                for i in range(2)]
        zero = tm_lib.loss(model, x, y, lr, starts[0], finals[0], keys[0], **kw)
        return both, jnp.stack(each), zero

    both, each, zero = run(jnp.asarray(0.1))
    np.testing.assert_allclose(float(both), float(each.mean()), rtol=1e-5)
    assert float(zero) < 1e-10 and float(each.min()) > 0


def test_batch_indices_are_permutation_chunks():
    idx = np.asarray(tm_lib.batch_indices(jax.random.key(0), 10, 5, 6))
    assert idx.shape == (6, 5)
    for epoch in idx.reshape(3, 10):
        assert sorted(epoch.tolist()) == list(range(10))
    odd = np.asarray(tm_lib.batch_indices(jax.random.key(0), 10, 4, 3))
    assert sorted(odd.reshape(-1)[:10].tolist()) == list(range(10))
    with pytest.raises(ValueError, match="batch_syn"):
        tm_lib.batch_indices(jax.random.key(0), 10, 11, 3)


def test_lr_optimizer_and_clip():
    tx = tm_lib.lr_optimizer(0.5)
    lr = jnp.asarray(0.01)
    state = tx.init(lr)
    updates, state = tx.update(jnp.asarray(1.0), state)
    lr = tm_lib.clip_lr(optax.apply_updates(lr, updates))
    assert float(lr) == pytest.approx(tm_lib.MIN_SYN_LR)
    updates, state = tx.update(jnp.asarray(-1.0), state)  # momentum 0.5: 0.5 * 1 - 1 = -0.5
    np.testing.assert_allclose(float(optax.apply_updates(lr, updates)), 1e-3 + 0.25, rtol=1e-6)


def test_validation_errors():
    model = tiny_model()
    x = jnp.zeros((6, *SHAPE))
    y = jnp.zeros((6,), jnp.int32)
    p, _ = param_unraveler(model, SHAPE)
    v = jnp.zeros((p,))
    with pytest.raises(ValueError, match="parameters"):
        tm_lib.loss(model, x, y, 0.1, v[:-1], v[:-1], jax.random.key(0), syn_steps=1)
    with pytest.raises(ValueError, match="syn_steps"):
        tm_lib.loss(model, x, y, 0.1, v, v, jax.random.key(0), syn_steps=0)
    with pytest.raises(ValueError, match="labels"):
        tm_lib.loss(model, x, y[:3], 0.1, v, v, jax.random.key(0), syn_steps=1)
    with pytest.raises(ValueError, match="batch_syn"):
        tm_lib.loss(model, x, y, 0.1, v, v, jax.random.key(0), syn_steps=1, batch_syn=7)
    bn = models.get("ConvNetBN", NUM_CLASSES, SHAPE)
    with pytest.raises(ValueError, match="BatchNorm"):
        param_unraveler(bn, SHAPE)


def _tm_config(expert_dir):
    config = configuration.defaults()
    config.objective = "tm"
    config.dataset = "toy"
    config.model = "ConvNetD1"
    config.conv_impl = "im2col"
    config.ipc, config.k = 1, 16
    config.lr = 1e4
    config.dsa_strategy = ""
    config.tm = tm_lib.defaults()
    config.tm.syn_steps = 2
    config.tm.max_start_epoch = 2
    config.tm.expert_epochs = 1
    config.tm.num_trajectories = 2
    config.tm.lr_lr = 1e-3
    config.tm.experts.dir = expert_dir
    config.tm.experts.epochs = 3
    return config


def _write_experts(folder, config, p, rng, num=2, epochs=3, starts=None):
    """Fake experts: a random walk of ``epochs`` steps from each start, plus experts.json."""
    os.makedirs(folder, exist_ok=True)
    for i in range(num):
        start = rng.normal(size=p).astype(np.float32) if starts is None else starts[i]
        walk = np.cumsum(0.01 * rng.normal(size=(epochs, p)), axis=0)
        np.save(expert_store.expert_path(folder, i),
                np.concatenate([[start], start + walk]).astype(np.float32))
    with open(os.path.join(folder, expert_store.META_FILE), "w") as f:
        json.dump({**expert_store.expert_settings(config, p), "epochs": epochs, "seed": 0,
                   "test_acc": {}, "seconds": {}}, f)


def test_prepare_trains_missing_experts_when_asked_and_load_pool_never_does(tmp_path,
                                                                            monkeypatch):
    folder = str(tmp_path / "experts")
    config = _tm_config(folder)
    config.tm.experts.num_experts = 3
    calls = []

    def fake_train(cfg, progress):
        calls.append(cfg.tm.experts.dir)
        _write_experts(cfg.tm.experts.dir, cfg, 7, np.random.default_rng(0), num=3)

    monkeypatch.setattr(experts, "train_from_config", fake_train)
    for missing in (lambda: expert_store.load_pool(config, 7), lambda: experts.prepare(config)):
        with pytest.raises(configuration.ConfigError, match="python -m fred_jax.experts --config"):
            missing()
    config.tm.train_experts_if_missing = True
    with pytest.raises(configuration.ConfigError, match="python -m fred_jax.experts --config"):
        expert_store.load_pool(config, 7)
    experts.prepare(config)
    pool = expert_store.load_pool(config, 7)
    assert calls == [folder] and pool.shape == (3, 3, 7)  # rows: max_start 2 + M 1
    np.testing.assert_array_equal(pool[1], np.load(expert_store.expert_path(folder, 1))[:3])
    experts.prepare(config)  # all 3 complete: nothing to train
    config.tm.max_experts = 2
    assert expert_store.load_pool(config, 7).shape == (2, 3, 7) and len(calls) == 1
    config.tm.experts.num_experts = 4  # incomplete: trained when asked, else used as it is
    experts.prepare(config)
    assert len(calls) == 2
    config.tm.train_experts_if_missing = False
    experts.prepare(config)
    assert len(calls) == 2
    config.objective = "dm"
    config.tm.experts.dir = str(tmp_path / "nowhere")
    experts.prepare(config)  # not a TM run: nothing to check


def test_validation_checks_the_tm_section_and_stored_experts_before_data(tmp_path):
    folder = str(tmp_path / "experts")
    config = _tm_config(folder)
    toy = types.SimpleNamespace(image_shape=SHAPE, num_classes=NUM_CLASSES)
    configuration.validate(config, dataset=toy)  # no experts yet: experts.prepare says how
    _write_experts(folder, config, 7, np.random.default_rng(0))
    configuration.validate(config, dataset=toy)
    config.tm.experts.lr = 0.02
    with pytest.raises(configuration.ConfigError, match="lr: stored 0.01 vs requested 0.02"):
        configuration.validate(config, dataset=toy)
    config.tm.experts.lr = 0.01
    config.tm.max_start_epoch, config.tm.experts.epochs = 4, 5  # the stored ones have 3
    with pytest.raises(configuration.ConfigError,
                       match="config.tm needs expert epochs up to 4, the experts in .* have 3"):
        configuration.validate(config, dataset=toy)
    config.tm.max_start_epoch = 2
    config.tm.syn_step = 3
    with pytest.raises(configuration.ConfigError, match="config.tm.syn_step: unknown field"):
        configuration.validate(config, dataset=toy)
    config = configuration.defaults()
    config.objective = "tm"
    with pytest.raises(configuration.ConfigError, match="config.tm: missing section"):
        configuration.validate(config, dataset=toy)


def test_objective_runs_in_the_training_loop(tmp_path):
    """tm.build through train.create: experts pool, syn_lr leaf with its own optimiser."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(NUM_CLASSES), 8).astype(np.int32)
    x = rng.normal(size=(len(y), *SHAPE)).astype(np.float32)
    dataset = data.Dataset(name="toy", num_classes=NUM_CLASSES, class_names=("a", "b", "c"),
                           image_shape=SHAPE, mean=np.zeros(3), std=np.ones(3), x_train=x,
                           y_train=y, x_test=x, y_test=y)
    folder = str(tmp_path / "experts")
    config = _tm_config(folder)
    with pytest.raises(configuration.ConfigError, match="python -m fred_jax.experts --config"):
        train.create(config, dataset)

    model = models.get("ConvNetD1", NUM_CLASSES, SHAPE)
    p, _ = param_unraveler(model, SHAPE)
    starts = [np.asarray(flatten_params(models.init(model, jax.random.key(i), SHAPE)["params"]))
              for i in range(2)]
    _write_experts(folder, config, p, rng, starts=starts)

    setup = train.create(config, dataset)
    state = setup.state
    assert float(state.learnable["syn_lr"]) == pytest.approx(0.01)
    state, metrics = setup.step_fn(state)
    state, metrics = setup.step_fn(state)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
    lr = float(state.learnable["syn_lr"])
    assert lr != pytest.approx(0.01) and lr >= tm_lib.MIN_SYN_LR
    assert not np.allclose(state.learnable["coeffs"], setup.state.learnable["coeffs"])

    config.tm.experts.lr = 0.02
    with pytest.raises(configuration.ConfigError, match="lr: stored 0.01 vs requested 0.02"):
        train.create(config, dataset)
    config.tm.experts.lr = 0.01
    config.tm.max_start_epoch = 4
    with pytest.raises(configuration.ConfigError, match="exceeds experts.epochs"):
        train.create(config, dataset)


def test_paper_configs_are_valid():
    """Every TM config loads, passes the loop's validation and the TM checks."""
    paths = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))
    names = set()
    for path in paths:
        config = configuration.from_file(path)
        if config.objective != "tm":
            continue
        shape, num_classes = configuration.DATASETS[config.dataset]
        configuration.validate(config, dataset=types.SimpleNamespace(
            image_shape=shape, num_classes=num_classes))
        tm_lib.check(config)
        assert config.tm.experts.dir.endswith(f"{config.dataset}_{config.model}")
        names.add(os.path.basename(path)[:-3])
    for name in ("cifar10_ipc1", "cifar10_ipc10", "cifar10_ipc50", "mnist_ipc1", "svhn_ipc50",
                 "cifar100_ipc50", "tiny_imagenet_ipc1", "imagenette_ipc1", "imagewoof_ipc10"):
        assert name in names
    config.tm.experts.conv_impl = "winograd"
    with pytest.raises(configuration.ConfigError,
                       match=r"config.tm.experts.conv_impl: 'winograd' is not one of"):
        tm_lib.check(config)
    c = configuration.from_file(os.path.join(os.path.dirname(__file__), "..", "configs",
                                             "cifar10_ipc1.py"))
    assert (c.k, c.lr, c.tm.syn_steps, c.tm.max_start_epoch, c.tm.lr_lr) == (64, 1e8, 50, 5, 1e-7)
