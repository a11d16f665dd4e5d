"""How a distillation run stops when something goes wrong: the errors it raises, the test for
a diverged synthetic set, and the graceful stop on SIGTERM/SIGINT (``fred_jax.train`` applies
them; every message says what happened, where, and what to do).
"""

from __future__ import annotations

import math
import signal
import threading
from typing import Any

from absl import logging

EXPLODED = 1e6
"""Largest |learnable value| of a sane synthetic set. Coefficients of an orthonormal transform
bound the image norm from below: 1e6 is an image of 128x128x3 pixels about 4500 standard
deviations from the mean (normalised data); a diverged run passes it within a few steps."""


class RunError(RuntimeError):
    """A run stopped for a reason the user can act on; the message says what, where and what
    to do."""


class NonFiniteLossError(RunError):
    """The synthetic set diverged: non-finite loss, or a non-finite or exploding learnable
    value after an update."""


class WorkdirError(RunError):
    """The workdir holds a run that this configuration does not continue."""


class EvaluationError(RunError):
    """The final evaluation failed; the checkpoint and the exports are on disk."""


class Interrupted(RunError):
    """SIGTERM or SIGINT: a checkpoint was saved and the run stopped (a command exits with
    ``exit_status`` = 128 + the signal number, the shell's convention)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def check_diverged(config: Any, scalars: dict, step: int, last_saved: int,
                   directory: str) -> None:
    """Raise :class:`NonFiniteLossError` when the loss or the state after the update is bad:
    a non-finite loss, or a ``learnable_max_abs`` that is non-finite or above
    :data:`EXPLODED` (the loss alone does not show it: under ``jit`` on XLA:CPU a network maps
    NaN images to finite features)."""
    loss, largest = scalars["loss"], scalars["learnable_max_abs"]
    if math.isfinite(loss) and largest <= EXPLODED:
        return
    what = (f"non-finite loss ({loss})" if not math.isfinite(loss) else
            "non-finite learnable values" if not math.isfinite(largest) else
            f"exploding learnable values (largest |value| {largest:.3g} > {EXPLODED:g})")
    saved = (f"resume from the last good checkpoint (iteration {last_saved} in {directory}) "
             f"with --allow_changes=lr" if last_saved else "no checkpoint was written yet")
    raise NonFiniteLossError(
        f"{what} at iteration {step}: the synthetic set diverged and this state was not saved; "
        f"lower the learning rate (config.lr={config.lr}, lr_pixel={config.lr_pixel}) in a new "
        f"--workdir, or {saved}")


class StopSignals:
    """While active (main thread only): SIGTERM/SIGINT set ``signum``, which the loop checks
    after each iteration; a second signal raises KeyboardInterrupt at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        logging.warning("%s: stopping after this iteration, with a checkpoint",
                        signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
