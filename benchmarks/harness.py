"""One measurement harness for every benchmark: machine facts, timing, memory, load, results.

A benchmark times its work with :func:`timeit` (the first call, which traces and compiles a
jitted function, apart from the steady state: median and interquartile range of the wall time
over repetitions, and the process CPU time) or, for work it alternates or times itself, with
:class:`Stopwatch`; it collects one dict of figures per table row and records them with
:class:`Record`::

    with harness.Record("step_time", settings={"iterations": 10}) as rec:
        t = harness.timeit(lambda i: step(), repeats=10, warmup=1)
        rec.add(objective="dm", **t.figures())

On leaving the block the record (date, machine, git commit and dirty flag, the command line,
settings, rows, 1-minute load average before and after, peak RSS) is appended as one JSON line
to ``benchmarks/results/<benchmark>.jsonl`` and ``benchmarks/RESULTS.md`` is regenerated from
all the JSONL files (one table per benchmark). ``FRED_BENCH_RESULTS=<dir>`` sends both to
another folder (smoke runs, ``before_after.py``). ``python benchmarks/harness.py`` regenerates
the table by hand.

JAX is imported only when a function needs it, so the official code's side (``.venv-ref``,
no JAX) can time with :class:`Stopwatch` too.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_ENV = "FRED_BENCH_RESULTS"


# ----------------------------------------------------------------------------- machine facts


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else lscpu, else platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def git_commit(root: str = ROOT) -> dict:
    """``{"commit": short hash or None, "dirty": bool or None}`` of the checkout at ``root``
    (tracked files only; read-only: no index refresh)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "--no-optional-locks", "-C", root, *args],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine() -> dict:
    """Facts that say where a number was measured: CPU model, cores (and those this process
    may use), Python, jax / jaxlib versions and backend (None without JAX), the device kind,
    git commit and dirty flag, host name."""
    facts = {"cpu": cpu_model(), "cores": os.cpu_count(),
             "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count(),
             "python": platform.python_version(), "host": platform.node(),
             "jax": None, "jaxlib": None, "backend": None, "device": None}
    if "jax" in sys.modules or _has_jax():
        import jax
        import jaxlib

        dev = jax.devices()[0]
        facts.update(jax=jax.__version__, jaxlib=getattr(jaxlib, "__version__", None),
                     backend=jax.default_backend(), device=f"{len(jax.devices())}x "
                     f"{getattr(dev, 'device_kind', dev.platform)}")
    facts.update(git_commit())
    return facts


def _has_jax() -> bool:
    import importlib.util

    return importlib.util.find_spec("jax") is not None


# ----------------------------------------------------------------------------- timing


def block(value: Any) -> Any:
    """Wait for ``value``'s device arrays (no-op without JAX)."""
    if "jax" in sys.modules:
        import jax

        return jax.block_until_ready(value)
    return value


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def device_peak_mib() -> float | None:
    """Peak device memory in use (``memory_stats()["peak_bytes_in_use"]``), MiB; None where the
    backend keeps no statistics (XLA:CPU)."""
    import jax

    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


class Stopwatch:
    """Wall and process CPU seconds of a ``with`` block: ``with Stopwatch() as sw: ...``, then
    ``sw.wall`` and ``sw.cpu``. Block on device results inside the block."""

    wall: float
    cpu: float

    def __enter__(self) -> "Stopwatch":
        self._t, self._c = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._t
        self.cpu = cpu_seconds() - self._c


def quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile), linear interpolation (numpy's default)."""
    xs = sorted(samples)
    if not xs:
        raise ValueError("no samples")

    def at(q: float) -> float:
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return at(0.25), at(0.5), at(0.75)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of each timed call; ``compile_s`` is the first call's wall time
    (tracing, compilation and one run for a jitted function not called before; None when the
    caller compiled elsewhere)."""

    wall: tuple[float, ...]
    cpu: tuple[float, ...]
    compile_s: float | None = None

    @property
    def median(self) -> float:
        return quartiles(self.wall)[1]

    @property
    def iqr(self) -> float:
        q1, _, q3 = quartiles(self.wall)
        return q3 - q1

    @property
    def cpu_median(self) -> float:
        return quartiles(self.cpu)[1]

    def figures(self, unit: str = "s", prefix: str = "") -> dict:
        """Table figures: compile, wall median, IQR, min, CPU median, CPU/wall, repetitions;
        in seconds (``unit="s"``) or milliseconds (``"ms"``), keys prefixed by ``prefix``."""
        scale = {"s": 1.0, "ms": 1e3}[unit]
        q1, med, q3 = quartiles(self.wall)
        out = {f"{prefix}wall_median_{unit}": med * scale, f"{prefix}wall_iqr_{unit}":
               (q3 - q1) * scale, f"{prefix}wall_min_{unit}": min(self.wall) * scale,
               f"{prefix}cpu_median_{unit}": self.cpu_median * scale,
               f"{prefix}cpu_per_wall": self.cpu_median / med if med > 0 else None,
               f"{prefix}reps": len(self.wall)}
        if self.compile_s is not None:
            out = {f"{prefix}compile_s": self.compile_s, **out}
        return out


def timeit(fn: Callable[[int], Any], repeats: int, warmup: int = 0, *,
           first_is_compile: bool = True) -> Timing:
    """Time ``fn(i)`` (``i`` = call number, e.g. to vary keys; results blocked on).

    Call 0 is timed as ``compile_s`` when ``first_is_compile`` (else it is one more warm-up),
    calls ``1 .. warmup`` are untimed, the next ``repeats`` calls are the samples.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    with Stopwatch() as first:
        block(fn(0))
    for i in range(1, warmup + 1):
        block(fn(i))
    walls, cpus = [], []
    for i in range(warmup + 1, warmup + 1 + repeats):
        with Stopwatch() as sw:
            block(fn(i))
        walls.append(sw.wall)
        cpus.append(sw.cpu)
    return Timing(tuple(walls), tuple(cpus), first.wall if first_is_compile else None)


def summary(samples: Sequence[float], prefix: str = "wall") -> dict:
    """``{prefix}_median``, ``{prefix}_iqr``, ``{prefix}_min`` of ``samples``."""
    q1, med, q3 = quartiles(samples)
    return {f"{prefix}_median": med, f"{prefix}_iqr": q3 - q1, f"{prefix}_min": min(samples)}


# ----------------------------------------------------------------------------- records


def results_dir() -> str:
    """Where JSONL files go: ``$FRED_BENCH_RESULTS`` or ``benchmarks/results``."""
    return os.environ.get(RESULTS_ENV) or os.path.join(HERE, "results")


def results_md(directory: str) -> str:
    """The table next to ``directory``: ``benchmarks/RESULTS.md`` for the default folder,
    ``<directory>/RESULTS.md`` otherwise."""
    if os.path.abspath(directory) == os.path.join(HERE, "results"):
        return os.path.join(HERE, "RESULTS.md")
    return os.path.join(directory, "RESULTS.md")


def command_line(argv: Sequence[str] | None = None) -> str:
    """``python <script relative to the repository> <args>`` of this process."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.abspath(argv[0]) if argv and argv[0] else ""
    if script.startswith(ROOT + os.sep):
        script = os.path.relpath(script, ROOT)
    return " ".join(["python", script, *argv[1:]]).strip()


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


class Record:
    """Collects the rows of one benchmark run and appends them as one JSON line on exit
    (only when the block ends without an exception), then regenerates the results table.

    ``settings``: what the rows share (sizes, flags); ``note``: one line shown under the table
    row (e.g. what the numbers mean). ``machine`` facts are taken at exit, after the
    benchmark initialised its backend; ``extra_machine`` adds facts (e.g. the torch version).
    """

    def __init__(self, benchmark: str, *, settings: dict | None = None, note: str = "",
                 extra_machine: dict | None = None, directory: str | None = None,
                 command: str | None = None):
        self.benchmark = benchmark
        self.settings = dict(settings or {})
        self.note = note
        self.extra_machine = dict(extra_machine or {})
        self.directory = directory or results_dir()
        self.command = command or command_line()
        self.rows: list[dict] = []
        self.entry: dict | None = None

    def add(self, row: dict | None = None, **figures: Any) -> dict:
        """Append one table row (a dict and/or keyword figures); returns it."""
        r = {**(row or {}), **figures}
        self.rows.append(r)
        return r

    def __enter__(self) -> "Record":
        self._date = datetime.datetime.now().isoformat(timespec="seconds")
        self._load = load_average()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            return
        self.entry = {"benchmark": self.benchmark, "date": self._date, "command": self.command,
                      "machine": {**machine(), **self.extra_machine}, "settings": self.settings,
                      "load_before": self._load, "load_after": load_average(),
                      "peak_rss_mib": round(peak_rss_mib(), 1), "note": self.note,
                      "rows": self.rows}
        append(self.entry, self.directory)
        write_results_md(self.directory)


def append(entry: dict, directory: str | None = None) -> str:
    """Append ``entry`` to ``<directory>/<entry["benchmark"]>.jsonl``; returns the path."""
    directory = directory or results_dir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{entry['benchmark']}.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps(entry, default=_plain) + "\n")
    return path


def _plain(value: Any) -> Any:
    """JSON for numpy / jax scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read(directory: str | None = None) -> dict[str, list[dict]]:
    """Benchmark name -> its records, oldest first, from every ``*.jsonl`` in ``directory``."""
    directory = directory or results_dir()
    out: dict[str, list[dict]] = {}
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        if name.endswith(".jsonl"):
            with open(os.path.join(directory, name)) as f:
                entries = [json.loads(line) for line in f if line.strip()]
            out[name[:-len(".jsonl")]] = sorted(entries, key=lambda e: e["date"])
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1:
            return f"{value:.3f}".rstrip("0").rstrip(".")
        return f"{value:.4g}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value).replace("|", "\\|")


def machine_line(m: dict) -> str:
    """``<cpu>, <cores> cores, <backend> <device>, jax <v>`` of a record's machine facts."""
    parts = [m.get("cpu") or "unknown CPU", f"{m.get('cores')} cores"]
    if m.get("backend"):
        device = m.get("device") if m["backend"] != "cpu" else None
        parts.append(m["backend"] + (f" ({device})" if device else ""))
    if m.get("jax"):
        parts.append(f"jax {m['jax']}")
    parts += [f"{k} {m[k]}" for k in ("torch",) if m.get(k)]
    return ", ".join(parts)


def commit_cell(m: dict) -> str:
    if not m.get("commit"):
        return "unknown"
    return m["commit"] + ("+dirty" if m.get("dirty") else "")


def run_line(entry: dict) -> str:
    """``<date>, <machine>, commit <c>: `<command>` <settings>. <note>`` of one record."""
    m = entry.get("machine", {})
    text = (f"{entry['date'].replace('T', ' ')[:16]}, {machine_line(m)}, commit "
            f"{commit_cell(m)}: `{entry['command']}`")
    if entry.get("settings"):
        text += "; " + ", ".join(f"{k}={_cell(v)}" for k, v in entry["settings"].items())
    if entry.get("note"):
        text += f". {entry['note']}"
    if entry.get("imported"):
        text += f" (imported: {entry['imported']})"
    return text


def table(benchmark: str, entries: Iterable[dict]) -> str:
    """The section of ``benchmark``: a numbered list of its runs (date, machine, commit,
    command, settings) and one table with a row per (run, row): run number, date, commit,
    load before-after, then the union of the rows' figures (first-seen order)."""
    entries = list(entries)
    keys: list[str] = []
    for e in entries:
        for r in e["rows"]:
            keys += [k for k in r if k not in keys]
    head = ["run", "date", "commit", "load"] + keys
    lines = [f"## {benchmark}", ""]
    lines += [f"{i}. {run_line(e)}" for i, e in enumerate(entries, 1)]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, e in enumerate(entries, 1):
        m = e.get("machine", {})
        load = f"{_cell(e.get('load_before'))}-{_cell(e.get('load_after'))}"
        for r in e["rows"]:
            cells = [str(i), e["date"][:10], commit_cell(m), load] + [_cell(r.get(k))
                                                                      for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results_md(directory: str | None = None, out: str | None = None) -> str:
    """Regenerate the results table from ``directory``'s JSONL files; returns its path."""
    directory = directory or results_dir()
    out = out or results_md(directory)
    body = [table(name, entries) for name, entries in read(directory).items()]
    text = ("# Benchmark results\n\nGenerated by `benchmarks/harness.py` from "
            "`benchmarks/results/*.jsonl` (one JSON line per run: date, machine, commit, "
            "command, settings, figures); do not edit by hand, rerun the benchmark or "
            "`python benchmarks/harness.py`. Times in seconds unless a column says `_ms`; "
            "`wall_median`/`wall_iqr`: median and interquartile range over the repetitions "
            "after the first (compiling) call; `cpu_per_wall`: process CPU time over wall "
            "time (2 on a busy 2-core machine); `load`: 1-minute load average before-after "
            "(other processes' load slows the wall time).\n\n" + "\n".join(body))
    with open(out, "w") as f:
        f.write(text)
    return out


if __name__ == "__main__":
    print(write_results_md())
