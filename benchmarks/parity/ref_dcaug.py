"""Golden file for the DC augmentation piece: the official ``augment`` (``DC/utils.py``) with the
``get_daparam`` magnitudes, on fixed NumPy batches, with every random draw it makes recorded.

``np.random.permutation`` / ``uniform`` / ``randint`` and ``torch.randn`` are wrapped by
recorders (the originals still produce the values), so the test can give fred_jax exactly the
op and parameters the official code drew for each image. Cases:

- ``mnist``: 48 MNIST-shaped images (1 x 28 x 28), strategy ``crop_scale_rotate``
  (``get_daparam('MNIST', ...)``), official random draws;
- ``c32``: 24 CIFAR-shaped images (3 x 32 x 32), ``crop_scale_rotate`` (per-channel crop fill,
  rotation cval = mean of the channel means);
- ``bn``: 12 CIFAR-shaped images, ``crop_noise`` (``get_daparam(..., 'ConvNetBN', ...)``);
- ``rot_all``: every angle of ``randint(-45, 45)``, -45 .. 44 (90 MNIST-shaped images,
  ``rotate``), the draws forced in order;
- ``scale_all``: every scaled height 22 .. 33 of a 28-pixel image, with widths 33 .. 22 and
  equal to the height (24 images, ``scale``), the uniform draws forced.

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_dcaug.py``.
"""

from __future__ import annotations

import numpy as np
import torch

import reference

SEED = 0


class Recorder:
    """Wraps NumPy's and torch's samplers used by ``augment``; ``forced`` replaces the values of
    one sampler by a list, in order."""

    def __init__(self, forced: dict[str, list] | None = None):
        self.events: list[tuple[str, object]] = []
        self.forced = {k: list(v) for k, v in (forced or {}).items()}
        self.saved = (np.random.permutation, np.random.uniform, np.random.randint, torch.randn)

    def _wrap(self, name: str, fn):
        def wrapped(*args, **kwargs):
            value = fn(*args, **kwargs)
            if self.forced.get(name):
                value = self.forced[name].pop(0)
            self.events.append((name, value))
            return value
        return wrapped

    def __enter__(self):
        perm, uni, rint, randn = self.saved
        np.random.permutation = self._wrap("permutation", perm)
        np.random.uniform = self._wrap("uniform", uni)
        np.random.randint = self._wrap("randint", rint)
        torch.randn = self._wrap("randn", randn)
        return self

    def __exit__(self, *exc):
        np.random.permutation, np.random.uniform, np.random.randint, torch.randn = self.saved


def parse(events: list, n: int, ops: list[str], side: int, channels: int) -> dict:
    """Per-image op index and parameters from the recorded draws, in the order ``augment``
    makes them (the op's ``permutation(augs)``, then the op's own draws)."""
    it = iter(events)
    op = np.zeros(n, np.int32)
    offset = np.zeros((n, 2), np.int32)
    size = np.full((n, 2), side, np.int32)
    angle = np.zeros(n, np.int32)
    noise = np.zeros((n, channels, side, side), np.float32)
    for i in range(n):
        name, value = next(it)
        assert name == "permutation" and sorted(value) == sorted(ops), (name, value)
        choice = str(value[0])
        op[i] = ops.index(choice)
        if choice == "crop":
            offset[i] = [next(it)[1][0], next(it)[1][0]]
        elif choice == "scale":
            size[i] = [int(next(it)[1] * side), int(next(it)[1] * side)]
        elif choice == "rotate":
            angle[i] = next(it)[1]
        elif choice == "noise":
            noise[i] = reference.to_np(next(it)[1])
    assert next(it, None) is None, "unparsed draws"
    return {"op": op, "offset": offset, "size": size, "angle": angle, "noise": noise}


def run_case(utils, name: str, x: np.ndarray, dataset: str, model_eval: str,
             strategy: str | None = None, forced: dict | None = None) -> dict:
    param = utils.get_daparam(dataset, "ConvNet", model_eval, 1)
    if strategy is not None:
        param["strategy"] = strategy
    images = torch.from_numpy(x.copy())
    with Recorder(forced) as rec:
        out = utils.augment(images, param, device="cpu")
    draws = parse(rec.events, len(x), param["strategy"].split("_"), x.shape[-1], x.shape[1])
    res = {f"{name}_x": x, f"{name}_out": out, f"{name}_strategy": np.asarray(param["strategy"])}
    res.update({f"{name}_{k}": v for k, v in draws.items()
                if k != "noise" or "noise" in param["strategy"]})
    return res


def main() -> None:
    utils = reference.official("DC", "utils")
    rng = np.random.default_rng(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    m28 = lambda n: rng.standard_normal((n, 1, 28, 28)).astype(np.float32)  # noqa: E731
    c32 = lambda n: rng.standard_normal((n, 3, 32, 32)).astype(np.float32)  # noqa: E731
    out = {"crop": np.int64(4), "scale": np.float64(0.2), "rotate": np.int64(45),
           "noise_std": np.float64(0.001)}
    out.update(run_case(utils, "mnist", m28(48), "MNIST", "ConvNet"))
    out.update(run_case(utils, "c32", c32(24), "MNIST", "ConvNet"))
    out.update(run_case(utils, "bn", c32(12), "CIFAR10", "ConvNetBN"))
    angles = list(range(-45, 45))
    out.update(run_case(utils, "rot_all", m28(len(angles)), "MNIST", "ConvNet", "rotate",
                        {"randint": angles}))
    heights = list(range(22, 34))
    sizes = [(h, 55 - h) for h in heights] + [(h, h) for h in heights]
    uniforms = [(v + 0.5) / 28 for hw in sizes for v in hw]
    out.update(run_case(utils, "scale_all", m28(len(sizes)), "MNIST", "ConvNet", "scale",
                        {"uniform": uniforms}))
    reference.save_golden("dcaug", **out)


if __name__ == "__main__":
    main()
