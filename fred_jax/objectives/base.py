"""The protocol between the training loop and an objective (see ``fred_jax.objectives``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import optax

PyTree = Any
Metrics = dict[str, jax.Array]
Apply = Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]
Update = Callable[[PyTree, PyTree, jax.Array, Apply], tuple[PyTree, PyTree, Metrics]]


@dataclasses.dataclass(frozen=True)
class Problem:
    """What an objective may use: the decoder, the real data on device, the matching network.

    decode: kept coefficients ``[C, n, k, ch]`` -> images ``[C, n, *spatial, ch]`` (pure,
    differentiable). x_train/y_train: the normalised real training set (device arrays);
    class_index: ``fred_jax.data.ClassIndex`` of y_train for per-class sampling. model: the
    Flax network that objectives re-initialise every iteration; image_shape: ``spatial +
    (ch,)``; ipc: the budget in images per class (DC's loop schedule is keyed on it);
    instances_per_class: n. mesh: optional ``jax.sharding.Mesh`` for the class axis.
    """

    decode: Callable[[jax.Array], jax.Array]
    x_train: jax.Array
    y_train: jax.Array
    class_index: Any
    model: nn.Module
    num_classes: int
    image_shape: tuple[int, ...]
    ipc: int
    instances_per_class: int
    mesh: Any = None


@dataclasses.dataclass(frozen=True)
class Objective:
    """A distillation objective as the loop sees it (see ``fred_jax.objectives``).

    Convention: an extra learnable leaf named ``syn_lr`` (TM's learned student rate) is the
    learning rate evaluation trains with, and scalar extra leaves go into the export file.
    """

    name: str
    update: Update
    extra_learnables: Mapping[str, jax.Array] = dataclasses.field(default_factory=dict)
    extra_optimisers: Mapping[str, optax.GradientTransformation] = dataclasses.field(
        default_factory=dict
    )


def single_step(
    loss_fn: Callable[[PyTree, jax.Array], tuple[jax.Array, Metrics]],
) -> Update:
    """Update for objectives with one gradient step per iteration (DM, TM).

    loss_fn(learnable, key) -> (loss, metrics); the gradient is taken w.r.t. every learnable
    leaf and handed to ``apply`` once. ``metrics`` gains ``"loss"``.
    """

    def update(learnable, opt_state, key, apply):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(learnable, key)
        learnable, opt_state = apply(learnable, opt_state, grads)
        return learnable, opt_state, {**metrics, "loss": loss}

    return update
