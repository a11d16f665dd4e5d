"""Common corruptions of uint8 images at the CIFAR-10-C severities, computed on the fly.

Robustness can then be measured without the CIFAR-10-C archive (:mod:`fred_jax.robustness`).
Provenance: the formulas and the five severity constants of each corruption are those of
Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), script ``ImageNet-C/create_c/make_cifar_c.py`` of
github.com/hendrycks/robustness (the script that made CIFAR-10-C), rewritten with NumPy, SciPy
and Pillow (no skimage, OpenCV or ImageMagick):

- ``gaussian_noise``: ``x + N(0, c)``, c = .04 .06 .08 .09 .10 (x in [0, 1]);
- ``shot_noise``: ``Poisson(x c) / c``, c = 500 250 100 75 50;
- ``impulse_noise``: salt-and-pepper (skimage ``random_noise(mode='s&p')``: each value
  replaced with probability c, by 1 or 0 with equal odds), c = .01 .02 .03 .05 .07;
- ``speckle_noise``: ``x + x N(0, c)``, c = .06 .1 .12 .16 .2;
- ``gaussian_blur``: skimage ``gaussian(sigma=c)`` = ``scipy.ndimage.gaussian_filter`` with
  sigma (c, c, 0), mode ``nearest``, truncate 4, c = .4 .6 .7 .8 1;
- ``defocus_blur``: correlation (border ``reflect-101`` = scipy ``mirror``, OpenCV
  ``filter2D``'s default) with a disk of radius r (pixels of a grid -8..8 with
  ``X^2 + Y^2 <= r^2``, normalised to sum 1) smoothed by a 3x3 Gaussian of sigma s
  (OpenCV ``GaussianBlur((3, 3), s)``), (r, s) = (.3, .4) (.4, .5) (.5, .6) (1, .2) (1.5, .1);
- ``contrast``: ``(x - m) c + m`` with m the image's per-channel mean, c = .75 .5 .4 .3 .15;
- ``brightness``: HSV value ``V + c`` clipped to 1 (skimage ``rgb2hsv`` / ``hsv2rgb``),
  c = .05 .1 .15 .2 .3;
- ``saturate``: HSV saturation ``S a + b`` clipped, (a, b) = (.3, 0) (.1, 0) (1.5, 0) (2, .1)
  (2.5, .2);
- ``jpeg_compression``: Pillow JPEG at quality c = 80 65 58 50 40;
- ``pixelate``: Pillow ``BOX`` resize to ``int(size c)`` and back, c = .95 .9 .85 .75 .65.

Each result is clipped to [0, 1] and cast as the script casts (``np.uint8(x * 255)``: truncation,
not rounding). Randomness comes from ``np.random.default_rng([seed, crc32(name), severity])``,
so a set is the same whatever else is generated; it is not the archive's (unseeded) draw. Not
offered (they need ImageMagick, OpenCV warps or the frost pictures): glass, motion and zoom
blur, snow, frost, fog, elastic, spatter. Images: ``[N, H, W, C]`` uint8 with C = 1 or 3 (HSV
corruptions: C = 3; on one channel ``brightness`` is ``x + c``).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)

PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "saturate": ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
"""Severity 1..5 constants of ``make_cifar_c.py`` per corruption."""

NAMES = tuple(PARAMS)


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """``[..., 3]`` RGB in [0, 1] -> HSV in [0, 1], as skimage ``rgb2hsv`` (ties: blue, then
    green, then red is the maximum; hue 0 and saturation 0 for grey)."""
    v = x.max(-1)
    delta = v - x.min(-1)
    grey = delta == 0
    safe = np.where(grey, 1.0, delta)
    s = np.where(grey, 0.0, delta / np.where(v == 0, 1.0, v))
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    h = np.where(r == v, (g - b) / safe, 0.0)
    h = np.where(g == v, 2.0 + (b - r) / safe, h)
    h = np.where(b == v, 4.0 + (r - g) / safe, h)
    h = np.where(grey, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], -1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv` (skimage ``hsv2rgb``: the largest channel is ``v``
    exactly)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    cases = [sector % 6 == i for i in range(5)]  # sector 5: the default
    return np.stack([np.select(cases, [v, q, p, p, t], v), np.select(cases, [t, v, v, q, p], p),
                     np.select(cases, [p, p, t, v, v], q)], -1)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus kernel of ``make_cifar_c.py`` ``disk`` (radius <= 8), cropped to its
    non-zero support (the correlation is unchanged)."""
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur ** 2))
    taps /= taps.sum()
    kernel = ndimage.correlate1d(ndimage.correlate1d(disk, taps, 0, mode="mirror"), taps, 1,
                                 mode="mirror")
    rows, cols = np.flatnonzero(kernel.any(1)), np.flatnonzero(kernel.any(0))
    return kernel[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _pil_each(x: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    out = np.empty_like(x)
    for i, img in enumerate(x):
        res = np.asarray(fn(Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)))
        out[i] = res.reshape(img.shape)
    return out


def _jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def fn(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return Image.open(buf)
    return fn


def _pixelate(c: float) -> Callable[[Image.Image], Image.Image]:
    def fn(img: Image.Image) -> Image.Image:
        w, h = img.size
        small = img.resize((int(w * c), int(h * c)), Image.BOX)
        return small.resize((w, h), Image.BOX)
    return fn


def _float_corruption(name: str, x: np.ndarray, c, rng: np.random.Generator) -> np.ndarray:
    """``name`` on float images ``x [N, H, W, C]`` in [0, 1] (unclipped result)."""
    if name == "gaussian_noise":
        return x + rng.normal(scale=c, size=x.shape)
    if name == "shot_noise":
        return rng.poisson(x * c) / c
    if name == "impulse_noise":
        flipped = rng.random(x.shape) < c
        salted = rng.random(x.shape) < 0.5
        return np.where(flipped, salted.astype(x.dtype), x)
    if name == "speckle_noise":
        return x + x * rng.normal(scale=c, size=x.shape)
    if name == "gaussian_blur":
        return ndimage.gaussian_filter(x, (0, c, c, 0), mode="nearest", truncate=4.0)
    if name == "defocus_blur":
        kernel = disk_kernel(*c)[None, :, :, None]
        return ndimage.correlate(x, kernel, mode="mirror")
    if name == "contrast":
        means = x.mean(axis=(1, 2), keepdims=True)
        return (x - means) * c + means
    if name in ("brightness", "saturate"):
        if x.shape[-1] == 1 and name == "brightness":
            return np.minimum(x + c, 1.0)
        if x.shape[-1] != 3:
            raise ValueError(f"{name} needs RGB images, got {x.shape[-1]} channels")
        hsv = rgb_to_hsv(x)
        if name == "brightness":
            hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        else:
            hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
        return hsv_to_rgb(hsv)
    raise AssertionError(name)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0,
            chunk: int = 1000) -> np.ndarray:
    """``images [N, H, W, C]`` uint8 corrupted by ``name`` at ``severity`` (1..5) -> uint8 of the
    same shape; deterministic given ``seed`` (float work in pieces of ``chunk`` images)."""
    if name not in PARAMS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(NAMES)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be uint8 [N, H, W, 1 or 3], got {images.dtype} "
                         f"{images.shape}")
    c = PARAMS[name][severity - 1]
    if name == "jpeg_compression":
        return _pil_each(images, _jpeg(c))
    if name == "pixelate":
        return _pil_each(images, _pixelate(c))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), severity])
    out = np.empty_like(images)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].astype(np.float64) / 255.0
        y = _float_corruption(name, x, c, rng)
        out[i:i + chunk] = (np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out
