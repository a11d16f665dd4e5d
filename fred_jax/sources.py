"""Where the pixels of the local datasets come from: original files, downloads, the tfds build.

`mnist`, `fashion_mnist`, `cifar10`, `cifar100`, `svhn` and `tiny_imagenet` (the `local` source of
`fred_jax.datasets`) are built once from their original files by the tfds builder `fred_local`
(one builder config per dataset) into an array_record tfds dataset under `tfds_dir` (default:
tfds's data dir, `$TFDS_DATA_DIR` or `~/tensorflow_datasets`). Every load reads that tfds data
source, so the originals are needed only for the first build. The originals (`files` and
`layouts` of `fred_jax.datasets.SPECS`) come from:
* `data_dir/<name>/` when a data dir is given (`data_dir=` or `$FRED_DATA_DIR`): offline, the
  files must be there; their size and sha256 are checked. CIFAR-10 there is either the
  original `cifar-10-python.tar.gz` or the lossless re-encoding `x_{train,test}.npy.xz` +
  `cifar10_labels.npz` (rows sorted by (label, original file name)); the tarball is brought
  into the same order, so both give identical arrays.
* otherwise a download on first use (`fred_jax.downloads.fetch`: connect and read timeouts,
  bounded retries with backoff, a progress bar that shows a stall, an atomic rename of a
  complete, checked file), cached in `<tfds_dir>/downloads/fred_local/` (under tfds's file
  names), from the canonical URLs or from a mirror: `mirror=` or `$FRED_DATA_MIRROR`, a base URL
  laid out like a data dir (`<mirror>/<name>/<file>`, e.g. `python -m http.server` run in a data
  dir, or `file:///<data dir>`). A failure raises `DownloadError` naming the URL, the cause, the
  attempts, the file, its checksum and where to put it by hand. tfds writes the built dataset
  to a temporary folder renamed at the end, so an interrupted run leaves nothing a later run
  would trust.
Every original is checked (size, then checksum) when it is read, through the file object the
reader then reads, wherever it comes from: a cached download whose name carries the checksum is
re-hashed too. The CIFAR pickles are read by `fred_jax.cifar_pickle`, which runs no code.
Formats: MNIST/Fashion-MNIST idx `.gz`; CIFAR python-version tarballs (CIFAR-100: fine labels,
original order); SVHN cropped `{train,test}_32x32.mat` (scipy.io; label 10 is digit 0);
Tiny-ImageNet `tiny-imagenet-200.zip` (classes in sorted wnid order, `val` as test; only an
md5 is published for it, checked after the download).

Record layout of `fred_local`: one example per record (as `Tensor(uint8)` int64 lists, or even
as bytes) makes building and reading CIFAR-10 several times slower than `_CHUNK` examples per
record as bytes, so a record holds a chunk: features `image` uint8 `[n, *image_shape]` and `label` (a sequence of
`ClassLabel` with the class names), in the order described above, read back with one batched
`__getitems__`; most of a cold `load("cifar10")` is the xz decode of the originals.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import lzma
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fred_jax import cifar_pickle, downloads
from fred_jax.datasets import MNIST_FILES, NAMES, SPECS

_CHUNK = 1000  # examples per array_record record of the local builder
_BUILDER = "fred_local"  # name of the local builder (and of its download folder)
_MIRROR_ENV = "FRED_DATA_MIRROR"


class DownloadError(OSError):
    """An original file could not be downloaded; the message says where to put it by hand."""


def data_root(data_dir: str | os.PathLike | None) -> Path | None:
    """The data dir of local originals: `data_dir`, else `$FRED_DATA_DIR`, else None."""
    root = data_dir if data_dir is not None else os.environ.get("FRED_DATA_DIR")
    return Path(root).expanduser().resolve() if root else None


def _local_sources(name: str, folder: Path) -> dict[str, Path]:
    """The first complete layout of original files in `folder`, checked.

    Raises FileNotFoundError naming the missing files, ValueError on a size or checksum mismatch.
    """
    layouts = SPECS[name].layouts
    present = [sum((folder / f).is_file() for f in layout) for layout in layouts]
    complete = [layout for layout, n in zip(layouts, present) if n == len(layout)]
    if not complete:
        closest = layouts[int(np.argmax(present))]
        missing = [str(folder / f) for f in closest if not (folder / f).is_file()]
        raise FileNotFoundError(
            f"{name}: missing original files {missing}; expected in {folder}: "
            + " or ".join(str(sorted(layout)) for layout in layouts))
    paths = {f: folder / f for f in complete[0]}
    for fname, path in paths.items():  # fail before the build starts (checked again on reading)
        with downloads.open_verified(path, SPECS[name].files[fname], name):
            pass
    return paths


def _download_error(name: str, fname: str, url: str, cause: str) -> DownloadError:
    expected = SPECS[name].files[fname]
    layout = SPECS[name].layouts[0]
    return DownloadError(
        f"{name}: could not download {url} ({cause}). Expected file {fname!r}: "
        f"{downloads.describe(expected)}. To go on without the network, put "
        f"{' '.join(layout)} by hand into <folder>/{name}/ and set FRED_DATA_DIR=<folder> "
        f"(or config.data_dir); or set {_MIRROR_ENV} to a base URL (http://, https:// or "
        f"file:///<folder>) that serves {name}/{fname}.")


def _fetch(name: str, fname: str, mirror: str | None, download_dir: Path) -> Path:
    """One original file, checked: from tfds's download cache when it is there and passes its
    checksum, else downloaded (`fred_jax.downloads.fetch`: timeouts, bounded retries)."""
    import tensorflow_datasets as tfds

    expected = SPECS[name].files[fname]
    url = f"{mirror.rstrip('/')}/{name}/{fname}" if mirror else expected.url
    if url is None:
        raise _download_error(name, fname, "<no URL>", "no canonical URL; a local file only")
    if mirror and "://" not in mirror:
        raise _download_error(name, fname, url, f"the mirror {mirror!r} is not a URL; for a "
                              f"local folder use file://{Path(mirror).expanduser().resolve()} "
                              f"or FRED_DATA_DIR")
    cached = download_dir / _BUILDER / tfds.download.resource.get_dl_fname(url, expected.sha256)
    try:
        return downloads.fetch(url, cached, expected, name)
    except downloads.FetchError as e:
        raise _download_error(name, fname, url, str(e)) from e


_MAX_IDX_BYTES = 1 << 30  # an idx file's declared payload (MNIST's largest: 47 MB)


def read_idx(source) -> np.ndarray:
    """A gzip-compressed uint8 idx file (MNIST format), from a path or a binary file object.

    Reads the header, then exactly the bytes it declares (at most `_MAX_IDX_BYTES`): a file
    that holds fewer, or more, is refused without reading it all.
    """
    where = getattr(source, "name", source)
    with gzip.open(source, "rb") as f:
        magic = int.from_bytes(f.read(4), "big")
        ndim = magic & 0xFF
        if magic >> 8 != 0x08 or not 1 <= ndim <= 4:
            raise ValueError(f"{where}: not a uint8 idx file (magic {magic:#x})")
        header = f.read(4 * ndim)
        shape = tuple(int.from_bytes(header[4 * i:4 * i + 4], "big") for i in range(ndim))
        size = int(np.prod(shape, dtype=np.int64))
        if len(header) != 4 * ndim or size > _MAX_IDX_BYTES:
            raise ValueError(f"{where}: idx header declares shape {shape}: truncated or larger "
                             f"than {_MAX_IDX_BYTES} bytes")
        raw = f.read(size)
        if len(raw) != size or f.read(1):
            raise ValueError(f"{where}: idx header declares {size} bytes of shape {shape}, the "
                             f"file holds {'fewer' if len(raw) != size else 'more'}")
    return np.frombuffer(raw, np.uint8).reshape(shape)


def _read_cifar_tarball(f, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 [N, 32, 32, 3], labels)} from a CIFAR python-version tarball (an open,
    checked file); its pickles are read by `fred_jax.cifar_pickle` (no code runs).

    CIFAR-10 rows are sorted by (label, original file name), the order of the lossless
    re-encoding `x_*.npy.xz` (whose source lost the batch order), so both layouts give identical
    arrays; CIFAR-100 keeps the file order (torchvision's) with the fine labels.
    """
    if name == "cifar10":
        members = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key, meta, names_key = b"labels", "batches.meta", b"label_names"
    else:
        members = {"train": ["train"], "test": ["test"]}
        label_key, meta, names_key = b"fine_labels", "meta", b"fine_label_names"
    wanted = {m for ms in members.values() for m in ms} | {meta}
    where = getattr(f, "name", name)
    batches = cifar_pickle.read_tarball(f, wanted, where)
    class_names = cifar_pickle.names(batches[meta], names_key, f"{where}: {meta}")
    if class_names != SPECS[name].class_names:
        raise ValueError(f"{where}: class names {class_names} differ from {name}'s")
    out = {}
    for split, ms in members.items():
        parts = [cifar_pickle.batch(batches[m], label_key, len(class_names), f"{where}: {m}")
                 for m in ms]
        x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.concatenate([p[1] for p in parts])
        if name == "cifar10":
            files = [fn for m in ms for fn in cifar_pickle.names(
                batches[m], b"filenames", f"{where}: {m}", count=None)]
            order = sorted(range(len(y)), key=lambda i: (y[i], files[i]))
            x, y = x[order], y[order]
        out[split] = (np.ascontiguousarray(x), y)
    return out


def _read_svhn(files: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SVHN cropped `.mat` files: X uint8 [32, 32, 3, N], y in 1..10 (10 is the digit 0)."""
    from scipy import io as sio

    out = {}
    for split in ("train", "test"):
        mat = sio.loadmat(files[f"{split}_32x32.mat"])
        x = np.ascontiguousarray(np.asarray(mat["X"], np.uint8).transpose(3, 0, 1, 2))
        out[split] = (x, np.asarray(mat["y"], np.int64).reshape(-1) % 10)
    return out


def _read_originals(name: str, paths: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 [N, H, W, C], int labels [N])} from one layout of original files, each
    opened and checked (size and checksum) right before it is read."""
    with contextlib.ExitStack() as stack:
        files = {f: stack.enter_context(downloads.open_verified(p, SPECS[name].files[f], name))
                 for f, p in paths.items()}
        return _read_checked(name, files)


def _read_checked(name: str, files: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`_read_originals` on open, checked file objects."""
    if name in ("mnist", "fashion_mnist"):
        f = {k: files[v] for k, v in MNIST_FILES.items()}
        return {s: (read_idx(f[f"{s}_images"])[..., None], read_idx(f[f"{s}_labels"]))
                for s in ("train", "test")}
    if name in ("cifar10", "cifar100") and SPECS[name].layouts[0][0] in files:  # the tarball
        return _read_cifar_tarball(files[SPECS[name].layouts[0][0]], name)
    if name == "cifar10":
        labels = np.load(files["cifar10_labels.npz"], allow_pickle=False)
        out = {}
        for s in ("train", "test"):
            with lzma.open(files[f"x_{s}.npy.xz"]) as fx:
                out[s] = (np.load(fx, allow_pickle=False), labels[f"y_{s}"])
        return out
    if name == "svhn":
        return _read_svhn(files)
    if name == "tiny_imagenet":
        return _read_tiny_imagenet(files["tiny-imagenet-200.zip"])
    raise ValueError(f"no local reader for {name}")


_MAX_TINY_MEMBER = 1 << 20  # bytes of one Tiny-ImageNet member (a few KB; the annotations 0.3 MB)


def _read_tiny_imagenet(f) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and val splits of the official zip; classes in sorted wnid order (ImageFolder).

    Every member is read only up to `_MAX_TINY_MEMBER` bytes, and every image must declare
    64x64 pixels in its header before it is decoded.
    """
    from PIL import Image

    where = getattr(f, "name", "tiny-imagenet-200.zip")
    side = SPECS["tiny_imagenet"].image_shape[0]

    def read(zf: zipfile.ZipFile, member: str) -> bytes:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise ValueError(f"{where}: member {member} not found") from None
        if info.file_size > _MAX_TINY_MEMBER:
            raise ValueError(f"{where}: member {member} declares {info.file_size} bytes, more "
                             f"than {_MAX_TINY_MEMBER}; not the published zip")
        with zf.open(info) as m:
            return m.read(_MAX_TINY_MEMBER + 1)[:_MAX_TINY_MEMBER]

    def decode(zf: zipfile.ZipFile, member: str) -> np.ndarray:
        with Image.open(io.BytesIO(read(zf, member))) as im:
            if im.size != (side, side):
                raise ValueError(f"{where}: {member} is {im.size[0]}x{im.size[1]} pixels, "
                                 f"expected {side}x{side}")
            return np.asarray(im.convert("RGB"))

    with zipfile.ZipFile(f) as zf:
        wnids = sorted(read(zf, "tiny-imagenet-200/wnids.txt").decode().split())
        label_of = {w: i for i, w in enumerate(wnids)}
        train = sorted(m for m in zf.namelist()
                       if m.startswith("tiny-imagenet-200/train/") and m.endswith(".JPEG"))
        val_labels = {}
        annotations = read(zf, "tiny-imagenet-200/val/val_annotations.txt").decode()
        for line in annotations.splitlines():
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in label_of:
                raise ValueError(f"{where}: val_annotations.txt line {line[:80]!r} names no "
                                 f"class of wnids.txt")
            val_labels[f"tiny-imagenet-200/val/images/{fields[0]}"] = label_of[fields[1]]
        if any(m.split("/")[2] not in label_of for m in train):
            raise ValueError(f"{where}: a train folder names no class of wnids.txt")
        val = sorted(val_labels)
        return {
            "train": (np.stack([decode(zf, m) for m in train]),
                      np.array([label_of[m.split("/")[2]] for m in train])),
            "test": (np.stack([decode(zf, m) for m in val]),
                     np.array([val_labels[m] for m in val])),
        }


@functools.cache
def _local_builder_cls():
    """The tfds builder class for the local originals (defined lazily: importing tfds is slow)."""
    import tensorflow_datasets as tfds

    class FredLocal(tfds.core.GeneratorBasedBuilder):
        """Datasets built from their original files (data dir or download), in chunks."""

        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n) for n, s in SPECS.items() if s.local]

        # Set before building (prepared data needs neither): checked local originals, or None
        # to download them (from `mirror` when set) into tfds's download dir.
        sources: dict[str, Path] | None = None
        mirror: str | None = None
        # No checksums file: `_fetch` hands the checksums of `SPECS[name].files` to its
        # DownloadManager.
        # (Also avoids tfds 4.9.10's code_path lookup, which imports the `importlib_resources`
        # backport for builders defined inside a package.)
        code_path = None

        def _info(self):
            name = self.builder_config.name
            spec = SPECS[name]
            names = spec.class_names or tuple(str(i) for i in range(spec.num_classes))
            features = tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(None, *spec.image_shape), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.Sequence(tfds.features.ClassLabel(names=names)),
            })
            return tfds.core.DatasetInfo(
                builder=self, features=features, disable_shuffling=True,
                description=f"{name}: up to {_CHUNK} examples per record (fred_jax.data order).",
                metadata=tfds.core.MetadataDict(checksums={
                    f: e.sha256 or f"md5:{e.md5}" for f, e in SPECS[name].files.items()}))

        def _split_generators(self, dl_manager):
            name = self.builder_config.name
            sources = self.sources or {
                f: _fetch(name, f, self.mirror, Path(dl_manager.download_dir))
                for f in SPECS[name].layouts[0]}
            splits = _read_originals(name, sources)
            try:
                check_splits(name, splits)
            except ValueError as e:
                raise ValueError(f"{name}: the original files give {e}") from None
            return {s: self._generate_examples(*xy) for s, xy in splits.items()}

        def _generate_examples(self, x, y) -> Iterator:
            for i in range(0, len(x), _CHUNK):
                yield i, {"image": x[i:i + _CHUNK], "label": y[i:i + _CHUNK].astype(np.int64)}

    return FredLocal


def read_local(name: str, data_dir, tfds_dir, mirror) -> tuple[tuple[str, ...], dict]:
    """(class names, {split: (uint8 images, labels)}) of a local dataset, built into `tfds_dir`
    first if needed: from `data_dir` (else `$FRED_DATA_DIR`) when set, else downloaded (from
    `mirror`, else `$FRED_DATA_MIRROR`, else the canonical URLs)."""
    builder = _local_builder_cls()(config=name, data_dir=tfds_dir, file_format="array_record")
    if not builder.is_prepared():
        root = data_root(data_dir)
        if root is not None:
            builder.sources = _local_sources(name, root / name)
        builder.mirror = mirror if mirror is not None else os.environ.get(_MIRROR_ENV) or None
        builder.download_and_prepare()
    out = {}
    with damaged_cache_says_where(name, builder):
        for split in ("train", "test"):
            source = builder.as_data_source(split)
            records = source.__getitems__(list(range(len(source))))
            out[split] = (np.concatenate([r["image"] for r in records]),
                          np.concatenate([r["label"] for r in records]))
        check_splits(name, out)  # a copy prepared by an earlier run is checked too
    return tuple(builder.info.features["label"].feature.names), out


def check_splits(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Raises ValueError unless every split holds uint8 images of `name`'s shape, one label
    each, every label a class of `name`: declared sizes against what was read."""
    spec = SPECS[name]
    for split, (x, y) in splits.items():
        if x.dtype != np.uint8 or x.shape[1:] != spec.image_shape or y.shape != x.shape[:1]:
            raise ValueError(f"{split} images {x.dtype} {x.shape} with labels {y.shape}, "
                             f"expected uint8 [N, {', '.join(map(str, spec.image_shape))}] "
                             f"with N labels")
        if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
            raise ValueError(f"{split} labels in [{y.min()}, {y.max()}], expected "
                             f"[0, {spec.num_classes})")


@contextlib.contextmanager
def damaged_cache_says_where(name: str, builder) -> Iterator[None]:
    """A prepared copy that fails to read (a truncated or corrupted array_record file: Riegeli
    hash errors and the like) becomes one message naming the folder to delete."""
    try:
        yield
    except Exception as e:
        raise ValueError(f"{name}: the prepared copy in {builder.data_dir} is damaged "
                         f"({' '.join(str(e).split())[:200]}); delete that folder to rebuild "
                         f"it") from e


def is_prepared(name: str, tfds_dir: str | os.PathLike | None = None) -> bool:
    """Whether `name` is already built in the tfds data dir (then no original file is read)."""
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    tfds_dir = None if tfds_dir is None else os.fspath(tfds_dir)
    if SPECS[name].local:
        builder = _local_builder_cls()(config=name, data_dir=tfds_dir, file_format="array_record")
    else:
        import tensorflow_datasets as tfds

        builder = tfds.builder(SPECS[name].tfds_name, data_dir=tfds_dir,
                               file_format="array_record")
    return bool(builder.is_prepared())
