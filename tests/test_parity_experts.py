"""Expert trajectories against the official ``TM/buffer.py`` (``tests/golden/experts.npz``,
written by ``benchmarks/parity/ref_experts.py``, which runs the official ``main`` itself): one
expert, ConvNet width 128, 2 epochs of plain SGD (lr 0.01, no momentum, no weight decay) with
DSA per image and batch 256 on 300 real CIFAR-10 images, from the same initial weights, with the
official epoch orders and augmentation draws replayed (``train_experts(replay=...)``). Every
saved epoch's parameters are compared, read back from the store our training wrote.

Both sides run float64 (the reference script makes the official ``epoch``'s ``.float()`` mean
float64; ours under ``jax.enable_x64``), so no ReLU input near 0 can take different sides on
different CPUs; the parameters are compared as our store keeps them, in float32 (and so is the
golden), and the tolerance is that rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parity_util
from fred_jax import expert_store, experts, models, official_buffers

PIECE = "experts"
SHAPE, CLASSES = (32, 32, 3), 10
TOL = 2e-7  # float64 runs, float32 storage (one float32 step of the largest parameter)
INT_DRAWS = ("crop_x", "crop_y", "cutout_x", "cutout_y")


def replay_of(g: dict, prefix: str = "", dtype=jnp.float64) -> tuple[np.ndarray, dict | None]:
    """``(perm, dsa)`` of a golden's recorded choices in ``given_schedule``'s layout (integer
    draws at the default integer width, as ours draw them)."""
    perm = g[f"{prefix}perm"]
    names = [k[len(prefix) + 4:] for k in g if k.startswith(f"{prefix}dsa:")]
    if not names:
        return perm, None
    dsa = {n: jnp.asarray(g[f"{prefix}dsa:{n}"].astype(np.int64)) if n in INT_DRAWS + ("op",)
           else jnp.asarray(g[f"{prefix}dsa:{n}"], dtype) for n in names}
    return perm, dsa


def official_params(g: dict, model) -> np.ndarray:
    """Our flat initial parameters from the golden's seed (official order -> ours)."""
    w = {k[2:]: v for k, v in g.items() if k.startswith("w:")}
    state = parity_util.synthetic_state([str(n) for n in w["names"]], w["shapes"],
                                        [str(k) for k in w["kinds"]], int(w["seed"]))
    _, index, _ = official_buffers.torch_to_ours(model, SHAPE)
    return np.concatenate([np.ravel(v) for v in state.values()])[index], index


def _ours(tmp: str) -> np.ndarray:
    g = parity_util.load_golden(PIECE)
    model = models.get("ConvNet", CLASSES, SHAPE, conv_impl="im2col")
    init, _ = official_params(g, model)
    with jax.enable_x64(True):
        return _train(tmp, g, model, init)


def _train(tmp: str, g: dict, model, init: np.ndarray) -> np.ndarray:
    epochs, batch, lr = g["settings"].tolist()
    x, y = parity_util.load_real("cifar10", parity_util.data_dir())
    idx = g["train_idx"]
    _, unravel = expert_store.param_unraveler(model, SHAPE)
    perm, dsa = replay_of(g)
    replay = {"params": jax.tree.map(lambda a: a[None], unravel(jnp.asarray(init, jnp.float64))),
              "perm": perm[None], "dsa": jax.tree.map(lambda a: a[None], dsa)}
    experts.train_experts(
        jax.random.key(0), x[idx], y[idx], x[idx[:10]], y[idx[:10]], num_classes=CLASSES,
        expert_dir=tmp, dataset="cifar10", num_experts=1, epochs=int(epochs), lr=lr,
        batch_size=int(batch), progress=False, conv_impl="im2col",
        replay=replay)
    return np.load(expert_store.expert_path(tmp, 0))


def rows(tmp: str | None = None) -> list[parity_util.Row]:
    import tempfile

    g = parity_util.load_golden(PIECE)
    with tempfile.TemporaryDirectory() as scratch:
        traj = _ours(tmp or scratch)
    _, index = official_params(g, models.get("ConvNet", CLASSES, SHAPE))
    out = []
    for e in range(1, int(g["settings"][0]) + 1):
        ref = g[f"epoch{e}"][index]
        out.append(parity_util.compare(PIECE, f"epoch {e} parameters", traj[e], ref, TOL,
                                       "official buffer.py, DSA + order replayed"))
        out.append(parity_util.compare(PIECE, f"epoch {e} parameter change", traj[e] - traj[0],
                                       ref - traj[0], 100 * TOL, "relative to the change"))
    return out


def test_experts_match_official(tmp_path):
    if parity_util.data_dir() is None:
        pytest.skip("needs FRED_DATA_DIR (real CIFAR-10)")
    parity_util.assert_rows(rows(str(tmp_path)))
