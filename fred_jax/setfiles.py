"""Read a training set from a file, whoever wrote it, for the evaluator.

- fred_jax exports (``synset_best.npz`` of a workdir): decoded, with the dataset, the
  normalisation and a learned ``syn_lr`` from the export's metadata;
- plain ``.npz`` (arrays ``images``/``x``/``image_syn`` and ``labels``/``y``/``label_syn``) and
  ``.npy`` image arrays with a labels file beside them (``images_best.npy`` ->
  ``labels_best.npy``) or given explicitly;
- the official code's torch files: ``images_best.pt`` / ``labels_best.pt`` (and
  ``images_<it>.pt``) of the TM scripts, and the ``res_*.pt`` dictionaries of the DM/DC
  scripts (``{'data': [[(images, labels)], ...]}``, one entry per experiment). They are read
  without torch: a ``torch.save`` file is a zip of a pickle whose tensors point at raw storage
  files, and :class:`_TorchUnpickler` rebuilds those as NumPy arrays (float, integer and bool
  storages; ``bfloat16`` widened to float32). Legacy pre-1.6 files, which are not zips, need
  torch itself, which is used when installed.

Images may be ``[N, H, W, C]`` (ours) or ``[N, C, H, W]`` (torch); ``layout="auto"`` decides by
which axis has 1 or 3 channels and asks for ``layout`` when both could. The official sets are
stored normalised (and ZCA-whitened where the run used ZCA), as ours are: evaluate them
against the dataset loaded with the same ``norm_stats`` and ``zca``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any, NamedTuple

import numpy as np

LAYOUTS = ("auto", "nhwc", "nchw")
EXPORT_FIELDS = ("coeffs", "indices", "labels", "meta")
"""Arrays of a fred_jax export ``.npz`` (``fred_jax.synset.save``)."""
_IMAGE_KEYS = ("images", "x", "image_syn", "images_syn", "x_syn")
_LABEL_KEYS = ("labels", "y", "label_syn", "labels_syn", "y_syn")
_EXPORT_WHAT = "an export .npz written by fred_jax (synset_best.npz or synset_last.npz of a workdir)"


class LoadedSet(NamedTuple):
    """Images ``[N, *spatial, C]`` float32, labels ``[N]`` int32, and what the file says:
    ``dataset`` (None when the file does not name one) and ``meta`` (export metadata such as
    ``syn_lr``, ``norm_stats``, ``zca``; the source format under ``"format"``)."""

    x: np.ndarray
    y: np.ndarray
    dataset: str | None
    meta: dict


# ----------------------------------------------------------------------------- torch files

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType(NamedTuple):
    dtype: Any


def _rebuild_tensor(storage, offset, size, stride, *unused) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` with a NumPy storage: the strided view, copied."""
    del unused
    if not size:
        return storage[offset].copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    return np.array(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused) -> np.ndarray:
    del requires_grad, backward_hooks, unused
    return data


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles the ``data.pkl`` of a ``torch.save`` zip with tensors as NumPy arrays; any
    other torch object is refused (nothing outside tensors, lists, tuples and dicts runs)."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive, self._prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor, list or dict")

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage_type, key = pid[0], pid[1], pid[2]
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported torch storage record {pid[:2]}")
        raw = self._archive.read(f"{self._prefix}data/{key}")
        if storage_type.dtype == "bfloat16":
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            return bits.view(np.float32)
        return np.frombuffer(raw, np.dtype(storage_type.dtype).newbyteorder("<"))


def read_torch(path: str) -> Any:
    """The object of a ``torch.save`` file with every tensor as a NumPy array (no torch needed
    for the zip format of torch >= 1.6; older files need torch installed)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(pkl) != 1:
                raise ValueError(f"{path}: a zip without one data.pkl; not a torch.save file")
            prefix = pkl[0][: -len("data.pkl")]
            with archive.open(pkl[0]) as f:
                return _TorchUnpickler(f, archive, prefix).load()
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path}: a legacy (pre-1.6, not zip) torch file; install torch to "
                         f"read it, or re-save it with a recent torch") from None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return _to_numpy(obj)


def _to_numpy(obj: Any) -> Any:
    if hasattr(obj, "detach") and hasattr(obj, "numpy"):
        return obj.detach().float().numpy() if str(obj.dtype) == "torch.bfloat16" \
            else obj.detach().numpy()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------- sets


def to_channels_last(x: np.ndarray, layout: str = "auto", where: str = "images") -> np.ndarray:
    """``x [N, H, W, C]`` from either layout (module doc)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if x.ndim < 4:
        raise ValueError(f"{where}: expected a batch of images [N, H, W, C] or [N, C, H, W], "
                         f"got shape {x.shape}")
    if layout == "auto":
        first, last = x.shape[1] in (1, 3), x.shape[-1] in (1, 3)
        if first == last:
            raise ValueError(f"{where}: cannot tell the channel axis of shape {x.shape}; pass "
                             f"layout 'nhwc' or 'nchw'")
        layout = "nchw" if first else "nhwc"
    return np.moveaxis(x, 1, -1) if layout == "nchw" else x


def _checked(x: Any, y: Any, where: str, layout: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim == 2:  # one-hot or soft labels: the hard label is the largest entry
        y = np.argmax(y, axis=1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{where}: labels must be class indices, got {y.dtype} values")
        y = y.astype(np.int64)
    x = to_channels_last(x, layout, where).astype(np.float32)
    if y.shape != (x.shape[0],):
        raise ValueError(f"{where}: {x.shape[0]} images but labels of shape {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: the images hold non-finite values")
    return x, y.astype(np.int32)


def _sibling(path: str) -> str | None:
    """``labels_best.pt`` for ``images_best.pt`` (same folder and suffix), if it exists."""
    folder, name = os.path.split(path)
    if "images" not in name:
        return None
    candidate = os.path.join(folder, name.replace("images", "labels", 1))
    return candidate if os.path.isfile(candidate) else None


def _pair_in(obj: Any, index: int) -> tuple[Any, Any] | None:
    """The ``index``-th (images, labels) pair of an official ``res_*.pt`` dictionary."""
    if isinstance(obj, dict) and "data" in obj:
        pairs = []

        def walk(o):
            if isinstance(o, (list, tuple)):
                if len(o) == 2 and all(isinstance(a, np.ndarray) for a in o):
                    pairs.append(tuple(o))
                else:
                    for item in o:
                        walk(item)

        walk(obj["data"])
        if not pairs:
            return None
        if not -len(pairs) <= index < len(pairs):
            raise ValueError(f"the file holds {len(pairs)} (images, labels) pairs; index "
                             f"{index} is out of range")
        return pairs[index]
    return None


def load_export(path: str) -> tuple[Any, dict]:
    """``fred_jax.synset.load(path)`` with one clear line for a file that is missing, not an
    export, or holds a non-finite set."""
    from fred_jax import synset as synset_lib

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; expected {_EXPORT_WHAT}")
    if not zipfile.is_zipfile(path):
        kind = "a .npy array" if path.endswith(".npy") else "not an .npz archive"
        raise ValueError(f"{path}: {kind}, expected {_EXPORT_WHAT}")
    with np.load(path, allow_pickle=False) as z:
        missing = [name for name in EXPORT_FIELDS if name not in z.files]
        if missing:
            raise ValueError(f"{path}: an .npz without the export fields {missing} (has "
                             f"{sorted(z.files)}); expected {_EXPORT_WHAT}")
        finite = bool(np.isfinite(z["coeffs"]).all())
    if not finite:
        raise ValueError(f"{path}: the synthetic set holds non-finite coefficients (a diverged "
                         f"run); distil again with a lower learning rate")
    try:
        return synset_lib.load(path)
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a readable export ({e}); expected {_EXPORT_WHAT}") from None


def read(path: str, *, labels: str | None = None, layout: str = "auto",
         index: int = 0) -> LoadedSet:
    """The training set in ``path`` (module doc). ``labels``: a labels file (``.npy`` or
    ``.pt``) for image-only files (default: the ``images`` -> ``labels`` sibling); ``index``:
    which experiment of an official ``res_*.pt`` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
        if set(EXPORT_FIELDS) <= files:
            from fred_jax import synset as synset_lib

            syn, meta = load_export(path)
            x, y = synset_lib.flat(syn)
            meta = {**meta, "format": "fred_jax export",
                    "coeffs_shape": tuple(syn.coeffs.shape), "image_shape": syn.image_shape}
            return LoadedSet(np.asarray(x, np.float32), np.asarray(y, np.int32),
                             str(meta["dataset"]), meta)
        with np.load(path, allow_pickle=False) as z:
            xk = next((k for k in _IMAGE_KEYS if k in files), None)
            yk = next((k for k in _LABEL_KEYS if k in files), None)
            if xk is None or yk is None:
                raise ValueError(f"{path}: an .npz needs an images array (one of "
                                 f"{_IMAGE_KEYS}) and a labels array (one of {_LABEL_KEYS}); "
                                 f"it has {sorted(files)}")
            x, y = _checked(z[xk], z[yk], path, layout)
        return LoadedSet(x, y, None, {"format": "npz"})
    if suffix not in (".npy", ".pt", ".pth"):
        raise ValueError(f"{path}: unknown set file type {suffix!r}; expected .npz, .npy or .pt")
    obj = np.load(path, allow_pickle=False) if suffix == ".npy" else read_torch(path)
    pair = _pair_in(obj, index) if suffix != ".npy" else None
    if pair is not None:
        x, y = _checked(*pair, path, layout)
        return LoadedSet(x, y, None, {"format": "official res_*.pt", "index": index})
    if not isinstance(obj, np.ndarray):
        raise ValueError(f"{path}: expected an image tensor or an official res_*.pt dictionary, "
                         f"got {type(obj).__name__}")
    labels = labels or _sibling(path)
    if labels is None:
        raise ValueError(f"{path}: images without labels; pass the labels file (e.g. "
                         f"labels_best.pt beside images_best.pt)")
    y = np.load(labels, allow_pickle=False) if labels.endswith(".npy") else read_torch(labels)
    x, y = _checked(obj, y, path, layout)
    return LoadedSet(x, y, None, {"format": suffix.lstrip("."), "labels": labels})
