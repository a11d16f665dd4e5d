"""What a distillation run writes into its workdir, besides checkpoints and ``config.json``.

- ``metrics.jsonl`` (one JSON object a row: ``step`` and the scalars) and TensorBoard scalars
  (``tensorboard/``, tensorboardX): :class:`MetricsWriter`. On resume, rows after the restored
  step (written after the last checkpoint by a killed run) and lines a kill tore apart are
  dropped, and TensorBoard purges the same steps.
- ``synset_best.npz`` / ``synset_last.npz``: the compact export (:func:`export`,
  ``fred_jax.synset.save``) with the learned scalar leaves (e.g. TM's ``syn_lr``).
- ``synset_images.png`` / ``synset_masks.png``: :func:`pictures`.
- ``results.json``: :func:`results` and :func:`write_results`; :func:`evaluated_before` reads
  it back so that a rerun of a finished workdir re-exports instead of re-evaluating (a
  damaged one is moved to ``results.json.damaged`` and the run evaluates again).

Exports, pictures and results.json are written atomically (``fred_jax.safeio.atomic_write``):
temporary file, fsync, rename; a failed write leaves no partial file and names its path.

Who writes is the caller's choice (``fred_jax.train``: process 0 only, :class:`NoWriter`
elsewhere).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

import numpy as np
from absl import logging

from fred_jax import safeio, sharding, synset


class MetricsWriter:
    """metrics.jsonl + TensorBoard (tensorboardX) scalars, resumed at ``resume_step``."""

    def __init__(self, workdir: str, resume_step: int):
        from tensorboardX import SummaryWriter

        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):  # drop rows a killed run wrote after its last checkpoint
            with open(self.path) as f:
                rows = [_metrics_row(line, self.path) for line in f]
            kept = "".join(json.dumps(row) + "\n" for row in rows
                           if row is not None and row["step"] <= resume_step)
            safeio.atomic_write(self.path, kept.encode())
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), **scalars}) + "\n")
        for name, value in scalars.items():
            self.tb.add_scalar(name, value, step)

    def close(self) -> None:
        self.tb.close()


def _metrics_row(line: str, path: str) -> dict | None:
    """One row of metrics.jsonl, or None (with a warning) for a line a kill tore apart."""
    try:
        row = json.loads(line)
        int(row["step"])
        return row
    except (ValueError, KeyError, TypeError):
        logging.warning("%s: dropped a damaged line (a run killed while writing it?): %r",
                        path, line[:80])
        return None


class NoWriter:
    """The writer of processes other than 0: metrics are written once, by process 0."""

    def write(self, step: int, scalars: dict[str, float]) -> None:
        del step, scalars

    def close(self) -> None:
        pass


def export(path: str, current: synset.SynSet, learnable: dict, dataset: Any,
           **extra: Any) -> None:
    """The export of ``current`` with the dataset's normalisation, every scalar leaf of
    ``learnable`` but the coefficients, and ``extra`` (e.g. step, results)."""
    extra.update({name: float(sharding.to_host(value)) for name, value in learnable.items()
                  if name != "coeffs" and np.size(value) == 1})
    synset.save(path, current, mean=np.asarray(dataset.mean), std=np.asarray(dataset.std),
                dataset=dataset.name, norm_stats=getattr(dataset, "norm_stats", "dataset"),
                zca=getattr(dataset, "zca", None) is not None, **extra)


def pictures(workdir: str, current: synset.SynSet, dataset: Any) -> None:
    """PNG grids of the decoded (denormalised) images and of the class masks."""
    from fred_jax import visualize

    visualize.save_image_grid(os.path.join(workdir, "synset_images.png"),
                              np.asarray(current.images()), dataset.mean, dataset.std)
    visualize.save_mask_grid(os.path.join(workdir, "synset_masks.png"),
                             visualize.indices_to_masks(np.asarray(current.indices),
                                                        current.image_shape[:-1]))


def results(config: Any, record: dict, *, step: int, transform: str,
            image_shape: Sequence[int], coeffs_shape: Sequence[int]) -> dict:
    """The contents of results.json: what was distilled, its budget, the evaluations of
    ``record`` (the checkpoint record: history, best, changes, wall time)."""
    c, n, k, ch = (int(v) for v in coeffs_shape)
    d = math.prod(image_shape[:-1])
    final = record["history"][-1]["results"] if record["history"] else {}
    return {
        "dataset": config.dataset,
        "objective": config.objective,
        "parameterization": config.parameterization,
        "transform": transform,
        "ipc": int(config.ipc),
        "k": k,
        "instances_per_class": n,
        "budget_parameters": c * n * k * ch,
        "budget_limit": c * int(config.ipc) * d * ch,
        "iterations": int(step),
        "accuracy": final,
        "best": record["best"],  # by test accuracy, as the official code picks
        **({"best_validation": record["best_validation"]} if record.get("best_validation")
           else {}),  # by validation accuracy; "mean" is its test accuracy
        "history": record["history"],
        "config_changes": record.get("changes", []),
        "wall_time_seconds": record["wall_time"],
    }


def write_results(workdir: str, results: dict) -> None:
    """``workdir/results.json``, atomically: a kill or a full disk mid-write leaves the previous
    file whole, and the error names the path."""
    safeio.write_json(os.path.join(workdir, "results.json"), results)


def evaluated_before(workdir: str, step: int, models: Sequence[str]) -> dict | None:
    """results.json of an earlier run of this workdir that already evaluated iteration
    ``step`` on ``models`` (a rerun of a finished workdir re-exports, not re-trains). One that
    does not parse is moved to ``results.json.damaged`` with a warning naming both (None)."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            earlier = json.load(f)
        history = earlier.get("history") or []
        if (earlier.get("iterations") == step and history and history[-1]["step"] == step
                and set(history[-1]["results"]) == set(models)):
            return earlier
        return None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        damaged = path + ".damaged"
        os.replace(path, damaged)
        logging.warning("%s is damaged (%s); moved it to %s and evaluating again",
                        path, " ".join(str(e).split())[:120], damaged)
        return None
