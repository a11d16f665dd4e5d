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

Failures: saving is synchronous (the loop waits for every checkpoint anyway): with orbax's
asynchronous saving, a failed write (unwritable folder, full disk) left background threads
waiting 300 s for the signals of the failed step before the process could exit. A failed write
raises :class:`CheckpointWriteError` naming the folder. Every checkpoint carries the size and
SHA-256 of each of its files (:data:`CHECKSUMS`, written after orbax finishes), checked before
orbax reads it: damaged bytes are named at once, before orbax's own failure (whose pending
reads print tracebacks of a closed event loop). :meth:`Checkpointer.restore_latest` restores
the newest checkpoint that reads back; a damaged newer one (changed or truncated file, empty or
partial step folder) is moved to ``<directory>.skipped/`` with a one-line warning naming it.
When none reads back the run stops, and so does every later run on that folder
(:meth:`Checkpointer.refuse_lost_run`) instead of silently starting again from iteration 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from fred_jax import configuration

PyTree = Any

CHECKSUMS = "fred_checksums.json"
"""File in each checkpoint folder: ``{relative path: [size, sha256]}`` of its other files."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (permissions, full disk); the message names the path."""


class CheckpointReadError(RuntimeError):
    """No checkpoint of the folder reads back; the message lists each one and why."""


class CheckpointDamaged(ValueError):
    """A checkpoint's files differ from its :data:`CHECKSUMS`; the message names the file."""


def _digests(folder: str) -> dict[str, list]:
    """``{path relative to folder: [size, sha256 hex]}`` of every file but :data:`CHECKSUMS`."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if rel == CHECKSUMS:
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            out[rel] = [os.path.getsize(path), digest.hexdigest()]
    return out


def write_checksums(folder: str) -> None:
    """Record :func:`_digests` of ``folder`` in its :data:`CHECKSUMS` (temp file + rename)."""
    digests = _digests(folder)
    tmp = os.path.join(folder, f".{CHECKSUMS}.tmp")
    with open(tmp, "w") as f:
        json.dump(digests, f)
    os.replace(tmp, os.path.join(folder, CHECKSUMS))


def verify_checksums(folder: str) -> None:
    """Raise :class:`CheckpointDamaged` naming the first file of ``folder`` that is missing or
    differs from its :data:`CHECKSUMS` (a folder without them, written before they were, is
    left to orbax)."""
    path = os.path.join(folder, CHECKSUMS)
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            expected = dict(json.load(f))
    except (OSError, ValueError) as e:
        raise CheckpointDamaged(f"{path} does not read ({configuration.one_line(e, 100)})") from e
    actual = _digests(folder)
    for rel, (size, digest) in sorted(expected.items()):
        if rel not in actual:
            raise CheckpointDamaged(f"{os.path.join(folder, rel)} is missing")
        if actual[rel][0] != size:
            raise CheckpointDamaged(f"{os.path.join(folder, rel)} has {actual[rel][0]} bytes, "
                                    f"{size} were written")
        if actual[rel][1] != digest:
            raise CheckpointDamaged(f"{os.path.join(folder, rel)} differs from what was written")


class Checkpointer:
    """Save/restore the training state under ``directory`` (keeps the last ``max_to_keep``)."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        self.directory = os.path.abspath(os.fspath(directory))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        """Step of the newest checkpoint, or None when there is none."""
        return self._manager.latest_step()

    def save(self, step: int, state: PyTree, record: dict) -> None:
        """Write ``state`` and the JSON-serialisable ``record`` as checkpoint ``step`` and wait
        until it is on disk (a later kill cannot leave it half written)."""
        tree = flax.serialization.to_state_dict(state)
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(tree), record=ocp.args.JsonSave(record)
                ),
                force=True,
            )
            self._manager.wait_until_finished()
            if jax.process_index() == 0:
                write_checksums(os.path.join(self.directory, str(int(step))))
        except Exception as e:
            reason = configuration.one_line(e, 300)
            raise CheckpointWriteError(
                f"cannot write checkpoint {step} into {self.directory} ({reason}); free space "
                f"or fix the permissions there, then rerun the same command to resume"
            ) from e

    def all_steps(self) -> list[int]:
        """Steps of the checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def read_record(self, step: int) -> dict:
        """The JSON record of checkpoint ``step`` alone (no arrays are read)."""
        with open(os.path.join(self.directory, str(int(step)), "record", "metadata")) as f:
            return dict(json.load(f))

    def restore(self, template: PyTree, step: int | None = None) -> tuple[PyTree, dict]:
        """``(state, record)`` of checkpoint ``step`` (default: latest), with ``template``'s
        structure, dtypes, shapes and shardings (device arrays land on the template's devices,
        e.g. replicated over its mesh)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        verify_checksums(os.path.join(self.directory, str(int(step))))
        target = jax.tree_util.tree_map(_target, flax.serialization.to_state_dict(template))
        restored = self._manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), record=ocp.args.JsonRestore()
            ),
        )
        state = flax.serialization.from_state_dict(template, restored["state"])
        return state, dict(restored["record"])

    def restore_latest(self, template: PyTree) -> tuple[PyTree, dict] | None:
        """:meth:`restore` of the newest checkpoint that reads back, or None when there is
        none. A damaged newer one is moved to ``<directory>.skipped/<step>-<time>`` (so that
        the resumed run can write that step again) with a one-line warning saying why; raises
        :class:`CheckpointReadError` when checkpoints exist and none reads back (they are all
        moved aside, and :meth:`refuse_lost_run` stops later runs)."""
        failures = []
        for step in reversed(self.all_steps()):
            try:
                return self.restore(template, step)
            except Exception as e:  # any damage: truncated files, missing items, bad JSON
                failures.append(f"step {step}: {configuration.one_line(e, 200)}")
                if jax.process_count() == 1:
                    self._set_aside(step, failures[-1])
        if failures:
            raise CheckpointReadError(
                f"no checkpoint in {self.directory} reads back ({'; '.join(failures)}); "
                f"{self._lost_todo()}")
        return None

    def _lost_todo(self) -> str:
        return (f"they are set aside in {self.directory}.skipped: use another --workdir, or "
                f"move {self.directory}.skipped away to start this one again from iteration 0")

    def refuse_lost_run(self) -> None:
        """Raise :class:`CheckpointReadError` when the folder holds no checkpoint but damaged
        ones were set aside: the run they held is lost, and starting it again from iteration 0
        must be asked for."""
        skipped = f"{self.directory}.skipped"
        if self.all_steps() or not os.path.isdir(skipped) or not os.listdir(skipped):
            return
        raise CheckpointReadError(
            f"every checkpoint of {self.directory} was damaged (set aside: "
            f"{', '.join(sorted(os.listdir(skipped)))}); {self._lost_todo()}")

    def _set_aside(self, step: int, reason: str) -> None:
        """Move the damaged checkpoint ``step`` out of the managed folder."""
        target = os.path.join(f"{self.directory}.skipped", f"{step}-{int(time.time())}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
        self._manager.reload()
        logging.warning("skipped damaged checkpoint %s (%s); moved it to %s",
                        os.path.join(self.directory, str(step)), reason, target)

    def close(self) -> None:
        self._manager.close()


def _target(leaf: Any) -> Any:
    """Restore target of one template leaf: shape, dtype and sharding of a device array."""
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    return np.asarray(leaf)
