"""Robustness of a distilled set to distribution shift (paper Figure 7 and Table 5; official
``corruption-exp/``): train the evaluation networks once, test the same networks on the clean
test set and on every shifted test set.

Test sets (each read lazily, one at a time, after every file was checked):

- CIFAR-10-C (:func:`cifar10c_sets`): a folder of ``<corruption>.npy`` (uint8 ``[5 n, 32, 32, 3]``,
  severities 1..5 one after another, n = 10000) and ``labels.npy`` (``[5 n]``, the CIFAR-10 test
  labels in the original order, repeated per severity);
- CIFAR-10.1 (:func:`cifar101_sets`): ``cifar10.1_v6_data.npy`` (uint8 ``[2000, 32, 32, 3]``) and
  ``cifar10.1_v6_labels.npy``, keyed as severity 0;
- ImageNet-C (:func:`imagenet_c_sets`): ``<corruption>/<severity>/<wnid>/*.JPEG``; only the wnids
  of the dataset's classes are read (label = position in the subset, FreD's class order,
  :data:`fred_jax.data.IMAGENET_SUBSETS`), squashed to the dataset's size as
  :func:`fred_jax.data.resize_bilinear` squashes the training images (bilinear, no antialias);
- on-the-fly corruptions of the clean test set (:func:`corrupted_sets`,
  :mod:`fred_jax.corruptions`).

Normalisation: every test set is normalised with the training dataset's own statistics
(``dataset.mean`` / ``dataset.std``, then ZCA when the dataset has it), the statistics the
networks were trained under. The official script normalises CIFAR-10-C and CIFAR-10.1 with
mean = std = 0.5 while its synthetic sets were learnt and trained on CIFAR-10 statistics
(mean ~0.49, std ~0.20): its networks then see inputs ~2.5x less spread than in training, which
mixes a normalisation shift into the corruption shift. We do not. (Its ImageNet-C path uses the
ImageNet statistics the subsets were trained with, as we do.)

Results: ``{set: {severity: {mean, std, accs}}}`` (percent, one accuracy per network; severity 0
for the clean set and CIFAR-10.1), per set the mean over its severities (``per_set``, per
network, then mean/std over networks) and ``overall``: the mean over all (corruption, severity)
pairs with severity >= 1, the paper's number.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fred_jax import corruptions, data, evaluate as evaluation

COMMON_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression")
"""The 15 corruptions of the official script (``common_corruptions``, its order)."""

SEVERITIES = corruptions.SEVERITIES
KINDS = ("cifar10c", "cifar10.1", "imagenet_c", "corrupt")
"""Kinds of :func:`sets_for`: the three archives and the on-the-fly corruptions."""

Loader = Callable[[], tuple[np.ndarray, np.ndarray]]
Sets = dict[str, dict[int, Loader]]
"""``{set name: {severity: loader}}``; a loader returns ``(x normalised float32, y int32)``."""


def prepare(pixels: np.ndarray, dataset) -> np.ndarray:
    """Pixels in [0, 255] ``[N, H, W, C]`` -> float32 normalised as ``dataset``'s test split."""
    x = data.normalise(np.asarray(pixels), dataset.mean, dataset.std)
    if getattr(dataset, "zca", None) is not None:
        x = data.zca_apply(x, dataset.zca_mean, dataset.zca)
    return x


def clean_pixels(dataset) -> np.ndarray:
    """The uint8 test images of ``dataset`` (normalisation undone, rounded); ValueError for
    ZCA-whitened data (pass the pixels to :func:`corrupted_sets` instead)."""
    if getattr(dataset, "zca", None) is not None:
        raise ValueError("the test set is ZCA-whitened: pass its uint8 pixels (pixels=...)")
    x = np.asarray(dataset.x_test, np.float32) * dataset.std + dataset.mean
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _check_cifar_dataset(dataset, what: str) -> None:
    if tuple(dataset.image_shape) != (32, 32, 3) or dataset.num_classes != 10:
        raise ValueError(f"{what} tests networks trained on CIFAR-10 (32x32x3, 10 classes); "
                         f"the dataset is {dataset.name} {tuple(dataset.image_shape)}, "
                         f"{dataset.num_classes} classes")


def _npy_shape(path: Path, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of ``path`` (nothing else is read)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected {what}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a .npy array ({e}); expected {what}") from None
    return arr.shape, arr.dtype


def _check_labels(path: Path, n: int | None, what: str, num_classes: int) -> np.ndarray:
    shape, dtype = _npy_shape(path, what)
    if len(shape) != 1 or (n is not None and shape[0] != n) or not np.issubdtype(
            dtype, np.integer):
        raise ValueError(f"{path}: labels {dtype} {shape}, expected {what}")
    labels = np.load(path).astype(np.int32)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels outside [0, {num_classes})")
    return labels


def _check_images(path: Path, n: int, size: tuple[int, ...], what: str) -> None:
    shape, dtype = _npy_shape(path, what)
    if shape != (n, *size) or dtype != np.uint8:
        raise ValueError(f"{path}: {dtype} {shape}, expected {what}")


def _check_severities(severities: Sequence[int]) -> tuple[int, ...]:
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise ValueError(f"severities must be a non-empty subset of {SEVERITIES}, got "
                         f"{tuple(severities)}")
    return tuple(severities)


def cifar10c_sets(folder: str | os.PathLike, dataset,
                  names: Sequence[str] = COMMON_CORRUPTIONS,
                  severities: Sequence[int] = SEVERITIES) -> Sets:
    """CIFAR-10-C as :data:`Sets`, every file's presence and shape checked first."""
    _check_cifar_dataset(dataset, "CIFAR-10-C")
    severities = _check_severities(severities)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; expected the CIFAR-10-C folder "
                                f"(<corruption>.npy files and labels.npy)")
    labels = _check_labels(folder / "labels.npy", None, "CIFAR-10-C labels [5 n] integers", 10)
    if len(labels) == 0 or len(labels) % len(SEVERITIES):
        raise ValueError(f"{folder / 'labels.npy'}: {len(labels)} labels, expected 5 n "
                         f"(n test images per severity)")
    n = len(labels) // len(SEVERITIES)
    what = f"uint8 [{5 * n}, 32, 32, 3] (5 severities x {n} images, as labels.npy)"
    missing = [c for c in names if not (folder / f"{c}.npy").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(f'{c}.npy' for c in missing)}")
    for c in names:
        _check_images(folder / f"{c}.npy", 5 * n, (32, 32, 3), what)

    def loader(path: Path, s: int) -> Loader:
        rows = slice((s - 1) * n, s * n)
        return lambda: (prepare(np.load(path, mmap_mode="r")[rows], dataset), labels[rows])

    return {c: {s: loader(folder / f"{c}.npy", s) for s in severities} for c in names}


def cifar101_sets(folder: str | os.PathLike, dataset, version: str = "v6") -> Sets:
    """CIFAR-10.1 (``cifar10.1_<version>_{data,labels}.npy`` in ``folder``) as severity 0 of
    the set ``cifar10.1``."""
    _check_cifar_dataset(dataset, "CIFAR-10.1")
    folder = Path(folder)
    xpath = folder / f"cifar10.1_{version}_data.npy"
    labels = _check_labels(folder / f"cifar10.1_{version}_labels.npy", None,
                           "CIFAR-10.1 labels [N] integers", 10)
    _check_images(xpath, len(labels), (32, 32, 3),
                  f"uint8 [{len(labels)}, 32, 32, 3] (as many images as labels)")
    return {"cifar10.1": {0: lambda: (prepare(np.load(xpath), dataset), labels)}}


def subset_wnids(dataset) -> tuple[str, ...]:
    """ImageNet wnids of ``dataset``'s classes, in label order: its class names when they are
    wnids (tfds ``imagenet2012`` names), else :data:`fred_jax.data.IMAGENET_SUBSETS` ids
    looked up in tfds's ``imagenet2012`` label list."""
    names = tuple(dataset.class_names)
    if names and all(re.fullmatch(r"n\d{8}", n) for n in names):
        return names
    if dataset.name not in data.IMAGENET_SUBSETS:
        raise ValueError(f"{dataset.name} is not an ImageNet subset (known: "
                         f"{', '.join(data.IMAGENET_SUBSETS)}) and its classes are not wnids")
    from importlib import resources

    listing = resources.files("tensorflow_datasets.datasets.imagenet2012") / "labels.txt"
    all_wnids = listing.read_text().split()
    return tuple(all_wnids[i] for i in data.IMAGENET_SUBSETS[dataset.name])


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))


def imagenet_c_sets(folder: str | os.PathLike, dataset,
                    names: Sequence[str] = COMMON_CORRUPTIONS,
                    severities: Sequence[int] = SEVERITIES,
                    wnids: Sequence[str] | None = None) -> Sets:
    """ImageNet-C restricted to ``dataset``'s classes (``wnids``, default
    :func:`subset_wnids`), every ``<corruption>/<severity>/<wnid>`` folder checked first."""
    severities = _check_severities(severities)
    wnids = tuple(subset_wnids(dataset) if wnids is None else wnids)
    if len(wnids) != dataset.num_classes:
        raise ValueError(f"{len(wnids)} wnids for {dataset.num_classes} classes")
    folder = Path(folder)
    missing, files = [], {}
    for c in names:
        for s in severities:
            for label, w in enumerate(wnids):
                sub = folder / c / str(s) / w
                found = _images_in(sub) if sub.is_dir() else []
                if not found:
                    missing.append(str(sub))
                files.setdefault((c, s), []).extend((p, label) for p in found)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(f"ImageNet-C: no images in {', '.join(missing[:5])}{more}")
    size = tuple(dataset.image_shape[:2])

    def loader(pairs: list[tuple[Path, int]]) -> Loader:
        def load() -> tuple[np.ndarray, np.ndarray]:
            from PIL import Image

            pixels = np.stack([data.resize_bilinear(
                np.asarray(Image.open(p).convert("RGB")), size) for p, _ in pairs])
            return prepare(pixels, dataset), np.array([y for _, y in pairs], np.int32)
        return load

    return {c: {s: loader(files[c, s]) for s in severities} for c in names}


def corrupted_sets(dataset, names: Sequence[str] = corruptions.NAMES,
                   severities: Sequence[int] = SEVERITIES, *, seed: int = 0,
                   pixels: np.ndarray | None = None, num_test: int | None = None) -> Sets:
    """The clean test set (severity 0 of ``clean``) and its on-the-fly corruptions
    (:func:`fred_jax.corruptions.corrupt`, ``seed``). ``pixels``: its uint8 images (default
    :func:`clean_pixels`). ``num_test``: a class-balanced subset of ``num_test // C`` images per
    class (drawn with ``seed``) for every set, clean included; None: all."""
    severities = _check_severities(severities)
    unknown = [n for n in names if n not in corruptions.PARAMS]
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; choose from {corruptions.NAMES}")
    pixels = clean_pixels(dataset) if pixels is None else np.asarray(pixels)
    labels = np.asarray(dataset.y_test, np.int32)
    if pixels.dtype != np.uint8 or pixels.shape != (len(labels), *dataset.image_shape):
        raise ValueError(f"pixels: {pixels.dtype} {pixels.shape}, expected uint8 "
                         f"[{len(labels)}, {', '.join(map(str, dataset.image_shape))}]")
    if num_test is not None:
        per = num_test // dataset.num_classes
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(labels == c) for c in range(dataset.num_classes)]
        if per < 1 or min(len(m) for m in members) < per:
            raise ValueError(f"num_test={num_test}: need 1 <= num_test // classes <= the "
                             f"smallest class's test images")
        idx = np.concatenate([np.sort(rng.choice(m, per, replace=False)) for m in members])
        pixels, labels = pixels[idx], labels[idx]

    def loader(name: str, s: int) -> Loader:
        return lambda: (prepare(corruptions.corrupt(pixels, name, s, seed), dataset), labels)

    sets: Sets = {"clean": {0: lambda: (prepare(pixels, dataset), labels)}}
    sets.update({name: {s: loader(name, s) for s in severities} for name in names})
    return sets


def sets_for(kind: str, dataset, folder: str | os.PathLike | None = None, *,
             names: Sequence[str] | None = None, severities: Sequence[int] = SEVERITIES,
             seed: int = 0, num_test: int | None = None) -> Sets:
    """:data:`Sets` of one of :data:`KINDS` (the command line's entry point)."""
    if kind not in KINDS:
        raise ValueError(f"unknown robustness set {kind!r}; choose from {', '.join(KINDS)}")
    if kind == "corrupt":
        return corrupted_sets(dataset, names or corruptions.NAMES, severities, seed=seed,
                              num_test=num_test)
    if folder is None:
        raise ValueError(f"{kind} needs the folder holding its files")
    if kind == "cifar10c":
        return cifar10c_sets(folder, dataset, names or COMMON_CORRUPTIONS, severities)
    if kind == "imagenet_c":
        return imagenet_c_sets(folder, dataset, names or COMMON_CORRUPTIONS, severities)
    return cifar101_sets(folder, dataset)


def _summary(accs) -> dict:
    accs = np.asarray(accs, np.float64)
    return {"mean": float(accs.mean()), "std": float(accs.std()),
            "accs": [float(a) for a in accs]}


def evaluate(key: jax.Array, x_syn, y_syn, dataset, sets: Mapping[str, Mapping[int, Loader]], *,
             model: str = "ConvNet", num_eval: int = 5, epochs: int, lr: float,
             test_batch_size: int = 256, progress: bool = True, **train_kwargs) -> dict:
    """Train ``num_eval`` ``model`` networks on the synthetic set once (the networks of
    ``fred_jax.evaluate.train_and_test(key, ...)``: keys ``seed_keys(key, num_eval)``), then
    test the same networks on the clean test set (``sets['clean']`` when given, else
    ``dataset``'s) and on every set of ``sets``.

    ``x_syn``: ``[N, *spatial, C]`` with labels ``y_syn``, or class-major ``[C, n, ...]``
    (``y_syn`` may then be None). ``train_kwargs`` go to ``fred_jax.evaluate.train_seeds``
    (batch_size, dsa, dsa_strategy, dc_strategy, conv_impl, ...). Returns ``sets``
    (``{set: {severity: {mean, std, accs}}}``, ``clean`` included), ``per_set``, ``overall``
    (None without a severity >= 1), ``train`` (the training run's summary) and the settings.
    """
    start = time.perf_counter()
    x_syn = np.asarray(x_syn)
    if x_syn.ndim == np.ndim(dataset.x_test) + 1:
        c, n = x_syn.shape[:2]
        y_syn = np.repeat(np.arange(c, dtype=np.int32), n) if y_syn is None else y_syn
        x_syn = x_syn.reshape(c * n, *x_syn.shape[2:])
    if y_syn is None:
        raise ValueError("y_syn is required for a flat [N, ...] synthetic set")
    bad = {name: list(sev) for name, sev in sets.items()
           if not sev or any(not isinstance(s, int) or not 0 <= s <= 5 for s in sev)}
    if "clean" in sets and list(sets["clean"]) != [0]:
        bad["clean"] = list(sets["clean"])
    if bad:
        raise ValueError(f"sets map names to {{severity 0..5: loader}} (clean: 0 only); bad "
                         f"severities {bad}")
    sets = dict(sets)
    clean = sets.pop("clean", {0: lambda: (dataset.x_test, dataset.y_test)})
    x_clean, y_clean = clean[0]()
    trained = evaluation.train_seeds(
        evaluation.seed_keys(key, num_eval), model, x_syn, y_syn, x_clean, y_clean,
        num_classes=dataset.num_classes, epochs=epochs, lr=lr, test_batch_size=test_batch_size,
        progress=progress, return_state=True, **train_kwargs)
    trained.pop("state")
    test = trained.pop("tester")

    per_cell: dict[str, dict[int, np.ndarray]] = {"clean": {0: test(x_clean, y_clean)}}
    del x_clean
    bar = _progress([(name, s) for name, sev in sets.items() for s in sev], progress)
    for name, s in bar:
        per_cell.setdefault(name, {})[s] = test(*sets[name][s]())
        bar.set_postfix(last=f"{name}/{s}")
    corrupted = [a for sev in per_cell.values() for s, a in sev.items() if s >= 1]
    return {
        "model": model, "num_eval": num_eval, "epochs": epochs, "lr": lr,
        "sets": {name: {s: _summary(a) for s, a in sev.items()} for name, sev in per_cell.items()},
        "per_set": {name: _summary(np.mean(list(sev.values()), axis=0))
                    for name, sev in per_cell.items()},
        "overall": _summary(np.mean(corrupted, axis=0)) if corrupted else None,
        "train": {k: v for k, v in trained.items()
                  if k not in ("train_loss", "train_acc", "lr_per_epoch")},
        "normalisation": "training dataset statistics (the official script: mean = std = 0.5)",
        "seconds": time.perf_counter() - start,
    }


def _progress(items: list, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(items, desc="robustness", disable=not enabled, leave=False)


def format_table(results: dict) -> str:
    """Markdown table: one row per set, a column per severity and the set's mean (percent)."""
    sevs = sorted({s for sev in results["sets"].values() for s in sev if s >= 1})
    lines = ["| set | " + " | ".join(f"s{s}" for s in sevs) + " | mean |",
             "| --- |" + " --- |" * (len(sevs) + 1)]
    for name, sev in results["sets"].items():
        cells = [f"{sev[s]['mean']:.2f}" if s in sev else "" for s in sevs]
        m = results["per_set"][name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['mean']:.2f} +- "
                     f"{m['std']:.2f} |")
    if results["overall"] is not None:
        o = results["overall"]
        lines.append("| **mean (corrupted)** |" + " |" * len(sevs)
                     + f" **{o['mean']:.2f} +- {o['std']:.2f}** |")
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | os.PathLike, name: str = "robustness",
                 title: str = "") -> tuple[Path, Path]:
    """``<out_dir>/<name>.json`` (``results``) and ``<name>.png``: a heat map of the mean
    accuracy per corrupted set (rows) and severity (columns, then the set's mean), annotated,
    the clean / severity-0 sets and the overall mean in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    json_path.write_text(json.dumps(results, indent=1))
    rows = [n for n, sev in results["sets"].items() if any(s >= 1 for s in sev)]
    sevs = sorted({s for n in rows for s in results["sets"][n] if s >= 1})
    heads = [f"{n} {results['sets'][n][0]['mean']:.1f}%" for n, sev in results["sets"].items()
             if 0 in sev]
    if results["overall"] is not None:
        heads.append(f"corrupted mean {results['overall']['mean']:.1f}%")
    grid = np.full((max(len(rows), 1), len(sevs) + 1), np.nan)
    for i, n in enumerate(rows):
        for j, s in enumerate(sevs):
            grid[i, j] = results["sets"][n].get(s, {"mean": np.nan})["mean"]
        grid[i, -1] = results["per_set"][n]["mean"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * grid.shape[1] + 1.6,
                                    1.2 + 0.32 * grid.shape[0]), dpi=120)
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=np.nanmin(grid) if rows else 0,
                   vmax=np.nanmax(grid) if rows else 100)
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if v < np.nanmean(grid) else "black")
    ax.set_xticks(range(grid.shape[1]), [str(s) for s in sevs] + ["mean"])
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("severity")
    ax.set_title("\n".join(t for t in (title, ", ".join(heads)) if t), fontsize=8)
    fig.colorbar(im, ax=ax, label="test accuracy (%)")
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return json_path, png_path
