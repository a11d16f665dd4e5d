"""What is known about each named dataset before anything is loaded: one table, pure data.

Read by the configuration (which checks a config without importing JAX) and by the loader
(`fred_jax.data`, `fred_jax.sources`); it imports no JAX, no tfds and no other fred_jax module.
Per dataset (`SPECS[name]`, a :class:`Spec`): the image shape (spatial dims of any length, then
channels), the number of classes, the class names where they are fixed, the per-channel mean
and std of [0, 1] pixels that the official DC/DM/MTT code normalises with, where the pixels come
from (`source`, one of `SOURCES`) and, for datasets built from their original files, those
files (`File`: canonical URL, size, checksum) and the complete sets of them a data dir may hold
(`layouts`; the first set is the one downloaded).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

SOURCES = ("local", "tfds", "imagenet_subset", "mnist3d")
"""Where a dataset's pixels come from: `local`, its original files (a data dir or a download),
built into tfds by `fred_jax.sources`; `tfds`, a standard tfds dataset (`tfds_name`);
`imagenet_subset`, ten ILSVRC-2012 classes of tfds `imagenet2012` (`IMAGENET_SUBSETS`);
`mnist3d`, an h5 file of 16x16x16 volumes in the Kaggle 3D MNIST layout (`fred_jax.mnist3d`)."""

NORM_STATS = ("dataset", "cifar10")
"""Whose mean/std `fred_jax.data.load` normalises with: the dataset's own, or CIFAR-10's (the
official TM code normalises CIFAR-100 with CIFAR-10's statistics, `TM/utils.py` get_dataset)."""


class File(NamedTuple):
    """One original file: canonical URL (None: not published, local only), size, checksum."""

    url: str | None
    size: int
    sha256: str | None
    md5: str | None = None  # only where no sha256 is published (Tiny-ImageNet)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static description of one named dataset."""

    image_shape: tuple[int, ...]  # (*spatial, channels)
    num_classes: int
    mean: tuple[float, ...]  # per channel, of pixels in [0, 1]
    std: tuple[float, ...]
    source: str  # one of SOURCES
    class_names: tuple[str, ...] | None = None  # None: taken from the tfds features
    files: dict[str, File] = dataclasses.field(default_factory=dict)  # local: name -> File
    layouts: tuple[tuple[str, ...], ...] = ()  # local: complete sets of `files`, first downloaded
    tfds_name: str | None = None  # tfds and imagenet_subset: the tfds builder (name/config)
    splits: tuple[str, str] = ("train", "test")  # tfds split names read as (train, test)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if len(self.image_shape) < 2 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (*spatial, channels), got {self.image_shape}")
        if not len(self.mean) == len(self.std) == self.image_shape[-1]:
            raise ValueError(f"mean {self.mean} and std {self.std} need one value per channel "
                             f"of {self.image_shape}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if (self.source == "local") != bool(self.layouts) or any(
                f not in self.files for layout in self.layouts for f in layout):
            raise ValueError("a local dataset needs layouts of its files, the others none")
        if (self.source in ("tfds", "imagenet_subset")) != (self.tfds_name is not None):
            raise ValueError("tfds_name is for the tfds and imagenet_subset sources only")

    @property
    def local(self) -> bool:
        """Built from its original files (data dir or download)."""
        return self.source == "local"


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
"""Role -> file name of the idx files of MNIST and Fashion-MNIST."""

_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the URL tfds uses
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"

# Sizes and sha256: MNIST, Fashion-MNIST and SVHN as in the checksum files tfds ships for its own
# builders (checked by tests/test_download.py); CIFAR python tarballs as published by keras and
# torchvision (md5 as on the CIFAR page); the CIFAR-10 re-encoding of ../shared/data; Tiny-ImageNet
# has only its published md5.
_MNIST = {
    "train-images-idx3-ubyte.gz": File(
        _MNIST_URL + "train-images-idx3-ubyte.gz", 9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": File(
        _MNIST_URL + "train-labels-idx1-ubyte.gz", 28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": File(
        _MNIST_URL + "t10k-images-idx3-ubyte.gz", 1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": File(
        _MNIST_URL + "t10k-labels-idx1-ubyte.gz", 4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
_FASHION_MNIST = {
    "train-images-idx3-ubyte.gz": File(
        _FASHION_URL + "train-images-idx3-ubyte.gz", 26421880,
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "train-labels-idx1-ubyte.gz": File(
        _FASHION_URL + "train-labels-idx1-ubyte.gz", 29515,
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "t10k-images-idx3-ubyte.gz": File(
        _FASHION_URL + "t10k-images-idx3-ubyte.gz", 4422102,
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "t10k-labels-idx1-ubyte.gz": File(
        _FASHION_URL + "t10k-labels-idx1-ubyte.gz", 5148,
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
}
_CIFAR10 = {
    "cifar-10-python.tar.gz": File(
        _CIFAR_URL + "cifar-10-python.tar.gz", 170498071,
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    "x_train.npy.xz": File(
        None, 101199252, "2d8eba4546ac66664cf2d1d7d29f76df4005eb9d2159ded08b30f3963393b658"),
    "x_test.npy.xz": File(
        None, 20311132, "e52a2b21ad79cb101c85ea47e3a28ea83fcf1adf82702159e90a486f148b1c24"),
    "cifar10_labels.npz": File(
        None, 257480, "8478936ca7375d21ee689b9882bc2508dbf76be0f6d4720074d1f099019c4b85"),
}
_CIFAR100 = {
    "cifar-100-python.tar.gz": File(
        _CIFAR_URL + "cifar-100-python.tar.gz", 169001437,
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
}
_SVHN = {
    "train_32x32.mat": File(
        _SVHN_URL + "train_32x32.mat", 182040794,
        "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8"),
    "test_32x32.mat": File(
        _SVHN_URL + "test_32x32.mat", 64275384,
        "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b"),
}
_TINY_IMAGENET = {
    "tiny-imagenet-200.zip": File(
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip", 248100043, None,
        md5="90528d7ca1a48142e341f4ef8d21d0de"),
}

_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")
_DIGITS = tuple(str(i) for i in range(10))
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

IMAGENET_SUBSETS = {
    "imagenette": (0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
    "imagewoof": (193, 182, 258, 162, 155, 167, 159, 273, 207, 229),
    "imagefruit": (953, 954, 949, 950, 951, 957, 952, 945, 943, 948),
    "imageyellow": (309, 986, 954, 951, 987, 779, 599, 291, 72, 11),
    "imagemeow": (281, 282, 283, 284, 285, 291, 292, 290, 289, 287),
    "imagesquawk": (84, 130, 88, 144, 145, 22, 96, 9, 100, 89),
}
"""ILSVRC-2012 class ids of the 128x128 subsets, in the label order of the official FreD/MTT code
(FreD `TM/utils.py` Config): label = position in the list."""

_IDX_LAYOUT = (tuple(MNIST_FILES.values()),)

SPECS: dict[str, Spec] = {
    "mnist": Spec((28, 28, 1), 10, (0.1307,), (0.3081,), "local", _DIGITS, _MNIST, _IDX_LAYOUT),
    "fashion_mnist": Spec(
        (28, 28, 1), 10, (0.2861,), (0.3530,), "local",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"), _FASHION_MNIST, _IDX_LAYOUT),
    "cifar10": Spec(
        (32, 32, 3), 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "local",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        _CIFAR10, (("cifar-10-python.tar.gz",),
                   ("x_train.npy.xz", "x_test.npy.xz", "cifar10_labels.npz"))),
    "cifar100": Spec((32, 32, 3), 100, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762),
                     "local", _CIFAR100_CLASSES, _CIFAR100, (("cifar-100-python.tar.gz",),)),
    "svhn": Spec((32, 32, 3), 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), "local",
                 _DIGITS, _SVHN, (("train_32x32.mat", "test_32x32.mat"),)),
    "tiny_imagenet": Spec((64, 64, 3), 200, _IMAGENET_MEAN, _IMAGENET_STD, "local",
                          files=_TINY_IMAGENET, layouts=(("tiny-imagenet-200.zip",),)),
    **{name: Spec((128, 128, 3), 10, _IMAGENET_MEAN, _IMAGENET_STD, "imagenet_subset",
                  tfds_name="imagenet2012", splits=("train", "validation"))
       for name in IMAGENET_SUBSETS},
    "imagenette_fastai": Spec((128, 128, 3), 10, _IMAGENET_MEAN, _IMAGENET_STD, "tfds",
                              tfds_name="imagenette/full-size-v2", splits=("train", "validation")),
    # 3D MNIST (Kaggle full_dataset_vectors.h5), not normalised by the official code (mean 0,
    # std 1), and its generated stand-in from MNIST digits (fred_jax.mnist3d)
    "mnist3d": Spec((16, 16, 16, 1), 10, (0.0,), (1.0,), "mnist3d", _DIGITS),
    "mnist3d_standin": Spec((16, 16, 16, 1), 10, (0.0,), (1.0,), "mnist3d", _DIGITS),
}
"""Dataset name -> :class:`Spec`."""

NAMES: tuple[str, ...] = tuple(SPECS)
LOCAL_NAMES: tuple[str, ...] = tuple(name for name, spec in SPECS.items() if spec.local)
"""Datasets built from original files: read from `<data dir>/<name>/` when a data dir is set
(`data_dir`, else `$FRED_DATA_DIR`), downloaded otherwise."""
