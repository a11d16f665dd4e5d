"""TM at the real scale against the official code (``tests/golden/tm_scale.npz``, written by
``benchmarks/parity/ref_tm_scale.py``): consecutive iterations of the official
``main_TM_FreD.py`` body for CIFAR-10 ipc 1 (160 synthetic images, k = 64, ConvNet width 128,
``syn_steps`` with DSA (see Scale), the official rates), in float64 on both sides, through our own
iteration: :func:`fred_jax.objectives.tm.build` (the expert pool read from a store, the target
``start + expert_epochs``), the optimiser of :mod:`fred_jax.optimizer` (coefficients in
torch-dct units, ``syn_lr`` with momentum 0.5) and the clip. The official random choices are
injected: the start epoch, and per student step the DSA op and its per-image draws (un-permuted:
the official batch is the set in ``torch.randperm`` order, ours the set in order).

Compared per iteration: the loss, the gradients w.r.t. the kept coefficients (ours = ``s`` x
official, ``test_parity_dm``) and ``syn_lr``, and after the step the coefficients, ``syn_lr``
and both momentum buffers (the state carried into the next iteration). The reference script
runs the official DSA matrices in float64 too (their ``dtype=torch.float``; see
``ref_tm_scale.py``).

Scale: the official student keeps the graph of every step (about 1.3 GB per step in float64
here, ~65 GB for the official 50), more than the machines the goldens are made on, so the
stored golden has ``syn_steps`` 4 (``TM_SCALE_STEPS=50 ref_tm_scale.py`` makes the full one;
this test reads the count from the golden). Everything else is the real setting.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

import parity_util
from fred_jax import expert_store, models, objectives, official_buffers, optimizer, synset
from fred_jax import transforms
from fred_jax.objectives import tm

PIECE = "tm_scale"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE, CLASSES = (32, 32, 3), 10
TOL = 1e-10  # float64 on both sides
OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
INT_DRAWS = ("crop_x", "crop_y", "cutout_x", "cutout_y")


@functools.lru_cache(maxsize=1)
def _golden() -> dict:
    return parity_util.load_golden(PIECE)


def _config(store: str, g: dict):
    from fred_jax import configuration

    steps, m, max_start, epochs, lr, mom, lr_teacher, lr_lr, _ = g["settings"].tolist()
    config = configuration.from_file(os.path.join(ROOT, "configs", "cifar10_ipc1.py"))
    config.model = "ConvNet"
    t = config.tm
    t.experts.dir, t.experts.epochs = store, int(epochs)
    t.syn_steps, t.expert_epochs, t.max_start_epoch = int(steps), int(m), int(max_start)
    assert (config.lr, config.momentum, t.lr_teacher, t.lr_lr) == (lr, mom, lr_teacher, lr_lr)
    return config


def _write_expert(store: str, g: dict, config, model) -> None:
    """The golden's expert (``parity_util.synthetic_walk`` from its seed) as our store."""
    names = [str(n) for n in g["names"]]
    state = parity_util.synthetic_state(names, g["shapes"], [str(k) for k in g["kinds"]],
                                        int(g["expert_seed"]))
    walk = parity_util.synthetic_walk(state, int(g["settings"][3]), int(g["expert_seed"]))
    num_params, index, _ = official_buffers.torch_to_ours(model, SHAPE)
    traj = np.stack([np.concatenate([np.ravel(v) for v in s.values()])[index] for s in walk])
    os.makedirs(store, exist_ok=True)
    np.save(expert_store.expert_path(store, 0), traj.astype(np.float32))
    expert_store.write_meta(store, {"format_version": expert_store.FORMAT_VERSION,
                                    **expert_store.expert_settings(config, num_params),
                                    "epochs": int(g["settings"][3]), "test_acc": {},
                                    "seconds": {}})


def _given(g: dict, it: int, dtype) -> dict:
    """Iteration ``it``'s official choices in our layout (draws of image j at position j)."""
    perm = g[f"it{it}:perm"]
    inverse = np.argsort(perm, axis=1)
    draws = {"op": jnp.asarray(g[f"it{it}:op"], jnp.int32)}
    for name in [k.split(":")[1] for k in g if k.startswith(f"it{it}:") and "_" in k
                 and k.split(":")[1].split("_")[0] in OPS]:
        value = np.take_along_axis(g[f"it{it}:{name}"], inverse, axis=1)
        draws[name] = (jnp.asarray(value.astype(np.int64)) if name in INT_DRAWS
                       else jnp.asarray(value, dtype))  # ints: the default width, as ours
    return {"expert": jnp.zeros(1, jnp.int32),
            "start_epoch": jnp.asarray([int(g[f"it{it}:start_epoch"])], jnp.int32),
            "dsa": jax.tree.map(lambda a: a[None], draws)}


def run_ours(iterations: int, x64: bool, store: str, conv_impl: str | None = None) -> list:
    """Our iterations on the golden's inputs: per iteration loss, gradients and state."""
    g = _golden()
    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        model = models.get("ConvNet", CLASSES, SHAPE,
                           conv_impl=conv_impl or objectives.default_conv_impl("tm"))
        config = _config(store, g)
        _write_expert(store, g, config, model)
        indices = jnp.asarray(g["indices"])
        problem = objectives.Problem(
            decode=lambda c: synset.decode(c, indices, "dct", SHAPE), x_train=None,
            y_train=None, class_index=None, model=model, num_classes=CLASSES,
            image_shape=SHAPE, ipc=1, instances_per_class=g["freq0"].shape[1])
        objective = tm.build(config, problem)
        s = _scale(g)
        tx = optimizer.make_optimizer(
            float(config.lr), float(config.momentum),
            optimizer.coefficient_lr_scale(g["indices"], SHAPE, "dct", "torch_dct"),
            dict(objective.extra_optimisers))
        base = optimizer.make_apply(tx)

        def apply(learnable, opt_state, grads):  # the real step, and the gradients kept
            learnable, inner = base(learnable, opt_state[0], grads)
            return learnable, (inner, grads)

        learnable = {"coeffs": jnp.asarray(g["freq0"] / s, dtype),
                     "syn_lr": jnp.asarray(float(g["settings"][6]), dtype)}
        state = (tx.init(learnable), jax.tree.map(jnp.zeros_like, learnable))
        update = jax.jit(lambda lrn, st, given: objective.update(lrn, st, given, apply))
        out = []
        for it in range(iterations):
            learnable, state, metrics = update(learnable, state, _given(g, it, dtype))
            inner, grads = state
            out.append({"loss": float(metrics["loss"]), "grad": np.asarray(grads["coeffs"]),
                        "grad_lr": float(grads["syn_lr"]),
                        "coeffs": np.asarray(learnable["coeffs"]),
                        "syn_lr": float(learnable["syn_lr"]),
                        "momentum": _momenta(inner, learnable)})
    return out


def _momenta(inner, learnable) -> dict:
    """The SGD momentum buffers (optax ``trace``) of the coefficients and of ``syn_lr``."""
    found = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(inner):
        text = jax.tree_util.keystr(path)
        if "trace" not in text:
            continue
        for name, value in learnable.items():
            if np.shape(leaf) == np.shape(value) and name in text:
                found[name] = np.asarray(leaf)
    return found


def _scale(g: dict) -> np.ndarray:
    """``s [C, 1, k, 1]``: official (torch-dct) coefficient = ``s`` x ours."""
    s = transforms.torch_dct_scale(SHAPE[:-1]).reshape(-1)[g["indices"]]
    return s[:, None, :, None]


def iteration_rows(ours: list, tol: float, tag: str) -> list[parity_util.Row]:
    g = _golden()
    s = _scale(g)
    out = []
    for it, o in enumerate(ours):
        p = f"iteration {it} {tag}"
        out += [
            parity_util.compare(PIECE, f"{p} loss", o["loss"], g[f"it{it}:loss"], tol,
                                f"start epoch {int(g[f'it{it}:start_epoch'])}, "
                                f"{int(g['settings'][0])} steps, DSA"),
            parity_util.compare(PIECE, f"{p} grad coeffs", o["grad"], s * g[f"it{it}:grad_freq"],
                                tol, "ours = s * official"),
            parity_util.compare(PIECE, f"{p} grad syn_lr", o["grad_lr"], g[f"it{it}:grad_lr"],
                                tol),
            parity_util.compare(PIECE, f"{p} coeffs after", o["coeffs"] * s, g[f"it{it}:freq"],
                                tol, "lr_freq 1e8, momentum 0.5, torch-dct units"),
            parity_util.compare(PIECE, f"{p} coeff momentum", o["momentum"].get("coeffs"),
                                g[f"it{it}:freq_momentum"] / s, tol),
            parity_util.compare(PIECE, f"{p} syn_lr change", o["syn_lr"] - 0.01,
                                g[f"it{it}:syn_lr"] - 0.01, tol, "lr_lr 1e-7, clip 1e-3"),
            parity_util.compare(PIECE, f"{p} syn_lr momentum", o["momentum"].get("syn_lr"),
                                g[f"it{it}:lr_momentum"], tol, "momentum 0.5"),
        ]
    return out


def rows() -> list[parity_util.Row]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(int(_golden()["settings"][8]), True, os.path.join(tmp, "experts"))
    return iteration_rows(ours, TOL, "float64")


def test_tm_scale_iterations(tmp_path):
    """Every stored iteration (the second and third carry the momenta over)."""
    n = int(_golden()["settings"][8])
    parity_util.assert_rows(iteration_rows(run_ours(n, True, str(tmp_path)), TOL, "float64"))
