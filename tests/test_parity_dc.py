"""Parity of the DC objective with the official FreD code (``tests/golden/dc.npz``, written by
``benchmarks/parity/ref_dc.py``, no augmentation):

- ``match_loss`` (``dis_metric='ours'``) on given gradient lists vs :func:`dc.layer_distance` /
  :func:`dc.match_distance` (PyTorch layouts moved to ours: output axis last);
- one outer step: the class-0 network gradients on the real and the synthetic batch, the loss of
  :func:`dc.loss` and its gradient w.r.t. the kept coefficients (``dL/dc = s * dL/df``, see
  ``test_parity_dm``);
- one whole :func:`dc.iteration` (outer steps with the coefficient optimiser of
  ``fred_jax.train`` in the ``torch_dct`` lr convention, inner SGD epochs on the decoded set in
  one batch): the reference's ``loss_avg``, the coefficients and the network weights after it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import parity_util
from fred_jax import data, models, objectives, optimizer, synset
from fred_jax.objectives import dc
from test_parity_dm import coefficient_inputs, nhwc

PIECE = "dc"
TOL_LOSS, TOL_GRAD = 1e-5, 1e-4
# The outer step runs the CPU default (im2col), the iteration (the same outer step twice, plus
# inner training) lax: both convolutions' second-order gradients are covered, and compiling is
# most of the cost (im2col iteration 17 s CPU, lax 10 s).
ITERATION_CONV = "lax"


def torch_to_ours(g: np.ndarray) -> np.ndarray:
    """A parameter-shaped array from PyTorch layout (output axis first; conv ``[o, i, *k]``) to
    ours (output axis last; conv ``[*k, i, o]``)."""
    if g.ndim == 4:
        return np.moveaxis(g, (0, 1), (-1, -2))
    return np.moveaxis(g, 0, -1) if g.ndim > 1 else g


def flat(tree) -> np.ndarray:
    """The leaves of a parameter tree, concatenated in pytree order."""
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def _model(g: dict, conv_impl: str):
    state = parity_util.torch_state(g)
    width = state["features.0.weight"].shape[0]
    depth = sum(v.ndim == 4 for v in state.values())
    _, indices, _, image_shape = coefficient_inputs(g)
    model = models.ConvNet(indices.shape[0], width=width, depth=depth, conv_impl=conv_impl)
    return model, parity_util.convnet_params_from_torch(state), image_shape


@functools.lru_cache(maxsize=None)
def _outer_step(conv_impl: str) -> dict:
    g = parity_util.load_golden(PIECE)
    model, params, image_shape = _model(g, conv_impl)
    coeffs, indices, _, _ = coefficient_inputs(g)
    real = jnp.asarray(nhwc(g["real"]))

    def grad_ce(x):  # class 0
        return jax.grad(lambda p: dc.cross_entropy(model, p, x, jnp.zeros(x.shape[:1],
                                                                          jnp.int32)))(params)

    def loss(c):
        syn = synset.decode(c, jnp.asarray(indices), "dct", image_shape)
        return dc.loss(model, params, real, syn, jax.random.key(0), strategy=""), syn

    @jax.jit
    def run(c):  # one compilation for all four quantities
        (value, syn), grad = jax.value_and_grad(loss, has_aux=True)(c)
        return value, grad, grad_ce(real[0]), grad_ce(syn[0])

    value, grad, gw_real0, gw_syn0 = run(jnp.asarray(coeffs))
    return {"gw_real0": flat(gw_real0), "gw_syn0": flat(gw_syn0), "loss": float(value),
            "grad": np.asarray(grad)}


@functools.lru_cache(maxsize=None)
def _iteration(conv_impl: str) -> dict:
    g = parity_util.load_golden(PIECE)
    model, params, image_shape = _model(g, conv_impl)
    coeffs, indices, s, _ = coefficient_inputs(g)
    outer, inner, lr_net, batch_train, lr_freq, mom_freq = g["it_settings"].tolist()
    num_classes, batch_real = g["real"].shape[:2]
    # Exactly batch_real real images per class: every sampled batch is the reference's batch.
    x = nhwc(g["real"]).reshape(-1, *image_shape)
    y = np.repeat(np.arange(num_classes, dtype=np.int32), batch_real)
    problem = objectives.Problem(
        decode=lambda c: synset.decode(c, jnp.asarray(indices), "dct", image_shape),
        x_train=jnp.asarray(x), y_train=jnp.asarray(y),
        class_index=data.class_index(y, num_classes), model=model, num_classes=num_classes,
        image_shape=image_shape, ipc=1, instances_per_class=coeffs.shape[1])
    tx = optimizer.make_optimizer(lr_freq, mom_freq, optimizer.coefficient_lr_scale(
        indices, image_shape, "dct", "torch_dct"), {})
    learnable = {"coeffs": jnp.asarray(coeffs)}

    def run(learnable, opt_state, params):
        return dc.iteration(problem, params, learnable, opt_state, jax.random.key(1),
                            optimizer.make_apply(tx), outer=int(outer), inner=int(inner),
                            batch_real=int(batch_real), lr_net=lr_net,
                            batch_train=int(batch_train))

    learnable, _, params, metrics = jax.jit(run)(learnable, tx.init(learnable), params)
    return {"loss_avg": float(metrics["loss_per_class"]),
            "freq": np.asarray(learnable["coeffs"]) * s, "params": flat(params)}


def match_loss_rows() -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    num = len(g["ml_layer"])
    real = [torch_to_ours(g[f"ml_real:{i}"]) for i in range(num)]
    syn = [torch_to_ours(g[f"ml_syn:{i}"]) for i in range(num)]
    layer = [float(dc.layer_distance(jnp.asarray(r), jnp.asarray(s))) for r, s in zip(real, syn)]
    shapes = ", ".join(str(g[f"ml_real:{i}"].shape) for i in range(num))
    return [
        parity_util.compare(PIECE, "match_loss per layer", layer, g["ml_layer"], TOL_LOSS,
                            f"distance_wb, torch shapes {shapes}"),
        parity_util.compare(PIECE, "match_loss total", float(dc.match_distance(
            [jnp.asarray(r) for r in real], [jnp.asarray(s) for s in syn])), g["ml_total"],
            TOL_LOSS, "dis_metric 'ours'"),
    ]


def outer_step_rows(conv_impl: str) -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    _, _, s, _ = coefficient_inputs(g)
    ours = _outer_step(conv_impl)
    tag = f"(conv_impl={conv_impl})"
    out = []
    for side in ("real", "syn"):
        state = parity_util.torch_state(g, f"gw_{side}0:")
        ref = flat(parity_util.convnet_params_from_torch(state))
        out.append(parity_util.compare(PIECE, f"class-0 {side} network gradient {tag}",
                                       ours[f"gw_{side}0"], ref, TOL_GRAD, "mean CE, all layers"))
    out.append(parity_util.compare(PIECE, f"outer-step loss {tag}", ours["loss"], g["loss"],
                                   TOL_LOSS, "sum_c match_loss(gw_syn_c, gw_real_c)"))
    out.append(parity_util.compare(PIECE, f"grad coeffs {tag}", ours["grad"], s * g["grad_freq"],
                                   TOL_GRAD, "second order; ours = s * official"))
    return out


def iteration_rows(conv_impl: str) -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    ours = _iteration(conv_impl)
    tag = f"(conv_impl={conv_impl})"
    net0, net1 = (flat(parity_util.convnet_params_from_torch(parity_util.torch_state(g, p)))
                  for p in ("w:", "it:"))
    return [
        parity_util.compare(PIECE, f"iteration loss_avg {tag}", ours["loss_avg"],
                            g["it_loss_avg"], TOL_LOSS, "2 outer steps, 2 inner epochs"),
        parity_util.compare(PIECE, f"iteration coefficient change {tag}",
                            ours["freq"] - g["freq_kept"], g["it_freq_kept"] - g["freq_kept"],
                            TOL_GRAD, "SGD lr 1e3 mom 0.5 on torch-dct coefficients"),
        parity_util.compare(PIECE, f"iteration network change {tag}", ours["params"] - net0,
                            net1 - net0, TOL_GRAD, "inner SGD lr 0.01, whole set per batch"),
    ]


def rows() -> list[parity_util.Row]:
    return (match_loss_rows() + outer_step_rows(objectives.default_conv_impl("dc"))
            + iteration_rows(ITERATION_CONV))


def test_match_loss_matches_official():
    parity_util.assert_rows(match_loss_rows())


def test_dc_outer_step_matches_official():
    parity_util.assert_rows(outer_step_rows(objectives.default_conv_impl("dc")))


def test_dc_iteration_matches_official():
    parity_util.assert_rows(iteration_rows(ITERATION_CONV))
