"""3D MNIST volumes (FreD Table 4): the Kaggle file's reader and a generated offline stand-in.

The official data is Kaggle's 3D MNIST (https://www.kaggle.com/datasets/daavoo/3d-mnist)
``full_dataset_vectors.h5``: datasets ``X_train`` [10000, 4096], ``y_train`` [10000],
``X_test`` [2000, 4096], ``y_test`` [2000], voxel values in [0, 1]. The official code
(FreD ``3D-MNIST/utils.py`` get_dataset, ``prepare_points`` with threshold=False) only
reshapes each row (NumPy C order) to 16x16x16 and adds the channel axis (NCDHW); it does not
normalise. :func:`read_h5` gives the same volumes channels-last, ``[N, 16, 16, 16, 1]``
float32 (volume axes in the order of the reshape), so the dataset's mean/std are 0/1.

Kaggle needs a login, so the file is never downloaded: it is read from
``<data dir>/mnist3d/full_dataset_vectors.h5``. For offline runs :func:`make_standin` writes
``mnist3d_standin``, a clearly labelled substitute in the same layout made deterministically
from the MNIST originals (each digit area-resized to 16x16, extruded into a slab with a smooth
depth profile, then rotated and shifted per example with trilinear resampling). Results on it
are not Table 4 numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

FILE = "full_dataset_vectors.h5"
KAGGLE_URL = "https://www.kaggle.com/datasets/daavoo/3d-mnist"
VOLUME = (16, 16, 16)
IMAGE_SHAPE = VOLUME + (1,)
NUM_CLASSES = 10
MEAN = (0.0,)
STD = (1.0,)  # the official code does not normalise: x = (x - 0) / 1
KEYS = ("X_train", "y_train", "X_test", "y_test")

STANDIN = "mnist3d_standin"
STANDIN_FILE = "full_dataset_vectors_standin.h5"
STANDIN_NOTE = ("generated stand-in for 3D MNIST: voxelised MNIST digits (fred_jax.mnist3d."
                "make_standin), NOT the Kaggle 3D MNIST data")
MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


MAX_ROWS = 60000  # largest split read (the stand-in's largest possible: MNIST's train split)
_ROWS_PER_READ = 1024


def _dataset(f, key: str, path: Path):
    """`f[key]`, a dataset whose bytes are in this file: no external, soft or virtual link,
    no external storage (those read other files on this machine)."""
    import h5py

    link = f.get(key, getlink=True)
    node = f[key] if isinstance(link, h5py.HardLink) else None
    if not isinstance(node, h5py.Dataset) or node.external or node.is_virtual:
        raise ValueError(f"{path}: {key} is not a dataset stored in this file (a link, external "
                         f"storage or a virtual dataset reads other files); use the Kaggle file")
    return node


def read_h5(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "test": (x, y)}`` from a file in the Kaggle layout: ``x``
    ``[N, 16, 16, 16, 1]`` float32 (each 4096-vector reshaped in C order, not normalised),
    ``y`` ``[N]`` int32 in [0, 10). Before any data is read: keys, shapes, dtypes, at most
    :data:`MAX_ROWS` rows, and only datasets stored in the file itself; then labels and
    finite voxels, read in blocks (memory bounded by the declared shape). A missing file
    raises FileNotFoundError, a wrong layout ValueError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"3D MNIST file not found: {path}. Download {FILE} from {KAGGLE_URL} (Kaggle login "
            f"needed) and put it there, or use the dataset {STANDIN!r} generated from MNIST")
    d = math.prod(VOLUME)
    out = {}
    with h5py.File(path, "r") as f:
        missing = [k for k in KEYS if k not in f]
        if missing:
            raise ValueError(f"{path}: missing datasets {missing}; expected {list(KEYS)} "
                             f"(Kaggle 3D MNIST layout)")
        for split in ("train", "test"):
            xs, ys = _dataset(f, f"X_{split}", path), _dataset(f, f"y_{split}", path)
            if xs.ndim != 2 or xs.shape[1] != d:
                raise ValueError(f"{path}: X_{split} has shape {xs.shape}, expected [N, {d}] "
                                 f"(16x16x16 voxels per row)")
            if ys.shape != (xs.shape[0],):
                raise ValueError(f"{path}: y_{split} has shape {ys.shape}, expected "
                                 f"({xs.shape[0]},) to match X_{split}")
            if xs.shape[0] > MAX_ROWS:
                raise ValueError(f"{path}: X_{split} declares {xs.shape[0]} rows, more than "
                                 f"{MAX_ROWS}; not the Kaggle file")
            if xs.dtype.kind not in "fiu" or ys.dtype.kind not in "iu" or xs.dtype.itemsize > 8:
                raise ValueError(f"{path}: X_{split} ({xs.dtype}) must be numeric and y_{split} "
                                 f"({ys.dtype}) integer")
            y = np.asarray(ys[...]).astype(np.int32)
            if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
                raise ValueError(f"{path}: y_{split} has labels in [{y.min()}, {y.max()}], "
                                 f"expected [0, {NUM_CLASSES})")
            x = np.empty(xs.shape, np.float32)
            for i in range(0, len(x), _ROWS_PER_READ):
                x[i:i + _ROWS_PER_READ] = xs[i:i + _ROWS_PER_READ]
                if not np.isfinite(x[i:i + _ROWS_PER_READ]).all():
                    raise ValueError(f"{path}: X_{split} holds non-finite voxel values (rows "
                                     f"{i}..{i + _ROWS_PER_READ})")
            out[split] = (x.reshape((-1,) + IMAGE_SHAPE), y)
    return out


def area_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` float64 box-filter resampling along one axis: output pixel ``i``
    averages the input over ``[i, i + 1) * n_in / n_out`` (overlap-weighted)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation about the volume's axes 1 (yaw), 2 (pitch) and 0 (roll), in (D, H, W) order."""
    def rot(a: int, b: int, t: float) -> np.ndarray:
        m = np.eye(3)
        m[a, a] = m[b, b] = math.cos(t)
        m[a, b], m[b, a] = -math.sin(t), math.sin(t)
        return m

    return rot(0, 2, yaw) @ rot(0, 1, pitch) @ rot(1, 2, roll)


def voxelise(digits: np.ndarray, seed: int) -> np.ndarray:
    """``[N, 16, 16, 16]`` float32 volumes in [0, 1] from uint8 ``digits [N, 28, 28]``:
    area-resized to 16x16 (axes H, W), extruded along D with a smooth slab profile
    ``(tanh((z - c + h)) - tanh((z - c - h))) / 2`` (half-thickness ``h`` in [2, 4]), then
    rotated about the centre (yaw +-40 deg, pitch +-20 deg, roll +-15 deg) and shifted
    (+-1 voxel per axis) with trilinear resampling, zero outside. Per-example parameters
    come from ``numpy.random.default_rng(seed)`` drawn in example order: deterministic."""
    from scipy import ndimage

    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[1:] != (28, 28):
        raise ValueError(f"digits must be [N, 28, 28], got {digits.shape}")
    n = digits.shape[0]
    rng = np.random.default_rng(seed)
    half = rng.uniform(2.0, 4.0, n)
    angles = rng.uniform(-1.0, 1.0, (n, 3)) * np.radians([40.0, 20.0, 15.0])
    shifts = rng.uniform(-1.0, 1.0, (n, 3))
    r = area_resize_matrix(28, 16)
    planes = np.einsum("ih,nhw,jw->nij", r, digits.astype(np.float64) / 255.0, r)
    z = np.arange(16.0)[None, :] - 7.5
    profile = 0.5 * (np.tanh(z + half[:, None]) - np.tanh(z - half[:, None]))  # [N, 16]
    centre = np.full(3, 7.5)
    out = np.empty((n,) + VOLUME, np.float32)
    for i in range(n):
        slab = profile[i][:, None, None] * planes[i][None]
        inv = _rotation(*angles[i]).T
        offset = centre - inv @ (centre + shifts[i])
        vol = ndimage.affine_transform(slab, inv, offset=offset, order=1, mode="constant",
                                       cval=0.0)
        out[i] = np.clip(vol, 0.0, 1.0)
    return out


def make_standin(mnist_dir: str | os.PathLike, out_path: str | os.PathLike,
                 n_train: int = 10000, n_test: int = 2000, seed: int = 0) -> Path:
    """Write the stand-in (:data:`STANDIN_NOTE`) in the Kaggle layout to ``out_path``: the
    first ``n_train`` MNIST train and ``n_test`` test digits of ``mnist_dir`` (the four
    idx ``.gz`` originals, each checked against ``datasets.SPECS["mnist"]``), voxelised
    (:func:`voxelise`, seeds ``seed`` and ``seed + 1``), flattened in C order, float32,
    gzip-compressed. Written to a temporary file renamed at the end. Returns ``out_path``."""
    import h5py

    from fred_jax import downloads, sources
    from fred_jax.datasets import SPECS

    mnist_dir, out_path = Path(mnist_dir), Path(out_path)
    wanted = {"train": n_train, "test": n_test}
    paths = {s: [mnist_dir / f for f in files] for s, files in MNIST_FILES.items()}
    missing = [str(p) for ps in paths.values() for p in ps if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{STANDIN}: MNIST originals missing: {missing}")
    arrays = {}
    for i, (split, (images, labels)) in enumerate(paths.items()):
        with downloads.open_verified(images, SPECS["mnist"].files[images.name], "mnist") as fx, \
                downloads.open_verified(labels, SPECS["mnist"].files[labels.name], "mnist") as fy:
            x, y = sources.read_idx(fx), sources.read_idx(fy)
        if not 1 <= wanted[split] <= len(x):
            raise ValueError(f"{STANDIN}: n_{split} must be in [1, {len(x)}], got "
                             f"{wanted[split]}")
        x, y = x[:wanted[split]], y[:wanted[split]]
        arrays[split] = (voxelise(x, seed + i).reshape(len(x), -1), y.astype(np.int64))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            for split, (x, y) in arrays.items():
                f.create_dataset(f"X_{split}", data=x, compression="gzip", compression_opts=4,
                                 chunks=(min(len(x), 256), x.shape[1]))
                f.create_dataset(f"y_{split}", data=y)
            f.attrs["note"] = STANDIN_NOTE
            f.attrs["seed"] = seed
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def default_cache_dir() -> Path:
    """Where generated data goes by default: tfds's data dir (``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``), beside the datasets ``fred_jax.data`` prepares."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def locate(name: str, data_dir: str | os.PathLike | None,
           cache_dir: str | os.PathLike | None = None, generate: bool = True) -> Path:
    """The h5 file of dataset ``name`` (``"mnist3d"`` or :data:`STANDIN`).

    mnist3d: ``<data_dir>/mnist3d/full_dataset_vectors.h5`` (FileNotFoundError when the data
    dir is unset or the file is absent). mnist3d_standin: ``<data_dir>/mnist3d_standin/``
    :data:`STANDIN_FILE` if present, else ``<cache_dir>/mnist3d_standin/`` :data:`STANDIN_FILE`,
    generated there on first use from ``<data_dir>/mnist/`` (:func:`make_standin`; with
    ``generate=False`` only checked: FileNotFoundError when neither it nor ``mnist/`` exists)."""
    if name not in ("mnist3d", STANDIN):
        raise ValueError(f"not a 3D MNIST dataset: {name!r}")
    if data_dir is None:
        want = (f"mnist3d/{FILE} (from {KAGGLE_URL})" if name == "mnist3d"
                else "mnist/ (the MNIST originals)")
        raise FileNotFoundError(f"{name}: no data dir; set $FRED_DATA_DIR (or config.data_dir) "
                                f"to a folder with {want}")
    root = Path(data_dir).expanduser()
    if name == "mnist3d":
        return root / "mnist3d" / FILE
    given = root / STANDIN / STANDIN_FILE
    if given.is_file():
        return given
    cached = Path(cache_dir or default_cache_dir()).expanduser() / STANDIN / STANDIN_FILE
    if not cached.is_file():
        if not generate:
            if not (root / "mnist").is_dir():
                raise FileNotFoundError(f"{name}: neither {given} nor {cached} exists, and "
                                        f"{root / 'mnist'} (to generate it from) is missing")
            return cached
        make_standin(root / "mnist", cached)
    return cached
