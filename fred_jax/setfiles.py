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

Nothing in these files is trusted (:mod:`fred_jax.safeio`): sizes are checked against the bytes
held and a byte budget before anything is decompressed, a torch tensor's offset, sizes and
strides against its storage, the pickle's depth and object count are bounded, object arrays are
never loaded, and an export is verified whole (``fred_jax.synset.load``); a refusal is one line
naming the file.

Images may be ``[N, H, W, C]`` (ours) or ``[N, C, H, W]`` (torch); ``layout="auto"`` decides by
which axis has 1 or 3 channels and asks for ``layout`` when both could. The official sets are
stored normalised (and ZCA-whitened where the run used ZCA), as ours are: evaluate them
against the dataset loaded with the same ``norm_stats`` and ``zca``.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from typing import Any, NamedTuple

import numpy as np

from fred_jax import safeio

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


MAX_PICKLE_BYTES = 64 * 2**20
"""Largest ``data.pkl`` read (tensor data lives in the storages, not in the pickle)."""
MAX_DEPTH = 64
"""Deepest nesting of lists, tuples and dicts accepted in a torch file."""
MAX_OBJECTS = 2**20
"""Most distinct objects accepted in a torch file (a shared object counts once)."""
_TORCH_TODO = "re-save it with torch.save (tensors, lists, tuples and dicts only)"


class TorchFileError(safeio.UnsafeFileError, pickle.UnpicklingError):
    """A torch file that is refused: damaged, forged, over budget or holding other objects."""


class _StorageType(NamedTuple):
    dtype: Any


class _Storage(NamedTuple):
    """A storage read by :meth:`_TorchUnpickler.persistent_load`: its elements, 1-D."""

    data: np.ndarray


def _is_index(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**62


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles the ``data.pkl`` of a ``torch.save`` zip with tensors as NumPy arrays; any
    other torch object is refused (nothing outside tensors, lists, tuples and dicts runs).

    Nothing is trusted: a storage's declared element count must match its member's declared
    size and fit the byte budget before it is read, and a tensor's offset, sizes and strides
    must address only elements of its storage before any view of it is made. The budget counts
    each storage once and every copy beyond one per storage (an expanded view, a storage
    shared by many tensors)."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str, budget: int):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._budget, self._storages, self._copied = budget, {}, set()

    def _refuse(self, what: str) -> TorchFileError:
        return TorchFileError(f"{self._path}: {what}; {_TORCH_TODO}")

    def _spend(self, nbytes: int, what: str) -> None:
        if nbytes > self._budget:
            raise safeio.over_budget(self._path, what, nbytes, self._budget)
        self._budget -= nbytes

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise self._refuse(f"{module}.{name} is not a tensor, list or dict")

    def persistent_load(self, pid: Any) -> _Storage:
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not _is_index(pid[4])):
            raise self._refuse(f"unsupported torch storage record {str(pid)[:80]}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if key in self._storages:  # torch writes a shared storage once; read it once
            return self._storages[key]
        itemsize = 2 if storage_type.dtype == "bfloat16" else np.dtype(storage_type.dtype).itemsize
        name = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise self._refuse(f"storage {key!r} is missing from the archive") from None
        if info.file_size != numel * itemsize:
            raise self._refuse(f"storage {key!r} declares {numel:,} elements of {itemsize} "
                               f"bytes but its member {info.file_size:,} bytes")
        self._spend(info.file_size, f"storage {key!r}")
        raw = safeio.read_member(self._archive, info, self._path, info.file_size)
        if storage_type.dtype == "bfloat16":
            data = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            data = np.frombuffer(raw, np.dtype(storage_type.dtype).newbyteorder("<"))
        self._storages[key] = _Storage(data)
        return self._storages[key]

    def _rebuild_tensor(self, storage, offset, size, stride, *unused) -> np.ndarray:
        """``torch._utils._rebuild_tensor_v2`` with a NumPy storage: the strided view, copied,
        once offset, sizes and strides are known to stay inside the storage."""
        del unused
        if not isinstance(storage, _Storage):
            raise self._refuse("a tensor without a storage of the archive")
        if (not _is_index(offset) or not isinstance(size, tuple)
                or not isinstance(stride, tuple) or len(size) != len(stride)
                or len(size) > safeio.MAX_DIMS
                or not all(_is_index(v) for v in size + stride)):
            raise self._refuse(f"a tensor with an impossible layout (offset {str(offset)[:20]}, "
                               f"size {str(size)[:80]}, stride {str(stride)[:80]})")
        data, count = storage.data, math.prod(size)
        if count > data.size or id(data) in self._copied:  # e.g. an expanded (stride 0) view
            self._spend(count * data.itemsize, f"a tensor of shape {size}")
        self._copied.add(id(data))
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if count and last >= data.size:
            raise self._refuse(f"a tensor of shape {size} with strides {stride} at offset "
                               f"{offset} reads element {last:,} of a storage of {data.size:,} "
                               f"(out of bounds)")
        if not count:
            return np.zeros(size, data.dtype)
        view = np.lib.stride_tricks.as_strided(  # every addressed element checked above
            data[offset:], shape=size, strides=tuple(s * data.itemsize for s in stride),
            writeable=False)
        return np.array(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused) -> np.ndarray:
    del requires_grad, backward_hooks, unused
    if not isinstance(data, np.ndarray):
        raise TorchFileError(f"a parameter without a tensor; {_TORCH_TODO}")
    return data


def _check_tree(obj: Any, path: str) -> None:
    """Refuse a structure deeper than :data:`MAX_DEPTH` or with more than :data:`MAX_OBJECTS`
    distinct objects; each shared object is visited once, so a DAG costs its size."""
    seen, stack = set(), [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > MAX_OBJECTS:
            raise TorchFileError(f"{path}: more than {MAX_OBJECTS:,} objects; {_TORCH_TODO}")
        children = (list(node.keys()) + list(node.values()) if isinstance(node, dict)
                    else node if isinstance(node, (list, tuple)) else ())
        if children and depth >= MAX_DEPTH:
            raise TorchFileError(f"{path}: nested deeper than {MAX_DEPTH} levels; "
                                 f"{_TORCH_TODO}")
        stack.extend((child, depth + 1) for child in children)


def read_torch(path: str, budget: int | None = None) -> Any:
    """The object of a ``torch.save`` file with every tensor as a NumPy array (no torch needed
    for the zip format of torch >= 1.6; older files need torch installed). Read with bounds:
    the pickle's size, nesting and object count, and the storages' bytes within ``budget``
    (default ``fred_jax.safeio.max_set_bytes``); a refusal is one line naming the file."""
    if zipfile.is_zipfile(path):
        budget = safeio.max_set_bytes() if budget is None else budget
        with safeio.open_zip(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(pkl) != 1:
                raise ValueError(f"{path}: a zip without one data.pkl; not a torch.save file")
            prefix = pkl[0][: -len("data.pkl")]
            order = [i for i in archive.infolist() if i.filename == f"{prefix}byteorder"]
            if order and safeio.read_member(archive, order[0], path, 64).strip() not in (
                    b"little", b""):
                raise ValueError(f"{path}: a big-endian torch file; re-save it on a "
                                 f"little-endian machine")
            raw = safeio.read_member(archive, archive.getinfo(pkl[0]), path, MAX_PICKLE_BYTES)
            try:
                obj = _TorchUnpickler(io.BytesIO(raw), archive, prefix, path, budget).load()
            except safeio.UnsafeFileError:
                raise
            except (EOFError, IndexError, KeyError, TypeError, AttributeError, ValueError,
                    MemoryError, RecursionError, pickle.UnpicklingError) as e:
                raise TorchFileError(" ".join(
                    f"{path}: a damaged or forged pickle ({type(e).__name__}: {str(e)[:120]}); "
                    f"{_TORCH_TODO}".split())) from None
        _check_tree(obj, path)
        return obj
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
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiu":
        raise ValueError(f"{where}: the images must be a numeric array, got "
                         f"{getattr(x, 'dtype', type(x).__name__)}")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "fiub" or y.ndim not in (1, 2):
        raise ValueError(f"{where}: the labels must be a numeric array [N] or [N, classes], "
                         f"got {getattr(y, 'shape', type(y).__name__)}")
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


def _pair_in(obj: Any, index: int, path: str) -> tuple[Any, Any] | None:
    """The ``index``-th (images, labels) pair of an official ``res_*.pt`` dictionary. Each
    shared object is walked once (``read_torch`` bounded the depth)."""
    if isinstance(obj, dict) and "data" in obj:
        pairs, seen = [], set()

        def walk(o):
            if not isinstance(o, (list, tuple)) or id(o) in seen:
                return
            seen.add(id(o))
            if len(o) == 2 and all(isinstance(a, np.ndarray) for a in o):
                pairs.append(tuple(o))
            else:
                for item in o:
                    walk(item)

        walk(obj["data"])
        if not pairs:
            return None
        if not -len(pairs) <= index < len(pairs):
            raise ValueError(f"{path}: the file holds {len(pairs)} (images, labels) pairs; "
                             f"index {index} is out of range; pass --index below {len(pairs)}")
        return pairs[index]
    return None


def load_export(path: str) -> tuple[Any, dict]:
    """``fred_jax.synset.load(path)`` (which verifies the whole export) with one clear line
    for a file that is missing, not an export, damaged, forged or holds a non-finite set."""
    from fred_jax import synset as synset_lib

    try:
        return synset_lib.load(path)
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: not a readable export ({e}); expected {_EXPORT_WHAT}") from None


def _array_file(path: str) -> Any:
    """The object of a ``.npy`` or torch file, read with bounds (``fred_jax.safeio``)."""
    if path.lower().endswith(".npy"):
        if zipfile.is_zipfile(path):
            raise ValueError(f"{path}: an .npz archive named .npy; rename it to .npz")
        return safeio.read_npy(path)
    return read_torch(path)


def read(path: str, *, labels: str | None = None, layout: str = "auto",
         index: int = 0) -> LoadedSet:
    """The training set in ``path`` (module doc). ``labels``: a labels file (``.npy`` or
    ``.pt``) for image-only files (default: the ``images`` -> ``labels`` sibling); ``index``:
    which experiment of an official ``res_*.pt`` file. Every file is read with bounds and
    refused in one line naming it (``fred_jax.safeio``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                magic = f.read(6)
            hint = ("it holds a .npy array; rename it to .npy" if magic == b"\x93NUMPY" else
                    "a damaged or truncated zip; write it again" if magic[:2] == b"PK" else
                    "pass an .npz written by np.savez or fred_jax")
            raise ValueError(f"{path}: not an .npz archive ({hint})")
        files = set(safeio.npz_names(path))
        if set(EXPORT_FIELDS) <= files:
            from fred_jax import synset as synset_lib

            syn, meta = load_export(path)
            x, y = synset_lib.flat(syn)
            meta = {**meta, "format": "fred_jax export",
                    "coeffs_shape": tuple(syn.coeffs.shape), "image_shape": syn.image_shape}
            return LoadedSet(np.asarray(x, np.float32), np.asarray(y, np.int32),
                             str(meta["dataset"]), meta)
        xk = next((k for k in _IMAGE_KEYS if k in files), None)
        yk = next((k for k in _LABEL_KEYS if k in files), None)
        if xk is None or yk is None:
            raise ValueError(f"{path}: an .npz needs an images array (one of "
                             f"{_IMAGE_KEYS}) and a labels array (one of {_LABEL_KEYS}); "
                             f"it has {sorted(files)}")
        arrays = safeio.read_npz(path)
        x, y = _checked(arrays[xk], arrays[yk], path, layout)
        return LoadedSet(x, y, None, {"format": "npz"})
    if suffix not in (".npy", ".pt", ".pth"):
        raise ValueError(f"{path}: unknown set file type {suffix!r}; expected .npz, .npy or .pt")
    obj = _array_file(path)
    pair = _pair_in(obj, index, path) if suffix != ".npy" else None
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
    if not os.path.isfile(labels):
        raise FileNotFoundError(f"{labels}: no such file (the labels of {path})")
    y = _array_file(labels)
    if not isinstance(y, np.ndarray):
        raise ValueError(f"{labels}: expected a labels tensor, got {type(y).__name__}; pass "
                         f"the labels file saved beside the images")
    x, y = _checked(obj, y, path, layout)
    return LoadedSet(x, y, None, {"format": suffix.lstrip("."), "labels": labels})
