"""Hostile set files and failed writes (issue 23, items 2, 3, 6 and 8): every file is built here.

- torch files (the official ``images_best.pt``) whose tensors address bytes outside their
  storage or expand one element past the byte budget, whose storages lie about their size,
  whose pickle is a shared-reference DAG or nests without end, and a zip bomb: refused in one
  line naming the file, before any bytes are read out of bounds or decompressed;
- ``.npz``/``.npy`` with object arrays, headers larger than the data, a wrong suffix, a torn
  archive, a flipped byte, a zip bomb;
- exports with out-of-range or repeated kept positions, wrong labels, shapes that disagree,
  metadata nested without end, labels outside the dataset's classes;
- exports and ``results.json`` written under a tiny file-size limit: nothing half-written
  remains and the message names the path; a torn ``results.json`` is named and set aside.

Cases whose old behaviour is a crash or a hang run in subprocesses with a timeout.
"""

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

from fred_jax import cli, outputs, setfiles, synset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 2**20


# ----------------------------------------------------------------------------- builders


def _long(n: int) -> bytes:
    enc = pickle.encode_long(n)
    return b"\x8a" + bytes([len(enc)]) + enc  # LONG1


def _str(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s.encode())) + s.encode()  # BINUNICODE


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _tensor(key: str, numel: int, offset: int, size, stride, storage="FloatStorage") -> bytes:
    """Pickle ops of ``torch._utils._rebuild_tensor_v2`` as ``torch.save`` writes them."""
    record = _tuple([_str("storage"), f"ctorch\n{storage}\n".encode(), _str(key), _str("cpu"),
                     _long(numel)]) + b"Q"  # BINPERSID
    args = _tuple([record, _long(offset), _tuple(map(_long, size)), _tuple(map(_long, stride)),
                   b"\x89", b"ccollections\nOrderedDict\n)R"])
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def _torch_file(path, pkl: bytes, storages: dict) -> str:
    """A ``torch.save`` zip: ``archive/data.pkl`` (protocol 2) and raw storages."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + pkl + b".")
        z.writestr("archive/byteorder", b"little")
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
    return str(path)


def _torch_tensor_file(path, numel, offset, size, stride, stored=None) -> str:
    data = np.arange(numel if stored is None else stored, dtype="<f4").tobytes()
    return _torch_file(path, _tensor("0", numel, offset, size, stride), {"0": data})


def _deflated_zeros(prefix: bytes, total: int) -> bytes:
    """A raw deflate stream of ``prefix`` then zeros, ``total`` bytes in all: a zip bomb built
    in milliseconds (full-flushed 1 MiB blocks of zeros repeat byte for byte)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = min(total, MIB)
    out = [c.compress(prefix + bytes(first - len(prefix))), c.flush(zlib.Z_FULL_FLUSH)]
    left = total - first
    if left >= MIB:
        block = c.compress(bytes(MIB)) + c.flush(zlib.Z_FULL_FLUSH)
        out.append(block * (left // MIB))
        left %= MIB
    out.append(c.compress(bytes(left)) + c.flush())
    return b"".join(out)


def _raw_zip(path, members) -> str:
    """A zip of ``(name, payload, declared size, deflated)`` members written byte by byte
    (zipfile cannot store a ready-made deflate stream)."""
    local, central = b"", b""
    for name, payload, size, deflated in members:
        name = name.encode()
        crc = 0 if deflated else zlib.crc32(payload)
        method = 8 if deflated else 0
        head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(payload),
                           size, len(name), 0)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc,
                               len(payload), size, len(name), 0, 0, 0, 0, 0, len(local)) + name
        local += head + name + payload
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(local), 0)
    with open(path, "wb") as f:
        f.write(local + central + end)
    return str(path)


def _npy_header(dtype, shape) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str,
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _export(path, indices, *, labels=None, coeffs=None, image_shape=(8, 8, 1), meta=None):
    """An export as ``synset.save`` writes it, whatever its indices, labels or metadata hold."""
    c, k = np.shape(indices)
    coeffs = np.ones((c, 2, k, image_shape[-1]), np.float32) if coeffs is None else coeffs
    syn = synset.SynSet(coeffs=coeffs, indices=np.asarray(indices), transform="dct",
                        image_shape=image_shape)
    synset.save(path, syn, mean=[0.5], std=[0.25], dataset="mnist")
    if labels is not None or meta is not None:  # rewrite these arrays, keep the rest
        with np.load(path) as z:
            arrays = {name: z[name] for name in z.files}
        if labels is not None:
            arrays["labels"] = np.asarray(labels, np.int16)
        if meta is not None:
            arrays["meta"] = np.array(meta)
        np.savez(path, **arrays)
    return str(path)


@pytest.fixture
def no_bombs(monkeypatch):
    """Fail as soon as more than 16 MiB are decompressed from any zip member (``_read1`` is
    the step every read of a member goes through, one bounded chunk at a time)."""
    real, spent = zipfile.ZipExtFile._read1, [0]

    def read1(self, n):
        data = real(self, n)
        spent[0] += len(data)
        if spent[0] > 16 * MIB:
            raise AssertionError(f"decompressed {spent[0]:,} bytes of a declared bomb")
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "_read1", read1)
    return spent


# ----------------------------------------------------------------------------- torch files


def test_valid_strided_and_shared_tensors_read_exactly(tmp_path):
    """The bounds checks let every tensor that stays inside its storage through."""
    storage = np.arange(60, dtype="<f4")
    pkl = _tuple([_tensor("0", 60, 5, (2, 3, 4), (20, 1, 3)),
                  _tensor("0", 60, 0, (3, 2), (0, 1))])  # a second view of storage 0
    view, expanded = setfiles.read_torch(_torch_file(tmp_path / "v.pt", pkl,
                                                     {"0": storage.tobytes()}))
    want = storage[5 + 20 * np.arange(2)[:, None, None] + np.arange(3)[None, :, None]
                   + 3 * np.arange(4)[None, None, :]]
    np.testing.assert_array_equal(view, want)
    np.testing.assert_array_equal(expanded, np.tile(storage[:2], (3, 1)))


def _read_in_child(path, timeout=60):
    """``setfiles.read(path)`` in a child process (a crash or a hang must not take pytest)."""
    code = ("import sys\nfrom fred_jax import setfiles\ntry:\n    setfiles.read(sys.argv[1])\n"
            "    print('accepted')\nexcept Exception as e:\n"
            "    print(type(e).__name__ + ': ' + str(e))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, path], cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {path} hung for {timeout} s")
    assert proc.returncode == 0, f"the reader crashed (exit {proc.returncode}): {proc.stderr}"
    return proc.stdout.strip()


def _labels(folder, name="labels_x.pt"):
    return _torch_file(folder / name, _tensor("0", 2, 0, (2,), (1,), "LongStorage"),
                       {"0": np.array([0, 1], "<i8").tobytes()})


TORCH_CASES = {
    # images [2, 3, 4, 4] over 96 floats, one stride pointing far outside
    "large_stride": (dict(numel=96, offset=0, size=(2, 3, 4, 4), stride=(48, 16, 4, 10**9)),
                     "reads element 3,000,000,092 of a storage of 96 (out of bounds)"),
    "offset_past_end": (dict(numel=96, offset=10**6, size=(2, 3, 4, 4), stride=(48, 16, 4, 1)),
                        "reads element 1,000,095 of a storage of 96 (out of bounds)"),
    "storage_lies": (dict(numel=10**6, offset=0, size=(2, 3, 4, 4), stride=(48, 16, 4, 1),
                          stored=96), "declares 1,000,000 elements of 4 bytes but its member "
                                      "384 bytes"),
    "negative_stride": (dict(numel=96, offset=95, size=(2, 3, 4, 4), stride=(-48, 16, 4, 1)),
                        "a tensor with an impossible layout"),
    # one element expanded (stride 0) to 10^12: in bounds, but a 4 TB copy
    "expanded": (dict(numel=1, offset=0, size=(10**6, 10**6), stride=(0, 0)),
                 "a tensor of shape (1000000, 1000000) would take 4,000,000,000,000 bytes, over "
                 "the budget of 2,147,483,644; if the file is genuine, raise $FRED_MAX_SET_BYTES"),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_out_of_bounds_tensors_are_refused(tmp_path, case):
    layout, message = TORCH_CASES[case]
    path = _torch_tensor_file(tmp_path / "images_x.pt", **layout)
    _labels(tmp_path)
    out = _read_in_child(path)
    assert out.split(": ", 1)[1].startswith(f"{path}: ") and message in out, out
    assert "budget" in message or out.endswith("re-save it with torch.save (tensors, lists, "
                                               "tuples and dicts only)")


def _dag_file(path, depth=60):
    """An official ``res_*.pt``-shaped dict whose data is a DAG: ``depth`` levels of
    ``[a, a]``, a few hundred bytes that a naive walk visits ``2**depth`` times."""
    node = []
    for _ in range(depth):
        node = [node, node]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"data": node}, protocol=2))
    return str(path)


def _deep_file(path, depth=100_000):
    """``{'data': [[[...]]]}`` nested ``depth`` levels (EMPTY_LIST x depth, APPEND x depth-1)."""
    pkl = b"\x80\x02}" + _str("data") + b"]" * depth + b"a" * (depth - 1) + b"s."
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
    return str(path)


def test_shared_reference_dag_and_deep_nesting_end_at_once(tmp_path):
    dag = _dag_file(tmp_path / "res_dag.pt")
    assert os.path.getsize(dag) < 2000
    out = _read_in_child(dag, timeout=30)
    assert out == (f"ValueError: {dag}: expected an image tensor or an official res_*.pt "
                   f"dictionary, got dict"), out
    deep = _deep_file(tmp_path / "res_deep.pt")
    out = _read_in_child(deep, timeout=30)
    assert out == (f"TorchFileError: {deep}: nested deeper than 64 levels; "
                   f"re-save it with torch.save (tensors, lists, tuples and dicts only)"), out


def test_torch_zip_bomb_is_refused_before_decompressing(tmp_path, no_bombs):
    numel = 3 * 2**30 // 4  # 3 GiB of float32 zeros in about 3 MB
    pkl = b"\x80\x02" + _tensor("0", numel, 0, (numel,), (1,)) + b"."
    path = _raw_zip(tmp_path / "images_bomb.pt", [
        ("archive/data.pkl", pkl, len(pkl), False),
        ("archive/data/0", _deflated_zeros(b"", numel * 4), numel * 4, True)])
    assert os.path.getsize(path) < 4 * MIB
    with pytest.raises(ValueError) as e:
        setfiles.read_torch(path)
    assert str(e.value) == (f"{path}: storage '0' would take 3,221,225,472 bytes, over the "
                            f"budget of 2,147,483,648; if the file is genuine, raise "
                            f"$FRED_MAX_SET_BYTES")
    assert no_bombs[0] < MIB


# ----------------------------------------------------------------------------- .npz / .npy


def test_npz_zip_bomb_is_refused_before_decompressing(tmp_path, no_bombs):
    header = _npy_header("<f4", (3, 2**28))  # 3 GiB of zeros in about 3 MB
    total = len(header) + 3 * 2**30
    labels = _npy_header("<i8", (3,)) + bytes(24)
    path = _raw_zip(tmp_path / "bomb.npz", [
        ("x.npy", _deflated_zeros(header, total), total, True),
        ("y.npy", labels, len(labels), False)])
    with pytest.raises(ValueError) as e:
        setfiles.read(path)
    assert str(e.value).startswith(f"{path}: 2 arrays (declared sizes) would take ")
    assert str(e.value).endswith("if the file is genuine, raise $FRED_MAX_SET_BYTES")
    forged = _raw_zip(tmp_path / "forged.npz", [  # header: 12 bytes; archive: 1 GiB
        ("x.npy", _deflated_zeros(_npy_header("<f4", (3,)), 2**30), 2**30, True),
        ("y.npy", labels, len(labels), False)])
    with pytest.raises(ValueError, match=r"forged.npz: array 'x': the header declares shape "
                                         r"\(3,\) of float32 \(12 bytes\) but the archive "
                                         r"declares 1,073,741,\d+ \(forged or damaged\)"):
        setfiles.read(forged)
    assert no_bombs[0] < MIB


def test_export_zip_bomb_is_refused_by_its_decoded_size(tmp_path, no_bombs):
    """A 3 MB export whose coefficients declare 2 GiB: what decoding them would take is known
    from the headers and the metadata, before any coefficient is decompressed."""
    c, n, k = 10, 2**17, 128
    good = _export(tmp_path / "seed.npz", np.tile(np.arange(k), (c, 1)), image_shape=(32, 32, 3))
    with np.load(good) as z:
        meta, indices = z["meta"], z["indices"]
    members = []
    for name, arr_header, nbytes in [("coeffs", _npy_header("<f4", (c, n, k, 3)), c * n * k * 12),
                                     ("labels", _npy_header("<i2", (c * n,)), c * n * 2)]:
        total = len(arr_header) + nbytes
        members.append((f"{name}.npy", _deflated_zeros(arr_header, total), total, True))
    for name, arr in [("indices", indices), ("meta", meta)]:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr)
        members.append((f"{name}.npy", buf.getvalue(), len(buf.getvalue()), False))
    path = _raw_zip(tmp_path / "synset_bomb.npz", members)
    assert os.path.getsize(path) < 4 * MIB
    with pytest.raises(ValueError) as e:
        setfiles.read(path)
    assert str(e.value) == (
        f"{path}: decoding 10 x 131072 images of shape (32, 32, 3) would take 16,106,127,360 "
        f"bytes, over the budget of 2,147,483,648; if the file is genuine, raise "
        f"$FRED_MAX_SET_BYTES")
    assert no_bombs[0] < MIB


def test_npz_and_npy_refusals_name_the_file(tmp_path):
    np.savez(tmp_path / "objects.npz", images=np.array([{"a": 1}, None], dtype=object),
             labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"objects.npz: array 'images': holds pickled "
                                         r"\(object\) data, which is never loaded; save plain"):
        setfiles.read(str(tmp_path / "objects.npz"))
    np.save(tmp_path / "images_obj.npy", np.array([None, 1], dtype=object))
    np.save(tmp_path / "labels_obj.npy", np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"images_obj.npy: holds pickled \(object\) data"):
        setfiles.read(str(tmp_path / "images_obj.npy"))
    header = _npy_header("<f4", (1000, 28, 28, 1))  # 3 MB declared, 16 bytes held
    (tmp_path / "images_short.npy").write_bytes(header + bytes(16))
    np.save(tmp_path / "labels_short.npy", np.zeros(1000, np.int64))
    with pytest.raises(ValueError, match=r"images_short.npy: the header declares shape "
                                         r"\(1000, 28, 28, 1\) of float32 \(3,136,000 bytes\) "
                                         r"but the file holds 16 bytes after it"):
        setfiles.read(str(tmp_path / "images_short.npy"))
    np.save(tmp_path / "array.npy", np.ones(3))
    os.replace(tmp_path / "array.npy", tmp_path / "array.npz")
    with pytest.raises(ValueError, match=r"array.npz: not an .npz archive \(it holds a .npy "
                                         r"array; rename it to .npy\)"):
        setfiles.read(str(tmp_path / "array.npz"))
    np.savez(tmp_path / "whole.npz", x=np.ones((4, 4, 4, 1), np.float32), y=np.arange(4))
    data = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "torn.npz").write_bytes(data[: len(data) - 30])
    with pytest.raises(ValueError, match=r"torn.npz: not an .npz archive \(a damaged or "
                                         r"truncated zip; write it again\)"):
        setfiles.read(str(tmp_path / "torn.npz"))
    flipped = bytearray(data)
    at = data.index(b"\x00\x00\x80\x3f")  # the first 1.0 of x
    flipped[at + 3] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"flipped.npz: array 'x' is damaged \(Bad CRC-32 for "
                                         r"file 'x.npy'\)"):
        setfiles.read(str(tmp_path / "flipped.npz"))


# ----------------------------------------------------------------------------- exports


def test_export_with_out_of_range_indices_is_refused_by_evaluate_and_visualize(tmp_path,
                                                                                capsys):
    path = _export(tmp_path / "oor.npz", np.array([[0, 1, 2, 70], [3, 4, 5, 6]]))
    message = (f"{path}: kept positions (indices) must lie in [0, 64), got [0, 70]; use an "
               f"export written by fred_jax, or write it again (rerunning the run's command "
               f"rewrites synset_last.npz)")
    with pytest.raises(ValueError) as e:
        setfiles.read(path)
    assert str(e.value) == message
    with pytest.raises(SystemExit) as exit_:
        cli.visualize_command(["--synset", path, "--out", str(tmp_path / "png")])
    assert exit_.value.code == 1 and capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "png").exists() or not os.listdir(tmp_path / "png")


@pytest.mark.parametrize("case, message", [
    ("repeated", "a class keeps the same position (indices) twice"),
    ("negative", "kept positions (indices) must lie in [0, 64), got [-1, 6]"),
    ("labels", "labels must be the class-major [0] * 2 + ... + [1] * 2 of its coefficients"),
    ("channels", "coeffs (2, 2, 4, 3) do not fit image_shape (8, 8, 1)"),
    ("deep_meta", "its metadata is not JSON"),  # nested past the JSON decoder's recursion limit
])
def test_inconsistent_exports_are_refused(tmp_path, case, message):
    indices = {"repeated": [[0, 1, 1, 2], [3, 4, 5, 6]],
               "negative": [[0, 1, 2, -1], [3, 4, 5, 6]]}.get(case, [[0, 1, 2, 3], [3, 4, 5, 6]])
    path = _export(tmp_path / "x.npz", np.array(indices),
                   labels=[1, 0, 0, 1] if case == "labels" else None,
                   coeffs=np.ones((2, 2, 4, 3), np.float32) if case == "channels" else None,
                   meta=("[" * 10**5 + "]" * 10**5) if case == "deep_meta" else None)
    with pytest.raises(ValueError) as e:
        synset.load(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


# ----------------------------------------------------------------------------- the commands


def test_evaluate_refuses_hostile_files_in_one_line(tmp_path):
    """``python -m fred_jax.evaluate --synset <hostile>`` (one file of each kind): exit 1, one
    ``error:`` line naming the file, within the timeout (the old reader crashed, hung, trained
    on garbage or printed a message without the file)."""
    _labels(tmp_path)
    layout, message = TORCH_CASES["large_stride"]
    cases = {_torch_tensor_file(tmp_path / "images_x.pt", **layout): message,
             _dag_file(tmp_path / "res_dag.pt"): "expected an image tensor"}
    np.savez(tmp_path / "objects.npz", x=np.array([None], dtype=object), y=np.array([0]))
    cases[str(tmp_path / "objects.npz")] = "holds pickled (object) data"
    (tmp_path / "images_s.npy").write_bytes(_npy_header("<f4", (9, 8, 8, 1)) + bytes(8))
    np.save(tmp_path / "labels_s.npy", np.zeros(9, np.int64))
    cases[str(tmp_path / "images_s.npy")] = "the header declares shape (9, 8, 8, 1)"
    cases[_export(tmp_path / "oor.npz", np.array([[0, 1, 2, 70], [3, 4, 5, 6]]))] = (
        "kept positions (indices) must lie in [0, 64)")
    procs = {path: subprocess.Popen([sys.executable, "-m", "fred_jax.evaluate", "--synset", path,
                                     "--models", "MLP", "--num_eval", "1", "--epochs", "1",
                                     "--noprogress"], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for path in cases}
    failures = []
    for path, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            failures.append(f"{path}: hung")
            continue
        last = err.strip().splitlines()[-1] if err.strip() else ""
        if (proc.returncode != 1 or "Traceback" in err or not last.startswith(f"error: {path}: ")
                or cases[path] not in last):
            failures.append(f"{path}: exit {proc.returncode}, {err.strip()[-300:]!r}")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- writing

_WRITER = """
import os, resource, sys
import numpy as np
from fred_jax import outputs, synset
folder, limit = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # as `ulimit -f` does
syn = synset.SynSet(coeffs=np.ones((3, 200, 16, 1), np.float32),
                    indices=np.tile(np.arange(16), (3, 1)), transform="dct", image_shape=(8, 8, 1))
for what, write in [
        ("export", lambda: synset.save(os.path.join(folder, "synset_last.npz"), syn,
                                       mean=[0.0], std=[1.0], dataset="toy")),
        ("results", lambda: outputs.write_results(folder, {"history": ["x" * 100] * 100}))]:
    try:
        write()
        print(what, "written")
    except OSError as e:
        print(what, "error:", e)
"""


def test_writes_under_a_file_size_limit_leave_nothing_half_written(tmp_path):
    """``ulimit -f`` during export: the previous files stay whole, no temporary file remains,
    and the message names the path."""
    small = synset.SynSet(coeffs=np.ones((3, 1, 16, 1), np.float32),
                          indices=np.tile(np.arange(16), (3, 1)), transform="dct",
                          image_shape=(8, 8, 1))
    synset.save(tmp_path / "synset_last.npz", small, mean=[0.0], std=[1.0], dataset="toy")
    (tmp_path / "results.json").write_text('{"history": []}')
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path), "8192"], cwd=ROOT,
                          text=True, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    for what, name in [("export", "synset_last.npz"), ("results", "results.json")]:
        path = tmp_path / name
        assert f"{what} error: [Errno 27] {path}: could not write it (File too large); the " \
               f"file is as it was before: free disk space" in proc.stdout, lines
    assert sorted(os.listdir(tmp_path)) == sorted(before)  # no temporary file left
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_a_torn_results_json_is_named_and_set_aside(tmp_path, caplog):
    (tmp_path / "results.json").write_text('{"iterations": 5, "history": [{"st')
    assert outputs.evaluated_before(str(tmp_path), 5, ["ConvNet"]) is None
    assert not (tmp_path / "results.json").exists()
    assert (tmp_path / "results.json.damaged").read_text().endswith('"st')
    assert f"{tmp_path}/results.json is damaged" in caplog.text
    assert f"moved it to {tmp_path}/results.json.damaged" in caplog.text
    outputs.write_results(str(tmp_path), {"iterations": 5})
    assert json.loads((tmp_path / "results.json").read_text()) == {"iterations": 5}


def test_budget_can_be_raised_for_genuine_files(tmp_path, monkeypatch):
    np.savez(tmp_path / "set.npz", x=np.ones((4, 8, 8, 1), np.float32), y=np.arange(4))
    monkeypatch.setenv("FRED_MAX_SET_BYTES", "100")
    with pytest.raises(ValueError, match=r"set.npz: 2 arrays .* over the budget of 100"):
        setfiles.read(str(tmp_path / "set.npz"))
    monkeypatch.setenv("FRED_MAX_SET_BYTES", "2000")
    assert setfiles.read(str(tmp_path / "set.npz")).x.shape == (4, 8, 8, 1)


@pytest.mark.skipif(not os.environ.get("FRED_DATA_DIR"), reason="needs FRED_DATA_DIR (MNIST)")
def test_labels_outside_the_datasets_classes_are_named_before_training(tmp_path):
    from types import SimpleNamespace

    import jax

    np.savez(tmp_path / "set.npz", images=np.zeros((3, 28, 28, 1), np.float32),
             labels=np.array([0, 4, 12]))
    flags = SimpleNamespace(synset=str(tmp_path / "set.npz"), labels=None, layout="auto",
                            index=0, dataset="mnist", data_dir=None, zca=False,
                            norm_stats="dataset", budget_ipc=None)
    with pytest.raises(ValueError) as e:
        cli._load_set(flags, jax.random.key(0))
    assert str(e.value) == (f"{tmp_path}/set.npz: labels in [0, 12], mnist has classes 0 to 9; "
                            f"pass the --dataset the set was made for")
