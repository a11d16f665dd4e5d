"""Resumable checkpoints of the distillation state with orbax (``CheckpointManager``).

A checkpoint holds the training state pytree (learnable leaves, optimiser state, kept indices,
step, key) as plain nested dicts of arrays (``flax.serialization.to_state_dict``), plus a small
JSON record (best accuracy so far, evaluation history, accumulated wall time). Restoring needs
a template state of the same structure (the freshly initialised state), so a run resumes by
building its initial state as usual and replacing it with the latest checkpoint if any.

Sharded state: arrays are saved as they are (``jax.Array``; on a multi-host mesh every process
writes its share, so the directory must be shared) and restored with the template's shardings,
so a run on a mesh resumes onto the same mesh, and a 1-device checkpoint restores onto a mesh
(and back) since only the target layout differs. Every process calls save and restore.
"""

from __future__ import annotations

import os
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any


class Checkpointer:
    """Save/restore the training state under ``directory`` (keeps the last ``max_to_keep``)."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = os.path.abspath(os.fspath(directory))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        """Step of the newest checkpoint, or None when there is none."""
        return self._manager.latest_step()

    def save(self, step: int, state: PyTree, record: dict) -> None:
        """Write ``state`` and the JSON-serialisable ``record`` as checkpoint ``step`` and wait
        until it is on disk (a later kill cannot leave it half written)."""
        tree = flax.serialization.to_state_dict(state)
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), record=ocp.args.JsonSave(record)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, template: PyTree, step: int | None = None) -> tuple[PyTree, dict]:
        """``(state, record)`` of checkpoint ``step`` (default: latest), with ``template``'s
        structure, dtypes, shapes and shardings (device arrays land on the template's devices,
        e.g. replicated over its mesh)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        target = jax.tree_util.tree_map(_target, flax.serialization.to_state_dict(template))
        restored = self._manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), record=ocp.args.JsonRestore()
            ),
        )
        state = flax.serialization.from_state_dict(template, restored["state"])
        return state, dict(restored["record"])

    def close(self) -> None:
        self._manager.close()


def _target(leaf: Any) -> Any:
    """Restore target of one template leaf: shape, dtype and sharding of a device array."""
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    return np.asarray(leaf)
