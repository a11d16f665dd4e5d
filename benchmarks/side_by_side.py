"""Speed side by side: the official FreD code (torch, CPU) and fred_jax alternately in one run,
same shapes, median of several repetitions, ratios printed and recorded (benchmarks/RESULTS.md).

    bash benchmarks/parity/setup_reference.sh       # once: .venv-ref with CPU torch
    .venv/bin/python benchmarks/side_by_side.py [--reps 5] [--works eval_epoch_1seed,dm_iteration]
    .venv/bin/python benchmarks/side_by_side.py --works tm_iteration --reps 1  # official ~6.7 GB
    .venv/bin/python benchmarks/side_by_side.py --works dc_ipc1,dc_ipc2,dc_ipc10 --reps 1

Works (CIFAR-10 shapes, ConvNet width 128 depth 3, DSA on, random normalised images):
- ``eval_epoch_1seed`` / ``eval_epoch_5seeds``: one evaluation training epoch on 160 synthetic
  images (batch 256: one SGD step per seed); the official code trains seeds one after another.
- ``test_pass``: test accuracy over 10,000 images (official: ``epoch('test')``, batch 256).
- ``dm_iteration``: one DM iteration, 10 classes x (256 real + 16 synthetic) images.
- ``tm_iteration``: one TM iteration at the headline setting (FreD ipc=1, k=64: 160 synthetic
  images, ``--syn_steps`` student steps on all of them, DSA per image at every step, gradient
  w.r.t. the coefficients and the learnable rate through all the steps, both optimiser steps).
  Official: ``TM/main_TM_FreD.py``'s loop body (``ReparamModule`` student, ``create_graph=True``,
  under ``set_detect_anomaly(True)`` as its ``main`` sets it). ``tm_iteration_no_anomaly``: the
  same without that debugging mode (about 1.5x less official CPU time).
  Ours: ``step_time_tm.build`` with this backend's policy (XLA:CPU: im2col convolutions,
  gradient pieces of 10 images, rematerialised steps).
- ``dc_ipc1`` / ``dc_ipc2`` / ``dc_ipc10``: one DC iteration (method DC, no augmentation,
  ConvNetD3, 256 real images per class, 300 random real images per class held) at
  :data:`DC_WORKS`'s (ipc, k, outer, inner): ipc 1 with k=64 (16 instances per class), the
  official ipc 2 setting (``configs/cifar10_dc_ipc2.py``: k=32, 64 per class, 1 outer step),
  and ipc 10 with k=160 (64 per class, ``configs/cifar10_ipc10.py``'s k) cut to its first 2
  outer steps with one block of 50 inner epochs between them (a whole ipc-10 iteration, 10
  outer steps and 9 such blocks, takes tens of minutes per side on a 2-core CPU). Official:
  ``DC/main_DC_FreD.py``'s loop body (``parity/side_by_side_ref.py``); ours: the jitted
  ``fred_jax.train`` step of that config (the whole iteration in one program).
The works in :data:`OWN_PROCESS` run on each side in a fresh process of its own, so the row's
``official_peak_rss_mb`` / ``fred_jax_peak_rss_mb`` (``ru_maxrss`` of that process: interpreter,
library, compilation and the work) belong to that work alone.
The official side is a worker process (``parity/side_by_side_ref.py``) kept alive over the run
(a second one, and a JAX worker, just for ``tm_iteration``); each work is run once on both sides
as warm-up (compilation for JAX), then ``--reps`` times alternately, the order flipping each
repetition. Each line reports the 1-minute load average before the work and the process CPU /
wall ratio, so a run on a loaded machine shows it. The rows are recorded by
``benchmarks/harness.py`` (``benchmarks/results/side_by_side.jsonl``, the table in
``benchmarks/RESULTS.md``) and, with the default results folder, the table between the
side-by-side markers of README.md is rewritten from this run (works it did not measure follow
from the latest earlier run that did, under that run's own line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import harness  # noqa: E402
from fred_jax import augment, classifier, configuration, evaluate, platform, train  # noqa: E402
from step_time import bench_config, cifar_like  # noqa: E402
from step_time_tm import build as build_tm  # noqa: E402

DC_WORKS = {"dc_ipc1": (1, 64, 0, 0), "dc_ipc2": (2, 32, 0, 0), "dc_ipc10": (10, 160, 2, 50)}
"""DC work -> (ipc, k, outer, inner); outer 0: the reference schedule of that ipc."""
WORKS = ("eval_epoch_1seed", "eval_epoch_5seeds", "test_pass", "dm_iteration", "tm_iteration",
         "tm_iteration_no_anomaly", *DC_WORKS)
OWN_PROCESS = ("tm_iteration", "tm_iteration_no_anomaly", *DC_WORKS)
"""Works that each side runs in a fresh process of its own (peak RSS of that work alone)."""
TARGETS = {"eval_epoch_1seed": 0.6, "eval_epoch_5seeds": 0.6, "test_pass": 0.5,
           "dm_iteration": 0.35, "tm_iteration": 0.45, "tm_iteration_no_anomaly": 0.45,
           **{w: 0.5 for w in DC_WORKS}}
"""Ratios fred_jax / official asked for by the speed issue (README table)."""
README = os.path.join(ROOT, "README.md")
MARKERS = ("<!-- side_by_side:start -->", "<!-- side_by_side:end -->")


class JaxWorks:
    """The fred_jax side of each work, with the library's defaults for this backend."""

    def __init__(self, num_syn: int, num_test: int, syn_steps: int):
        rng = np.random.default_rng(0)
        self.x = jnp.asarray(rng.normal(size=(num_syn, 32, 32, 3)), jnp.float32)
        self.y = jnp.asarray(np.arange(num_syn) % 10, jnp.int32)
        self.num_test = num_test
        self.xt = jnp.asarray(rng.normal(size=(256, 32, 32, 3)), jnp.float32)
        self.yt = jnp.asarray(np.arange(256) % 10, jnp.int32)
        self.syn_steps = syn_steps
        self.state = {}

    def _programs(self, num_train: int):
        return classifier.programs("ConvNet", 10, (32, 32, 3), platform.policy().conv_train,
                                   num_train, 256, augment.STRATEGY, augment.DSAParams(), 0.9,
                                   5e-4, None)

    def eval_epoch(self, seeds: int) -> None:
        key = f"eval{seeds}"
        if key not in self.state:
            progs = self._programs(self.x.shape[0])
            keys = evaluate.seed_keys(jax.random.key(0), seeds)
            self.state[key] = [progs, keys, progs.init(keys), 0]
        progs, keys, st, ep = self.state[key]
        st, loss, _ = progs.epoch(st, keys, jnp.int32(ep), jnp.float32(0.01), self.x, self.y)
        jax.block_until_ready(loss)
        self.state[key][2:] = [st, ep + 1]

    def test_pass(self) -> None:
        if "test" not in self.state:
            progs = self._programs(self.x.shape[0])
            keys = evaluate.seed_keys(jax.random.key(0), 1)
            self.state["test"] = (progs, progs.init(keys))
        progs, st = self.state["test"]
        valid = jnp.ones(256, bool)
        out = [progs.test(st, self.xt, self.yt, valid) for _ in range(-(-self.num_test // 256))]
        jax.block_until_ready(out)

    def dm_iteration(self) -> None:
        if "dm" not in self.state:
            config = bench_config("dm", "auto")
            dataset = cifar_like()
            configuration.validate(config, dataset=dataset)
            setup = train.create(config, dataset)
            self.state["dm"] = [setup.step_fn, setup.state]
        step, st = self.state["dm"]
        st, metrics = step(st)
        jax.block_until_ready(metrics)
        self.state["dm"][1] = st

    def tm_iteration(self) -> None:
        if "tm" not in self.state:
            policy = platform.policy()
            step, learnable, opt_state = build_tm(self.syn_steps, policy.conv_tm, True,
                                                  policy.tm_grad_chunk)
            self.state["tm"] = [jax.jit(step), learnable, opt_state, 0]
        step, learnable, opt_state, i = self.state["tm"]
        learnable, opt_state, loss = step(learnable, opt_state, jax.random.key(i))
        jax.block_until_ready(loss)
        self.state["tm"][1:] = [learnable, opt_state, i + 1]

    def dc_iteration(self, work: str) -> None:
        if work not in self.state:
            ipc, k, outer, inner = DC_WORKS[work]
            config = configuration.from_file(os.path.join(ROOT, "configs", "cifar10_dc_ipc2.py"))
            config.ipc, config.k = ipc, k
            config.dc.outer_loop, config.dc.inner_loop = outer, inner
            dataset = cifar_like()
            configuration.validate(config, dataset=dataset)
            setup = train.create(config, dataset)
            self.state[work] = [setup.step_fn, setup.state]
        step, st = self.state[work]
        st, metrics = step(st)
        jax.block_until_ready(metrics)
        self.state[work][1] = st

    def run(self, work: str) -> dict:
        """Run ``work`` once: its wall and process CPU seconds."""
        with harness.Stopwatch() as sw:
            if work.startswith("eval_epoch"):
                self.eval_epoch(1 if work.endswith("1seed") else 5)
            elif work.startswith("tm_iteration"):
                self.tm_iteration()
            elif work in DC_WORKS:
                self.dc_iteration(work)
            else:
                getattr(self, work)()
        return {"wall": sw.wall, "cpu": sw.cpu}


class Worker:
    """A worker process answering one JSON line per ``{"work": name}`` request on its stdin."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        self.hello = json.loads(self.proc.stdout.readline())

    def __call__(self, work: str) -> dict:
        self.proc.stdin.write(json.dumps({"work": work}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def serve(syn_steps: int) -> None:
    """The fred_jax side as a worker (for the works in OWN_PROCESS): like side_by_side_ref.py,
    answers each request with wall and CPU seconds and this process's peak RSS so far."""
    ours = JaxWorks(160, 10000, syn_steps)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        out = ours.run(json.loads(line)["work"])
        print(json.dumps({**out, "peak_rss_mb": harness.peak_rss_mib()}), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--works", default=",".join(WORKS))
    p.add_argument("--python", default=os.path.join(ROOT, ".venv-ref", "bin", "python"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--syn_steps", type=int, default=10, help="student steps of tm_iteration")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--results", default=harness.results_dir(),
                   help="folder of the JSONL results (RESULTS.md is regenerated beside them)")
    p.add_argument("--readme", default=None,
                   help="file whose side-by-side block is rewritten with this run's table "
                        "(default: README.md when --results is the default folder, else none)")
    a = p.parse_args(argv)
    if a.syn_steps < 1:
        p.error(f"--syn_steps must be >= 1, got {a.syn_steps}")
    if a.worker:
        serve(a.syn_steps)
        return 0
    works = [w for w in a.works.split(",") if w]
    unknown = set(works) - set(WORKS)
    if unknown:
        p.error(f"unknown works {sorted(unknown)}; choose from {WORKS}")
    if not os.path.exists(a.python):
        p.error(f"no reference environment at {a.python}: run benchmarks/parity/setup_reference.sh")
    ref_cmd = [a.python, os.path.join(HERE, "parity", "side_by_side_ref.py"), "--threads",
               str(a.threads), "--syn_steps", str(a.syn_steps)]
    ours_cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--syn_steps",
                str(a.syn_steps)]
    ref = Worker(ref_cmd)
    hello = ref.hello
    ours = JaxWorks(160, 10000, a.syn_steps)
    settings = {"reps": a.reps, "threads": hello["threads"]}
    if set(works) & set(OWN_PROCESS):
        settings.update(syn_steps=a.syn_steps)
    record = harness.Record(
        "side_by_side", settings=settings,
        note=f"median of {a.reps} alternated repetitions after a warm-up", directory=a.results,
        extra_machine={"torch": f"{hello['torch']} ({hello['threads']} threads)"})
    with record:
        for work in works:
            own = work in OWN_PROCESS
            plain = ["--no_anomaly"] if work.endswith("no_anomaly") else []
            if work in DC_WORKS:
                plain = ["--dc", ",".join(str(v) for v in DC_WORKS[work])]
            run_ref, run_ours = ((Worker(ref_cmd + plain), Worker(ours_cmd)) if own
                                 else (ref, ours.run))
            run_ref(work), run_ours(work)  # warm-up: setup and compilation
            samples = {"official": [], "fred_jax": []}
            load = harness.load_average()
            for rep in range(a.reps):
                order = [("official", run_ref), ("fred_jax", run_ours)]
                for side, fn in (order if rep % 2 == 0 else order[::-1]):
                    samples[side].append(fn(work))
            med = {s: harness.quartiles([r["wall"] for r in v])[1] for s, v in samples.items()}
            cpu = {s: harness.quartiles([r["cpu"] / r["wall"] for r in v])[1]
                   for s, v in samples.items()}
            row = record.add(
                work=work, official_s=med["official"], fred_jax_s=med["fred_jax"],
                ratio=med["fred_jax"] / med["official"], load_1min_before=load,
                official_cpu_per_wall=cpu["official"], fred_jax_cpu_per_wall=cpu["fred_jax"],
                official_all_s=[r["wall"] for r in samples["official"]],
                fred_jax_all_s=[r["wall"] for r in samples["fred_jax"]])
            if own:
                row.update(official_peak_rss_mb=samples["official"][-1]["peak_rss_mb"],
                           fred_jax_peak_rss_mb=samples["fred_jax"][-1]["peak_rss_mb"])
                run_ref.close(), run_ours.close()
            print(json.dumps(row), flush=True)
        ref.close()
    print(f"\nrecorded in {harness.results_md(a.results)}:\n")
    runs = harness.read(a.results)["side_by_side"]
    entry = runs[-1]
    print(harness.table("side_by_side", [entry]))
    readme = a.readme if a.readme is not None else (
        README if os.path.abspath(a.results) == os.path.abspath(harness.results_dir()) else "")
    if readme:
        write_readme(entry, readme, runs[:-1])
        print(f"README table rewritten in {readme}")
    return 0


def _rows_table(entry: dict, works: list[str] | None = None) -> list[str]:
    """One run's line (machine, command, load) and its table, of ``works`` (None: all rows)."""
    lines = [f"Measured {entry['date'][:16].replace('T', ' ')} UTC on "
             f"{harness.machine_line(entry.get('machine', {}))}, commit "
             f"{harness.commit_cell(entry.get('machine', {}))}: `{entry['command']}` "
             f"({entry.get('note', '')}; load average before-after "
             f"{entry.get('load_before')}-{entry.get('load_after')}).", "",
             "| work | official s | fred_jax s | fred_jax / official | target | peak RSS MB "
             "(official / fred_jax) |", "|---|---|---|---|---|---|"]
    for r in entry["rows"]:
        if works is not None and r["work"] not in works:
            continue
        rss = (f"{r['official_peak_rss_mb']:.0f} / {r['fred_jax_peak_rss_mb']:.0f}"
               if "official_peak_rss_mb" in r else "")
        lines.append(f"| {r['work']} | {r['official_s']:.3f} | {r['fred_jax_s']:.3f} | "
                     f"{r['ratio']:.2f}x | {TARGETS.get(r['work'], '')}x | {rss} |")
    return lines


def readme_table(entry: dict, earlier: list[dict] = ()) -> str:
    """The README's table of one side-by-side run: machine, command, then per work the two
    medians, the ratio, the issue's target and, for the works run in their own processes
    (TM, DC), each side's peak RSS. ``earlier`` (older runs, oldest first): the works this run
    did not measure follow, each from the latest run that did, under that run's own line
    (ratios compare only within one run: its machine and load)."""
    lines = _rows_table(entry)
    done = {r["work"] for r in entry["rows"]}
    for old in reversed(list(earlier)):
        works = [r["work"] for r in old["rows"] if r["work"] not in done]
        if works:
            lines += ["", "Not repeated in the run above:"] + _rows_table(old, works)
            done.update(works)
    return "\n".join(lines) + "\n"


def write_readme(entry: dict, path: str, earlier: list[dict] = ()) -> None:
    """Replace the text between :data:`MARKERS` in ``path`` with :func:`readme_table`."""
    with open(path) as f:
        text = f.read()
    start, end = (text.find(m) for m in MARKERS)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {MARKERS[0]} ... {MARKERS[1]} block to rewrite")
    text = text[:start + len(MARKERS[0])] + "\n" + readme_table(entry, earlier) + text[end:]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
