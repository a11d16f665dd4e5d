"""Tests for fred_jax.robustness (readers of the official layouts, evaluation of the same
networks on shifted sets, report) and fred_jax.corruptions (CIFAR-10-C severities)."""

import types

import jax
import numpy as np
import pytest
from PIL import Image

from fred_jax import corruptions as co
from fred_jax import data, robustness as rb
from fred_jax import evaluate as ev

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2023, 0.1994, 0.2010], np.float32)


def _dataset(num_classes=10, shape=(32, 32, 3), n_test=20, seed=0, **kw):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n_test, *shape), dtype=np.uint8)
    y = np.arange(n_test, dtype=np.int32) % num_classes
    mean, std = MEAN[:shape[-1]], STD[:shape[-1]]
    fields = dict(name="cifar10", num_classes=num_classes, image_shape=shape, mean=mean,
                  std=std, class_names=tuple(str(i) for i in range(num_classes)), zca=None,
                  x_test=data.normalise(pixels, mean, std), y_test=y, pixels=pixels)
    fields.update(kw)
    return types.SimpleNamespace(**fields)


def _images(n=8, size=32, channels=3, seed=0):
    """Natural-looking test images: smooth gradients, a bright square and mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.2, 0.8, 3)
        img = np.stack([a * xx + (1 - a) * yy, b * yy, c * (1 - xx)][:channels], -1)
        r, q = rng.integers(4, size // 2, 2)
        img[r:r + 8, q:q + 8] = rng.uniform(0.6, 1.0, channels)
        img = img + 0.05 * rng.standard_normal(img.shape)
        out.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.stack(out)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


# ---------------------------------------------------------------------------------- readers


@pytest.fixture()
def cifar10c(tmp_path):
    n = 4
    rng = np.random.default_rng(1)
    files = {}
    for c in ("gaussian_noise", "fog"):
        files[c] = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        np.save(tmp_path / f"{c}.npy", files[c])
    labels = np.tile(np.arange(n) * 2 + 1, 5).astype(np.uint8)  # as the archive: uint8
    np.save(tmp_path / "labels.npy", labels)
    return tmp_path, files, labels, n


def test_cifar10c_reader_shapes_labels_and_normalisation(cifar10c):
    folder, files, labels, n = cifar10c
    sets = rb.cifar10c_sets(folder, _dataset(), names=("gaussian_noise", "fog"))
    assert sorted(sets) == ["fog", "gaussian_noise"] and sorted(sets["fog"]) == [1, 2, 3, 4, 5]
    x, y = sets["fog"][3]()
    assert x.shape == (n, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(y, labels[2 * n:3 * n])
    want = (files["fog"][2 * n:3 * n] / 255.0 - MEAN) / STD  # dataset statistics, not 0.5
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-5)
    assert x[0, 0, 0, 0] == pytest.approx((files["fog"][8, 0, 0, 0] / 255 - 0.4914) / 0.2023,
                                          abs=1e-5)


def test_cifar10c_errors_name_the_file(cifar10c):
    folder, files, _, n = cifar10c
    ds = _dataset()
    with pytest.raises(FileNotFoundError, match=r"missing snow\.npy, frost\.npy"):
        rb.cifar10c_sets(folder, ds, names=("fog", "snow", "frost"))
    np.save(folder / "contrast.npy", files["fog"][:, :16])
    with pytest.raises(ValueError, match=r"contrast\.npy: uint8 \(20, 16, 32, 3\), expected "
                                         r"uint8 \[20, 32, 32, 3\]"):
        rb.cifar10c_sets(folder, ds, names=("fog", "contrast"))
    with pytest.raises(ValueError, match="severities"):
        rb.cifar10c_sets(folder, ds, names=("fog",), severities=(0, 6))
    with pytest.raises(ValueError, match="trained on CIFAR-10"):
        rb.cifar10c_sets(folder, _dataset(num_classes=100), names=("fog",))
    (folder / "labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels\.npy: missing"):
        rb.cifar10c_sets(folder, ds, names=("fog",))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        rb.cifar10c_sets(folder / "nope", ds)


def test_cifar101_reader(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 9, 3, 3, 1, 2], np.int64)
    np.save(tmp_path / "cifar10.1_v6_data.npy", x)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", y)
    sets = rb.sets_for("cifar10.1", _dataset(), tmp_path)
    xs, ys = sets["cifar10.1"][0]()
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_allclose(xs, (x / 255.0 - MEAN) / STD, rtol=1e-5, atol=1e-5)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", y[:5])
    with pytest.raises(ValueError, match=r"cifar10\.1_v6_data\.npy: uint8 \(6, 32, 32, 3\)"):
        rb.cifar101_sets(tmp_path, _dataset())
    with pytest.raises(FileNotFoundError, match=r"cifar10\.1_v4_labels\.npy: missing"):
        rb.cifar101_sets(tmp_path, _dataset(), version="v4")


def test_imagenet_c_reader(tmp_path):
    wnids = ("n01440764", "n02102040")
    ds = _dataset(num_classes=2, shape=(16, 16, 3), class_names=wnids, name="imagenette",
                  mean=np.array([0.485, 0.456, 0.406], np.float32),
                  std=np.array([0.229, 0.224, 0.225], np.float32))
    rng = np.random.default_rng(3)
    written = {}
    for c in ("fog", "contrast"):
        for s in (1, 2):
            for w in (*wnids, "n09999999"):  # a class outside the subset is ignored
                folder = tmp_path / c / str(s) / w
                folder.mkdir(parents=True)
                for i in range(2):
                    img = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
                    Image.fromarray(img).save(folder / f"ILSVRC2012_val_{i}.png")
                    written[c, s, w, i] = img
    sets = rb.imagenet_c_sets(tmp_path, ds, names=("fog", "contrast"), severities=(1, 2))
    x, y = sets["contrast"][2]()
    assert x.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(y, [0, 0, 1, 1])
    want = data.normalise(data.resize_bilinear(written["contrast", 2, wnids[1], 1], (16, 16)),
                          ds.mean, ds.std)
    np.testing.assert_allclose(x[3], want, rtol=1e-5, atol=1e-5)
    with pytest.raises(FileNotFoundError, match=r"no images in .*snow/1/n01440764"):
        rb.imagenet_c_sets(tmp_path, ds, names=("fog", "snow"), severities=(1,))


def test_subset_wnids_follow_the_official_class_order():
    ds = types.SimpleNamespace(name="imagewoof", class_names=("Australian_terrier",) * 10)
    wnids = rb.subset_wnids(ds)
    assert len(wnids) == 10 and wnids[0] == "n02096294"  # ILSVRC id 193, the first class
    assert rb.subset_wnids(types.SimpleNamespace(name="imagenette", class_names=(
        "n01440764", "n02102040")))[1] == "n02102040"


def test_corrupted_sets_subset_and_clean_pixels():
    ds = _dataset(n_test=40)
    np.testing.assert_array_equal(rb.clean_pixels(ds), ds.pixels)
    sets = rb.corrupted_sets(ds, ("contrast",), (1, 2), num_test=20, seed=4)
    x, y = sets["clean"][0]()
    assert np.bincount(y).tolist() == [2] * 10
    xc, yc = sets["contrast"][2]()
    np.testing.assert_array_equal(yc, y)
    pix = np.clip(np.rint((x * STD + MEAN) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(xc, rb.prepare(co.corrupt(pix, "contrast", 2, 4), ds), atol=1e-5)
    with pytest.raises(ValueError, match="ZCA"):
        rb.clean_pixels(_dataset(zca=np.eye(3)))


# ------------------------------------------------------------------------------ corruptions


@pytest.mark.parametrize("name", [n for n in co.NAMES if n != "saturate"])
def test_corruption_severity_is_monotonic_deterministic_and_shape_preserving(name):
    x = _images()
    outs = [co.corrupt(x, name, s, seed=7) for s in co.SEVERITIES]
    for y in outs:
        assert y.dtype == np.uint8 and y.shape == x.shape
    psnr = [_psnr(x, y) for y in outs]
    # pixelate's sizes 30, 28, 27, 24, 20 (int(32 c)): 28 need not beat 27 on smooth images
    pairs = list(zip(psnr, psnr[1:]))
    if name == "pixelate":
        pairs = pairs[2:]
    assert all(a >= b - 0.05 for a, b in pairs), psnr
    assert psnr[0] > psnr[-1] + 1.0, psnr
    np.testing.assert_array_equal(co.corrupt(x, name, 3, seed=7), outs[2])
    if "noise" in name:
        assert not np.array_equal(co.corrupt(x, name, 3, seed=8), outs[2])
    gray = co.corrupt(x[..., :1], name, 2, seed=7)
    assert gray.shape == x[..., :1].shape and gray.dtype == np.uint8


def test_brightness_and_contrast_exact_formulas():
    img = np.array([[[[51, 102, 204], [0, 0, 0], [255, 255, 255], [250, 10, 10]]]], np.uint8)
    # HSV value + 0.05: RGB scaled by v'/v; black -> grey 0.05; truncated as np.uint8 does
    out = co.corrupt(img, "brightness", 1)
    assert out[0, 0].tolist() == [[54, 108, 216], [12, 12, 12], [255, 255, 255],
                                  [255, 10, 10]]
    out = co.corrupt(img, "contrast", 5)  # (x - channel mean) * 0.15 + channel mean
    x = img / 255.0
    means = x.mean(axis=(1, 2), keepdims=True)
    want = (np.clip((x - means) * 0.15 + means, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, want)
    # R: mean(51, 0, 255, 250) = 139, (51 - 139) * .15 + 139 = 125.8 -> 125; G 93.29; B 130.26
    assert out[0, 0, 0].tolist() == [125, 93, 130]


def test_noise_statistics_and_kernels():
    grey = np.full((50, 32, 32, 3), 128, np.uint8)
    noisy = co.corrupt(grey, "gaussian_noise", 5, seed=1).astype(np.float64)
    assert np.std(noisy / 255.0) == pytest.approx(0.10, rel=0.03)
    flipped = co.corrupt(grey, "impulse_noise", 5, seed=1) != 128
    assert flipped.mean() == pytest.approx(0.07, rel=0.05)
    taps = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * 0.4 ** 2))
    taps /= taps.sum()
    np.testing.assert_allclose(co.disk_kernel(0.3, 0.4), np.outer(taps, taps), rtol=1e-12)
    assert co.disk_kernel(1.5, 0.1).shape == (5, 5)
    assert co.disk_kernel(1.5, 0.1).sum() == pytest.approx(1.0)
    pix = co.corrupt(_images(1), "pixelate", 5)  # 32 -> 20 -> 32 BOX
    small = Image.fromarray(_images(1)[0]).resize((20, 20), Image.BOX)
    np.testing.assert_array_equal(pix[0], np.asarray(small.resize((32, 32), Image.BOX)))
    rgb = _images(2) / 255.0
    np.testing.assert_allclose(co.hsv_to_rgb(co.rgb_to_hsv(rgb)), rgb, atol=1e-12)
    with pytest.raises(ValueError, match="unknown corruption"):
        co.corrupt(grey, "snow", 1)


# ------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def tiny_eval():
    C, shape = 3, (8, 8, 3)
    rng = np.random.default_rng(5)
    base = rng.uniform(40, 215, (C, *shape))
    y_test = np.repeat(np.arange(C), 10).astype(np.int32)
    pixels = np.clip(base[y_test] + rng.normal(0, 25, (len(y_test), *shape)), 0, 255)
    pixels = pixels.astype(np.uint8)
    ds = _dataset(num_classes=C, shape=shape, n_test=30)
    ds.x_test, ds.y_test, ds.pixels = data.normalise(pixels, ds.mean, ds.std), y_test, pixels
    y_syn = np.repeat(np.arange(C), 4).astype(np.int32)
    x_syn = data.normalise(np.clip(base[y_syn] + rng.normal(0, 25, (12, *shape)), 0, 255),
                           ds.mean, ds.std)
    kw = dict(epochs=4, lr=0.05, batch_size=8, dsa_strategy="crop_flip", progress=False)
    key = jax.random.key(11)
    sets = rb.corrupted_sets(ds, ("gaussian_noise", "contrast"), (1, 5))
    sets["copy"] = {2: lambda: (ds.x_test, ds.y_test)}
    res = rb.evaluate(key, x_syn, y_syn, ds, sets, model="ConvNetBN", num_eval=2, **kw)
    ref = ev.train_seeds(ev.seed_keys(key, 2), "ConvNetBN", x_syn, y_syn, ds.x_test,
                         ds.y_test, num_classes=C, **kw)
    return res, ref


def test_evaluate_tests_the_trained_networks(tiny_eval):
    res, ref = tiny_eval
    clean = res["sets"]["clean"][0]
    assert clean["accs"] == ref["accs"] == res["train"]["accs"]  # the same networks
    assert res["sets"]["copy"][2]["accs"] == clean["accs"]  # a set equal to clean: same accs
    assert clean["mean"] > 80  # trained: 3 classes, chance is 33 %
    assert res["sets"]["contrast"][5]["mean"] < clean["mean"] - 30  # severity 5 hurts


def test_evaluate_structure_and_means(tiny_eval):
    res, _ = tiny_eval
    assert list(res["sets"]) == ["clean", "gaussian_noise", "contrast", "copy"]
    assert {n: sorted(v) for n, v in res["sets"].items()} == {
        "clean": [0], "gaussian_noise": [1, 5], "contrast": [1, 5], "copy": [2]}
    cells = [np.array(res["sets"][n][s]["accs"]) for n, s in
             (("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5),
              ("copy", 2))]
    per_seed = np.mean(cells, axis=0)
    assert res["overall"]["accs"] == pytest.approx(per_seed.tolist())
    assert res["overall"]["mean"] == pytest.approx(per_seed.mean())
    assert res["overall"]["std"] == pytest.approx(per_seed.std())
    want = (np.array(cells[2]) + cells[3]) / 2
    assert res["per_set"]["contrast"]["accs"] == pytest.approx(want.tolist())
    for cell in (c for sev in res["sets"].values() for c in sev.values()):
        assert len(cell["accs"]) == 2 and all(0 <= a <= 100 for a in cell["accs"])
        assert all(a * 30 / 100 == pytest.approx(round(a * 30 / 100)) for a in cell["accs"])


def test_write_report(tiny_eval, tmp_path):
    import json

    res, _ = tiny_eval
    json_path, png_path = rb.write_report(res, tmp_path, "robustness", title="tiny")
    back = json.loads(json_path.read_text())
    assert back["sets"]["contrast"]["5"]["accs"] == res["sets"]["contrast"][5]["accs"]
    assert back["overall"]["mean"] == pytest.approx(res["overall"]["mean"])
    with Image.open(png_path) as im:
        assert im.format == "PNG" and im.size[0] > 200
    table = rb.format_table(res)
    assert table.splitlines()[0] == "| set | s1 | s2 | s5 | mean |"
    assert f"{res['overall']['mean']:.2f}" in table


def test_evaluate_rejects_bad_sets():
    ds = _dataset(num_classes=3, shape=(8, 8, 3), n_test=6)
    x = np.zeros((3, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="bad severities"):
        rb.evaluate(jax.random.key(0), x, np.arange(3), ds, {"fog": {7: None}}, epochs=1,
                    lr=0.01)
    with pytest.raises(ValueError, match=r"bad severities \{'clean': \[1\]\}"):
        rb.evaluate(jax.random.key(0), x, np.arange(3), ds, {"clean": {1: None}}, epochs=1,
                    lr=0.01)
    with pytest.raises(ValueError, match="unknown robustness set"):
        rb.sets_for("cifar100c", ds)
