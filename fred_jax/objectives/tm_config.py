"""The ``config.tm`` section of trajectory matching (:mod:`fred_jax.objectives.tm`): its
defaults and its checks. JAX-free, so configs that add the section load without JAX.

TM configs add the section (``config.tm = tm_config.defaults()``); the base configuration does
not carry it, since it names an expert folder that DM and DC runs have no use for.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from fred_jax import checks

MIN_SYN_LR = 1e-3
"""Smallest learnable student rate (reference: ``syn_lr.data.clip(min=0.001)``)."""


def defaults() -> ml_collections.ConfigDict:
    """The ``config.tm`` section with the reference defaults (FreD ``TM/hyper_params.py`` for
    CIFAR-10 ipc=1; MTT ``buffer.py`` for the experts). Every field is commented."""
    c = ml_collections.ConfigDict()
    c.syn_steps = 50  # student SGD steps per iteration (reference syn_steps)
    c.expert_epochs = 2  # M: the target is the expert M epochs after the start
    c.max_start_epoch = 5  # start epoch t drawn uniformly from [0, max_start_epoch)
    c.lr_teacher = 0.01  # initial learnable student rate (reference lr_teacher)
    c.lr_lr = 1e-7  # SGD rate (momentum 0.5) of the learnable student rate; clipped >= 1e-3
    c.batch_syn = 0  # student mini-batch; 0 = the whole synthetic set (reference default)
    c.num_trajectories = 1  # expert trajectories per iteration (vmapped, loss averaged)
    c.grad_chunk = ml_collections.config_dict.placeholder(int)  # images per piece of each
    # student gradient (same result, less memory; 0 = the whole batch at once); None = auto
    # (fred_jax.platform: 20 on CPU, the fastest there; 0 on GPU/TPU)
    c.max_experts = 0  # experts held in memory for sampling; 0 = all in experts.dir
    c.train_experts_if_missing = False  # train missing experts before distilling
    c.experts = ml_collections.ConfigDict()
    c.experts.dir = "experts/cifar10_ConvNetD3"  # folder of expert_*.npy + experts.json
    c.experts.num_experts = 100  # experts to train (reference 100)
    c.experts.epochs = 50  # epochs per expert, each one stored (reference 50)
    c.experts.lr = 0.01  # SGD rate of the experts (reference lr_teacher of buffer.py)
    c.experts.momentum = 0.0  # SGD momentum of the experts (reference 0)
    c.experts.weight_decay = 0.0  # weight decay of the experts (reference 0)
    c.experts.batch_size = 256  # expert training batch (reference batch_train)
    c.experts.dsa = True  # DSA (per image, config.dsa_strategy) on the real training batches
    c.experts.parallel = ml_collections.config_dict.placeholder(int)  # experts trained at
    # once; None = auto (fred_jax.platform: 2 on CPU, 10 on GPU/TPU)
    c.experts.conv_impl = "auto"  # auto: tapgrad on CPU, lax elsewhere (see fred_jax.evaluate)
    c.experts.seed = 0  # expert i uses fold_in(key(seed), i)
    return c


def check(config: Any) -> None:
    """Raise ConfigError for a ``config.tm`` section that cannot run (names the field), before
    any data is read: its values, and the experts already in ``tm.experts.dir`` (their
    ``experts.json`` only, :func:`fred_jax.expert_store.check_stored`). Without the section:
    an error for a TM config, nothing otherwise."""
    if "tm" not in config:
        if config.objective == "tm":
            checks.fail("tm", "missing section: add config.tm = tm_config.defaults() "
                              "(fred_jax.objectives.tm_config)")
        return
    from fred_jax import conv, expert_store  # deferred: configs load without JAX

    t = config.tm
    checks.require_positive(config, tuple(f"tm.{f}" for f in (
        "syn_steps", "expert_epochs", "max_start_epoch", "num_trajectories",
        "experts.num_experts", "experts.epochs", "experts.batch_size")))
    if t.experts.parallel is not None:
        checks.require_positive(config, ("tm.experts.parallel",))
    grad_chunk = 0 if t.grad_chunk is None else int(t.grad_chunk)
    if min(int(t.batch_syn), int(t.max_experts), grad_chunk) < 0:
        raise checks.ConfigError("config.tm.batch_syn, max_experts and grad_chunk must be >= 0 "
                                 "(grad_chunk None: auto)")
    if not float(t.lr_teacher) >= MIN_SYN_LR or not float(t.lr_lr) > 0:
        raise checks.ConfigError(f"config.tm.lr_teacher must be >= {MIN_SYN_LR} and lr_lr > 0, "
                                 f"got {t.lr_teacher} and {t.lr_lr}")
    checks.require_one_of(config, "tm.experts.conv_impl", ("auto", *conv.CONV_IMPLS))
    need = int(t.max_start_epoch) - 1 + int(t.expert_epochs)
    if need > int(t.experts.epochs):
        raise checks.ConfigError(f"config.tm: max_start_epoch - 1 + expert_epochs = {need} "
                                 f"exceeds experts.epochs = {t.experts.epochs}")
    if config.objective == "tm":
        expert_store.check_stored(config)
