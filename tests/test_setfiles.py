"""Reading training sets from files: our exports, plain .npz/.npy, the official torch files."""

import os
import pickle

import numpy as np
import pytest

from fred_jax import setfiles, synset

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "setfiles")


def _expected():
    with np.load(os.path.join(GOLDEN, "expected.npz")) as z:
        return {k: z[k] for k in z.files}


def test_official_tm_files_read_without_torch():
    want = _expected()
    s = setfiles.read(os.path.join(GOLDEN, "images_best.pt"))  # labels_best.pt found beside it
    np.testing.assert_array_equal(s.x, np.moveaxis(want["images"], 1, -1))
    np.testing.assert_array_equal(s.y, want["labels"])
    assert s.x.shape == (6, 4, 5, 3) and s.x.dtype == np.float32 and s.y.dtype == np.int32
    assert s.dataset is None and s.meta["labels"].endswith("labels_best.pt")


def test_torch_strided_view_and_bfloat16():
    want = _expected()
    np.testing.assert_array_equal(setfiles.read_torch(os.path.join(GOLDEN, "strided.pt")),
                                  want["strided"])
    np.testing.assert_array_equal(setfiles.read_torch(os.path.join(GOLDEN, "bf16.pt")),
                                  want["bf16"])


def test_official_dm_result_dictionary_by_index():
    want = _expected()
    path = os.path.join(GOLDEN, "res_DM_CIFAR10_ConvNet_1ipc.pt")
    first, second = setfiles.read(path), setfiles.read(path, index=1)
    np.testing.assert_array_equal(first.x, np.moveaxis(want["images"], 1, -1))
    np.testing.assert_array_equal(second.x, 2 * first.x)
    np.testing.assert_array_equal(second.y, want["labels"])
    with pytest.raises(ValueError, match="2 .images, labels. pairs; index 2"):
        setfiles.read(path, index=2)


def test_unpickler_refuses_other_objects(tmp_path):
    import zipfile

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(print))
    with pytest.raises(pickle.UnpicklingError, match="not a tensor"):
        setfiles.read_torch(str(path))


def test_plain_npz_and_npy_layouts(tmp_path):
    rng = np.random.default_rng(0)
    nchw = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    np.savez(tmp_path / "set.npz", images=nchw, labels=y)
    s = setfiles.read(str(tmp_path / "set.npz"))
    np.testing.assert_array_equal(s.x, np.moveaxis(nchw, 1, -1))
    np.save(tmp_path / "images_x.npy", np.moveaxis(nchw, 1, -1))
    np.save(tmp_path / "labels_x.npy", np.eye(4)[y])  # one-hot labels -> indices
    s = setfiles.read(str(tmp_path / "images_x.npy"))
    np.testing.assert_array_equal(s.x, np.moveaxis(nchw, 1, -1))
    np.testing.assert_array_equal(s.y, y)
    square = rng.normal(size=(2, 3, 5, 3)).astype(np.float32)  # ambiguous: C=3 on both axes
    np.savez(tmp_path / "amb.npz", x=square, y=np.array([0, 1]))
    with pytest.raises(ValueError, match="cannot tell the channel axis"):
        setfiles.read(str(tmp_path / "amb.npz"))
    assert setfiles.read(str(tmp_path / "amb.npz"), layout="nchw").x.shape == (2, 5, 3, 3)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        setfiles.read(str(tmp_path / "missing.npz"))
    np.save(tmp_path / "alone.npy", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="images without labels"):
        setfiles.read(str(tmp_path / "alone.npy"))
    np.savez(tmp_path / "odd.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="needs an images array"):
        setfiles.read(str(tmp_path / "odd.npz"))
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 4, 4, 1), np.float32), y=np.array([0, 1]))
    with pytest.raises(ValueError, match="3 images but labels of shape"):
        setfiles.read(str(tmp_path / "short.npz"))


def test_export_reads_decoded_with_metadata(tmp_path):
    import jax

    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 8, 8, 1)).astype(np.float32)
    y = np.repeat(np.arange(2), 10)
    syn = synset.init(jax.random.key(0), x, y, 2, ipc=1, k=16, transform="dct")
    path = str(tmp_path / "synset_best.npz")
    synset.save(path, syn, mean=[0.5], std=[0.25], dataset="toy", syn_lr=0.02)
    s = setfiles.read(path)
    xs, ys = synset.flat(syn)
    np.testing.assert_allclose(s.x, np.asarray(xs), atol=1e-6)
    np.testing.assert_array_equal(s.y, np.asarray(ys))
    assert s.dataset == "toy" and s.meta["syn_lr"] == 0.02 and s.x.shape[0] == 2 * 4
    assert s.meta["coeffs_shape"] == (2, 4, 16, 1) and s.meta["image_shape"] == (8, 8, 1)
