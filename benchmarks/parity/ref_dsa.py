"""Golden file for the DSA piece: every op of the official ``DiffAugment`` (DM/utils.py:
brightness/saturation/contrast = color, crop, cutout, flip, scale, rotate), siamese (a seed:
parameters shared by the batch) and per image (seed -1), on CIFAR- and MNIST-shaped batches,
plus the whole strategy in the official mode "M" (all ops in order).

The official functions draw their parameters with ``torch.rand``/``torch.randint``; the script
wraps both to record every draw (the full ``[N]`` vector; siamese mode then uses element 0),
stored as ``<case>_<op>_<name>`` with the names of ``fred_jax.augment.sample_draws``, so the
test can apply our ops with exactly the official parameters (``augment.apply_draws``).

Run under ``.venv-ref``: ``.venv-ref/bin/python benchmarks/parity/ref_dsa.py``.
"""

from __future__ import annotations

import numpy as np
import torch

import reference

SEED = 0
SHAPES = {"c32": (4, 3, 32, 32), "m28": (6, 1, 28, 28)}
OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
NAMES = {"color": ("brightness", "saturation", "contrast"), "crop": ("x", "y"),
         "cutout": ("x", "y"), "flip": ("flip",), "scale": ("x", "y"), "rotate": ("angle",)}
STRATEGY = "_".join(OPS)


class _Recorder:
    """Wraps ``torch.rand``/``torch.randint`` while active and keeps a copy of every draw."""

    def __init__(self):
        self.draws: list[np.ndarray] = []
        self._orig = (torch.rand, torch.randint)

    def _wrap(self, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            self.draws.append(out.detach().clone().reshape(-1).numpy())
            return out

        return wrapped

    def __enter__(self):
        torch.rand, torch.randint = (self._wrap(f) for f in self._orig)
        return self

    def __exit__(self, *exc):
        torch.rand, torch.randint = self._orig


def main() -> None:
    utils = reference.official("DM", "utils")
    rng = np.random.default_rng(SEED)
    out: dict[str, np.ndarray] = {}
    for shape_name, shape in SHAPES.items():
        x = rng.standard_normal(shape).astype(np.float32)
        out[f"{shape_name}_x"] = x
        for mode, seed in (("siamese", 1234), ("perimage", -1)):
            case = f"{shape_name}_{mode}"
            torch.manual_seed(SEED)
            param = utils.ParamDiffAug()
            param.Siamese = seed != -1
            for op in OPS:
                param.latestseed = seed
                with _Recorder() as rec:
                    y = torch.from_numpy(x)
                    for fn in utils.AUGMENT_FNS[op]:
                        y = fn(y, param)
                assert len(rec.draws) == len(NAMES[op]), (op, len(rec.draws))
                out[f"{case}_{op}"] = y
                for name, draw in zip(NAMES[op], rec.draws):
                    out[f"{case}_{op}_{name}"] = draw
            # The whole strategy, mode "M": every op in order through DiffAugment itself.
            param.aug_mode = "M"
            with _Recorder() as rec:
                y = utils.DiffAugment(torch.from_numpy(x), STRATEGY, seed=seed, param=param)
            out[f"{case}_M"] = y
            names = [(op, n) for op in OPS for n in NAMES[op]]
            assert len(rec.draws) == len(names)
            for (op, name), draw in zip(names, rec.draws):
                out[f"{case}_M_{op}_{name}"] = draw
    reference.save_golden("dsa", **out)


if __name__ == "__main__":
    main()
