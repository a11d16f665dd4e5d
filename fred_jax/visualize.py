"""PNG grids of decoded synthetic images (one row per class) and of the class masks.

Layout: tiles separated (and framed) by ``PAD`` gray pixels; small images are upscaled by an
integer factor (nearest neighbour) so that each tile is at least ``MIN_TILE`` pixels on its
longer side (32x32 -> x2, 28x28 -> x3, 8x8 -> x8). Images: 1 channel -> grayscale, 3 -> RGB.
Volumes ``[..., D, H, W, ch]`` show their middle depth slice ``D // 2``. Masks: white = kept
frequency, black = dropped, up to ``MASKS_PER_ROW`` classes per row; a 3-D mask ``[C, D, H, W]``
shows, per (h, w), the fraction of kept frequencies along D as a gray level.

CLI (:func:`fred_jax.cli.visualize_command`): ``python -m fred_jax.visualize --synset
export.npz --out DIR`` writes ``DIR/synset_images.png`` and ``DIR/synset_masks.png``.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from PIL import Image

from fred_jax import safeio

PAD = 2
PAD_VALUE = 128
MIN_TILE = 64
MASKS_PER_ROW = 10


def upscale_factor(height: int, width: int) -> int:
    """Smallest integer factor that makes the longer side at least ``MIN_TILE`` pixels."""
    return max(1, math.ceil(MIN_TILE / max(height, width)))


def to_uint8(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Denormalise channels-last images ``x * std + mean``, clip to [0, 1], round to uint8."""
    x = np.asarray(images, np.float64) * np.asarray(std, np.float64) + np.asarray(mean, np.float64)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _tile(tiles: np.ndarray, scale: int) -> np.ndarray:
    """``[R, K, h, w, ch]`` uint8 -> padded, upscaled grid ``[H, W, ch]``."""
    rows, cols, h, w, ch = tiles.shape
    tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)
    th, tw = h * scale, w * scale
    out = np.full((rows * th + (rows + 1) * PAD, cols * tw + (cols + 1) * PAD, ch), PAD_VALUE,
                  np.uint8)
    for r in range(rows):
        for c in range(cols):
            y0, x0 = PAD + r * (th + PAD), PAD + c * (tw + PAD)
            out[y0:y0 + th, x0:x0 + tw] = tiles[r, c]
    return out


def _write(path: str | os.PathLike, grid: np.ndarray) -> None:
    """The PNG of ``grid``, written atomically (``fred_jax.safeio.atomic_write``)."""
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    image = Image.fromarray(grid[..., 0] if mode == "L" else grid, mode=mode)
    safeio.atomic_write(path, lambda f: image.save(f, format="PNG"))


def image_grid(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float], max_per_class: int = 10
) -> np.ndarray:
    """uint8 grid ``[H, W, ch]`` for normalised images ``[C, n, H, W, ch]`` (or volumes
    ``[C, n, D, H, W, ch]``, middle slice): one row per class, at most ``max_per_class``."""
    images = np.asarray(images)
    if images.ndim == 6:
        images = images[:, :, images.shape[2] // 2]
    if images.ndim != 5 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be [C, n, H, W, ch] or [C, n, D, H, W, ch] with ch 1 or 3, "
            f"got {images.shape}"
        )
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
    images = images[:, :max_per_class]
    pixels = to_uint8(images, mean, std)
    return _tile(pixels, upscale_factor(*images.shape[2:4]))


def save_image_grid(
    path: str | os.PathLike,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    max_per_class: int = 10,
) -> None:
    """Write ``image_grid(images, mean, std, max_per_class)`` as a PNG."""
    _write(path, image_grid(images, mean, std, max_per_class))


def mask_grid(masks: np.ndarray) -> np.ndarray:
    """uint8 grid ``[H, W, 1]`` for class masks ``bool[C, H, W]`` (or ``[C, D, H, W]``)."""
    masks = np.asarray(masks)
    if masks.ndim not in (3, 4):
        raise ValueError(f"masks must be [C, H, W] or [C, D, H, W], got {masks.shape}")
    level = masks.astype(np.float64)
    if level.ndim == 4:
        level = level.mean(axis=1)
    c, h, w = level.shape
    cols = min(c, MASKS_PER_ROW)
    rows = math.ceil(c / cols)
    tiles = np.full((rows * cols, h, w), PAD_VALUE, np.uint8)
    tiles[:c] = np.round(level * 255.0).astype(np.uint8)
    return _tile(tiles.reshape(rows, cols, h, w, 1), upscale_factor(h, w))


def save_mask_grid(path: str | os.PathLike, masks: np.ndarray) -> None:
    """Write ``mask_grid(masks)`` as a grayscale PNG."""
    _write(path, mask_grid(masks))


def indices_to_masks(indices: np.ndarray, spatial_shape: Sequence[int]) -> np.ndarray:
    """``bool[C, *spatial]`` from kept flat positions ``[C, k]``."""
    indices = np.asarray(indices)
    out = np.zeros((indices.shape[0], math.prod(spatial_shape)), bool)
    np.put_along_axis(out, indices, True, axis=1)
    return out.reshape((indices.shape[0],) + tuple(spatial_shape))


if __name__ == "__main__":  # run as a script this file is __main__, not fred_jax.visualize
    from fred_jax import cli

    cli.visualize_command()
