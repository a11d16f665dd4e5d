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

GROWTH = 300.0
"""Largest ratio of the learnable values' RMS to their initial RMS in a sane run. The initial
values are those of real images, and a normal run stays within a small multiple of them; a
learning rate too large by orders of magnitude multiplies them by about that factor within a
few steps (README, "When things go wrong", for the measured runs behind this factor)."""

LOSS_GROWTH = 10.0
"""Largest ratio of the loss to its start (:data:`LOSS_START`) in a sane run: DM losses fall,
DC losses are bounded, TM losses start near 1 and fall; a diverging run's loss keeps rising."""

LOSS_START = 10
"""The loss's start is the median of the first this many iterations (one noisy batch does not
set it); the loss rule applies after them."""

EXPLODED = 1e30
"""Largest |learnable value| at all, whatever the start: far beyond any image, and a margin
below float32's overflow (the relative rules above decide in every other case)."""


class RunError(RuntimeError):
    """A run stopped for a reason the user can act on; the message says what, where and what
    to do."""


class NonFiniteLossError(RunError):
    """The synthetic set diverged (:func:`divergence`): a non-finite loss or value, values or a
    loss grown far beyond their start."""


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


def loss_start(losses: list[float]) -> float | None:
    """The loss's start: the median of the first :data:`LOSS_START` losses of the run, or None
    while fewer are known."""
    if len(losses) < LOSS_START:
        return None
    ordered = sorted(losses[:LOSS_START])
    middle = len(ordered) // 2
    return 0.5 * (ordered[middle - 1] + ordered[middle]) if len(ordered) % 2 == 0 else \
        ordered[middle]


def divergence(loss: float, largest: float, rms: float, *, initial_rms: float,
               start: float | None, growth: float = GROWTH,
               loss_growth: float = LOSS_GROWTH) -> str | None:
    """What is wrong with one iteration (None: nothing): a non-finite loss or value, learnable
    values whose RMS grew beyond ``growth`` times ``initial_rms`` (or beyond
    :data:`EXPLODED`), or a loss beyond ``loss_growth`` times its ``start`` (0: that rule
    off)."""
    if not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    if not (math.isfinite(largest) and math.isfinite(rms)):
        return "non-finite learnable values"
    if growth > 0 and initial_rms > 0 and rms > growth * initial_rms:
        return (f"learnable values grew {rms / initial_rms:.3g}x (RMS {rms:.3g}, initially "
                f"{initial_rms:.3g}; limit config.divergence_growth={growth:g})")
    if largest > EXPLODED:
        return f"exploding learnable values (largest |value| {largest:.3g} > {EXPLODED:g})"
    if loss_growth > 0 and start is not None and start > 0 and loss > loss_growth * start:
        return (f"loss {loss:.4g} is {loss / start:.3g}x its start ({start:.4g}, median of the "
                f"first {LOSS_START} iterations; limit config.divergence_loss_growth="
                f"{loss_growth:g})")
    return None


def check_diverged(scalars: dict, step: int, *, initial_rms: float, start: float | None,
                   lr_field: str, lr: float, last_saved: int, directory: str,
                   growth: float = GROWTH, loss_growth: float = LOSS_GROWTH) -> None:
    """Raise :class:`NonFiniteLossError` when iteration ``step`` diverged (:func:`divergence`
    of its ``loss``, ``learnable_max_abs`` and ``learnable_rms``), naming the learning rate
    field ``lr_field`` (value ``lr``) to lower and the last good checkpoint. The loss alone
    does not show NaN values: under ``jit`` on XLA:CPU a network maps NaN images to finite
    features."""
    what = divergence(scalars["loss"], scalars["learnable_max_abs"],
                      scalars.get("learnable_rms", 0.0), initial_rms=initial_rms, start=start,
                      growth=growth, loss_growth=loss_growth)
    if what is None:
        return
    saved = (f"resume from the last good checkpoint (iteration {last_saved} in {directory}) "
             f"with --config.{lr_field}=<lower> --allow_changes={lr_field}" if last_saved
             else "no checkpoint was written yet")
    raise NonFiniteLossError(
        f"{what} at iteration {step}: the synthetic set diverged and this state was not saved; "
        f"lower the learning rate (config.{lr_field}={lr:g}) in a new --workdir, or {saved}")


class StopSignals:
    """While active (main thread only), SIGTERM/SIGINT raise KeyboardInterrupt at once (so that
    a run stopped while setting up ends with one line, its lock released), except while
    ``graceful`` (the loop sets it): then the first sets ``signum``, which the loop checks after
    each iteration, and a second raises KeyboardInterrupt at once. ``received`` is the last
    signal (None when the interrupt came from elsewhere)."""

    def __init__(self):
        self.signum: int | None = None
        self.received: int | None = None
        self.graceful = False
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        self.received = signum
        if self.signum is not None or not self.graceful:
            raise KeyboardInterrupt
        self.signum = signum
        logging.warning("%s: stopping after this iteration, with a checkpoint",
                        signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
