"""Parity of ``fred_jax.models`` with the official networks (golden file from
``benchmarks/parity/ref_models.py``): the same weights (``parity_util.synthetic_state``
converted by ``parity_util.model_variables_from_torch``), the same inputs, then the logits, the
gradient of ``sum(logits * wo)`` w.r.t. the input and w.r.t. every parameter (32 sampled entries
each, plus its norm). BatchNorm variants run in train mode (batch statistics; the updated
running averages are compared too) and in eval mode with the stored running statistics.

Parameter-gradient errors are per parameter, relative to ``max(max |sampled ref|, 1e-2 x the
largest over the case's parameters)`` (norms likewise): the biases of convolutions followed by
instance or batch norm have gradients that are zero up to float rounding (~1e-7 against ~1 for
the other parameters), which no relative measure can compare.

Kinks: a ReLU or max-pool input within float32 rounding of its kink makes the gradient
discontinuous there, and float32 code on another instruction set can land on the other side. The
reference script nudges each case's input until every such site keeps a margin (``MARGIN`` of
the layer's RMS, and ``SAFETY`` times the float32 forward error at those sites, both measured in
float64 and stored); the test asserts the stored margin, so the float32 gradient rows hold
``TOL_GRAD`` on every CPU. For the deepest networks (``FLOAT64``) both sides also run in float64
(tolerance 1e-9): proof that the computation itself is identical.

Conditioning: where torch's own float32 gradients move by more than ``TOL_GRAD`` under 1e-7
relative input noise (``sensitivity``, stored), twice that is the float32 tolerance and float64
rows are required. A case whose input no nudge freed in three draws keeps the shared draw
(no ``<case>:x`` in the golden file) under the same sensitivity rule.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parity_util
from fred_jax import models

PIECE = "models"
TOL_FWD = 1e-5  # logits, float32
TOL_GRAD = 1e-4  # gradients through deep networks, float32
TOL_F64 = 1e-9  # float64 on both sides
MARGIN = 1e-4  # smallest kink distance over the layer's RMS (benchmarks/parity/ref_models.py)
SAFETY = 10  # ... and over the float32 forward error at the kink sites
FLOAT64 = ("ResNet18",)  # architecture prefixes with float64 rows
LEARNABLE = ("conv", "linear", "bias", "norm_weight", "norm_bias")


@functools.lru_cache(maxsize=1)
def _golden() -> dict:
    return parity_util.load_golden(PIECE)


def cases() -> list[str]:
    return [k.split(":")[0] for k in _golden() if k.endswith(":names")]


def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(tree)])


def _per_parameter(arch: str, names, shapes, kinds, gparams, gidx):
    """Our gradient of each official parameter at its sampled flat positions ``gidx`` (torch
    layout) and its norm: an index map through the same converter gives the permutation."""
    learn = [(n, s) for n, s, k in zip(names, shapes, kinds) if k in LEARNABLE]
    idx_state, offsets, total = {}, [], 0
    for n, s in learn:
        shape = tuple(int(v) for v in s if v >= 0)
        idx_state[n] = total + np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        offsets.append(total)
        total += int(np.prod(shape))
    idx_tree = parity_util.model_variables_from_torch(arch, idx_state)["params"]
    where = np.empty(total, np.int64)
    where[_flat(idx_tree)] = np.arange(total)
    ours = _flat(gparams)
    ends = offsets[1:] + [total]
    sampled = [ours[where[off + gidx[i]]] for i, off in enumerate(offsets)]
    norms = np.array([np.linalg.norm(ours[where[a:b]].astype(np.float64))
                      for a, b in zip(offsets, ends)])
    return sampled, norms


def loss_with(model, variables: dict, x, wo, bn: bool, aux: bool = False):
    """``sum(logits * wo)`` in train mode (BatchNorm: batch statistics, updates as aux)."""
    if bn:
        logits, upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
    else:
        logits, upd = model.apply({"params": variables["params"]}, x), {}
    out = jnp.sum(logits * wo)
    return (out, (logits, upd)) if aux else out


def _param_err(ours: list[np.ndarray], ref: np.ndarray) -> float:
    """Largest per-parameter error of the sampled gradients (see the module docstring)."""
    floor = 1e-2 * float(np.max(np.abs(ref)))
    return max(float(np.max(np.abs(o - r))) / max(float(np.max(np.abs(r))), floor)
               for o, r in zip(ours, ref))


def _norm_err(ours: np.ndarray, ref: np.ndarray) -> float:
    floor = 1e-2 * float(np.max(ref))
    return float(np.max(np.abs(ours - ref) / np.maximum(ref, floor)))


def case_rows(case: str, float64: bool = True) -> list[parity_util.Row]:
    """The compared quantities of one case; ``float64=False`` leaves out the float64 rows."""
    g = _golden()
    arch, shape_name = case.split("@")
    names, shapes, kinds = (list(g[f"{case}:{k}"]) for k in ("names", "shapes", "kinds"))
    state = parity_util.synthetic_state(names, shapes, kinds, int(g[f"{case}:seed"]))
    variables = jax.tree.map(jnp.asarray,
                             parity_util.model_variables_from_torch(arch, state))
    nudged = f"{case}:x" in g
    x = jnp.asarray(_channels_last(g[f"{case}:x" if nudged else f"x@{shape_name}"]))
    wo = jnp.asarray(g["wo"])
    model = models.get(arch, 10, x.shape[1:])
    expected = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert jax.tree.map(lambda a: a.shape, expected) == jax.tree.map(lambda a: a.shape, variables)
    bn = "batch_stats" in variables

    def loss(params, x):
        return loss_with(model, {**variables, "params": params}, x, wo, bn, aux=True)

    grad_fn = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    (_, (logits, upd)), (gp, gx) = jax.jit(grad_fn)(variables["params"], x)
    label = f"{arch} {shape_name}" + (" (train mode)" if bn else "")
    rows = []
    if nudged:
        margin, f32_error = float(g[f"{case}:kink_margin"]), float(g[f"{case}:kink_f32_error"])
        required = max(MARGIN, SAFETY * f32_error)
        rows.append(parity_util.Row(PIECE, f"{label} kink margin", required / margin, 1.0,
                                    f"required / stored margin ({margin:.2g} of the layer's RMS)"))
    sens = float(g[f"{case}:sensitivity"])
    conditioned = sens > TOL_GRAD  # torch's own float32 gradients move more than TOL_GRAD
    tol = 2 * sens if conditioned else TOL_GRAD
    note = (f"float32 {'conditioning' if nudged else 'kink'}: 1e-7 input noise moves torch's "
            f"gradients by {sens:.2g}; float64 rows prove the computation" if conditioned else "")
    if conditioned and f"{case}:gx64" not in g:
        rows.append(parity_util.Row(PIECE, f"{label} float64 rows", float("inf"), 0.0,
                                    "float32 sensitivity above TOL_GRAD needs float64 rows"))
    rows += [parity_util.compare(PIECE, f"{label} logits", logits, g[f"{case}:logits"], TOL_FWD),
             parity_util.compare(PIECE, f"{label} grad input", gx,
                                 _channels_last(g[f"{case}:gx"]), tol, note)]
    gidx = g[f"{case}:gidx"]
    ours, norms = _per_parameter(arch, names, shapes, kinds, gp, gidx)
    err = max(_param_err(ours, g[f"{case}:gval"]), _norm_err(norms, g[f"{case}:gnorm"]))
    rows.append(parity_util.Row(PIECE, f"{label} grad params", err, tol,
                                note or f"{len(gidx)} tensors: 32 sampled entries + norm each"))
    if float64 and f"{case}:gx64" in g:  # float64 on both sides: exact math
        with jax.enable_x64(True):
            v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
            x64, wo64 = jnp.asarray(x, jnp.float64), jnp.asarray(wo, jnp.float64)

            def loss64(params, x):
                return loss_with(model, {**v64, "params": params}, x, wo64, bn)

            gp64, gx64 = jax.jit(jax.grad(loss64, argnums=(0, 1)))(v64["params"], x64)
            ours64, _ = _per_parameter(arch, names, shapes, kinds, gp64, gidx)
            rows.append(parity_util.compare(PIECE, f"{label} grad input float64", gx64,
                                            _channels_last(g[f"{case}:gx64"]), TOL_F64,
                                            "exact-math check"))
            rows.append(parity_util.Row(PIECE, f"{label} grad params float64",
                                        _param_err(ours64, g[f"{case}:gval64"]), TOL_F64,
                                        "exact-math check"))
    if bn:
        eval_logits = jax.jit(model.apply)(variables, x)
        rows.append(parity_util.compare(PIECE, f"{arch} {shape_name} eval-mode logits",
                                        eval_logits, g[f"{case}:eval_logits"], TOL_FWD,
                                        "running statistics"))
        ref = parity_util.model_variables_from_torch(
            arch, {n: g.get(f"{case}:rs:{n}", state[n]) for n in names})["batch_stats"]
        rows.append(parity_util.compare(PIECE, f"{arch} {shape_name} running stats",
                                        _flat(upd["batch_stats"]), _flat(ref), TOL_FWD,
                                        "after one train-mode forward, momentum 0.1"))
    return rows


def rows() -> list[parity_util.Row]:
    return [r for case in cases() for r in case_rows(case)]


@pytest.mark.parametrize("case", cases())
def test_network_matches_official(case):
    parity_util.assert_rows(case_rows(case))


AVX2_CASE = "ResNet18BN@cifar"  # deep, batch-statistics ReLUs: the most kink-prone rows


def test_avx2_code_path():
    """One kink-prone case with XLA:CPU restricted to AVX2 (``--xla_cpu_max_isa``, read at
    start-up, hence a subprocess): an AVX-512 machine then also runs the kernels that AVX2-only
    CPUs get, whose float32 rounding differs."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_max_isa=AVX2".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    code = ("import conftest, parity_util, test_parity_models as t; "
            f"parity_util.assert_rows(t.case_rows({AVX2_CASE!r}, float64=False))")
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run([sys.executable, "-c", code], cwd=here, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
