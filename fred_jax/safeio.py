"""Files we did not write in this run, read with bounds; files we write, written whole.

Reading (verify before trusting): ``.npy`` files and ``.npz``/torch zip archives are parsed
by hand instead of ``np.load``. A zip member's declared (uncompressed) size is checked
against the size its ``.npy`` header implies and against a byte budget *before* anything is
decompressed, and every read stops at the declared size (a zip bomb costs nothing); object
(pickled) arrays are refused; a ``.npy`` header's shape is checked against the bytes the file
really holds. The budget is :func:`max_set_bytes`.

Writing: :func:`atomic_write` writes a temporary file beside the target, fsyncs it and renames
it over the target, so a reader never sees half a file; on failure the temporary file is
removed and the error names the target.

Every refusal is an :class:`UnsafeFileError` (a ``ValueError``) of one line: the file, what is
wrong with it, what to do.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import zipfile
import zlib
from typing import IO, Any, Callable, Sequence

import numpy as np

MAX_SET_BYTES_ENV = "FRED_MAX_SET_BYTES"
DEFAULT_MAX_SET_BYTES = 2 * 2**30
"""Default budget of the arrays one set file may hold (override: ``$FRED_MAX_SET_BYTES``)."""
MAX_HEADER_BYTES = 10_000
"""Largest ``.npy`` header read (numpy's own default limit)."""
MAX_DIMS = 32
_CHUNK = 2**20
FOREIGN = "re-create it with the tool that made it (fred_jax, np.save, torch.save)"
"""What to do about a damaged or hostile file."""


class UnsafeFileError(ValueError):
    """A file that is damaged, hostile or over budget; the message names it."""


def refuse(path: Any, what: str, todo: str = FOREIGN) -> UnsafeFileError:
    """``path: what; todo`` as one line."""
    return UnsafeFileError(" ".join(f"{os.fspath(path)}: {what}; {todo}".split()))


def max_set_bytes() -> int:
    """The byte budget of one set file: ``$FRED_MAX_SET_BYTES`` or :data:`DEFAULT_MAX_SET_BYTES`."""
    value = os.environ.get(MAX_SET_BYTES_ENV)
    if not value:
        return DEFAULT_MAX_SET_BYTES
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"${MAX_SET_BYTES_ENV}={value!r} is not a number of bytes") from None


def over_budget(path: Any, what: str, nbytes: int, budget: int) -> UnsafeFileError:
    return refuse(path, f"{what} would take {nbytes:,} bytes, over the budget of {budget:,}",
                  f"if the file is genuine, raise ${MAX_SET_BYTES_ENV}")


# ----------------------------------------------------------------------------- writing


def atomic_write(path: Any, write: Callable[[IO[bytes]], None] | bytes) -> None:
    """Write ``path`` whole or not at all: ``write(f)`` (or the bytes) into a temporary file in
    the same folder, fsync, rename over ``path``. An error removes the temporary file and is
    raised as an ``OSError`` naming ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    tmp = None
    try:
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}."
                                   f"{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as open() gives
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, (bytes, bytearray, memoryview)):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise OSError(e.errno, f"{path}: could not write it ({e.strerror or e}); the file "
                               f"is as it was before: free disk space, fix the folder's "
                               f"permissions or raise the file-size limit (ulimit -f), then "
                               f"rerun") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def write_json(path: Any, obj: Any, indent: int = 2) -> None:
    """``obj`` as JSON in ``path``, atomically."""
    atomic_write(path, json.dumps(obj, indent=indent).encode())


# ----------------------------------------------------------------------------- .npy headers


def _shape(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, tuple) or len(value) > MAX_DIMS:
        return None
    if not all(type(s) is int and 0 <= s < 2**62 for s in value):
        return None
    return value


def npy_header(fp: IO[bytes], path: Any, where: str = "") -> tuple[np.dtype, tuple, bool]:
    """``(dtype, shape, fortran_order)`` of the ``.npy`` stream at ``fp`` (positioned at its
    start), refused unless it is a plain (no object) array with a sane shape."""
    label = f"{where}: " if where else ""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                fp, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                fp, max_header_size=MAX_HEADER_BYTES)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (zipfile.BadZipFile, zlib.error) as e:
        raise refuse(path, f"{where or 'the array'} is damaged ({e})") from None
    except (ValueError, SyntaxError, EOFError) as e:
        raise refuse(path, f"{label}not a readable .npy array ({' '.join(str(e).split())[:200]})"
                     ) from None
    if dtype.hasobject:
        raise refuse(path, f"{label}holds pickled (object) data, which is never loaded",
                     "save plain numeric arrays (np.save / np.savez of float or int arrays)")
    if _shape(shape) is None:
        raise refuse(path, f"{label}the header declares an impossible shape {shape!r}")
    return dtype, shape, bool(fortran)


def _nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * dtype.itemsize


def _array(raw: bytearray, dtype: np.dtype, shape: tuple, fortran: bool) -> np.ndarray:
    x = np.frombuffer(raw, dtype=dtype, count=math.prod(shape))  # writable: no copy
    return x.reshape(shape, order="F" if fortran else "C")


def read_npy(path: Any, budget: int | None = None) -> np.ndarray:
    """The array of a ``.npy`` file, refused unless its header's shape is exactly the bytes the
    file holds after it and within ``budget`` (default :func:`max_set_bytes`)."""
    budget = max_set_bytes() if budget is None else budget
    try:
        with open(path, "rb") as f:
            dtype, shape, fortran = npy_header(f, path)
            held = os.fstat(f.fileno()).st_size - f.tell()
            nbytes = _nbytes(dtype, shape)
            if nbytes != held:
                raise refuse(path, f"the header declares shape {shape} of {dtype} ({nbytes:,} "
                                   f"bytes) but the file holds {held:,} bytes after it "
                                   f"(truncated or forged)")
            if nbytes > budget:
                raise over_budget(path, f"an array of shape {shape}", nbytes, budget)
            return _array(read_exactly(f, nbytes, path, "the array"), dtype, shape, fortran)
    except IsADirectoryError:
        raise refuse(path, "a folder, not a .npy file", "name the file itself") from None


# ----------------------------------------------------------------------------- zip archives


def open_zip(path: Any) -> zipfile.ZipFile:
    """The zip archive at ``path``, refused when it is not one or is damaged."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
            ValueError) as e:
        raise refuse(path, f"not a readable zip archive ({e})") from None


def check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Any,
                 limit: int) -> None:
    """Refuse a member whose declared size is over ``limit`` or cannot be right, before any of
    it is decompressed."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise refuse(path, f"member {info.filename} uses compression {info.compress_type} "
                           f"(only stored and deflate are read)")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise refuse(path, f"member {info.filename} is stored but declares {info.file_size:,} "
                           f"bytes in {info.compress_size:,}")
    if info.file_size > limit:
        raise over_budget(path, f"member {info.filename} (declared size)", info.file_size, limit)
    if info.header_offset + info.compress_size > os.path.getsize(archive.filename or path):
        raise refuse(path, f"member {info.filename} declares more bytes than the file holds "
                           f"(truncated)")


def read_exactly(fp: IO[bytes], nbytes: int, path: Any, where: str) -> bytearray:
    """``nbytes`` from ``fp`` in bounded chunks into one buffer, then the end of the stream
    (a zip member's CRC check); refused if it is shorter, longer or damaged."""
    out, done = bytearray(nbytes), 0
    view = memoryview(out)
    try:
        while done < nbytes:
            chunk = fp.read(min(nbytes - done, _CHUNK))
            if not chunk:
                raise refuse(path, f"{where} ends {nbytes - done:,} bytes early (truncated)")
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
        if fp.read(1):
            raise refuse(path, f"{where} holds more bytes than its header declares")
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise refuse(path, f"{where} is damaged ({e})") from None
    finally:
        view.release()
    return out


@contextlib.contextmanager
def open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Any):
    """``archive.open(info)``, a damaged or encrypted member refused naming the file."""
    try:
        fp = archive.open(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise refuse(path, f"member {info.filename} is damaged ({e})") from None
    with fp:
        yield fp


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Any,
                limit: int) -> bytearray:
    """The bytes of one member, after :func:`check_member`."""
    check_member(archive, info, path, limit)
    with open_member(archive, info, path) as fp:
        return read_exactly(fp, info.file_size, path, f"member {info.filename}")


def npz_names(path: Any) -> list[str]:
    """The array names of an ``.npz`` (members ending in ``.npy``), without reading them."""
    with open_zip(path) as archive:
        return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]


def read_npz(path: Any, budget: int | None = None,
             check: Callable[[dict[str, tuple[np.dtype, tuple]]], None] | None = None,
             names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive (only ``names`` if given), read with bounds: every
    member's declared size must match the size its ``.npy`` header implies, their sum must fit
    ``budget`` (default :func:`max_set_bytes`), and ``check({name: (dtype, shape)})`` may
    refuse the headers, all before any array data is decompressed."""
    budget = max_set_bytes() if budget is None else budget
    with open_zip(path) as archive:
        infos = {}
        for info in archive.infolist():
            name = info.filename[:-4]
            if info.filename.endswith(".npy") and (names is None or name in names):
                infos[name] = info  # a repeated name: the last, as np.load does
        declared = sum(info.file_size for info in infos.values())
        if declared > budget + len(infos) * MAX_HEADER_BYTES:
            raise over_budget(path, f"{len(infos)} arrays (declared sizes)", declared, budget)
        headers = {}
        for name, info in infos.items():
            check_member(archive, info, path, budget + MAX_HEADER_BYTES)
            with open_member(archive, info, path) as fp:
                dtype, shape, fortran = npy_header(fp, path, f"array {name!r}")
                offset = fp.tell()
            nbytes = _nbytes(dtype, shape)
            if offset + nbytes != info.file_size:
                raise refuse(path, f"array {name!r}: the header declares shape {shape} of "
                                   f"{dtype} ({nbytes:,} bytes) but the archive declares "
                                   f"{info.file_size - offset:,} (forged or damaged)")
            headers[name] = (dtype, shape, fortran, offset)
        total = sum(_nbytes(d, s) for d, s, _, _ in headers.values())
        if total > budget:
            raise over_budget(path, f"{len(headers)} arrays", total, budget)
        if check is not None:
            check({name: (h[0], h[1]) for name, h in headers.items()})
        out = {}
        for name, (dtype, shape, fortran, offset) in headers.items():
            with open_member(archive, infos[name], path) as fp:
                fp.read(offset)
                raw = read_exactly(fp, _nbytes(dtype, shape), path, f"array {name!r}")
            out[name] = _array(raw, dtype, shape, fortran)
        return out


__all__ = ["UnsafeFileError", "atomic_write", "max_set_bytes", "npz_names", "read_npy",
           "read_npz", "refuse", "write_json"]
