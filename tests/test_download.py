"""Original files: downloads from a loopback mirror (good, wrong checksum, dropped connection,
missing file, unreachable), the readers of the original formats, and normalisation options.

No internet: small files in the original formats are built here, served by an HTTP server on
127.0.0.1 (random port, stopped after each test), and the checksum table is patched to them.
"""

import gzip
import hashlib
import http.server
import io
import lzma
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fred_jax import data, datasets, downloads

# ----------------------------------------------------------------------------- original formats


def _idx(array: np.ndarray) -> bytes:
    """A gzip-compressed uint8 idx file (MNIST format)."""
    header = (0x0800 + array.ndim).to_bytes(4, "big")
    header += b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def mnist_files(seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """The 4 idx files of a 20/10-image MNIST stand-in, and the arrays they hold."""
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (20, 28, 28), np.uint8), np.arange(20) % 10),
              "test": (rng.integers(0, 256, (10, 28, 28), np.uint8), np.arange(10) % 10)}
    files = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        files[f"{prefix}-images-idx3-ubyte.gz"] = _idx(arrays[split][0])
        files[f"{prefix}-labels-idx1-ubyte.gz"] = _idx(arrays[split][1])
    return files, arrays


def _pickle(obj: dict) -> bytes:
    """A pickle like the CIFAR python batches (protocol 2, bytes keys, numpy 1.x paths)."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray",
                                                 b"numpy.core.multiarray")


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def cifar10_tarball(x_train, y_train, names_train, x_test, y_test, names_test) -> bytes:
    """`cifar-10-python.tar.gz` holding the given images (NHWC uint8) in 5 train batches."""
    def batch(x, y, names):
        return _pickle({b"batch_label": b"batch", b"labels": [int(v) for v in y],
                        b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1),
                        b"filenames": [n.encode() for n in names]})

    members = {"cifar-10-batches-py/batches.meta": _pickle(
        {b"label_names": [n.encode() for n in datasets.SPECS["cifar10"].class_names]})}
    for i, part in enumerate(np.array_split(np.arange(len(x_train)), 5)):
        members[f"cifar-10-batches-py/data_batch_{i + 1}"] = batch(
            x_train[part], y_train[part], [names_train[j] for j in part])
    members["cifar-10-batches-py/test_batch"] = batch(x_test, y_test, names_test)
    return _tar_gz(members)


def cifar100_tarball(x_train, y_train, x_test, y_test) -> bytes:
    """`cifar-100-python.tar.gz` with fine (and made-up coarse) labels."""
    def split(x, y):
        return _pickle({b"fine_labels": [int(v) for v in y], b"coarse_labels": [0] * len(y),
                        b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1),
                        b"filenames": [f"{i}.png".encode() for i in range(len(y))]})

    return _tar_gz({
        "cifar-100-python/meta": _pickle(
            {b"fine_label_names": [n.encode() for n in datasets.SPECS["cifar100"].class_names]}),
        "cifar-100-python/train": split(x_train, y_train),
        "cifar-100-python/test": split(x_test, y_test)})


def svhn_mat(x: np.ndarray, y_digits: np.ndarray) -> bytes:
    """A `*_32x32.mat` file: X [32, 32, 3, N], y [N, 1] with the digit 0 stored as 10."""
    from scipy import io as sio

    buf = io.BytesIO()
    sio.savemat(buf, {"X": x.transpose(1, 2, 3, 0),
                      "y": np.where(y_digits == 0, 10, y_digits).astype(np.uint8)[:, None]})
    return buf.getvalue()


def register(monkeypatch, name: str, files: dict[str, bytes]) -> None:
    """Points the checksum table of `name` at these files (the canonical URLs are not used)."""
    for f, b in files.items():
        monkeypatch.setitem(datasets.SPECS[name].files, f, datasets.File(
            f"https://example.invalid/{f}", len(b), hashlib.sha256(b).hexdigest()))


# ----------------------------------------------------------------------------- loopback mirror


class Mirror:
    """Serves `files[path]` on 127.0.0.1; `mode[path]`: "drop" sends half and closes,
    "corrupt" sends flipped bytes, "corrupt_once" does so on the first GET only, "stall" sends
    half and then nothing (until `release` is set, at most 10 s), "500" answers HTTP 500,
    "endless" sends the file and then zeros (8 MB, no Content-Length)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.gets: dict[str, int] = {}
        self.release = threading.Event()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._respond(body=False)

            def do_GET(self):
                mirror.gets[self.path] = mirror.gets.get(self.path, 0) + 1
                self._respond(body=True)

            def _respond(self, body):
                payload = mirror.files.get(self.path)
                if payload is None:
                    self.send_error(404)
                    return
                mode = mirror.mode.get(self.path, "")
                if mode == "corrupt" or (mode == "corrupt_once" and mirror.gets.get(self.path) == 1):
                    payload = bytes(b ^ 0xFF for b in payload[:64]) + payload[64:]
                if mode == "500":
                    self.send_error(500)
                    return
                self.send_response(200)
                if mode != "endless":
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body and mode in ("stall", "endless"):
                    self._slow(payload, mode)
                elif body:
                    self.wfile.write(payload[:len(payload) // 2] if mode == "drop" else payload)
                    self.close_connection = True

            def _slow(self, payload, mode):
                try:
                    if mode == "stall":
                        self.wfile.write(payload[:len(payload) // 2])
                        self.wfile.flush()
                        mirror.release.wait(10)
                    else:
                        self.wfile.write(payload)
                        for _ in range(128):
                            self.wfile.write(bytes(1 << 16))
                except OSError:  # the client gave up
                    pass
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, name: str, files: dict[str, bytes]) -> None:
        self.files.update({f"/{name}/{f}": b for f, b in files.items()})


FAST = downloads.Policy(connect_timeout=2.0, read_timeout=1.0, attempts=2, backoff=0.05,
                        give_up_after=5.0, stall_after=0.3)
"""Download limits of these tests: two tries, a short wait, seconds-long timeouts."""


@pytest.fixture
def mirror(monkeypatch):
    monkeypatch.delenv("FRED_DATA_DIR", raising=False)  # downloads happen without a data dir
    monkeypatch.setattr(downloads, "POLICY", FAST)
    server = Mirror()
    server.thread.start()
    monkeypatch.setenv("FRED_DATA_MIRROR", server.url)
    yield server
    server.release.set()
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=5)


def serve_mnist(mirror, monkeypatch) -> tuple[dict[str, bytes], dict]:
    """Small MNIST originals, registered as `mnist`'s files and served by `mirror`."""
    files, arrays = mnist_files()
    register(monkeypatch, "mnist", files)
    mirror.add("mnist", files)
    return files, arrays


def leftovers(tfds_dir: Path) -> list[str]:
    """Everything a failed build left in the tfds dir: downloads and dataset folders."""
    return sorted(str(p.relative_to(tfds_dir)) for p in tfds_dir.rglob("*")
                  if p.is_file() or ".tmp." in p.name or "incomplete" in p.name)


# ----------------------------------------------------------------------------- downloads


def test_good_download_builds_and_caches(mirror, monkeypatch, tmp_path):
    files, arrays = serve_mnist(mirror, monkeypatch)
    ds = data.load("mnist", tfds_dir=tmp_path)
    np.testing.assert_array_equal(ds.y_train, arrays["train"][1])
    pixels = np.asarray(data.denormalise(ds.x_test, ds.mean, ds.std)) * 255
    np.testing.assert_allclose(pixels[..., 0], arrays["test"][0], atol=1e-3)
    assert set(mirror.gets) == {f"/mnist/{f}" for f in files}
    assert all(n == 1 for n in mirror.gets.values())
    cached = sorted(p.name for p in (tmp_path / "downloads" / "fred_local").iterdir())
    assert len(cached) == 4 and not [n for n in cached if ".tmp." in n]
    data.load("mnist", tfds_dir=tmp_path)  # prepared: no request
    assert all(n == 1 for n in mirror.gets.values())


def test_wrong_checksum_is_removed_retried_once_and_reported(mirror, monkeypatch, tmp_path):
    files, _ = serve_mnist(mirror, monkeypatch)
    bad = "/mnist/t10k-labels-idx1-ubyte.gz"
    mirror.mode[bad] = "corrupt"
    with pytest.raises(data.DownloadError) as err:
        data.load("mnist", tfds_dir=tmp_path)
    message = str(err.value)
    assert f"could not download {mirror.url}{bad} (checksum mismatch" in message
    assert "gave up after 2 attempts" in message and "'t10k-labels-idx1-ubyte.gz'" in message
    assert hashlib.sha256(files["t10k-labels-idx1-ubyte.gz"]).hexdigest() in message
    assert "FRED_DATA_DIR" in message and "<folder>/mnist/" in message
    assert mirror.gets[bad] == 2
    assert not [p for p in leftovers(tmp_path) if "t10k-labels" in p or ".tmp." in p
                or "incomplete" in p]
    assert not (tmp_path / "fred_local" / "mnist" / "1.0.0").exists()


def test_corrupt_first_download_is_retried_and_succeeds(mirror, monkeypatch, tmp_path):
    _, arrays = serve_mnist(mirror, monkeypatch)
    mirror.mode["/mnist/train-images-idx3-ubyte.gz"] = "corrupt_once"
    ds = data.load("mnist", tfds_dir=tmp_path)
    assert mirror.gets["/mnist/train-images-idx3-ubyte.gz"] == 2
    pixels = np.asarray(data.denormalise(ds.x_train, ds.mean, ds.std)) * 255
    np.testing.assert_allclose(pixels[..., 0], arrays["train"][0], atol=1e-3)
    assert not [p for p in leftovers(tmp_path) if ".tmp." in p]


def test_dropped_connection_leaves_nothing(mirror, monkeypatch, tmp_path):
    serve_mnist(mirror, monkeypatch)
    path = "/mnist/train-images-idx3-ubyte.gz"
    mirror.mode[path] = "drop"
    with pytest.raises(data.DownloadError,
                       match=r"connection dropped .*IncompleteRead.*gave up after 2 attempts"):
        data.load("mnist", tfds_dir=tmp_path)
    assert mirror.gets[path] == 2
    assert not [p for p in leftovers(tmp_path) if "train-images" in p or ".tmp." in p
                or "incomplete" in p]


def test_missing_file_names_url_file_checksum_and_manual_place(mirror, monkeypatch, tmp_path):
    files, _ = mnist_files()
    register(monkeypatch, "mnist", files)
    del files["train-labels-idx1-ubyte.gz"]
    mirror.add("mnist", files)
    with pytest.raises(data.DownloadError) as err:
        data.load("mnist", tfds_dir=tmp_path)
    message = str(err.value)
    url = f"{mirror.url}/mnist/train-labels-idx1-ubyte.gz"
    assert message.startswith(f"mnist: could not download {url} (")
    assert "HTTP 404 Not Found; not retried" in message and "FRED_DATA_MIRROR" in message
    assert mirror.gets["/mnist/train-labels-idx1-ubyte.gz"] == 1  # no retry of a 404
    assert not [p for p in leftovers(tmp_path) if ".tmp." in p or "incomplete" in p]


def test_unreachable_mirror_fails_fast(monkeypatch, tmp_path):
    import socket

    monkeypatch.delenv("FRED_DATA_DIR", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(data.DownloadError, match=r"127.0.0.1:%d/mnist/.* \(unreachable: " % port):
        data.load("mnist", tfds_dir=tmp_path, mirror=f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 10


def test_md5_only_file_is_checked_after_download(mirror, monkeypatch, tmp_path):
    payload = b"not the tiny-imagenet zip"
    monkeypatch.setitem(datasets.SPECS["tiny_imagenet"].files, "tiny-imagenet-200.zip",
                        datasets.File("https://example.invalid/tiny.zip", len(payload), None,
                                      md5="0" * 32))
    mirror.add("tiny_imagenet", {"tiny-imagenet-200.zip": payload})
    with pytest.raises(data.DownloadError,
                       match=r"md5 [0-9a-f]{32}, expected 0{32}; gave up after 2 attempts"):
        data.load("tiny_imagenet", tfds_dir=tmp_path)
    assert mirror.gets["/tiny_imagenet/tiny-imagenet-200.zip"] == 2
    assert not [p for p in leftovers(tmp_path) if "tiny" in p and "downloads" in p]


def local_mnist(monkeypatch, tmp_path, seed: int) -> dict:
    """Small MNIST originals in `tmp_path/src/mnist`, registered and set as FRED_DATA_DIR;
    returns their arrays."""
    files, arrays = mnist_files(seed=seed)
    register(monkeypatch, "mnist", files)
    (tmp_path / "src" / "mnist").mkdir(parents=True)
    for f, b in files.items():
        (tmp_path / "src" / "mnist" / f).write_bytes(b)
    monkeypatch.setenv("FRED_DATA_DIR", str(tmp_path / "src"))
    return arrays


def test_local_originals_win_without_network(monkeypatch, tmp_path):
    arrays = local_mnist(monkeypatch, tmp_path, seed=1)
    ds = data.load("mnist", tfds_dir=tmp_path / "tfds", mirror="http://127.0.0.1:9")
    np.testing.assert_array_equal(ds.y_test, arrays["test"][1])
    assert not (tmp_path / "tfds" / "downloads" / "fred_local").exists()


def test_checksums_are_the_ones_tfds_ships():
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import checksums

    shipped = {**checksums.get_all_url_infos(), **checksums.load_url_infos(
        tfds.core.utils.tfds_path() / "datasets" / "svhn_cropped" / "checksums.tsv")}
    for name in ("mnist", "fashion_mnist", "svhn"):
        for f in datasets.SPECS[name].files.values():
            assert (int(shipped[f.url].size), shipped[f.url].checksum) == (f.size, f.sha256)


# ----------------------------------------------------------------------------- formats


def _cifar_like(rng, n, num_classes):
    x = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
    y = np.arange(n) % num_classes
    rng.shuffle(y)
    names = [f"img_{rng.integers(10**6):06d}_{i}.png" for i in range(n)]
    return x, y, names


def test_cifar10_tarball_and_reencoded_layout_give_identical_arrays(monkeypatch, tmp_path):
    """The tarball (batch order) is sorted by (label, file name) like the npy.xz re-encoding."""
    rng = np.random.default_rng(0)
    train, test = _cifar_like(rng, 30, 10), _cifar_like(rng, 20, 10)
    tarball = {"cifar-10-python.tar.gz": cifar10_tarball(*train, *test)}
    reencoded = {}
    for split, (x, y, names) in (("train", train), ("test", test)):
        order = sorted(range(len(y)), key=lambda i: (y[i], names[i]))
        reencoded[f"x_{split}.npy.xz"] = lzma.compress(_npy(x[order]))
        reencoded[f"y_{split}"], reencoded[f"filenames_{split}"] = y[order], np.array(names)[order]
    labels = io.BytesIO()
    np.savez(labels, **{k: reencoded.pop(k) for k in list(reencoded) if not k.endswith(".xz")})
    reencoded["cifar10_labels.npz"] = labels.getvalue()
    register(monkeypatch, "cifar10", {**tarball, **reencoded})
    loaded = []
    for i, files in enumerate((tarball, reencoded)):
        (tmp_path / f"src{i}" / "cifar10").mkdir(parents=True)
        for f, b in files.items():
            (tmp_path / f"src{i}" / "cifar10" / f).write_bytes(b)
        loaded.append(data.load("cifar10", data_dir=tmp_path / f"src{i}",
                                tfds_dir=tmp_path / f"tfds{i}"))
    a, b = loaded
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.y_train.tolist() == sorted(train[1].tolist())
    first = sorted(range(30), key=lambda i: (train[1][i], train[2][i]))[0]
    pixels = np.asarray(data.denormalise(a.x_train[:1], a.mean, a.std))[0] * 255
    np.testing.assert_allclose(pixels, train[0][first], atol=1e-3)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_svhn_and_cifar100_download_and_norm_stats(mirror, monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    x_tr, x_te = (rng.integers(0, 256, (n, 32, 32, 3), np.uint8) for n in (12, 6))
    y_tr, y_te = np.arange(12) % 10, np.arange(6)[::-1] % 10
    svhn = {"train_32x32.mat": svhn_mat(x_tr, y_tr), "test_32x32.mat": svhn_mat(x_te, y_te)}
    register(monkeypatch, "svhn", svhn)
    mirror.add("svhn", svhn)
    ds = data.load("svhn", tfds_dir=tmp_path)
    np.testing.assert_array_equal(ds.y_train, y_tr)  # 10 -> digit 0
    np.testing.assert_array_equal(ds.y_test, y_te)
    pixels = np.asarray(data.denormalise(ds.x_train, ds.mean, ds.std)) * 255
    np.testing.assert_allclose(pixels, x_tr, atol=1e-3)

    y100 = rng.integers(0, 100, 12)
    c100 = {"cifar-100-python.tar.gz": cifar100_tarball(x_tr, y100, x_te, y100[:6])}
    register(monkeypatch, "cifar100", c100)
    mirror.add("cifar100", c100)
    own = data.load("cifar100", tfds_dir=tmp_path)
    official_tm = data.load("cifar100", tfds_dir=tmp_path, norm_stats="cifar10")
    np.testing.assert_array_equal(own.y_train, y100)  # file order, fine labels
    np.testing.assert_allclose(official_tm.mean, datasets.SPECS["cifar10"].mean, rtol=1e-6)
    np.testing.assert_allclose(official_tm.std, datasets.SPECS["cifar10"].std, rtol=1e-6)
    expected = (x_tr / 255.0 - np.array([0.4914, 0.4822, 0.4465])) / np.array(
        [0.2023, 0.1994, 0.2010])
    np.testing.assert_allclose(official_tm.x_train, expected, atol=1e-4)
    np.testing.assert_allclose(own.x_train * own.std + own.mean,
                               official_tm.x_train * official_tm.std + official_tm.mean,
                               atol=1e-5)
    assert mirror.gets["/cifar100/cifar-100-python.tar.gz"] == 1
    with pytest.raises(ValueError, match="norm_stats must be one of"):
        data.load("cifar100", tfds_dir=tmp_path, norm_stats="cifar100")
    with pytest.raises(ValueError, match="has 3 channels, mnist has 1"):
        data.load("mnist", tfds_dir=tmp_path, norm_stats="cifar10")


def test_damaged_prepared_copy_names_the_folder_to_delete(monkeypatch, tmp_path):
    local_mnist(monkeypatch, tmp_path, seed=2)
    assert not data.is_prepared("mnist", tmp_path / "tfds")
    data.load("mnist", tfds_dir=tmp_path / "tfds")
    assert data.is_prepared("mnist", tmp_path / "tfds")
    records = sorted((tmp_path / "tfds").rglob("*array_record*"))
    assert records
    for r in records:  # truncate every record file: the reader's checks fail
        r.write_bytes(r.read_bytes()[: r.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"mnist: the prepared copy in .*tfds.* is damaged .*"
                                         r"delete that folder to rebuild it"):
        data.load("mnist", tfds_dir=tmp_path / "tfds")
