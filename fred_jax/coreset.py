"""Coreset baselines: ``ipc`` real training images per class, chosen without distillation.

``random``: ``ipc`` images per class uniformly without replacement. ``herding`` (greedy
herding, Welling 2009, as used for coresets by Castro et al. 2018 / iCaRL): per class,
repeatedly add the image whose inclusion brings the mean of the selected L2-normalised
embeddings closest to the class mean embedding. The reference code ships no herding
implementation; the DC paper uses embeddings of a trained ConvNet. Here the embedding is that
of a ConvNet (``features=True``, the classifier input) initialised from ``key`` and, with
``herding_epochs > 0``, first trained on the full training set with the evaluation protocol
(:mod:`fred_jax.evaluate`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fred_jax import evaluate, models, platform

CORESET_METHODS = ("random", "herding")


def coreset(key: jax.Array, dataset, ipc: int, method: str = "random", *,
            herding_model: str = "ConvNet", herding_epochs: int = 0, herding_lr: float = 0.01,
            conv_impl: str | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``ipc`` real training images per class of ``dataset``, class-major: ``(x [C*ipc, ...],
    y [C*ipc])``.

    ``random``: uniform without replacement (class ``c`` uses ``fold_in(key, c)``).
    ``herding``: greedy herding (:func:`herding_select`) on L2-normalised ``herding_model``
    embeddings; the network is initialised from ``key`` and, if ``herding_epochs > 0``, trained
    on the full training set first (protocol of :func:`fred_jax.evaluate.train_and_test`, one
    seed, with DSA).
    """
    if method not in CORESET_METHODS:
        raise ValueError(f"unknown coreset method {method!r}; choose from {CORESET_METHODS}")
    if ipc < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    labels = np.asarray(dataset.y_train)
    members = [np.flatnonzero(labels == c) for c in range(dataset.num_classes)]
    small = [c for c, m in enumerate(members) if len(m) < ipc]
    if small:
        raise ValueError(f"classes {small} have fewer than ipc={ipc} training images")
    if method == "random":
        chosen = [m[np.asarray(jax.random.permutation(jax.random.fold_in(key, c), len(m)))[:ipc]]
                  for c, m in enumerate(members)]
    else:
        feats = embed(key, dataset, herding_model, epochs=herding_epochs, lr=herding_lr,
                      conv_impl=conv_impl, progress=progress)
        feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        chosen = [m[herding_select(feats[m], ipc)] for m in members]
    idx = np.concatenate(chosen)
    return np.asarray(dataset.x_train)[idx], labels[idx].astype(np.int32)


def embed(key: jax.Array, dataset, model_name: str = "ConvNet", *, epochs: int = 0,
          lr: float = 0.01, conv_impl: str | None = None, batch_size: int = 256,
          progress: bool = True) -> np.ndarray:
    """Embeddings ``[N_train, F]`` (classifier input) of ``dataset.x_train`` under a
    ``model_name`` network initialised from seed 0 of ``key``; trained on the full training set
    for ``epochs + 1`` epochs first if ``epochs > 0``."""
    x_train = np.asarray(dataset.x_train, np.float32)
    model = models.get(model_name, dataset.num_classes, x_train.shape[1:],
                       conv_impl=platform.policy().conv_infer)
    keys = evaluate.seed_keys(key, 1)
    if epochs > 0:
        state = evaluate.train_seeds(keys, model_name, x_train, dataset.y_train,
                                     dataset.x_test, dataset.y_test,
                                     num_classes=dataset.num_classes,
                                     epochs=epochs, lr=lr, conv_impl=conv_impl,
                                     progress=progress, return_state=True)["state"]
        state = jax.tree.map(lambda v: v[0], state)
        variables = {"params": state.params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
    else:
        variables = models.init(model, jax.random.fold_in(keys[0], 0), x_train.shape[1:])
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False, features=True))
    out = [np.asarray(apply(variables, jnp.asarray(x_train[i:i + batch_size])))
           for i in tqdm(range(0, len(x_train), batch_size), desc="embed", leave=False,
                         disable=not progress)]
    return np.concatenate(out)


def herding_select(features, m: int) -> np.ndarray:
    """Greedy herding: indices (in selection order) of ``m`` rows of ``features [n, F]`` whose
    running mean tracks the mean ``mu`` of all rows: step ``t`` (1-based) picks the unselected
    row ``i`` minimising ``|| mu - (sum of selected + f_i) / t ||``."""
    features = jnp.asarray(features, jnp.float32)
    n = features.shape[0]
    if features.ndim != 2 or not 1 <= m <= n:
        raise ValueError(f"herding needs features [n, F] and 1 <= m <= n; got shape "
                         f"{features.shape}, m={m}")
    return np.asarray(_herding(features, m))


@functools.partial(jax.jit, static_argnums=1)
def _herding(features: jax.Array, m: int) -> jax.Array:
    mu = features.mean(0)

    def body(t, carry):
        total, taken, chosen = carry
        dist = jnp.sum((mu - (total + features) / (t + 1)) ** 2, axis=-1)
        i = jnp.argmin(jnp.where(taken, jnp.inf, dist))
        return total + features[i], taken.at[i].set(True), chosen.at[t].set(i)

    init = (jnp.zeros_like(mu), jnp.zeros(features.shape[0], bool), jnp.zeros(m, jnp.int32))
    return jax.lax.fori_loop(0, m, body, init)[2]


__all__ = ["CORESET_METHODS", "coreset", "embed", "herding_select"]
