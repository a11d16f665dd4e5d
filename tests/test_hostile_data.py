"""Hostile original files and mirrors (issue 23): nothing foreign runs, nothing is trusted
unchecked, no download hangs or leaves a partial file behind, every failure is one clear line.

Every hostile input is built here: CIFAR tarballs whose pickles would create a marker file, an
idx file whose header lies about its size, and a loopback mirror (`test_download.Mirror`) that
stalls mid-body, answers HTTP 500, or sends more bytes than declared. Download limits are the
short `test_download.FAST` ones, so each test takes seconds.
"""

import gzip
import hashlib
import io
import os
import pickle
import re
import signal
import socket
import threading
import time
import tracemalloc

import numpy as np
import pytest
from test_download import (FAST, _pickle, _tar_gz, leftovers, mirror, mnist_files,  # noqa: F401
                           register, serve_mnist)

from fred_jax import cifar_pickle, data, datasets, downloads, mnist3d, sources

# ----------------------------------------------------------------------------- crafted pickles


class _Touch:
    """Unpickles as `open(marker, "w")`: code that runs when the pickle is loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _hostile_cifar10(marker, payload=None) -> bytes:
    """A `cifar-10-python.tar.gz` whose first batch runs `open(marker, "w")` when unpickled
    (or holds `payload`, a pickle), the other members as published."""
    names = [n.encode() for n in datasets.SPECS["cifar10"].class_names]
    ok = _pickle({b"labels": [0], b"data": np.zeros((1, 3072), np.uint8),
                  b"filenames": [b"a.png"], b"batch_label": b"b"})
    members = {"cifar-10-batches-py/batches.meta": _pickle({b"label_names": names}),
               "cifar-10-batches-py/data_batch_1": payload or pickle.dumps(
                   {b"labels": [0], b"data": _Touch(marker)}, protocol=2)}
    members.update({f"cifar-10-batches-py/data_batch_{i}": ok for i in range(2, 6)})
    members["cifar-10-batches-py/test_batch"] = ok
    return _tar_gz(members)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_crafted_tarball_in_the_download_cache_is_rehashed_not_unpickled(
        monkeypatch, tmp_path, capsys):
    """The issue's case: a crafted tarball under the cached file name (which carries the
    published sha256) with tfds's `.INFO` beside it, no network."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import resource

    monkeypatch.delenv("FRED_DATA_DIR", raising=False)
    marker = tmp_path / "marker"
    mirror_url = f"http://127.0.0.1:{_free_port()}"
    expected = datasets.SPECS["cifar10"].files["cifar-10-python.tar.gz"]
    url = f"{mirror_url}/cifar10/cifar-10-python.tar.gz"
    cached = (tmp_path / "tfds" / "downloads" / "fred_local"
              / resource.get_dl_fname(url, expected.sha256))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(_hostile_cifar10(marker))
    resource.write_info_file(url=url, path=cached, dataset_name="fred_local",
                             original_fname="cifar-10-python.tar.gz",
                             url_info=tfds.download.checksums.UrlInfo(
                                 size=tfds.core.utils.Size(expected.size),
                                 checksum=expected.sha256, filename="cifar-10-python.tar.gz"))
    with pytest.raises(Exception) as err:
        data.load("cifar10", tfds_dir=tmp_path / "tfds", mirror=mirror_url)
    assert not marker.exists()  # (today's code: the pickle created it)
    assert isinstance(err.value, data.DownloadError)
    assert re.match(r"cifar10: could not download .* \(unreachable", str(err.value))
    assert not cached.exists()  # the impostor is gone: the next run fetches the real file
    assert re.search(rf"cached {re.escape(str(cached))} is not the published file \(\d+ bytes, "
                     rf"expected {expected.size}\); removed", capsys.readouterr().err)


@pytest.mark.parametrize("kind", ["call", "object_array", "float_array"])
def test_cifar_pickles_run_no_code_even_when_the_checksum_matches(monkeypatch, tmp_path, kind):
    """The second wall: a tarball registered with its own checksum (as if the table were
    wrong) still cannot run code or smuggle other types through its pickles."""
    marker = tmp_path / "marker"
    payload = {"call": None,
               "object_array": _pickle({b"labels": [0],
                                        b"data": np.array([_Touch(marker)], dtype=object)}),
               "float_array": _pickle({b"labels": [0], b"data": np.full((1, 3072), 0.5),
                                       b"filenames": [b"x.png"]})}[kind]
    tarball = _hostile_cifar10(marker, payload)
    register(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": tarball})
    (tmp_path / "src" / "cifar10").mkdir(parents=True)
    (tmp_path / "src" / "cifar10" / "cifar-10-python.tar.gz").write_bytes(tarball)
    why = {"call": r"refused pickle global (io|builtins)\.open",
           "object_array": r"refused pickle global|only uint8",
           "float_array": r"array dtype 'f8': only uint8"}[kind]
    with pytest.raises(Exception) as err:
        data.load("cifar10", data_dir=tmp_path / "src", tfds_dir=tmp_path / "tfds")
    assert not marker.exists()  # (today's code: the pickle created it)
    assert isinstance(err.value, ValueError)
    assert re.search(r"cifar-10-python.tar.gz: cifar-10-batches-py/data_batch_1: not a CIFAR "
                     rf"python batch \(({why})", str(err.value))
    assert not (tmp_path / "tfds" / "fred_local" / "cifar10" / "1.0.0").exists()


def test_restricted_unpickler_reads_the_published_layout():
    """A batch as Python 2 wrote it (protocol 2, str as bytes, numpy 1.x paths) reads back."""
    x = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    batch = cifar_pickle.loads(_pickle({b"labels": [3, 1], b"data": x, b"filenames": [b"a", b"b"],
                                        b"batch_label": b"training batch 1 of 5"}), "t")
    np.testing.assert_array_equal(batch[b"data"], x)
    assert batch[b"labels"] == [3, 1] and batch[b"filenames"] == [b"a", b"b"]


def test_a_file_swapped_after_the_check_is_caught_when_read(monkeypatch, tmp_path):
    """Each original is hashed through the file object its reader then reads: replacing a
    checked file by another valid one of the same size (other labels) before the build reads
    it fails, naming the file."""
    files, arrays = mnist_files(seed=3)
    stored = {f: gzip.compress(gzip.decompress(b), compresslevel=0, mtime=0)  # size = content
              for f, b in files.items()}
    register(monkeypatch, "mnist", stored)
    folder = tmp_path / "src" / "mnist"
    folder.mkdir(parents=True)
    for f, b in stored.items():
        (folder / f).write_bytes(b)
    check = sources._local_sources
    victim = folder / "train-labels-idx1-ubyte.gz"
    other = gzip.compress(gzip.decompress(stored[victim.name])[:-20] + bytes([9] * 20),
                          compresslevel=0, mtime=0)
    assert len(other) == len(stored[victim.name])

    def check_then_swap(name, where):
        paths = check(name, where)
        victim.write_bytes(other)
        return paths

    monkeypatch.setattr(sources, "_local_sources", check_then_swap)
    with pytest.raises(ValueError, match=rf"mnist: checksum mismatch for {re.escape(str(victim))}"
                                         r": sha256 [0-9a-f]{64}, expected"):
        ds = data.load("mnist", data_dir=tmp_path / "src", tfds_dir=tmp_path / "tfds")
        print("trained on labels", ds.y_train, "instead of", arrays["train"][1])


def test_labels_and_counts_are_checked_before_the_build(monkeypatch, tmp_path):
    """Originals that pass their (here: patched) checksums but hold a label outside the
    classes, or fewer labels than images, build nothing."""
    from test_download import _idx

    files, arrays = mnist_files(seed=7)
    for labels, why in ((np.arange(20) % 11, r"train labels in \[0, 10\], expected \[0, 10\)"),
                        (np.arange(19) % 10, r"train images uint8 \(20, 28, 28, 1\) with labels "
                                             r"\(19,\), expected uint8 \[N, 28, 28, 1\]")):
        bad = {**files, "train-labels-idx1-ubyte.gz": _idx(labels)}
        register(monkeypatch, "mnist", bad)
        src = tmp_path / f"src{len(labels)}"
        (src / "mnist").mkdir(parents=True)
        for f, b in bad.items():
            (src / "mnist" / f).write_bytes(b)
        with pytest.raises(ValueError, match=rf"mnist: the original files give {why}"):
            data.load("mnist", data_dir=src, tfds_dir=tmp_path / f"tfds{len(labels)}")
        assert not (tmp_path / f"tfds{len(labels)}" / "fred_local" / "mnist" / "1.0.0").exists()


def test_idx_reader_reads_only_what_the_header_declares():
    """An idx file that holds 64 MB more than its header declares is refused after one byte
    past the declared size (bounded memory); one that holds less is refused too."""
    header = (0x0803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 2, 2))
    bomb = gzip.compress(header + bytes(8) + bytes(64 << 20), compresslevel=1)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"declares 8 bytes of shape \(2, 2, 2\), the file "
                                             r"holds more"):
            sources.read_idx(io.BytesIO(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
    short = gzip.compress((0x0803).to_bytes(4, "big") + b"".join(
        n.to_bytes(4, "big") for n in (100, 28, 28)) + bytes(10))
    with pytest.raises(ValueError, match="the file holds fewer"):
        sources.read_idx(io.BytesIO(short))
    huge = gzip.compress((0x0803).to_bytes(4, "big") + b"".join(
        n.to_bytes(4, "big") for n in (1 << 20, 1 << 10, 1 << 10)))
    with pytest.raises(ValueError, match="larger than"):
        sources.read_idx(io.BytesIO(huge))


def _tiny_imagenet_zip(train_image=None, annotations=None) -> tuple[bytes, np.ndarray]:
    """A `tiny-imagenet-200.zip` with 200 classes, 2 train and 2 val images of 64x64 (or
    `train_image`, PNG bytes, as the first train image; `annotations`, bytes, as the val
    annotations); returns the zip and its first train image."""
    import zipfile

    from PIL import Image

    def png(array):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    rng = np.random.default_rng(6)
    wnids = [f"n{i:08d}" for i in range(200)]
    images = [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(4)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids))
        zf.writestr(f"tiny-imagenet-200/train/{wnids[3]}/images/a.JPEG",
                    train_image or png(images[0]))
        zf.writestr(f"tiny-imagenet-200/train/{wnids[7]}/images/b.JPEG", png(images[1]))
        zf.writestr("tiny-imagenet-200/val/images/v0.JPEG", png(images[2]))
        zf.writestr("tiny-imagenet-200/val/images/v1.JPEG", png(images[3]))
        zf.writestr("tiny-imagenet-200/val/val_annotations.txt", annotations or
                    f"v0.JPEG\t{wnids[5]}\t0\t0\t63\t63\nv1.JPEG\t{wnids[1]}\t0\t0\t63\t63")
    return buf.getvalue(), images[0]


def test_tiny_imagenet_members_are_bounded_before_reading_or_decoding():
    """Its zip is checked by md5 only; the reader still reads each member only up to a bound
    and refuses an image whose header is not 64x64 before decoding it."""
    from PIL import Image

    good, first = _tiny_imagenet_zip()
    splits = sources._read_tiny_imagenet(io.BytesIO(good))
    np.testing.assert_array_equal(splits["train"][0][0], first)
    assert splits["train"][1].tolist() == [3, 7] and splits["test"][1].tolist() == [5, 1]

    big = io.BytesIO()
    Image.new("L", (4000, 4000)).save(big, format="PNG")  # 16 MB of pixels in a few KB
    with pytest.raises(ValueError, match=r"train/n00000003/images/a.JPEG is 4000x4000 pixels, "
                                         r"expected 64x64"):
        sources._read_tiny_imagenet(io.BytesIO(_tiny_imagenet_zip(train_image=big.getvalue())[0]))
    bomb, _ = _tiny_imagenet_zip(annotations=bytes(64 << 20))  # 64 MB of zeros, deflated
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"val_annotations.txt declares 67108864 bytes, "
                                             r"more than"):
            sources._read_tiny_imagenet(io.BytesIO(bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


# ----------------------------------------------------------------------------- networks


def _tmp_folders(tfds_dir) -> list[str]:
    return [p for p in leftovers(tfds_dir) if ".tmp." in p]


def test_a_stalled_download_times_out_shows_the_stall_and_leaves_no_partial_file(
        mirror, monkeypatch, tmp_path, capsys):
    serve_mnist(mirror, monkeypatch)
    path = "/mnist/train-images-idx3-ubyte.gz"
    mirror.mode[path] = "stall"
    start = time.monotonic()
    with pytest.raises(data.DownloadError) as err:
        data.load("mnist", tfds_dir=tmp_path)
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert elapsed < 6, elapsed  # 2 tries x 1 s read timeout + 0.05 s wait, not forever
    assert (f"could not download {mirror.url}{path} (stalled: no data for 1 s (read timeout) "
            f"after ") in message
    assert re.search(r"gave up after 2 attempts in [\d.]+ s \(waits: 0.05 s; limits: 2 "
                     r"attempts, none started after 5 s\)", message)
    assert mirror.gets[path] == 2
    assert not _tmp_folders(tmp_path)
    assert re.search(r"stalled [01]s", capsys.readouterr().err)  # the bar showed the stall


def test_http_500_is_retried_a_bounded_number_of_times_and_says_so(mirror, monkeypatch, tmp_path):
    serve_mnist(mirror, monkeypatch)
    path = "/mnist/t10k-images-idx3-ubyte.gz"
    mirror.mode[path] = "500"
    monkeypatch.setattr(downloads, "POLICY", FAST._replace(attempts=3))
    start = time.monotonic()
    with pytest.raises(data.DownloadError, match=r"\(HTTP 500 Internal Server Error; gave up "
                                                 r"after 3 attempts in [\d.]+ s \(waits: 0.05 s, "
                                                 r"0.1 s; limits: 3 attempts"):
        data.load("mnist", tfds_dir=tmp_path)
    assert time.monotonic() - start < 5 and mirror.gets[path] == 3
    # the total time bounds the tries too: no try starts after give_up_after
    monkeypatch.setattr(downloads, "POLICY", FAST._replace(attempts=10, backoff=0.2,
                                                           give_up_after=0.5))
    mirror.gets.clear()
    with pytest.raises(data.DownloadError, match=r"gave up after 2 attempts .*waits: 0.2 s; "
                                                 r"limits: 10 attempts, none started after 0.5 s"):
        data.load("mnist", tfds_dir=tmp_path)
    assert mirror.gets[path] == 2
    assert not _tmp_folders(tmp_path)


def test_more_bytes_than_declared_are_cut_off(mirror, monkeypatch, tmp_path):
    files, _ = serve_mnist(mirror, monkeypatch)
    path = "/mnist/t10k-labels-idx1-ubyte.gz"
    mirror.mode[path] = "endless"  # the file, then 8 MB of zeros, no Content-Length
    size = len(files["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(data.DownloadError, match=rf"\(more than the declared {size} bytes; cut "
                                                 r"off; gave up after 2 attempts"):
        data.load("mnist", tfds_dir=tmp_path)
    assert not _tmp_folders(tmp_path)
    assert not [p for p in leftovers(tmp_path) if "t10k-labe" in p]


def test_a_wrong_size_file_is_refused_and_not_cached(mirror, monkeypatch, tmp_path):
    files, _ = mnist_files()
    register(monkeypatch, "mnist", files)
    short = {**files, "train-labels-idx1-ubyte.gz": files["train-labels-idx1-ubyte.gz"][:-5]}
    mirror.add("mnist", short)
    size = len(files["train-labels-idx1-ubyte.gz"])
    with pytest.raises(data.DownloadError, match=rf"\({size - 5} bytes, expected {size}; gave "
                                                 r"up after 2 attempts"):
        data.load("mnist", tfds_dir=tmp_path)
    assert not [p for p in leftovers(tmp_path) if "trai-labe" in p or ".tmp." in p]


def test_ctrl_c_during_a_download_removes_its_temporary_folder(mirror, monkeypatch, tmp_path):
    serve_mnist(mirror, monkeypatch)
    mirror.mode["/mnist/train-images-idx3-ubyte.gz"] = "stall"
    monkeypatch.setattr(downloads, "POLICY", FAST._replace(read_timeout=30.0))
    folder = tmp_path / "downloads" / "fred_local"

    def interrupt_when_partial():
        for _ in range(600):  # the temporary folder exists: the download is under way
            if any(".tmp." in p.name for p in folder.glob("*.tmp.*")):
                time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    # Python's own SIGINT handler (a pytest-xdist worker ignores SIGINT), restored afterwards.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_when_partial, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        try:
            data.load("mnist", tfds_dir=tmp_path)
        finally:
            signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 10
    assert not _tmp_folders(tmp_path)


def test_a_killed_downloads_partial_folder_is_removed_by_the_next_fetch(
        mirror, monkeypatch, tmp_path):
    """A process killed mid-download (SIGKILL: no cleanup runs) leaves `<file>.tmp.<uuid>/`;
    the next fetch of that file removes it once untouched for `stale_after`, and keeps a
    live one."""
    from tensorflow_datasets.core.download import resource

    files, _ = serve_mnist(mirror, monkeypatch)
    expected = datasets.SPECS["mnist"].files["t10k-labels-idx1-ubyte.gz"]
    name = resource.get_dl_fname(f"{mirror.url}/mnist/t10k-labels-idx1-ubyte.gz", expected.sha256)
    folder = tmp_path / "downloads" / "fred_local"
    dead, live = folder / f"{name}.tmp.{'0' * 32}", folder / f"{name}.tmp.{'1' * 32}"
    for tmp in (dead, live):
        tmp.mkdir(parents=True)
        (tmp / name).write_bytes(files["t10k-labels-idx1-ubyte.gz"][:10])
    past = time.time() - FAST.stale_after - 60
    for p in (dead / name, dead):
        os.utime(p, (past, past))
    data.load("mnist", tfds_dir=tmp_path)
    assert not dead.exists() and (live / name).exists()


# ----------------------------------------------------------------------------- local mirrors


def test_file_mirror_is_read_locally_and_checked(monkeypatch, tmp_path):
    monkeypatch.delenv("FRED_DATA_DIR", raising=False)
    monkeypatch.setattr(downloads, "POLICY", FAST)
    files, arrays = mnist_files(seed=4)
    register(monkeypatch, "mnist", files)
    (tmp_path / "mirror" / "mnist").mkdir(parents=True)
    for f, b in files.items():
        (tmp_path / "mirror" / "mnist" / f).write_bytes(b)
    ds = data.load("mnist", tfds_dir=tmp_path / "tfds", mirror=(tmp_path / "mirror").as_uri())
    np.testing.assert_array_equal(ds.y_train, arrays["train"][1])
    assert len(list((tmp_path / "tfds" / "downloads" / "fred_local").iterdir())) == 4

    (tmp_path / "bad" / "mnist").mkdir(parents=True)
    for f, b in files.items():
        (tmp_path / "bad" / "mnist" / f).write_bytes(b[::-1] if "t10k-labels" in f else b)
    missing = tmp_path / "absent"
    with pytest.raises(data.DownloadError, match=rf"\(no such file: {re.escape(str(missing))}"
                                                 r"/mnist/train-images-idx3-ubyte.gz; not "
                                                 r"retried\)\. Expected file"):
        data.load("mnist", tfds_dir=tmp_path / "t2", mirror=missing.as_uri())
    with pytest.raises(data.DownloadError, match=r"\(checksum mismatch: sha256 [0-9a-f]{64}, "
                                                 r"expected [0-9a-f]{64}; not retried"):
        data.load("mnist", tfds_dir=tmp_path / "t3", mirror=(tmp_path / "bad").as_uri())
    with pytest.raises(data.DownloadError, match=rf"the mirror '{re.escape(str(missing))}' is "
                                                 rf"not a URL; for a local folder use "
                                                 rf"file://{re.escape(str(missing))} or "
                                                 r"FRED_DATA_DIR"):
        data.load("mnist", tfds_dir=tmp_path / "t4", mirror=str(missing))
    with pytest.raises(data.DownloadError, match=r"unsupported URL scheme 'ftp'"):
        data.load("mnist", tfds_dir=tmp_path / "t5", mirror="ftp://127.0.0.1/x")
    assert not [p for d in ("t2", "t3", "t4", "t5") for p in _tmp_folders(tmp_path / d)]


def test_checked_reads_of_every_layout_go_through_one_rule(tmp_path):
    """`open_verified` refuses a FIFO (it would block) and names size and checksum."""
    expected = datasets.File(None, 3, hashlib.sha256(b"abc").hexdigest())
    (tmp_path / "ok").write_bytes(b"abc")
    with downloads.open_verified(tmp_path / "ok", expected, "t") as f:
        assert f.read() == b"abc"
    (tmp_path / "long").write_bytes(b"abcd")
    with pytest.raises(ValueError, match="more than the declared 3 bytes; replace it"):
        with downloads.open_verified(tmp_path / "long", expected, "t"):
            pass
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="is not a regular file"):
        with downloads.open_verified(tmp_path / "fifo", expected, "t"):
            pass


# ----------------------------------------------------------------------------- 3D MNIST h5


def _kaggle_h5(path, **datasets_) -> None:
    """An h5 file in the Kaggle 3D MNIST layout; `datasets_[key]` replaces a key's writer."""
    import h5py

    rng = np.random.default_rng(0)
    plain = {"X_train": rng.uniform(0, 1, (3, 4096)), "y_train": np.arange(3),
             "X_test": rng.uniform(0, 1, (2, 4096)), "y_test": np.arange(2)}
    with h5py.File(path, "w") as f:
        for key, value in plain.items():
            writer = datasets_.get(key)
            if writer is None:
                f.create_dataset(key, data=value)
            else:
                writer(f, key)


@pytest.mark.parametrize("kind", ["external_storage", "external_link", "soft_link"])
def test_h5_reads_no_bytes_outside_the_file(tmp_path, kind):
    """h5 can point a dataset at any file on the machine; the reader refuses before reading."""
    import h5py

    secret = tmp_path / "secret"
    secret.write_bytes(np.full(4096, 0.25).tobytes())  # stands for any file of the machine
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("X", data=np.full((2, 4096), 0.25))
    writer = {
        "external_storage": lambda f, key: f.create_dataset(
            key, shape=(1, 4096), dtype="f8", external=[(str(secret), 0, 4096 * 8)]),
        "external_link": lambda f, key: f.__setitem__(key, h5py.ExternalLink(str(other), "/X")),
        "soft_link": lambda f, key: (f.create_dataset("hidden", data=np.full((2, 4096), 0.25)),
                                     f.__setitem__(key, h5py.SoftLink("/hidden"))),
    }[kind]
    path = tmp_path / "f.h5"
    _kaggle_h5(path, **{"X_train" if kind == "external_storage" else "X_test": writer})
    if kind == "external_storage":  # y_train must match X_train's single row
        with h5py.File(path, "a") as f:
            del f["y_train"]
            f.create_dataset("y_train", data=np.arange(1))
    with pytest.raises(ValueError, match=r"X_(train|test) is not a dataset stored in this file"):
        mnist3d.read_h5(path)


def test_h5_declared_sizes_and_values_are_bounded(tmp_path):
    """A tiny file declaring 10**13 rows is refused before anything is allocated; NaN voxels
    are refused."""
    rows = 10 ** 13

    def huge(f, key):
        shape = (rows, 4096) if key == "X_train" else (rows,)
        f.create_dataset(key, shape=shape, dtype="f8" if key == "X_train" else "i1",
                         chunks=(1, 4096) if key == "X_train" else (4096,), compression="gzip")

    _kaggle_h5(tmp_path / "huge.h5", X_train=huge, y_train=huge)
    assert (tmp_path / "huge.h5").stat().st_size < 1 << 20
    with pytest.raises(ValueError, match=rf"X_train declares {rows} rows, more than 60000"):
        mnist3d.read_h5(tmp_path / "huge.h5")
    nan = np.random.default_rng(1).uniform(0, 1, (2, 4096))
    nan[1, 7] = np.nan
    _kaggle_h5(tmp_path / "nan.h5", X_test=lambda f, key: f.create_dataset(key, data=nan))
    with pytest.raises(ValueError, match=r"X_test holds non-finite voxel values"):
        mnist3d.read_h5(tmp_path / "nan.h5")


def test_the_standin_is_made_only_from_checked_mnist_originals(monkeypatch, tmp_path):
    """`make_standin` reads `<data dir>/mnist/` like any original: size and checksum first."""
    files, _ = mnist_files(seed=5)
    stored = {f: gzip.compress(gzip.decompress(b), compresslevel=0, mtime=0)
              for f, b in files.items()}
    register(monkeypatch, "mnist", stored)
    (tmp_path / "mnist").mkdir()
    for f, b in stored.items():  # other labels, same size: readable, but not the original
        other = gzip.compress(gzip.decompress(b)[:-10] + bytes(10), compresslevel=0, mtime=0)
        (tmp_path / "mnist" / f).write_bytes(other if "t10k-labels" in f else b)
    with pytest.raises(ValueError, match=r"mnist: checksum mismatch for .*t10k-labels"):
        mnist3d.make_standin(tmp_path / "mnist", tmp_path / "s.h5", n_train=4, n_test=4)
    assert not (tmp_path / "s.h5").exists()


def test_the_readme_states_the_default_download_limits():
    """The limits README's "When things go wrong" states are the ones `fetch` uses."""
    readme = " ".join(open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
                      .split())
    p = downloads.POLICY
    waits = [p.backoff * 2 ** i for i in range(p.attempts - 1)]
    stated = (f"connect timeout {p.connect_timeout:g} s, read timeout {p.read_timeout:g} s "
              f"(a stalled body fails after that, and the progress bar shows `stalled Ns` "
              f"meanwhile), at most {p.attempts} attempts with waits of "
              f"{', '.join(f'{w:g}' for w in waits[:-1])} and {waits[-1]:g} s and none started "
              f"{p.give_up_after:g} s after the first")
    assert stated in readme
    assert f"(untouched for {p.stale_after / 60:g} min)" in readme
    assert f"declares more than {mnist3d.MAX_ROWS} rows" in readme
