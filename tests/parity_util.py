"""Shared by the golden parity tests (``tests/test_parity_*.py``) and the harness report
(``benchmarks/parity/run.py``): load a golden file written from the official code, compare an
array of ours with it, and keep the numbers so the report can print them.

Error measure: ``max |ours - ref| / max(max |ref|, floor)``, the largest deviation relative to
the reference's scale (robust to entries near zero); ``tol`` is the bound for that piece.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared quantity."""

    piece: str
    quantity: str
    err: float  # max abs deviation / reference scale (or a count for discrete quantities)
    tol: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.err)) and self.err <= self.tol


def load_golden(piece: str) -> dict[str, np.ndarray]:
    """The arrays of ``tests/golden/<piece>.npz``."""
    with np.load(os.path.join(GOLDEN, f"{piece}.npz")) as f:
        return {k: f[k] for k in f.files}


def rel_err(ours, ref, floor: float = 1e-12) -> float:
    """``max |ours - ref| / max(max |ref|, floor)``; inf on a shape mismatch."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, floor)
    return float(np.max(np.abs(ours - ref))) / scale if ref.size else 0.0


def compare(piece: str, quantity: str, ours, ref, tol: float, note: str = "") -> Row:
    """A :class:`Row` for one array."""
    return Row(piece, quantity, rel_err(ours, ref), tol, note)


def assert_rows(rows: list[Row]) -> None:
    """Fail with every row out of tolerance named, with its numbers."""
    bad = [r for r in rows if not r.ok]
    assert not bad, "\n".join(f"{r.piece}/{r.quantity}: err {r.err:.3g} > tol {r.tol:.3g} {r.note}"
                              for r in bad)


def torch_state(golden: dict[str, np.ndarray], prefix: str = "w:") -> dict[str, np.ndarray]:
    """The torch ``state_dict`` stored in a golden file under ``<prefix><name>`` keys, in the
    order it was saved (``np.savez`` keeps the insertion order)."""
    return {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix)}


def _classifier_kernel(weight: np.ndarray, channels: int, ndim: int) -> np.ndarray:
    """torch Linear weight ``[out, C*prod(spatial)]`` over an NC(D)HW flatten -> our Dense
    kernel ``[prod(spatial)*C, out]`` over a channels-last flatten."""
    out, feat = weight.shape
    side = round((feat // channels) ** (1.0 / ndim))
    spatial = (side,) * ndim
    if channels * side**ndim != feat:
        raise ValueError(f"cannot split {feat} features into {channels} x {spatial}")
    w = weight.reshape(out, channels, *spatial)
    return np.moveaxis(w, (0, 1), (-1, -2)).reshape(-1, out)


def convnet_params_from_torch(state: dict[str, np.ndarray], ndim: int = 2) -> dict:
    """Our ConvNet ``params`` from the official ConvNet's (or Conv3DNet's) ``state_dict``:
    ``features.<i>`` convolutions become ``conv<d>`` (kernel ``[*k, in, out]``), the 1-D
    parameters after each become ``norm<d>`` (scale, bias), ``classifier`` becomes the Dense
    layer with its input reordered from NC(D)HW to channels-last."""
    params: dict = {}
    depth = -1
    for name, value in state.items():
        value = np.asarray(value)
        if name.startswith("classifier."):
            continue
        if name.endswith(".weight") and value.ndim == ndim + 2:
            depth += 1
            params[f"conv{depth}"] = {"kernel": np.moveaxis(value, (0, 1), (-1, -2))}
        elif name.endswith(".bias") and f"conv{depth}" in params and "bias" not in params[
                f"conv{depth}"]:
            params[f"conv{depth}"]["bias"] = value
        elif value.ndim == 1:
            norm = params.setdefault(f"norm{depth}", {})
            norm["scale" if name.endswith(".weight") else "bias"] = value
    width = params[f"conv{depth}"]["kernel"].shape[-1]
    params["classifier"] = {
        "kernel": _classifier_kernel(state["classifier.weight"], width, ndim),
        "bias": np.asarray(state["classifier.bias"]),
    }
    return params


# ----------------------------------------------------------------------------- real images

# Normalisation of the official ``get_dataset`` (DM/utils.py): ToTensor (/255) then Normalize.
REAL_STATS = {"mnist": ((0.1307,), (0.3081,)),
              "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))}


def data_dir() -> str | None:
    """``$FRED_DATA_DIR`` if it names a folder, else None (real-data tests skip)."""
    path = os.environ.get("FRED_DATA_DIR")
    return path if path and os.path.isdir(path) else None


def _read_idx(path: str) -> np.ndarray:
    import gzip

    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


_REAL_CACHE: dict = {}


def load_real(name: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    """The train split of ``name`` ("mnist" or "cifar10") under ``root`` (layout of
    ``shared/data``): images ``[N, H, W, C]`` float32 normalised exactly as the official
    ``get_dataset`` (float32 ``x / 255``, minus mean, divided by std), labels ``[N]`` int64.
    Cached per process (CIFAR-10 takes ~7 s to decompress)."""
    if (name, root) in _REAL_CACHE:
        return _REAL_CACHE[name, root]
    if name == "mnist":
        x = _read_idx(os.path.join(root, "mnist", "train-images-idx3-ubyte.gz"))[..., None]
        y = _read_idx(os.path.join(root, "mnist", "train-labels-idx1-ubyte.gz"))
    elif name == "cifar10":
        import lzma

        with lzma.open(os.path.join(root, "cifar10", "x_train.npy.xz")) as f:
            x = np.load(f)
        y = np.load(os.path.join(root, "cifar10", "cifar10_labels.npz"))["y_train"]
    else:
        raise ValueError(f"no real-data loader for {name!r}; expected one of {tuple(REAL_STATS)}")
    mean, std = (np.asarray(v, np.float32) for v in REAL_STATS[name])
    x = (x.astype(np.float32) / np.float32(255.0) - mean) / std
    _REAL_CACHE[name, root] = (x, np.asarray(y, np.int64))
    return _REAL_CACHE[name, root]


# ----------------------------------------------------------------------------- networks

# Parameter kinds of an official state_dict entry (``synthetic_state``).
STATE_KINDS = ("conv", "linear", "bias", "norm_weight", "norm_bias", "running_mean",
               "running_var", "count")


def synthetic_state(names, shapes, kinds, seed: int) -> dict[str, np.ndarray]:
    """Deterministic float32 values for a torch ``state_dict`` of the given entry names,
    shapes and kinds (``STATE_KINDS``), in order, from NumPy's ``default_rng(seed)``: the
    reference script loads them into the official network and the test rebuilds them, so the
    golden file does not store weights. Conv/linear weights ~ U(+-1/sqrt(fan_in)) (torch's
    default), biases ~ U(+-0.1), norm scales 1 + U(+-0.1), norm offsets U(+-0.1), running means
    U(+-0.1), running variances 1 + U(0, 0.1), counters 0."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape, kind in zip(names, shapes, kinds):
        shape = tuple(int(s) for s in shape if s >= 0)
        if kind in ("conv", "linear"):
            bound = 1.0 / np.sqrt(np.prod(shape[1:]))
            v = rng.uniform(-bound, bound, shape)
        elif kind in ("bias", "norm_bias", "running_mean"):
            v = rng.uniform(-0.1, 0.1, shape)
        elif kind == "norm_weight":
            v = 1.0 + rng.uniform(-0.1, 0.1, shape)
        elif kind == "running_var":
            v = 1.0 + rng.uniform(0.0, 0.1, shape)
        elif kind == "count":
            out[name] = np.zeros(shape, np.int64)
            continue
        else:
            raise ValueError(f"unknown state kind {kind!r} of {name}")
        out[name] = v.astype(np.float32)
    return out


def synthetic_walk(state: dict[str, np.ndarray], epochs: int, seed: int) -> list[dict]:
    """An expert-like trajectory of ``epochs + 1`` float32 ``state_dict``s from NumPy's
    ``default_rng(seed + 1)``: ``state``, then each epoch adds to every tensor Gaussian noise of
    standard deviation ``0.05 * std(tensor) + 1e-3``. The reference scripts and the tests build
    the same one, so golden files store a seed, not trajectories."""
    rng = np.random.default_rng(seed + 1)
    out = [{k: np.asarray(v, np.float32) for k, v in state.items()}]
    for _ in range(epochs):
        out.append({k: (v + rng.normal(0.0, 0.05 * float(np.std(v)) + 1e-3, v.shape))
                    .astype(np.float32) for k, v in out[-1].items()})
    return out


def _vgg_conv_index(count: int) -> int:
    """Index in the VGG11 configuration of its ``count``-th convolution (1-based)."""
    from fred_jax import models

    return [i for i, v in enumerate(models.VGG_CFG["VGG11"]) if v != "M"][count - 1]


def _module_path(arch: str, prefix: str, conv_count: int) -> tuple[str, ...]:
    """Our module path for the official module ``prefix`` of architecture ``arch``;
    ``conv_count``: how many convolutions came before it (for ``features.<i>`` layers)."""
    parts = prefix.split(".")
    if arch.startswith("ResNet18"):
        if parts[0].startswith("layer"):
            block = f"{parts[0]}_{parts[1]}"
            if parts[2] == "shortcut":
                return block, "shortcut_conv" if parts[3] == "0" else "shortcut_norm"
            return block, parts[2]
        return (parts[0],)
    if parts[0] != "features":
        return (parts[0],)
    if arch.startswith("VGG"):
        return (f"conv{_vgg_conv_index(conv_count)}",)
    return (f"conv{conv_count - 1}",)


def model_variables_from_torch(arch: str, state: dict[str, np.ndarray]) -> dict:
    """Our variables (``params``, plus ``batch_stats`` for BatchNorm) of ``fred_jax.models``
    architecture ``arch`` from the official network's ``state_dict`` (NumPy arrays, any
    dtype: an index map gives the layout permutation). Convolutions ``[out, in, *k]`` ->
    ``kernel [*k, in, out]``; linear ``[out, in]`` -> ``kernel [in, out]``, the first one after
    convolutions (or MLP's first) with its input reordered from NC(D)HW to channels-last; norm
    weights -> ``scale``, biases -> ``bias`` (LayerNorm ``[C, H, W]`` -> ``[H, W, C]``),
    running stats -> ``batch_stats`` ``mean``/``var``. The norm after convolution ``conv<i>``
    is ``norm<i>``; ResNet names map ``layer<s>.<b>.<m>`` -> ``layer<s>_<b>/<m>``."""
    params: dict = {}
    stats: dict = {}
    conv_count = 0
    last_channels = None
    flattened = False

    def put(tree, path, leaf, value):
        node = tree
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value

    for name, value in state.items():
        value = np.asarray(value)
        prefix, leaf = name.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            continue
        if leaf == "weight" and value.ndim >= 4:  # convolution (LayerNorm weights are 3-D)
            conv_count += 1
            path = _module_path(arch, prefix, conv_count)
            put(params, path, "kernel", np.moveaxis(value, (0, 1), (-1, -2)))
            last_channels = value.shape[0]
            continue
        path = _module_path(arch, prefix, conv_count)
        if path[-1].startswith("conv") and not arch.startswith("ResNet18"):
            # features.<i> after conv<d>: its bias, or the norm layer norm<d>.
            if not (leaf == "bias" and _is_conv_bias(params, path)):
                path = path[:-1] + ("norm" + path[-1][4:],)
        if leaf == "weight" and value.ndim == 2:
            if not flattened:
                channels = last_channels
                if channels is None:  # MLP: the image itself is flattened
                    channels = 1 if value.shape[1] == 28 * 28 else 3
                ndim = 3 if arch == "ConvNet3D" else 2
                value = _classifier_kernel(value, channels, ndim)
                flattened = True
            else:
                value = value.T
            put(params, path, "kernel", value)
        elif leaf == "bias":
            put(params, path, "bias", np.moveaxis(value, 0, -1) if value.ndim == 3 else value)
        elif leaf == "weight":
            put(params, path, "scale", np.moveaxis(value, 0, -1) if value.ndim == 3 else value)
        elif leaf == "running_mean":
            put(stats, path, "mean", value)
        elif leaf == "running_var":
            put(stats, path, "var", value)
        else:
            raise ValueError(f"unexpected state entry {name} {value.shape}")
    return {"params": params, **({"batch_stats": stats} if stats else {})}


def _is_conv_bias(params: dict, path: tuple[str, ...]) -> bool:
    node = params
    for p in path:
        node = node.get(p, {})
    return "kernel" in node and "bias" not in node
