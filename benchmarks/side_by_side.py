"""Speed side by side: the official FreD code (torch, CPU) and fred_jax alternately in one run,
same shapes, median of several repetitions, ratios printed and recorded (benchmarks/RESULTS.md).

    bash benchmarks/parity/setup_reference.sh       # once: .venv-ref with CPU torch
    .venv/bin/python benchmarks/side_by_side.py [--reps 5] [--works eval_epoch_1seed,dm_iteration]

Works (CIFAR-10 shapes, ConvNet width 128 depth 3, DSA on, random normalised images):
- ``eval_epoch_1seed`` / ``eval_epoch_5seeds``: one evaluation training epoch on 160 synthetic
  images (batch 256: one SGD step per seed); the official code trains seeds one after another.
- ``test_pass``: test accuracy over 10,000 images (official: ``epoch('test')``, batch 256).
- ``dm_iteration``: one DM iteration, 10 classes x (256 real + 16 synthetic) images.
The official side is a worker process (``parity/side_by_side_ref.py``) kept alive over the run;
each work is run once on both sides as warm-up (compilation for JAX), then ``--reps`` times
alternately, the order flipping each repetition. Each line reports the 1-minute load average
before the work and the process CPU / wall ratio, so a run on a loaded machine shows it. The
rows are recorded by ``benchmarks/harness.py`` (``benchmarks/results/side_by_side.jsonl``, the
table in ``benchmarks/RESULTS.md``).
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

WORKS = ("eval_epoch_1seed", "eval_epoch_5seeds", "test_pass", "dm_iteration")


class JaxWorks:
    """The fred_jax side of each work, with the library's defaults for this backend."""

    def __init__(self, num_syn: int, num_test: int):
        rng = np.random.default_rng(0)
        self.x = jnp.asarray(rng.normal(size=(num_syn, 32, 32, 3)), jnp.float32)
        self.y = jnp.asarray(np.arange(num_syn) % 10, jnp.int32)
        self.num_test = num_test
        self.xt = jnp.asarray(rng.normal(size=(256, 32, 32, 3)), jnp.float32)
        self.yt = jnp.asarray(np.arange(256) % 10, jnp.int32)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--works", default=",".join(WORKS))
    p.add_argument("--python", default=os.path.join(ROOT, ".venv-ref", "bin", "python"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--results", default=harness.results_dir(),
                   help="folder of the JSONL results (RESULTS.md is regenerated beside them)")
    a = p.parse_args(argv)
    works = [w for w in a.works.split(",") if w]
    unknown = set(works) - set(WORKS)
    if unknown:
        p.error(f"unknown works {sorted(unknown)}; choose from {WORKS}")
    if not os.path.exists(a.python):
        p.error(f"no reference environment at {a.python}: run benchmarks/parity/setup_reference.sh")
    ref = subprocess.Popen([a.python, os.path.join(HERE, "parity", "side_by_side_ref.py"),
                            "--threads", str(a.threads)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, cwd=ROOT)
    hello = json.loads(ref.stdout.readline())
    ours = JaxWorks(160, 10000)

    def run_ref(work):
        ref.stdin.write(json.dumps({"work": work}) + "\n")
        ref.stdin.flush()
        return json.loads(ref.stdout.readline())

    def run_ours(work):
        with harness.Stopwatch() as sw:
            if work.startswith("eval_epoch"):
                ours.eval_epoch(1 if work.endswith("1seed") else 5)
            else:
                getattr(ours, work)()
        return {"wall": sw.wall, "cpu": sw.cpu}

    record = harness.Record(
        "side_by_side", settings={"reps": a.reps, "threads": hello["threads"]},
        note=f"median of {a.reps} alternated repetitions after a warm-up", directory=a.results,
        extra_machine={"torch": f"{hello['torch']} ({hello['threads']} threads)"})
    with record:
        for work in works:
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
            print(json.dumps(row), flush=True)
        ref.stdin.close()
        ref.wait(timeout=60)
    print(f"\nrecorded in {harness.results_md(a.results)}:\n")
    print(harness.table("side_by_side", harness.read(a.results)["side_by_side"][-1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
