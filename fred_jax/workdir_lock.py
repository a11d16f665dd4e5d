"""One run per workdir: ``<workdir>/run.lock`` names the run that holds it (pid, host, start
time) and is removed when that run ends.

Two runs writing one workdir interleave their metrics and delete each other's checkpoints, so
the second stops at once with :class:`WorkdirLocked` naming the holder. The lock file is
created atomically (``O_CREAT | O_EXCL``: of two runs starting together exactly one gets it)
and removed when the run ends, also by an exception or a signal (``fred_jax.train`` turns
SIGTERM and SIGINT into exceptions). A run killed outright (SIGKILL, a crashed machine) leaves
it behind: such a lock is stale when it names this host and a process that no longer runs (or
a pid that a process started after the lock reuses), and is taken over with a warning. A lock
from another host cannot be checked from here: the run is refused, and the message says how
to remove the file once that run is known to be gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
import uuid
from typing import Iterator

from absl import logging

from fred_jax.failures import WorkdirError

LOCK_FILE = "run.lock"


class WorkdirLocked(WorkdirError):
    """Another run holds the workdir."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock: process id, host name, start time (seconds since the epoch) and a
    random token that tells the holder its own lock file from a later one."""

    pid: int
    host: str
    started: float
    token: str

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, since {since}"


def _read(path: str) -> Holder | None:
    """The holder named by the lock file at ``path``; None when it is gone or unreadable."""
    try:
        with open(path) as f:
            fields = json.load(f)
        return Holder(pid=int(fields["pid"]), host=str(fields["host"]),
                      started=float(fields["started"]), token=str(fields["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _process_start(pid: int) -> float | None:
    """Start time of process ``pid`` in seconds since the epoch (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def is_stale(holder: Holder, host: str | None = None) -> bool:
    """Whether ``holder`` is a run of this host (``host``, default this machine's name) that no
    longer runs: its pid is this process's own (a previous run of a restarted container), is
    not alive, or belongs to a process started after the lock was taken."""
    if holder.host != (host or socket.gethostname()):
        return False
    if holder.pid == os.getpid():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = _process_start(holder.pid)
    return started is not None and started > holder.started + 5.0  # clock slack


def _create(path: str, holder: Holder) -> bool:
    """Create the lock file naming ``holder``; False when it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(dataclasses.asdict(holder), f)
    return True


def _refusal(path: str, workdir: str, holder: Holder | None) -> WorkdirLocked:
    who = holder.describe() if holder is not None else "a run whose lock file does not read"
    return WorkdirLocked(
        f"{workdir} is in use by another run ({who}; lock file {path}): wait for it to end or "
        f"use another --workdir; if no run uses it any more, delete {path}")


def _take_over(path: str, stale: Holder) -> None:
    """Remove the stale lock ``stale`` unless another run replaced it meanwhile."""
    aside = f"{path}.stale-{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another run took it over first; the next create decides
    if _read(aside) == stale:
        os.remove(aside)
    else:  # a live lock created since we read: put it back
        try:
            os.link(aside, path)
        finally:
            os.remove(aside)


def acquire(workdir: str) -> Holder:
    """Lock ``workdir`` (which must exist) for this process; raise :class:`WorkdirLocked` when
    another live run holds it. A stale lock is taken over with a warning."""
    path = os.path.join(workdir, LOCK_FILE)
    mine = Holder(pid=os.getpid(), host=socket.gethostname(), started=time.time(),
                  token=uuid.uuid4().hex)
    for _ in range(3):
        if _create(path, mine):
            return mine
        holder = _read(path)
        if holder is None or not is_stale(holder):
            if holder is None and not os.path.exists(path):
                continue  # released meanwhile
            raise _refusal(path, workdir, holder)
        logging.warning("%s: taking over the lock of a run that no longer runs (%s)", path,
                        holder.describe())
        _take_over(path, holder)
    raise _refusal(path, workdir, _read(path))


def release(workdir: str, holder: Holder) -> None:
    """Remove ``workdir``'s lock if ``holder`` still holds it."""
    path = os.path.join(workdir, LOCK_FILE)
    if _read(path) == holder:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def held(workdir: str, enabled: bool = True) -> Iterator[Holder | None]:
    """Hold ``workdir``'s lock for the ``with`` block (none when not ``enabled``: the other
    processes of a multi-host run, whose process 0 holds it)."""
    if not enabled:
        yield None
        return
    holder = acquire(workdir)
    try:
        yield holder
    finally:
        release(workdir, holder)
