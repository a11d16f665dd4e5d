"""The CIFAR python-version batches, read without running any code they carry.

Each batch of `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` is a Python 2 pickle of a
dict: bytes keys; lists of ints (labels), lists of bytes (file and class names), bytes, ints,
and one uint8 array `data` [N, 3072] that numpy pickles as `numpy.core.multiarray._reconstruct`
+ `numpy.ndarray` + `numpy.dtype` with the raw bytes as its state (Python 3 pickles bytes in
protocol 2 as `_codecs.encode(text, "latin1")`). `pickle.load` on such a file calls whatever
global the file names, so a crafted file runs code. Here the unpickler resolves exactly those
globals, to stand-ins that accept only a C-ordered uint8 array whose raw bytes match its shape;
any other global (or a persistent id) is refused. Members are read from the tar stream (never
extracted to disk), each at most `MAX_MEMBER` bytes, so the unpickled objects are bounded by
that too. The callers check the tarball's checksum first; this reader is the second wall.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np

MAX_MEMBER = 256 << 20  # largest member read (CIFAR-100's `train`: 155 MB)

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}


class _DType:
    """`numpy.dtype(code, align, copy)` of the pickle: remembers only the code."""

    def __init__(self, code=None, *_):
        self.code = code.decode("latin-1") if isinstance(code, bytes) else code

    def __setstate__(self, state) -> None:  # (version, byte order, ...): uint8 has none
        pass


class _NdarrayType:
    """The `numpy.ndarray` argument of `_reconstruct` (a marker, never instantiated)."""


class _Array:
    """`_reconstruct(ndarray, shape, b'b')` + `__setstate__((version, shape, dtype,
    fortran, raw))`: becomes `.value`, a uint8 array over `raw`, when everything fits."""

    def __init__(self, *_):
        self.value = None

    def __setstate__(self, state) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise pickle.UnpicklingError("array state is not (version, shape, dtype, order, data)")
        shape, dtype, fortran, raw = state[-4:]
        if not (isinstance(dtype, _DType) and dtype.code in ("u1", "uint8")):
            raise pickle.UnpicklingError(f"array dtype {getattr(dtype, 'code', dtype)!r}: only "
                                         f"uint8 arrays are read")
        if not (isinstance(shape, tuple) and len(shape) <= 2
                and all(type(n) is int and n >= 0 for n in shape)) or fortran:
            raise pickle.UnpicklingError(f"array shape {shape!r} (order F: {fortran!r}) refused")
        if not isinstance(raw, bytes) or len(raw) != int(np.prod(shape, dtype=np.int64)):
            got = len(raw) if isinstance(raw, bytes) else type(raw).__name__
            raise pickle.UnpicklingError(f"array of shape {shape} with data {got}: sizes differ")
        self.value = np.frombuffer(raw, np.uint8).reshape(shape)


def _latin1(text, encoding) -> bytes:
    """`_codecs.encode(text, "latin1")`: how Python 3 pickles bytes in protocol 2."""
    if not (isinstance(text, str) and encoding == "latin1"):
        raise pickle.UnpicklingError("_codecs.encode other than (str, 'latin1') refused")
    return text.encode("latin-1")


class _Unpickler(pickle.Unpickler):
    """Resolves only the numpy globals of a uint8 array (to the stand-ins above) and the
    latin-1 encoding of bytes."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        if (module, name) in _RECONSTRUCT:
            return _Array
        if (module, name) == ("numpy", "ndarray"):
            return _NdarrayType
        if (module, name) == ("numpy", "dtype"):
            return _DType
        raise pickle.UnpicklingError(f"refused pickle global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id")


def loads(payload: bytes, where: str) -> dict:
    """A CIFAR batch dict (uint8 arrays as numpy arrays); ValueError naming `where` on
    anything else, before any code could run."""
    try:
        obj = _Unpickler(io.BytesIO(payload), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError) as e:
        raise ValueError(f"{where}: not a CIFAR python batch ({e}); only dicts of labels, names "
                         f"and uint8 arrays are read: replace the file with the published "
                         f"one") from e
    if not isinstance(obj, dict) or not all(isinstance(k, (bytes, str)) for k in obj):
        raise ValueError(f"{where}: not a CIFAR python batch (a {type(obj).__name__}, not a "
                         f"dict with bytes keys)")
    out = {}
    for k, v in obj.items():
        if isinstance(v, _Array):
            v = v.value
        out[k.encode() if isinstance(k, str) else k] = v
    return out


def read_tarball(f, wanted: set[str], where: str) -> dict[str, dict]:
    """{member base name: batch dict} of the `wanted` members of a `.tar.gz` stream `f`.

    Only regular members, each at most `MAX_MEMBER` bytes and present once, are read.
    """
    out = {}
    try:
        with tarfile.open(fileobj=f, mode="r|gz") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                if base not in wanted:
                    continue
                if not member.isfile() or member.size > MAX_MEMBER or base in out:
                    raise ValueError(f"{where}: member {member.name} is not one regular file "
                                     f"of at most {MAX_MEMBER} bytes")
                out[base] = loads(tar.extractfile(member).read(), f"{where}: {member.name}")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{where}: not a readable .tar.gz ({e})") from e
    if set(out) != wanted:
        raise ValueError(f"{where}: members {sorted(wanted - set(out))} not found")
    return out


def names(batch: dict, key: bytes, where: str, count: int | None = None) -> tuple[str, ...]:
    """The list of bytes `batch[key]` as strings (ValueError naming `where` otherwise)."""
    value = batch.get(key)
    if not (isinstance(value, list) and all(isinstance(v, bytes) for v in value)):
        raise ValueError(f"{where}: {key.decode()} is not a list of names")
    if count is not None and len(value) != count:
        raise ValueError(f"{where}: {len(value)} {key.decode()}, expected {count}")
    return tuple(v.decode("utf-8", "replace") for v in value)


def batch(batch: dict, label_key: bytes, num_classes: int,
          where: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 data [N, 3072], int64 labels [N]) of one batch, shapes and labels checked."""
    x, y = batch.get(b"data"), batch.get(label_key)
    if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == 3 * 32 * 32):
        raise ValueError(f"{where}: data is not a uint8 array [N, 3072]")
    if not (isinstance(y, list) and len(y) == len(x) and all(type(v) is int for v in y)):
        raise ValueError(f"{where}: {label_key.decode()} is not {len(x)} integer labels")
    labels = np.asarray(y, np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels outside [0, {num_classes})")
    return x, labels
