"""Tests for fred_jax.visualize: grid geometry, pixel values, CLI."""

import numpy as np
import pytest
from PIL import Image

from fred_jax import cli, synset, visualize
from fred_jax.visualize import PAD, PAD_VALUE

MEAN = np.array([0.4914, 0.4822, 0.4465])
STD = np.array([0.2023, 0.1994, 0.2010])


def _grid_size(rows, cols, h, w, scale):
    return (cols * w * scale + (cols + 1) * PAD, rows * h * scale + (rows + 1) * PAD)


def test_image_grid_rgb_pixels_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 12, 8, 8, 3)).astype(np.uint8)
    normalised = ((pixels / 255.0 - MEAN) / STD).astype(np.float32)
    path = tmp_path / "img.png"
    visualize.save_image_grid(path, normalised, MEAN, STD, max_per_class=10)
    img = Image.open(path)
    scale = visualize.upscale_factor(8, 8)
    assert scale == 8 and img.mode == "RGB"
    assert img.size == _grid_size(3, 10, 8, 8, scale)
    a = np.asarray(img)
    for c, i in [(0, 0), (2, 9), (1, 4)]:
        y0, x0 = PAD + c * (8 * scale + PAD), PAD + i * (8 * scale + PAD)
        tile = a[y0:y0 + 8 * scale:scale, x0:x0 + 8 * scale:scale]
        np.testing.assert_array_equal(tile, pixels[c, i])
    assert (a[:PAD] == PAD_VALUE).all() and (a[:, :PAD] == PAD_VALUE).all()


def test_image_grid_gray_volume_and_clipping(tmp_path):
    vol = np.zeros((2, 3, 5, 28, 28, 1), np.float32)
    vol[:, :, 2] = 10.0  # middle slice, clips to white
    vol[:, :, 2, 0, 0] = -10.0  # clips to black
    path = tmp_path / "vol.png"
    visualize.save_image_grid(path, vol, [0.5], [0.25])
    img = Image.open(path)
    assert img.mode == "L" and img.size == _grid_size(2, 3, 28, 28, 3)
    a = np.asarray(img)
    assert a[PAD, PAD] == 0 and a[PAD + 5, PAD + 5] == 255


def test_mask_grid(tmp_path):
    masks = np.zeros((12, 4, 4), bool)
    masks[:, 0, 0] = True
    masks[3, 3, 2] = True
    path = tmp_path / "m.png"
    visualize.save_mask_grid(path, masks)
    a = np.asarray(Image.open(path))
    s = visualize.upscale_factor(4, 4)
    assert (a.shape[1], a.shape[0]) == _grid_size(2, 10, 4, 4, s)

    def tile(r, c):
        return a[PAD + r * (4 * s + PAD):, PAD + c * (4 * s + PAD):][:4 * s:s, :4 * s:s]

    np.testing.assert_array_equal(tile(0, 3), masks[3] * 255)
    np.testing.assert_array_equal(tile(1, 1), masks[11] * 255)
    np.testing.assert_array_equal(tile(1, 2), PAD_VALUE)  # empty slot
    vol = visualize.mask_grid(np.ones((2, 4, 3, 3), bool))
    assert vol.shape == (2 * PAD + 3 * 22, 3 * PAD + 2 * 3 * 22, 1)


def test_errors():
    with pytest.raises(ValueError, match="ch 1 or 3"):
        visualize.image_grid(np.zeros((2, 2, 4, 4, 2)), [0, 0], [1, 1])
    with pytest.raises(ValueError, match="masks must be"):
        visualize.mask_grid(np.zeros((4, 4), bool))


def test_cli_writes_both_pngs(tmp_path):
    rng = np.random.default_rng(1)
    s = synset.SynSet(
        coeffs=rng.normal(size=(2, 3, 8, 3)).astype(np.float32),
        indices=np.sort([rng.choice(64, 8, replace=False) for _ in range(2)]).astype(np.int32),
        transform="dct",
        image_shape=(8, 8, 3),
    )
    export = tmp_path / "syn.npz"
    synset.save(export, s, mean=MEAN, std=STD, dataset="toy")
    argv = ["--synset", str(export), "--out", str(tmp_path / "o")]
    images_path, masks_path = cli.visualize_command(argv)
    assert Image.open(images_path).size == _grid_size(2, 3, 8, 8, 8)
    m = np.asarray(Image.open(masks_path))
    kept = visualize.indices_to_masks(s.indices, (8, 8))
    np.testing.assert_array_equal(m[PAD:PAD + 64:8, PAD:PAD + 64:8], kept[0] * 255)
    assert kept.sum() == 16
