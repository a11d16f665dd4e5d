"""The evaluation protocol against the official ``evaluate_synset`` of ``TM/utils.py`` and
``DM/utils.py`` (``tests/golden/evaluator.npz``, written by ``benchmarks/parity/ref_evaluator.py``):
4 epochs (the loop runs 5; lr x0.1 with the momentum reset after epoch 3), SGD momentum 0.9,
weight decay 5e-4, batch 256, ConvNet width 128 from the same initial weights, on 100 real
CIFAR-10 images, without augmentation and with DSA, the official epoch orders and draws
replayed through :func:`fred_jax.evaluate.train_seeds` (``replay``). Compared: the train loss of
every epoch, the test logits of the trained network and (TM cases) its final parameters; the DM
cases use ``align_corners=False`` as the official DM DSA does.

The two official versions differ in where the test pass sits and what they return; on the same
inputs they gave the same losses and accuracy (the golden stores both). Both sides run float64
(the reference script makes the official ``epoch``'s ``.float()`` mean float64; ours under
``jax.enable_x64``; the images are the float32 originals), so the comparison does not depend on
the CPU; the final parameters are stored in float32 (that rounding is their tolerance).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parity_util
from fred_jax import augment, evaluate, expert_store, models
from test_parity_experts import official_params, replay_of

PIECE = "evaluator"
SHAPE, CLASSES = (32, 32, 3), 10
# float64 runs; ours passes the rate as float32 (2e-8 of 0.01); parameters stored in float32
TOL_LOSS, TOL_PARAMS, TOL_LOGITS = 1e-7, 2e-7, 1e-7
CASES = ("tm_none", "tm_dsa", "dm_none", "dm_dsa")


def run_case(case: str) -> dict:
    g = parity_util.load_golden(PIECE)
    model = models.get("ConvNet", CLASSES, SHAPE, conv_impl="im2col")
    init, index = official_params(g, model)
    with jax.enable_x64(True):
        return _run_case(case, g, model, init, index)


def _run_case(case: str, g: dict, model, init: np.ndarray, index: np.ndarray) -> dict:
    epochs, lr, batch = g["settings"].tolist()
    x, y = parity_util.load_real("cifar10", parity_util.data_dir())
    tr, te = g["train_idx"], g["test_idx"]
    _, unravel = expert_store.param_unraveler(model, SHAPE)
    perm, dsa = replay_of(g, f"{case}:")
    replay = {"params": jax.tree.map(lambda a: a[None], unravel(jnp.asarray(init, jnp.float64))),
              "perm": perm[None], "dsa": None if dsa is None else jax.tree.map(
                  lambda a: a[None], dsa)}
    params = dataclasses.replace(augment.DSAParams(), align_corners=case.startswith("tm"))
    result = evaluate.train_seeds(
        jax.random.key(0)[None], "ConvNet", x[tr], y[tr], x[te], y[te], num_classes=CLASSES,
        epochs=int(epochs), lr=lr, batch_size=int(batch), dsa=dsa is not None,
        dsa_params=params, conv_impl="im2col", progress=False, return_state=True,
        replay=replay)
    final = jax.tree.map(lambda a: a[0], result["state"].params)
    logits = model.apply({"params": final}, jnp.asarray(x[te], jnp.float64))
    flat = np.concatenate([np.ravel(v) for v in jax.tree.leaves(final)])
    return {"loss": np.asarray(result["train_loss"]), "logits": np.asarray(logits),
            "params": flat, "acc": result["accs"][0], "index": index}


def rows(cases=CASES) -> list[parity_util.Row]:
    g = parity_util.load_golden(PIECE)
    out = []
    for case in cases:
        o = run_case(case)
        out += [parity_util.compare(PIECE, f"{case} train loss per epoch", o["loss"],
                                    g[f"{case}:train_loss"], TOL_LOSS, "5 epochs, lr switch"),
                parity_util.compare(PIECE, f"{case} test logits", o["logits"],
                                    g[f"{case}:logits"], TOL_LOGITS),
                parity_util.Row(PIECE, f"{case} test accuracy (%)",
                                abs(o["acc"] - 100 * float(g[f"{case}:acc_test"])), 1e-9,
                                "percent")]
        if f"{case}:params" in g:
            out.append(parity_util.compare(PIECE, f"{case} final parameters", o["params"],
                                           g[f"{case}:params"][o["index"]], TOL_PARAMS))
    return out


@pytest.mark.parametrize("case", ["tm_none", "tm_dsa", "dm_dsa"])
def test_evaluator_matches_official(case):
    if parity_util.data_dir() is None:
        pytest.skip("needs FRED_DATA_DIR (real CIFAR-10)")
    parity_util.assert_rows(rows((case,)))


def test_official_versions_agree():
    """TM/utils.py and DM/utils.py ``evaluate_synset`` trained the same (golden)."""
    g = parity_util.load_golden(PIECE)
    for aug in ("none", "dsa"):
        np.testing.assert_allclose(g[f"tm_{aug}:train_loss"], g[f"dm_{aug}:train_loss"],
                                   rtol=1e-5)
