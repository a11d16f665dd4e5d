"""Provenance of a workdir: does this configuration continue the run stored there?

Every checkpoint records the config (``config_dict``). A rerun whose config differs stops
before loading data with :class:`WorkdirError` naming the fields; ``allow_changes`` continues
with new values where that means something (e.g. more iterations), never for
:data:`FIXED_FIELDS`. A workdir finished beyond ``num_iterations`` is refused too, as is a
checkpoint keeping other frequencies than the fresh initial state. ``config.json`` is written
(:func:`write_config`) only after that check.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np
from absl import logging

from fred_jax import checkpoint
from fred_jax.failures import WorkdirError

FREE_FIELDS = ("data_dir", "num_devices", "log_every", "checkpoint_every", "keep_checkpoints",
               "compilation_cache", "divergence_growth", "divergence_loss_growth")
"""Config fields a resumed run may change freely: they change no number of the result."""

FIXED_FIELDS = ("dataset", "zca", "seed", "parameterization", "ipc", "k", "transform",
                "mask_kind", "objective", "eval.validation_per_class")
"""Config fields no resumed run may change: they define the stored set or its initialisation."""


def config_dict(config: Any) -> dict:
    """``config`` as the JSON dict the checkpoints record."""
    return json.loads(config.to_json_best_effort())


def write_config(config: Any, workdir: str) -> None:
    """``workdir/config.json``: the config of the run (for people; checkpoints hold theirs)."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


def config_changes(stored: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (stored, current)}`` for every field whose value differs, except
    :data:`FREE_FIELDS`."""
    old, new = _flatten(stored), _flatten(current)
    return {name: (old.get(name), new.get(name)) for name in sorted(set(old) | set(new))
            if name not in FREE_FIELDS and old.get(name) != new.get(name)}


def _stored_run(workdir: str, ckpt: checkpoint.Checkpointer) -> tuple[int, dict | None] | None:
    """``(step, config)`` of the newest checkpoint whose record reads back (config None for a
    checkpoint written before configs were recorded: then ``config.json`` if present), or
    None for a fresh workdir."""
    steps = ckpt.all_steps()
    for step in reversed(steps):
        try:
            record = ckpt.read_record(step)
        except (OSError, ValueError):
            continue  # damaged: restore_latest says so when it skips it
        if "config" in record:
            return step, record["config"]
    if not steps:
        return None
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            return steps[-1], json.load(f)
    return steps[-1], None


def check_workdir(config: Any, workdir: str, ckpt: checkpoint.Checkpointer,
                  allow_changes: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Raise :class:`WorkdirError` unless ``config`` continues the run stored in ``workdir``:
    same fields (except :data:`FREE_FIELDS` and ``allow_changes``; never
    :data:`FIXED_FIELDS`) and not finished beyond ``config.num_iterations``. Returns the
    allowed changes ``{field: (stored, current)}`` (empty for a fresh workdir)."""
    stored = _stored_run(workdir, ckpt)
    if stored is None:
        return {}
    step, stored_config = stored
    total = int(config.num_iterations)
    if step > total:
        raise WorkdirError(
            f"{workdir} holds a run at iteration {step}, beyond num_iterations={total}: rerun "
            f"with --config.num_iterations={step} to export it again, or use another --workdir")
    if stored_config is None:
        logging.warning("%s: its checkpoints record no config; cannot check that this run "
                        "continues the same settings", workdir)
        return {}
    changes = config_changes(stored_config, config_dict(config))
    allowed = {name.strip() for name in allow_changes if name.strip()}
    fixed = [name for name in changes
             if name in FIXED_FIELDS or name.split(".")[0] in FIXED_FIELDS]
    refused = [name for name in changes if name not in allowed or name in fixed]
    if refused:
        listed = "; ".join(f"{name}: stored {changes[name][0]!r}, now {changes[name][1]!r}"
                           for name in refused)
        if fixed:
            todo = "these define the stored set: use another --workdir"
        else:
            todo = (f"rerun with the stored values, use another --workdir, or add "
                    f"--allow_changes={','.join(refused)} to continue this run with the new ones")
        raise WorkdirError(f"{workdir} holds a run (checkpoint at iteration {step}) made with "
                           f"other settings: {listed}; {todo}")
    return changes


def check_indices(restored: Any, initial: Any, workdir: str) -> None:
    """Raise :class:`WorkdirError` when a restored checkpoint keeps other frequencies than the
    initial state of this configuration."""
    if not np.array_equal(np.asarray(restored), np.asarray(initial)):
        raise WorkdirError(f"the checkpoint in {workdir} keeps other frequencies than this "
                           f"configuration (another dataset, k, mask or seed): use another "
                           f"--workdir")
